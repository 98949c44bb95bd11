"""Losses: (masked, weighted) squared errors and the L2 penalty on network weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._types import Array, ArrayLike, Scalar
from ..model import network_weights

REDUCTIONS = ("sse", "mse")


def squared_error(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduction: str = "sse",
) -> Scalar:
    """Sum (``"sse"``) or mean (``"mse"``) of squared errors over observed entries.

    ``mask`` (same shape, bool) drops unobserved values; ``weights`` (one per state, last axis)
    scales each state's errors. Non-finite predictions at unobserved entries do not leak in.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    err = pred - target
    if mask is None:
        mask = jnp.ones(err.shape, bool)
    sq = jnp.where(mask, err**2, 0.0)
    if weights is not None:
        sq = sq * weights
    total = jnp.sum(sq)
    if reduction == "mse":
        total = total / jnp.maximum(jnp.sum(mask), 1)
    return total


def l2_penalty(model, scale) -> Scalar:
    """The UDE paper's weight penalty ``scale · ‖θ‖² / |θ|`` over the network's trainable arrays."""
    ws = network_weights(model)
    if not ws:
        return jnp.zeros(())
    n = sum(w.size for w in ws)
    # one reduction over the concatenated weights, not one per array: on a CPU every reduction is
    # a kernel launch in every training step
    return scale * jnp.sum(_flat(ws) ** 2) / n


def _flat(arrays) -> Array:
    dtype = jnp.result_type(*arrays)
    return jnp.concatenate([jnp.ravel(a).astype(dtype) for a in arrays])


def tree_all_finite(tree) -> Array:
    """True when every inexact array in ``tree`` is finite (one fused reduction)."""
    leaves = [
        x
        for x in jax.tree_util.tree_leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.isfinite(_flat(leaves)))
