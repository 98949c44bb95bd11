"""The host loop of every fit, written once: stages, chunks of fused steps, and their hooks.

:func:`ude.train.fit` and :func:`ude.train.ensemble.fit_ensemble` are front ends: each builds an
:class:`AbstractFitProgram` (one model, or the members vmapped and maybe sharded) and hands it to
:func:`run_stages`. The loop starts each stage's :class:`~ude.train.step.FitState`, runs chunks
until the stage's steps are spent or every member has finished, and after each chunk calls its
hooks in this order: history, progress bar, user callback, early stopping, stop request, periodic
checkpoint. Everything the host sees has a leading member axis (of length 1 for a single fit), so
one code path serves both; a member that converges or stops early runs no more steps.
"""

import abc
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from equinox import AbstractVar

from .checkpoint import load_carry, load_index, save_checkpoint
from .progress import StageProgress, progress_mode
from .stages import AbstractStage
from .step import ChunkRecord, FitState

__all__ = ["AbstractFitProgram", "LoopResult", "run_stages"]

COLUMNS = ("loss", "accepted", "active", "lr_scale")


class AbstractFitProgram(eqx.Module):
    """The compiled programs of one kind of fit and how the loop reads them.

    Host-side arrays (records, flags, losses) have a leading axis of ``members`` (1 for a single
    fit; padding for a device mesh is the program's own business and never shows).
    """

    stages: AbstractVar[list]  # the stages as the loop sees them (steps, horizon, name)
    members: AbstractVar[int]
    single: AbstractVar[bool]  # a single fit: flat history and lists in the checkpoint index
    label: AbstractVar[str]  # appended to the progress bar's description
    dtype: AbstractVar[object]  # of the recorded losses

    @abc.abstractmethod
    def stage_data(self, s_idx: int | None):
        """The training data of stage ``s_idx`` (its horizon's window, placed on the mesh);
        ``None``: all of it."""

    @abc.abstractmethod
    def init_extra(self, params, data):
        """The strategy's extra parameters for ``params`` on ``data``."""

    @abc.abstractmethod
    def init_state(self, params, extra, s_idx: int) -> FitState:
        """The carry at the start of stage ``s_idx``."""

    @abc.abstractmethod
    def run_chunk(
        self, state: FitState, data, s_idx: int, remaining: int, chunk: int
    ) -> tuple[FitState, ChunkRecord]:
        """``chunk`` steps; the record as numpy arrays ``(members, chunk)``."""

    @abc.abstractmethod
    def finished(self, state: FitState) -> np.ndarray:
        """``(members,)`` whether each member is finished for this stage."""

    @abc.abstractmethod
    def select(self, mask: np.ndarray, new: FitState, old: FitState) -> FitState:
        """Members of ``new`` where ``mask`` (``(members,)``), of ``old`` elsewhere."""

    @abc.abstractmethod
    def finish(self, state: FitState, mask: np.ndarray) -> FitState:
        """``state`` with the members in ``mask`` marked finished (they run no more steps)."""

    @abc.abstractmethod
    def model(self, params):
        """The model (stacked for an ensemble) of ``params``, for the user's callback."""

    @abc.abstractmethod
    def validation_loss(self, params) -> np.ndarray:
        """``(members,)`` full loss on the validation data (early stopping)."""

    @abc.abstractmethod
    def final_loss(self, params, extra) -> np.ndarray:
        """``(members,)`` full loss on the training data."""

    @abc.abstractmethod
    def saved(self, tree):
        """``tree`` as a checkpoint stores it (on the host, no padding, keys as raw data)."""

    @abc.abstractmethod
    def restored(self, saved, like):
        """The inverse of :meth:`saved`, in the structure (and placement) of ``like``."""

    @abc.abstractmethod
    def postfix(self, last_loss: np.ndarray, rejected: np.ndarray) -> dict:
        """The progress bar's postfix from each member's last loss and rejected steps."""


