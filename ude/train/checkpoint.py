"""Atomic checkpoints of a fit: the carry (equinox serialisation) plus a JSON index that names it.

The index (``checkpoint.json``) holds where the fit stands (stage, step, history, rejected and
stopped per stage) and a fingerprint of the set-up, so a checkpoint is only resumed by the fit that
wrote it. It is replaced last: a crash at any point leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.random as jr
import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, load_eqx, save_eqx
from .._types import is_key_array

__all__ = [
    "INDEX",
    "save_checkpoint",
    "load_index",
    "load_carry",
    "keys_as_data",
    "keys_from_data",
    "fingerprint",
    "atomic_write_bytes",
    "atomic_write_text",
]

INDEX = "checkpoint.json"


def save_checkpoint(directory, carry, meta: dict, history: dict) -> Path:
    """Write ``carry`` (a pytree) to ``ckpt-<global_step>.eqx``, then the index naming it, then
    remove older checkpoint files."""
    directory = Path(directory)
    name = f"ckpt-{meta['global_step']:08d}.eqx"
    save_eqx(directory / name, carry)
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
    """Deserialise the carry named by ``index`` into the structure of ``like``; a wrong structure
    or a truncated file raises :class:`~ude.errors.RunDirError` (a ``ValueError``)."""
    return load_eqx(
        Path(directory) / index["file"],
        like,
        hint="the checkpoint is truncated or belongs to another set-up",
    )


def keys_as_data(tree):
    """Typed PRNG keys cannot be serialised: their raw ``uint32`` data instead."""
    return jax.tree_util.tree_map(lambda x: jr.key_data(x) if is_key_array(x) else x, tree)


def keys_from_data(tree, like):
    """The inverse of :func:`keys_as_data`: raw data back to keys where ``like`` has keys."""
    return jax.tree_util.tree_map(
        lambda new, old: jr.wrap_key_data(new, impl=jr.key_impl(old)) if is_key_array(old) else new,
        tree,
        like,
    )


def _describe(obj) -> str:
    """A stable text of a module's fields and values (``repr`` hides defaults by identity)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        inner = ", ".join(
            f"{f.name}={_describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
        )
        return f"{type(obj).__name__}({inner})"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_describe(o) for o in obj) + "]"
    if isinstance(obj, (jax.Array, np.ndarray)):
        return f"array({np.asarray(obj).tolist()!r})"
    return repr(obj)


def fingerprint(model, strategy, stages, *, members: int | None = None) -> str:
    """Identifies a fit's set-up (model structure, strategy and stages with their values; for an
    ensemble also its size) so that a checkpoint is only resumed by the same one."""
    text = repr(jax.tree_util.tree_structure(model)) + _describe(strategy) + _describe(list(stages))
    if members is not None:
        text = f"ensemble of {members}: " + text
    return hashlib.sha256(text.encode()).hexdigest()[:16]
