"""The one host loop (ude.train.loop) behind fit and fit_ensemble: ensembles checkpoint, resume
bit for bit, stop on request, call back and stop early per member as single fits do; the named
carry (FitState) and the typed extra parameters."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import noisy_lv_members

from ude.model import UDE, partition
from ude.nn import MLP
from ude.physics import LotkaVolterra
from ude.solve import SolverOptions, solve
from ude.train import (
    LBFGS,
    Adam,
    Collocation,
    FitState,
    LearnedInitialStates,
    MultipleShooting,
    SegmentStarts,
    SingleShooting,
    fit,
    fitted_initial_states,
    initial_states,
)
from ude.train.ensemble import (
    EnsembleFitResult,
    fit_ensemble,
    member,
    n_members as n_members_of,
)

TRUTH = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
KNOWN = TRUTH.keep("growth", "death")
N = 3
CHUNK = 5
# Collocation needs no solve: the vmapped Adam and L-BFGS programs compile in seconds
STAGES = [[Adam(lr=lr, steps=15) for lr in (0.05, 0.02, 0.1)], LBFGS(steps=10)]


def _make(key, scale=1.0):
    return UDE(KNOWN, MLP(2, 2, width=4, depth=1, output_scale=scale, key=key))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def assert_identical(a: EnsembleFitResult, b: EnsembleFitResult):
    """Bit for bit: models, extra, final losses, every history column, rejected, stopped."""
    for x, y in zip(_leaves(a.models), _leaves(b.models), strict=True):
        assert np.array_equal(x, y)
    for x, y in zip(_leaves(a.extra), _leaves(b.extra), strict=True):
        assert np.array_equal(x, y)
    assert np.array_equal(a.final_losses, b.final_losses)
    assert a.history.keys() == b.history.keys()
    for k in a.history:
        assert a.history[k].dtype == b.history[k].dtype, k
        assert np.array_equal(a.history[k], b.history[k], equal_nan=k == "loss"), k
    assert np.array_equal(a.rejected, b.rejected) and np.array_equal(a.stopped, b.stopped)


@pytest.fixture(scope="module")
def setup():
    clean, data = noisy_lv_members(N)
    models = eqx.filter_vmap(_make)(jr.split(jr.key(0), N))
    return dict(clean=clean, data=data, models=models, strategy=Collocation(l2=1e-4))


def _run(s, **kw):
    return fit_ensemble(
        s["models"],
        s["data"],
        s["strategy"],
        STAGES,
        key=jr.key(1),
        chunk=CHUNK,
        verbose=False,
        **kw,
    )


@pytest.fixture(scope="module")
def full(setup):
    return _run(setup)


# ---------------------------------------------------------------- ensembles: checkpoints, resume
def test_ensemble_stopped_by_request_resumes_bit_for_bit(setup, full, tmp_path):
    polls = []

    def stop():
        polls.append(1)
        return len(polls) == 2  # after the second chunk of the Adam stage

    with pytest.raises(KeyboardInterrupt, match="stopped at step 10; checkpoint written"):
        _run(setup, checkpoint_dir=tmp_path, should_stop=stop)
    resumed = _run(setup, checkpoint_dir=tmp_path, resume=True)
    assert_identical(resumed, full)
    # a finished checkpoint gives the same result again without training
    assert_identical(_run(setup, checkpoint_dir=tmp_path, resume=True), full)


def test_ensemble_killed_across_a_stage_boundary_resumes_bit_for_bit(setup, full, tmp_path):
    class Killed(Exception):
        pass

    seen = []

    def boom(stage, step, models, losses):
        seen.append((stage, step, np.shape(losses), n_members_of(models)))
        if stage == 1:  # the first L-BFGS chunk; the last checkpoint is the stage's start (15)
            raise Killed

    with pytest.raises(Killed):
        _run(setup, checkpoint_dir=tmp_path, checkpoint_every=10, callback=boom)
    assert seen[0] == (0, 5, (N,), N) and seen[-1][0] == 1
    resumed = _run(setup, checkpoint_dir=tmp_path, checkpoint_every=10, resume=True)
    assert_identical(resumed, full)


def test_ensemble_refuses_a_foreign_checkpoint(setup, tmp_path):
    s = setup
    fit(
        member(s["models"], 0),
        member(s["data"], 0),
        s["strategy"],
        [Adam(lr=0.05, steps=5)],
        key=jr.key(0),
        chunk=CHUNK,
        verbose=False,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="different"):
        fit_ensemble(
            s["models"],
            s["data"],
            s["strategy"],
            [Adam(lr=0.05, steps=5)],
            key=jr.key(0),
            chunk=CHUNK,
            verbose=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )


# ---------------------------------------------------------------- early stopping
@pytest.fixture(scope="module")
def early_setup(setup):
    """Members start at the known part alone (zero network output). Member 0 is validated on the
    known part's own trajectory, which training can only move away from: it stops early. Members
    1 and 2 are validated on their training data, which training improves."""
    clean, data = setup["clean"], setup["data"]
    models = eqx.filter_vmap(lambda k: _make(k, scale=0.0))(jr.split(jr.key(0), N))
    known_ys = solve(
        KNOWN, clean.ys[:, 0], clean.ts, SolverOptions("dopri8", rtol=1e-12, atol=1e-12)
    ).ys
    valid = eqx.tree_at(lambda d: d.ys, data, data.ys.at[0].set(known_ys))
    return dict(
        models=models,
        data=data,
        valid=valid,
        strategy=Collocation(),
        stages=[Adam(lr=0.05, steps=40)],
    )


def _early(s, **kw):
    return fit_ensemble(
        s["models"],
        s["data"],
        s["strategy"],
        s["stages"],
        key=jr.key(2),
        chunk=CHUNK,
        verbose=False,
        validation=s["valid"],
        patience=2,
        **kw,
    )


def test_ensemble_early_stopping_per_member_matches_separate_fits(early_setup):
    s = early_setup
    ens = _early(s)
    assert ens.stopped[:, 0].tolist() == ["early_stop", "steps", "steps"]
    assert not ens.history["active"][0, -1] and ens.history["active"][1:].all()
    for i in range(N):
        one = fit(
            member(s["models"], i),
            member(s["data"], i),
            s["strategy"],
            s["stages"],
            key=jr.split(jr.key(2), N)[i],
            chunk=CHUNK,
            verbose=False,
            validation=member(s["valid"], i),
            patience=2,
        )
        m = ens.member(i)
        assert m.stopped == one.stopped
        assert len(m.history["loss"]) == len(one.history["loss"])
        np.testing.assert_allclose(m.history["loss"], one.history["loss"], rtol=1e-9)
        for x, y in zip(_leaves(m.model), _leaves(one.model), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_early_stopping_state_is_checkpointed(early_setup, tmp_path):
    """A resume continues the early-stopping bookkeeping (best state, chunks without
    improvement), so it too ends exactly where an uninterrupted run ends. Member 0's validation
    loss is best after chunk 3 and the stop comes after chunk 5: stopped after chunk 4, a resume
    that forgot the best loss would take chunk 5 as its best and train on."""
    s = early_setup
    ref = _early(s)
    assert ref.history["active"][0].sum() == 25  # 5 chunks: best after the 3rd, patience 2
    polls = []
    with pytest.raises(KeyboardInterrupt):
        _early(s, checkpoint_dir=tmp_path, should_stop=lambda: polls.append(1) or len(polls) == 4)
    assert_identical(_early(s, checkpoint_dir=tmp_path, resume=True), ref)
    # the same for a single fit
    m, d, v = member(s["models"], 0), member(s["data"], 0), member(s["valid"], 0)
    kw = dict(key=jr.key(2), chunk=CHUNK, verbose=False, validation=v, patience=2)
    one = fit(m, d, s["strategy"], s["stages"], **kw)
    polls.clear()
    with pytest.raises(KeyboardInterrupt):
        fit(
            m,
            d,
            s["strategy"],
            s["stages"],
            checkpoint_dir=tmp_path / "one",
            should_stop=lambda: polls.append(1) or len(polls) == 4,
            **kw,
        )
    again = fit(
        m, d, s["strategy"], s["stages"], checkpoint_dir=tmp_path / "one", resume=True, **kw
    )
    assert again.stopped == one.stopped == ["early_stop"]
    for k in one.history:
        assert np.array_equal(again.history[k], one.history[k])
    for x, y in zip(_leaves(again.model), _leaves(one.model), strict=True):
        assert np.array_equal(x, y)


# ---------------------------------------------------------------- the named carry, typed extras
def test_fit_state_is_a_named_module_in_checkpoint_order():
    names = [f.name for f in FitState.__dataclass_fields__.values()]
    # the order of the leaves in checkpoint files written before the carry had names
    assert names == ["params", "extra", "opt_state", "key", "lr_scale", "finished", "prev_loss"]


def test_strategies_return_typed_extras_and_fitted_initial_states_reads_them(setup):
    data = member(setup["data"], 0)
    mask = np.ones(data.ys.shape, bool)
    mask[:, 0, 1] = False  # y unobserved at the start: its initial state is learned
    part = eqx.tree_at(lambda d: d.mask, data, jnp.asarray(mask))
    model = _make(jr.key(0))
    learned = SingleShooting().init(model, part)
    assert isinstance(learned, LearnedInitialStates)
    np.testing.assert_array_equal(fitted_initial_states(part, learned), learned.y0)
    starts = MultipleShooting(segments=3).init(model, part)
    assert isinstance(starts, SegmentStarts) and starts.starts.shape == (1, 3, 2)
    expect = jnp.where(part.mask[:, 0, :], part.ys[:, 0, :], starts.starts[:, 0, :])
    np.testing.assert_array_equal(fitted_initial_states(part, starts), expect)
    assert float(fitted_initial_states(part, starts)[0, 1]) == float(starts.starts[0, 0, 1])
    np.testing.assert_array_equal(fitted_initial_states(part, None), initial_states(part))
    # the dicts of earlier versions are read as the same
    np.testing.assert_array_equal(fitted_initial_states(part, {"y0": learned.y0}), learned.y0)
    np.testing.assert_array_equal(fitted_initial_states(part, {"starts": starts.starts}), expect)
    assert SingleShooting(learn_y0=False).init(model, part) is None


def test_learned_initial_states_train_and_resume_through_checkpoints(setup, tmp_path):
    """A typed extra goes through the optimiser, the carry and a checkpoint like any parameter."""
    data = member(setup["data"], 0)
    strategy = SingleShooting(options=SolverOptions("tsit5", rtol=1e-6, atol=1e-6), learn_y0=True)
    kw = dict(key=jr.key(0), chunk=CHUNK, verbose=False)
    ref = fit(_make(jr.key(0)), data, strategy, [Adam(lr=0.02, steps=10)], **kw)
    assert isinstance(ref.extra, LearnedInitialStates)
    assert not np.array_equal(ref.extra.y0, initial_states(data))  # it learned
    with pytest.raises(KeyboardInterrupt):
        fit(
            _make(jr.key(0)),
            data,
            strategy,
            [Adam(lr=0.02, steps=10)],
            checkpoint_dir=tmp_path,
            should_stop=lambda: True,
            **kw,
        )
    again = fit(
        _make(jr.key(0)),
        data,
        strategy,
        [Adam(lr=0.02, steps=10)],
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    assert np.array_equal(again.extra.y0, ref.extra.y0)
    for x, y in zip(
        _leaves(partition(again.model)[0]), _leaves(partition(ref.model)[0]), strict=True
    ):
        assert np.array_equal(x, y)