# ------------------------------------------------------------------------------------------------
# hooks
# ------------------------------------------------------------------------------------------------
class _History:
    """The per-step records: ``step`` and ``stage`` ``(steps,)``, the :data:`COLUMNS`
    ``(members, steps)``. A single fit's index and result keep the flat layout of earlier
    versions (no ``active``, no member axis)."""

    def __init__(self, program: AbstractFitProgram):
        self.single, self.dtype = program.single, program.dtype
        self.step, self.stage = [], []
        self.cols = {c: [] for c in COLUMNS}

    def record(self, s_idx: int, first: int, rec: ChunkRecord, k: int):
        self.step.append(np.arange(first, first + k))
        self.stage.append(np.full(k, s_idx))
        for c in COLUMNS:
            self.cols[c].append(np.asarray(getattr(rec, c))[:, :k])

    def to_json(self) -> dict:
        out = {"step": [], "stage": []}
        for name, parts in (("step", self.step), ("stage", self.stage)):
            if parts:
                out[name] = np.concatenate(parts).tolist()
        keep = ("loss", "accepted", "lr_scale") if self.single else COLUMNS
        for c in keep:
            v = np.concatenate(self.cols[c], axis=-1) if self.cols[c] else None
            out[c] = [] if v is None else (v[0] if self.single else v).tolist()
        return out

    def load(self, saved: dict, members: int):
        """Continue from a checkpoint index's history."""
        self.step, self.stage = [np.asarray(saved["step"], int)], [np.asarray(saved["stage"], int)]
        n = len(saved["step"])
        for c in COLUMNS:
            if self.single and c == "active":
                v = np.ones((1, n), bool)
            else:
                dt = bool if c in ("accepted", "active") else (float if self.single else self.dtype)
                v = np.asarray(saved[c], dt).reshape((members, n))
            self.cols[c] = [v]

    def arrays(self, members: int) -> dict:
        if self.single:  # as Python lists made them before (float64, int64; empty: float64)

            def flat(parts):
                return np.asarray(np.concatenate(parts).tolist() if parts else [])

            hist = {"step": flat(self.step), "stage": flat(self.stage)}
            for c in ("loss", "accepted", "lr_scale"):
                hist[c] = flat([p[0] for p in self.cols[c]])
            hist["accepted"] = hist["accepted"].astype(bool)
            return hist

        def cat(parts, dt):
            return np.concatenate(parts, axis=-1) if parts else np.zeros((members, 0), dt)

        hist = {
            "step": np.concatenate(self.step) if self.step else np.zeros(0, int),
            "stage": np.concatenate(self.stage) if self.stage else np.zeros(0, int),
        }
        for c in COLUMNS:
            hist[c] = cat(self.cols[c], bool if c in ("accepted", "active") else float)
        hist["accepted"], hist["active"] = (
            hist["accepted"].astype(bool),
            hist["active"].astype(bool),
        )
        return hist


class _EarlyStopping:
    """Per member: the best validation loss, chunks since it improved, the state it was reached
    in, and whether the member has stopped. Members that finish otherwise are left alone."""

    def __init__(self, patience: int, members: int):
        self.patience = patience
        self.best = np.full(members, np.inf)
        self.stale = np.zeros(members, int)
        self.stopped = np.zeros(members, bool)
        self.best_state = None

    def start(self, state):
        self.best[:] = np.inf
        self.stale[:] = 0
        self.stopped[:] = False
        self.best_state = state

    def update(self, program: AbstractFitProgram, state, watch: np.ndarray):
        """After a chunk: ``watch`` are the members that were still training in it."""
        watch = watch & ~self.stopped
        v = program.validation_loss(state.params)
        improved = watch & (v < self.best)
        self.best = np.where(improved, v, self.best)
        self.stale = np.where(improved, 0, np.where(watch, self.stale + 1, self.stale))
        if improved.any():
            self.best_state = program.select(improved, state, self.best_state)
        newly = watch & ~improved & (self.stale >= self.patience)
        if newly.any():
            state = program.finish(program.select(newly, self.best_state, state), newly)
            self.stopped |= newly
        return state

    def to_json(self) -> dict:
        return {
            "best": self.best.tolist(),
            "stale": self.stale.tolist(),
            "stopped": self.stopped.tolist(),
        }

    def load(self, saved: dict):
        self.best = np.asarray(saved["best"], float)
        self.stale = np.asarray(saved["stale"], int)
        self.stopped = np.asarray(saved["stopped"], bool)


