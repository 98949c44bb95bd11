"""Extrapolation and error metrics: truth vs the UDE vs the discovered model.

The pipeline's only evaluation path (:mod:`ude.pipeline.evaluate` gathers the inputs, calls these
and writes the files). Everything here works on arrays and models and returns plain floats,
lists and dicts, ready for ``metrics.json``. The paper's extrapolation runs each model from the
true initial state to t = 50, every 0.1; errors are reported over the training window and beyond
it; oscillators get peak heights and periods (peaks refined by a parabola through the three
samples around each). Trajectories are ``(traj, times, state)`` unless noted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .data.inputs import ExperimentInputs
from .discovery.ensemble import member_spread
from .model import UDE
from .solve import SolverOptions, solve
from .train import loss_value
from .train.ensemble import n_members

__all__ = [
    "time_grid",
    "unique_times",
    "evaluation_grid",
    "extrapolation_mask",
    "solve_trajectories",
    "extrapolate",
    "along_trajectories",
    "rmse",
    "window_rmse",
    "extrapolation_errors",
    "held_out_rmse",
    "coefficient_errors",
    "true_coefficients",
    "noise_floor",
    "find_peaks",
    "oscillation_stats",
    "oscillation_comparison",
    "trajectory_spread",
    "band_stats",
    "BAND",
]


# ------------------------------------------------------------------------------------------------
# time grids
# ------------------------------------------------------------------------------------------------
def time_grid(t0: float, t1: float, dt: float) -> np.ndarray:
    """``t0, t0 + dt, …, t1`` (t1 included even when (t1 − t0)/dt is not whole).

    >>> time_grid(0.0, 1.0, 0.3)
    array([0. , 0.3, 0.6, 0.9, 1. ])
    """
    if not t1 > t0:
        raise ValueError(f"time_grid: t1 must be > t0, got t0={t0}, t1={t1}")
    if not dt > 0:
        raise ValueError(f"time_grid: dt must be > 0, got {dt}")
    n = int(np.floor((t1 - t0) / dt + 1e-9))
    ts = t0 + dt * np.arange(n + 1)
    if ts[-1] < t1 - 1e-9 * max(1.0, abs(t1)):
        ts = np.append(ts, t1)
    return ts


def unique_times(*parts) -> np.ndarray:
    """The sorted union of the times in ``parts``, times closer than 1e-9 (relative) merged.

    >>> unique_times([0.0, 0.5], [0.5, 0.25])
    array([0.  , 0.25, 0.5 ])
    """
    t = np.sort(np.concatenate([np.asarray(p, float).ravel() for p in parts]))
    tol = 1e-9 * max(1.0, float(np.max(np.abs(t))))
    return t[np.concatenate([[True], np.diff(t) > tol])]


def _horizon(data_ts: np.ndarray, t_train: float, t_end: float | None) -> float:
    # never before the training window's end or the data's last time
    return max(t_end if t_end is not None else data_ts[-1], t_train, data_ts[-1])


def evaluation_grid(
    data_ts, t_train: float, t_end: float | None, *, fit_dt: float, ext_dt: float
) -> np.ndarray:
    """The one time grid every model is solved on after training (one grid: one compilation per
    model): every ``fit_dt`` over the training window ``[data_ts[0], t_train]`` (the samples
    discovery regresses on), every ``ext_dt`` up to the extrapolation's end ``t_end`` (None: the
    data's end) and the data times ``data_ts (times,)``."""
    ts = np.asarray(data_ts, float)
    t0 = float(ts[0])
    t_end = _horizon(ts, t_train, t_end)
    n_fine = int(np.floor((t_train - t0) / fit_dt + 1e-9))
    n_ext = int(np.floor((t_end - t0) / ext_dt + 1e-9))
    return unique_times(
        t0 + fit_dt * np.arange(n_fine + 1),
        [t_train],
        t0 + ext_dt * np.arange(n_ext + 1),
        [t_end],
        ts,
    )


