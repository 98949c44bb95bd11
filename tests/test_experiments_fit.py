"""Training on several experiments (issue 16): every strategy's loss over a dataset of experiments
(own lengths, irregular times, own inputs, a masked state) is the sum of the experiments' own
losses, and so is its gradient; an interpolated input integrates exactly inside a solve; and fit
compiles one training program whatever the number of experiments."""

import logging
from collections import Counter

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.data import Dataset, ExperimentInputs, InputSignal, concat
from ude.model import UDE
from ude.nn import MLP
from ude.physics import Equations
from ude.solve import SolverOptions, solve, solve_data
from ude.train import (
    Adam,
    Collocation,
    LearnedInitialStates,
    MultipleShooting,
    SegmentStarts,
    SingleShooting,
    WindowMinibatch,
    fit,
)

# a driven Duffing-like oscillator; the model knows all of it but the cubic stiffness
TRUTH = Equations({"x": "v", "v": "-k*x - c*v - x**3 + u"}, {"k": 1.0, "c": 0.2}, inputs=["u"])
KNOWN = Equations({"x": "v", "v": "-k*x - c*v + u"}, {"k": 1.0, "c": 0.2}, inputs=["u"])
# tight tolerances: a vmapped solve and an unbatched one agree far below the tests' rtol 1e-6
OPTS = SolverOptions("tsit5", rtol=1e-10, atol=1e-10)
LENGTHS = (7, 12, 9)  # samples per experiment (padded to 12)


def _experiments(lengths=LENGTHS, seed=0, mask_one=True, names=None):
    """A dataset of experiments: own irregular times and start, own input signal (a different
    number of samples each) and, with ``mask_one``, the velocity of experiment 1 unobserved at some
    samples (its first among them)."""
    rng = np.random.default_rng(seed)
    exps = []
    for i, n in enumerate(lengths):
        span = 1.5 + 0.5 * (i % 4)
        ts = np.sort(rng.uniform(0.0, span, n))
        st = np.linspace(0.0, span, 4 + i % 3)
        amp, freq = 0.5 + 0.2 * (i % 3), 1.0 + 0.3 * (i % 5)
        inp = ExperimentInputs(InputSignal(st, amp * np.cos(freq * st)[:, None], ("u",)))
        y0 = jnp.array([0.5 + 0.2 * (i % 4), 0.1 * (i % 3)])
        ys = solve(TRUTH, y0, jnp.asarray(ts), OPTS, args=inp).ys
        ys = ys + 0.01 * rng.normal(size=ys.shape)
        mask = np.ones(ys.shape, bool)
        if mask_one and i == 1:
            mask[[0, 2, 5], 1] = False
        name = f"e{i}" if names is None else names[i]
        exps.append(
            Dataset(ts, ys, mask, state_names=("x", "v"), inputs=inp, experiment_names=[name])
        )
    return concat(exps)


def _model(key=0, width=4):
    # the network reads x, v and u and corrects dv/dt
    net = MLP(3, 1, width=width, depth=1, activation="tanh", key=jr.key(key))
    return UDE(KNOWN, net, outputs=["v"], signals=["u"])


def _row(extra, i):
    """Experiment ``i``'s rows of a strategy's extra parameters."""
    return jax.tree_util.tree_map(lambda a: a[i : i + 1], extra)


@pytest.fixture(scope="module")
def data():
    d = _experiments()
    assert d.per_experiment_times and d.lengths == LENGTHS
    assert not bool(d.mask[1, 0, 1])  # a state unobserved at a start
    return d


@pytest.fixture(scope="module")
def model():
    return _model()


STRATEGIES = {
    "single": SingleShooting(options=OPTS),
    "single_learn_y0": SingleShooting(options=OPTS, learn_y0=True),
    "multiple": MultipleShooting(options=OPTS, segments=3),
    "collocation": Collocation(),
    "window_full": WindowMinibatch(options=OPTS, window=4),
}


def _extras(model, data):
    """Every strategy's extra parameters on ``data`` (the learned initial states moved off the
    data's, so that they matter)."""
    out = {name: s.init(model, data) for name, s in STRATEGIES.items()}
    y0 = out["single_learn_y0"].y0
    out["single_learn_y0"] = LearnedInitialStates(y0=y0 + jnp.array([0.05, -0.03]))
    return out


@eqx.filter_jit
def _measure(model, extras, data):
    """Per strategy ``(loss, full_loss, gradient of loss w.r.t. the network)`` (for WindowMinibatch
    its ``full_loss`` and that one's gradient): every strategy in one program per dataset, so the
    test compiles four programs, not twenty."""
    out = {}
    for name, strategy in STRATEGIES.items():

        def f(net, strategy=strategy, extra=extras[name], name=name):
            m = eqx.tree_at(lambda u: u.correction, model, net)
            full = strategy.full_loss(m, extra, data)
            loss = full if name == "window_full" else strategy.loss(m, extra, data, None)[0]
            return loss, full

        (loss, full), grad = eqx.filter_value_and_grad(f, has_aux=True)(model.correction)
        out[name] = (loss, full, grad)
    return out


