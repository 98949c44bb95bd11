"""Refit a discovered model's kept coefficients through the ODE solver (the paper's last step)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.random as jr

from ..solve import SolverOptions
from .discovered import DiscoveredModel


def refit(
    model: DiscoveredModel,
    data,
    *,
    strategy=None,
    stages=None,
    key=None,
    train_known: Sequence[str] = (),
    verbose: bool = False,
    **fit_kwargs,
):
    """Train the kept coefficients (and optionally known-physics parameters) on ``data``.

    Only ``model.coefficients`` where ``model.mask`` is True can change the vector field; dropped
    terms stay exactly zero. Uses :func:`ude.train.fit`.

    Args:
        model: a :class:`DiscoveredModel` (e.g. ``Discovery.to_model(known)``).
        data: a ``Dataset`` (the training window).
        strategy: default ``SingleShooting`` with Tsit5 at rtol = atol = 1e-8, SSE loss.
        stages: default ``[LBFGS(steps=200)]`` (the coefficients start close to the answer).
        key: a ``jax.random`` key (default ``jr.key(0)``).
        train_known: known-physics parameters to learn too (e.g. ``("alpha", "gamma")``).
        verbose, fit_kwargs: passed to :func:`ude.train.fit`.

    Returns:
        the ``FitResult``; ``.model`` is the refitted :class:`DiscoveredModel`.

    Example::

        res = refit(discovery.to_model(known), data)
        res.model.as_dict()
    """
    from ..train import LBFGS, SingleShooting, fit  # discovery sits after train in the pipeline

    if not isinstance(model, DiscoveredModel):
        raise ValueError(f"refit: model must be a DiscoveredModel, got {type(model).__name__}")
    if train_known:
        model = DiscoveredModel(
            model.known.set_trainable(*train_known), model.library, model.coefficients, model.mask
        )
    strategy = strategy or SingleShooting(options=SolverOptions("tsit5", rtol=1e-8, atol=1e-8))
    stages = list(stages) if stages is not None else [LBFGS(steps=200)]
    key = jr.key(0) if key is None else key
    return fit(model, data, strategy, stages, key=key, verbose=verbose, **fit_kwargs)
