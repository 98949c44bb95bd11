"""The ``parallel`` config section, ensembles through the pipeline and ``ude run --devices``.

One tiny ensemble run (3 members, a 2 → 3 → 2 network, Euler with 40 fixed steps, 2 Adam steps,
no discovery, no figures) is shared by the module; a subprocess started with two forced host
devices repeats it with ``--devices 2`` for 2 members and must give the same losses: member i
does not depend on the ensemble's size or on the sharding. Training is under test elsewhere
(test_ensemble.py, test_sharding.py); here the plumbing is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ude import cli
from ude.config import ConfigError, dump_config, load_config, read_yaml, validate_config
from ude.discovery import discover
from ude.pipeline import (
    FILES,
    build_lams,
    build_library,
    build_regressor,
    ensemble_metrics,
    fit_model,
    prepare_data,
    split_data,
    trajectories,
)

ROOT = Path(__file__).resolve().parent.parent

# The shipped configs are edited by others; this test carries its own. The tiny settings follow
# test_cli.tiny_overrides. The in-process run uses the forward adjoint and the sharded subprocess
# the default recursive one: both adjoints shard, and their gradients agree to rounding.
CONFIG = """\
# a tiny Lotka-Volterra ensemble
truth:
  system: lotka_volterra
  parameters: {alpha: 1.3, beta: 0.9, gamma: 1.8, delta: 0.8}
  y0: [0.44249296, 4.6280594]
data:
  t_span: [0.0, 3.0]
  dt: 0.1
  noise: {kind: relative_mean, level: 0.05}
  seed: 1111
model:
  known: [growth, death]
  network: {width: 3, depth: 1, activation: rbf}
solver: {name: euler, fixed_steps: 40, adjoint: forward}
train:
  stages: [{kind: adam, lr: 0.01, steps: 2}]
  chunk: 5
discovery:
  enabled: false
  library: [{kind: polynomial, degree: 2}]
  lams: [0.001, 0.1]
  criterion: paper
  dt: 0.1