@pytest.fixture(scope="module")
def measured(model, data):
    """``(extras, whole, parts)``: the extra parameters on all experiments; per strategy (loss, full
    loss, gradient) on all experiments at once and on each experiment alone (with its rows of the
    same extra parameters)."""
    extras = _extras(model, data)
    whole = _measure(model, extras, data)
    parts = [_measure(model, _row(extras, i), data.experiment(i)) for i in range(data.n_traj)]
    return extras, whole, parts


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_loss_over_experiments_is_the_sum_of_their_losses(measured, name):
    _, whole, parts = measured
    loss, full = float(whole[name][0]), float(whole[name][1])
    assert np.isfinite(loss) and loss > 0
    assert loss == pytest.approx(sum(float(p[name][0]) for p in parts), rel=1e-6)
    assert full == pytest.approx(sum(float(p[name][1]) for p in parts), rel=1e-6)
    if name == "multiple":  # its own loss (segments, continuity) is not the full loss
        assert loss != pytest.approx(full, rel=1e-3)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_gradient_over_experiments_is_the_sum_of_their_gradients(measured, name):
    _, whole, parts = measured
    total = jax.tree_util.tree_map(lambda *g: sum(g), *(p[name][2] for p in parts))
    leaves, summed = jax.tree_util.tree_leaves(whole[name][2]), jax.tree_util.tree_leaves(total)
    scale = max(float(jnp.max(jnp.abs(g))) for g in leaves)
    assert scale > 0
    for g, s in zip(leaves, summed, strict=True):
        np.testing.assert_allclose(g, s, rtol=1e-6, atol=1e-9 * scale)


def test_extra_parameters_are_initialised_per_experiment(measured, model, data):
    """Multiple shooting's segment starts (cut from each experiment's own samples and solve) and
    the initial states to learn are those of each experiment alone."""
    extras, _, _ = measured
    assert isinstance(extras["multiple"], SegmentStarts)
    assert extras["multiple"].starts.shape == (3, 3, 2)
    for name in ("multiple", "single_learn_y0"):
        for i in range(data.n_traj):
            own = STRATEGIES[name].init(model, data.experiment(i))
            got = jax.tree_util.tree_leaves(_row(extras[name], i))
            if name == "single_learn_y0":
                got = [got[0] - jnp.array([0.05, -0.03])]
            for a, b in zip(got, jax.tree_util.tree_leaves(own), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10, err_msg=f"{name} {i}")


# ---------------------------------------------------------------- inputs inside a solve
def _integral(st, us, t):
    """The exact integral from ``st[0]`` to ``t`` of the piecewise-linear interpolant of ``us`` at
    ``st``, held at its end values outside (closed form: trapezoids and one partial trapezoid)."""
    st, us = np.asarray(st), np.asarray(us)
    out = 0.0
    if t < st[0]:
        return us[0] * (t - st[0])
    for a, b, ua, ub in zip(st[:-1], st[1:], us[:-1], us[1:], strict=True):
        if t <= a:
            break
        e = min(t, b)
        ue = ua + (ub - ua) * (e - a) / (b - a)
        out += 0.5 * (ua + ue) * (e - a)
    return out + us[-1] * max(t - st[-1], 0.0)


def test_an_interpolated_input_integrates_exactly_per_experiment():
    """``x' = u(t)``: x is the integral of each experiment's own piecewise-linear signal, at its own
    irregular save times (past the signal's end too, where it holds its last value)."""
    field = Equations({"x": "u"}, {}, inputs=["u"])
    rng = np.random.default_rng(3)
    exps, signals = [], []
    for i, (n, k) in enumerate([(5, 4), (9, 7), (7, 3)]):
        st = np.concatenate([[0.0], np.sort(rng.uniform(0.1, 2.0, k - 2)), [2.0 + i]])
        us = rng.normal(size=k)
        ts = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 3.0 + i, n - 1))])
        signals.append((st, us, ts))
        inp = ExperimentInputs(InputSignal(st, us[:, None], ("u",)))
        exps.append(Dataset(ts, np.zeros((n, 1)), state_names=("x",), inputs=inp))
    data = concat(exps)
    sol = solve_data(field, jnp.zeros((3, 1)), data, SolverOptions(rtol=1e-11, atol=1e-12))
    assert bool(jnp.all(sol.ok))
    for i, (st, us, ts) in enumerate(signals):
        exact = [_integral(st, us, t) for t in ts]
        np.testing.assert_allclose(sol.ys[i, : len(ts), 0], exact, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------- one program, any number
class _Compiles(logging.Handler):
    """Names of the programs jax compiles while ``jax_log_compiles`` is on."""

    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split()[1])

    def __enter__(self):
        logging.getLogger("jax").addHandler(self)
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc):
        jax.config.update("jax_log_compiles", False)
        logging.getLogger("jax").removeHandler(self)


def _fit(data, key=0):
    return fit(
        _model(key),
        data,
        SingleShooting(options=SolverOptions(rtol=1e-6, atol=1e-6)),
        [Adam(lr=0.01, steps=3)],
        key=jr.key(0),
        chunk=3,
        verbose=False,
    )


@pytest.fixture(scope="module")
def compiled():
    """Programs compiled by fits on 2 experiments, on 6, and on another 6 of the same shape (the
    shape-independent small programs compiled beforehand, on 4)."""
    lengths = (9, 12, 10, 12, 8, 11)
    _fit(_experiments(lengths[:4], seed=1, mask_one=False))
    out = {}
    for label, lens, seed in (("two", lengths[:2], 2), ("six", lengths, 3), ("again", lengths, 4)):
        data = _experiments(lens, seed=seed, mask_one=False)
        with _Compiles() as c:
            res = _fit(data)
        assert np.all(np.isfinite(res.history["loss"]))
        out[label] = Counter(c.names)
    return out


def test_fit_compiles_nothing_per_experiment(compiled):
    two, six = compiled["two"], compiled["six"]
    assert two["chunk_steps"] == 1, two  # one training program ...
    assert six == two  # ... and the same programs for 6 experiments as for 2


def test_a_second_dataset_of_the_same_shape_compiles_nothing(compiled):
    assert sum(compiled["again"].values()) == 0, compiled["again"]
