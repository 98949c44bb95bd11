"""The abstract base of known-physics modules."""

from __future__ import annotations

import abc
import copy

import equinox as eqx
import jax.numpy as jnp

from .._types import Array, State
from .parameter import Parameter


class AbstractPhysics(eqx.Module):
    """Known physics as a diffrax vector field ``(t, y, args) -> dy/dt``.

    A concrete system declares

    * ``state_names``: one name per state, e.g. ``("x", "y")``;
    * ``param_names``: the names of its :class:`Parameter` fields;
    * ``term_names``: the named additive terms of its right-hand side;
    * ``terms(t, y)``: a dict ``term name -> contribution to dy/dt`` (a full state vector).

    ``include`` selects which terms the vector field sums, so a *part* of a system is the same class
    with fewer terms: ``LotkaVolterra(...).keep("growth", "death")`` is the UDE paper's known part.
    """

    # class variables for a shipped system, fields (or properties) for one built at run time
    # (:class:`~ude.physics.Equations`, :class:`~ude.physics.VectorField`)
    state_names: eqx.AbstractVar[tuple[str, ...]]
    param_names: eqx.AbstractVar[tuple[str, ...]]
    term_names: eqx.AbstractVar[tuple[str, ...]]
    include: eqx.AbstractVar[tuple[str, ...] | None]

    @property
    def term_formulas(self) -> dict[str, str]:
        """Per term ``"state: expression"`` (a class variable of each shipped system)."""
        raise NotImplementedError(f"{type(self).__name__} defines no term_formulas")

    def __check_init__(self):
        if self.include is not None:
            _check_terms(self, self.include)

    @abc.abstractmethod
    def terms(self, t, y: State) -> dict[str, State]:
        """Every term's contribution to dy/dt (all terms, whatever ``include`` says)."""

    def __call__(self, t, y: State, args=None) -> State:
        contributions = self.terms(t, y)
        active = [contributions[name] for name in self.active_terms]
        if not active:
            return jnp.zeros_like(y)
        out = active[0]
        for c in active[1:]:
            out = out + c
        return out.astype(y.dtype)

    # ---- conveniences -------------------------------------------------------------------------
    @property
    def active_terms(self) -> tuple[str, ...]:
        """The terms this vector field sums (all of them unless ``include`` was given)."""
        return self.term_names if self.include is None else tuple(self.include)

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    def parameter(self, name: str) -> Parameter:
        """The :class:`Parameter` called ``name`` (a field of the same name, for a shipped
        system)."""
        return getattr(self, name)

    def p(self, name: str) -> Array:
        """The (constrained) value of parameter ``name``."""
        return self.parameter(name).value

    def parameters(self) -> dict[str, float]:
        """Parameter values as plain floats (for reports)."""
        return {n: float(self.p(n)) for n in self.param_names}

    def keep(self, *names: str) -> AbstractPhysics:
        """A copy that sums only the named terms."""
        _check_terms(self, names)
        # include is a static field (no tree_at) and a run-time system has its own __init__ (no
        # dataclasses.replace): a shallow copy with the one field set
        new = copy.copy(self)
        object.__setattr__(new, "include", tuple(names))
        return new

    def drop(self, *names: str) -> AbstractPhysics:
        """A copy without the named terms."""
        _check_terms(self, names)
        return self.keep(*[n for n in self.active_terms if n not in names])

    def with_params(self, **updates) -> AbstractPhysics:
        """A copy with parameters replaced. Values may be numbers or :class:`Parameter` objects;
        a number keeps the old parameter's trainable/positive flags."""
        unknown = sorted(set(updates) - set(self.param_names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown parameter(s) {unknown}; "
                f"expected some of {list(self.param_names)}"
            )
        new = self
        for name, v in updates.items():
            old = self.parameter(name)
            v = v if isinstance(v, Parameter) else old.with_value(v)
            new = eqx.tree_at(lambda m, name=name: m.parameter(name), new, v)
        return new

    def set_trainable(self, *names: str, positive: bool | None = None) -> AbstractPhysics:
        """A copy in which the named parameters (default: all) are trainable."""
        names = names or self.param_names
        unknown = sorted(set(names) - set(self.param_names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown parameter(s) {unknown}; "
                f"expected some of {list(self.param_names)}"
            )
        updates = {}
        for n in names:
            old = self.parameter(n)
            pos = old.positive if positive is None else positive
            updates[n] = Parameter(old.value, trainable=True, positive=pos)
        return self.with_params(**updates)

    def formula(self) -> dict[str, str]:
        """Human-readable right-hand side, e.g. ``{"x": "alpha*x", "y": "-gamma*y"}``."""
        per_state = {s: [] for s in self.state_names}
        for name in self.active_terms:
            state, expr = self.term_formulas[name].split(":", 1)
            per_state[state.strip()].append(expr.strip())
        return {s: " ".join(_join(per_state[s])) or "0" for s in self.state_names}


def _join(exprs):
    out = []
    for i, e in enumerate(exprs):
        if i == 0:
            out.append(e)
        elif e.startswith("-"):
            out.append("- " + e[1:])
        else:
            out.append("+ " + e)
    return out


def _check_terms(physics, names):
    kind = type(physics).__name__
    unknown = [n for n in names if n not in physics.term_names]
    if unknown:
        raise ValueError(
            f"{kind}: unknown term(s) {unknown}; its terms are {list(physics.term_names)}"
        )
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        # a repeated term would be summed twice
        raise ValueError(f"{kind}: duplicate term(s) {duplicates} in include")