evaluate: {dt: 0.1}
output: {figures: false}
parallel: {redraw_noise: true}
"""

REL = 1e-10  # sharded = unsharded in float64 (XLA may reduce in another order per device)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def run(config_path, tmp_path_factory):
    """The 3-member ensemble, in-process through `ude run`: (exit code, run dir, metrics)."""
    d = tmp_path_factory.mktemp("runs") / "ens3"
    code = cli.main(
        ["run", str(config_path), "--out", str(d), "--quiet", "--set", "parallel.ensemble=3"]
    )
    metrics = json.loads((d / FILES["metrics"]).read_text()) if code == 0 else None
    return code, d, metrics


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------
def _errors(path, overrides) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return e.value.messages


def test_parallel_defaults(config_path):
    cfg = load_config(config_path)
    assert (cfg.parallel.ensemble, cfg.parallel.devices, cfg.parallel.redraw_noise) == (
        1,
        None,
        True,
    )
    cfg = load_config(config_path, ["parallel.ensemble=4", "parallel.devices=2"])
    again = validate_config(read_yaml(dump_config(cfg)))
    assert again.parallel == cfg.parallel


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["parallel.ensembel=2"], "parallel.ensembel: unknown key (did you mean 'ensemble'?)"),
        (
            ["parallel.devices=2"],
            "parallel.devices: 2 devices for 1 ensemble member(s): each device "
            "trains a block of members, so set parallel.ensemble to at least 2",
        ),
        (["parallel.ensemble=0"], "parallel.ensemble: must be >= 1, got 0"),
        (["parallel.devices=0"], "parallel.devices: must be >= 1, got 0"),
        (["parallel.ensemble=2.5"], "parallel.ensemble: must be an integer, got 2.5"),
        (["parallel.redraw_noise=yes please"], "parallel.redraw_noise: must be true or false"),
        (
            ["data.noise={kind: none}"],
            "parallel.redraw_noise: data.noise.kind is 'none': there is no noise to redraw",
        ),
    ],
)
def test_parallel_errors_name_their_key(config_path, overrides, message):
    assert any(m.startswith(message) for m in _errors(config_path, overrides)), message


# ------------------------------------------------------------------------------------------------
# an ensemble run
# ------------------------------------------------------------------------------------------------
def test_ensemble_run_writes_the_ensemble(run):
    code, d, m = run
    assert code == 0
    for f in ("ensemble", "ensemble_info", "model", "fit", "history", "results", "metrics"):
        assert (d / FILES[f]).is_file(), f
    info = json.loads((d / FILES["ensemble_info"]).read_text())
    assert info["members"] == 3 and len(info["training_losses"]) == 3  # redraw_noise: own draws


def test_ensemble_metrics_block(run):
    _, _, m = run
    e = m["ensemble"]
    losses = np.asarray(e["final_losses"], float)
    assert e["members"] == 3 and losses.shape == (3,) and np.all(np.isfinite(losses))
    # the run's model is the member with the lowest loss on the run's data
    assert e["best_member"] == int(np.argmin(losses))
    assert m["final_loss"] == losses.min()
    assert len(set(losses.tolist())) == 3  # different seeds (and noise draws) train differently
    assert e["members_solved"] == 3 and e["spread_t"] == 3.0
    for s in ("x", "y"):
        q = e["trajectory_spread"][s]
        assert q["p05"] <= q["p50"] <= q["p95"] and q["band_rms"] > 0
    assert e["coefficient_spread"] is None  # discovery is off
    assert "ensemble" in cli.summary(m) and "member" in cli.summary(m)


def test_member_zero_is_the_single_run(run, config_path, tmp_path):
    """Member 0 has the single run's seeds and data: the same fit, vmapped."""
    _, _, m = run
    d = tmp_path / "single"
    assert cli.main(["run", str(config_path), "--out", str(d), "--quiet"]) == 0
    single = json.loads((d / FILES["metrics"]).read_text())
    assert "ensemble" not in single and not (d / FILES["ensemble"]).exists()
    assert single["final_loss"] == pytest.approx(m["ensemble"]["final_losses"][0], rel=REL, abs=0)


def test_resume_reuses_the_saved_ensemble(run, tmp_path):
    _, d, m = run
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    (copy / FILES["metrics"]).unlink()
    saved = (copy / FILES["ensemble"]).read_bytes()
    assert cli.main(["resume", str(copy), "--quiet"]) == 0
    m2 = json.loads((copy / FILES["metrics"]).read_text())
    assert (copy / FILES["ensemble"]).read_bytes() == saved
    assert m2["ensemble"]["final_losses"] == m["ensemble"]["final_losses"]
    assert m2["ensemble"]["trajectory_spread"] == m["ensemble"]["trajectory_spread"]


def test_an_interrupted_ensemble_resumes_to_the_uninterrupted_one(config_path, tmp_path):
    """Stopped after its second chunk (a checkpoint is written), then `ude resume`d, an ensemble
    ends with the same members, bit for bit, as one trained without a break."""
    from ude import run_experiment

    over = [
        "parallel.ensemble=3",
        "train.stages=[{kind: adam, lr: 0.01, steps: 6}]",
        "train.chunk=2",
    ]
    cfg = load_config(config_path, over)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_experiment(cfg, whole, verbose=False)
    polls = iter([False, True])
    with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
        run_experiment(cfg, cut, verbose=False, stop=lambda: next(polls))
    assert not (cut / FILES["ensemble"]).exists()
    assert (cut / FILES["checkpoints"] / "checkpoint.json").is_file()
    logs = []
    run_experiment(cfg, cut, verbose=False, resume=True, log=logs.append)
    assert any("resuming the ensemble from the last checkpoint" in m for m in logs), logs
    assert (cut / FILES["ensemble"]).read_bytes() == (whole / FILES["ensemble"]).read_bytes()
    a, b = (json.loads((d / FILES["ensemble_info"]).read_text()) for d in (whole, cut))
    assert a["final_losses"] == b["final_losses"]
    assert (cut / FILES["history"]).read_text() == (whole / FILES["history"]).read_text()


