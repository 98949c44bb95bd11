"""Datasets: truth against scipy, noise formulas and statistics, masks, windows, files, tables."""

import json
import os
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, reference_field, scipy_reference
from hypothesis import given, settings, strategies as st

from ude.data import (
    HUDSON_BAY_PATH,
    Dataset,
    GaussianNoise,
    LogNormalNoise,
    NoNoise,
    RelativeMeanNoise,
    hudson_bay,
    load,
    load_table,
    noise_from_dict,
    observation_mask,
    save,
    simulate,
)
from ude.data.provenance import join_provenance, split_provenance
from ude.errors import DataError
from ude.physics import LotkaVolterra

LV_PARAMS, LV_Y0, _ = CASES["lotka_volterra"]
TS = np.linspace(0.0, 3.0, 31)
# The truth should match scipy's DOP853 at rtol 1e-13 to ~1e-12; 1e-10 leaves room for both.
TRUTH_RTOL = 1e-10
SCENARIO2_Y_TIMES = [0.0, 1.2, 2.4, 3.6, 4.8, 6.0]


@pytest.fixture(scope="module")
def lv_data():
    return simulate(
        LotkaVolterra(**LV_PARAMS), jnp.asarray(LV_Y0), TS, noise=RelativeMeanNoise(0.05), key=0
    )


@pytest.fixture(scope="module")
def lv_multi():
    """Two trajectories at irregular times, y observed at three of them."""
    rng = np.random.default_rng(0)
    ts = np.sort(np.concatenate([[0.0, 0.5, 2.5], rng.uniform(0.0, 2.5, 9)]))
    y0 = np.array([LV_Y0, [1.0, 1.0]])
    return simulate(
        LotkaVolterra(**LV_PARAMS),
        y0,
        ts,
        noise=GaussianNoise(0.01),
        key=jax.random.key(3),
        observe={"y": [0.0, 0.5, 2.5]},
    )


def lv_reference(y0, ts):
    return scipy_reference(
        reference_field("lotka_volterra", LV_PARAMS), y0, ts, rtol=1e-13, atol=1e-14
    )


# ---- simulate ------------------------------------------------------------------------------------
def test_truth_matches_scipy(lv_data):
    assert lv_data.ys.shape == lv_data.y_true.shape == (1, 31, 2)
    assert lv_data.ys.dtype == jnp.float64 and lv_data.state_names == ("x", "y")
    np.testing.assert_allclose(lv_data.y_true[0], lv_reference(LV_Y0, TS), rtol=TRUTH_RTOL, atol=0)
    np.testing.assert_array_equal(lv_data.ts, TS)
    assert lv_data.mask.all()


def test_truth_many_initial_states_irregular_times(lv_multi):
    d = lv_multi
    assert d.n_traj == 2 and d.n_times == 12 and d.n_states == 2
    for i in range(2):
        np.testing.assert_allclose(
            d.y_true[i], lv_reference(d.provenance["y0"][i], d.ts), rtol=TRUTH_RTOL, atol=0
        )
    m = np.asarray(d.mask)
    assert m[:, :, 0].all()
    assert m[:, :, 1].sum(axis=1).tolist() == [3, 3]
    np.testing.assert_array_equal(np.asarray(d.ts)[m[0, :, 1]], [0.0, 0.5, 2.5])
    assert np.all(np.asarray(d.ys)[~m] == 0.0)
    assert d.observed_states() == ("x", "y")


def test_provenance_records_the_experiment(lv_data, lv_multi):
    p = lv_data.provenance
    assert p["system"] == "LotkaVolterra" and p["parameters"] == LV_PARAMS
    assert p["noise"] == {"kind": "relative_mean", "level": 0.05}
    assert p["seed"] == 0 and isinstance(p["seed"], int)
    assert p["y0"] == [list(LV_Y0)]
    assert p["truth_solver"]["rtol"] == 1e-12
    assert lv_multi.provenance["seed"] == [0, 3]  # key data of jax.random.key(3)
    assert lv_multi.provenance["observe"] == {"y": [0.0, 0.5, 2.5]}
    json.dumps(p)


