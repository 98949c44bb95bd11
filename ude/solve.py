"""One entry point for solving: vector field, initial state(s), save times, options → Solution."""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, ArrayLike, Float, Int
from .solvers import SaveTsit5, Tsit5, saved

# Aliases, not inline strings, in function signatures: with ``from __future__ import annotations``
# typeguard (jaxtyping's runtime checker) would parse "*batch state" as Python and fail.
InitialStates = Float[ArrayLike, "*batch state"]
SaveTimes = Float[ArrayLike, "*rows times"]

# keys: ude.registry.SOLVER_NAMES, what a config may name (tests/test_registry.py checks it)
SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "tsit5": Tsit5,  # ude.solvers: diffrax's method with straight-line stages (same steps, faster)
    "tsit5-diffrax": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "heun": diffrax.Heun,
    "bosh3": diffrax.Bosh3,
    "euler": diffrax.Euler,
    "kvaerno5": diffrax.Kvaerno5,
    "kvaerno3": diffrax.Kvaerno3,
}

# keys: ude.registry.ADJOINT_NAMES (tests/test_registry.py checks it)
ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive": diffrax.RecursiveCheckpointAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
    "forward": diffrax.ForwardMode,
    "direct": diffrax.DirectAdjoint,
}


class SolverOptions(eqx.Module):
    """How to solve. Names and counts are static (they fix the compiled program); tolerances are
    arrays, so sweeping them never recompiles.

    Args:
        solver: a name from :data:`SOLVERS` or a ``diffrax.AbstractSolver`` instance.
        rtol, atol: tolerances of the PID step-size controller (ignored by ``fixed_steps``).
        adjoint: a name from :data:`ADJOINTS` or a ``diffrax.AbstractAdjoint`` instance.
        max_steps: the solver's step budget; a solve that needs more fails with a result code.
        dt0: the first step (default: chosen by diffrax).
        fixed_steps: if set, take this many equal steps with no error control.
        dtype: ``"float32"`` / ``"float64"`` / None (keep the input's dtype).
        checkpoints: checkpoints of the recursive-checkpoint adjoint. ``"auto"`` (default): one per
            step (``max_steps``: the backward pass never re-runs the forward solve; it stores a few
            states per step, kept under 64 MiB per trajectory, else diffrax's default); None:
            diffrax's default (about log2(max_steps), recomputing); an integer: that many.
    """

    solver: diffrax.AbstractSolver = eqx.field(static=True)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True)
    rtol: Array
    atol: Array
    max_steps: int = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    fixed_steps: int | None = eqx.field(static=True)
    dtype: str | None = eqx.field(static=True)
    checkpoints: int | str | None = eqx.field(static=True)

    def __init__(
        self,
        solver="tsit5",
        *,
        rtol=1e-6,
        atol=1e-6,
        adjoint="recursive",
        max_steps=4096,
        dt0=None,
        fixed_steps=None,
        dtype=None,
        checkpoints="auto",
    ):
        if isinstance(solver, str):
            if solver.lower() not in SOLVERS:
                raise ValueError(
                    f"SolverOptions: unknown solver {solver!r}; choose from {sorted(SOLVERS)}"
                )
            solver = SOLVERS[solver.lower()]()
        elif not isinstance(solver, diffrax.AbstractSolver):
            raise ValueError(
                f"SolverOptions: solver must be a name or a diffrax solver, got {solver!r}"
            )
        if isinstance(adjoint, str):
            if adjoint.lower() not in ADJOINTS:
                raise ValueError(
                    f"SolverOptions: unknown adjoint {adjoint!r}; choose from {sorted(ADJOINTS)}"
                )
            name = adjoint.lower()
            adjoint = (
                diffrax.RecursiveCheckpointAdjoint(None if checkpoints == "auto" else checkpoints)
                if name == "recursive"
                else ADJOINTS[name]()
            )
        elif not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise ValueError(
                f"SolverOptions: adjoint must be a name or a diffrax adjoint, got {adjoint!r}"
            )
        for name, v in (("rtol", rtol), ("atol", atol)):
            if not isinstance(v, jax.core.Tracer) and not np.all(np.asarray(v) > 0):
                raise ValueError(f"SolverOptions: {name} must be > 0, got {v!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(
                f"SolverOptions: max_steps must be a positive integer, got {max_steps!r}"
            )
        if fixed_steps is not None and (not isinstance(fixed_steps, int) or fixed_steps < 1):
            raise ValueError(
                f"SolverOptions: fixed_steps must be a positive integer, got {fixed_steps!r}"
            )
        if dtype not in (None, "float32", "float64"):
            raise ValueError(
                f"SolverOptions: dtype must be 'float32', 'float64' or None, got {dtype!r}"
            )
        if not (
            checkpoints in ("auto", None) or (isinstance(checkpoints, int) and checkpoints >= 1)
        ):
            raise ValueError(
                f"SolverOptions: checkpoints must be 'auto', None or a positive integer, "
                f"got {checkpoints!r}"
            )
        self.solver = solver
        self.adjoint = adjoint
        self.rtol = jnp.asarray(rtol, dtype=jnp.result_type(float))
        self.atol = jnp.asarray(atol, dtype=jnp.result_type(float))
        self.max_steps = max_steps
        self.dt0 = dt0
        self.fixed_steps = fixed_steps
        self.dtype = dtype
        self.checkpoints = checkpoints


