"""``fit``: optimiser stages over a strategy for one model, K steps fused per jitted ``lax.scan``.

A thin front end: :class:`SingleProgram` tells the shared host loop (:mod:`ude.train.loop`) how to
start, run and save one model's :class:`~ude.train.step.FitState`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._types import is_key_array as is_key_array
from ..model import partition
from .checkpoint import fingerprint, keys_as_data, keys_from_data
from .loop import AbstractFitProgram, check_loop_arguments, run_stages
from .stages import AbstractStage
from .step import (
    ChunkRecord,
    chunk_steps as chunk_steps,
    initial_state,
    run_chunk,
    strong_types as strong_types,
)
from .strategies import AbstractStrategy

__all__ = ["FitResult", "fit", "loss_value", "SingleProgram"]

HISTORY_KEYS = ("step", "stage", "loss", "accepted", "lr_scale")

# the names the step benchmarks and the recompile tests use
_run_chunk = run_chunk
initial_carry = initial_state


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (same structure as the input).
        extra: the strategy's extra parameters (:class:`~ude.train.SegmentStarts`,
            :class:`~ude.train.LearnedInitialStates`) or None; see
            :func:`~ude.train.fitted_initial_states`.
        history: numpy arrays, one entry per optimiser step: ``step``, ``stage`` (index),
            ``loss`` (before the step), ``accepted`` (False: rejected and not applied),
            ``lr_scale``.
        final_loss: the strategy's full loss of the final model on the training data.
        rejected: rejected steps per stage. stopped: why each stage ended (``"steps"``,
            ``"converged"``, ``"early_stop"``).
        wall_seconds: time spent in :func:`fit`, compilation included.
    """

    model: object
    extra: object
    history: dict
    final_loss: float
    rejected: list
    stopped: list
    wall_seconds: float


@eqx.filter_jit
def _full_loss(model, extra, data, strategy):
    return strategy.full_loss(model, extra, data)


def loss_value(model, data, strategy: AbstractStrategy, extra=None) -> float:
    """The strategy's deterministic loss of ``model`` on ``data`` (extra parameters initialised
    from the model and data when not given)."""
    if extra is None:
        extra = strategy.init(model, data)
    return float(_full_loss(model, extra, data, strategy))


class SingleProgram(AbstractFitProgram):
    """One model's chunk program for the host loop (members = 1, nothing vmapped)."""

    static: object
    data: object
    strategy: AbstractStrategy
    stages: list
    key: object
    validation: object
    members: int = 1
    single: bool = True
    label: str = ""
    dtype: object = float

    def stage_data(self, s_idx):
        horizon = None if s_idx is None else self.stages[s_idx].horizon
        if horizon is None:
            return self.data
        return self.data.window(self.data.span()[0], float(horizon))

    def init_extra(self, params, data):
        return self.strategy.init(eqx.combine(params, self.static), data, None)

    def init_state(self, params, extra, s_idx):
        return initial_state(params, extra, self.stages[s_idx], jr.fold_in(self.key, s_idx))

    def run_chunk(self, state, data, s_idx, remaining, chunk):
        stage = self.stages[s_idx]
        # the stage's length is traced: stages differing only in length share one program
        state, rec = run_chunk(
            state,
            self.static,
            data,
            self.strategy,
            dataclasses.replace(stage, steps=0),
            jnp.asarray(stage.steps),
            jnp.asarray(remaining),
            chunk,
        )
        return state, ChunkRecord(
            *(np.asarray(x)[None] for x in (rec.loss, rec.accepted, rec.active, rec.lr_scale))
        )

    def finished(self, state):
        return np.asarray(state.finished)[None]

    def select(self, mask, new, old):
        return new if mask[0] else old

    def finish(self, state, mask):
        return eqx.tree_at(lambda s: s.finished, state, jnp.array(True)) if mask[0] else state

    def model(self, params):
        return eqx.combine(params, self.static)

    def validation_loss(self, params):
        return np.asarray([loss_value(self.model(params), self.validation, self.strategy)])

    def final_loss(self, params, extra):
        return np.asarray([float(_full_loss(self.model(params), extra, self.data, self.strategy))])

    def saved(self, tree):
        return keys_as_data(tree)

    def restored(self, saved, like):
        return keys_from_data(saved, like)

    def postfix(self, last_loss, rejected):
        return {"loss": f"{last_loss[0]:.4g}", "rejected": int(rejected[0])}


def fit(
    model,
    data,
    strategy: AbstractStrategy,
    stages: Sequence[AbstractStage],
    *,
    key,
    chunk: int = 100,
    verbose: bool | str = True,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    validation=None,
    patience: int | None = None,
    callback: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``model`` on ``data``: each stage runs its optimiser for ``stage.steps`` steps.

    Args:
        model: a UDE (any pytree); arrays selected by :func:`ude.model.trainable_filter` learn.
        data: a :class:`ude.data.Dataset` (the training window).
        strategy: how model and data are compared (:class:`SingleShooting`, ...).
        stages: e.g. ``[Adam(lr=0.1, steps=200), LBFGS(steps=1000)]``.
        key: a ``jax.random`` key (minibatch draws).
        chunk: optimiser steps fused in one jitted ``lax.scan`` (one host sync per chunk).
        verbose: progress per stage (:mod:`ude.train.progress`): True for the default display (a
            bar on a terminal, plain lines otherwise; ``UDE_PROGRESS`` overrides), or a mode
            ``"bar"``, ``"plain"`` or ``"none"``.
        checkpoint_dir, checkpoint_every: write an atomic checkpoint every N steps (rounded up to
            whole chunks) and at the end of each stage. ``resume=True`` continues from it; the
            result is bit-for-bit that of an uninterrupted run.
        validation, patience: optional early stopping: after each chunk the full loss on
            ``validation`` is measured; the stage stops when it has not improved for ``patience``
            chunks, keeping the best parameters.
        callback: called after each chunk with ``(stage_index, global_step, model, loss)``.
        should_stop: polled after each chunk (e.g. a SIGINT flag, :mod:`ude.interrupt`): when true,
            a checkpoint of exactly that state is written and :class:`KeyboardInterrupt` raised.

    A step whose loss or gradient is not finite, or whose solve failed (e.g. hit ``max_steps``),
    is rejected: parameters and optimiser state stay as they were, the step is recorded with
    ``accepted=False``, and the learning rate is multiplied by ``stage.backoff``.
    """
    t_start = time.perf_counter()
    check_loop_arguments("fit", stages, chunk, checkpoint_dir, checkpoint_every)
    params, static = partition(model)
    program = SingleProgram(
        static=static,
        data=data,
        strategy=strategy,
        stages=list(stages),
        key=key,
        validation=validation,
    )
    out = run_stages(
        program,
        params,
        chunk=chunk,
        verbose=verbose,
        fingerprint=fingerprint(model, strategy, stages),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        patience=None if validation is None else patience,
        callback=callback,
        should_stop=should_stop,
    )
    return FitResult(
        model=eqx.combine(out.params, static),
        extra=out.extra,
        history=out.history,
        final_loss=float(out.final_losses[0]),
        rejected=out.rejected[0].tolist(),
        stopped=out.stopped[0].tolist(),
        wall_seconds=time.perf_counter() - t_start,
    )
