"""The fit loop: optimiser stages over a strategy, K steps fused per jitted ``lax.scan``."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from tqdm.auto import tqdm

from ..model import partition
from .checkpoint import load_carry, load_index, save_checkpoint
from .losses import tree_all_finite
from .stages import LBFGS, AbstractStage
from .strategies import AbstractStrategy

HISTORY_KEYS = ("step", "stage", "loss", "accepted", "lr_scale")


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (same structure as the input).
        extra: the strategy's extra parameters (segment starts, learned initial states) or None.
        history: numpy arrays, one entry per optimiser step: ``step``, ``stage`` (index),
            ``loss`` (before the step), ``accepted`` (False: rejected and not applied), ``lr_scale``.
        final_loss: the strategy's full loss of the final model on the training data.
        rejected: rejected steps per stage. stopped: why each stage ended.
        wall_seconds: time spent in :func:`fit`, compilation included.
    """

    model: object
    extra: object
    history: dict
    final_loss: float
    rejected: list
    stopped: list
    wall_seconds: float


def is_key_array(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def strong_types(tree):
    """The same arrays without weak types. The chunk returns strongly typed leaves, so a carry
    whose types change between chunks would compile the program twice (optax's L-BFGS state
    starts with weakly typed scalars: every L-BFGS stage did)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, x.dtype) if isinstance(x, jax.Array) and not is_key_array(x)
        and getattr(x, "weak_type", False) else x, tree)


def initial_carry(params, extra, stage, key):
    """The fit loop's carry at the start of ``stage``: parameters, extra parameters, optimiser
    state, key, learning-rate scale, converged flag and the previous accepted loss."""
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)
    return strong_types((params, extra, stage.optimizer().init((params, extra)), key,
                         jnp.ones((), dtype), jnp.array(False), jnp.array(jnp.inf, dtype)))


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(pred, a, b) if isinstance(a, jax.Array) or isinstance(b, jax.Array) else a,
        new, old)


def _value_and_grad(objective, forward: bool):
    """``value_and_grad`` with ``has_aux``; forward-mode (``jacfwd``) when the solver's adjoint is
    ``diffrax.ForwardMode``, which cannot be reverse-differentiated."""
    if not forward:
        return jax.value_and_grad(objective, has_aux=True)

    def vg(p):
        def both(q):
            loss, ok = objective(q)
            return loss, (loss, ok)

        grads, (loss, ok) = jax.jacfwd(both, has_aux=True)(p)
        return (loss, ok), grads

    return vg


def chunk_steps(carry, static, data, strategy, stage, total, remaining, chunk: int):
    """``chunk`` optimiser steps in one ``lax.scan``; steps ``>= remaining`` are no-ops.

    ``stage`` arrives with ``steps=0`` and its length as the traced ``total``, so stages that differ
    only in length (or learning rate, tolerances ...) share one compiled program."""
    opt = stage.optimizer(total)
    is_lbfgs = isinstance(stage, LBFGS)
    forward = isinstance(getattr(strategy.options, "adjoint", None), diffrax.ForwardMode)

    def body(carry, i):
        params, extra, opt_state, key, lr_scale, done, prev_loss = carry
        if strategy.stochastic:
            key, sub = jr.split(key)
        else:  # a key split is ~20 kernel launches per step; deterministic strategies ignore it
            sub = key
        active = (i < remaining) & ~done

        def objective(p):
            model = eqx.combine(p[0], static)
            return strategy.loss(model, p[1], data, sub)

        trainable = (params, extra)
        (loss, ok), grads = _value_and_grad(objective, forward)(trainable)
        good = active & jnp.isfinite(loss) & ok & tree_all_finite(grads)
        if is_lbfgs:
            updates, new_state = opt.update(grads, opt_state, trainable, value=loss, grad=grads,
                                            value_fn=lambda p: objective(p)[0])
            new = optax.apply_updates(trainable, updates)
            # its curvature pairs and line search can make a non-finite step from finite gradients
            good = good & tree_all_finite(new)
            new_params, new_extra = _where_tree(good, new, trainable)
            new_state = _where_tree(good, new_state, opt_state)
        else:
            # a first-order update of finite gradients is finite: decide before updating, and skip
            # the update (one conditional) rather than select every array after it (on a CPU the
            # selects and the copies they force cost ~5 % of a small UDE's training step)
            def update(operands):
                trainable, opt_state, grads, lr_scale = operands
                updates, state = opt.update(grads, opt_state, trainable)
                updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
                return optax.apply_updates(trainable, updates), state

            (new_params, new_extra), new_state = jax.lax.cond(
                good, update, lambda operands: (operands[0], operands[1]),
                (trainable, opt_state, grads, lr_scale))
        lr_scale = jnp.where(active & ~good, lr_scale * stage.backoff, lr_scale)
        if is_lbfgs:  # the previous accepted loss serves L-BFGS's convergence test only
            gnorm = optax.tree_utils.tree_norm(grads)
            rel = jnp.abs(prev_loss - loss) / jnp.maximum(jnp.abs(prev_loss), 1e-300)
            converged = (gnorm < stage.gtol) | (jnp.isfinite(prev_loss) & (rel < stage.ftol))
            done = done | (active & good & converged)
            prev_loss = jnp.where(good, loss, prev_loss)
        out = (new_params, new_extra, new_state, key, lr_scale, done, prev_loss)
        # float64 hyper-parameters (jax_enable_x64) must not promote a float32 model's carry
        out = jax.tree_util.tree_map(
            lambda n, o: n.astype(o.dtype) if eqx.is_inexact_array(o) else n, out, carry)
        # the step's record as one row (one buffer write per step instead of four)
        record = jnp.stack([loss.astype(out[4].dtype), good.astype(out[4].dtype),
                            active.astype(out[4].dtype), out[4]])
        return out, record

    carry, records = jax.lax.scan(body, carry, jnp.arange(chunk))
    losses, good, active, scales = records[:, 0], records[:, 1] > 0, records[:, 2] > 0, records[:, 3]
    return carry, losses, good, active, scales


_run_chunk = eqx.filter_jit(chunk_steps)


@eqx.filter_jit
def _full_loss(model, extra, data, strategy):
    return strategy.full_loss(model, extra, data)


def loss_value(model, data, strategy: AbstractStrategy, extra=None) -> float:
    """The strategy's deterministic loss of ``model`` on ``data`` (extra parameters initialised
    from the model and data when not given)."""
    if extra is None:
        extra = strategy.init(model, data)
    return float(_full_loss(model, extra, data, strategy))


def _stage_data(data, stage):
    if stage.horizon is None:
        return data
    return data.window(float(data.ts[0]), float(stage.horizon))


def _describe(obj) -> str:
    """A stable text of a module's fields and values (``repr`` hides defaults by identity)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        inner = ", ".join(f"{f.name}={_describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj))
        return f"{type(obj).__name__}({inner})"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_describe(o) for o in obj) + "]"
    if isinstance(obj, (jax.Array, np.ndarray)):
        return f"array({np.asarray(obj).tolist()!r})"
    return repr(obj)


