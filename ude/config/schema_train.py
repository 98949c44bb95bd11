"""The schema of the ``train`` and ``discovery`` sections: how the UDE is fitted (strategy,
optimiser stages, optional pretraining and polishing) and how equations are discovered from it
(library, sparse regressor, λ sweep, model selection, refit).

Options that belong to one ``kind`` only (``lr`` of Adam, ``segments`` of multiple shooting) are
None unless that kind is chosen; the validators fill that kind's defaults and reject the others'.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .fields import (
    Bool,
    Name,
    NonNegFloat,
    NonNegInt,
    Num,
    PosFloat,
    PosInt,
    _kind_fields,
    _Section,
)
from .messages import _Problems, _show

__all__ = [
    "StrategyConfig",
    "StageConfig",
    "TrainConfig",
    "LibraryConfig",
    "RegressorConfig",
    "LamsConfig",
    "RefitConfig",
    "DiscoveryConfig",
]


_STRATEGY_LABEL = {
    "single_shooting": "single_shooting",
    "multiple_shooting": "multiple_shooting",
    "window_minibatch": "window_minibatch",
}


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
            self,
            self.kind,
            {
                "single_shooting": ("learn_y0",),
                "multiple_shooting": ("segments", "continuity", "fix_observed"),
                "window_minibatch": ("window", "batch"),
            },
            {
                "single_shooting": {"learn_y0": "auto"},
                "multiple_shooting": {"segments": 5, "continuity": 1.0, "fix_observed": False},
                "window_minibatch": {"window": 10, "batch": 8},
            },
            _STRATEGY_LABEL,
        )


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
            raise _Problems(
                [
                    (
                        "lr",
                        "L-BFGS takes no learning rate (its line search chooses the "
                        "step); remove lr or use kind: adam",
                    )
                ]
            )
        _kind_fields(
            self,
            self.kind,
            {
                "adam": ("lr", "schedule", "final_fraction", "clip"),
                "lbfgs": ("gtol", "ftol", "memory"),
            },
            {
                "adam": {"lr": 0.1, "schedule": "constant", "final_fraction": 0.01, "steps": 200},
                "lbfgs": {"gtol": 1e-8, "ftol": 1e-12, "memory": 10, "steps": 1000},
            },
            {"adam": "Adam", "lbfgs": "L-BFGS"},
        )
        return self


def _default_stages():
    return [StageConfig(kind="adam", lr=0.1, steps=200), StageConfig(kind="lbfgs", steps=1000)]


class TrainConfig(_Section):
    """Strategy and optimiser stages; ``chunk`` steps are fused per jitted scan; a checkpoint is
    written every ``checkpoint_every`` steps (rounded up to whole chunks).

    Optional phases around them: ``pretrain`` stages fit the network first without any solve to
    kernel-smoothed states and derivatives (collocation: a robust start for long windows), and
    ``polish`` stages finish with single shooting over the whole window, initial states learned
    (after multiple shooting or minibatches).

    ``underfit_ratio`` is the quality gate (:mod:`ude.quality`): a fit whose final loss exceeds
    this many times the noise floor is ``underfit`` (null: no gate)."""

    strategy: StrategyConfig = StrategyConfig()
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=1)
    pretrain: list[StageConfig] = []
    polish: list[StageConfig] = []
    chunk: PosInt = 100
    checkpoint_every: PosInt | None = 100
    underfit_ratio: Annotated[float, Field(strict=True, gt=1, allow_inf_nan=False)] | None = 10.0


class LibraryConfig(_Section):
    """One part of the candidate library: ``polynomial`` (degree, include_bias), ``trig``
    (functions, frequencies) or ``expressions`` (``terms`` written as text in the state names,
    e.g. ``["y/(1 + y)", "exp(-x)"]``; no time ``t``, no constant factor, no sum). With inputs
    (``data.inputs``, ``data.constants``) every part is built over the states and the inputs, and
    ``kinds`` keeps its terms that read only states (``state``), only inputs (``input``) or both
    (``cross``); default all.

    The text terms are checked here for syntax, functions, time, zero, constant factors, sums and
    repeats; that their symbols are states, and that they repeat no term of another part, needs
    the states: :meth:`term_problems`."""

    kind: Literal["polynomial", "trig", "expressions"]
    degree: PosInt | None = None
    include_bias: Bool | None = None
    functions: list[Literal["sin", "cos"]] | None = None
    frequencies: list[Num] | None = None
    terms: list[Name] | None = Field(default=None, min_length=1)
    kinds: list[Literal["state", "input", "cross"]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self):
        if self.frequencies is not None and any(f == 0 for f in self.frequencies):
            raise _Problems([("frequencies", f"must be non-zero, got {self.frequencies}")])
        if self.kind == "expressions" and self.terms is None:
            raise _Problems([("terms", "required for expressions, e.g. terms: ['y/(1 + y)']")])
        _kind_fields(
            self,
            self.kind,
            {
                "polynomial": ("degree", "include_bias"),
                "trig": ("functions", "frequencies"),
                "expressions": ("terms",),
            },
            {
                "polynomial": {"degree": 2, "include_bias": True},
                "trig": {"functions": ["sin", "cos"], "frequencies": [1]},
            },
            {},
        )
        problems = self.term_problems()
        if problems:
            raise _Problems(problems)
        return self

    def term_problems(self, state_names=None, others=()) -> list[tuple[str, str]]:
        """``(key path relative to this part, message)`` for each bad text term: as the class
        says, and with ``state_names`` also a symbol that is not a state, and a term equal to one
        of the parts ``others`` (LibraryConfigs; pass the parts before this one, so that a repeat
        is reported once). Pure SymPy; the same rules as ``ude.discovery.ExpressionLibrary``."""
        import re

        import sympy

        from ..equations.parse import FUNCTIONS, TIME, EquationError, library_term

        taken = {}
        for o in others if state_names is not None else ():
            for e in o._sympy_terms(state_names):
                taken.setdefault(sympy.expand(e), o.kind)
        out, seen = [], {}
        for i, text in enumerate(self.terms or []):
            path = f"terms[{i}]"
            if state_names is None:  # any name but a function's is a symbol here
                found = re.findall(r"(?<![\w.])([A-Za-z_]\w*)\b(?!\s*\()", text)
                names = [n for n in found if n not in FUNCTIONS and n != TIME]
            else:
                names = list(state_names)
            try:
                _, expr = library_term(text, names, path=path)
            except EquationError as e:
                out.append((e.path, e.problem))
                continue
            expanded = sympy.expand(expr)
            if expanded in seen:
                out.append((path, f"{text!r} is the same term as terms[{seen[expanded]}]"))
            elif expanded in taken:
                out.append((path, f"{text!r} is already a term of the {taken[expanded]} part"))
            else:
                seen[expanded] = i
        return out

    def _sympy_terms(self, state_names) -> list:
        """The terms of this part as SymPy expressions (text terms that do not parse left out)."""
        import itertools

        import sympy

        from ..equations.parse import EquationError, parse_expression

        xs = [sympy.Symbol(s) for s in state_names]
        if self.kind == "polynomial":
            lo = 0 if self.include_bias is not False else 1
            return [
                sympy.Mul(*combo)
                for d in range(lo, (self.degree or 2) + 1)
                for combo in itertools.combinations_with_replacement(xs, d)
            ]
        if self.kind == "trig":
            fs = {"sin": sympy.sin, "cos": sympy.cos}
            return [
                fs[f](sympy.sympify(int(k) if float(k).is_integer() else k) * x)
                for k in self.frequencies or [1]
                for f in self.functions or ["sin", "cos"]
                for x in xs
            ]
        out = []
        for text in self.terms or []:
            try:
                out.append(parse_expression(text, list(state_names)))
            except EquationError:
                continue
        return out


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
        return _kind_fields(
            self,
            self.kind,
            {"sr3": ("nu", "regularizer", "iterations"), "stlsq": ("alpha",)},
            {"sr3": {"nu": 1.0, "regularizer": "l0", "iterations": 100}, "stlsq": {"alpha": 0.05}},
            {},
        )


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
            raise _Problems(
                [
                    (
                        "log10_stop",
                        f"must be >= log10_start ({self.log10_start}), got {self.log10_stop}",
                    )
                ]
            )
        return self


def _default_library():
    return [
        LibraryConfig(kind="polynomial", degree=5),
        LibraryConfig(kind="trig", functions=["sin"]),
    ]


class RefitConfig(_Section):
    """Refit the kept coefficients (and ``train_known`` physics parameters) through the solver,
    learning the initial states too (``learn_y0``; the first sample is noisy) with squared errors
    weighted per state by ``1/mean(|y|)²`` (``weights: scale``) or not (``equal``)."""

    enabled: Bool = True
    stages: list[StageConfig] = Field(
        default_factory=lambda: [StageConfig(kind="lbfgs", steps=200)], min_length=1
    )
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
            raise _Problems(
                [
                    (
                        "refit.enabled",
                        "criterion 'simulation' refits its candidates: refit.enabled must be true",
                    )
                ]
            )
        return self
