"""Model selection along a λ sweep: the UDE paper's criterion, AICc and a Pareto-knee rule.

Every rule looks at each target (state) separately: ``l0: (lams, targets)`` kept-term counts and
``err: (lams, targets)`` L2 norms of the residual ``Y − ΘΞ``, and returns one index into the sweep
per target. Numpy, not JAX: this runs once on a few hundred numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pareto_stats(Theta, Y, Xis) -> tuple[np.ndarray, np.ndarray]:
    """``(l0, err)`` for a sweep ``Xis: (lams, terms, targets)``: kept-term counts and ‖Y − ΘΞ‖₂,
    both ``(lams, targets)``."""
    Theta = np.asarray(Theta)
    Y = np.asarray(Y)
    Y = Y[:, None] if Y.ndim == 1 else Y
    Xis = np.asarray(Xis)
    if Xis.ndim == 2:
        Xis = Xis[..., None]
    l0 = np.count_nonzero(Xis, axis=1)
    resid = Y[None] - np.einsum("nt,ltk->lnk", Theta, Xis)
    err = np.linalg.norm(resid, axis=1)
    return l0, err


def _safe_div(a, b):
    b = np.where(b > 0, b, 1.0)
    return a / b


def select_paper(l0, err, n_samples: int | None = None) -> np.ndarray:
    """The UDE paper's rule (DataDrivenDiffEq's ``SInDy`` over thresholds): normalise the kept-term
    count and the residual norm each by its largest value over the sweep, and pick the λ whose
    point ``(l0, err)`` is nearest the origin. Ties go to the sparser model."""
    l0 = np.asarray(l0, float)
    err = np.asarray(err, float)
    score = np.hypot(
        _safe_div(l0, l0.max(axis=0, keepdims=True)), _safe_div(err, err.max(axis=0, keepdims=True))
    )
    return _argmin_sparsest(score, l0)


def aicc(rss, n: int, k) -> np.ndarray:
    """The corrected Akaike criterion ``n log(RSS/n) + 2k + 2k(k+1)/(n − k − 1)``; inf where the
    correction is undefined (``k >= n − 1``) or the RSS is not finite (a failed fit)."""
    rss = np.asarray(rss, float)
    k = np.asarray(k, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = n * np.log(np.maximum(rss / n, np.finfo(float).tiny)) + 2 * k
        corr = np.where(n - k - 1 > 0, 2 * k * (k + 1) / np.maximum(n - k - 1, 1), np.inf)
    return np.where(np.isfinite(rss), base + corr, np.inf)


def select_aicc(l0, err, n_samples: int) -> np.ndarray:
    """Smallest corrected Akaike criterion (:func:`aicc`) of the residual norms ``err``.

    Models with ``k >= n − 1`` terms are excluded (the correction is undefined).
    """
    k = np.asarray(l0, float)
    return _argmin_sparsest(aicc(np.asarray(err, float) ** 2, int(n_samples), k), k)


def select_knee(l0, err, n_samples: int | None = None) -> np.ndarray:
    """The knee of the Pareto front of (terms, log error): the model farthest below the chord from
    the sparsest to the densest model, both axes scaled to [0, 1]."""
    l0 = np.asarray(l0, float)
    err = np.asarray(err, float)
    out = []
    for j in range(l0.shape[1]):
        k = l0[:, j]
        e = np.log10(np.maximum(err[:, j], 1e-300))
        kx = _safe_div(k - k.min(), k.max() - k.min())
        ey = _safe_div(e - e.min(), e.max() - e.min())
        a = np.argmin(kx + 1e-9 * ey)  # sparsest (lowest error among them)
        b = np.argmax(kx - 1e-9 * ey)  # densest
        dx, dy = kx[b] - kx[a], ey[b] - ey[a]
        norm = np.hypot(dx, dy)
        if norm == 0:
            out.append(int(a))
            continue
        # signed distance below the chord (positive = better than the straight trade-off)
        dist = ((kx - kx[a]) * dy - (ey - ey[a]) * dx) / norm
        out.append(int(_argmin_sparsest((-dist)[:, None], k[:, None])[0]))
    return np.asarray(out)


def _argmin_sparsest(score, l0) -> np.ndarray:
    score = np.asarray(score, float)
    out = []
    for j in range(score.shape[1]):
        s = score[:, j]
        best = np.nanmin(s)
        cand = np.flatnonzero(np.isclose(s, best, rtol=1e-12, atol=1e-15))
        out.append(int(cand[np.argmin(np.asarray(l0)[cand, j])]))
    return np.asarray(out)


SELECTORS: dict[str, Callable] = {"paper": select_paper, "aicc": select_aicc, "knee": select_knee}


def select(criterion: str, l0, err, n_samples: int) -> np.ndarray:
    """One sweep index per target by ``criterion`` (a name from :data:`SELECTORS`)."""
    if criterion not in SELECTORS:
        raise ValueError(f"select: criterion must be one of {sorted(SELECTORS)}, got {criterion!r}")
    return SELECTORS[criterion](l0, err, n_samples)
