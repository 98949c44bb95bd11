"""Inputs ``u(t)`` of an experiment — a measured or set signal given as samples — interpolated with
diffrax's interpolations (linear, or cubic Hermite from backward differences) or held piecewise
constant (set-points).

:class:`InputSignal` is one experiment's signal; :class:`ExperimentInputs` is everything an
experiment feeds its vector field (signals and per-experiment constants, read by name), what a
solve passes as diffrax's ``args``. Both are pytrees that ``jax.vmap`` batches over experiments: a
:class:`~ude.data.Dataset` of several experiments holds them stacked, padded to one number of
samples by :func:`pad_signal` (samples after the end that hold the last value). Outside its sample
times a signal holds its first or last value.
"""

from __future__ import annotations

from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float

__all__ = ["INTERPOLATIONS", "ExperimentInputs", "InputSignal", "pad_signal", "stack_inputs"]

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
    end: Float[Array, ""]
    names: tuple[str, ...] = eqx.field(static=True)
    kind: str = eqx.field(static=True)

    def __init__(self, ts, us, names: Sequence[str], kind: str = "linear", *, end=None):
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
        # the last real sample's time: padding (pad_signal) adds samples after it that are never
        # read, so every kind holds exactly the last value after it
        self.end = ts[-1] if end is None else jnp.asarray(end, ts.dtype)

    @property
    def n_inputs(self) -> int:
        return self.us.shape[-1]

    def __call__(self, t) -> Float[Array, " inputs"]:
        """The inputs at time ``t`` (held at the end values outside the samples)."""
        t = jnp.clip(jnp.asarray(t, self.ts.dtype), self.ts[0], self.end)
        if self.kind == "constant":
            i = jnp.clip(jnp.searchsorted(self.ts, t, side="right") - 1, 0, self.ts.shape[0] - 1)
            return self.us[i]
        if self.kind == "cubic":  # coefficients from the samples here: gradients reach them
            coeffs = diffrax.backward_hermite_coefficients(self.ts, self.us)
            return diffrax.CubicInterpolation(self.ts, coeffs).evaluate(t)
        return diffrax.LinearInterpolation(self.ts, self.us).evaluate(t)


def pad_signal(signal: InputSignal, n: int) -> InputSignal:
    """``signal`` with ``n`` samples: the extra ones come after the last, one time span apart each,
    holding the last value (never read: the signal stops at its :attr:`~InputSignal.end`)."""
    k = signal.ts.shape[0]
    if n < k:
        raise ValueError(f"pad_signal: the signal has {k} samples, more than {n}")
    if n == k:
        return signal
    span = jnp.maximum(signal.ts[-1] - signal.ts[0], 1.0)
    extra_ts = signal.ts[-1] + span * jnp.arange(1, n - k + 1, dtype=signal.ts.dtype)
    extra_us = jnp.broadcast_to(signal.us[-1], (n - k, signal.n_inputs))
    return InputSignal(
        jnp.concatenate([signal.ts, extra_ts]),
        jnp.concatenate([signal.us, extra_us]),
        signal.names,
        signal.kind,
        end=signal.end,
    )


class ExperimentInputs(eqx.Module):
    """What one experiment feeds its vector field: a signal ``u(t)`` and constants (a temperature,
    a dose), read by name — :class:`~ude.physics.Equations` with ``inputs=[...]`` and
    :class:`~ude.model.UDE` with ``signals=[...]`` take either from the ``args`` of a solve.

    >>> import jax.numpy as jnp
    >>> u = InputSignal(jnp.array([0.0, 1.0]), jnp.array([0.0, 2.0]), ("feed",))
    >>> inputs = ExperimentInputs(u, {"T": 300.0})
    >>> inputs.names, [float(v) for v in inputs(0.5)]
    (('feed', 'T'), [1.0, 300.0])
    """

    signal: InputSignal | None
    constants: Float[Array, " constants"] | None
    constant_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, signal: InputSignal | None = None, constants=None):
        constants = dict(constants or {})
        if signal is not None and not isinstance(signal, InputSignal):
            raise ValueError(
                f"ExperimentInputs: signal must be an InputSignal, got {type(signal).__name__}"
            )
        names = tuple(str(k) for k in constants)
        clash = sorted(set(names) & set(signal.names if signal is not None else ()))
        if clash:
            raise ValueError(f"ExperimentInputs: {clash} is both a signal and a constant")
        if signal is None and not names:
            raise ValueError("ExperimentInputs: give a signal, constants, or both")
        values = [constants[k] for k in constants]
        if names and not any(isinstance(v, jax.core.Tracer) for v in values):
            bad = [k for k, v in constants.items() if not np.isfinite(np.asarray(v, float))]
            if bad or any(np.ndim(v) for v in values):
                raise ValueError(f"ExperimentInputs: constants must be finite numbers: {bad}")
        self.signal = signal
        self.constants = jnp.asarray(values, dtype=jnp.result_type(float)) if names else None
        self.constant_names = names

    @property
    def names(self) -> tuple[str, ...]:
        """The signals' names, then the constants'."""
        return (self.signal.names if self.signal is not None else ()) + self.constant_names

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.signal.names if self.signal is not None else ()

    def __call__(self, t) -> Float[Array, " inputs"]:
        parts = []
        if self.signal is not None:
            parts.append(self.signal(t))
        if self.constants is not None:
            parts.append(self.constants)
        return jnp.concatenate(parts) if len(parts) > 1 else parts[0]


def stack_inputs(inputs: Sequence[ExperimentInputs]) -> ExperimentInputs:
    """Several experiments' inputs as one pytree with a leading experiment axis (what a Dataset
    holds and a solve vmaps over): signals padded to one number of samples. All experiments must
    read the same names with the same interpolation."""
    inputs = list(inputs)
    first = inputs[0]
    for i, x in enumerate(inputs):
        same = x.names == first.names and (
            (x.signal is None) == (first.signal is None)
            and (x.signal is None or x.signal.kind == first.signal.kind)
        )
        if not same:
            raise ValueError(
                f"experiment {i} has inputs {list(x.names)}"
                + (f" ({x.signal.kind})" if x.signal is not None else "")
                + f", experiment 0 has {list(first.names)}"
                + (f" ({first.signal.kind})" if first.signal is not None else "")
                + ": every experiment must have the same inputs"
            )
    if first.signal is not None:
        n = max(x.signal.ts.shape[0] for x in inputs)
        inputs = [eqx.tree_at(lambda q: q.signal, x, pad_signal(x.signal, n)) for x in inputs]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *inputs)
