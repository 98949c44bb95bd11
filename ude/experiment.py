"""The pipeline: config → data → model → fit → discover → refit → evaluate → figures.

Every stage is an importable function taking the validated :class:`~ude.config.ExperimentConfig`,
so scripts and benchmarks can reuse pieces (``build_data(cfg)``, ``build_model(cfg, key)``, ...).
:func:`run_experiment` drives them all and writes a run directory::

    config.yaml       the resolved config (re-read by `ude resume`)
    data.npz/.json    the dataset (ude.data.save)
    checkpoints/      fit checkpoints (resume continues from them)
    model.eqx         the fitted UDE (+ the strategy's extra parameters); fit.json; history.csv
    ensemble.eqx/.json  with ``parallel.ensemble > 1``: every member, stacked, and their final
                      losses (model.eqx is then the member with the lowest loss)
    discovery.json    the sparse regression and the refitted equations; discovered.eqx
    results.npz       the arrays the figures are drawn from
    metrics.json      losses, discovered terms, extrapolation errors, wall time
    figures/          PNG/PDF

Each step skips work whose output already exists, so an interrupted run resumes where it stopped.
An ensemble fit has no checkpoints: an ensemble run interrupted before ``ensemble.json`` was written
trains its ensemble again on resume (a saved ensemble is always reused).
Nothing here prints: progress goes to the ``log`` callback (and fit's tqdm bars when verbose).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from . import data as data_mod
from . import runlock
from .config import ExperimentConfig, dump_config, load_config, time_grid, train_end
from .discovery import (SR3, STLSQ, DiscoveredModel, Discovery, discover, library_from_spec,
                        refit)
from .discovery.simulation import candidate_table_text, select_by_simulation, state_weights
from .evaluate import coefficient_errors, oscillation_stats, rmse, trajectory_spread
from .model import UDE
from .nn import MLP
from .parallel import make_mesh
from .physics import SYSTEMS, AbstractPhysics, Parameter
from .solve import SolverOptions, solve
from .train import (LBFGS, Adam, Collocation, MultipleShooting, SingleShooting, WindowMinibatch,
                    atomic_write_bytes, atomic_write_text, fit, initial_states, loss_value)
from .train.ensemble import fit_ensemble, member, resample_noise, stack, unstack

__all__ = ["build_truth", "build_data", "split_data", "build_options", "build_model",
           "build_strategy", "build_stages", "build_library", "build_regressor", "build_lams",
           "true_missing", "fitted_y0", "build_mesh", "member_keys", "member_train",
           "ensemble_spread", "prepare_run_dir", "default_run_dir", "run_experiment",
           "run_simulate", "run_discovery", "run_figures", "load_run", "RunDirError", "DataError",
           "FitFailed", "locked_run_dir", "json_safe", "FILES"]

FILES = {"config": "config.yaml", "data": "data", "model": "model.eqx", "fit": "fit.json",
         "history": "history.csv", "discovery": "discovery.json", "discovered": "discovered.eqx",
         "refit_history": "refit_history.csv", "results": "results.npz", "metrics": "metrics.json",
         "checkpoints": "checkpoints", "figures": "figures", "ensemble": "ensemble.eqx",
         "ensemble_info": "ensemble.json"}

Log = Callable[[str], None] | None


class RunDirError(ValueError):
    """The run directory cannot be used (exists and is not empty, is not a run, or another process
    holds its lock)."""


class DataError(ValueError):
    """The data cannot be read or built (a broken table or saved dataset, a failed truth solve)."""


class FitFailed(RuntimeError):
    """Training ended without a usable model: every step of a stage was rejected, or the final loss
    is not finite. fit.json, history.csv and metrics.json record it; the checkpoints are kept."""


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------
def build_truth(cfg: ExperimentConfig) -> AbstractPhysics | None:
    """The true system (all terms), or None for real data."""
    if cfg.truth is None:
        return None
    return SYSTEMS[cfg.truth.system](**cfg.truth.parameters)


def _noise(cfg: ExperimentConfig):
    n = cfg.data.noise
    d = {"kind": n.kind}
    if n.level is not None:
        d["level"] = n.level
    if n.sigma is not None:
        d["sigma"] = n.sigma
    return data_mod.noise_from_dict(d)


def build_data(cfg: ExperimentConfig) -> data_mod.Dataset:
    """The whole dataset: simulated from the truth (noise, observation mask) or read from the file."""
    observe = cfg.data.observe
    if cfg.data.file is not None:
        f = cfg.data.file
        d = data_mod.load_table(f.path, time=f.time, states=f.states, normalize=f.normalize,
                                t_offset=f.t_offset, names=cfg.state_names)
        return d.with_mask(observe) if observe else d
    truth = build_truth(cfg)
    ts = np.asarray(time_grid(cfg.data), dtype=np.float64)
    y0 = np.asarray(cfg.truth.y0, dtype=np.float64)
    return data_mod.simulate(truth, y0, ts, noise=_noise(cfg), key=cfg.data.seed, observe=observe,
                             rtol=cfg.truth.tolerance, atol=cfg.truth.tolerance)


def split_data(cfg: ExperimentConfig, data: data_mod.Dataset):
    """``(train, held_out)``: the training window ``[t0, train_end]`` and the held-out window
    (``data.held_out``, default everything after ``train_end``; None when empty)."""
    ts = np.asarray(data.ts)
    t_end = train_end(cfg)
    t_end = float(ts[-1]) if t_end is None else t_end
    train = data.window(float(ts[0]), t_end)
    lo, hi = cfg.data.held_out if cfg.data.held_out is not None else (t_end, float(ts[-1]))
    tol = 1e-9 * max(1.0, abs(float(ts[-1])))
    sel = (ts > t_end + tol) & (ts >= lo - tol) & (ts <= hi + tol)
    held = data.window(float(ts[sel][0]), float(ts[sel][-1])) if sel.any() else None
    return train, held


def build_options(cfg: ExperimentConfig, *, max_steps: int | None = None) -> SolverOptions:
    s = cfg.solver
    return SolverOptions(s.name, rtol=s.rtol, atol=s.atol, adjoint=s.adjoint,
                         max_steps=max_steps or s.max_steps, dt0=s.dt0, fixed_steps=s.fixed_steps,
                         dtype=_static(s.dtype))


def _eval_options(cfg: ExperimentConfig) -> SolverOptions:
    # long extrapolations need more steps than a training window; a model that blows up still stops
    return build_options(cfg, max_steps=max(cfg.solver.max_steps, 20_000))


def build_physics(cfg: ExperimentConfig) -> AbstractPhysics:
    """The known part: the model system with its parameters (trainable ones flagged), keeping only
    the known terms."""
    m = cfg.model
    params = {p: Parameter(v, trainable=p in m.trainable, positive=m.positive and p in m.trainable)
              for p, v in m.parameters.items()}
    return SYSTEMS[m.system](**params).keep(*m.known)


def build_model(cfg: ExperimentConfig, key) -> UDE:
    """The UDE: known physics + the configured MLP (or no network)."""
    known = build_physics(cfg)
    net_cfg = cfg.model.network
    if net_cfg is None:
        return UDE(known, None)
    states = cfg.state_names
    inputs = net_cfg.inputs or list(states)
    outputs = net_cfg.outputs or list(states)
    scale = net_cfg.input_scale
    net = MLP(len(inputs), len(outputs), width=net_cfg.width, depth=net_cfg.depth,
              activation=tuple(net_cfg.activation), init=net_cfg.init,
              output_scale=net_cfg.output_scale,
              input_scale=None if scale is None else (scale[0] if len(scale) == 1 else scale),
              key=key)
    return UDE(known, net, inputs=net_cfg.inputs, outputs=net_cfg.outputs)


def _static(x):
    # Interned, so a value equal to a field's default *is* the default: equinox's repr hides
    # defaults by identity, and ude.train.fit fingerprints checkpoints by that repr (a "sse" read
    # back from config.yaml must give the same fingerprint as the literal default).
    return sys.intern(x) if isinstance(x, str) else x


def build_strategy(cfg: ExperimentConfig, options: SolverOptions | None = None):
    st = cfg.train.strategy
    options = options or build_options(cfg)
    common = dict(options=options, reduction=_static(st.loss), l2=st.l2,
                  weights=None if st.weights is None else jnp.asarray(st.weights))
    if st.kind == "single_shooting":
        return SingleShooting(**common, learn_y0=_static(st.learn_y0))
    if st.kind == "multiple_shooting":
        return MultipleShooting(**common, segments=st.segments, continuity=st.continuity,
                                fix_observed=st.fix_observed)
    return WindowMinibatch(**common, window=st.window, batch=st.batch)


def build_phases(cfg: ExperimentConfig) -> list[tuple[str, object, list]]:
    """``[(name, strategy, stage configs), ...]``: ``pretrain`` (collocation), ``train`` (the
    configured strategy) and ``polish`` (single shooting, initial states learned), those present."""
    st = cfg.train.strategy
    phases = []
    if cfg.train.pretrain:
        phases.append(("pretrain", Collocation(l2=st.l2), cfg.train.pretrain))
    phases.append(("train", build_strategy(cfg), cfg.train.stages))
    if cfg.train.polish:
        polish = SingleShooting(options=build_options(cfg), reduction=_static(st.loss), l2=st.l2,
                                weights=None if st.weights is None else jnp.asarray(st.weights),
                                learn_y0=True)
        phases.append(("polish", polish, cfg.train.polish))
    return phases


def _merge_phases(results, n_stages):
    """One FitResult from consecutive phases: histories joined (stage indices and steps offset),
    the last phase's model, extra and final loss."""
    if len(results) == 1:
        return results[0]
    hist, offset, step0 = {}, 0, 0
    for res, n in zip(results, n_stages):
        h = dict(res.history)
        h["stage"] = np.asarray(h["stage"]) + offset
        h["step"] = np.asarray(h["step"]) + step0
        for k, v in h.items():
            hist.setdefault(k, []).append(np.asarray(v))
        offset += n
        step0 += len(h["step"])
    hist = {k: np.concatenate(v) for k, v in hist.items()}
    last = results[-1]
    return dataclasses.replace(last, history=hist,
                               rejected=[r for res in results for r in res.rejected],
                               stopped=[x for res in results for x in res.stopped],
                               wall_seconds=sum(r.wall_seconds for r in results))


