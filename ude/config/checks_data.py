"""Cross-section checks of the data: simulated experiments and initial states against the truth,
observation masks against the save times, file columns against the states, and the training and
held-out windows inside the data (see :mod:`.checks`)."""

from __future__ import annotations

from ..registry import SystemSpec
from .messages import _suggest
from .schema import DataConfig

__all__ = ["span", "check_experiments", "check_observe", "check_file_states", "check_windows"]

Items = list[tuple[str, str]]


def check_experiments(truth, data: DataConfig, states: tuple[str, ...]) -> Items:
    """Simulated experiments carry their own initial states (one value per state); other
    simulated data take it from ``truth.y0``."""
    out = []
    if truth is not None and data.file is None:
        if data.experiments is not None and truth.y0 is not None:
            out.append(("truth.y0", "not used with data.experiments (each has its y0); remove it"))
    for i, e in enumerate(data.experiments or []):
        if len(e.y0) != len(states):
            out.append(
                (
                    f"data.experiments[{i}].y0",
                    f"must have {len(states)} values ({', '.join(states)}), got {len(e.y0)}",
                )
            )
    if truth is not None and truth.equations is None and (data.inputs or data.constants):
        out.append(
            (
                "data.inputs",
                f"the shipped system {truth.system} reads no inputs; write the truth as "
                "equations that use them",
            )
        )
    return out


def span(data: DataConfig) -> tuple[float | None, float | None, float | None]:
    """The data's start and end (None for a file) and the training end (default: the data's)."""
    if data.experiments is not None:
        t0 = min(e.t_span[0] for e in data.experiments)
        t_data_end = max(e.t_span[1] for e in data.experiments)
    else:
        t0 = data.t_span[0] if data.t_span is not None else None
        t_data_end = data.t_span[1] if data.t_span is not None else None
    t_train = data.train_end if data.train_end is not None else t_data_end
    return t0, t_data_end, t_train


def check_observe(data: DataConfig, grid: list | None, states: tuple[str, ...]) -> Items:
    """``data.observe`` names states, and its times are save times (``grid``)."""
    out = []
    for state, times in (data.observe or {}).items():
        if state not in states:
            out.append(
                (
                    f"data.observe.{state}",
                    f"unknown state{_suggest(state, states)}; states are {', '.join(states)}",
                )
            )
        elif isinstance(times, list) and grid is not None:
            tol = 1e-9 * max(1.0, abs(grid[-1]))
            for j, t in enumerate(times):
                if not any(abs(t - g) <= tol for g in grid):
                    out.append(
                        (
                            f"data.observe.{state}[{j}]",
                            f"time {t} is not a save time "
                            f"(t_span {list(data.t_span)}, "
                            f"{len(grid)} samples)",
                        )
                    )
    return out


def check_file_states(data: DataConfig, spec: SystemSpec) -> Items:
    if data.file is None or len(data.file.states) == len(spec.state_names):
        return []
    states = spec.state_names
    return [
        (
            "data.file.states",
            f"lists {len(data.file.states)} columns for the "
            f"{len(states)} states of {spec.name} ({', '.join(states)})",
        )
    ]


def check_windows(data: DataConfig) -> Items:
    """The training end lies in the data; the held-out window after it, inside the data."""
    t0, t_data_end, t_train = span(data)
    out = []
    if data.train_end is not None and t0 is not None:
        if not t0 < data.train_end <= t_data_end:
            out.append(
                (
                    "data.train_end",
                    f"must lie in the data span ({t0}, {t_data_end}], got {data.train_end}",
                )
            )
    if data.held_out is not None:
        if t_train is not None and data.held_out[0] < t_train:
            out.append(
                (
                    "data.held_out",
                    f"starts at {data.held_out[0]}, before the training end "
                    f"{t_train}; held-out data must come after training",
                )
            )
        if t_data_end is not None and data.held_out[1] > t_data_end:
            out.append(
                (
                    "data.held_out",
                    f"ends at {data.held_out[1]}, after the end of the data {t_data_end}",
                )
            )
    return out
