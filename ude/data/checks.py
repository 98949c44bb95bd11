"""Checks the data files share: save times (finite, strictly increasing), their matching
tolerance, and whether values are concrete (checks that read values are skipped under ``jit``)."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["check_times", "time_tol", "is_concrete"]


def time_tol(ts) -> float:
    """How close two times must be to count as the same save time: 1e-9, relative to the largest
    ``|t|`` when that exceeds 1 (times given in a config or a list rarely match bit for bit)."""
    t = np.asarray(ts, dtype=np.float64)
    return 1e-9 * max(1.0, float(np.max(np.abs(t)))) if t.size else 1e-9


def check_times(ts, name: str = "ts") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``ts`` is a non-empty 1-D array of finite,
    strictly increasing numbers."""
    t = np.asarray(ts)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"{name}: times must be a non-empty 1-D array, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name}: times must be numbers, got dtype {t.dtype}")
    if not np.all(np.isfinite(t)):
        i = int(np.argmin(np.isfinite(t)))
        raise ValueError(f"{name}: times must be finite; {name}[{i}] = {t[i]}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        i = int(np.argmin(np.diff(t) > 0))
        raise ValueError(
            f"{name}: times must be strictly increasing; "
            f"{name}[{i}] = {t[i]} >= {name}[{i + 1}] = {t[i + 1]}"
        )


def is_concrete(*xs) -> bool:
    """Whether none of ``xs`` is a tracer (inside ``jit`` values cannot be checked)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)
