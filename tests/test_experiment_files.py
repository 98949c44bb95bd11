"""Experiment files: the long format and one file per experiment read into one Dataset, written
back exactly, and every malformed file refused with its file, line and column named."""

import hashlib

import jax
import numpy as np
import pytest

from ude.data import Dataset, ExperimentInputs, InputSignal, concat
from ude.data.experiment_files import load_experiment_files, load_experiments, write_experiments
from ude.errors import DataError

LONG = """\
# system: reactor
# made by hand
experiment,time,A,B,F_in,T
run1,0.0,1.0,0.0,0.5,300
run2,0.0,2.0,,1.5,310
run1,0.5,0.8,0.1,0.25,300
# a comment between rows
run1,1.25,NA,0.3,0.0,300
run2,2.0,1.1,0.7,1.0,310
"""


def _experiment(name, ts, ys, mask, us=None, consts=None, kind="linear"):
    signal = None if us is None else InputSignal(ts, us, ("u", "w"), kind)
    inputs = None if signal is None and not consts else ExperimentInputs(signal, consts)
    ys = np.asarray(ys, float)
    return Dataset(
        np.asarray(ts, float),
        np.where(mask, ys, 0.0)[None],
        np.asarray(mask)[None],
        state_names=("x", "y"),
        inputs=inputs,
        experiment_names=(name,),
    )


def _two_experiments(kind="linear"):
    """Two experiments of different lengths, irregular times, partly observed, with a signal of
    two inputs and a constant; names that need quoting."""
    rng = np.random.default_rng(0)
    t1 = np.array([0.0, 0.1, 0.35, 1.0 / 3.0 + 1.0, 2.5])
    t2 = np.array([-1.0, 0.7, 1e-3 + 3.0])
    m1 = rng.random((5, 2)) > 0.3
    m1[0] = True
    m2 = np.array([[True, False], [False, True], [True, True]])
    a = _experiment(
        "#1, warm", t1, rng.normal(size=(5, 2)), m1, rng.normal(size=(5, 2)), {"T": 1 / 7}
    )
    b = _experiment(
        'b "cold"', t2, rng.normal(size=(3, 2)), m2, rng.normal(size=(3, 2)), {"T": -2.0}
    )
    return concat([a, b], names=["#1, warm", 'b "cold"'])


def _inputs(d: Dataset, name) -> ExperimentInputs:
    """Experiment ``name``'s inputs without the leading experiment axis."""
    return jax.tree_util.tree_map(lambda x: x[0], d.experiment(name).inputs)


def _assert_same(got: Dataset, want: Dataset):
    assert got.experiment_names == want.experiment_names
    assert got.state_names == want.state_names and got.input_names == want.input_names
    assert got.lengths == want.lengths
    for i in range(want.n_traj):
        g, w = got.experiment(i), want.experiment(i)
        np.testing.assert_array_equal(np.asarray(g.ts), np.asarray(w.ts))
        np.testing.assert_array_equal(np.asarray(g.mask), np.asarray(w.mask))
        np.testing.assert_array_equal(np.asarray(g.ys), np.asarray(w.ys))
        if w.inputs is None:
            assert g.inputs is None
            continue
        gi, wi = _inputs(got, i), _inputs(want, i)
        assert gi.signal.kind == wi.signal.kind and gi.names == wi.names
        np.testing.assert_array_equal(np.asarray(gi.signal.ts), np.asarray(w.ts))
        np.testing.assert_array_equal(np.asarray(gi.signal.us), np.asarray(wi.signal.us))
        np.testing.assert_array_equal(np.asarray(gi.constants), np.asarray(wi.constants))


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_write_then_load_is_exact(tmp_path, suffix):
    data = _two_experiments()
    path = tmp_path / f"data{suffix}"
    write_experiments(data, path, header={"system": "toy", "params": [1.5, 2]})
    text = path.read_text()
    assert text.startswith("# system: toy\n# params: [1.5, 2]\nexperiment")
    assert ("\t" in text) == (suffix == ".tsv")
    got = load_experiments(path, states=["x", "y"], inputs=["u", "w"], constants=["T"])
    _assert_same(got, data)
    prov = got.provenance
    assert prov["file"] == str(path) and prov["header"] == ["system: toy", "params: [1.5, 2]"]
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    write_experiments(
        got, tmp_path / f"again{suffix}", header={"system": "toy", "params": [1.5, 2]}
    )
    assert (tmp_path / f"again{suffix}").read_text() == text


def test_write_without_inputs_and_with_header_lines(tmp_path):
    d = _two_experiments()
    plain = concat(
        [
            _experiment(n, d.experiment(n).ts, d.experiment(n).ys[0], d.experiment(n).mask[0])
            for n in d.experiment_names
        ]
    )
    write_experiments(plain, tmp_path / "d.csv", header=["first line", "two\nlines"])
    assert (tmp_path / "d.csv").read_text().splitlines()[:4] == [
        "# first line",
        "# two",
        "# lines",
        "experiment,time,x,y",
    ]
    got = load_experiments(tmp_path / "d.csv", states=["x", "y"])
    _assert_same(got, plain)