def extrapolation_mask(
    grid, data_ts, t_train: float, t_end: float | None, *, ext_dt: float
) -> tuple[float, np.ndarray]:
    """``(t_end, on_grid (times,))``: the extrapolation's end (as in :func:`evaluation_grid`) and
    which times of ``grid`` lie on its grid (every ``ext_dt`` from ``data_ts[0]``, and
    ``t_end``)."""
    ts = np.asarray(data_ts, float)
    t0 = float(ts[0])
    t_end = _horizon(ts, t_train, t_end)
    ext = unique_times(
        t0 + ext_dt * np.arange(int(np.floor((t_end - t0) / ext_dt + 1e-9)) + 1), [t_end]
    )
    on_grid = np.abs(grid[:, None] - ext[None, :]).min(axis=1) <= 1e-9 * max(1.0, t_end)
    return t_end, on_grid


# ------------------------------------------------------------------------------------------------
# solves
# ------------------------------------------------------------------------------------------------
def solve_trajectories(model, y0, ts, options: SolverOptions) -> tuple[np.ndarray, bool]:
    """``model`` solved from ``y0`` ``(state,)`` or ``(traj, state)`` at ``ts (times,)``:
    ``(ys, ok)``. A model that blows up is not an error: ``ys`` holds ``inf`` after the failure
    and ``ok`` is False."""
    sol = solve(model, jnp.asarray(y0), jnp.asarray(ts), options)
    ys = np.asarray(sol.ys, float)
    ok = bool(np.all(np.asarray(sol.ok))) and bool(np.all(np.isfinite(ys)))
    return np.where(np.isfinite(ys), ys, np.inf), ok


def extrapolate(
    vector_fields: Mapping[str, object],
    y0,
    *,
    t0: float = 0.0,
    t1: float = 50.0,
    dt: float = 0.1,
    options: SolverOptions | None = None,
    ts=None,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, bool]]:
    """Solve every vector field from ``y0`` (``(state,)`` or ``(traj, state)``) on ``[t0, t1]``
    every ``dt`` (or at ``ts``): ``(ts, {name: ys}, {name: solved ok})``, as
    :func:`solve_trajectories`."""
    ts = time_grid(t0, t1, dt) if ts is None else np.asarray(ts, float)
    options = options or SolverOptions("tsit5", rtol=1e-10, atol=1e-10, max_steps=100_000)
    if np.ndim(y0) not in (1, 2):
        raise ValueError(f"extrapolate: y0 must be (state,) or (traj, state), got {np.shape(y0)}")
    ys, ok = {}, {}
    for name, vf in vector_fields.items():
        ys[name], ok[name] = solve_trajectories(vf, y0, ts, options)
    return ts, ys, ok


@eqx.filter_jit
def _along(fn, ts, ys):
    return jax.vmap(jax.vmap(fn, in_axes=(0, 0)), in_axes=(None, 0))(ts, ys)


def along_trajectories(fn: Callable, ts, ys) -> np.ndarray:
    """``fn(t, y)`` (e.g. a model's missing term) at every point of ``ys`` ``(traj, times,
    state)`` saved at ``ts (times,)``: ``(traj, times, outputs)``."""
    return np.asarray(_along(fn, jnp.asarray(ts), jnp.asarray(ys)), float)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def rmse(pred, truth, axis=None):
    """Root-mean-square error (``inf`` if the prediction is not finite)."""
    pred = np.asarray(pred, float)
    truth = np.asarray(truth, float)
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.sqrt(np.mean((pred - truth) ** 2, axis=axis))
    return np.where(np.isfinite(d), d, np.inf)


def window_rmse(ts, pred, truth, t_split: float, *, axis: int = 0) -> dict[str, float]:
    """RMSE over ``t <= t_split`` ("train"), ``t > t_split`` ("beyond", NaN when empty) and
    everything ("all"); ``ts (times,)`` indexes axis ``axis`` of ``pred`` and ``truth``.

    >>> window_rmse([0.0, 1.0, 2.0], np.array([1.0, 1.0, 3.0]), np.zeros(3), t_split=1.0)
    {'all': 1.9148542155126762, 'train': 1.0, 'beyond': 3.0}
    """
    ts = np.asarray(ts)
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape or pred.shape[axis] != ts.shape[0]:
        raise ValueError(
            f"window_rmse: pred {pred.shape}, truth {truth.shape} and ts {ts.shape} "
            f"must agree (times on axis {axis})"
        )
    inside = ts <= t_split + 1e-12
    at = (slice(None),) * axis
    out = {"all": float(rmse(pred, truth))}
    out["train"] = (
        float(rmse(pred[at + (inside,)], truth[at + (inside,)])) if inside.any() else float("nan")
    )
    out["beyond"] = (
        float(rmse(pred[at + (~inside,)], truth[at + (~inside,)]))
        if (~inside).any()
        else float("nan")
    )
    return out


