"""Datasets: simulated ground truth + noise, observation masks, time windows, files and real tables.

Everything here produces one :class:`Dataset` pytree::

    truth = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    data = simulate(truth, jnp.array([0.44249296, 4.6280594]), jnp.linspace(0.0, 3.0, 31),
                    noise=RelativeMeanNoise(0.05), key=1)
    train, held_out = data.split(2.0)
    save(data, "runs/lv/data")          # runs/lv/data.npz + runs/lv/data.json
    data = load("runs/lv/data")
    hares = hudson_bay()                 # the paper's real data, normalised

The ground truth is solved with its own diffrax call (Dopri8, rtol = atol = 1e-12, float64), kept
apart from :mod:`ude.solve`, the code under test. It needs float64: :func:`simulate` raises unless
``jax_enable_x64`` is on (switch it on at the start of the program; changing ``jax.config`` inside a
library call would silently change every other computation in the process).
"""

from __future__ import annotations

import abc
import csv
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import UInt32

from ._types import Array, ArrayLike, Bool, Float

__all__ = [
    "Dataset", "simulate", "observation_mask",
    "AbstractNoise", "NoNoise", "GaussianNoise", "RelativeMeanNoise", "LogNormalNoise", "NOISES",
    "noise_from_dict", "save", "load", "load_table", "hudson_bay", "HUDSON_BAY_PATH",
]

FORMAT = "ude.dataset"
FORMAT_VERSION = 1
HUDSON_BAY_PATH = Path(__file__).resolve().parent.parent / "data" / "hudson_bay.tsv"


# ------------------------------------------------------------------------------------------------
# provenance: hashable static structure + numeric values as an array leaf
# ------------------------------------------------------------------------------------------------
# Provenance is split in two so that a Dataset passes through ``eqx.filter_jit`` without
# recompiling when only numbers change (a new seed, noise level, parameter or y0): the JSON
# *structure* (keys, strings, bools, None) is a static string, and the numbers form one array
# leaf. Two datasets of the same shapes and the same kind of provenance therefore share a
# compiled program, and datasets of a noise sweep can be stacked with ``jax.tree.map``.

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
    raise ValueError(f"provenance: cannot record {type(x).__name__} {x!r}; use numbers, strings, "
                     "bools, None, lists and dicts")


def _split_provenance(prov) -> tuple[str, np.ndarray]:
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


def _join_provenance(spec: str, bits) -> dict:
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


def _time_tol(ts) -> float:
    t = np.asarray(ts, dtype=np.float64)
    return 1e-9 * max(1.0, float(np.max(np.abs(t)))) if t.size else 1e-9


