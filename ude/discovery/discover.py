"""The UDE paper's discovery step: regress the trained network's output on a library.

Take the trained UDE's own trajectory, sampled finer than the data (dt 0.05 over the training
span, from its initial state), evaluate the network's contribution ``model.missing(t, y)`` on
it, sweep a sparse regressor over λ for each state, pick one λ per state by a selection rule, and
return a :class:`Discovery`. Over experiments (their own times, their own inputs ``u(t)``) each
has its own trajectory, and Θ may read the inputs (SINDYc, see
:class:`~ude.discovery.library.InputLibrary`).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import AbstractPhysics
from ..solve import SolverOptions, solve
from .discovered import DiscoveredModel
from .library import AbstractLibrary, InputLibrary, paper_library
from .regressors import SR3, AbstractRegressor, sweep_jit
from .selection import pareto_stats, select
from .symbolic import format_equations, to_sympy

PAPER_LAMS = 10.0 ** np.arange(-7.0, 5.0 + 1e-9, 0.1)
"""The paper's sweep: λ = 10^(−7 … 5) in steps of 0.1 in the exponent (121 values)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Discovery:
    """What :func:`discover` found.

    Attributes:
        coefficients: Ξ (terms, states), numpy; zero for dropped terms and unregressed states.
        mask: kept terms (terms, states), bool.
        names: library term names. state_names: state names. states: the regressed states.
        library: the library used.
        lams: the λ sweep. chosen: index into ``lams`` per regressed state.
        l0, err: kept-term counts and residual norms along the sweep, (lams, regressed states).
        criterion: the selection rule's name.
        ts, ys, targets: the samples regressed on: times (n,), states (n, state) and the missing
            term U (n, regressed states).
        input_names, inputs: the library variables that are inputs, and their values at the
            samples (n, inputs), None without inputs.
    """

    coefficients: np.ndarray
    mask: np.ndarray
    names: tuple[str, ...]
    state_names: tuple[str, ...]
    states: tuple[str, ...]
    library: AbstractLibrary
    lams: np.ndarray
    chosen: np.ndarray
    l0: np.ndarray
    err: np.ndarray
    criterion: str
    ts: np.ndarray | None
    ys: np.ndarray
    targets: np.ndarray
    input_names: tuple[str, ...] = ()
    inputs: np.ndarray | None = None

    @property
    def samples(self) -> np.ndarray:
        """The library's variables at the samples, (n, variables): the states and the inputs."""
        return _variables(self.library, self.state_names, self.ys, self.input_names, self.inputs)

    def theta(self) -> np.ndarray:
        """Θ at the samples, (n, terms)."""
        return np.asarray(self.library(jnp.asarray(self.samples)))

    def equations(self, precision: int = 4) -> list[str]:
        """``["x' = -0.9 x*y", "y' = 0.8 x*y"]`` for the regressed states."""
        return format_equations(
            self.coefficients, self.names, self.state_names, precision, states=self.states
        )

    def to_sympy(self) -> dict:
        return {
            s: e
            for s, e in to_sympy(
                self.coefficients, self.names, self.state_names, self.input_names
            ).items()
            if s in self.states
        }

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{state: {term: coefficient}}`` over the kept terms (for metrics.json)."""
        return {
            s: {
                n: float(self.coefficients[k, j])
                for k, n in enumerate(self.names)
                if self.mask[k, j]
            }
            for j, s in enumerate(self.state_names)
            if s in self.states
        }

    def kept(self) -> dict[str, tuple[str, ...]]:
        """``{state: kept term names}``."""
        return {s: tuple(terms) for s, terms in self.as_dict().items()}

    @property
    def chosen_lams(self) -> dict[str, float]:
        return {s: float(self.lams[i]) for s, i in zip(self.states, self.chosen, strict=False)}

    def selection_info(self) -> dict:
        """JSON-friendly summary of the sweep and the choice."""
        return {
            "criterion": self.criterion,
            "lams": self.lams.tolist(),
            "chosen_lam": self.chosen_lams,
            "l0": {s: self.l0[:, j].tolist() for j, s in enumerate(self.states)},
            "err": {s: self.err[:, j].tolist() for j, s in enumerate(self.states)},
        }

    def to_model(self, known: AbstractPhysics | Callable | None = None) -> DiscoveredModel:
        """The discovered vector field ``known + Θ(y, u)·Ξ`` (coefficients trainable)."""
        return DiscoveredModel(known, self.library, self.coefficients, self.mask, self.input_names)

    def __str__(self) -> str:
        return "\n".join(self.equations())


def _grid(t0: float, t1: float, dt: float) -> np.ndarray:
    n = int(np.floor((t1 - t0) / dt + 1e-9)) + 1
    fine = t0 + dt * np.arange(n)
    if fine[-1] < t1 - 1e-9:
        fine = np.append(fine, t1)
    return fine


def _initial_states(data, y0):
    if y0 is None:
        mask0 = np.asarray(data.mask[:, 0, :]) if getattr(data, "mask", None) is not None else True
        if not np.all(mask0):
            raise ValueError(
                "discover: y0 is required when a state is unobserved at the first time "
                "(pass the fitted initial state, e.g. "
                "ude.train.fitted_initial_states(data, FitResult.extra))"
            )
        y0 = np.asarray(data.ys)[:, 0, :]
    y0 = jnp.asarray(y0)
    return y0[None] if y0.ndim == 1 else y0


def _solved(sol):
    if not bool(np.all(np.asarray(sol.ok))):
        raise ValueError(f"discover: the model's trajectory could not be solved: {sol.message()}")
    return np.asarray(sol.ys)


def ude_trajectory(model, data, *, dt: float = 0.05, y0=None, options: SolverOptions | None = None):
    """The model's own trajectory on ``[ts[0], ts[-1]]`` every ``dt``, from each trajectory's
    initial state: ``(ts_fine (m,), ys (traj, m, state))``.

    ``y0`` defaults to the first sample of each trajectory in ``data`` (the paper's choice); give it
    explicitly when some state is unobserved at the first time (e.g. a learned initial state).
    """
    ts = np.asarray(data.ts)
    if dt <= 0:
        raise ValueError(f"discover: dt must be > 0, got {dt!r}")
    fine = _grid(ts[0], ts[-1], dt)
    y0 = _initial_states(data, y0)
    options = options or SolverOptions("tsit5", rtol=1e-8, atol=1e-8)
    return fine, _solved(solve(model, y0, jnp.asarray(fine, dtype=y0.dtype), options))


def experiment_trajectories(
    model, data, *, dt: float = 0.05, y0=None, options: SolverOptions | None = None
):
    """Every experiment's own trajectory of the model, every ``dt`` over *its* span (its first to
    its last real save time), from its initial state, with its inputs (``data.inputs``) as
    ``args``: ``(ts (traj, m), ys (traj, m, state), lengths)``, one vmapped solve. A shorter
    experiment's rows after its ``lengths[i]`` repeat its end (padding, to drop)."""
    if dt <= 0:
        raise ValueError(f"discover: dt must be > 0, got {dt!r}")
    times = np.asarray(data.times)
    grids = [_grid(times[i, 0], times[i, n - 1], dt) for i, n in enumerate(data.lengths)]
    m = max(len(g) for g in grids)
    fine = np.stack([np.pad(g, (0, m - len(g)), mode="edge") for g in grids])
    y0 = _initial_states(data, y0)
    if y0.shape[0] != fine.shape[0]:
        raise ValueError(f"discover: y0 has {y0.shape[0]} rows for {fine.shape[0]} experiments")
    options = options or SolverOptions("tsit5", rtol=1e-8, atol=1e-8)
    # one vmapped solve, each experiment on its own 1-D grid (as solve(..., ts (traj, m)) does)
    one = jax.vmap(
        lambda y, t, a: solve(model, y, t, options, args=a),
        in_axes=(0, 0, None if data.inputs is None else 0),
    )
    sol = one(y0, jnp.asarray(fine, y0.dtype), data.inputs)
    return fine, _solved(sol), tuple(len(g) for g in grids)


