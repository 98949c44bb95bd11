"""Equation discovery: libraries, sparse regressors (against pysindy), selection, symbolic forms,
the discovered vector field and its refit through the solver."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import sympy
from scipy.integrate import solve_ivp

from ude.discovery import (
    SR3,
    STLSQ,
    BaggedRegressor,
    CustomLibrary,
    DiscoveredModel,
    PolynomialLibrary,
    TrigLibrary,
    coefficients_from_sympy,
    discover,
    format_equations,
    library_from_spec,
    paper_library,
    parse_equations,
    regress,
    sweep,
    to_sympy,
)
from ude.discovery.selection import pareto_stats, select_aicc, select_knee, select_paper
from ude.model import UDE
from ude.nn import AbstractCorrection
from ude.physics import SIR, DampedPendulum, LotkaVolterra
from ude.solve import SolverOptions, solve

ps = pytest.importorskip("pysindy")

P = dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
U0 = np.array([0.44249296, 4.6280594])


def lv_rhs(t, u):
    x, y = u
    return [P["alpha"] * x - P["beta"] * x * y, -P["gamma"] * y + P["delta"] * x * y]


@pytest.fixture(scope="module")
def lv():
    """The paper's truth on [0, 3] at dt 0.05 (61 points) by scipy, with exact derivatives."""
    ts = np.linspace(0.0, 3.0, 61)
    sol = solve_ivp(lv_rhs, (0, 3), U0, t_eval=ts, rtol=1e-12, atol=1e-12, method="DOP853")
    Y = sol.y.T
    dY = np.array([lv_rhs(0, u) for u in Y])
    U = np.stack([-P["beta"] * Y[:, 0] * Y[:, 1], P["delta"] * Y[:, 0] * Y[:, 1]], axis=1)
    return ts, Y, dY, U


@pytest.fixture(scope="module")
def lv6():
    """About one period ([0, 6], 121 points) with exact derivatives: a library well enough
    conditioned for thresholding to separate the true terms (on [0, 3] the degree-3 monomials are
    nearly collinear, cond ~ 3e5)."""
    ts = np.linspace(0.0, 6.0, 121)
    sol = solve_ivp(lv_rhs, (0, 6), U0, t_eval=ts, rtol=1e-12, atol=1e-12, method="DOP853")
    Y = sol.y.T
    return Y, np.array([lv_rhs(0, u) for u in Y])


@pytest.fixture(scope="module")
def lib3():
    return PolynomialLibrary(("x", "y"), degree=3)


def true_xi(lib, entries):
    xi = np.zeros((lib.n_terms, len(lib.state_names)))
    for (term, state), c in entries.items():
        xi[lib.names.index(term), lib.state_names.index(state)] = c
    return xi


LV_FULL = {("x", "x"): 1.3, ("x*y", "x"): -0.9, ("y", "y"): -1.8, ("x*y", "y"): 0.8}
LV_MISSING = {("x*y", "x"): -0.9, ("x*y", "y"): 0.8}


# ---- libraries ----------------------------------------------------------------------------------


def test_polynomial_library_names_and_values(lib3):
    assert lib3.names == ("1", "x", "y", "x^2", "x*y", "y^2", "x^3", "x^2*y", "x*y^2", "y^3")
    Y = jnp.array([[2.0, 3.0], [-1.0, 0.5]])
    x, y = np.asarray(Y).T
    ref = np.stack([np.ones(2), x, y, x**2, x * y, y**2, x**3, x**2 * y, x * y**2, y**3], axis=1)
    np.testing.assert_allclose(lib3(Y), ref, rtol=1e-15)
    np.testing.assert_allclose(lib3(Y[0]), ref[0], rtol=1e-15)
    # same order and count as pysindy's PolynomialLibrary
    pl = ps.PolynomialLibrary(degree=3).fit(np.asarray(Y))
    assert [n.replace(" ", "*") for n in pl.get_feature_names(["x", "y"])] == list(lib3.names)


