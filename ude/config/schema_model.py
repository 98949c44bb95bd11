"""The schema of the system sections: the ``truth`` and the ``model`` (its known part,
parameters and network), plain data only; see :mod:`.schema` for the whole config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import ACTIVATION_NAMES, SYSTEMS
from .fields import Bool, Name, NonNegInt, Num, PosFloat, PosInt, _Section
from .messages import _choice, _Problems, _show, _suggest
from .systems import parse_block, unused_parameters

__all__ = ["TruthConfig", "NetworkConfig", "ParameterConfig", "ModelConfig"]

# the systems a truth or model may name: "none" (no known physics) is no system to simulate
_NAMED_SYSTEMS = tuple(k for k in SYSTEMS if k != "none")


def _named_system(v):
    """A shipped system's name (or None), with "did you mean" for a typo."""
    msg = None if v is None else _choice(v, _NAMED_SYSTEMS, "system")
    if msg:
        raise _Problems([("", msg)])
    return v


def _as_matrix(v):
    if (
        isinstance(v, list)
        and v
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ):
        return [v]
    return v


def _equations_before(v):
    """An equations block: ``{state: expression}`` or ``{state: {term name: expression}}``."""
    ok_value = lambda e: isinstance(e, (str, int, float)) and not isinstance(e, bool)  # noqa: E731
    if isinstance(v, dict) and v and all(isinstance(k, str) for k in v):
        if all(
            ok_value(e) or (isinstance(e, dict) and e and all(map(ok_value, e.values())))
            for e in v.values()
        ):
            return v
    raise _Problems(
        [
            (
                "",
                "must map each state to its equation as text, e.g. "
                f'{{x: "a*x - b*x*y"}}, got {_show(v)}',
            )
        ]
    )


class TruthConfig(_Section):
    """The simulated ground truth from initial state(s) ``y0``: a shipped ``system`` with its
    ``parameters``, or ``equations`` as text (``{state: expression}``; ``parameters`` names the
    constants they use, if any; ``inputs`` the experiments' inputs they read — filled in from
    ``data.inputs`` and ``data.constants``). With ``data.experiments`` each experiment has its
    own ``y0``."""

    system: Name | None = None
    equations: dict[str, Any] | None = None
    parameters: dict[str, Num] = {}
    inputs: list[Name] = []
    y0: list[list[Num]] | None = Field(default=None, min_length=1)
    tolerance: PosFloat = 1e-12

    _y0 = field_validator("y0", mode="before")(lambda cls, v: _as_matrix(v))
    _eqs = field_validator("equations", mode="before")(
        lambda cls, v: v if v is None else _equations_before(v)
    )

    _system = field_validator("system")(lambda cls, v: _named_system(v))

    @model_validator(mode="after")
    def _check(self):
        if (self.system is None) == (self.equations is None):
            raise _Problems(
                [
                    (
                        "system",
                        "give either system (a shipped one) or equations (as text), not both",
                    )
                    if self.system is not None
                    else ("", "give system (a shipped one) or equations (as text)")
                ]
            )
        problems = self._check_equations() if self.equations is not None else self._check_system()
        states = (
            tuple(self.equations)
            if self.equations is not None
            else SYSTEMS[self.system].state_names
        )
        n = len(states)
        for i, row in enumerate(self.y0 or []):
            if len(row) != n:
                where = "y0" if len(self.y0) == 1 else f"y0[{i}]"
                problems.append(
                    (where, f"must have {n} values ({', '.join(states)}), got {len(row)}")
                )
        if problems:
            raise _Problems(problems)
        return self

    def _check_equations(self):
        parsed, problems = parse_block(
            self.equations,
            states=None,
            parameters=list(self.parameters),
            where="equations",
            inputs=self.inputs,
        )
        if parsed is not None:
            problems += unused_parameters(parsed, list(self.parameters), "parameters")
        return problems

    def _check_system(self):
        spec = SYSTEMS[self.system]
        problems = []
        missing = [p for p in spec.param_names if p not in self.parameters]
        if missing:
            problems.append(
                (
                    "parameters",
                    f"missing {', '.join(map(repr, missing))} for "
                    f"{self.system} (needs {', '.join(spec.param_names)})",
                )
            )
        for p in self.parameters:
            if p not in spec.param_names:
                problems.append(
                    (
                        f"parameters.{p}",
                        f"unknown parameter of {self.system}"
                        f"{_suggest(p, spec.param_names)}; its "
                        f"parameters are {', '.join(spec.param_names)}",
                    )
                )
        return problems


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
            msg = _choice(a, ACTIVATION_NAMES, "activation")
            if msg:
                where = f"activation[{i}]" if len(self.activation) > 1 else "activation"
                problems.append((where, msg))
        if len(self.activation) == 1:
            self.activation = self.activation * self.depth
        elif len(self.activation) != self.depth:
            problems.append(
                (
                    "activation",
                    f"lists {len(self.activation)} activations for depth "
                    f"{self.depth}; give one name or one per hidden layer",
                )
            )
        if problems:
            raise _Problems(problems)
        return self


def _known_before(v):
    if isinstance(v, str) and v in ("all", "none"):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    if isinstance(v, dict):
        return _equations_before(v)
    raise _Problems(
        [
            (
                "",
                "must be 'all', 'none', a list of term names or equations "
                f"{{state: expression}}, got {_show(v)}",
            )
        ]
    )


class ParameterConfig(_Section):
    """One parameter of the model: its ``value``, whether it is ``trainable`` and, if so, whether
    it is kept ``positive`` (default: ``model.positive``)."""

    value: Num
    trainable: Bool = False
    positive: Bool | None = None


class ModelConfig(_Section):
    """The UDE's known part and network.

    The known part is the ``known`` terms of a shipped ``system`` (default: the truth's), or
    equations as text, ``known: {state: expression}`` over ``states`` (default: the truth's, or
    the keys). ``parameters`` gives values (default: the truth's): a number, or
    ``{value, trainable, positive}``; ``trainable`` lists more that learn, kept positive when
    ``positive`` (true, false or a list of names). ``network`` is the correction (null: physics
    only)."""

    system: Name | None = None
    states: list[Name] | None = None
    known: Any = "all"
    parameters: dict[str, Num | ParameterConfig] = {}
    trainable: list[Name] = []
    positive: Bool | list[Name] = True
    network: NetworkConfig | None = NetworkConfig()

    _known = field_validator("known", mode="before")(lambda cls, v: _known_before(v))

    _system = field_validator("system")(lambda cls, v: _named_system(v))

    def values(self) -> dict[str, float]:
        """Each parameter's value (numbers as given, ``value`` of the detailed form)."""
        return {
            p: float(v.value if isinstance(v, ParameterConfig) else v)
            for p, v in self.parameters.items()
        }

    def trainable_names(self) -> list[str]:
        """The parameters that learn: ``trainable``, then those marked ``trainable: true``."""
        marked = [
            p for p, v in self.parameters.items() if isinstance(v, ParameterConfig) and v.trainable
        ]
        return list(self.trainable) + [p for p in marked if p not in self.trainable]

    def is_positive(self, p: str) -> bool:
        """Whether trainable parameter ``p`` is kept positive."""
        v = self.parameters.get(p)
        if isinstance(v, ParameterConfig) and v.positive is not None:
            return v.positive
        return p in self.positive if isinstance(self.positive, list) else bool(self.positive)
