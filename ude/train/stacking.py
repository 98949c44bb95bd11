"""Stacked pytrees: models, datasets, strategies or stages of an ensemble along a leading member
axis (``stack`` / ``member`` / ``unstack``), and noise redrawn once per member."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import is_key_array

__all__ = [
    "stack",
    "unstack",
    "member",
    "n_members",
    "broadcast",
    "stack_models",
    "stack_datasets",
    "resample_noise",
]


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def n_members(tree) -> int:
    """The length of the leading (member) axis of a stacked pytree."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if _is_array(x)]
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("n_members: the tree has no array with a leading member axis")
    return int(leaves[0].shape[0])


def _same(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a boolean ==
        return False


def stack(trees: Sequence):
    """One pytree whose array leaves gain a leading member axis, from ``trees`` of identical
    structure (models, datasets, stages or strategies differing only in array values)."""
    trees = list(trees)
    if not trees:
        raise ValueError("stack: trees is empty")
    parts = [eqx.partition(t, _is_array) for t in trees]
    ref_arrays, ref_static = parts[0]
    s_def = jax.tree_util.tree_structure(ref_static)
    a_def = jax.tree_util.tree_structure(ref_arrays)
    ref_leaves = jax.tree_util.tree_leaves(ref_static)
    for i, (arrays, static) in enumerate(parts[1:], start=1):
        leaves, ref = jax.tree_util.tree_leaves(arrays), jax.tree_util.tree_leaves(ref_arrays)
        # the structures are compared first, so the zips below see equal lengths
        ok = (
            jax.tree_util.tree_structure(arrays) == a_def
            and jax.tree_util.tree_structure(static) == s_def
            and all(
                _same(a, b)
                for a, b in zip(jax.tree_util.tree_leaves(static), ref_leaves, strict=True)
            )
        )
        ok = ok and all(np.shape(a) == np.shape(b) for a, b in zip(leaves, ref, strict=True))
        if not ok:
            raise ValueError(
                f"stack: member {i} differs from member 0 in structure, static fields "
                "or array shapes; only array values may differ"
            )
    stacked = jax.tree_util.tree_map(
        lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *[a for a, _ in parts]
    )
    return eqx.combine(stacked, ref_static)


stack_models = stack
stack_datasets = stack


def member(tree, i):
    """Member ``i`` (an int, or a slice for a sub-ensemble) of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: x[i] if _is_array(x) else x, tree)


def unstack(tree) -> list:
    """The members of a stacked pytree as a list."""
    return [member(tree, i) for i in range(n_members(tree))]


def broadcast(tree, n: int):
    """``n`` identical members: every array leaf repeated along a new leading axis."""
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(jnp.asarray(x), (n,) + np.shape(x)) if _is_array(x) else x, tree
    )


def resample_noise(data, noise, keys):
    """A stacked dataset of ``len(keys)`` noise draws on ``data.y_true`` (one per key).

    Args:
        data: a :class:`ude.data.Dataset` with noise-free ``y_true`` (e.g. from ``simulate``).
        noise: an ``ude.data`` noise model, or a list of them (one per key: e.g. noise levels).
        keys: ``(members,)`` random keys.
    """
    if data.y_true is None:
        raise ValueError("resample_noise: data has no y_true (noise-free truth) to redraw noise on")
    n = int(keys.shape[0]) if is_key_array(keys) else int(np.shape(keys)[0])
    if isinstance(noise, (list, tuple)):
        if len(noise) != n:
            raise ValueError(f"resample_noise: got {len(noise)} noise models for {n} keys")
        ys = eqx.filter_vmap(lambda nz, k: nz.apply(data.y_true, k))(stack(noise), keys)
    else:
        ys = eqx.filter_vmap(lambda k: noise.apply(data.y_true, k))(keys)
    ys = jnp.where(data.mask, ys, jnp.zeros((), ys.dtype))
    return eqx.tree_at(lambda d: d.ys, broadcast(data, n), ys)
