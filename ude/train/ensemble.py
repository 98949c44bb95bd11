"""Ensembles: N fits (seeds, noise draws, hyper-parameters) trained as one vmapped program.

The fused optimiser chunk of :func:`ude.train.fit.chunk_steps` is vmapped over a leading *member*
axis of the models (and, where given per member, of the data, the strategy and the stages), then
jitted once per stage kind. Step rejection, the learning-rate back-off and L-BFGS's convergence flag
live in the per-member carry, so one diverging member never stops or changes the others: it just
records rejected steps. With a :class:`jax.sharding.Mesh` (:func:`ude.parallel.make_mesh`) the
member axis is split over devices (and the trajectory axis too, when the mesh has a ``"traj"``
axis); XLA partitions the same program, so the result equals the single-device one.

Example (the UDE paper's noise sweep, 100 seeds at one noise level)::

    keys = jr.split(jr.key(0), 100)
    models = eqx.filter_vmap(lambda k: UDE(known, MLP(2, 2, width=5, depth=3, activation="rbf", key=k)))(keys)
    data = resample_noise(clean, RelativeMeanNoise(0.05), jr.split(jr.key(1), 100))
    res = fit_ensemble(models, data, SingleShooting(l2=1e-4), [Adam(0.1, steps=200), LBFGS(1000)],
                       key=jr.key(2))
    res.final_losses            # (100,)
    res.member(3).model         # one fitted UDE
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from tqdm.auto import tqdm

from ..model import partition
from ..parallel import MEMBERS, TRAJ, axis_size, pad_members, replicate, shard_members, shard_trajectories, to_host
from .fit import FitResult, chunk_steps, is_key_array as _is_key_array, strong_types
from .stages import AbstractStage
from .strategies import AbstractStrategy

__all__ = ["EnsembleResult", "fit_ensemble", "stack", "unstack", "member", "n_members", "broadcast",
           "stack_models", "stack_datasets", "resample_noise"]

ENSEMBLE_HISTORY_KEYS = ("loss", "accepted", "active", "lr_scale")


# ------------------------------------------------------------------------------------------------
# stacked pytrees
# ------------------------------------------------------------------------------------------------
def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def n_members(tree) -> int:
    """The length of the leading (member) axis of a stacked pytree."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if _is_array(x)]
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("n_members: the tree has no array with a leading member axis")
    return int(leaves[0].shape[0])


def _same(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a boolean ==
        return False


def stack(trees: Sequence):
    """One pytree whose array leaves gain a leading member axis, from ``trees`` of identical
    structure (models, datasets, stages or strategies differing only in array values)."""
    trees = list(trees)
    if not trees:
        raise ValueError("stack: trees is empty")
    parts = [eqx.partition(t, _is_array) for t in trees]
    ref_arrays, ref_static = parts[0]
    s_def, a_def = jax.tree_util.tree_structure(ref_static), jax.tree_util.tree_structure(ref_arrays)
    ref_leaves = jax.tree_util.tree_leaves(ref_static)
    for i, (arrays, static) in enumerate(parts[1:], start=1):
        ok = (jax.tree_util.tree_structure(arrays) == a_def
              and jax.tree_util.tree_structure(static) == s_def
              and all(_same(a, b) for a, b in zip(jax.tree_util.tree_leaves(static), ref_leaves)))
        ok = ok and all(np.shape(a) == np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(arrays),
                                                                     jax.tree_util.tree_leaves(ref_arrays)))
        if not ok:
            raise ValueError(f"stack: member {i} differs from member 0 in structure, static fields "
                             "or array shapes; only array values may differ")
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                                     *[a for a, _ in parts])
    return eqx.combine(stacked, ref_static)


stack_models = stack
stack_datasets = stack


