"""Any vector field as known physics: a plain function or an ``eqx.Module`` with named states."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .base import AbstractPhysics
from .parameter import Parameter
from .systems import NoPhysics

__all__ = ["VectorField", "as_physics"]


class _Function:
    """A plain function held as static data: equal and hashed by identity, printed by its
    qualified name (stable across processes, so checkpoints fingerprint it)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __eq__(self, other):
        return isinstance(other, _Function) and other.fn is self.fn

    def __hash__(self):
        return hash(id(self.fn))

    def __repr__(self):
        module = getattr(self.fn, "__module__", None) or "?"
        return f"{module}.{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"


def _takes_args(fn) -> bool:
    """Whether ``fn`` is called ``fn(t, y, args)`` (diffrax's convention) or ``fn(t, y)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


class VectorField(AbstractPhysics):
    """A user's vector field ``f(t, y, args) -> dy/dt`` (or ``f(t, y)``) as known physics.

    ``f`` may be a plain function or an ``eqx.Module``. Its arrays are **frozen**: only the
    :class:`Parameter` fields of a module that are marked ``trainable`` learn, so a constant
    ``alpha = jnp.array(0.7)`` stays 0.7 (see :func:`ude.model.trainable_filter`). Those
    parameters are the physics' ``param_names`` (``p``, ``with_params``, ``set_trainable`` and
    discovery's refit use them). The whole field is one term, ``"known"``.

    >>> import jax.numpy as jnp
    >>> def decay(t, y, args):
    ...     return -0.5 * y
    >>> known = VectorField(decay, ("x", "y"))
    >>> print(known(0.0, jnp.array([1.0, 2.0])))
    [-0.5 -1. ]
    """

    fn: object  # the module itself (a pytree), or a _Function (static)
    state_names: tuple[str, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    takes_args: bool = eqx.field(static=True)
    include: tuple[str, ...] | None = eqx.field(static=True)

    term_names: ClassVar[tuple[str, ...]] = ("known",)

    def __init__(self, fn: Callable, state_names: Sequence[str], *, include=None):
        if not callable(fn):
            raise ValueError(f"VectorField: fn must be callable, got {type(fn).__name__}")
        names = tuple(state_names)
        if not names or not all(isinstance(s, str) and s for s in names):
            raise ValueError(f"VectorField: state_names must be non-empty names, got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"VectorField: state_names are listed twice: {names}")
        self.takes_args = _takes_args(fn)
        self.fn = fn if isinstance(fn, eqx.Module) else _Function(fn)
        self.state_names = names
        self.param_names = (
            tuple(
                f.name
                for f in dataclasses.fields(fn)
                if isinstance(getattr(fn, f.name, None), Parameter)
            )
            if isinstance(fn, eqx.Module)
            else ()
        )
        self.include = None if include is None else tuple(include)

    @property
    def term_formulas(self) -> dict[str, str]:
        return {"known": f"{self.state_names[0]}: {self._name}(t, y)"}

    @property
    def _name(self) -> str:
        fn = self.fn.fn if isinstance(self.fn, _Function) else self.fn
        return getattr(fn, "__name__", None) or type(fn).__name__

    def parameter(self, name: str) -> Parameter:
        if name not in self.param_names:
            raise ValueError(
                f"VectorField: {self._name} has no Parameter field {name!r}; its parameters "
                f"are {list(self.param_names)}"
            )
        return getattr(self.fn, name)

    def _call(self, t, y, args):
        fn = self.fn.fn if isinstance(self.fn, _Function) else self.fn
        out = fn(t, y, args) if self.takes_args else fn(t, y)
        out = jnp.asarray(out)
        if out.shape != y.shape:
            raise ValueError(
                f"VectorField: {self._name}(t, y) returned shape {out.shape}; it must return "
                f"dy/dt with the shape of y, {y.shape} (states {list(self.state_names)})"
            )
        return out.astype(y.dtype)

    def terms(self, t, y):
        return {"known": self._call(t, y, None)}

    def __call__(self, t, y, args=None):
        if "known" not in self.active_terms:
            return jnp.zeros_like(y)
        return self._call(t, y, args)

    def formula(self) -> dict[str, str]:
        on = "known" in self.active_terms
        return {
            s: f"{self._name}(t, y)[{i}]" if on else "0" for i, s in enumerate(self.state_names)
        }


def as_physics(known, state_names: Sequence[str] | None = None, *, who: str = "UDE"):
    """``known`` as an :class:`AbstractPhysics`: returned as it is when it is one, wrapped in
    :class:`VectorField` when it is any other callable (a function or an ``eqx.Module``), a
    :class:`~ude.physics.NoPhysics` when it is None.

    ``state_names`` is required for a callable without a ``state_names`` attribute; given with an
    ``AbstractPhysics``, it must agree. Raises ``ValueError`` saying what to pass."""
    names = None if state_names is None else tuple(state_names)
    if isinstance(known, AbstractPhysics):
        if names is not None and tuple(known.state_names) != names:
            raise ValueError(
                f"{who}: the known physics has the states {list(known.state_names)}, "
                f"not {list(names)}"
            )
        return known
    if known is None:
        if names is None:
            raise ValueError(f"{who}: with no known part (None), give states=[...] to name them")
        return NoPhysics(state_names=names)
    if isinstance(known, (Mapping, str)):
        raise ValueError(
            f"{who}: known is {type(known).__name__}; for equations as text build "
            f"ude.Equations({{'x': 'alpha*x', ...}}, parameters={{...}}) and pass that"
        )
    if not callable(known):
        raise ValueError(
            f"{who}: known must be a vector field f(t, y, args) -> dy/dt (a function, an "
            f"eqx.Module or an ude.AbstractPhysics), got {type(known).__name__}"
        )
    if names is None:
        names = getattr(known, "state_names", None)
        if names is None:
            raise ValueError(
                f"{who}: known is a plain {type(known).__name__} and has no state names; give "
                "them beside it, e.g. UDE(f, net, states=['x', 'y'])"
            )
    return VectorField(known, names)