def test_simulated_noise_is_the_noise_model(lv_data):
    expected = RelativeMeanNoise(0.05).apply(lv_data.y_true, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(lv_data.ys, expected)


def test_simulate_refuses_divergence():
    # β < 0 turns predation into mutual growth: x and y blow up in finite time before t = 3.
    with pytest.raises(ValueError, match="ground-truth solve .* failed .*maximum number"):
        simulate(LotkaVolterra(1.3, -0.9, 1.8, 0.8), jnp.asarray(LV_Y0), TS)


def test_simulate_argument_errors():
    lv = LotkaVolterra(**LV_PARAMS)
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate(lv, jnp.asarray(LV_Y0), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="y0"):
        simulate(lv, jnp.ones((2, 2, 2)), TS)
    with pytest.raises(ValueError, match="key is required"):
        simulate(lv, jnp.asarray(LV_Y0), TS, noise=GaussianNoise(0.1))
    with pytest.raises(ValueError, match="state_names"):
        simulate(lv, jnp.ones(3), TS)


def test_simulate_needs_x64():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            simulate(LotkaVolterra(**LV_PARAMS), LV_Y0, TS)
    finally:
        jax.config.update("jax_enable_x64", True)


# ---- noise ---------------------------------------------------------------------------------------
def test_relative_mean_noise_formula_exact():
    key = jax.random.PRNGKey(42)
    ys = jax.random.uniform(jax.random.PRNGKey(1), (2, 7, 3), minval=0.5, maxval=4.0)
    z = np.asarray(jax.random.normal(key, ys.shape, ys.dtype))
    y = np.asarray(ys)
    # Per trajectory and state, the mean over time (the paper's mean(X, dims=2)).
    expected = y + 0.05 * y.mean(axis=1, keepdims=True) * z
    np.testing.assert_allclose(RelativeMeanNoise(0.05).apply(ys, key), expected, rtol=1e-15)
    level = np.array([0.0, 0.1, 0.2])
    np.testing.assert_allclose(
        RelativeMeanNoise(level).apply(ys, key),
        y + level * y.mean(axis=1, keepdims=True) * z,
        rtol=1e-15,
    )
    np.testing.assert_array_equal(RelativeMeanNoise(0.0).apply(ys, key), ys)


N_SAMPLES = 40_000


@pytest.mark.parametrize(
    "noise, kind",
    [
        (GaussianNoise(0.1), "abs"),
        (GaussianNoise(jnp.array([0.1, 0.3])), "abs"),
        (RelativeMeanNoise(0.05), "rel"),
        (LogNormalNoise(0.2), "log"),
    ],
)
def test_noise_statistics(noise, kind):
    ys = jnp.broadcast_to(jnp.array([2.0, 5.0]), (1, N_SAMPLES, 2))
    noisy = np.asarray(noise.apply(ys, jax.random.PRNGKey(7)))
    y = np.asarray(ys)
    if kind == "abs":
        z, sd = noisy - y, np.broadcast_to(np.asarray(noise.sigma), (2,))
    elif kind == "rel":
        z, sd = noisy - y, 0.05 * np.array([2.0, 5.0])
    else:
        z, sd = np.log(noisy / y), np.array([0.2, 0.2])
    z = z.reshape(-1, 2)
    # Sample mean within 5 standard errors; sample sd within 3 % (its sd is ~0.35 % here).
    assert np.all(np.abs(z.mean(axis=0)) < 5 * sd / np.sqrt(N_SAMPLES))
    np.testing.assert_allclose(z.std(axis=0), sd, rtol=0.03)


def test_no_noise_is_identity():
    ys = jnp.arange(6.0).reshape(1, 3, 2)
    np.testing.assert_array_equal(NoNoise().apply(ys, jax.random.PRNGKey(0)), ys)


@pytest.mark.parametrize(
    "noise",
    [
        NoNoise(),
        GaussianNoise(0.1),
        GaussianNoise([0.1, 0.2]),
        RelativeMeanNoise(0.05),
        LogNormalNoise(0.3),
    ],
)
def test_noise_dict_round_trip(noise):
    d = json.loads(json.dumps(noise.to_dict()))
    back = noise_from_dict(d)
    assert type(back) is type(noise) and eqx.tree_equal(back, noise)


def test_noise_errors():
    assert eqx.tree_equal(
        noise_from_dict({"kind": "gaussian", "sigma": 0.1, "level": None}), GaussianNoise(0.1)
    )
    with pytest.raises(ValueError, match="unknown noise"):
        noise_from_dict({"kind": "poisson", "level": 1.0})
    with pytest.raises(ValueError, match="level"):
        noise_from_dict({"kind": "relative_mean", "sigma": 1.0})
    with pytest.raises(ValueError, match="level must be finite and >= 0"):
        RelativeMeanNoise(-0.1)
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(np.ones((2, 2)))


def test_noise_level_sweep_does_not_recompile():
    ys = jnp.ones((1, 5, 2))

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def noisy(noise, key):
        return noise.apply(ys, key)

    for level in (0.001, 0.01, 0.05):
        noisy(RelativeMeanNoise(level), jax.random.PRNGKey(0))


# ---- masks ---------------------------------------------------------------------------------------
def test_scenario2_mask():
    ts = np.linspace(0.0, 6.0, 61)
    m = observation_mask(ts, ("x", "y"), {"y": SCENARIO2_Y_TIMES})
    assert m.shape == (1, 61, 2) and m.sum() == 61 + 6
    assert m[0, :, 0].all()
    assert np.flatnonzero(m[0, :, 1]).tolist() == [0, 12, 24, 36, 48, 60]
    assert observation_mask(ts, ("x", "y"), {"y": "none"}).sum() == 61
    assert observation_mask(ts, ("x", "y"), None, n_traj=3).sum() == 3 * 122
    col = np.zeros(61, bool)
    col[::10] = True
    assert observation_mask(ts, ("x", "y"), {"x": col, "y": "none"}).sum() == 7
    full = np.zeros((61, 2), bool)
    assert not observation_mask(ts, ("x", "y"), full, n_traj=2).any()


def test_mask_errors():
    ts = np.linspace(0.0, 6.0, 61)
    with pytest.raises(ValueError, match="unknown state 'z'"):
        observation_mask(ts, ("x", "y"), {"z": "all"})
    with pytest.raises(ValueError, match=r"observe\['y'\]: time 1.25 is not one of the save times"):
        observation_mask(ts, ("x", "y"), {"y": [0.0, 1.25]})
    with pytest.raises(ValueError, match="shape"):
        observation_mask(ts, ("x", "y"), np.ones((60, 2), bool))
    with pytest.raises(ValueError, match="'all', 'none'"):
        observation_mask(ts, ("x", "y"), {"y": "some"})


def test_with_mask(lv_data):
    d = lv_data.with_mask({"y": [0.0, 1.5, 3.0], "x": "all"})
    m = np.asarray(d.mask)
    assert m.sum() == 31 + 3
    np.testing.assert_array_equal(np.asarray(d.ys)[m], np.asarray(lv_data.ys)[m])
    assert np.all(np.asarray(d.ys)[~m] == 0.0)
    np.testing.assert_array_equal(d.y_true, lv_data.y_true)
    gone = d.with_mask({"y": "none"})
    assert gone.observed_states() == ("x",) and gone.n_observed() == 31
    # Masks only remove observations.
    assert gone.with_mask({"y": "all"}).n_observed() == 31


# ---- windows and splits --------------------------------------------------------------------------
def test_window_and_split(lv_data):
    w = lv_data.window(0.5, 1.5)
    np.testing.assert_allclose(w.ts, TS[5:16])
    np.testing.assert_array_equal(w.ys, lv_data.ys[:, 5:16])
    np.testing.assert_array_equal(w.y_true, lv_data.y_true[:, 5:16])
    train, held = lv_data.split(2.0)
    assert train.n_times == 21 and held.n_times == 10
    assert float(train.ts[-1]) == pytest.approx(2.0) and float(held.ts[0]) == pytest.approx(2.1)
    np.testing.assert_array_equal(np.concatenate([train.ys, held.ys], axis=1), lv_data.ys)
    assert train.provenance["split"] == "train" and held.provenance["t_train_end"] == 2.0
    assert train.provenance["seed"] == 0
    with pytest.raises(ValueError, match="window: no save times"):
        lv_data.window(3.5, 4.0)
    with pytest.raises(ValueError, match="one side empty"):
        lv_data.split(3.0)


def test_trajectories(lv_multi):
    one = lv_multi.trajectories(1)
    assert one.n_traj == 1
    np.testing.assert_array_equal(one.ys[0], lv_multi.ys[1])


# ---- Dataset construction and jit ----------------------------------------------------------------
def test_dataset_construction():
    ts = jnp.linspace(0.0, 1.0, 4)
    ys = jnp.stack([ts, jnp.full(4, jnp.nan)], axis=-1)
    d = Dataset(ts, ys, state_names=("a", "b"))
    assert d.ys.shape == (1, 4, 2) and d.observed_states() == ("a",)
    assert np.all(np.asarray(d.ys)[..., 1] == 0.0)
    assert d.y_true is None and d.provenance == {}
    with pytest.raises(ValueError, match="strictly increasing"):
        Dataset(ts[::-1], ys)
    with pytest.raises(ValueError, match="3 times but ts has 4"):
        Dataset(ts, ys[:3])
    with pytest.raises(ValueError, match="state_names"):
        Dataset(ts, ys, state_names=("a",))
    with pytest.raises(ValueError, match="not finite at observed entry"):
        Dataset(ts, ys, jnp.ones((4, 2), bool))


def test_jit_does_not_retrace_for_new_data(lv_data):
    lv = LotkaVolterra(1.2, 0.9, 1.8, 0.8)
    other = simulate(lv, jnp.array([1.0, 2.0]), TS, noise=RelativeMeanNoise(0.01), key=5)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def sse(data):
        return jnp.sum(jnp.where(data.mask, (data.ys - data.y_true) ** 2, 0.0))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = sse(lv_data), sse(other)
    assert float(a) > 0 and float(b) > 0 and float(a) != float(b)
    # Provenance numbers travel as a uint32 leaf: exact through jit, and never an inexact leaf.
    assert eqx.filter_jit(lambda d: d)(other).provenance == other.provenance
    assert all(not eqx.is_inexact_array(x) for x in jax.tree.leaves(other) if x.dtype == np.uint32)
    # Datasets of one shape and kind stack into a batch (e.g. for vmap over noise draws).
    batch = jax.tree.map(lambda *x: jnp.stack(x), lv_data, other)
    assert batch.ys.shape == (2, 1, 31, 2)


@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.text(max_size=5)
        | st.floats(allow_nan=False),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_provenance_round_trip(value):
    prov = {"v": value}
    spec, values = split_provenance(prov)
    assert join_provenance(spec, values) == prov
    hash(spec)


# ---- save / load ---------------------------------------------------------------------------------
def test_provenance_keeps_nan_and_inf(tmp_path):
    # why provenance has its own JSON converter, not ude._io.json_safe (NaN, inf -> None)
    prov = {"a": float("nan"), "b": [float("inf"), -float("inf")], "c": np.float32(0.5)}
    d = Dataset(TS, np.zeros((31, 2)), provenance=prov)
    for p in (d.provenance, load(save(d, tmp_path / "d")[0]).provenance):
        assert np.isnan(p["a"]) and p["b"] == [float("inf"), -float("inf")] and p["c"] == 0.5


def test_save_load_round_trip(lv_data, lv_multi, tmp_path):
    for d in (lv_data, lv_multi, hudson_bay()):
        npz, side = save(d, tmp_path / "sub" / "data")
        assert npz.name == "data.npz" and side.name == "data.json"
        back = load(tmp_path / "sub" / "data.npz")
        for k in ("ts", "ys", "mask", "y_true"):
            a, b = getattr(d, k), getattr(back, k)
            if a is None:
                assert b is None
                continue
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        assert back.state_names == d.state_names and back.provenance == d.provenance
    assert sorted(os.listdir(tmp_path / "sub")) == ["data.json", "data.npz"]  # no temp files left
    meta = json.loads(side.read_text())
    assert meta["provenance"]["name"] == "hudson_bay" and len(meta["sha256"]) == 64


@pytest.fixture
def saved(lv_data, tmp_path):
    npz, side = save(lv_data, tmp_path / "d")
    return tmp_path / "d", npz, side


def test_load_refuses_truncated(saved):
    base, npz, _ = saved
    blob = npz.read_bytes()
    npz.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"d\.npz is truncated"):
        load(base)


