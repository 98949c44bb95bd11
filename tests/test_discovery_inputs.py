"""Discovery with inputs u(t) (SINDYc): libraries over states and inputs, their terms by kind
(state, input, cross), the discovered model reading the inputs from args, and discover() over
experiments of their own lengths and inputs."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from ude import Equations
from ude.data import Dataset, concat
from ude.data.inputs import InputSignal
from ude.discovery import (
    CombinedLibrary,
    CustomLibrary,
    DiscoveredModel,
    ExpressionLibrary,
    PolynomialLibrary,
    TrigLibrary,
    discover,
    parse_equations,
    regress,
)
from ude.discovery.discover import _takes_args
from ude.discovery.library import InputLibrary, library_from_spec, term_kinds
from ude.solve import SolverOptions, solve

OPTS = SolverOptions("tsit5", rtol=1e-9, atol=1e-9, max_steps=8192)


def solve_each(vf, y0, data):
    """What ``solve_data`` does (one vmapped solve of every experiment at its own times, with its
    inputs), one 1-D solve per row: under the tests' runtime type checker ``solve`` rejects the
    2-D save times ``solve_data`` passes (``ts`` is annotated ``Float[ArrayLike, " times"]``)."""
    return jax.vmap(lambda y, t, a: solve(vf, y, t, OPTS, args=a))(y0, data.ts, data.inputs)


VARS = ("x", "v", "u")


def test_term_kinds_of_every_library_kind():
    poly = PolynomialLibrary(("x", "u"), 2)
    assert poly.names == ("1", "x", "u", "x^2", "x*u", "u^2")
    assert term_kinds(poly, ("u",)) == ("state", "state", "input", "state", "cross", "input")
    trig = TrigLibrary(("x", "u"), ("sin",), frequencies=(1, 2))
    assert term_kinds(trig, ("u",)) == ("state", "input", "state", "input")
    text = ExpressionLibrary(("x", "u"), ["u*x/(1 + x)", "exp(-x)", "u^2/(1 + u)"])
    assert term_kinds(text, ("u",)) == ("cross", "state", "input")
    custom = CustomLibrary(("x", "u"), {"x*u": lambda z: z[0] * z[1], "u[0]": lambda z: z[1]})
    assert term_kinds(custom, ("u",)) == ("cross", "input")  # an unparsed name: its identifiers
    assert term_kinds(poly) == ("state",) * 6  # a plain library declares no inputs


def test_input_library_keeps_the_terms_of_its_kinds():
    base = PolynomialLibrary(VARS, 2)
    full = InputLibrary(base, ("u",))
    assert full.names == base.names and full.input_names == ("u",)
    only_states = InputLibrary(base, ("u",), kinds=("state",))
    assert only_states.names == ("1", "x", "v", "x^2", "x*v", "v^2")
    assert InputLibrary(base, "u", kinds=("input",)).names == ("u", "u^2")
    assert InputLibrary(base, ("u",), kinds=("cross",)).names == ("x*u", "v*u")
    z = jnp.array([[2.0, 3.0, 5.0]])
    np.testing.assert_allclose(InputLibrary(base, ("u",), kinds="cross")(z), [[10.0, 15.0]])
    # text terms of any kind; joined libraries say their inputs
    both = only_states + InputLibrary(ExpressionLibrary(VARS, ["u*x/(1 + x)"]), ("u",))
    assert isinstance(both, CombinedLibrary) and both.input_names == ("u",)
    assert both.names[-1] == "u*x/(x + 1)"
    with pytest.raises(ValueError, match="already in the library"):
        InputLibrary(base, ("u",)) + InputLibrary(ExpressionLibrary(VARS, ["u*x"]), ("u",))
    with pytest.raises(ValueError, match="distinct variables"):
        InputLibrary(base, ("w",))
    with pytest.raises(ValueError, match="kinds must be"):
        InputLibrary(base, ("u",), kinds=("inputs",))
    with pytest.raises(ValueError, match="no term"):
        InputLibrary(TrigLibrary(VARS, ("sin",)), ("u",), kinds=("cross",))


def test_library_from_spec_with_inputs_and_kinds():
    spec = [
        {"kind": "polynomial", "degree": 2, "kinds": ["state", "cross"]},
        {"kind": "trig", "functions": ["sin"], "kinds": ["input"]},
        {"kind": "expressions", "terms": ["u/(1 + x^2)"]},
    ]
    lib = library_from_spec(("x", "v"), spec, inputs=("u",))
    assert lib.state_names == VARS and lib.input_names == ("u",)
    kinds = term_kinds(lib)
    assert "input" not in kinds[:8] and kinds[8:] == ("input", "cross")
    assert lib.names[8:] == ("sin(u)", "u/(x^2 + 1)")
    # the default kinds for items that say none
    states_only = library_from_spec(
        ("x", "v"), {"kind": "polynomial"}, inputs=["u"], kinds=["state"]
    )
    assert states_only.names == ("1", "x", "v", "x^2", "x*v", "v^2")
    # without inputs: as before (no wrapper), and a kind that cannot occur is an error
    assert type(library_from_spec(("x", "v"), {"kind": "polynomial"})) is PolynomialLibrary
    with pytest.raises(ValueError, match=r"spec\[0\].*no term"):
        library_from_spec(("x", "v"), {"kind": "polynomial", "kinds": ["input"]})


def _experiments(lengths=(9, 7, 12), starts=(0.0, 0.0, 0.5), amps=(1.0, -0.5, 2.0)):
    """Three experiments of their own times and inputs u(t) = a sin(w t) + b (own sample counts)."""
    parts = []
    for k, (n, t0, a) in enumerate(zip(lengths, starts, amps, strict=True)):
        ts = t0 + 0.4 * np.arange(n)
        tu = np.linspace(t0, ts[-1], 31 + 10 * k)
        sig = InputSignal(tu, a * np.sin((1.0 + k) * tu) + 0.3 * k, ("u",), kind="linear")
        y0 = np.array([0.5 + 0.2 * k, -0.1 * k])
        parts.append(Dataset(ts, np.broadcast_to(y0, (n, 2)), state_names=("x", "v"), inputs=sig))
    return concat(parts, names=["a", "b", "c"])


def test_discovered_model_reads_the_inputs_like_equations():
    data = _experiments()
    assert data.per_experiment_times and data.lengths == (9, 7, 12)
    lib = PolynomialLibrary(VARS, 3)
    xi = np.zeros((lib.n_terms, 2))
    xi[lib.names.index("x^3"), 1] = -1.0
    xi[lib.names.index("u"), 1] = 1.0
    known = Equations({"x": "v", "v": "-k*x"}, {"k": 1.5})
    model = DiscoveredModel(known, lib, xi, inputs=("u",))
    assert model.state_names == ("x", "v") and model.input_names == ("u",)
    assert model.library.input_names == ("u",)  # a rebuild from model.library keeps them
    assert model.equations() == ["x' = 0", "v' = 1 u - 1 x^3"]
    assert model.as_dict() == {"x": {}, "v": {"x^3": -1.0, "u": 1.0}}
    x, u = sympy.symbols("x u")
    assert sympy.simplify(model.to_sympy()["v"] - (u - x**3)) == 0
    back = parse_equations(model.equations(), ("x", "v"), inputs=("u",))["v"]
    assert sympy.simplify(back - (u - x**3)) == 0
    # the same model with the variables in another order
    order = ("u", "x", "v")
    xi2 = np.zeros((PolynomialLibrary(order, 3).n_terms, 2))
    lib2 = PolynomialLibrary(order, 3)
    xi2[lib2.names.index("x^3"), 1], xi2[lib2.names.index("u"), 1] = -1.0, 1.0
    model2 = DiscoveredModel(known, InputLibrary(lib2, ("u",)), xi2)
    args = jax.tree_util.tree_map(lambda a: a[2], data.inputs)
    y = jnp.array([0.7, -0.3])
    np.testing.assert_allclose(model2(1.3, y, args), model(1.3, y, args), rtol=1e-14)
    with pytest.raises(ValueError, match="discovered terms read the inputs"):
        model.missing(0.0, y)

    truth = Equations({"x": "v", "v": "-k*x - x^3 + u"}, {"k": 1.5}, inputs=["u"])
    y0 = data.ys[:, 0, :]
    got = solve_each(model, y0, data)
    want = solve_each(truth, y0, data)
    assert bool(np.all(got.ok))
    real = np.asarray(data.time_mask)
    np.testing.assert_allclose(np.asarray(got.ys)[real], np.asarray(want.ys)[real], atol=1e-6)


class Trained(eqx.Module):
    """A "trained" UDE whose network is exactly the missing term -0.5 x^3 + 2 u."""

    state_names: ClassVar[tuple[str, ...]] = ("x", "v")
    outputs: ClassVar[tuple[int, ...]] = (1,)

    def missing(self, t, y, args=None):
        return jnp.stack([jnp.zeros_like(y[0]), -0.5 * y[0] ** 3 + 2.0 * args(t)[0]])

    def __call__(self, t, y, args=None):
        return jnp.stack([y[1], -y[0]]) + self.missing(t, y, args)


def test_discover_recovers_the_input_term_over_experiments():
    data = _experiments()
    lib = PolynomialLibrary(VARS, 3)
    d = discover(Trained(), data, lib, dt=0.1)
    assert d.input_names == ("u",) and d.state_names == ("x", "v") and d.states == ("v",)
    # samples: every experiment over its own span, padding dropped
    spans = [(0.0, 3.2), (0.0, 2.4), (0.5, 4.9)]
    assert d.ys.shape[0] == d.inputs.shape[0] == sum(round((b - a) / 0.1) + 1 for a, b in spans)
    assert d.ts.min() == 0.0 and np.isclose(d.ts.max(), 4.9)
    kept = d.as_dict()["v"]
    assert set(kept) == {"x^3", "u"}
    assert abs(kept["x^3"] + 0.5) < 1e-3 and abs(kept["u"] - 2.0) < 1e-3
    assert d.equations() == ["v' = 2 u - 0.5 x^3"]
    assert d.theta().shape == (d.ys.shape[0], lib.n_terms)
    # the discovered model reads the inputs: its vector field is the trained one's
    found = d.to_model(Equations({"x": "v", "v": "-x"}))
    assert found.input_names == ("u",) and found.library.input_names == ("u",)
    for i in range(3):
        args = jax.tree_util.tree_map(lambda a, i=i: a[i], data.inputs)
        t, y = 0.3 + i, jnp.array([0.4, -0.2 * i])
        np.testing.assert_allclose(found(t, y, args), Trained()(t, y, args), atol=1e-6)

    # state terms only: the input term cannot be found
    states_only = discover(Trained(), data, InputLibrary(lib, ("u",), kinds=("state",)), dt=0.1)
    assert states_only.input_names == ("u",)
    assert not any("u" in t for t in states_only.as_dict()["v"])
    assert all(k == "state" for k in term_kinds(states_only.library))


def test_regress_and_discover_say_what_inputs_they_need():
    lib = InputLibrary(PolynomialLibrary(("x", "u"), 2), ("u",))
    Y = np.linspace(-1, 1, 20)[:, None]
    with pytest.raises(ValueError, match="pass their values as inputs"):
        regress(lib, Y, Y[:, 0])
    with pytest.raises(ValueError, match=r"inputs must have shape \(20, 1\)"):
        regress(lib, Y, Y[:, 0], inputs=np.ones((20, 2)))
    with pytest.raises(ValueError, match="name the inputs"):
        regress(PolynomialLibrary(("x", "u"), 2), Y, Y[:, 0], inputs=np.ones(20))
    with pytest.raises(ValueError, match="library reads the inputs"):
        discover(Trained(), (np.zeros(20), np.zeros((20, 2))), PolynomialLibrary(VARS, 2))
    data = Dataset(np.linspace(0, 1, 5), np.ones((5, 2)), state_names=("x", "v"))
    with pytest.raises(ValueError, match="which the data has not"):
        discover(Trained(), data, PolynomialLibrary(VARS, 2))
    with pytest.raises(ValueError, match="differ from the model's"):
        discover(Trained(), data, PolynomialLibrary(("x", "w", "u"), 2))
    # over data with inputs, a model reading none may take missing(t, y)
    assert _takes_args(Trained().missing) and not _takes_args(lambda t, y: y)
