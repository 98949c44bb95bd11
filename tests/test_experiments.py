"""Smoke tests of the paper's experiment scripts: each ``main`` runs with tiny overrides and writes
its figures (PNG and PDF) and its JSON of numbers next to the paper's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers import tiny_overrides  # noqa: E402

from experiments import hudson_bay, noise_sweep, scenario1, scenario2  # noqa: E402


def _check_outputs(res: dict, out: Path, name: str):
    assert (out / f"{name}.json").is_file()
    saved = json.loads((out / f"{name}.json").read_text())
    assert "paper" in saved or "paper_successes" in saved
    figs = [Path(f) for f in res["figures"]]
    assert figs and all(f.is_file() and f.stat().st_size > 0 for f in figs)
    assert {f.suffix for f in figs} == {".png", ".pdf"}


@pytest.mark.parametrize(
    "module, config",
    [
        (scenario1, "lotka_volterra"),
        (scenario2, "lotka_volterra_partial"),
        (hudson_bay, "hudson_bay"),
    ],
)
def test_paper_scripts_run_with_tiny_overrides(module, config, tmp_path):
    over = tiny_overrides(ROOT / "configs" / f"{config}.yaml", steps=2)
    res = module.main(overrides=over, out=tmp_path)
    _check_outputs(res, tmp_path, module.NAME)
    # "ours" is read from the run the script made, with the config and overrides it was given
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(res["ours"]["final_loss"]) and res["ours"]["final_loss"] == run["final_loss"]
    assert res["ours"]["extrapolation"] == run["extrapolation"]
    assert res["config"] == config and res["overrides"] == over
    saved = json.loads((tmp_path / f"{module.NAME}.json").read_text())
    assert saved["ours"]["final_loss"] == res["ours"]["final_loss"]


def test_paper_scripts_reject_unknown_overrides():
    with pytest.raises(ValueError, match="unknown overrides"):
        scenario1.main(bogus=1)
    with pytest.raises(ValueError, match="unknown overrides"):
        noise_sweep.main(levels_typo=(0.01,))


def test_noise_sweep_batched_smoke(tmp_path):
    res = noise_sweep.main(
        levels=(0.001, 0.05),
        runs=3,
        collocation_steps=20,
        adam_steps=10,
        lbfgs_steps=10,
        refit_steps=5,
        chunk=10,
        out=tmp_path,
        verbose=False,
    )
    _check_outputs(res, tmp_path, "noise_sweep")
    assert res["levels"] == [0.001, 0.05] and res["runs"] == 3
    for count, per in zip(res["successes"], res["per_level"], strict=True):
        # a level's count is its runs' successes; every run has a finite final loss
        assert len(per["success"]) == 3 and count == sum(per["success"])
        assert len(per["final_loss"]) == 3 and np.all(np.isfinite(per["final_loss"]))
    assert res["paper_successes"] == [75, 18]  # the paper's numbers, looked up by noise level
    with np.load(tmp_path / "losses.npz") as z:
        assert z["level_0.001"].shape[0] == 3  # one loss curve per run
