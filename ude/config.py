"""Experiment configs: one YAML file describes a whole experiment, validated in full before any work.

An experiment has the sections ``truth`` (a simulated system, or none when ``data.file`` names a
real table), ``data``, ``model``, ``solver``, ``train``, ``discovery``, ``evaluate``, ``output`` and
``parallel`` (see ``configs/*.yaml``). :func:`load_config` reads the file, applies ``--set``-style overrides
and validates with pydantic v2 (unknown keys are errors): every mistake — unknown keys (with a
"did you mean"), wrong types, out-of-range values and inconsistent combinations — is collected and
raised at once as a :class:`ConfigError` whose messages name their key paths::

    train.stages[1].lr: must be > 0, got -0.1
    model.known[0]: unknown term 'grwoth' of lotka_volterra (did you mean 'growth'?)

The result is fully resolved (defaults filled in, e.g. ``model.parameters`` from the truth), so
:func:`dump_config` writes a file that re-validates to the same config. This module holds numbers
and names only; it reads the registries of systems, activations and solvers to check names.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .nn import ACTIVATIONS
from .physics import SYSTEMS
from .solve import ADJOINTS, SOLVERS

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "validate_config", "apply_overrides",
           "parse_override", "dump_config", "read_yaml", "describe", "time_grid", "train_end",
           "data_end"]


class ConfigError(ValueError):
    """An invalid experiment config. ``messages`` lists every problem, each ``"key.path: text"``;
    ``source`` names the file when there is one."""

    def __init__(self, messages: Sequence[str], source: str | None = None):
        self.messages = list(messages) or ["invalid config"]
        self.source = source
        super().__init__("\n".join(self.messages))


class _Problems(ValueError):
    """Raised inside validators: ``items`` are ``(relative key path, message)`` pairs."""

    def __init__(self, items):
        self.items = list(items)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.items))


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return "a mapping"
    return str(v)


def _suggest(word, choices) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(value, choices, what: str) -> str | None:
    """None when ``value`` is one of ``choices``, else a message with a suggestion."""
    if value in choices:
        return None
    return (f"unknown {what} {_show(value)}{_suggest(value, choices)}; choose from "
            f"{', '.join(sorted(map(str, choices)))}")


Num = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PosFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
Bool = Annotated[bool, Field(strict=True)]
Name = Annotated[str, Field(strict=True, min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _kind_fields(obj, kind: str, owned: dict[str, tuple[str, ...]], defaults: dict[str, dict],
                 label: dict[str, str]):
    """Check that fields belonging to other kinds are unset, then fill this kind's defaults."""
    problems = []
    mine = owned.get(kind, ())
    for other, fields in owned.items():
        if other == kind:
            continue
        for f in fields:
            if f in mine:
                continue
            if getattr(obj, f) is not None:
                problems.append((f, f"not used by {label.get(kind, kind)} (only by "
                                    f"{label.get(other, other)}); remove it"))
    if problems:
        raise _Problems(problems)
    for f, v in defaults.get(kind, {}).items():
        if getattr(obj, f) is None:
            setattr(obj, f, v)
    return obj


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
def _as_matrix(v):
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                         for x in v):
        return [v]
    return v


class TruthConfig(_Section):
    """The simulated ground truth: ``system`` with ``parameters`` from initial state(s) ``y0``."""

    system: Name
    parameters: dict[str, Num]
    y0: list[list[Num]] = Field(min_length=1)
    tolerance: PosFloat = 1e-12

    _y0 = field_validator("y0", mode="before")(lambda cls, v: _as_matrix(v))

    @field_validator("system")
    @classmethod
    def _system(cls, v):
        msg = _choice(v, [k for k in SYSTEMS if k != "none"], "system")
        if msg:
            raise _Problems([("", msg)])
        return v

    @model_validator(mode="after")
    def _check(self):
        sys_cls = SYSTEMS[self.system]
        problems = []
        missing = [p for p in sys_cls.param_names if p not in self.parameters]
        if missing:
            problems.append(("parameters", f"missing {', '.join(map(repr, missing))} for "
                                           f"{self.system} (needs {', '.join(sys_cls.param_names)})"))
        for p in self.parameters:
            if p not in sys_cls.param_names:
                problems.append((f"parameters.{p}", f"unknown parameter of {self.system}"
                                                    f"{_suggest(p, sys_cls.param_names)}; its "
                                                    f"parameters are {', '.join(sys_cls.param_names)}"))
        n = len(sys_cls.state_names)
        for i, row in enumerate(self.y0):
            if len(row) != n:
                where = "y0" if len(self.y0) == 1 else f"y0[{i}]"
                problems.append((where, f"must have {n} values ({', '.join(sys_cls.state_names)}), "
                                        f"got {len(row)}"))
        if problems:
            raise _Problems(problems)
        return self


class FileConfig(_Section):
    """A real data table (TSV/CSV) with a time column and one column per state."""

    path: Name
    time: Name = "t"
    states: list[Name] = Field(min_length=1)
    normalize: Literal["max"] | None = None
    t_offset: Num = 0.0

    @model_validator(mode="after")
    def _check(self):
        if not Path(self.path).is_file():
            raise _Problems([("path", f"file not found: {self.path}")])
        return self


