"""Training strategies: how a model is compared with data.

A strategy is an equinox Module with

* ``init(model, data, key) -> extra``: extra trainable arrays it needs (:class:`SegmentStarts`,
  :class:`LearnedInitialStates`) or ``None``;
* ``loss(model, extra, data, key) -> (loss, ok)``: the training objective (``ok`` is False when a
  solve failed) — pure, jittable, vectorised over trajectories and segments;
* ``full_loss(model, extra, data) -> loss``: the deterministic loss on all the data (what the
  history and reports show; equal to ``loss`` except for random minibatches).

All of them solve through :func:`ude.solve.solve`, so solver, tolerances and adjoint are options.
A dataset of experiments (each with its own save times, initial state and inputs) is one batch:
every solve is vmapped over the experiments, each reading its own inputs as ``args``, so the loss
over all experiments is one compiled program. Its data term is the sum of the experiments' own
(``reduction="sse"``) or their mean weighted by observation counts (``"mse"``); an ``l2`` penalty
is counted once, not once per experiment.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._types import Array, Float
from ..solve import SolverOptions, solve, solve_data
from .losses import REDUCTIONS, l2_penalty, squared_error


def _as_array(x):
    """Numbers become arrays so that changing them never recompiles."""
    return x if x is None else jnp.asarray(x, float)


def _as_l2(x):
    """The penalty weight as an array (changing it never recompiles); 0 becomes None, which leaves
    the penalty (a reduction, and a term in every weight's gradient) out of the program."""
    if x is None or (not isinstance(x, jax.core.Tracer) and np.ndim(x) == 0 and float(x) == 0.0):
        return None
    return jnp.asarray(x, float)


class AbstractStrategy(eqx.Module):
    # whether ``loss`` draws from its key (the fit loop splits keys only for those that do)
    stochastic: ClassVar[bool] = False
    options: eqx.AbstractVar[SolverOptions]
    reduction: eqx.AbstractVar[str]
    l2: eqx.AbstractVar[Array | None]
    weights: eqx.AbstractVar[Array | None]

    def init(self, model, data, key=None):
        return None

    @abc.abstractmethod
    def loss(self, model, extra, data, key=None): ...

    def full_loss(self, model, extra, data):
        return self.loss(model, extra, data, None)[0]

    def _penalty(self, model):
        return 0.0 if self.l2 is None else l2_penalty(model, self.l2)

    def _err(self, pred, data_ys, mask):
        return squared_error(pred, data_ys, mask, self.weights, self.reduction)


def _check_common(name, reduction, l2):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: loss must be one of {REDUCTIONS}, got {reduction!r}")
    if l2 is not None and not isinstance(l2, jax.core.Tracer) and not np.all(np.asarray(l2) >= 0):
        raise ValueError(f"{name}: l2 must be >= 0, got {l2!r}")


def _observed_mean(data):
    """Per (trajectory, state) mean of the observed values (a fallback for unobserved starts)."""
    m = data.mask.astype(data.ys.dtype)
    return jnp.sum(data.ys * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def initial_states(data):
    """Starting states from the data: the first sample where observed, else that state's mean."""
    first = data.ys[:, 0, :]
    return jnp.where(data.mask[:, 0, :], first, _observed_mean(data))


class LearnedInitialStates(eqx.Module):
    """The initial states a strategy learns with the model (``SingleShooting(learn_y0=...)``).

    ``y0``: ``(traj, state)`` (an ensemble's stacked ones: ``(members, traj, state)``).
    """

    y0: Float[Array, "*members traj state"]


class SegmentStarts(eqx.Module):
    """Multiple shooting's trainable starting states, one per segment of every trajectory.

    ``starts``: ``(traj, segments, state)`` (stacked: ``(members, traj, segments, state)``).
    """

    starts: Float[Array, "*members traj segments state"]


def _typed(extra):
    """Extra parameters as the typed modules; the ``{"y0": ...}`` / ``{"starts": ...}`` dicts of
    earlier versions (saved runs, callers not yet switched) are read as the same."""
    if isinstance(extra, dict) and "y0" in extra:
        return LearnedInitialStates(y0=jnp.asarray(extra["y0"]))
    if isinstance(extra, dict) and "starts" in extra:
        return SegmentStarts(starts=jnp.asarray(extra["starts"]))
    return extra


def fitted_initial_states(data, extra) -> Float[Array, "traj state"]:
    """The initial states a fitted model starts from (for prediction, evaluation, discovery).

    Args:
        data: the training :class:`ude.data.Dataset` (``ys``, ``mask``: ``(traj, times, state)``).
        extra: a fit's extra parameters (``FitResult.extra``).

    Returns ``(traj, state)``: the learned ones (:class:`LearnedInitialStates`); for
    :class:`SegmentStarts` the first sample where observed, else the first segment's learned start
    (what ``MultipleShooting.full_loss`` solves from); otherwise :func:`initial_states`.
    """
    extra = _typed(extra)
    if isinstance(extra, LearnedInitialStates):
        return jnp.asarray(extra.y0)
    if isinstance(extra, SegmentStarts):
        return jnp.where(data.mask[:, 0, :], data.ys[:, 0, :], extra.starts[:, 0, :])
    return initial_states(data)


class SingleShooting(AbstractStrategy):
    """Solve each trajectory from its start over the whole window and compare at every sample.

    Args:
        options: solver options. loss: ``"sse"`` (the paper's) or ``"mse"``.
        l2: weight of the ``‖θ‖²/|θ|`` penalty on network weights (the paper's noise sweep: 1e-4).
        weights: per-state weights of the squared errors.
        learn_y0: ``"auto"`` learns the initial state when some state is unobserved at the first
            time (scenario 2), ``True``/``False`` force it. Otherwise the first *noisy* sample is
            the initial state, as in the paper.
    """

    options: SolverOptions = eqx.field(default_factory=SolverOptions)
    reduction: str = eqx.field(static=True, default="sse")
    l2: Array | None = eqx.field(default=None, converter=_as_l2)
    weights: Array | None = eqx.field(default=None, converter=_as_array)
    learn_y0: bool | str = eqx.field(static=True, default="auto")

    def __check_init__(self):
        _check_common("SingleShooting", self.reduction, self.l2)

    def _learns_y0(self, data) -> bool:
        if self.learn_y0 == "auto":
            return not bool(np.all(np.asarray(data.mask[:, 0, :])))
        return bool(self.learn_y0)

    def init(self, model, data, key=None):
        return LearnedInitialStates(y0=initial_states(data)) if self._learns_y0(data) else None

    def predict(self, model, extra, data):
        extra = _typed(extra)
        y0 = extra.y0 if isinstance(extra, LearnedInitialStates) else initial_states(data)
        return solve_data(model, y0, data, self.options)

    def loss(self, model, extra, data, key=None):
        sol = self.predict(model, extra, data)
        return self._err(sol.ys, data.ys, data.mask) + self._penalty(model), jnp.all(sol.ok)


def segment_bounds(n_times: int, segments: int) -> np.ndarray:
    """Start indices of ``segments`` near-equal segments over ``n_times`` points (plus the end)."""
    if segments < 1 or segments > n_times - 1:
        raise ValueError(
            f"segments must be in [1, {n_times - 1}] for {n_times} time points, got {segments}"
        )
    return _rounded_bounds(np, np.asarray(n_times), segments)


def _rounded_bounds(xp, n_times, segments: int):
    """``round(k (n_times - 1) / segments)`` for ``k = 0..segments``, ties to even, in exact
    integer arithmetic (``xp`` is numpy or jax.numpy; ``n_times`` may be an array of them, then
    the bounds have a leading axis)."""
    k = xp.arange(segments + 1)
    num = k * (xp.asarray(n_times)[..., None] - 1)
    q, r = num // segments, num % segments
    up = (2 * r > segments) | ((2 * r == segments) & (q % 2 == 1))
    return (q + up).astype(int) if xp is np else (q + up).astype(jnp.int32)


class MultipleShooting(AbstractStrategy):
    """Split the window into segments, each solved from its own (trainable) starting state.

    The starting states are extra parameters initialised from the data where observed and from the
    initial model's own trajectory elsewhere; ``continuity`` weighs the squared mismatch between a
    segment's end and the next segment's start. This keeps every solve short, so a poor early model
    cannot drift off, and it works when some states are never observed.

    Args:
        segments: number of segments. continuity: weight of the continuity penalty.
        fix_observed: keep segment starts equal to the data where observed (only unobserved
            components learn). Default False: all starts learn, regularised by the data term.
    """

    options: SolverOptions = eqx.field(default_factory=SolverOptions)
    segments: int = eqx.field(static=True, default=5)
    continuity: Array = eqx.field(default=1.0, converter=_as_array)
    reduction: str = eqx.field(static=True, default="sse")
    l2: Array | None = eqx.field(default=None, converter=_as_l2)
    weights: Array | None = eqx.field(default=None, converter=_as_array)
    fix_observed: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        _check_common("MultipleShooting", self.reduction, self.l2)
        if not isinstance(self.segments, int) or self.segments < 1:
            raise ValueError(
                f"MultipleShooting: segments must be a positive integer, got {self.segments!r}"
            )

    def _check_segments(self, data):
        """Every experiment must have room for ``segments`` segments (concrete data only: inside
        ``jit`` the lengths are traced)."""
        lengths = data._lengths
        if lengths is not None and isinstance(lengths, jax.core.Tracer):
            return
        for i, n in enumerate(data.lengths):
            try:
                segment_bounds(n, self.segments)
            except ValueError as e:
                raise ValueError(f"MultipleShooting: trajectory {i}: {e}") from None

    def _layout(self, data):
        """``(bounds (traj, S+1), idx (traj, S, L), valid (traj, S, L))``: every experiment is cut
        into ``segments`` near-equal pieces of its own length, each padded to ``L`` samples (its
        own end repeated, marked not valid). The bounds are computed from the lengths as arrays,
        and ``L`` bounds the longest segment of any length up to the padded one, so experiments
        of new lengths reuse the compiled program."""
        if not data.per_experiment_times:  # shared times: one exact layout (concrete)
            b = segment_bounds(data.n_times, self.segments)
            length = int(np.max(np.diff(b))) + 1
            bounds = jnp.asarray(np.broadcast_to(b, (data.n_traj, b.size)))
        else:
            bounds = _rounded_bounds(jnp, data.length_array, self.segments)
            # round(a) - round(b) <= ceil(a - b) for a segment of (n - 1) / S samples
            length = -(-(data.n_times - 1) // self.segments) + 1
        offs = jnp.arange(length)
        first, last = bounds[:, :-1, None], bounds[:, 1:, None]
        idx = jnp.minimum(first + offs, last)
        valid = first + offs <= last
        return bounds, idx, valid

    def init(self, model, data, key=None):
        self._check_segments(data)
        bounds, _, _ = self._layout(data)
        starts = bounds[:, :-1]  # (traj, segments)
        rows = np.arange(data.n_traj)[:, None]
        y0 = initial_states(data)
        guess = solve_data(model, y0, data, self.options).ys  # (traj, times, state)
        guess = jnp.where(jnp.isfinite(guess), guess, y0[:, None, :])
        obs = data.mask[rows, starts, :]
        return SegmentStarts(
            starts=jnp.where(obs, data.ys[rows, starts, :], guess[rows, starts, :])
        )

    def _segments(self, model, extra, data):
        self._check_segments(data)
        bounds, idx, valid = self._layout(data)
        rows = np.arange(data.n_traj)[:, None]
        starts = _typed(extra).starts
        if self.fix_observed:
            s = bounds[:, :-1]
            starts = jnp.where(data.mask[rows, s, :], data.ys[rows, s, :], starts)
        if data.per_experiment_times:
            seg_ts, t_axis = data.ts[rows[:, :, None], idx], 0  # (traj, segments, length)
        else:  # shared times: one (segments, length) grid for every trajectory
            seg_ts, t_axis = data.ts[idx[0]], None
        # padded entries repeat the segment's end time
        a_axis = None if data.inputs is None else 0

        def per_traj(y0s, ts, args):  # over segments
            return jax.vmap(lambda y0, t: solve(model, y0, t, self.options, args=args))(y0s, ts)

        sols = jax.vmap(per_traj, in_axes=(0, t_axis, a_axis))(starts, seg_ts, data.inputs)
        return sols, idx, valid, starts  # sols.ys: (traj, segments, length, state)

    def loss(self, model, extra, data, key=None):
        sols, idx, valid, starts = self._segments(model, extra, data)
        rows = np.arange(data.n_traj)[:, None, None]
        ys = data.ys[rows, idx, :]
        mask = data.mask[rows, idx, :] & jnp.asarray(valid)[..., None]
        # each interior boundary point belongs to two segments: count it once (in the later one)
        last = jnp.sum(valid, axis=2) - 1  # (traj, segments): a segment's last valid entry
        n_seg = last.shape[1]
        at_end = jnp.arange(valid.shape[2])[None, None, :] == last[:, :, None]
        interior = (np.arange(n_seg) < n_seg - 1)[None, :, None]
        mask = mask & ~(at_end & interior)[..., None]
        fit = self._err(sols.ys, ys, mask)
        ends = sols.ys[rows[:, :, 0], np.arange(n_seg)[None, :-1], last[:, :-1], :]
        gap = jnp.sum((ends - starts[:, 1:, :]) ** 2)
        return fit + self.continuity * gap + self._penalty(model), jnp.all(sols.ok)

    def full_loss(self, model, extra, data):
        """Single-shooting loss of the model from the first learned start (comparable across
        strategies)."""
        sol = solve_data(model, fitted_initial_states(data, extra), data, self.options)
        return self._err(sol.ys, data.ys, data.mask) + self._penalty(model)


class WindowMinibatch(AbstractStrategy):
    """Random time windows over all trajectories: each step draws ``batch`` windows of ``window``
    samples, solves each from the observed data at its first sample, and compares.

    Needs every state observed at window starts (windows start only at fully observed samples).
    ``full_loss`` is the single-shooting loss on all the data.
    """

    stochastic: ClassVar[bool] = True
    options: SolverOptions = eqx.field(default_factory=SolverOptions)
    window: int = eqx.field(static=True, default=10)
    batch: int = eqx.field(static=True, default=8)
    reduction: str = eqx.field(static=True, default="sse")
    l2: Array | None = eqx.field(default=None, converter=_as_l2)
    weights: Array | None = eqx.field(default=None, converter=_as_array)

    def __check_init__(self):
        _check_common("WindowMinibatch", self.reduction, self.l2)
        if not isinstance(self.window, int) or self.window < 2:
            raise ValueError(
                f"WindowMinibatch: window must be an integer >= 2, got {self.window!r}"
            )
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(
                f"WindowMinibatch: batch must be a positive integer, got {self.batch!r}"
            )

    def loss(self, model, extra, data, key=None):
        n_traj, n_times, _ = data.ys.shape
        if self.window > n_times:
            raise ValueError(f"WindowMinibatch: window={self.window} exceeds the {n_times} samples")
        if key is None:  # deterministic: every start
            return self.full_loss(model, extra, data), jnp.array(True)
        # a window starts at a fully observed sample and ends inside its own experiment
        starts_ok = jnp.all(data.mask, axis=-1)[:, : n_times - self.window + 1]  # (traj, starts)
        fits = (
            jnp.arange(n_times - self.window + 1)[None, :] + self.window
            <= data.length_array[:, None]
        )
        ok_start = starts_ok & fits
        logits = jnp.where(ok_start, 0.0, -jnp.inf).reshape(-1)
        flat = jr.categorical(key, logits, shape=(self.batch,))
        traj, start = flat // ok_start.shape[1], flat % ok_start.shape[1]
        idx = start[:, None] + jnp.arange(self.window)[None, :]
        ys = data.ys[traj[:, None], idx]
        mask = data.mask[traj[:, None], idx]
        ts = data.times[traj[:, None], idx]
        if data.inputs is None:
            sols = jax.vmap(lambda y0, t: solve(model, y0, t, self.options))(ys[:, 0], ts)
        else:
            args = jax.tree_util.tree_map(lambda x: x[traj], data.inputs)
            sols = solve(model, ys[:, 0], ts, self.options, args=args, batched_args=True)
        return self._err(sols.ys, ys, mask) + self._penalty(model), jnp.all(sols.ok)

    def full_loss(self, model, extra, data):
        sol = solve_data(model, initial_states(data), data, self.options)
        return self._err(sol.ys, data.ys, data.mask) + self._penalty(model)


def smooth_derivatives(ts, ys, mask, bandwidth=None, degree: int = 2):
    """Local-polynomial (kernel-weighted) estimates of the states and their time derivatives.

    For every save time a polynomial of ``degree`` is fitted by weighted least squares to the
    observed values of each state, with Epanechnikov weights of half-width ``bandwidth`` (default:
    ``degree + 2`` median sample spacings, the smallest window that still averages out noise).
    Returns ``(values, derivatives, valid)`` of shape ``(traj, times, state)``; ``valid`` is False
    where a window held too few observations. Pure JAX (jittable): DiffEqFlux's ``collocate_data``.
    """
    ts = jnp.asarray(ts)
    if bandwidth is None:
        bandwidth = (degree + 2) * jnp.median(jnp.diff(ts))
    dt = ts[None, :] - ts[:, None]  # (i, j): t_j - t_i
    u = dt / bandwidth
    kernel = jnp.where(jnp.abs(u) < 1, 0.75 * (1 - u**2), 0.0)
    V = dt[..., None] ** jnp.arange(degree + 1)  # (i, j, p)

    def one_series(y, m):  # (times,), (times,)
        w = kernel * m[None, :]
        A = jnp.einsum("ij,ijp,ijq->ipq", w, V, V) + 1e-12 * jnp.eye(degree + 1)
        rhs = jnp.einsum("ij,ijp,j->ip", w, V, y)
        coef = jnp.linalg.solve(A, rhs[..., None])[..., 0]
        enough = jnp.sum(w > 0, axis=1) >= degree + 1
        return coef[:, 0], coef[:, 1], enough

    per_state = jax.vmap(one_series, in_axes=(1, 1), out_axes=1)  # over states
    return jax.vmap(per_state)(ys, mask)  # over trajectories


class Collocation(AbstractStrategy):
    """Fit the vector field to smoothed data and its derivative, with no ODE solve at all:
    ``Σ ‖f(t_i, ŷ_i) − ŷ'_i‖²`` where ``ŷ, ŷ'`` come from :func:`smooth_derivatives`.

    Cheap, and free of the exploding trajectories of an untrained model, so it makes a good first
    fit (pre-training) before a shooting strategy refines through the solver. Times where some
    state has too few observations nearby are left out. ``options`` is unused (no solve).
    """

    options: SolverOptions = eqx.field(default_factory=SolverOptions)
    bandwidth: Array | None = eqx.field(default=None, converter=_as_array)
    degree: int = eqx.field(static=True, default=2)
    reduction: str = eqx.field(static=True, default="sse")
    l2: Array | None = eqx.field(default=None, converter=_as_l2)
    weights: Array | None = eqx.field(default=None, converter=_as_array)

    def __check_init__(self):
        _check_common("Collocation", self.reduction, self.l2)
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"Collocation: degree must be an integer >= 1, got {self.degree!r}")

    def loss(self, model, extra, data, key=None):
        if data.per_experiment_times:  # every experiment smoothed over its own times

            def one(t, y, m):
                bandwidth = self.bandwidth
                if bandwidth is None:  # the median spacing of the experiment's own times
                    d = jnp.diff(t)
                    spacing = jnp.nanmedian(jnp.where(d > 0, d, jnp.nan))
                    bandwidth = (self.degree + 2) * spacing
                out = smooth_derivatives(t, y[None], m[None], bandwidth, self.degree)
                return jax.tree_util.tree_map(lambda a: a[0], out)

            states, rates, valid = jax.vmap(one)(data.ts, data.ys, data.mask)
            valid = valid & data.time_mask[:, :, None]  # padding is not a time
        else:
            states, rates, valid = smooth_derivatives(
                data.ts, data.ys, data.mask, self.bandwidth, self.degree
            )
        valid = valid & jnp.all(valid, axis=-1, keepdims=True)
        over_times = jax.vmap(model, in_axes=(0, 0, None))
        t_axis = 0 if data.per_experiment_times else None
        a_axis = None if data.inputs is None else 0
        f = jax.vmap(over_times, in_axes=(t_axis, 0, a_axis))
        pred = f(data.ts, jnp.where(valid, states, 0.0), data.inputs)
        return self._err(pred, rates, valid) + self._penalty(model), jnp.array(True)
