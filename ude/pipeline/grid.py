"""Where a fitted model is solved after training: the run's evaluation grid and initial states.

Discovery regresses on the fitted UDE's trajectory over the training window, evaluation compares
models over the extrapolation, and an ensemble's members are solved the same way; all of them use
the one grid of :func:`evaluation_grid` (one compilation per model). The arithmetic lives in
:mod:`ude.evaluate`; here the config's settings are read.
"""

from __future__ import annotations

import numpy as np

from .. import evaluate as ev
from ..config import ExperimentConfig
from .builders import build_eval_options
from .fit import fitted_y0

__all__ = ["evaluation_grid", "extrapolation_times", "evaluation_starts", "trajectories"]


def evaluation_grid(cfg: ExperimentConfig, data, train) -> np.ndarray:
    """The discovery grid (every ``discovery.dt``) over the training window, the extrapolation
    grid (every ``evaluate.dt`` up to ``evaluate.t_end``) and the data times, as one grid
    (:func:`ude.evaluate.evaluation_grid`)."""
    return ev.evaluation_grid(
        data.ts,
        float(np.asarray(train.ts)[-1]),
        cfg.evaluate.t_end,
        fit_dt=cfg.discovery.dt,
        ext_dt=cfg.evaluate.dt,
    )


def extrapolation_times(cfg: ExperimentConfig, data, train, ts_all) -> tuple[float, np.ndarray]:
    """``(t_end, on_grid)``: the end of the extrapolation and which times of ``ts_all`` (the
    :func:`evaluation_grid`) lie on its grid (every ``evaluate.dt``, and ``t_end``)."""
    return ev.extrapolation_mask(
        ts_all, data.ts, float(np.asarray(train.ts)[-1]), cfg.evaluate.t_end, ext_dt=cfg.evaluate.dt
    )


def evaluation_starts(cfg: ExperimentConfig, train, extra) -> tuple[np.ndarray, int]:
    """``(y0 (2n or n, state), n)``: the fitted initial states of the n trajectories, followed by
    the true ones when the data are simulated (the paper extrapolates from the true u0)."""
    y0_fit = np.asarray(fitted_y0(train, extra), float)
    if cfg.truth is None:
        return y0_fit, y0_fit.shape[0]
    return np.concatenate([y0_fit, np.asarray(cfg.truth.y0, float)]), y0_fit.shape[0]


def trajectories(cfg: ExperimentConfig, model, data, train, extra):
    """``(ts, ys (2n or n, times, state), ok, n)``: ``model`` solved on :func:`evaluation_grid`
    from :func:`evaluation_starts`."""
    ts = evaluation_grid(cfg, data, train)
    y0, n = evaluation_starts(cfg, train, extra)
    ys, ok = ev.solve_trajectories(model, y0, ts, build_eval_options(cfg))
    return ts, ys, ok, n
