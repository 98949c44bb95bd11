"""Training: losses, strategies, stages, rejection of bad steps, checkpoints and resume."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.data import Dataset
from ude.model import UDE, partition
from ude.nn import MLP
from ude.physics import LotkaVolterra
from ude.solve import SolverOptions, solve
from ude.train import (
    LBFGS,
    Adam,
    Collocation,
    MultipleShooting,
    SegmentStarts,
    SingleShooting,
    WindowMinibatch,
    fit,
    growing_horizon,
    l2_penalty,
    loss_value,
    smooth_derivatives,
    squared_error,
)

TRUTH = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
OPTS = SolverOptions("tsit5", rtol=1e-7, atol=1e-7)


def _data(n_traj=1, t1=1.0, n=11, noise=0.0, mask=None):
    ts = jnp.linspace(0.0, t1, n)
    y0 = jnp.array([[0.44249296, 4.6280594], [1.0, 2.0], [2.0, 1.0]])[:n_traj]
    ys = solve(TRUTH, y0, ts, SolverOptions("dopri8", rtol=1e-12, atol=1e-12)).ys
    noisy = ys + noise * jr.normal(jr.key(7), ys.shape)
    m = jnp.ones(ys.shape, bool) if mask is None else mask
    return Dataset(ts=ts, ys=jnp.where(m, noisy, 0.0), mask=m, state_names=("x", "y"), y_true=ys)


def _model(key=0):
    net = MLP(2, 2, width=4, depth=1, activation="tanh", key=jr.key(key))
    return UDE(TRUTH.keep("growth", "death"), net)


def _params(model):
    return jax.tree_util.tree_leaves(partition(model)[0])


@pytest.fixture(scope="module")
def data():
    return _data()


# ---------------------------------------------------------------- losses
def test_squared_error_masks_and_weights_match_numpy():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    mask = rng.random((2, 5, 3)) > 0.3
    w = np.array([1.0, 2.0, 0.5])
    pred_with_nan = np.where(mask, pred, np.nan)  # unobserved entries must not leak in
    sse = float(
        squared_error(jnp.asarray(pred_with_nan), target, jnp.asarray(mask), jnp.asarray(w))
    )
    expect = np.sum(np.where(mask, (pred - target) ** 2 * w, 0.0))
    assert sse == pytest.approx(expect, rel=1e-12)
    mse = float(squared_error(pred, target, mask, reduction="mse"))
    assert mse == pytest.approx(
        np.sum(np.where(mask, (pred - target) ** 2, 0)) / mask.sum(), rel=1e-12
    )
    with pytest.raises(ValueError, match="reduction"):
        squared_error(pred, target, reduction="max")


def test_l2_penalty_is_the_papers_mean_square_of_weights():
    model = _model().known.set_trainable("gamma")
    model = UDE(model, MLP(2, 2, width=3, depth=1, key=jr.key(1)))
    ws = [
        model.correction.layers[0].weight,
        model.correction.layers[0].bias,
        model.correction.layers[1].weight,
        model.correction.layers[1].bias,
    ]
    n = sum(w.size for w in ws)
    expect = 1e-4 * sum(float(jnp.sum(w**2)) for w in ws) / n  # gamma (physics) is not penalised
    assert float(l2_penalty(model, 1e-4)) == pytest.approx(expect, rel=1e-12)


def test_truth_scores_zero_on_clean_data(data):
    assert loss_value(UDE(TRUTH), data, SingleShooting(options=OPTS)) < 1e-10


def test_one_segment_multiple_shooting_equals_single_shooting(data):
    model = _model()
    ss = loss_value(model, data, SingleShooting(options=OPTS))
    ms = MultipleShooting(options=OPTS, segments=1)
    extra = ms.init(model, data)
    loss, ok = ms.loss(model, extra, data)
    assert bool(ok)
    assert float(loss) == pytest.approx(ss, rel=1e-9)


def test_multiple_shooting_counts_every_sample_once(data):
    # with starts on the true trajectory and the true model, the loss is exactly zero; with a
    # constant offset in the data, each of the n samples contributes once
    ms = MultipleShooting(options=OPTS, segments=4)
    shifted = eqx.tree_at(lambda d: d.ys, data, data.ys + 0.1)
    extra = SegmentStarts(starts=data.y_true[:, np.array([0, 2, 5, 8]), :])
    loss, _ = ms.loss(UDE(TRUTH), extra, shifted)
    assert float(loss) == pytest.approx(data.ys.size * 0.01, rel=1e-6)


# ---------------------------------------------------------------- strategies decrease the loss
def test_smooth_derivatives_match_analytic_ones():
    ts = jnp.linspace(0.0, 3.0, 31)
    ys = jnp.stack([jnp.sin(ts), ts**2], axis=-1)[None]
    mask = jnp.ones(ys.shape, bool).at[0, 5, 0].set(False)  # a missing value is simply skipped
    vals, ders, valid = smooth_derivatives(ts, ys, mask)
    assert bool(valid.all())
    # a local quadratic is exact for t^2; for sin the error is O(h^2) (h = 0.4), worst at the edges
    np.testing.assert_allclose(ders[0, :, 1], 2 * ts, atol=1e-8)
    np.testing.assert_allclose(ders[0, :, 0], jnp.cos(ts), atol=2e-2)
    np.testing.assert_allclose(vals[0, :, 0], jnp.sin(ts), atol=1e-3)


def test_collocation_scores_truth_near_zero(data):
    d = _data(t1=1.0, n=41)
    coll = Collocation()
    truth = float(coll.loss(UDE(TRUTH), None, d)[0])
    wrong = float(coll.loss(UDE(TRUTH.keep("growth", "death")), None, d)[0])
    assert truth < 1e-3 * wrong


@pytest.mark.parametrize("name", ["single", "multiple", "minibatch", "growing", "collocation"])
def test_each_strategy_decreases_the_loss(name):
    if name == "minibatch":
        d = _data(n_traj=3, n=11)
        strategy = WindowMinibatch(options=OPTS, window=5, batch=4)
        stages = [Adam(lr=0.02, steps=40)]
    elif name == "multiple":
        # scenario-2-like: y seen at three times only
        mask = np.ones((1, 11, 2), bool)
        mask[0, :, 1] = False
        mask[0, [0, 5, 10], 1] = True
        d = _data(mask=jnp.asarray(mask))
        strategy = MultipleShooting(options=OPTS, segments=3, continuity=10.0)
        stages = [Adam(lr=0.02, steps=40)]
    elif name == "collocation":
        d = _data()
        strategy = Collocation()
        stages = [Adam(lr=0.02, steps=40)]
    elif name == "growing":
        d = _data()
        strategy = SingleShooting(options=OPTS)
        stages = growing_horizon(Adam(lr=0.02, steps=20), [0.5, None])
    else:
        d = _data()
        strategy = SingleShooting(options=OPTS)
        stages = [Adam(lr=0.02, steps=40)]
    model = _model()
    before = loss_value(model, d, strategy)
    res = fit(model, d, strategy, stages, key=jr.key(0), chunk=10, verbose=False)
    assert res.final_loss < 0.5 * before
    assert len(res.history["loss"]) == sum(s.steps for s in stages)
    assert res.history["accepted"].all()
    assert all(np.isfinite(p).all() for p in _params(res.model))


def test_lbfgs_recovers_physics_parameters():
    d = _data(t1=2.0, n=11)
    model = UDE(
        TRUTH.with_params(beta=0.5, delta=1.2).set_trainable("beta", "delta", positive=True)
    )
    res = fit(
        model,
        d,
        SingleShooting(options=SolverOptions("tsit5", rtol=1e-10, atol=1e-10)),
        [LBFGS(steps=100, gtol=1e-6)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
    )
    assert res.stopped == ["converged"]
    assert len(res.history["loss"]) < 100
    assert float(res.model.known.p("beta")) == pytest.approx(0.9, rel=1e-5)
    assert float(res.model.known.p("delta")) == pytest.approx(0.8, rel=1e-5)
    assert float(res.model.known.p("alpha")) == 1.3  # fixed parameters do not move


# ---------------------------------------------------------------- robustness
def test_failed_solves_are_rejected_and_parameters_untouched(data):
    model = _model()
    strategy = SingleShooting(options=SolverOptions("tsit5", rtol=1e-7, atol=1e-7, max_steps=2))
    res = fit(
        model, data, strategy, [Adam(lr=0.1, steps=6)], key=jr.key(0), chunk=10, verbose=False
    )
    assert not res.history["accepted"].any()
    assert res.rejected == [6]
    np.testing.assert_allclose(res.history["lr_scale"], 0.5 ** np.arange(1, 7))
    for a, b in zip(_params(model), _params(res.model), strict=True):
        assert np.array_equal(a, b)


def test_nan_producing_steps_are_rejected(data):
    # a network whose output overflows for large weights: lr 1e4 throws the weights there
    model = _model()
    res = fit(
        model,
        data,
        SingleShooting(options=OPTS),
        [Adam(lr=1e4, steps=30, backoff=0.1)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
    )
    assert (~res.history["accepted"]).sum() >= 1
    assert all(np.isfinite(p).all() for p in _params(res.model))
    assert np.isfinite(res.final_loss) or res.final_loss == np.inf


def test_stage_validation_errors():
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=-0.1)
    with pytest.raises(ValueError, match="schedule"):
        Adam(schedule="linear")
    with pytest.raises(ValueError, match="steps"):
        LBFGS(steps=-1)
    with pytest.raises(ValueError, match="segments"):
        MultipleShooting(segments=0)
    with pytest.raises(ValueError, match="stages"):
        fit(_model(), _data(), SingleShooting(), [], key=jr.key(0))


# ---------------------------------------------------------------- checkpoints
class _Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path, data):
    strategy = SingleShooting(options=OPTS)
    # two stages of different lengths and schedules: resuming crosses a stage boundary
    stages = [Adam(lr=0.02, steps=30), Adam(lr=0.01, steps=20, schedule="cosine")]
    kw = dict(key=jr.key(3), chunk=10, verbose=False)
    full = fit(_model(), data, strategy, stages, **kw)

    def boom(stage, step, model, loss):
        if step >= 40:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(
            _model(),
            data,
            strategy,
            stages,
            checkpoint_dir=tmp_path,
            checkpoint_every=10,
            callback=boom,
            **kw,
        )
    resumed = fit(
        _model(),
        data,
        strategy,
        stages,
        checkpoint_dir=tmp_path,
        checkpoint_every=10,
        resume=True,
        **kw,
    )
    for a, b in zip(_params(full.model), _params(resumed.model), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])
    assert resumed.final_loss == full.final_loss
    # a finished checkpoint resumes to the same result without training again
    again = fit(_model(), data, strategy, stages, checkpoint_dir=tmp_path, resume=True, **kw)
    assert again.final_loss == full.final_loss


def test_resume_refuses_a_foreign_checkpoint(tmp_path, data):
    strategy = SingleShooting(options=OPTS)
    fit(
        _model(),
        data,
        strategy,
        [Adam(lr=0.02, steps=5)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="different"):
        fit(
            _model(),
            data,
            strategy,
            [Adam(lr=0.02, steps=7)],
            key=jr.key(0),
            chunk=10,
            verbose=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )


TRACES = []


class _CountingShooting(SingleShooting):
    def loss(self, model, extra, data, key=None):
        TRACES.append(1)  # runs at trace time only
        return super().loss(model, extra, data, key)


def test_chunk_program_is_compiled_once_per_stage_kind(data):
    strategy = _CountingShooting(options=OPTS, l2=1e-3)
    fit(
        _model(),
        data,
        strategy,
        [Adam(lr=0.01, steps=4), Adam(lr=0.02, steps=4)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
    )
    first = len(TRACES)
    # new learning rate, length, schedule horizon, initial weights, tolerance, L2 weight: no retrace
    # (an L2 weight of 0 leaves the penalty out of the program: that one is a program of its own)
    assert SingleShooting(l2=0.0).l2 is None and SingleShooting(l2=1e-4).l2 is not None
    strategy2 = _CountingShooting(options=SolverOptions("tsit5", rtol=1e-6, atol=1e-6), l2=1e-4)
    fit(
        _model(1), data, strategy2, [Adam(lr=0.03, steps=8)], key=jr.key(1), chunk=10, verbose=False
    )
    assert len(TRACES) == first


def test_forward_mode_adjoint_trains_like_reverse_mode(data):
    results = {}
    for adjoint in ("recursive", "forward"):
        strategy = SingleShooting(
            options=SolverOptions("tsit5", rtol=1e-7, atol=1e-7, adjoint=adjoint)
        )
        results[adjoint] = fit(
            _model(),
            data,
            strategy,
            [Adam(lr=0.02, steps=5)],
            key=jr.key(0),
            chunk=10,
            verbose=False,
        )
    for a, b in zip(
        _params(results["recursive"].model), _params(results["forward"].model), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_early_stopping_on_a_validation_window_keeps_the_best_parameters(data):
    # the validation data come from the known part alone, which the zero-initialised model starts
    # at: training towards the real data can only make the validation loss worse
    known = TRUTH.keep("growth", "death")
    model = UDE(known, MLP(2, 2, width=4, depth=1, output_scale=0.0, key=jr.key(0)))
    valid = Dataset(
        ts=data.ts, ys=solve(known, data.ys[:, 0], data.ts, OPTS).ys, state_names=("x", "y")
    )
    strategy = SingleShooting(options=OPTS)
    seen = []
    res = fit(
        model,
        data,
        strategy,
        [Adam(lr=0.02, steps=100)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
        validation=valid,
        patience=2,
        callback=lambda s, step, m, loss: seen.append(loss_value(m, valid, strategy)),
    )
    assert res.stopped == ["early_stop"]
    best = int(np.argmin(seen))
    assert len(seen) == best + 3  # stopped after two chunks without improvement
    assert len(res.history["loss"]) == 10 * len(seen)
    assert loss_value(res.model, valid, strategy) == pytest.approx(seen[best], rel=1e-12)


def test_an_lbfgs_stage_compiles_its_program_once(data):
    """optax's L-BFGS state starts weakly typed; stages must not recompile after the first chunk."""
    from ude.train.step import run_chunk

    model = UDE(
        TRUTH.keep("growth", "death"), MLP(2, 2, width=3, depth=1, key=jr.key(0))
    )  # own shapes
    before = run_chunk._cached._cache_size()
    res = fit(
        model,
        data,
        SingleShooting(options=OPTS),
        [LBFGS(steps=30)],
        key=jr.key(0),
        chunk=10,
        verbose=False,
    )
    assert len(res.history["step"]) > 10  # more than one chunk ran
    assert run_chunk._cached._cache_size() == before + 1


