"""The solver layer: adjoint gradients against finite differences, batching, recompilation,
failure codes, dtypes and argument checks."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import central_fd, random_direction, tree_dot

from ude.model import UDE, partition
from ude.nn import MLP
from ude.physics import LotkaVolterra, Parameter
from ude.solve import Solution, SolverOptions, check_times, solve, solve_batch, solve_jit

# One set of options (and save-time shape) for every eager solve in this module, so they share one
# compiled program. Tight tolerances keep the finite differences below clean.
TOL = 1e-10
OPTS = SolverOptions("tsit5", rtol=TOL, atol=TOL, max_steps=64)
TS = jnp.linspace(0.0, 0.5, 5)
Y0 = jnp.array([0.44, 4.6])
Y0S = jnp.array([[0.44, 4.6], [1.0, 1.0], [2.0, 0.5]])
KEY0 = jr.key(0)


def tiny_ude(key=KEY0):
    """Lotka–Volterra's known part (alpha trainable, positive) + an MLP of width 4, depth 1."""
    known = LotkaVolterra(Parameter(1.3, trainable=True, positive=True), 0.9, 1.8, 0.8)
    return UDE(known.keep("growth", "death"), MLP(2, 2, width=4, depth=1, key=key))


@pytest.fixture(scope="module")
def model():
    return tiny_ude()


@pytest.fixture(scope="module")
def fd_setup(model):
    """The loss as a function of the trainable parameters, its FD directional derivative and the
    direction. The primal solve does not depend on the adjoint, so one FD serves all four."""
    params, static = partition(model)
    target = jnp.array([[0.5, 4.0]]) * jnp.ones((TS.size, 1))

    def loss(p, options=OPTS):
        ys = solve(eqx.combine(p, static), Y0, TS, options).ys
        return jnp.sum((ys - target) ** 2)

    v = random_direction(jr.key(1), params)
    # eps: truncation error ~eps² · |third derivative| ≈ 1e-10, rounding ≈ 1e-16/eps ≈ 1e-11;
    # the solver's discretisation is smooth in the parameters for a perturbation this small
    fd = central_fd(eqx.filter_jit(loss), params, v, eps=1e-5)
    return loss, params, v, fd


@pytest.mark.parametrize("adjoint", ["recursive", "backsolve", "forward", "direct"])
def test_adjoint_gradient_matches_finite_differences(fd_setup, adjoint):
    loss, params, v, fd = fd_setup
    options = SolverOptions("tsit5", rtol=TOL, atol=TOL, max_steps=64, adjoint=adjoint)
    if adjoint == "forward":
        # ForwardMode supports only forward-mode autodiff: the directional derivative is a JVP
        _, ad = eqx.filter_jit(lambda p, d: jax.jvp(lambda q: loss(q, options), (p,), (d,)))(
            params, v
        )
    else:
        g = eqx.filter_jit(jax.grad(lambda p: loss(p, options)))(params)
        ad = tree_dot(g, v)
        # every trainable leaf (network weights and the trainable alpha) receives a gradient
        assert all(np.any(np.asarray(x) != 0) for x in jax.tree_util.tree_leaves(g))
        assert g.known.alpha.raw is not None and g.known.gamma.raw is None
    assert abs(fd) > 1e-3  # the check is not vacuous
    # measured agreement ~1e-9 for every adjoint (backsolve too: its backward solve runs at the
    # same tight tolerance); 1e-7 leaves a margin and still catches any wrong leaf (below)
    rtol = 1e-7
    np.testing.assert_allclose(float(ad), fd, rtol=rtol)
    if adjoint == "recursive":
        # the comparison can fail: zeroing one leaf of the gradient is caught
        leaves, treedef = jax.tree_util.tree_flatten(g)
        for i in range(len(leaves)):
            broken = jax.tree_util.tree_unflatten(
                treedef, [jnp.zeros_like(x) if j == i else x for j, x in enumerate(leaves)]
            )
            assert abs(float(tree_dot(broken, v)) - fd) > rtol * abs(fd)


