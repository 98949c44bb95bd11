"""The members' compiled program for the host loop: the fused optimiser chunk of
:func:`ude.train.step.chunk_steps` vmapped over a leading member axis (and sharded over a mesh),
the members' full loss and optimiser init, and :class:`EnsembleProgram`, which
:func:`ude.train.loop.run_stages` drives for :func:`ude.train.ensemble.fit_ensemble`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._types import is_key_array
from ..parallel import (
    TRAJ,
    axis_size,
    pad_members,
    replicate,
    shard_members,
    shard_trajectories,
    to_host,
)
from .checkpoint import keys_as_data, keys_from_data
from .loop import AbstractFitProgram
from .stacking import member, stack, unstack
from .step import ChunkRecord, FitState, chunk_steps, strong_types


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

    return eqx.filter_vmap(one, in_axes=(m, m, m, _ax(d), _ax(s)))(
        params, static, extra, data, strategy
    )


@eqx.filter_jit
def _ensemble_opt_init(params, extra, stage, stacked_stage: bool):
    return eqx.filter_vmap(
        lambda p, e, g: g.optimizer().init((p, e)),
        in_axes=(eqx.if_array(0), eqx.if_array(0), _ax(stacked_stage)),
    )(params, extra, stage)


_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


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
        outs = [
            one(
                member(params, i),
                member(static, i),
                member(data, i) if d else data,
                member(strategy, i) if s else strategy,
            )
            for i in range(n)
        ]
        return None if all(o is None for o in outs) else stack(outs)


def _stage_data(data, horizon, stacked: bool):
    if horizon is None:
        return data
    if not stacked:
        return data.window(data.span()[0], float(horizon))
    return stack([d.window(d.span()[0], float(horizon)) for d in unstack(data)])


def place_data(data, mesh, stacked: bool):
    if mesh is None:
        return data
    if axis_size(mesh, TRAJ) > 1:
        return shard_trajectories(data, mesh, stacked=stacked)
    return shard_members(data, mesh) if stacked else replicate(data, mesh)


def gather(tree):
    """Arrays spread over processes come back whole (a no-op on one process)."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(to_host(x))
            if isinstance(x, jax.Array) and not x.is_fully_addressable and not is_key_array(x)
            else x
        ),
        tree,
    )


# ------------------------------------------------------------------------------------------------
# the program the host loop drives
# ------------------------------------------------------------------------------------------------
def _member_mask(mask: np.ndarray, n_pad: int) -> jax.Array:
    """A ``(members,)`` host mask extended over the padding (copies of member 0)."""
    mask = np.asarray(mask, bool)
    return jnp.asarray(np.concatenate([mask, np.repeat(mask[:1], n_pad - mask.shape[0])]))


def _select_members(mask, new, old):
    def one(a, b):
        if not isinstance(a, jax.Array):
            return a
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(one, new, old)


class EnsembleProgram(AbstractFitProgram):
    """The members' chunk program, vmapped (and sharded over ``mesh``), for the host loop.

    Arrays are padded to ``n_pad`` members (a multiple of the mesh's member axis) with copies of
    member 0; the host sees the first ``members`` only.
    """

    static: object
    data: object
    strategy: object
    specs: list
    keys: object
    validation: object
    mesh: object
    axes: tuple  # (data stacked, strategy stacked, validation stacked)
    members: int
    n_pad: int
    dtype: object
    single: bool = False

    @property
    def stages(self):
        return [sp.ref for sp in self.specs]

    @property
    def label(self):
        return f" ×{self.members}"

    def _place(self, tree):
        return tree if self.mesh is None else shard_members(tree, self.mesh)

    def stage_data(self, s_idx):
        horizon = None if s_idx is None else self.specs[s_idx].ref.horizon
        d = self.axes[0]
        return place_data(_stage_data(self.data, horizon, d), self.mesh, d)

    def init_extra(self, params, data):
        return _init_extra(self.strategy, params, self.static, data, self.axes[:2], self.n_pad)

    def init_state(self, params, extra, s_idx):
        sp = self.specs[s_idx]
        opt_state = _ensemble_opt_init(params, extra, sp.jit, sp.stacked)
        n, dtype = self.n_pad, self.dtype
        state = FitState(
            params=params,
            extra=extra,
            opt_state=opt_state,
            key=jax.vmap(jr.fold_in, in_axes=(0, None))(self.keys, s_idx),
            lr_scale=jnp.ones((n,), dtype),
            finished=jnp.zeros((n,), bool),
            prev_loss=jnp.full((n,), jnp.inf, dtype),
        )
        return self._place(strong_types(state))

    def run_chunk(self, state, data, s_idx, remaining, chunk):
        sp = self.specs[s_idx]
        state, rec = _ensemble_chunk(
            state,
            self.static,
            data,
            self.strategy,
            sp.jit,
            jnp.asarray(sp.ref.steps),
            jnp.asarray(remaining),
            chunk,
            (self.axes[0], self.axes[1], sp.stacked),
        )
        n = self.members
        return state, ChunkRecord(
            *(to_host(x)[:n] for x in (rec.loss, rec.accepted, rec.active, rec.lr_scale))
        )

    def finished(self, state):
        return to_host(state.finished)[: self.members]

    def _mask(self, mask):
        mask = _member_mask(mask, self.n_pad)
        return mask if self.mesh is None else replicate(mask, self.mesh)

    def select(self, mask, new, old):
        return self._place(_select_members(self._mask(mask), new, old))

    def finish(self, state, mask):
        done = jnp.where(self._mask(mask), True, state.finished)
        return eqx.tree_at(lambda s: s.finished, state, self._place(done))

    def _unpad(self, tree):
        return tree if self.n_pad == self.members else member(tree, slice(0, self.members))

    def model(self, params):
        return gather(self._unpad(eqx.combine(params, self.static)))

    def _loss(self, params, extra, data, stacked):
        axes = (stacked, self.axes[1])
        if extra is None:
            extra = _init_extra(self.strategy, params, self.static, data, axes, self.n_pad)
        loss = _ensemble_full_loss(params, self.static, extra, data, self.strategy, axes)
        return to_host(loss)[: self.members]

    def validation_loss(self, params):
        return self._loss(params, None, self.validation, self.axes[2])

    def final_loss(self, params, extra):
        return self._loss(params, extra, self.stage_data(None), self.axes[0])

    def saved(self, tree):
        return gather(self._unpad(keys_as_data(tree)))

    def restored(self, saved, like):
        return self._place(keys_from_data(pad_members(saved, self.n_pad), like))

    def postfix(self, last_loss, rejected):
        return {
            "median_loss": f"{np.nanmedian(last_loss):.4g}",
            "rejecting": int((rejected > 0).sum()),
        }
