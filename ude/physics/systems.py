"""Classic systems: Lotka–Volterra, damped pendulum, SIR, Van der Pol, FitzHugh–Nagumo, Lorenz.

Each is a final :class:`AbstractPhysics`: parameters are :class:`Parameter` fields (plain numbers
are converted to fixed parameters) and the right-hand side is a sum of named terms, any subset of
which can be kept with ``include=`` or :meth:`AbstractPhysics.keep`. Their names, states,
parameters and term formulas are the specs of :mod:`ude.registry` (what a config may name, without
JAX).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import registry
from .base import AbstractPhysics
from .parameter import Parameter, as_parameter


def _param():
    return eqx.field(converter=as_parameter)


def _vec(*components):
    """``jnp.stack(components)``, where a Python ``0`` marks a structurally zero entry.

    Built from one elementwise select per nonzero entry: a few equations to trace, and XLA fuses
    them with the arithmetic around them, where a stack (a concatenation) of explicit zeros is a
    kernel launch of its own in every Runge–Kutta stage of every solver step."""
    n = len(components)
    entries = [
        (i, jnp.asarray(c))
        for i, c in enumerate(components)
        if not (isinstance(c, (int, float)) and c == 0)
    ]
    if not entries:
        return jnp.zeros(n)
    shape = jnp.broadcast_shapes(*(c.shape for _, c in entries))
    out = None
    for i, c in entries:
        slot = (np.arange(n) == i).reshape((n,) + (1,) * len(shape))  # a constant
        term = jnp.where(slot, c, jnp.zeros((), c.dtype))
        out = term if out is None else out + term
    return out


_LOTKA_VOLTERRA = registry.SYSTEMS["lotka_volterra"]


class LotkaVolterra(AbstractPhysics):
    """Predator–prey: ``x' = αx − βxy``, ``y' = −γy + δxy`` (x prey, y predator).

    Terms: ``growth`` (αx), ``predation`` (−βxy), ``death`` (−γy), ``reproduction`` (δxy).
    The UDE paper knows ``growth`` and ``death`` only:

    >>> import jax.numpy as jnp
    >>> known = LotkaVolterra(1.3, 0.9, 1.8, 0.8, include=("growth", "death"))
    >>> print(known(0.0, jnp.array([1.0, 2.0])))  # αx and −γy at x = 1, y = 2
    [ 1.3 -3.6]
    """

    alpha: Parameter = _param()
    beta: Parameter = _param()
    gamma: Parameter = _param()
    delta: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _LOTKA_VOLTERRA.state_names
    param_names: ClassVar[tuple[str, ...]] = _LOTKA_VOLTERRA.param_names
    term_names: ClassVar[tuple[str, ...]] = _LOTKA_VOLTERRA.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_LOTKA_VOLTERRA.term_formulas)

    def terms(self, t, y):
        x, z = y[0], y[1]
        zero = 0  # a structural zero (see _vec)
        return {
            "growth": _vec(self.p("alpha") * x, zero),
            "predation": _vec(-self.p("beta") * x * z, zero),
            "death": _vec(zero, -self.p("gamma") * z),
            "reproduction": _vec(zero, self.p("delta") * x * z),
        }


_DAMPED_PENDULUM = registry.SYSTEMS["damped_pendulum"]


class DampedPendulum(AbstractPhysics):
    """``θ' = ω``, ``ω' = −(g/L) sin θ − c ω`` (angle θ, angular velocity ω).

    Terms: ``velocity`` (ω in θ'), ``gravity`` (−(g/L) sin θ), ``damping`` (−cω, c = ``friction``).
    """

    g_over_l: Parameter = _param()
    friction: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _DAMPED_PENDULUM.state_names
    param_names: ClassVar[tuple[str, ...]] = _DAMPED_PENDULUM.param_names
    term_names: ClassVar[tuple[str, ...]] = _DAMPED_PENDULUM.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_DAMPED_PENDULUM.term_formulas)

    def terms(self, t, y):
        th, om = y[0], y[1]
        zero = 0  # a structural zero (see _vec)
        return {
            "velocity": _vec(om, zero),
            "gravity": _vec(zero, -self.p("g_over_l") * jnp.sin(th)),
            "damping": _vec(zero, -self.p("friction") * om),
        }


_SIR = registry.SYSTEMS["sir"]


class SIR(AbstractPhysics):
    """Epidemic in population fractions: ``S' = −βSI``, ``I' = βSI − γI``, ``R' = γI``.

    Terms: ``infection`` (βSI moved from S to I), ``recovery`` (γI moved from I to R).
    """

    beta: Parameter = _param()
    gamma: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _SIR.state_names
    param_names: ClassVar[tuple[str, ...]] = _SIR.param_names
    term_names: ClassVar[tuple[str, ...]] = _SIR.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_SIR.term_formulas)

    def terms(self, t, y):
        s, i = y[0], y[1]
        inf = self.p("beta") * s * i
        rec = self.p("gamma") * i
        zero = 0  # a structural zero (see _vec)
        return {"infection": _vec(-inf, inf, zero), "recovery": _vec(zero, -rec, rec)}

    def formula(self):
        f = {"S": [], "I": [], "R": []}
        if "infection" in self.active_terms:
            f["S"].append("-beta*S*I")
            f["I"].append("beta*S*I")
        if "recovery" in self.active_terms:
            f["I"].append("-gamma*I")
            f["R"].append("gamma*I")
        return {k: " + ".join(v).replace("+ -", "- ") or "0" for k, v in f.items()}


_VAN_DER_POL = registry.SYSTEMS["van_der_pol"]


class VanDerPol(AbstractPhysics):
    """``x' = y``, ``y' = μ(1 − x²)y − x``.

    Terms: ``velocity`` (y in x'), ``damping`` (μ(1 − x²)y), ``restoring`` (−x).
    """

    mu: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _VAN_DER_POL.state_names
    param_names: ClassVar[tuple[str, ...]] = _VAN_DER_POL.param_names
    term_names: ClassVar[tuple[str, ...]] = _VAN_DER_POL.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_VAN_DER_POL.term_formulas)

    def terms(self, t, y):
        x, v = y[0], y[1]
        zero = 0  # a structural zero (see _vec)
        return {
            "velocity": _vec(v, zero),
            "damping": _vec(zero, self.p("mu") * (1 - x**2) * v),
            "restoring": _vec(zero, -x),
        }


_FITZHUGH_NAGUMO = registry.SYSTEMS["fitzhugh_nagumo"]


class FitzHughNagumo(AbstractPhysics):
    """``v' = v − v³/3 − w + I``, ``w' = (v + a − b w)/τ``.

    Terms: ``cubic`` (v − v³/3), ``coupling`` (−w in v'), ``input`` (I, the parameter ``current``),
    ``recovery`` ((v + a − bw)/τ).
    """

    a: Parameter = _param()
    b: Parameter = _param()
    tau: Parameter = _param()
    current: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _FITZHUGH_NAGUMO.state_names
    param_names: ClassVar[tuple[str, ...]] = _FITZHUGH_NAGUMO.param_names
    term_names: ClassVar[tuple[str, ...]] = _FITZHUGH_NAGUMO.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_FITZHUGH_NAGUMO.term_formulas)

    def terms(self, t, y):
        v, w = y[0], y[1]
        zero = 0  # a structural zero (see _vec)
        return {
            "cubic": _vec(v - v**3 / 3, zero),
            "coupling": _vec(-w, zero),
            "input": _vec(self.p("current") + zero, zero),
            "recovery": _vec(zero, (v + self.p("a") - self.p("b") * w) / self.p("tau")),
        }


_LORENZ = registry.SYSTEMS["lorenz"]


class Lorenz(AbstractPhysics):
    """``x' = σ(y − x)``, ``y' = x(ρ − z) − y``, ``z' = xy − βz``.

    Terms: ``convection`` (σ(y − x)), ``shear`` (x(ρ − z)), ``dissipation`` (−y), ``heating`` (xy),
    ``cooling`` (−βz).
    """

    sigma: Parameter = _param()
    rho: Parameter = _param()
    beta: Parameter = _param()
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    state_names: ClassVar[tuple[str, ...]] = _LORENZ.state_names
    param_names: ClassVar[tuple[str, ...]] = _LORENZ.param_names
    term_names: ClassVar[tuple[str, ...]] = _LORENZ.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_LORENZ.term_formulas)

    def terms(self, t, y):
        x, v, z = y[0], y[1], y[2]
        zero = 0  # a structural zero (see _vec)
        return {
            "convection": _vec(self.p("sigma") * (v - x), zero, zero),
            "shear": _vec(zero, x * (self.p("rho") - z), zero),
            "dissipation": _vec(zero, -v, zero),
            "heating": _vec(zero, zero, x * v),
            "cooling": _vec(zero, zero, -self.p("beta") * z),
        }


_NONE = registry.SYSTEMS["none"]


class NoPhysics(AbstractPhysics):
    """No known physics (dy/dt = 0): the known part of a pure neural ODE."""

    state_names: tuple[str, ...] = eqx.field(static=True, default=_NONE.state_names)
    include: tuple[str, ...] | None = eqx.field(default=None, static=True, kw_only=True)

    param_names: ClassVar[tuple[str, ...]] = _NONE.param_names
    term_names: ClassVar[tuple[str, ...]] = _NONE.term_names
    term_formulas: ClassVar[dict[str, str]] = dict(_NONE.term_formulas)

    def terms(self, t, y):
        return {}


# the keys are those of ude.registry.SYSTEMS, in its order (tests/test_registry.py checks it)
SYSTEMS: dict[str, type[AbstractPhysics]] = {
    "lotka_volterra": LotkaVolterra,
    "damped_pendulum": DampedPendulum,
    "sir": SIR,
    "van_der_pol": VanDerPol,
    "fitzhugh_nagumo": FitzHughNagumo,
    "lorenz": Lorenz,
    "none": NoPhysics,
}
