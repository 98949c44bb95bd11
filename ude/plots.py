"""Figures from results: data vs fit, loss curve, learned vs true missing term, extrapolation.

Plots only draw — the arrays come computed (``results.npz`` of a run, see
:func:`ude.pipeline.evaluate_run`); nothing here solves or differentiates. Figures are built on
``matplotlib.figure.Figure`` with the Agg renderer, never pyplot, so no global backend state
changes.

Arrays are ``(traj, times, state)`` unless noted; every trajectory is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._io import atomic_write_bytes

COLORS = {
    "data": "0.15",
    "truth": "0.45",
    "ude": "tab:blue",
    "discovered": "tab:red",
    "learned": "tab:blue",
    "true": "0.3",
}
STAGE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def _figure(rows: int, cols: int, size=(4.2, 2.8)) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    return fig, axes


def _lines(ax, ts, ys, j, label, **kw):
    for i in range(ys.shape[0]):
        ax.plot(ts, ys[i, :, j], label=label if i == 0 else None, **kw)


def _points(ax, ts, ys, mask, j, label="data"):
    for i in range(ys.shape[0]):
        m = mask[i, :, j]
        ax.plot(
            ts[m],
            ys[i, m, j],
            "o",
            ms=3.5,
            color=COLORS["data"],
            mfc="none",
            label=label if i == 0 else None,
        )


def plot_fit(
    data_ts,
    data_ys,
    data_mask,
    fit_ts,
    fit_ys,
    state_names: Sequence[str],
    *,
    y_true=None,
    title: str | None = None,
) -> Figure:
    """The measurements against the fitted UDE's trajectory (and the noise-free truth if known)."""
    n = len(state_names)
    fig, axes = _figure(1, n)
    for j, s in enumerate(state_names):
        ax = axes[0, j]
        if y_true is not None:
            _lines(ax, data_ts, y_true, j, "truth", color=COLORS["truth"], ls="--", lw=1)
        _lines(ax, fit_ts, fit_ys, j, "UDE fit", color=COLORS["ude"], lw=1.6)
        _points(ax, data_ts, data_ys, data_mask, j)
        ax.set_xlabel("t")
        ax.set_ylabel(s)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{title}: data vs fitted UDE" if title else "Data vs fitted UDE")
    return fig


def plot_loss(
    step, loss, stage, stage_names: Sequence[str], *, accepted=None, title: str | None = None
) -> Figure:
    """Training loss per step (log scale), one colour per optimiser stage; rejected steps as ×."""
    step, loss, stage = np.asarray(step), np.asarray(loss, float), np.asarray(stage)
    fig, axes = _figure(1, 1, size=(6.0, 3.6))
    ax = axes[0, 0]
    for k in np.unique(stage):
        sel = stage == k
        name = stage_names[k] if k < len(stage_names) else f"stage {k}"
        c = STAGE_COLORS[int(k) % len(STAGE_COLORS)]
        ok = sel & np.isfinite(loss) & (loss > 0)
        ax.plot(step[ok], loss[ok], color=c, lw=1.4, label=f"{k + 1}: {name}")
        if accepted is not None:
            bad = sel & ~np.asarray(accepted, bool) & np.isfinite(loss) & (loss > 0)
            if bad.any():
                ax.plot(step[bad], loss[bad], "x", color=c, ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: training loss" if title else "Training loss")
    return fig


def plot_missing(
    ts,
    u_learned,
    state_names: Sequence[str],
    *,
    u_true=None,
    u_discovered=None,
    title: str | None = None,
) -> Figure:
    """The network's output along the fitted trajectory against the true missing term (and the
    discovered terms); below, the error on a log scale."""
    states = [
        j
        for j in range(len(state_names))
        if np.any(u_learned[..., j] != 0) or (u_true is not None and np.any(u_true[..., j] != 0))
    ]
    states = states or list(range(len(state_names)))
    rows = 2 if u_true is not None else 1
    fig, axes = _figure(rows, len(states))
    for c, j in enumerate(states):
        ax = axes[0, c]
        if u_true is not None:
            _lines(ax, ts, u_true, j, "true missing term", color=COLORS["true"], ls="--", lw=1.2)
        _lines(ax, ts, u_learned, j, "network", color=COLORS["learned"], lw=1.6)
        if u_discovered is not None:
            _lines(
                ax, ts, u_discovered, j, "discovered", color=COLORS["discovered"], ls=":", lw=1.6
            )
        ax.set_ylabel(f"U in {state_names[j]}'")
        ax.set_xlabel("t")
        if u_true is not None:
            err = np.abs(u_learned[..., j] - u_true[..., j])
            ax2 = axes[1, c]
            for i in range(err.shape[0]):
                e = np.where(err[i] > 0, err[i], np.nan)
                ax2.plot(
                    ts,
                    e,
                    color=COLORS["learned"],
                    lw=1.2,
                    label="|network − true|" if i == 0 else None,
                )
            ax2.set_yscale("log")
            ax2.set_xlabel("t")
            ax2.set_ylabel("error")
            ax2.legend(fontsize=8)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"{title}: learned vs true missing term" if title else "Learned vs true missing term"
    )
    return fig


