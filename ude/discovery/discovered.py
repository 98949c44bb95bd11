"""The discovered model as a vector field: known physics + Θ(y, u(t))·Ξ on the kept terms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._types import Array, Bool, Float, State
from ..model import AbstractUDE
from ..physics import AbstractPhysics, as_physics
from ..physics.signals import read_signals
from .library import AbstractLibrary, InputLibrary
from .symbolic import format_equations, to_sympy


class DiscoveredModel(AbstractUDE):
    """``dy/dt = known(t, y) + Θ(y, u(t)) · (Ξ ⊙ mask)``, a diffrax vector field.

    ``coefficients`` (terms, states) is an inexact array, so :func:`ude.model.trainable_filter`
    trains it; ``mask`` is a bool array (never trained) and multiplies the coefficients, so dropped
    terms stay exactly zero whatever an optimiser does to them. Known-physics parameters train only
    if marked trainable.

    Args:
        known: the known physics, as :class:`~ude.model.UDE` takes it (a system, equations, or
            your own function or module: its states are the library's); None means no known
            part.
        library: the candidate library Θ.
        coefficients: Ξ, shape (terms, states).
        mask: kept terms, bool (terms, states); default: the nonzero coefficients.
        inputs: the library variables that are inputs ``u(t)`` (default: the library's
            ``input_names``, e.g. of an :class:`~ude.discovery.library.InputLibrary`); the states
            are the other variables. Their values at ``t`` are read by name from ``args`` (an
            :class:`~ude.data.inputs.ExperimentInputs` or ``InputSignal``), as the known part
            reads its own.

    Example::

        lib = PolynomialLibrary(("x", "y"), degree=2)
        xi = np.zeros((6, 2))
        xi[4] = [-0.9, 0.8]  # x*y
        m = DiscoveredModel(LotkaVolterra(1.3, 0.9, 1.8, 0.8).keep("growth", "death"), lib, xi)
        print(m)  # x' = 1.3*x - 0.9 x*y ...
    """

    # Θ(y) evaluates every candidate term: seven inlined copies (one per Runge–Kutta stage) made the
    # discovery refit's program compile in 18 s instead of 4 s
    compact_stages: ClassVar[bool] = True
    known: AbstractPhysics
    library: AbstractLibrary
    coefficients: Float[Array, "terms states"]
    mask: Bool[Array, "terms states"]
    state_names: tuple[str, ...] = eqx.field(static=True)
    input_names: tuple[str, ...] = eqx.field(static=True)
    _order: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        known: AbstractPhysics | Callable | None,
        library: AbstractLibrary,
        coefficients,
        mask=None,
        inputs: Sequence[str] | None = None,
    ):
        if not isinstance(library, AbstractLibrary):
            raise ValueError(
                f"DiscoveredModel: library must be an AbstractLibrary, got {type(library).__name__}"
            )
        inputs = tuple(library.input_names if inputs is None else inputs)
        if library.input_names and set(inputs) != set(library.input_names):
            raise ValueError(
                f"DiscoveredModel: inputs {list(inputs)} differ from the library's "
                f"{list(library.input_names)}"
            )
        if inputs and not library.input_names:  # the library says them: a rebuild keeps them
            library = InputLibrary(library, inputs)
        variables = tuple(library.state_names)
        states = tuple(v for v in variables if v not in inputs)
        known = as_physics(known, states, who="DiscoveredModel")
        shape = (library.n_terms, len(states))
        coefficients = jnp.asarray(coefficients, dtype=jnp.result_type(float))
        if coefficients.shape != shape:
            raise ValueError(
                f"DiscoveredModel: coefficients must have shape (terms, states) = {shape}, "
                f"got {coefficients.shape}"
            )
        mask = coefficients != 0 if mask is None else jnp.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"DiscoveredModel: mask must have shape {shape}, got {mask.shape}")
        self.known = known
        self.library = library
        self.coefficients = jnp.where(mask, coefficients, 0.0)
        self.mask = mask
        self.state_names = states
        self.input_names = inputs
        # where each library variable sits in concat(y, u)
        order = tuple((*states, *inputs).index(v) for v in variables)
        self._order = None if order == tuple(range(len(order))) else order

    @property
    def xi(self) -> Float[Array, "terms states"]:
        """The effective coefficients: zero wherever ``mask`` is False."""
        return jnp.where(self.mask, self.coefficients, 0.0)

    def missing(self, t, y: State, args=None) -> State:
        """The discovered terms' contribution Θ(y, u(t))·Ξ (the inputs read from ``args``)."""
        z = y
        if self.input_names:
            reader = "DiscoveredModel: the discovered terms read the inputs"
            u = read_signals(args, self.input_names, t, reader)
            z = jnp.concatenate([y, u.astype(y.dtype)])
            z = z if self._order is None else z[jnp.asarray(self._order)]
        return (self.library(z) @ self.xi.astype(y.dtype)).astype(y.dtype)

    def __call__(self, t, y, args=None):
        return self.known(t, y, args) + self.missing(t, y, args)

    # ---- reporting ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.library.names

    def equations(
        self, precision: int = 4, known: bool = False, states: Sequence[str] | None = None
    ) -> list[str]:
        """``["x' = -0.9 x*y", ...]`` for the discovered terms (``known=True``: known part too, as
        its formula); ``states``: only these states' lines (e.g. the regressed ones)."""
        states = self.state_names if states is None else tuple(states)
        lines = format_equations(
            np.asarray(self.xi), self.names, self.state_names, precision, states=states
        )
        if not known:
            return lines
        f = self.known.formula()
        return [
            f"{s}' = {f.get(s, '0')} + [{line.split('=', 1)[1].strip()}]"
            for s, line in zip(states, lines, strict=True)
        ]

    def to_sympy(self):
        """``{state: expr}`` of the discovered terms."""
        return to_sympy(np.asarray(self.xi), self.names, self.state_names, self.input_names)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{state: {term: coefficient}}`` over the kept terms."""
        xi = np.asarray(self.xi)
        m = np.asarray(self.mask)
        return {
            s: {n: float(xi[k, j]) for k, n in enumerate(self.names) if m[k, j]}
            for j, s in enumerate(self.state_names)
        }

    def __str__(self) -> str:
        return "\n".join(self.equations())