def test_paper_library_has_23_terms():
    lib = paper_library(("x", "y"))
    assert lib.n_terms == 23  # C(7, 2) = 21 monomials up to degree 5, plus sin x, sin y
    assert lib.names[-2:] == ("sin(x)", "sin(y)") and lib.names[0] == "1"
    assert len(PolynomialLibrary(("x", "y"), degree=4)) == 15
    Theta = lib(jnp.array([[0.3, 1.2]]))
    assert Theta.shape == (1, 23)
    np.testing.assert_allclose(Theta[0, -2:], np.sin([0.3, 1.2]), rtol=1e-15)
    np.testing.assert_allclose(Theta[0, lib.names.index("x^2*y^3")], 0.3**2 * 1.2**3, rtol=1e-14)


def test_trig_custom_and_spec_libraries():
    trig = TrigLibrary(("a", "b"), functions=("sin", "cos"), frequencies=(1, 2))
    assert trig.names == (
        "sin(a)",
        "sin(b)",
        "cos(a)",
        "cos(b)",
        "sin(2*a)",
        "sin(2*b)",
        "cos(2*a)",
        "cos(2*b)",
    )
    y = jnp.array([0.7, -0.2])
    np.testing.assert_allclose(
        trig(y),
        [
            np.sin(0.7),
            np.sin(-0.2),
            np.cos(0.7),
            np.cos(-0.2),
            np.sin(1.4),
            np.sin(-0.4),
            np.cos(1.4),
            np.cos(-0.4),
        ],
    )
    cust = CustomLibrary(("a", "b"), {"exp(-a)": lambda v: jnp.exp(-v[0])})
    both = PolynomialLibrary(("a", "b"), degree=1, include_bias=False) + cust
    assert both.names == ("a", "b", "exp(-a)")
    np.testing.assert_allclose(both(y[None])[0], [0.7, -0.2, np.exp(-0.7)])
    spec = library_from_spec(
        ("x", "y"), [{"kind": "polynomial", "degree": 5}, {"kind": "trig", "functions": ["sin"]}]
    )
    assert spec.names == paper_library().names
    # libraries add no trainable leaves
    assert not [x for x in jax.tree_util.tree_leaves(spec) if eqx.is_inexact_array(x)]


def test_library_errors():
    with pytest.raises(ValueError, match="degree"):
        PolynomialLibrary(("x",), degree=0)
    with pytest.raises(ValueError, match="functions"):
        TrigLibrary(("x",), functions=("tan",))
    with pytest.raises(ValueError, match="state_names"):
        PolynomialLibrary(("x", "y")) + PolynomialLibrary(("x", "z"))
    with pytest.raises(ValueError, match="duplicate"):
        PolynomialLibrary(("x", "y")) + PolynomialLibrary(("x", "y"))
    with pytest.raises(ValueError, match="Y must have shape"):
        PolynomialLibrary(("x", "y"))(jnp.ones((4, 3)))


