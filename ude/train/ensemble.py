"""Ensembles: N fits (seeds, noise draws, hyper-parameters) trained as one vmapped program.

The fused optimiser chunk of :func:`ude.train.step.chunk_steps` is vmapped over a leading *member*
axis of the models (and, where given per member, of the data, the strategy and the stages), then
jitted once per stage kind, and driven by the same host loop as :func:`ude.train.fit`
(:mod:`ude.train.loop`: checkpoints, resume, callback, stop requests, early stopping). Step
rejection, the learning-rate back-off and L-BFGS's convergence flag live in the per-member carry,
so one diverging member never stops or changes the others: it just records rejected steps. With a
:class:`jax.sharding.Mesh` (:func:`ude.parallel.make_mesh`) the member axis is split over devices
(and the trajectory axis too, when the mesh has a ``"traj"`` axis); XLA partitions the same
program, so the result equals the single-device one.

Example (the UDE paper's noise sweep, 100 seeds at one noise level)::

    keys = jr.split(jr.key(0), 100)
    models = eqx.filter_vmap(
        lambda k: UDE(known, MLP(2, 2, width=5, depth=3, activation="rbf", key=k))
    )(keys)
    data = resample_noise(clean, RelativeMeanNoise(0.05), jr.split(jr.key(1), 100))
    res = fit_ensemble(
        models, data, SingleShooting(l2=1e-4), [Adam(0.1, steps=200), LBFGS(1000)], key=jr.key(2)
    )
    res.final_losses  # (100,)
    res.member(3).model  # one fitted UDE
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._types import is_key_array
from ..model import partition
from ..parallel import (
    MEMBERS,
    axis_size,
    pad_members,
    replicate,
    shard_members,
)
from .checkpoint import fingerprint
from .ensemble_program import EnsembleProgram, gather, place_data
from .fit import FitResult
from .loop import check_loop_arguments, run_stages
from .stacking import (
    broadcast as broadcast,
    member as member,
    n_members as n_members,
    resample_noise as resample_noise,
    stack as stack,
    stack_datasets as stack_datasets,
    stack_models as stack_models,
    unstack as unstack,
)
from .stages import AbstractStage
from .strategies import AbstractStrategy

__all__ = [
    "EnsembleFitResult",
    "fit_ensemble",
    "stack",
    "unstack",
    "member",
    "n_members",
    "broadcast",
    "stack_models",
    "stack_datasets",
    "resample_noise",
]


# ------------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EnsembleFitResult:
    """What :func:`fit_ensemble` returns.

    Attributes:
        models: the trained models, stacked (leading member axis); :meth:`member` picks one.
        extra: the strategy's extra parameters, stacked, or None.
        history: ``step``, ``stage`` (steps,) and ``loss``, ``accepted``, ``active``, ``lr_scale``
            (members, steps). ``active`` is False once a member has finished its stage (L-BFGS
            converged, or stopped early; its loss is still recorded, unchanged); ``accepted`` is
            False for rejected steps.
        final_losses: (members,) the strategy's full loss of each trained model (inf/nan where a
            member failed). rejected: (members, stages) rejected steps.
        stopped: (members, stages) ``"steps"``, ``"converged"`` or ``"early_stop"``.
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
        return FitResult(
            model=member(self.models, i),
            extra=member(self.extra, i),
            history=hist,
            final_loss=float(self.final_losses[i]),
            rejected=self.rejected[i].tolist(),
            stopped=self.stopped[i].tolist(),
            wall_seconds=self.wall_seconds,
        )


# ------------------------------------------------------------------------------------------------
# argument handling
# ------------------------------------------------------------------------------------------------
def _member_keys(key, n: int):
    """``key`` split into ``n`` member keys, or ``n`` keys given already."""
    if is_key_array(key):
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
    raise ValueError(
        f"fit_ensemble: key must be one random key or {n} keys (one per member), "
        f"got shape {np.shape(key)}"
    )


def _per_member(obj, n: int, cls, what: str):
    """``(obj, stacked?)``: a shared ``cls`` instance, or a list of ``n`` (stacked)."""
    if isinstance(obj, cls):
        return obj, False
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(o, cls) for o in obj):
        if len(obj) != n:
            raise ValueError(f"fit_ensemble: {what} has {len(obj)} entries for {n} members")
        if len({type(o) for o in obj}) != 1:
            kinds = sorted({type(o).__name__ for o in obj})
            raise ValueError(f"fit_ensemble: {what} mixes {kinds}; members must share one kind")
        return stack(obj), True
    raise ValueError(
        f"fit_ensemble: {what} must be a {cls.__name__} or a list of {n} of them, "
        f"got {type(obj).__name__}"
    )


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
        if not (
            isinstance(s, (list, tuple)) and s and all(isinstance(x, AbstractStage) for x in s)
        ):
            raise ValueError(
                f"fit_ensemble: stages[{i}] must be a stage or a list of {n} stages, "
                f"got {type(s).__name__}"
            )
        if len(s) != n:
            raise ValueError(f"fit_ensemble: stages[{i}] has {len(s)} entries for {n} members")
        if len({(type(x), x.steps, x.horizon) for x in s}) != 1:
            raise ValueError(
                f"fit_ensemble: stages[{i}]: members must share kind, steps and "
                "horizon (they run in lockstep); only hyper-parameter values may "
                "differ"
            )
        specs.append(
            _StageSpec(s[0], stack([dataclasses.replace(x, steps=0) for x in s]), True, list(s))
        )
    return specs