def _check_times(ts, name: str = "ts") -> None:
    t = np.asarray(ts)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"{name}: times must be a non-empty 1-D array, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name}: times must be numbers, got dtype {t.dtype}")
    if not np.all(np.isfinite(t)):
        i = int(np.argmin(np.isfinite(t)))
        raise ValueError(f"{name}: times must be finite; {name}[{i}] = {t[i]}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        i = int(np.argmin(np.diff(t) > 0))
        raise ValueError(f"{name}: times must be strictly increasing; "
                         f"{name}[{i}] = {t[i]} >= {name}[{i + 1}] = {t[i + 1]}")


def _concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


# ------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------
class Dataset(eqx.Module):
    """Observations of one or more trajectories at shared save times.

    Args:
        ts: ``(times,)`` strictly increasing save times.
        ys: ``(traj, times, state)`` observations (a ``(times, state)`` array is one trajectory).
            Set to 0 where unobserved.
        mask: ``(traj, times, state)`` bool, True where observed (default: where ``ys`` is finite).
        state_names: one name per state (default ``("s0", "s1", ...)``).
        y_true: ``(traj, times, state)`` noise-free truth at every point, or None (real data).
        provenance: a JSON-like dict (system, parameters, noise, seed, ...), read back through
            :attr:`provenance`.

    A Dataset is a pytree: ``ts``, ``ys``, ``mask``, ``y_true`` are array leaves, names are static, so
    a jitted function taking a Dataset compiles once per shape. Methods that change shapes
    (:meth:`window`, :meth:`split`) work on concrete data, outside ``jit``.
    """

    ts: Float[Array, " times"]
    ys: Float[Array, "traj times state"]
    mask: Bool[Array, "traj times state"]
    y_true: Float[Array, "traj times state"] | None
    state_names: tuple[str, ...] = eqx.field(static=True)
    _provenance_spec: str = eqx.field(static=True)
    _provenance_values: UInt32[ArrayLike, " words"]

    def __init__(self, ts, ys, mask=None, *, state_names=None, y_true=None, provenance=None):
        concrete = _concrete(ts, ys, mask, y_true)
        ts = jnp.asarray(ts)
        ys = jnp.asarray(ys)
        if concrete:
            _check_times(ts, "Dataset: ts")
            if not jnp.issubdtype(ts.dtype, jnp.floating):
                ts = ts.astype(jnp.result_type(float))
        if not jnp.issubdtype(ys.dtype, jnp.floating):
            ys = ys.astype(jnp.result_type(float))
        if ys.ndim == 2:
            ys = ys[None]
        if ys.ndim != 3:
            raise ValueError(f"Dataset: ys must have shape (traj, times, state) or (times, state), "
                             f"got {ys.shape}")
        if ys.shape[1] != ts.shape[0]:
            raise ValueError(f"Dataset: ys has {ys.shape[1]} times but ts has {ts.shape[0]}")
        if mask is None:
            mask = jnp.isfinite(ys)
        mask = jnp.asarray(mask)
        if mask.ndim == 2:
            mask = jnp.broadcast_to(mask[None], ys.shape)
        if mask.shape != ys.shape:
            raise ValueError(f"Dataset: mask must have the shape of ys {ys.shape}, got {mask.shape}")
        if mask.dtype != jnp.bool_:
            if concrete and not np.all(np.isin(np.asarray(mask), (0, 1))):
                raise ValueError("Dataset: mask must be boolean (or 0/1)")
            mask = mask.astype(bool)
        if concrete:
            bad = np.asarray(mask) & ~np.isfinite(np.asarray(ys))
            if bad.any():
                i = tuple(int(k) for k in np.argwhere(bad)[0])
                raise ValueError(f"Dataset: ys is not finite at observed entry (traj, time, state) = {i}"
                                 "; mark it unobserved in mask")
        ys = jnp.where(mask, ys, jnp.zeros((), ys.dtype))
        if y_true is not None:
            y_true = jnp.asarray(y_true)
            if y_true.ndim == 2:
                y_true = y_true[None]
            if y_true.shape != ys.shape:
                raise ValueError(f"Dataset: y_true must have the shape of ys {ys.shape}, "
                                 f"got {y_true.shape}")
        n_state = ys.shape[2]
        if state_names is None:
            state_names = tuple(f"s{i}" for i in range(n_state))
        if isinstance(state_names, str):
            raise ValueError(f"Dataset: state_names must be a sequence of names, got {state_names!r}")
        state_names = tuple(str(s) for s in state_names)
        if len(state_names) != n_state:
            raise ValueError(f"Dataset: state_names {state_names} has {len(state_names)} names for "
                             f"{n_state} states")
        if len(set(state_names)) != len(state_names):
            raise ValueError(f"Dataset: state_names must be unique, got {state_names}")
        self.ts = ts
        self.ys = ys
        self.mask = mask
        self.y_true = y_true
        self.state_names = state_names
        self._provenance_spec, self._provenance_values = _split_provenance(provenance)

    # ---- shapes --------------------------------------------------------------------------------
    @property
    def n_traj(self) -> int:
        return self.ys.shape[0]

    @property
    def n_times(self) -> int:
        return self.ys.shape[1]

    @property
    def n_states(self) -> int:
        return self.ys.shape[2]

    @property
    def provenance(self) -> dict:
        """Where the data came from (system, parameters, noise, seed, ...), as a fresh dict."""
        return _join_provenance(self._provenance_spec, self._provenance_values)

    def state_index(self, name: str) -> int:
        if name not in self.state_names:
            raise ValueError(f"state {name!r} is not one of {list(self.state_names)}")
        return self.state_names.index(name)

    def observed_states(self) -> tuple[str, ...]:
        """Names of the states observed at least once (in any trajectory)."""
        seen = np.asarray(self.mask).any(axis=(0, 1))
        return tuple(n for n, s in zip(self.state_names, seen) if s)

    def n_observed(self) -> int:
        """Number of observed values (the count a sum-of-squares loss runs over)."""
        return int(np.asarray(self.mask).sum())

    # ---- new datasets --------------------------------------------------------------------------
    def _replace(self, *, ts=None, ys=None, mask=None, y_true=None, **prov) -> "Dataset":
        """A copy with some arrays replaced and ``prov`` added to the provenance."""
        return Dataset(self.ts if ts is None else ts, self.ys if ys is None else ys,
                       self.mask if mask is None else mask, state_names=self.state_names,
                       y_true=self.y_true if y_true is None else y_true,
                       provenance={**self.provenance, **prov})

    def _select_times(self, keep: np.ndarray, what: str, **prov) -> "Dataset":
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise ValueError(f"{what}: no save times selected (data spans "
                             f"[{float(self.ts[0])}, {float(self.ts[-1])}])")
        return self._replace(ts=self.ts[idx], ys=self.ys[:, idx], mask=self.mask[:, idx],
                             y_true=None if self.y_true is None else self.y_true[:, idx], **prov)

    def window(self, t0: float, t1: float) -> "Dataset":
        """The data at save times ``t0 <= t <= t1`` (both ends included)."""
        if not t1 >= t0:
            raise ValueError(f"window: need t0 <= t1, got t0={t0}, t1={t1}")
        t = np.asarray(self.ts)
        tol = _time_tol(t)
        return self._select_times((t >= t0 - tol) & (t <= t1 + tol), "window",
                                  window=[float(t0), float(t1)])

    def split(self, t_train_end: float) -> tuple["Dataset", "Dataset"]:
        """``(train, held_out)``: times ``<= t_train_end`` and times after it (for extrapolation)."""
        t = np.asarray(self.ts)
        tol = _time_tol(t)
        train = t <= t_train_end + tol
        if train.all() or not train.any():
            raise ValueError(f"split: t_train_end={t_train_end} leaves one side empty (data spans "
                             f"[{t[0]}, {t[-1]}])")
        return (self._select_times(train, "split", split="train", t_train_end=float(t_train_end)),
                self._select_times(~train, "split", split="held_out",
                                   t_train_end=float(t_train_end)))

    def with_mask(self, observe) -> "Dataset":
        """A copy observed only where ``observe`` says (and where it was observed before).

        ``observe`` takes the forms of :func:`observation_mask`, e.g. ``{"y": [0, 1.2, 2.4]}`` or
        ``{"y": "none"}``; states it does not name keep their mask. Masks only remove observations:
        values that were never observed cannot be brought back.
        """
        new = observation_mask(self.ts, self.state_names, observe, self.n_traj)
        mask = np.asarray(self.mask) & new
        return self._replace(mask=jnp.asarray(mask), observe=_describe_observe(observe))

    def trajectories(self, idx) -> "Dataset":
        """The trajectories ``idx`` (an int, slice or index list) as a dataset."""
        sel = np.arange(self.n_traj)[idx]
        sel = np.atleast_1d(sel)
        if sel.size == 0:
            raise ValueError(f"trajectories: {idx!r} selects no trajectory of {self.n_traj}")
        return self._replace(ys=self.ys[sel], mask=self.mask[sel],
                             y_true=None if self.y_true is None else self.y_true[sel],
                             trajectories=[int(i) for i in sel])


# ------------------------------------------------------------------------------------------------
# noise models
# ------------------------------------------------------------------------------------------------
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
        raise ValueError(f"{cls}: {name} must be a scalar or one value per state, got shape "
                         f"{level.shape}")
    if _concrete(value):
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
        return ys * jnp.exp(self.sigma.astype(ys.dtype) * jax.random.normal(key, ys.shape, ys.dtype))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "sigma": _level_json(self.sigma)}


