"""The quality gate: did a fit explain the data down to their noise, or did it fail?

A fit's final loss is compared with the **noise floor**, the loss a perfect model would score on
the same data. With simulated data the floor is known (the truth's own loss,
:func:`ude.evaluate.noise_floor`); with real data it is estimated from the data
(:func:`estimate_noise_floor`). The verdict, :func:`fit_quality`, is one of

* ``"ok"``: the final loss is at most ``max_ratio`` times the floor;
* ``"underfit"``: it is more — the model does not explain the data (a poor optimum, a recipe
  that does not suit the problem, a network too small or unscaled); what was discovered from it
  should not be trusted;
* ``"diverged"``: the final loss is not finite (training blew up);
* ``"unchecked"``: no floor could be had (too few samples to estimate one), or the gate is off
  (``max_ratio`` None).

``ude run`` writes the verdict to ``metrics.json`` (``fit.status``), prints a warning on an
underfit run and exits with :data:`ude.errors.EXIT_UNDERFIT` unless ``--allow-underfit`` (or the
environment variable ``UDE_ALLOW_UNDERFIT=1``) says to keep 0.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import EXIT_OK, EXIT_UNDERFIT

__all__ = [
    "DEFAULT_MAX_RATIO",
    "estimate_noise_floor",
    "estimate_noise_sd",
    "fit_quality",
    "gate",
    "underfit_message",
]

# A perfect model's loss over N values is the floor times chi-square(N)/N, within a few percent of
# it for the data sizes here; a factor of 10 leaves room for a model that is good but not exact
# (the network's approximation error at low noise) and still flags the fits that miss the dynamics
# (the motivating case was 1000x).
DEFAULT_MAX_RATIO = 10.0


def _residuals(t, y, k: int):
    """Every sample's residual from the polynomial through its ``k`` neighbours on each side
    (Lagrange interpolation, degree ``2k - 1``), and that residual's variance in units of the
    noise variance, ``1 + Σ L_j²``."""
    res, var = [], []
    for i in range(k, t.size - k):
        nb = np.r_[i - k : i, i + 1 : i + k + 1]
        L = np.ones(nb.size)
        for a, j in enumerate(nb):
            for m in nb:
                if m != j:
                    L[a] *= (t[i] - t[m]) / (t[j] - t[m])
        res.append(y[i] - L @ y[nb])
        var.append(1.0 + L @ L)
    return np.asarray(res), np.asarray(var)


def estimate_noise_sd(data) -> np.ndarray:
    """Per state, the noise standard deviation estimated from the data alone: every observed
    sample is compared with the cubic through its two observed neighbours on each side (within its
    own experiment; the straight line through one on each side where an experiment has fewer than
    5 samples of it). For a smooth signal sampled finely enough the cubic's error is fourth order
    in the spacing, so the residual is mostly noise, of a variance known from the interpolation
    weights; the signal's own curvature can only make the estimate err high. NaN for a state with
    fewer than 3 samples in every experiment."""
    ts = np.asarray(data.times, float)
    ys = np.asarray(data.ys, float)
    mask = np.asarray(data.mask, bool)  # padding is never observed (a Dataset refuses it)
    num = np.zeros(data.n_states)
    den = np.zeros(data.n_states)
    for i in range(data.n_traj):
        for s in range(data.n_states):
            idx = np.flatnonzero(mask[i, :, s])
            if idx.size < 3:
                continue
            r, v = _residuals(ts[i, idx], ys[i, idx, s], 2 if idx.size >= 5 else 1)
            num[s] += np.sum(r**2)
            den[s] += np.sum(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sqrt(num / den), np.nan)


def estimate_noise_floor(data, reduction: str = "sse", weights=None) -> float | None:
    """The loss a perfect model would score on ``data`` under a squared-error loss of
    ``reduction`` (``"sse"`` or ``"mse"``) and per-state ``weights``, from
    :func:`estimate_noise_sd`: ``Σ_s w_s N_s sd_s²`` (divided by ``Σ N_s`` for ``"mse"``). None when
    some observed state has too few samples to estimate its noise."""
    sd = estimate_noise_sd(data)
    mask = np.asarray(data.mask, bool)
    counts = mask.sum(axis=(0, 1))
    seen = counts > 0
    if not seen.any() or not np.all(np.isfinite(sd[seen])):
        return None
    w = (
        np.ones(data.n_states)
        if weights is None
        else np.broadcast_to(np.asarray(weights), sd.shape)
    )
    total = float(np.sum(np.where(seen, w * counts * np.nan_to_num(sd) ** 2, 0.0)))
    if reduction == "mse":
        total /= max(int(counts.sum()), 1)
    return total


def fit_quality(
    final_loss: float | None,
    floor: float | None,
    *,
    source: str | None,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
) -> dict:
    """The verdict on a fit: ``{"status", "loss_to_floor", "floor", "floor_source", "max_ratio"}``
    (``floor_source`` is ``"truth"`` or ``"data"``, how the floor was had)."""
    out = {"floor": floor, "floor_source": source, "max_ratio": max_ratio, "loss_to_floor": None}
    if final_loss is None or not math.isfinite(final_loss):
        return {**out, "status": "diverged"}
    if floor is None or not math.isfinite(floor) or floor <= 0:
        return {**out, "status": "unchecked"}
    ratio = float(final_loss) / float(floor)
    out["loss_to_floor"] = ratio
    if max_ratio is None:
        return {**out, "status": "unchecked"}
    return {**out, "status": "underfit" if ratio > max_ratio else "ok"}


def underfit_message(quality: dict) -> str:
    """The warning printed on an underfit run: the ratio, and what to try."""
    truth = quality["floor_source"] == "truth"
    src = "known from the truth" if truth else "estimated from the data"
    what = "what is discovered from it is not to be trusted"
    if quality.get("refit_to_floor") is not None:
        what = (
            "the equations discovered from it were refitted to "
            f"{quality['refit_to_floor']:.3g}× the floor, so check them, not the network"
        )
    return (
        f"warning: the fit is underfit: its final loss is {quality['loss_to_floor']:.3g}× the "
        f"noise floor {quality['floor']:.4g} ({src}; the gate is {quality['max_ratio']:g}×): the "
        f"network does not explain the data, and {what}. Try: a collocation pre-fit "
        "(train.pretrain), multiple shooting (train.strategy.kind: multiple_shooting) or learned "
        "initial states, more steps or an L-BFGS polish (train.polish), a wider network. "
        "--allow-underfit keeps exit status 0; train.underfit_ratio sets the gate (null: off)."
    )


def gate(metrics: dict, *, allow: bool = False) -> tuple[int, str | None]:
    """``(exit status, warning or None)`` of a finished run from its metrics: an underfit fit
    warns, and exits :data:`~ude.errors.EXIT_UNDERFIT` unless ``allow`` or the environment variable
    ``UDE_ALLOW_UNDERFIT=1`` (then 0, still warned)."""
    fit = metrics.get("fit") or {}
    if fit.get("status") != "underfit":
        return EXIT_OK, None
    allowed = allow or os.environ.get("UDE_ALLOW_UNDERFIT") == "1"
    return (EXIT_OK if allowed else EXIT_UNDERFIT), underfit_message(fit)
