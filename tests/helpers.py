"""Reference systems and tools for the tests, kept apart from the code under test.

* ``REFERENCE_TERMS``: every physics system's right-hand side re-written from the textbook formulas
  in plain numpy, term by term, so a subset of terms has a reference too.
* ``CASES``: one parameter set, initial state and time span per system.
* ``scipy_reference``: the solution of a reference field by ``scipy.integrate.solve_ivp``.
* ``central_fd`` / ``random_direction``: directional derivatives of a function of a pytree.
* ``tiny_overrides``: config overrides that make a shipped config's pipeline run in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy.integrate import solve_ivp

# Tight tolerances for solves compared with a reference. The global error of an adaptive solver is
# a multiple of its local tolerance; diffrax's Dopri8 moreover saves at ``ts`` through a dense
# interpolant much less accurate than its steps (at rtol 1e-11 its error at interior save times is
# ~1e-9 while the step ends are exact to ~1e-12), hence the looser comparison tolerances.
SOLVE_RTOL = 1e-12
SOLVE_ATOL = 1e-12
REF_RTOL = 1e-10
REF_ATOL = 1e-12


def _lv(p):
    a, b, g, d = p["alpha"], p["beta"], p["gamma"], p["delta"]
    return {
        "growth": lambda y: np.array([a * y[0], 0.0]),
        "predation": lambda y: np.array([-b * y[0] * y[1], 0.0]),
        "death": lambda y: np.array([0.0, -g * y[1]]),
        "reproduction": lambda y: np.array([0.0, d * y[0] * y[1]]),
    }


def _pendulum(p):
    k, c = p["g_over_l"], p["friction"]
    return {
        "velocity": lambda y: np.array([y[1], 0.0]),
        "gravity": lambda y: np.array([0.0, -k * np.sin(y[0])]),
        "damping": lambda y: np.array([0.0, -c * y[1]]),
    }


def _sir(p):
    b, g = p["beta"], p["gamma"]
    return {
        "infection": lambda y: np.array([-b * y[0] * y[1], b * y[0] * y[1], 0.0]),
        "recovery": lambda y: np.array([0.0, -g * y[1], g * y[1]]),
    }


def _vdp(p):
    mu = p["mu"]
    return {
        "velocity": lambda y: np.array([y[1], 0.0]),
        "damping": lambda y: np.array([0.0, mu * (1 - y[0] ** 2) * y[1]]),
        "restoring": lambda y: np.array([0.0, -y[0]]),
    }


def _fhn(p):
    a, b, tau, cur = p["a"], p["b"], p["tau"], p["current"]
    return {
        "cubic": lambda y: np.array([y[0] - y[0] ** 3 / 3, 0.0]),
        "coupling": lambda y: np.array([-y[1], 0.0]),
        "input": lambda y: np.array([cur, 0.0]),
        "recovery": lambda y: np.array([0.0, (y[0] + a - b * y[1]) / tau]),
    }


def _lorenz(p):
    s, r, b = p["sigma"], p["rho"], p["beta"]
    return {
        "convection": lambda y: np.array([s * (y[1] - y[0]), 0.0, 0.0]),
        "shear": lambda y: np.array([0.0, y[0] * (r - y[2]), 0.0]),
        "dissipation": lambda y: np.array([0.0, -y[1], 0.0]),
        "heating": lambda y: np.array([0.0, 0.0, y[0] * y[1]]),
        "cooling": lambda y: np.array([0.0, 0.0, -b * y[2]]),
    }


REFERENCE_TERMS: dict[str, Callable[[dict], dict[str, Callable]]] = {
    "lotka_volterra": _lv,
    "damped_pendulum": _pendulum,
    "sir": _sir,
    "van_der_pol": _vdp,
    "fitzhugh_nagumo": _fhn,
    "lorenz": _lorenz,
}

# system name -> (parameters, y0, t1); spans are short enough to stay cheap and (for Lorenz) to keep
# chaos from amplifying the tolerance beyond what the comparison allows.
CASES: dict[str, tuple[dict[str, float], tuple[float, ...], float]] = {
    "lotka_volterra": (
        dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8),
        (0.44249296, 4.6280594),
        3.0,
    ),
    "damped_pendulum": (dict(g_over_l=9.81, friction=0.3), (1.0, 0.0), 3.0),
    "sir": (dict(beta=0.5, gamma=0.1), (0.99, 0.01, 0.0), 20.0),
    "van_der_pol": (dict(mu=1.5), (2.0, 0.0), 5.0),
    "fitzhugh_nagumo": (dict(a=0.7, b=0.8, tau=12.5, current=0.5), (-1.0, 1.0), 20.0),
    "lorenz": (dict(sigma=10.0, rho=28.0, beta=8.0 / 3.0), (1.0, 1.0, 1.0), 1.0),
}


def reference_field(system: str, params: dict, terms=None) -> Callable:
    """The numpy field ``f(t, y)`` of ``system`` summing ``terms`` (default: all)."""
    table = REFERENCE_TERMS[system](params)
    names = list(table) if terms is None else list(terms)

    def f(t, y):
        return sum((table[n](y) for n in names), np.zeros(len(y)))

    return f


def scipy_reference(
    f: Callable, y0, ts, *, method: str = "DOP853", rtol: float = REF_RTOL, atol: float = REF_ATOL
) -> np.ndarray:
    """``solve_ivp`` of ``y' = f(t, y)`` from ``y0`` at ``ts[0]``, saved at ``ts``:
    (times, state)."""
    ts = np.asarray(ts, dtype=np.float64)
    sol = solve_ivp(
        f,
        (ts[0], ts[-1]),
        np.asarray(y0, dtype=np.float64),
        method=method,
        t_eval=ts,
        rtol=rtol,
        atol=atol,
    )
    assert sol.success, sol.message
    return sol.y.T


def random_direction(key, tree):
    """A random pytree shaped like ``tree``'s array leaves, of unit global norm."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    sizes = [int(np.size(x)) for x in leaves]
    # one draw, cut into leaves: drawing per leaf compiles one random program per shape
    flat = np.asarray(jr.normal(key, (sum(sizes),), jnp.float64))
    flat = flat / np.linalg.norm(flat)
    cuts = np.cumsum(sizes)[:-1]
    v = [
        jnp.asarray(c.reshape(np.shape(x)), jnp.result_type(x))
        for c, x in zip(np.split(flat, cuts), leaves, strict=False)
    ]
    return jax.tree_util.tree_unflatten(treedef, v)


