"""Diverging training, graceful stops, the run-directory lock and determinism (in-process).

* Diverging training (a vector field that blows up, a stiff correction exhausting ``max_steps``, a
  learning rate far too high): the run either completes with finite losses or ends with exit 1 and
  a message saying what happened; metrics.json records the rejected steps per stage; the
  checkpoints are kept and ``ude resume`` reports the same instead of crashing.
* A stop request (what SIGINT/SIGTERM set) writes a checkpoint of exactly that step; resuming gives
  the same final parameters, history and metrics as an uninterrupted run.
* A second writer of a locked run directory gets exit 2 and the holder's pid.
* The same config and seed give identical metrics.json (timing fields excluded).

All runs share one compiled fit program (same shapes and solver; learning rates, step counts and
weights are data), so the module stays fast.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from reliability_report import count, flush

from ude import cli, pipeline
from ude.config import load_config
from ude.interrupt import StopRequest, graceful_signals
from ude.pipeline import FILES, lock as runlock, read_history, run_experiment

MODULE = "reliability"
ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "lotka_volterra.yaml"
TINY = [
    "output.figures=false",
    "evaluate.t_end=null",
    "solver.max_steps=64",
    "model.network.width=3",
    "model.network.depth=1",
    "discovery.enabled=false",
    "train.chunk=5",
    "train.checkpoint_every=5",
]
TIMING = {"wall_seconds", "run_dir", "sessions"}


def stages(lr=0.01, steps=20):
    return [f"train.stages=[{{kind: adam, lr: {lr}, steps: {steps}}}]"]


def args(overrides):
    return [a for o in overrides for a in ("--set", o)]


def without_timing(m: dict) -> dict:
    """metrics.json without wall-clock fields (and the run directory's name)."""
    out = {k: v for k, v in m.items() if k not in TIMING}
    if isinstance(out.get("fit"), dict):
        out["fit"] = {k: v for k, v in out["fit"].items() if k not in TIMING}
    return out


def metrics(d: Path) -> dict:
    return json.loads((d / FILES["metrics"]).read_text())


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    flush(MODULE)


def _cli(capsys, argv):
    capsys.readouterr()
    code = cli.main(argv)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the tiny config (20 Adam steps)."""
    d = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(["run", str(CONFIG), "--out", str(d), "-q", *args(TINY + stages())]) == 0
    return d


# ---- determinism --------------------------------------------------------------------------------
def test_same_config_and_seed_give_identical_metrics(reference, tmp_path, capsys):
    d = tmp_path / "again"
    code, out, _ = _cli(capsys, ["run", str(CONFIG), "--out", str(d), "-q", *args(TINY + stages())])
    assert code == 0
    a, b = metrics(reference), metrics(d)
    assert a["wall_seconds"] > 0 and a["run_dir"] != b["run_dir"]
    assert without_timing(a) == without_timing(b)
    assert (d / FILES["model"]).read_bytes() == (reference / FILES["model"]).read_bytes()
    assert (d / FILES["history"]).read_text() == (reference / FILES["history"]).read_text()
    assert "20 steps, none rejected" in out


# ---- diverging training -------------------------------------------------------------------------
def test_blow_up_rejects_every_step_exits_1_and_keeps_the_checkpoint(tmp_path, capsys):
    """A correction 10⁴ times too large: every solve exhausts max_steps."""
    d = tmp_path / "blowup"
    ov = TINY + stages(steps=10) + ["model.network.output_scale=10000.0"]
    code, out, err = _cli(capsys, ["run", str(CONFIG), "--out", str(d), "-q", *args(ov)])
    count(MODULE, "faults_diverging")
    assert code == 1 and out == ""
    assert "training diverged: all 10 steps of stage 1 (adam) were rejected" in err
    assert "solver.max_steps = 64" in err and "checkpoint is kept" in err
    m = metrics(d)
    assert m["status"] == "failed" and m["fit"]["rejected"] == [10] and "all 10 steps" in m["error"]
    assert m["fit"]["status"] == "diverged"
    hist = read_history(d / FILES["history"])
    assert len(hist["step"]) == 10 and not hist["accepted"].any()
    assert np.all(np.diff(hist["lr_scale"]) < 0)  # the learning rate backs off
    assert not (d / FILES["model"]).exists()  # no fitted model pretends to be one
    index = json.loads((d / "checkpoints" / "checkpoint.json").read_text())
    assert index["global_step"] == 10 and (d / "checkpoints" / index["file"]).is_file()
    # resuming it reads the checkpoint back and reports the same, without a traceback
    code, _, err2 = _cli(capsys, ["resume", str(d), "-q"])
    assert code == 1 and "all 10 steps of stage 1 (adam) were rejected" in err2
    count(MODULE, "faults_diverging_reported")


def test_non_finite_final_loss_exits_1(tmp_path, capsys):
    d = tmp_path / "zero"
    ov = TINY + stages(steps=0) + ["model.network.output_scale=10000.0"]
    code, _, err = _cli(capsys, ["run", str(CONFIG), "--out", str(d), "-q", *args(ov)])
    count(MODULE, "faults_diverging")
    assert code == 1 and "the final loss is inf" in err
    assert metrics(d)["status"] == "failed" and metrics(d)["final_loss"] is None
    count(MODULE, "faults_diverging_reported")


@pytest.mark.parametrize("activation", ["rbf", "tanh"])
def test_learning_rate_far_too_high(tmp_path, capsys, activation):
    """Adam at lr = 1000: with rbf units the network saturates and the run completes (a poor but
    finite fit, every step accepted); with tanh the first step leaves the solvable region, the
    other 19 are all rejected and the run ends with exit 1 and the reason."""
    d = tmp_path / activation
    ov = TINY + stages(lr=1000.0, steps=20) + [f"model.network.activation={activation}"]
    code, out, err = _cli(capsys, ["run", str(CONFIG), "--out", str(d), "-q", *args(ov)])
    count(MODULE, "faults_diverging")
    m = metrics(d)
    accepted = read_history(d / FILES["history"])["accepted"]
    if activation == "rbf":
        assert code == 0 and m["status"] == "ok" and np.isfinite(m["final_loss"])
        assert m["fit"]["rejected"] == [0] and accepted.all()
        assert "steps," in out and "rejected" in out
    else:
        assert code == 1 and "training diverged" in err and m["status"] == "failed"
        assert m["fit"]["rejected"] == [19] and accepted.tolist() == [True] + [False] * 19
        assert (d / "checkpoints" / "checkpoint.json").is_file()
    count(MODULE, "faults_diverging_reported")


def test_summary_reports_rejected_steps_per_stage():
    text = cli.summary(
        {
            "run_dir": "r",
            "final_loss": 1.0,
            "fit": {"steps": 30, "rejected": [3, 0], "stopped": ["steps", "steps"]},
        }
    )
    assert "30 steps, 3 rejected (per stage: 3, 0)" in text


# ---- graceful stops -----------------------------------------------------------------------------
def test_stop_request_checkpoints_that_step_and_resume_is_bit_for_bit(reference, tmp_path, capsys):
    """What SIGINT/SIGTERM do during a fit, at a chosen step: the checkpoint holds exactly that
    state and `ude resume` finishes with the uninterrupted run's parameters and metrics."""
    cfg = load_config(CONFIG, TINY + stages())
    stop = StopRequest()

    def at_step(stage, step, model, loss):
        if step >= 10:
            stop.request(signal.SIGINT)

    d = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt, match="stopped at step 10; checkpoint written"):
        run_experiment(cfg, d, verbose=False, stop=stop, fit_callback=at_step)
    count(MODULE, "faults_stop_request")
    index = json.loads((d / "checkpoints" / "checkpoint.json").read_text())
    assert index["global_step"] == 10 and index["step_in_stage"] == 10
    assert not (d / FILES["model"]).exists() and not (d / FILES["metrics"]).exists()
    code, _, _ = _cli(capsys, ["resume", str(d), "-q"])
    assert code == 0
    assert without_timing(metrics(d)) == without_timing(metrics(reference))
    assert (d / FILES["model"]).read_bytes() == (reference / FILES["model"]).read_bytes()
    assert (d / FILES["history"]).read_text() == (reference / FILES["history"]).read_text()
    count(MODULE, "survived_stop_request")