# ---------------------------------------------------------------- Stepper (a step per call)
@pytest.mark.parametrize("stage", [Adam(lr=0.02, steps=7), LBFGS(steps=7)], ids=["adam", "lbfgs"])
def test_stepper_takes_the_same_steps_as_fit(data, stage):
    from ude.train import Stepper

    strategy = SingleShooting(options=OPTS)
    ref = fit(_model(), data, strategy, [stage], key=jr.key(0), chunk=10, verbose=False)
    stepper = Stepper(_model(), data, strategy, stage, key=jr.key(0), steps_per_call=3)
    losses = np.concatenate([np.asarray(stepper.step()) for _ in range(4)])  # 12 > 7 steps
    assert stepper.steps_done == 7
    n = len(ref.history["loss"])  # L-BFGS may converge before its 7 steps
    np.testing.assert_allclose(losses[:n], ref.history["loss"], rtol=1e-12)
    for a, b in zip(_params(stepper.model), _params(ref.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_stepper_state_can_be_saved_and_rewound(data):
    from ude.train import Stepper

    stepper = Stepper(
        _model(), data, SingleShooting(options=OPTS), Adam(lr=0.02, steps=10), key=jr.key(0)
    )
    saved, done = list(stepper.state), stepper.steps_done
    first = [float(stepper.step()[0]) for _ in range(3)]
    stepper.state, stepper.steps_done = saved, done
    assert [float(stepper.step()[0]) for _ in range(3)] == first
    with pytest.raises(ValueError, match="steps_per_call"):
        Stepper(
            _model(), data, SingleShooting(options=OPTS), Adam(), key=jr.key(0), steps_per_call=0
        )