def test_vmapped_batch_equals_loop(model):
    batched = solve(model, Y0S, TS, OPTS)
    assert batched.ys.shape == (3, TS.size, 2) and batched.num_steps.shape == (3,)
    assert bool(jnp.all(batched.ok)) and batched.message() == "successful"
    for i, y0 in enumerate(Y0S):
        one = solve(model, y0, TS, OPTS)
        np.testing.assert_allclose(batched.ys[i], one.ys, rtol=1e-13, atol=1e-14)
        assert int(batched.num_steps[i]) == int(one.num_steps)


def test_solve_batch_over_models_equals_loop():
    keys = jr.split(jr.key(2), 3)
    # stacked leaves, as eqx.filter_vmap(tiny_ude)(keys) would give (stacking is cheaper to build)
    models = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[tiny_ude(k) for k in keys])
    assert models.correction.layers[0].weight.shape == (3, 4, 2)
    sols = solve_batch(models, Y0S, TS, OPTS)
    shared = solve_batch(models, Y0, TS, OPTS)
    assert sols.ys.shape == shared.ys.shape == (3, TS.size, 2)
    for i, k in enumerate(keys):
        m = tiny_ude(k)
        np.testing.assert_allclose(
            sols.ys[i], solve(m, Y0S[i], TS, OPTS).ys, rtol=1e-13, atol=1e-14
        )
        np.testing.assert_allclose(shared.ys[i], solve(m, Y0, TS, OPTS).ys, rtol=1e-13, atol=1e-14)
    # the models really differ
    assert not np.allclose(shared.ys[0], shared.ys[1])


def test_no_retrace_on_new_values(model):
    """New y0, new tolerances (arrays) and new parameters of the same shapes reuse one compile."""

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(m, y0, options):
        return solve_jit(m, y0, TS, options)

    loose = run(model, Y0, SolverOptions("tsit5", rtol=1e-4, atol=1e-4, max_steps=64))
    other = tiny_ude(jr.key(5))
    other = eqx.tree_at(lambda m: m.known, other, other.known.with_params(alpha=1.1))
    tight = run(
        other,
        Y0S[1],
        SolverOptions("tsit5", rtol=jnp.array(1e-9), atol=jnp.array(1e-9), max_steps=64),
    )
    # the tolerances were used, not baked in: the tight solve takes more steps
    assert int(tight.num_steps) > int(loose.num_steps)
    np.testing.assert_allclose(tight.ys, solve(other, Y0S[1], TS, OPTS).ys, rtol=1e-8)
    np.testing.assert_allclose(loose.ys, solve(model, Y0, TS, OPTS).ys, rtol=1e-3)
    # a changed static option (the solver) is a new program: the guard must notice
    with pytest.raises(RuntimeError, match="traced"):
        run(model, Y0, SolverOptions("heun", rtol=1e-4, atol=1e-4, max_steps=64))


def test_solve_jit_checks_times_before_tracing(model):
    with pytest.raises(ValueError, match="ts"):
        solve_jit(model, Y0, TS[::-1], OPTS)


def test_max_steps_exhausted(model):
    """A span far too long for max_steps=64 at rtol 1e-10 (same compiled program as above)."""
    long_ts = jnp.linspace(0.0, 40.0, TS.size)
    sol = solve(model, Y0, long_ts, OPTS)
    assert not bool(sol.ok)
    assert sol.result == diffrax.RESULTS.max_steps_reached
    assert "max_steps" in sol.message()
    assert int(sol.num_steps) == 64
    assert not np.all(np.isfinite(np.asarray(sol.ys[-1])))
    batch = solve(model, Y0S, long_ts, OPTS)
    assert not np.any(np.asarray(batch.ok))
    assert batch.message().startswith("member 0:") and "max_steps" in batch.message()
    with pytest.raises(RuntimeError, match="max_steps"):
        solve(model, Y0, long_ts, OPTS, throw=True)


def test_float32(model):
    sol = solve(model, Y0, TS, SolverOptions("tsit5", rtol=1e-5, atol=1e-5, dtype="float32"))
    assert sol.ys.dtype == jnp.float32 and sol.ts.dtype == jnp.float32
    ref = solve(model, Y0, TS, OPTS).ys
    np.testing.assert_allclose(sol.ys, ref, rtol=1e-4)
    assert solve(model, Y0, TS, OPTS).ys.dtype == jnp.float64


