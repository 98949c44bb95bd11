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

Use them through :class:`ude.solve.SolverOptions` (``"tsit5"``, the default); ``"tsit5-diffrax"``
keeps diffrax's own solver. Straight-line stages put seven copies of the vector field in the
compiled program: the runtime gain is for training's reverse-mode programs, so :func:`ude.solve.solve`
falls back to diffrax's stage loop (the same method and steps) under forward mode and for vector
fields marked ``compact_stages`` (a discovered model, which evaluates its whole candidate library).
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from diffrax._solver.tsit5 import _tsit5_tableau, _Tsit5Interpolation  # the coefficients

from ._types import Array

_A = [np.asarray(row, np.float64) for row in _tsit5_tableau.a_lower]
_C = np.asarray(_tsit5_tableau.c, np.float64)
_B_ERROR = np.asarray(_tsit5_tableau.b_error, np.float64)
# first same as last: the seventh stage is evaluated at (t1, y1), so y1 is its stage input
assert np.array_equal(_A[-1], np.asarray(_tsit5_tableau.b_sol, np.float64)[:-1])


def _combine(coefficients, ks):
    """``sum_j c_j k_j`` over the nonzero coefficients (Python floats: constants in the program);
    ``ks`` are arrays or pytrees of arrays (diffrax's backsolve adjoint solves a tuple state)."""
    pairs = [(float(c), k) for c, k in zip(coefficients, ks) if c != 0]
    return jtu.tree_map(lambda *leaves: sum(c * x for (c, _), x in zip(pairs, leaves)),
                        *(k for _, k in pairs))


class Tsit5(diffrax.AbstractAdaptiveSolver):
    """Tsitouras' 5(4) method with its stages written out (for ``ODETerm``s).

    The solver state is the vector field at the start of the step (first same as last).
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = _Tsit5Interpolation

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
        for a, c in zip(_A, _C):
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
        interpolant = _Tsit5Interpolation(t0=t0, t1=t1, **dense)
        values = jax.vmap(interpolant.evaluate)(jnp.clip(self.ts, t0, t1))
        inside = (self.ts > t0) & (self.ts <= t1)
        ys = jnp.where(inside[:, None], values, ys)
        return y1, y_error, dense, (f1, ys), diffrax.RESULTS.successful


def saved(solution: diffrax.Solution) -> Array:
    """The states :class:`SaveTsit5` recorded, from a solve with ``SaveAt(solver_state=True)``."""
    return solution.solver_state[1]