# ------------------------------------------------------------------------------------------------
# fit_ensemble
# ------------------------------------------------------------------------------------------------
def fit_ensemble(
    models,
    data,
    strategy,
    stages,
    *,
    key,
    chunk: int = 100,
    verbose: bool | str = True,
    mesh=None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    validation=None,
    patience: int | None = None,
    callback: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EnsembleFitResult:
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
        key: one random key (member ``i`` gets ``jr.split(key, members)[i]``) or ``(members,)``
            keys.
            Member ``i`` then matches ``fit(member_i, data_i, ..., key=member_key_i)``.
        chunk: optimiser steps fused per jitted ``lax.scan``.
        verbose: a progress bar per stage (median loss, members with rejected steps).
        mesh: a :class:`jax.sharding.Mesh` from :func:`ude.parallel.make_mesh`: members are split
            over its ``"members"`` axis (padded to a multiple of it), trajectories over ``"traj"``.
        checkpoint_dir, checkpoint_every, resume, should_stop: as in :func:`ude.train.fit`; a
            resumed ensemble ends exactly where an uninterrupted one does.
        validation, patience: early stopping per member, as in ``fit`` (``validation``: one
            dataset or a stacked one); a member that stops runs no more steps of the stage.
        callback: called after each chunk with ``(stage_index, global_step, models, losses)``,
            ``losses`` ``(members,)``.

    Returns an :class:`EnsembleFitResult`. A member whose steps fail (non-finite loss or gradient,
    failed solve) has them rejected and its learning rate backed off, exactly as in ``fit``; the
    other members are unaffected.
    """
    t_start = time.perf_counter()
    check_loop_arguments("fit_ensemble", stages, chunk, checkpoint_dir, checkpoint_every)
    n = n_members(models)
    data_stacked = data.ys.ndim == 4
    if data_stacked and data.ys.shape[0] != n:
        raise ValueError(f"fit_ensemble: data has {data.ys.shape[0]} members, models have {n}")
    v_stacked = validation is not None and validation.ys.ndim == 4
    if v_stacked and validation.ys.shape[0] != n:
        raise ValueError(
            f"fit_ensemble: validation has {validation.ys.shape[0]} members, models have {n}"
        )
    print_of = fingerprint(models, strategy, stages, members=n)
    strategy, strat_stacked = _per_member(strategy, n, AbstractStrategy, "strategy")
    specs = _stage_specs(stages, n)
    keys = _member_keys(key, n)

    n_dev = axis_size(mesh, MEMBERS)
    n_pad = -(-n // n_dev) * n_dev
    if n_pad != n:
        models, keys = pad_members(models, n_pad), pad_members(keys, n_pad)
        data = pad_members(data, n_pad) if data_stacked else data
        validation = pad_members(validation, n_pad) if v_stacked else validation
        strategy = pad_members(strategy, n_pad) if strat_stacked else strategy
        specs = [
            dataclasses.replace(sp, jit=pad_members(sp.jit, n_pad)) if sp.stacked else sp
            for sp in specs
        ]

    params, static = partition(models)
    if mesh is not None:
        static = shard_members(static, mesh)
        strategy = shard_members(strategy, mesh) if strat_stacked else replicate(strategy, mesh)
        specs = [
            dataclasses.replace(
                sp, jit=shard_members(sp.jit, mesh) if sp.stacked else replicate(sp.jit, mesh)
            )
            for sp in specs
        ]
    if validation is not None:
        validation = place_data(validation, mesh, v_stacked)
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)
    program = EnsembleProgram(
        static=static,
        data=data,
        strategy=strategy,
        specs=specs,
        keys=keys,
        validation=validation,
        mesh=mesh,
        axes=(data_stacked, strat_stacked, v_stacked),
        members=n,
        n_pad=n_pad,
        dtype=dtype,
    )
    out = run_stages(
        program,
        params,
        chunk=chunk,
        verbose=verbose,
        fingerprint=print_of,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        patience=None if validation is None else patience,
        callback=callback,
        should_stop=should_stop,
    )
    trained = program._unpad((eqx.combine(out.params, static), out.extra))
    trained, extra = gather(trained)
    return EnsembleFitResult(
        models=trained,
        extra=extra,
        history=out.history,
        final_losses=out.final_losses,
        rejected=out.rejected,
        stopped=out.stopped,
        wall_seconds=time.perf_counter() - t_start,
    )