def test_coefficient_spread_regresses_every_member(run):
    """Discovery's regression per member, on the same trajectories the discover stage uses: every
    term the run's model keeps is kept by at least that member."""
    _, d, _ = run
    cfg = load_config(d / FILES["config"], ["discovery.enabled=true"])
    data = prepare_data(cfg, d)
    train, _ = split_data(cfg, data)
    import jax.random as jr

    fitted = fit_model(cfg, d, train, key=jr.split(jr.key(cfg.seed))[0], verbose=False, data=data)
    block, _ = ensemble_metrics(cfg, data, train, fitted.ensemble)
    spread = block["coefficient_spread"]
    assert spread["criterion"] == "paper" and spread["members"] == 3
    ts, ys, _, n = trajectories(cfg, fitted.model, data, train, fitted.extra)
    inside = ts <= float(train.ts[-1]) + 1e-9
    own = discover(
        fitted.model,
        (np.tile(ts[inside], n), ys[:n, inside].reshape(-1, 2)),
        build_library(cfg),
        build_regressor(cfg),
        lams=build_lams(cfg),
        criterion="paper",
    )
    for s, terms in own.as_dict().items():
        for t, c in terms.items():
            got = spread["terms"][s][t]
            assert got["inclusion"] >= 1 / 3 - 1e-12
            if got["inclusion"] == pytest.approx(1 / 3):  # kept by this member alone
                assert got["mean"] == pytest.approx(c, rel=1e-8) and got["std"] == 0.0
    for terms in spread["terms"].values():
        for st in terms.values():
            assert 0 < st["inclusion"] <= 1 and st["std"] >= 0


# ------------------------------------------------------------------------------------------------
# --devices
# ------------------------------------------------------------------------------------------------
def test_devices_beyond_the_ensemble_is_a_usage_error(config_path, tmp_path, capsys):
    out = tmp_path / "never"
    code = cli.main(
        [
            "run",
            str(config_path),
            "--out",
            str(out),
            "--quiet",
            "--devices",
            "4",
            "--set",
            "parallel.ensemble=3",
        ]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and not out.exists()
    assert "parallel.devices: 4 devices for 3 ensemble member(s)" in err
    assert "--set parallel.ensemble=4" in err


def test_devices_jax_does_not_see_is_a_usage_error(config_path, tmp_path, capsys):
    import jax

    n = len(jax.devices()) + 1
    out = tmp_path / "never"
    code = cli.main(
        [
            "run",
            str(config_path),
            "--out",
            str(out),
            "--quiet",
            "--devices",
            str(n),
            "--set",
            f"parallel.ensemble={n}",
        ]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and not out.exists()
    assert f"parallel.devices = {n}, but jax sees only {n - 1} cpu device(s)" in err
    assert f"XLA_FLAGS=--xla_force_host_platform_device_count={n}" in err


def test_sharded_run_equals_the_unsharded_one(run, config_path, tmp_path):
    """`ude run --devices 2` for 2 members (one per forced host device, in a subprocess) gives the
    losses of members 0 and 1 of the in-process 3-member run."""
    _, _, m = run
    out = tmp_path / "sharded"
    # no XLA_FLAGS: `ude run --devices 2` asks XLA for 2 host devices itself
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(
        JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ude.cli",
            "run",
            str(config_path),
            "--out",
            str(out),
            "--quiet",
            "--devices",
            "2",
            "--set",
            "parallel.ensemble=2",
            "--set",
            "solver.adjoint=recursive",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ensemble" in proc.stdout
    sharded = json.loads((out / FILES["metrics"]).read_text())["ensemble"]
    info = json.loads((out / FILES["ensemble_info"]).read_text())
    assert info["devices"] == 2
    want = np.asarray(m["ensemble"]["final_losses"][:2])
    np.testing.assert_allclose(sharded["final_losses"], want, rtol=REL, atol=0)
    np.testing.assert_allclose(
        info["training_losses"], m["ensemble"]["training_losses"][:2], rtol=REL, atol=0
    )