def extrapolation_errors(
    ts, predictions: Mapping[str, np.ndarray], truth, t_train: float, *, primary: str
) -> dict[str, float]:
    """Every model's :func:`window_rmse` against ``truth`` ``(traj, times, state)``, split at
    ``t_train``: ``rmse``, ``rmse_train`` and ``rmse_beyond`` of the ``primary`` model, the same
    prefixed ``<name>_`` for the others."""
    out = {}
    for name, pred in predictions.items():
        w = window_rmse(ts, pred, truth, t_train, axis=1)
        pre = "" if name == primary else f"{name}_"
        out.update(
            {
                f"{pre}rmse": w["all"],
                f"{pre}rmse_train": w["train"],
                f"{pre}rmse_beyond": w["beyond"],
            }
        )
    return out


def held_out_rmse(pred, obs, mask) -> float | None:
    """The RMSE of ``pred`` against the observed values of ``obs`` (where ``mask``, all three
    ``(traj, times, state)``); None when nothing is observed."""
    diff = (np.asarray(pred) - np.asarray(obs))[np.asarray(mask)]
    return float(np.sqrt(np.mean(diff**2))) if diff.size else None


def _rel(a, b):
    if b != 0 and np.isfinite(a) and np.isfinite(b):
        return float(abs(a - b) / abs(b))
    return float("nan")


def coefficient_errors(
    found: Mapping[str, Mapping[str, float]], truth: Mapping[str, Mapping[str, float]]
) -> dict:
    """Compare discovered ``{state: {term: coef}}`` with the truth.

    Returns ``{"per_term": {state: {term: {"true", "found", "relative_error"}}}, "missing": [...],
    "spurious": [...], "exact_support": bool, "max_relative_error": float}``. A true term that was
    not found has relative error 1; spurious terms are listed as ``"state: term"``.
    """
    per, missing, spurious, rels = {}, [], [], []
    for s in sorted(set(truth) | set(found)):
        t_terms = dict(truth.get(s, {}))
        f_terms = dict(found.get(s, {}))
        per[s] = {}
        for term, c in t_terms.items():
            got = f_terms.get(term)
            if got is None or got == 0:
                missing.append(f"{s}: {term}")
                rel = 1.0
                got = 0.0
            else:
                rel = _rel(got, c)
            rels.append(rel)
            per[s][term] = {"true": float(c), "found": float(got), "relative_error": rel}
        for term, c in f_terms.items():
            if term not in t_terms and c != 0:
                spurious.append(f"{s}: {term}")
                per[s][term] = {"true": 0.0, "found": float(c), "relative_error": float("inf")}
    return {
        "per_term": per,
        "missing": missing,
        "spurious": spurious,
        "exact_support": not missing and not spurious,
        "max_relative_error": float(max(rels)) if rels else float("nan"),
    }


@eqx.filter_jit
def _library_and_target(library, fn, pts, n_states: int, input_names):
    if not input_names:
        return library(pts), jax.vmap(lambda y: fn(0.0, y))(pts)

    def one(p):  # the inputs' values as the args a vector field reads them from
        args = ExperimentInputs(None, dict(zip(input_names, p[n_states:], strict=True)))
        return fn(0.0, p[:n_states], args)

    return library(pts), jax.vmap(one)(pts)


