"""Training phases of a config: ``train.pretrain`` (collocation, no solve) before the strategy's
stages and ``train.polish`` (single shooting, initial states learned) after them — one history,
one model, checkpoints per phase, and a resume that ends where an uninterrupted run ends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_overrides

from ude.config import load_config
from ude.pipeline import FILES, read_history, run_experiment

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "lotka_volterra_partial.yaml"
PHASES = [
    "train.pretrain=[{kind: adam, lr: 0.05, steps: 10}]",
    "train.polish=[{kind: lbfgs, steps: 5}]",
    "train.chunk=5",
    "train.checkpoint_every=5",
    "discovery.enabled=false",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = load_config(CONFIG, tiny_overrides(CONFIG, steps=3) + PHASES)
    out = tmp_path_factory.mktemp("phases") / "run"
    metrics = run_experiment(cfg, out, verbose=False)
    return cfg, out, metrics


def test_phases_share_one_history_and_model(run):
    cfg, out, metrics = run
    hist = read_history(out / FILES["history"])
    assert sorted(set(np.asarray(hist["stage"]).tolist())) == [0, 1, 2]  # pretrain, train, polish
    assert len(hist["step"]) == 10 + 3 + np.sum(np.asarray(hist["stage"]) == 2)
    np.testing.assert_array_equal(hist["step"], np.arange(len(hist["step"])))
    fit = json.loads((out / FILES["fit"]).read_text())
    assert fit["phases"] == ["pretrain", "train", "polish"]
    assert fit["stages"] == ["adam", "adam", "lbfgs"]
    assert (out / "checkpoints-pretrain").is_dir() and (out / "checkpoints-polish").is_dir()
    assert np.isfinite(metrics["final_loss"]) and metrics["final_loss"] > 0
    # the polish phase learns the initial states: the final loss is its single-shooting loss
    assert (
        metrics["final_loss"]
        <= float(np.asarray(hist["loss"])[np.asarray(hist["stage"]) == 2][0]) + 1e-12
    )


def test_resume_after_the_fit_gives_the_same_model(run, tmp_path):
    import shutil

    cfg, out, metrics = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("model", "fit", "history", "metrics", "results"):
        (copy / FILES[name]).unlink(missing_ok=True)
    again = run_experiment(cfg, copy, verbose=False, resume=True)
    assert again["final_loss"] == metrics["final_loss"]
    assert (copy / FILES["model"]).read_bytes() == (out / FILES["model"]).read_bytes()


def test_phases_in_an_ensemble(run, tmp_path):
    """An ensemble goes through the same phases; member 0 is the single run."""
    cfg = load_config(CONFIG, tiny_overrides(CONFIG, steps=3) + PHASES + ["parallel.ensemble=2"])
    out = tmp_path / "ens"
    metrics = run_experiment(cfg, out, verbose=False)
    fit = json.loads((out / FILES["fit"]).read_text())
    assert fit["phases"] == ["pretrain", "train", "polish"] and fit["stages"] == [
        "adam",
        "adam",
        "lbfgs",
    ]
    hist = read_history(out / FILES["history"])
    assert sorted(set(np.asarray(hist["stage"]).tolist())) == [0, 1, 2]
    losses = metrics["ensemble"]["final_losses"]
    assert len(losses) == 2 and metrics["final_loss"] == min(losses)
    assert losses[0] == pytest.approx(run[2]["final_loss"], rel=1e-9)  # member 0 = the single run
