"""Objects built from a validated config: the truth, the data, the model, its training, discovery's
library and regressor, and the device mesh of an ensemble.

Each builder takes the :class:`~ude.config.ExperimentConfig` (and what it must be combined with)
and returns a ready object; nothing here reads or writes files, so scripts and benchmarks can
reuse any of them (``build_data(cfg)``, ``build_model(cfg, key)``, ...).
"""

from __future__ import annotations

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import sympy

from .. import data as data_mod
from ..config import ExperimentConfig, time_grid, train_end
from ..config.schema import HeldOutFraction
from ..discovery import SR3, STLSQ, library_from_spec
from ..model import UDE
from ..nn import MLP
from ..parallel import make_mesh
from ..physics import SYSTEMS, AbstractPhysics, Equations, Parameter, VectorField
from ..solve import SolverOptions
from ..train import LBFGS, Adam, Collocation, MultipleShooting, SingleShooting, WindowMinibatch
from ..train.ensemble import resample_noise, stack, unstack
from .experiments import simulate_experiments, used_inputs

__all__ = [
    "build_truth",
    "build_noise",
    "build_data",
    "split_data",
    "build_options",
    "build_eval_options",
    "build_physics",
    "build_model",
    "build_strategy",
    "build_phases",
    "build_stages",
    "build_library",
    "build_regressor",
    "build_lams",
    "true_missing",
    "build_mesh",
    "member_keys",
    "member_train",
    "interned",
]


def interned(x):
    """``x``, interned when a string, so a value equal to a field's default *is* the default:
    equinox's repr hides defaults by identity, and ude.train.fit fingerprints checkpoints by that
    repr (a ``"sse"`` read back from config.yaml must give the same fingerprint as the literal)."""
    return sys.intern(x) if isinstance(x, str) else x


# ------------------------------------------------------------------------------------------------
# truth and data
# ------------------------------------------------------------------------------------------------
def build_truth(cfg: ExperimentConfig) -> AbstractPhysics | None:
    """The true system (all terms), or None for real data."""
    if cfg.truth is None:
        return None
    if cfg.truth.equations is not None:
        return Equations(
            cfg.truth.equations, cfg.truth.parameters, inputs=used_inputs(cfg, cfg.truth.equations)
        )
    return SYSTEMS[cfg.truth.system](**cfg.truth.parameters)


def build_noise(cfg: ExperimentConfig):
    """The noise model of ``data.noise``."""
    n = cfg.data.noise
    d = {"kind": n.kind}
    if n.level is not None:
        d["level"] = n.level
    if n.sigma is not None:
        d["sigma"] = n.sigma
    return data_mod.noise_from_dict(d)


def build_data(cfg: ExperimentConfig) -> data_mod.Dataset:
    """The whole dataset: simulated from the truth (noise, observation mask; one or several
    experiments) or read from the file (a table, or experiments in the long format)."""
    observe = cfg.data.observe
    if cfg.data.experiments is not None:
        return simulate_experiments(cfg, build_truth(cfg), build_noise(cfg))
    if cfg.data.file is not None and cfg.data.file.experiment is not None:
        f = cfg.data.file
        d = data_mod.load_experiments(
            f.path,
            states=dict(zip(cfg.state_names, f.states, strict=True)),
            time=f.time,
            experiment=f.experiment,
            inputs=list(cfg.data.inputs),
            constants=list(cfg.data.constants),
            interpolation=cfg.data.interpolation,
        )
        return d.with_mask(observe) if observe else d
    if cfg.data.file is not None:
        f = cfg.data.file
        d = data_mod.load_table(
            f.path,
            time=f.time,
            states=f.states,
            normalize=f.normalize,
            t_offset=f.t_offset,
            names=cfg.state_names,
        )
        return d.with_mask(observe) if observe else d
    truth = build_truth(cfg)
    ts = np.asarray(time_grid(cfg.data), dtype=np.float64)
    y0 = np.asarray(cfg.truth.y0, dtype=np.float64)
    return data_mod.simulate(
        truth,
        y0,
        ts,
        noise=build_noise(cfg),
        key=cfg.data.seed,
        observe=observe,
        rtol=cfg.truth.tolerance,
        atol=cfg.truth.tolerance,
    )