def true_coefficients(
    library,
    fn: Callable | None,
    ys,
    states: Sequence[str],
    inputs=None,
    input_names: Sequence[str] = (),
) -> dict | None:
    """``{state: {term: coef}}`` of the true missing term ``fn(t, y)`` in ``library``, by least
    squares on random points of the box the trajectories ``ys (..., state)`` span (a curve alone
    would leave the library rank-deficient); None when there is no term or it is not in the
    library's span. A library over states and inputs takes the inputs' values at the same
    samples, ``inputs (..., input)`` named ``input_names`` (``fn(t, y, args)`` reads them)."""
    ys = np.asarray(ys)
    if fn is None or ys.size == 0:
        return None
    n_states = ys.shape[-1]
    ys = ys.reshape(-1, ys.shape[-1])
    if input_names:
        ys = np.concatenate([ys, np.asarray(inputs).reshape(ys.shape[0], -1)], axis=1)
    lo, hi = ys.min(axis=0), ys.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    pts = np.random.default_rng(0).uniform(
        lo - pad, hi + pad, size=(max(400, 20 * library.n_terms), ys.shape[1])
    )
    theta, u = map(
        np.asarray,
        _library_and_target(library, fn, jnp.asarray(pts), n_states, tuple(input_names)),
    )
    coef, *_ = np.linalg.lstsq(theta, u, rcond=None)
    resid = np.linalg.norm(theta @ coef - u) / max(np.linalg.norm(u), 1e-300)
    if resid > 1e-6:
        return None
    scale = max(np.abs(coef).max(), 1e-300)
    return {
        s: {
            n: float(round(c, 10))
            for n, c in zip(library.names, coef[:, j], strict=True)
            if abs(c) > 1e-8 * scale
        }
        for j, s in enumerate(states)
    }


def noise_floor(truth, data, strategy) -> float:
    """The loss ``strategy`` gives the true system (every term of ``truth``, no network) on
    ``data``: what a perfect model scores on noisy data."""
    return loss_value(UDE(truth.keep(*truth.term_names), None), data, strategy)


# ------------------------------------------------------------------------------------------------
# oscillations
# ------------------------------------------------------------------------------------------------
def find_peaks(ts, y, *, prominence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a sampled signal: ``(times, heights)``, each refined by the parabola through
    the sample and its two neighbours. Peaks at the ends of the grid are not counted; plateaus
    count once. ``prominence`` drops maxima that rise less than this above both neighbouring
    minima (for noisy signals)."""
    ts = np.asarray(ts, float)
    y = np.asarray(y, float)
    if ts.ndim != 1 or y.shape != ts.shape:
        raise ValueError(
            f"find_peaks: ts and y must be 1-D of the same length, got {ts.shape}, {y.shape}"
        )
    if y.size < 3 or not np.all(np.isfinite(y)):
        return np.empty(0), np.empty(0)
    idx = [i for i in range(1, y.size - 1) if y[i] > y[i - 1] and y[i] >= y[i + 1]]
    times, heights = [], []
    for i in idx:
        if prominence > 0:
            # the nearest minima on each side, between this peak and the next higher point
            lo = np.flatnonzero(y[:i] > y[i])
            ro = np.flatnonzero(y[i + 1 :] > y[i])
            left = y[(lo[-1] + 1 if lo.size else 0) : i].min()
            right = y[i + 1 : (i + 1 + ro[0] if ro.size else y.size)].min()
            if y[i] - max(left, right) < prominence:
                continue
        y0, y1, y2 = y[i - 1], y[i], y[i + 1]
        h = ts[i + 1] - ts[i]
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
        shift = float(np.clip(shift, -1.0, 1.0))
        times.append(ts[i] + shift * h)
        heights.append(y1 - 0.25 * (y0 - y2) * shift)
    return np.asarray(times), np.asarray(heights)


def oscillation_stats(ts, y, *, skip: int = 0, prominence: float = 0.0) -> dict[str, int | float]:
    """Mean peak height and mean period (spacing of successive peaks) of one signal, ignoring the
    first ``skip`` peaks (transients). NaN where there are too few peaks."""
    t, h = find_peaks(ts, y, prominence=prominence)
    t, h = t[skip:], h[skip:]
    return {
        "n_peaks": int(t.size),
        "peak_height": float(np.mean(h)) if h.size else float("nan"),
        "period": float(np.mean(np.diff(t))) if t.size > 1 else float("nan"),
        "first_peak_time": float(t[0]) if t.size else float("nan"),
    }


def oscillation_comparison(ts, truth, pred, state_names: Sequence[str]) -> dict:
    """Peak heights and periods of ``pred`` next to the truth's, ``{state: {"true_peak_height",
    "peak_height", "true_period", "period"}}``, for the states whose true signal has at least two
    peaks; ``truth`` and ``pred`` are one trajectory ``(times, state)`` at ``ts``."""
    out = {}
    for j, s in enumerate(state_names):
        tr = oscillation_stats(ts, truth[:, j])
        if tr["n_peaks"] < 2:
            continue
        st = oscillation_stats(ts, pred[:, j])
        out[s] = {
            "true_peak_height": tr["peak_height"],
            "peak_height": st["peak_height"],
            "true_period": tr["period"],
            "period": st["period"],
        }
    return out


# ------------------------------------------------------------------------------------------------
# ensemble uncertainty (members stacked along a leading axis, see ude.train.ensemble)
# ------------------------------------------------------------------------------------------------
BAND = (0.05, 0.5, 0.95)
"""The quantiles of an ensemble's trajectory band: 5 %, 50 % and 95 %."""


