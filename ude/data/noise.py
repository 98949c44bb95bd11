"""Measurement noise models: exact, additive Gaussian, the UDE paper's relative-mean, log-normal.

Levels are array leaves, so sweeping them inside ``jit`` does not recompile; ``to_dict`` and
:func:`noise_from_dict` give the JSON form that provenance and configs use::

    noise = noise_from_dict({"kind": "relative_mean", "level": 0.05})
    noisy = noise.apply(ys, jax.random.key(0))
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array
from .checks import is_concrete

__all__ = [
    "AbstractNoise",
    "NoNoise",
    "GaussianNoise",
    "RelativeMeanNoise",
    "LogNormalNoise",
    "NOISES",
    "noise_from_dict",
]


class AbstractNoise(eqx.Module):
    """Measurement noise ``apply(ys, key) -> noisy ys`` on ``(..., times, state)`` arrays.

    Levels are array leaves, so sweeping them inside ``jit`` does not recompile. ``to_dict`` /
    :func:`noise_from_dict` give a JSON form for provenance and configs.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def apply(self, ys, key):
        """Noisy copy of ``ys`` (``(..., times, state)``) drawn with ``key``."""

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """JSON form, e.g. ``{"kind": "relative_mean", "level": 0.05}``."""


def _level(value, name: str, cls: str):
    level = jnp.asarray(value, dtype=jnp.result_type(float))
    if level.ndim > 1:
        raise ValueError(
            f"{cls}: {name} must be a scalar or one value per state, got shape {level.shape}"
        )
    if is_concrete(value):
        v = np.asarray(level)
        if not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"{cls}: {name} must be finite and >= 0, got {value!r}")
    return level


def _level_json(x):
    a = np.asarray(x, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


class NoNoise(AbstractNoise):
    """Exact observations."""

    kind: ClassVar[str] = "none"

    def apply(self, ys, key=None):
        return jnp.asarray(ys)

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class GaussianNoise(AbstractNoise):
    """Additive ``ys + sigma · N(0, 1)``; ``sigma`` a scalar or one value per state."""

    sigma: Array
    kind: ClassVar[str] = "gaussian"

    def __init__(self, sigma):
        self.sigma = _level(sigma, "sigma", "GaussianNoise")

    def apply(self, ys, key):
        ys = jnp.asarray(ys)
        return ys + self.sigma.astype(ys.dtype) * jax.random.normal(key, ys.shape, ys.dtype)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "sigma": _level_json(self.sigma)}


class RelativeMeanNoise(AbstractNoise):
    """The UDE paper's noise ``X + level · mean_t(X) ⊙ N(0, 1)``.

    ``mean_t(X)`` is each trajectory's time-average of each state (axis ``-2``), as in the paper's
    ``Xₙ = X .+ (noise_magnitude * x̄) .* randn(eltype(X), size(X))`` with ``x̄ = mean(X, dims=2)``.
    """

    level: Array
    kind: ClassVar[str] = "relative_mean"

    def __init__(self, level):
        self.level = _level(level, "level", "RelativeMeanNoise")

    def apply(self, ys, key):
        ys = jnp.asarray(ys)
        scale = self.level.astype(ys.dtype) * jnp.mean(ys, axis=-2, keepdims=True)
        return ys + scale * jax.random.normal(key, ys.shape, ys.dtype)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "level": _level_json(self.level)}


class LogNormalNoise(AbstractNoise):
    """Multiplicative ``ys · exp(sigma · N(0, 1))`` for positive data (keeps the sign)."""

    sigma: Array
    kind: ClassVar[str] = "lognormal"

    def __init__(self, sigma):
        self.sigma = _level(sigma, "sigma", "LogNormalNoise")

    def apply(self, ys, key):
        ys = jnp.asarray(ys)
        noise = jnp.exp(self.sigma.astype(ys.dtype) * jax.random.normal(key, ys.shape, ys.dtype))
        return ys * noise

    def to_dict(self) -> dict:
        return {"kind": self.kind, "sigma": _level_json(self.sigma)}


NOISES: dict[str, type[AbstractNoise]] = {
    cls.kind: cls for cls in (NoNoise, GaussianNoise, RelativeMeanNoise, LogNormalNoise)
}
# the constructor's fields of each kind, which its JSON form must give exactly
_FIELDS = {"none": set(), "gaussian": {"sigma"}, "relative_mean": {"level"}, "lognormal": {"sigma"}}


def noise_from_dict(d: Mapping[str, Any]) -> AbstractNoise:
    """Inverse of ``noise.to_dict()``: ``{"kind": "relative_mean", "level": 0.05}`` → noise.

    Fields set to None are ignored, so a config section's full dump can be passed as is."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise ValueError(f"noise: expected a dict with a 'kind' key, got {d!r}")
    kind = d["kind"]
    if kind not in NOISES:
        raise ValueError(f"noise.kind: unknown noise {kind!r}; choose from {sorted(NOISES)}")
    args = {k: v for k, v in d.items() if k != "kind" and v is not None}  # None: field not set
    expected = _FIELDS[kind]
    if set(args) != expected:
        raise ValueError(
            f"noise: {kind!r} takes {sorted(expected) or 'no fields'}, got {sorted(args)}"
        )
    return NOISES[kind](**args)