def build_stages(stages) -> list:
    """Optimiser stages from ``cfg.train.stages`` (or ``cfg.discovery.refit.stages``)."""
    out = []
    for s in stages:
        if s.kind == "adam":
            out.append(Adam(lr=s.lr, steps=s.steps, schedule=_static(s.schedule),
                            final_fraction=s.final_fraction, clip=s.clip, horizon=s.horizon))
        else:
            out.append(LBFGS(steps=s.steps, gtol=s.gtol, ftol=s.ftol, memory=s.memory,
                             horizon=s.horizon))
    return out


def build_library(cfg: ExperimentConfig, state_names=None):
    spec = [{k: v for k, v in part.model_dump().items() if v is not None}
            for part in cfg.discovery.library]
    for part in spec:
        if "frequencies" in part:
            part["frequencies"] = [int(f) if float(f).is_integer() else f for f in part["frequencies"]]
    return library_from_spec(tuple(state_names or cfg.state_names), spec)


def build_regressor(cfg: ExperimentConfig):
    r = cfg.discovery.regressor
    if r.kind == "sr3":
        return SR3(nu=r.nu, regularizer=r.regularizer, iterations=r.iterations, normalize=r.normalize)
    return STLSQ(alpha=r.alpha, normalize=r.normalize)


def build_lams(cfg: ExperimentConfig) -> np.ndarray:
    lm = cfg.discovery.lams
    if lm.values is not None:
        return np.asarray(lm.values, float)
    return 10.0 ** np.arange(lm.log10_start, lm.log10_stop + 1e-9, lm.log10_step)


def true_missing(cfg: ExperimentConfig, truth: AbstractPhysics | None):
    """The true missing term ``(t, y) -> dy/dt`` (the truth's terms the model does not know), or
    None when there is no truth or nothing is missing."""
    if truth is None:
        return None
    missing = [t for t in truth.term_names if t not in cfg.model.known]
    if not missing:
        return None
    return truth.keep(*missing)


def fitted_y0(train: data_mod.Dataset, extra) -> jax.Array:
    """The initial states the fitted model starts from: learned ones where the strategy learned
    them, else the first (noisy) samples, as in training."""
    if isinstance(extra, dict) and "y0" in extra:
        return jnp.asarray(extra["y0"])
    if isinstance(extra, dict) and "starts" in extra:
        return jnp.where(train.mask[:, 0, :], train.ys[:, 0, :], extra["starts"][:, 0, :])
    return initial_states(train)


def build_mesh(cfg: ExperimentConfig):
    """The device mesh splitting the ensemble over ``parallel.devices`` devices (None for one).

    Raises ValueError when jax sees fewer devices than asked for."""
    n = cfg.parallel.devices or 1
    if n == 1:
        return None
    devices = jax.devices()
    if len(devices) < n:
        kind = devices[0].platform
        hint = (f"; on CPUs, start the process with XLA_FLAGS=--xla_force_host_platform_device_count={n}"
                " (`ude run --devices N` sets it; jax fixes its device count when it starts)"
                ) if kind == "cpu" else ""
        raise ValueError(f"parallel.devices = {n}, but jax sees only {len(devices)} {kind} "
                         f"device(s){hint}")
    return make_mesh(members=n)


def member_keys(key, n: int):
    """``(n,)`` keys: ``key`` itself for member 0 (so member 0 is exactly the single run) and
    ``fold_in(key, i)`` for member i (so a member does not depend on the ensemble's size)."""
    if n == 1:
        return key[None]
    rest = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(1, n))
    return jnp.concatenate([key[None], rest])


def member_train(cfg: ExperimentConfig, data: data_mod.Dataset | None, train: data_mod.Dataset,
                 n: int) -> data_mod.Dataset:
    """The training data of an ensemble of ``n``: ``train`` shared by all members, or with
    ``parallel.redraw_noise`` stacked ``(members, traj, times, state)``: member 0's is ``train``,
    member i's a new noise draw (key ``fold_in(key(data.seed), i)``) on the whole dataset's
    ``y_true``, then windowed like ``train``."""
    if not cfg.parallel.redraw_noise or n == 1:
        return train
    if data is None or data.y_true is None:
        raise ValueError("parallel.redraw_noise: the whole simulated dataset (with y_true) is "
                         "needed to redraw the noise")
    base = jr.key(cfg.data.seed)
    keys = jax.vmap(lambda i: jr.fold_in(base, i))(jnp.arange(1, n))
    redrawn = unstack(resample_noise(data, _noise(cfg), keys))
    return stack([train] + [split_data(cfg, d)[0] for d in redrawn])


