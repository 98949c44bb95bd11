"""The schema of an experiment config: one pydantic model per section, plain data only.

:class:`ExperimentConfig` holds the sections ``truth``, ``data``, ``model``, ``solver``,
``train``, ``discovery`` (those two in :mod:`.schema_train`; ``truth`` and ``model`` in
:mod:`.schema_model`), ``evaluate``, ``output`` and
``parallel``. Each section validates itself (types, ranges, options of one kind); checks that
need several sections are in :mod:`.checks`. Names of systems, activations and solvers are
checked against :mod:`ude.registry`, so the schema imports nothing of JAX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from ..registry import ADJOINT_NAMES, SOLVER_NAMES, SystemSpec
from .fields import Bool, Name, NonNegFloat, NonNegInt, Num, PosFloat, PosInt, _Section
from .messages import _choice, _Problems, _pydantic_message, _show, _suggest
from .schema_model import ModelConfig, NetworkConfig, ParameterConfig, TruthConfig
from .schema_train import DiscoveryConfig, TrainConfig
from .systems import model_spec

__all__ = [
    "TruthConfig",
    "FileConfig",
    "NoiseConfig",
    "DataConfig",
    "NetworkConfig",
    "ParameterConfig",
    "ModelConfig",
    "SolverConfig",
    "EvaluateConfig",
    "OutputConfig",
    "ParallelConfig",
    "ExperimentConfig",
    "ExperimentSpec",
    "SECTIONS",
]


class FileConfig(_Section):
    """A real data table (TSV/CSV) with a time column and one column per state."""

    path: Name
    time: Name = "t"
    states: list[Name] = Field(min_length=1)
    normalize: Literal["max"] | None = None
    t_offset: Num = 0.0
    experiment: Name | None = None  # the column naming each row's experiment (long format)

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
        need = {"none": None, "gaussian": "sigma", "relative_mean": "level", "lognormal": "sigma"}[
            self.kind
        ]
        problems = []
        for f in ("level", "sigma"):
            if f == need and getattr(self, f) is None:
                problems.append((f, f"required for noise kind {self.kind!r}"))
            if f != need and getattr(self, f) is not None:
                problems.append(
                    (
                        f,
                        f"not used by noise kind {self.kind!r}"
                        + (f" (it takes {need})" if need else "")
                        + "; remove it",
                    )
                )
        if problems:
            raise _Problems(problems)
        return self


def _input_expression(text, where: str):
    """``text`` (an expression of ``t``, or a number) as a problem list (empty when it parses)."""
    from ..equations.parse import EquationError, parse_expression

    try:
        parse_expression(text, (), path=where)
    except EquationError as e:
        return [(e.path or where, e.problem)]
    return []


class ExperimentSpec(_Section):
    """One simulated experiment: its ``name``, initial state ``y0``, save times (``t_span`` with
    ``dt`` or ``samples``), its ``inputs`` (``{name: expression of t}``, sampled at
    ``input_samples`` equally spaced times and interpolated as ``data.interpolation`` says, so the
    model sees the signal the truth was driven by) and its ``constants`` (``{name: number}``)."""

    name: Name
    y0: list[Num] = Field(min_length=1)
    t_span: tuple[Num, Num]
    dt: PosFloat | None = None
    samples: Annotated[int, Field(strict=True, ge=2)] | None = None
    inputs: dict[str, Num | str] = {}
    input_samples: Annotated[int, Field(strict=True, ge=2)] = 101
    constants: dict[str, Num] = {}

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if not self.t_span[1] > self.t_span[0]:
            problems.append(
                ("t_span", f"must be [start, end] with end > start, got {list(self.t_span)}")
            )
        if (self.dt is None) == (self.samples is None):
            problems.append(("dt", "give exactly one of dt (sample spacing) and samples (count)"))
        elif self.dt is not None and self.t_span[1] > self.t_span[0]:
            n = (self.t_span[1] - self.t_span[0]) / self.dt
            if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
                problems.append(
                    ("dt", f"{self.dt} does not divide {list(self.t_span)} into whole steps")
                )
        for k, v in self.inputs.items():
            problems += _input_expression(v, f"inputs.{k}")
        if problems:
            raise _Problems(problems)
        return self

    def times(self) -> list[float]:
        """The save times."""
        t0, t1 = self.t_span
        if self.samples is not None:
            return [t0 + (t1 - t0) * i / (self.samples - 1) for i in range(self.samples)]
        n = int(round((t1 - t0) / self.dt))
        return [t0 + self.dt * i for i in range(n)] + [t1]


class HeldOutFraction(_Section):
    """Hold out a random ``fraction`` of the experiments (at least one, and at least one is kept
    to train on), drawn with ``seed``: ``held_out_experiments: {fraction: 0.2, seed: 0}``."""

    fraction: Annotated[float, Field(gt=0, lt=1)]
    seed: NonNegInt = 0

    def count(self, n: int) -> int:
        """How many of ``n >= 2`` experiments are held out: ``round(fraction·n)`` in [1, n-1]."""
        return min(max(round(self.fraction * n), 1), n - 1)

    def choose(self, names: list[str]) -> list[str]:
        """The held-out experiments among ``names``, in their order (a seeded random draw);
        ValueError when there are fewer than 2 to split."""
        import random

        if len(names) < 2:
            raise ValueError(
                f"data.held_out_experiments.fraction: the data have {len(names)} experiment(s); "
                "holding some out needs at least 2"
            )
        picked = set(random.Random(self.seed).sample(range(len(names)), self.count(len(names))))
        return [n for i, n in enumerate(names) if i in picked]


class DataConfig(_Section):
    """Simulated (``t_span`` with ``dt`` or ``samples``, ``noise``, ``seed``, ``observe``) or real
    (``file``) data; ``train_end`` ends the training window; ``held_out`` is the window scored
    after training (default: everything after ``train_end``).

    Several experiments: simulated ``experiments`` (each with its own times, initial state,
    inputs and constants), or a long-format ``file`` with an ``experiment`` column. ``inputs``
    and ``constants`` name what experiments feed the equations and the network (file columns,
    or the keys of each simulated experiment's); ``interpolation`` makes signals of the input
    samples; ``held_out_experiments`` (a list of names, or ``{fraction, seed}`` for a random
    share of them) are scored after training and never trained on."""

    file: FileConfig | None = None
    experiments: list[ExperimentSpec] | None = Field(default=None, min_length=1)
    inputs: list[Name] = []
    constants: list[Name] = []
    interpolation: Literal["linear", "cubic", "constant"] = "linear"
    held_out_experiments: list[Name] | HeldOutFraction = []
    t_span: tuple[Num, Num] | None = None
    dt: PosFloat | None = None
    samples: Annotated[int, Field(strict=True, ge=2)] | None = None
    noise: NoiseConfig = NoiseConfig()
    seed: NonNegInt = 0
    observe: dict[str, Any] | None = None
    train_end: Num | None = None
    held_out: tuple[Num, Num] | None = None

    @field_validator("held_out_experiments", mode="before")
    @classmethod
    def _held_out(cls, v):
        """A list of names, or ``{fraction, seed}`` (its own messages, not both branches')."""
        if isinstance(v, HeldOutFraction):
            return v
        if not isinstance(v, dict | list | tuple):
            raise _Problems(
                [("", f"must be a list of experiment names or {{fraction, seed}}, got {_show(v)}")]
            )
        try:
            if isinstance(v, dict):
                return HeldOutFraction.model_validate(v)
            return TypeAdapter(list[Name]).validate_python(v)
        except ValidationError as e:
            raise _Problems(
                [i for err in e.errors() for i in _pydantic_message(err, HeldOutFraction)]
            ) from None

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if self.t_span is not None and not self.t_span[1] > self.t_span[0]:
            problems.append(
                ("t_span", f"must be [start, end] with end > start, got {list(self.t_span)}")
            )
        if self.held_out is not None and not self.held_out[1] > self.held_out[0]:
            problems.append(
                ("held_out", f"must be [start, end] with end > start, got {list(self.held_out)}")
            )
        problems += self._check_experiments()
        if self.file is not None:
            for f in ("t_span", "dt", "samples"):
                if getattr(self, f) is not None:
                    problems.append(
                        (f, "not used with data.file (the times come from the file); remove it")
                    )
            if self.noise.kind != "none":
                problems.append(
                    ("noise", "not used with data.file (real data carry their own noise)")
                )
        elif self.experiments is not None:
            for f in ("t_span", "dt", "samples"):
                if getattr(self, f) is not None:
                    problems.append(
                        (f, "not used with data.experiments (each has its own times); remove it")
                    )
        else:
            if self.t_span is None:
                problems.append(("t_span", "required for simulated data, e.g. [0.0, 3.0]"))
            if (self.dt is None) == (self.samples is None):
                problems.append(
                    ("dt", "give exactly one of dt (sample spacing) and samples (count)")
                )
            elif (
                self.dt is not None and self.t_span is not None and self.t_span[1] > self.t_span[0]
            ):
                n = (self.t_span[1] - self.t_span[0]) / self.dt
                if abs(n - round(n)) > 1e-6 * max(1.0, n):
                    problems.append(
                        (
                            "dt",
                            f"{self.dt} does not divide the span "
                            f"{list(self.t_span)} into whole steps",
                        )
                    )
        for state, spec in (self.observe or {}).items():
            if self.experiments is not None and spec not in ("all", "none"):
                problems.append(
                    (
                        f"observe.{state}",
                        "with experiments only 'all' or 'none' (each has its own times)",
                    )
                )
                continue
            ok = spec in ("all", "none") or (
                isinstance(spec, list)
                and spec
                and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in spec)
            )
            if not ok:
                problems.append(
                    (
                        f"observe.{state}",
                        f"must be 'all', 'none' or a list of save times, got {_show(spec)}",
                    )
                )
        if problems:
            raise _Problems(problems)
        return self

    def _check_experiments(self) -> list:
        problems = []
        if self.file is not None and self.experiments is not None:
            problems.append(
                ("experiments", "give either experiments (simulated) or file (real data), not both")
            )
        names = set(self.inputs) | set(self.constants)
        if len(names) != len(self.inputs) + len(self.constants):
            problems.append(("inputs", "inputs and constants must be distinct names"))
        for i, e in enumerate(self.experiments or []):
            for what, declared in (("inputs", self.inputs), ("constants", self.constants)):
                given = list(getattr(e, what))
                if sorted(given) != sorted(declared):
                    problems.append(
                        (
                            f"experiments[{i}].{what}",
                            f"gives {given or 'none'}; data.{what} declares "
                            f"{declared or 'none'} (every experiment gives each of them)",
                        )
                    )
        exps = [e.name for e in self.experiments or []]
        dup = sorted({n for n in exps if exps.count(n) > 1})
        if dup:
            problems.append(("experiments", f"names must be distinct; repeated: {dup}"))
        if self.held_out_experiments:
            if self.experiments is None and (self.file is None or self.file.experiment is None):
                problems.append(
                    (
                        "held_out_experiments",
                        "needs several experiments (data.experiments, or data.file with an "
                        "experiment column)",
                    )
                )
            elif isinstance(self.held_out_experiments, HeldOutFraction):
                if self.experiments is not None and len(self.experiments) < 2:
                    problems.append(
                        (
                            "held_out_experiments.fraction",
                            "needs at least 2 experiments (one to hold out, one to train on)",
                        )
                    )
            elif self.experiments is not None:
                for j, n in enumerate(self.held_out_experiments):
                    if n not in exps:
                        problems.append(
                            (
                                f"held_out_experiments[{j}]",
                                f"no experiment {n!r}{_suggest(n, exps)}; experiments are "
                                f"{', '.join(exps)}",
                            )
                        )
                if set(self.held_out_experiments) >= set(exps):
                    problems.append(
                        (
                            "held_out_experiments",
                            "holds out every experiment: none is left to train on",
                        )
                    )
        return problems


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
        for f, reg in (("name", SOLVER_NAMES), ("adjoint", ADJOINT_NAMES)):
            msg = _choice(getattr(self, f), reg, "solver" if f == "name" else "adjoint")
            if msg:
                problems.append((f, msg))
        if problems:
            raise _Problems(problems)
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
    formats: list[Literal["png", "pdf", "svg"]] = Field(
        default_factory=lambda: ["png", "pdf"], min_length=1
    )
    dpi: PosInt = 120


class ParallelConfig(_Section):
    """Ensembles and devices: ``ensemble`` fits trained as one vmapped program
    (:func:`ude.train.ensemble.fit_ensemble`), each from its own network-initialisation seed
    (member 0 is exactly the single fit); with ``redraw_noise`` (simulated data only) members
    1, 2, ... also get their own noise draw. The member with the lowest loss on the run's training
    data becomes the run's model; all give the ensemble spread in ``metrics.json``. ``devices``
    splits the members over that many devices (a ``jax.sharding`` mesh; default: one device, no
    mesh)."""

    ensemble: PosInt = 1
    redraw_noise: Bool = False
    devices: PosInt | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.devices is not None and self.devices > self.ensemble:
            raise _Problems(
                [
                    (
                        "devices",
                        f"{self.devices} devices for {self.ensemble} ensemble "
                        f"member(s): each device trains a block of members, so "
                        f"set parallel.ensemble to at least {self.devices}",
                    )
                ]
            )
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
    def system(self) -> str | None:
        """The model's shipped system name (None for a known part written as equations)."""
        return self.model.system

    @property
    def spec(self) -> SystemSpec:
        """The model's system: the registry's, or its equations parsed (states, parameters,
        terms)."""
        spec, problems = model_spec(self.model, self.truth, self.input_names)
        if spec is None:  # a resolved config has parsed once already
            raise ValueError("; ".join(f"{p}: {m}" for p, m in problems))
        return spec

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self.spec.state_names)

    @property
    def simulated(self) -> bool:
        return self.data.file is None

    @property
    def input_names(self) -> tuple[str, ...]:
        """What the experiments feed the model: ``data.inputs`` then ``data.constants``."""
        return tuple(self.data.inputs) + tuple(self.data.constants)


SECTIONS = (
    "truth",
    "data",
    "model",
    "solver",
    "train",
    "discovery",
    "evaluate",
    "output",
    "parallel",
)
