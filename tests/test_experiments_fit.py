"""Training on several experiments as one program (issue: experiments).

A dataset of experiments (own lengths, own irregular times and starts, own input signal u(t), a
state unobserved at some samples) is one padded, masked batch. The tests check

* that every strategy's loss over the experiments is the combination of the experiments' own
  losses that its normalisation implies, and so is its gradient with respect to everything that
  trains (network weights and the strategy's extra parameters);
* that ``fit`` compiles one training program per padded shape, not one per experiment.
"""

from __future__ import annotations

from collections import Counter

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.compile_cache import CompileLog
from ude.data import Dataset, ExperimentInputs, InputSignal, concat
from ude.model import UDE, partition
from ude.nn import MLP
from ude.physics import Equations
from ude.solve import SolverOptions
from ude.train import (
    Adam,
    Collocation,
    LearnedInitialStates,
    MultipleShooting,
    SegmentStarts,
    SingleShooting,
    WindowMinibatch,
    fit,
    initial_states,
    l2_penalty,
)
from ude.train.step import run_chunk
from ude.train.strategies import segment_bounds

STATES = ("x", "v")
# a forced oscillator; the network reads x, v and u and corrects dv/dt
KNOWN = Equations({"x": "v", "v": "-k*x - c*v + u"}, {"k": 1.0, "c": 0.2}, inputs=["u"])
# Fixed steps: every experiment takes the same steps batched as alone, so the two programs differ
# by rounding only. An adaptive controller does not give that: a vmapped and an unbatched program
# round differently in the last bits, an accept/reject decision near its threshold can flip, and
# the two solves then take different steps and differ by the solver's tolerance (with rtol = atol
# = 1e-10 we saw 52 vs 59 steps, solutions 8e-9 and gradients 3e-7 apart). That, not the strategies,
# is why an adaptive solve matches the sum of experiments only to about its tolerance.
FIXED = SolverOptions("euler", fixed_steps=8)
LENGTHS = (6, 9, 7)  # samples per experiment (padded to 9)
SEGMENTS = 2
L2 = 0.05


def _experiments(lengths=LENGTHS, seed=0, masked=True):
    """Experiments of their own irregular times, start, input signal (a different number of
    samples each, so the stacked signals are padded too) and data; with ``masked`` the velocity of
    experiment 1 is unobserved at two interior samples."""
    rng = np.random.default_rng(seed)
    exps = []
    for i, n in enumerate(lengths):
        ts = rng.uniform(0.0, 0.4) + np.cumsum(rng.uniform(0.08, 0.3, n))
        st = np.linspace(ts[0] - 0.1, ts[-1] + 0.1, 3 + i % 3)
        us = (0.5 + 0.3 * i) * np.cos((1.0 + 0.4 * i) * st)
        inputs = ExperimentInputs(InputSignal(st, us[:, None], ("u",)))
        ys = (1.0 + 0.2 * i) * np.stack([np.cos(ts), -np.sin(ts)], axis=1)
        ys = ys + 0.02 * rng.normal(size=ys.shape)
        mask = np.ones(ys.shape, bool)
        if masked and i == 1:
            mask[[2, 4], 1] = False
        exps.append(
            Dataset(ts, ys, mask, state_names=STATES, inputs=inputs, experiment_names=[f"e{i}"])
        )
    return concat(exps)


def _model(key=0):
    net = MLP(3, 1, width=4, depth=1, activation="tanh", key=jr.key(key))
    return UDE(KNOWN, net, outputs=["v"], signals=["u"])


STRATEGIES = {
    # learns the initial states; the weight penalty is on
    "single": SingleShooting(options=FIXED, learn_y0=True, l2=L2),
    "multiple": MultipleShooting(options=FIXED, segments=SEGMENTS, continuity=0.5, l2=L2),
    # WindowMinibatch's deterministic loss (no key): single shooting over whole experiments from
    # the data's first samples; with "mse", a mean over all observed values
    "window_full": WindowMinibatch(options=FIXED, window=3, reduction="mse"),
    # each experiment smoothed over its own times (bandwidth from its own median spacing)
    "collocation": Collocation(l2=L2),
}


def _extras(data):
    """Extra parameters that matter: initial states and segment starts moved off the data's."""
    bounds = np.stack([segment_bounds(n, SEGMENTS)[:-1] for n in data.lengths])
    rows = np.arange(data.n_traj)[:, None]
    return {
        "single": LearnedInitialStates(y0=initial_states(data) + jnp.array([0.05, -0.03])),
        "multiple": SegmentStarts(starts=data.ys[rows, bounds, :] + jnp.array([-0.02, 0.04])),
        "window_full": None,
        "collocation": None,
    }