@eqx.filter_jit
def _library_and_target(library, fn, pts):
    return library(pts), jax.vmap(lambda y: fn(0.0, y))(pts)


def _true_coefficients(library, fn, ys: np.ndarray, states) -> dict | None:
    """``{state: {term: coef}}`` of the true missing term ``fn`` in ``library``, by least squares on
    random points of the box the trajectories ``ys`` span (a curve alone would leave the library
    rank-deficient); None when the term is not in the library's span."""
    if fn is None or ys.size == 0:
        return None
    ys = ys.reshape(-1, ys.shape[-1])
    lo, hi = ys.min(axis=0), ys.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    pts = np.random.default_rng(0).uniform(lo - pad, hi + pad, size=(max(400, 20 * library.n_terms),
                                                                     ys.shape[1]))
    theta, u = map(np.asarray, _library_and_target(library, fn, jnp.asarray(pts)))
    coef, *_ = np.linalg.lstsq(theta, u, rcond=None)
    resid = np.linalg.norm(theta @ coef - u) / max(np.linalg.norm(u), 1e-300)
    if resid > 1e-6:
        return None
    scale = max(np.abs(coef).max(), 1e-300)
    return {s: {n: float(round(c, 10)) for n, c in zip(library.names, coef[:, j])
                if abs(c) > 1e-8 * scale}
            for j, s in enumerate(states)}


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def default_run_dir(cfg: ExperimentConfig, root=None) -> Path:
    """``<output.dir>/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists)."""
    root = Path(root if root is not None else cfg.output.dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{cfg.name or 'experiment'}-{stamp}"
    out, i = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{i}")
        i += 1
    return out


def prepare_run_dir(cfg: ExperimentConfig, out_dir, *, resume: bool = False) -> Path:
    """Create ``out_dir`` and write ``config.yaml``; refuse a non-empty directory unless resuming."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if resume:
        if not (out / FILES["config"]).is_file():
            raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
        return out
    _check_new_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / FILES["config"], dump_config(cfg))
    return out


def _check_new_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if out.exists() and any(p.name != runlock.LOCK_NAME for p in out.iterdir()):
        raise RunDirError(f"{out} already exists and is not empty; choose another --out, or "
                          f"continue it with `ude resume {out}`")


@contextlib.contextmanager
def locked_run_dir(cfg: ExperimentConfig, out_dir, *, resume: bool = False, command: str = ""):
    """:func:`prepare_run_dir` under the directory's lock (``DIR/.lock``, held until the block
    ends): a second process writing the same directory gets a :class:`RunDirError` naming the
    holder."""
    out = Path(out_dir)
    if resume and not (out / FILES["config"]).is_file():
        raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
    if not resume:
        _check_new_dir(out)
        out.mkdir(parents=True, exist_ok=True)
    try:
        lock = runlock.acquire(out, command=command)
    except runlock.RunLocked as e:
        raise RunDirError(str(e)) from None
    with lock:
        if resume:  # temporary files of a writer that was killed mid-write (we hold the lock)
            for tmp in [*out.glob(".*.tmp"), *(out / FILES["checkpoints"]).glob(".*.tmp")]:
                tmp.unlink(missing_ok=True)
        yield prepare_run_dir(cfg, out, resume=resume)


def load_run(out_dir) -> ExperimentConfig:
    """The resolved config of a run directory."""
    out = Path(out_dir)
    if not (out / FILES["config"]).is_file():
        raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
    return load_config(out / FILES["config"])


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def json_safe(x):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return json_safe(np.asarray(x).tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def _save_eqx(path: Path, tree) -> None:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    atomic_write_bytes(path, buf.getvalue())


def _load_eqx(path: Path, like):
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as e:  # wrong structure or truncated
        raise RunDirError(f"{path}: cannot restore it ({type(e).__name__}: {e}); the config may "
                          "have changed since it was written") from None


def _write_history(path: Path, history: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k in ("step", "stage", "loss", "accepted", "lr_scale") if k in history]
    w.writerow(keys)
    for row in zip(*(np.asarray(history[k]).tolist() for k in keys)):
        w.writerow([int(v) if isinstance(v, bool) else repr(v) if isinstance(v, float) else v
                    for v in row])
    atomic_write_text(path, buf.getvalue())


def read_history(path) -> dict[str, np.ndarray]:
    """history.csv as numpy arrays (step, stage, loss, accepted, lr_scale)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    head, body = rows[0], rows[1:]
    cols = list(zip(*body)) if body else [[] for _ in head]
    out = {}
    for k, col in zip(head, cols):
        if k in ("step", "stage"):
            out[k] = np.asarray([int(v) for v in col], int)
        elif k == "accepted":
            out[k] = np.asarray([v in ("1", "True", "true") for v in col], bool)
        else:
            out[k] = np.asarray([float(v) for v in col], float)
    return out


def _log(log: Log, msg: str) -> None:
    if log is not None:
        log(msg)


# ------------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------------
def input_data(cfg: ExperimentConfig) -> data_mod.Dataset:
    """:func:`build_data`, its failures as :class:`DataError` (a broken table, a failed truth solve)."""
    try:
        return build_data(cfg)
    except (ValueError, OSError) as e:
        raise DataError(f"data: {e}") from None


def step_data(cfg: ExperimentConfig, out: Path, log: Log = None,
              data: data_mod.Dataset | None = None) -> data_mod.Dataset:
    """Save ``data`` (default: build it), or load the dataset when the run already has it (its
    sidecar, written last, marks a complete save)."""
    path = out / FILES["data"]
    if path.with_name(path.name + ".json").is_file():
        try:
            return data_mod.load(path)
        except ValueError as e:
            raise DataError(f"{e}; delete {path.name}.npz and {path.name}.json to rebuild the data "
                            f"with `ude resume {out}`") from None
    data = input_data(cfg) if data is None else data
    data_mod.save(data, path)
    src = cfg.data.file.path if cfg.data.file else f"simulated {cfg.truth.system}"
    _log(log, f"data: {src}, {data.n_traj} trajectory(ies) × {data.n_times} times × "
              f"{data.n_states} states, {data.n_observed()} observed values")
    return data


def fit_problem(cfg: ExperimentConfig, history: dict, rejected, final_loss,
                stages=None) -> str | None:
    """Why a fit is unusable (every step of a stage rejected, a non-finite final loss), or None.
    ``stages``: the stage configs of the fit (default ``cfg.train.stages``)."""
    stage_of = np.asarray(history.get("stage", []))
    stages = cfg.train.stages if stages is None else stages
    for i, (st, n_rej) in enumerate(zip(stages, rejected)):
        n = int((stage_of == i).sum())
        if n and n_rej >= n:
            hint = (f"the solve failed (solver.max_steps = {cfg.solver.max_steps} exhausted?) or "
                    "the loss or its gradients were not finite")
            fix = "lower the learning rate, " if st.kind == "adam" else ""
            return (f"training diverged: all {n} steps of stage {i + 1} ({st.kind}) were rejected "
                    f"({hint}); {fix}raise solver.max_steps or shrink model.network.output_scale")
    if final_loss is None or not math.isfinite(final_loss):
        return (f"training diverged: the final loss is {final_loss} (the fitted model cannot be "
                "solved over the training data)")
    return None


