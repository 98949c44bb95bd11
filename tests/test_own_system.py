"""A user's own known part: a plain function or eqx.Module inside UDE/HybridUDE (wrapped in
ude.physics.VectorField), its constants frozen while networks and trainable Parameters learn,
and discovery, selection by simulation and the refit on it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import ude
from ude.discovery import DiscoveredModel, PolynomialLibrary, discover, refit
from ude.discovery.simulation import select_by_simulation
from ude.model import UDE, HybridUDE, network_weights, trainable_filter
from ude.nn import MLP, AbstractCorrection
from ude.physics import LotkaVolterra, Parameter, VectorField
from ude.solve import SolverOptions, solve
from ude.train import Adam, SingleShooting, fit, l2_penalty, loss_value

LV = dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
U0 = (0.44249296, 4.6280594)
POINTS = jnp.asarray(np.random.default_rng(0).uniform(0.1, 5.0, size=(4, 2)))


class MyKnown(eqx.Module):
    """A user's known part: a constant array, a trainable Parameter and a fixed one."""

    alpha: jax.Array
    gamma: Parameter
    scale: Parameter

    def __call__(self, t, y, args):
        return self.scale.value * jnp.stack([self.alpha * y[0], -self.gamma.value * y[1]])


class Named(eqx.Module):
    """A module that names its own states."""

    state_names: tuple[str, ...] = eqx.field(static=True, default=("x", "y"))

    def __call__(self, t, y, args):
        return -y


class ExactMissing(AbstractCorrection):
    """A stand-in for a perfectly trained network: the missing LV terms (−βxy, δxy)."""

    in_size: int = eqx.field(static=True, default=2)
    out_size: int = eqx.field(static=True, default=2)

    def __call__(self, t, y):
        return jnp.stack([-LV["beta"] * y[0] * y[1], LV["delta"] * y[0] * y[1]])


def known_fn(t, y, args):
    """The UDE paper's known part (growth and death) as a plain function."""
    return jnp.stack([1.3 * y[0], -1.8 * y[1]])


def two_args(t, y):
    return jnp.stack([1.3 * y[0], -1.8 * y[1]])


@pytest.fixture(scope="module")
def lv_short():
    return ude.simulate(LotkaVolterra(**LV), U0, np.linspace(0.0, 1.0, 11))


@pytest.fixture(scope="module")
def lv_data():
    # 1 % noise: on exact data every candidate's SSE is round-off and the scores compare noise
    ts = np.round(np.linspace(0.0, 3.0, 31), 10)
    return ude.simulate(
        LotkaVolterra(**LV), U0, ts, noise=ude.RelativeMeanNoise(0.01), key=jr.key(7)
    )


# ---- frozen constants, trainable Parameters ----------------------------------------------------


@pytest.fixture(scope="module")
def trained(lv_short):
    module = MyKnown(jnp.array(0.7), Parameter(1.8, trainable=True), Parameter(1.0))
    net = MLP(2, 2, width=4, depth=1, activation="tanh", key=jr.key(0))
    model = UDE(module, net, states=("x", "y"))
    strategy = SingleShooting(options=SolverOptions("tsit5", rtol=1e-7, atol=1e-7), l2=1e-3)
    res = fit(
        model,
        lv_short,
        strategy,
        [Adam(lr=0.01, steps=50)],
        key=jr.key(0),
        chunk=25,
        verbose=False,
    )
    return model, res


def test_constant_array_stays_frozen_while_the_network_learns(trained):
    model, res = trained
    assert isinstance(model.known, VectorField)
    assert res.history["accepted"].all()
    after = res.model.known.fn
    assert float(after.alpha) == 0.7  # exactly: never seen by the optimiser
    assert after.alpha.dtype == jnp.float64
    assert float(after.scale.value) == 1.0  # a fixed Parameter stays too
    assert float(after.gamma.value) != pytest.approx(1.8, abs=1e-6)  # the trainable one moves
    before_w = jax.tree_util.tree_leaves(eqx.filter(model.correction, eqx.is_inexact_array))
    after_w = jax.tree_util.tree_leaves(eqx.filter(res.model.correction, eqx.is_inexact_array))
    assert all(not np.array_equal(a, b) for a, b in zip(before_w, after_w, strict=True))
    assert res.final_loss < res.history["loss"][0]


