"""Optimiser stages as data: ``Adam(lr=0.1, steps=200)`` then ``LBFGS(steps=1000, gtol=1e-8)``.

Hyper-parameters are arrays (traced), so stages of the same kind and shape share one compiled
program; names (schedule) and counts are static.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._types import Array

SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")


def _arr(default):
    """A float hyper-parameter stored as an array, so changing it never recompiles."""
    return eqx.field(default=default, converter=lambda x: x if x is None else jnp.asarray(x, float))


def _positive(cls, name, v, allow_zero=False):
    if isinstance(v, jax.core.Tracer):
        return
    ok = float(v) >= 0 if allow_zero else float(v) > 0
    if not ok:
        raise ValueError(f"{cls}: {name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")


class AbstractStage(eqx.Module):
    steps: eqx.AbstractVar[int]
    horizon: eqx.AbstractVar[float | None]

    def optimizer(self, total_steps=None) -> optax.GradientTransformationExtraArgs:
        """The optax transformation; ``total_steps`` (maybe traced) stands in for ``steps``."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


class Adam(AbstractStage):
    """``steps`` Adam steps at learning rate ``lr``.

    Args:
        schedule: ``"constant"``, ``"cosine"`` (decay to ``lr·final_fraction``), ``"exponential"``
            (to ``lr·final_fraction`` at the end), ``"warmup_cosine"`` (10 % warm-up).
        clip: global-norm gradient clipping threshold (None: off).
        backoff: factor applied to the learning rate after each rejected (non-finite or
            failed-solve) step.
        horizon: train on data up to this time only (growing-horizon training); None: all of it.
    """

    lr: Array = _arr(0.1)
    steps: int = eqx.field(static=True, default=200)
    schedule: str = eqx.field(static=True, default="constant")
    final_fraction: Array = _arr(0.01)
    clip: Array | None = _arr(None)
    b1: Array = _arr(0.9)
    b2: Array = _arr(0.999)
    backoff: Array = _arr(0.5)
    horizon: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _positive("Adam", "lr", self.lr)
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"Adam: steps must be a non-negative integer, got {self.steps!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Adam: schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.clip is not None:
            _positive("Adam", "clip", self.clip)

    def learning_rate(self, total_steps=None):
        """The learning rate, or a schedule ``count -> lr`` written with array arithmetic so that
        ``total_steps`` (default ``steps``) may be traced: stages differing only in length share
        one compiled program."""
        if self.schedule == "constant":
            return self.lr
        n = jnp.maximum(jnp.asarray(self.steps if total_steps is None else total_steps, float), 1.0)
        lr, final = self.lr, self.final_fraction

        def cosine(frac):
            return lr * (
                final + (1 - final) * 0.5 * (1 + jnp.cos(jnp.pi * jnp.clip(frac, 0.0, 1.0)))
            )

        if self.schedule == "cosine":
            return lambda count: cosine(count / n)
        if self.schedule == "exponential":
            return lambda count: lr * final ** jnp.clip(count / n, 0.0, 1.0)
        warm = jnp.maximum(jnp.floor(n / 10), 1.0)
        return lambda count: jnp.where(
            count < warm, lr * count / warm, cosine((count - warm) / jnp.maximum(n - warm, 1.0))
        )

    def optimizer(self, total_steps=None):
        adam = optax.adam(self.learning_rate(total_steps), b1=self.b1, b2=self.b2)
        if self.clip is None:
            return adam
        return optax.chain(optax.clip_by_global_norm(self.clip), adam)


class LBFGS(AbstractStage):
    """L-BFGS (``optax.lbfgs`` with its zoom line search) until ``steps`` are spent, the gradient
    norm falls below ``gtol``, or the relative loss change of a step falls below ``ftol``."""

    steps: int = eqx.field(static=True, default=1000)
    gtol: Array = _arr(1e-8)
    ftol: Array = _arr(1e-12)
    memory: int = eqx.field(static=True, default=10)
    linesearch_steps: int = eqx.field(static=True, default=20)
    backoff: Array = _arr(0.5)
    horizon: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"LBFGS: steps must be a non-negative integer, got {self.steps!r}")
        _positive("LBFGS", "gtol", self.gtol, allow_zero=True)
        _positive("LBFGS", "ftol", self.ftol, allow_zero=True)
        if not isinstance(self.memory, int) or self.memory < 1:
            raise ValueError(f"LBFGS: memory must be a positive integer, got {self.memory!r}")

    def optimizer(self, total_steps=None):
        return optax.lbfgs(
            memory_size=self.memory,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=self.linesearch_steps, verbose=False
            ),
        )


def growing_horizon(stage: AbstractStage, horizons) -> list[AbstractStage]:
    """Copies of ``stage`` trained on growing windows ``[t0, h]`` for each ``h`` in ``horizons``
    (None for the full window), e.g.
    ``growing_horizon(Adam(lr=0.05, steps=100), [1.0, 2.0, None])``."""
    return [dataclasses.replace(stage, horizon=h) for h in horizons]