def member(tree, i):
    """Member ``i`` (an int, or a slice for a sub-ensemble) of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: x[i] if _is_array(x) else x, tree)


def unstack(tree) -> list:
    """The members of a stacked pytree as a list."""
    return [member(tree, i) for i in range(n_members(tree))]


def broadcast(tree, n: int):
    """``n`` identical members: every array leaf repeated along a new leading axis."""
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(jnp.asarray(x), (n,) + np.shape(x)) if _is_array(x) else x, tree)


def resample_noise(data, noise, keys):
    """A stacked dataset of ``len(keys)`` noise draws on ``data.y_true`` (one per key).

    Args:
        data: a :class:`ude.data.Dataset` with noise-free ``y_true`` (e.g. from ``simulate``).
        noise: an ``ude.data`` noise model, or a list of them (one per key: e.g. noise levels).
        keys: ``(members,)`` random keys.
    """
    if data.y_true is None:
        raise ValueError("resample_noise: data has no y_true (noise-free truth) to redraw noise on")
    n = int(np.shape(keys)[0]) if not jnp.issubdtype(jnp.asarray(keys).dtype, jax.dtypes.prng_key) \
        else int(keys.shape[0])
    if isinstance(noise, (list, tuple)):
        if len(noise) != n:
            raise ValueError(f"resample_noise: got {len(noise)} noise models for {n} keys")
        ys = eqx.filter_vmap(lambda nz, k: nz.apply(data.y_true, k))(stack(noise), keys)
    else:
        ys = eqx.filter_vmap(lambda k: noise.apply(data.y_true, k))(keys)
    ys = jnp.where(data.mask, ys, jnp.zeros((), ys.dtype))
    return eqx.tree_at(lambda d: d.ys, broadcast(data, n), ys)


# ------------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EnsembleResult:
    """What :func:`fit_ensemble` returns.

    Attributes:
        models: the trained models, stacked (leading member axis); :meth:`member` picks one.
        extra: the strategy's extra parameters, stacked, or None.
        history: ``step``, ``stage`` (steps,) and ``loss``, ``accepted``, ``active``, ``lr_scale``
            (members, steps). ``active`` is False after a member's L-BFGS stage has converged (its
            loss is still recorded, unchanged); ``accepted`` is False for rejected steps.
        final_losses: (members,) the strategy's full loss of each trained model (inf/nan where a
            member failed). rejected: (members, stages) rejected steps.
        stopped: (members, stages) ``"steps"`` or ``"converged"``.
        wall_seconds: time spent in :func:`fit_ensemble`, compilation included.
    """

    models: object
    extra: object
    history: dict
    final_losses: np.ndarray
    rejected: np.ndarray
    stopped: np.ndarray
    wall_seconds: float

    @property
    def n_members(self) -> int:
        return int(self.final_losses.shape[0])

    @property
    def ok(self) -> np.ndarray:
        """(members,) True where the final loss is finite."""
        return np.isfinite(self.final_losses)

    def member(self, i: int) -> FitResult:
        """Member ``i`` as a :class:`FitResult` (its history only over its active steps, as a
        separate :func:`fit` would record it)."""
        act = self.history["active"][i]
        hist = {"step": self.history["step"][act], "stage": self.history["stage"][act]}
        for k in ("loss", "accepted", "lr_scale"):
            hist[k] = self.history[k][i][act]
        hist["step"] = np.arange(int(act.sum()))
        return FitResult(model=member(self.models, i), extra=member(self.extra, i), history=hist,
                         final_loss=float(self.final_losses[i]), rejected=self.rejected[i].tolist(),
                         stopped=self.stopped[i].tolist(), wall_seconds=self.wall_seconds)


# ------------------------------------------------------------------------------------------------
# the vmapped programs
# ------------------------------------------------------------------------------------------------
def _ax(stacked: bool):
    return eqx.if_array(0) if stacked else None


def _chunk_impl(carry, static, data, strategy, stage, total, remaining, chunk, axes):
    # with a mesh, the inputs carry their shardings and jit's automatic partitioning (GSPMD) splits
    # the vmapped program over the member (and trajectory) axes. (A shard_map over members fails to
    # trace diffrax's recursive-checkpoint adjoint, so it is not used.)
    d, s, g = axes
    m = eqx.if_array(0)
    fn = eqx.filter_vmap(chunk_steps, in_axes=(m, m, _ax(d), _ax(s), _ax(g), None, None, None))
    return fn(carry, static, data, strategy, stage, total, remaining, chunk)


_ensemble_chunk = eqx.filter_jit(_chunk_impl)


@eqx.filter_jit
def _ensemble_full_loss(params, static, extra, data, strategy, axes):
    d, s = axes
    m = eqx.if_array(0)

    def one(p, st, e, dd, strat):
        return strat.full_loss(eqx.combine(p, st), e, dd)

    return eqx.filter_vmap(one, in_axes=(m, m, m, _ax(d), _ax(s)))(params, static, extra, data, strategy)


@eqx.filter_jit
def _ensemble_opt_init(params, extra, stage, stacked_stage: bool):
    return eqx.filter_vmap(lambda p, e, g: g.optimizer().init((p, e)),
                           in_axes=(eqx.if_array(0), eqx.if_array(0), _ax(stacked_stage)))(params, extra, stage)


_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                  jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _init_extra(strategy, params, static, data, axes, n):
    """Per-member ``strategy.init`` (vmapped; a Python loop when ``init`` reads values on the host,
    e.g. ``SingleShooting(learn_y0="auto")`` inspecting a per-member mask)."""
    d, s = axes
    m = eqx.if_array(0)

    def one(p, st, dd, strat):
        return strat.init(eqx.combine(p, st), dd, None)

    try:
        return eqx.filter_vmap(one, in_axes=(m, m, _ax(d), _ax(s)))(params, static, data, strategy)
    except _TRACER_ERRORS:
        outs = [one(member(params, i), member(static, i), member(data, i) if d else data,
                    member(strategy, i) if s else strategy) for i in range(n)]
        return None if all(o is None for o in outs) else stack(outs)


# ------------------------------------------------------------------------------------------------
# argument handling
# ------------------------------------------------------------------------------------------------
def _member_keys(key, n: int):
    """``key`` split into ``n`` member keys, or ``n`` keys given already."""
    if _is_key_array(key):
        if key.shape == ():
            return jr.split(key, n)
        if key.shape == (n,):
            return key
    else:
        k = jnp.asarray(key)
        if k.shape == (2,) and k.dtype == jnp.uint32:
            return jr.split(k, n)
        if k.shape == (n, 2) and k.dtype == jnp.uint32:
            return k
    raise ValueError(f"fit_ensemble: key must be one random key or {n} keys (one per member), "
                     f"got shape {np.shape(key)}")


def _per_member(obj, n: int, cls, what: str):
    """``(obj, stacked?)``: a shared ``cls`` instance, or a list of ``n`` (stacked)."""
    if isinstance(obj, cls):
        return obj, False
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(o, cls) for o in obj):
        if len(obj) != n:
            raise ValueError(f"fit_ensemble: {what} has {len(obj)} entries for {n} members")
        if len({type(o) for o in obj}) != 1:
            raise ValueError(f"fit_ensemble: {what} mixes {sorted({type(o).__name__ for o in obj})}; "
                             "members must share one kind")
        return stack(obj), True
    raise ValueError(f"fit_ensemble: {what} must be a {cls.__name__} or a list of {n} of them, "
                     f"got {type(obj).__name__}")


@dataclasses.dataclass
class _StageSpec:
    ref: AbstractStage  # member 0 (steps, horizon, name)
    jit: AbstractStage  # steps=0, stacked when per member
    stacked: bool
    members: list | None


def _stage_specs(stages, n: int) -> list[_StageSpec]:
    specs = []
    for i, s in enumerate(stages):
        if isinstance(s, AbstractStage):
            specs.append(_StageSpec(s, dataclasses.replace(s, steps=0), False, None))
            continue
        if not (isinstance(s, (list, tuple)) and s and all(isinstance(x, AbstractStage) for x in s)):
            raise ValueError(f"fit_ensemble: stages[{i}] must be a stage or a list of {n} stages, "
                             f"got {type(s).__name__}")
        if len(s) != n:
            raise ValueError(f"fit_ensemble: stages[{i}] has {len(s)} entries for {n} members")
        if len({(type(x), x.steps, x.horizon) for x in s}) != 1:
            raise ValueError(f"fit_ensemble: stages[{i}]: members must share kind, steps and horizon "
                             "(they run in lockstep); only hyper-parameter values may differ")
        specs.append(_StageSpec(s[0], stack([dataclasses.replace(x, steps=0) for x in s]), True,
                                list(s)))
    return specs


def _stage_data(data, horizon, stacked: bool):
    if horizon is None:
        return data
    if not stacked:
        return data.window(float(data.ts[0]), float(horizon))
    return stack([d.window(float(d.ts[0]), float(horizon)) for d in unstack(data)])


def _place_data(data, mesh, stacked: bool):
    if mesh is None:
        return data
    if axis_size(mesh, TRAJ) > 1:
        return shard_trajectories(data, mesh, stacked=stacked)
    return shard_members(data, mesh) if stacked else replicate(data, mesh)


def _gather(tree):
    """Arrays spread over processes come back whole (a no-op on one process)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(to_host(x)) if isinstance(x, jax.Array) and not x.is_fully_addressable
        and not _is_key_array(x) else x, tree)