def test_filter_and_l2_leave_the_constant_out(trained):
    model, _ = trained
    spec = trainable_filter(model)
    assert spec.known.fn.alpha is False
    assert spec.known.fn.gamma.raw is True
    assert spec.known.fn.scale.raw is False
    assert model.known.param_names == ("gamma", "scale")
    weights = network_weights(model)
    net_leaves = jax.tree_util.tree_leaves(eqx.filter(model.correction, eqx.is_inexact_array))
    assert sum(w.size for w in weights) == sum(w.size for w in net_leaves)
    assert not any(w is model.known.fn.alpha for w in weights)
    assert not any(w is model.known.fn.gamma.raw for w in weights)
    flat = np.concatenate([np.ravel(w) for w in net_leaves])
    assert float(l2_penalty(model, 1.0)) == pytest.approx(np.mean(flat**2), rel=1e-12)
    # the module's Parameters are the physics' parameters
    known = model.known
    assert float(known.p("gamma")) == 1.8
    moved = known.with_params(gamma=2.0).set_trainable("scale")
    assert float(moved.p("gamma")) == 2.0 and moved.parameter("gamma").trainable
    assert trainable_filter(moved).fn.scale.raw is True
    np.testing.assert_allclose(moved(0.0, POINTS[0]), np.array([0.7, -2.0]) * POINTS[0], rtol=1e-14)
    with pytest.raises(ValueError, match="no Parameter field"):
        known.parameter("alpha")


# ---- what UDE accepts as the known part ---------------------------------------------------------


def test_plain_functions_and_modules_as_the_known_part():
    net = MLP(2, 2, width=3, depth=1, key=jr.key(1))
    ref = LotkaVolterra(**LV).keep("growth", "death")
    for known in (known_fn, two_args):
        model = UDE(known, net, states=("x", "y"))
        assert isinstance(model.known, VectorField)
        assert model.state_names == ("x", "y")
        assert model.known.term_names == ("known",)
        for y in POINTS:
            np.testing.assert_allclose(model(0.0, y), ref(0.0, y) + net(0.0, y), rtol=1e-14)
            np.testing.assert_allclose(model.missing(0.0, y), net(0.0, y), rtol=1e-14)
        np.testing.assert_array_equal(model.known.drop("known")(0.0, POINTS[0]), [0.0, 0.0])
    assert UDE(known_fn, states=("x", "y")).known.takes_args
    assert not UDE(two_args, states=("x", "y")).known.takes_args
    # a module naming its states needs no states=
    named = UDE(Named(), net)
    assert named.state_names == ("x", "y")
    np.testing.assert_allclose(named(0.0, POINTS[0]), -POINTS[0] + net(0.0, POINTS[0]))
    # and it is a diffrax vector field like any other
    sol = solve(UDE(known_fn, states=("x", "y")), jnp.asarray(U0), jnp.linspace(0, 1, 5))
    np.testing.assert_allclose(sol.ys[-1], np.asarray(U0) * np.exp([1.3, -1.8]), rtol=1e-5)