class NoiseConfig(_Section):
    """Measurement noise: ``none``, ``gaussian`` (sigma), ``relative_mean`` (level, the paper's:
    X + level·mean_t(X)·N(0,1)) or ``lognormal`` (sigma)."""

    kind: Literal["none", "gaussian", "relative_mean", "lognormal"] = "none"
    level: NonNegFloat | None = None
    sigma: NonNegFloat | None = None

    @model_validator(mode="after")
    def _check(self):
        need = {"none": None, "gaussian": "sigma", "relative_mean": "level", "lognormal": "sigma"}[self.kind]
        problems = []
        for f in ("level", "sigma"):
            if f == need and getattr(self, f) is None:
                problems.append((f, f"required for noise kind {self.kind!r}"))
            if f != need and getattr(self, f) is not None:
                problems.append((f, f"not used by noise kind {self.kind!r}"
                                    + (f" (it takes {need})" if need else "") + "; remove it"))
        if problems:
            raise _Problems(problems)
        return self


class DataConfig(_Section):
    """Simulated (``t_span`` with ``dt`` or ``samples``, ``noise``, ``seed``, ``observe``) or real
    (``file``) data; ``train_end`` ends the training window; ``held_out`` is the window scored
    after training (default: everything after ``train_end``)."""

    file: FileConfig | None = None
    t_span: tuple[Num, Num] | None = None
    dt: PosFloat | None = None
    samples: Annotated[int, Field(strict=True, ge=2)] | None = None
    noise: NoiseConfig = NoiseConfig()
    seed: NonNegInt = 0
    observe: dict[str, Any] | None = None
    train_end: Num | None = None
    held_out: tuple[Num, Num] | None = None

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if self.t_span is not None and not self.t_span[1] > self.t_span[0]:
            problems.append(("t_span", f"must be [start, end] with end > start, got {list(self.t_span)}"))
        if self.held_out is not None and not self.held_out[1] > self.held_out[0]:
            problems.append(("held_out", f"must be [start, end] with end > start, got {list(self.held_out)}"))
        if self.file is not None:
            for f in ("t_span", "dt", "samples"):
                if getattr(self, f) is not None:
                    problems.append((f, "not used with data.file (the times come from the file); remove it"))
            if self.noise.kind != "none":
                problems.append(("noise", "not used with data.file (real data carry their own noise)"))
        else:
            if self.t_span is None:
                problems.append(("t_span", "required for simulated data, e.g. [0.0, 3.0]"))
            if (self.dt is None) == (self.samples is None):
                problems.append(("dt", "give exactly one of dt (sample spacing) and samples (count)"))
            elif self.dt is not None and self.t_span is not None and self.t_span[1] > self.t_span[0]:
                n = (self.t_span[1] - self.t_span[0]) / self.dt
                if abs(n - round(n)) > 1e-6 * max(1.0, n):
                    problems.append(("dt", f"{self.dt} does not divide the span {list(self.t_span)} "
                                           "into whole steps"))
        for state, spec in (self.observe or {}).items():
            ok = spec in ("all", "none") or (
                isinstance(spec, list) and spec and all(isinstance(t, (int, float)) and
                                                        not isinstance(t, bool) for t in spec))
            if not ok:
                problems.append((f"observe.{state}", "must be 'all', 'none' or a list of save "
                                                     f"times, got {_show(spec)}"))
        if problems:
            raise _Problems(problems)
        return self