@dataclasses.dataclass
class EnsembleFit:
    """The trained ensemble: stacked ``models`` and ``extra``, every member's final loss on the
    run's training data and the chosen member; ``info`` is ensemble.json."""

    models: object
    extra: object
    final_losses: np.ndarray
    best: int
    info: dict

    @property
    def n(self) -> int:
        return int(self.final_losses.shape[0])


@dataclasses.dataclass
class Fitted:
    model: UDE
    extra: object
    history: dict
    info: dict
    ensemble: EnsembleFit | None = None


def step_fit(cfg: ExperimentConfig, out: Path, train, *, key, verbose: bool = True, log: Log = None,
             callback=None, stop=None, data: data_mod.Dataset | None = None) -> Fitted:
    """Fit the UDE (continuing from checkpoints when there are some), or load the fitted model.

    With ``parallel.ensemble > 1`` the ensemble is trained instead (:func:`step_fit_ensemble`;
    ``data``, the whole dataset, is needed for ``parallel.redraw_noise``)."""
    if cfg.parallel.ensemble > 1:
        if callback is not None:
            raise ValueError("step_fit: a fit callback is not supported with parallel.ensemble > 1 "
                             "(the members train as one program)")
        return step_fit_ensemble(cfg, out, train, key=key, data=data, verbose=verbose, log=log)
    k_model, k_fit = jr.split(key)
    model = build_model(cfg, k_model)
    strategy = build_phases(cfg)[-1][1]  # the saved extra is the last phase's
    if (out / FILES["model"]).is_file() and (out / FILES["fit"]).is_file():
        extra = strategy.init(model, train)
        model, extra = _load_eqx(out / FILES["model"], (model, extra))
        info = json.loads((out / FILES["fit"]).read_text())
        return Fitted(model, extra, read_history(out / FILES["history"]), info)
    ckpt = out / FILES["checkpoints"]
    phases = build_phases(cfg)
    # a fresh block per phase: a generator context manager can be entered once only
    armed = stop.armed if hasattr(stop, "armed") else contextlib.nullcontext
    results = []
    for name, p_strategy, p_cfg_stages in phases:
        p_ckpt = ckpt if name == "train" else out / f"{FILES['checkpoints']}-{name}"
        resume = (p_ckpt / "checkpoint.json").is_file()
        _log(log, f"fit ({name}): " + ("resuming from the last checkpoint" if resume else
                                       " → ".join(f"{s.kind} × {s.steps}" for s in p_cfg_stages)))
        with armed():
            res = fit(model, train, p_strategy, build_stages(p_cfg_stages), key=k_fit,
                      chunk=cfg.train.chunk, verbose=verbose, checkpoint_dir=p_ckpt,
                      checkpoint_every=cfg.train.checkpoint_every, resume=resume,
                      callback=callback, should_stop=stop)
        results.append(res)
        model = res.model
        problem = fit_problem(cfg, res.history, res.rejected, res.final_loss, p_cfg_stages)
        if problem is not None:
            break
    res = _merge_phases(results, [len(st) for _, _, st in phases])
    all_stages = [s for _, _, st in phases[:len(results)] for s in st]
    info = {"final_loss": res.final_loss, "wall_seconds": res.wall_seconds,
            "stages": [s.kind for s in all_stages], "stopped": res.stopped,
            "rejected": res.rejected, "steps": int(len(res.history["step"])),
            "phases": [name for name, _, _ in phases[:len(results)]]}
    if problem is not None:
        # no model.eqx: `ude resume` re-reads the last checkpoint and reports the same
        info["failed"] = problem
        _write_history(out / FILES["history"], res.history)
        _write_json(out / FILES["fit"], info)
        _write_json(out / FILES["metrics"], {
            "name": cfg.name, "status": "failed", "error": problem,
            "final_loss": res.final_loss, "fit": {k: info.get(k) for k in
                                                  ("steps", "stages", "stopped", "rejected")},
            "run_dir": str(out)})
        raise FitFailed(f"{problem}; the last checkpoint is kept in {ckpt}")
    _save_eqx(out / FILES["model"], (res.model, res.extra))
    _write_history(out / FILES["history"], res.history)
    _write_json(out / FILES["fit"], info)
    _log(log, f"fit: final loss {res.final_loss:.6g} after {info['steps']} steps "
              f"({res.wall_seconds:.1f} s)")
    return Fitted(res.model, res.extra, res.history, info)


def _member_extra_like(strategy, models, train, n: int):
    outs = [strategy.init(member(models, i), train) for i in range(n)]
    return None if all(o is None for o in outs) else stack(outs)


def _loss_or_nan(x) -> float:
    return float("nan") if x is None else float(x)