NOISES: dict[str, type[AbstractNoise]] = {
    cls.kind: cls for cls in (NoNoise, GaussianNoise, RelativeMeanNoise, LogNormalNoise)}


def noise_from_dict(d: Mapping[str, Any]) -> AbstractNoise:
    """Inverse of ``noise.to_dict()``: ``{"kind": "relative_mean", "level": 0.05}`` → noise.

    Fields set to None are ignored, so a config section's full dump can be passed as is."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise ValueError(f"noise: expected a dict with a 'kind' key, got {d!r}")
    kind = d["kind"]
    if kind not in NOISES:
        raise ValueError(f"noise.kind: unknown noise {kind!r}; choose from {sorted(NOISES)}")
    args = {k: v for k, v in d.items() if k != "kind" and v is not None}  # None: field not set
    cls = NOISES[kind]
    expected = {"none": set(), "gaussian": {"sigma"}, "relative_mean": {"level"},
                "lognormal": {"sigma"}}[kind]
    if set(args) != expected:
        raise ValueError(f"noise: {kind!r} takes {sorted(expected) or 'no fields'}, got {sorted(args)}")
    return cls(**args)


# ------------------------------------------------------------------------------------------------
# observation masks
# ------------------------------------------------------------------------------------------------
def _describe_observe(observe):
    if observe is None:
        return "all"
    if isinstance(observe, Mapping):
        out = {}
        for k, v in observe.items():
            if isinstance(v, str):
                out[str(k)] = v
            elif np.asarray(v).dtype == bool:
                out[str(k)] = "mask"
            else:
                out[str(k)] = [float(t) for t in np.asarray(v, dtype=np.float64).reshape(-1)]
        return out
    return "mask"


def observation_mask(ts, state_names: Sequence[str], observe, n_traj: int = 1) -> np.ndarray:
    """A ``(traj, times, state)`` bool mask from a readable description.

    ``observe`` is one of

    * ``None``: everything observed;
    * a bool array of shape ``(times, state)`` or ``(traj, times, state)``;
    * a dict ``state name -> spec`` (unnamed states are fully observed) where spec is ``"all"``,
      ``"none"``, a list of save times (each must be one of ``ts``), or a bool array of shape
      ``(times,)`` or ``(traj, times)``.

    The UDE paper's scenario 2 (x at 61 points on [0, 6], y at six of them)::

        observation_mask(jnp.linspace(0, 6, 61), ("x", "y"), {"y": [0, 1.2, 2.4, 3.6, 4.8, 6]})
    """
    t = np.asarray(ts, dtype=np.float64)
    names = tuple(state_names)
    shape = (n_traj, t.size, len(names))
    if observe is None:
        return np.ones(shape, bool)
    if not isinstance(observe, Mapping):
        m = np.asarray(observe)
        if m.dtype != bool:
            raise ValueError(f"observe: a mask array must be boolean, got dtype {m.dtype}")
        if m.shape == shape[1:]:
            return np.broadcast_to(m[None], shape).copy()
        if m.shape == shape:
            return m.copy()
        raise ValueError(f"observe: mask must have shape {shape[1:]} or {shape}, got {m.shape}")
    mask = np.ones(shape, bool)
    tol = _time_tol(t)
    for name, spec in observe.items():
        if name not in names:
            raise ValueError(f"observe: unknown state {name!r}; states are {list(names)}")
        j = names.index(name)
        where = f"observe[{name!r}]"
        if isinstance(spec, str):
            if spec not in ("all", "none"):
                raise ValueError(f"{where}: expected 'all', 'none', times or a bool mask, got {spec!r}")
            mask[:, :, j] = spec == "all"
            continue
        a = np.asarray(spec)
        if a.dtype == bool:
            if a.shape == (t.size,):
                mask[:, :, j] = a[None]
            elif a.shape == (n_traj, t.size):
                mask[:, :, j] = a
            else:
                raise ValueError(f"{where}: a bool mask must have shape ({t.size},) or "
                                 f"({n_traj}, {t.size}), got {a.shape}")
            continue
        try:
            times = a.astype(np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected 'all', 'none', a list of times or a bool mask, "
                             f"got {spec!r}") from None
        col = np.zeros(t.size, bool)
        for s in times:
            hit = np.flatnonzero(np.abs(t - s) <= tol)
            if hit.size == 0:
                raise ValueError(f"{where}: time {s} is not one of the save times "
                                 f"(ts spans [{t[0]}, {t[-1]}] with {t.size} points)")
            col[hit[0]] = True
        mask[:, :, j] = col[None]
    return mask


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------
def _x64_enabled() -> bool:
    return jnp.asarray(1.0).dtype == jnp.float64


@eqx.filter_jit
def _truth_solve(truth, y0, ts, t0, args, rtol, atol, max_steps):
    # Steps land on every save time: Dopri8's dense output between steps is far less accurate
    # (~1e-9 at rtol 1e-12) than its step ends (~1e-13).
    controller = diffrax.ClipStepSizeController(diffrax.PIDController(rtol=rtol, atol=atol),
                                                step_ts=ts)

    def one(y):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(truth), diffrax.Dopri8(), t0=t0, t1=ts[-1], dt0=None, y0=y, args=args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=max_steps, throw=False)
        return sol.ys, sol.result

    return jax.vmap(one)(y0)


def _key_and_seed(key):
    if key is None:
        return None, None
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key)), int(key)
    k = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
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


def simulate(truth, y0, ts, *, noise: AbstractNoise | None = None, key=None, observe=None,
             state_names: Sequence[str] | None = None, args=None, t0: float | None = None,
             rtol: float = 1e-12, atol: float = 1e-12, max_steps: int = 100_000) -> Dataset:
    """Ground truth of ``truth`` from ``y0`` at ``ts``, plus noise and an observation mask.

    Args:
        truth: a vector field ``(t, y, args) -> dy/dt`` (e.g. a physics module). Its arrays are cast
            to float64.
        y0: ``(state,)`` or ``(traj, state)`` initial states at ``t0``.
        ts: ``(times,)`` strictly increasing save times (irregular spacing is fine).
        noise: a noise model (default :class:`NoNoise`); applied to the full truth before masking.
        key: an int seed or a jax PRNG key (required unless the noise is :class:`NoNoise`).
        observe: which values are observed, see :func:`observation_mask`.
        state_names: default ``truth.state_names`` if it has them.
        t0: start time of the solve (default ``ts[0]``).
        rtol, atol, max_steps: the truth solver's settings (Dopri8, adaptive steps).

    Raises ``RuntimeError`` unless float64 is enabled (``jax.config.update("jax_enable_x64", True)``
    at program start) and ``ValueError`` if the truth solve fails (divergence, ``max_steps``).
    """
    if not _x64_enabled():
        raise RuntimeError("simulate: the ground truth is solved in float64, but jax_enable_x64 is "
                           "off; call jax.config.update('jax_enable_x64', True) at the start of your "
                           "program (or set JAX_ENABLE_X64=1)")
    noise = NoNoise() if noise is None else noise
    if not isinstance(noise, AbstractNoise):
        raise ValueError(f"simulate: noise must be a noise model such as RelativeMeanNoise(0.05), "
                         f"got {noise!r}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"simulate: max_steps must be a positive integer, got {max_steps!r}")
    ts = np.asarray(ts, dtype=np.float64)
    _check_times(ts, "simulate: ts")
    y0 = np.asarray(y0, dtype=np.float64)
    if y0.ndim not in (1, 2) or y0.shape[-1] == 0:
        raise ValueError(f"simulate: y0 must have shape (state,) or (traj, state), got {y0.shape}")
    if not np.all(np.isfinite(y0)):
        raise ValueError(f"simulate: y0 must be finite, got {y0.tolist()}")
    y0_2d = y0 if y0.ndim == 2 else y0[None]
    t_start = float(ts[0]) if t0 is None else float(t0)
    if t_start > ts[0]:
        raise ValueError(f"simulate: t0={t_start} is after the first save time {ts[0]}")
    if state_names is None:
        state_names = getattr(truth, "state_names", None)
    if state_names is not None and len(tuple(state_names)) != y0_2d.shape[1]:
        raise ValueError(f"simulate: y0 has {y0_2d.shape[1]} states but state_names is "
                         f"{tuple(state_names)}")
    prng, seed = _key_and_seed(key)
    if prng is None and not isinstance(noise, NoNoise):
        raise ValueError("simulate: key is required to draw noise (an int seed or a jax PRNG key)")

    truth64 = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, truth)
    ys, result = _truth_solve(truth64, jnp.asarray(y0_2d), jnp.asarray(ts), jnp.float64(t_start),
                                 args, jnp.float64(rtol), jnp.float64(atol), max_steps)
    ok = np.asarray(result == diffrax.RESULTS.successful)
    y_true = np.asarray(ys)
    finite = np.all(np.isfinite(y_true), axis=(1, 2))
    if not (ok.all() and finite.all()):
        i = int(np.argmin(ok & finite))
        why = (str(diffrax.RESULTS[jax.tree_util.tree_map(lambda r: r[i], result)])
               if not ok[i] else "the solution is not finite")
        raise ValueError(f"simulate: the ground-truth solve of {type(truth).__name__} failed for "
                         f"trajectory {i} (y0 = {y0_2d[i].tolist()}, t in [{t_start}, {ts[-1]}]): "
                         f"{why} (max_steps={max_steps}); the system may diverge, or raise max_steps")
    if isinstance(noise, LogNormalNoise) and np.any(y_true <= 0):
        raise ValueError("simulate: LogNormalNoise is multiplicative and needs positive data, but "
                         f"the truth reaches {float(y_true.min())}")
    mask = observation_mask(ts, state_names or [f"s{i}" for i in range(y0_2d.shape[1])], observe,
                            y0_2d.shape[0])
    noisy = noise.apply(jnp.asarray(y_true), prng)
    provenance = {
        "source": "simulate", **_describe_truth(truth), "y0": y0_2d, "t0": t_start,
        "noise": noise.to_dict(), "seed": seed, "observe": _describe_observe(observe),
        "truth_solver": {"solver": "dopri8", "rtol": float(rtol), "atol": float(atol),
                         "max_steps": max_steps},
    }
    return Dataset(ts, noisy, mask, state_names=state_names, y_true=y_true, provenance=provenance)


# ------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------
def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _arrays(d: Dataset) -> dict[str, np.ndarray]:
    out = {"ts": np.asarray(d.ts), "ys": np.asarray(d.ys), "mask": np.asarray(d.mask)}
    if d.y_true is not None:
        out["y_true"] = np.asarray(d.y_true)
    return out


def save(dataset: Dataset, path) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (arrays) and ``<path>.json`` (names, shapes, dtypes, provenance and the
    npz's sha256). Each file is written to a temporary name and renamed into place. Returns both
    paths."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"save: expected a Dataset, got {type(dataset).__name__}")
    npz_path, json_path = _paths(path)
    arrays = _arrays(dataset)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    sidecar = {
        "format": FORMAT, "version": FORMAT_VERSION, "npz": npz_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
        "state_names": list(dataset.state_names),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
        "provenance": dataset.provenance,
    }
    _atomic_write(npz_path, blob)
    _atomic_write(json_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return npz_path, json_path


def load(path) -> Dataset:
    """Read a dataset written by :func:`save`, refusing anything inconsistent.

    Raises ``ValueError`` naming the file when the sidecar or npz is missing or unreadable, the npz
    is truncated or its sha256 differs, arrays are missing or have wrong shapes or dtypes, or the
    times are not finite and strictly increasing.
    """
    npz_path, json_path = _paths(path)
    if not json_path.is_file():
        raise ValueError(f"load: sidecar {json_path} is missing (it holds the checksum and "
                         f"provenance of {npz_path.name}); write datasets with ude.data.save")
    if not npz_path.is_file():
        raise ValueError(f"load: data file {npz_path} is missing (sidecar {json_path.name} exists)")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load: sidecar {json_path} is not readable JSON: {e}") from None
    need = ("format", "sha256", "bytes", "state_names", "shapes", "dtypes", "provenance")
    if not isinstance(meta, dict) or any(k not in meta for k in need):
        missing = [k for k in need if not isinstance(meta, dict) or k not in meta]
        raise ValueError(f"load: sidecar {json_path} lacks {missing}; not a ude dataset sidecar")
    if meta["format"] != FORMAT:
        raise ValueError(f"load: sidecar {json_path} has format {meta['format']!r}, "
                         f"expected {FORMAT!r}")
    blob = npz_path.read_bytes()
    if len(blob) < meta["bytes"]:
        raise ValueError(f"load: {npz_path} is truncated: {len(blob)} of {meta['bytes']} bytes")
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != meta["bytes"] or digest != meta["sha256"]:
        raise ValueError(f"load: {npz_path} does not match its sidecar {json_path.name} (sha256 "
                         f"{digest[:12]}…, {len(blob)} bytes; expected {str(meta['sha256'])[:12]}…, "
                         f"{meta['bytes']} bytes): the file was modified or corrupted")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"load: {npz_path} is not a readable npz archive: {e}") from None

    def bad(msg):
        return ValueError(f"load: {npz_path}: {msg}")

    required = ["ts", "ys", "mask"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise bad(f"arrays {missing} are missing (has {sorted(arrays)})")
    extra = sorted(set(arrays) - {"ts", "ys", "mask", "y_true"})
    if extra:
        raise bad(f"unexpected arrays {extra}")
    if set(meta["shapes"]) != set(arrays):
        raise bad(f"holds arrays {sorted(arrays)} but the sidecar lists {sorted(meta['shapes'])}")
    for k, a in arrays.items():
        if list(a.shape) != list(meta["shapes"][k]):
            raise bad(f"{k} has shape {a.shape}, the sidecar says {tuple(meta['shapes'][k])}")
        if str(a.dtype) != meta["dtypes"].get(k):
            raise bad(f"{k} has dtype {a.dtype}, the sidecar says {meta['dtypes'].get(k)}")
        want_bool = k == "mask"
        if want_bool and a.dtype != bool:
            raise bad(f"mask must be boolean, got dtype {a.dtype}")
        if not want_bool and not np.issubdtype(a.dtype, np.floating):
            raise bad(f"{k} must be floating point, got dtype {a.dtype}")
    ts, ys = arrays["ts"], arrays["ys"]
    if ts.ndim != 1:
        raise bad(f"ts must be 1-D, got shape {ts.shape}")
    if ys.ndim != 3 or ys.shape[1] != ts.shape[0]:
        raise bad(f"ys must have shape (traj, {ts.shape[0]}, state), got {ys.shape}")
    for k in ("mask", "y_true"):
        if k in arrays and arrays[k].shape != ys.shape:
            raise bad(f"{k} must have the shape of ys {ys.shape}, got {arrays[k].shape}")
    if len(meta["state_names"]) != ys.shape[2]:
        raise bad(f"{len(meta['state_names'])} state names for {ys.shape[2]} states")
    try:
        _check_times(ts, "ts")
        return Dataset(ts, ys, arrays["mask"], state_names=meta["state_names"],
                       y_true=arrays.get("y_true"), provenance=meta["provenance"])
    except ValueError as e:
        raise bad(str(e)) from None


# ------------------------------------------------------------------------------------------------
# real tables
# ------------------------------------------------------------------------------------------------
_MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}


def _delimiter(path: Path, header_line: str, delimiter):
    if delimiter is not None:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    return "\t" if "\t" in header_line else ","


def _cells(line: str, delim: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line], delimiter=delim))]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_table(path, *, time: str, states: Sequence[str], normalize: str | None = None,
               t_offset: float | str = 0.0, names: Sequence[str] | None = None,
               delimiter: str | None = None) -> Dataset:
    """One trajectory from a TSV/CSV table with named columns.

    The header is the first line that is not blank or a ``#`` comment; a file whose first such line
    is already numeric may name its columns in a ``# columns: a<TAB>b`` comment instead (a literal
    ``<TAB>`` there stands for a tab). Empty
    cells and ``NA``/``nan`` in state columns are unobserved (masked); anything else must be a
    number.

    Args:
        path: the table (``.tsv`` tab-separated, ``.csv`` comma-separated, else guessed).
        time: the time column; times must be strictly increasing.
        states: the state columns, in state order.
        normalize: ``"max"`` divides each series by its largest observed value; None keeps it.
        t_offset: subtracted from the times (``"first"``: the first time, so t starts at 0).
        names: state names of the dataset (default: the column names).
        delimiter: override the delimiter.
    """
    path = Path(path)
    where = f"load_table: {path}"
    if not path.is_file():
        raise ValueError(f"{where}: file not found")
    if normalize not in (None, "max"):
        raise ValueError(f"load_table: normalize must be 'max' or None, got {normalize!r}")
    states = [states] if isinstance(states, str) else list(states)
    if not states:
        raise ValueError("load_table: states must name at least one column")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: cannot read the file as UTF-8 text: {e}") from None
    lines = [(i + 1, line.rstrip("\r\n")) for i, line in enumerate(text.splitlines())]
    comments = [line for _, line in lines if line.lstrip().startswith("#")]
    body = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise ValueError(f"{where}: the file has no header or data rows")
    delim = _delimiter(path, body[0][1], delimiter)
    first = _cells(body[0][1], delim)
    if all(_is_number(c) for c in first):
        declared = [c for c in comments if c.lstrip("# \t").lower().startswith("columns:")]
        if not declared:
            raise ValueError(f"{where}: no header line (line {body[0][0]} is numeric) and no "
                             "'# columns:' comment naming the columns")
        spec = declared[-1].lstrip("# \t")[len("columns:"):].strip()
        header = _cells(spec.replace("<TAB>", "\t"), delim)  # "<TAB>" spelled out in a comment
        rows = body
    else:
        header, rows = first, body[1:]
    if len(set(header)) != len(header):
        raise ValueError(f"{where}: duplicate column names in the header {header}")
    wanted = [time, *states]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{where}: column(s) {missing} not found; the columns are {header}")
    if not rows:
        raise ValueError(f"{where}: the file has a header but no data rows")
    cols = [header.index(c) for c in wanted]
    table = np.full((len(rows), len(wanted)), np.nan)
    for r, (lineno, line) in enumerate(rows):
        cells = _cells(line, delim)
        if len(cells) != len(header):
            raise ValueError(f"{where}: line {lineno} has {len(cells)} cells, the header has "
                             f"{len(header)}")
        for j, c in enumerate(cols):
            cell = cells[c]
            if j > 0 and cell.lower() in _MISSING:
                continue
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{where}: line {lineno}, column {wanted[j]!r}: {cell!r} is not a "
                                 "number") from None
            if not math.isfinite(v):
                raise ValueError(f"{where}: line {lineno}, column {wanted[j]!r}: {cell!r} is not "
                                 "finite")
            table[r, j] = v
    t = table[:, 0]
    if t_offset == "first":
        t_offset = float(t[0])
    elif isinstance(t_offset, str) or not math.isfinite(float(t_offset)):
        raise ValueError(f"load_table: t_offset must be a number or 'first', got {t_offset!r}")
    ts = t - float(t_offset)
    try:
        _check_times(t, f"column {time!r}")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    ys = table[:, 1:]
    mask = np.isfinite(ys)
    scale = np.ones(len(states))
    if normalize == "max":
        for j, s in enumerate(states):
            obs = ys[mask[:, j], j]
            if obs.size == 0 or not obs.max() > 0:
                raise ValueError(f"{where}: cannot normalise column {s!r} by its max (max "
                                 f"{obs.max() if obs.size else 'undefined'}; needs a positive value)")
            scale[j] = obs.max()
        ys = ys / scale
    names = tuple(states) if names is None else tuple(names)
    if len(names) != len(states):
        raise ValueError(f"load_table: names {names} must give one name per state column {states}")
    provenance = {"source": "table", "file": path.name, "sha256": hashlib.sha256(raw).hexdigest(),
                  "time": time, "states": states, "normalize": normalize,
                  "scale": scale, "t_offset": float(t_offset)}
    return Dataset(ts, np.where(mask, ys, 0.0)[None], mask[None], state_names=names,
                   provenance=provenance)


def hudson_bay(path=None, normalize: bool = True, names: Sequence[str] = ("hare", "lynx")) -> Dataset:
    """The Hudson Bay hare (prey) and lynx (predator) pelts, 1900–1920: 21 yearly points.

    As in the UDE paper: ``t = year − 1900`` and, with ``normalize``, each series divided by its
    maximum. ``path`` defaults to the repository's ``data/hudson_bay.tsv``. Pass
    ``names=("x", "y")`` to match :class:`~ude.physics.LotkaVolterra`'s state names.
    """
    p = HUDSON_BAY_PATH if path is None else Path(path)
    if not p.is_file():
        raise ValueError(f"hudson_bay: data file {p} not found; it ships in the repository's data/ "
                         "folder (not in an installed wheel); pass path= to a copy")
    d = load_table(p, time="year", states=("hare", "lynx"), normalize="max" if normalize else None,
                   t_offset=1900.0, names=names)
    return d._replace(name="hudson_bay")