class NetworkConfig(_Section):
    """The neural correction: an MLP ``inputs → width × depth → outputs``."""

    width: PosInt = 5
    depth: NonNegInt = 3
    activation: list[Name] = ["rbf"]
    init: Literal["glorot", "default"] = "glorot"
    output_scale: Num = 1.0
    input_scale: list[PosFloat] | None = None
    inputs: list[Name] | None = None
    outputs: list[Name] | None = None

    @field_validator("activation", mode="before")
    @classmethod
    def _act_list(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("input_scale", mode="before")
    @classmethod
    def _scale_list(cls, v):
        return [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _check(self):
        problems = []
        for i, a in enumerate(self.activation):
            msg = _choice(a, ACTIVATIONS, "activation")
            if msg:
                problems.append((f"activation[{i}]" if len(self.activation) > 1 else "activation", msg))
        if len(self.activation) == 1:
            self.activation = self.activation * self.depth
        elif len(self.activation) != self.depth:
            problems.append(("activation", f"lists {len(self.activation)} activations for depth "
                                           f"{self.depth}; give one name or one per hidden layer"))
        if problems:
            raise _Problems(problems)
        return self


def _known_before(v):
    if isinstance(v, str) and v in ("all", "none"):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    raise _Problems([("", f"must be 'all', 'none' or a list of term names, got {_show(v)}")])


class ModelConfig(_Section):
    """The UDE: known terms of ``system`` (default: the truth's) with ``parameters`` (default: the
    truth's), of which ``trainable`` ones learn (kept positive when ``positive``), plus a
    ``network`` (null: physics only)."""

    system: Name | None = None
    known: Any = "all"
    parameters: dict[str, Num] = {}
    trainable: list[Name] = []
    positive: Bool = True
    network: NetworkConfig | None = NetworkConfig()

    _known = field_validator("known", mode="before")(lambda cls, v: _known_before(v))

    @field_validator("system")
    @classmethod
    def _system(cls, v):
        msg = None if v is None else _choice(v, [k for k in SYSTEMS if k != "none"], "system")
        if msg:
            raise _Problems([("", msg)])
        return v


class SolverConfig(_Section):
    """The training solver (and the one used to evaluate the fitted models)."""

    name: Name = "tsit5"
    rtol: PosFloat = 1e-6
    atol: PosFloat = 1e-6
    adjoint: Name = "recursive"
    max_steps: PosInt = 4096
    dt0: PosFloat | None = None
    fixed_steps: PosInt | None = None
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _check(self):
        problems = []
        for f, reg in (("name", SOLVERS), ("adjoint", ADJOINTS)):
            msg = _choice(getattr(self, f), reg, "solver" if f == "name" else "adjoint")
            if msg:
                problems.append((f, msg))
        if problems:
            raise _Problems(problems)
        return self


_STRATEGY_LABEL = {"single_shooting": "single_shooting", "multiple_shooting": "multiple_shooting",
                   "window_minibatch": "window_minibatch"}


class StrategyConfig(_Section):
    """How model and data are compared: ``single_shooting`` (the paper's), ``multiple_shooting``
    (``segments``, ``continuity``) or ``window_minibatch`` (``window``, ``batch``)."""

    kind: Literal["single_shooting", "multiple_shooting", "window_minibatch"] = "single_shooting"
    loss: Literal["sse", "mse"] = "sse"
    l2: NonNegFloat = 0.0
    weights: list[NonNegFloat] | None = None
    learn_y0: Any = None
    segments: PosInt | None = None
    continuity: NonNegFloat | None = None
    fix_observed: Bool | None = None
    window: Annotated[int, Field(strict=True, ge=2)] | None = None
    batch: PosInt | None = None

    @field_validator("learn_y0")
    @classmethod
    def _learn_y0(cls, v):
        if v is None or v == "auto" or isinstance(v, bool):
            return v
        raise _Problems([("", f"must be 'auto', true or false, got {_show(v)}")])

    @model_validator(mode="after")
    def _check(self):
        return _kind_fields(
            self, self.kind,
            {"single_shooting": ("learn_y0",),
             "multiple_shooting": ("segments", "continuity", "fix_observed"),
             "window_minibatch": ("window", "batch")},
            {"single_shooting": {"learn_y0": "auto"},
             "multiple_shooting": {"segments": 5, "continuity": 1.0, "fix_observed": False},
             "window_minibatch": {"window": 10, "batch": 8}},
            _STRATEGY_LABEL)


class StageConfig(_Section):
    """One optimiser stage: ``adam`` (lr, schedule, final_fraction, clip) or ``lbfgs`` (gtol, ftol,
    memory); ``horizon`` trains on data up to that time only."""

    kind: Literal["adam", "lbfgs"]
    steps: NonNegInt | None = None
    lr: PosFloat | None = None
    schedule: Literal["constant", "cosine", "exponential", "warmup_cosine"] | None = None
    final_fraction: PosFloat | None = None
    clip: PosFloat | None = None
    gtol: NonNegFloat | None = None
    ftol: NonNegFloat | None = None
    memory: PosInt | None = None
    horizon: PosFloat | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "lbfgs" and self.lr is not None:
            raise _Problems([("lr", "L-BFGS takes no learning rate (its line search chooses the "
                                    "step); remove lr or use kind: adam")])
        _kind_fields(self, self.kind,
                     {"adam": ("lr", "schedule", "final_fraction", "clip"),
                      "lbfgs": ("gtol", "ftol", "memory")},
                     {"adam": {"lr": 0.1, "schedule": "constant", "final_fraction": 0.01, "steps": 200},
                      "lbfgs": {"gtol": 1e-8, "ftol": 1e-12, "memory": 10, "steps": 1000}},
                     {"adam": "Adam", "lbfgs": "L-BFGS"})
        return self


def _default_stages():
    return [StageConfig(kind="adam", lr=0.1, steps=200), StageConfig(kind="lbfgs", steps=1000)]


class TrainConfig(_Section):
    """Strategy and optimiser stages; ``chunk`` steps are fused per jitted scan; a checkpoint is
    written every ``checkpoint_every`` steps (rounded up to whole chunks).

    Optional phases around them: ``pretrain`` stages fit the network first without any solve to
    kernel-smoothed states and derivatives (collocation: a robust start for long windows), and
    ``polish`` stages finish with single shooting over the whole window, initial states learned
    (after multiple shooting or minibatches)."""

    strategy: StrategyConfig = StrategyConfig()
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=1)
    pretrain: list[StageConfig] = []
    polish: list[StageConfig] = []
    chunk: PosInt = 100
    checkpoint_every: PosInt | None = 100


class LibraryConfig(_Section):
    """One part of the candidate library: ``polynomial`` (degree, include_bias) or ``trig``
    (functions, frequencies)."""

    kind: Literal["polynomial", "trig"]
    degree: PosInt | None = None
    include_bias: Bool | None = None
    functions: list[Literal["sin", "cos"]] | None = None
    frequencies: list[Num] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.frequencies is not None and any(f == 0 for f in self.frequencies):
            raise _Problems([("frequencies", f"must be non-zero, got {self.frequencies}")])
        return _kind_fields(self, self.kind,
                            {"polynomial": ("degree", "include_bias"), "trig": ("functions", "frequencies")},
                            {"polynomial": {"degree": 2, "include_bias": True},
                             "trig": {"functions": ["sin", "cos"], "frequencies": [1]}}, {})


class RegressorConfig(_Section):
    """The sparse regressor: ``sr3`` (nu, regularizer, iterations; the paper's) or ``stlsq``
    (alpha)."""

    kind: Literal["sr3", "stlsq"] = "sr3"
    normalize: Bool = True
    nu: PosFloat | None = None
    regularizer: Literal["l0", "l1"] | None = None
    iterations: PosInt | None = None
    alpha: NonNegFloat | None = None

    @model_validator(mode="after")
    def _check(self):
        return _kind_fields(self, self.kind,
                            {"sr3": ("nu", "regularizer", "iterations"), "stlsq": ("alpha",)},
                            {"sr3": {"nu": 1.0, "regularizer": "l0", "iterations": 100},
                             "stlsq": {"alpha": 0.05}}, {})


class LamsConfig(_Section):
    """The λ sweep: ``10^(log10_start … log10_stop)`` in steps of ``log10_step`` (the paper's
    −7 … 5 by 0.1), or explicit ``values`` (a plain list in the YAML)."""

    log10_start: Num = -7.0
    log10_stop: Num = 5.0
    log10_step: PosFloat = 0.1
    values: list[NonNegFloat] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, v):
        if isinstance(v, list):
            return {"values": v}
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"values": [v]}
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.values is None and not self.log10_stop >= self.log10_start:
            raise _Problems([("log10_stop", f"must be >= log10_start ({self.log10_start}), "
                                            f"got {self.log10_stop}")])
        return self