def held_out_names(cfg: ExperimentConfig, names) -> list[str]:
    """The held-out experiments of ``data.held_out_experiments`` among the data's ``names``: the
    listed ones, or a seeded random share (``{fraction, seed}``)."""
    held = cfg.data.held_out_experiments
    if isinstance(held, HeldOutFraction):
        return held.choose(list(names))
    return list(held)


def split_experiments(cfg: ExperimentConfig, data: data_mod.Dataset):
    """``(trained on, held out)``: the experiments of ``data.held_out_experiments`` apart (None
    when none is held out)."""
    held = held_out_names(cfg, data.experiment_names)
    if not held:
        return data, None
    unknown = [n for n in held if n not in data.experiment_names]
    if unknown:
        raise ValueError(
            f"data.held_out_experiments: no experiment {unknown} in the data (experiments: "
            f"{list(data.experiment_names)})"
        )
    kept = [n for n in data.experiment_names if n not in held]
    if not kept:
        raise ValueError("data.held_out_experiments holds out every experiment")
    return data.trajectories(kept), data.trajectories(held)


def split_data(cfg: ExperimentConfig, data: data_mod.Dataset):
    """``(train, held_out)``: the training window ``[t0, train_end]`` and the held-out window
    (``data.held_out``, default everything after ``train_end``; None when empty), of the
    experiments that are trained on (held-out experiments: :func:`split_experiments`)."""
    data = split_experiments(cfg, data)[0]
    if data.per_experiment_times:
        t_end = train_end(cfg)
        if t_end is None or t_end >= data.span()[1]:
            return data, None
        return data.split(t_end)
    ts = np.asarray(data.ts)
    t_end = train_end(cfg)
    t_end = float(ts[-1]) if t_end is None else t_end
    train = data.window(float(ts[0]), t_end)
    lo, hi = cfg.data.held_out if cfg.data.held_out is not None else (t_end, float(ts[-1]))
    tol = 1e-9 * max(1.0, abs(float(ts[-1])))
    sel = (ts > t_end + tol) & (ts >= lo - tol) & (ts <= hi + tol)
    held = data.window(float(ts[sel][0]), float(ts[sel][-1])) if sel.any() else None
    return train, held


def true_missing(cfg: ExperimentConfig, truth: AbstractPhysics | None):
    """The true missing term ``(t, y) -> dy/dt`` (the truth's terms the model does not know), or
    None when there is no truth or nothing is missing."""
    if truth is None:
        return None
    known = build_physics(cfg)
    if cfg.model.system is None or not isinstance(truth, type(known)):
        return _missing_difference(truth, known)
    missing = [t for t in truth.term_names if t not in cfg.model.known]
    if not missing:
        return None
    return truth.keep(*missing)


def _missing_difference(truth: AbstractPhysics, known: AbstractPhysics):
    """``truth - known`` (at the known part's configured parameter values): SymPy's difference
    when both are equations (None when it is zero), else the numerical difference."""
    if isinstance(truth, Equations) and isinstance(known, Equations):

        def values(m):
            return {sympy.Symbol(p): float(m.p(p)) for p in m.param_names}

        t_eqs, k_eqs = truth.sympy(), known.sympy()
        diff = {}
        for s in truth.state_names:
            d = t_eqs[s].subs(values(truth)) - k_eqs[s].subs(values(known))
            terms = sympy.Add.make_args(sympy.expand(d))
            # drop round-off: terms whose coefficient is below 1e-9 of the largest
            coef = [abs(float(term.as_coeff_Mul()[0])) for term in terms]
            kept = [term for term, c in zip(terms, coef, strict=True) if c > 1e-9 * max(coef)]
            diff[s] = sympy.Add(*kept)
        if all(e == 0 for e in diff.values()):
            return None
        return Equations(
            {s: str(e) for s, e in diff.items()},
            states=truth.state_names,
            inputs=[
                u
                for u in truth.input_names
                if any(sympy.Symbol(u) in e.free_symbols for e in diff.values())
            ],
        )
    return VectorField(_Difference(truth, known), truth.state_names)


class _Difference(eqx.Module):
    """``a(t, y) - b(t, y)``."""

    a: AbstractPhysics
    b: AbstractPhysics

    def __call__(self, t, y, args=None):
        return self.a(t, y, args) - self.b(t, y, args)


