"""A physical parameter that is fixed or trainable, optionally constrained positive."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Scalar


class Parameter(eqx.Module):
    """A scalar physics parameter.

    ``raw`` is what an optimiser sees: the value itself, or its logarithm when ``positive`` is set,
    so that gradient steps can never make it negative. ``trainable`` is read by
    :func:`ude.model.trainable_filter`; a fixed parameter is frozen out of the gradient.

    Example:

    >>> p = Parameter(1.8, trainable=True, positive=True)
    >>> print(p.value)  # the optimiser sees p.raw = log(1.8)
    1.8
    """

    raw: Array
    trainable: bool = eqx.field(static=True)
    positive: bool = eqx.field(static=True)

    def __init__(self, value, *, trainable: bool = False, positive: bool = False):
        value = jnp.asarray(value, dtype=jnp.result_type(float))
        if value.shape != ():
            raise ValueError(f"Parameter: value must be a scalar, got shape {value.shape}")
        if positive:
            if not isinstance(value, jax.core.Tracer) and not bool(np.asarray(value) > 0):
                raise ValueError(f"Parameter: positive=True needs a value > 0, got {float(value)}")
            value = jnp.log(value)
        self.raw = value
        self.trainable = bool(trainable)
        self.positive = bool(positive)

    @property
    def value(self) -> Scalar:
        return jnp.exp(self.raw) if self.positive else self.raw

    def with_value(self, value) -> Parameter:
        """A copy holding ``value`` with the same flags."""
        return Parameter(value, trainable=self.trainable, positive=self.positive)

    def __float__(self) -> float:
        return float(self.value)


def as_parameter(x) -> Parameter:
    """Field converter: plain numbers become fixed parameters; Parameters pass through."""
    if isinstance(x, Parameter):
        return x
    return Parameter(x)