# diffeqsolve without its own ``eqx.filter_jit``, for solves inside a jitted program (a fit chunk):
# there the nested jit only adds a call boundary to trace, transpose and compile (~0.1 s of a
# training program's first call). Eager calls keep the jitted one, which compiles and caches.
_diffeqsolve_unjitted = getattr(diffrax.diffeqsolve, "__wrapped__", diffrax.diffeqsolve)


def _diffeqsolve(*args, **kwargs):
    staged = isinstance(jnp.zeros(()), jax.core.Tracer)  # inside jit/scan every new array is traced
    return (_diffeqsolve_unjitted if staged else diffrax.diffeqsolve)(*args, **kwargs)


# "auto" checkpoints: one per step while max_steps x (a few states) stays under this, per trajectory
_CHECKPOINT_BYTES = 64 * 2**20


def _adjoint(options: SolverOptions, y0, max_steps: int) -> diffrax.AbstractAdjoint:
    adjoint = options.adjoint
    if (
        options.checkpoints == "auto"
        and type(adjoint) is diffrax.RecursiveCheckpointAdjoint
        and adjoint.checkpoints is None
        and 4 * max_steps * y0.size * y0.dtype.itemsize <= _CHECKPOINT_BYTES
    ):
        # equinox's checkpointed loop with a checkpoint per step stores each step's carry once and
        # runs one VJP per step backwards (no recomputation, no online-treeverse bookkeeping)
        return diffrax.RecursiveCheckpointAdjoint(max_steps)
    return adjoint


class Solution(eqx.Module):
    """States at the save times, solver statistics and diffrax's result code.

    ``ys`` has shape ``(times, state)``, or ``(batch, times, state)`` for a batch of initial states.
    Where a solve failed (``ok`` is False), ``ys`` holds ``inf`` after the failure.
    """

    ts: Float[Array, "*batch times"]
    ys: Float[Array, "*batch times state"]
    result: diffrax.RESULTS
    num_steps: Int[Array, "*batch"]
    num_rejected: Int[Array, "*batch"]

    @property
    def ok(self) -> Array:
        return self.result == diffrax.RESULTS.successful

    def message(self) -> str:
        """A readable description of the first failure, or ``"successful"``."""
        ok = np.asarray(self.ok)
        if ok.all():
            return "successful"
        res = self.result
        if ok.ndim:
            i = int(np.argmin(ok.reshape(-1)))
            res = jax.tree_util.tree_map(lambda x: x.reshape(-1)[i], res)
            return f"member {i}: {diffrax.RESULTS[res]}"
        return str(diffrax.RESULTS[res])


def _as_dtype(x, dtype):
    if dtype is None:
        return x
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, x)


def check_times(ts) -> None:
    """Raise ``ValueError`` unless ``ts`` is a 1-D, finite, strictly increasing array, or a 2-D
    array of such rows, each padded by repeating its last time."""
    if isinstance(ts, jax.core.Tracer):
        return
    t = np.asarray(ts)
    if t.ndim == 2 and t.shape[1] >= 1:
        for i, row in enumerate(t):
            d = np.diff(row)
            n = int(np.argmin(d > 0)) + 1 if (d <= 0).any() else row.size
            if not np.all(row[n:] == row[n - 1]):
                raise ValueError(
                    f"ts[{i}]: save times must be strictly increasing, then repeat the last one "
                    "(padding)"
                )
            check_times(row[:n])
        return
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"ts: save times must be a non-empty 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("ts: save times must be finite")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        i = int(np.argmin(np.diff(t) > 0))
        raise ValueError(
            f"ts: save times must be strictly increasing; ts[{i}]={t[i]} >= ts[{i + 1}]={t[i + 1]}"
        )