# ------------------------------------------------------------------------------------------------
# model and training
# ------------------------------------------------------------------------------------------------
def build_options(cfg: ExperimentConfig, *, max_steps: int | None = None) -> SolverOptions:
    """The solver options of ``solver`` (``max_steps`` replaced when given)."""
    s = cfg.solver
    return SolverOptions(
        s.name,
        rtol=s.rtol,
        atol=s.atol,
        adjoint=s.adjoint,
        max_steps=max_steps or s.max_steps,
        dt0=s.dt0,
        fixed_steps=s.fixed_steps,
        dtype=interned(s.dtype),
    )


def build_eval_options(cfg: ExperimentConfig) -> SolverOptions:
    """The solver options of the solves after training: long extrapolations need more solver
    steps than a training window (at least 20 000); a model that blows up still stops."""
    return build_options(cfg, max_steps=max(cfg.solver.max_steps, 20_000))


def build_physics(cfg: ExperimentConfig) -> AbstractPhysics:
    """The known part: the model system with its parameters (trainable ones flagged), keeping only
    the known terms."""
    m = cfg.model
    params = {
        p: Parameter(v, trainable=p in m.trainable, positive=p in m.trainable and m.is_positive(p))
        for p, v in m.parameters.items()
    }
    if m.system is None:  # equations as text
        return Equations(m.known, params, states=m.states, inputs=used_inputs(cfg, m.known))
    return SYSTEMS[m.system](**params).keep(*m.known)


def build_model(cfg: ExperimentConfig, key) -> UDE:
    """The UDE: known physics + the configured MLP (or no network)."""
    known = build_physics(cfg)
    net_cfg = cfg.model.network
    if net_cfg is None:
        return UDE(known, None)
    states = cfg.state_names
    inputs = net_cfg.inputs or list(states)
    outputs = net_cfg.outputs or list(states)
    signals = [n for n in inputs if n not in states]  # the experiments' inputs it reads
    state_inputs = [n for n in inputs if n in states]
    scale = net_cfg.input_scale
    net = MLP(
        len(inputs),
        len(outputs),
        width=net_cfg.width,
        depth=net_cfg.depth,
        activation=tuple(net_cfg.activation),
        init=net_cfg.init,
        output_scale=net_cfg.output_scale,
        input_scale=None if scale is None else (scale[0] if len(scale) == 1 else scale),
        key=key,
    )
    return UDE(
        known,
        net,
        inputs=state_inputs if net_cfg.inputs is not None else None,
        outputs=net_cfg.outputs,
        signals=signals,
    )


def build_strategy(cfg: ExperimentConfig, options: SolverOptions | None = None):
    """The training strategy of ``train.strategy`` (single/multiple shooting, window batches)."""
    st = cfg.train.strategy
    options = options or build_options(cfg)
    common = dict(
        options=options,
        reduction=interned(st.loss),
        l2=st.l2,
        weights=None if st.weights is None else jnp.asarray(st.weights),
    )
    if st.kind == "single_shooting":
        return SingleShooting(**common, learn_y0=interned(st.learn_y0))
    if st.kind == "multiple_shooting":
        return MultipleShooting(
            **common, segments=st.segments, continuity=st.continuity, fix_observed=st.fix_observed
        )
    return WindowMinibatch(**common, window=st.window, batch=st.batch)


def build_phases(cfg: ExperimentConfig) -> list[tuple[str, object, list]]:
    """``[(name, strategy, optimiser stage configs), ...]``: ``pretrain`` (collocation),
    ``train`` (the configured strategy) and ``polish`` (single shooting, initial states learned),
    those present."""
    st = cfg.train.strategy
    phases = []
    if cfg.train.pretrain:
        phases.append(("pretrain", Collocation(l2=st.l2), cfg.train.pretrain))
    phases.append(("train", build_strategy(cfg), cfg.train.stages))
    if cfg.train.polish:
        polish = SingleShooting(
            options=build_options(cfg),
            reduction=interned(st.loss),
            l2=st.l2,
            weights=None if st.weights is None else jnp.asarray(st.weights),
            learn_y0=True,
        )
        phases.append(("polish", polish, cfg.train.polish))
    return phases


