"""Simulated data: the ground truth of a system at tight tolerance in float64, plus noise and an
observation mask, as one :class:`~ude.data.Dataset`.

The truth is solved with its own diffrax call (Dopri8, rtol = atol = 1e-12, float64), kept apart
from :mod:`ude.solve`, the code under test. It needs float64: :func:`simulate` raises unless
``jax_enable_x64`` is on (switch it on at the start of the program; changing ``jax.config`` inside a
library call would silently change every other computation in the process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import is_key_array
from .checks import check_times
from .dataset import Dataset
from .masks import describe_observe, observation_mask
from .noise import AbstractNoise, LogNormalNoise, NoNoise

__all__ = ["simulate"]


def _x64_enabled() -> bool:
    return jnp.asarray(1.0).dtype == jnp.float64


@eqx.filter_jit
def _truth_solve(truth, y0, ts, t0, args, rtol, atol, max_steps):
    # Steps land on every save time: Dopri8's dense output between steps is far less accurate
    # (~1e-9 at rtol 1e-12) than its step ends (~1e-13).
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts
    )

    def one(y):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(truth),
            diffrax.Dopri8(),
            t0=t0,
            t1=ts[-1],
            dt0=None,
            y0=y,
            args=args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
            max_steps=max_steps,
            throw=False,
        )
        return sol.ys, sol.result

    return jax.vmap(one)(y0)


def _key_and_seed(key):
    """``(PRNG key, the seed provenance records)`` from an int seed or a key (None: no key)."""
    if key is None:
        return None, None
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key)), int(key)
    k = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if is_key_array(k):
        return k, [int(v) for v in np.asarray(jax.random.key_data(k)).reshape(-1)]
    if k.dtype == jnp.uint32 and k.shape == (2,):
        return k, [int(v) for v in np.asarray(k)]
    raise ValueError(f"key: expected an int seed or a jax PRNG key, got {key!r}")


def _describe_truth(truth) -> dict:
    out: dict[str, Any] = {"system": type(truth).__name__}
    params = getattr(truth, "parameters", None)
    if callable(params):
        try:
            out["parameters"] = {str(k): float(v) for k, v in params().items()}
        except (TypeError, ValueError):
            pass
    include = getattr(truth, "include", None)
    if include is not None:
        out["include"] = list(include)
    return out


def _check_y0(y0: np.ndarray) -> np.ndarray:
    """``y0`` as ``(traj, state)``."""
    if y0.ndim not in (1, 2) or y0.shape[-1] == 0:
        raise ValueError(f"simulate: y0 must have shape (state,) or (traj, state), got {y0.shape}")
    if not np.all(np.isfinite(y0)):
        raise ValueError(f"simulate: y0 must be finite, got {y0.tolist()}")
    return y0 if y0.ndim == 2 else y0[None]


def _solve(truth, y0_2d, ts, t_start, args, rtol, atol, max_steps) -> np.ndarray:
    """The ``(traj, times, state)`` truth; ``ValueError`` naming the trajectory if a solve fails."""
    truth64 = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, truth
    )
    ys, result = _truth_solve(
        truth64,
        jnp.asarray(y0_2d),
        jnp.asarray(ts),
        jnp.float64(t_start),
        args,
        jnp.float64(rtol),
        jnp.float64(atol),
        max_steps,
    )
    ok = np.asarray(result == diffrax.RESULTS.successful)
    y_true = np.asarray(ys)
    finite = np.all(np.isfinite(y_true), axis=(1, 2))
    if not (ok.all() and finite.all()):
        i = int(np.argmin(ok & finite))
        why = (
            str(diffrax.RESULTS[jax.tree_util.tree_map(lambda r: r[i], result)])
            if not ok[i]
            else "the solution is not finite"
        )
        raise ValueError(
            f"simulate: the ground-truth solve of {type(truth).__name__} failed for "
            f"trajectory {i} (y0 = {y0_2d[i].tolist()}, t in [{t_start}, {ts[-1]}]): "
            f"{why} (max_steps={max_steps}); the system may diverge, or raise "
            "max_steps"
        )
    return y_true


def simulate(
    truth,
    y0,
    ts,
    *,
    noise: AbstractNoise | None = None,
    key=None,
    observe=None,
    state_names: Sequence[str] | None = None,
    args=None,
    t0: float | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 100_000,
) -> Dataset:
    """Ground truth of ``truth`` from ``y0`` at ``ts``, plus noise and an observation mask.

    Args:
        truth: a vector field ``(t, y, args) -> dy/dt`` (e.g. a physics module). Its arrays are cast
            to float64.
        y0: ``(state,)`` or ``(traj, state)`` initial states at ``t0``.
        ts: ``(times,)`` strictly increasing save times (irregular spacing is fine).
        noise: a noise model (default :class:`NoNoise`); applied to the full truth before masking.
        key: an int seed or a jax PRNG key (required unless the noise is :class:`NoNoise`).
        observe: which values are observed, see :func:`~ude.data.observation_mask`.
        state_names: default ``truth.state_names`` if it has them.
        t0: start time of the solve (default ``ts[0]``).
        rtol, atol, max_steps: the truth solver's settings (Dopri8, adaptive steps).

    Raises ``RuntimeError`` unless float64 is enabled (``jax.config.update("jax_enable_x64", True)``
    at program start) and ``ValueError`` if the truth solve fails (divergence, ``max_steps``).

    Example::

        data = simulate(
            LotkaVolterra(1.3, 0.9, 1.8, 0.8),
            jnp.array([0.44249296, 4.6280594]),
            jnp.linspace(0.0, 3.0, 31),
            noise=RelativeMeanNoise(0.05),
            key=1,
        )
    """
    if not _x64_enabled():
        raise RuntimeError(
            "simulate: the ground truth is solved in float64, but jax_enable_x64 is "
            "off; call jax.config.update('jax_enable_x64', True) at the start of "
            "your program (or set JAX_ENABLE_X64=1)"
        )
    noise = NoNoise() if noise is None else noise
    if not isinstance(noise, AbstractNoise):
        raise ValueError(
            f"simulate: noise must be a noise model such as RelativeMeanNoise(0.05), got {noise!r}"
        )
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"simulate: max_steps must be a positive integer, got {max_steps!r}")
    ts = np.asarray(ts, dtype=np.float64)
    check_times(ts, "simulate: ts")
    y0_2d = _check_y0(np.asarray(y0, dtype=np.float64))
    t_start = float(ts[0]) if t0 is None else float(t0)
    if t_start > ts[0]:
        raise ValueError(f"simulate: t0={t_start} is after the first save time {ts[0]}")
    if state_names is None:
        state_names = getattr(truth, "state_names", None)
    if state_names is not None and len(tuple(state_names)) != y0_2d.shape[1]:
        raise ValueError(
            f"simulate: y0 has {y0_2d.shape[1]} states but state_names is {tuple(state_names)}"
        )
    prng, seed = _key_and_seed(key)
    if prng is None and not isinstance(noise, NoNoise):
        raise ValueError("simulate: key is required to draw noise (an int seed or a jax PRNG key)")

    y_true = _solve(truth, y0_2d, ts, t_start, args, rtol, atol, max_steps)
    if isinstance(noise, LogNormalNoise) and np.any(y_true <= 0):
        raise ValueError(
            "simulate: LogNormalNoise is multiplicative and needs positive data, but "
            f"the truth reaches {float(y_true.min())}"
        )
    mask = observation_mask(
        ts, state_names or [f"s{i}" for i in range(y0_2d.shape[1])], observe, y0_2d.shape[0]
    )
    noisy = noise.apply(jnp.asarray(y_true), prng)
    provenance = {
        "source": "simulate",
        **_describe_truth(truth),
        "y0": y0_2d,
        "t0": t_start,
        "noise": noise.to_dict(),
        "seed": seed,
        "observe": describe_observe(observe),
        "truth_solver": {
            "solver": "dopri8",
            "rtol": float(rtol),
            "atol": float(atol),
            "max_steps": max_steps,
        },
    }
    return Dataset(ts, noisy, mask, state_names=state_names, y_true=y_true, provenance=provenance)
