"""Model selection by simulation: refit candidate supports through the ODE and score them on the
data.

The UDE paper picks the sparsity of each equation from the regression of the network's output
alone (its criterion trades kept terms against the residual of ``U ≈ Θ(y)·Ξ``). Along one short
trajectory the library's columns are nearly collinear and the network's error is smooth, so that
residual keeps falling as spurious terms are added and every rule built on it over-fits
(scenario 1 at 5 % noise: ``x*y^2``, ``y^5``, ``sin(y)`` ... kept). Mangan et al. (2017, "Model
selection for dynamical systems via sparse regression and information criteria") instead integrate
each candidate model and score it against the *data* with an information criterion: the
measurement noise is white where the network's error is not, so AICc then rewards only terms that
make the simulated trajectory fit better.

Here:

1. candidate supports per state: the ``top`` best subsets of each size ``1 … max_terms`` for the
   regression target (exhaustive by batched QR while the number of subsets is small, greedy
   forward steps beyond), plus the supports the sparse regressor's sweep kept with at most
   ``max_terms`` terms (the paper's own pick among them);
2. joint candidates: every combination over the regressed states;
3. all candidates (and their initial states) refitted at once through the solver by
   Levenberg–Marquardt (``optimistix``, Jacobians by forward-mode JVPs through ``diffrax``), one
   vmapped and jitted program, starting from their least-squares coefficients;
4. scored by ``BIC = n log(SSE/n) + k log n`` (or
   ``AICc = n log(SSE/n) + 2k + 2k(k+1)/(n − k − 1)``), with ``n`` the observed values, ``k``
   the kept terms and SSE weighted per state by
   ``1 / mean(|y_j|)²`` (noise proportional to each state's scale, as in the paper's noise model;
   ``weights`` overrides). BIC is the default: it is consistent (it picks the true support as data
   grow), where AIC's lighter penalty keeps flexible spurious terms that fit the noise of short
   series. Candidates within ``delta`` (default 2) of the best score are equally supported by the
   data (Burnham & Anderson's rule of thumb, used by Mangan et al.); the sparsest of them wins,
   then the lower score.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ..model import partition
from ..physics import AbstractPhysics
from ..solve import SolverOptions, solve_data
from ..train import LearnedInitialStates
from .candidates import best_subsets, candidates, models_of, screening
from .discover import Discovery
from .discovered import DiscoveredModel
from .selection import aicc

__all__ = [
    "best_subsets",
    "SimulationSelection",
    "select_by_simulation",
    "select_many",
    "aicc",
    "bic",
    "SCORES",
    "state_weights",
    "candidate_table_text",
]


def state_weights(data, weights="scale") -> np.ndarray:
    """Per-state weights of squared errors: ``"scale"`` gives ``1 / mean(|y_j|)²`` over the observed
    values of each state (the likelihood's weights when the noise is proportional to each state's
    scale); None or ``"equal"`` gives ones; an array is used as given."""
    ys, mask = np.asarray(data.ys, float), np.asarray(data.mask, bool)
    n_states = ys.shape[-1]
    if weights is None or (isinstance(weights, str) and weights == "equal"):
        return np.ones(n_states)
    if isinstance(weights, str):
        if weights != "scale":
            raise ValueError(f"weights must be 'scale', 'equal', None or an array, got {weights!r}")
        scale = np.asarray(
            [
                np.mean(np.abs(ys[..., j][mask[..., j]])) if mask[..., j].any() else 1.0
                for j in range(n_states)
            ]
        )
        return 1.0 / np.where(scale > 0, scale, 1.0) ** 2
    w = np.asarray(weights, float)
    if w.shape != (n_states,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {n_states} finite values >= 0, got {weights!r}")
    return w


def bic(sse, n: int, k) -> np.ndarray:
    """``n log(SSE/n) + k log(n)``; inf where the fit failed."""
    sse = np.asarray(sse, float)
    k = np.asarray(k, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = n * np.log(np.maximum(sse, np.finfo(float).tiny) / n) + k * np.log(n)
    return np.where(np.isfinite(sse), score, np.inf)


SCORES = {"bic": bic, "aicc": aicc}
"""The information criteria :func:`select_by_simulation` can score candidates with."""


@dataclasses.dataclass(frozen=True, eq=False)
class SimulationSelection:
    """What :func:`select_by_simulation` found.

    Attributes:
        discovery: the chosen support as a :class:`Discovery` (``criterion="simulation"``), its
            coefficients the refitted ones.
        model: the refitted :class:`DiscoveredModel` of the winner; extra: its strategy extras
            (the learned initial states), or None.
        loss: its weighted SSE on the data after the refit.
        weights: the per-state weights used.
        table: one row per candidate: ``terms`` ({state: [names]}), ``k``, ``sse``, ``score``,
            ``delta`` (to the smallest score), ``iterations`` (of its refit), ``chosen``; sorted
            by score.
    """

    discovery: Discovery
    model: DiscoveredModel
    extra: object
    loss: float
    weights: np.ndarray
    table: list[dict]


def select_by_simulation(
    discovery: Discovery,
    known: AbstractPhysics | Callable | None,
    data,
    *,
    max_terms: int = 3,
    top=(3, 1, 1),
    delta: float = 2.0,
    score: str = "bic",
    weights="scale",
    learn_y0: bool = True,
    options: SolverOptions | None = None,
    max_steps: int = 100,
    rtol: float = 1e-8,
    max_candidates: int = 256,
    max_joint: int = 64,
    keep_per_state: int = 3,
) -> SimulationSelection:
    """Choose the discovered support by refitting candidates through the ODE (see the module doc).

    Args:
        discovery: a :class:`Discovery` (from :func:`ude.discovery.discover`); its samples give the
            candidate supports, its own pick is one of the candidates.
        known: the known physics of the discovered model (trainable parameters are refitted too).
        data: the training :class:`ude.data.Dataset` the candidates are refitted and scored on.
        max_terms: largest number of terms per equation considered.
        top: best subsets kept per size and state (an int, or one per size: by default the 3
            best single terms, the best pair and the best triple).
        delta: tolerance of the parsimony rule (0: plain smallest score).
        score: ``"bic"`` (default; consistent: picks the true support as data grow) or ``"aicc"``.
        weights: per-state weights of the squared errors (:func:`state_weights`).
        learn_y0: refit the initial states too (the first sample is noisy; default True).
        options: solver options of the refit (default Tsit5 at rtol = atol = 1e-8, 1024 steps at
            most); the adjoint is replaced by forward mode (the Jacobian is built by JVPs).
        max_steps, rtol: Levenberg–Marquardt iterations and relative tolerance.
        max_candidates: refuse more joint candidates than this (lower ``max_terms`` or ``top``).
        max_joint, keep_per_state: when the product of the states' candidates exceeds
            ``max_joint`` (3 states and more), it is pruned first: each state's candidates are
            refitted with the other equations held at the regression's pick, and only each
            state's ``keep_per_state`` best are joined.
    """
    return select_many(
        [discovery],
        known,
        data,
        max_terms=max_terms,
        top=top,
        delta=delta,
        score=score,
        weights=weights,
        learn_y0=learn_y0,
        options=options,
        max_steps=max_steps,
        rtol=rtol,
        max_candidates=max_candidates,
        max_joint=max_joint,
        keep_per_state=keep_per_state,
    )[0]


@eqx.filter_jit
def _refit_all(
    models, index, valid, y0s, data, weights, options, learn_y0: bool, max_steps: int, rtol
):
    """Levenberg–Marquardt (optimistix) on every candidate at once: residuals are the weighted,
    masked differences between each candidate's solution and its data. The unknowns are only the
    kept coefficients (``index`` into the flattened Ξ, padded where ``valid`` is False), trainable
    known-physics parameters and, with ``learn_y0``, the initial states: a handful of JVPs per
    Jacobian."""

    def one(model, index, valid, y0, data, w):
        shape = model.coefficients.shape
        kp, kstatic = partition(model.known)

        def build(p, kp):
            xi = jnp.zeros(shape[0] * shape[1], p.dtype).at[index].add(jnp.where(valid, p, 0.0))
            return eqx.tree_at(
                lambda m: (m.coefficients, m.known),
                model,
                (xi.reshape(shape), eqx.combine(kp, kstatic)),
            )

        def residuals(x, _):
            p, kp, y0_ = x
            sol = solve_data(build(p, kp), y0_ if learn_y0 else y0, data, options)
            r = (sol.ys - data.ys) * jnp.sqrt(w)
            return jnp.where(data.mask, r, 0.0)

        p0 = jnp.where(valid, model.coefficients.reshape(-1)[index], 0.0)
        sol = optx.least_squares(
            residuals,
            optx.LevenbergMarquardt(rtol=rtol, atol=1e-12),
            (p0, kp, y0),
            max_steps=max_steps,
            throw=False,
        )
        r = residuals(sol.value, None)
        sse = jnp.sum(r**2)
        sse = jnp.where(jnp.isfinite(sse), sse, jnp.inf)
        y0_out = sol.value[2] if learn_y0 else y0
        return build(sol.value[0], sol.value[1]), y0_out, sse, sol.stats["num_steps"]

    return eqx.filter_vmap(one)(models, index, valid, y0s, data, weights)


def select_many(
    discoveries: Sequence[Discovery],
    known: AbstractPhysics | Callable | None,
    data,
    *,
    max_terms: int = 3,
    top=(3, 1, 1),
    delta: float = 2.0,
    score: str = "bic",
    weights="scale",
    learn_y0: bool = True,
    options: SolverOptions | None = None,
    max_steps: int = 100,
    rtol: float = 1e-8,
    max_candidates: int = 256,
    max_joint: int = 64,
    keep_per_state: int = 3,
) -> list[SimulationSelection]:
    """:func:`select_by_simulation` for many discoveries at once (e.g. the runs of a noise sweep):
    every candidate of every discovery is refitted in one vmapped, jitted program.

    ``data`` is one Dataset shared by all, or a stacked one (a leading axis, one per discovery, as
    from :func:`ude.train.ensemble.resample_noise`). Other arguments as in
    :func:`select_by_simulation`; ``weights="scale"`` is computed per discovery's data.
    """
    from ..train import initial_states  # discovery sits after train
    from ..train.ensemble import member, stack

    if delta < 0:
        raise ValueError(f"select_by_simulation: delta must be >= 0, got {delta!r}")
    if score not in SCORES:
        raise ValueError(
            f"select_by_simulation: score must be one of {sorted(SCORES)}, got {score!r}"
        )
    n = len(discoveries)
    stacked = np.ndim(data.ys) == 4
    if stacked and data.ys.shape[0] != n:
        raise ValueError(f"select_many: data has {data.ys.shape[0]} members, {n} discoveries given")
    datas = [member(data, i) if stacked else data for i in range(n)]
    weight_list = [state_weights(di, weights) for di in datas]
    opts = options or SolverOptions("tsit5", rtol=1e-8, atol=1e-8, max_steps=1024)
    opts = dataclasses.replace(opts, adjoint="forward")

    def refit(combos_of):  # {discovery: [joint candidate, ...]} -> every candidate refitted
        models, masks, owner = [], [], []
        for i, combos in combos_of.items():
            ms, ks = models_of(discoveries[i], thetas[i], known, combos)
            models += ms
            masks += ks
            owner += [i] * len(ms)
        owner = np.asarray(owner)
        y0s = jnp.stack([initial_states(datas[i]) for i in owner])
        w = jnp.asarray(np.stack([weight_list[i] for i in owner]))
        k_max = max(1, max(int(m.sum()) for m in masks))
        index = np.zeros((len(masks), k_max), np.int32)
        valid = np.zeros((len(masks), k_max), bool)
        for b, m in enumerate(masks):
            flat = np.flatnonzero(m.reshape(-1))
            index[b, : len(flat)] = flat
            valid[b, : len(flat)] = True
        fitted, y0_fit, sse, steps = _refit_all(
            stack(models),
            jnp.asarray(index),
            jnp.asarray(valid),
            y0s,
            stack([datas[i] for i in owner]),
            w,
            opts,
            bool(learn_y0),
            int(max_steps),
            rtol,
        )
        return masks, owner, fitted, y0_fit, np.asarray(sse, float), steps

    thetas = [np.asarray(d.theta()) for d in discoveries]
    per = [candidates(d, th, max_terms, top) for d, th in zip(discoveries, thetas, strict=True)]
    joint = {i: list(itertools.product(*per[i])) for i in range(n)}
    big = [i for i in range(n) if len(joint[i]) > max_joint]
    if big:  # prune per state first: vary one equation at a time, keep each state's best few
        screens = {i: screening(discoveries[i], per[i]) for i in big}
        s_masks, s_owner, _, _, s_sse, _ = refit({i: screens[i][1] for i in big})
        for i in big:
            base, combos = screens[i]
            idx = np.flatnonzero(s_owner == i)
            n_obs = int(np.asarray(datas[i].mask).sum())
            k = np.asarray([s_masks[b].sum() for b in idx])
            at = dict(zip(combos, SCORES[score](s_sse[idx], n_obs, k), strict=True))
            kept = []
            for j, cands in enumerate(per[i]):
                ranked = sorted(
                    cands, key=lambda c, j=j: (at[(*base[:j], c, *base[j + 1 :])], len(c))
                )
                kept.append(ranked[:keep_per_state])
            joint[i] = list(itertools.product(*kept))
    for i in range(n):
        if len(joint[i]) > max_candidates:
            raise ValueError(
                f"select_by_simulation: {len(joint[i])} joint candidates exceed "
                f"max_candidates = {max_candidates}; lower max_terms or top"
            )
    masks, owner, fitted, y0_fit, sse_all, steps = refit(joint)

    out = []
    for i, (d, di) in enumerate(zip(discoveries, datas, strict=True)):
        idx = np.flatnonzero(owner == i)
        n_obs = int(np.asarray(di.mask).sum())
        k = np.asarray([masks[b].sum() for b in idx])
        sse = sse_all[idx]
        score_b = SCORES[score](sse, n_obs, k)
        order = np.lexsort((k, score_b))
        if not np.isfinite(score_b[order[0]]):
            raise ValueError(
                "select_by_simulation: no candidate model could be refitted through the "
                "solver (every refit failed)"
            )
        near = np.flatnonzero(score_b <= score_b[order[0]] + delta)
        best = int(near[np.lexsort((score_b[near], k[near]))[0]])
        b_all = int(idx[best])
        model = member(fitted, b_all)
        names = d.names
        table = [
            {
                "terms": {
                    s: [names[t] for t in np.flatnonzero(masks[idx[b]][:, d.state_names.index(s)])]
                    for s in d.states
                },
                "k": int(k[b]),
                "sse": float(sse[b]),
                "score": float(score_b[b]),
                "delta": float(score_b[b] - score_b[order[0]]),
                "iterations": int(steps[idx[b]]),
                "chosen": b == best,
            }
            for b in order
        ]
        chosen = dataclasses.replace(
            d,
            coefficients=np.asarray(model.xi, float),
            mask=np.asarray(masks[b_all]),
            criterion="simulation",
        )
        out.append(
            SimulationSelection(
                discovery=chosen,
                model=model,
                extra=LearnedInitialStates(y0=y0_fit[b_all]) if learn_y0 else None,
                loss=float(sse[best]),
                weights=weight_list[i],
                table=table,
            )
        )
    return out


def candidate_table_text(table: Sequence[dict], rows: int = 8) -> list[str]:
    """The best ``rows`` candidates as text lines (for logs)."""
    lines = []
    for r in table[:rows]:
        terms = "; ".join(f"{s}: {' + '.join(t) or '0'}" for s, t in r["terms"].items())
        lines.append(
            f"{'*' if r['chosen'] else ' '} Δscore {r['delta']:7.2f}  SSE {r['sse']:.4g}  "
            f"k {r['k']}  {terms}"
        )
    return lines
