"""Neural corrections: small MLPs with the UDE paper's rbf activation and initialisation."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import no_type_check

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._types import Array, Float


def rbf(z):
    """The UDE paper's radial basis activation ``exp(−z²)``."""
    return jnp.exp(-(z**2))


# keys: ude.registry.ACTIVATION_NAMES, what a config may name (tests/test_registry.py checks it)
ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "rbf": rbf,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "identity": lambda z: z,
}


# Aliases, not inline strings, in signatures: with ``from __future__ import annotations`` typeguard
# (jaxtyping's runtime checker) would parse " in" as Python and fail.
Inputs = Float[Array, " in"]
Outputs = Float[Array, " out"]


class AbstractCorrection(eqx.Module):
    """A learned term ``(t, y) -> correction``; ``in_size`` inputs, ``out_size`` outputs."""

    in_size: eqx.AbstractVar[int]
    out_size: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, t, y: Inputs) -> Outputs: ...


def _glorot_uniform(key, shape, dtype):
    fan_out, fan_in = shape
    limit = jnp.sqrt(6.0 / (fan_in + fan_out))
    return jr.uniform(key, shape, dtype, -limit, limit)


class MLP(AbstractCorrection):
    """A multilayer perceptron ``in_size → width × depth → out_size``.

    Args:
        in_size, out_size: input and output dimensions.
        width: hidden width (> 0). depth: number of hidden layers (≥ 0).
        activation: a name from :data:`ACTIVATIONS` for every hidden layer, or a sequence of names,
            one per hidden layer (the Hudson Bay network is ``("rbf", "rbf", "tanh")``).
        init: ``"glorot"`` (Glorot-uniform weights, zero biases: the paper's) or ``"default"``
            (equinox's LeCun-uniform).
        output_scale: the last layer's weights and bias are multiplied by this; ``0.0`` starts
            training exactly at the known physics.
        input_scale: inputs are divided by this (a scalar or one value per input) before the first
            layer, so states of very different magnitude meet the activations in their useful range.
        key: a ``jax.random`` key.

    Example — the UDE paper's network:

    >>> import jax.random as jr
    >>> from ude.model import count_params
    >>> net = MLP(2, 2, width=5, depth=3, activation="rbf", key=jr.key(0))
    >>> count_params(net)
    87
    """

    layers: tuple[eqx.nn.Linear, ...]
    input_scale: Array | None
    activations: tuple[str, ...] = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    # the arguments are validated by hand below (a ValueError naming the field, as the tests check);
    # exempt from the tests' runtime type checker, which would raise its own error first
    @no_type_check
    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        width: int,
        depth: int,
        activation: str | Sequence[str] = "tanh",
        init: str = "glorot",
        output_scale: float = 1.0,
        input_scale=None,
        key,
        dtype=None,
    ):
        for name, v, lo in (
            ("in_size", in_size, 1),
            ("out_size", out_size, 1),
            ("width", width, 1),
            ("depth", depth, 0),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"MLP: {name} must be an integer >= {lo}, got {v!r}")
        acts = (activation,) * depth if isinstance(activation, str) else tuple(activation)
        if len(acts) != depth:
            raise ValueError(f"MLP: activation lists {len(acts)} names for depth={depth}")
        for a in acts:
            if a not in ACTIVATIONS:
                raise ValueError(
                    f"MLP: unknown activation {a!r}; choose from {sorted(ACTIVATIONS)}"
                )
        if init not in ("glorot", "default"):
            raise ValueError(f"MLP: init must be 'glorot' or 'default', got {init!r}")
        dtype = dtype or jnp.result_type(float)
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jr.split(key, len(sizes) - 1)
        layers = []
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            if init == "glorot":
                # only the structure of equinox's Linear: its own random init would be discarded
                lin = eqx.filter_eval_shape(eqx.nn.Linear, a, b, key=k, dtype=dtype)
                lin = eqx.tree_at(
                    lambda m: (m.weight, m.bias),
                    lin,
                    (_glorot_uniform(k, (b, a), dtype), jnp.zeros((b,), dtype)),
                )
            else:
                lin = eqx.nn.Linear(a, b, key=k, dtype=dtype)
            if i == len(sizes) - 2 and output_scale != 1.0:
                lin = eqx.tree_at(
                    lambda m: (m.weight, m.bias),
                    lin,
                    (lin.weight * output_scale, lin.bias * output_scale),
                )
            layers.append(lin)
        self.layers = tuple(layers)
        self.activations = acts
        self.in_size = in_size
        self.out_size = out_size
        if input_scale is not None:
            input_scale = jnp.broadcast_to(jnp.asarray(input_scale, dtype), (in_size,))
        self.input_scale = input_scale

    def __call__(self, t, y):
        h = y if self.input_scale is None else y / jax.lax.stop_gradient(self.input_scale)
        for layer, act in zip(self.layers[:-1], self.activations, strict=True):
            h = ACTIVATIONS[act](layer(h))
        return self.layers[-1](h)

    @property
    def n_params(self) -> int:
        return sum(layer.weight.size + layer.bias.size for layer in self.layers)
