"""The compiled training step: the fit's carry as a named Module, ``chunk`` steps per ``lax.scan``.

:func:`chunk_steps` is the one program every fit runs: :func:`ude.train.fit` calls it jitted,
:func:`ude.train.ensemble.fit_ensemble` vmaps it over members, :class:`ude.train.Stepper` calls it
one step at a time. Its state, :class:`FitState`, is what a checkpoint stores.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from .._types import Array, ArrayLike, Bool, Float, PyTree, is_key_array
from .losses import tree_all_finite
from .stages import LBFGS, AbstractStage

__all__ = ["FitState", "ChunkRecord", "initial_state", "chunk_steps", "run_chunk", "strong_types"]


class FitState(eqx.Module):
    """The fit loop's carry through one stage (for an ensemble every leaf gains a leading member
    axis: ``*members`` is ``()`` for one fit, ``(members,)`` for an ensemble).

    The field order is the order of the leaves in a checkpoint file: do not reorder.
    """

    # what learns
    params: PyTree  # the model's trainable arrays
    extra: PyTree  # the strategy's extra parameters (LearnedInitialStates, SegmentStarts) or None
    # the optimiser
    opt_state: PyTree
    # randomness: split once per step by stochastic strategies (minibatch draws)
    key: Array
    # step control
    lr_scale: Float[Array, "*members"]  # learning-rate factor, times ``stage.backoff`` after
    #                                      each rejected step
    finished: Bool[Array, "*members"]  # no more steps this stage: L-BFGS converged (or, in an
    #                                    ensemble, the member stopped early)
    prev_loss: Float[Array, "*members"]  # the last accepted loss (L-BFGS's relative-change test)


class ChunkRecord(eqx.Module):
    """What each step of a chunk reports, one entry per step: the loss before the step, whether it
    was accepted, whether it ran (False past the stage's end or once finished), the lr factor.
    Device arrays from the program; the host loop reads numpy copies ``(members, chunk)``."""

    loss: Float[ArrayLike, "*members chunk"]
    accepted: Bool[ArrayLike, "*members chunk"]
    active: Bool[ArrayLike, "*members chunk"]
    lr_scale: Float[ArrayLike, "*members chunk"]


def strong_types(tree):
    """The same arrays without weak types. The chunk returns strongly typed leaves, so a carry
    whose types change between chunks would compile the program twice (optax's L-BFGS state
    starts with weakly typed scalars: every L-BFGS stage did)."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(x, x.dtype)
            if isinstance(x, jax.Array) and not is_key_array(x) and getattr(x, "weak_type", False)
            else x
        ),
        tree,
    )


def initial_state(params, extra, stage: AbstractStage, key) -> FitState:
    """The carry at the start of ``stage``: a fresh optimiser state, lr factor 1, not finished."""
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)
    return strong_types(
        FitState(
            params=params,
            extra=extra,
            opt_state=stage.optimizer().init((params, extra)),
            key=key,
            lr_scale=jnp.ones((), dtype),
            finished=jnp.array(False),
            prev_loss=jnp.array(jnp.inf, dtype),
        )
    )


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: (
            jnp.where(pred, a, b) if isinstance(a, jax.Array) or isinstance(b, jax.Array) else a
        ),
        new,
        old,
    )


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


def chunk_steps(
    state: FitState, static, data, strategy, stage: AbstractStage, total, remaining, chunk: int
) -> tuple[FitState, ChunkRecord]:
    """``chunk`` optimiser steps in one ``lax.scan``; steps ``>= remaining`` are no-ops.

    Args:
        state: the carry. static: the model's non-trainable part (``ude.model.partition``).
        data, strategy: what the loss compares. stage: the optimiser, with ``steps=0``: its length
            arrives as the traced ``total``, so stages that differ only in length (or learning
            rate, tolerances ...) share one compiled program.
        remaining: steps left in the stage (traced). chunk: steps per call (static).

    Returns the new state and a :class:`ChunkRecord` of ``(chunk,)`` arrays. A step whose loss or
    gradient is not finite, or whose solve failed, is rejected: parameters and optimiser state stay,
    the learning rate is multiplied by ``stage.backoff``.
    """
    opt = stage.optimizer(total)
    is_lbfgs = isinstance(stage, LBFGS)
    forward = isinstance(getattr(strategy.options, "adjoint", None), diffrax.ForwardMode)

    def body(state: FitState, i):
        key, lr_scale, done, prev_loss = state.key, state.lr_scale, state.finished, state.prev_loss
        if strategy.stochastic:
            key, sub = jr.split(key)
        else:  # a key split is ~20 kernel launches per step; deterministic strategies ignore it
            sub = key
        active = (i < remaining) & ~done

        def objective(p):
            model = eqx.combine(p[0], static)
            return strategy.loss(model, p[1], data, sub)

        trainable = (state.params, state.extra)
        opt_state = state.opt_state
        (loss, ok), grads = _value_and_grad(objective, forward)(trainable)
        good = active & jnp.isfinite(loss) & ok & tree_all_finite(grads)
        if is_lbfgs:
            updates, new_state = opt.update(
                grads,
                opt_state,
                trainable,
                value=loss,
                grad=grads,
                value_fn=lambda p: objective(p)[0],
            )
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
                good,
                update,
                lambda operands: (operands[0], operands[1]),
                (trainable, opt_state, grads, lr_scale),
            )
        lr_scale = jnp.where(active & ~good, lr_scale * stage.backoff, lr_scale)
        if is_lbfgs:  # the previous accepted loss serves L-BFGS's convergence test only
            gnorm = optax.tree_utils.tree_norm(grads)
            rel = jnp.abs(prev_loss - loss) / jnp.maximum(jnp.abs(prev_loss), 1e-300)
            converged = (gnorm < stage.gtol) | (jnp.isfinite(prev_loss) & (rel < stage.ftol))
            done = done | (active & good & converged)
            prev_loss = jnp.where(good, loss, prev_loss)
        out = FitState(
            params=new_params,
            extra=new_extra,
            opt_state=new_state,
            key=key,
            lr_scale=lr_scale,
            finished=done,
            prev_loss=prev_loss,
        )
        # float64 hyper-parameters (jax_enable_x64) must not promote a float32 model's carry
        out = jax.tree_util.tree_map(
            lambda n, o: n.astype(o.dtype) if eqx.is_inexact_array(o) else n, out, state
        )
        # the step's record as one row (one buffer write per step instead of four)
        dt = out.lr_scale.dtype
        record = jnp.stack([loss.astype(dt), good.astype(dt), active.astype(dt), out.lr_scale])
        return out, record

    state, rows = jax.lax.scan(body, state, jnp.arange(chunk))
    return state, ChunkRecord(
        loss=rows[:, 0], accepted=rows[:, 1] > 0, active=rows[:, 2] > 0, lr_scale=rows[:, 3]
    )


run_chunk = eqx.filter_jit(chunk_steps)