def test_signals_set_the_flag_inside_a_fit_and_interrupt_outside():
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup/&
    with graceful_signals() as stop:
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)  # outside a fit: at once
            for _ in range(100000):
                pass
    with graceful_signals() as stop:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
            with stop.armed():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # let the handler run; it must not raise here
                    if stop():
                        break
                assert stop() and stop.name == "SIGTERM"
            # leaving the fit with a pending stop raises
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_cli_interrupt_message(tmp_path, capsys, monkeypatch):
    """Exit 1 with the signal, the step and the resume command."""

    def fake(cfg, out, **kw):
        Path(out).mkdir(parents=True)
        kw["stop"].signum = signal.SIGTERM
        raise KeyboardInterrupt("stopped at step 40; checkpoint written")

    monkeypatch.setattr(pipeline, "run_experiment", fake)
    d = tmp_path / "r"
    code, _, err = _cli(capsys, ["run", str(CONFIG), "--out", str(d), "-q"])
    assert code == 1
    assert (
        f"ude run: interrupted (SIGTERM received; stopped at step 40; checkpoint written); "
        f"continue with: ude resume {d}"
    ) in err


# ---- the run-directory lock ---------------------------------------------------------------------
def test_a_locked_run_directory_refuses_a_second_writer(reference, capsys):
    with runlock.acquire(reference, command="test") as lock:
        assert lock.held
        code, _, err = _cli(capsys, ["resume", str(reference), "-q"])
        count(MODULE, "faults_second_writer")
        assert code == 2
        assert f"is in use by process {os.getpid()} (test)" in err and ".lock" in err
        assert runlock.holder(reference)["pid"] == os.getpid()
    code, _, _ = _cli(capsys, ["resume", str(reference), "-q"])  # released: resume works again
    assert code == 0
    count(MODULE, "survived_second_writer")
