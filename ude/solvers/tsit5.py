"""Tsit5 for small systems: straight-line stages, and the save times handled inside the step.

diffrax's ``Tsit5`` is written for every Runge–Kutta case (implicit, IMEX, SDE); it runs its seven
stages as an inner checkpointed ``while_loop``, and ``SaveAt(ts=...)`` runs another inner loop over
the save times that fall in each step. For a UDE of a few states every one of those loop iterations
is a handful of kernel launches that cost more than the arithmetic, in the forward solve and again
in its backward pass. :class:`Tsit5` is the same method (the same tableau and interpolant; the same
steps and states as ``diffrax.Tsit5`` to ~1e-12 in float64) with its stages written out, and
:class:`SaveTsit5` also evaluates the step's interpolant at *all* save times at once (one small
matrix product) and keeps those that fall in the step: no inner loops at all. Both are diffrax
solvers, run by ``diffrax.diffeqsolve`` with its step-size controllers and adjoints; a rejected
step's recorded values are discarded with the rest of its solver state.

The tableau is held here as data (:data:`TSIT5_TABLEAU`, as diffrax holds it), not imported from
diffrax's private modules. Use them through :class:`ude.solve.SolverOptions` (``"tsit5"``, the
default); ``"tsit5-diffrax"`` keeps diffrax's own solver. Straight-line stages put seven copies of
the vector field in the compiled program: the runtime gain is for training's reverse-mode
programs, so :func:`ude.solve.solve` falls back to diffrax's stage loop (the same method and
steps) under forward mode and for vector fields marked ``compact_stages`` (a discovered model,
which evaluates its whole candidate library).
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, PyTree, Real, Shaped

# The Butcher tableau of Tsitouras' 5(4) pair, as data: Ch. Tsitouras, "Runge-Kutta pairs of order
# 5(4) satisfying only the first column simplifying assumption", Computers & Mathematics with
# Applications 62(2), 770-775 (2011). The numbers are diffrax's (diffrax/_solver/tsit5.py,
# diffrax 0.7.2), each written as the shortest decimal of the same float64, so the solver takes
# diffrax.Tsit5's steps exactly (tests/test_solvers.py compares them number by number).
# b_error = b_sol - b_hat, b_hat the embedded fourth-order weights.
TSIT5_TABLEAU = diffrax.ButcherTableau(
    a_lower=(
        np.array([0.161]),
        np.array([-0.008480655492356989, 0.335480655492357]),
        np.array([2.8971530571054935, -6.359448489975075, 4.3622954328695815]),
        np.array(
            [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]
        ),
        np.array(
            [
                5.86145544294642,
                -12.92096931784711,
                8.159367898576159,
                -0.071584973281401,
                -0.028269050394068383,
            ]
        ),
        np.array(
            [
                0.09646076681806523,
                0.01,
                0.4798896504144996,
                1.379008574103742,
                -3.290069515436081,
                2.324710524099774,
            ]
        ),
    ),
    b_sol=np.array(
        [
            0.09646076681806523,
            0.01,
            0.4798896504144996,
            1.379008574103742,
            -3.290069515436081,
            2.324710524099774,
            0.0,
        ]
    ),
    b_error=np.array(
        [
            0.0017800110522257773,
            0.0008164344596567463,
            -0.007880878010261994,
            0.1447110071732629,
            -0.5823571654525552,
            0.45808210592918686,
            -0.015151515151515152,
        ]
    ),
    c=np.array([0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0]),
)

_A = [np.asarray(row, np.float64) for row in TSIT5_TABLEAU.a_lower]
_C = np.asarray(TSIT5_TABLEAU.c, np.float64)
_B_ERROR = np.asarray(TSIT5_TABLEAU.b_error, np.float64)
# first same as last: the seventh stage is evaluated at (t1, y1), so y1 is its stage input
assert np.array_equal(_A[-1], np.asarray(TSIT5_TABLEAU.b_sol, np.float64)[:-1])

_RealScalarLike = Real[ArrayLike, ""]


class Tsit5Interpolation(diffrax.AbstractLocalInterpolation):
    """Tsit5's fifth-order dense output on one step ``[t0, t1]``, from the step's seven stage
    increments ``k`` (the same polynomials as diffrax's ``Tsit5`` interpolant, term by term)."""

    t0: _RealScalarLike
    t1: _RealScalarLike
    y0: PyTree[Array]
    k: PyTree[Shaped[Array, "7 ?*y"]]

    def __init__(self, *, t0, t1, y0, y1, k):
        del y1  # passed by diffrax with every solver's dense info; the interpolant needs y0 only
        self.t0 = t0
        self.t1 = t1
        self.y0 = y0
        self.k = k

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            return jtu.tree_map(jnp.subtract, self.evaluate(t1), self.evaluate(t0))
        # (t - t0) / (t1 - t0), zero (with zero gradients) on an empty step, as diffrax rescales
        empty = self.t0 == self.t1
        t = jnp.where(empty, 0, t0 - self.t0) / jnp.where(empty, 1, self.t1 - self.t0)
        b1 = (
            -1.0530884977290216
            * t
            * (t - 1.3299890189751412)
            * (t**2 - 1.4364028541716351 * t + 0.7139816917074209)
        )
        b2 = 0.1017 * t**2 * (t**2 - 2.1966568338249754 * t + 1.2949852507374631)
        b3 = 2.490627285651252793 * t**2 * (t**2 - 2.38535645472061657 * t + 1.57803468208092486)
        b4 = -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t**2
        b5 = 47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t**2
        b6 = -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t**2
        b7 = 2.5 * (t - 1) * (t - 0.6) * t**2
        weights = jnp.stack([b1, b2, b3, b4, b5, b6, b7])
        with jax.numpy_dtype_promotion("standard"):
            return jtu.tree_map(
                lambda y0, k: (
                    y0 + jnp.tensordot(weights, k, axes=1, precision=jax.lax.Precision.HIGHEST)
                ),
                self.y0,
                self.k,
            )


def _combine(coefficients, ks):
    """``sum_j c_j k_j`` over the nonzero coefficients (Python floats: constants in the program);
    ``ks`` are arrays or pytrees of arrays (diffrax's backsolve adjoint solves a tuple state)."""
    pairs = [(float(c), k) for c, k in zip(coefficients, ks, strict=True) if c != 0]
    return jtu.tree_map(
        lambda *leaves: sum(c * x for (c, _), x in zip(pairs, leaves, strict=True)),
        *(k for _, k in pairs),
    )


class Tsit5(diffrax.AbstractAdaptiveSolver):
    """Tsitouras' 5(4) method with its stages written out (for ``ODETerm``s).

    The solver state is the vector field at the start of the step (first same as last).
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = Tsit5Interpolation

    def order(self, terms):
        return 5

    def init(self, terms, t0, t1, y0, args):
        return terms.vf(t0, y0, args)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def _stages(self, terms, t0, t1, y0, args, f0, made_jump):
        if made_jump is not False:  # after a jump the stored f0 is stale
            f0 = jax.lax.cond(made_jump, lambda: terms.vf(t0, y0, args), lambda: f0)
        control = terms.contr(t0, t1)
        h = t1 - t0
        ks = [terms.prod(f0, control)]
        for a, c in zip(_A, _C, strict=True):
            y_i = jtu.tree_map(jnp.add, y0, _combine(a, ks))
            f_i = terms.vf(t0 + float(c) * h, y_i, args)
            ks.append(terms.prod(f_i, control))
        y1, f1 = y_i, f_i
        y_error = _combine(_B_ERROR, ks)
        return y1, y_error, dict(y0=y0, y1=y1, k=jtu.tree_map(lambda *k: jnp.stack(k), *ks)), f1

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense, f1 = self._stages(terms, t0, t1, y0, args, solver_state, made_jump)
        return y1, y_error, dense, f1, diffrax.RESULTS.successful


class SaveTsit5(Tsit5):
    """:class:`Tsit5` that records the solution (an array) at ``ts`` (increasing) as it steps.

    Run it with ``SaveAt(t1=True, solver_state=True)``: the recorded ``(times, state)`` array is
    the second element of the final solver state (see :func:`saved`). Save times at or before the
    start get ``y0``; those the solve never reaches stay ``inf``, as with diffrax's ``SaveAt(ts)``.
    """

    ts: Array

    def init(self, terms, t0, t1, y0, args):
        ys = jnp.where((self.ts <= t0)[:, None], y0, jnp.asarray(jnp.inf, y0.dtype))
        return terms.vf(t0, y0, args), ys

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0, ys = solver_state
        y1, y_error, dense, f1 = self._stages(terms, t0, t1, y0, args, f0, made_jump)
        # the interpolant at every save time, clipped into the step so the polynomials stay finite
        # (and their gradients too) where they are not used
        interpolant = Tsit5Interpolation(t0=t0, t1=t1, **dense)
        values = jax.vmap(interpolant.evaluate)(jnp.clip(self.ts, t0, t1))
        inside = (self.ts > t0) & (self.ts <= t1)
        ys = jnp.where(inside[:, None], values, ys)
        return y1, y_error, dense, (f1, ys), diffrax.RESULTS.successful


def saved(solution: diffrax.Solution) -> Array:
    """The states :class:`SaveTsit5` recorded, from a solve with ``SaveAt(solver_state=True)``."""
    return solution.solver_state[1]
