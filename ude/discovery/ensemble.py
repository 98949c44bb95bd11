"""Discovery on every member of an ensemble of trained UDEs, and the spread of what they find.

An ensemble (``ude.train.ensemble``: models stacked along a leading member axis) gives one
regression per member; the terms most members keep, and how much their coefficients vary, say how
far the discovered equation can be trusted. Not to be confused with :class:`BaggedRegressor`,
which resamples the rows of *one* regression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..train.ensemble import member, n_members
from .discover import Discovery, discover

__all__ = ["discover_members", "coefficient_spread", "ensemble_discover", "member_spread"]


def member_spread(values: np.ndarray, ok, quantiles: Sequence[float]) -> dict:
    """Mean, std and quantiles over the members (axis 0 of ``values``) where ``ok`` ``(members,)``;
    NaN when none is: ``{"mean", "std", "quantiles": {q: ...}}``."""
    sel = values[np.asarray(ok, bool)]
    if sel.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return {"mean": nan, "std": nan, "quantiles": {float(q): nan for q in quantiles}}
    return {
        "mean": sel.mean(axis=0),
        "std": sel.std(axis=0),
        "quantiles": {float(q): np.quantile(sel, q, axis=0) for q in quantiles},
    }


def discover_members(
    models, samples: Sequence, library=None, regressor=None, *, y0s=None, **discover_kwargs
) -> list[Discovery | None]:
    """:func:`~ude.discovery.discover` for every member of ``models`` (stacked, leading member
    axis) on its own samples.

    Args:
        samples: per member, what ``discover`` takes as data (a ``Dataset``, or ``(ts, ys)``
            samples along the member's trajectory); None skips the member.
        y0s: per member, the initial states of a ``Dataset``'s trajectories (None: the data's).
        library, regressor, discover_kwargs: as in ``discover``.

    Returns one :class:`Discovery` per member, None where it was skipped or failed (e.g. the
    network's output is not finite along the trajectory).
    """
    found = []
    for i, data in enumerate(samples):
        if data is None:
            found.append(None)
            continue
        y0 = None if y0s is None else y0s[i]
        try:
            found.append(
                discover(member(models, i), data, library, regressor, y0=y0, **discover_kwargs)
            )
        except ValueError:
            found.append(None)
    return found


def coefficient_spread(found: Sequence[Discovery | None]) -> dict:
    """Per regressed state and term, over the members whose discovery succeeded: the fraction
    keeping the term (``inclusion``) and the ``mean`` and ``std`` of its coefficient over those
    keeping it, ``{state: {term: {"mean", "std", "inclusion"}}}`` (terms nobody keeps are left
    out; empty when every member failed)."""
    done = [d for d in found if d is not None]
    if not done:
        return {}
    coefs = np.stack([d.coefficients for d in done])
    kept = np.stack([d.mask for d in done])
    ref = done[0]
    terms = {}
    for j, s in enumerate(ref.state_names):
        if s not in ref.states:
            continue
        terms[s] = {}
        for k, name in enumerate(ref.names):
            sel = kept[:, k, j]
            if sel.any():
                terms[s][name] = {
                    "mean": float(coefs[sel, k, j].mean()),
                    "std": float(coefs[sel, k, j].std()),
                    "inclusion": float(sel.mean()),
                }
    return terms


def ensemble_discover(
    models,
    data,
    library=None,
    regressor=None,
    *,
    y0=None,
    expected: Mapping[str, Sequence[str]] | None = None,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    **discover_kwargs,
) -> dict:
    """Discovery on every member of an ensemble, and the spread of the coefficients as arrays.

    Args:
        models: stacked trained UDEs (leading member axis).
        data: a shared :class:`ude.data.Dataset`, or a stacked one (one per member).
        library, regressor, discover_kwargs: as in :func:`ude.discovery.discover`.
        y0: the initial states of the trajectories regressed on: None (the data's first sample),
            shared ``(traj, state)``, or ``(members, traj, state)`` (e.g. learned ones).
        expected: ``{state: [term, ...]}``, the right structure (the paper's ``{"x": ["x*y"],
            "y": ["x*y"]}``); a member *succeeds* when it keeps exactly these terms.

    Returns ``{"discoveries" (list, None where a member's discovery failed), "ok" (members,),
    "names", "state_names", "coefficients" (members, terms, states; NaN where failed), "kept"
    (members, terms, states), "inclusion" (terms, states: fraction of ok members keeping each
    term), "mean", "std", "quantiles", and with ``expected``: "success" (members,),
    "success_rate"}``.
    """
    n = n_members(models)
    stacked_data = getattr(data, "ys", None) is not None and np.ndim(data.ys) == 4
    y0s = None if y0 is None else np.asarray(y0)
    if y0s is not None and y0s.ndim != 3:
        y0s = [y0s] * n
    samples = [member(data, i) if stacked_data else data for i in range(n)]
    found = discover_members(models, samples, library, regressor, y0s=y0s, **discover_kwargs)
    ok = np.array([d is not None for d in found])
    ref = next((d for d in found if d is not None), None)
    if ref is None:
        raise ValueError("ensemble_discover: discovery failed for every member")
    coefs = np.full((n,) + ref.coefficients.shape, np.nan)
    kept = np.zeros((n,) + ref.mask.shape, bool)
    for i, d in enumerate(found):
        if d is not None:
            coefs[i], kept[i] = d.coefficients, d.mask
    out = {
        "discoveries": found,
        "ok": ok,
        "names": ref.names,
        "state_names": ref.state_names,
        "coefficients": coefs,
        "kept": kept,
        "inclusion": kept[ok].mean(axis=0),
    }
    out.update(member_spread(coefs, ok, quantiles))
    if expected is not None:
        out.update(_success(ref, kept, ok, expected))
    return out


def _success(ref: Discovery, kept: np.ndarray, ok: np.ndarray, expected) -> dict:
    """Which members keep exactly the ``expected`` terms in every regressed state."""
    unknown = [s for s in expected if s not in ref.state_names]
    bad = [t for terms in expected.values() for t in terms if t not in ref.names]
    if unknown or bad:
        raise ValueError(
            f"ensemble_discover: expected names unknown states {unknown} or terms {bad}"
        )
    want = np.zeros(ref.mask.shape, bool)
    for s, terms in expected.items():
        for t in terms:
            want[ref.names.index(t), ref.state_names.index(s)] = True
    cols = [ref.state_names.index(s) for s in ref.states]
    success = ok & np.all(kept[:, :, cols] == want[None, :, cols], axis=(1, 2))
    return {"success": success, "success_rate": float(success.mean())}
