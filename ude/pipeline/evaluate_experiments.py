"""The evaluate stage of a dataset of experiments: every model (the fitted UDE, the known physics
alone and the discovered model) solved on every experiment at its own times from its own
initial state with its own inputs — the experiments trained on and those held out — and scored
per experiment and pooled; ``results.npz`` holds what the small-multiples figure draws.

Held-out experiments start from their first sample (observed where it is, else the mean of that
state): what a user has for an experiment the model never saw."""

from __future__ import annotations

import io
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._io import atomic_write_bytes
from ..config import ExperimentConfig
from ..solve import solve_data
from ..train.strategies import initial_states
from .builders import build_eval_options, build_truth, split_experiments, true_missing
from .discover import DiscoveryOutcome
from .evaluate import Evaluation, discovery_metrics, fit_metrics
from .fit import FitOutcome, fitted_y0
from .progress import Log
from .rundir import FILES

__all__ = ["evaluate_experiments", "FINE_POINTS"]

FINE_POINTS = 201
"""Points of each experiment's fine grid (the figure's curves)."""


def _starts(cfg: ExperimentConfig, data, train, extra) -> np.ndarray:
    """``(experiments, state)``: the fitted initial states of the experiments trained on, the
    first samples of the held-out ones."""
    fitted = np.asarray(fitted_y0(train, extra), float)
    first = np.asarray(initial_states(data), float)
    rows = []
    for i, name in enumerate(data.experiment_names):
        if name in train.experiment_names:
            rows.append(fitted[train.experiment_names.index(name)])
        else:
            rows.append(first[i])
    return np.stack(rows)


def _rmse(pred, target, mask) -> float | None:
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    err = np.where(mask, np.asarray(pred, float) - np.asarray(target, float), 0.0)
    if not np.all(np.isfinite(err)):
        return float("inf")
    return float(np.sqrt(np.sum(err**2) / mask.sum()))


def _fine_grid(data) -> np.ndarray:
    """``(experiments, FINE_POINTS)``: each experiment's span, evenly."""
    t = np.asarray(data.times)
    ends = np.take_along_axis(t, np.asarray(data.lengths)[:, None] - 1, axis=1)[:, 0]
    return np.stack([np.linspace(a, b, FINE_POINTS) for a, b in zip(t[:, 0], ends, strict=True)])


def _samples(data):
    """The true states at every real save time of every experiment (``(n, state)``), with the
    inputs' values there when the experiments have inputs: where true coefficients are fitted."""
    if data.y_true is None:
        return np.empty((0,))
    keep = np.asarray(data.time_mask)
    ys = np.asarray(data.y_true)[keep]
    if data.inputs is None:
        return ys
    t = np.asarray(data.times)
    us = [
        np.asarray(jax.vmap(data.inputs_of(i))(jnp.asarray(t[i][keep[i]])), float)
        for i in range(data.n_traj)
    ]
    return ys, np.concatenate(us)


def evaluate_experiments(
    cfg: ExperimentConfig,
    out: Path,
    data,
    train,
    fitted: FitOutcome,
    found: DiscoveryOutcome | None,
    *,
    log: Log = None,
) -> Evaluation:
    """Score every model on every experiment (RMSE against the observed data and, for simulated
    data, against the truth); write ``results.npz``; return the arrays and the metrics."""
    truth = build_truth(cfg)
    models = {"ude": fitted.model, "physics": fitted.model.known}
    if found is not None:
        models["discovered"] = found.model
    final = "discovered" if found is not None else "ude"
    _, held = split_experiments(cfg, data)
    held_names = () if held is None else held.experiment_names
    y0 = jnp.asarray(_starts(cfg, data, train, fitted.extra))
    options = build_eval_options(cfg)
    fine = _fine_grid(data)
    mask, ys = np.asarray(data.mask), np.asarray(data.ys)
    y_true = None if data.y_true is None else np.asarray(data.y_true)
    r: dict[str, np.ndarray] = {
        "state_names": np.asarray(cfg.state_names),
        "experiment_names": np.asarray(data.experiment_names),
        "held_out": np.asarray([n in held_names for n in data.experiment_names]),
        "data_ts": np.asarray(data.times),
        "data_lengths": np.asarray(data.lengths),
        "data_ys": ys,
        "data_mask": mask,
        "fine_ts": fine,
    }
    if y_true is not None:
        r["data_y_true"] = y_true
    at_data, ok = {}, {}
    for name, m in models.items():
        sol = solve_data(m, y0, data, options, jit=True)
        at_data[name] = np.asarray(sol.ys, float)
        ok[name] = bool(np.all(np.asarray(sol.ok)))
        r[f"fine_{name}"] = np.asarray(
            solve_data(m, y0, data, options, ts=jnp.asarray(fine), jit=True).ys, float
        )
    if truth is not None:
        r["fine_truth"] = np.asarray(solve_data(truth, y0, data, options, ts=fine, jit=True).ys)
    per = {}
    for i, name in enumerate(data.experiment_names):
        row = {
            "split": "held_out" if name in held_names else "train",
            "points": int(data.lengths[i]),
            "observed": int(mask[i].sum()),
            "rmse": {k: _rmse(v[i], ys[i], mask[i]) for k, v in at_data.items()},
        }
        if y_true is not None:
            valid = np.broadcast_to(np.asarray(data.time_mask)[i][:, None], ys[i].shape)
            row["rmse_truth"] = {k: _rmse(v[i], y_true[i], valid) for k, v in at_data.items()}
        per[name] = row
    pooled = {}
    for split in ("train", "held_out"):
        sel = np.asarray([per[n]["split"] == split for n in data.experiment_names])
        if sel.any():
            pooled[split] = {k: _rmse(v[sel], ys[sel], mask[sel]) for k, v in at_data.items()}
    floor = None
    if data.y_true is not None:  # the sum of squared noise on the training data (the SSE floor)
        tm, tt = np.asarray(train.mask), np.asarray(train.y_true)
        floor = float(np.sum(np.where(tm, np.asarray(train.ys) - tt, 0.0) ** 2))
    metrics = {
        "name": cfg.name,
        **fit_metrics(cfg, fitted),
        "noise_floor": floor,
        "discovered": None,
        "experiments": {
            "trained": list(train.experiment_names),
            "held_out": list(held_names),
            "model": final,
            "ok": ok,
            "per_experiment": per,
            "pooled_rmse": pooled,
        },
    }
    if found is not None:
        metrics.update(
            discovery_metrics(cfg, data, found, true_missing(cfg, truth), _samples(data))
        )
    buf = io.BytesIO()
    np.savez(buf, **r)
    atomic_write_bytes(out / FILES["results"], buf.getvalue())
    return Evaluation(r, metrics)
