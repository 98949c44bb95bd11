"""The `ude` command and the pipeline: every shipped config runs end to end (tiny overrides), the
run directory's contents, resume after an interruption, exit codes and error messages.

Most runs call ``ude.cli.main`` in-process (compiled programs are shared); one real subprocess
checks the console entry point's exit code and output. Training steps are kept at zero or a few:
the fit itself is tested in test_train.py; here the plumbing is under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_overrides

from ude import cli
from ude.config import load_config
from ude.pipeline import FILES, read_history, run_experiment

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _args(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every shipped config run once through `ude run` (in-process): name -> (exit code, dir)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for path in CONFIGS:
        d = root / path.stem
        code = cli.main(
            ["run", str(path), "--out", str(d), "--quiet", *_args(tiny_overrides(path))]
        )
        out[path.stem] = (code, d)
    return out


@pytest.mark.parametrize("name", [p.stem for p in CONFIGS])
def test_every_shipped_config_runs(runs, name):
    code, d = runs[name]
    assert code == 0
    for f in (
        "config.yaml",
        "data.npz",
        "data.json",
        "model.eqx",
        "history.csv",
        "fit.json",
        "results.npz",
        "metrics.json",
    ):
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    cfg = load_config(d / "config.yaml")
    assert isinstance(m["final_loss"], float) and np.isfinite(m["final_loss"])
    assert m["wall_seconds"] > 0
    q = m["fit"]  # the quality gate: a floor from the truth, or estimated from the data
    assert q["status"] in ("ok", "underfit") and q["floor"] > 0
    assert q["floor_source"] == ("truth" if cfg.truth is not None else "data")
    assert q["loss_to_floor"] == pytest.approx(m["final_loss"] / q["floor"])
    if "experiments" in m:  # a dataset of experiments: scored per experiment
        _check_experiments(m, cfg, d)
        return
    ex = m["extrapolation"]
    assert set(ex) >= {"t_end", "rmse", "ok", "reference"}
    if cfg.truth is None:
        assert m["noise_floor"] is None
        assert ex["reference"] in (None, "held-out data")
    else:
        assert m["noise_floor"] > 0
        assert ex["reference"] == "truth"
    if ex["reference"] is None:  # real data and no held-out window: nothing to compare with
        assert ex["rmse"] is None
    elif ex["ok"]:  # a model that did not blow up has a finite error; a noisy fit is never exact
        assert isinstance(ex["rmse"], float) and 0 < ex["rmse"] < 1e3
    else:
        assert ex["rmse"] is None  # an infinite error is written as null
    if cfg.discovery.enabled:
        assert set(m["discovered"]) <= set(cfg.state_names)
        assert (d / "discovery.json").is_file() and (d / "discovered.eqx").is_file()
        for terms in m["discovered"].values():  # known terms are not included: library names only
            assert all(isinstance(c, float) for c in terms.values())
    else:
        assert m["discovered"] is None


def _check_experiments(m, cfg, d):
    ex = m["experiments"]
    if cfg.data.experiments is not None:
        names = [e.name for e in cfg.data.experiments]
    else:  # a file's experiments are named in the file: the run's data.json records them
        names = json.loads((d / "data.json").read_text())["experiment_names"]
    assert set(ex["per_experiment"]) == set(names)
    assert ex["held_out"] == list(cfg.data.held_out_experiments)
    assert set(ex["trained"]) == set(names) - set(ex["held_out"])
    for name, row in ex["per_experiment"].items():
        assert row["split"] == ("held_out" if name in ex["held_out"] else "train")
        assert set(row["rmse"]) >= {"ude", "physics"}
        assert all(v is None or v >= 0 for v in row["rmse"].values())
    assert set(ex["pooled_rmse"]) == {"train", "held_out"}
    if cfg.truth is not None:  # a file's data have no known noise
        assert m["noise_floor"] > 0
    else:
        assert m["noise_floor"] is None


def test_noise_floor_and_losses_are_consistent(runs):
    """The fit's zero-step loss is the initial model's; the noise floor is the truth's loss on the
    same data, which must be far smaller than an untrained network's."""
    m = json.loads((runs["lotka_volterra"][1] / "metrics.json").read_text())
    assert m["noise_floor"] < 1.0 < m["final_loss"]