def _solve_one(vector_field, y0, ts, options: SolverOptions, args, throw: bool, t0=None):
    term = diffrax.ODETerm(vector_field)
    # an array, not a Python float: a float would be static to diffrax's jit and recompile per value
    given_t0 = t0 is not None
    t0 = ts[0] if t0 is None else jnp.asarray(t0, dtype=ts.dtype)
    t1 = ts[-1]
    if options.fixed_steps is not None:
        controller = diffrax.ConstantStepSize()
        dt0 = (t1 - t0) / options.fixed_steps
        max_steps = options.fixed_steps + 1
    else:
        controller = diffrax.PIDController(
            rtol=options.rtol.astype(y0.dtype), atol=options.atol.astype(y0.dtype)
        )
        dt0 = options.dt0
        max_steps = options.max_steps
    adjoint = _adjoint(options, y0, max_steps)
    solver = options.solver
    if type(solver) is Tsit5 and (
        isinstance(adjoint, diffrax.ForwardMode) or getattr(vector_field, "compact_stages", False)
    ):
        # the same method with diffrax's stage loop: forward mode carries its tangents through
        # every stage, and a large vector field is inlined seven times; either multiplies the
        # compile time (4x measured) for a runtime gain that training's reverse mode alone needs
        solver = diffrax.Tsit5()
    if type(solver) is Tsit5 and not isinstance(adjoint, diffrax.BacksolveAdjoint):
        # the save times are recorded inside the step (ude.solvers.SaveTsit5): no inner save loop
        if given_t0:  # as diffrax's SaveAt(ts) checks
            ts = eqx.error_if(ts, ts[0] < t0, "saveat.ts must lie between t0 and t1.")
        sol = _diffeqsolve(
            term,
            SaveTsit5(ts),
            t0=t0,
            t1=t1,
            dt0=dt0,
            y0=y0,
            args=args,
            saveat=diffrax.SaveAt(t1=True, solver_state=True),
            stepsize_controller=controller,
            adjoint=adjoint,
            max_steps=max_steps,
            throw=throw,
        )
        ys = saved(sol)
        # as diffrax's SaveAt(ts): times the solve did not reach (it failed first) are inf
        ts_out = jnp.where(ts <= sol.ts[-1], ts, jnp.asarray(jnp.inf, ts.dtype))
    else:
        sol = _diffeqsolve(
            term,
            solver,
            t0=t0,
            t1=t1,
            dt0=dt0,
            y0=y0,
            args=args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            adjoint=adjoint,
            max_steps=max_steps,
            throw=throw,
        )
        ys, ts_out = sol.ys, sol.ts
    return Solution(
        ts=ts_out,
        ys=ys,
        result=sol.result,
        num_steps=sol.stats["num_steps"],
        num_rejected=sol.stats.get("num_rejected_steps", jnp.zeros((), int)),
    )


