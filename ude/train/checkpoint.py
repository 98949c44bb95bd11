"""Atomic checkpoints of a fit: the optimiser carry (equinox serialisation) plus a JSON index."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import numpy as np

INDEX = "checkpoint.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(directory, carry, meta: dict, history: dict) -> Path:
    """Write ``carry`` (a pytree) to ``ckpt-<step>.eqx`` and then the index that names it.

    The index is replaced last, so a crash at any point leaves the previous checkpoint intact.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{meta['global_step']:08d}.eqx"
    tmp = directory / f".{name}.tmp"
    eqx.tree_serialise_leaves(tmp, carry)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)
    hist = {k: np.asarray(v).tolist() for k, v in history.items()}
    atomic_write_text(directory / INDEX, json.dumps({**meta, "file": name, "history": hist}))
    for old in directory.glob("ckpt-*.eqx"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / name


def load_index(directory) -> dict | None:
    """The checkpoint index of ``directory``, or None when there is none."""
    path = Path(directory) / INDEX
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: checkpoint index is not valid JSON ({e})") from e
    if not (Path(directory) / index.get("file", "")).exists():
        raise ValueError(f"{path}: names {index.get('file')!r}, which does not exist")
    return index


def load_carry(directory, index: dict, like):
    """Deserialise the carry named by ``index`` into the structure of ``like``."""
    path = Path(directory) / index["file"]
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as e:  # wrong structure or truncated file
        raise ValueError(f"{path}: cannot restore the checkpoint ({type(e).__name__}: {e})") from e
