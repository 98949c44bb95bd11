"""The drivers: the whole pipeline of a config into a run directory, or part of it again.

:func:`run_experiment` runs the stages in order — data, fit, discover, evaluate, figures — each of
which skips work whose output already exists, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax.random as jr

from .. import data as data_mod, quality
from .._io import json_safe, write_json
from ..config import ExperimentConfig
from ..errors import RunDirError
from .builders import build_mesh, split_data
from .dataset import input_data, prepare_data
from .discover import DiscoveryOutcome, discover_equations
from .evaluate import evaluate_run
from .evaluate_experiments import evaluate_experiments
from .figures import draw_figures
from .fit import FitOutcome, fit_model
from .progress import Log
from .rundir import FILES, check_new_dir, load_run, locked_run_dir

__all__ = ["run_experiment", "run_simulate", "run_discovery", "run_figures", "run_is_finished"]


def run_is_finished(out_dir) -> bool:
    """Whether ``out_dir`` holds a finished run (its metrics.json says status ``ok``)."""
    path = Path(out_dir) / FILES["metrics"]
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def _sessions(out: Path, command: str, seconds: float) -> tuple[float, list[dict]]:
    """``(wall_seconds, sessions)``: the first finished session's wall time stays the run's;
    every later command (``resume``, ``discover``, ...) is listed with its own time."""
    try:
        before = json.loads((out / FILES["metrics"]).read_text())
    except (OSError, ValueError):
        before = {}
    this = {"command": command, "wall_seconds": seconds}
    if not isinstance(before, dict) or before.get("wall_seconds") is None:
        return seconds, [this]
    sessions = before.get("sessions") or [
        {"command": "run", "wall_seconds": before["wall_seconds"]}
    ]
    return before["wall_seconds"], [*sessions, this]


def _finish(
    cfg: ExperimentConfig,
    out: Path,
    data,
    train,
    held,
    fitted: FitOutcome,
    found: DiscoveryOutcome | None,
    t_start: float,
    log: Log,
    command: str = "run",
) -> dict:
    """Evaluate, draw, and write metrics.json (status ``ok``; ``wall_seconds`` the first finished
    session's time, ``sessions`` each command's)."""
    if data.per_experiment_times:
        metrics = evaluate_experiments(cfg, out, data, train, fitted, found, log=log).metrics
    else:
        metrics = evaluate_run(cfg, out, data, train, held, fitted, found, log=log).metrics
    metrics["fit"].update(_verdict(cfg, train, metrics))
    if found is not None and metrics["fit"]["status"] == "underfit":
        metrics["discovery_caution"] = _caution(metrics)
    if cfg.output.figures:
        draw_figures(cfg, out, log=log)
    metrics["status"] = "ok"
    metrics["wall_seconds"], metrics["sessions"] = _sessions(
        out, command, time.perf_counter() - t_start
    )
    metrics["run_dir"] = str(out)
    write_json(out / FILES["metrics"], metrics)
    return json_safe(metrics)


def _verdict(cfg: ExperimentConfig, train, metrics: dict) -> dict:
    """The quality gate's verdict (:func:`ude.quality.fit_quality`) on a run's fit: its final loss
    against the known noise floor (simulated data) or one estimated from the training data."""
    floor, source = metrics.get("noise_floor"), "truth"
    if floor is None:
        st = cfg.train.strategy
        floor, source = quality.estimate_noise_floor(train, st.loss, st.weights), "data"
    return quality.fit_quality(
        metrics.get("final_loss"),
        floor,
        source=source if floor is not None else None,
        max_ratio=cfg.train.underfit_ratio,
    )


def _caution(metrics: dict) -> str:
    """What to say of equations discovered from an underfit fit: whether their own refit explains
    the data any better (then ``fit.refit_to_floor`` records its ratio)."""
    q, refit = metrics["fit"], metrics.get("refit_loss")
    text = "discovered from an underfit fit (the network did not explain the data)"
    if refit is not None and q["floor"] and refit <= q["max_ratio"] * q["floor"]:
        q["refit_to_floor"] = refit / q["floor"]
        return f"{text}; their own refit does: loss {q['refit_to_floor']:.3g}× the noise floor"
    return f"{text}: these equations are not to be trusted"


def run_experiment(
    cfg: ExperimentConfig,
    out_dir,
    *,
    verbose: bool = True,
    resume: bool = False,
    log: Log = None,
    fit_callback=None,
    stop=None,
) -> dict:
    """Run the whole pipeline into ``out_dir`` and return the metrics (also in metrics.json).

    Args:
        cfg: a validated config (:func:`ude.config.load_config`).
        out_dir: the run directory; it must not exist or be empty unless ``resume``.
        verbose: progress bars during the fits.
        resume: continue a run in ``out_dir`` (its data, checkpoints and finished stages are
            reused).
        log: called with one-line progress messages.
        fit_callback: passed to :func:`ude.train.fit` (``(stage, step, model, loss)`` per chunk).
        stop: a :class:`ude.interrupt.StopRequest` (or any ``() -> bool``) polled between chunks
            of the fit: when set, a checkpoint is written and ``KeyboardInterrupt`` raised.

    A new run validates its data before the directory is created (a broken table is a
    :class:`~ude.errors.DataError` and leaves nothing behind); the directory is locked while the
    run writes. Raises :class:`~ude.errors.FitFailed` when training diverged (see
    :func:`~ude.pipeline.fit.fit_problem`), ValueError when ``parallel.devices`` cannot be used
    (:func:`~ude.pipeline.builders.build_mesh`).
    """
    t_start = time.perf_counter()
    build_mesh(cfg)  # too few devices: fail before any work
    if not resume:
        check_new_dir(Path(out_dir))
    data = None if resume else input_data(cfg)  # before the run directory exists
    with locked_run_dir(cfg, out_dir, resume=resume, command="resume" if resume else "run") as out:
        k_fit, k_refit = jr.split(jr.key(cfg.seed))
        data = prepare_data(cfg, out, log, data=data)
        train, held = split_data(cfg, data)
        fitted = fit_model(
            cfg,
            out,
            train,
            key=k_fit,
            verbose=verbose,
            log=log,
            callback=fit_callback,
            stop=stop,
            data=data,
        )
        found = discover_equations(
            cfg, out, fitted, data, train, key=k_refit, verbose=verbose, log=log
        )
        command = "resume" if resume else "run"
        return _finish(cfg, out, data, train, held, fitted, found, t_start, log, command)


def run_simulate(cfg: ExperimentConfig, out_dir, *, log: Log = None) -> data_mod.Dataset:
    """Only the data stage: write config.yaml and the dataset into ``out_dir`` (the data are built
    first: a failure leaves no directory behind)."""
    check_new_dir(Path(out_dir))
    data = input_data(cfg)
    with locked_run_dir(cfg, out_dir, command="simulate") as out:
        return prepare_data(cfg, out, log, data=data)


def run_discovery(out_dir, *, verbose: bool = True, log: Log = None) -> dict:
    """Redo discovery, refit, evaluation and figures of a fitted run (after editing its
    config.yaml's discovery section, for instance)."""
    t_start = time.perf_counter()
    out = Path(out_dir)
    cfg = load_run(out)
    if not (out / FILES["model"]).is_file():
        raise RunDirError(
            f"{out}: the fit has not finished (no {FILES['model']}); run `ude resume {out}`"
        )
    if not cfg.discovery.enabled:
        raise RunDirError(
            f"{out}: discovery is disabled in its config.yaml (discovery.enabled: false)"
        )
    k_fit, k_refit = jr.split(jr.key(cfg.seed))
    with locked_run_dir(cfg, out, resume=True, command="discover"):
        data = prepare_data(cfg, out, log)
        train, held = split_data(cfg, data)
        fitted = fit_model(cfg, out, train, key=k_fit, verbose=verbose, log=log, data=data)
        found = discover_equations(
            cfg, out, fitted, data, train, key=k_refit, verbose=verbose, log=log, force=True
        )
        return _finish(cfg, out, data, train, held, fitted, found, t_start, log, "discover")


def run_figures(out_dir, *, log: Log = None) -> list[Path]:
    """Redraw the figures of a finished run."""
    out = Path(out_dir)
    return draw_figures(load_run(out), out, log=log)
