"""Inputs u(t) from samples: interpolation against the exact input function, set-points,
batching over experiments, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ude.data.inputs import InputSignal


def test_linear_is_exact_on_a_piecewise_linear_signal():
    ts = jnp.array([0.0, 0.5, 2.0, 3.0])
    us = jnp.array([[0.0, 1.0], [1.0, 1.0], [-2.0, 0.0], [0.0, 0.0]])
    u = InputSignal(ts, us, ("a", "b"))
    tq = np.linspace(0.0, 3.0, 61)
    want = np.stack([np.interp(tq, ts, us[:, j]) for j in range(2)], axis=1)
    np.testing.assert_allclose(jax.vmap(u)(jnp.asarray(tq)), want, atol=1e-14)


def test_cubic_converges_to_the_exact_function():
    # backward-Hermite cubic: the error on sin falls at least like h^2 as the samples densify
    errs = []
    for n in (11, 21, 41):
        ts = jnp.linspace(0.0, 2.0, n)
        u = InputSignal(ts, jnp.sin(3 * ts), ("u",), kind="cubic")
        tq = jnp.linspace(0.0, 2.0, 401)
        errs.append(float(jnp.max(jnp.abs(jax.vmap(u)(tq)[:, 0] - jnp.sin(3 * tq)))))
    assert errs[0] < 0.05 and errs[1] < errs[0] / 3 and errs[2] < errs[1] / 3
    # and it passes through the samples
    ts = jnp.linspace(0.0, 2.0, 11)
    u = InputSignal(ts, jnp.sin(3 * ts), ("u",), kind="cubic")
    np.testing.assert_allclose(jax.vmap(u)(ts)[:, 0], jnp.sin(3 * ts), atol=1e-12)


def test_constant_holds_each_set_point_until_the_next():
    u = InputSignal(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 5.0]), ("q",), "constant")
    for t, want in [(0.0, 1.0), (0.999, 1.0), (1.0, 3.0), (1.5, 3.0), (2.0, 5.0), (9.0, 5.0)]:
        assert float(u(t)[0]) == want


def test_held_at_the_ends_and_differentiable_in_t():
    u = InputSignal(jnp.array([0.0, 1.0]), jnp.array([2.0, 4.0]), ("u",))
    assert float(u(-1.0)[0]) == 2.0 and float(u(7.0)[0]) == 4.0
    assert float(jax.grad(lambda t: u(t)[0])(0.5)) == pytest.approx(2.0)


def test_batched_over_experiments_of_one_length():
    ts = jnp.stack([jnp.linspace(0, 1, 5), jnp.linspace(0, 2, 5)])
    us = jnp.stack([jnp.ones((5, 1)), 2 * jnp.ones((5, 1))])
    at_half = jax.vmap(lambda t, u: InputSignal(t, u, ("u",))(0.5))(ts, us)
    np.testing.assert_allclose(at_half[:, 0], [1.0, 2.0])


@pytest.mark.parametrize(
    "ts,us,names,kind,words",
    [
        ([0.0, 1.0, 1.0], [1.0, 2.0, 3.0], ("u",), "linear", "strictly increasing"),
        ([0.0], [1.0], ("u",), "linear", "at least 2 samples"),
        ([0.0, 1.0], [1.0, 2.0], ("u", "v"), "linear", "one distinct name"),
        ([0.0, 1.0], [1.0, np.nan], ("u",), "linear", "finite"),
        ([0.0, 1.0], [1.0, 2.0], ("u",), "spline", "kind must be one of"),
    ],
)
def test_errors(ts, us, names, kind, words):
    with pytest.raises(ValueError, match=words):
        InputSignal(jnp.asarray(ts), jnp.asarray(us), names, kind)
