"""Extrapolation and error metrics: truth vs the UDE vs the discovered model.

Everything here returns plain floats / lists / dicts, ready for ``metrics.json``. The paper's
extrapolation runs each model from the true initial state to t = 50, every 0.1; errors are
reported over the training window and beyond it; oscillators get peak-height and period errors
(peaks located on a fine grid and refined by a parabola through the three points around each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .solve import SolverOptions, solve


def time_grid(t0: float, t1: float, dt: float) -> np.ndarray:
    """``t0, t0 + dt, …, t1`` (t1 included even when (t1 − t0)/dt is not whole)."""
    if not t1 > t0:
        raise ValueError(f"time_grid: t1 must be > t0, got t0={t0}, t1={t1}")
    if not dt > 0:
        raise ValueError(f"time_grid: dt must be > 0, got {dt}")
    n = int(np.floor((t1 - t0) / dt + 1e-9))
    ts = t0 + dt * np.arange(n + 1)
    if ts[-1] < t1 - 1e-9 * max(1.0, abs(t1)):
        ts = np.append(ts, t1)
    return ts


def extrapolate(vector_fields: Mapping[str, object], y0, *, t0: float = 0.0, t1: float = 50.0,
                dt: float = 0.1, options: SolverOptions | None = None, ts=None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, bool]]:
    """Solve every vector field from ``y0`` on ``[t0, t1]`` every ``dt`` (or at ``ts``).

    Returns ``(ts, {name: ys (times, state)}, {name: solved ok})``. A model that blows up is not an
    error: its ``ys`` hold ``inf`` after the failure and its flag is False.
    """
    ts = time_grid(t0, t1, dt) if ts is None else np.asarray(ts, float)
    options = options or SolverOptions("tsit5", rtol=1e-10, atol=1e-10, max_steps=100_000)
    y0 = jnp.asarray(y0)
    if y0.ndim != 1:
        raise ValueError(f"extrapolate: y0 must have shape (state,), got {y0.shape}")
    out, ok = {}, {}
    for name, vf in vector_fields.items():
        sol = solve(vf, y0, jnp.asarray(ts, dtype=y0.dtype), options)
        ys = np.asarray(sol.ys, float)
        ok[name] = bool(np.asarray(sol.ok)) and bool(np.all(np.isfinite(ys)))
        out[name] = np.where(np.isfinite(ys), ys, np.inf)
    return ts, out, ok


def rmse(pred, truth, axis=None):
    """Root-mean-square error (``inf`` if the prediction is not finite)."""
    pred = np.asarray(pred, float)
    truth = np.asarray(truth, float)
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.sqrt(np.mean((pred - truth) ** 2, axis=axis))
    return np.where(np.isfinite(d), d, np.inf)


def window_rmse(ts, pred, truth, t_split: float) -> dict[str, float]:
    """RMSE over ``t <= t_split`` ("train"), ``t > t_split`` ("beyond") and everything ("all")."""
    ts = np.asarray(ts)
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape or pred.shape[0] != ts.shape[0]:
        raise ValueError(f"window_rmse: pred {pred.shape}, truth {truth.shape} and ts {ts.shape} "
                         "must agree")
    inside = ts <= t_split + 1e-12
    out = {"all": float(rmse(pred, truth))}
    out["train"] = float(rmse(pred[inside], truth[inside])) if inside.any() else float("nan")
    out["beyond"] = float(rmse(pred[~inside], truth[~inside])) if (~inside).any() else float("nan")
    return out


def find_peaks(ts, y, *, prominence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a sampled signal: ``(times, heights)``, each refined by the parabola through
    the sample and its two neighbours. Peaks at the ends of the grid are not counted; plateaus
    count once. ``prominence`` drops maxima that rise less than this above both neighbouring
    minima (for noisy signals)."""
    ts = np.asarray(ts, float)
    y = np.asarray(y, float)
    if ts.ndim != 1 or y.shape != ts.shape:
        raise ValueError(f"find_peaks: ts and y must be 1-D of the same length, got {ts.shape}, {y.shape}")
    if y.size < 3 or not np.all(np.isfinite(y)):
        return np.empty(0), np.empty(0)
    idx = [i for i in range(1, y.size - 1) if y[i] > y[i - 1] and y[i] >= y[i + 1]]
    times, heights = [], []
    for i in idx:
        if prominence > 0:
            # the nearest minima on each side, between this peak and the next higher point
            lo = np.flatnonzero(y[:i] > y[i])
            ro = np.flatnonzero(y[i + 1:] > y[i])
            left = y[(lo[-1] + 1 if lo.size else 0):i].min()
            right = y[i + 1:(i + 1 + ro[0] if ro.size else y.size)].min()
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


