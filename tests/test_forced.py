"""Inputs u(t) in the model: equations reading an input signal, a network reading it, solved
through diffrax's args, against scipy with the exact input function."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from ude import MLP, UDE, Equations
from ude.data.inputs import InputSignal
from ude.solve import SolverOptions, solve

# the interpolant's second derivative jumps at every sample: the adaptive solver rejects steps
# there, so tolerances as tight as 1e-10 need many steps (stepping to the samples is the cure)
OPTS = SolverOptions("tsit5", rtol=1e-8, atol=1e-8, max_steps=16384)
FORCED = {"x": "v", "v": "-k*x - c*v + u"}
PARAMS = {"k": 1.5, "c": 0.2}


def _signal(amplitude=1.0, n=801):
    ts = jnp.linspace(0.0, 10.0, n)
    return InputSignal(ts, amplitude * jnp.cos(2 * ts), ("u",), kind="cubic")


def test_forced_equations_match_scipy_with_the_exact_input():
    known = Equations(FORCED, PARAMS, inputs=["u"])
    assert known.param_names == ("k", "c") and known.input_names == ("u",)
    ts = jnp.linspace(0.0, 10.0, 51)
    sol = solve(known, jnp.array([1.0, 0.0]), ts, OPTS, args=_signal())

    def rhs(t, y):
        return [y[1], -1.5 * y[0] - 0.2 * y[1] + np.cos(2 * t)]

    ref = solve_ivp(rhs, (0, 10), [1.0, 0.0], t_eval=np.asarray(ts), rtol=1e-11, atol=1e-11)
    # the cubic input's own error (h = 0.0125, O(h^2)) bounds the agreement
    np.testing.assert_allclose(np.asarray(sol.ys), ref.y.T, atol=1e-5)


def test_experiments_with_different_inputs_in_one_vmap():
    known = Equations(FORCED, PARAMS, inputs=["u"])
    ts = jnp.linspace(0.0, 10.0, 21)
    amps = jnp.array([0.0, 1.0, 2.0])
    sigs = jax.vmap(lambda a: _signal(a))(amps)
    ys = jax.vmap(lambda s: solve(known, jnp.array([1.0, 0.0]), ts, OPTS, args=s).ys)(sigs)
    assert ys.shape == (3, 21, 2)
    # each experiment of the batch is its own solve, with its own input
    for a, y in zip(amps, ys, strict=True):
        alone = solve(known, jnp.array([1.0, 0.0]), ts, OPTS, args=_signal(a)).ys
        np.testing.assert_allclose(y, alone, rtol=1e-9, atol=1e-12)
    free = Equations({"x": "v", "v": "-k*x - c*v"}, PARAMS)
    np.testing.assert_allclose(
        ys[0], solve(free, jnp.array([1.0, 0.0]), ts, OPTS).ys, rtol=1e-9, atol=1e-12
    )
    assert float(jnp.abs(ys[2] - ys[1]).max()) > 0.1


def test_a_network_reads_states_and_signals():
    net = MLP(3, 1, width=4, depth=1, key=jr.key(0))
    known = Equations({"x": "v", "v": "-k*x"}, {"k": 1.5})
    model = UDE(known, net, inputs=["x", "v"], outputs=["v"], signals=["u"])
    sig = _signal()
    y = jnp.array([0.3, -0.1])
    got = model(1.0, y, sig)
    want = known(1.0, y) + jnp.array([0.0, net(1.0, jnp.array([0.3, -0.1, sig(1.0)[0]]))[0]])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the input's gradient flows through the network
    g = jax.grad(lambda s: model(1.0, y, s)[1])(sig)
    assert float(jnp.abs(g.us).sum()) > 0
    sol = solve(model, y, jnp.linspace(0, 2, 5), OPTS, args=sig)
    assert bool(jnp.all(jnp.isfinite(sol.ys)))


def test_clear_errors_without_the_signal():
    known = Equations(FORCED, PARAMS, inputs=["u"])
    with pytest.raises(ValueError, match="pass their signal as args"):
        known(0.0, jnp.array([1.0, 0.0]))
    other = InputSignal(jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), ("w",))
    with pytest.raises(ValueError, match=r"has no \['u'\]"):
        known(0.0, jnp.array([1.0, 0.0]), other)
    net = MLP(2, 2, width=3, depth=1, key=jr.key(0))
    with pytest.raises(ValueError, match="in_size=2 but it reads 3 values"):
        UDE(known, net, signals=["u"])
    with pytest.raises(ValueError, match="not states"):
        UDE(known, MLP(3, 2, width=3, depth=1, key=jr.key(0)), signals=["x"])
    model = UDE(
        Equations({"x": "v", "v": "-k*x"}, {"k": 1.5}),
        MLP(3, 2, width=3, depth=1, key=jr.key(0)),
        signals=["u"],
    )
    with pytest.raises(ValueError, match="network reads the signals"):
        model(0.0, jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="both as inputs and as parameters"):
        Equations(FORCED, {**PARAMS, "u": 1.0}, inputs=["u"])
    with pytest.raises(ValueError, match="used in no equation"):
        Equations(FORCED, {**PARAMS, "q": 1.0}, inputs=["u"])