# ---- regressors against known coefficients and pysindy ------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_stlsq_recovers_lv_and_matches_pysindy(lv6, lib3, normalize):
    Y, dY = lv6
    Theta = np.asarray(lib3(jnp.asarray(Y)))
    for thr, alpha in ((0.5, 0.0), (1.0, 1e-8)) if normalize else ((0.1, 0.0), (0.5, 1e-8)):
        Xi = np.asarray(STLSQ(thr, alpha=alpha, normalize=normalize)(Theta, dY))
        np.testing.assert_array_equal(Xi != 0, true_xi(lib3, LV_FULL) != 0)
        np.testing.assert_allclose(Xi, true_xi(lib3, LV_FULL), atol=1e-9)
        ref = ps.optimizers.STLSQ(threshold=thr, alpha=alpha, normalize_columns=normalize).fit(
            Theta, dY
        )
        np.testing.assert_allclose(Xi, ref.coef_.T, atol=1e-10)
    # noisy targets and thresholds that cut into the true terms: still pysindy's answer
    noisy = dY + 0.05 * np.random.default_rng(0).standard_normal(dY.shape)
    for thr, alpha in (
        ((0.3, 0.05), (3.0, 0.05), (1.0, 1e-3))
        if normalize
        else ((0.05, 0.05), (0.5, 0.05), (1.0, 1e-3))
    ):
        ours = np.asarray(STLSQ(thr, alpha=alpha, normalize=normalize)(Theta, noisy))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ps.optimizers.STLSQ(threshold=thr, alpha=alpha, normalize_columns=normalize).fit(
                Theta, noisy
            )
        np.testing.assert_array_equal(ours != 0, ref.coef_.T != 0)
        np.testing.assert_allclose(ours, ref.coef_.T, atol=1e-8)


@pytest.mark.parametrize(
    "regularizer,lam,nu", [("l0", 1e-6, 1e6), ("l0", 0.05, 1.0), ("l1", 0.02, 1.0)]
)
def test_sr3_recovers_lv_and_matches_pysindy(lv6, lib3, regularizer, lam, nu):
    Y, dY = lv6
    Theta = np.asarray(lib3(jnp.asarray(Y)))
    rng = np.random.default_rng(1)
    for target in (dY, dY + 0.02 * rng.standard_normal(dY.shape)):
        for init in ("zeros", "lstsq"):
            ours = np.asarray(
                SR3(lam, nu=nu, regularizer=regularizer, iterations=60, init=init)(Theta, target)
            )
            guess = np.zeros((2, lib3.n_terms)) if init == "zeros" else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # tol ~ 0: pysindy runs all 60 iterations, as our fixed-count loop does
                ref = ps.optimizers.SR3(
                    reg_weight_lam=lam,
                    relax_coeff_nu=nu,
                    regularizer=regularizer,
                    max_iter=60,
                    tol=1e-300,
                    normalize_columns=True,
                    initial_guess=guess,
                ).fit(Theta, target)
            np.testing.assert_array_equal(ours != 0, ref.coef_.T != 0)
            np.testing.assert_allclose(ours, ref.coef_.T, rtol=1e-8, atol=1e-9)
    if regularizer == "l0" and nu > 1:  # exact data: the L0 prox leaves the true values untouched
        exact = np.asarray(SR3(lam, nu=nu)(Theta, dY))
        np.testing.assert_array_equal(exact != 0, true_xi(lib3, LV_FULL) != 0)
        np.testing.assert_allclose(exact, true_xi(lib3, LV_FULL), atol=1e-8)


def test_sweep_vmaps_without_recompiling(lv6, lib3):
    Y, dY = lv6
    Theta = jnp.asarray(lib3(jnp.asarray(Y)))
    lams = jnp.array([1e-8, 1e-4, 1.0])

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(reg, lams):
        return sweep(reg, Theta, jnp.asarray(dY), lams)

    Xis = run(SR3(0.0, nu=1e6), lams)
    run(SR3(5.0, nu=1e3), lams * 2)  # other λ and ν values: the same compiled program
    for i, lam in enumerate(lams):
        np.testing.assert_allclose(Xis[i], SR3(lam, nu=1e6)(Theta, dY), atol=1e-12)
    counts = [int(np.count_nonzero(x)) for x in Xis]
    assert counts[1] == 4 and counts[2] < counts[1]


