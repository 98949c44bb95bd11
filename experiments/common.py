"""Shared helpers of the experiment scripts: output folders, JSON, figures, one config study and
the paper's numbers. Only the public ``ude`` API is used."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import ude

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

PAPER = {
    "scenario1": {
        "loss_first": 7529.26,
        "loss_after_adam": 1.605,
        "final_loss": 0.0696,
        "noise_sse": 0.085,
        "U1_xy": -0.877,
        "U2_xy": 0.923,
        "prey_peak": 7.3,
        "true_prey_peak": 8.8,
        "period": 5.34,
        "true_period": 5.46,
    },
    "noise_sweep": {
        "levels": [0.001, 0.005, 0.01, 0.025, 0.05],
        "successes": [75, 72, 58, 29, 18],
        "runs": 100,
    },
    "scenario2": {"final_loss": 0.0548, "U1_xy": -0.904, "U2_xy": 0.809, "gamma": 1.823},
    "hudson_bay": {
        "final_loss": 0.0502,
        "alpha": 0.557,
        "beta": 0.826,
        "gamma": 1.696,
        "delta": 2.041,
        "sparse": "x' = 0.373x - 1.244xy, y' = -1.166y + 2.435xy",
    },
}


def enable_x64() -> None:
    """The experiments run in float64 (tight tolerances; the truth is float64 anyway)."""
    jax.config.update("jax_enable_x64", True)


def out_dir(name: str, out=None) -> Path:
    """``experiments/out/<name>/`` unless ``out`` is given; created."""
    path = Path(out) if out is not None else ROOT / "experiments" / "out" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def clean(x):
    """JSON-safe copy (numpy to Python, NaN/inf to None)."""
    return ude.pipeline.json_safe(x)


def params(name: str, defaults: dict, overrides: dict) -> dict:
    """``defaults`` updated by a study's ``main(**overrides)``; unknown names are refused."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(
            f"{name}.main: unknown overrides {sorted(unknown)}; known: {sorted(defaults)}"
        )
    return {**defaults, **overrides}


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(clean(obj), indent=2) + "\n")


def figure(rows: int = 1, cols: int = 1, size=(4.5, 3.2), projection=None):
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    if projection is None:
        axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
        return fig, axes
    return fig, None


def save(fig: Figure, folder: Path, stem: str, dpi: int = 120) -> list[str]:
    paths = []
    for ext in ("png", "pdf"):
        p = folder / f"{stem}.{ext}"
        fig.savefig(p, dpi=dpi)
        paths.append(str(p))
    return paths


def load_run_results(run: Path) -> tuple[dict, dict, dict]:
    """``(results arrays, metrics, history)`` of a finished ``ude`` run directory."""
    with np.load(run / "results.npz", allow_pickle=False) as z:
        r = {k: z[k] for k in z.files}
    metrics = json.loads((run / "metrics.json").read_text())
    hist = ude.pipeline.read_history(run / "history.csv")
    return r, metrics, hist


# ------------------------------------------------------------------------------------------------
# the paper's figure panels
# ------------------------------------------------------------------------------------------------
def paper_figure(r: dict, title: str, folder: Path, stem: str) -> list[str]:
    """Panels A (|truth − recovered| on the training window, log), B (network's U₂ along the
    trained trajectory vs the true term, 3-D) and C (data, truth and recovered model to t_end,
    end of training marked)."""
    names = [str(s) for s in r["state_names"]]
    t_tr = float(r["t_train_end"])
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axA = fig.add_subplot(1, 3, 1)
    axB = fig.add_subplot(1, 3, 2, projection="3d")
    axC = fig.add_subplot(1, 3, 3)
    ts = r["ext_ts"]
    rec = r.get("ext_discovered", r["ext_ude"])[0]
    tru = r["ext_truth"][0]
    inside = ts <= t_tr + 1e-9
    for j, s in enumerate(names):
        err = np.abs(tru[inside, j] - rec[inside, j])
        axA.semilogy(ts[inside], np.maximum(err, 1e-16), label=s)
    axA.set_title("A: Timeseries of UDE error")
    axA.set_xlabel("t")
    axA.set_ylabel("|truth − recovered|")
    axA.legend()
    fy = r["fit_ys"][0]
    k = min(1, r["u_learned"].shape[-1] - 1)
    axB.plot(
        fy[:, 0], fy[:, 1], r["u_learned"][0, :, k], color="tab:blue", lw=2, label="network U₂"
    )
    if "u_true" in r:
        axB.plot(fy[:, 0], fy[:, 1], r["u_true"][0, :, k], "--", color="0.3", lw=2, label="true U₂")
    axB.set_xlabel(names[0])
    axB.set_ylabel(names[1])
    axB.set_title("B: Neural network fit of U₂")
    axB.legend(fontsize=8)
    m = r["data_mask"][0]
    for j, s in enumerate(names):
        c = ("tab:blue", "tab:orange")[j % 2]
        axC.plot(ts, tru[:, j], color=c, lw=1, alpha=0.5, label=f"{s} truth")
        finite = np.isfinite(rec[:, j])
        axC.plot(ts[finite], rec[finite, j], "--", color=c, lw=1.5, label=f"{s} recovered")
        sel = m[:, j] & (r["data_ts"] <= t_tr + 1e-9)
        axC.plot(r["data_ts"][sel], r["data_ys"][0, sel, j], "o", ms=3, color=c, mfc="none")
    axC.axvline(t_tr, color="k", lw=1)
    axC.annotate("training data ends", (t_tr, axC.get_ylim()[1] * 0.95), fontsize=8)
    axC.set_title("C: Extrapolated fit from short training data")
    axC.set_xlabel("t")
    axC.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return save(fig, folder, stem)