def _default_library():
    return [LibraryConfig(kind="polynomial", degree=5), LibraryConfig(kind="trig", functions=["sin"])]


class RefitConfig(_Section):
    """Refit the kept coefficients (and ``train_known`` physics parameters) through the solver,
    learning the initial states too (``learn_y0``; the first sample is noisy) with squared errors
    weighted per state by ``1/mean(|y|)²`` (``weights: scale``) or not (``equal``)."""

    enabled: Bool = True
    stages: list[StageConfig] = Field(
        default_factory=lambda: [StageConfig(kind="lbfgs", steps=200)], min_length=1)
    train_known: list[Name] = []
    learn_y0: Bool = True
    weights: Literal["scale", "equal"] = "scale"


class DiscoveryConfig(_Section):
    """Sparse regression of the trained network's output on a candidate library (the paper's: on
    the UDE's own trajectory every ``dt``), then a refit.

    ``criterion`` picks the sparsity: ``paper``, ``aicc`` or ``knee`` from the regression alone;
    ``simulation`` refits candidate supports (the ``top[k-1]`` best subsets of each size
    ``k <= max_terms`` per equation, and the regressor's pick) through the solver
    (``refit_iterations`` of Levenberg–Marquardt) and keeps the sparsest within ``delta`` of the
    smallest ``score`` (BIC or AICc) on the data (:mod:`ude.discovery.simulation`);
    ``refit.stages`` are then not used."""

    enabled: Bool = True
    library: list[LibraryConfig] = Field(default_factory=_default_library, min_length=1)
    regressor: RegressorConfig = RegressorConfig()
    lams: LamsConfig = LamsConfig()
    criterion: Literal["paper", "aicc", "knee", "simulation"] = "paper"
    max_terms: PosInt = 3
    top: list[PosInt] = Field(default_factory=lambda: [3, 1, 1], min_length=1)
    score: Literal["bic", "aicc"] = "bic"
    delta: NonNegFloat = 2.0
    refit_iterations: PosInt = 100
    dt: PosFloat = 0.05
    states: list[Name] | None = None
    refit: RefitConfig = RefitConfig()

    @model_validator(mode="after")
    def _check_simulation(self):
        if self.criterion == "simulation" and not self.refit.enabled:
            raise _Problems([("refit.enabled", "criterion 'simulation' refits its candidates: "
                                               "refit.enabled must be true")])
        return self


class EvaluateConfig(_Section):
    """Extrapolation: solve the final model (and the truth) to ``t_end`` (default: the end of the
    data) every ``dt``."""

    t_end: Num | None = None
    dt: PosFloat = 0.1


class OutputConfig(_Section):
    """Where runs go (``dir/<name>-<timestamp>/``) and which figures are drawn."""

    dir: Name = "runs"
    figures: Bool = True
    formats: list[Literal["png", "pdf", "svg"]] = Field(default_factory=lambda: ["png", "pdf"],
                                                        min_length=1)
    dpi: PosInt = 120


class ParallelConfig(_Section):
    """Ensembles and devices: ``ensemble`` fits trained as one vmapped program
    (:func:`ude.train.ensemble.fit_ensemble`), each from its own network-initialisation seed
    (member 0 is exactly the single fit); with ``redraw_noise`` (simulated data only) members
    1, 2, ... also get their own noise draw. The member with the lowest loss on the run's training
    data becomes the run's model; all give the ensemble spread in ``metrics.json``. ``devices`` splits the
    members over that many devices (a ``jax.sharding`` mesh; default: one device, no mesh)."""

    ensemble: PosInt = 1
    redraw_noise: Bool = False
    devices: PosInt | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.devices is not None and self.devices > self.ensemble:
            raise _Problems([("devices", f"{self.devices} devices for {self.ensemble} ensemble "
                                         f"member(s): each device trains a block of members, so "
                                         f"set parallel.ensemble to at least {self.devices}")])
        return self


