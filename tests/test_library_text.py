"""Library terms written as text (``ExpressionLibrary``): values, names, errors, composition with
the polynomial and trig libraries, regression and the discovered model, and the config's
``kind: expressions``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest
import sympy

from ude.config.schema_train import LibraryConfig
from ude.discovery import (
    STLSQ,
    CombinedLibrary,
    DiscoveredModel,
    ExpressionLibrary,
    PolynomialLibrary,
    TrigLibrary,
    coefficients_from_sympy,
    library_from_spec,
    parse_equations,
    regress,
    to_sympy,
)
from ude.equations.parse import EquationError

XY = ("x", "y")


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(0).uniform(0.1, 3.0, size=(200, 2))


# ---- values and names ----------------------------------------------------------------------------


CASES = [
    ("y/(1 + y)", "y/(y + 1)", lambda x, y: y / (1 + y)),
    ("exp(-x)", "exp(-x)", lambda x, y: np.exp(-x)),
    ("x*y/(1 + x)", "x*y/(x + 1)", lambda x, y: x * y / (1 + x)),
    ("x^2/(1 + y^2)", "x^2/(y^2 + 1)", lambda x, y: x**2 / (1 + y**2)),
    ("sqrt(x)*tanh(y)", "sqrt(x)*tanh(y)", lambda x, y: np.sqrt(x) * np.tanh(y)),
    ("log(1 + x)", "log(x + 1)", lambda x, y: np.log1p(x)),
    ("max(x, y)", "Max(x, y)", lambda x, y: np.maximum(x, y)),
    ("abs(x - y)", "Abs(x - y)", lambda x, y: np.abs(x - y)),
    ("1", "1", lambda x, y: np.ones_like(x)),
]


def test_values_and_names_against_numpy(samples):
    lib = ExpressionLibrary(XY, [text for text, _, _ in CASES])
    assert lib.names == tuple(name for _, name, _ in CASES)
    assert lib.n_terms == len(CASES)
    theta = lib(samples)
    assert theta.shape == (len(samples), len(CASES)) and theta.dtype == jnp.float64
    x, y = samples.T
    want = np.stack([f(x, y) for _, _, f in CASES], axis=-1)
    np.testing.assert_allclose(np.asarray(theta), want, rtol=1e-13)
    # one state vector gives one row; float32 stays float32
    np.testing.assert_allclose(np.asarray(lib(samples[3])), want[3], rtol=1e-13)
    assert lib(samples.astype(np.float32)).dtype == jnp.float32
    # under jit and grad too
    g = jax.grad(lambda v: jnp.sum(jax.jit(lib)(v)[0]))(jnp.asarray(samples[0]))
    assert g.shape == (2,) and bool(jnp.all(jnp.isfinite(g)))


def test_names_read_back_as_the_expressions():
    lib = ExpressionLibrary(XY, [text for text, _, _ in CASES])
    x, y = sympy.symbols("x y")
    xi = np.zeros((lib.n_terms, 2))
    xi[0, 0], xi[1, 0], xi[2, 1] = 0.7, -0.25, 1.5
    exprs = to_sympy(xi, lib.names, XY)
    assert sympy.simplify(exprs["x"] - (0.7 * y / (1 + y) - 0.25 * sympy.exp(-x))) == 0
    assert sympy.simplify(exprs["y"] - 1.5 * x * y / (1 + x)) == 0
    np.testing.assert_allclose(coefficients_from_sympy(exprs, lib.names, XY), xi)
    assert lib.exprs[0] == y / (y + 1)


def test_state_names_that_are_sympy_objects():
    lib = ExpressionLibrary(("S", "E", "I"), ["E/(1 + E)", "S*I", "exp(-I)"])
    assert lib.names == ("E/(E + 1)", "I*S", "exp(-I)")
    np.testing.assert_allclose(np.asarray(lib(jnp.array([2.0, 1.0, 3.0]))), [0.5, 6.0, np.exp(-3)])


# ---- errors --------------------------------------------------------------------------------------


BAD = [
    (["y/(1 + z)"], "terms[0]", "unknown symbol 'z'"),
    (["x", "exp(-t)"], "terms[1]", "uses time t"),
    (["x +"], "terms[0]", "cannot parse"),
    (["(x"], "terms[0]", "cannot parse"),
    (["foo(x)"], "terms[0]", "unknown function 'foo'"),
    (["x*y", "y*x"], "terms[1]", "same as terms[0]"),
    (["y/(1 + y)", "y/(y+1)"], "terms[1]", "same as terms[0]"),
    (["2*x"], "terms[0]", "constant factor 2; write 'x'"),
    (["-exp(-x)"], "terms[0]", "constant factor -1; write 'exp(-x)'"),
    (["x*(1 + y)"], "terms[0]", "is a sum; list its terms separately: 'x', 'x*y'"),
    (["x - x"], "terms[0]", "is zero"),
]


@pytest.mark.parametrize("terms,path,message", BAD, ids=[" | ".join(t) for t, _, _ in BAD])
def test_bad_terms_name_the_term(terms, path, message):
    with pytest.raises(EquationError, match="ExpressionLibrary") as e:
        ExpressionLibrary(XY, terms)
    assert e.value.path == path and message in e.value.problem, str(e.value)
    # the config catches the same (syntax, time, repeats, factors, sums, zero) without the states
    cfg_problems = LibraryConfig.model_construct(kind="expressions", terms=terms).term_problems(
        XY if "unknown symbol" in message else None
    )
    assert [p for p, _ in cfg_problems] == [path], cfg_problems


def test_terms_must_be_a_non_empty_list():
    for terms in ("x", []):
        with pytest.raises(ValueError, match="non-empty list"):
            ExpressionLibrary(XY, terms)


# ---- composition ---------------------------------------------------------------------------------


def test_combined_with_polynomial_and_trig(samples):
    lib = PolynomialLibrary(XY, degree=2) + ExpressionLibrary(XY, ["y/(1 + y)"])
    assert isinstance(lib, CombinedLibrary)
    assert lib.names == ("1", "x", "y", "x^2", "x*y", "y^2", "y/(y + 1)")
    theta = np.asarray(lib(samples))
    np.testing.assert_allclose(theta[:, -1], samples[:, 1] / (1 + samples[:, 1]), rtol=1e-14)
    np.testing.assert_allclose(theta[:, 4], samples[:, 0] * samples[:, 1], rtol=1e-14)
    spec = library_from_spec(
        XY,
        [
            {"kind": "polynomial", "degree": 2},
            {"kind": "trig", "functions": ["sin"]},
            {"kind": "expressions", "terms": ["y/(1 + y)", "exp(-x)"]},
        ],
    )
    assert spec.names[-4:] == ("sin(x)", "sin(y)", "y/(y + 1)", "exp(-x)")
    assert library_from_spec(XY, {"kind": "expressions", "terms": ["exp(-x)"]}).names == (
        "exp(-x)",
    )


@pytest.mark.parametrize(
    "other,term",
    [
        (PolynomialLibrary(XY, degree=2), "y*x"),
        (PolynomialLibrary(("y", "x"), degree=2), "x*y"),
        (PolynomialLibrary(XY, degree=3), "x^2*y"),
        (TrigLibrary(XY, functions=("sin",)), "sin(y)"),
        (TrigLibrary(XY, frequencies=(2,)), "cos(2*x)"),
    ],
)
def test_a_term_already_in_another_part_is_rejected(other, term):
    states = other.state_names
    with pytest.raises(ValueError, match="already in the library"):
        other + ExpressionLibrary(states, [term])
    with pytest.raises(ValueError, match="already in the library"):
        ExpressionLibrary(states, [term]) + other
    with pytest.raises(ValueError, match="already in the library"):
        ExpressionLibrary(states, ["exp(x)", term]) + ExpressionLibrary(states, [term])


def test_spec_errors_name_the_part_and_term():
    with pytest.raises(EquationError, match=r"unknown symbol 'q'") as e:
        library_from_spec(
            XY, [{"kind": "polynomial"}, {"kind": "expressions", "terms": ["x", "q"]}]
        )
    assert e.value.path == "spec[1].terms[1]"
    with pytest.raises(ValueError, match="'expressions'"):
        library_from_spec(XY, {"kind": "rational"})


# ---- regression and the discovered model ---------------------------------------------------------


def test_regression_recovers_a_saturating_term(samples):
    lib = library_from_spec(
        XY, [{"kind": "polynomial", "degree": 2}, {"kind": "expressions", "terms": ["y/(1 + y)"]}]
    )
    x, y = samples.T
    U = np.stack([0.7 * y / (1 + y) - 0.2 * x, 0.3 * x * y], axis=-1)
    d = regress(lib, samples, U, STLSQ(alpha=0.0), lams=[1e-3, 1e-2, 0.1])  # exact data: no ridge
    want = np.zeros((lib.n_terms, 2))
    want[lib.names.index("y/(y + 1)"), 0] = 0.7
    want[lib.names.index("x"), 0] = -0.2
    want[lib.names.index("x*y"), 1] = 0.3
    np.testing.assert_allclose(d.coefficients, want, atol=1e-6)
    assert np.array_equal(d.mask, want != 0)  # the polynomial's spurious terms are exactly zero
    assert d.equations() == ["x' = -0.2 x + 0.7 y/(y + 1)", "y' = 0.3 x*y"]
    # the default regressor (SR3, l0) over the paper's λ sweep finds the same x' equation
    d = regress(lib, samples, U[:, :1], states=("x",))
    np.testing.assert_allclose(d.coefficients[:, 0], want[:, 0], atol=1e-6)
    assert np.array_equal(d.mask[:, 0], want[:, 0] != 0)


def test_discovered_model_evaluates_and_prints(samples):
    lib = PolynomialLibrary(XY, degree=2) + ExpressionLibrary(XY, ["y/(1 + y)", "exp(-x)"])
    xi = np.zeros((lib.n_terms, 2))
    xi[lib.names.index("y/(y + 1)"), 0] = 0.7
    xi[lib.names.index("x"), 0] = -0.2
    xi[lib.names.index("exp(-x)"), 1] = -1.5
    model = DiscoveredModel(None, lib, xi)
    y0 = jnp.array([0.5, 2.0])
    np.testing.assert_allclose(
        np.asarray(model(0.0, y0)), [0.7 * 2 / 3 - 0.1, -1.5 * np.exp(-0.5)], rtol=1e-13
    )
    batch = jax.vmap(lambda v: model(0.0, v))(jnp.asarray(samples[:5]))
    assert batch.shape == (5, 2)
    assert model.equations() == ["x' = -0.2 x + 0.7 y/(y + 1)", "y' = -1.5 exp(-x)"]
    assert model.as_dict() == {"x": {"x": -0.2, "y/(y + 1)": 0.7}, "y": {"exp(-x)": -1.5}}
    back = parse_equations(str(model), XY)
    np.testing.assert_allclose(coefficients_from_sympy(back, lib.names, XY), xi, atol=1e-15)


# ---- the config ----------------------------------------------------------------------------------


def test_config_kind_expressions():
    cfg = LibraryConfig(kind="expressions", terms=["y/(1 + y)", "exp(-x)"])
    assert cfg.terms == ["y/(1 + y)", "exp(-x)"]
    assert (cfg.degree, cfg.include_bias, cfg.functions, cfg.frequencies) == (None,) * 4
    dumped = {k: v for k, v in cfg.model_dump().items() if v is not None}
    assert dumped == {"kind": "expressions", "terms": ["y/(1 + y)", "exp(-x)"]}
    assert library_from_spec(XY, dumped).names == ("y/(y + 1)", "exp(-x)")
    assert LibraryConfig(kind="polynomial").terms is None


def _messages(**kw) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as e:
        LibraryConfig(**kw)
    return [str(err.get("ctx", {}).get("error", err["msg"])) for err in e.value.errors()]


def test_config_rejects_misplaced_or_bad_terms():
    assert (
        "terms: not used by polynomial (only by expressions)"
        in _messages(kind="polynomial", terms=["x"])[0]
    )
    assert "terms: not used by trig" in _messages(kind="trig", terms=["x"])[0]
    assert "terms: required for expressions" in _messages(kind="expressions")[0]
    assert (
        "degree: not used by expressions" in _messages(kind="expressions", terms=["x"], degree=2)[0]
    )
    (msg,) = _messages(kind="expressions", terms=["exp(-t)", "x +", "2*y", "x*y", "y*x"])
    assert "terms[0]: 'exp(-t)' uses time t" in msg
    assert "terms[1]: cannot parse 'x +'" in msg
    assert "terms[2]: '2*y' has the constant factor 2" in msg
    assert "terms[4]: 'y*x' is the same term as terms[3]" in msg
    assert _messages(kind="expressions", terms=[])
    assert _messages(kind="expressions", terms=[1])


def test_config_term_problems_with_the_states():
    parts = [
        LibraryConfig(kind="polynomial", degree=2),
        LibraryConfig(kind="trig", functions=["sin"], frequencies=[1.0]),
        LibraryConfig(kind="expressions", terms=["exp(x)"]),
    ]
    cfg = LibraryConfig(
        kind="expressions", terms=["y/(1 + z)", "y*x", "sin(y)", "exp(x)", "y/(1+y)"]
    )
    assert cfg.term_problems(XY, others=parts) == [
        (
            "terms[0]",
            "unknown symbol 'z' in 'y/(1 + z)'; the states are x, y (time t is not allowed)",
        ),
        ("terms[1]", "'y*x' is already a term of the polynomial part"),
        ("terms[2]", "'sin(y)' is already a term of the trig part"),
        ("terms[3]", "'exp(x)' is already a term of the expressions part"),
    ]
    assert cfg.term_problems(XY + ("z",)) == []


def test_experiment_config_with_text_terms_builds_the_library():
    from pathlib import Path

    from ude.config import ConfigError, read_yaml, validate_config
    from ude.pipeline.builders import build_library

    raw = read_yaml(
        (Path(__file__).resolve().parent.parent / "configs/lotka_volterra.yaml").read_text()
    )
    raw["discovery"]["library"] = [
        {"kind": "polynomial", "degree": 2},
        {"kind": "expressions", "terms": ["y/(1 + y)", "max(x, y)"]},
    ]
    lib = build_library(validate_config(raw))
    assert lib.names == ("1", "x", "y", "x^2", "x*y", "y^2", "y/(y + 1)", "Max(x, y)")
    raw["discovery"]["library"][1]["terms"] = ["2*y", "x +"]
    raw["discovery"]["library"][0]["terms"] = ["x"]
    with pytest.raises(ConfigError) as e:
        validate_config(raw)
    assert [m.split(":")[0] for m in e.value.messages] == [
        "discovery.library[0].terms",
        "discovery.library[1].terms[0]",
        "discovery.library[1].terms[1]",
    ]
