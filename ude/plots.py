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
    start: str | None = None,
    title: str | None = None,
) -> Figure:
    """The measurements against the fitted UDE's trajectory (and the noise-free truth if known);
    ``start`` (where the fit starts, e.g. ``"the learned u0"``) goes into its label."""
    n = len(state_names)
    fig, axes = _figure(1, n)
    for j, s in enumerate(state_names):
        ax = axes[0, j]
        if y_true is not None:
            _lines(ax, data_ts, y_true, j, "truth", color=COLORS["truth"], ls="--", lw=1)
        fit = f"UDE fit (from {start})" if start else "UDE fit"
        _lines(ax, fit_ts, fit_ys, j, fit, color=COLORS["ude"], lw=1.6)
        _points(ax, data_ts, data_ys, data_mask, j)
        ax.set_xlabel("t")
        ax.set_ylabel(s)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{title}: data vs fitted UDE" if title else "Data vs fitted UDE")
    return fig


def _phase_groups(stage, phases) -> list[tuple[str | None, int, int]]:
    """``[(panel title, first stage, end stage), ...]``: one per phase with steps in the history;
    one untitled group of every stage when ``phases`` is None or does not cover the stages."""
    if not phases or (stage.size and int(stage.max()) >= sum(n for _, _, n in phases)):
        return [(None, 0, np.iinfo(int).max)]
    groups, lo = [], 0
    for name, objective, n in phases:
        if np.any((stage >= lo) & (stage < lo + n)):
            groups.append((f"{name}: {objective}", lo, lo + n))
        lo += n
    return groups


def plot_loss(
    step,
    loss,
    stage,
    stage_names: Sequence[str],
    *,
    accepted=None,
    phases: Sequence[tuple[str, str, int]] | None = None,
    title: str | None = None,
) -> Figure:
    """Training loss per step (log scale), one colour per optimiser stage; rejected steps as ×.

    ``phases``: ``[(name, objective, number of stages), ...]`` in order (the stage indices of the
    history count on through them): each phase gets its own panel, titled with its name and
    objective, since the phases' losses are different functions and do not join into one curve.
    """
    step, loss, stage = np.asarray(step), np.asarray(loss, float), np.asarray(stage)
    groups = _phase_groups(stage, phases)
    fig, axes = _figure(1, len(groups), size=(6.0, 3.6) if len(groups) == 1 else (4.2, 3.4))
    for ax, (label, lo, hi) in zip(axes[0], groups, strict=True):
        for k in np.unique(stage[(stage >= lo) & (stage < hi)]):
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
        ax.legend(fontsize=8)
        if label is not None:
            ax.set_title(label, fontsize=9)
    axes[0, 0].set_ylabel("loss")
    head = f"{title}: training loss" if title else "Training loss"
    if len(groups) > 1:
        head += " (one panel per phase: each minimises its own objective)"
    fig.suptitle(head, fontsize=10)
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


def _clip(ts, ys, lo: float, hi: float):
    """``ys (traj, times)`` for drawing within ``[lo, hi]``: the first value of each excursion
    outside it (or non-finite) clamped to the edge, so the line runs into the frame, and the rest
    blanked. Also ``(the first time a trajectory leaves, whether one ends outside, the first time
    one is non-finite)``, the times None where none does."""
    ys = np.array(ys, float)
    out = ~np.isfinite(ys) | (ys < lo) | (ys > hi)
    first = out & ~np.concatenate([np.zeros_like(out[:, :1]), out[:, :-1]], axis=1)
    drawn = np.where(first, np.clip(np.nan_to_num(ys, nan=hi), lo, hi), ys)
    drawn[out & ~first] = np.nan
    ts = np.asarray(ts, float)

    def when(m):
        return float(ts[m.any(axis=0)][0]) if m.any() else None

    return drawn, when(out), bool(out[:, -1].any()), when(~np.isfinite(ys))


