"""Equations as text (ude.equations, ude.physics.Equations): the parsed right-hand sides of the
shipped systems agree with the hand-written ones (values, Jacobians, parameter gradients and
solutions), the errors name the state and the symbol, and the term API (names, order, keep/drop,
formula, parameters) works as for the shipped systems."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from helpers import CASES

from ude import registry
from ude.equations import EquationError, ParsedEquations, parse_equations, parse_terms
from ude.model import trainable_filter
from ude.physics import SIR, SYSTEMS, Equations, LotkaVolterra, Parameter
from ude.solve import SolverOptions, solve

# the shipped systems whose registry term formulas are their whole right-hand side (SIR's list
# each transfer term once, in the state it leaves)
WHOLE = ("lotka_volterra", "damped_pendulum", "van_der_pol", "fitzhugh_nagumo", "lorenz")
LV = dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
LV_TEXT = {"x": "alpha*x - beta*x*y", "y": "-gamma*y + delta*x*y"}
TIGHT = dict(rtol=1e-12, atol=1e-12)


def registry_equations(name: str) -> dict[str, dict[str, str]]:
    """The registry's term formulas grouped by state, in the nested form that keeps the names."""
    spec = registry.SYSTEMS[name]
    grouped = {s: {} for s in spec.state_names}
    for term, formula in spec.term_formulas.items():
        state, expr = formula.split(":", 1)
        grouped[state.strip()][term] = expr.strip()
    return grouped


def random_states(n_states: int, n: int = 5, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).uniform(-2.0, 2.0, size=(n, n_states)))


@eqx.filter_jit
def evaluate(model, t, ys, weights):
    """At every state: the field, its Jacobian in y, and the gradient of ``w · f`` in the model
    (the parameters' ``raw``), one compiled program per model."""

    def one(y, w):
        value = model(t, y)
        jac = jax.jacfwd(lambda u: model(t, u))(y)
        grad = eqx.filter_grad(lambda m: jnp.vdot(w, m(t, y)))(model)
        return value, jac, grad

    return jax.vmap(one)(ys, weights)


def assert_same_field(eqs, ref, names, t=0.0, seed=0):
    """``eqs`` and ``ref`` agree in value, Jacobian and parameter gradients (names: parameters)."""
    n = len(ref.state_names)
    ys = random_states(n, seed=seed)
    ws = random_states(n, seed=seed + 1)
    v1, j1, g1 = evaluate(eqs, t, ys, ws)
    v2, j2, g2 = evaluate(ref, t, ys, ws)
    np.testing.assert_allclose(v1, v2, **TIGHT)
    np.testing.assert_allclose(j1, j2, **TIGHT)
    for p in names:
        np.testing.assert_allclose(g1.parameter(p).raw, g2.parameter(p).raw, **TIGHT)
    return v1


# ---- agreement with the shipped systems ---------------------------------------------------------


@pytest.fixture(scope="module", params=WHOLE)
def shipped(request):
    name = request.param
    params, _, _ = CASES[name]
    # trainable (and positive) parameters: the gradients flow through p() = exp(raw)
    as_params = {k: Parameter(v, trainable=True, positive=v > 0) for k, v in params.items()}
    ref = SYSTEMS[name](**as_params)
    eqs = Equations(registry_equations(name), as_params)
    return name, eqs, ref


def test_registry_formulas_parse_to_the_shipped_systems(shipped):
    name, eqs, ref = shipped
    spec = registry.SYSTEMS[name]
    assert eqs.state_names == spec.state_names
    assert eqs.term_names == spec.term_names  # the nested form keeps the registry's names
    assert set(eqs.param_names) == set(spec.param_names)
    values = assert_same_field(eqs, ref, spec.param_names)
    assert np.all(np.isfinite(values)) and np.any(values != 0)
    # term by term too
    y = random_states(len(spec.state_names), n=1, seed=3)[0]
    got, want = eqs.terms(0.0, y), ref.terms(0.0, y)
    assert set(got) == set(want)
    for term in spec.term_names:
        np.testing.assert_allclose(got[term], want[term], **TIGHT)


