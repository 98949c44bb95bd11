"""Physics modules against independent numpy fields, scipy solutions and exact solutions."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, REFERENCE_TERMS, SOLVE_ATOL, SOLVE_RTOL, reference_field, scipy_reference

from ude.physics import (
    SIR,
    SYSTEMS,
    AbstractPhysics,
    DampedPendulum,
    FitzHughNagumo,
    Lorenz,
    LotkaVolterra,
    NoPhysics,
    Parameter,
    VanDerPol,
)
from ude.solve import SolverOptions, solve

TIGHT = SolverOptions("dopri8", rtol=SOLVE_RTOL, atol=SOLVE_ATOL, max_steps=20_000)
NAMES = list(CASES)


def make(name, **overrides):
    params, y0, t1 = CASES[name]
    return SYSTEMS[name](**{**params, **overrides}), jnp.asarray(y0), t1


def random_states(name, n=5, seed=0):
    rng = np.random.default_rng(seed)
    dim = len(CASES[name][1])
    return rng.uniform(-2.0, 2.0, size=(n, dim))


def test_registry_names_every_system():
    assert set(NAMES) <= set(SYSTEMS)
    assert SYSTEMS["none"] is NoPhysics
    for name in NAMES:
        cls = SYSTEMS[name]
        assert issubclass(cls, AbstractPhysics)
        assert set(cls.term_names) == set(REFERENCE_TERMS[name](CASES[name][0]))
        assert cls.param_names == tuple(CASES[name][0])


@pytest.mark.parametrize("name", NAMES)
def test_field_matches_reference_pointwise(name):
    phys, _, _ = make(name)
    ref = reference_field(name, CASES[name][0])
    for y in random_states(name):
        np.testing.assert_allclose(phys(0.0, jnp.asarray(y)), ref(0.0, y), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_every_term_subset_matches_reference(name):
    phys, _, _ = make(name)
    params = CASES[name][0]
    y = jnp.asarray(random_states(name, n=1, seed=1)[0])
    terms = phys.terms(0.0, y)
    assert set(terms) == set(phys.term_names)
    # the sum of the terms is the full field
    np.testing.assert_allclose(sum(terms.values()), phys(0.0, y), rtol=1e-14, atol=1e-14)
    names = phys.term_names
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            kept = phys.keep(*subset)
            dropped = phys.drop(*subset)
            assert kept.active_terms == subset
            assert set(dropped.active_terms) == set(names) - set(subset)
            np.testing.assert_allclose(
                kept(0.0, y),
                reference_field(name, params, subset)(0.0, np.asarray(y)),
                rtol=1e-13,
                atol=1e-13,
            )
            np.testing.assert_allclose(
                kept(0.0, y) + dropped(0.0, y), phys(0.0, y), rtol=1e-13, atol=1e-13
            )


@pytest.mark.parametrize("name", NAMES)
def test_solution_matches_scipy(name):
    """Dopri8 at rtol 1e-12 against scipy's DOP853 at rtol 1e-10 on the independent numpy field.

    Measured errors (per-state scale) are ≲ 4e-10, dominated by the scipy reference."""
    phys, y0, t1 = make(name)
    ts = jnp.linspace(0.0, t1, 11)
    sol = solve(phys, y0, ts, TIGHT, throw=True)
    assert bool(sol.ok)
    ref = scipy_reference(reference_field(name, CASES[name][0]), y0, ts)
    scale = np.max(np.abs(ref), axis=0)
    np.testing.assert_allclose(sol.ys / scale, ref / scale, rtol=0, atol=1e-8)


def test_scipy_reference_is_tight_enough_to_fail():
    """A 1 % change in one parameter must be caught by the comparison above."""
    phys, y0, t1 = make("lotka_volterra", beta=0.9 * 1.01)
    ts = jnp.linspace(0.0, t1, 11)
    ref = scipy_reference(reference_field("lotka_volterra", CASES["lotka_volterra"][0]), y0, ts)
    ys = solve(phys, y0, ts, TIGHT, throw=True).ys
    assert np.max(np.abs(ys - ref) / np.max(np.abs(ref), axis=0)) > 1e-4


def test_radau_reference_agrees():
    """The stiff reference solver agrees too (a check on the reference itself)."""
    name = "van_der_pol"
    params, y0, t1 = CASES[name]
    ts = np.linspace(0.0, t1, 11)
    f = reference_field(name, params)
    a = scipy_reference(f, y0, ts, method="Radau")
    b = scipy_reference(f, y0, ts, method="DOP853")
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8)


# Tsit5, not Dopri8: Tsit5's interpolant keeps save times at the solver tolerance (measured 4e-13
# at rtol 1e-12), diffrax's Dopri8 interpolant does not (2e-10), see helpers.SOLVE_RTOL.
EXACT = SolverOptions("tsit5", rtol=SOLVE_RTOL, atol=SOLVE_ATOL, max_steps=20_000)


def test_exact_exponentials():
    """Lotka–Volterra with growth + death only is two exponentials."""
    ts = jnp.linspace(0.0, 2.0, 9)
    lv = LotkaVolterra(1.3, 0.9, 1.8, 0.8).keep("growth", "death")
    sol = solve(lv, jnp.array([0.44, 4.6]), ts, EXACT, throw=True)
    exact = np.stack([0.44 * np.exp(1.3 * ts), 4.6 * np.exp(-1.8 * ts)], axis=-1)
    np.testing.assert_allclose(sol.ys, exact, rtol=1e-11, atol=0)


def test_exact_harmonic_oscillator():
    """Van der Pol with mu = 0 is the harmonic oscillator."""
    ts = jnp.linspace(0.0, 2.0, 9)
    sol = solve(VanDerPol(0.0), jnp.array([0.3, -1.2]), ts, EXACT, throw=True)
    exact = np.stack(
        [0.3 * np.cos(ts) - 1.2 * np.sin(ts), -0.3 * np.sin(ts) - 1.2 * np.cos(ts)], axis=-1
    )
    np.testing.assert_allclose(sol.ys, exact, rtol=0, atol=2e-11)


def test_sir_conserves_population():
    phys, y0, t1 = make("sir")
    ys = solve(phys, y0, jnp.linspace(0.0, t1, 11), TIGHT, throw=True).ys
    np.testing.assert_allclose(ys.sum(-1), 1.0, rtol=0, atol=1e-12)


def test_formula():
    lv = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    assert lv.formula() == {"x": "alpha*x - beta*x*y", "y": "-gamma*y + delta*x*y"}
    assert lv.keep("growth", "death").formula() == {"x": "alpha*x", "y": "-gamma*y"}
    assert lv.keep("growth").formula() == {"x": "alpha*x", "y": "0"}
    sir = SIR(0.5, 0.1)
    assert sir.formula() == {"S": "-beta*S*I", "I": "beta*S*I - gamma*I", "R": "gamma*I"}
    assert sir.keep("recovery").formula() == {"S": "0", "I": "-gamma*I", "R": "gamma*I"}
    assert Lorenz(10, 28, 8 / 3).formula()["y"] == "x*(rho - z) - y"
    assert NoPhysics().formula() == {"x": "0", "y": "0"}
    for name in NAMES:
        phys, _, _ = make(name)
        f = phys.formula()
        assert list(f) == list(phys.state_names)
        assert all(isinstance(v, str) and v for v in f.values())


def test_no_physics_is_zero():
    phys = NoPhysics(state_names=("a", "b", "c"))
    assert phys.state_names == ("a", "b", "c") and phys.n_states == 3
    np.testing.assert_array_equal(phys(0.0, jnp.array([1.0, 2.0, 3.0])), 0.0)


def test_parameter_flags_and_raw():
    p = Parameter(2.0)
    assert not p.trainable and not p.positive and float(p.raw) == 2.0 and float(p) == 2.0
    q = Parameter(2.0, trainable=True, positive=True)
    assert q.trainable and q.positive
    np.testing.assert_allclose(q.raw, np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(q.value, 2.0, rtol=1e-15)
    r = q.with_value(3.0)
    assert r.trainable and r.positive
    np.testing.assert_allclose(r.raw, np.log(3.0), rtol=1e-15)
    with pytest.raises(ValueError, match="positive"):
        Parameter(-1.0, positive=True)
    with pytest.raises(ValueError, match="positive"):
        Parameter(0.0, positive=True)
    with pytest.raises(ValueError, match="scalar"):
        Parameter([1.0, 2.0])


def test_plain_numbers_become_fixed_parameters():
    lv = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    for n in lv.param_names:
        assert isinstance(getattr(lv, n), Parameter) and not getattr(lv, n).trainable
    assert lv.parameters() == pytest.approx(
        dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8), rel=1e-15
    )


def test_positive_parameter_gradient_flows_to_raw():
    """d(field)/d(raw) = value · d(field)/d(value) for a log-parametrised parameter."""
    lv = LotkaVolterra(Parameter(1.3, trainable=True, positive=True), 0.9, 1.8, 0.8)
    y = jnp.array([0.7, 2.0])

    def prey_rate(m):
        return m(0.0, y)[0]

    g = jax.grad(prey_rate)(lv)
    # x' = alpha x - beta x y, alpha = exp(raw): d x'/d raw = alpha * x
    np.testing.assert_allclose(g.alpha.raw, 1.3 * 0.7, rtol=1e-14)
    # the fixed parameters still get a (mathematical) gradient here; freezing is
    # trainable_filter's job
    np.testing.assert_allclose(g.beta.raw, -0.7 * 2.0, rtol=1e-14)
    # a gradient step on raw can never make the value negative
    stepped = eqx.tree_at(lambda m: m.alpha.raw, lv, lv.alpha.raw - 100.0)
    assert float(stepped.p("alpha")) > 0


def test_with_params_and_set_trainable():
    lv = LotkaVolterra(1.3, Parameter(0.9, trainable=True, positive=True), 1.8, 0.8)
    new = lv.with_params(alpha=2.0, beta=0.5)
    assert float(new.p("alpha")) == 2.0 and float(lv.p("alpha")) == 1.3  # a copy
    np.testing.assert_allclose(new.p("beta"), 0.5, rtol=1e-15)
    assert new.beta.trainable and new.beta.positive  # flags kept when a number is given
    new = lv.with_params(gamma=Parameter(1.5, trainable=True))
    assert new.gamma.trainable and float(new.p("gamma")) == 1.5
    # the field uses the new values
    y = jnp.array([0.5, 1.5])
    np.testing.assert_allclose(
        lv.with_params(alpha=2.0)(0.0, y)[0], 2.0 * 0.5 - 0.9 * 0.5 * 1.5, rtol=1e-14
    )
    # term selection survives parameter updates
    kept = lv.keep("growth", "death").with_params(alpha=2.0)
    assert kept.active_terms == ("growth", "death")

    tr = lv.set_trainable("alpha", "gamma", positive=True)
    assert tr.alpha.trainable and tr.alpha.positive and tr.gamma.trainable and tr.gamma.positive
    assert not tr.delta.trainable
    np.testing.assert_allclose(tr.p("alpha"), 1.3, rtol=1e-15)
    everything = lv.set_trainable()
    assert all(getattr(everything, n).trainable for n in lv.param_names)
    assert everything.beta.positive and not everything.alpha.positive  # positive=None keeps flags


def test_keep_drop_are_copies_and_compose():
    lv = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    kept = lv.keep("growth", "death")
    assert lv.active_terms == lv.term_names
    assert kept.drop("death").active_terms == ("growth",)
    assert LotkaVolterra(1.3, 0.9, 1.8, 0.8, include=("growth", "death")).active_terms == (
        "growth",
        "death",
    )


@pytest.mark.parametrize(
    "cls, args",
    [
        (LotkaVolterra, (1.3, 0.9, 1.8, 0.8)),
        (DampedPendulum, (9.81, 0.3)),
        (SIR, (0.5, 0.1)),
        (VanDerPol, (1.5,)),
        (FitzHughNagumo, (0.7, 0.8, 12.5, 0.5)),
        (Lorenz, (10, 28, 8 / 3)),
    ],
)
def test_construction_errors(cls, args):
    phys = cls(*args)
    with pytest.raises(ValueError, match="unknown term"):
        phys.keep("nonsense")
    with pytest.raises(ValueError, match="unknown term"):
        phys.drop("nonsense")
    with pytest.raises(ValueError, match="unknown term"):
        cls(*args, include=("nonsense",))
    with pytest.raises(ValueError, match="unknown parameter.*nonsense"):
        phys.with_params(nonsense=1.0)
    with pytest.raises(ValueError, match="unknown parameter.*nonsense"):
        phys.set_trainable("nonsense")
    with pytest.raises(ValueError, match="duplicate"):
        phys.keep(phys.term_names[0], phys.term_names[0])


def test_term_vectors_mark_structural_zeros():
    from ude.physics.systems import _vec

    np.testing.assert_array_equal(_vec(jnp.float32(2.0), 0), np.array([2.0, 0.0], np.float32))
    assert _vec(jnp.float32(2.0), 0).dtype == jnp.float32
    np.testing.assert_array_equal(_vec(0, jnp.inf, 1.0), [0.0, np.inf, 1.0])  # no 0*inf = nan
    np.testing.assert_array_equal(_vec(0, 0), [0.0, 0.0])
    np.testing.assert_array_equal(
        _vec(jnp.array([1.0, 2.0]), 0), [[1.0, 2.0], [0.0, 0.0]]
    )  # = stack
