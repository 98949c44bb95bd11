"""A real `ude run` subprocess killed during training, then `ude resume DIR`.

* SIGKILL at a random step (once a checkpoint exists): `ude resume DIR` (a second subprocess)
  finishes with the uninterrupted run's final parameters (model.eqx byte for byte), history and
  metrics (timing fields excluded); no temporary file is left behind.
* SIGTERM (what Ctrl-C's SIGINT also does): exit 1, a checkpoint of exactly the reported step and
  the resume command in the message; resuming gives the same result again.
* While the subprocess trains, a second writer of its directory is refused with the holder's pid.

The reference run is in-process; the subprocesses share a persistent JAX compilation cache (so the
resume does not compile again). Set UDE_KILL_SEED to replay a kill point.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_report import count, flush

from ude import cli
from ude.pipeline import FILES

MODULE = "kill_resume"
ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "lotka_volterra.yaml"
STEPS = 400
CHUNK = 5
OVERRIDES = [
    "output.figures=false",
    "evaluate.t_end=null",
    "solver.max_steps=64",
    "model.network.width=3",
    "model.network.depth=1",
    "discovery.enabled=false",
    f"train.chunk={CHUNK}",
    f"train.checkpoint_every={CHUNK}",
    f"train.stages=[{{kind: adam, lr: 0.01, steps: {STEPS}}}]",
]
TIMING = {"wall_seconds", "run_dir", "sessions"}
SEED = int(os.environ.get("UDE_KILL_SEED", random.SystemRandom().randrange(2**31)))


def _args():
    return [a for o in OVERRIDES for a in ("--set", o)]


def without_timing(m: dict) -> dict:
    out = {k: v for k, v in m.items() if k not in TIMING}
    if isinstance(out.get("fit"), dict):
        out["fit"] = {k: v for k, v in out["fit"].items() if k not in TIMING}
    return out


def same_result(d: Path, ref: Path) -> None:
    a = json.loads((d / FILES["metrics"]).read_text())
    b = json.loads((ref / FILES["metrics"]).read_text())
    assert without_timing(a) == without_timing(b)
    assert (d / FILES["model"]).read_bytes() == (ref / FILES["model"]).read_bytes()
    assert (d / FILES["history"]).read_text() == (ref / FILES["history"]).read_text()


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    flush(MODULE)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(["run", str(CONFIG), "--out", str(d), "-q", *_args()]) == 0
    return d


def _ude(*argv):
    return [sys.executable, "-m", "ude.cli", *argv]


def _checkpoint_step(d: Path) -> int:
    try:
        return json.loads((d / "checkpoints" / "checkpoint.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return -1


def _start_and_wait(d: Path, env, target: int, timeout: float = 300.0) -> subprocess.Popen:
    """Start `ude run` into ``d`` and return once its checkpoint has reached step ``target``."""
    proc = subprocess.Popen(
        _ude("run", str(CONFIG), "--out", str(d), "-q", *_args()),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    while _checkpoint_step(d) < target:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before step {target}:\n{err}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"no checkpoint at step {target} after {timeout} s")
        time.sleep(0.002)
    return proc


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(
    reference, env, tmp_path, capsys
):
    rng = random.Random(SEED)
    target = rng.randrange(CHUNK, STEPS // 2)
    d = tmp_path / "killed"
    proc = _start_and_wait(d, env, target)
    # a second writer is refused while the first one trains, naming it
    capsys.readouterr()
    assert cli.main(["resume", str(d), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"in use by process {proc.pid}" in err, err
    count(MODULE, "faults_second_writer")
    count(MODULE, "survived_second_writer")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    count(MODULE, "faults_sigkill")
    assert proc.returncode == -signal.SIGKILL
    at = _checkpoint_step(d)
    print(f"UDE_KILL_SEED={SEED}: killed after step {target}, last checkpoint at step {at}")
    assert target <= at < STEPS, "the kill did not land during training"
    assert not (d / FILES["metrics"]).exists() and not (d / FILES["model"]).exists()

    res = subprocess.run(
        _ude("resume", str(d), "-q"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert "final" in res.stdout  # stderr: only the quality gate's warning (a short fit: underfit)
    assert res.stderr == "" or res.stderr.startswith("warning: the fit is underfit")
    same_result(d, reference)
    assert not [p for p in d.rglob("*.tmp")], "temporary files left behind"
    count(MODULE, "survived_sigkill")


def test_sigterm_writes_a_checkpoint_and_exits_1_then_resumes(reference, env, tmp_path, capsys):
    rng = random.Random(SEED + 1)
    target = rng.randrange(CHUNK, STEPS // 2)
    d = tmp_path / "terminated"
    proc = _start_and_wait(d, env, target)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    count(MODULE, "faults_sigterm")
    at = _checkpoint_step(d)
    if proc.returncode == 0:  # the signal came during the last steps: the run finished instead
        pytest.skip("SIGTERM arrived after training")
    assert proc.returncode == 1, err
    assert (
        f"interrupted (SIGTERM received; stopped at step {at}; checkpoint written); continue "
        f"with: ude resume {d}" in err
    ), err
    assert "Traceback" not in err and target <= at < STEPS
    capsys.readouterr()
    assert cli.main(["resume", str(d), "-q"]) == 0
    same_result(d, reference)
    count(MODULE, "survived_sigterm")
