"""The pipeline's evaluate stage: solve the fitted (and discovered) models on the run's evaluation
grid, compare them with the truth or the held-out data, and write ``results.npz``.

The metrics are computed by :mod:`ude.evaluate` (and an ensemble's discovery by
:mod:`ude.discovery.ensemble`); this module gathers their inputs from the run and assembles the
``metrics.json`` blocks.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from .. import data as data_mod, evaluate as ev
from .._io import atomic_write_bytes
from ..config import ExperimentConfig
from ..discovery.ensemble import coefficient_spread, discover_members
from ..train.ensemble import member
from .builders import (
    build_eval_options,
    build_lams,
    build_library,
    build_phases,
    build_regressor,
    build_truth,
    true_missing,
)
from .discover import DiscoveryOutcome, regression_samples
from .fit import EnsembleOutcome, FitOutcome
from .grid import evaluation_grid, evaluation_starts, extrapolation_times
from .progress import Log
from .rundir import FILES

__all__ = ["Evaluation", "evaluate_run", "ensemble_metrics"]


@dataclasses.dataclass
class Evaluation:
    """What the evaluate stage leaves: ``arrays`` (results.npz, what the figures are drawn from)
    and ``metrics`` (metrics.json, before the drivers add the status and the wall time)."""

    arrays: dict[str, np.ndarray]
    metrics: dict


@dataclasses.dataclass
class _Solves:
    """Every model solved once on the evaluation grid ``ts`` from the fitted initial states (the
    first ``n`` trajectories) and, for simulated data, the true ones (the last ``n``)."""

    ts: np.ndarray
    y0: np.ndarray  # (2n or n, state)
    t_end: float
    on_grid: np.ndarray  # which times of ts are on the extrapolation grid
    ys: dict[str, np.ndarray]  # (2n or n, times, state) per model
    ok: dict[str, bool]
    n: int


def _solve_models(cfg: ExperimentConfig, data, train, extra, models: dict) -> _Solves:
    # one grid and one solve per model (see grid.evaluation_grid); the stacked initial states
    # give the fit and the held-out predictions (fitted y0) and the extrapolation (true y0)
    ts = evaluation_grid(cfg, data, train)
    t_end, on_grid = extrapolation_times(cfg, data, train, ts)
    y0, n = evaluation_starts(cfg, train, extra)
    _, ys, ok = ev.extrapolate(models, y0, ts=ts, options=build_eval_options(cfg))
    return _Solves(ts, y0, t_end, on_grid, ys, ok, n)


def evaluate_run(
    cfg: ExperimentConfig,
    out: Path,
    data,
    train,
    held,
    fitted: FitOutcome,
    found: DiscoveryOutcome | None,
    *,
    log: Log = None,
) -> Evaluation:
    """Compute everything the report needs: trajectories, missing terms, extrapolation and errors;
    write ``results.npz``.

    ``train`` and ``held`` are :func:`~ude.pipeline.builders.split_data`'s windows of ``data``;
    the extrapolation's model is the discovered one when there is one, else the fitted UDE.
    """
    truth = build_truth(cfg)
    final = "discovered" if found is not None else "ude"
    models = (
        {"ude": fitted.model} if found is None else {"ude": fitted.model, "discovered": found.model}
    )
    t_tr = float(np.asarray(train.ts)[-1])
    r: dict[str, np.ndarray] = {
        "state_names": np.asarray(cfg.state_names),
        "data_ts": np.asarray(data.ts),
        "data_ys": np.asarray(data.ys),
        "data_mask": np.asarray(data.mask),
        "t_train_end": np.asarray(t_tr),
    }
    if data.y_true is not None:
        r["data_y_true"] = np.asarray(data.y_true)
    s = _solve_models(cfg, data, train, fitted.extra, models)
    inside = s.ts <= t_tr + 1e-9 * max(1.0, s.t_end)
    r["fit_ts"], r["fit_ys"] = s.ts[inside], s.ys["ude"][: s.n, inside]
    r["ext_ts"] = s.ts[s.on_grid]
    for name in models:
        r[f"ext_{name}"] = s.ys[name][-s.n :][:, s.on_grid]
    missing_fn = true_missing(cfg, truth)
    r.update(_missing_terms(fitted.model, missing_fn, found, r["fit_ts"], r["fit_ys"]))

    extrapolation = {
        "t_end": s.t_end,
        "model": final,
        "ok": s.ok[final],
        "rmse": None,
        "reference": None,
    }
    if truth is not None:
        r["ext_truth"] = _truth_on(cfg, truth, data, r["ext_ts"], s.y0[-s.n :])
        extrapolation.update(
            ev.extrapolation_errors(
                r["ext_ts"],
                {name: r[f"ext_{name}"] for name in models},
                r["ext_truth"],
                t_tr,
                primary=final,
            )
        )
        extrapolation["reference"] = "truth"
        osc = ev.oscillation_comparison(
            r["ext_ts"], r["ext_truth"][0], r[f"ext_{final}"][0], cfg.state_names
        )
        if osc:
            extrapolation["oscillation"] = osc
    if held is not None:
        extrapolation.update(_held_out(data, t_tr, s, final, real=truth is None))
    strategy = build_phases(cfg)[-1][1]  # final_loss is the last phase's loss: so is the floor
    metrics = {
        "name": cfg.name,
        **fit_metrics(cfg, fitted),
        "noise_floor": None if truth is None else ev.noise_floor(truth, train, strategy),
        "discovered": None,
        "extrapolation": extrapolation,
    }
    if found is not None:
        metrics.update(discovery_metrics(cfg, data, found, missing_fn))
    if fitted.ensemble is not None:
        metrics["ensemble"], arrays = ensemble_metrics(cfg, data, train, fitted.ensemble)
        r.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **r)
    atomic_write_bytes(out / FILES["results"], buf.getvalue())
    return Evaluation(r, metrics)


def fit_metrics(cfg: ExperimentConfig, fitted: FitOutcome) -> dict:
    """metrics.json's fit entries: the final loss, the fit's steps and stages, and the learned
    physics parameters."""
    return {
        "final_loss": fitted.info["final_loss"],
        "fit": {
            k: fitted.info.get(k)
            for k in ("steps", "stages", "stopped", "rejected", "wall_seconds")
        },
        "parameters": {
            p: float(fitted.model.known.p(p))
            for p in cfg.model.parameters
            if p in cfg.model.trainable
        },
    }


def _missing_terms(model, missing_fn, found, ts, ys) -> dict[str, np.ndarray]:
    """The learned, true and discovered missing terms along the fitted trajectories ``ys``
    (those that exist; none when the model has no network or its trajectory blew up)."""
    if model.correction is None or not np.all(np.isfinite(ys)):
        return {}
    out = {"u_learned": ev.along_trajectories(model.missing, ts, ys)}
    if missing_fn is not None:
        out["u_true"] = ev.along_trajectories(missing_fn, ts, ys)
    if found is not None:
        out["u_discovered"] = ev.along_trajectories(found.model.missing, ts, ys)
    return out


def _truth_on(cfg: ExperimentConfig, truth, data, ext_ts, y0_ext) -> np.ndarray:
    """The noise-free truth on the extrapolation grid ``ext_ts`` from the true initial states
    ``y0_ext (traj, state)``: the dataset's own ``y_true`` when the grids coincide, else a solve
    at the truth's tolerance."""
    ts_data = np.asarray(data.ts)
    if (
        data.y_true is not None
        and ext_ts.shape == ts_data.shape
        and np.allclose(ext_ts, ts_data, rtol=0, atol=1e-9)
    ):
        return np.asarray(data.y_true)
    return np.asarray(
        data_mod.simulate(
            truth, y0_ext, ext_ts, rtol=cfg.truth.tolerance, atol=cfg.truth.tolerance
        ).y_true
    )


