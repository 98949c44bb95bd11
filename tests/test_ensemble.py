"""Ensembles: N vmapped fits equal N separate fits, a diverging member leaves the others alone,
per-member histories, one compiled program per stage kind, stacking helpers, uncertainty reports."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import noisy_lv_members

from ude.compile_cache import CompileLog
from ude.data import Dataset, RelativeMeanNoise
from ude.discovery import STLSQ, PolynomialLibrary
from ude.discovery.ensemble import ensemble_discover
from ude.evaluate import trajectory_spread
from ude.model import UDE
from ude.nn import MLP, AbstractCorrection
from ude.physics import LotkaVolterra
from ude.solve import SolverOptions, solve
from ude.train import LBFGS, Adam, Collocation, SingleShooting, fit
from ude.train.ensemble import (
    broadcast,
    fit_ensemble,
    member,
    n_members,
    resample_noise,
    stack,
    unstack,
)

TRUTH = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
N = 3
LR = 0.05
CHUNK = 10
# The comparisons with separate fits use Collocation (no ODE solve): the vmapped Adam and L-BFGS
# programs then compile in seconds. The diverging-solver case uses the paper's adaptive Tsit5;
# max_steps bounds the work of the diverging member's blown-up solves.
OPTS = SolverOptions("tsit5", rtol=1e-7, atol=1e-7, max_steps=256)


def _stages(lrs):
    # Adam: two chunks; L-BFGS: one chunk (steps == chunk)
    return [[Adam(lr=lr, steps=20) for lr in lrs], LBFGS(steps=10)]


def _make(key):
    return UDE(TRUTH.keep("growth", "death"), MLP(2, 2, width=4, depth=1, key=key))


def _arrays(tree):
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(_arrays(a), _arrays(b), strict=False))


@pytest.fixture(scope="module")
def setup():
    clean, data = noisy_lv_members(N)
    init_keys = jr.split(jr.key(0), N)
    models = eqx.filter_vmap(_make)(init_keys)
    # per-member strategies, stages and data: every stacked path in one compiled program
    strategies = [Collocation(l2=1e-4) for _ in range(N)]
    fit_keys = jr.split(jr.key(1), N)
    return dict(
        clean=clean,
        data=data,
        models=models,
        init_keys=init_keys,
        strategies=strategies,
        fit_keys=fit_keys,
    )


@pytest.fixture(scope="module")
def base(setup):
    s = setup
    return fit_ensemble(
        s["models"],
        s["data"],
        s["strategies"],
        _stages([LR] * N),
        key=s["fit_keys"],
        chunk=CHUNK,
        verbose=False,
    )


@pytest.fixture(scope="module")
def separate(setup):
    s = setup
    return [
        fit(
            _make(s["init_keys"][i]),
            member(s["data"], i),
            s["strategies"][i],
            [Adam(lr=LR, steps=20), LBFGS(steps=10)],
            key=s["fit_keys"][i],
            chunk=CHUNK,
            verbose=False,
        )
        for i in range(N)
    ]


def _huge(data, i):
    """Member ``i``'s data with one huge value (finite, but its square is not)."""
    return eqx.tree_at(lambda d: d.ys, data, data.ys.at[i, 0, 5, 0].set(1e200))


@pytest.fixture(scope="module")
def poisoned(setup, base):
    """Member 1 with lr = 1e4, member 2 with a huge value in its data; compiles counted."""
    s = setup
    with CompileLog() as handler:
        res = fit_ensemble(
            s["models"],
            _huge(s["data"], 2),
            s["strategies"],
            _stages([LR, 1e4, LR]),
            key=s["fit_keys"],
            chunk=CHUNK,
            verbose=False,
        )
    return res, handler.names


# ---------------------------------------------------------------- ensemble == separate fits
def test_ensemble_equals_separate_fits(base, separate):
    for i, r in enumerate(separate):
        # vmapped and unbatched programs may round differently in the last bits; L-BFGS's line
        # search amplifies that a little, hence 1e-9 rather than machine precision
        assert _max_diff(member(base.models, i), r.model) < 1e-9
        assert base.final_losses[i] == pytest.approx(r.final_loss, rel=1e-9)
        m = base.member(i)
        np.testing.assert_allclose(m.history["loss"], r.history["loss"], rtol=1e-9)
        np.testing.assert_array_equal(m.history["accepted"], r.history["accepted"])
        np.testing.assert_array_equal(m.history["stage"], r.history["stage"])
        np.testing.assert_array_equal(m.history["step"], r.history["step"])
        assert m.stopped == r.stopped and m.rejected == r.rejected
        assert m.final_loss == pytest.approx(r.final_loss, rel=1e-9)