def step_fit_ensemble(cfg: ExperimentConfig, out: Path, train, *, key, data=None,
                      verbose: bool = True, log: Log = None) -> Fitted:
    """Train ``parallel.ensemble`` members as one vmapped program (split over
    ``parallel.devices`` devices), or load the saved ensemble.

    Member ``i`` starts from network key ``fold_in(k_model, i)`` (member 0: the single run's) and
    trains with key ``fold_in(k_fit, i)`` on :func:`member_train`. Each member's final loss is its
    loss on the run's training data ``train`` (with ``parallel.redraw_noise`` it differs from the
    loss on the member's own noise draw, kept as ``training_losses``; only the former compares
    members); the usable member (see :func:`fit_problem`) with the lowest one becomes the run's
    model (model.eqx, fit.json, history.csv, as for a single fit), so discovery and evaluation
    run on it unchanged. ensemble.eqx holds every member, ensemble.json (written last, it marks a
    finished ensemble) their losses. There are no checkpoints: without ensemble.json the
    ensemble is trained again from the start.
    """
    n = cfg.parallel.ensemble
    k_model, k_fit = jr.split(key)
    phases = build_phases(cfg)
    strategy = phases[-1][1]  # the saved extra and the final loss are the last phase's
    models = stack([build_model(cfg, k) for k in member_keys(k_model, n)])
    ens_path, info_path = out / FILES["ensemble"], out / FILES["ensemble_info"]
    done = all((out / FILES[f]).is_file() for f in ("ensemble", "ensemble_info", "model", "fit"))
    if done:
        einfo = json.loads(info_path.read_text())
        losses = np.asarray([_loss_or_nan(x) for x in einfo["final_losses"]], float)
        if losses.shape != (n,):
            raise RunDirError(f"{info_path}: {losses.shape[0]} members saved, but parallel.ensemble "
                              f"is {n}; the config has changed since the run was written")
        like = (models, _member_extra_like(strategy, models, train, n))
        ens = EnsembleFit(*_load_eqx(ens_path, like), losses, int(einfo["best_member"]), einfo)
        best = ens.best
        history = (read_history(out / FILES["history"]) if (out / FILES["history"]).is_file()
                   else {})
        return Fitted(member(ens.models, best), member(ens.extra, best), history,
                      json.loads((out / FILES["fit"]).read_text()), ensemble=ens)
    mesh = build_mesh(cfg)
    where = f" on {cfg.parallel.devices} devices" if mesh is not None else ""
    all_stages = [st for _, _, p_stages in phases for st in p_stages]
    _log(log, f"fit: ensemble of {n}{where}" + (" (noise redrawn per member)" if
                                                 cfg.parallel.redraw_noise else "") + ": "
         + " → ".join(f"{s.kind} × {s.steps}" for s in all_stages))
    mtrain = member_train(cfg, data, train, n)
    results, current = [], models
    for _, p_strategy, p_stages in phases:  # pretrain, train, polish: each phase's members go on
        results.append(fit_ensemble(current, mtrain, p_strategy, build_stages(p_stages),
                                    key=member_keys(k_fit, n), chunk=cfg.train.chunk,
                                    verbose=verbose, mesh=mesh))
        current = results[-1].models
    res = results[-1]
    wall = sum(r.wall_seconds for r in results)
    sizes = [len(p_stages) for _, _, p_stages in phases]
    members = [_merge_phases([r.member(i) for r in results], sizes) for i in range(n)]
    losses = np.asarray(res.final_losses, float)
    if cfg.parallel.redraw_noise:
        losses = np.asarray([loss_value(m.model, train, strategy, m.extra) for m in members])
    problems = [fit_problem(cfg, m.history, m.rejected, float(loss), all_stages)
                for m, loss in zip(members, losses)]
    usable = [i for i in range(n) if problems[i] is None]
    einfo = {"members": n, "final_losses": losses.tolist(),
             "best_member": None, "failed": {str(i): p for i, p in enumerate(problems) if p},
             "devices": cfg.parallel.devices or 1, "redraw_noise": cfg.parallel.redraw_noise,
             "rejected": np.concatenate([r.rejected for r in results], axis=1).tolist(),
             "stopped": np.concatenate([r.stopped for r in results], axis=1).tolist(),
             "wall_seconds": wall}
    if cfg.parallel.redraw_noise:
        einfo["training_losses"] = res.final_losses.tolist()
    best = min(usable, key=lambda i: losses[i]) if usable else 0
    b = members[best]
    info = {"final_loss": float(losses[best]), "wall_seconds": wall,
            "stages": [s.kind for s in all_stages], "stopped": b.stopped,
            "rejected": b.rejected, "steps": int(len(b.history["step"])), "ensemble_member": best,
            "phases": [name for name, _, _ in phases]}
    if not usable:
        problem = f"all {n} ensemble members failed; member 0: {problems[0]}"
        info["failed"] = problem
        _write_history(out / FILES["history"], b.history)
        _write_json(out / FILES["fit"], info)
        _write_json(out / FILES["metrics"], {
            "name": cfg.name, "status": "failed", "error": problem, "final_loss": info["final_loss"],
            "fit": {k: info.get(k) for k in ("steps", "stages", "stopped", "rejected")},
            "ensemble": {k: einfo[k] for k in ("members", "final_losses", "failed")},
            "run_dir": str(out)})
        raise FitFailed(problem)
    einfo["best_member"] = best
    _save_eqx(ens_path, (res.models, res.extra))
    _save_eqx(out / FILES["model"], (b.model, b.extra))
    _write_history(out / FILES["history"], b.history)
    _write_json(out / FILES["fit"], info)
    _write_json(info_path, einfo)
    ens = EnsembleFit(res.models, res.extra, losses, best, einfo)
    ok = np.isfinite(ens.final_losses)
    _log(log, f"fit: ensemble final losses {np.min(ens.final_losses[ok]):.6g} (member {best}) … "
              f"{np.max(ens.final_losses[ok]):.6g}, {n - len(usable)} failed "
              f"({wall:.1f} s)")
    return Fitted(b.model, b.extra, b.history, info, ensemble=ens)


@dataclasses.dataclass
class Found:
    discovery: Discovery | None
    model: DiscoveredModel
    info: dict


def _unique_times(*parts) -> np.ndarray:
    t = np.sort(np.concatenate([np.asarray(p, float).ravel() for p in parts]))
    tol = 1e-9 * max(1.0, float(np.max(np.abs(t))))
    return t[np.concatenate([[True], np.diff(t) > tol])]


def evaluation_grid(cfg: ExperimentConfig, data, train) -> np.ndarray:
    """The one time grid every model is solved on after training: the discovery grid (every
    ``discovery.dt``) over the training window, the extrapolation grid (every ``evaluate.dt`` up to
    ``evaluate.t_end``) and the data times. One grid means one compilation per model."""
    ts = np.asarray(data.ts, float)
    t0, t_tr = float(ts[0]), float(np.asarray(train.ts)[-1])
    t_end = max(cfg.evaluate.t_end if cfg.evaluate.t_end is not None else ts[-1], t_tr, ts[-1])
    n_fine = int(np.floor((t_tr - t0) / cfg.discovery.dt + 1e-9))
    n_ext = int(np.floor((t_end - t0) / cfg.evaluate.dt + 1e-9))
    return _unique_times(t0 + cfg.discovery.dt * np.arange(n_fine + 1), [t_tr],
                         t0 + cfg.evaluate.dt * np.arange(n_ext + 1), [t_end], ts)


def _extrapolation_times(cfg: ExperimentConfig, data, train, ts_all) -> tuple[float, np.ndarray]:
    """``(t_end, on_grid)``: the end of the extrapolation and which times of ``ts_all`` (the
    :func:`evaluation_grid`) lie on its grid (every ``evaluate.dt``, and ``t_end``)."""
    ts_data = np.asarray(data.ts)
    t0, t_tr = float(ts_data[0]), float(np.asarray(train.ts)[-1])
    t_end = cfg.evaluate.t_end if cfg.evaluate.t_end is not None else float(ts_data[-1])
    t_end = max(t_end, t_tr, float(ts_data[-1]))
    grid = _unique_times(t0 + cfg.evaluate.dt * np.arange(int(np.floor((t_end - t0) / cfg.evaluate.dt
                                                                          + 1e-9)) + 1), [t_end])
    on_grid = np.abs(ts_all[:, None] - grid[None, :]).min(axis=1) <= 1e-9 * max(1.0, t_end)
    return t_end, on_grid


def initial_states_for_evaluation(cfg: ExperimentConfig, train, extra) -> tuple[np.ndarray, int]:
    """``(y0 stack, n)``: the fitted initial states (n trajectories), followed by the true ones
    when the data are simulated (the paper extrapolates from the true u0)."""
    y0_fit = np.asarray(fitted_y0(train, extra), float)
    if cfg.truth is None:
        return y0_fit, y0_fit.shape[0]
    return np.concatenate([y0_fit, np.asarray(cfg.truth.y0, float)]), y0_fit.shape[0]


def trajectories(cfg: ExperimentConfig, model, data, train, extra):
    """``(ts, ys (2n or n, times, state), ok, n)``: ``model`` solved on :func:`evaluation_grid`
    from :func:`initial_states_for_evaluation`."""
    ts = evaluation_grid(cfg, data, train)
    y0, n = initial_states_for_evaluation(cfg, train, extra)
    ys, ok = _solve_np(model, y0, ts, _eval_options(cfg))
    return ts, ys, ok, n


def _discovered_like(cfg, fitted_model, library, coefficients, mask) -> DiscoveredModel:
    known = fitted_model.known
    if cfg.discovery.refit.enabled and cfg.discovery.refit.train_known:
        known = known.set_trainable(*cfg.discovery.refit.train_known)
    return DiscoveredModel(known, library, coefficients, mask)


def _selection_options(cfg, fitted: Fitted, train) -> SolverOptions:
    """The solver options of the candidates' refit: the config's, with ``max_steps`` cut to 8× the
    steps the fitted UDE needs over the training window (at least 64). All candidates refit as one
    vmapped program that runs at the pace of its slowest member; a candidate that turns stiff or
    blows up must fail fast instead of holding every other one for ``solver.max_steps``."""
    opts = build_options(cfg)
    y0 = fitted_y0(train, fitted.extra)
    sol = solve(fitted.model, y0, train.ts, opts)
    need = int(np.max(np.asarray(sol.num_steps)))
    return build_options(cfg, max_steps=min(cfg.solver.max_steps, max(64, 8 * need)))