@dataclasses.dataclass
class _Checkpoints:
    """Writes the carry and the loop's progress; only process 0 writes (multi-host)."""

    directory: Path
    fingerprint: str
    program: AbstractFitProgram

    def write(
        self,
        carry,
        stage: int,
        step: int,
        global_step: int,
        history: _History,
        rejected,
        stopped,
        early: _EarlyStopping | None = None,
    ):
        saved = self.program.saved(carry)
        if jax.process_index() != 0:
            return
        single = self.program.single
        meta = {
            "stage": stage,
            "step_in_stage": step,
            "global_step": global_step,
            "rejected": (rejected[0] if single else rejected).tolist(),
            "stopped": (stopped[0] if single else stopped).tolist(),
            "fingerprint": self.fingerprint,
        }
        if early is not None:
            meta["early_stopping"] = early.to_json()
        save_checkpoint(self.directory, saved, meta, history.to_json())

    def read(self, index: dict, like):
        return self.program.restored(
            load_carry(self.directory, index, self.program.saved(like)), like
        )


@dataclasses.dataclass
class LoopResult:
    """What :func:`run_stages` returns: the trained ``params`` and ``extra`` (stacked for an
    ensemble), the history (see :class:`_History`), ``rejected`` and ``stopped`` ``(members,
    stages)``, ``final_losses`` ``(members,)``."""

    params: object
    extra: object
    history: dict
    rejected: np.ndarray
    stopped: np.ndarray
    final_losses: np.ndarray


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------
def check_loop_arguments(name: str, stages: Sequence, chunk, checkpoint_dir, checkpoint_every):
    if not stages:
        raise ValueError(
            f"{name}: stages is empty; give at least one stage, e.g. [Adam(lr=0.1, steps=200)]"
        )
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{name}: chunk must be a positive integer, got {chunk!r}")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError(f"{name}: checkpoint_every needs checkpoint_dir")