def test_per_member_histories(base):
    h = base.history
    assert h["loss"].shape == h["accepted"].shape == h["active"].shape == (N, 30)
    np.testing.assert_array_equal(h["step"], np.arange(30))
    np.testing.assert_array_equal(h["stage"], [0] * 20 + [1] * 10)
    assert base.final_losses.shape == (N,) and base.ok.all()
    assert base.rejected.shape == base.stopped.shape == (N, 2)
    # members differ (own data, own init) and each one's loss falls
    assert len(set(np.round(h["loss"][:, 0], 10))) == N
    assert np.all(base.final_losses < h["loss"][:, 0])
    assert n_members(base.models) == N


def test_bad_members_do_not_touch_the_others(setup, base, poisoned):
    res, _ = poisoned
    # member 0 is the same as without its misbehaving neighbours
    assert _max_diff(member(res.models, 0), member(base.models, 0)) < 1e-12
    np.testing.assert_allclose(res.history["loss"][0], base.history["loss"][0], rtol=1e-12)
    assert res.final_losses[0] == pytest.approx(base.final_losses[0], rel=1e-12)
    # member 1 (lr 1e4) went its own way
    assert _max_diff(member(res.models, 1), member(base.models, 1)) > 1.0
    # member 2's loss is never finite: every step rejected, parameters untouched, lr backed off
    assert not np.isfinite(res.history["loss"][2]).any()
    assert not res.history["accepted"][2].any()
    assert res.rejected[2].tolist() == [20, 10] and res.rejected[0].tolist() == [0, 0]
    assert res.history["lr_scale"][2, 19] == pytest.approx(0.5**20)
    assert _max_diff(member(res.models, 2), member(setup["models"], 2)) == 0.0
    assert not res.ok[2] and res.ok[:2].all()


def test_new_hyper_parameter_values_do_not_recompile(poisoned):
    _, compiled = poisoned
    assert not any("_chunk_impl" in c for c in compiled), compiled


def test_a_diverging_solve_does_not_stop_the_others(setup):
    """The paper's adaptive solver: member 1 (lr 1e4) blows up, its solves fail (max_steps or
    non-finite) and are rejected, while the vmapped solver loop runs the others to the end."""
    s = setup
    strategy = SingleShooting(options=OPTS)

    def run(lrs):
        return fit_ensemble(
            s["models"],
            s["data"],
            strategy,
            [[Adam(lr=lr, steps=6) for lr in lrs]],
            key=s["fit_keys"],
            chunk=6,
            verbose=False,
        )

    good, bad = run([LR] * N), run([LR, 1e4, LR])
    assert bad.rejected[1, 0] > 0 and bad.history["lr_scale"][1, -1] < 1.0
    for i in (0, 2):
        assert _max_diff(member(bad.models, i), member(good.models, i)) < 1e-12
        np.testing.assert_allclose(bad.history["loss"][i], good.history["loss"][i], rtol=1e-12)
    assert good.rejected.sum() == 0 and bad.rejected[[0, 2]].sum() == 0


# ---------------------------------------------------------------- argument checks
def test_fit_ensemble_checks_its_arguments(setup):
    s = setup
    with pytest.raises(ValueError, match="stages\\[0\\] has 2 entries for 3 members"):
        fit_ensemble(s["models"], s["data"], s["strategies"], [[Adam(), Adam()]], key=jr.key(0))
    with pytest.raises(ValueError, match="data has 2 members"):
        fit_ensemble(
            s["models"], member(s["data"], slice(0, 2)), s["strategies"], [Adam()], key=jr.key(0)
        )
    with pytest.raises(ValueError, match="key must be"):
        fit_ensemble(s["models"], s["data"], s["strategies"], [Adam()], key=jr.split(jr.key(0), 2))
    with pytest.raises(ValueError, match="share kind, steps and horizon"):
        fit_ensemble(
            s["models"],
            s["data"],
            s["strategies"],
            [[Adam(steps=1), Adam(steps=2), Adam(steps=1)]],
            key=jr.key(0),
        )
    with pytest.raises(ValueError, match="strategy has 2 entries"):
        fit_ensemble(s["models"], s["data"], s["strategies"][:2], [Adam()], key=jr.key(0))
    with pytest.raises(ValueError, match="stages is empty"):
        fit_ensemble(s["models"], s["data"], s["strategies"], [], key=jr.key(0))


# ---------------------------------------------------------------- stacking helpers
def test_stack_unstack_round_trip():
    ms = [_make(k) for k in jr.split(jr.key(3), 4)]
    st = stack(ms)
    assert n_members(st) == 4
    assert st.correction.layers[0].weight.shape == (4,) + ms[0].correction.layers[0].weight.shape
    for a, b in zip(unstack(st), ms, strict=True):
        assert _max_diff(a, b) == 0.0
    assert _max_diff(stack(ms), eqx.filter_vmap(_make)(jr.split(jr.key(3), 4))) == 0.0
    b = broadcast(ms[0], 2)
    assert _max_diff(member(b, 1), ms[0]) == 0.0
    with pytest.raises(ValueError, match="member 1 differs"):
        stack(
            [ms[0], UDE(TRUTH.keep("growth", "death"), MLP(2, 2, width=3, depth=1, key=jr.key(0)))]
        )
    with pytest.raises(ValueError, match="empty"):
        stack([])