def test_write_evaluates_a_finer_signal_at_the_row_times(tmp_path):
    fine = np.linspace(0.0, 2.0, 9)
    signal = InputSignal(fine, np.stack([np.sin(fine), fine**2], 1), ("u", "w"))
    ts = np.array([0.0, 0.3, 1.1, 2.0])
    d = Dataset(ts, np.ones((4, 2)), state_names=("x", "y"), inputs=ExperimentInputs(signal))
    write_experiments(d, tmp_path / "d.csv")
    got = load_experiments(tmp_path / "d.csv", states=["x", "y"], inputs=["u", "w"])
    want = np.stack([np.asarray(signal(t)) for t in ts])
    np.testing.assert_allclose(np.asarray(_inputs(got, 0).signal.us), want, rtol=1e-12)


def test_long_format_rows_comments_missing_cells_and_mapping(tmp_path):
    path = tmp_path / "reactor.csv"
    path.write_text(LONG)
    d = load_experiments(
        path,
        states={"a": "A", "b": "B"},
        inputs={"feed": "F_in"},
        constants={"temp": "T"},
        interpolation="constant",
    )
    assert d.experiment_names == ("run1", "run2") and d.lengths == (3, 2)
    assert d.state_names == ("a", "b") and d.input_names == ("feed", "temp")
    r1, r2 = d.experiment("run1"), d.experiment("run2")
    np.testing.assert_array_equal(np.asarray(r1.ts), [0.0, 0.5, 1.25])
    np.testing.assert_array_equal(np.asarray(r1.mask[0]), [[1, 1], [1, 1], [0, 1]])
    np.testing.assert_array_equal(np.asarray(r1.ys[0]), [[1.0, 0.0], [0.8, 0.1], [0.0, 0.3]])
    np.testing.assert_array_equal(np.asarray(r2.mask[0]), [[1, 0], [1, 1]])
    u1, u2 = _inputs(d, "run1"), _inputs(d, "run2")
    assert u1.signal.kind == "constant" and u1.signal.names == ("feed",)
    np.testing.assert_array_equal(np.asarray(u1.signal.ts), [0.0, 0.5, 1.25])
    np.testing.assert_array_equal(np.asarray(u1.signal.us)[:, 0], [0.5, 0.25, 0.0])
    assert float(u1.constants[0]) == 300.0 and float(u2.constants[0]) == 310.0
    prov = d.provenance
    assert prov["header"] == ["system: reactor", "made by hand", "a comment between rows"]
    assert prov["states"] == {"a": "A", "b": "B"} and prov["constants"] == {"temp": "T"}
    assert prov["experiments"] == ["run1", "run2"] and prov["experiment_column"] == "experiment"


def test_one_file_per_experiment_matches_the_long_format(tmp_path):
    (tmp_path / "long.csv").write_text(LONG)
    (tmp_path / "run1.tsv").write_text(
        "# run one\ntime\tA\tB\tF_in\tT\n0\t1\t0\t0.5\t300\n0.5\t0.8\t0.1\t0.25\t300\n"
        "1.25\t\t0.3\t0\t300\n"
    )
    (tmp_path / "run2.csv").write_text("time,T,F_in,B,A\n0,310,1.5,NA,2\n2,310,1,0.7,1.1\n")
    kw = dict(states=["A", "B"], inputs=["F_in"], constants=["T"])
    files = {"run1": tmp_path / "run1.tsv", "run2": str(tmp_path / "run2.csv")}
    d = load_experiment_files(files, **kw)
    _assert_same(d, load_experiments(tmp_path / "long.csv", **kw))
    prov = d.provenance
    assert prov["source"] == "experiment_files"
    assert prov["files"]["run1"]["header"] == ["run one"]
    assert prov["files"]["run2"]["file"] == str(tmp_path / "run2.csv")