def test_kept_subsets_agree(shipped):
    name, eqs, ref = shipped
    terms = registry.SYSTEMS[name].term_names
    subset = (terms[0], terms[-1])
    kept, ref_kept = eqs.keep(*subset), ref.keep(*subset)
    assert kept.active_terms == subset
    assert_same_field(kept, ref_kept, ref.param_names, seed=7)
    dropped = eqs.drop(terms[0])
    assert_same_field(dropped, ref.drop(terms[0]), ref.param_names, seed=9)
    assert terms[0] not in dropped.active_terms


def test_term_formulas_round_trip_the_registry(shipped):
    name, eqs, _ = shipped
    spec = registry.SYSTEMS[name]
    for term, formula in eqs.term_formulas.items():
        state, expr = formula.split(":", 1)
        ref_state, ref_expr = spec.term_formulas[term].split(":", 1)
        assert state == ref_state
        names = {s: sympy.Symbol(s) for s in spec.state_names + spec.param_names}
        diff = sympy.sympify(expr, locals=names) - sympy.sympify(
            ref_expr.replace("^", "**"), locals=names
        )
        assert sympy.simplify(diff) == 0


def test_handwritten_sir():
    text = {"S": "-beta*S*I", "I": "beta*S*I - gamma*I", "R": "gamma*I"}
    params = {"beta": Parameter(0.5, trainable=True), "gamma": Parameter(0.1, trainable=True)}
    eqs = Equations(text, params)
    assert eqs.state_names == ("S", "I", "R")
    assert eqs.term_names == ("S: -I*S*beta", "I: I*S*beta", "I: -I*gamma", "R: I*gamma")
    ref = SIR(**params)
    assert_same_field(eqs, ref, ("beta", "gamma"))
    # S, I (not the imaginary unit) and gamma, beta (not SymPy's functions) are plain symbols
    rhs = eqs.sympy()
    assert all(isinstance(s, sympy.Symbol) for e in rhs.values() for s in e.free_symbols)
    assert {str(s) for s in rhs["I"].free_symbols} == {"S", "I", "beta", "gamma"}
    at = {sympy.Symbol(k): v for k, v in dict(S=0.6, I=0.3, beta=0.5, gamma=0.1).items()}
    assert float(rhs["I"].subs(at)) == pytest.approx(0.5 * 0.6 * 0.3 - 0.1 * 0.3, rel=1e-14)
    assert Equations({"E": "-E", "S": "E^2"}).formula() == {"E": "-E", "S": "E**2"}


MIXED = {"x": "y/(1 + y) - exp(-x)*sin(t)", "y": "x^2 - tanh(y) + k*sqrt(1 + x**2)"}


def mixed_ref(t, y, k=0.3):
    x, v = y[0], y[1]
    return jnp.stack(
        [v / (1 + v) - jnp.exp(-x) * jnp.sin(t), x**2 - jnp.tanh(v) + k * jnp.sqrt(1 + x**2)]
    )


def test_time_functions_rational_and_power_against_jnp():
    eqs = Equations(MIXED, {"k": 0.3})
    assert eqs.uses_time
    assert eqs.term_names == (
        "x: y/(y + 1)",
        "x: -exp(-x)*sin(t)",
        "y: x**2",
        "y: -tanh(y)",
        "y: k*sqrt(x**2 + 1)",
    )
    ys = jnp.asarray(np.random.default_rng(1).uniform(0.1, 2.0, size=(6, 2)))  # y > -1
    ts = jnp.linspace(-1.0, 2.5, 6)
    f = jax.jit(jax.vmap(lambda t, y: eqs(t, y)))
    jac = jax.jit(jax.vmap(jax.jacfwd(eqs, argnums=(0, 1))))
    jac_ref = jax.jit(jax.vmap(jax.jacfwd(mixed_ref, argnums=(0, 1))))
    np.testing.assert_allclose(f(ts, ys), jax.vmap(mixed_ref)(ts, ys), **TIGHT)
    for got, want in zip(jac(ts, ys), jac_ref(ts, ys), strict=True):  # d/dt and d/dy
        np.testing.assert_allclose(got, want, **TIGHT)
    # ^ and ** are the same power
    same = Equations({"x": MIXED["x"], "y": MIXED["y"].replace("x^2", "x**2")}, {"k": 0.3})
    np.testing.assert_array_equal(same(ts[1], ys[1]), eqs(ts[1], ys[1]))


