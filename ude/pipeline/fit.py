"""The pipeline's fit stage: train the UDE of a config (or an ensemble of them) in the run
directory, or load the fit a previous process finished.

A fit runs the config's *phases* in order (``pretrain`` by collocation, ``train`` with the
configured strategy, ``polish`` by single shooting; see
:func:`~ude.pipeline.builders.build_phases`), each a list of *optimiser stages* (Adam, L-BFGS) of
*steps*; history.csv has one row per step. A single fit writes checkpoints (``checkpoints/``,
``checkpoints-<phase>/``) and continues from them; a fit that diverged leaves fit.json,
history.csv and a failed metrics.json and raises :class:`~ude.errors.FitFailed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.random as jr
import numpy as np

from .. import data as data_mod
from .._io import load_eqx, read_history, save_eqx, write_history, write_json
from ..config import ExperimentConfig
from ..errors import FitFailed, RunDirError
from ..model import UDE
from ..train import fit, fitted_initial_states, loss_value
from ..train.ensemble import fit_ensemble, member, stack
from .builders import build_mesh, build_model, build_phases, build_stages, member_keys, member_train
from .progress import Log, emit
from .rundir import FILES

__all__ = [
    "FitOutcome",
    "EnsembleOutcome",
    "fit_model",
    "fit_members",
    "fit_problem",
    "merge_phases",
    "fitted_y0",
]

_SUMMARY = ("steps", "stages", "stopped", "rejected")  # of fit.json, in a failed metrics.json


@dataclasses.dataclass
class EnsembleOutcome:
    """The trained ensemble: stacked ``models`` and ``extra`` (leading member axis), every
    member's final loss on the run's training data ``final_losses (members,)``, the chosen member
    ``best``; ``info`` is ensemble.json."""

    models: object
    extra: object
    final_losses: np.ndarray
    best: int
    info: dict

    @property
    def n(self) -> int:
        return int(self.final_losses.shape[0])


@dataclasses.dataclass
class FitOutcome:
    """What the fit stage leaves: the run's ``model`` and the last phase's ``extra`` parameters
    (learned initial states, segment starts, or None), the ``history`` (history.csv as arrays),
    ``info`` (fit.json) and, for an ensemble, the whole ``ensemble`` (``model`` is then its best
    member)."""

    model: UDE
    extra: object
    history: dict
    info: dict
    ensemble: EnsembleOutcome | None = None


def fitted_y0(train: data_mod.Dataset, extra) -> jax.Array:
    """The initial states ``(traj, state)`` the fitted model starts from: learned ones where the
    strategy learned them, else the first (noisy) samples, as in training
    (:func:`ude.train.fitted_initial_states`)."""
    return fitted_initial_states(train, extra)


def fit_problem(
    cfg: ExperimentConfig, history: dict, rejected, final_loss, stages=None
) -> str | None:
    """Why a fit is unusable (every step of an optimiser stage rejected, a non-finite final
    loss), or None. ``stages``: the stage configs of the fit (default ``cfg.train.stages``)."""
    stage_of = np.asarray(history.get("stage", []))
    stages = cfg.train.stages if stages is None else stages
    for i, (st, n_rej) in enumerate(zip(stages, rejected, strict=False)):
        n = int((stage_of == i).sum())
        if n and n_rej >= n:
            hint = (
                f"the solve failed (solver.max_steps = {cfg.solver.max_steps} exhausted?) or "
                "the loss or its gradients were not finite"
            )
            fix = "lower the learning rate, " if st.kind == "adam" else ""
            return (
                f"training diverged: all {n} steps of stage {i + 1} ({st.kind}) were rejected "
                f"({hint}); {fix}raise solver.max_steps or shrink model.network.output_scale"
            )
    if final_loss is None or not math.isfinite(final_loss):
        return (
            f"training diverged: the final loss is {final_loss} (the fitted model cannot be "
            "solved over the training data)"
        )
    return None


def merge_phases(results, n_stages):
    """One FitResult from consecutive phases' ``results`` (``n_stages``: each phase's number of
    optimiser stages): histories joined (stage indices and steps offset), the last phase's model,
    extra and final loss."""
    if len(results) == 1:
        return results[0]
    hist, offset, step0 = {}, 0, 0
    for res, n in zip(results, n_stages, strict=True):
        h = dict(res.history)
        h["stage"] = np.asarray(h["stage"]) + offset
        h["step"] = np.asarray(h["step"]) + step0
        for k, v in h.items():
            hist.setdefault(k, []).append(np.asarray(v))
        offset += n
        step0 += len(h["step"])
    hist = {k: np.concatenate(v) for k, v in hist.items()}
    last = results[-1]
    return dataclasses.replace(
        last,
        history=hist,
        rejected=[r for res in results for r in res.rejected],
        stopped=[x for res in results for x in res.stopped],
        wall_seconds=sum(r.wall_seconds for r in results),
    )


def _plan(stages) -> str:
    return " → ".join(f"{s.kind} × {s.steps}" for s in stages)


def _record_failure(
    cfg: ExperimentConfig, out: Path, info: dict, history: dict, problem: str, **blocks
) -> None:
    """fit.json (with ``failed``), history.csv and a failed metrics.json; no model.eqx, so
    ``ude resume`` re-reads the last checkpoint and reports the same."""
    info["failed"] = problem
    write_history(out / FILES["history"], history)
    write_json(out / FILES["fit"], info)
    write_json(
        out / FILES["metrics"],
        {
            "name": cfg.name,
            "status": "failed",
            "error": problem,
            "final_loss": info["final_loss"],
            "fit": {**{k: info.get(k) for k in _SUMMARY}, "status": "diverged"},
            **blocks,
            "run_dir": str(out),
        },
    )


# ------------------------------------------------------------------------------------------------
# one model
# ------------------------------------------------------------------------------------------------
def fit_model(
    cfg: ExperimentConfig,
    out: Path,
    train,
    *,
    key,
    verbose: bool = True,
    log: Log = None,
    callback=None,
    stop=None,
    data: data_mod.Dataset | None = None,
) -> FitOutcome:
    """Fit the UDE (continuing from checkpoints when there are some), or load the fitted model.

    With ``parallel.ensemble > 1`` the ensemble is trained instead (:func:`fit_members`;
    ``data``, the whole dataset, is needed for ``parallel.redraw_noise``). ``callback`` and
    ``stop`` go to :func:`ude.train.fit` (to :func:`ude.train.ensemble.fit_ensemble` for an
    ensemble: its callback gets the stacked models and the members' losses)."""
    if cfg.parallel.ensemble > 1:
        return fit_members(
            cfg,
            out,
            train,
            key=key,
            data=data,
            verbose=verbose,
            log=log,
            callback=callback,
            stop=stop,
        )
    k_model, k_fit = jr.split(key)
    model = build_model(cfg, k_model)
    phases = build_phases(cfg)
    if (out / FILES["model"]).is_file() and (out / FILES["fit"]).is_file():
        extra = phases[-1][1].init(model, train)  # the saved extra is the last phase's
        model, extra = load_eqx(out / FILES["model"], (model, extra))
        info = json.loads((out / FILES["fit"]).read_text())
        return FitOutcome(model, extra, read_history(out / FILES["history"]), info)
    results, problem = _train_phases(
        cfg,
        out,
        model,
        train,
        phases,
        key=k_fit,
        verbose=verbose,
        log=log,
        callback=callback,
        stop=stop,
    )
    res = merge_phases(results, [len(st) for _, _, st in phases])
    done = phases[: len(results)]
    info = {
        "final_loss": res.final_loss,
        "wall_seconds": res.wall_seconds,
        "stages": [s.kind for _, _, st in done for s in st],
        "stopped": res.stopped,
        "rejected": res.rejected,
        "steps": int(len(res.history["step"])),
        "phases": [name for name, _, _ in done],
    }
    if problem is not None:
        _record_failure(cfg, out, info, res.history, problem)
        raise FitFailed(f"{problem}; the last checkpoint is kept in {out / FILES['checkpoints']}")
    save_eqx(out / FILES["model"], (res.model, res.extra))
    write_history(out / FILES["history"], res.history)
    write_json(out / FILES["fit"], info)
    emit(
        log,
        f"fit: final loss {res.final_loss:.6g} after {info['steps']} steps "
        f"({res.wall_seconds:.1f} s)",
    )
    return FitOutcome(res.model, res.extra, res.history, info)


def _checkpoint_dir(out: Path, phase: str) -> Path:
    """A phase's checkpoints: ``checkpoints/`` for ``train``, ``checkpoints-<phase>/`` else."""
    return out / (FILES["checkpoints"] if phase == "train" else f"{FILES['checkpoints']}-{phase}")


def _train_phases(
    cfg: ExperimentConfig, out: Path, model, train, phases, *, key, verbose, log, callback, stop
):
    """Fit each phase from the previous one's model, each with its own checkpoints, until one
    leaves an unusable fit: ``(FitResults of the phases run, the problem or None)``."""
    # a fresh block per phase: a generator context manager can be entered once only
    armed = stop.armed if hasattr(stop, "armed") else contextlib.nullcontext
    results, problem = [], None
    for name, strategy, stage_cfgs in phases:
        ckpt = _checkpoint_dir(out, name)
        resume = (ckpt / "checkpoint.json").is_file()
        emit(
            log,
            f"fit ({name}): "
            + ("resuming from the last checkpoint" if resume else _plan(stage_cfgs)),
        )
        with armed():
            res = fit(
                model,
                train,
                strategy,
                build_stages(stage_cfgs),
                key=key,
                chunk=cfg.train.chunk,
                verbose=verbose,
                checkpoint_dir=ckpt,
                checkpoint_every=cfg.train.checkpoint_every,
                resume=resume,
                callback=callback,
                should_stop=stop,
            )
        results.append(res)
        model = res.model
        problem = fit_problem(cfg, res.history, res.rejected, res.final_loss, stage_cfgs)
        if problem is not None:
            break
    return results, problem


# ------------------------------------------------------------------------------------------------
# an ensemble
# ------------------------------------------------------------------------------------------------
def fit_members(
    cfg: ExperimentConfig,
    out: Path,
    train,
    *,
    key,
    data=None,
    verbose: bool = True,
    log: Log = None,
    callback=None,
    stop=None,
) -> FitOutcome:
    """Train ``parallel.ensemble`` members as one vmapped program (split over
    ``parallel.devices`` devices), or load the saved ensemble.

    Member ``i`` starts from network key ``fold_in(k_model, i)`` (member 0: the single run's) and
    trains with key ``fold_in(k_fit, i)`` on :func:`~ude.pipeline.builders.member_train`. Each
    member's final loss is its loss on the run's training data ``train`` (with
    ``parallel.redraw_noise`` it differs from the loss on the member's own noise draw, kept as
    ``training_losses``; only the former compares members); the usable member (see
    :func:`fit_problem`) with the lowest one becomes the run's model (model.eqx, fit.json,
    history.csv, as for a single fit), so discovery and evaluation run on it unchanged.
    ensemble.eqx holds every member, ensemble.json (written last, it marks a finished ensemble)
    their losses. Each phase checkpoints the whole ensemble as a single fit does (``checkpoints/``,
    ``checkpoints-<phase>/``), so an interrupted ensemble continues where it stopped and ends
    exactly where an uninterrupted one does.
    """
    n = cfg.parallel.ensemble
    k_model, k_fit = jr.split(key)
    phases = build_phases(cfg)
    strategy = phases[-1][1]  # the saved extra and the final loss are the last phase's
    models = stack([build_model(cfg, k) for k in member_keys(k_model, n)])
    if all((out / FILES[f]).is_file() for f in ("ensemble", "ensemble_info", "model", "fit")):
        return _load_members(out, models, strategy, train, n)
    mesh = build_mesh(cfg)
    where = f" on {cfg.parallel.devices} devices" if mesh is not None else ""
    all_stages = [st for _, _, p_stages in phases for st in p_stages]
    emit(
        log,
        f"fit: ensemble of {n}{where}"
        + (" (noise redrawn per member)" if cfg.parallel.redraw_noise else "")
        + ": "
        + _plan(all_stages),
    )
    results = _train_members(
        cfg,
        models,
        member_train(cfg, data, train, n),
        phases,
        keys=member_keys(k_fit, n),
        mesh=mesh,
        verbose=verbose,
        out=out,
        log=log,
        callback=callback,
        stop=stop,
    )
    members, losses = _members_on(cfg, results, phases, train, strategy)
    problems = [
        fit_problem(cfg, m.history, m.rejected, float(loss), all_stages)
        for m, loss in zip(members, losses, strict=True)
    ]
    usable = [i for i in range(n) if problems[i] is None]
    einfo = _ensemble_info(cfg, results, losses, problems)
    best = min(usable, key=lambda i: losses[i]) if usable else 0
    b = members[best]
    info = {
        "final_loss": float(losses[best]),
        "wall_seconds": einfo["wall_seconds"],
        "stages": [s.kind for s in all_stages],
        "stopped": b.stopped,
        "rejected": b.rejected,
        "steps": int(len(b.history["step"])),
        "ensemble_member": best,
        "phases": [name for name, _, _ in phases],
    }
    if not usable:
        problem = f"all {n} ensemble members failed; member 0: {problems[0]}"
        _record_failure(
            cfg,
            out,
            info,
            b.history,
            problem,
            ensemble={k: einfo[k] for k in ("members", "final_losses", "failed")},
        )
        raise FitFailed(problem)
    einfo["best_member"] = best
    ens = EnsembleOutcome(results[-1].models, results[-1].extra, losses, best, einfo)
    _save_members(out, ens, b, info)
    ok = np.isfinite(losses)
    emit(
        log,
        f"fit: ensemble final losses {np.min(losses[ok]):.6g} (member {best}) … "
        f"{np.max(losses[ok]):.6g}, {n - len(usable)} failed ({einfo['wall_seconds']:.1f} s)",
    )
    return FitOutcome(b.model, b.extra, b.history, info, ensemble=ens)


def _train_members(
    cfg: ExperimentConfig,
    models,
    mtrain,
    phases,
    *,
    keys,
    mesh,
    verbose,
    out: Path,
    log: Log,
    callback,
    stop,
) -> list:
    """:func:`~ude.train.ensemble.fit_ensemble` of every phase in turn, each phase's members
    going on from the last's, each phase with its checkpoints: the phases' ensemble results."""
    armed = stop.armed if hasattr(stop, "armed") else contextlib.nullcontext
    results, current = [], models
    for name, strategy, stage_cfgs in phases:
        ckpt = _checkpoint_dir(out, name)
        resume = (ckpt / "checkpoint.json").is_file()
        if resume:
            emit(log, f"fit ({name}): resuming the ensemble from the last checkpoint")
        with armed():
            results.append(
                fit_ensemble(
                    current,
                    mtrain,
                    strategy,
                    build_stages(stage_cfgs),
                    key=keys,
                    chunk=cfg.train.chunk,
                    verbose=verbose,
                    mesh=mesh,
                    checkpoint_dir=ckpt,
                    checkpoint_every=cfg.train.checkpoint_every,
                    resume=resume,
                    callback=callback,
                    should_stop=stop,
                )
            )
        current = results[-1].models
    return results


def _members_on(cfg: ExperimentConfig, results, phases, train, strategy):
    """``(each member's FitResult over all phases, final losses (members,))``: the losses on the
    run's training data ``train`` (remeasured there when every member had its own noise draw)."""
    sizes = [len(st) for _, _, st in phases]
    members = [
        merge_phases([r.member(i) for r in results], sizes)
        for i in range(results[-1].final_losses.shape[0])
    ]
    losses = np.asarray(results[-1].final_losses, float)
    if cfg.parallel.redraw_noise:
        losses = np.asarray([loss_value(m.model, train, strategy, m.extra) for m in members])
    return members, losses


def _ensemble_info(cfg: ExperimentConfig, results, losses, problems) -> dict:
    """ensemble.json (``best_member`` still None)."""
    info = {
        "members": len(problems),
        "final_losses": losses.tolist(),
        "best_member": None,
        "failed": {str(i): p for i, p in enumerate(problems) if p},
        "devices": cfg.parallel.devices or 1,
        "redraw_noise": cfg.parallel.redraw_noise,
        "rejected": np.concatenate([r.rejected for r in results], axis=1).tolist(),
        "stopped": np.concatenate([r.stopped for r in results], axis=1).tolist(),
        "wall_seconds": sum(r.wall_seconds for r in results),
    }
    if cfg.parallel.redraw_noise:
        info["training_losses"] = results[-1].final_losses.tolist()
    return info


def _save_members(out: Path, ens: EnsembleOutcome, best, info: dict) -> None:
    """ensemble.eqx, the ``best`` member as model.eqx (+ history.csv, fit.json ``info``), then
    ensemble.json, which marks a finished ensemble."""
    save_eqx(out / FILES["ensemble"], (ens.models, ens.extra))
    save_eqx(out / FILES["model"], (best.model, best.extra))
    write_history(out / FILES["history"], best.history)
    write_json(out / FILES["fit"], info)
    write_json(out / FILES["ensemble_info"], ens.info)


def _load_members(out: Path, models, strategy, train, n: int) -> FitOutcome:
    """The finished ensemble of ``out`` in the structure of ``models`` (stacked, as built)."""
    path = out / FILES["ensemble_info"]
    einfo = json.loads(path.read_text())
    losses = np.asarray(
        [float("nan") if x is None else float(x) for x in einfo["final_losses"]], float
    )
    if losses.shape != (n,):
        raise RunDirError(
            f"{path}: {losses.shape[0]} members saved, but parallel.ensemble "
            f"is {n}; the config has changed since the run was written"
        )
    extras = [strategy.init(member(models, i), train) for i in range(n)]
    like = (models, None if all(e is None for e in extras) else stack(extras))
    ens = EnsembleOutcome(
        *load_eqx(out / FILES["ensemble"], like), losses, int(einfo["best_member"]), einfo
    )
    history = read_history(out / FILES["history"]) if (out / FILES["history"]).is_file() else {}
    return FitOutcome(
        member(ens.models, ens.best),
        member(ens.extra, ens.best),
        history,
        json.loads((out / FILES["fit"]).read_text()),
        ensemble=ens,
    )