def truth_only_figure(r: dict, title: str, folder: Path, stem: str) -> list[str]:
    """Data (to the end of training), the recovered model and the UDE extrapolated (real data)."""
    names = [str(s) for s in r["state_names"]]
    t_tr = float(r["t_train_end"])
    fig, axes = figure(1, 1, size=(7.5, 3.8))
    ax = axes[0, 0]
    for j, s in enumerate(names):
        c = ("tab:blue", "tab:orange")[j % 2]
        ax.plot(
            r["data_ts"], r["data_ys"][0, :, j], "o", ms=3.5, color=c, mfc="none", label=f"{s} data"
        )
        for key, ls, lab in (("ext_ude", "-", "UDE"), ("ext_discovered", "--", "recovered")):
            if key in r:
                y = r[key][0, :, j]
                ok = np.isfinite(y)
                ax.plot(r["ext_ts"][ok], y[ok], ls, color=c, lw=1.4, label=f"{s} {lab}")
    ax.axvline(t_tr, color="k", lw=1)
    ax.set_xlabel("t (years since 1900)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    return save(fig, folder, stem)


def supplementary_figures(
    r: dict, hist: dict, stages: list[str], title: str, folder: Path, stem: str
) -> list[str]:
    """Loss curve (stages coloured apart), trajectory reconstruction, missing term and its error."""
    from ude import plots

    paths = []
    fig = plots.plot_loss(
        hist["step"],
        hist["loss"],
        hist["stage"],
        stages,
        accepted=hist.get("accepted"),
        title=title,
    )
    paths += save(fig, folder, f"{stem}_loss")
    fig = plots.plot_fit(
        r["data_ts"],
        r["data_ys"],
        r["data_mask"],
        r["fit_ts"],
        r["fit_ys"],
        [str(s) for s in r["state_names"]],
        y_true=r.get("data_y_true"),
        title=title,
    )
    paths += save(fig, folder, f"{stem}_trajectory")
    if "u_learned" in r:
        names = [str(s) for s in r["state_names"]]
        fig, axes = figure(2, len(names), size=(4.5, 2.8))
        for j, s in enumerate(names):
            ax = axes[0, j]
            ax.plot(r["fit_ts"], r["u_learned"][0, :, j], color="tab:blue", label="network U")
            if "u_true" in r:
                ax.plot(r["fit_ts"], r["u_true"][0, :, j], "--", color="0.3", label="true")
            ax.set_title(f"missing term in {s}'")
            ax.legend(fontsize=8)
            if "u_true" in r:
                err = np.abs(r["u_learned"][0, :, j] - r["u_true"][0, :, j])
                axes[1, j].semilogy(r["fit_ts"], np.maximum(err, 1e-16), color="tab:red")
                axes[1, j].set_ylabel("|U − U_true|")
            axes[1, j].set_xlabel("t")
        fig.suptitle(f"{title}: missing-term reconstruction")
        paths += save(fig, folder, f"{stem}_missing")
    return paths


def run_config(
    config: str, out: Path, overrides=(), verbose: bool = False
) -> tuple[dict, dict, dict, object]:
    """Run ``configs/<config>.yaml`` through :func:`ude.run_experiment` into ``out/run`` (fresh)."""
    import shutil

    cfg = ude.load_config(CONFIGS / f"{config}.yaml", list(overrides))
    run = out / "run"
    if run.exists():
        shutil.rmtree(run)
    ude.run_experiment(cfg, run, verbose=verbose)
    r, metrics, hist = load_run_results(run)
    return r, metrics, hist, cfg


def config_study(
    name: str,
    defaults: dict,
    overrides: dict,
    summarise,
    title: str,
    main_figure=None,
    supplementary_title: str | None = None,
) -> dict:
    """One paper study that runs a shipped config: run it (``common.run_config``), summarise its
    metrics (``summarise(metrics, history) -> dict``), draw the main figure (default
    :func:`paper_figure`) and the supplementary ones, and write ``<name>.json`` with ours next to
    the paper's numbers. Returns that result."""
    enable_x64()
    p = params(name, defaults, overrides)
    out = out_dir(name, p["out"])
    r, metrics, hist, cfg = run_config(p["config"], out, p["overrides"], p["verbose"])
    ours = summarise(metrics, hist)
    stages = [s.kind for _, _, phase in ude.pipeline.build_phases(cfg) for s in phase]
    figures = (main_figure or paper_figure)(r, title, out, name)
    figures += supplementary_figures(r, hist, stages, supplementary_title or title, out, name)
    result = {
        "ours": ours,
        "paper": PAPER[name],
        "config": p["config"],
        "overrides": list(p["overrides"]),
        "figures": figures,
    }
    write_json(out / f"{name}.json", result)
    return result
