"""The :class:`Dataset` pytree: observations of trajectories at shared save times, their mask,
the noise-free truth when known, and where they came from; windows, splits and masks of it."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import UInt32

from .._types import Array, ArrayLike, Bool, Float
from .checks import check_times, is_concrete, time_tol
from .masks import describe_observe, observation_mask
from .provenance import join_provenance, split_provenance

__all__ = ["Dataset"]


def _as_ys(ys, ts):
    if not jnp.issubdtype(ys.dtype, jnp.floating):
        ys = ys.astype(jnp.result_type(float))
    if ys.ndim == 2:
        ys = ys[None]
    if ys.ndim != 3:
        raise ValueError(
            f"Dataset: ys must have shape (traj, times, state) or (times, state), got {ys.shape}"
        )
    if ys.shape[1] != ts.shape[0]:
        raise ValueError(f"Dataset: ys has {ys.shape[1]} times but ts has {ts.shape[0]}")
    return ys


def _as_mask(mask, ys, concrete: bool):
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


def _as_state_names(state_names, n_state: int) -> tuple[str, ...]:
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


class Dataset(eqx.Module):
    """Observations of one or more trajectories at shared save times.

    Args:
        ts: ``(times,)`` strictly increasing save times.
        ys: ``(traj, times, state)`` observations (a ``(times, state)`` array is one trajectory).
            Set to 0 where unobserved.
        mask: ``(traj, times, state)`` bool, True where observed (default: where ``ys`` is finite).
        state_names: one name per state (default ``("s0", "s1", ...)``).
        y_true: ``(traj, times, state)`` noise-free truth at every point, or None (real data).
        provenance: a JSON-like dict (system, parameters, noise, seed, ...), read back through
            :attr:`provenance`.

    A Dataset is a pytree: ``ts``, ``ys``, ``mask``, ``y_true`` are array leaves, names are static,
    so a jitted function taking a Dataset compiles once per shape. Methods that change shapes
    (:meth:`window`, :meth:`split`) work on concrete data, outside ``jit``.
    """

    ts: Float[Array, " times"]
    ys: Float[Array, "traj times state"]
    mask: Bool[Array, "traj times state"]
    y_true: Float[Array, "traj times state"] | None
    state_names: tuple[str, ...] = eqx.field(static=True)
    _provenance_spec: str = eqx.field(static=True)
    _provenance_values: UInt32[ArrayLike, " words"]

    def __init__(self, ts, ys, mask=None, *, state_names=None, y_true=None, provenance=None):
        concrete = is_concrete(ts, ys, mask, y_true)
        ts = jnp.asarray(ts)
        ys = jnp.asarray(ys)
        if concrete:
            check_times(ts, "Dataset: ts")
            if not jnp.issubdtype(ts.dtype, jnp.floating):
                ts = ts.astype(jnp.result_type(float))
        ys = _as_ys(ys, ts)
        mask = _as_mask(mask, ys, concrete)
        ys = jnp.where(mask, ys, jnp.zeros((), ys.dtype))
        if y_true is not None:
            y_true = jnp.asarray(y_true)
            if y_true.ndim == 2:
                y_true = y_true[None]
            if y_true.shape != ys.shape:
                raise ValueError(
                    f"Dataset: y_true must have the shape of ys {ys.shape}, got {y_true.shape}"
                )
        self.ts = ts
        self.ys = ys
        self.mask = mask
        self.y_true = y_true
        self.state_names = _as_state_names(state_names, ys.shape[2])
        self._provenance_spec, self._provenance_values = split_provenance(provenance)

    # ---- shapes --------------------------------------------------------------------------------
    @property
    def n_traj(self) -> int:
        return self.ys.shape[0]

    @property
    def n_times(self) -> int:
        return self.ys.shape[1]

    @property
    def n_states(self) -> int:
        return self.ys.shape[2]

    @property
    def provenance(self) -> dict:
        """Where the data came from (system, parameters, noise, seed, ...), as a fresh dict."""
        return join_provenance(self._provenance_spec, self._provenance_values)

    def state_index(self, name: str) -> int:
        if name not in self.state_names:
            raise ValueError(f"state {name!r} is not one of {list(self.state_names)}")
        return self.state_names.index(name)

    def observed_states(self) -> tuple[str, ...]:
        """Names of the states observed at least once (in any trajectory)."""
        seen = np.asarray(self.mask).any(axis=(0, 1))
        return tuple(n for n, s in zip(self.state_names, seen, strict=True) if s)

    def n_observed(self) -> int:
        """Number of observed values (the count a sum-of-squares loss runs over)."""
        return int(np.asarray(self.mask).sum())

    # ---- new datasets --------------------------------------------------------------------------
    def _replace(self, *, ts=None, ys=None, mask=None, y_true=None, **prov) -> Dataset:
        """A copy with some arrays replaced and ``prov`` added to the provenance."""
        return Dataset(
            self.ts if ts is None else ts,
            self.ys if ys is None else ys,
            self.mask if mask is None else mask,
            state_names=self.state_names,
            y_true=self.y_true if y_true is None else y_true,
            provenance={**self.provenance, **prov},
        )

    def _select_times(self, keep: np.ndarray, what: str, **prov) -> Dataset:
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise ValueError(
                f"{what}: no save times selected (data spans "
                f"[{float(self.ts[0])}, {float(self.ts[-1])}])"
            )
        return self._replace(
            ts=self.ts[idx],
            ys=self.ys[:, idx],
            mask=self.mask[:, idx],
            y_true=None if self.y_true is None else self.y_true[:, idx],
            **prov,
        )

    def window(self, t0: float, t1: float) -> Dataset:
        """The data at save times ``t0 <= t <= t1`` (both ends included)."""
        if not t1 >= t0:
            raise ValueError(f"window: need t0 <= t1, got t0={t0}, t1={t1}")
        t = np.asarray(self.ts)
        tol = time_tol(t)
        return self._select_times(
            (t >= t0 - tol) & (t <= t1 + tol), "window", window=[float(t0), float(t1)]
        )

    def split(self, t_train_end: float) -> tuple[Dataset, Dataset]:
        """``(train, held_out)``: the times ``<= t_train_end`` and those after (to extrapolate)."""
        t = np.asarray(self.ts)
        tol = time_tol(t)
        train = t <= t_train_end + tol
        if train.all() or not train.any():
            raise ValueError(
                f"split: t_train_end={t_train_end} leaves one side empty (data spans "
                f"[{t[0]}, {t[-1]}])"
            )
        return (
            self._select_times(train, "split", split="train", t_train_end=float(t_train_end)),
            self._select_times(~train, "split", split="held_out", t_train_end=float(t_train_end)),
        )

    def with_mask(self, observe) -> Dataset:
        """A copy observed only where ``observe`` says (and where it was observed before).

        ``observe`` takes the forms of :func:`~ude.data.observation_mask`, e.g.
        ``{"y": [0, 1.2, 2.4]}`` or ``{"y": "none"}``; states it does not name keep their mask.
        Masks only remove observations: values that were never observed cannot be brought back.
        """
        new = observation_mask(self.ts, self.state_names, observe, self.n_traj)
        mask = np.asarray(self.mask) & new
        return self._replace(mask=jnp.asarray(mask), observe=describe_observe(observe))

    def trajectories(self, idx) -> Dataset:
        """The trajectories ``idx`` (an int, slice or index list) as a dataset."""
        sel = np.arange(self.n_traj)[idx]
        sel = np.atleast_1d(sel)
        if sel.size == 0:
            raise ValueError(f"trajectories: {idx!r} selects no trajectory of {self.n_traj}")
        return self._replace(
            ys=self.ys[sel],
            mask=self.mask[sel],
            y_true=None if self.y_true is None else self.y_true[sel],
            trajectories=[int(i) for i in sel],
        )