def test_load_refuses_tampered(saved):
    base, npz, _ = saved
    blob = bytearray(npz.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    npz.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"d\.npz does not match its sidecar d\.json"):
        load(base)


def test_load_refuses_missing_files(saved):
    base, npz, side = saved
    side.unlink()
    with pytest.raises(DataError, match=r"sidecar .*d\.json is missing"):
        load(base)
    with pytest.raises(DataError, match=r"sidecar .*nothing\.json is missing"):
        load(base.with_name("nothing"))


def _forge(base, npz, side, **arrays):
    """Rewrite the npz with ``arrays`` and a sidecar that matches them (checksum, shapes, dtypes),
    so only the content check under test can object."""
    with np.load(npz) as z:
        content = {k: z[k] for k in z.files}
    content.update(arrays)
    content = {k: v for k, v in content.items() if v is not None}
    np.savez(npz, **content)
    import hashlib

    blob = npz.read_bytes()
    meta = json.loads(side.read_text())
    meta.update(
        sha256=hashlib.sha256(blob).hexdigest(),
        bytes=len(blob),
        shapes={k: list(v.shape) for k, v in content.items()},
        dtypes={k: str(v.dtype) for k, v in content.items()},
    )
    side.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: {"ys": np.asarray(d.ys)[:, :-1]}, r"ys must have shape \(traj, 31, state\)"),
        (lambda d: {"mask": np.asarray(d.mask)[..., :1]}, "mask must have the shape of ys"),
        (lambda d: {"mask": np.asarray(d.mask, np.float64)}, "mask must be boolean"),
        (lambda d: {"ts": np.asarray(d.ts, np.int64)}, "ts must be floating point"),
        (lambda d: {"ts": np.where(np.arange(31) == 3, np.nan, d.ts)}, r"finite; ts\[3\] = nan"),
        (lambda d: {"ts": np.asarray(d.ts)[::-1].copy()}, "strictly increasing"),
        (lambda d: {"ys": None}, r"arrays \['ys'\] are missing"),
    ],
)
def test_load_refuses_bad_content(saved, lv_data, change, message):
    base, npz, side = saved
    _forge(base, npz, side, **change(lv_data))
    with pytest.raises(DataError, match=r"load: .*d\.npz: .*" + message):
        load(base)