# ------------------------------------------------------------------------------------------------
# fit_ensemble
# ------------------------------------------------------------------------------------------------
def fit_ensemble(models, data, strategy, stages, *, key, chunk: int = 100, verbose: bool = True,
                 mesh=None) -> EnsembleResult:
    """Train every member of a stacked model ensemble, as one vmapped (and optionally sharded)
    program per stage kind.

    Args:
        models: a stacked model pytree (every array leaf has a leading member axis), e.g.
            ``eqx.filter_vmap(make_model)(keys)`` or :func:`stack_models` of a list.
        data: one :class:`ude.data.Dataset` shared by all members, or a stacked one (its ``ys``
            ``(members, traj, times, state)``, e.g. from :func:`resample_noise`).
        strategy: a strategy, or a list of one per member (same kind; e.g. different ``l2``).
        stages: as in :func:`ude.train.fit`; any entry may be a list of one stage per member
            (same kind, steps and horizon; e.g. different ``lr``).
        key: one random key (member ``i`` gets ``jr.split(key, members)[i]``) or ``(members,)`` keys.
            Member ``i`` then matches ``fit(member_i, data_i, ..., key=member_key_i)``.
        chunk: optimiser steps fused per jitted ``lax.scan``.
        verbose: a progress bar per stage (median loss, members with rejected steps).
        mesh: a :class:`jax.sharding.Mesh` from :func:`ude.parallel.make_mesh`: members are split
            over its ``"members"`` axis (padded to a multiple of it), trajectories over ``"traj"``.

    Returns an :class:`EnsembleResult`. A member whose steps fail (non-finite loss or gradient,
    failed solve) has them rejected and its learning rate backed off, exactly as in ``fit``; the
    other members are unaffected.
    """
    t_start = time.perf_counter()
    if not stages:
        raise ValueError("fit_ensemble: stages is empty; give at least one stage")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"fit_ensemble: chunk must be a positive integer, got {chunk!r}")
    n = n_members(models)
    data_stacked = data.ys.ndim == 4
    if data_stacked and data.ys.shape[0] != n:
        raise ValueError(f"fit_ensemble: data has {data.ys.shape[0]} members, models have {n}")
    strategy, strat_stacked = _per_member(strategy, n, AbstractStrategy, "strategy")
    specs = _stage_specs(stages, n)
    keys = _member_keys(key, n)

    n_dev = axis_size(mesh, MEMBERS)
    n_pad = -(-n // n_dev) * n_dev
    if n_pad != n:
        models, keys = pad_members(models, n_pad), pad_members(keys, n_pad)
        data = pad_members(data, n_pad) if data_stacked else data
        strategy = pad_members(strategy, n_pad) if strat_stacked else strategy
        specs = [dataclasses.replace(sp, jit=pad_members(sp.jit, n_pad)) if sp.stacked else sp
                 for sp in specs]

    params, static = partition(models)
    if mesh is not None:
        static = shard_members(static, mesh)
        strategy = shard_members(strategy, mesh) if strat_stacked else replicate(strategy, mesh)
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)

    losses_h, acc_h, act_h, scale_h, step_h, stage_h = [], [], [], [], [], []
    rejected = np.zeros((n_pad, len(specs)), int)
    stopped = np.full((n_pad, len(specs)), "steps", dtype=object)
    extra, prev_horizon, global_step = None, object(), 0
    fold = jax.vmap(jr.fold_in, in_axes=(0, None))

    for s_idx, sp in enumerate(specs):
        stage = sp.ref
        sdata = _place_data(_stage_data(data, stage.horizon, data_stacked), mesh, data_stacked)
        if extra is None or stage.horizon != prev_horizon:
            extra = _init_extra(strategy, params, static, sdata, (data_stacked, strat_stacked), n_pad)
        prev_horizon = stage.horizon
        jstage = sp.jit
        if mesh is not None:
            jstage = shard_members(jstage, mesh) if sp.stacked else replicate(jstage, mesh)
        opt_state = _ensemble_opt_init(params, extra, jstage, sp.stacked)
        carry = (params, extra, opt_state, fold(keys, s_idx), jnp.ones((n_pad,), dtype),
                 jnp.zeros((n_pad,), bool), jnp.full((n_pad,), jnp.inf, dtype))
        carry = strong_types(carry)
        if mesh is not None:
            carry = shard_members(carry, mesh)
        bar = tqdm(total=stage.steps, disable=not verbose, leave=False, file=sys.stderr,
                   desc=f"stage {s_idx + 1}/{len(specs)} {stage.name} ×{n}", dynamic_ncols=True)
        step = 0
        while step < stage.steps:
            remaining = jnp.asarray(stage.steps - step)
            carry, losses, good, active, scales = _ensemble_chunk(
                carry, static, sdata, strategy, jstage, jnp.asarray(stage.steps), remaining, chunk,
                (data_stacked, strat_stacked, sp.stacked))
            losses, good, active, scales = map(to_host, (losses, good, active, scales))
            k = int(active.any(axis=0).sum())  # done is monotone: active columns form a prefix
            losses_h.append(losses[:, :k])
            acc_h.append(good[:, :k])
            act_h.append(active[:, :k])
            scale_h.append(scales[:, :k])
            step_h.append(np.arange(global_step, global_step + k))
            stage_h.append(np.full(k, s_idx))
            rejected[:, s_idx] += (active[:, :k] & ~good[:, :k]).sum(axis=1)
            step += k
            global_step += k
            bar.update(k)
            if k:
                bar.set_postfix(median_loss=f"{np.nanmedian(losses[:n, k - 1]):.4g}",
                                rejecting=int((rejected[:n, s_idx] > 0).sum()))
            done = to_host(carry[5])
            if done.all() or k < chunk:
                break
        bar.close()
        stopped[to_host(carry[5]), s_idx] = "converged"
        params, extra = carry[0], carry[1]

    if specs[-1].ref.horizon is not None:  # the extra parameters belong to a shorter window
        full = _place_data(data, mesh, data_stacked)
        extra = _init_extra(strategy, params, static, full, (data_stacked, strat_stacked), n_pad)
    full = _place_data(data, mesh, data_stacked)
    final = to_host(_ensemble_full_loss(params, static, extra, full, strategy,
                                        (data_stacked, strat_stacked)))

    def cat(parts, dt):
        return np.concatenate(parts, axis=-1) if parts else np.zeros((n_pad, 0), dt)

    history = {"step": np.concatenate(step_h) if step_h else np.zeros(0, int),
               "stage": np.concatenate(stage_h) if stage_h else np.zeros(0, int),
               "loss": cat(losses_h, float)[:n], "accepted": cat(acc_h, bool)[:n].astype(bool),
               "active": cat(act_h, bool)[:n].astype(bool), "lr_scale": cat(scale_h, float)[:n]}
    trained = eqx.combine(params, static)
    if n_pad != n:
        trained, extra = member((trained, extra), slice(0, n))
    trained, extra = _gather(trained), _gather(extra)
    return EnsembleResult(models=trained, extra=extra, history=history, final_losses=final[:n],
                          rejected=rejected[:n], stopped=stopped[:n].astype(str),
                          wall_seconds=time.perf_counter() - t_start)