def _held_out(data, t_tr: float, s: _Solves, final: str, *, real: bool) -> dict:
    """The RMSE on the observed data after the training window, of the extrapolation's model
    (and of the UDE beside a discovered model); for real data it is the extrapolation's RMSE."""
    ts_data = np.asarray(data.ts)
    at_data = np.abs(s.ts[None, :] - ts_data[:, None]).argmin(axis=1)
    sel = ts_data > t_tr + 1e-12
    mask, obs = np.asarray(data.mask)[:, sel], np.asarray(data.ys)[:, sel]
    rmse = {
        name: ev.held_out_rmse(ys[: s.n][:, at_data[sel]], obs, mask) for name, ys in s.ys.items()
    }
    out = {"held_out_rmse": rmse[final]}
    if final != "ude":
        out["ude_held_out_rmse"] = rmse["ude"]
    if real:
        out.update(rmse=rmse[final], reference="held-out data")
    return out


def discovery_metrics(
    cfg: ExperimentConfig, data, found: DiscoveryOutcome, missing_fn, samples=None
) -> dict:
    """metrics.json's discovery entries: the discovered terms before and after the refit, the
    equations, the refit's loss and parameters, and (for a simulated truth whose missing term is
    in the library) the true coefficients and the errors of the discovered ones (``samples``:
    where the library is compared, default the truth of ``data``)."""
    out = {
        "discovered": found.info["discovered"],
        "discovered_before_refit": found.info["before_refit"],
        "equations": found.info["equations"],
        "refit_loss": found.info.get("refit_loss"),
    }
    if cfg.discovery.refit.train_known or cfg.model.trainable:
        out["refit_parameters"] = {
            p: float(found.model.known.p(p))
            for p in set(cfg.discovery.refit.train_known) | set(cfg.model.trainable)
        }
    if samples is None:
        samples = np.asarray(data.y_true) if data.y_true is not None else np.empty((0,))
    # ``samples``: the true states, or ``(states, inputs)`` for experiments with inputs
    states, inputs = samples if isinstance(samples, tuple) else (samples, None)
    true_coef = ev.true_coefficients(
        build_library(cfg),
        missing_fn,
        states,
        cfg.state_names,
        inputs=inputs,
        input_names=cfg.input_names if inputs is not None else (),
    )
    if true_coef is not None:
        outs = set(found.info.get("states", cfg.state_names))
        true_coef = {s: c for s, c in true_coef.items() if s in outs}
        out["true_missing"] = true_coef
        out["coefficients"] = ev.coefficient_errors(found.info["discovered"], true_coef)
    return out


