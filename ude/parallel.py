"""Device meshes and multi-host start-up for ensembles and data-parallel fits (``jax.sharding``).

A :class:`jax.sharding.Mesh` names its device axes: ``"members"`` splits an ensemble (the leading
axis of stacked models / datasets, see :mod:`ude.train.ensemble`), ``"traj"`` splits the
trajectories of a dataset (the strategies vmap over them, so XLA partitions the solves). Arrays
are placed with ``NamedSharding``; everything not split is replicated. The same code runs on one
process or many (``jax.distributed``, one process per host): arrays are built from each process's
full host copy with ``jax.make_array_from_callback`` and read back with ``process_allgather``.

Example::

    mesh = make_mesh(members=4)  # 4 devices, ensemble split 4 ways
    res = fit_ensemble(models, data, strategy, stages, key=key, mesh=mesh)

On a CPU the devices can be faked for tests: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(set before jax is imported).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._types import is_key_array

MEMBERS = "members"
TRAJ = "traj"

__all__ = [
    "MEMBERS",
    "TRAJ",
    "make_mesh",
    "init_distributed",
    "axis_size",
    "replicate",
    "shard_members",
    "shard_trajectories",
    "place",
    "to_host",
    "pad_members",
]


def make_mesh(
    members: int | None = None, traj: int = 1, *, devices: Sequence | None = None
) -> Mesh:
    """A ``(members, traj)`` mesh over ``devices`` (default: all, across every process).

    Args:
        members: devices along the ensemble axis (default: all devices // ``traj``).
        traj: devices along the trajectory axis (data parallelism inside each member).
        devices: the devices to use (default ``jax.devices()``).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not isinstance(traj, int) or traj < 1:
        raise ValueError(f"make_mesh: traj must be a positive integer, got {traj!r}")
    if members is None:
        members = len(devices) // traj
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"make_mesh: members must be a positive integer, got {members!r}")
    if members * traj > len(devices):
        raise ValueError(
            f"make_mesh: members × traj = {members * traj} exceeds the "
            f"{len(devices)} available devices"
        )
    grid = np.array(devices[: members * traj], dtype=object).reshape(members, traj)
    return Mesh(grid, (MEMBERS, TRAJ))


def axis_size(mesh: Mesh | None, name: str) -> int:
    """Devices along axis ``name`` of ``mesh`` (1 when absent or no mesh)."""
    if mesh is None or name not in mesh.axis_names:
        return 1
    return int(mesh.shape[name])


def init_distributed(
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids=None,
) -> dict:
    """Start ``jax.distributed`` when running as one of several processes; a no-op otherwise.

    Reads, in order: the arguments; ``UDE_COORDINATOR`` / ``UDE_NUM_PROCESSES`` / ``UDE_PROCESS_ID``
    (or jax's own ``JAX_COORDINATOR_ADDRESS`` …); under SLURM (``SLURM_NTASKS`` > 1) jax's cluster
    detection finds the coordinator (the first node of the job), the task count and this task's
    rank by itself. Call it first thing, before any other jax call.

    Returns ``{"process_id", "process_count", "local_devices", "devices"}``.
    """
    env = os.environ
    coordinator = coordinator or env.get("UDE_COORDINATOR") or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("UDE_NUM_PROCESSES"):
        num_processes = int(env["UDE_NUM_PROCESSES"])
    if process_id is None and env.get("UDE_PROCESS_ID"):
        process_id = int(env["UDE_PROCESS_ID"])
    slurm = int(env.get("SLURM_NTASKS", "1") or 1) > 1
    if coordinator is not None:
        if num_processes is None or process_id is None:
            raise ValueError(
                "init_distributed: a coordinator address needs num_processes and "
                "process_id (or UDE_NUM_PROCESSES / UDE_PROCESS_ID)"
            )
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
        )
    elif slurm:
        jax.distributed.initialize(local_device_ids=local_device_ids)
    return {
        "process_id": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": len(jax.local_devices()),
        "devices": len(jax.devices()),
    }


