"""The quality gate (ude.quality): the noise estimate from data alone, the verdict on a fit, and
what `ude run` does with it (metrics.json's fit.status, the warning, the exit status)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_overrides

from ude import cli
from ude.data import Dataset, concat
from ude.errors import EXIT_OK, EXIT_UNDERFIT
from ude.quality import estimate_noise_floor, estimate_noise_sd, fit_quality

ROOT = Path(__file__).resolve().parent.parent
LV = ROOT / "configs" / "lotka_volterra.yaml"


def _experiments(sd, seed=0, lengths=(40, 55, 31)):
    """Three experiments of their own irregular times of a smooth two-state signal, noise ``sd``
    (one value per state), the second state unobserved at a few samples of one experiment."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        ts = np.cumsum(rng.uniform(0.05, 0.15, n))
        clean = np.stack([np.sin(ts + i), 2.0 + np.cos(0.7 * ts) * (1 + 0.1 * i)], axis=1)
        ys = clean + rng.normal(size=clean.shape) * np.asarray(sd)
        mask = np.ones(ys.shape, bool)
        if i == 1:
            mask[[3, 10, 11], 1] = False
        out.append(Dataset(ts, ys, mask, state_names=["a", "b"], experiment_names=[f"e{i}"]))
    return concat(out)


def test_noise_sd_from_data_alone_is_the_noise():
    """Over 20 noise draws the estimate's mean is within 5 % of each state's noise sd, and every
    draw within 25 % (the padding and the masked samples are left out)."""
    sd = np.array([0.05, 0.2])
    est = np.array([estimate_noise_sd(_experiments(sd, seed=s)) for s in range(20)])
    assert np.all(np.abs(est.mean(axis=0) / sd - 1) < 0.05), est.mean(axis=0)
    assert np.all(np.abs(est / sd - 1) < 0.25), est


def test_a_cubic_has_no_noise_and_curvature_errs_high():
    """Data on a cubic are interpolated exactly by their neighbours (an estimate of 0); a
    strongly curved noise-free signal on a coarse grid gives a positive estimate: curvature makes
    the floor err high, never below the noise."""
    ts = np.sort(np.random.default_rng(1).uniform(0, 3, 12))
    cubic = np.stack([1 - ts + 0.5 * ts**3, 2 * ts**2], axis=1)
    assert np.allclose(estimate_noise_sd(Dataset(ts, cubic)), 0.0, atol=1e-9)
    wavy = np.stack([np.sin(3 * ts), np.cos(5 * ts)], axis=1)
    assert np.all(estimate_noise_sd(Dataset(ts, wavy)) > 1e-3)


def test_floor_follows_the_losss_reduction_and_weights():
    """``sse``: Σ_s w_s N_s sd_s²; ``mse``: that over the number of observed values; a state with
    too few samples for an estimate leaves no floor."""
    data = _experiments([0.05, 0.2])
    sd = estimate_noise_sd(data)
    counts = np.asarray(data.mask).sum(axis=(0, 1))
    sse = estimate_noise_floor(data)
    assert sse == pytest.approx(float(np.sum(counts * sd**2)))
    assert estimate_noise_floor(data, "mse") == pytest.approx(sse / counts.sum())
    w = np.array([2.0, 0.5])
    assert estimate_noise_floor(data, "sse", w) == pytest.approx(float(np.sum(w * counts * sd**2)))
    two = Dataset(np.array([0.0, 1.0]), np.ones((2, 2)))
    assert estimate_noise_floor(two) is None


@pytest.mark.parametrize(
    "loss, floor, ratio, status",
    [
        (1.0, 0.5, 10.0, "ok"),
        (5.0, 0.5, 10.0, "ok"),  # exactly at the gate
        (5.01, 0.5, 10.0, "underfit"),
        (500.0, 0.5, 10.0, "underfit"),
        (500.0, 0.5, None, "unchecked"),  # the gate is off
        (1.0, None, 10.0, "unchecked"),  # no floor to compare with
        (float("nan"), 0.5, 10.0, "diverged"),
        (None, 0.5, 10.0, "diverged"),
        (float("inf"), None, 10.0, "diverged"),
    ],
)
def test_verdict(loss, floor, ratio, status):
    q = fit_quality(loss, floor, source="truth", max_ratio=ratio)
    assert q["status"] == status
    if status in ("ok", "underfit"):
        assert q["loss_to_floor"] == pytest.approx(loss / floor)


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The paper's config with no training steps (its loss far above the noise floor), run three
    ways: gate on, --allow-underfit, gate off (train.underfit_ratio=null)."""
    root = tmp_path_factory.mktemp("gate")
    base = ["--quiet", *[a for o in tiny_overrides(LV) for a in ("--set", o)]]
    mp = pytest.MonkeyPatch()
    mp.delenv("UDE_ALLOW_UNDERFIT", raising=False)
    out = {}
    try:
        for label, extra in (
            ("gate", []),
            ("allowed", ["--allow-underfit"]),
            ("off", ["--set", "train.underfit_ratio=null"]),
        ):
            d = root / label
            code = cli.main(["run", str(LV), "--out", str(d), *base, *extra])
            out[label] = (code, json.loads((d / "metrics.json").read_text()))
    finally:
        mp.undo()
    return out


def test_an_underfit_run_says_so_and_exits_3(gated, capsys):
    code, m = gated["gate"]
    assert code == EXIT_UNDERFIT
    fit = m["fit"]
    assert fit["status"] == "underfit" and fit["floor_source"] == "truth"
    assert fit["floor"] == pytest.approx(m["noise_floor"])
    assert fit["loss_to_floor"] == pytest.approx(m["final_loss"] / m["noise_floor"])
    assert fit["loss_to_floor"] > fit["max_ratio"] == 10.0
    assert "underfit" in m["discovery_caution"]
    assert m["status"] == "ok"  # the run itself finished: `ude resume` has nothing left to do


def test_allow_underfit_keeps_0_and_still_reports(gated):
    code, m = gated["allowed"]
    assert code == EXIT_OK and m["fit"]["status"] == "underfit"


def test_the_gate_can_be_turned_off(gated):
    code, m = gated["off"]
    assert code == EXIT_OK and m["fit"]["status"] == "unchecked"
    assert m["fit"]["loss_to_floor"] > 10 and "discovery_caution" not in m


def test_the_warning_names_the_ratio_and_what_to_try(tmp_path, monkeypatch, capsys):
    """Printed on stderr by the command (from a finished underfit run's metrics, re-discovered:
    the same exit status)."""
    monkeypatch.delenv("UDE_ALLOW_UNDERFIT", raising=False)
    base = [a for o in tiny_overrides(LV) for a in ("--set", o)]
    code = cli.main(["run", str(LV), "--out", str(tmp_path / "r"), "--quiet", *base])
    err = capsys.readouterr().err
    assert code == EXIT_UNDERFIT
    assert "the fit is underfit" in err and "× the noise floor" in err
    assert "train.pretrain" in err and "--allow-underfit" in err