HEAD = "experiment,time,x,y,u,T\n"
# (file text, the line and column the error names, a phrase of the message)
MALFORMED = {
    "non-numeric state": (HEAD + "a,0,1,2,0,1\na,1,1,oops,0,1\n", 3, "y", "'oops' is not a number"),
    "non-numeric time": (HEAD + "a,0,1,2,0,1\na,one,1,2,0,1\n", 3, "time", "not a number"),
    "infinite state": (HEAD + "a,0,1,2,0,1\na,1,inf,2,0,1\n", 3, "x", "not finite"),
    "missing time": (HEAD + "a,0,1,2,0,1\na,,1,2,0,1\n", 3, "time", "time is missing"),
    "duplicate time": (HEAD + "a,0,1,2,0,1\na,0,1,2,0,1\n", 3, "time", "repeats"),
    "decreasing time": (
        HEAD + "a,0,1,2,0,1\nb,0,1,2,0,1\nb,1,1,2,0,1\na,2,1,2,0,1\n# c\na,1.5,1,2,0,1\n",
        7,
        "time",
        "comes before time 2.0 (line 5)",
    ),
    "one point": (
        HEAD + "a,0,1,2,0,1\nb,0,1,2,0,1\na,1,1,2,0,1\n",
        3,
        "experiment",
        "'b' has 1 row",
    ),
    "missing column": (
        "experiment,time,x,u,T\na,0,1,0,1\na,1,1,0,1\n",
        1,
        "y",
        "not in the header",
    ),
    "header only": ("# note\n\nexperiment,time,x,y,u,T\n", 3, "x", "no data rows"),
    "varying constant": (HEAD + "a,0,1,2,0,1\na,1,1,2,0,1\na,2,1,2,0,1.5\n", 4, "T", "is 1.5 here"),
    "missing input": (HEAD + "a,0,1,2,0,1\na,1,1,2,NA,1\n", 3, "u", "input value is missing"),
    "non-numeric input": (HEAD + "a,0,1,2,0,1\na,1,1,2,x1,1\n", 3, "u", "not a number"),
    "missing constant": (HEAD + "a,0,1,2,0,1\na,1,1,2,0,\n", 3, "T", "constant value is missing"),
    "empty experiment": (HEAD + "a,0,1,2,0,1\n,1,1,2,0,1\n", 3, "experiment", "is empty"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_long_files_name_file_line_and_column(tmp_path, case):
    text, line, column, phrase = MALFORMED[case]
    path = tmp_path / "bad_file.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_experiments(path, states=["x", "y"], inputs=["u"], constants=["T"])
    msg = str(err.value)
    assert "bad_file.csv" in msg and f"line {line}" in msg and repr(column) in msg, msg
    assert phrase in msg, msg
    if case == "missing column":
        assert "['experiment', 'time', 'x', 'u', 'T']" in msg
    assert list(tmp_path.iterdir()) == [path] and path.read_text() == text  # nothing written


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no header or data rows"),
        ("# only\n# comments\n\n", "no header or data rows"),
        (HEAD + "a,0,1,2,0,1,9\n", "line 2 has 7 cells, the header (line 1) has 6"),
        ("experiment,time,x,x,y,u,T\n", "line 1: duplicate column names"),
    ],
)
def test_files_without_rows_or_with_ragged_rows(tmp_path, text, message):
    path = tmp_path / "bad_file.csv"
    path.write_text(text)
    with pytest.raises(DataError, match="bad_file.csv") as err:
        load_experiments(path, states=["x", "y"], inputs=["u"], constants=["T"])
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text, line, column, phrase",
    [
        ("time,x\n0,1\n", 2, "time", "'e1' has 1 row"),
        ("time,x\n0,1\n1,1\n1,2\n", 4, "time", "repeats"),
        ("x\n0\n1\n", 1, "time", "not in the header; the columns are ['x']"),
        ("time,x\n", 1, "x", "no data rows"),
        ("time,x,T\n0,1,2\n1,1,3\n", 3, "T", "constant 'T' of experiment 'e1'"),
    ],
)
def test_malformed_experiment_files(tmp_path, text, line, column, phrase):
    (tmp_path / "good.csv").write_text("time,x,T\n0,1,2\n1,1,2\n")
    (tmp_path / "bad_one.csv").write_text(text)
    files = {"e0": tmp_path / "good.csv", "e1": tmp_path / "bad_one.csv"}
    with pytest.raises(DataError) as err:
        load_experiment_files(files, states=["x"], constants=["T"] if "T" in text else ())
    msg = str(err.value)
    assert "bad_one.csv" in msg and f"line {line}" in msg and repr(column) in msg, msg
    assert phrase in msg, msg


def test_invalid_arguments_are_value_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(LONG)
    with pytest.raises(DataError, match="file not found"):
        load_experiments(tmp_path / "nope.csv", states=["A"])
    for kw, match in [
        (dict(states=[]), "at least one column"),
        (dict(states=["A"], interpolation="spline"), "interpolation"),
        (dict(states=["A"], constants=["A"]), "used twice"),
        (dict(states={"a": "A", "b": "A"}), "read once"),
        (dict(states=["time"]), "read once"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_experiments(path, **kw)
    with pytest.raises(ValueError, match="non-empty map"):
        load_experiment_files({}, states=["A"])


def test_write_refuses_what_it_cannot_read_back(tmp_path):
    d = _two_experiments()
    with pytest.raises(ValueError, match=r"\.csv, \.tsv or \.tab"):
        write_experiments(d, tmp_path / "d.txt")
    bad = concat([d.experiment(0), d.experiment(1)], names=[" padded", "b"])
    with pytest.raises(ValueError, match="cannot write the name"):
        write_experiments(bad, tmp_path / "d.csv")
    clash = Dataset(np.arange(2.0), np.ones((2, 1)), state_names=("time",))
    with pytest.raises(ValueError, match="repeat a name"):
        write_experiments(clash, tmp_path / "d.csv")
    assert not list(tmp_path.iterdir())