def test_known_parts_that_cannot_be_used():
    net = MLP(2, 2, width=3, depth=1, key=jr.key(1))
    module = MyKnown(jnp.array(0.7), Parameter(1.8), Parameter(1.0))
    with pytest.raises(ValueError, match=r"states="):
        UDE(module, net)
    with pytest.raises(ValueError, match=r"states="):
        UDE(known_fn, net)
    with pytest.raises(ValueError, match=r"ude\.Equations"):
        UDE("alpha*x - beta*x*y", net, states=("x", "y"))
    with pytest.raises(ValueError, match=r"ude\.Equations"):
        UDE({"x": "alpha*x", "y": "-gamma*y"}, net)
    with pytest.raises(ValueError, match="vector field"):
        UDE(3.0, net, states=("x", "y"))
    with pytest.raises(ValueError, match="states"):
        UDE(LotkaVolterra(**LV), net, states=("a", "b"))
    # the wrong shape is reported when the field is called
    bad = UDE(lambda t, y, args: y[:1], net, states=("x", "y"))
    with pytest.raises(ValueError, match="shape"):
        bad(0.0, POINTS[0])


# ---- discovery, selection by simulation and refit on a plain function ---------------------------


@pytest.fixture(scope="module")
def discovered(lv_data):
    model = UDE(known_fn, ExactMissing(), states=("x", "y"))
    # aicc: on exact data this sweep keeps at most one term per state, and the paper's rule ties
    # (0 terms, the largest error) with (1 term, no error) and takes the sparser
    return discover(model, lv_data, PolynomialLibrary(("x", "y"), degree=2), criterion="aicc")


def test_discovery_selection_and_refit_on_a_plain_function(discovered, lv_data):
    assert discovered.kept() == {"x": ("x*y",), "y": ("x*y",)}
    got = discovered.as_dict()
    assert got["x"]["x*y"] == pytest.approx(-0.9, rel=1e-6)
    assert got["y"]["x*y"] == pytest.approx(0.8, rel=1e-6)

    sel = select_by_simulation(discovered, known_fn, lv_data, max_terms=2, top=(2, 1))
    assert sel.discovery.kept() == {"x": ("x*y",), "y": ("x*y",)}
    c = sel.discovery.as_dict()
    assert c["x"]["x*y"] == pytest.approx(-0.9, rel=0.02)
    assert c["y"]["x*y"] == pytest.approx(0.8, rel=0.02)
    assert isinstance(sel.model, DiscoveredModel) and isinstance(sel.model.known, VectorField)

    start = discovered.to_model(known_fn)
    assert isinstance(start.known, VectorField)
    strategy = SingleShooting(options=SolverOptions("tsit5", rtol=1e-8, atol=1e-8))
    # a few Adam steps: the refit's plumbing (LBFGS's program takes twice as long to compile)
    res = refit(start, lv_data, strategy=strategy, stages=[Adam(lr=1e-3, steps=10)], chunk=10)
    assert isinstance(res.model, DiscoveredModel)
    assert isinstance(res.model.known, VectorField)
    assert res.model.known.fn == start.known.fn  # the same function, still frozen
    c = res.model.as_dict()
    assert c == {
        "x": {"x*y": pytest.approx(-0.9, rel=0.02)},
        "y": {"x*y": pytest.approx(0.8, rel=0.02)},
    }
    assert res.final_loss <= loss_value(start, lv_data, strategy)
    assert not np.array_equal(res.model.coefficients, start.coefficients)
    np.testing.assert_array_equal(res.model.mask, start.mask)


def test_hybrid_missing_drives_discovery_without_target(lv_data, discovered):
    def rhs(t, y, physics, nets):
        return physics(t, y) + nets["missing"](t, y)

    hybrid = HybridUDE(rhs, known_fn, {"missing": ExactMissing()}, states=("x", "y"))
    assert isinstance(hybrid.known, VectorField)
    for y in POINTS:
        np.testing.assert_allclose(
            hybrid.missing(0.0, y), ExactMissing()(0.0, y), rtol=1e-12, atol=1e-12
        )
    # on the samples the UDE's discovery regressed (no solve of its own)
    samples = (discovered.ts, discovered.ys)
    d = discover(hybrid, samples, PolynomialLibrary(("x", "y"), degree=2), criterion="aicc")
    assert d.states == ("x", "y")
    assert d.kept() == discovered.kept()
    np.testing.assert_allclose(d.coefficients, discovered.coefficients, rtol=1e-8, atol=1e-10)
