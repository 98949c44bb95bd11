"""The pipeline's discover stage: sparse regression of the fitted network's output, then the refit
of the kept terms through the solver (or selection by simulation); or load what a previous
process found. Writes discovery.json, discovered.eqx and, after a refit, refit_history.csv."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .._io import load_eqx, save_eqx, write_history, write_json
from ..config import ExperimentConfig
from ..discovery import DiscoveredModel, Discovery, discover, refit
from ..discovery.simulation import candidate_table_text, select_by_simulation, state_weights
from ..solve import SolverOptions, solve_data
from ..train import SingleShooting, loss_value
from .builders import (
    build_eval_options,
    build_lams,
    build_library,
    build_options,
    build_regressor,
    build_stages,
    interned,
)
from .fit import FitOutcome, fitted_y0
from .grid import trajectories
from .progress import Log, emit
from .rundir import FILES

__all__ = ["DiscoveryOutcome", "discover_equations", "regression_samples"]


@dataclasses.dataclass
class DiscoveryOutcome:
    """What the discover stage leaves: the sparse regression (``discovery``; None when loaded from
    the run directory), the discovered ``model`` (refitted when the config asks) and ``info``
    (discovery.json)."""

    discovery: Discovery | None
    model: DiscoveredModel
    info: dict


def regression_samples(ts: np.ndarray, ys: np.ndarray, t_train: float, n: int):
    """``(T (n·times,), Y (n·times, state))``: the first ``n`` trajectories ``ys`` (saved at
    ``ts``) over the training window ``t <= t_train``, flattened for the regression."""
    inside = ts <= t_train + 1e-9 * max(1.0, abs(float(ts[-1])))
    return np.tile(ts[inside], n), ys[:n, inside].reshape(-1, ys.shape[-1])


def discover_equations(
    cfg: ExperimentConfig,
    out: Path,
    fitted: FitOutcome,
    data,
    train,
    *,
    key,
    verbose: bool = True,
    log: Log = None,
    force: bool = False,
) -> DiscoveryOutcome | None:
    """Sparse-regress the trained network's output on the library, then refit the kept terms
    (``discovery.refit``) or pick among refitted candidates (``criterion: simulation``); or load
    them (unless ``force``). None when discovery is disabled."""
    if not cfg.discovery.enabled:
        return None
    library = build_library(cfg)
    path = out / FILES["discovery"]
    if path.is_file() and (out / FILES["discovered"]).is_file() and not force:
        info = json.loads(path.read_text())
        like = _discovered_like(
            cfg,
            fitted.model,
            library,
            np.asarray(info["coefficients"]),
            np.asarray(info["mask"], bool),
        )
        return DiscoveryOutcome(None, load_eqx(out / FILES["discovered"], like), info)
    dc = cfg.discovery
    emit(
        log,
        f"discovery: {library.n_terms} candidate terms, {len(build_lams(cfg))} λ values, "
        f"{dc.regressor.kind}",
    )
    simulate = dc.criterion == "simulation"
    d = discover(
        fitted.model,
        _regression_data(cfg, fitted, data, train),
        library,
        build_regressor(cfg),
        lams=build_lams(cfg),
        criterion="paper" if simulate else dc.criterion,
        states=dc.states,
        dt=dc.dt,
        y0=fitted_y0(train, fitted.extra),
        options=build_eval_options(cfg),
    )
    info = {
        "names": list(d.names),
        "state_names": list(d.state_names),
        "states": list(d.states),
        "coefficients": d.coefficients.tolist(),
        "mask": d.mask.tolist(),
        "before_refit": d.as_dict(),
        "equations_before_refit": d.equations(),
        "selection": d.selection_info(),
    }
    model = _discovered_like(cfg, fitted.model, library, d.coefficients, d.mask)
    weights = state_weights(train, dc.refit.weights)
    if simulate:
        d, model = _select_by_simulation(cfg, fitted, train, d, model, weights, info, log)
    elif dc.refit.enabled:
        strategy = SingleShooting(
            options=build_options(cfg), reduction="sse", weights=weights, learn_y0=dc.refit.learn_y0
        )
        res = refit(
            model,
            train,
            strategy=strategy,
            stages=build_stages(dc.refit.stages),
            key=key,
            verbose=verbose,
            chunk=cfg.train.chunk,
        )
        model = res.model
        info["refit_loss"] = _plain_loss(cfg, model, train, res.extra, dc.refit.learn_y0)
        info["refit_objective"] = res.final_loss
        info["selection"]["refit_weights"] = weights.tolist()
        write_history(out / FILES["refit_history"], res.history)
    info["discovered"] = model.as_dict()
    info["equations"] = model.equations(states=d.states)  # the regressed states only
    info["parameters"] = model.known.parameters() if model.known.param_names else {}
    save_eqx(out / FILES["discovered"], model)
    write_json(path, info)
    emit(log, "discovery: " + "; ".join(info["equations"]))
    return DiscoveryOutcome(d, model, info)


def _regression_data(cfg: ExperimentConfig, fitted: FitOutcome, data, train):
    """What discovery regresses on: the fitted UDE's own trajectory, sampled finer than the data
    (the paper's), over the training window — on the run's evaluation grid for one time grid, or
    every experiment over its own span with its own inputs (``train`` itself, solved by
    :func:`~ude.discovery.discover`)."""
    if train.per_experiment_times or train.inputs is not None:
        return train
    ts, ys, ok, n = trajectories(cfg, fitted.model, data, train, fitted.extra)
    if not ok and not np.all(np.isfinite(ys[:n])):
        raise ValueError(
            "discovery: the fitted UDE's trajectory could not be solved over the training window"
        )
    return regression_samples(ts, ys, float(np.asarray(train.ts)[-1]), n)


def _select_by_simulation(
    cfg: ExperimentConfig,
    fitted: FitOutcome,
    train,
    d: Discovery,
    model: DiscoveredModel,
    weights,
    info: dict,
    log: Log,
):
    """``criterion: simulation``: refit the candidate supports through the solver and keep the
    best (:func:`~ude.discovery.simulation.select_by_simulation`); ``info`` is updated with the
    choice and the candidate table. Returns ``(discovery, refitted model)``."""
    dc = cfg.discovery
    sel = select_by_simulation(
        d,
        model.known,
        train,
        max_terms=dc.max_terms,
        top=tuple(dc.top),
        score=dc.score,
        delta=dc.delta,
        weights=weights,
        learn_y0=dc.refit.learn_y0,
        options=_selection_options(cfg, fitted, train),
        max_steps=dc.refit_iterations,
    )
    for line in candidate_table_text(sel.table, rows=5):
        emit(log, "  " + line)
    d, model = sel.discovery, sel.model
    info.update(
        coefficients=d.coefficients.tolist(),
        mask=d.mask.tolist(),
        refit_loss=_plain_loss(cfg, model, train, sel.extra, dc.refit.learn_y0),
        refit_objective=sel.loss,
        candidates=sel.table,
        equations_before_refit=None,
        before_refit=None,
    )
    info["selection"]["criterion"] = "simulation"
    info["selection"]["refit_weights"] = weights.tolist()
    return d, model


def _discovered_like(
    cfg: ExperimentConfig, fitted_model, library, coefficients, mask
) -> DiscoveredModel:
    known = fitted_model.known
    if cfg.discovery.refit.enabled and cfg.discovery.refit.train_known:
        known = known.set_trainable(*cfg.discovery.refit.train_known)
    return DiscoveredModel(known, library, coefficients, mask)


def _selection_options(cfg: ExperimentConfig, fitted: FitOutcome, train) -> SolverOptions:
    """The solver options of the candidates' refit: the config's, with ``max_steps`` cut to 8× the
    solver steps the fitted UDE needs over the training window (at least 64). All candidates
    refit as one vmapped program that runs at the pace of its slowest member; a candidate that
    turns stiff or blows up must fail fast instead of holding every other one for
    ``solver.max_steps``."""
    opts = build_options(cfg)
    y0 = fitted_y0(train, fitted.extra)
    sol = solve_data(fitted.model, y0, train, opts)
    need = int(np.max(np.asarray(sol.num_steps)))
    return build_options(cfg, max_steps=min(cfg.solver.max_steps, max(64, 8 * need)))


def _plain_loss(cfg: ExperimentConfig, model, train, extra, learn_y0: bool) -> float:
    """The training loss's definition (``train.strategy.loss``, unweighted) of a refitted model with
    its refitted initial states: comparable with the fit's ``final_loss``."""
    strategy = SingleShooting(
        options=build_options(cfg), reduction=interned(cfg.train.strategy.loss), learn_y0=learn_y0
    )
    return loss_value(model, train, strategy, extra)