def test_bagged_regressor_inclusion_probabilities(lv6, lib3):
    Y, dY = lv6
    Theta = lib3(jnp.asarray(Y))
    truth = true_xi(lib3, LV_FULL)
    res = BaggedRegressor(STLSQ(0.5, alpha=0.0), n_models=16)(Theta, jnp.asarray(dY), key=jr.key(0))
    assert res.members.shape == (16, lib3.n_terms, 2)
    np.testing.assert_array_equal(res.inclusion[truth != 0], 1.0)
    np.testing.assert_array_equal(res.inclusion[truth == 0], 0.0)
    np.testing.assert_allclose(res.coefficients, truth, atol=1e-9)
    # with noise the true terms are still always kept and the absent ones rarely
    noisy = dY + 0.01 * np.random.default_rng(2).standard_normal(dY.shape)
    res = BaggedRegressor(STLSQ(1.0, alpha=1e-8), n_models=16, aggregate="mean")(
        Theta, jnp.asarray(noisy), key=jr.key(1)
    )
    assert np.all(np.asarray(res.inclusion)[truth != 0] == 1.0)
    assert np.all(np.asarray(res.inclusion)[truth == 0] <= 0.25)


def test_regressor_errors():
    with pytest.raises(ValueError, match="threshold"):
        STLSQ(-1.0)
    with pytest.raises(ValueError, match="nu"):
        SR3(nu=0.0)
    with pytest.raises(ValueError, match="regularizer"):
        SR3(regularizer="l3")
    # the regressor's ValueError; under the tests' runtime shape checks (jaxtyping) the annotation
    # (Theta and Y share their first axis) catches it first, as a TypeError naming both
    with pytest.raises((ValueError, TypeError), match="Theta"):
        STLSQ()(jnp.ones((5, 2)), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="n_models"):
        BaggedRegressor(STLSQ(), n_models=0)


# ---- the λ sweep and model selection -----------------------------------------------------------


@pytest.fixture(scope="module")
def paper_sweep(lv):
    """The paper's regression: 23-term library, SR3 (L0), λ = 10^(−7…5), on U(x, y) with 1 %
    noise."""
    _, Y, _, U = lv
    noisy = U + 0.01 * U.std(axis=0) * np.random.default_rng(3).standard_normal(U.shape)
    return regress(paper_library(("x", "y")), Y, noisy), Y, noisy


def test_paper_criterion_picks_exactly_xy(paper_sweep):
    d, _, _ = paper_sweep
    assert d.lams.size == 121 and d.criterion == "paper"
    assert d.kept() == {"x": ("x*y",), "y": ("x*y",)}
    got = d.as_dict()
    assert got["x"]["x*y"] == pytest.approx(-0.9, rel=0.01)
    assert got["y"]["x*y"] == pytest.approx(0.8, rel=0.01)
    assert d.equations(precision=2) == ["x' = -0.9 x*y", "y' = 0.8 x*y"]
    info = d.selection_info()
    assert set(info) == {"criterion", "lams", "chosen_lam", "l0", "err"}
    assert np.all(np.diff(d.l0[:, 0]) <= 2)  # L0 shrinks (almost) monotonically along the sweep


def test_other_selection_rules(paper_sweep):
    d, Y, U = paper_sweep
    n = Y.shape[0]
    idx = select_knee(d.l0, d.err, n)
    assert list(d.l0[idx, [0, 1]]) == [1, 1]
    # AICc trusts small error gains more: along SR3's path it takes extra terms; along STLSQ's
    # (light ridge) path the x*y-only model is the clear optimum
    d2 = regress(d.library, Y, U, STLSQ(alpha=1e-3), criterion="aicc")
    assert d2.kept() == {"x": ("x*y",), "y": ("x*y",)}
    # the rules on a hand-made front: (terms, error) = (0, 10), (1, 0.1), (2, 0.09), (5, 0.01)
    l0 = np.array([[0], [1], [2], [5]])
    err = np.array([[10.0], [0.1], [0.09], [0.01]])
    assert select_paper(l0, err)[0] == 1
    assert select_knee(l0, err)[0] == 1
    assert select_aicc(l0, err, 100)[0] == 3  # AICc rewards the 10x smaller error