def plot_extrapolation(
    ts,
    state_names: Sequence[str],
    t_train_end: float,
    *,
    truth=None,
    models: Mapping[str, np.ndarray] | None = None,
    data_ts=None,
    data_ys=None,
    data_mask=None,
    title: str | None = None,
) -> Figure:
    """Truth and models beyond the training window, the data, and a marker at the end of
    training."""
    n = len(state_names)
    fig, axes = _figure(n, 1, size=(8.0, 2.6))
    labels = {"ude": "UDE", "discovered": "recovered model"}
    for j, s in enumerate(state_names):
        ax = axes[j, 0]
        if truth is not None:
            _lines(ax, ts, truth, j, "truth", color=COLORS["truth"], lw=1.2)
        for name, ys in (models or {}).items():
            finite = np.where(np.isfinite(ys), ys, np.nan)
            _lines(
                ax,
                ts,
                finite,
                j,
                labels.get(name, name),
                color=COLORS.get(name, None),
                ls="--" if name == "ude" else "-",
                lw=1.0 if name == "ude" else 1.5,
            )
        if data_ys is not None:
            _points(ax, data_ts, data_ys, data_mask, j)
        # a model that blows up must not squash the truth and the data into a flat line
        ref = [a[..., j][np.isfinite(a[..., j])] for a in (truth, data_ys) if a is not None]
        ref = np.concatenate([a.ravel() for a in ref]) if ref else np.empty(0)
        if ref.size:
            lo, hi = float(ref.min()), float(ref.max())
            pad = 0.25 * max(hi - lo, 1e-6)
            ax.set_ylim(lo - pad, hi + pad)
        ax.axvline(t_train_end, color="k", lw=0.8, ls=":")
        ax.annotate(
            "end of training",
            (t_train_end, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
        )
        ax.set_ylabel(s)
    axes[-1, 0].set_xlabel("t")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{title}: extrapolation" if title else "Extrapolation")
    return fig


def plot_error(
    ts, truth, model, state_names: Sequence[str], t_train_end: float, *, title: str | None = None
) -> Figure:
    """|truth − model| on the training window, log scale (the paper's panel A)."""
    inside = np.asarray(ts) <= t_train_end + 1e-12
    fig, axes = _figure(1, 1, size=(6.0, 3.4))
    ax = axes[0, 0]
    err = np.abs(np.asarray(model) - np.asarray(truth))[:, inside]
    for j, s in enumerate(state_names):
        for i in range(err.shape[0]):
            e = np.where(err[i, :, j] > 0, err[i, :, j], np.nan)
            ax.plot(np.asarray(ts)[inside], e, label=s if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("|truth − model|")
    ax.legend(fontsize=8)
    ax.set_title(
        f"{title}: error of the recovered model" if title else "Error of the recovered model"
    )
    return fig


def save_figure(
    fig: Figure, stem, formats: Sequence[str] = ("png", "pdf"), dpi: int = 120
) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (atomically). Returns the paths."""
    stem = Path(stem)
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def draw_all(
    results: Mapping[str, np.ndarray],
    history: Mapping[str, np.ndarray] | None,
    stage_names: Sequence[str],
    directory,
    *,
    formats=("png", "pdf"),
    dpi: int = 120,
    title: str | None = None,
) -> list[Path]:
    """Every figure a run's results allow, into ``directory``: ``trajectories``, ``loss``,
    ``missing_term``, ``extrapolation`` and ``error``."""
    r = results
    directory = Path(directory)
    names = [str(s) for s in r["state_names"]]
    t_tr = float(r["t_train_end"])
    figs = {
        "trajectories": plot_fit(
            r["data_ts"],
            r["data_ys"],
            r["data_mask"],
            r["fit_ts"],
            r["fit_ys"],
            names,
            y_true=r.get("data_y_true"),
            title=title,
        )
    }
    if history is not None and len(history.get("step", ())):
        figs["loss"] = plot_loss(
            history["step"],
            history["loss"],
            history["stage"],
            stage_names,
            accepted=history.get("accepted"),
            title=title,
        )
    if "u_learned" in r:
        figs["missing_term"] = plot_missing(
            r["fit_ts"],
            r["u_learned"],
            names,
            u_true=r.get("u_true"),
            u_discovered=r.get("u_discovered"),
            title=title,
        )
    models = {k: r[f"ext_{k}"] for k in ("ude", "discovered") if f"ext_{k}" in r}
    figs["extrapolation"] = plot_extrapolation(
        r["ext_ts"],
        names,
        t_tr,
        truth=r.get("ext_truth"),
        models=models,
        data_ts=r["data_ts"],
        data_ys=r["data_ys"],
        data_mask=r["data_mask"],
        title=title,
    )
    if "ext_truth" in r:
        final = models.get("discovered", models.get("ude"))
        figs["error"] = plot_error(r["ext_ts"], r["ext_truth"], final, names, t_tr, title=title)
    paths = []
    for name, fig in figs.items():
        paths.extend(save_figure(fig, directory / name, formats, dpi))
    return paths