def solve(
    vector_field,
    y0: InitialStates,
    ts: SaveTimes,
    options: SolverOptions | None = None,
    *,
    args=None,
    throw: bool = False,
    t0=None,
    batched_args: bool = False,
) -> Solution:
    """Solve ``dy/dt = vector_field(t, y, args)`` from ``y0`` and save at ``ts``.

    A 2-D ``y0`` (batch, state) is solved for every row with ``jax.vmap`` (one compiled program).
    Each row may have its own save times — ``ts`` of shape ``(batch, times)``, a shorter row padded
    by repeating its last time (it is solved to its own end) — and its own ``args``
    (``batched_args=True``: every array leaf of ``args`` has a leading batch axis, e.g. the stacked
    :class:`~ude.data.inputs.ExperimentInputs` of a dataset's experiments).
    With ``throw=False`` (the default) a failed solve is reported in ``Solution.result`` rather than
    raised. ``t0`` defaults to ``ts[0]``. Call it inside your own ``jit``, or use ``solve_jit``.

    Example (a :class:`ude.model.UDE` is solved the same way):

    >>> import jax.numpy as jnp
    >>> from ude.physics import LotkaVolterra
    >>> sol = solve(
    ...     LotkaVolterra(1.3, 0.9, 1.8, 0.8),
    ...     jnp.array([0.44, 4.6]),
    ...     jnp.linspace(0, 3, 31),
    ...     SolverOptions("tsit5", rtol=1e-6, atol=1e-6),
    ... )
    >>> sol.ys.shape, bool(sol.ok)
    ((31, 2), True)
    """
    options = options or SolverOptions()
    check_times(ts)
    ts = jnp.asarray(ts)
    y0 = jnp.asarray(y0)
    if options.dtype is not None:
        y0 = y0.astype(options.dtype)
        ts = jnp.asarray(ts, dtype=options.dtype)
        vector_field = _as_dtype(vector_field, options.dtype)
    if y0.ndim not in (1, 2):
        raise ValueError(f"y0: expected shape (state,) or (batch, state), got {y0.shape}")
    if (ts.ndim == 2 or batched_args) and y0.ndim != 2:
        raise ValueError(
            "y0: save times or args per row need a batch of initial states (batch, state), got "
            f"{y0.shape}"
        )
    if ts.ndim == 2 and ts.shape[0] != y0.shape[0]:
        raise ValueError(f"ts: {ts.shape[0]} rows of save times for {y0.shape[0]} initial states")
    names = getattr(vector_field, "state_names", None)
    if isinstance(names, tuple) and y0.shape[-1] != len(names):
        raise ValueError(
            f"y0: the vector field has {len(names)} states {list(names)}, "
            f"got y0 of shape {y0.shape}"
        )
    if y0.ndim == 1:
        return _solve_one(vector_field, y0, ts, options, args, throw, t0)
    if ts.ndim == 2 or batched_args:
        t_axis = 0 if ts.ndim == 2 else None
        a_axis = 0 if batched_args else None
        if y0.shape[0] == 1:  # as below: one row solves unbatched
            row = jax.tree_util.tree_map(lambda x: x[0], args) if batched_args else args
            sol = _solve_one(
                vector_field, y0[0], ts[0] if t_axis == 0 else ts, options, row, throw, t0
            )
            return jax.tree_util.tree_map(lambda x: x[None], sol)
        return jax.vmap(
            lambda y, t, a: _solve_one(vector_field, y, t, options, a, throw, t0),
            in_axes=(0, t_axis, a_axis),
        )(y0, ts, args)
    if y0.shape[0] == 1:
        # one trajectory: a vmapped while loop carries a batch axis and a select per carried
        # value through every step (~15 % more kernel launches per step on CPU); solve unbatched
        sol = _solve_one(vector_field, y0[0], ts, options, args, throw, t0)
        return jax.tree_util.tree_map(lambda x: x[None], sol)
    return jax.vmap(lambda y: _solve_one(vector_field, y, ts, options, args, throw, t0))(y0)


_solve_jitted = eqx.filter_jit(solve)


def solve_jit(
    vector_field,
    y0,
    ts,
    options: SolverOptions | None = None,
    *,
    args=None,
    throw: bool = False,
    t0=None,
    batched_args: bool = False,
) -> Solution:
    """:func:`solve` under ``eqx.filter_jit``. The save times are checked here, before tracing,
    because inside ``jit`` they are abstract and :func:`check_times` cannot see their values."""
    check_times(ts)
    return _solve_jitted(
        vector_field, y0, ts, options, args=args, throw=throw, t0=t0, batched_args=batched_args
    )


def solve_data(vector_field, y0, data, options: SolverOptions | None = None, *, ts=None, jit=False):
    """Solve every trajectory of a :class:`~ude.data.Dataset` from ``y0`` ``(traj, state)`` at its
    own save times (or ``ts``: shared ``(times,)`` or per trajectory ``(traj, times)``), each with
    its own inputs as ``args``."""
    ts = data.ts if ts is None else ts
    batched = data.inputs is not None
    fn = solve_jit if jit else solve
    return fn(vector_field, y0, ts, options, args=data.inputs, batched_args=batched)


def solve_batch(
    vector_fields, y0, ts, options: SolverOptions | None = None, *, args=None, throw: bool = False
) -> Solution:
    """Solve a *batch of models* (a vector field whose array leaves carry a leading batch axis,
    e.g. from ``eqx.filter_vmap`` over keys), each from its own (or a shared) ``y0``."""
    y0 = jnp.asarray(y0)
    in_y0 = 0 if y0.ndim == 2 else None

    @eqx.filter_vmap(in_axes=(eqx.if_array(0), in_y0))
    def one(vf, y):
        return solve(vf, y, ts, options, args=args, throw=throw)

    return one(vector_fields, y0)
