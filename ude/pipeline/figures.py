"""The pipeline's figures stage: draw a run's figures from its files (no solves)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import read_history
from ..config import ExperimentConfig
from ..errors import RunDirError
from .progress import Log, emit
from .rundir import FILES

__all__ = ["draw_figures"]


def draw_figures(cfg: ExperimentConfig, out: Path, *, log: Log = None) -> list[Path]:
    """Draw the figures into ``out/figures`` from ``results.npz``, ``history.csv`` and
    ``fit.json``; returns the files written."""
    from .. import plots  # matplotlib only when drawing

    res_path = out / FILES["results"]
    if not res_path.is_file():
        raise RunDirError(
            f"{out}: no {FILES['results']} yet; finish the run first (`ude resume {out}`)"
        )
    with np.load(res_path, allow_pickle=False) as z:
        results = {k: z[k] for k in z.files}
    history = read_history(out / FILES["history"]) if (out / FILES["history"]).is_file() else None
    fit_path = out / FILES["fit"]
    stages = json.loads(fit_path.read_text())["stages"] if fit_path.is_file() else []
    paths = plots.draw_all(
        results,
        history,
        stages,
        out / FILES["figures"],
        formats=cfg.output.formats,
        dpi=cfg.output.dpi,
        title=cfg.name,
    )
    emit(log, f"figures: {len(paths)} files in {out / FILES['figures']}")
    return paths