def zero_net_ude():
    """The tiny UDE with a zero network: exactly two exponentials, and the same structure (so the
    same compiled program) as :func:`tiny_ude`."""
    m = tiny_ude()
    last = m.correction.layers[-1]
    return eqx.tree_at(
        lambda m: (m.correction.layers[-1].weight, m.correction.layers[-1].bias),
        m,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


def exponentials(ts, y0=Y0):
    ts = np.asarray(ts)
    return np.stack([y0[0] * np.exp(1.3 * ts), y0[1] * np.exp(-1.8 * ts)], axis=-1)


def test_t0_before_first_save_time():
    ts = TS + 0.25
    sol = solve(zero_net_ude(), Y0, ts, OPTS, t0=0.0)
    np.testing.assert_allclose(sol.ys, exponentials(ts), rtol=1e-9)
    assert not np.allclose(sol.ys[0], Y0)


def test_fixed_steps_is_explicit_euler():
    """Euler on y' = (alpha x, -gamma y) with N equal steps is y0 · (1 + h·rate)^N exactly."""
    n = 10
    ts = jnp.array([0.0, 0.5])
    sol = solve(zero_net_ude(), Y0, ts, SolverOptions("euler", fixed_steps=n))
    h = 0.5 / n
    want = np.array([0.44 * (1 + 1.3 * h) ** n, 4.6 * (1 - 1.8 * h) ** n])
    np.testing.assert_allclose(sol.ys[-1], want, rtol=1e-13)
    assert int(sol.num_steps) == n


def test_solution_is_a_pytree():
    sol = Solution(
        ts=jnp.zeros(2),
        ys=jnp.zeros((2, 2)),
        result=diffrax.RESULTS.successful,
        num_steps=jnp.array(1),
        num_rejected=jnp.array(0),
    )
    assert bool(sol.ok) and sol.message() == "successful"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(solver="rk4_nonsense"), "solver"),
        (dict(solver=3), "solver"),
        (dict(adjoint="nonsense"), "adjoint"),
        (dict(adjoint=3), "adjoint"),
        (dict(rtol=0.0), "rtol"),
        (dict(rtol=-1e-6), "rtol"),
        (dict(atol=0.0), "atol"),
        (dict(atol=np.array([1e-6, -1.0])), "atol"),
        (dict(max_steps=0), "max_steps"),
        (dict(max_steps=10.5), "max_steps"),
        (dict(fixed_steps=0), "fixed_steps"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_solver_options_errors(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SolverOptions(**kwargs)


def test_solver_options_accepts_names_and_instances():
    o = SolverOptions("Dopri8", adjoint="BACKSOLVE", rtol=jnp.array(1e-7))
    assert isinstance(o.solver, diffrax.Dopri8) and isinstance(o.adjoint, diffrax.BacksolveAdjoint)
    assert o.rtol.dtype == jnp.float64 and float(o.rtol) == 1e-7
    o = SolverOptions(diffrax.Heun(), adjoint=diffrax.DirectAdjoint())
    assert isinstance(o.solver, diffrax.Heun) and isinstance(o.adjoint, diffrax.DirectAdjoint)


@pytest.mark.parametrize(
    "ts",
    [
        [0.0, 1.0, 1.0],
        [0.0, 2.0, 1.0],
        [[0.0, 1.0, 0.5]],
        [[0.0, 1.0, 1.0, 2.0]],
        [],
        [0.0, np.nan],
    ],
)
def test_check_times_errors(ts):
    with pytest.raises(ValueError, match="ts"):
        check_times(np.asarray(ts))


def test_solve_argument_errors(model):
    check_times(TS)  # fine
    with pytest.raises(ValueError, match="ts"):
        solve(model, Y0, jnp.array([0.0, 0.5, 0.2]), OPTS)
    with pytest.raises(ValueError, match="y0"):
        solve(model, jnp.ones((1, 3, 2)), TS, OPTS)
    with pytest.raises(ValueError, match="y0.*2 states"):
        solve(model, jnp.ones(3), TS, OPTS)
    with pytest.raises(ValueError, match="y0.*2 states"):
        solve(model, jnp.ones((4, 3)), TS, OPTS)
