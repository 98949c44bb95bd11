"""The :class:`Dataset` pytree: observations of trajectories (experiments) at shared or their own
save times, their mask, their inputs, the noise-free truth when known, and where they came from;
windows, splits and masks of it.

Experiments of different lengths are stored padded (see :func:`ude.data.experiments.concat`): a row
of ``ts`` repeats its last time after its own end, and the padded entries are unobserved, so every
solve, loss and regression over the dataset is one vmapped program over all experiments."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Int, UInt32

from .._types import Array, ArrayLike, Bool, Float
from .arguments import as_inputs, as_mask, as_state_names, as_ys, row_lengths
from .checks import check_times, is_concrete, time_tol
from .inputs import InputSignal, stack_inputs
from .masks import describe_observe, observation_mask
from .provenance import join_provenance, split_provenance

__all__ = ["Dataset", "concat"]


class Dataset(eqx.Module):
    """Observations of one or more trajectories — experiments — at shared or their own save times.

    Args:
        ts: ``(times,)`` strictly increasing save times shared by all trajectories, or
            ``(traj, times)``: every experiment's own, padded (a row repeats its last time after
            its end; build these with :func:`ude.data.experiments.concat`).
        ys: ``(traj, times, state)`` observations (a ``(times, state)`` array is one trajectory).
            Set to 0 where unobserved.
        mask: ``(traj, times, state)`` bool, True where observed (default: where ``ys`` is finite).
        state_names: one name per state (default ``("s0", "s1", ...)``).
        y_true: ``(traj, times, state)`` noise-free truth at every point, or None (real data).
        provenance: a JSON-like dict (system, parameters, noise, seed, ...), read back through
            :attr:`provenance`.
        inputs: what the experiments feed the vector field — an
            :class:`~ude.data.inputs.ExperimentInputs` (or a bare
            :class:`~ude.data.inputs.InputSignal`), the same for every trajectory, or stacked with
            a leading experiment axis (:func:`~ude.data.inputs.stack_inputs`). Solves pass each
            experiment's as ``args``.
        experiment_names: one name per trajectory (default ``("0", "1", ...)``).

    A Dataset is a pytree: ``ts``, ``ys``, ``mask``, ``y_true``, the inputs and the experiments'
    lengths are array leaves and only the names are static, so a jitted function taking a Dataset
    compiles once per shape — one program for all experiments, whatever their own lengths (a new
    experiment of a new length, padded to the same shape, compiles nothing). Methods that change
    shapes (:meth:`window`, :meth:`split`) work on concrete data, outside ``jit``.
    """

    ts: Float[Array, "*traj times"]
    ys: Float[Array, "traj times state"]
    mask: Bool[Array, "traj times state"]
    y_true: Float[Array, "traj times state"] | None
    inputs: ExperimentInputs | None
    state_names: tuple[str, ...] = eqx.field(static=True)
    experiment_names: tuple[str, ...] = eqx.field(static=True)
    _lengths: Int[ArrayLike, " traj"] | None
    _provenance_spec: str = eqx.field(static=True)
    _provenance_values: UInt32[ArrayLike, " words"]

    def __init__(
        self,
        ts,
        ys,
        mask=None,
        *,
        state_names=None,
        y_true=None,
        provenance=None,
        inputs=None,
        experiment_names=None,
    ):
        concrete = is_concrete(ts, ys, mask, y_true)
        ts = jnp.asarray(ts)
        ys = jnp.asarray(ys)
        lengths = None
        if ts.ndim == 2 and concrete:
            if ts.shape[1] < 1:
                raise ValueError("Dataset: ts must have at least one time per experiment")
            lengths = row_lengths(ts)
        elif ts.ndim == 2:  # traced: a row is real up to where it starts repeating its last time
            lengths = 1 + jnp.sum(jnp.diff(ts, axis=1) > 0, axis=1)
        elif ts.ndim != 2 and concrete:
            check_times(ts, "Dataset: ts")
        if concrete and not jnp.issubdtype(ts.dtype, jnp.floating):
            ts = ts.astype(jnp.result_type(float))
        ys = as_ys(ys, ts)
        mask = as_mask(mask, ys, concrete)
        if lengths is not None and concrete:
            pad = np.arange(ys.shape[1])[None, :] >= np.asarray(lengths)[:, None]
            if bool((np.asarray(mask) & pad[:, :, None]).any()):
                i = int(np.argwhere((np.asarray(mask) & pad[:, :, None]).any(axis=(1, 2)))[0, 0])
                raise ValueError(
                    f"Dataset: experiment {i} is observed after its last time "
                    f"(ts[{i}] ends at entry {lengths[i] - 1}; padding must be unobserved)"
                )
        ys = jnp.where(mask, ys, jnp.zeros((), ys.dtype))
        if y_true is not None:
            y_true = jnp.asarray(y_true)
            if y_true.ndim == 2:
                y_true = y_true[None]
            if y_true.shape != ys.shape:
                raise ValueError(
                    f"Dataset: y_true must have the shape of ys {ys.shape}, got {y_true.shape}"
                )
        self.ts = ts
        self.ys = ys
        self.mask = mask
        self.y_true = y_true
        self.inputs = as_inputs(inputs, ys.shape[0])
        self.state_names = as_state_names(state_names, ys.shape[2])
        if experiment_names is None:
            experiment_names = tuple(str(i) for i in range(ys.shape[0]))
        experiment_names = tuple(str(n) for n in experiment_names)
        if len(experiment_names) != ys.shape[0] or len(set(experiment_names)) != ys.shape[0]:
            raise ValueError(
                f"Dataset: experiment_names must be {ys.shape[0]} distinct names, got "
                f"{list(experiment_names)}"
            )
        self.experiment_names = experiment_names
        # an int32 leaf (numpy while concrete, so reading it needs no device round trip)
        if concrete and lengths is not None:
            lengths = np.asarray(lengths, np.int32)
        self._lengths = lengths
        self._provenance_spec, self._provenance_values = split_provenance(provenance)

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
    def per_experiment_times(self) -> bool:
        """True when every experiment has its own save times (``ts`` is ``(traj, times)``)."""
        return self._lengths is not None

    @property
    def times(self) -> Float[Array, "traj times"]:
        """The save times of every trajectory, ``(traj, times)`` (padded rows repeat their end)."""
        if self.per_experiment_times:
            return self.ts
        return jnp.broadcast_to(self.ts, self.ys.shape[:2])

    @property
    def lengths(self) -> tuple[int, ...]:
        """The number of real save times of every trajectory (concrete data; inside ``jit`` use
        :attr:`length_array`)."""
        if self._lengths is not None:
            return tuple(int(n) for n in np.asarray(self._lengths))
        return (self.ys.shape[1],) * self.ys.shape[0]

    @property
    def length_array(self) -> Int[Array, " traj"]:
        """The number of real save times of every trajectory as an array (traceable: a jitted
        function reading it does not recompile for new lengths)."""
        if self._lengths is not None:
            return jnp.asarray(self._lengths)
        return jnp.full((self.ys.shape[0],), self.ys.shape[1], jnp.int32)

    @property
    def time_mask(self) -> Bool[Array, "traj times"]:
        """True at every trajectory's real save times, False on padding."""
        return jnp.arange(self.n_times)[None, :] < self.length_array[:, None]

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names the inputs provide (signals, then constants); empty without inputs."""
        return () if self.inputs is None else self.inputs.names

    def inputs_of(self, i: int):
        """Experiment ``i``'s inputs as one :class:`~ude.data.inputs.ExperimentInputs` (call it at
        ``t``), or None without inputs."""
        if self.inputs is None:
            return None
        return jax.tree_util.tree_map(lambda x: x[int(i)], self.inputs)

    def span(self) -> tuple[float, float]:
        """The earliest and the latest save time over all trajectories."""
        t = np.asarray(self.ts)
        return float(t.min()), float(t.max())

    def experiment(self, i) -> Dataset:
        """Trajectory ``i`` (an index or an experiment name) alone, with its own times and inputs
        and no padding."""
        if isinstance(i, str):
            if i not in self.experiment_names:
                raise ValueError(
                    f"no experiment {i!r}; experiments are {list(self.experiment_names)}"
                )
            i = self.experiment_names.index(i)
        i = int(i)
        n = self.lengths[i]
        inputs = None
        if self.inputs is not None:
            inputs = jax.tree_util.tree_map(lambda x: x[i], self.inputs)
            if inputs.signal is not None:
                sig = inputs.signal
                k = int(np.sum(np.asarray(sig.ts) <= float(sig.end)))
                inputs = eqx.tree_at(
                    lambda q: q.signal,
                    inputs,
                    InputSignal(sig.ts[:k], sig.us[:k], sig.names, sig.kind),
                )
        return Dataset(
            self.times[i, :n],
            self.ys[i : i + 1, :n],
            self.mask[i : i + 1, :n],
            state_names=self.state_names,
            y_true=None if self.y_true is None else self.y_true[i : i + 1, :n],
            provenance={**self.provenance, "experiment": self.experiment_names[i]},
            inputs=inputs,
            experiment_names=(self.experiment_names[i],),
        )

    @property
    def provenance(self) -> dict:
        """Where the data came from (system, parameters, noise, seed, ...), as a fresh dict."""
        return join_provenance(self._provenance_spec, self._provenance_values)

    def state_index(self, name: str) -> int:
        if name not in self.state_names:
            raise ValueError(f"state {name!r} is not one of {list(self.state_names)}")
        return self.state_names.index(name)

    def observed_states(self) -> tuple[str, ...]:
        """Names of the states observed at least once (in any trajectory)."""
        seen = np.asarray(self.mask).any(axis=(0, 1))
        return tuple(n for n, s in zip(self.state_names, seen, strict=True) if s)

    def n_observed(self) -> int:
        """Number of observed values (the count a sum-of-squares loss runs over)."""
        return int(np.asarray(self.mask).sum())

    # ---- new datasets --------------------------------------------------------------------------
    def _replace(self, *, ts=None, ys=None, mask=None, y_true=None, **prov) -> Dataset:
        """A copy with some arrays replaced and ``prov`` added to the provenance."""
        return Dataset(
            self.ts if ts is None else ts,
            self.ys if ys is None else ys,
            self.mask if mask is None else mask,
            state_names=self.state_names,
            y_true=self.y_true if y_true is None else y_true,
            provenance={**self.provenance, **prov},
            inputs=self.inputs,
            experiment_names=self.experiment_names,
        )

    def _each(self, fn, what: str, **prov) -> Dataset:
        """``fn`` applied to every experiment alone, the results joined again (for datasets whose
        experiments have their own times)."""
        parts = []
        for i, name in enumerate(self.experiment_names):
            try:
                parts.append(fn(self.experiment(i)))
            except ValueError as e:
                raise ValueError(f"{what}: experiment {name!r}: {e}") from None
        return self._joined(concat(parts), self.experiment_names, prov)

    def _joined(self, out: Dataset, names, prov: dict) -> Dataset:
        """``out`` (experiments joined by :func:`concat`) under ``names``, with this dataset's
        provenance and ``prov``."""
        return Dataset(
            out.ts,
            out.ys,
            out.mask,
            state_names=self.state_names,
            y_true=out.y_true,
            provenance={**self.provenance, **prov},
            inputs=out.inputs,
            experiment_names=names,
        )

    def _select_times(self, keep: np.ndarray, what: str, **prov) -> Dataset:
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise ValueError(
                f"{what}: no save times selected (data spans "
                f"[{float(self.ts[0])}, {float(self.ts[-1])}])"
            )
        return self._replace(
            ts=self.ts[idx],
            ys=self.ys[:, idx],
            mask=self.mask[:, idx],
            y_true=None if self.y_true is None else self.y_true[:, idx],
            **prov,
        )

    def window(self, t0: float, t1: float) -> Dataset:
        """The data at save times ``t0 <= t <= t1`` (both ends included; of every experiment)."""
        if not t1 >= t0:
            raise ValueError(f"window: need t0 <= t1, got t0={t0}, t1={t1}")
        if self.per_experiment_times:
            return self._each(lambda d: d.window(t0, t1), "window", window=[float(t0), float(t1)])
        t = np.asarray(self.ts)
        tol = time_tol(t)
        return self._select_times(
            (t >= t0 - tol) & (t <= t1 + tol), "window", window=[float(t0), float(t1)]
        )

    def split(self, t_train_end: float) -> tuple[Dataset, Dataset]:
        """``(train, held_out)``: the times ``<= t_train_end`` and those after (to extrapolate);
        with experiments of their own times, every experiment must have times on both sides."""
        if self.per_experiment_times:
            prov = {"t_train_end": float(t_train_end)}
            return (
                self._each(lambda d: d.split(t_train_end)[0], "split", split="train", **prov),
                self._each(lambda d: d.split(t_train_end)[1], "split", split="held_out", **prov),
            )
        t = np.asarray(self.ts)
        tol = time_tol(t)
        train = t <= t_train_end + tol
        if train.all() or not train.any():
            raise ValueError(
                f"split: t_train_end={t_train_end} leaves one side empty (data spans "
                f"[{t[0]}, {t[-1]}])"
            )
        return (
            self._select_times(train, "split", split="train", t_train_end=float(t_train_end)),
            self._select_times(~train, "split", split="held_out", t_train_end=float(t_train_end)),
        )

    def with_mask(self, observe) -> Dataset:
        """A copy observed only where ``observe`` says (and where it was observed before).

        ``observe`` takes the forms of :func:`~ude.data.observation_mask`, e.g.
        ``{"y": [0, 1.2, 2.4]}`` or ``{"y": "none"}``; states it does not name keep their mask.
        Masks only remove observations: values that were never observed cannot be brought back.
        """
        if self.per_experiment_times:
            return self._each(lambda d: d.with_mask(observe), "observe")
        new = observation_mask(self.ts, self.state_names, observe, self.n_traj)
        mask = np.asarray(self.mask) & new
        return self._replace(mask=jnp.asarray(mask), observe=describe_observe(observe))

    def trajectories(self, idx) -> Dataset:
        """The trajectories ``idx`` (an int, slice, index list or experiment names) as a
        dataset."""
        if isinstance(idx, str):
            idx = [idx]
        if isinstance(idx, (list, tuple)) and idx and all(isinstance(i, str) for i in idx):
            unknown = [i for i in idx if i not in self.experiment_names]
            if unknown:
                raise ValueError(
                    f"trajectories: no experiment {unknown}; experiments are "
                    f"{list(self.experiment_names)}"
                )
            idx = [self.experiment_names.index(i) for i in idx]
        sel = np.arange(self.n_traj)[idx]
        sel = np.atleast_1d(sel)
        if sel.size == 0:
            raise ValueError(f"trajectories: {idx!r} selects no trajectory of {self.n_traj}")
        if self.per_experiment_times:
            out = concat([self.experiment(int(i)) for i in sel])
            return self._joined(out, out.experiment_names, {"trajectories": [int(i) for i in sel]})
        return Dataset(
            self.ts,
            self.ys[sel],
            self.mask[sel],
            state_names=self.state_names,
            y_true=None if self.y_true is None else self.y_true[sel],
            provenance={**self.provenance, "trajectories": [int(i) for i in sel]},
            inputs=None
            if self.inputs is None
            else jax.tree_util.tree_map(lambda x: x[sel], self.inputs),
            experiment_names=tuple(self.experiment_names[int(i)] for i in sel),
        )


def _pad_rows(a, n: int, value=None):
    """``a`` (1, times, ...) padded along times to ``n`` with ``value`` (default: its last row)."""
    k = a.shape[1]
    if k == n:
        return a
    tail = a[:, -1:] if value is None else jnp.full_like(a[:, -1:], value)
    return jnp.concatenate([a, jnp.repeat(tail, n - k, axis=1)], axis=1)


def concat(datasets, names=None) -> Dataset:
    """Experiments side by side: one :class:`Dataset` whose trajectories are every trajectory of
    ``datasets``, each with its own save times (padded to the longest: a row repeats its last
    time, unobserved) and its own inputs. All must have the same states and input names.

    >>> import jax.numpy as jnp
    >>> a = Dataset(jnp.linspace(0, 1, 3), jnp.ones((3, 1)), state_names=["x"])
    >>> b = Dataset(jnp.linspace(0, 2, 5), jnp.ones((5, 1)), state_names=["x"])
    >>> both = concat([a, b], names=["short", "long"])
    >>> both.ts.shape, both.lengths, both.experiment_names
    ((2, 5), (3, 5), ('short', 'long'))
    """
    datasets = list(datasets)
    if not datasets or not all(isinstance(d, Dataset) for d in datasets):
        raise ValueError("concat: give a non-empty list of Datasets")
    first = datasets[0]
    rows, own_names = [], []
    for k, d in enumerate(datasets):
        if d.state_names != first.state_names:
            raise ValueError(
                f"concat: dataset {k} has states {list(d.state_names)}, dataset 0 has "
                f"{list(first.state_names)}"
            )
        if (d.y_true is None) != (first.y_true is None):
            raise ValueError("concat: either every dataset has its truth (y_true) or none has")
        if d.input_names != first.input_names:
            raise ValueError(
                f"concat: dataset {k} has inputs {list(d.input_names)}, dataset 0 has "
                f"{list(first.input_names)}"
            )
        for i in range(d.n_traj):
            rows.append(d.experiment(i) if d.per_experiment_times or d.n_traj > 1 else d)
            own_names.append(d.experiment_names[i] if len(datasets) == 1 else f"{k}.{i}")
    if names is None:
        single = all(d.n_traj == 1 for d in datasets)
        names = [d.experiment_names[0] for d in datasets] if single else own_names
        if len(set(names)) != len(names):
            names = [str(i) for i in range(len(rows))]
    n = max(r.n_times for r in rows)
    ts = jnp.stack([_pad_rows(r.ts[None, :], n)[0] for r in rows])
    ys = jnp.concatenate([_pad_rows(r.ys, n, 0.0) for r in rows])
    mask = jnp.concatenate([_pad_rows(r.mask, n, False) for r in rows])
    y_true = None
    if first.y_true is not None:
        y_true = jnp.concatenate([_pad_rows(r.y_true, n) for r in rows])
    inputs = None
    if first.inputs is not None:
        inputs = stack_inputs([jax.tree_util.tree_map(lambda x: x[0], r.inputs) for r in rows])
    return Dataset(
        ts,
        ys,
        mask,
        state_names=first.state_names,
        y_true=y_true,
        provenance={**first.provenance, "experiments": list(names)},
        inputs=inputs,
        experiment_names=names,
    )