def test_pareto_stats_reference():
    Theta = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Y = np.array([[1.0], [2.0], [3.0]])
    Xis = np.array([[[1.0], [2.0]], [[0.0], [2.0]]])
    l0, err = pareto_stats(Theta, Y, Xis)
    np.testing.assert_array_equal(l0, [[2], [1]])
    np.testing.assert_allclose(err, [[0.0], [np.sqrt(1 + 0 + 1)]])


# ---- symbolic forms -----------------------------------------------------------------------------


def test_equations_print_and_round_trip_through_sympy():
    lib = paper_library(("x", "y"))
    xi = true_xi(
        lib,
        {
            ("x", "x"): 1.3,
            ("x*y", "x"): -0.899,
            ("1", "y"): 0.25,
            ("x^2*y^3", "y"): -2.5e-3,
            ("sin(y)", "y"): 1.0,
        },
    )
    lines = format_equations(xi, lib.names, lib.state_names)
    assert lines == ["x' = 1.3 x - 0.899 x*y", "y' = 0.25 - 0.0025 x^2*y^3 + 1 sin(y)"]
    parsed = parse_equations("\n".join(lines), lib.state_names)
    exact = to_sympy(xi, lib.names, lib.state_names)
    x, y = sympy.symbols("x y")
    for s in ("x", "y"):
        assert sympy.simplify(parsed[s] - exact[s]) == 0
    assert (
        sympy.simplify(parsed["x"] - (sympy.Rational(13, 10) * x - sympy.Float(0.899) * x * y)) == 0
    )
    np.testing.assert_allclose(
        coefficients_from_sympy(parsed, lib.names, lib.state_names), xi, rtol=1e-12
    )
    # Unicode minus (as in reports) and states that are SymPy names (S, I)
    sir = PolynomialLibrary(("S", "I", "R"), degree=2)
    got = parse_equations(["S' = −0.5 S*I", "I' = 0.5 S*I − 0.1 I"], sir.state_names)
    s_sym, i_sym = sympy.Symbol("S"), sympy.Symbol("I")
    assert sympy.simplify(got["S"] + 0.5 * s_sym * i_sym) == 0
    assert got["I"].free_symbols == {s_sym, i_sym}
    with pytest.raises(ValueError, match="unknown state"):
        parse_equations("z' = x", ("x", "y"))


# ---- the discovered model as a vector field -----------------------------------------------------


@pytest.fixture(scope="module")
def known():
    return LotkaVolterra(**P).keep("growth", "death")


def test_discovered_model_reproduces_lotka_volterra(lv, known):
    ts, Y, _, _ = lv
    lib = paper_library(("x", "y"))
    model = DiscoveredModel(known, lib, true_xi(lib, LV_MISSING))
    opts = SolverOptions("tsit5", rtol=1e-10, atol=1e-10)
    sol = solve(model, jnp.asarray(U0), jnp.asarray(ts), opts)
    # Tsit5 at 1e-10: a global error of a few 1e-9 against scipy's DOP853 at 1e-12
    np.testing.assert_allclose(sol.ys, Y, rtol=1e-7, atol=1e-8)
    full = LotkaVolterra(**P)
    for y in Y[::10]:
        np.testing.assert_allclose(
            model(0.0, jnp.asarray(y)), full(0.0, jnp.asarray(y)), rtol=1e-14
        )
    assert str(model) == "x' = -0.9 x*y\ny' = 0.8 x*y"
    assert model.as_dict() == {"x": {"x*y": -0.9}, "y": {"x*y": 0.8}}
    assert int(np.sum(np.asarray(model.mask))) == 2