def _put(x, sharding: NamedSharding):
    if is_key_array(x):  # typed keys travel as their raw data
        return jr.wrap_key_data(_put(jr.key_data(x), _extend(sharding, 1)), impl=jr.key_impl(x))
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # every process holds the same full copy
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _extend(sharding: NamedSharding, extra_dims: int) -> NamedSharding:
    spec = tuple(sharding.spec) + (None,) * extra_dims
    return NamedSharding(sharding.mesh, P(*spec))


def _spec_for(x, axes: Sequence) -> P:
    """``axes`` (mesh axis names or None per array dimension) truncated to ``x.ndim``."""
    return P(*tuple(axes)[: np.ndim(x)])


def place(tree, mesh: Mesh, axes: Sequence = ()):
    """Put every array leaf of ``tree`` on ``mesh``: dimension ``k`` split over mesh axis
    ``axes[k]`` (None: not split); dimensions beyond ``axes`` are replicated."""

    def one(x):
        if not isinstance(x, (jax.Array, np.ndarray)):
            return x
        return _put(x, NamedSharding(mesh, _spec_for(x, axes)))

    return jax.tree_util.tree_map(one, tree)


def replicate(tree, mesh: Mesh):
    """Every array leaf of ``tree`` copied onto every device of ``mesh``."""
    return place(tree, mesh, ())


def shard_members(tree, mesh: Mesh):
    """Split the leading (member) axis of every array leaf over the mesh's ``"members"`` axis."""
    return place(tree, mesh, (MEMBERS if MEMBERS in mesh.axis_names else None,))


def shard_trajectories(data, mesh: Mesh, *, stacked: bool = False):
    """A :class:`ude.data.Dataset` with its trajectory axis split over the mesh's ``"traj"`` axis
    (and, for a ``stacked`` ensemble dataset, its leading member axis over ``"members"``); the
    time grid is replicated. The trajectory count must divide evenly."""
    n_t = axis_size(mesh, TRAJ)
    n_traj = data.ys.shape[1 if stacked else 0]
    if n_traj % n_t:
        raise ValueError(
            f"shard_trajectories: {n_traj} trajectories do not split evenly over "
            f"{n_t} devices of the mesh's '{TRAJ}' axis"
        )
    mem = MEMBERS if (stacked and MEMBERS in mesh.axis_names) else None
    trj = TRAJ if TRAJ in mesh.axis_names else None
    lead = (mem,) if stacked else ()
    per_exp = data.per_experiment_times  # then the times (and the inputs) are per trajectory
    fields = {
        "ts": place(data.ts, mesh, lead + ((trj,) if per_exp else ())),
        "ys": place(data.ys, mesh, lead + (trj,)),
        "mask": place(data.mask, mesh, lead + (trj,)),
        "y_true": None if data.y_true is None else place(data.y_true, mesh, lead + (trj,)),
        "_provenance_values": place(data._provenance_values, mesh, lead),
    }
    names = [k for k, v in fields.items() if getattr(data, k) is not None]
    data = eqx.tree_at(lambda d: [getattr(d, k) for k in names], data, [fields[k] for k in names])
    if data.inputs is not None:
        inputs = jax.tree_util.tree_map(lambda x: place(x, mesh, lead + (trj,)), data.inputs)
        data = eqx.tree_at(lambda d: d.inputs, data, inputs)
    return data


def to_host(x) -> np.ndarray:
    """A numpy copy of ``x`` on this process, gathering shards from other processes if needed."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def pad_members(tree, n: int):
    """Extend the leading axis of every array leaf to ``n`` by repeating member 0 (padding so an
    ensemble splits evenly over devices; the padded members are dropped afterwards)."""

    def one(x):
        if not isinstance(x, (jax.Array, np.ndarray)) or x.shape[0] >= n:
            return x
        extra = jnp.repeat(x[:1], n - x.shape[0], axis=0)
        return jnp.concatenate([jnp.asarray(x), extra], axis=0)

    return jax.tree_util.tree_map(one, tree)
