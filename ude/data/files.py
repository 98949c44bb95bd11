"""Dataset files: ``<path>.npz`` (the arrays) and ``<path>.json`` (names, shapes, dtypes,
provenance and the npz's sha256), each written atomically; :func:`load` refuses anything that does
not match its sidecar::

    save(data, "runs/lv/data")  # runs/lv/data.npz + runs/lv/data.json
    data = load("runs/lv/data")
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text
from ..errors import DataError
from .checks import check_times
from .dataset import Dataset
from .inputs import ExperimentInputs, InputSignal, stack_inputs

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "ude.dataset"
FORMAT_VERSION = 1
_SIDECAR_KEYS = ("format", "sha256", "bytes", "state_names", "shapes", "dtypes", "provenance")


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


_INPUT_ARRAYS = ("input_ts", "input_us", "input_end", "constants")


def _arrays(d: Dataset) -> dict[str, np.ndarray]:
    out = {"ts": np.asarray(d.ts), "ys": np.asarray(d.ys), "mask": np.asarray(d.mask)}
    if d.y_true is not None:
        out["y_true"] = np.asarray(d.y_true)
    if d.inputs is not None:
        if d.inputs.signal is not None:
            out["input_ts"] = np.asarray(d.inputs.signal.ts)
            out["input_us"] = np.asarray(d.inputs.signal.us)
            out["input_end"] = np.asarray(d.inputs.signal.end)
        if d.inputs.constants is not None:
            out["constants"] = np.asarray(d.inputs.constants)
    return out


def _inputs_meta(d: Dataset) -> dict | None:
    if d.inputs is None:
        return None
    sig = d.inputs.signal
    return {
        "signals": list(sig.names) if sig is not None else [],
        "kind": sig.kind if sig is not None else None,
        "constants": list(d.inputs.constant_names),
    }


def _inputs_from(arrays: dict, meta: dict) -> ExperimentInputs | None:
    """The stacked inputs saved with a dataset (checked as a fresh one would be)."""
    spec = meta.get("inputs")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not {"signals", "kind", "constants"} <= set(spec):
        raise ValueError(f"the sidecar's inputs entry is malformed: {spec!r}")
    n = arrays["ys"].shape[0]
    rows = []
    for i in range(n):
        sig = None
        if spec["signals"]:
            if "input_ts" not in arrays or "input_us" not in arrays or "input_end" not in arrays:
                raise ValueError("the sidecar names input signals but their arrays are missing")
            sig = InputSignal(
                arrays["input_ts"][i],
                arrays["input_us"][i],
                spec["signals"],
                spec["kind"],
                end=arrays["input_end"][i],
            )
        consts = None
        if spec["constants"]:
            if "constants" not in arrays:
                raise ValueError("the sidecar names constants but their array is missing")
            consts = dict(zip(spec["constants"], arrays["constants"][i].tolist(), strict=True))
        rows.append(ExperimentInputs(sig, consts))
    return stack_inputs(rows)


def save(dataset: Dataset, path) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (arrays) and ``<path>.json`` (names, shapes, dtypes, provenance and the
    npz's sha256). Each file is written to a temporary name and renamed into place. Returns both
    paths."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"save: expected a Dataset, got {type(dataset).__name__}")
    npz_path, json_path = _paths(path)
    arrays = _arrays(dataset)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    sidecar = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "npz": npz_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "state_names": list(dataset.state_names),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
        "provenance": dataset.provenance,
        "experiment_names": list(dataset.experiment_names),
    }
    if dataset.inputs is not None:
        sidecar["inputs"] = _inputs_meta(dataset)
    atomic_write_bytes(npz_path, blob)
    # not ude._io.write_json: provenance may hold NaN and inf, which must read back as they were
    atomic_write_text(json_path, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return npz_path, json_path


def _read_sidecar(json_path: Path, npz_path: Path) -> dict:
    if not json_path.is_file():
        raise DataError(
            f"load: sidecar {json_path} is missing (it holds the checksum and "
            f"provenance of {npz_path.name}); write datasets with ude.data.save"
        )
    if not npz_path.is_file():
        raise DataError(f"load: data file {npz_path} is missing (sidecar {json_path.name} exists)")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"load: sidecar {json_path} is not readable JSON: {e}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in _SIDECAR_KEYS):
        missing = [k for k in _SIDECAR_KEYS if not isinstance(meta, dict) or k not in meta]
        raise DataError(f"load: sidecar {json_path} lacks {missing}; not a ude dataset sidecar")
    if meta["format"] != FORMAT:
        raise DataError(
            f"load: sidecar {json_path} has format {meta['format']!r}, expected {FORMAT!r}"
        )
    return meta


def _read_npz(npz_path: Path, json_path: Path, meta: dict) -> dict[str, np.ndarray]:
    """The arrays of ``npz_path`` once its size and sha256 match the sidecar's."""
    blob = npz_path.read_bytes()
    if len(blob) < meta["bytes"]:
        raise DataError(f"load: {npz_path} is truncated: {len(blob)} of {meta['bytes']} bytes")
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != meta["bytes"] or digest != meta["sha256"]:
        raise DataError(
            f"load: {npz_path} does not match its sidecar {json_path.name} (sha256 "
            f"{digest[:12]}…, {len(blob)} bytes; expected {str(meta['sha256'])[:12]}…, "
            f"{meta['bytes']} bytes): the file was modified or corrupted"
        )
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"load: {npz_path} is not a readable npz archive: {e}") from None


