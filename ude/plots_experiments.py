"""The figure of a dataset of experiments: small multiples, one row per experiment and one column
per state, with the data, the truth (simulated data), the fitted UDE, the known physics alone and
the discovered model, each solved over the experiment's own span with its own inputs; held-out
experiments are marked. Drawn from ``results.npz`` (see
:func:`ude.pipeline.evaluate_experiments.evaluate_experiments`); nothing here solves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .plots import COLORS, _figure, loss_figure, save_figures

__all__ = ["plot_experiments", "draw_experiments"]

STYLES = {
    "truth": dict(color=COLORS["truth"], lw=2.2, alpha=0.5, label="truth"),
    "physics": dict(color="tab:green", lw=1.2, ls="--", label="known physics alone"),
    "ude": dict(color=COLORS["ude"], lw=1.4, label="UDE"),
    "discovered": dict(color=COLORS["discovered"], lw=1.2, ls=":", label="discovered model"),
}
MAX_ROWS = 12
"""Experiments drawn (the first ones; every experiment is scored in metrics.json)."""


def plot_experiments(r: Mapping[str, np.ndarray], *, title: str | None = None):
    """Small multiples of every experiment (at most :data:`MAX_ROWS`) × state."""
    names = [str(s) for s in r["state_names"]]
    exps = [str(e) for e in r["experiment_names"]][:MAX_ROWS]
    fig, axes = _figure(len(exps), len(names), size=(3.6, 2.2))
    for i, e in enumerate(exps):
        n = int(r["data_lengths"][i])
        for j, s in enumerate(names):
            ax = axes[i, j]
            for key, style in STYLES.items():
                arr = r.get(f"fine_{key}")
                if arr is not None:
                    ax.plot(r["fine_ts"][i], arr[i, :, j], **style)
            m = r["data_mask"][i, :n, j]
            ax.plot(
                r["data_ts"][i, :n][m],
                r["data_ys"][i, :n, j][m],
                "o",
                ms=3,
                mfc="none",
                color=COLORS["data"],
                label="data",
            )
            held = bool(r["held_out"][i])
            ax.set_title(f"{e}{' (held out)' if held else ''}: {s}", fontsize=9)
            if held:
                ax.set_facecolor("0.96")
            if i == len(exps) - 1:
                ax.set_xlabel("t")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def draw_experiments(
    results: Mapping[str, np.ndarray],
    history: Mapping[str, np.ndarray] | None,
    stage_names: Sequence[str],
    directory,
    *,
    phases=None,
    formats=("png", "pdf"),
    dpi: int = 120,
    title: str | None = None,
) -> list[Path]:
    """``experiments`` (the small multiples) and ``loss`` into ``directory``."""
    figs = {"experiments": plot_experiments(results, title=title)}
    if (loss := loss_figure(history, stage_names, phases=phases, title=title)) is not None:
        figs["loss"] = loss
    return save_figures(figs, directory, formats, dpi)