def test_load_refuses_sidecar_shape_mismatch(saved):
    base, _, side = saved
    meta = json.loads(side.read_text())
    meta["shapes"]["ys"] = [1, 30, 2]
    side.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"d\.npz: ys has shape \(1, 31, 2\), the sidecar says"):
        load(base)


# ---- tables --------------------------------------------------------------------------------------
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_table_csv(tmp_path):
    p = write(tmp_path, "t.csv", "# a comment\n\ntime,a,b,c\n1,2,3,x\n2,NA,6,y\n4,8,,z\n")
    d = load_table(p, time="time", states=["b", "a"], normalize="max", t_offset="first")
    np.testing.assert_array_equal(d.ts, [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(d.mask[0], [[True, True], [True, False], [False, True]])
    np.testing.assert_allclose(d.ys[0], [[0.5, 0.25], [1.0, 0.0], [0.0, 1.0]])
    assert d.state_names == ("b", "a") and d.provenance["scale"] == [6.0, 8.0]
    raw = load_table(p, time="time", states=["a"], names=["A"])
    np.testing.assert_array_equal(raw.ys[0, :, 0], [2.0, 0.0, 8.0])
    np.testing.assert_array_equal(raw.ts, [1.0, 2.0, 4.0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("time\ta\n1\t2\n", r"column\(s\) \['b'\] not found; the columns are \['time', 'a'\]"),
        ("time\ta\tb\n1\t2\t3\n2\tfoo\t3\n", r"line 3, column 'a': 'foo' is not a number"),
        ("time\ta\tb\n1\t2\t3\n2\t3\n", "line 3 has 2 cells, the header has 3"),
        ("", "no header or data rows"),
        ("# only a comment\n", "no header or data rows"),
        ("time\ta\tb\n", "header but no data rows"),
        ("time\ta\tb\n2\t1\t1\n1\t1\t1\n", "strictly increasing"),
        ("1\t2\t3\n", "no header line"),
        ("time\ta\tb\n1\t2\t3\n2\tinf\t3\n", "not finite"),
    ],
)
def test_load_table_errors(tmp_path, text, message):
    p = write(tmp_path, "bad.tsv", text)
    with pytest.raises(DataError, match=r"load_table: .*bad\.tsv: .*" + message):
        load_table(p, time="time", states=["a", "b"])


def test_load_table_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        load_table(tmp_path / "nope.tsv", time="t", states=["a"])


def test_hudson_bay():
    d = hudson_bay()
    assert HUDSON_BAY_PATH.is_file()
    assert d.ys.shape == (1, 21, 2) and d.state_names == ("hare", "lynx")
    np.testing.assert_array_equal(d.ts, np.arange(21.0))
    np.testing.assert_array_equal(np.max(d.ys[0], axis=0), [1.0, 1.0])
    assert d.mask.all() and d.y_true is None
    # 1903: 77.4 hares (the hare maximum); 1904: 59.4 lynx (the lynx maximum).
    assert float(d.ys[0, 3, 0]) == 1.0 and float(d.ys[0, 4, 1]) == 1.0
    np.testing.assert_allclose(d.ys[0, 0], [30 / 77.4, 4 / 59.4], rtol=1e-15)
    raw = hudson_bay(normalize=False, names=("x", "y"))
    np.testing.assert_array_equal(raw.ys[0, -1], [24.7, 8.6])
    assert raw.state_names == ("x", "y")


def test_hudson_bay_missing_file(tmp_path):
    with pytest.raises(DataError, match="hudson_bay: data file .*missing.tsv not found"):
        hudson_bay(tmp_path / "missing.tsv")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"normalize": "min"}, "normalize must be 'max' or None"),
        ({"states": []}, "states must name at least one column"),
        ({"t_offset": "last"}, "t_offset must be a number or 'first'"),
        ({"names": ["A"]}, r"names \('A',\) must give one name per state column"),
    ],
)
def test_load_table_argument_errors_are_plain_value_errors(tmp_path, kwargs, message):
    # a broken file is the data's fault (DataError); a wrong argument is the caller's (ValueError)
    p = write(tmp_path, "t.tsv", "time\ta\tb\n1\t2\t3\n")
    with pytest.raises(ValueError, match=message) as e:
        load_table(p, **{"time": "time", "states": ["a", "b"], **kwargs})
    assert not isinstance(e.value, DataError)


def test_the_package_keeps_the_public_api():
    import ude
    import ude.data as data

    names = [
        "Dataset",
        "concat",
        "InputSignal",
        "ExperimentInputs",
        "stack_inputs",
        "simulate",
        "observation_mask",
        "AbstractNoise",
        "NoNoise",
        "GaussianNoise",
        "RelativeMeanNoise",
        "LogNormalNoise",
        "NOISES",
        "noise_from_dict",
        "save",
        "load",
        "load_table",
        "load_experiments",
        "load_experiment_files",
        "write_experiments",
        "hudson_bay",
        "HUDSON_BAY_PATH",
    ]
    assert sorted(data.__all__) == sorted(names)
    assert all(hasattr(data, n) for n in names + ["FORMAT", "FORMAT_VERSION"])
    assert callable(data.simulate) and ude.simulate is data.simulate  # not the module truth.py
    assert HUDSON_BAY_PATH == Path(ude.__file__).resolve().parent.parent / "data" / "hudson_bay.tsv"
