"""Experiments in configs: data.experiments (own y0, times, inputs, constants), inputs read by the
equations and the network, held-out experiments, the long-format file written by
`ude simulate --csv` and read back through data.file, and the errors of each."""

from __future__ import annotations

import json
from pathlib import Path

import jax.random as jr
import numpy as np
import pytest

from ude import cli
from ude.config import ConfigError, load_config, read_yaml, validate_config
from ude.pipeline.builders import build_data, build_model, split_data, split_experiments

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "forced_oscillator.yaml"


def _raw():
    return read_yaml(CONFIG.read_text())


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def data(cfg):
    return build_data(cfg)


def test_each_experiment_has_its_times_start_and_input(cfg, data):
    exps = cfg.data.experiments
    assert data.experiment_names == tuple(e.name for e in exps)
    assert data.lengths == tuple(len(e.times()) for e in exps)
    assert data.input_names == ("u",)
    for i, e in enumerate(exps):
        one = data.experiment(i)
        np.testing.assert_allclose(np.asarray(one.ts), e.times(), atol=1e-12)
        np.testing.assert_allclose(np.asarray(one.y_true)[0, 0], e.y0, atol=1e-12)
        # the signal interpolates the input's expression of t (sampled at 101 times)
        t = np.linspace(*e.t_span, 7)
        want = {
            "e1": 0.5 * np.sin(1.2 * t),
            "e2": np.sin(0.7 * t),
            "e3": 0.8 * np.cos(1.6 * t),
            "e4": 0.3 + 0.6 * np.sin(2.1 * t),
            "e5": 0.7 * np.sin(t),
        }[e.name]
        got = np.array([float(one.inputs_of(0)(tk)[0]) for tk in t])
        np.testing.assert_allclose(got, want, atol=5e-3)
    # noise draws differ between experiments
    res = [np.asarray(data.experiment(i).ys - data.experiment(i).y_true) for i in range(2)]
    assert not np.allclose(res[0][0, :5], res[1][0, :5])


def test_held_out_experiments_are_kept_apart(cfg, data):
    train, held = split_experiments(cfg, data)
    assert held.experiment_names == ("e5",) and "e5" not in train.experiment_names
    assert split_data(cfg, data)[0].experiment_names == train.experiment_names


@pytest.mark.parametrize(
    "fraction, seed, count", [(0.2, 0, 1), (0.4, 0, 2), (0.4, 7, 2), (0.9, 1, 4)]
)
def test_a_split_by_fraction_holds_out_a_seeded_share(data, fraction, seed, count):
    cfg = validate_config(_edit("data.held_out_experiments", {"fraction": fraction, "seed": seed}))
    train, held = split_experiments(cfg, data)
    assert len(held.experiment_names) == count  # round(fraction * 5), at least 1, at most 4
    assert set(train.experiment_names) | set(held.experiment_names) == set(data.experiment_names)
    assert not set(train.experiment_names) & set(held.experiment_names)
    again = split_experiments(cfg, data)[1].experiment_names
    assert again == held.experiment_names  # the seed fixes the draw
    if (fraction, seed) == (0.4, 7):  # another seed draws other experiments
        other = validate_config(_edit("data.held_out_experiments", {"fraction": 0.4, "seed": 0}))
        assert split_experiments(other, data)[1].experiment_names != held.experiment_names


def test_the_equations_and_the_network_read_the_input(cfg):
    model = build_model(cfg, jr.key(0))
    assert model.known.input_names == ("u",)
    assert cfg.truth.inputs == ["u"]
    raw = _raw()
    raw["model"]["network"]["inputs"] = ["x", "v", "u"]
    model = build_model(validate_config(raw), jr.key(0))
    assert model.signals == ("u",) and model.correction.in_size == 3


def _problems(raw) -> str:
    with pytest.raises(ConfigError) as e:
        validate_config(raw)
    return str(e.value)


def _edit(path, value):
    raw = _raw()
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


@pytest.mark.parametrize(
    "path,value,words",
    [
        ("data.experiments.1.inputs", {}, "data.experiments[1].inputs"),
        ("data.experiments.0.y0", [1.0], "must have 2 values"),
        ("data.held_out_experiments", ["e9"], "no experiment 'e9'"),
        ("data.held_out_experiments", ["e1", "e2", "e3", "e4", "e5"], "none is left"),
        ("data.held_out_experiments", {"fraction": 1.0}, "held_out_experiments.fraction"),
        ("data.held_out_experiments", {"fraction": 0.2, "seeds": 1}, "held_out_experiments.seeds"),
        ("data.experiments.2.name", "e1", "repeated"),
        ("data.experiments.0.inputs", {"u": "sin(w*t)"}, "inputs.u"),
        ("model.network.inputs", ["x", "w"], "model.network.inputs[1]"),
        ("model.known", {"x": "v", "v": "-k*x + w"}, "model.known.v"),
        ("truth.y0", [[1.0, 0.0]], "truth.y0"),
        ("data.t_span", [0.0, 1.0], "data.t_span"),
    ],
)
def test_bad_experiment_configs_name_the_key(path, value, words):
    assert words in _problems(_edit(path, value))