def _note(label: str, leaves, ends_out: bool, blows_up) -> str:
    if blows_up is not None:
        return f"{label} leaves the plot at t ≈ {leaves:.3g} (solve fails at t ≈ {blows_up:.3g})"
    why = "diverges" if ends_out else "beyond the data's range"
    return f"{label} leaves the plot at t ≈ {leaves:.3g} ({why})"


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
    start: str | None = None,
    fit_ts=None,
    fit_ys=None,
    fit_start: str | None = None,
    title: str | None = None,
) -> Figure:
    """Truth and models beyond the training window (shaded), and the data.

    ``start`` says where the truth and ``models`` start (e.g. ``"the true u0"``): it goes into
    their labels. ``fit_ys`` (with ``fit_ts``, ``fit_start``): the UDE's fit over the training
    window, from its own initial state (the fitted one, as in the trajectories figure), drawn
    beside it when it starts elsewhere. The y-range is the data's and the truth's with a margin; a
    curve that leaves it is cut at the frame and a note says when (and whether it diverges).
    """
    n = len(state_names)
    fig, axes = _figure(n, 1, size=(8.0, 2.6))
    labels = {"ude": "UDE", "discovered": "recovered model"}
    frm = f" (from {start})" if start else ""
    ts = np.asarray(ts, float)
    for j, s in enumerate(state_names):
        ax = axes[j, 0]
        window = f"training window (t ≤ {t_train_end:.3g})"
        ax.axvspan(ts[0], t_train_end, color="0.85", alpha=0.5, lw=0, label=window)
        ax.axvline(t_train_end, color="k", lw=0.8, ls=":")
        # the y-range: the truth's and the data's (a model that blows up must not squash them)
        ref = [a[..., j][np.isfinite(a[..., j])] for a in (truth, data_ys) if a is not None]
        ref = np.concatenate([a.ravel() for a in ref]) if ref else np.empty(0)
        if not ref.size:  # nothing to go by but the models
            ref = np.concatenate([np.ravel(m[..., j]) for m in (models or {}).values()] + [[0.0]])
            ref = ref[np.isfinite(ref)]
        lo, hi = float(ref.min()), float(ref.max())
        pad = 0.25 * max(hi - lo, 1e-6)
        lo, hi = lo - pad, hi + pad
        if truth is not None:
            _lines(ax, ts, truth, j, "truth", color=COLORS["truth"], lw=1.2)
        curves = [
            (f"{labels.get(k, k)}{frm}", ts, ys, {"color": COLORS.get(k), "lw": 1.5})
            if k != "ude"
            else (f"UDE forecast{frm}", ts, ys, {"color": COLORS["ude"], "ls": "--", "lw": 1.0})
            for k, ys in (models or {}).items()
        ]
        if fit_ys is not None:
            kw = {"color": COLORS["ude"], "lw": 2.2, "alpha": 0.35}
            curves.append((f"UDE fit (from {fit_start or 'the fitted u0'})", fit_ts, fit_ys, kw))
        notes = []
        for label, t, ys, kw in curves:
            drawn, leaves, ends_out, blows_up = _clip(t, ys[..., j], lo, hi)
            for i in range(drawn.shape[0]):
                ax.plot(t, drawn[i], label=label if i == 0 else None, **kw)
            if leaves is not None:
                notes.append((_note(label.split(" (from")[0], leaves, ends_out, blows_up), kw))
        if data_ys is not None:
            _points(ax, data_ts, data_ys, data_mask, j)
        ax.set_ylim(lo, hi)
        box = {"fc": "w", "ec": "none", "alpha": 0.8}
        for k, (text, kw) in enumerate(notes):  # bottom right, in the curve's colour
            at = (0.99, 0.04 + 0.1 * k)
            c = kw.get("color") or "k"
            ax.text(*at, text, transform=ax.transAxes, ha="right", fontsize=7, color=c, bbox=box)
        ax.set_ylabel(s)
    axes[-1, 0].set_xlabel("t")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=7)
    first = next(iter((models or {}).values()), truth)
    head = f"{title}: extrapolation" if title else "Extrapolation"
    if start:
        head += f" from {start}{_u0(first)}"
    if fit_ys is not None:
        fit = f"{fit_start or 'the fitted u0'}{_u0(fit_ys)}"
        head += (
            f"\n(the UDE fit over the training window: from {fit}, as in the trajectories figure)"
        )
    fig.suptitle(head, fontsize=10)
    return fig


def plot_error(
    ts,
    truth,
    model,
    state_names: Sequence[str],
    t_train_end: float,
    *,
    label: str = "recovered model",
    start: str | None = None,
    title: str | None = None,
) -> Figure:
    """|truth − model| on the training window, log scale (the paper's panel A); the title says
    the window and (``start``) where both start."""
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
    ax.set_ylabel(f"|truth − {label}|")
    ax.legend(fontsize=8)
    head = f"error of the {label}\non the training window (t ≤ {t_train_end:.3g})"
    head += f", both from {start}" if start else ""
    ax.set_title(f"{title}: {head}" if title else head[0].upper() + head[1:], fontsize=10)
    return fig