def _plain_loss(cfg, model, train, extra, learn_y0: bool) -> float:
    """The training loss's definition (``train.strategy.loss``, unweighted) of a refitted model with
    its refitted initial states: comparable with the fit's ``final_loss``."""
    strategy = SingleShooting(options=build_options(cfg), reduction=_static(cfg.train.strategy.loss),
                              learn_y0=learn_y0)
    return loss_value(model, train, strategy, extra)


def step_discover(cfg: ExperimentConfig, out: Path, fitted: Fitted, data, train, *, key,
                  verbose: bool = True, log: Log = None, force: bool = False) -> Found | None:
    """Sparse-regress the trained network's output, then refit the kept terms; or load them."""
    if not cfg.discovery.enabled:
        return None
    library = build_library(cfg)
    path = out / FILES["discovery"]
    if path.is_file() and (out / FILES["discovered"]).is_file() and not force:
        info = json.loads(path.read_text())
        like = _discovered_like(cfg, fitted.model, library, np.asarray(info["coefficients"]),
                                np.asarray(info["mask"], bool))
        return Found(None, _load_eqx(out / FILES["discovered"], like), info)
    dc = cfg.discovery
    _log(log, f"discovery: {library.n_terms} candidate terms, {len(build_lams(cfg))} λ values, "
              f"{dc.regressor.kind}")
    # the paper regresses on the trained UDE's own trajectory, sampled finer than the data
    ts, ys, ok, n = trajectories(cfg, fitted.model, data, train, fitted.extra)
    if not ok and not np.all(np.isfinite(ys[:n])):
        raise ValueError("discovery: the fitted UDE's trajectory could not be solved over the "
                         "training window")
    inside = ts <= float(np.asarray(train.ts)[-1]) + 1e-9 * max(1.0, abs(float(ts[-1])))
    T = np.tile(ts[inside], n)
    Y = ys[:n, inside].reshape(-1, ys.shape[-1])
    simulate = dc.criterion == "simulation"
    d = discover(fitted.model, (T, Y), library, build_regressor(cfg), lams=build_lams(cfg),
                 criterion="paper" if simulate else dc.criterion, states=dc.states)
    info = {"names": list(d.names), "state_names": list(d.state_names), "states": list(d.states),
            "coefficients": d.coefficients.tolist(), "mask": d.mask.tolist(),
            "before_refit": d.as_dict(), "equations_before_refit": d.equations(),
            "selection": d.selection_info()}
    model = _discovered_like(cfg, fitted.model, library, d.coefficients, d.mask)
    weights = state_weights(train, dc.refit.weights)
    if simulate:
        lm_opts = _selection_options(cfg, fitted, train)
        sel = select_by_simulation(d, model.known, train, max_terms=dc.max_terms,
                                   top=tuple(dc.top), score=dc.score, delta=dc.delta,
                                   weights=weights, learn_y0=dc.refit.learn_y0, options=lm_opts,
                                   max_steps=dc.refit_iterations)
        for line in candidate_table_text(sel.table, rows=5):
            _log(log, "  " + line)
        d, model = sel.discovery, sel.model
        info.update(coefficients=d.coefficients.tolist(), mask=d.mask.tolist(),
                    refit_loss=_plain_loss(cfg, model, train, sel.extra, dc.refit.learn_y0),
                    refit_objective=sel.loss, candidates=sel.table,
                    equations_before_refit=None, before_refit=None)
        info["selection"]["criterion"] = "simulation"
        info["selection"]["refit_weights"] = weights.tolist()
    elif dc.refit.enabled:
        strategy = SingleShooting(options=build_options(cfg), reduction="sse", weights=weights,
                                  learn_y0=dc.refit.learn_y0)
        res = refit(model, train, strategy=strategy, stages=build_stages(dc.refit.stages), key=key,
                    verbose=verbose, chunk=cfg.train.chunk)
        model = res.model
        info["refit_loss"] = _plain_loss(cfg, model, train, res.extra, dc.refit.learn_y0)
        info["refit_objective"] = res.final_loss
        info["selection"]["refit_weights"] = weights.tolist()
        _write_history(out / FILES["refit_history"], res.history)
    info["discovered"] = model.as_dict()
    info["equations"] = model.equations()
    info["parameters"] = model.known.parameters() if model.known.param_names else {}
    _save_eqx(out / FILES["discovered"], model)
    _write_json(path, info)
    _log(log, "discovery: " + "; ".join(info["equations"]))
    return Found(d, model, info)


def _solve_np(model, y0, ts, options):
    """``(ys (traj, times, state) with inf after failures, ok)``."""
    sol = solve(model, jnp.asarray(y0), jnp.asarray(ts), options)
    ys = np.asarray(sol.ys, float)
    ok = bool(np.all(np.asarray(sol.ok))) and bool(np.all(np.isfinite(ys)))
    return np.where(np.isfinite(ys), ys, np.inf), ok


@eqx.filter_jit
def _on_traj_jit(fn, ts, ys):
    return jax.vmap(jax.vmap(fn, in_axes=(0, 0)), in_axes=(None, 0))(ts, ys)


def _on_traj(fn, ts, ys) -> np.ndarray:
    """``fn(t, y)`` at every point of trajectories ``ys`` (traj, times, state)."""
    return np.asarray(_on_traj_jit(fn, jnp.asarray(ts), jnp.asarray(ys)), float)