def run_stages(
    program: AbstractFitProgram,
    params,
    *,
    chunk: int,
    verbose: bool | str,
    fingerprint: str,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    patience: int | None = None,
    callback: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LoopResult:
    """Train ``params`` through ``program.stages``; see :func:`ude.train.fit` for the arguments.

    ``patience`` switches early stopping on (the program knows the validation data); the
    checkpoint index and file then also hold its state, so a resume continues it exactly.
    ``verbose``: True (progress as ``UDE_PROGRESS`` says, see :mod:`ude.train.progress`), False
    (none), or one of its modes (``"bar"``, ``"plain"``, ``"none"``, ``"auto"``).
    """
    stages: list[AbstractStage] = program.stages
    n = program.members
    history = _History(program)
    rejected = np.zeros((n, len(stages)), int)
    stopped = np.full((n, len(stages)), "steps", dtype=object)
    ckpt = (
        None if checkpoint_dir is None else _Checkpoints(Path(checkpoint_dir), fingerprint, program)
    )
    index = load_index(checkpoint_dir) if (resume and checkpoint_dir is not None) else None
    if index is not None and index.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{Path(checkpoint_dir)}: the checkpoint belongs to a different model, "
            "strategy or stage list; refusing to resume from it"
        )
    early = None if patience is None else _EarlyStopping(patience, n)
    mode = progress_mode(verbose)
    global_step, extra, prev_horizon = 0, None, object()

    def progress_from(index, s_idx):
        r, s = np.asarray(index["rejected"], int), np.asarray(index["stopped"], dtype=object)
        r, s = (r[None], s[None]) if program.single else (r, s)
        rejected[:, : r.shape[1]] = r.reshape(n, -1)
        stopped[:, : s.shape[1]] = s.reshape(n, -1)
        stopped[:, s.shape[1] :] = "steps"
        history.load(index["history"], n)

    for s_idx, stage in enumerate(stages):
        sdata = program.stage_data(s_idx)
        if extra is None or stage.horizon != prev_horizon:
            extra = program.init_extra(params, sdata)
        prev_horizon = stage.horizon
        if index is not None and s_idx < index["stage"]:
            continue
        state = program.init_state(params, extra, s_idx)
        step = 0
        if early is not None:
            early.start(state)
        if index is not None:  # resume inside this stage
            with_best = "early_stopping" in index  # written by a fit with early stopping
            state = ckpt.read(index, (state, state) if with_best else state)
            state, best = state if with_best else (state, None)
            if early is not None and with_best:
                early.best_state = best
                early.load(index["early_stopping"])
            step, global_step = index["step_in_stage"], index["global_step"]
            progress_from(index, s_idx)
            index = None
        elif ckpt is not None:
            ckpt.write(
                _with_best(state, early),
                s_idx,
                0,
                global_step,
                history,
                rejected[:, :s_idx],
                stopped[:, :s_idx],
                early,
            )
        desc = f"stage {s_idx + 1}/{len(stages)} {stage.name}{program.label}"
        bar = StageProgress(desc, stage.steps, step, mode=mode)
        last_ckpt = global_step
        while step < stage.steps:
            running = None if early is None else ~program.finished(state)
            state, rec = program.run_chunk(state, sdata, s_idx, stage.steps - step, chunk)
            k = int(rec.active.any(axis=0).sum())  # finishing is for good: active steps lead
            history.record(s_idx, global_step, rec, k)
            rejected[:, s_idx] += (rec.active[:, :k] & ~rec.accepted[:, :k]).sum(axis=1)
            step += k
            global_step += k
            bar.update(k, program.postfix(rec.loss[:, k - 1], rejected[:, s_idx]) if k else None)
            if callback is not None and k:
                last = rec.loss[:, k - 1]
                callback(
                    s_idx,
                    global_step,
                    program.model(state.params),
                    float(last[0]) if program.single else last,
                )
            if early is not None:
                state = early.update(program, state, running)
            if program.finished(state).all() or k < chunk:
                break
            if should_stop is not None and step < stage.steps and should_stop():
                bar.close(f"stopped at step {global_step}")
                if ckpt is not None:
                    ckpt.write(
                        _with_best(state, early),
                        s_idx,
                        step,
                        global_step,
                        history,
                        rejected[:, : s_idx + 1],
                        stopped[:, :s_idx],
                        early,
                    )
                raise KeyboardInterrupt(
                    f"stopped at step {global_step}"
                    + ("; checkpoint written" if ckpt is not None else "")
                )
            if (
                checkpoint_every
                and global_step - last_ckpt >= checkpoint_every
                and step < stage.steps
            ):
                ckpt.write(
                    _with_best(state, early),
                    s_idx,
                    step,
                    global_step,
                    history,
                    rejected[:, : s_idx + 1],
                    stopped[:, :s_idx],
                    early,
                )
                last_ckpt = global_step
        stopped[program.finished(state), s_idx] = "converged"
        if early is not None:
            stopped[early.stopped, s_idx] = "early_stop"
        bar.close(_ended(stopped[:, s_idx], program.single))
        params, extra = state.params, state.extra

    if index is not None:  # the checkpoint is of a finished fit
        params, extra = ckpt.read(index, (params, extra))
        progress_from(index, len(stages))
    elif ckpt is not None:
        ckpt.write((params, extra), len(stages), 0, global_step, history, rejected, stopped)

    if stages[-1].horizon is not None:  # the extra parameters belong to a shorter window
        extra = program.init_extra(params, program.stage_data(None))
    final = program.final_loss(params, extra)
    return LoopResult(
        params=params,
        extra=extra,
        history=history.arrays(n),
        rejected=rejected,
        stopped=stopped.astype(str),
        final_losses=final,
    )


def _with_best(state, early: _EarlyStopping | None):
    """What a checkpoint's file holds: the carry, and with early stopping also its best state."""
    return state if early is None else (state, early.best_state)


def _ended(stopped: np.ndarray, single: bool) -> str | None:
    """The summary line's note on why members ended a stage early: ``converged``, ``2
    early_stop``; ``None`` when all ran their steps."""
    if single:
        return None if stopped[0] == "steps" else str(stopped[0])
    names, counts = np.unique(stopped[stopped != "steps"].astype(str), return_counts=True)
    return ", ".join(f"{c} {name}" for name, c in zip(names, counts, strict=True)) or None
