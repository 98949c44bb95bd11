"""Hand-written references for the ude training step (written without ude, as a user would).

* :func:`diffrax_step`: diffrax + equinox + optax as a user would write it (diffrax's ``Tsit5``,
  ``SaveAt(ts=...)``, the default recursive-checkpoint adjoint), the same tolerances and network
  as the ude model (weights copied), one optimiser step per call or ``FUSED`` per ``lax.scan``.
* :func:`same_config_step`: the same, with ude's solver configuration (``ude.solvers``' Tsit5, a
  checkpoint per step) written out by hand: what the ude step's own overhead is measured against.
* :func:`floor_step`: the floor — a fixed-step Tsit5 in a plain ``lax.scan`` taking as many steps
  as the adaptive solve did, no error control, no step rejection, no diffrax.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import ATOL, LR, RTOL


def copy_network(model):
    """An ``eqx.nn.MLP`` with the ude model's weights, and the known part's (α, γ)."""
    net = model.correction
    sizes = [layer.weight.shape for layer in net.layers]
    dtype = net.layers[0].weight.dtype
    mlp = eqx.nn.MLP(
        sizes[0][1],
        sizes[-1][0],
        sizes[0][0],
        len(sizes) - 1,
        activation=jnp.tanh,
        key=jax.random.key(0),
        dtype=dtype,
    )
    get = lambda m: [x for layer in m.layers for x in (layer.weight, layer.bias)]  # noqa: E731
    mlp = eqx.tree_at(get, mlp, get(net))
    alpha = jnp.asarray(model.known.p("alpha"), dtype)
    gamma = jnp.asarray(model.known.p("gamma"), dtype)
    return mlp, (alpha, gamma)


def _vf(t, y, args):
    mlp, (alpha, gamma) = args
    return jnp.stack([alpha * y[0], -gamma * y[1]]) + mlp(y)


def diffrax_loss(
    mlp, consts, ts, y0, ys, adjoint, max_steps=4096, rtol=RTOL, atol=ATOL, solver=None
):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vf),
        solver or diffrax.Tsit5(),
        ts[0],
        ts[-1],
        None,
        y0,
        args=(mlp, consts),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        max_steps=max_steps,
        throw=False,
    )
    return jnp.sum((sol.ys - ys) ** 2), sol.stats["num_steps"]


def same_config_loss(mlp, consts, ts, y0, ys, max_steps=4096, rtol=RTOL, atol=ATOL):
    """:func:`diffrax_loss` with ude's solver configuration written out by hand: ``ude.solvers``'
    Tsit5 recording the save times in its step, one checkpoint per step. The ude step's overhead
    (its training machinery, not its solver) is measured against this."""
    from ude.solvers import SaveTsit5, saved

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vf),
        SaveTsit5(ts),
        ts[0],
        ts[-1],
        None,
        y0,
        args=(mlp, consts),
        saveat=diffrax.SaveAt(t1=True, solver_state=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=diffrax.RecursiveCheckpointAdjoint(max_steps),
        max_steps=max_steps,
        throw=False,
    )
    return jnp.sum((saved(sol) - ys) ** 2), sol.stats["num_steps"]


def _stepper(loss):
    opt = optax.adam(LR)

    def step(params, opt_state, static, inputs):
        (value, aux), grads = jax.value_and_grad(
            lambda p: loss(eqx.combine(p, static), inputs), has_aux=True
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, aux

    return opt, step


def make(loss, mlp, inputs, fused: int):
    """``(state, one, many)``: jitted per-step and ``fused``-steps-per-scan programs of
    ``loss(model, inputs)``. ``inputs`` (data, constants) are arguments of the jitted functions, not
    compile-time constants, as in a training loop whose data may change."""
    params, static = eqx.partition(mlp, eqx.is_array)
    opt, step = _stepper(loss)
    state = (params, opt.init(params))

    @eqx.filter_jit
    def _one(state, inputs):
        p, s, value, aux = step(*state, static, inputs)
        return (p, s), value, aux

    @eqx.filter_jit
    def _many(state, inputs):
        def body(c, _):
            p, s, value, aux = step(*c, static, inputs)
            return (p, s), (value, aux)

        return jax.lax.scan(body, state, None, length=fused)

    return state, Program(_one, inputs), Program(_many, inputs)


class Program:
    """A jitted function with its trailing arguments bound; ``lower(state)`` for AOT inspection."""

    def __init__(self, fn, *bound):
        self.fn, self.bound = fn, bound

    def __call__(self, state):
        return self.fn(state, *self.bound)

    def lower(self, state):
        return self.fn.lower(state, *self.bound)

    def compiled(self, state):
        """The ``jax.stages.Compiled`` program (``.as_text()``, ``.memory_analysis()``)."""
        return self.fn.lower(state, *self.bound).compile().compiled


def diffrax_step(model, data, adjoint, fused: int, **kw):
    mlp, consts = copy_network(model)
    inputs = (consts, data.ts, data.ys[0, 0], data.ys[0])
    return make(lambda m, i: diffrax_loss(m, *i, adjoint, **kw), mlp, inputs, fused)


def same_config_step(model, data, fused: int, **kw):
    mlp, consts = copy_network(model)
    inputs = (consts, data.ts, data.ys[0, 0], data.ys[0])
    return make(lambda m, i: same_config_loss(m, *i, **kw), mlp, inputs, fused)


# ------------------------------------------------------------------------------------------ floor
def _tsit5_tableau(dtype):
    from diffrax._solver.tsit5 import _tsit5_tableau as tab  # the coefficients only

    a = [np.asarray(r, np.float64) for r in tab.a_lower]
    return a, np.asarray(tab.b_sol, np.float64), dtype


def floor_loss(mlp, consts, ts, y0, ys, n_steps: int):
    """SSE of a fixed-step Tsit5 (``n_steps`` equal steps over ``[ts[0], ts[-1]]``) against ``ys``;
    the states at ``ts`` are linear interpolants of the grid states (cheap; accuracy is not the
    point)."""
    a, b, _ = _tsit5_tableau(y0.dtype)
    ts = np.asarray(ts, np.float64)  # concrete: the grid is fixed
    t0, t1 = float(ts[0]), float(ts[-1])
    dt = jnp.asarray((t1 - t0) / n_steps, y0.dtype)
    args = (mlp, consts)

    def rk(y, _):
        k = [_vf(None, y, args)]
        for i in range(len(a)):
            k.append(_vf(None, y + dt * sum(float(a[i][j]) * k[j] for j in range(i + 1)), args))
        y = y + dt * sum(float(b[j]) * k[j] for j in range(len(b)) if b[j] != 0)
        return y, y

    _, path = jax.lax.scan(rk, y0, None, length=n_steps)
    grid = jnp.concatenate([y0[None], path])
    pos = (ts - t0) / (t1 - t0) * n_steps
    lo = np.minimum(np.floor(pos).astype(int), n_steps - 1)
    w = jnp.asarray((pos - lo)[:, None], y0.dtype)
    pred = grid[lo] * (1 - w) + grid[lo + 1] * w
    return jnp.sum((pred - ys) ** 2), jnp.asarray(n_steps)


def floor_step(model, data, n_steps: int, fused: int):
    mlp, consts = copy_network(model)
    ts = np.asarray(data.ts)  # the fixed grid is static
    inputs = (consts, data.ys[0, 0], data.ys[0])
    return make(lambda m, i: floor_loss(m, i[0], ts, i[1], i[2], n_steps), mlp, inputs, fused)
