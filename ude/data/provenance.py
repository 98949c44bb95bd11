"""A dataset's provenance, kept so that a jitted function does not recompile when numbers change.

Provenance (system, parameters, noise, seed, ...) is split in two: the JSON *structure* (keys,
strings, bools, None) is a static string, and the numbers form one array leaf. Two datasets of the
same shapes and the same kind of provenance therefore share a compiled program (a new seed, noise
level, parameter or y0 changes only the leaf), and datasets of a noise sweep can be stacked with
``jax.tree.map``. The numbers are kept exactly, NaN and inf included::

    spec, bits = split_provenance({"noise": {"kind": "gaussian", "sigma": 0.1}, "seed": 3})
    join_provenance(spec, bits)  # {'noise': {'kind': 'gaussian', 'sigma': 0.1}, 'seed': 3}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

__all__ = ["split_provenance", "join_provenance"]


# Not ude._io.json_safe: that turns NaN and inf into None (JSON has neither) and passes unknown
# types through, but provenance must round-trip its numbers exactly and refuse what it cannot keep.
def _jsonable(x):
    """Plain JSON types from numpy / jax scalars and arrays, tuples and Paths."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, bool)) or x is None:
        return x
    if isinstance(x, (int, float)):
        return x
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        a = np.asarray(x)
        if a.dtype == bool:
            return a.tolist()
        if np.issubdtype(a.dtype, np.integer):
            return a.astype(int).tolist()
        if np.issubdtype(a.dtype, np.floating):
            return a.astype(float).tolist()
    raise ValueError(
        f"provenance: cannot record {type(x).__name__} {x!r}; use numbers, strings, "
        "bools, None, lists and dicts"
    )


def split_provenance(prov) -> tuple[str, np.ndarray]:
    """``(spec, bits)``: the structure of ``prov`` (a dict, or None for ``{}``) as a JSON string
    whose numbers are ``{"$i": k}`` / ``{"$f": k}`` placeholders, and the numbers as the uint32
    words of their float64 values."""
    values: list[float] = []

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return x
        if isinstance(x, int):
            if abs(x) > 2**53:
                raise ValueError(f"provenance: integer {x} is too large to record exactly")
            values.append(float(x))
            return {"$i": len(values) - 1}
        values.append(float(x))
        return {"$f": len(values) - 1}

    spec = walk(_jsonable(prov if prov is not None else {}))
    if not isinstance(spec, dict):
        raise ValueError(f"provenance: expected a dict, got {type(prov).__name__}")
    # float64 bit patterns as uint32 words: exact whatever jax_enable_x64 says (jit would round a
    # float64 leaf to float32 without it), and not an inexact leaf that grads or casts would touch.
    bits = np.ascontiguousarray(np.asarray(values, np.float64)).view(np.uint32)
    return json.dumps(spec, sort_keys=True, separators=(",", ":")), bits


def join_provenance(spec: str, bits) -> dict:
    """The dict :func:`split_provenance` took apart, as a fresh copy."""
    vals = np.ascontiguousarray(np.asarray(bits, dtype=np.uint32)).view(np.float64)

    def walk(x):
        if isinstance(x, dict):
            if len(x) == 1 and "$i" in x:
                return int(vals[x["$i"]])
            if len(x) == 1 and "$f" in x:
                return float(vals[x["$f"]])
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(json.loads(spec))
