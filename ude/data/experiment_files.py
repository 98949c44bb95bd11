"""Experiments from text files: a long-format CSV/TSV with one row per experiment and time, or one
file per experiment, read into one :class:`~ude.data.Dataset` (each experiment with its own times,
inputs and constants), and the long format written back::

    data = load_experiments(
        "data/reactor.csv",
        states=["A", "B"],
        inputs={"feed": "F_in"},  # model name: column name
        constants=["T"],
    )
    data.experiment_names  # ('run1', 'run2', ...), in order of first appearance
    write_experiments(data, "data/copy.csv", header={"system": "reactor"})
    same = load_experiment_files({"run1": "run1.tsv", "run2": "run2.tsv"}, states=["A", "B"])

A file's lines starting with ``#`` are comments (anywhere in the file); they are kept in the
provenance as ``header``. The first other line names the columns. Empty and ``NA``/``nan`` state
cells are unobserved; every other cell must be a number. Each malformed file raises
:class:`~ude.errors.DataError` naming the file, the line (1-based, counted in the file) and the
column.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from .._io import atomic_write_text, json_safe
from ..errors import DataError
from .dataset import Dataset, concat
from .inputs import INTERPOLATIONS, ExperimentInputs, InputSignal
from .tables import _MISSING, _cells, _delimiter, _read

__all__ = ["load_experiments", "load_experiment_files", "write_experiments"]


class _Spec(NamedTuple):
    """What to read: the time column, and (model names, column names) of states, inputs and
    constants."""

    time: str
    states: tuple[tuple[str, ...], tuple[str, ...]]
    inputs: tuple[tuple[str, ...], tuple[str, ...]]
    constants: tuple[tuple[str, ...], tuple[str, ...]]
    kind: str

    @property
    def columns(self) -> list[str]:
        """The columns a row is read from, in the order :func:`_experiment` reads them."""
        return [self.time, *self.states[1], *self.inputs[1], *self.constants[1]]

    def provenance(self) -> dict:
        pairs = {k: dict(zip(*getattr(self, k), strict=True)) for k in _KINDS}
        return {"time": self.time, **pairs, "interpolation": self.kind}


_KINDS = ("states", "inputs", "constants")


def _names(arg, what: str, fn: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(model names, column names)`` of a list of names or a ``{model name: column}`` map."""
    if isinstance(arg, str):
        arg = [arg]
    pairs = list(arg.items()) if isinstance(arg, Mapping) else [(a, a) for a in arg]
    if not all(isinstance(m, str) and isinstance(c, str) and m and c for m, c in pairs):
        raise ValueError(f"{fn}: {what} must be non-empty column names, got {arg!r}")
    models = tuple(m for m, _ in pairs)
    if len(set(models)) != len(models):
        raise ValueError(f"{fn}: {what} names a model name twice: {list(models)}")
    return models, tuple(c for _, c in pairs)


def _spec(fn: str, time, states, inputs, constants, interpolation, experiment=None) -> _Spec:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"{fn}: interpolation must be one of {INTERPOLATIONS}, got {interpolation}"
        )
    spec = _Spec(
        time,
        _names(states, "states", fn),
        _names(inputs, "inputs", fn),
        _names(constants, "constants", fn),
        interpolation,
    )
    if not spec.states[0]:
        raise ValueError(f"{fn}: states must name at least one column")
    models = [m for k in _KINDS for m in getattr(spec, k)[0]]
    if len(set(models)) != len(models):
        raise ValueError(f"{fn}: a name is used twice among states, inputs and constants {models}")
    columns = spec.columns + ([experiment] if experiment is not None else [])
    if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise ValueError(f"{fn}: every column may be read once only, got {columns}")
    return spec


def _rows(path: Path, where: str, columns: list[str], delimiter):
    """``(raw bytes, comment texts, [(line, cells of columns)])`` of a file with a header line."""
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    raw, comments, body = _read(path, where)
    delim = _delimiter(path, body[0][1], delimiter)
    hline, header = body[0][0], _cells(body[0][1], delim)
    if len(set(header)) != len(header):
        raise DataError(f"{where}: line {hline}: duplicate column names in the header {header}")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{where}: line {hline}: column(s) {missing} not in the header; the columns are "
            f"{header}"
        )
    if len(body) == 1:
        raise DataError(f"{where}: line {hline}: the header {header} is followed by no data rows")
    idx = [header.index(c) for c in columns]
    rows = []
    for n, line in body[1:]:
        cells = _cells(line, delim)
        if len(cells) != len(header):
            raise DataError(
                f"{where}: line {n} has {len(cells)} cells, the header (line {hline}) has "
                f"{len(header)}"
            )
        rows.append((n, [cells[i] for i in idx]))
    texts = [c.lstrip()[1:].strip() for c in comments]
    return raw, texts, rows