def test_config_snapshot_is_resolved(runs):
    d = runs["lotka_volterra_partial"][1]
    text = (d / "config.yaml").read_text()
    assert text.startswith("# The UDE paper's scenario 2")
    cfg = load_config(d / "config.yaml")
    assert cfg.model.parameters["gamma"] == 1.5 and cfg.model.parameters["alpha"] == 1.3
    assert cfg.train.strategy.segments == 5
    assert cfg.train.stages[0].steps == 0


def test_refuses_to_overwrite_a_run(runs, capsys):
    d = runs["sir"][1]
    before = sorted(p.name for p in d.iterdir())
    code = cli.main(["run", str(ROOT / "configs" / "sir.yaml"), "--out", str(d), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "Traceback" not in err
    assert sorted(p.name for p in d.iterdir()) == before


def test_figures_and_discover_commands(runs, capsys):
    d = runs["lotka_volterra"][1]
    assert cli.main(["figures", str(d), "--quiet"]) == 0
    for name in ("trajectories", "missing_term", "extrapolation", "error"):
        for fmt in ("png", "pdf"):
            assert (d / "figures" / f"{name}.{fmt}").stat().st_size > 1000
    capsys.readouterr()
    assert cli.main(["discover", str(d), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "discovered" in out and "x'" in out


# ---- interruption and resume ------------------------------------------------------------------
class _Interrupt:
    def __init__(self, at: int):
        self.at = at

    def __call__(self, stage, step, model, loss):
        if step >= self.at:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_result(tmp_path, capsys):
    path = ROOT / "configs" / "lotka_volterra.yaml"
    ov = tiny_overrides(path, steps=6) + [
        "train.chunk=2",
        "train.checkpoint_every=2",
        "output.figures=true",
        "output.formats=[png]",
    ]
    cfg = load_config(path, ov)
    straight = run_experiment(cfg, tmp_path / "straight", verbose=False)

    d = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, d, verbose=False, fit_callback=_Interrupt(at=4))
    assert (d / "checkpoints" / "checkpoint.json").is_file()
    assert not (d / "metrics.json").exists() and not (d / "model.eqx").exists()
    assert cli.main(["resume", str(d), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "final" in out and "discovered" in out and "wall time" in out
    resumed = json.loads((d / "metrics.json").read_text())
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-12)
    assert resumed["discovered"] == straight["discovered"]
    hist = read_history(d / FILES["history"])
    assert hist["step"].tolist() == list(range(6)) and hist["accepted"].all()
    assert (d / "figures" / "loss.png").is_file()
    # resuming a finished run says so and changes nothing
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main(["resume", str(d), "--quiet"]) == 0
    assert "is a finished run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()} == before
    # --redo evaluate redoes it; the run's wall time stays, the redo is listed apart
    assert cli.main(["resume", str(d), "--redo", "evaluate", "--quiet"]) == 0
    again = json.loads((d / "metrics.json").read_text())
    assert again["final_loss"] == resumed["final_loss"]
    assert again["wall_seconds"] == resumed["wall_seconds"]
    assert [s["command"] for s in again["sessions"]] == ["resume", "resume"]
    assert "later" in capsys.readouterr().out


# ---- messages and exit codes ------------------------------------------------------------------
def test_config_errors_exit_2_without_traceback(capsys):
    code = cli.main(
        [
            "run",
            str(ROOT / "configs" / "lotka_volterra.yaml"),
            "--set",
            "train.stages[1].lr=0.1",
            "--set",
            "solver.rtol=-1",
            "--set",
            "trian.x=1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "3 problems in the config" in err
    assert "train.stages[1].lr: L-BFGS takes no learning rate" in err
    assert "solver.rtol: must be > 0, got -1" in err
    assert "trian: unknown key (did you mean 'train'?)" in err


def test_debug_shows_the_traceback(capsys):
    code = cli.main(["run", "no/such/config.yaml", "--debug"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "config file not found: no/such/config.yaml" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["resume", "--help"],
        ["simulate", "--help"],
        ["discover", "--help"],
        ["figures", "--help"],
        ["configs", "--help"],
    ],
)
def test_help(argv, capsys):
    assert cli.main(argv) == 0
    assert "usage: ude" in capsys.readouterr().out


def test_version(capsys):
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ude {version('ude')}"


def test_usage_errors_exit_2(capsys, tmp_path):
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["resume", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_configs_lists_every_config_with_its_description(capsys):
    assert cli.main(["configs", "--dir", str(ROOT / "configs")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [p.stem for p in CONFIGS]
    assert all("(no description)" not in line for line in lines)


def test_simulate_writes_the_data_only(tmp_path, capsys):
    d = tmp_path / "sim"
    assert (
        cli.main(
            [
                "simulate",
                str(ROOT / "configs" / "lotka_volterra_partial.yaml"),
                "--out",
                str(d),
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml", "data.json", "data.npz"]
    assert "61 times" in capsys.readouterr().out


def test_console_script_subprocess(tmp_path):
    """The real entry point: exit codes 0 and 2, the summary on stdout, messages on stderr."""
    exe = Path(sys.executable).with_name("ude")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ude.cli"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    path = ROOT / "configs" / "lotka_volterra_physics_only.yaml"
    ok = subprocess.run(
        cmd
        + [
            "run",
            str(path),
            "--out",
            str(tmp_path / "r"),
            "--quiet",
            *_args(tiny_overrides(path, steps=0)),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr
    assert "loss" in ok.stdout and "noise floor" in ok.stdout and "wall time" in ok.stdout
    # --quiet: no progress; only the quality gate's one-line warning (no steps: underfit, exit 0
    # by UDE_ALLOW_UNDERFIT=1 from conftest.py)
    assert ok.stderr.startswith("warning: the fit is underfit") and ok.stderr.count("\n") == 1
    bad = subprocess.run(
        cmd + ["run", str(path), "--set", "model.trainable=[bta]"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert bad.returncode == 2
    assert (
        "model.trainable[0]: unknown parameter 'bta' of lotka_volterra (did you mean 'beta'?)"
        in bad.stderr
    )
    assert "Traceback" not in bad.stderr and bad.stdout == ""


def test_training_phases_run_through_the_cli(tmp_path):
    """pretrain → train → polish under the CLI's signal handling (each phase arms the stop flag
    anew; a single-use context manager once made the second phase fail)."""
    path = ROOT / "configs" / "lotka_volterra_tutorial.yaml"
    over = [o for o in tiny_overrides(path) if not o.startswith(("train.pretrain", "train.polish"))]
    over += [
        "train.pretrain=[{kind: adam, lr: 0.01, steps: 3}]",
        "train.polish=[{kind: adam, lr: 0.001, steps: 2}]",
    ]
    d = tmp_path / "run"
    assert cli.main(["run", str(path), "--out", str(d), "--quiet", *_args(over)]) == 0
    fit_info = json.loads((d / "fit.json").read_text())
    assert fit_info["phases"] == ["pretrain", "train", "polish"]


def test_log_format_plain_writes_one_line_per_update(tmp_path, capsys, monkeypatch):
    # set here so that monkeypatch restores the variable that --log-format sets
    monkeypatch.setenv("UDE_PROGRESS", "auto")
    monkeypatch.setenv("UDE_PROGRESS_EVERY", "0")
    path = ROOT / "configs" / "lotka_volterra.yaml"
    argv = ["run", str(path), "--out", str(tmp_path / "r"), "--log-format", "plain"]
    for o in tiny_overrides(path, steps=4) + ["train.chunk=2", "discovery.enabled=false"]:
        argv += ["--set", o]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("stage 1/1")]
    assert lines[0].endswith("compiling...") and "4 steps, loss" in lines[-1]
    import os

    assert os.environ["UDE_PROGRESS"] == "plain"
