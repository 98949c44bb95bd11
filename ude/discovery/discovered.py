"""The discovered model as a vector field: known physics + Θ(y)·Ξ on the kept terms."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._types import Array, Bool, Float, State
from ..model import AbstractUDE
from ..physics import AbstractPhysics, as_physics
from .library import AbstractLibrary
from .symbolic import format_equations, to_sympy


class DiscoveredModel(AbstractUDE):
    """``dy/dt = known(t, y) + Θ(y) · (Ξ ⊙ mask)``, a diffrax vector field.

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

    def __init__(
        self,
        known: AbstractPhysics | Callable | None,
        library: AbstractLibrary,
        coefficients,
        mask=None,
    ):
        if not isinstance(library, AbstractLibrary):
            raise ValueError(
                f"DiscoveredModel: library must be an AbstractLibrary, got {type(library).__name__}"
            )
        known = as_physics(known, library.state_names, who="DiscoveredModel")
        shape = (library.n_terms, len(library.state_names))
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
        self.state_names = tuple(library.state_names)

    @property
    def xi(self) -> Float[Array, "terms states"]:
        """The effective coefficients: zero wherever ``mask`` is False."""
        return jnp.where(self.mask, self.coefficients, 0.0)

    def missing(self, t, y: State) -> State:
        """The discovered terms' contribution Θ(y)·Ξ."""
        return (self.library(y) @ self.xi.astype(y.dtype)).astype(y.dtype)

    def __call__(self, t, y, args=None):
        return self.known(t, y, args) + self.missing(t, y)

    # ---- reporting ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.library.names

    def equations(self, precision: int = 4, known: bool = False) -> list[str]:
        """``["x' = -0.9 x*y", ...]`` for the discovered terms (``known=True``: known part too, as
        its formula)."""
        lines = format_equations(np.asarray(self.xi), self.names, self.state_names, precision)
        if not known:
            return lines
        f = self.known.formula()
        return [
            f"{s}' = {f.get(s, '0')} + [{line.split('=', 1)[1].strip()}]"
            for s, line in zip(self.state_names, lines, strict=True)
        ]

    def to_sympy(self):
        """``{state: expr}`` of the discovered terms."""
        return to_sympy(np.asarray(self.xi), self.names, self.state_names)

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