def _row(extra, i):
    """Experiment ``i``'s rows of a strategy's extra parameters."""
    return jax.tree_util.tree_map(lambda a: a[i : i + 1], extra)


# XLA options for the tests' own measuring program only (fit's programs are untouched): less
# optimisation, the same arithmetic to rounding, and about a fifth less compile time
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _measure(params, static, extras, data):
    """Per strategy ``(loss, (d loss/d params, d loss/d extra))``: every strategy in one program
    per dataset (one compile for all experiments, one per experiment alone)."""
    dynamic, fixed = eqx.partition((params, static, extras, data), eqx.is_array)
    program = jax.jit(lambda d: _losses_and_gradients(*eqx.combine(d, fixed)))
    return program.lower(dynamic).compile(FAST_COMPILE)(dynamic)


def _losses_and_gradients(params, static, extras, data):
    out = {}
    for name, strategy in STRATEGIES.items():

        def f(p, extra, strategy=strategy):
            return strategy.loss(eqx.combine(p, static), extra, data, None)[0]

        out[name] = jax.value_and_grad(f, argnums=(0, 1))(params, extras[name])
    return out


@pytest.fixture(scope="module")
def data():
    d = _experiments()
    assert d.per_experiment_times and d.lengths == LENGTHS and d.ts.shape == (3, max(LENGTHS))
    assert d.inputs.signal.ts.shape == (3, 5)  # the signals padded too
    assert not bool(d.mask[1, 2, 1]) and bool(np.all(d.mask[:, 0, :]))
    return d


@pytest.fixture(scope="module")
def measured(data):
    """``(whole, parts, params)``: every strategy's loss and gradients on all experiments at once,
    and on each experiment alone (``data.experiment(i)``, with its rows of the same extras)."""
    params, static = partition(_model())
    extras = _extras(data)
    whole = _measure(params, static, extras, data)
    parts = [
        _measure(params, static, _row(extras, i), data.experiment(i)) for i in range(data.n_traj)
    ]
    return whole, parts, params, static


def _weights(name, data):
    """How the experiments' data terms combine: summed (``"sse"``), or each weighted by its share
    of the observed values (``"mse"``: a mean over all of them is the mean of the experiments'
    means weighted by their counts)."""
    strategy = STRATEGIES[name]
    if strategy.reduction == "sse":
        return np.ones(data.n_traj)
    counts = np.array([data.experiment(i).n_observed() for i in range(data.n_traj)], float)
    return counts / counts.sum()


def _penalty(name, params, static):
    """The strategy's weight penalty and its gradient (zero without ``l2``)."""
    l2 = STRATEGIES[name].l2
    if l2 is None:
        return 0.0, jax.tree_util.tree_map(jnp.zeros_like, params)
    return jax.value_and_grad(lambda p: l2_penalty(eqx.combine(p, static), l2))(params)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_loss_over_experiments_combines_their_own_losses(measured, data, name):
    """``L(all) = P + Σ_i w_i (L_i − P)``: the data terms of the experiments add (``w_i = 1`` for
    ``"sse"``, ``N_i / Σ N`` for ``"mse"``, ``N_i`` the experiment's observed values) and the
    weight penalty ``P`` (a property of the model, not of an experiment) is counted once."""
    whole, parts, params, static = measured
    w = _weights(name, data)
    penalty, _ = _penalty(name, params, static)
    got = float(whole[name][0])
    own = np.array([float(p[name][0]) for p in parts])
    want = float(penalty) + float(np.sum(w * (own - float(penalty))))
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(want, rel=1e-10, abs=1e-14)
    # the relation is not trivially met: the penalty and the weighting change the plain sum
    if STRATEGIES[name].l2 is not None:
        assert abs(float(np.sum(own)) - got) > 1e-6 * got
    if STRATEGIES[name].reduction == "mse":
        assert abs(float(np.sum(own)) - got) > 1e-3 * got


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_gradient_over_experiments_combines_their_own_gradients(measured, data, name):
    """The same relation for the gradient: network weights ``g = ∇P + Σ_i w_i (g_i − ∇P)``; an
    experiment's own extra parameters (learned initial state, segment starts) get ``w_i`` times
    the gradient they get when that experiment is fitted alone."""
    whole, parts, params, static = measured
    w = _weights(name, data)
    _, g_pen = _penalty(name, params, static)
    g_all, g_extra = whole[name][1]
    want = jax.tree_util.tree_map(
        lambda gp, *gs: gp + sum(wi * (g - gp) for wi, g in zip(w, gs, strict=True)),
        g_pen,
        *(p[name][1][0] for p in parts),
    )
    got_leaves, want_leaves = jax.tree_util.tree_leaves(g_all), jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == 4  # the network's weights and biases
    scale = max(float(jnp.max(jnp.abs(g))) for g in got_leaves)
    assert scale > 0
    for g, s in zip(got_leaves, want_leaves, strict=True):
        np.testing.assert_allclose(g, s, rtol=1e-9, atol=1e-12 * scale)
    if g_extra is None:
        return
    for i, p in enumerate(parts):
        for g, s in zip(
            jax.tree_util.tree_leaves(_row(g_extra, i)),
            jax.tree_util.tree_leaves(p[name][1][1]),
            strict=True,
        ):
            assert float(jnp.max(jnp.abs(s))) > 0
            np.testing.assert_allclose(g, w[i] * s, rtol=1e-9, atol=1e-12 * scale)


