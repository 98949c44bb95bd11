"""Sharded ensembles and data-parallel fits equal the single-device runs.

The multi-device runs happen in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (this test process initialised jax with one
CPU device already); it prints its measurements as JSON and the tests below check them.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.parallel import (
    MEMBERS,
    TRAJ,
    axis_size,
    init_distributed,
    make_mesh,
    pad_members,
    replicate,
    shard_members,
    to_host,
)

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx, jax.numpy as jnp, jax.random as jr, numpy as np
    from ude.data import Dataset, RelativeMeanNoise
    from ude.model import UDE
    from ude.nn import MLP
    from ude.physics import LotkaVolterra
    from ude.solve import SolverOptions, solve
    from ude.train import LBFGS, Adam, Collocation, SingleShooting, fit
    from ude.train.ensemble import fit_ensemble, member, resample_noise
    from ude.parallel import make_mesh, shard_trajectories

    truth = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    ts = jnp.linspace(0.0, 1.0, 11)
    y0 = jnp.array([[0.44, 4.63], [1.0, 2.0], [2.0, 1.0], [1.5, 1.5]])
    ys = solve(truth, y0, ts, SolverOptions("dopri8", rtol=1e-12, atol=1e-12)).ys
    data = Dataset(ts=ts, ys=ys, state_names=("x", "y"), y_true=ys)
    N = 6
    models = eqx.filter_vmap(
        lambda k: UDE(truth.keep("growth", "death"), MLP(2, 2, width=4, depth=1, key=k)))(
        jr.split(jr.key(0), N))

    def arrays(t):
        return jax.tree_util.tree_leaves(eqx.filter(t, eqx.is_array))

    def rel(x, y):  # relative to the size of the values (a diverged member's are huge)
        x, y = np.asarray(x), np.asarray(y)
        ok = np.isfinite(x) & np.isfinite(y)
        if not (ok == (np.isfinite(x) | np.isfinite(y))).all():
            return float("inf")
        return float(np.max(np.where(ok, np.abs(x - y) / np.maximum(1.0, np.abs(x)), 0.0)))

    def diff(a, b):
        return max(rel(x, y) for x, y in zip(arrays(a), arrays(b)))

    def compare(a, b):
        return {"params": diff(a.models, b.models),
                "final": rel(a.final_losses, b.final_losses),
                "history": rel(a.history["loss"], b.history["loss"]),
                "rejected_equal": bool((a.rejected == b.rejected).all()),
                "stopped_equal": bool((a.stopped == b.stopped).all())}

    out = {"devices": len(jax.devices())}
    # A: shared data, a solver, per-member Adam with one diverging member (its parameters jump
    # to ~1e200, its loss overflows); 6 members padded to 8 over 4 devices
    strat = SingleShooting(options=SolverOptions("euler", fixed_steps=10, adjoint="forward"))
    stages = [[Adam(lr=lr, steps=20) for lr in [0.05, 1e200, 0.05, 0.05, 0.05, 0.05]]]
    a0 = fit_ensemble(models, data, strat, stages, key=jr.key(1), chunk=10, verbose=False)
    a4 = fit_ensemble(models, data, strat, stages, key=jr.key(1), chunk=10, verbose=False,
                      mesh=make_mesh(members=4))
    out["A"] = compare(a0, a4)
    out["A"]["rejected"] = a0.rejected.tolist()
    # D: the sharded ensemble stopped after its first chunk and resumed from the checkpoint
    import tempfile
    with tempfile.TemporaryDirectory() as ckpt:
        try:
            fit_ensemble(models, data, strat, stages, key=jr.key(1), chunk=10, verbose=False,
                         mesh=make_mesh(members=4), checkpoint_dir=ckpt, should_stop=lambda: True)
        except KeyboardInterrupt:
            pass
        d4 = fit_ensemble(models, data, strat, stages, key=jr.key(1), chunk=10, verbose=False,
                          mesh=make_mesh(members=4), checkpoint_dir=ckpt, resume=True)
    out["D"] = {"params_equal": all(np.array_equal(x, y) for x, y in
                                    zip(arrays(a4.models), arrays(d4.models))),
                "history_equal": all(np.array_equal(a4.history[k], d4.history[k], equal_nan=True)
                                     for k in ("loss", "lr_scale")),
                "final_equal": bool(np.array_equal(a4.final_losses, d4.final_losses,
                                                   equal_nan=True)),
                "sharding": str(arrays(d4.models)[0].sharding.spec),
                "uninterrupted_sharding": str(arrays(a4.models)[0].sharding.spec)}
    # B: per-member noisy data, L-BFGS; members over 2 devices x trajectories over 2
    noisy = resample_noise(data, RelativeMeanNoise(0.02), jr.split(jr.key(3), N))
    stages = [LBFGS(steps=10)]
    b0 = fit_ensemble(models, noisy, Collocation(), stages, key=jr.key(2), chunk=10, verbose=False)
    b22 = fit_ensemble(models, noisy, Collocation(), stages, key=jr.key(2), chunk=10, verbose=False,
                       mesh=make_mesh(members=2, traj=2))
    out["B"] = compare(b0, b22)
    out["B"]["final_losses"] = b0.final_losses.tolist()
    out["B"]["sharding"] = str(arrays(b22.models)[0].sharding.spec)
    # C: one fit, its 4 trajectories split over 4 devices (data parallelism)
    m0 = member(models, 0)
    c1 = fit(m0, data, strat, [Adam(lr=0.05, steps=10)], key=jr.key(4), chunk=10, verbose=False)
    sharded = shard_trajectories(data, make_mesh(members=1, traj=4))
    c4 = fit(m0, sharded, strat, [Adam(lr=0.05, steps=10)], key=jr.key(4), chunk=10, verbose=False)
    out["C"] = {"params": diff(c1.model, c4.model),
                "history": rel(c1.history["loss"], c4.history["loss"]),
                "final": rel(c1.final_loss, c4.final_loss),
                "data_sharding": str(sharded.ys.sharding.spec)}
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def multi():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


# Sharding splits the same program over devices; in float64 the results agree to ~1e-10 relative
# (XLA may fuse and reduce in another order per device layout; often they agree exactly).
TOL = 1e-10


def test_forced_host_devices(multi):
    assert multi["devices"] == 4


def test_sharded_ensemble_equals_unsharded(multi):
    a = multi["A"]
    assert a["params"] < TOL and a["final"] < TOL and a["history"] < TOL
    assert a["rejected_equal"] and a["stopped_equal"]


def test_sharded_ensemble_resumes_bit_for_bit(multi):
    d = multi["D"]
    assert d["params_equal"] and d["history_equal"] and d["final_equal"]
    assert d["sharding"] == d["uninterrupted_sharding"]  # placed as the uninterrupted run's


def test_diverging_member_in_a_sharded_ensemble(multi):
    rej = np.array(multi["A"]["rejected"])
    assert rej[1, 0] == 19 and rej[[0, 2, 3, 4, 5]].sum() == 0  # its first step was accepted


def test_members_and_trajectories_sharded_with_lbfgs(multi):
    b = multi["B"]
    assert b["params"] < TOL and b["final"] < TOL and b["history"] < TOL
    assert b["rejected_equal"] and b["stopped_equal"]
    assert np.all(np.isfinite(b["final_losses"]))
    assert "'members'" in b["sharding"]  # the trained models stay split over the devices


def test_trajectory_data_parallel_fit_equals_single_device(multi):
    c = multi["C"]
    assert c["params"] < TOL and c["history"] < TOL and c["final"] < TOL
    assert "'traj'" in c["data_sharding"]


# ---------------------------------------------------------------- helpers on one device
def test_make_mesh_checks_sizes():
    mesh = make_mesh()
    assert mesh.axis_names == (MEMBERS, TRAJ)
    assert axis_size(mesh, MEMBERS) == len(jax.devices()) and axis_size(mesh, TRAJ) == 1
    assert axis_size(None, MEMBERS) == 1
    with pytest.raises(ValueError, match="exceeds"):
        make_mesh(members=len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="traj"):
        make_mesh(traj=0)


def test_init_distributed_is_a_no_op_on_one_process(monkeypatch):
    for var in (
        "UDE_COORDINATOR",
        "JAX_COORDINATOR_ADDRESS",
        "SLURM_NTASKS",
        "UDE_NUM_PROCESSES",
        "UDE_PROCESS_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed()
    assert info["process_count"] == 1 and info["process_id"] == 0
    assert info["devices"] == len(jax.devices())
    monkeypatch.setenv("UDE_COORDINATOR", "localhost:1234")
    with pytest.raises(ValueError, match="num_processes"):
        init_distributed()


def test_pad_and_place_members():
    tree = {"w": jnp.arange(6.0).reshape(3, 2), "k": jr.split(jr.key(0), 3), "s": "name"}
    padded = pad_members(tree, 4)
    assert padded["w"].shape == (4, 2) and padded["k"].shape == (4,) and padded["s"] == "name"
    np.testing.assert_array_equal(padded["w"][3], tree["w"][0])
    mesh = make_mesh(members=1)
    placed = shard_members(padded, mesh)
    np.testing.assert_array_equal(to_host(placed["w"]), padded["w"])
    assert jnp.issubdtype(placed["k"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(to_host(jr.key_data(placed["k"])), jr.key_data(padded["k"]))
    np.testing.assert_array_equal(to_host(replicate(tree, mesh)["w"]), tree["w"])