def test_discovered_model_mask_keeps_dropped_terms_zero(known):
    lib = PolynomialLibrary(("x", "y"), degree=2)
    coef = np.ones((lib.n_terms, 2))
    mask = true_xi(lib, LV_MISSING) != 0
    m = DiscoveredModel(known, lib, coef, mask)
    y = jnp.array([1.5, 2.0])
    np.testing.assert_allclose(m.missing(0.0, y), [3.0, 3.0])
    # gradients reach only the kept coefficients
    g = eqx.filter_grad(lambda mm: jnp.sum(mm(0.0, y)))(m)
    assert np.all(np.asarray(g.coefficients)[~mask] == 0)
    assert np.all(np.asarray(g.coefficients)[mask] != 0)
    with pytest.raises(ValueError, match="coefficients"):
        DiscoveredModel(known, lib, np.ones((3, 2)))


# ---- discover() on a UDE ------------------------------------------------------------------------


class ExactMissing(AbstractCorrection):
    """A stand-in for a perfectly trained network: returns the true missing LV terms."""

    in_size: int = eqx.field(static=True, default=2)
    out_size: int = eqx.field(static=True, default=2)

    def __call__(self, t, y):
        return jnp.stack([-P["beta"] * y[0] * y[1], P["delta"] * y[0] * y[1]])


def test_discover_on_ude_trajectory(known):
    from ude.data import Dataset

    ts = np.linspace(0.0, 3.0, 31)
    sol = solve_ivp(lv_rhs, (0, 3), U0, t_eval=ts, rtol=1e-12, atol=1e-12, method="DOP853")
    data = Dataset(ts, sol.y.T, state_names=("x", "y"))
    ude = UDE(known, ExactMissing())
    d = discover(ude, data, paper_library(("x", "y")))
    assert d.ts.shape == (61,) and np.isclose(d.ts[1] - d.ts[0], 0.05) and d.ts[-1] == 3.0
    np.testing.assert_allclose(d.ys[:31:10], sol.y.T[:16:5], rtol=1e-6)  # its own trajectory
    assert d.kept() == {"x": ("x*y",), "y": ("x*y",)}
    np.testing.assert_allclose(
        [d.as_dict()["x"]["x*y"], d.as_dict()["y"]["x*y"]], [-0.9, 0.8], rtol=1e-8
    )
    model = d.to_model(known)
    assert isinstance(model, DiscoveredModel)

    # a network acting on y only: only y is regressed
    class OnlyY(AbstractCorrection):
        in_size: int = eqx.field(static=True, default=2)
        out_size: int = eqx.field(static=True, default=1)

        def __call__(self, t, y):
            return jnp.stack([P["delta"] * y[0] * y[1]])

    # given states directly (ts, ys): no solve
    d2 = discover(
        UDE(LotkaVolterra(**P).keep("growth", "predation", "death"), OnlyY(), outputs=("y",)),
        (ts, sol.y.T),
        PolynomialLibrary(("x", "y"), degree=2),
        STLSQ(0.05, alpha=0.0),
        lams=[1e-3, 1e-2, 1e-1],
    )
    assert d2.states == ("y",) and d2.as_dict() == {"y": {"x*y": pytest.approx(0.8, rel=1e-8)}}
    assert d2.equations() == ["y' = 0.8 x*y"]


# ---- other systems -----------------------------------------------------------------------------


def test_recovers_pendulum_friction():
    c, k = 0.3, 2.0

    def rhs(t, u):
        return [u[1], -k * np.sin(u[0]) - c * u[1]]

    ts = np.linspace(0, 6, 121)
    Y = solve_ivp(rhs, (0, 6), [1.2, 0.0], t_eval=ts, rtol=1e-12, atol=1e-12).y.T
    U = -c * Y[:, 1] + 1e-3 * np.random.default_rng(4).standard_normal(ts.size)
    lib = PolynomialLibrary(("theta", "omega"), degree=3) + TrigLibrary(("theta", "omega"))
    d = regress(lib, Y, U[:, None], states=("omega",))
    assert d.kept() == {"omega": ("omega",)}
    assert d.as_dict()["omega"]["omega"] == pytest.approx(-c, rel=1e-2)
    # the vector field built from it, with the known gravity, is the damped pendulum
    model = d.to_model(DampedPendulum(k, c).keep("velocity", "gravity"))
    for y in Y[::20]:
        np.testing.assert_allclose(
            model(0.0, jnp.asarray(y)), rhs(0.0, y), atol=1e-3 * abs(y[1]) + 1e-12
        )