# ---------------------------------------------------------------- one training program
# The program fit runs for every chunk of optimiser steps (ude.train.step.run_chunk); the names of
# the other programs a fit compiles (eager indexing, dtype converts, the final loss) are recorded
# but not the subject here.
TRAINING_PROGRAM = "jit(chunk_steps)"
FINAL_LOSS = "jit(_full_loss)"
COUNT_STRATEGY = Collocation()


# (label, lengths, seed): 2, 3 and 5 experiments of lengths that differ, all padded to 8; then 5
# again with new values; then 5 of other lengths, padded to the same 8
FITS = (
    ("two", (5, 8), 1),
    ("three", (5, 8, 6), 2),
    ("five", (5, 8, 6, 4, 7), 3),
    ("five_new_values", (5, 8, 6, 4, 7), 4),
    ("five_new_lengths", (8, 4, 7, 6, 5), 5),
)


@pytest.fixture(scope="module")
def compiles():
    """Per fit in :data:`FITS` (run in that order): the names of the programs it compiled, and how
    many entries it added to the training program's jit cache. Data and model are built before
    counting (their own small programs are not the fit's)."""
    out = {}
    for label, lengths, seed in FITS:
        data, model = _experiments(lengths, seed=seed, masked=False), _model(seed)
        stages = [Adam(lr=0.01, steps=2)]
        before = run_chunk._cached._cache_size()
        with CompileLog() as c:
            res = fit(model, data, COUNT_STRATEGY, stages, key=jr.key(0), chunk=2, verbose=False)
        assert np.all(np.isfinite(res.history["loss"])) and len(res.history["loss"]) == 2
        out[label] = (Counter(c.names), run_chunk._cached._cache_size() - before)
    return out


def test_one_training_program_per_padded_shape_not_per_experiment(compiles):
    """Every new ``(experiments, padded length)`` compiles the training program exactly once (and
    the final loss once): 5 experiments of 5 different lengths compile it once, not 5 times. A new
    number of experiments changes the arrays' shapes, so a new program for it is expected; nothing
    compiled in a fit scales with the experiments: no program is compiled twice within a fit, and
    the fit of 5 compiles no more programs than the fit of 2."""
    for label in ("two", "three", "five"):
        names, new_entries = compiles[label]
        assert names[TRAINING_PROGRAM] == 1, (label, names)
        assert new_entries == 1, (label, new_entries)
        assert names[FINAL_LOSS] == 1, (label, names)
    five, two = compiles["five"][0], compiles["two"][0]
    assert max(five.values()) == 1, five
    assert sum(five.values()) <= sum(two.values()), (five, two)


def test_same_shapes_and_lengths_with_new_values_compile_nothing(compiles):
    """New data, inputs, initial states and network weights of the same shapes and lengths: no
    program at all is compiled (the values are leaves of the pytrees, not constants)."""
    names, new_entries = compiles["five_new_values"]
    assert sum(names.values()) == 0 and new_entries == 0, names


def test_new_lengths_of_the_same_padded_shape_do_not_recompile(compiles):
    """5 experiments of other lengths padded to the same 8 samples: the same arrays' shapes, so the
    training program is reused: the lengths are array leaves of the Dataset, so a new length
    compiles nothing."""
    names, new_entries = compiles["five_new_lengths"]
    assert names[TRAINING_PROGRAM] == 0 and new_entries == 0, names
