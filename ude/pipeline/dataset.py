"""The pipeline's data stage: build the dataset once, save it in the run directory, reuse it."""

from __future__ import annotations

from pathlib import Path

from .. import data as data_mod
from ..config import ExperimentConfig
from ..errors import DataError
from .builders import build_data
from .progress import Log, emit
from .rundir import FILES

__all__ = ["input_data", "prepare_data"]


def input_data(cfg: ExperimentConfig) -> data_mod.Dataset:
    """:func:`~ude.pipeline.builders.build_data`, its failures as :class:`~ude.errors.DataError`
    (a broken table, a failed truth solve)."""
    try:
        return build_data(cfg)
    except (ValueError, OSError) as e:
        raise DataError(f"data: {e}") from None


def prepare_data(
    cfg: ExperimentConfig, out: Path, log: Log = None, data: data_mod.Dataset | None = None
) -> data_mod.Dataset:
    """Save ``data`` (default: build it) in ``out``, or load the dataset when the run already has
    it (its sidecar, written last, marks a complete save)."""
    path = out / FILES["data"]
    if path.with_name(path.name + ".json").is_file():
        try:
            return data_mod.load(path)
        except ValueError as e:
            raise DataError(
                f"{e}; delete {path.name}.npz and {path.name}.json to rebuild the data "
                f"with `ude resume {out}`"
            ) from None
    data = input_data(cfg) if data is None else data
    data_mod.save(data, path)
    src = cfg.data.file.path if cfg.data.file else f"simulated {cfg.truth.system or 'equations'}"
    if data.per_experiment_times:
        shape = (
            f"{data.n_traj} experiment(s) of {min(data.lengths)}–{max(data.lengths)} times "
            f"({sum(data.lengths)} in all)"
            + (f", inputs {', '.join(data.input_names)}" if data.input_names else "")
        )
    else:
        shape = f"{data.n_traj} trajectory(ies) × {data.n_times} times"
    emit(
        log,
        f"data: {src}, {shape} × {data.n_states} states, {data.n_observed()} observed values",
    )
    return data
