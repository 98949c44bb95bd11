"""Property-based fuzzing of the inputs of `ude run` / `ude resume` (hypothesis).

Broken YAML configs (wrong types, missing keys, NaN/inf, wrong shapes, unknown keys, reversed
spans, truncated, empty or binary files), broken data tables (non-numbers, NaN/inf times, ragged
rows, missing or duplicate columns, non-monotonic times, truncated or empty files) and broken saved
datasets of a run directory (truncated, bit-flipped, missing or garbled sidecar). Every one must
give exit code 2 and a one-line-per-problem message naming it — no traceback, nothing on stdout —
and leave no run directory behind (or, for `ude resume`, the directory unchanged).

The CLI runs in-process (``ude.cli.main``); no example reaches JAX training, so the module is fast.
The number of broken inputs tried is printed (and recorded, see tests/reliability_report.py).
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from reliability_report import count, flush

from ude import cli, data as data_mod
from ude.config import ConfigError, read_yaml, validate_config
from ude.data.tables import _MISSING as MISSING_CELLS

MODULE = "fuzz"
EXAMPLES = 150
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

BASE = {
    "name": "fuzz",
    "truth": {
        "system": "lotka_volterra",
        "parameters": {"alpha": 1.3, "beta": 0.9, "gamma": 1.8, "delta": 0.8},
        "y0": [0.44, 4.6],
    },
    "data": {"t_span": [0.0, 1.0], "dt": 0.1, "noise": {"kind": "relative_mean", "level": 0.05}},
    "model": {"known": ["growth", "death"], "network": {"width": 3, "depth": 1}},
    "solver": {"name": "tsit5", "rtol": 1e-6, "atol": 1e-6, "max_steps": 256},
    "train": {"stages": [{"kind": "adam", "lr": 0.01, "steps": 2}], "chunk": 2},
    "discovery": {"enabled": False},
    "evaluate": {"dt": 0.1},
    "output": {"figures": False},
}

TABLE_ROWS = [
    (0.0, 1.0, 2.0),
    (1.0, 1.5, 1.8),
    (2.0, 2.1, 1.2),
    (3.0, 2.4, 0.9),
    (4.0, 1.9, 1.1),
    (5.0, 1.2, 1.6),
    (6.0, 0.9, 2.0),
    (7.0, 1.1, 2.2),
]


def table_text(rows=TABLE_ROWS, header=("t", "x", "y")) -> str:
    return "\t".join(header) + "\n" + "".join("\t".join(str(v) for v in r) + "\n" for r in rows)


def table_config(path: Path) -> dict:
    return {
        "name": "fuzz_table",
        "data": {"file": {"path": str(path), "time": "t", "states": ["x", "y"]}},
        "model": {
            "system": "lotka_volterra",
            "known": ["growth", "death"],
            "parameters": {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "delta": 1.0},
            "network": {"width": 3, "depth": 1},
        },
        "train": {"stages": [{"kind": "adam", "lr": 0.01, "steps": 2}], "chunk": 2},
        "discovery": {"enabled": False},
        "output": {"figures": False},
    }


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    flush(MODULE)


def _run_cli(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_rejected(code, out, err, *, names=()):
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    assert "error" in err
    for n in names:
        assert n in err, (n, err)


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
_letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_junk = st.one_of(
    _letters,
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(_letters, st.integers(), min_size=1, max_size=2),
)
_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
_bad_pos_float = st.one_of(st.floats(max_value=0.0), _non_finite, _junk)
_bad_pos_int = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer()),
    _non_finite,
    _junk,
)
_bad_nonneg_int = st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer()),
    _non_finite,
    _junk,
)
_finite = st.floats(-10, 10, allow_nan=False)
_bad_pair = st.one_of(
    st.tuples(_finite, _finite).filter(lambda p: p[1] <= p[0]).map(list),  # reversed or empty
    st.lists(_finite, min_size=0, max_size=4).filter(lambda v: len(v) != 2),  # wrong shape
    st.tuples(_finite, _non_finite).map(list),
    st.tuples(_non_finite, _finite).map(list),
    _letters,
)
_bad_y0 = st.one_of(
    st.lists(_finite, min_size=0, max_size=5).filter(lambda v: len(v) != 2),  # wrong shape
    st.tuples(_finite, _non_finite).map(list),
    st.lists(st.lists(_finite, min_size=3, max_size=3), min_size=1, max_size=2),
    _letters,
    st.dictionaries(_letters, _finite, min_size=1, max_size=2),
)
_bad_name = _letters.filter(
    lambda s: (
        s
        not in (
            "tsit5",
            "euler",
            "heun",
            "midpoint",
            "ralston",
            "bosh3",
            "dopri5",
            "dopri8",
            "kvaerno3",
            "kvaerno4",
            "kvaerno5",
            "lotka_volterra",
        )
    )
)

# key path -> strategy of values that are invalid there
BAD_VALUES = {
    "seed": _bad_nonneg_int,
    "truth.y0": _bad_y0,
    "truth.system": st.one_of(_bad_name, _junk.filter(lambda v: not isinstance(v, str))),
    "truth.parameters.alpha": st.one_of(_non_finite, _junk),
    "truth.tolerance": _bad_pos_float,
    "data.t_span": _bad_pair,
    "data.dt": _bad_pos_float,
    "data.noise.level": st.one_of(st.floats(max_value=-1e-9), _non_finite, _junk),
    "data.noise.kind": _bad_name,
    "data.seed": _bad_nonneg_int,
    "model.known": st.one_of(
        st.integers(),
        st.lists(
            _letters.filter(lambda s: s not in ("growth", "predation", "death", "reproduction")),
            min_size=1,
            max_size=2,
        ),
    ),
    "model.network.width": _bad_pos_int,
    "model.network.depth": _bad_nonneg_int,
    "model.network.activation": _bad_name.filter(
        lambda s: (
            s
            not in (
                "rbf",
                "tanh",
                "relu",
                "gelu",
                "sigmoid",
                "softplus",
                "swish",
                "elu",
                "identity",
                "sin",
            )
        )
    ),
    "solver.name": _bad_name,
    "solver.rtol": _bad_pos_float,
    "solver.max_steps": _bad_pos_int,
    "train.chunk": _bad_pos_int,
    "train.checkpoint_every": st.one_of(st.integers(max_value=0), _junk),
    "train.stages[0].lr": _bad_pos_float,
    "train.stages[0].steps": _bad_nonneg_int,
    "train.stages[0].kind": _bad_name.filter(lambda s: s not in ("adam", "lbfgs")),
    "train.stages": st.one_of(st.just([]), _letters, st.integers()),
    "evaluate.dt": _bad_pos_float,
    "output.figures": st.one_of(_letters, st.integers(2, 9), _non_finite),
}
REQUIRED = [
    "data",
    "truth.system",
    "truth.parameters",
    "truth.y0",
    "data.t_span",
    "train.stages[0].kind",
    "truth.parameters.beta",
]


def _split(path: str):
    out = []
    for part in path.split("."):
        if "[" in part:
            name, idx = part[:-1].split("[")
            out += [name, int(idx)]
        else:
            out.append(part)
    return out


def _set(cfg, path, value=None, delete=False):
    parts = _split(path)
    node = cfg
    for p in parts[:-1]:
        node = node[p]
    if delete:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


def _write_and_run(capsys, text: str, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "broken.yaml"
        cfg.write_bytes(text) if isinstance(text, bytes) else cfg.write_text(text)
        out = Path(tmp) / "run"
        res = _run_cli(capsys, ["run", str(cfg), "--out", str(out), "-q", *extra])
        assert not out.exists(), "a rejected config left a run directory behind"
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["broken.yaml"]
    return res


def test_the_bases_are_valid(tmp_path):
    validate_config(copy.deepcopy(BASE))
    p = tmp_path / "t.tsv"
    p.write_text(table_text())
    d = data_mod.load_table(p, time="t", states=["x", "y"])
    assert d.n_times == len(TABLE_ROWS)
    validate_config(table_config(p))


@SETTINGS
@given(path=st.sampled_from(sorted(BAD_VALUES)), data=st.data())
def test_wrong_values_exit_2_naming_the_key(capsys, path, data):
    value = data.draw(BAD_VALUES[path], label="value")
    cfg = copy.deepcopy(BASE)
    _set(cfg, path, value)
    text = yaml.safe_dump(cfg, sort_keys=False)
    assume(yaml.safe_dump(read_yaml(text), sort_keys=False) == text)  # YAML keeps the value
    code, out, err = _write_and_run(capsys, text)
    count(MODULE, "configs_wrong_value")
    _assert_rejected(code, out, err, names=[path])  # the message names the key path


@SETTINGS
@given(
    path=st.sampled_from(REQUIRED),
    extra_keys=st.lists(
        st.tuples(
            st.sampled_from(["", "truth.", "data.", "model.", "solver.", "train.", "output."]),
            _letters.filter(lambda s: s not in ("name", "seed", "description")),
        ),
        max_size=2,
    ),
)
def test_missing_and_unknown_keys_exit_2(capsys, path, extra_keys):
    cfg = copy.deepcopy(BASE)
    _set(cfg, path, delete=True)
    unknown = []
    for section, key in extra_keys:
        node = cfg if not section else cfg.get(section[:-1])
        if not isinstance(node, dict) or key in node:
            continue
        from ude.config import ExperimentConfig, _section_models

        model = ExperimentConfig if not section else _section_models()[section[:-1]]
        if key in model.model_fields:
            continue
        node[key] = 1
        unknown.append(section + key)
    code, out, err = _write_and_run(capsys, yaml.safe_dump(cfg, sort_keys=False))
    count(MODULE, "configs_missing_or_unknown_key")
    _assert_rejected(code, out, err)
    for u in unknown:
        assert u in err, (u, err)
    leaf = _split(path)[-1]
    assert str(leaf) in err or path.split(".")[0] in err, err


_valid_text = yaml.safe_dump(BASE, sort_keys=False)


def _valid_config(text) -> bool:
    try:
        raw = read_yaml(text)
        if not isinstance(raw, dict):
            return False
        validate_config(raw)
        return True
    except ConfigError:
        return False


@SETTINGS
@given(cut=st.integers(0, len(_valid_text) - 1))
def test_truncated_config_files_exit_2(capsys, cut):
    text = _valid_text[:cut]
    assume(not _valid_config(text))  # a cut at a section boundary can leave a valid config
    code, out, err = _write_and_run(capsys, text)
    count(MODULE, "configs_truncated")
    _assert_rejected(code, out, err)


@SETTINGS
@given(
    blob=st.one_of(
        st.just(b""),
        st.just(b"   \n\n# only a comment\n"),
        st.binary(min_size=1, max_size=64),
        st.text(max_size=80).map(str.encode),
        st.sampled_from(
            [
                b"- a\n- b\n",
                b"42\n",
                b"[1, 2\n",
                b"data: {t_span: [0, 1]\n",
                b"\t- :\n",
                b"truth: [\n",
                b"\xff\xfe\x00garbage",
                b"data:\n  - 1\n  - 2\n",
            ]
        ),
    )
)
def test_garbage_config_files_exit_2(capsys, blob):
    try:
        assume(not _valid_config(blob.decode()))
    except UnicodeDecodeError:
        pass
    code, out, err = _write_and_run(capsys, blob)
    count(MODULE, "configs_garbage_file")
    _assert_rejected(code, out, err)


@SETTINGS
@given(
    override=st.one_of(
        st.tuples(
            st.sampled_from(sorted(BAD_VALUES)),
            st.sampled_from(
                ["nan", ".nan", ".inf", "-.inf", "-1", "0", "[]", "{a: 1}", "abc", "1e400"]
            ),
        ).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.sampled_from(
            [
                "train.stages[5].lr=0.1",
                "noequals",
                "=3",
                "a..b=1",
                "seed=[1, 2",
                "train.stages.lr=1",
                "data.t_span[3]=1",
            ]
        ),
    )
)
def test_broken_overrides_exit_2(capsys, override):
    cfg = copy.deepcopy(BASE)
    text = yaml.safe_dump(cfg, sort_keys=False)
    from ude.config import apply_overrides

    try:
        raw = apply_overrides(read_yaml(text), [override])
        assume(not _valid_config(yaml.safe_dump(raw)))
    except ConfigError:
        pass
    code, out, err = _write_and_run(capsys, text, extra=["--set", override])
    count(MODULE, "configs_override")
    _assert_rejected(code, out, err)


# ------------------------------------------------------------------------------------------------
# data tables (data.file)
# ------------------------------------------------------------------------------------------------
def _mutate_table(kind: str, draw) -> str:
    rows = [list(map(str, r)) for r in TABLE_ROWS]
    header = ["t", "x", "y"]
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, 2))
    if kind == "not_a_number":
        rows[i][j] = draw(
            # not a missing-value marker the loader accepts (tables._MISSING), nor inf
            _letters.filter(lambda s: s.lower() not in MISSING_CELLS | {"inf", "infinity"})
        )
    elif kind == "non_finite":
        rows[i][j] = draw(st.sampled_from(["inf", "-inf", "Infinity", "1e999"]))
    elif kind == "nan_time":
        rows[i][0] = draw(st.sampled_from(["nan", "NaN", "NA", ""]))
    elif kind == "ragged":
        rows[i] = (
            rows[i] + ["1.0"] * draw(st.integers(1, 2))
            if draw(st.booleans())
            else rows[i][: max(j, 1)]
        )
    elif kind == "missing_column":
        header[draw(st.integers(0, 2))] = draw(_letters.filter(lambda s: s not in header))
    elif kind == "duplicate_column":
        header[2] = header[draw(st.integers(0, 1))]
    elif kind == "non_monotonic":
        k = draw(st.integers(0, len(rows) - 2))
        how = draw(st.sampled_from(["swap", "repeat", "reverse"]))
        if how == "swap":
            rows[k][0], rows[k + 1][0] = rows[k + 1][0], rows[k][0]
        elif how == "repeat":
            rows[k + 1][0] = rows[k][0]
        else:
            ts = [r[0] for r in rows][::-1]
            for r, t in zip(rows, ts, strict=True):
                r[0] = t
    elif kind == "header_only":
        rows = []
    elif kind == "empty":
        return draw(st.sampled_from(["", "\n\n", "# just a comment\n"]))
    return "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)


TABLE_KINDS = [
    "not_a_number",
    "non_finite",
    "nan_time",
    "ragged",
    "missing_column",
    "duplicate_column",
    "non_monotonic",
    "header_only",
    "empty",
    "truncated",
    "binary",
]


@SETTINGS
@given(kind=st.sampled_from(TABLE_KINDS), data=st.data())
def test_broken_data_tables_exit_2_before_any_run_directory(capsys, kind, data):
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.tsv"
        if kind == "truncated":
            full = table_text()
            text = full[: data.draw(st.integers(0, len(full) - 1), label="cut")]
            table.write_text(text)
        elif kind == "binary":
            table.write_bytes(b"t\tx\ty\n" + data.draw(st.binary(min_size=1, max_size=40)))
        else:
            table.write_text(_mutate_table(kind, data.draw))
        try:
            data_mod.load_table(table, time="t", states=["x", "y"])
            ok = True
        except ValueError:
            ok = False
        if kind in ("truncated", "binary"):
            assume(not ok)  # a cut at a line end, or bytes that parse, leave a valid table
        else:
            assert not ok, table.read_text()
        cfg = Path(tmp) / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(table_config(table)))
        out = Path(tmp) / "run"
        code, stdout, err = _run_cli(capsys, ["run", str(cfg), "--out", str(out), "-q"])
        count(MODULE, "data_tables")
        count(MODULE, f"data_table_{kind}")
        _assert_rejected(code, stdout, err, names=["table.tsv"])
        assert not out.exists(), "a rejected data file left a run directory behind"


# ------------------------------------------------------------------------------------------------
# saved datasets of a run directory (`ude resume`)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    """A run directory holding only config.yaml and the dataset (``ude simulate``)."""
    d = tmp_path_factory.mktemp("sim") / "run"
    base = tmp_path_factory.getbasetemp() / "fuzz_base.yaml"
    base.write_text(yaml.safe_dump(BASE, sort_keys=False))
    assert cli.main(["simulate", str(base), "--out", str(d), "-q"]) == 0
    return d


def _snapshot(d: Path) -> dict:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@SETTINGS
@given(
    kind=st.sampled_from(
        [
            "truncate_npz",
            "flip_npz",
            "empty_npz",
            "empty_sidecar",
            "no_npz",
            "garbage_sidecar",
            "sidecar_missing_keys",
        ]
    ),
    data=st.data(),
)
def test_broken_saved_datasets_exit_2_and_change_nothing(capsys, simulated_run, kind, data):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "run"
        shutil.copytree(simulated_run, d)
        npz, side = d / "data.npz", d / "data.json"
        blob = npz.read_bytes()
        if kind == "truncate_npz":
            npz.write_bytes(blob[: data.draw(st.integers(0, len(blob) - 1))])
        elif kind == "flip_npz":
            i = data.draw(st.integers(0, len(blob) - 1))
            bit = 1 << data.draw(st.integers(0, 7))
            npz.write_bytes(blob[:i] + bytes([blob[i] ^ bit]) + blob[i + 1 :])
        elif kind == "empty_npz":
            npz.write_bytes(b"")
        elif kind == "empty_sidecar":
            side.write_text("")  # (a data.npz with no sidecar is an unfinished save: rebuilt)
        elif kind == "no_npz":
            npz.unlink()
        elif kind == "garbage_sidecar":
            side.write_bytes(data.draw(st.binary(max_size=30)))
        else:
            side.write_text('{"format": "ude-dataset"}')
        before = _snapshot(d)
        code, out, err = _run_cli(capsys, ["resume", str(d), "-q"])
        count(MODULE, "saved_datasets")
        _assert_rejected(code, out, err, names=["data."])
        assert _snapshot(d) == before, "a rejected resume changed the run directory"