def test_solution_matches_the_shipped_class():
    _, y0, t1 = CASES["lotka_volterra"]
    ts = jnp.linspace(0.0, t1, 16)
    opts = SolverOptions("tsit5", rtol=1e-10, atol=1e-10)
    got = solve(Equations(LV_TEXT, LV), jnp.asarray(y0), ts, opts)
    want = solve(LotkaVolterra(**LV), jnp.asarray(y0), ts, opts)
    assert bool(got.ok) and bool(want.ok)
    np.testing.assert_allclose(got.ys, want.ys, rtol=1e-9, atol=1e-10)


def test_time_dependent_solution_matches_a_plain_function():
    eqs = Equations({"x": "v", "v": "-k*x + a*sin(w*t)"}, {"k": 4.0, "a": 0.5, "w": 1.3})

    def forced(t, y, args):
        return jnp.stack([y[1], -4.0 * y[0] + 0.5 * jnp.sin(1.3 * t)])

    ts = jnp.linspace(0.5, 2.5, 9)  # t0 = 0.5: time enters the field as t, not t - t0
    opts = SolverOptions("tsit5", rtol=1e-10, atol=1e-10)
    got = solve(eqs, jnp.array([1.0, 0.0]), ts, opts)
    want = solve(forced, jnp.array([1.0, 0.0]), ts, opts)
    np.testing.assert_allclose(got.ys, want.ys, rtol=1e-9, atol=1e-10)


# ---- errors -------------------------------------------------------------------------------------

BAD = [
    # (equations, parameters, states, path, words the message names)
    ({"x": "alpha*x + k"}, {"alpha": 1.0}, None, "x", ["unknown symbol", "'k'"]),
    ({"x": "alpha*x +"}, {"alpha": 1.0}, None, "x", ["cannot parse", "alpha*x +"]),
    ({"x": "alpha*(x"}, {"alpha": 1.0}, None, "x", ["unbalanced"]),
    ({"x": "alpha*x)"}, {"alpha": 1.0}, None, "x", ["unbalanced"]),
    ({"x": "2x"}, {}, None, "x", ["cannot parse", "2x"]),
    ({"x": "sin x"}, {}, None, "x", ["cannot parse"]),
    ({"x": "x", "y": "y"}, {}, ("x", "y", "z"), "z", ["'z'", "no equation"]),
    ({"x": "alpha*x"}, {"alpha": 1.0, "beta": 2.0}, None, "beta", ["'beta'", "no equation"]),
    ({"x": "foo(x)"}, {}, None, "x", ["unknown function", "'foo'"]),
    ({"x": "__import__('os')"}, {}, None, "x", ["cannot parse"]),
    ({"x": "x", "q": "1"}, {}, ("x",), "q", ["'q'", "not a state"]),
    ({"x": "x/0"}, {}, None, "x", ["x/0", "finite"]),
    ({"x": "alpha/(1 - 1)"}, {"alpha": 1.0}, None, "x", ["finite"]),
    ({"x": "log(0)"}, {}, None, "x", ["finite"]),
    ({"x": "sqrt(-1)*x"}, {}, None, "x", ["finite"]),
    ({"x": "I*x"}, {}, None, "x", ["unknown symbol", "'I'"]),  # not the imaginary unit
    ({"x": "oo"}, {}, None, "x", ["unknown symbol", "'oo'"]),
    ({"x": ""}, {}, None, "x", ["empty"]),
    ({"x": None}, {}, None, "x", ["expression"]),
    ({"x": {"growth": "x + k"}}, {}, None, "x.growth", ["'k'"]),
    ({"x": "x + x"}, {}, None, "x", ["twice"]),
    ({"t": "1"}, {}, None, "t", ["time"]),
    ({"x": "alpha"}, {"x": 1.0}, None, "x", ["name of a state"]),
    ({"x": "sin*x"}, {"sin": 1.0}, None, "sin", ["function"]),
]


@pytest.mark.parametrize("equations, params, states, path, words", BAD)
def test_bad_equations_name_the_state_and_symbol(equations, params, states, path, words):
    with pytest.raises(EquationError) as info:
        Equations(equations, params, states=states)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == path
    assert str(err).startswith(f"{path}: ")
    for word in words:
        assert word in str(err)