def _number(cell: str, where: str, line: int, column: str, what: str | None) -> float:
    """The cell's number; NaN for a missing cell when ``what`` is None, else an error saying the
    ``what`` is missing."""
    if cell.lower() in _MISSING:
        if what is None:
            return math.nan
        raise DataError(f"{where}: line {line}, column {column!r}: the {what} is missing")
    try:
        v = float(cell)
    except ValueError:
        raise DataError(
            f"{where}: line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if not math.isfinite(v):
        raise DataError(f"{where}: line {line}, column {column!r}: {cell!r} is not finite")
    return v


def _experiment(name: str, rows, spec: _Spec, where: str, id_column: str) -> Dataset:
    """One experiment's Dataset from its rows ``[(line, cells of spec.columns)]``."""
    if len(rows) < 2:
        raise DataError(
            f"{where}: line {rows[0][0]}, column {id_column!r}: experiment {name!r} has 1 row; "
            "an experiment needs at least 2 time points"
        )
    n_s, n_u = len(spec.states[0]), len(spec.inputs[0])
    cols = spec.columns
    table = np.empty((len(rows), len(cols)))
    for r, (line, cells) in enumerate(rows):
        for j, (col, cell) in enumerate(zip(cols, cells, strict=True)):
            what = "time" if j == 0 else None if j <= n_s else "input value"
            what = "constant value" if j > n_s + n_u else what
            table[r, j] = _number(cell, where, line, col, what)
    t = table[:, 0]
    for r in range(1, len(rows)):
        now, before = float(t[r]), float(t[r - 1])
        if not now > before:
            raise DataError(
                f"{where}: line {rows[r][0]}, column {spec.time!r}: time {now!r} of experiment "
                f"{name!r} {'repeats' if now == before else 'comes before'} time {before!r} "
                f"(line {rows[r - 1][0]}); times must be strictly increasing"
            )
    ys = table[:, 1 : 1 + n_s]
    mask = np.isfinite(ys)
    signal = None
    if n_u:
        signal = InputSignal(t, table[:, 1 + n_s : 1 + n_s + n_u], spec.inputs[0], spec.kind)
    constants = {}
    for j, (model, col) in enumerate(zip(*spec.constants, strict=True)):
        values = table[:, 1 + n_s + n_u + j].tolist()
        r = next((r for r, v in enumerate(values) if v != values[0]), None)
        if r is not None:
            raise DataError(
                f"{where}: line {rows[r][0]}, column {col!r}: constant {model!r} of experiment "
                f"{name!r} is {values[r]!r} here but {values[0]!r} on line {rows[0][0]}; a "
                "constant must be the same on every row of its experiment"
            )
        constants[model] = values[0]
    inputs = ExperimentInputs(signal, constants) if signal is not None or constants else None
    return Dataset(
        t,
        np.where(mask, ys, 0.0)[None],
        mask[None],
        state_names=spec.states[0],
        inputs=inputs,
        experiment_names=(name,),
    )


def _file_provenance(path: Path, raw: bytes, header: list[str]) -> dict:
    return {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "header": header}


def load_experiments(
    path,
    *,
    states: Sequence[str] | Mapping[str, str],
    time: str = "time",
    experiment: str = "experiment",
    inputs: Sequence[str] | Mapping[str, str] = (),
    constants: Sequence[str] | Mapping[str, str] = (),
    interpolation: str = "linear",
    delimiter: str | None = None,
) -> Dataset:
    """All experiments of one long-format CSV/TSV file, one row per experiment and time.

    The rows of an experiment need not be next to each other; they are read in file order, and
    their times must increase strictly. Experiments are named by their ``experiment`` cells (text),
    in order of first appearance.

    Args:
        path: the file (``.tsv``/``.tab`` tab-separated, ``.csv`` comma-separated, else guessed).
        states: the state columns, in state order: a list of column names, or a map
            ``{model name: column name}`` (a config's column mapping).
        time: the time column.
        experiment: the column naming each row's experiment.
        inputs: signal columns (names or a map like ``states``), sampled at the rows' times:
            each experiment's :class:`~ude.data.InputSignal` over its own rows. A cell must be a
            number.
        constants: columns that hold one number per experiment (the same on all its rows).
        interpolation: how the input samples become ``u(t)``: one of
            :data:`~ude.data.INTERPOLATIONS`.
        delimiter: override the delimiter.

    The dataset's provenance records the file, its sha256, its ``#`` comment lines (``header``)
    and the column mapping. Raises :class:`~ude.errors.DataError` naming the file, line and
    column when the file cannot be read, ``ValueError`` for invalid arguments.
    """
    fn = "load_experiments"
    spec = _spec(fn, time, states, inputs, constants, interpolation, experiment)
    path = Path(path)
    where = f"{fn}: {path}"
    raw, header, rows = _rows(path, where, [experiment, *spec.columns], delimiter)
    groups: dict[str, list] = {}
    for line, cells in rows:
        if not cells[0]:
            raise DataError(f"{where}: line {line}, column {experiment!r}: the experiment is empty")
        groups.setdefault(cells[0], []).append((line, cells[1:]))
    parts = [_experiment(name, g, spec, where, experiment) for name, g in groups.items()]
    prov = {"source": "experiments", **_file_provenance(path, raw, header)}
    return concat(parts, names=list(groups))._replace(
        **prov, experiment_column=experiment, **spec.provenance()
    )


def load_experiment_files(
    files: Mapping[str, str | Path],
    *,
    states: Sequence[str] | Mapping[str, str],
    time: str = "time",
    inputs: Sequence[str] | Mapping[str, str] = (),
    constants: Sequence[str] | Mapping[str, str] = (),
    interpolation: str = "linear",
    delimiter: str | None = None,
) -> Dataset:
    """Experiments from one CSV/TSV file each: ``files`` maps experiment names to files (in
    experiment order), each with a header line and one row per time (no experiment column).

    The other arguments, the checks and the errors are those of :func:`load_experiments`; the
    provenance records every file (path, sha256, ``#`` comment lines) under ``files``.
    """
    fn = "load_experiment_files"
    spec = _spec(fn, time, states, inputs, constants, interpolation)
    if not isinstance(files, Mapping) or not files:
        raise ValueError(f"{fn}: files must be a non-empty map of experiment name to file")
    parts, prov = [], {}
    for name, p in files.items():
        p = Path(p)
        where = f"{fn}: {p}"
        raw, header, rows = _rows(p, where, spec.columns, delimiter)
        parts.append(_experiment(str(name), rows, spec, where, time))
        prov[str(name)] = _file_provenance(p, raw, header)
    return concat(parts, names=[str(n) for n in files])._replace(
        source="experiment_files", files=prov, **spec.provenance()
    )


def _cell(text: str, delim: str) -> str:
    """``text`` as a CSV/TSV cell that :func:`load_experiments` reads back as it is."""
    if text != text.strip() or not text or any(c in text for c in "\r\n"):
        raise ValueError(
            f"write_experiments: cannot write the name {text!r} (empty, surrounding blanks or a "
            "line break)"
        )
    if delim in text or '"' in text or text.startswith("#"):
        return '"' + text.replace('"', '""') + '"'
    return text


def _header_lines(header) -> list[str]:
    if isinstance(header, Mapping):
        lines = [
            f"{k}: {v if isinstance(v, str) else json.dumps(json_safe(v))}"
            for k, v in header.items()
        ]
    else:
        lines = [str(h) for h in header]
    return [f"# {part}".rstrip() for line in lines for part in str(line).splitlines() or [""]]


def write_experiments(
    data: Dataset, path, *, header: Mapping[str, object] | Sequence[str] = ()
) -> None:
    """Write ``data`` as a long-format file that :func:`load_experiments` reads back exactly.

    Columns: ``experiment``, ``time``, the states, the input signals, the constants (named as in
    the dataset). Each experiment's real times are written (no padding); numbers with ``repr``
    precision, unobserved values as empty cells. A signal is written at the rows' times (where
    its samples lie between them, only those values are kept), a constant on every row.

    Args:
        data: the dataset (its ``y_true`` is not written).
        path: the file; ``.csv`` comma-separated, ``.tsv``/``.tab`` tab-separated.
        header: ``#`` comment lines at the top: ``{key: value}`` (one ``# key: value`` line each)
            or a list of lines.

    The file is written atomically (a reader never sees half a file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".tab"):
        raise ValueError(f"write_experiments: {path} must end in .csv, .tsv or .tab")
    delim = "," if suffix == ".csv" else "\t"
    columns = ["experiment", "time", *data.state_names, *data.input_names]
    if len(set(columns)) != len(columns):
        raise ValueError(f"write_experiments: the columns {columns} repeat a name")
    lines = _header_lines(header)
    lines.append(delim.join(_cell(c, delim) for c in columns))
    for i, name in enumerate(data.experiment_names):
        e = data.experiment(i)
        ts = np.asarray(e.ts, dtype=np.float64)
        ys = np.asarray(e.ys[0], dtype=np.float64)
        mask = np.asarray(e.mask[0])
        extra = np.zeros((ts.size, 0))
        inputs = None if e.inputs is None else jax.tree_util.tree_map(lambda x: x[0], e.inputs)
        if inputs is not None and inputs.signal is not None:
            sig = inputs.signal
            if sig.ts.shape == ts.shape and np.array_equal(np.asarray(sig.ts), ts):
                us = np.asarray(sig.us, dtype=np.float64)  # sampled at the rows: exactly these
            else:
                us = np.asarray(jax.vmap(sig)(ts), dtype=np.float64)
            extra = np.concatenate([extra, us], axis=1)
        if inputs is not None and inputs.constants is not None:
            consts = np.asarray(inputs.constants, dtype=np.float64)
            extra = np.concatenate([extra, np.broadcast_to(consts, (ts.size, consts.size))], 1)
        label = _cell(name, delim)
        for k in range(ts.size):
            states = [repr(float(v)) if m else "" for v, m in zip(ys[k], mask[k], strict=True)]
            cells = [label, repr(float(ts[k])), *states, *(repr(float(v)) for v in extra[k])]
            lines.append(delim.join(cells))
    atomic_write_text(path, "\n".join(lines) + "\n")