def step_evaluate(cfg: ExperimentConfig, out: Path, data, train, held, fitted: Fitted,
                  found: Found | None, *, log: Log = None) -> tuple[dict, dict]:
    """Compute everything the report needs: trajectories, missing terms, extrapolation and errors.

    Returns ``(results arrays, metrics)`` and writes ``results.npz``.
    """
    truth = build_truth(cfg)
    options = _eval_options(cfg)
    model = fitted.model
    final_name = "discovered" if found is not None else "ude"
    models = {"ude": model} if found is None else {"ude": model, "discovered": found.model}
    names = cfg.state_names
    ts_data = np.asarray(data.ts)
    t_tr = float(np.asarray(train.ts)[-1])
    y0_fit = np.asarray(fitted_y0(train, fitted.extra))
    n_traj = y0_fit.shape[0]
    r: dict[str, np.ndarray] = {
        "state_names": np.asarray(names), "data_ts": ts_data, "data_ys": np.asarray(data.ys),
        "data_mask": np.asarray(data.mask), "t_train_end": np.asarray(t_tr)}
    if data.y_true is not None:
        r["data_y_true"] = np.asarray(data.y_true)

    # one grid and one solve per model (see evaluation_grid); the stacked initial states give the
    # fit and the held-out predictions (fitted y0) and the extrapolation (true y0)
    ts_all = evaluation_grid(cfg, data, train)
    t_end, on_grid = _extrapolation_times(cfg, data, train, ts_all)
    at_data = np.abs(ts_all[None, :] - ts_data[:, None]).argmin(axis=1)
    y0_all, _ = initial_states_for_evaluation(cfg, train, fitted.extra)
    y0_ext = y0_all[-n_traj:]
    ys_all, ok_all = {}, {}
    for name, vf in models.items():
        ys_all[name], ok_all[name] = _solve_np(vf, y0_all, ts_all, options)
    inside = ts_all <= t_tr + 1e-9 * max(1.0, t_end)
    r["fit_ts"], r["fit_ys"] = ts_all[inside], ys_all["ude"][:n_traj, inside]
    ext_ts = ts_all[on_grid]
    r["ext_ts"] = ext_ts
    for name in models:
        r[f"ext_{name}"] = ys_all[name][-n_traj:][:, on_grid]

    missing_fn = true_missing(cfg, truth)
    if model.correction is not None and np.all(np.isfinite(r["fit_ys"])):
        r["u_learned"] = _on_traj(model.missing, r["fit_ts"], r["fit_ys"])
        if missing_fn is not None:
            r["u_true"] = _on_traj(missing_fn, r["fit_ts"], r["fit_ys"])
        if found is not None:
            r["u_discovered"] = _on_traj(found.model.missing, r["fit_ts"], r["fit_ys"])

    extrapolation = {"t_end": t_end, "model": final_name, "ok": ok_all[final_name], "rmse": None,
                     "reference": None}
    if truth is not None:
        if (data.y_true is not None and ext_ts.shape == ts_data.shape
                and np.allclose(ext_ts, ts_data, rtol=0, atol=1e-9)):
            r["ext_truth"] = np.asarray(data.y_true)  # the same grid: no second truth solve
        else:
            r["ext_truth"] = np.asarray(data_mod.simulate(truth, y0_ext, ext_ts,
                                                          rtol=cfg.truth.tolerance,
                                                          atol=cfg.truth.tolerance).y_true)
        ref = r["ext_truth"]
        within = ext_ts <= t_tr + 1e-12
        for name in models:
            pred = r[f"ext_{name}"]
            pre = "" if name == final_name else f"{name}_"
            extrapolation[f"{pre}rmse"] = float(rmse(pred, ref))
            extrapolation[f"{pre}rmse_train"] = float(rmse(pred[:, within], ref[:, within]))
            extrapolation[f"{pre}rmse_beyond"] = (float(rmse(pred[:, ~within], ref[:, ~within]))
                                                  if (~within).any() else None)
        extrapolation["reference"] = "truth"
        osc = {}
        for j, s in enumerate(names):
            tr = oscillation_stats(ext_ts, ref[0, :, j])
            if tr["n_peaks"] < 2:
                continue
            st = oscillation_stats(ext_ts, r[f"ext_{final_name}"][0, :, j])
            osc[s] = {"true_peak_height": tr["peak_height"], "peak_height": st["peak_height"],
                      "true_period": tr["period"], "period": st["period"]}
        if osc:
            extrapolation["oscillation"] = osc
    if held is not None:
        sel = ts_data > t_tr + 1e-12
        m = np.asarray(data.mask)[:, sel]
        obs = np.asarray(data.ys)[:, sel]
        held_rmse = {}
        for name in models:
            pred = ys_all[name][:n_traj][:, at_data[sel]]
            diff = (pred - obs)[m]
            held_rmse[name] = float(np.sqrt(np.mean(diff**2))) if diff.size else None
        extrapolation["held_out_rmse"] = held_rmse[final_name]
        if final_name != "ude":
            extrapolation["ude_held_out_rmse"] = held_rmse["ude"]
        if truth is None:
            extrapolation["rmse"] = held_rmse[final_name]
            extrapolation["reference"] = "held-out data"
    # losses (final_loss is the last training phase's full loss: measure the truth the same way)
    strategy = build_phases(cfg)[-1][1]
    noise_floor = None
    if truth is not None:
        noise_floor = loss_value(UDE(truth.keep(*truth.term_names), None), train, strategy)
    metrics = {
        "name": cfg.name, "final_loss": fitted.info["final_loss"], "noise_floor": noise_floor,
        "fit": {k: fitted.info.get(k) for k in ("steps", "stages", "stopped", "rejected", "wall_seconds")},
        "parameters": {p: float(model.known.p(p)) for p in cfg.model.parameters
                       if p in cfg.model.trainable},
        "discovered": None, "extrapolation": extrapolation,
    }
    if found is not None:
        metrics["discovered"] = found.info["discovered"]
        metrics["discovered_before_refit"] = found.info["before_refit"]
        metrics["equations"] = found.info["equations"]
        metrics["refit_loss"] = found.info.get("refit_loss")
        if cfg.discovery.refit.train_known or cfg.model.trainable:
            metrics["refit_parameters"] = {p: float(found.model.known.p(p)) for p in
                                           set(cfg.discovery.refit.train_known) | set(cfg.model.trainable)}
        samples = np.asarray(data.y_true) if data.y_true is not None else np.empty((0,))
        true_coef = _true_coefficients(build_library(cfg), missing_fn, samples, cfg.state_names)
        if true_coef is not None:
            outs = set(found.info.get("states", cfg.state_names))
            true_coef = {s: c for s, c in true_coef.items() if s in outs}
            metrics["true_missing"] = true_coef
            metrics["coefficients"] = coefficient_errors(found.info["discovered"], true_coef)
    if fitted.ensemble is not None:
        metrics["ensemble"], arrays = ensemble_spread(cfg, data, train, fitted.ensemble)
        r.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **r)
    atomic_write_bytes(out / FILES["results"], buf.getvalue())
    return r, metrics


def ensemble_spread(cfg: ExperimentConfig, data, train, ens: EnsembleFit) -> tuple[dict, dict]:
    """The ensemble's uncertainty: ``(the "ensemble" block of metrics.json, arrays for
    results.npz)``.

    Every member is solved (one vmapped solve) on the :func:`evaluation_grid` from its fitted
    initial states on the run's training data and, for simulated data, the true ones, as the
    run's model is in :func:`step_evaluate`. ``trajectory_spread[state]`` gives the members' 5 %, 50 % and 95 %
    quantiles at the end of the extrapolation (first trajectory) and ``band_rms``, the RMS over the
    extrapolation grid (all trajectories) of the 5-95 % band's width. With discovery on,
    ``coefficient_spread`` repeats discovery's regression for every member on its own trajectory
    (the λ sweep and the ``paper``/``aicc``/``knee`` pick; ``simulation`` is replaced by ``paper``,
    and nothing is refitted): per state and term, the fraction of members keeping the term
    (``inclusion``) and the mean and std of its coefficient over those members.
    """
    names = cfg.state_names
    ts_all = evaluation_grid(cfg, data, train)
    t_end, on_grid = _extrapolation_times(cfg, data, train, ts_all)
    starts = [initial_states_for_evaluation(cfg, train, member(ens.extra, i))
              for i in range(ens.n)]
    n_traj = starts[0][1]
    qs = (0.05, 0.5, 0.95)
    sp = trajectory_spread(ens.models, np.stack([y0 for y0, _ in starts]), ts_all,
                           options=_eval_options(cfg), quantiles=qs)
    ys, ok = np.asarray(sp["ys"], float), np.asarray(sp["ok"], bool)
    lo, mid, hi = (np.asarray(sp["quantiles"][q], float)[-n_traj:][:, on_grid] for q in qs)
    traj_spread = {s: {"p05": lo[0, -1, j], "p50": mid[0, -1, j], "p95": hi[0, -1, j],
                       "band_rms": float(np.sqrt(np.mean((hi[..., j] - lo[..., j]) ** 2)))}
                   for j, s in enumerate(names)}
    block = {"members": ens.n, "final_losses": ens.final_losses, "best_member": ens.best,
             **({"training_losses": ens.info["training_losses"]} if "training_losses" in ens.info
                else {}),
             "failed": ens.info.get("failed", {}), "redraw_noise": cfg.parallel.redraw_noise,
             "spread_t": t_end, "members_solved": int(ok.sum()),
             "trajectory_spread": traj_spread, "coefficient_spread": None}
    arrays = {"ensemble_final_losses": ens.final_losses, "ensemble_ok": ok,
              "ext_ensemble_p05": lo, "ext_ensemble_p50": mid, "ext_ensemble_p95": hi}
    dc = cfg.discovery
    if dc.enabled and cfg.model.network is not None:
        t_tr = float(np.asarray(train.ts)[-1])
        inside = ts_all <= t_tr + 1e-9 * max(1.0, abs(float(ts_all[-1])))
        library, regressor, lams = build_library(cfg), build_regressor(cfg), build_lams(cfg)
        criterion = "paper" if dc.criterion == "simulation" else dc.criterion
        T = np.tile(ts_all[inside], n_traj)
        found = []
        for i in range(ens.n):
            Y = ys[i, :n_traj][:, inside].reshape(-1, ys.shape[-1])
            if not np.all(np.isfinite(Y)):
                continue
            try:
                found.append(discover(member(ens.models, i), (T, Y), library, regressor, lams=lams,
                                      criterion=criterion, states=dc.states))
            except ValueError:  # e.g. the network's output is not finite along the trajectory
                continue
        terms = {}
        if found:
            coefs = np.stack([d.coefficients for d in found])
            kept = np.stack([d.mask for d in found])
            ref = found[0]
            for j, s in enumerate(ref.state_names):
                if s not in ref.states:
                    continue
                terms[s] = {}
                for k, name in enumerate(ref.names):
                    sel = kept[:, k, j]
                    if sel.any():
                        terms[s][name] = {"mean": float(coefs[sel, k, j].mean()),
                                          "std": float(coefs[sel, k, j].std()),
                                          "inclusion": float(sel.mean())}
        block["coefficient_spread"] = {"criterion": criterion, "members": len(found),
                                       "terms": terms}
    return block, arrays