def test_unknown_symbol_lists_the_names():
    with pytest.raises(ValueError, match="states are x, y, the parameters alpha and time is t"):
        Equations({"x": "alpha*x + z", "y": "0"}, {"alpha": 1.0})


# Text that is more than one expression must not be cut down to its first part (SymPy's
# unevaluated parse would keep only the first statement's value); nor may it run code
SILENTLY_CUT = [
    "x; q",
    "x = 2*x",
    "x\nq",
    "x if q else 1",
    "x[0]",
    "x.real",
    "(lambda: 1)()",
    '__import__("os")',
]


@pytest.mark.parametrize("text", SILENTLY_CUT)
def test_more_than_one_expression_is_an_error(text):
    with pytest.raises(EquationError):
        Equations({"x": text})


@pytest.mark.parametrize("text", ["x == 1", "x > 1"])
def test_a_comparison_is_an_equation_error(text):
    with pytest.raises(EquationError):
        Equations({"x": text})


def test_factorial_notation_is_not_a_function():
    # "x!" would be factorial(x), which is not among FUNCTIONS
    with pytest.raises(EquationError):
        Equations({"x": "x!"})


def test_plain_symbols_not_sympy_objects():
    # SymPy's gamma/beta functions, its S singleton, I (the imaginary unit) and E (Euler's number)
    eqs = Equations(
        {"S": "-beta*S*I", "I": "beta*S*I - gamma*I", "R": "gamma*I - E", "E": "0"},
        {"beta": 0.5, "gamma": 0.1},
    )
    y = jnp.array([0.6, 0.3, 0.1, 2.0])
    np.testing.assert_allclose(
        eqs(0.0, y), [-0.09, 0.09 - 0.03, 0.03 - 2.0, 0.0], rtol=1e-14, atol=1e-15
    )
    # a parameter called like a function is an unknown function, not SymPy's gamma
    with pytest.raises(EquationError, match="gamma"):
        Equations({"x": "gamma(x)"}, {"gamma": 1.0})


# ---- the term API -------------------------------------------------------------------------------


def test_term_names_and_order():
    eqs = Equations({"y": "-gamma*y + delta*x*y", "x": "alpha*x - beta*x*y"}, LV)
    assert eqs.state_names == ("y", "x")  # the keys' order
    assert eqs.term_names == ("y: -gamma*y", "y: delta*x*y", "x: alpha*x", "x: -beta*x*y")
    ordered = Equations(dict(LV_TEXT), LV, states=("y", "x"))
    assert ordered.state_names == ("y", "x")
    assert ordered.term_names[0].startswith("y: ")
    # brackets stay one term; zeros are left out; a state may be 0
    eqs2 = Equations({"x": "alpha*(x - y) + 0", "y": "0"}, {"alpha": 2.0})
    assert eqs2.term_names == ("x: alpha*(x - y)",)
    y = jnp.array([3.0, 1.0])
    np.testing.assert_array_equal(eqs2(0.0, y), [4.0, 0.0])
    assert eqs2.formula() == {"x": "alpha*(x - y)", "y": "0"}
    # the parser alone, in written order
    assert [str(p) for p in parse_terms("-g*y + d*x*y", ["x", "y", "g", "d"])] == [
        "-g*y",
        "d*x*y",
    ]
    parsed = parse_equations(LV_TEXT, parameters=list(LV))
    assert isinstance(parsed, ParsedEquations)
    assert parsed.term_names == Equations(LV_TEXT, LV).term_names
    assert parsed.spec("mine").term_formulas["x: -beta*x*y"] == "x: -beta*x*y"