def tree_axpy(a, x, y):
    """``a * x + y`` leafwise."""
    return jax.tree_util.tree_map(lambda u, w: a * u + w, x, y)


def tree_dot(x, y):
    return sum(
        jnp.vdot(u, w)
        for u, w in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=False)
    )


def central_fd(f: Callable, x, v, eps: float = 1e-5) -> float:
    """Central difference ``(f(x + eps v) − f(x − eps v)) / (2 eps)``; error O(eps²)."""
    return float((f(tree_axpy(eps, v, x)) - f(tree_axpy(-eps, v, x))) / (2 * eps))


def tiny_overrides(path: Path, steps: int = 0) -> list[str]:
    """Overrides of the config at ``path``: few (default: no) optimiser steps, a tiny network, a
    small library, and the evaluation on the data grid (no extra compilations). The pipeline's
    plumbing runs end to end in seconds; the fit itself is tested in test_train.py."""
    from ude.config import read_yaml

    raw = read_yaml(Path(path).read_text())
    out = [
        f"train.stages=[{{kind: adam, lr: 0.01, steps: {steps}}}]",
        "train.chunk=5",
        "train.pretrain=[]",
        "train.polish=[]",  # the phases are tested in test_phases.py
        "output.figures=false",
        "evaluate.t_end=null",
        "solver.name=euler",
        "solver.fixed_steps=40",
    ]
    data = raw.get("data", {})
    if (raw.get("truth") or {}).get("system") == "lotka_volterra" and not data.get("observe"):
        # the Lotka-Volterra variants share one data grid here, hence compiled programs
        data = {**data, "dt": 0.1}
        out += ["data.t_span=[0.0, 3.0]", "data.dt=0.1", "data.samples=null"]
    if data.get("dt") is not None:
        out += [f"evaluate.dt={data['dt']}", f"discovery.dt={data['dt']}"]
    net = raw.get("model", {}).get("network", {})
    if net is not None:
        depth_list = isinstance(net.get("activation"), list)
        out += ["model.network.width=3"] + ([] if depth_list else ["model.network.depth=1"])
    if raw.get("discovery", {}).get("enabled", True):
        out += [
            "discovery.library=[{kind: polynomial, degree: 2}]",
            "discovery.lams=[0.001, 0.1]",
            "discovery.refit.stages=[{kind: lbfgs, steps: 0}]",
        ]
        if Path(path).stem != "lotka_volterra":  # the refit plumbing is exercised once
            out += ["discovery.refit.enabled=false", "discovery.criterion=paper"]
    return out


def noisy_lv_members(n: int, *, seed: int = 5, level: float = 0.02):
    """``(clean, data)``: Lotka-Volterra (the paper's parameters and u0) on ``t = 0, 0.1, …, 1``
    solved by Dopri8 at 1e-12, and ``n`` stacked redraws of 2 % relative-mean noise on it (keys
    ``jr.split(jr.key(seed), n)``): the tiny data the ensemble tests share."""
    from ude import Dataset, LotkaVolterra, RelativeMeanNoise
    from ude.solve import SolverOptions, solve
    from ude.train.ensemble import resample_noise

    ts = jnp.linspace(0.0, 1.0, 11)
    ys = solve(
        LotkaVolterra(1.3, 0.9, 1.8, 0.8),
        jnp.array([[0.44249296, 4.6280594]]),
        ts,
        SolverOptions("dopri8", rtol=1e-12, atol=1e-12),
    ).ys
    clean = Dataset(ts=ts, ys=ys, state_names=("x", "y"), y_true=ys)
    return clean, resample_noise(clean, RelativeMeanNoise(level), jr.split(jr.key(seed), n))