def test_recovers_sir_infection():
    b, g = 0.5, 0.1

    def rhs(t, u):
        s, i, r = u
        return [-b * s * i, b * s * i - g * i, g * i]

    ts = np.linspace(0, 30, 151)
    Y = solve_ivp(rhs, (0, 30), [0.99, 0.01, 0.0], t_eval=ts, rtol=1e-12, atol=1e-12).y.T
    inf = b * Y[:, 0] * Y[:, 1]
    U = np.stack([-inf, inf], axis=1)  # the missing infection term in S' and I'
    lib = PolynomialLibrary(("S", "I", "R"), degree=2)
    d = regress(lib, Y, U, STLSQ(0.05), lams=[1e-3, 1e-2, 0.1, 1.0], states=("S", "I"))
    assert d.kept() == {"S": ("S*I",), "I": ("S*I",)}
    np.testing.assert_allclose(
        [d.as_dict()["S"]["S*I"], d.as_dict()["I"]["S*I"]], [-b, b], rtol=1e-8
    )
    assert d.to_model(SIR(b, g).keep("recovery")).equations() == [
        "S' = -0.5 S*I",
        "I' = 0.5 S*I",
        "R' = 0",
    ]


# ---- refit through the solver -------------------------------------------------------------------


@pytest.mark.slow
def test_refit_reduces_loss_and_keeps_dropped_terms_zero(known):
    from ude.data import Dataset
    from ude.discovery import refit
    from ude.train import LBFGS, SingleShooting, loss_value

    ts = np.linspace(0.0, 3.0, 16)
    Y = solve_ivp(lv_rhs, (0, 3), U0, t_eval=ts, rtol=1e-12, atol=1e-12, method="DOP853").y.T
    data = Dataset(ts, Y, state_names=("x", "y"))
    lib = PolynomialLibrary(("x", "y"), degree=2)
    xi = true_xi(lib, {("x*y", "x"): -0.8, ("x*y", "y"): 0.9, ("x^2", "y"): 0.0})
    start = DiscoveredModel(known, lib, xi + 0.3, mask=true_xi(lib, LV_MISSING) != 0)
    strategy = SingleShooting(options=SolverOptions("tsit5", rtol=1e-8, atol=1e-8))
    before = loss_value(start, data, strategy)
    res = refit(start, data, strategy=strategy, stages=[LBFGS(steps=30)], chunk=30)
    after = loss_value(res.model, data, strategy)
    assert after < 1e-3 * before
    got = res.model.as_dict()
    assert got["x"]["x*y"] == pytest.approx(-0.9, rel=1e-3)
    assert got["y"]["x*y"] == pytest.approx(0.8, rel=1e-3)
    xi_after = np.asarray(res.model.xi)
    assert np.all(xi_after[~np.asarray(start.mask)] == 0.0)


def test_fewer_regression_samples_than_terms_warn():
    """An underdetermined regression (5 samples, 23 terms) warns, naming both counts; as many
    samples as terms does not."""
    lib = paper_library(("x", "y"))
    rng = np.random.default_rng(0)
    Y = rng.uniform(0.5, 2.0, (5, 2))
    U = np.concatenate([-Y[:, :1] * Y[:, 1:], Y[:, :1] * Y[:, 1:]], axis=1)
    with pytest.warns(UserWarning, match="5 regression samples for a library of 23 terms"):
        regress(lib, Y, U, STLSQ(threshold=0.1), criterion="aicc")
    Y = rng.uniform(0.5, 2.0, (23, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regress(lib, Y, Y[:, :1] * Y, STLSQ(threshold=0.1), criterion="aicc")