class ExperimentConfig(_Section):
    """A whole experiment. Build one with :func:`load_config` or :func:`validate_config`."""

    name: Name | None = None
    description: str | None = None
    seed: NonNegInt = 0
    truth: TruthConfig | None = None
    data: DataConfig
    model: ModelConfig = ModelConfig()
    solver: SolverConfig = SolverConfig()
    train: TrainConfig = TrainConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    output: OutputConfig = OutputConfig()
    parallel: ParallelConfig = ParallelConfig()

    @property
    def system(self) -> str:
        """The model's (and truth's) system name."""
        return self.model.system

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(SYSTEMS[self.model.system].state_names)

    @property
    def simulated(self) -> bool:
        return self.data.file is None


SECTIONS = ("truth", "data", "model", "solver", "train", "discovery", "evaluate", "output",
            "parallel")


# ------------------------------------------------------------------------------------------------
# times derived from the config (shared with the pipeline)
# ------------------------------------------------------------------------------------------------
def time_grid(data: DataConfig):
    """The simulated save times as a list (None for file data)."""
    if data.file is not None or data.t_span is None:
        return None
    t0, t1 = data.t_span
    if data.samples is not None:
        n = data.samples
        return [t0 + (t1 - t0) * i / (n - 1) for i in range(n)]
    n = int(round((t1 - t0) / data.dt))
    return [t0 + data.dt * i for i in range(n)] + [t1]


def data_end(cfg: ExperimentConfig) -> float | None:
    """The last save time of simulated data (None for a file: known only once it is read)."""
    return None if cfg.data.t_span is None else float(cfg.data.t_span[1])


def train_end(cfg: ExperimentConfig) -> float | None:
    """The end of the training window (None for a file with no ``train_end``: all of it)."""
    if cfg.data.train_end is not None:
        return float(cfg.data.train_end)
    return data_end(cfg)


# ------------------------------------------------------------------------------------------------
# cross-section checks
# ------------------------------------------------------------------------------------------------
def _params_in_terms(sys_cls, terms) -> set[str]:
    text = " ".join(sys_cls.term_formulas.get(t, "").split(":", 1)[-1] for t in terms)
    return {p for p in sys_cls.param_names if re.search(rf"\b{re.escape(p)}\b", text)}


def _known_terms(known, sys_cls) -> list[str]:
    if known == "all":
        return list(sys_cls.term_names)
    if known == "none":
        return []
    return list(known)


