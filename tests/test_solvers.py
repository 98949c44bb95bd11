"""ude.solvers: the straight-line Tsit5 and its save-times variant against diffrax's own Tsit5 —
the same steps, states, failures and gradients — and the "auto" checkpoint choice."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.model import UDE, partition
from ude.nn import MLP
from ude.physics import LotkaVolterra, Parameter
from ude.solve import SolverOptions, _adjoint, solve
from ude.solvers import TSIT5_TABLEAU, SaveTsit5, Tsit5, saved

LV = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
TS = jnp.linspace(0.0, 6.0, 25)
Y0 = jnp.array([0.44, 4.6])


def test_tableau_is_diffrax_tsit5s_number_for_number():
    """ude holds the tableau as data; it must be diffrax's, to the last bit (the only place that
    reads diffrax's private module, and only to compare)."""
    from diffrax._solver.tsit5 import _tsit5_tableau as ref

    assert len(TSIT5_TABLEAU.a_lower) == len(ref.a_lower)
    for ours, theirs in zip(TSIT5_TABLEAU.a_lower, ref.a_lower, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for name in ("b_sol", "b_error", "c"):
        np.testing.assert_array_equal(getattr(TSIT5_TABLEAU, name), getattr(ref, name))


def test_dense_output_is_diffrax_tsit5s_interpolant():
    """The interpolant (ude's copy of diffrax's polynomials) on the same 24 fixed steps: values and
    derivatives between and at step ends. The stage sums are written out (diffrax: one tensordot),
    so the last bits differ and compound over the steps: ~1e-13 on states of size ~5."""
    sols = [
        diffrax.diffeqsolve(
            diffrax.ODETerm(LV),
            solver,
            0.0,
            6.0,
            0.25,
            Y0,
            saveat=diffrax.SaveAt(dense=True, steps=True),
        )
        for solver in (Tsit5(), diffrax.Tsit5())
    ]
    np.testing.assert_array_equal(sols[0].ts, sols[1].ts)
    ts = jnp.linspace(0.0, 6.0, 301)  # every fourth point a step end
    ours, ref = (jax.vmap(s.evaluate)(ts) for s in sols)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    ours, ref = (jax.vmap(s.derivative)(ts) for s in sols)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(sols[0].evaluate(2.1, 3.5), sols[1].evaluate(2.1, 3.5), atol=1e-12)


def _pair(ts=TS, y0=Y0, t0=None, **kw):
    ours = solve(LV, y0, ts, SolverOptions("tsit5", **kw), t0=t0)
    ref = solve(LV, y0, ts, SolverOptions("tsit5-diffrax", **kw), t0=t0)
    return ours, ref


@pytest.mark.parametrize("tol", [1e-5, 1e-10])
def test_same_steps_and_states_as_diffrax_tsit5(tol):
    ours, ref = _pair(rtol=tol, atol=tol)
    assert int(ours.num_steps) == int(ref.num_steps) and int(ours.num_rejected) == int(
        ref.num_rejected
    )
    np.testing.assert_allclose(ours.ys, ref.ys, rtol=0, atol=1e-11)
    np.testing.assert_array_equal(ours.ts, ref.ts)


def test_start_before_first_save_time_and_fixed_steps():
    ours, ref = _pair(ts=TS[3:], t0=0.0, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours.ys, ref.ys, rtol=0, atol=1e-11)
    ours, ref = _pair(fixed_steps=40)
    np.testing.assert_allclose(ours.ys, ref.ys, rtol=0, atol=1e-12)


def test_a_failed_solve_leaves_inf_where_diffrax_does():
    ours, ref = _pair(rtol=1e-8, atol=1e-8, max_steps=20)
    assert not bool(ours.ok) and ours.result == ref.result
    np.testing.assert_array_equal(np.isinf(ours.ys), np.isinf(ref.ys))
    assert np.isinf(ours.ys[-1]).all() and np.isfinite(ours.ys[0]).all()
    np.testing.assert_array_equal(ours.ts, ref.ts)
    ok = np.isfinite(ref.ys)
    np.testing.assert_allclose(np.asarray(ours.ys)[ok], np.asarray(ref.ys)[ok], atol=1e-11)


def test_batched_solve_matches_one_by_one():
    y0s = jnp.array([[0.44, 4.6], [1.0, 1.0], [2.0, 0.5]])
    batch = solve(LV, y0s, TS, SolverOptions("tsit5"))
    for i in range(3):
        np.testing.assert_allclose(
            batch.ys[i], solve(LV, y0s[i], TS, SolverOptions("tsit5")).ys, atol=1e-12
        )


def test_jumps_refresh_the_first_same_as_last_stage():
    """With ``jump_ts`` diffrax passes ``made_jump``: the stored vector field must be recomputed."""
    ctrl = diffrax.PIDController(rtol=1e-8, atol=1e-8, jump_ts=jnp.array([1.0, 2.5]))
    kick = lambda t, y, args: jnp.where(t < 2.5, 1.0, -1.0) * y  # noqa: E731  (jumps at 2.5)
    run = lambda solver: diffrax.diffeqsolve(  # noqa: E731
        diffrax.ODETerm(kick),
        solver,
        0.0,
        4.0,
        None,
        jnp.array([1.0, 2.0]),
        saveat=diffrax.SaveAt(ts=jnp.linspace(0, 4, 9)),
        stepsize_controller=ctrl,
    )
    ours, ref = run(Tsit5()), run(diffrax.Tsit5())
    np.testing.assert_allclose(ours.ys, ref.ys, rtol=1e-10)
    np.testing.assert_allclose(ours.ys[-1], np.array([1.0, 2.0]) * np.exp(2.5 - 1.5), rtol=1e-6)


def test_save_tsit5_records_the_interpolant_at_every_save_time():
    ts = jnp.array([0.0, 0.013, 0.5, 0.51, 0.52, 3.3, 6.0])  # several save times in one step
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(LV),
        SaveTsit5(ts),
        0.0,
        6.0,
        None,
        Y0,
        saveat=diffrax.SaveAt(t1=True, solver_state=True),
        stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9),
    )
    ref = diffrax.diffeqsolve(
        diffrax.ODETerm(LV),
        diffrax.Tsit5(),
        0.0,
        6.0,
        None,
        Y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9),
    )
    np.testing.assert_allclose(saved(sol), ref.ys, rtol=0, atol=1e-11)


