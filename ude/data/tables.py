"""Real data from text tables (TSV/CSV with named columns), and the UDE paper's Hudson Bay
hare and lynx pelts that ship in the repository's ``data/`` folder::

    d = load_table("data/hudson_bay.tsv", time="year", states=("hare", "lynx"), normalize="max")
    hares = hudson_bay()  # the paper's real data, normalised
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .checks import check_times
from .dataset import Dataset

__all__ = ["load_table", "hudson_bay", "HUDSON_BAY_PATH"]

HUDSON_BAY_PATH = Path(__file__).resolve().parent.parent.parent / "data" / "hudson_bay.tsv"
_MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}


def _delimiter(path: Path, header_line: str, delimiter):
    if delimiter is not None:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    return "\t" if "\t" in header_line else ","


def _cells(line: str, delim: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line], delimiter=delim))]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _read(path: Path, where: str) -> tuple[bytes, list[str], list[tuple[int, str]]]:
    """``(raw bytes, comment lines, numbered non-blank non-comment lines)`` of the file."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: cannot read the file as UTF-8 text: {e}") from None
    lines = [(i + 1, line.rstrip("\r\n")) for i, line in enumerate(text.splitlines())]
    comments = [line for _, line in lines if line.lstrip().startswith("#")]
    body = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise DataError(f"{where}: the file has no header or data rows")
    return raw, comments, body


def _header(comments: list[str], body: list[tuple[int, str]], delim: str, where: str):
    """``(column names, data rows)``: the first body line, or a ``# columns:`` comment when that
    line is already numeric."""
    first = _cells(body[0][1], delim)
    if not all(_is_number(c) for c in first):
        return first, body[1:]
    declared = [c for c in comments if c.lstrip("# \t").lower().startswith("columns:")]
    if not declared:
        raise DataError(
            f"{where}: no header line (line {body[0][0]} is numeric) and no "
            "'# columns:' comment naming the columns"
        )
    spec = declared[-1].lstrip("# \t")[len("columns:") :].strip()
    return _cells(spec.replace("<TAB>", "\t"), delim), body  # "<TAB>" spelled out in a comment


def _parse(
    rows: list[tuple[int, str]], header: list[str], wanted: list[str], delim: str, where: str
) -> np.ndarray:
    """The ``(rows, wanted)`` table of numbers; NaN where a state cell is missing."""
    cols = [header.index(c) for c in wanted]
    table = np.full((len(rows), len(wanted)), np.nan)
    for r, (lineno, line) in enumerate(rows):
        cells = _cells(line, delim)
        if len(cells) != len(header):
            raise DataError(
                f"{where}: line {lineno} has {len(cells)} cells, the header has {len(header)}"
            )
        for j, c in enumerate(cols):
            cell = cells[c]
            if j > 0 and cell.lower() in _MISSING:
                continue
            try:
                v = float(cell)
            except ValueError:
                raise DataError(
                    f"{where}: line {lineno}, column {wanted[j]!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(v):
                raise DataError(
                    f"{where}: line {lineno}, column {wanted[j]!r}: {cell!r} is not finite"
                )
            table[r, j] = v
    return table


def _max_scale(ys: np.ndarray, mask: np.ndarray, states: list[str], where: str) -> np.ndarray:
    """Each column's largest observed value (which must be positive)."""
    scale = np.ones(len(states))
    for j, s in enumerate(states):
        obs = ys[mask[:, j], j]
        if obs.size == 0 or not obs.max() > 0:
            raise DataError(
                f"{where}: cannot normalise column {s!r} by its max (max "
                f"{obs.max() if obs.size else 'undefined'}; needs a positive value)"
            )
        scale[j] = obs.max()
    return scale


def load_table(
    path,
    *,
    time: str,
    states: Sequence[str],
    normalize: str | None = None,
    t_offset: float | str = 0.0,
    names: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> Dataset:
    """One trajectory from a TSV/CSV table with named columns.

    The header is the first line that is not blank or a ``#`` comment; a file whose first such line
    is already numeric may name its columns in a ``# columns: a<TAB>b`` comment instead (a literal
    ``<TAB>`` there stands for a tab). Empty cells and ``NA``/``nan`` in state columns are
    unobserved (masked); anything else must be a number.

    Args:
        path: the table (``.tsv`` tab-separated, ``.csv`` comma-separated, else guessed).
        time: the time column; times must be strictly increasing.
        states: the state columns, in state order.
        normalize: ``"max"`` divides each series by its largest observed value; None keeps it.
        t_offset: subtracted from the times (``"first"``: the first time, so t starts at 0).
        names: state names of the dataset (default: the column names).
        delimiter: override the delimiter.

    Raises :class:`~ude.errors.DataError` (a ``ValueError``) naming the file and line when the
    table cannot be read, and ``ValueError`` for invalid arguments.
    """
    path = Path(path)
    where = f"load_table: {path}"
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    if normalize not in (None, "max"):
        raise ValueError(f"load_table: normalize must be 'max' or None, got {normalize!r}")
    states = [states] if isinstance(states, str) else list(states)
    if not states:
        raise ValueError("load_table: states must name at least one column")
    raw, comments, body = _read(path, where)
    delim = _delimiter(path, body[0][1], delimiter)
    header, rows = _header(comments, body, delim, where)
    if len(set(header)) != len(header):
        raise DataError(f"{where}: duplicate column names in the header {header}")
    wanted = [time, *states]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{where}: column(s) {missing} not found; the columns are {header}")
    if not rows:
        raise DataError(f"{where}: the file has a header but no data rows")
    table = _parse(rows, header, wanted, delim, where)
    t = table[:, 0]
    if t_offset == "first":
        t_offset = float(t[0])
    elif isinstance(t_offset, str) or not math.isfinite(float(t_offset)):
        raise ValueError(f"load_table: t_offset must be a number or 'first', got {t_offset!r}")
    ts = t - float(t_offset)
    try:
        check_times(t, f"column {time!r}")
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    ys = table[:, 1:]
    mask = np.isfinite(ys)
    scale = np.ones(len(states))
    if normalize == "max":
        scale = _max_scale(ys, mask, states, where)
        ys = ys / scale
    names = tuple(states) if names is None else tuple(names)
    if len(names) != len(states):
        raise ValueError(f"load_table: names {names} must give one name per state column {states}")
    provenance = {
        "source": "table",
        "file": path.name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "time": time,
        "states": states,
        "normalize": normalize,
        "scale": scale,
        "t_offset": float(t_offset),
    }
    return Dataset(
        ts, np.where(mask, ys, 0.0)[None], mask[None], state_names=names, provenance=provenance
    )


def hudson_bay(
    path=None, normalize: bool = True, names: Sequence[str] = ("hare", "lynx")
) -> Dataset:
    """The Hudson Bay hare (prey) and lynx (predator) pelts, 1900–1920: 21 yearly points.

    As in the UDE paper: ``t = year − 1900`` and, with ``normalize``, each series divided by its
    maximum. ``path`` defaults to the repository's ``data/hudson_bay.tsv``. Pass
    ``names=("x", "y")`` to match :class:`~ude.physics.LotkaVolterra`'s state names.
    """
    p = HUDSON_BAY_PATH if path is None else Path(path)
    if not p.is_file():
        raise DataError(
            f"hudson_bay: data file {p} not found; it ships in the repository's data/ "
            "folder (not in an installed wheel); pass path= to a copy"
        )
    d = load_table(
        p,
        time="year",
        states=("hare", "lynx"),
        normalize="max" if normalize else None,
        t_offset=1900.0,
        names=names,
    )
    return d._replace(name="hudson_bay")