def _cross_check(s: dict, invalid: set) -> list[tuple[str, str]]:
    """Checks that need several sections; ``s[name]`` is the validated section or None, and
    ``invalid`` names the sections that failed their own validation (checks needing them are skipped)."""
    out: list[tuple[str, str]] = []
    truth, data, model, train, disc, ev = (s.get(k) for k in
                                           ("truth", "data", "model", "train", "discovery", "evaluate"))
    par = s.get("parallel")
    if par is not None and par.redraw_noise and data is not None:
        if data.file is not None:
            out.append(("parallel.redraw_noise", "needs simulated data (data.file is a fixed table "
                                                 "with its own noise); remove it"))
        elif data.noise.kind == "none":
            out.append(("parallel.redraw_noise", "data.noise.kind is 'none': there is no noise to "
                                                 "redraw; remove it or set data.noise"))
    if data is not None and "truth" not in invalid:
        if truth is None and data.file is None:
            out.append(("truth", "required unless data.file names a real data table"))
        if truth is not None and data.file is not None:
            out.append(("data.file", "give either truth (simulated data) or data.file (real data), not both"))
    system = model.system if model is not None else None
    if model is not None and system is None:
        if truth is not None:
            system = truth.system
        elif "truth" not in invalid and data is not None and data.file is not None:
            out.append(("model.system", "required with data.file (there is no truth system to "
                                        "take it from)"))
    elif system is not None and truth is not None and truth.system != system:
        out.append(("model.system", f"{system!r} differs from truth.system {truth.system!r}; "
                                    "the known terms must be part of the true system"))
        system = None
    if system is None or model is None:
        return out
    sys_cls = SYSTEMS[system]
    states = tuple(sys_cls.state_names)
    if isinstance(model.known, list):
        for i, t in enumerate(model.known):
            if t not in sys_cls.term_names:
                out.append((f"model.known[{i}]", f"unknown term {t!r} of {system}{_suggest(t, sys_cls.term_names)}"
                                                 f"; its terms are {', '.join(sys_cls.term_names)}"))
            elif model.known.count(t) > 1:
                out.append((f"model.known[{i}]", f"term {t!r} is listed twice"))
    known = [t for t in _known_terms(model.known, sys_cls) if t in sys_cls.term_names]
    used = _params_in_terms(sys_cls, known)
    for p in model.parameters:
        if p not in sys_cls.param_names:
            out.append((f"model.parameters.{p}", f"unknown parameter of {system}"
                                                 f"{_suggest(p, sys_cls.param_names)}; its parameters "
                                                 f"are {', '.join(sys_cls.param_names)}"))
    if truth is None and data is not None and data.file is not None:
        missing = sorted(used - set(model.parameters))
        if missing:
            out.append(("model.parameters", f"missing {', '.join(map(repr, missing))} (used by the "
                                            "known terms; with real data there is no truth to take "
                                            "them from)"))
    values = dict(truth.parameters) if truth is not None else {}
    values.update(model.parameters)
    for i, p in enumerate(model.trainable):
        if p not in sys_cls.param_names:
            out.append((f"model.trainable[{i}]", f"unknown parameter {p!r} of {system}"
                                                 f"{_suggest(p, sys_cls.param_names)}"))
        elif p not in used:
            out.append((f"model.trainable[{i}]", f"{p!r} appears in no known term "
                                                 f"({', '.join(known) or 'none are known'})"))
        elif model.positive and p in values and not values[p] > 0:
            out.append((f"model.trainable[{i}]", f"{p!r} is constrained positive (model.positive) "
                                                 f"but starts at {values[p]}"))
    net = model.network
    if net is None:
        if not model.trainable:
            out.append(("model", "nothing to train: network is null and trainable is empty"))
        if not known:
            out.append(("model.network", "required when no term is known (known: none)"))
    else:
        for f in ("inputs", "outputs"):
            for i, n in enumerate(getattr(net, f) or []):
                if n not in states:
                    out.append((f"model.network.{f}[{i}]", f"unknown state {n!r}{_suggest(n, states)}; "
                                                           f"states are {', '.join(states)}"))
        n_in = len(net.inputs) if net.inputs is not None else len(states)
        if net.input_scale is not None and len(net.input_scale) not in (1, n_in):
            out.append(("model.network.input_scale", f"give one value or one per input ({n_in}), "
                                                     f"got {len(net.input_scale)}"))
    if data is not None:
        grid = time_grid(data)
        for state, spec in (data.observe or {}).items():
            if state not in states:
                out.append((f"data.observe.{state}", f"unknown state{_suggest(state, states)}; "
                                                     f"states are {', '.join(states)}"))
            elif isinstance(spec, list) and grid is not None:
                tol = 1e-9 * max(1.0, abs(grid[-1]))
                for j, t in enumerate(spec):
                    if not any(abs(t - g) <= tol for g in grid):
                        out.append((f"data.observe.{state}[{j}]", f"time {t} is not a save time "
                                                                  f"(t_span {list(data.t_span)}, "
                                                                  f"{len(grid)} samples)"))
        if data.file is not None and len(data.file.states) != len(states):
            out.append(("data.file.states", f"lists {len(data.file.states)} columns for the "
                                            f"{len(states)} states of {system} ({', '.join(states)})"))
        t0 = data.t_span[0] if data.t_span is not None else None
        t_data_end = data.t_span[1] if data.t_span is not None else None
        t_train = data.train_end if data.train_end is not None else t_data_end
        if data.train_end is not None and t0 is not None:
            if not t0 < data.train_end <= t_data_end:
                out.append(("data.train_end", f"must lie in the data span ({t0}, {t_data_end}], "
                                              f"got {data.train_end}"))
        if data.held_out is not None:
            if t_train is not None and data.held_out[0] < t_train:
                out.append(("data.held_out", f"starts at {data.held_out[0]}, before the training end "
                                             f"{t_train}; held-out data must come after training"))
            if t_data_end is not None and data.held_out[1] > t_data_end:
                out.append(("data.held_out", f"ends at {data.held_out[1]}, after the end of the data "
                                             f"{t_data_end}"))
        if train is not None:
            n_train = None
            if grid is not None and t_train is not None:
                n_train = sum(1 for g in grid if g <= t_train + 1e-9 * max(1.0, abs(t_train)))
            st = train.strategy
            if st.weights is not None and len(st.weights) != len(states):
                out.append(("train.strategy.weights", f"give one weight per state ({len(states)}), "
                                                      f"got {len(st.weights)}"))
            if n_train is not None:
                if st.kind == "multiple_shooting" and st.segments > n_train - 1:
                    out.append(("train.strategy.segments", f"{st.segments} segments need at least "
                                                           f"{st.segments + 1} samples; the training "
                                                           f"window has {n_train}"))
                if st.kind == "window_minibatch" and st.window > n_train:
                    out.append(("train.strategy.window", f"{st.window} samples exceed the "
                                                         f"{n_train} of the training window"))
            for i, stage in enumerate(train.stages):
                if stage.horizon is not None:
                    if t0 is not None and stage.horizon <= t0:
                        out.append((f"train.stages[{i}].horizon", f"must be after the data start "
                                                                  f"{t0}, got {stage.horizon}"))
                    elif t_train is not None and stage.horizon > t_train:
                        out.append((f"train.stages[{i}].horizon", f"must be <= the training end "
                                                                  f"{t_train}, got {stage.horizon}"))
        if ev is not None and ev.t_end is not None and t_train is not None and ev.t_end < t_train:
            out.append(("evaluate.t_end", f"must be >= the training end {t_train}, got {ev.t_end}"))
    if disc is not None and disc.enabled:
        if net is None:
            out.append(("discovery.enabled", "discovery regresses the network's output, but "
                                             "model.network is null; set discovery.enabled: false"))
        else:
            outs = net.outputs if net.outputs is not None else list(states)
            for i, n in enumerate(disc.states or []):
                if n not in outs:
                    out.append((f"discovery.states[{i}]", f"{n!r} is not a network output "
                                                          f"({', '.join(outs)})"))
        for i, p in enumerate(disc.refit.train_known):
            if p not in sys_cls.param_names:
                out.append((f"discovery.refit.train_known[{i}]", f"unknown parameter {p!r} of "
                                                                 f"{system}{_suggest(p, sys_cls.param_names)}"))
            elif p not in used:
                out.append((f"discovery.refit.train_known[{i}]", f"{p!r} appears in no known term"))
    return out