@pytest.fixture(scope="module")
def ude_loss():
    known = LotkaVolterra(Parameter(1.3, trainable=True), 0.9, 1.8, 0.8).keep("growth", "death")
    model = UDE(known, MLP(2, 2, width=4, depth=1, key=jr.key(0)))
    params, static = partition(model)
    target = jnp.stack([jnp.linspace(0.5, 2.0, TS.size), jnp.linspace(4.0, 1.0, TS.size)], -1)

    def loss(p, name, adjoint):
        opts = SolverOptions(name, rtol=1e-9, atol=1e-9, adjoint=adjoint, max_steps=512)
        return jnp.sum((solve(eqx.combine(p, static), Y0, TS, opts).ys - target) ** 2)

    return loss, params


@pytest.mark.parametrize("adjoint", ["recursive", "direct", "backsolve"])
def test_gradients_match_diffrax_tsit5(ude_loss, adjoint):
    loss, params = ude_loss
    g = jax.grad(lambda p: loss(p, "tsit5", adjoint))(params)
    ref = jax.grad(lambda p: loss(p, "tsit5-diffrax", "recursive"))(params)
    rtol = 1e-5 if adjoint == "backsolve" else 1e-8  # backsolve integrates the adjoint ODE anew
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-8 * float(jnp.max(jnp.abs(b))))


def test_auto_checkpoints_one_per_step_within_the_memory_budget():
    small = _adjoint(SolverOptions("tsit5", max_steps=4096), jnp.zeros(2), 4096)
    assert small.checkpoints == 4096
    big = _adjoint(SolverOptions("tsit5", max_steps=10**6), jnp.zeros(1000), 10**6)
    assert big.checkpoints is None  # 4 x 1e6 x 1000 x 8 B would not fit: diffrax's default
    assert (
        _adjoint(SolverOptions("tsit5", checkpoints=None), jnp.zeros(2), 4096).checkpoints is None
    )
    assert _adjoint(SolverOptions("tsit5", checkpoints=8), jnp.zeros(2), 4096).checkpoints == 8
    with pytest.raises(ValueError, match="checkpoints must be"):
        SolverOptions("tsit5", checkpoints=0)


class _Counting(eqx.Module):
    """LV's vector field counting how often it is traced."""

    calls: list = eqx.field(static=True)
    state_names = ("x", "y")

    def __call__(self, t, y, args=None):
        self.calls.append(1)
        return LV(t, y, args)


class _CompactCounting(_Counting):
    compact_stages = True


@pytest.mark.parametrize("adjoint", ["recursive", "forward"])
def test_large_vector_fields_and_forward_mode_keep_the_stage_loop(adjoint):
    """Straight-line stages trace the vector field once per stage; a vector field marked
    ``compact_stages`` (a discovered model) and forward mode get diffrax's stage loop instead,
    with the same solution."""
    opts = SolverOptions("tsit5", rtol=1e-8, atol=1e-8, adjoint=adjoint)
    counts, sols = {}, {}
    for cls in (_Counting, _CompactCounting):
        vf = cls(calls=[])
        jax.make_jaxpr(lambda y0, vf=vf: solve(vf, y0, TS, opts).ys)(Y0)
        counts[cls] = len(vf.calls)
        sols[cls] = solve(cls(calls=[]), Y0, TS, opts).ys
    if adjoint == "forward":
        assert counts[_Counting] == counts[_CompactCounting]
    else:
        assert counts[_Counting] >= counts[_CompactCounting] + 5
    np.testing.assert_allclose(sols[_Counting], sols[_CompactCounting], rtol=0, atol=1e-11)


def test_save_times_before_the_start_are_refused_as_by_diffrax():
    for name in ("tsit5", "tsit5-diffrax"):
        with pytest.raises(Exception, match="saveat.ts must lie between t0 and t1"):
            solve(LV, Y0, TS, SolverOptions(name), t0=1.0)