def _takes_args(fn) -> bool:
    """Whether ``fn`` takes ``(t, y, args)`` (a model reading no inputs may take ``(t, y)``)."""
    try:
        inspect.signature(fn).bind(0.0, 0.0, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


def _experiment_samples(model, data, target, inputs, cols, **kw):
    """``(T, Y, U, V)`` over the experiments' own trajectories, padding dropped: times, states,
    the missing term (regressed columns) and the ``inputs``' values."""
    have = data.input_names
    lacking = [n for n in inputs if n not in have]
    if lacking:
        raise ValueError(
            f"discover: the library reads the inputs {lacking}, which the data has not "
            f"(its inputs: {list(have)})"
        )
    fine, ys, lengths = experiment_trajectories(model, data, **kw)
    T, Y = jnp.asarray(fine, ys.dtype), jnp.asarray(ys)
    if data.inputs is None:
        U = jax.vmap(jax.vmap(target))(T, Y)
        V = np.zeros((*fine.shape, 0))
    else:
        fn = target if _takes_args(target) else (lambda s, z, a: target(s, z))
        each = jax.vmap(lambda a, t, y: jax.vmap(lambda s, z: (fn(s, z, a), a(s)))(t, y))
        U, V = each(data.inputs, T, Y)
        V = np.asarray(V)[..., [have.index(n) for n in inputs]]
    real = np.arange(fine.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return fine[real], ys[real], np.asarray(U)[real][:, cols], V[real]


def _regressed_states(model, state_names, states):
    if states is not None:
        unknown = [s for s in states if s not in state_names]
        if unknown:
            raise ValueError(
                f"discover: states names unknown state(s) {unknown}; states are {list(state_names)}"
            )
        return tuple(states)
    outputs = getattr(model, "outputs", None)
    if outputs is not None:
        return tuple(state_names[i] for i in outputs)
    return tuple(state_names)


def discover(
    model,
    data,
    library: AbstractLibrary | None = None,
    regressor: AbstractRegressor | None = None,
    *,
    lams=None,
    criterion: str = "paper",
    dt: float = 0.05,
    y0=None,
    options: SolverOptions | None = None,
    states: Sequence[str] | None = None,
    target: Callable | None = None,
    unbias: bool = True,
) -> Discovery:
    """Sparse-regress the learned missing term on ``library`` (the UDE paper's procedure).

    Args:
        model: the trained UDE (anything with ``missing(t, y)`` and ``state_names``; over data
            with inputs ``missing(t, y, args)``).
        data: a ``Dataset`` (the model's own trajectory is then sampled every ``dt`` over its
            span from ``y0``; over experiments of their own times or inputs, each experiment's
            over its own span, solved with its inputs; ``y0`` (traj, state)), or the states to
            regress on directly: ``(ts, ys)`` with ys ``(n, state)``, or an ``(n, state)`` array.
        library: candidate terms (default: the paper's, monomials ≤ 5 + sin). Over the states
            and inputs (variables that are not the model's states are inputs, read from the data;
            or an :class:`~ude.discovery.library.InputLibrary`).
        regressor: a sparse regressor (default: ``SR3(nu=100, regularizer="l0")``, the paper's
            method; a large relaxation ν starts it from a light ridge (1/ν), which on the short,
            ill-conditioned trajectories of the paper separates the true term far better than
            ν = 1).
        lams: the λ sweep (default :data:`PAPER_LAMS`); a single λ is allowed.
        criterion: ``"paper"``, ``"aicc"`` or ``"knee"`` (see :mod:`ude.discovery.selection`).
        states: the states whose missing term is regressed (default: the network's outputs).
        target: ``(t, y) -> missing`` (default ``model.missing``; ``(t, y, args)`` over data
            with inputs, ``args`` an experiment's inputs).
        unbias: refit the kept terms by least squares after selection.

    Example::

        d = discover(trained_ude, data, paper_library(("x", "y")))
        print(d)  # x' = -0.877 x*y / y' = 0.923 x*y
        d.as_dict()  # {"x": {"x*y": -0.877}, "y": {"x*y": 0.923}}
    """
    state_names = tuple(model.state_names)
    library = library if library is not None else paper_library(state_names)
    variables = tuple(library.state_names)
    inputs = library.input_names or tuple(v for v in variables if v not in state_names)
    if tuple(v for v in variables if v not in inputs) != state_names:
        raise ValueError(
            f"discover: library.state_names {variables} differ from the model's {state_names}"
            + (f" (with the inputs {list(inputs)})" if inputs else "")
        )
    target = target if target is not None else model.missing
    regressed = _regressed_states(model, state_names, states)
    cols = [state_names.index(s) for s in regressed]
    fit = dict(lams=lams, criterion=criterion, states=regressed, unbias=unbias)

    is_data = hasattr(data, "ts") and hasattr(data, "ys")
    own = getattr(data, "per_experiment_times", False) or getattr(data, "inputs", None) is not None
    if is_data and (inputs or own):
        T, Y, U, V = _experiment_samples(
            model, data, target, inputs, cols, dt=dt, y0=y0, options=options
        )
        V = V if inputs else None
        return regress(library, Y, U, regressor, inputs=V, input_names=inputs, ts=T, **fit)
    if inputs:
        raise ValueError(
            f"discover: the library reads the inputs {list(inputs)}: give a Dataset with them, "
            "or regress(..., inputs=...) on samples of your own"
        )
    if is_data:
        ts, ys = ude_trajectory(model, data, dt=dt, y0=y0, options=options)
        T = np.broadcast_to(ts, ys.shape[:2]).reshape(-1)
        Y = ys.reshape(-1, ys.shape[-1])
    elif isinstance(data, tuple) and len(data) == 2:
        T, Y = np.asarray(data[0]).reshape(-1), np.asarray(data[1])
        ts = T
    else:
        Y = np.asarray(data)
        T = np.zeros(Y.shape[:1])
        ts = None
    if Y.ndim != 2 or Y.shape[1] != len(state_names) or T.shape[0] != Y.shape[0]:
        raise ValueError(
            f"discover: expected states (n, {len(state_names)}) with n times, got "
            f"{Y.shape} and {T.shape}"
        )

    Yj = jnp.asarray(Y)
    U = np.asarray(jax.vmap(target)(jnp.asarray(T, dtype=Yj.dtype), Yj))[:, cols]
    return regress(library, Y, U, regressor, ts=ts, **fit)


def _variables(library, state_names, Y, input_names=(), inputs=None) -> np.ndarray:
    """The library's variables (n, variables) from the states ``Y`` and the inputs' values."""
    if not input_names:
        return Y
    cols = dict(zip(state_names, Y.T, strict=True)) | dict(zip(input_names, inputs.T, strict=True))
    return np.stack([cols[v] for v in library.state_names], axis=1)


def _input_values(library, inputs, input_names, n: int):
    """``(library declaring its inputs, names, values (n, inputs))`` for :func:`regress`."""
    if isinstance(inputs, Mapping):
        input_names, inputs = tuple(inputs), np.stack([np.asarray(v) for v in inputs.values()], 1)
    names = tuple(library.input_names if input_names is None else input_names)
    if not names or (library.input_names and set(names) != set(library.input_names)):
        raise ValueError(
            f"regress: name the inputs (input_names=) as the library's {list(library.input_names)}"
            f", got {list(names)}"
        )
    V = np.asarray(inputs, float)
    V = V[:, None] if V.ndim == 1 else V
    if V.shape != (n, len(names)):
        raise ValueError(f"regress: inputs must have shape ({n}, {len(names)}), got {V.shape}")
    return library if library.input_names else InputLibrary(library, names), names, V


def regress(
    library: AbstractLibrary,
    ys,
    targets,
    regressor: AbstractRegressor | None = None,
    *,
    lams=None,
    criterion: str = "paper",
    states: Sequence[str] | None = None,
    unbias: bool = True,
    ts=None,
    inputs=None,
    input_names: Sequence[str] | None = None,
) -> Discovery:
    """Sweep ``regressor`` over ``lams`` on ``targets ≈ Θ(ys, inputs)·Ξ`` and select one λ per
    state.

    Args:
        library: candidate terms Θ.
        ys: states (n, state) where the targets were measured.
        targets: the missing term (n, len(states)), one column per regressed state.
        regressor, lams, criterion, unbias: as in :func:`discover`.
        states: the states the target columns belong to (default: all, in order).
        inputs: the inputs' values at the samples, (n, inputs) (or ``{name: (n,)}``), when the
            library reads inputs; their names are ``input_names`` (default: the library's
            ``input_names``), library variables that are then not states.
    """
    n_samples = np.shape(ys)[0] if np.ndim(ys) else 0
    names: tuple[str, ...] = ()
    V = None
    if inputs is not None:
        library, names, V = _input_values(library, inputs, input_names, n_samples)
    elif library.input_names:
        raise ValueError(
            f"regress: the library reads the inputs {list(library.input_names)}; pass their "
            "values as inputs=(n, inputs)"
        )
    state_names = tuple(v for v in library.state_names if v not in names)
    regressor = regressor if regressor is not None else SR3(nu=100.0, regularizer="l0")
    if not isinstance(regressor, AbstractRegressor):
        raise ValueError(
            f"regress: regressor must be an AbstractRegressor, got {type(regressor).__name__}"
        )
    lams = PAPER_LAMS if lams is None else np.atleast_1d(np.asarray(lams, float))
    if lams.ndim != 1 or not np.all(np.isfinite(lams)) or np.any(lams < 0):
        raise ValueError(f"regress: lams must be finite, >= 0 and 1-D, got {lams!r}")
    states = state_names if states is None else tuple(states)
    cols = [state_names.index(s) for s in states]
    Y = np.asarray(ys, float)
    U = np.asarray(targets, float)
    U = U[:, None] if U.ndim == 1 else U
    if Y.ndim != 2 or Y.shape[1] != len(state_names):
        raise ValueError(f"regress: ys must have shape (n, {len(state_names)}), got {Y.shape}")
    if U.shape != (Y.shape[0], len(states)):
        raise ValueError(
            f"regress: targets must have shape ({Y.shape[0]}, {len(states)}), got {U.shape}"
        )
    Theta = np.asarray(library(jnp.asarray(_variables(library, state_names, Y, names, V))))
    if Theta.shape[0] < Theta.shape[1]:
        warnings.warn(
            f"discover: {Theta.shape[0]} regression samples for a library of {Theta.shape[1]} "
            "terms: the regression is underdetermined and any sparse pick is arbitrary; sample "
            "the trajectory more finely (a smaller dt, discovery.dt in a config) or use a smaller "
            "library",
            UserWarning,
            stacklevel=2,
        )
    if not (np.all(np.isfinite(Theta)) and np.all(np.isfinite(U))):
        raise ValueError("regress: the library or the targets are not finite on the samples")

    Xis = np.asarray(sweep_jit(regressor, jnp.asarray(Theta), jnp.asarray(U), jnp.asarray(lams)))
    l0, err = pareto_stats(Theta, U, Xis)
    chosen = select(criterion, l0, err, Theta.shape[0])

    xi = np.zeros((library.n_terms, len(state_names)))
    mask = np.zeros_like(xi, bool)
    for j, (c, i) in enumerate(zip(cols, chosen, strict=True)):
        w = Xis[i, :, j]
        keep = w != 0
        if unbias and keep.any():
            w = np.zeros_like(w)
            w[keep] = np.linalg.lstsq(Theta[:, keep], U[:, j], rcond=None)[0]
        xi[:, c] = np.where(keep, w, 0.0)
        mask[:, c] = keep
    return Discovery(
        coefficients=xi,
        mask=mask,
        names=library.names,
        state_names=state_names,
        states=states,
        library=library,
        lams=np.asarray(lams),
        chosen=np.asarray(chosen),
        l0=l0,
        err=err,
        criterion=criterion,
        ts=None if ts is None else np.asarray(ts),
        ys=Y,
        targets=U,
        input_names=names,
        inputs=V,
    )