def _fingerprint(model, strategy, stages) -> str:
    """Identifies a fit's set-up so that a checkpoint is only resumed by the same one."""
    text = repr(jax.tree_util.tree_structure(model)) + _describe(strategy) + _describe(list(stages))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit(model, data, strategy: AbstractStrategy, stages: Sequence[AbstractStage], *, key,
        chunk: int = 100, verbose: bool = True, checkpoint_dir=None, checkpoint_every: int | None = None,
        resume: bool = False, validation=None, patience: int | None = None,
        callback: Callable | None = None, should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Train ``model`` on ``data``: each stage runs its optimiser for ``stage.steps`` steps.

    Args:
        model: a UDE (any pytree); arrays selected by :func:`ude.model.trainable_filter` learn.
        data: a :class:`ude.data.Dataset` (the training window).
        strategy: how model and data are compared (:class:`SingleShooting`, ...).
        stages: e.g. ``[Adam(lr=0.1, steps=200), LBFGS(steps=1000)]``.
        key: a ``jax.random`` key (minibatch draws).
        chunk: optimiser steps fused in one jitted ``lax.scan`` (one host sync per chunk).
        verbose: a tqdm progress bar per stage.
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
    if not stages:
        raise ValueError("fit: stages is empty; give at least one stage, e.g. [Adam(lr=0.1, steps=200)]")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"fit: chunk must be a positive integer, got {chunk!r}")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("fit: checkpoint_every needs checkpoint_dir")
    params, static = partition(model)
    history = {k: [] for k in HISTORY_KEYS}
    rejected, stopped = [], []
    fingerprint = _fingerprint(model, strategy, stages)
    extra = None
    index = load_index(checkpoint_dir) if (resume and checkpoint_dir is not None) else None
    if index is not None and index.get("fingerprint") != fingerprint:
        raise ValueError(f"{Path(checkpoint_dir)}: the checkpoint belongs to a different model, "
                         "strategy or stage list; refusing to resume from it")
    global_step = 0
    prev_horizon = object()

    for s_idx, stage in enumerate(stages):
        sdata = _stage_data(data, stage)
        if extra is None or stage.horizon != prev_horizon:
            extra = strategy.init(eqx.combine(params, static), sdata, None)
        prev_horizon = stage.horizon
        carry = initial_carry(params, extra, stage, jr.fold_in(key, s_idx))
        step = 0
        if index is not None and s_idx < index["stage"]:
            global_step += stage.steps
            continue
        if index is not None:  # resume inside this stage
            carry = _restore(checkpoint_dir, index, carry)
            step, global_step = index["step_in_stage"], index["global_step"]
            history = {k: list(v) for k, v in index["history"].items()}
            rejected, stopped = list(index["rejected"][:s_idx]), list(index["stopped"][:s_idx])
            n_rej = index["rejected"][s_idx] if len(index["rejected"]) > s_idx else 0
            index = None
        else:
            n_rej = 0
            if checkpoint_dir is not None:
                _checkpoint(checkpoint_dir, carry, s_idx, 0, global_step, history, rejected,
                            stopped, fingerprint)
        jit_stage = dataclasses.replace(stage, steps=0)
        reason = "steps"
        best, stale = (np.inf, None), 0
        bar = tqdm(total=stage.steps, initial=step, disable=not verbose, leave=False,
                   desc=f"stage {s_idx + 1}/{len(stages)} {stage.name}", file=sys.stderr,
                   dynamic_ncols=True)
        last_ckpt = global_step
        while step < stage.steps:
            remaining = jnp.asarray(stage.steps - step)
            carry, losses, good, active, scales = _run_chunk(
                carry, static, sdata, strategy, jit_stage, jnp.asarray(stage.steps), remaining, chunk)
            losses, good, active, scales = map(np.asarray, (losses, good, active, scales))
            n = int(active.sum())
            history["step"].extend(range(global_step, global_step + n))
            history["stage"].extend([s_idx] * n)
            history["loss"].extend(losses[:n].tolist())
            history["accepted"].extend(good[:n].tolist())
            history["lr_scale"].extend(scales[:n].tolist())
            n_rej += int((~good[:n]).sum())
            step += n
            global_step += n
            bar.update(n)
            if n:
                bar.set_postfix(loss=f"{losses[n - 1]:.4g}", rejected=n_rej)
            if callback is not None and n:
                callback(s_idx, global_step, eqx.combine(carry[0], static), float(losses[n - 1]))
            if validation is not None and patience is not None:
                v = loss_value(eqx.combine(carry[0], static), validation, strategy)
                if v < best[0]:
                    best, stale = (v, carry), 0
                else:
                    stale += 1
                    if stale >= patience:
                        carry, reason = best[1], "early_stop"
                        break
            if bool(carry[5]):
                reason = "converged"
                break
            if n < chunk:
                break
            if should_stop is not None and step < stage.steps and should_stop():
                bar.close()
                if checkpoint_dir is not None:
                    _checkpoint(checkpoint_dir, carry, s_idx, step, global_step, history,
                                rejected + [n_rej], stopped, fingerprint)
                raise KeyboardInterrupt(f"stopped at step {global_step}"
                                        + ("; checkpoint written" if checkpoint_dir else ""))
            if (checkpoint_every and global_step - last_ckpt >= checkpoint_every
                    and step < stage.steps):
                _checkpoint(checkpoint_dir, carry, s_idx, step, global_step, history,
                            rejected + [n_rej], stopped, fingerprint)
                last_ckpt = global_step
        bar.close()
        params, extra = carry[0], carry[1]
        rejected.append(n_rej)
        stopped.append(reason)

    if index is not None:  # the checkpoint is of a finished fit
        params, extra = _restore(checkpoint_dir, index, (params, extra))
        history = {k: list(v) for k, v in index["history"].items()}
        rejected, stopped = index["rejected"], index["stopped"]
    elif checkpoint_dir is not None:
        _checkpoint(checkpoint_dir, (params, extra), len(stages), 0, global_step, history, rejected,
                    stopped, fingerprint)

    final_model = eqx.combine(params, static)
    if stages[-1].horizon is not None:  # the extra parameters belong to a shorter window
        extra = strategy.init(final_model, data, None)
    final_loss = float(_full_loss(final_model, extra, data, strategy))
    hist = {k: np.asarray(v) for k, v in history.items()}
    hist["accepted"] = hist["accepted"].astype(bool)
    return FitResult(model=final_model, extra=extra, history=hist, final_loss=final_loss,
                     rejected=rejected, stopped=stopped, wall_seconds=time.perf_counter() - t_start)


def _keys_as_data(tree):
    """Typed PRNG keys cannot be serialised: store their raw data."""
    return jax.tree_util.tree_map(
        lambda x: jr.key_data(x) if is_key_array(x) else x, tree)


def _restore(directory, index, like):
    loaded = load_carry(directory, index, _keys_as_data(like))
    return jax.tree_util.tree_map(
        lambda new, old: jr.wrap_key_data(new, impl=jr.key_impl(old))
        if isinstance(old, jax.Array) and jnp.issubdtype(old.dtype, jax.dtypes.prng_key) else new,
        loaded, like)


def _checkpoint(directory, carry, stage, step_in_stage, global_step, history, rejected, stopped,
                fingerprint):
    carry = _keys_as_data(carry)
    meta = {"stage": stage, "step_in_stage": step_in_stage, "global_step": global_step,
            "rejected": rejected, "stopped": stopped, "fingerprint": fingerprint}
    save_checkpoint(directory, carry, meta, history)