def trajectory_spread(
    models, y0, ts, *, options: SolverOptions | None = None, quantiles: Sequence[float] = BAND
) -> dict:
    """The spread of an ensemble's trajectories: each member solved from ``y0`` at ``ts``.

    Args:
        models: stacked vector fields (leading member axis), e.g. ``EnsembleFitResult.models``.
        y0: ``(state,)`` or ``(traj, state)`` shared by all members, or ``(members, traj, state)``.
        ts: ``(times,)`` save times.
        quantiles: the quantiles reported at each time.

    Returns ``{"ts", "ys" (members, traj, times, state), "ok" (members,), "n_ok", "mean", "std",
    "quantiles": {q: (traj, times, state)}}``; members whose solve failed (or blew up) are left
    out of the statistics.
    """
    n = n_members(models)
    y0 = jnp.asarray(y0)
    ts = jnp.asarray(ts, dtype=y0.dtype if jnp.issubdtype(y0.dtype, jnp.floating) else None)
    options = options or SolverOptions("tsit5", rtol=1e-8, atol=1e-8)
    y0 = y0[None] if y0.ndim == 1 else y0
    if y0.ndim not in (2, 3) or (y0.ndim == 3 and y0.shape[0] != n):
        raise ValueError(
            f"trajectory_spread: y0 must be (state,), (traj, state) or ({n}, traj, "
            f"state), got {np.shape(y0)}"
        )
    per_member = y0.ndim == 3
    sols = _solve_members(models, y0, ts, options, per_member)
    ys = np.asarray(sols.ys)
    ok = np.asarray(sols.ok).reshape(n, -1).all(axis=1) & np.isfinite(ys).reshape(n, -1).all(axis=1)
    out = {"ts": np.asarray(ts), "ys": ys, "ok": ok, "n_ok": int(ok.sum())}
    out.update(member_spread(ys, ok, quantiles))
    return out


@eqx.filter_jit
def _solve_members(models, y0, ts, options, per_member: bool):
    return eqx.filter_vmap(
        lambda m, y: solve(m, y, ts, options), in_axes=(eqx.if_array(0), 0 if per_member else None)
    )(models, y0)


def band_stats(lo, mid, hi, state_names: Sequence[str]) -> dict:
    """The :data:`BAND` quantiles ``lo``, ``mid``, ``hi`` ``(traj, times, state)`` of an
    ensemble's trajectories summed up per state: their values at the last time of the first
    trajectory (``p05``, ``p50``, ``p95``) and ``band_rms``, the RMS over all times and
    trajectories of the band's width ``hi − lo``."""
    return {
        s: {
            "p05": lo[0, -1, j],
            "p50": mid[0, -1, j],
            "p95": hi[0, -1, j],
            "band_rms": float(np.sqrt(np.mean((hi[..., j] - lo[..., j]) ** 2))),
        }
        for j, s in enumerate(state_names)
    }
