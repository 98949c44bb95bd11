"""The names a config may use: shipped systems, solvers, adjoints and activations (no JAX).

:mod:`ude.config` checks names against this module so that validating a config imports nothing
further down the pipeline. It is the one source of truth for the systems' names, states,
parameters and terms: the classes of :mod:`ude.physics.systems` take their class variables from
the specs here. :data:`ude.solve.SOLVERS`, :data:`ude.solve.ADJOINTS` and
:data:`ude.nn.ACTIVATIONS` map the same names to their callables (``tests/test_registry.py``
checks that the keys agree)::

    SYSTEMS["lotka_volterra"].param_names  # ("alpha", "beta", "gamma", "delta")
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

__all__ = ["SystemSpec", "SYSTEMS", "SOLVER_NAMES", "ADJOINT_NAMES", "ACTIVATION_NAMES"]


@dataclasses.dataclass(frozen=True)
class SystemSpec:
    """What a config needs to know of a system, without building it.

    Attributes:
        name: the registry name, as a config writes it (``truth.system``).
        state_names: one name per state, in state order.
        param_names: the names of its parameters, in constructor order.
        term_names: the named additive terms of its right-hand side.
        term_formulas: per term ``"state: expression"`` (which parameters a term uses, and the
            physics classes' ``formula()``); read-only.
    """

    name: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    term_names: tuple[str, ...]
    term_formulas: Mapping[str, str] = dataclasses.field(compare=False)

    def __post_init__(self):
        if set(self.term_formulas) != set(self.term_names):
            raise ValueError(
                f"SystemSpec {self.name!r}: term_formulas has the terms "
                f"{sorted(self.term_formulas)}, term_names {sorted(self.term_names)}"
            )
        # frozen: a read-only view, so no caller can change the registry in place
        object.__setattr__(self, "term_formulas", types.MappingProxyType(dict(self.term_formulas)))


_SPECS = (
    SystemSpec(
        "lotka_volterra",
        ("x", "y"),
        ("alpha", "beta", "gamma", "delta"),
        ("growth", "predation", "death", "reproduction"),
        {
            "growth": "x: alpha*x",
            "predation": "x: -beta*x*y",
            "death": "y: -gamma*y",
            "reproduction": "y: delta*x*y",
        },
    ),
    SystemSpec(
        "damped_pendulum",
        ("theta", "omega"),
        ("g_over_l", "friction"),
        ("velocity", "gravity", "damping"),
        {
            "velocity": "theta: omega",
            "gravity": "omega: -g_over_l*sin(theta)",
            "damping": "omega: -friction*omega",
        },
    ),
    SystemSpec(
        "sir",
        ("S", "I", "R"),
        ("beta", "gamma"),
        ("infection", "recovery"),
        {"infection": "S: -beta*S*I", "recovery": "I: -gamma*I"},
    ),
    SystemSpec(
        "van_der_pol",
        ("x", "y"),
        ("mu",),
        ("velocity", "damping", "restoring"),
        {"velocity": "x: y", "damping": "y: mu*(1 - x^2)*y", "restoring": "y: -x"},
    ),
    SystemSpec(
        "fitzhugh_nagumo",
        ("v", "w"),
        ("a", "b", "tau", "current"),
        ("cubic", "coupling", "input", "recovery"),
        {
            "cubic": "v: v - v^3/3",
            "coupling": "v: -w",
            "input": "v: current",
            "recovery": "w: (v + a - b*w)/tau",
        },
    ),
    SystemSpec(
        "lorenz",
        ("x", "y", "z"),
        ("sigma", "rho", "beta"),
        ("convection", "shear", "dissipation", "heating", "cooling"),
        {
            "convection": "x: sigma*(y - x)",
            "shear": "y: x*(rho - z)",
            "dissipation": "y: -y",
            "heating": "z: x*y",
            "cooling": "z: -beta*z",
        },
    ),
    # no known physics (a pure neural ODE); its states are a constructor argument, ("x", "y") the
    # default, so a config cannot name it as a system
    SystemSpec("none", ("x", "y"), (), (), {}),
)

SYSTEMS: Mapping[str, SystemSpec] = types.MappingProxyType({s.name: s for s in _SPECS})
"""Every shipped system by registry name, in the order of :data:`ude.physics.SYSTEMS`."""

SOLVER_NAMES: tuple[str, ...] = (
    "tsit5",
    "tsit5-diffrax",
    "dopri5",
    "dopri8",
    "heun",
    "bosh3",
    "euler",
    "kvaerno5",
    "kvaerno3",
)
"""The keys of :data:`ude.solve.SOLVERS`, in order."""

ADJOINT_NAMES: tuple[str, ...] = ("recursive", "backsolve", "forward", "direct")
"""The keys of :data:`ude.solve.ADJOINTS`, in order."""

ACTIVATION_NAMES: tuple[str, ...] = (
    "tanh",
    "rbf",
    "relu",
    "gelu",
    "swish",
    "softplus",
    "sigmoid",
    "elu",
    "identity",
)
"""The keys of :data:`ude.nn.ACTIVATIONS`, in order."""