def test_nested_names_formula_keep_and_drop():
    eqs = Equations(
        {"x": {"growth": "alpha*x", "predation": "-beta*x*y"}, "y": {"death": "-gamma*y"}},
        {"alpha": 1.3, "beta": 0.9, "gamma": 1.8},
    )
    assert eqs.term_names == ("growth", "predation", "death")
    assert eqs.term_formulas == {
        "growth": "x: alpha*x",
        "predation": "x: -beta*x*y",
        "death": "y: -gamma*y",
    }
    assert eqs.formula() == {"x": "alpha*x - beta*x*y", "y": "-gamma*y"}
    kept = eqs.keep("growth", "death")
    assert kept.formula() == {"x": "alpha*x", "y": "-gamma*y"}
    assert eqs.drop("growth", "death").formula() == {"x": "-beta*x*y", "y": "0"}
    assert eqs.keep().formula() == {"x": "0", "y": "0"}
    y = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(kept(0.0, y), [1.3, -3.6], rtol=1e-14)
    np.testing.assert_array_equal(eqs.keep()(0.0, y), [0.0, 0.0])
    ref = LotkaVolterra(**LV).keep("growth", "predation", "death")
    np.testing.assert_allclose(eqs(0.0, y), ref(0.0, y), rtol=1e-14)
    # terms() gives every term (whatever include says) as a full state vector
    terms = kept.terms(0.0, y)
    assert set(terms) == {"growth", "predation", "death"}
    np.testing.assert_allclose(terms["predation"], [-0.9 * 2.0, 0.0], rtol=1e-14)
    with pytest.raises(ValueError, match="unknown term"):
        eqs.keep("reproduction")
    with pytest.raises(ValueError, match="duplicate"):
        eqs.keep("growth", "growth")
    # sympy() of the active terms, or of the named ones
    x, yy, alpha, beta = sympy.symbols("x y alpha beta")
    assert sympy.simplify(eqs.sympy()["x"] - (alpha * x - beta * x * yy)) == 0
    assert eqs.sympy(["predation"]) == {"x": -beta * x * yy, "y": sympy.Integer(0)}
    assert kept.sympy()["x"] == alpha * x


def test_parameters_with_params_and_set_trainable():
    eqs = Equations(LV_TEXT, {**LV, "gamma": Parameter(1.8, trainable=True, positive=True)})
    assert eqs.param_names == ("alpha", "beta", "gamma", "delta")
    assert eqs.parameters() == pytest.approx(LV, rel=1e-14)
    assert eqs.parameter("gamma").positive and eqs.parameter("gamma").trainable
    assert not eqs.parameter("alpha").trainable
    spec = trainable_filter(eqs)
    assert [spec.params[p].raw for p in eqs.param_names] == [False, False, True, False]
    # a number keeps the flags; a Parameter replaces them
    new = eqs.with_params(gamma=2.0, alpha=Parameter(1.0, trainable=True))
    assert float(new.p("gamma")) == pytest.approx(2.0, rel=1e-14)
    assert new.parameter("gamma").positive and new.parameter("gamma").trainable
    assert new.parameter("alpha").trainable
    y = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(new(0.0, y), [1.0 - 1.8, -4.0 + 1.6], rtol=1e-14)
    np.testing.assert_allclose(eqs(0.0, y), [1.3 - 1.8, -3.6 + 1.6], rtol=1e-14)  # unchanged
    with pytest.raises(ValueError, match="unknown parameter"):
        eqs.with_params(mu=1.0)
    everything = eqs.set_trainable(positive=True)
    assert all(everything.parameter(p).trainable for p in everything.param_names)
    assert all(everything.parameter(p).positive for p in everything.param_names)
    assert trainable_filter(eqs.set_trainable("beta")).params["beta"].raw is True
    with pytest.raises(ValueError, match="unknown parameter"):
        eqs.set_trainable("mu")
    with pytest.raises(ValueError, match="unknown parameter"):
        eqs.parameter("mu")
    # the parsed form needs a value for each parameter
    with pytest.raises(ValueError, match="delta"):
        Equations(parse_equations(LV_TEXT, parameters=list(LV)), {"alpha": 1.0, "beta": 1.0})


def test_equal_equations_share_one_structure_and_one_state_works():
    a, b = Equations(LV_TEXT, LV), Equations(dict(LV_TEXT), dict(LV))
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert not Equations(LV_TEXT, LV).uses_time
    one = Equations({"x": "-k*x"}, {"k": 0.5})
    y = jnp.array([2.0])
    np.testing.assert_allclose(one(0.0, y), [-1.0], rtol=1e-14)
    assert one.terms(0.0, y)["x: -k*x"].shape == (1,)
    # a constant right-hand side has the state's shape and dtype
    const = Equations({"x": "1.5", "y": "0"})
    out = const(0.0, jnp.array([3.0, 4.0]))
    assert out.shape == (2,) and out.dtype == jnp.float64
    np.testing.assert_array_equal(out, [1.5, 0.0])