# ------------------------------------------------------------------------------------------------
# pydantic errors → "key.path: message"
# ------------------------------------------------------------------------------------------------
def _join_path(parts) -> str:
    out = ""
    for p in parts:
        if p == "" or p is None:
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            for piece in re.findall(r"[^.\[\]]+|\[\d+\]", str(p)):
                out += piece if piece.startswith("[") else ("." if out else "") + piece
    return out


def _unwrap(ann):
    """The pydantic model class inside an annotation (Optional, list, dict, Annotated), or None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _unwrap(arg)
        if m is not None:
            return m
    return None


def _fields_at(loc) -> list[str]:
    cls = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if cls is None or part not in cls.model_fields:
            return []
        cls = _unwrap(cls.model_fields[part].annotation)
    return list(cls.model_fields) if cls is not None else []


def _pydantic_message(err) -> list[tuple[str, str]]:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    t, ctx, inp = err["type"], err.get("ctx") or {}, err.get("input")
    path = _join_path(loc)
    if t == "value_error" and isinstance(ctx.get("error"), _Problems):
        return [(_join_path([path, p]), m) for p, m in ctx["error"].items]
    if t == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        hint = _suggest(loc[-1], fields)
        return [(path, f"unknown key{hint}" + ("" if hint or not fields else
                                              f"; valid keys: {', '.join(fields)}"))]
    if t == "missing":
        return [(path, "required key is missing")]
    bounds = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
              "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
    if t in bounds:
        k, sym = bounds[t]
        bound = ctx[k]
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        return [(path, f"must be {sym} {bound}, got {_show(inp)}")]
    simple = {"float_type": "a number", "float_parsing": "a number", "int_type": "an integer",
              "int_parsing": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
              "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
              "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
              "tuple_type": "a list", "finite_number": "a finite number"}
    if t in simple:
        return [(path, f"must be {simple[t]}, got {_show(inp)}")]
    if t == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return [(path, f"must be one of {expected}, got {_show(inp)}{_suggest(inp, choices)}")]
    if t == "too_short":
        if str(ctx.get("field_type")) == "Tuple":
            return [(path, f"must have {ctx.get('min_length')} values, got {ctx.get('actual_length')}")]
        return [(path, f"must have at least {ctx.get('min_length')} item(s), got "
                       f"{ctx.get('actual_length')}")]
    if t == "too_long":
        return [(path, f"must have {ctx.get('max_length')} values at most, got {ctx.get('actual_length')}")]
    if t == "string_too_short":
        return [(path, "must not be empty")]
    if t == "value_error":
        return [(path, str(ctx.get("error")))]
    return [(path, f"{err['msg']}, got {_show(inp)}")]


def _format(items) -> list[str]:
    seen, out = set(), []
    for path, msg in items:
        line = f"{path}: {msg}" if path else msg
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def _section_models() -> dict[str, type[BaseModel]]:
    return {name: _unwrap(ExperimentConfig.model_fields[name].annotation) for name in SECTIONS}


def _resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill the defaults that depend on other sections."""
    d = cfg.model_dump(mode="python")
    m = d["model"]
    if m["system"] is None:
        m["system"] = cfg.truth.system
    sys_cls = SYSTEMS[m["system"]]
    m["known"] = _known_terms(cfg.model.known, sys_cls)
    params = dict(cfg.truth.parameters) if cfg.truth is not None else {}
    params.update(cfg.model.parameters)
    for p in sys_cls.param_names:  # unused by the known terms: any value will do
        params.setdefault(p, 0.0)
    m["parameters"] = {p: float(params[p]) for p in sys_cls.param_names}
    if cfg.data.file is None:
        if d["data"]["train_end"] is None:
            d["data"]["train_end"] = float(cfg.data.t_span[1])
        if d["data"]["held_out"] is None and d["data"]["train_end"] < cfg.data.t_span[1]:
            d["data"]["held_out"] = (d["data"]["train_end"], float(cfg.data.t_span[1]))
        if d["evaluate"]["t_end"] is None:
            d["evaluate"]["t_end"] = float(cfg.data.t_span[1])
    return ExperimentConfig.model_validate(d)


def validate_config(raw: Any, source: str | None = None) -> ExperimentConfig:
    """Validate a config mapping (as read from YAML) completely; raise :class:`ConfigError` with
    every problem at once, or return the resolved :class:`ExperimentConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError([f"the config must be a mapping of sections, got {_show(raw)}"], source)
    items: list[tuple[str, str]] = []
    cfg = None
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            items.extend(_pydantic_message(err))
    sections: dict[str, Any] = {}
    invalid: set[str] = set()
    if cfg is not None:
        sections = {k: getattr(cfg, k) for k in SECTIONS}
    else:  # validate each section alone, so cross-section checks still run where they can
        for name, model_cls in _section_models().items():
            field = ExperimentConfig.model_fields[name]
            if name in raw:
                value = raw[name]
            elif field.is_required():
                invalid.add(name)
                continue
            else:
                value = field.get_default(call_default_factory=True)
            if value is None or isinstance(value, BaseModel):
                sections[name] = value
                continue
            try:
                sections[name] = model_cls.model_validate(value)
            except ValidationError:
                sections[name] = None
                invalid.add(name)
    items.extend(_cross_check(sections, invalid))
    if items:
        raise ConfigError(_format(items), source)
    return _resolve(cfg)


# ------------------------------------------------------------------------------------------------
# YAML, overrides, files
# ------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-6`` as a string; accept it (and ``1.e-6``, ``.5``) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str, source: str | None = None):
    """Parse YAML (floats like ``1e-6`` included); syntax errors become :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def _split_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        if key[pos] == "." and parts and pos + 1 < len(key):
            pos += 1
        m = _PATH_PART.match(key, pos)
        if m is None:
            raise ValueError(f"cannot parse the key path {key!r} (write it as a.b[0].c)")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"cannot parse the key path {key!r} (write it as a.b[0].c)")
    return parts


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"train.stages[0].steps=5"`` → ``(["train", "stages", 0, "steps"], 5)``; the value is a
    YAML scalar (or flow list/mapping)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. train.stages[0].steps=5")
    key, value = text.split("=", 1)
    try:
        path = _split_key(key)
    except ValueError as e:
        raise ValueError(f"--set {text!r}: {e}") from None
    try:
        parsed = yaml.load(value, Loader=_Loader) if value.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
    return path, parsed


