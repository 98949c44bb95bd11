"""Candidate supports for model selection by simulation (:mod:`ude.discovery.simulation`): the
best column subsets of a regression, per state (the empty equation among them), joint candidates
over the states, and their least-squares models."""

from __future__ import annotations

import itertools
import math

import numpy as np

from .discover import Discovery
from .discovered import DiscoveredModel

__all__ = ["best_subsets", "candidates", "screening", "models_of"]


def _normalised(Theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(Theta, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    return Theta / norms, norms


def _rss(Theta_n: np.ndarray, u: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Least-squares residual sum of squares of ``u`` on each subset of columns (batched QR)."""
    A = np.moveaxis(Theta_n[:, subsets], 1, 0)  # (subsets, n, k)
    Q, R = np.linalg.qr(A)
    proj = np.einsum("snk,n->sk", Q, u)
    rss = float(u @ u) - np.sum(proj**2, axis=1)
    # a rank-deficient subset (duplicate or zero columns) is no candidate
    diag = np.abs(np.diagonal(R, axis1=1, axis2=2))
    rss = np.where(diag.min(axis=1) > 1e-10 * max(1.0, diag.max()), rss, np.inf)
    return np.maximum(rss, 0.0)


def best_subsets(
    Theta, u, max_terms: int = 3, *, top=1, max_subsets: int = 50_000
) -> list[tuple[tuple[int, ...], float]]:
    """The ``top`` best column subsets of each size ``1 … max_terms`` for ``u ≈ Θ·w`` (``top``: an
    int, or one int per size, e.g. ``(3, 1, 1)``).

    Exhaustive while ``C(terms, k) <= max_subsets``; beyond that, greedy forward selection (each
    of the previous size's best subsets extended by one column). Returns ``[(columns, rss), ...]``
    ordered by size, then residual.
    """
    Theta = np.asarray(Theta, float)
    u = np.asarray(u, float)
    if Theta.ndim != 2 or u.shape != (Theta.shape[0],):
        raise ValueError(
            f"best_subsets: Theta must be (n, terms) and u (n,), got {Theta.shape}, {u.shape}"
        )
    if not isinstance(max_terms, int) or max_terms < 1:
        raise ValueError(f"best_subsets: max_terms must be a positive integer, got {max_terms!r}")
    tops = [top] * max_terms if isinstance(top, int) else list(top)
    tops += tops[-1:] * (max_terms - len(tops))
    if not tops or any(not isinstance(t, int) or t < 1 for t in tops):
        raise ValueError(
            f"best_subsets: top must be a positive int or {max_terms} of them, got {top!r}"
        )
    Tn, _ = _normalised(Theta)
    m = Theta.shape[1]
    out: list[tuple[tuple[int, ...], float]] = []
    prev: list[tuple[int, ...]] = []
    for k in range(1, min(max_terms, m) + 1):
        if k == 1 or math.comb(m, k) <= max_subsets:
            subsets = np.asarray(list(itertools.combinations(range(m), k)), int)
        else:
            grown = {tuple(sorted((*s, c))) for s in prev for c in range(m) if c not in s}
            subsets = np.asarray(sorted(grown), int)
        rss = _rss(Tn, u, subsets)
        order = np.argsort(rss, kind="stable")
        best = [
            (tuple(int(c) for c in subsets[i]), float(rss[i]))
            for i in order[: tops[k - 1]]
            if np.isfinite(rss[i])
        ]
        out += best
        prev = [s for s, _ in best] or prev
    return out


def _own_pick(discovery: Discovery, state: str) -> tuple[int, ...]:
    """The columns the regression itself kept for ``state``."""
    col = discovery.state_names.index(state)
    return tuple(int(i) for i in np.flatnonzero(discovery.mask[:, col]))


def candidates(discovery: Discovery, Theta, max_terms: int, top) -> list[list[tuple[int, ...]]]:
    """Per regressed state: the empty equation (the network may have learned nothing there), the
    best subsets of each size and the regression's own pick."""
    per_state = []
    for j, s in enumerate(discovery.states):
        cands = [()]
        cands += [c for c, _ in best_subsets(Theta, discovery.targets[:, j], max_terms, top=top)]
        own = _own_pick(discovery, s)
        if 0 < len(own) <= max_terms and own not in cands:
            cands.append(own)
        per_state.append(cands)
    return per_state


def screening(discovery: Discovery, per_state) -> tuple[tuple, list[tuple]]:
    """Joint candidates that vary one state's equation at a time, the others held at the
    regression's own pick (or their best single term): what prunes a product too large to refit
    whole. Returns ``(base, combos)``."""
    base = []
    for j, s in enumerate(discovery.states):
        own = _own_pick(discovery, s)
        base.append(own if own in per_state[j] and own else per_state[j][1 % len(per_state[j])])
    combos = []
    for j, cands in enumerate(per_state):
        for c in cands:
            combo = (*base[:j], c, *base[j + 1 :])
            if combo not in combos:
                combos.append(combo)
    return tuple(base), combos


def models_of(discovery: Discovery, Theta, known, combos):
    """The :class:`DiscoveredModel` of every joint candidate (least-squares coefficients on the
    regression samples, whose library values are ``Theta``) and its support mask."""
    shape = (len(discovery.names), len(discovery.state_names))
    models, masks = [], []
    for combo in combos:
        xi = np.zeros(shape)
        mask = np.zeros(shape, bool)
        for j, (s, cols) in enumerate(zip(discovery.states, combo, strict=True)):
            c = discovery.state_names.index(s)
            cols = list(cols)
            if cols:
                xi[cols, c] = np.linalg.lstsq(Theta[:, cols], discovery.targets[:, j], rcond=None)[
                    0
                ]
                mask[cols, c] = True
        models.append(DiscoveredModel(known, discovery.library, xi, mask))
        masks.append(mask)
    return models, masks
