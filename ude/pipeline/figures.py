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

__all__ = ["draw_figures", "phases_of"]


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
    info = json.loads(fit_path.read_text()) if fit_path.is_file() else {}
    draw = plots.draw_all
    if "experiment_names" in results:  # a dataset of experiments: small multiples
        from ..plots_experiments import draw_experiments as draw
    paths = draw(
        results,
        history,
        info.get("stages", []),
        out / FILES["figures"],
        phases=phases_of(cfg, info),
        formats=cfg.output.formats,
        dpi=cfg.output.dpi,
        title=cfg.name,
    )
    emit(log, f"figures: {len(paths)} files in {out / FILES['figures']}")
    return paths


def phases_of(cfg: ExperimentConfig, info: dict) -> list[tuple[str, str, int]] | None:
    """``[(phase, its objective, its number of optimiser stages), ...]`` of the fit that wrote
    ``info`` (fit.json: the phases run and all their stages), for the loss figure's panels;
    None when they do not add up to its stages (a fit.json from an older run)."""
    t, st = cfg.train, cfg.train.strategy
    train = st.kind.replace("_", " ")
    if st.kind == "multiple_shooting":
        train += f", {st.segments} segments + continuity"
    elif st.kind == "window_minibatch":
        train += f", windows of {st.window}, batches of {st.batch}"
    elif st.learn_y0 is True:
        train += ", learned u0"
    objective = {
        "pretrain": ("collocation (no solve)", t.pretrain),
        "train": (f"{train} ({st.loss})", t.stages),
        "polish": (f"single shooting, learned u0 ({st.loss})", t.polish),
    }
    names = info.get("phases") or []
    if not names or any(n not in objective for n in names):
        return None
    phases = [(n, objective[n][0], len(objective[n][1])) for n in names]
    return phases if sum(k for _, _, k in phases) == len(info.get("stages", [])) else None