def test_resample_noise_draws_one_noise_per_key(setup):
    clean = setup["clean"]
    keys = jr.split(jr.key(9), 3)
    st = resample_noise(clean, RelativeMeanNoise(0.1), keys)
    assert st.ys.shape == (3,) + clean.ys.shape
    for i in range(3):
        np.testing.assert_allclose(
            st.ys[i], RelativeMeanNoise(0.1).apply(clean.y_true, keys[i]), rtol=1e-14
        )
    levels = resample_noise(
        clean, [RelativeMeanNoise(0.0), RelativeMeanNoise(0.1), RelativeMeanNoise(0.2)], keys
    )
    np.testing.assert_allclose(levels.ys[0], clean.y_true, rtol=1e-14)
    np.testing.assert_allclose(
        levels.ys[2], RelativeMeanNoise(0.2).apply(clean.y_true, keys[2]), rtol=1e-14
    )
    with pytest.raises(ValueError, match="y_true"):
        resample_noise(Dataset(clean.ts, clean.ys), RelativeMeanNoise(0.1), keys)


# ---------------------------------------------------------------- uncertainty reports
def test_trajectory_spread_matches_numpy_statistics():
    alphas = jnp.array([1.1, 1.3, 1.5, 1.7])
    models = eqx.filter_vmap(lambda a: LotkaVolterra(a, 0.9, 1.8, 0.8))(alphas)
    ts = jnp.linspace(0.0, 2.0, 9)
    y0 = jnp.array([1.0, 2.0])
    opts = SolverOptions("tsit5", rtol=1e-9, atol=1e-9, max_steps=1000)
    out = trajectory_spread(models, y0, ts, options=opts, quantiles=(0.25, 0.5))
    ref = np.stack(
        [
            np.asarray(solve(LotkaVolterra(float(a), 0.9, 1.8, 0.8), y0[None], ts, opts).ys)
            for a in alphas
        ]
    )
    assert out["ys"].shape == (4, 1, 9, 2) and out["ok"].all() and out["n_ok"] == 4
    np.testing.assert_allclose(out["ys"], ref, rtol=1e-12)
    np.testing.assert_allclose(out["mean"], ref.mean(0), rtol=1e-12)
    np.testing.assert_allclose(out["std"], ref.std(0), rtol=1e-10)
    np.testing.assert_allclose(out["quantiles"][0.25], np.quantile(ref, 0.25, axis=0), rtol=1e-12)
    # a member that blows up is left out of the statistics
    bad = LotkaVolterra(1.3, -50.0, 1.8, 0.8)
    mixed = stack([member(models, 0), member(models, 1), bad, member(models, 3)])
    out = trajectory_spread(mixed, y0, ts, options=opts, quantiles=(0.25, 0.5))
    assert out["ok"].tolist() == [True, True, False, True] and out["n_ok"] == 3
    np.testing.assert_allclose(out["mean"], ref[[0, 1, 3]].mean(0), rtol=1e-12)


class _Bilinear(AbstractCorrection):
    """``c ⊙ (x·y, x·y)``: a 'trained network' whose missing term is known exactly."""

    c: jax.Array
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(self, c):
        self.c, self.in_size, self.out_size = c, 2, 2

    def __call__(self, t, y):
        return self.c * y[0] * y[1]


def test_ensemble_discover_reports_coefficient_spread(setup):
    cs = jnp.array([[-0.9, 0.8], [-0.8, 0.9], [-1.0, 0.7]])
    models = eqx.filter_vmap(lambda c: UDE(TRUTH.keep("growth", "death"), _Bilinear(c)))(cs)
    lib = PolynomialLibrary(("x", "y"), degree=2)
    out = ensemble_discover(
        models,
        setup["clean"],
        lib,
        STLSQ(alpha=0.0),
        lams=[0.05],
        expected={"x": ["x*y"], "y": ["x*y"]},
    )
    j = lib.names.index("x*y")
    np.testing.assert_allclose(out["coefficients"][:, j, :], np.asarray(cs), atol=1e-6)
    assert out["ok"].all() and out["success"].all() and out["success_rate"] == 1.0
    assert out["inclusion"][j].tolist() == [1.0, 1.0]
    assert out["inclusion"].sum() == 2.0
    np.testing.assert_allclose(out["mean"][j], np.asarray(cs).mean(0), atol=1e-6)
    np.testing.assert_allclose(out["std"][j], np.asarray(cs).std(0), atol=1e-6)
    assert out["coefficients"].shape == (3, lib.n_terms, 2)
