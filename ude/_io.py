"""Small file helpers every writer shares: atomic writes, JSON, equinox save/load, history CSV.

A file is written to a temporary name in its folder and moved into place with ``os.replace``, so
a reader (or a process killed mid-write) never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import numpy as np

from .errors import RunDirError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "json_safe",
    "write_json",
    "save_eqx",
    "load_eqx",
    "write_history",
    "read_history",
    "HISTORY_COLUMNS",
]

HISTORY_COLUMNS = ("step", "stage", "loss", "accepted", "lr_scale")


def _file_mode(path: Path) -> int:
    """The permissions an ordinary ``open(path, "w")`` gives: an existing file keeps its own, a
    new one gets 0o666 less the umask (``mkstemp`` alone would make every file 0o600, unreadable
    by colleagues on a shared machine)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``; the
    file gets the permissions an ordinary write would (:func:`_file_mode`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def json_safe(x):
    """Plain JSON data: numpy / jax scalars and arrays to Python numbers and lists, tuples to
    lists, Paths to strings, NaN and inf to None (JSON has neither).

    >>> json_safe({"a": np.float32(0.5), "b": (1, float("nan")), "c": np.arange(2)})
    {'a': 0.5, 'b': [1, None], 'c': [0, 1]}
    """
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (str, type(None))):
        return x
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "__array__") and not isinstance(x, (bool, int, float, np.generic)):
        return json_safe(np.asarray(x).tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def write_json(path, obj) -> None:
    """``obj`` (made :func:`json_safe`) as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def save_eqx(path, tree) -> None:
    """``eqx.tree_serialise_leaves`` of ``tree`` into ``path``, atomically."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    atomic_write_bytes(path, buf.getvalue())


def load_eqx(path, like, *, hint: str = "the config may have changed since it was written"):
    """The pytree saved in ``path``, in the structure of ``like``.

    Raises :class:`~ude.errors.RunDirError` naming the file when it cannot be restored (a wrong
    structure or a truncated file)."""
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as e:  # noqa: BLE001 - any failure to restore is the file's problem
        raise RunDirError(
            f"{path}: cannot restore it ({type(e).__name__}: {e})" + (f"; {hint}" if hint else "")
        ) from None


def write_history(path, history: Mapping) -> None:
    """A fit's history (columns :data:`HISTORY_COLUMNS`, those present) as CSV, atomically.
    Floats are written with ``repr`` so they read back bit for bit."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k in HISTORY_COLUMNS if k in history]
    w.writerow(keys)
    for row in zip(*(np.asarray(history[k]).tolist() for k in keys), strict=False):
        w.writerow(
            [int(v) if isinstance(v, bool) else repr(v) if isinstance(v, float) else v for v in row]
        )
    atomic_write_text(path, buf.getvalue())


def read_history(path) -> dict[str, np.ndarray]:
    """A history CSV written by :func:`write_history` as numpy arrays."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    head, body = rows[0], rows[1:]
    cols = list(zip(*body, strict=False)) if body else [[] for _ in head]
    out = {}
    for k, col in zip(head, cols, strict=False):
        if k in ("step", "stage"):
            out[k] = np.asarray([int(v) for v in col], int)
        elif k == "accepted":
            out[k] = np.asarray([v in ("1", "True", "true") for v in col], bool)
        else:
            out[k] = np.asarray([float(v) for v in col], float)
    return out
