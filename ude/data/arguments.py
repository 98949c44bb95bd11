"""The checks that turn a :class:`~ude.data.Dataset`'s constructor arguments into its arrays:
observations, masks, state names, padded per-experiment times and stacked inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .inputs import ExperimentInputs, InputSignal

__all__ = ["as_inputs", "as_mask", "as_state_names", "as_ys", "row_lengths"]


def as_ys(ys, ts):
    if not jnp.issubdtype(ys.dtype, jnp.floating):
        ys = ys.astype(jnp.result_type(float))
    if ys.ndim == 2:
        ys = ys[None]
    if ys.ndim != 3:
        raise ValueError(
            f"Dataset: ys must have shape (traj, times, state) or (times, state), got {ys.shape}"
        )
    if ys.shape[1] != ts.shape[-1]:
        raise ValueError(f"Dataset: ys has {ys.shape[1]} times but ts has {ts.shape[-1]}")
    if ts.ndim == 2 and ts.shape[0] != ys.shape[0]:
        raise ValueError(
            f"Dataset: ts has times for {ts.shape[0]} experiments but ys has {ys.shape[0]}"
        )
    return ys


def row_lengths(ts) -> tuple[int, ...]:
    """The number of real times of every row of a padded ``(traj, times)`` ``ts``: each row is
    strictly increasing up to its end and then repeats its last time."""
    t = np.asarray(ts)
    lengths = []
    for i, row in enumerate(t):
        name = f"Dataset: ts[{i}]"
        if not np.all(np.isfinite(row)):
            j = int(np.argmin(np.isfinite(row)))
            raise ValueError(f"{name}: times must be finite; time {j} is {row[j]}")
        d = np.diff(row)
        n = int(np.argmin(d > 0)) + 1 if (d <= 0).any() else row.size
        if not np.all(row[n:] == row[n - 1]):
            j = n + int(np.argmin(row[n:] == row[n - 1]))
            raise ValueError(
                f"{name}: times must be strictly increasing (then repeat the last one as "
                f"padding); time {j} is {row[j]} after {row[j - 1]}"
            )
        lengths.append(n)
    return tuple(lengths)


def as_inputs(inputs, n_traj: int):
    """``inputs`` with a leading experiment axis: one ExperimentInputs (or InputSignal) for all
    trajectories is repeated, a stacked one must have ``n_traj`` rows."""
    if inputs is None:
        return None
    if isinstance(inputs, InputSignal):
        inputs = ExperimentInputs(inputs)
    if not isinstance(inputs, ExperimentInputs):
        raise ValueError(
            f"Dataset: inputs must be ExperimentInputs or an InputSignal, got "
            f"{type(inputs).__name__}"
        )
    lead = inputs.signal.ts if inputs.signal is not None else inputs.constants
    if lead.ndim == 1:  # one experiment's: the same for every trajectory
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_traj, *x.shape)), inputs)
    if lead.shape[0] != n_traj:
        raise ValueError(
            f"Dataset: inputs are stacked for {lead.shape[0]} experiments, ys has {n_traj}"
        )
    return inputs


def as_mask(mask, ys, concrete: bool):
    if mask is None:
        mask = jnp.isfinite(ys)
    mask = jnp.asarray(mask)
    if mask.ndim == 2:
        mask = jnp.broadcast_to(mask[None], ys.shape)
    if mask.shape != ys.shape:
        raise ValueError(f"Dataset: mask must have the shape of ys {ys.shape}, got {mask.shape}")
    if mask.dtype != jnp.bool_:
        if concrete and not np.all(np.isin(np.asarray(mask), (0, 1))):
            raise ValueError("Dataset: mask must be boolean (or 0/1)")
        mask = mask.astype(bool)
    if concrete:
        bad = np.asarray(mask) & ~np.isfinite(np.asarray(ys))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"Dataset: ys is not finite at observed entry (traj, time, state) = "
                f"{i}; mark it unobserved in mask"
            )
    return mask


def as_state_names(state_names, n_state: int) -> tuple[str, ...]:
    if state_names is None:
        state_names = tuple(f"s{i}" for i in range(n_state))
    if isinstance(state_names, str):
        raise ValueError(f"Dataset: state_names must be a sequence of names, got {state_names!r}")
    state_names = tuple(str(s) for s in state_names)
    if len(state_names) != n_state:
        raise ValueError(
            f"Dataset: state_names {state_names} has {len(state_names)} names for {n_state} states"
        )
    if len(set(state_names)) != len(state_names):
        raise ValueError(f"Dataset: state_names must be unique, got {state_names}")
    return state_names
