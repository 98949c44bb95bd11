"""Inputs ``u(t)`` of an experiment — a measured or set signal given as samples — interpolated with
diffrax's interpolations (linear, or cubic Hermite from backward differences) or held piecewise
constant (set-points).

A first step towards experiments with inputs: :class:`InputSignal` is one experiment's signal, a
pytree that ``jax.vmap`` batches over experiments (stack the samples, build inside the vmap).
Outside its sample times a signal holds its first or last value.
"""

from __future__ import annotations

from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float

__all__ = ["INTERPOLATIONS", "InputSignal"]

INTERPOLATIONS = ("linear", "cubic", "constant")
"""How samples become ``u(t)``: straight lines, a C¹ cubic, or a step held until the next sample."""


class InputSignal(eqx.Module):
    """``u(t)`` from samples ``us`` (times, inputs) at strictly increasing ``ts``.

    >>> import jax.numpy as jnp
    >>> u = InputSignal(jnp.array([0.0, 1.0, 2.0]), jnp.array([[0.0], [2.0], [0.0]]), ("feed",))
    >>> print(u(0.25), u(5.0))
    [0.5] [0.]
    """

    ts: Float[Array, " times"]
    us: Float[Array, "times inputs"]
    names: tuple[str, ...] = eqx.field(static=True)
    kind: str = eqx.field(static=True)

    def __init__(self, ts, us, names: Sequence[str], kind: str = "linear"):
        ts = jnp.asarray(ts, dtype=jnp.result_type(float))
        us = jnp.asarray(us, dtype=ts.dtype)
        if us.ndim == 1:
            us = us[:, None]
        if ts.ndim != 1 or us.ndim != 2 or us.shape[0] != ts.shape[0]:
            raise ValueError(
                f"InputSignal: ts must be (times,) and us (times, inputs), got {ts.shape} and "
                f"{us.shape}"
            )
        if ts.shape[0] < 2:
            raise ValueError("InputSignal: an input needs at least 2 samples")
        names = tuple(names)
        if len(names) != us.shape[1] or len(set(names)) != len(names):
            raise ValueError(
                f"InputSignal: give one distinct name per input column ({us.shape[1]}), got {names}"
            )
        if kind not in INTERPOLATIONS:
            raise ValueError(f"InputSignal: kind must be one of {INTERPOLATIONS}, got {kind!r}")
        if not isinstance(ts, jax.core.Tracer) and not isinstance(us, jax.core.Tracer):
            t = np.asarray(ts)
            if not np.all(np.diff(t) > 0):
                raise ValueError("InputSignal: ts must be strictly increasing")
            if not np.all(np.isfinite(np.asarray(us))):
                raise ValueError("InputSignal: us must be finite")
        self.ts, self.us, self.names, self.kind = ts, us, names, kind

    @property
    def n_inputs(self) -> int:
        return self.us.shape[-1]

    def __call__(self, t) -> Float[Array, " inputs"]:
        """The inputs at time ``t`` (held at the end values outside the samples)."""
        t = jnp.clip(jnp.asarray(t, self.ts.dtype), self.ts[0], self.ts[-1])
        if self.kind == "constant":
            i = jnp.clip(jnp.searchsorted(self.ts, t, side="right") - 1, 0, self.ts.shape[0] - 1)
            return self.us[i]
        if self.kind == "cubic":  # coefficients from the samples here: gradients reach them
            coeffs = diffrax.backward_hermite_coefficients(self.ts, self.us)
            return diffrax.CubicInterpolation(self.ts, coeffs).evaluate(t)
        return diffrax.LinearInterpolation(self.ts, self.us).evaluate(t)