def oscillation_stats(ts, y, *, skip: int = 0, prominence: float = 0.0) -> dict[str, float]:
    """Mean peak height and mean period (spacing of successive peaks) of one signal, ignoring the
    first ``skip`` peaks (transients). NaN where there are too few peaks."""
    t, h = find_peaks(ts, y, prominence=prominence)
    t, h = t[skip:], h[skip:]
    return {"n_peaks": int(t.size),
            "peak_height": float(np.mean(h)) if h.size else float("nan"),
            "period": float(np.mean(np.diff(t))) if t.size > 1 else float("nan"),
            "first_peak_time": float(t[0]) if t.size else float("nan")}


def _rel(a, b):
    return float(abs(a - b) / abs(b)) if b != 0 and np.isfinite(a) and np.isfinite(b) else float("nan")


def coefficient_errors(found: Mapping[str, Mapping[str, float]],
                       truth: Mapping[str, Mapping[str, float]]) -> dict:
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
    return {"per_term": per, "missing": missing, "spurious": spurious,
            "exact_support": not missing and not spurious,
            "max_relative_error": float(max(rels)) if rels else float("nan")}


def evaluate(truth, models: Mapping[str, object], y0, *, t_train: float, t0: float = 0.0,
             t1: float = 50.0, dt: float = 0.1, peak_dt: float = 0.01,
             options: SolverOptions | None = None, oscillator: bool = True,
             state_names: Sequence[str] | None = None,
             found_coefficients: Mapping[str, Mapping[str, float]] | None = None,
             true_coefficients: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """Extrapolate the truth and each model from the true ``y0`` and compare.

    Args:
        truth: the true vector field (e.g. the full physics module).
        models: ``{"ude": trained_ude, "discovered": discovered_model, ...}``.
        y0: the true initial state (state,).
        t_train: end of the training window (errors are split there).
        t0, t1, dt: the extrapolation grid (the paper: 0 … 50 every 0.1).
        peak_dt: the finer grid on which peaks and periods are located.
        oscillator: also report peak-height and period errors per state.
        state_names: names for the per-state entries (default: the truth's ``state_names``).
        found_coefficients, true_coefficients: ``{state: {term: coef}}`` to compare, if known.

    Returns a JSON-friendly dict::

        {"t_train": 3.0, "t1": 50.0,
         "models": {"ude": {"ok": True, "rmse": {"train", "beyond", "all"},
                            "rmse_per_state": {"x": {...}, ...},
                            "oscillation": {"x": {"peak_height", "period", "peak_height_error",
                                                   "period_error", ...}}}, ...},
         "truth": {"oscillation": {...}}, "coefficients": {...}}
    """
    names = tuple(state_names or getattr(truth, "state_names", None) or
                  [f"s{i}" for i in range(np.shape(y0)[0])])
    fields = {"__truth__": truth, **models}
    ts = time_grid(t0, t1, dt)
    ratio = dt / peak_dt
    if oscillator and abs(ratio - round(ratio)) < 1e-9:
        # one solve per model on the fine grid, the report grid is every ratio-th point of it
        fine_ts, fine_ys, ok = extrapolate(fields, y0, t0=t0, t1=t1, dt=peak_dt, options=options)
        idx = np.searchsorted(fine_ts, ts - 1e-9 * max(1.0, abs(t1)))
        if np.allclose(fine_ts[idx], ts, rtol=0, atol=1e-9 * max(1.0, abs(t1))):
            ys = {k: v[idx] for k, v in fine_ys.items()}
        else:
            ts, ys, ok = extrapolate(fields, y0, t0=t0, t1=t1, dt=dt, options=options)
    else:
        ts, ys, ok = extrapolate(fields, y0, t0=t0, t1=t1, dt=dt, options=options)
        if oscillator:
            fine_ts, fine_ys, _ = extrapolate(fields, y0, t0=t0, t1=t1, dt=peak_dt, options=options)
    y_truth = ys.pop("__truth__")
    if not ok.pop("__truth__"):
        raise ValueError("evaluate: the truth could not be solved on the extrapolation window")
    result = {"t_train": float(t_train), "t0": float(t0), "t1": float(t1), "dt": float(dt), "models": {}}
    fine = None
    if oscillator:
        fine = (fine_ts, fine_ys)
        true_osc = {s: oscillation_stats(fine_ts, fine_ys["__truth__"][:, j]) for j, s in enumerate(names)}
        result["truth"] = {"oscillation": true_osc}
    for name in models:
        entry = {"ok": ok[name], "rmse": window_rmse(ts, ys[name], y_truth, t_train),
                 "rmse_per_state": {s: window_rmse(ts, ys[name][:, j], y_truth[:, j], t_train)
                                    for j, s in enumerate(names)}}
        if fine is not None:
            osc = {}
            for j, s in enumerate(names):
                st = oscillation_stats(fine[0], fine[1][name][:, j])
                tr = true_osc[s]
                st["peak_height_error"] = _rel(st["peak_height"], tr["peak_height"])
                st["period_error"] = _rel(st["period"], tr["period"])
                osc[s] = st
            entry["oscillation"] = osc
        result["models"][name] = entry
    if true_coefficients is not None and found_coefficients is not None:
        result["coefficients"] = coefficient_errors(found_coefficients, true_coefficients)
    return result


# ------------------------------------------------------------------------------------------------
# ensemble uncertainty (members stacked along a leading axis, see ude.train.ensemble)
# ------------------------------------------------------------------------------------------------
def _spread(values: np.ndarray, ok: np.ndarray, quantiles: Sequence[float]) -> dict:
    """Mean, std and quantiles over the members (axis 0) where ``ok``; NaN when none is."""
    sel = values[np.asarray(ok, bool)]
    if sel.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return {"mean": nan, "std": nan, "quantiles": {float(q): nan for q in quantiles}}
    return {"mean": sel.mean(axis=0), "std": sel.std(axis=0),
            "quantiles": {float(q): np.quantile(sel, q, axis=0) for q in quantiles}}


def trajectory_spread(models, y0, ts, *, options: SolverOptions | None = None,
                      quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> dict:
    """The spread of an ensemble's trajectories: each member solved from ``y0`` at ``ts``.

    Args:
        models: stacked vector fields (leading member axis), e.g. ``EnsembleResult.models``.
        y0: ``(state,)`` or ``(traj, state)`` shared by all members, or ``(members, traj, state)``.
        ts: ``(times,)`` save times.
        quantiles: the quantiles reported at each time.

    Returns ``{"ts", "ys" (members, traj, times, state), "ok" (members,), "n_ok", "mean", "std",
    "quantiles": {q: (traj, times, state)}}``; members whose solve failed (or blew up) are left
    out of the statistics.
    """
    from .train.ensemble import n_members

    n = n_members(models)
    y0 = jnp.asarray(y0)
    ts = jnp.asarray(ts, dtype=y0.dtype if jnp.issubdtype(y0.dtype, jnp.floating) else None)
    options = options or SolverOptions("tsit5", rtol=1e-8, atol=1e-8)
    y0 = y0[None] if y0.ndim == 1 else y0
    if y0.ndim not in (2, 3) or (y0.ndim == 3 and y0.shape[0] != n):
        raise ValueError(f"trajectory_spread: y0 must be (state,), (traj, state) or ({n}, traj, "
                         f"state), got {np.shape(y0)}")
    per_member = y0.ndim == 3
    sols = _solve_members(models, y0, ts, options, per_member)
    ys = np.asarray(sols.ys)
    ok = np.asarray(sols.ok).reshape(n, -1).all(axis=1) & np.isfinite(ys).reshape(n, -1).all(axis=1)
    out = {"ts": np.asarray(ts), "ys": ys, "ok": ok, "n_ok": int(ok.sum())}
    out.update(_spread(ys, ok, quantiles))
    return out


@eqx.filter_jit
def _solve_members(models, y0, ts, options, per_member: bool):
    return eqx.filter_vmap(lambda m, y: solve(m, y, ts, options),
                           in_axes=(eqx.if_array(0), 0 if per_member else None))(models, y0)


def ensemble_discover(models, data, library=None, regressor=None, *, y0=None,
                      expected: Mapping[str, Sequence[str]] | None = None,
                      quantiles: Sequence[float] = (0.05, 0.5, 0.95), **discover_kwargs) -> dict:
    """Discovery on every member of an ensemble, and the spread of the coefficients found.

    Args:
        models: stacked trained UDEs (leading member axis).
        data: a shared :class:`ude.data.Dataset`, or a stacked one (one per member).
        library, regressor, discover_kwargs: as in :func:`ude.discovery.discover`.
        y0: the initial states of the trajectories regressed on: None (the data's first sample),
            shared ``(traj, state)``, or ``(members, traj, state)`` (e.g. learned ones).
        expected: ``{state: [term, ...]}``, the right structure (the paper's ``{"x": ["x*y"],
            "y": ["x*y"]}``); a member *succeeds* when it keeps exactly these terms.

    Returns ``{"discoveries" (list, None where a member's discovery failed), "ok" (members,),
    "names", "state_names", "coefficients" (members, terms, states; NaN where failed), "kept"
    (members, terms, states), "inclusion" (terms, states: fraction of ok members keeping each
    term), "mean", "std", "quantiles", and with ``expected``: "success" (members,),
    "success_rate"}``.
    """
    from .discovery import discover
    from .train.ensemble import member, n_members

    n = n_members(models)
    stacked_data = getattr(data, "ys", None) is not None and np.ndim(data.ys) == 4
    y0s = None if y0 is None else np.asarray(y0)
    per_member_y0 = y0s is not None and y0s.ndim == 3
    found = []
    for i in range(n):
        yi = None if y0s is None else (y0s[i] if per_member_y0 else y0s)
        try:
            found.append(discover(member(models, i), member(data, i) if stacked_data else data,
                                  library, regressor, y0=yi, **discover_kwargs))
        except ValueError:  # e.g. this member's trajectory cannot be solved
            found.append(None)
    ok = np.array([d is not None for d in found])
    ref = next((d for d in found if d is not None), None)
    if ref is None:
        raise ValueError("ensemble_discover: discovery failed for every member")
    coefs = np.full((n,) + ref.coefficients.shape, np.nan)
    kept = np.zeros((n,) + ref.mask.shape, bool)
    for i, d in enumerate(found):
        if d is not None:
            coefs[i], kept[i] = d.coefficients, d.mask
    out = {"discoveries": found, "ok": ok, "names": ref.names, "state_names": ref.state_names,
           "coefficients": coefs, "kept": kept, "inclusion": kept[ok].mean(axis=0)}
    out.update(_spread(coefs, ok, quantiles))
    if expected is not None:
        unknown = [s for s in expected if s not in ref.state_names]
        bad = [t for terms in expected.values() for t in terms if t not in ref.names]
        if unknown or bad:
            raise ValueError(f"ensemble_discover: expected names unknown states {unknown} or terms "
                             f"{bad}")
        want = np.zeros(ref.mask.shape, bool)
        for s, terms in expected.items():
            for t in terms:
                want[ref.names.index(t), ref.state_names.index(s)] = True
        cols = [ref.state_names.index(s) for s in ref.states]
        success = ok & np.all(kept[:, :, cols] == want[None, :, cols], axis=(1, 2))
        out["success"] = success
        out["success_rate"] = float(success.mean())
    return out