def test_simulate_writes_a_long_file_that_data_file_reads_back(tmp_path, cfg, data):
    csv = tmp_path / "osc.csv"
    code = cli.main(
        ["simulate", str(CONFIG), "--out", str(tmp_path / "sim"), "--quiet", "--csv", str(csv)]
    )
    assert code == 0
    text = csv.read_text()
    assert text.startswith("#") and "written by" in text and "e5" in text
    raw = _raw()
    raw["truth"] = None
    del raw["truth"]
    raw["data"] = {
        "file": {
            "path": str(csv),
            "experiment": "experiment",
            "time": "time",
            "states": ["x", "v"],
        },
        "inputs": ["u"],
        "held_out_experiments": ["e5"],
    }
    raw["model"]["parameters"] = {"k": 1.0, "c": 0.3}
    back = build_data(validate_config(raw))
    assert back.experiment_names == data.experiment_names and back.lengths == data.lengths
    np.testing.assert_allclose(np.asarray(back.ys), np.asarray(data.ys), rtol=0, atol=1e-12)
    # the file holds the input at the data times: the signals agree there
    for i in range(data.n_traj):
        t = np.asarray(data.experiment(i).ts)
        a = [float(back.inputs_of(i)(tk)[0]) for tk in t]
        b = [float(data.inputs_of(i)(tk)[0]) for tk in t]
        np.testing.assert_allclose(a, b, atol=1e-12)
    meta = json.loads((tmp_path / "sim" / "data.json").read_text())
    assert meta["experiment_names"] == list(data.experiment_names)
    # the shipped file is what `ude simulate` writes today (apart from the command line it names)
    shipped = (ROOT / "data" / "forced_oscillator.csv").read_text().splitlines()
    assert (
        shipped[0].startswith("# written by: ude")
        and "--csv data/forced_oscillator.csv" in shipped[0]
    )
    assert shipped[1:] == text.splitlines()[1:]


SHIPPED_FILE_CONFIG = ROOT / "configs" / "forced_oscillator_file.yaml"
CSV_LINES = (ROOT / "data" / "forced_oscillator.csv").read_text().splitlines()
FIRST_ROW = next(i for i, line in enumerate(CSV_LINES) if line.startswith("e1,"))


def _with_row(i: int, row: str | None) -> list[str]:
    lines = list(CSV_LINES)
    if row is None:
        del lines[i]
    else:
        lines[i] = row
    return lines


def _only_rows_of(name: str) -> list[str]:
    keep = [line for line in CSV_LINES if line.startswith("#") or not line.startswith(name + ",")]
    first = next(line for line in CSV_LINES if line.startswith(name + ","))
    return keep + [first]


# a malformed file given to `ude run`: (lines, overrides, file line named (1-based), column, words)
BAD_FILES = {
    "non-numeric cell": (_with_row(FIRST_ROW + 3, "e1,0.6,0.71,oops,0.33"), [], 4, "v", "'oops'"),
    "duplicate time": (
        _with_row(FIRST_ROW + 3, "e1,0.4,0.71,-0.81,0.33"),
        [],
        4,
        "time",
        "repeats",
    ),
    "decreasing time": (
        _with_row(FIRST_ROW + 3, "e1,0.1,0.71,-0.81,0.33"),
        [],
        4,
        "time",
        "before",
    ),
    "one point": (_only_rows_of("e3"), [], None, "experiment", "'e3' has 1 row"),
    "unknown column": (CSV_LINES, ["data.file.states=[x, w]"], None, "w", "not in the header"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_ude_run_on_a_malformed_experiments_file_exits_2_and_writes_nothing(tmp_path, capsys, case):
    lines, overrides, line, column, words = BAD_FILES[case]
    csv = tmp_path / "lab.csv"
    csv.write_text("\n".join(lines) + "\n")
    sets = [a for o in [f"data.file.path={csv}", *overrides] for a in ("--set", o)]
    out = tmp_path / "run"
    code = cli.main(["run", str(SHIPPED_FILE_CONFIG), "--out", str(out), "--quiet", *sets])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "lab.csv" in err and repr(column) in err and words in err, err
    if line is not None:
        assert f"line {FIRST_ROW + line}" in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lab.csv"]