def _default_at(parts) -> Any:
    """The schema default at a key path (plain data), e.g. ``["train", "stages"]`` → the default
    stage list; None when there is none."""
    cls, value, have = ExperimentConfig, None, False
    for part in parts:
        if isinstance(part, int):
            if not (have and isinstance(value, list) and -len(value) <= part < len(value)):
                return None
            value = value[part]
            continue
        if have and isinstance(value, dict):
            value = value.get(part)
            cls = _unwrap(cls.model_fields[part].annotation) if cls and part in cls.model_fields else None
            continue
        if cls is None or part not in cls.model_fields:
            return None
        field = cls.model_fields[part]
        if field.is_required():
            return None
        value, have = _plain(field.get_default(call_default_factory=True)), True
        cls = _unwrap(field.annotation)
    return value


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of ``raw`` with each ``KEY=VALUE`` applied (missing mappings are created; list
    indices must exist). Raises :class:`ConfigError` listing the overrides that cannot apply."""
    import copy

    raw = copy.deepcopy(raw)
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ValueError as e:
            problems.append(str(e))
            continue
        node = raw
        ok = True
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            where = _join_path(path[: i + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or not -len(node) <= part < len(node):
                    n = len(node) if isinstance(node, list) else 0
                    problems.append(f"--set {text!r}: {_join_path(path[:i])} has {n} entries, "
                                    f"no index {part}")
                    ok = False
                    break
                child = node[part]
                if child is None:
                    child = node[part] = [] if isinstance(nxt, int) else {}
            else:
                if not isinstance(node, dict):
                    problems.append(f"--set {text!r}: {_join_path(path[:i]) or 'the config'} is not a mapping")
                    ok = False
                    break
                child = node.get(part)
                if child is None:
                    default = _default_at(path[: i + 1]) if part not in node else None
                    want = list if isinstance(nxt, int) else dict
                    child = node[part] = default if isinstance(default, want) else want()
            if isinstance(nxt, int) and not isinstance(child, list):
                problems.append(f"--set {text!r}: {where} is not a list")
                ok = False
                break
            if isinstance(nxt, str) and not isinstance(child, dict):
                problems.append(f"--set {text!r}: {where} is {_show(child)}, not a mapping")
                ok = False
                break
            node = child
        if not ok:
            continue
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or not -len(node) <= last < len(node):
                n = len(node) if isinstance(node, list) else 0
                problems.append(f"--set {text!r}: {_join_path(path[:-1])} has {n} entries, no index {last}")
                continue
        node[last] = value
    if problems:
        raise ConfigError(problems)
    return raw


def describe(text: str) -> str | None:
    """The first ``#`` comment line of a config file (what ``ude configs`` lists)."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            return s.lstrip("#").strip() or None
        return None
    return None


def _resolve_file_path(raw: dict, base: Path | None) -> None:
    data = raw.get("data")
    f = data.get("file") if isinstance(data, dict) else None
    p = f.get("path") if isinstance(f, dict) else None
    if not isinstance(p, str) or Path(p).is_absolute() or Path(p).is_file() or base is None:
        return
    for root in (base, base.parent):
        if (root / p).is_file():
            f["path"] = str((root / p).resolve())
            return


def load_config(path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override and validate ``path``; ``name`` defaults to the file's stem and
    ``description`` to its first ``#`` comment line. Raises :class:`ConfigError`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the config file {path}: {e}"]) from None
    raw = read_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the config must be a mapping of sections, got {_show(raw)}"], source)
    raw = apply_overrides(raw, overrides) if overrides else raw
    raw.setdefault("name", path.stem if path.stem != "config" else None)
    if raw.get("name") is None:
        raw.pop("name")
    if "description" not in raw and describe(text):
        raw["description"] = describe(text)
    _resolve_file_path(raw, path.parent.resolve())
    return validate_config(raw, source)


def _plain(x):
    """JSON-like data of a config model; fields that are None by default and None now are left
    out (re-validating gives them back), so kind-specific options of other kinds do not clutter."""
    if isinstance(x, BaseModel):
        out = {}
        for name, field in type(x).model_fields.items():
            v = getattr(x, name)
            if v is None and field.default is None:
                continue
            out[name] = _plain(v)
        return out
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def dump_config(cfg: ExperimentConfig) -> str:
    """YAML of the resolved config; its description becomes the first line, a ``#`` comment."""
    d = _plain(cfg)
    d.pop("description", None)
    head = f"# {cfg.description}\n" if cfg.description else ""
    return head + yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)