def step_figures(cfg: ExperimentConfig, out: Path, *, log: Log = None) -> list[Path]:
    """Draw the figures from ``results.npz`` and ``history.csv`` (no solves)."""
    from . import plots

    res_path = out / FILES["results"]
    if not res_path.is_file():
        raise RunDirError(f"{out}: no {FILES['results']} yet; finish the run first (`ude resume {out}`)")
    with np.load(res_path, allow_pickle=False) as z:
        results = {k: z[k] for k in z.files}
    history = read_history(out / FILES["history"]) if (out / FILES["history"]).is_file() else None
    stages = json.loads((out / FILES["fit"]).read_text())["stages"] if (out / FILES["fit"]).is_file() else []
    paths = plots.draw_all(results, history, stages, out / FILES["figures"],
                           formats=cfg.output.formats, dpi=cfg.output.dpi, title=cfg.name)
    _log(log, f"figures: {len(paths)} files in {out / FILES['figures']}")
    return paths


# ------------------------------------------------------------------------------------------------
# drivers
# ------------------------------------------------------------------------------------------------
def _finish(cfg, out, data, train, held, fitted, found, t_start, log, figures=True) -> dict:
    results, metrics = step_evaluate(cfg, out, data, train, held, fitted, found, log=log)
    if figures and cfg.output.figures:
        step_figures(cfg, out, log=log)
    metrics["status"] = "ok"
    metrics["wall_seconds"] = time.perf_counter() - t_start
    metrics["run_dir"] = str(out)
    _write_json(out / FILES["metrics"], metrics)
    return json_safe(metrics)


def run_experiment(cfg: ExperimentConfig, out_dir, *, verbose: bool = True, resume: bool = False,
                   log: Log = None, fit_callback=None, stop=None) -> dict:
    """Run the whole pipeline into ``out_dir`` and return the metrics (also in metrics.json).

    Args:
        cfg: a validated config (:func:`ude.config.load_config`).
        out_dir: the run directory; it must not exist or be empty unless ``resume``.
        verbose: progress bars during the fits.
        resume: continue a run in ``out_dir`` (its data, checkpoints and finished steps are reused).
        log: called with one-line progress messages.
        fit_callback: passed to :func:`ude.train.fit` (``(stage, step, model, loss)`` per chunk).
        stop: a :class:`ude.interrupt.StopRequest` (or any ``() -> bool``) polled between chunks
            of the fit: when set, a checkpoint is written and ``KeyboardInterrupt`` raised.

    A new run validates its data before the directory is created (a broken table is a
    :class:`DataError` and leaves nothing behind); the directory is locked while the run writes.
    Raises :class:`FitFailed` when training diverged (see :func:`fit_problem`), ValueError when
    ``parallel.devices`` cannot be used (:func:`build_mesh`).
    """
    t_start = time.perf_counter()
    build_mesh(cfg)  # too few devices: fail before any work
    if not resume:
        _check_new_dir(Path(out_dir))
    data = None if resume else input_data(cfg)  # before the run directory exists
    with locked_run_dir(cfg, out_dir, resume=resume, command="resume" if resume else "run") as out:
        key = jr.key(cfg.seed)
        k_fit, k_refit = jr.split(key)
        data = step_data(cfg, out, log, data=data)
        train, held = split_data(cfg, data)
        fitted = step_fit(cfg, out, train, key=k_fit, verbose=verbose, log=log,
                          callback=fit_callback, stop=stop, data=data)
        found = step_discover(cfg, out, fitted, data, train, key=k_refit, verbose=verbose, log=log)
        return _finish(cfg, out, data, train, held, fitted, found, t_start, log)


def run_simulate(cfg: ExperimentConfig, out_dir, *, log: Log = None) -> data_mod.Dataset:
    """Only the data step: write config.yaml and the dataset into ``out_dir`` (the data are built
    first: a failure leaves no directory behind)."""
    _check_new_dir(Path(out_dir))
    data = input_data(cfg)
    with locked_run_dir(cfg, out_dir, command="simulate") as out:
        return step_data(cfg, out, log, data=data)


def run_discovery(out_dir, *, verbose: bool = True, log: Log = None) -> dict:
    """Redo discovery, refit, evaluation and figures of a fitted run (after editing its
    config.yaml's discovery section, for instance)."""
    t_start = time.perf_counter()
    out = Path(out_dir)
    cfg = load_run(out)
    if not (out / FILES["model"]).is_file():
        raise RunDirError(f"{out}: the fit has not finished (no {FILES['model']}); run `ude resume {out}`")
    if not cfg.discovery.enabled:
        raise RunDirError(f"{out}: discovery is disabled in its config.yaml (discovery.enabled: false)")
    key = jr.key(cfg.seed)
    k_fit, k_refit = jr.split(key)
    with locked_run_dir(cfg, out, resume=True, command="discover"):
        data = step_data(cfg, out, log)
        train, held = split_data(cfg, data)
        fitted = step_fit(cfg, out, train, key=k_fit, verbose=verbose, log=log, data=data)
        found = step_discover(cfg, out, fitted, data, train, key=k_refit, verbose=verbose, log=log,
                              force=True)
        return _finish(cfg, out, data, train, held, fitted, found, t_start, log)


def run_figures(out_dir, *, log: Log = None) -> list[Path]:
    """Redraw the figures of a finished run."""
    out = Path(out_dir)
    return step_figures(load_run(out), out, log=log)
