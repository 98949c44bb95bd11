"""Times derived from a config: the simulated save times and the ends of the data and of the
training window (shared by the checks and the pipeline, so both agree on one grid)."""

from __future__ import annotations

from .schema import DataConfig, ExperimentConfig

__all__ = ["time_grid", "data_end", "train_end"]


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