def describe_starts(results: Mapping[str, np.ndarray]) -> tuple[str, str]:
    """``(where the fit starts, where the extrapolation starts)``, read off the arrays: the first
    (noisy) samples, learned initial states, or the true ones, e.g. ``("the learned u0", "the
    true u0")``; when the extrapolation starts where the fit does, both are the same text."""
    r = results
    fit0, d0, m0 = (np.asarray(r[k])[:, 0] for k in ("fit_ys", "data_ys", "data_mask"))
    same = np.isclose(fit0, d0, rtol=1e-9, atol=1e-12) & m0.astype(bool)
    if same.all():
        fit = "the first sample"
    elif not same.any():
        fit = "the learned u0"
    else:
        fit = "the first sample (learned where unobserved)" if (same == m0).all() else "a fitted u0"
    ext0 = [np.asarray(r[f"ext_{k}"])[:, 0] for k in ("ude", "discovered") if f"ext_{k}" in r]
    ext0 = ext0[0] if ext0 else None
    close = lambda a, b: a is not None and np.allclose(a, b, rtol=1e-6, atol=1e-9)  # noqa: E731
    if "ext_truth" in r and close(ext0, np.asarray(r["ext_truth"])[:, 0]):
        ext = "the true u0"
    else:
        ext = fit if close(ext0, fit0) else "u0"
    return fit, ext


def _u0(ys) -> str:
    """`` = (y0 values)`` of a single trajectory ``ys (1, times, state)``, else empty."""
    if ys is None or np.shape(ys)[0] != 1:
        return ""
    return " = (" + ", ".join(f"{v:.3g}" for v in np.asarray(ys)[0, 0]) + ")"


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


def save_figures(figs: Mapping[str, Figure], directory, formats, dpi: int) -> list[Path]:
    """Every figure of ``{name: figure}`` as ``directory/name.<fmt>`` (:func:`save_figure`)."""
    paths = []
    for name, fig in figs.items():
        paths.extend(save_figure(fig, Path(directory) / name, formats, dpi))
    return paths


def loss_figure(history, stage_names: Sequence[str], *, phases=None, title=None) -> Figure | None:
    """:func:`plot_loss` of a run's ``history.csv`` columns, or None without a history."""
    if history is None or not len(history.get("step", ())):
        return None
    return plot_loss(
        history["step"],
        history["loss"],
        history["stage"],
        stage_names,
        accepted=history.get("accepted"),
        phases=phases,
        title=title,
    )


def draw_all(
    results: Mapping[str, np.ndarray],
    history: Mapping[str, np.ndarray] | None,
    stage_names: Sequence[str],
    directory,
    *,
    phases: Sequence[tuple[str, str, int]] | None = None,
    formats=("png", "pdf"),
    dpi: int = 120,
    title: str | None = None,
) -> list[Path]:
    """Every figure a run's results allow, into ``directory``: ``trajectories``, ``loss`` (one
    panel per phase of ``phases``, see :func:`plot_loss`), ``missing_term``, ``extrapolation``
    and ``error``. Where the fit and the extrapolation start is read off the arrays
    (:func:`describe_starts`) and said in the figures."""
    r = results
    directory = Path(directory)
    names = [str(s) for s in r["state_names"]]
    t_tr = float(r["t_train_end"])
    fit_start, ext_start = describe_starts(r)
    figs = {
        "trajectories": plot_fit(
            r["data_ts"],
            r["data_ys"],
            r["data_mask"],
            r["fit_ts"],
            r["fit_ys"],
            names,
            y_true=r.get("data_y_true"),
            start=fit_start,
            title=title,
        )
    }
    if (loss := loss_figure(history, stage_names, phases=phases, title=title)) is not None:
        figs["loss"] = loss
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
    apart = ext_start != fit_start  # the fit starts elsewhere: draw it too
    figs["extrapolation"] = plot_extrapolation(
        r["ext_ts"],
        names,
        t_tr,
        truth=r.get("ext_truth"),
        models=models,
        data_ts=r["data_ts"],
        data_ys=r["data_ys"],
        data_mask=r["data_mask"],
        start=ext_start,
        fit_ts=r["fit_ts"] if apart else None,
        fit_ys=r["fit_ys"] if apart else None,
        fit_start=fit_start,
        title=title,
    )
    if "ext_truth" in r:
        final = "discovered" if "discovered" in models else "ude"
        figs["error"] = plot_error(
            r["ext_ts"],
            r["ext_truth"],
            models[final],
            names,
            t_tr,
            label="recovered model" if final == "discovered" else "UDE",
            start=ext_start,
            title=title,
        )
    return save_figures(figs, directory, formats, dpi)