def build_stages(stages) -> list:
    """Optimiser stages from ``cfg.train.stages`` (or ``cfg.discovery.refit.stages``)."""
    out = []
    for s in stages:
        if s.kind == "adam":
            out.append(
                Adam(
                    lr=s.lr,
                    steps=s.steps,
                    schedule=interned(s.schedule),
                    final_fraction=s.final_fraction,
                    clip=s.clip,
                    horizon=s.horizon,
                )
            )
        else:
            out.append(
                LBFGS(steps=s.steps, gtol=s.gtol, ftol=s.ftol, memory=s.memory, horizon=s.horizon)
            )
    return out


# ------------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------------
def build_library(cfg: ExperimentConfig, state_names=None):
    """The candidate library of ``discovery.library``."""
    spec = [
        {k: v for k, v in part.model_dump().items() if v is not None}
        for part in cfg.discovery.library
    ]
    for part in spec:
        if "frequencies" in part:
            part["frequencies"] = [
                int(f) if float(f).is_integer() else f for f in part["frequencies"]
            ]
    return library_from_spec(tuple(state_names or cfg.state_names), spec, inputs=cfg.input_names)


def build_regressor(cfg: ExperimentConfig):
    """The sparse regressor of ``discovery.regressor`` (SR3 or STLSQ)."""
    r = cfg.discovery.regressor
    if r.kind == "sr3":
        return SR3(
            nu=r.nu, regularizer=r.regularizer, iterations=r.iterations, normalize=r.normalize
        )
    return STLSQ(alpha=r.alpha, normalize=r.normalize)


def build_lams(cfg: ExperimentConfig) -> np.ndarray:
    """The λ sweep of ``discovery.lams`` (listed values, or a log10 range)."""
    lm = cfg.discovery.lams
    if lm.values is not None:
        return np.asarray(lm.values, float)
    return 10.0 ** np.arange(lm.log10_start, lm.log10_stop + 1e-9, lm.log10_step)


# ------------------------------------------------------------------------------------------------
# ensembles
# ------------------------------------------------------------------------------------------------
def build_mesh(cfg: ExperimentConfig):
    """The device mesh splitting the ensemble over ``parallel.devices`` devices (None for one).

    Raises ValueError when jax sees fewer devices than asked for."""
    n = cfg.parallel.devices or 1
    if n == 1:
        return None
    devices = jax.devices()
    if len(devices) < n:
        kind = devices[0].platform
        hint = (
            (
                "; on CPUs, start the process with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={n} (`ude run --devices N` "
                "sets it; jax fixes its device count when it starts)"
            )
            if kind == "cpu"
            else ""
        )
        raise ValueError(
            f"parallel.devices = {n}, but jax sees only {len(devices)} {kind} device(s){hint}"
        )
    return make_mesh(members=n)


def member_keys(key, n: int):
    """``(n,)`` keys: ``key`` itself for member 0 (so member 0 is exactly the single run) and
    ``fold_in(key, i)`` for member i (so a member does not depend on the ensemble's size)."""
    if n == 1:
        return key[None]
    rest = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(1, n))
    return jnp.concatenate([key[None], rest])


def member_train(
    cfg: ExperimentConfig, data: data_mod.Dataset | None, train: data_mod.Dataset, n: int
) -> data_mod.Dataset:
    """The training data of an ensemble of ``n``: ``train`` shared by all members, or with
    ``parallel.redraw_noise`` stacked ``(members, traj, times, state)``: member 0's is ``train``,
    member i's a new noise draw (key ``fold_in(key(data.seed), i)``) on the whole dataset's
    ``y_true``, then windowed like ``train``."""
    if not cfg.parallel.redraw_noise or n == 1:
        return train
    if data is None or data.y_true is None:
        raise ValueError(
            "parallel.redraw_noise: the whole simulated dataset (with y_true) is "
            "needed to redraw the noise"
        )
    base = jr.key(cfg.data.seed)
    keys = jax.vmap(lambda i: jr.fold_in(base, i))(jnp.arange(1, n))
    redrawn = unstack(resample_noise(data, build_noise(cfg), keys))
    return stack([train] + [split_data(cfg, d)[0] for d in redrawn])