# ------------------------------------------------------------------------------------------------
# an ensemble's spread
# ------------------------------------------------------------------------------------------------
def ensemble_metrics(cfg: ExperimentConfig, data, train, ens: EnsembleOutcome) -> tuple[dict, dict]:
    """The ensemble's uncertainty: ``(the "ensemble" block of metrics.json, arrays for
    results.npz)``.

    Every member is solved (one vmapped solve) on the evaluation grid from its fitted initial
    states on the run's training data and, for simulated data, the true ones, as the run's model
    is in :func:`evaluate_run`. ``trajectory_spread[state]`` gives the members' 5 %, 50 % and
    95 % quantiles at the end of the extrapolation (first trajectory) and ``band_rms``, the RMS
    over the extrapolation grid (all trajectories) of the 5-95 % band's width. With discovery
    on, ``coefficient_spread`` repeats discovery's regression for every member on its own
    trajectory (the λ sweep and the ``paper``/``aicc``/``knee`` pick; ``simulation`` is replaced
    by ``paper``, and nothing is refitted): per state and term, the fraction of members keeping
    the term (``inclusion``) and the mean and std of its coefficient over those members.
    """
    ts = evaluation_grid(cfg, data, train)
    t_end, on_grid = extrapolation_times(cfg, data, train, ts)
    starts = [evaluation_starts(cfg, train, member(ens.extra, i)) for i in range(ens.n)]
    n = starts[0][1]
    sp = ev.trajectory_spread(
        ens.models,
        np.stack([y0 for y0, _ in starts]),
        ts,
        options=build_eval_options(cfg),
        quantiles=ev.BAND,
    )
    ys, ok = np.asarray(sp["ys"], float), np.asarray(sp["ok"], bool)
    lo, mid, hi = (np.asarray(sp["quantiles"][q], float)[-n:][:, on_grid] for q in ev.BAND)
    block = {
        "members": ens.n,
        "final_losses": ens.final_losses,
        "best_member": ens.best,
        **(
            {"training_losses": ens.info["training_losses"]}
            if "training_losses" in ens.info
            else {}
        ),
        "failed": ens.info.get("failed", {}),
        "redraw_noise": cfg.parallel.redraw_noise,
        "spread_t": t_end,
        "members_solved": int(ok.sum()),
        "trajectory_spread": ev.band_stats(lo, mid, hi, cfg.state_names),
        "coefficient_spread": None,
    }
    arrays = {
        "ensemble_final_losses": ens.final_losses,
        "ensemble_ok": ok,
        "ext_ensemble_p05": lo,
        "ext_ensemble_p50": mid,
        "ext_ensemble_p95": hi,
    }
    if cfg.discovery.enabled and cfg.model.network is not None:
        block["coefficient_spread"] = _member_discovery(cfg, ens, ts, ys, train, n)
    return block, arrays


def _member_discovery(cfg: ExperimentConfig, ens: EnsembleOutcome, ts, ys, train, n: int) -> dict:
    """Discovery's regression for every member on its own trajectories ``ys[i]`` (members whose
    trajectory blew up are left out) and the coefficients' spread."""
    dc = cfg.discovery
    criterion = "paper" if dc.criterion == "simulation" else dc.criterion
    t_tr = float(np.asarray(train.ts)[-1])
    samples = []
    for i in range(ens.n):
        T, Y = regression_samples(ts, ys[i], t_tr, n)
        samples.append((T, Y) if np.all(np.isfinite(Y)) else None)
    found = discover_members(
        ens.models,
        samples,
        build_library(cfg),
        build_regressor(cfg),
        lams=build_lams(cfg),
        criterion=criterion,
        states=dc.states,
    )
    return {
        "criterion": criterion,
        "members": sum(d is not None for d in found),
        "terms": coefficient_spread(found),
    }