def _check_arrays(arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Raise ``ValueError`` (the message without the file) unless ``arrays`` are what the sidecar
    lists and form a dataset: names, shapes, dtypes, then the times."""
    missing = [k for k in ("ts", "ys", "mask") if k not in arrays]
    if missing:
        raise ValueError(f"arrays {missing} are missing (has {sorted(arrays)})")
    extra = sorted(set(arrays) - {"ts", "ys", "mask", "y_true", *_INPUT_ARRAYS})
    if extra:
        raise ValueError(f"unexpected arrays {extra}")
    if set(meta["shapes"]) != set(arrays):
        raise ValueError(
            f"holds arrays {sorted(arrays)} but the sidecar lists {sorted(meta['shapes'])}"
        )
    for k, a in arrays.items():
        if list(a.shape) != list(meta["shapes"][k]):
            raise ValueError(
                f"{k} has shape {a.shape}, the sidecar says {tuple(meta['shapes'][k])}"
            )
        if str(a.dtype) != meta["dtypes"].get(k):
            raise ValueError(f"{k} has dtype {a.dtype}, the sidecar says {meta['dtypes'].get(k)}")
        want_bool = k == "mask"
        if want_bool and a.dtype != bool:
            raise ValueError(f"mask must be boolean, got dtype {a.dtype}")
        if not want_bool and not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{k} must be floating point, got dtype {a.dtype}")
    ts, ys = arrays["ts"], arrays["ys"]
    if ts.ndim not in (1, 2):
        raise ValueError(f"ts must be 1-D (or 2-D, per experiment), got shape {ts.shape}")
    if ys.ndim != 3 or ys.shape[1] != ts.shape[-1]:
        raise ValueError(f"ys must have shape (traj, {ts.shape[-1]}, state), got {ys.shape}")
    for k in ("mask", "y_true"):
        if k in arrays and arrays[k].shape != ys.shape:
            raise ValueError(f"{k} must have the shape of ys {ys.shape}, got {arrays[k].shape}")
    if len(meta["state_names"]) != ys.shape[2]:
        raise ValueError(f"{len(meta['state_names'])} state names for {ys.shape[2]} states")
    if ts.ndim == 1:
        check_times(ts, "ts")


def load(path) -> Dataset:
    """Read a dataset written by :func:`save`, refusing anything inconsistent.

    Raises :class:`~ude.errors.DataError` (a ``ValueError``) naming the file when the sidecar or
    npz is missing or unreadable, the npz is truncated or its sha256 differs, arrays are missing or
    have wrong shapes or dtypes, or the times are not finite and strictly increasing.
    """
    npz_path, json_path = _paths(path)
    meta = _read_sidecar(json_path, npz_path)
    arrays = _read_npz(npz_path, json_path, meta)
    try:
        _check_arrays(arrays, meta)
        return Dataset(
            arrays["ts"],
            arrays["ys"],
            arrays["mask"],
            state_names=meta["state_names"],
            y_true=arrays.get("y_true"),
            provenance=meta["provenance"],
            inputs=_inputs_from(arrays, meta),
            experiment_names=meta.get("experiment_names"),
        )
    except ValueError as e:
        raise DataError(f"load: {npz_path}: {e}") from None
