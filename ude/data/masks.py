"""Observation masks: which values of a dataset are observed, from a readable description.

A mask is a ``(traj, times, state)`` bool array; ``observe`` describes it per state (``"all"``,
``"none"``, a list of save times, or a bool array), so partial observation is written as in the
UDE paper's scenario 2::

    observation_mask(jnp.linspace(0, 6, 61), ("x", "y"), {"y": [0, 1.2, 2.4, 3.6, 4.8, 6]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .checks import time_tol

__all__ = ["observation_mask", "describe_observe"]


def describe_observe(observe):
    """The JSON form of ``observe`` that provenance records (arrays as ``"mask"``)."""
    if observe is None:
        return "all"
    if isinstance(observe, Mapping):
        out = {}
        for k, v in observe.items():
            if isinstance(v, str):
                out[str(k)] = v
            elif np.asarray(v).dtype == bool:
                out[str(k)] = "mask"
            else:
                out[str(k)] = [float(t) for t in np.asarray(v, dtype=np.float64).reshape(-1)]
        return out
    return "mask"


def _array_mask(observe, shape: tuple[int, int, int]) -> np.ndarray:
    m = np.asarray(observe)
    if m.dtype != bool:
        raise ValueError(f"observe: a mask array must be boolean, got dtype {m.dtype}")
    if m.shape == shape[1:]:
        return np.broadcast_to(m[None], shape).copy()
    if m.shape == shape:
        return m.copy()
    raise ValueError(f"observe: mask must have shape {shape[1:]} or {shape}, got {m.shape}")


def _state_column(t: np.ndarray, spec, n_traj: int, where: str) -> np.ndarray:
    """One state's ``(traj, times)`` or ``(times,)`` observed flags from its spec."""
    if isinstance(spec, str):
        if spec not in ("all", "none"):
            raise ValueError(f"{where}: expected 'all', 'none', times or a bool mask, got {spec!r}")
        return np.full(t.size, spec == "all")
    a = np.asarray(spec)
    if a.dtype == bool:
        if a.shape in ((t.size,), (n_traj, t.size)):
            return a
        raise ValueError(
            f"{where}: a bool mask must have shape ({t.size},) or "
            f"({n_traj}, {t.size}), got {a.shape}"
        )
    try:
        times = a.astype(np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: expected 'all', 'none', a list of times or a bool mask, got {spec!r}"
        ) from None
    col = np.zeros(t.size, bool)
    tol = time_tol(t)
    for s in times:
        hit = np.flatnonzero(np.abs(t - s) <= tol)
        if hit.size == 0:
            raise ValueError(
                f"{where}: time {s} is not one of the save times "
                f"(ts spans [{t[0]}, {t[-1]}] with {t.size} points)"
            )
        col[hit[0]] = True
    return col


def observation_mask(ts, state_names: Sequence[str], observe, n_traj: int = 1) -> np.ndarray:
    """A ``(traj, times, state)`` bool mask from a readable description.

    ``observe`` is one of

    * ``None``: everything observed;
    * a bool array of shape ``(times, state)`` or ``(traj, times, state)``;
    * a dict ``state name -> spec`` (unnamed states are fully observed) where spec is ``"all"``,
      ``"none"``, a list of save times (each must be one of ``ts``), or a bool array of shape
      ``(times,)`` or ``(traj, times)``.

    The UDE paper's scenario 2 (x at 61 points on [0, 6], y at six of them)::

        observation_mask(jnp.linspace(0, 6, 61), ("x", "y"), {"y": [0, 1.2, 2.4, 3.6, 4.8, 6]})
    """
    t = np.asarray(ts, dtype=np.float64)
    names = tuple(state_names)
    shape = (n_traj, t.size, len(names))
    if observe is None:
        return np.ones(shape, bool)
    if not isinstance(observe, Mapping):
        return _array_mask(observe, shape)
    mask = np.ones(shape, bool)
    for name, spec in observe.items():
        if name not in names:
            raise ValueError(f"observe: unknown state {name!r}; states are {list(names)}")
        col = _state_column(t, spec, n_traj, f"observe[{name!r}]")
        mask[:, :, names.index(name)] = col if col.ndim == 2 else col[None]
    return mask
