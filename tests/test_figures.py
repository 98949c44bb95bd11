"""The figures say what they show: the loss figure's phases apart, the extrapolation's training
window, where each curve starts, and a diverging forecast cut at the frame with a note. Synthetic
arrays only (no fit, no solve)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ude import plots
from ude.config import load_config
from ude.pipeline.figures import phases_of

ROOT = Path(__file__).resolve().parents[1]
PHASES = [
    ("pretrain", "collocation (no solve)", 1),
    ("train", "multiple shooting, 5 segments + continuity (sse)", 2),
    ("polish", "single shooting, learned u0 (sse)", 1),
]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def _results(*, learned: bool = True, diverge: bool = True) -> dict[str, np.ndarray]:
    """A run's results.npz: an oscillation, its noisy samples on [0, 6], the UDE fit from a learned
    (or the first sampled) u0, and an extrapolation to t = 20 from the true u0 whose UDE blows
    up exponentially after t = 8 (or follows the truth)."""
    rng = np.random.default_rng(0)
    data_ts = np.linspace(0.0, 10.0, 51)
    truth = lambda t: np.stack([2 + np.sin(t), 2 + np.cos(t)], -1)[None]  # noqa: E731
    y_true = truth(data_ts)
    ys = y_true * (1 + 0.01 * rng.standard_normal(y_true.shape))
    fit_ts = np.linspace(0.0, 6.0, 61)
    fit_ys = truth(fit_ts) + (0.05 if learned else 0.0)
    fit_ys[:, 0] = ys[:, 0] if not learned else fit_ys[:, 0]
    ext_ts = np.linspace(0.0, 20.0, 201)
    ext_truth = truth(ext_ts)
    ude = ext_truth.copy()
    if diverge:
        ude[0, :, 0] += np.where(ext_ts > 8, np.expm1(3 * (ext_ts - 8)), 0.0)
    return {
        "state_names": np.asarray(["x", "y"]),
        "data_ts": data_ts,
        "data_ys": ys,
        "data_mask": np.ones_like(ys, bool),
        "data_y_true": y_true,
        "t_train_end": np.asarray(6.0),
        "fit_ts": fit_ts,
        "fit_ys": fit_ys,
        "ext_ts": ext_ts,
        "ext_ude": ude,
        "ext_discovered": ext_truth * 1.01,
        "ext_truth": ext_truth,
    }


def _extrapolation(r):
    fit_start, start = plots.describe_starts(r)
    return plots.plot_extrapolation(
        r["ext_ts"],
        ["x", "y"],
        float(r["t_train_end"]),
        truth=r["ext_truth"],
        models={"ude": r["ext_ude"], "discovered": r["ext_discovered"]},
        data_ts=r["data_ts"],
        data_ys=r["data_ys"],
        data_mask=r["data_mask"],
        start=start,
        fit_ts=r["fit_ts"],
        fit_ys=r["fit_ys"],
        fit_start=fit_start,
    )


def test_loss_one_labelled_panel_per_phase():
    stage = np.repeat([0, 1, 2, 3], [5, 10, 4, 6])
    step = np.arange(stage.size)
    loss = np.concatenate(
        [np.geomspace(10, 1, 5), np.geomspace(1e3, 5, 14), np.geomspace(1e7, 2, 6)]
    )
    fig = plots.plot_loss(step, loss, stage, ["adam", "adam", "lbfgs", "lbfgs"], phases=PHASES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [f"{n}: {o}" for n, o, _ in PHASES]
    # each panel draws its own phase's stages only: the polish's 1e7 is not on the train's axis
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["1: adam"], ["2: adam", "3: lbfgs"], ["4: lbfgs"]]
    assert fig.axes[1].get_ylim()[1] < 1e4
    # a phase without steps (a fit stopped early) gets no panel; no phases: one panel, as before
    fig = plots.plot_loss(step[:19], loss[:19], stage[:19], ["adam"] * 4, phases=PHASES)
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["pretrain", "train"]
    assert len(plots.plot_loss(step, loss, stage, ["adam"] * 4).axes) == 1
    # phases that do not cover the history's stages are not trusted
    assert len(plots.plot_loss(step, loss, stage, ["adam"] * 4, phases=PHASES[:2]).axes) == 1


def test_phases_of_config():
    cfg = load_config(ROOT / "configs" / "lotka_volterra_partial.yaml")
    info = {"phases": ["train", "polish"], "stages": ["adam", "lbfgs", "lbfgs"]}
    assert phases_of(cfg, info) == [
        ("train", "multiple shooting, 5 segments + continuity (sse)", 2),
        ("polish", "single shooting, learned u0 (sse)", 1),
    ]
    assert phases_of(cfg, {"phases": ["train"], "stages": ["adam"]}) is None  # does not add up
    assert phases_of(cfg, {"stages": ["adam", "lbfgs"]}) is None


def test_diverging_forecast_clipped_with_note():
    r = _results()
    fig = _extrapolation(r)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    ref = np.concatenate([r["ext_truth"][..., 0].ravel(), r["data_ys"][..., 0].ravel()])
    span = ref.max() - ref.min()
    assert np.isfinite([lo, hi]).all()
    assert ref.min() - span <= lo <= ref.min() and ref.max() <= hi <= ref.max() + span
    for line in ax.get_lines():  # nothing is drawn off the frame (the axvline aside)
        if np.ptp(np.asarray(line.get_xdata(), float)) == 0:
            continue
        y = np.asarray(line.get_ydata(), float)
        assert np.all(y[np.isfinite(y)] <= hi + 1e-9) and np.all(y[np.isfinite(y)] >= lo - 1e-9)
    notes = [t for t in _texts(fig) if "leaves the plot" in t]
    assert len(notes) == 1 and notes[0].startswith("UDE forecast leaves the plot at t ≈ 8")
    assert "(diverges)" in notes[0]
    # a solve that fails (inf after t = 9) says so too; the y panel, never left, has no note
    r["ext_ude"][0, 91:, 0] = np.inf
    notes = [t for t in _texts(_extrapolation(r)) if "leaves the plot" in t]
    assert len(notes) == 1 and "solve fails at t ≈ 9.1" in notes[0]


def test_forecast_in_range_has_no_note():
    fig = _extrapolation(_results(diverge=False))
    assert not [t for t in _texts(fig) if "leaves the plot" in t]


def test_training_window_marked():
    fig = _extrapolation(_results())
    for ax in fig.axes:
        spans = [p for p in ax.patches if "training window" in str(p.get_label())]
        assert len(spans) == 1
        x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
        assert (x0, x1) == pytest.approx((0.0, 6.0))
        assert any(np.allclose(line.get_xdata(), 6.0) for line in ax.get_lines())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "training window (t ≤ 6)" in labels


def test_labels_say_where_curves_start():
    r = _results(learned=True)
    assert plots.describe_starts(r) == ("the learned u0", "the true u0")
    fig = _extrapolation(r)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "UDE forecast (from the true u0)" in labels
    assert "recovered model (from the true u0)" in labels
    assert "UDE fit (from the learned u0)" in labels
    head = fig.get_suptitle()
    assert "from the true u0 = (2, 3)" in head and "the learned u0 = (2.05, 3.05)" in head
    # the fit from the first (noisy) sample; no truth: the extrapolation starts where the fit does
    r = _results(learned=False)
    assert plots.describe_starts(r) == ("the first sample", "the true u0")
    for k in ("ext_truth", "data_y_true"):
        r.pop(k)
    r["ext_ude"] = r["ext_discovered"] = np.broadcast_to(r["fit_ys"][:, :1], (1, 201, 2)).copy()
    assert plots.describe_starts(r) == ("the first sample", "the first sample")
    # a partly observed first time: the unobserved state learned
    r = _results(learned=True)
    r["fit_ys"][0, 0, 0] = r["data_ys"][0, 0, 0]
    r["data_mask"][0, 0, 1] = False
    assert plots.describe_starts(r)[0] == "the first sample (learned where unobserved)"


def test_draw_all_writes_every_figure(tmp_path):
    r = _results()
    hist = {"step": np.arange(6), "loss": np.geomspace(10, 1, 6), "stage": np.repeat([0, 1], 3)}
    phases = [("train", "single shooting (sse)", 1), ("polish", "single shooting, u0", 1)]
    paths = plots.draw_all(r, hist, ["adam", "lbfgs"], tmp_path, phases=phases, formats=("png",))
    assert {p.stem for p in paths} == {"trajectories", "loss", "extrapolation", "error"}
    assert all(p.stat().st_size > 0 for p in paths)
