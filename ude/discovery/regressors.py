"""Sparse regressors in JAX: STLSQ, SR3 and a bagging ensemble.

All solve ``Y ≈ Θ Ξ`` for a sparse ``Ξ: (terms, targets)``, one target column at a time (each
target gets its own support, as in pysindy). Iteration counts are static and every loop is a
``lax.fori_loop``, so a regressor jits and vmaps; the sparsity knob ``lam`` is an array, so a λ
sweep is one ``jax.vmap`` (see :func:`sweep`) and never recompiles. With ``normalize=True`` the
columns of Θ are divided by their L2 norms before the regression and the coefficients are scaled
back afterwards (pysindy's ``normalize_columns``), so ``lam`` acts on each term's contribution.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl

from .._types import Array, ArrayLike, Float


def _lstsq_masked(X, y, mask, alpha):
    """argmin ‖y − X w‖² + α‖w‖² over w supported on ``mask`` (zero elsewhere).

    Uses an SVD least-squares solve of the ridge-augmented system (better conditioned than the
    normal equations for high-degree monomials). Masked columns are zero in both blocks, so the
    minimum-norm solution puts exactly zero on them.
    """
    m = mask.astype(X.dtype)
    Xm = X * m
    p = X.shape[1]
    A = jnp.concatenate([Xm, jnp.sqrt(alpha) * jnp.diag(m)], axis=0)
    b = jnp.concatenate([y, jnp.zeros((p,), y.dtype)])
    w = jnp.linalg.lstsq(A, b)[0]
    return jnp.where(mask, w, 0.0)


def _column_norms(Theta):
    n = jnp.linalg.norm(Theta, axis=0)
    return jnp.where(n > 0, n, 1.0)


class AbstractRegressor(eqx.Module):
    """``regressor(Θ: (n, terms), Y: (n, targets) | (n,)) -> Ξ: (terms, targets) | (terms,)``.

    Concrete regressors implement ``_solve(X: (n, terms), y: (n,)) -> (terms,)`` on the
    (normalised) library and declare ``lam`` (the sparsity knob swept by :func:`sweep`).
    """

    lam: eqx.AbstractVar[Array]
    normalize: eqx.AbstractVar[bool]
    unbias: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def _solve(
        self, X: Float[Array, "n terms"], y: Float[Array, " n"]
    ) -> Float[Array, " terms"]: ...

    def with_lam(self, lam) -> AbstractRegressor:
        """A copy with another sparsity knob (an array leaf: no recompilation)."""
        return eqx.tree_at(lambda r: r.lam, self, jnp.asarray(lam, dtype=self.lam.dtype))

    def __call__(
        self, Theta: Float[ArrayLike, "n terms"], Y: Float[ArrayLike, n * targets]
    ) -> Float[Array, terms * targets]:
        Theta = jnp.asarray(Theta)
        Y = jnp.asarray(Y, dtype=Theta.dtype)
        if Theta.ndim != 2 or Y.ndim not in (1, 2) or Y.shape[0] != Theta.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: expected Theta (n, terms) and Y (n,) or "
                f"(n, targets), got {Theta.shape} and {Y.shape}"
            )
        single = Y.ndim == 1
        Xi = _fit(self, Theta, Y[:, None] if single else Y)
        return Xi[:, 0] if single else Xi


@eqx.filter_jit
def _fit(regressor: AbstractRegressor, Theta, Y):
    # one compiled program per (regressor structure, shapes), reused by eager calls and sweeps
    if regressor.normalize:
        norms = _column_norms(Theta)
    else:
        norms = jnp.ones(Theta.shape[1], Theta.dtype)
    X = Theta / norms

    def one(y):
        w = regressor._solve(X, y)
        if regressor.unbias:
            w = _lstsq_masked(X, y, w != 0, jnp.zeros((), X.dtype))
        return w / norms

    return jax.vmap(one, in_axes=1, out_axes=1)(Y)


class STLSQ(AbstractRegressor):
    """Sequentially thresholded (ridge) least squares (Brunton, Proctor & Kutz 2016).

    Repeat: ridge regression on the current support, drop coefficients with ``|ξ| < threshold``.
    The support only shrinks, so it is fixed after at most ``terms`` rounds; ``iterations``
    (default: the number of terms) is that fixed count. Matches ``pysindy.optimizers.STLSQ`` with
    the same ``threshold``, ``alpha``, ``normalize_columns`` and ``unbias``.

    Args:
        threshold: the sparsity knob λ (in normalised units when ``normalize``).
        alpha: ridge weight (``‖y − Xw‖² + α‖w‖²``). The default 1e-3 is smaller than pysindy's
            0.05 because the columns are normalised by default: on an ill-conditioned library a
            large ridge smears a true term over its correlated neighbours; on exact data use 0.
        iterations: thresholding rounds (static).
        normalize: divide the library columns by their L2 norms first.
        unbias: finish with plain least squares on the kept terms.
    """

    lam: Array
    alpha: Array
    iterations: int | None = eqx.field(static=True)
    normalize: bool = eqx.field(static=True)
    unbias: bool = eqx.field(static=True)

    def __init__(
        self,
        threshold=0.1,
        alpha=1e-3,
        *,
        iterations: int | None = None,
        normalize: bool = True,
        unbias: bool = True,
    ):
        if not isinstance(threshold, jax.core.Tracer) and float(threshold) < 0:
            raise ValueError(f"STLSQ: threshold must be >= 0, got {threshold!r}")
        if not isinstance(alpha, jax.core.Tracer) and float(alpha) < 0:
            raise ValueError(f"STLSQ: alpha must be >= 0, got {alpha!r}")
        if iterations is not None and (not isinstance(iterations, int) or iterations < 1):
            raise ValueError(f"STLSQ: iterations must be a positive integer, got {iterations!r}")
        self.lam = jnp.asarray(threshold, dtype=jnp.result_type(float))
        self.alpha = jnp.asarray(alpha, dtype=jnp.result_type(float))
        self.iterations = iterations
        self.normalize = bool(normalize)
        self.unbias = bool(unbias)

    @property
    def threshold(self) -> Array:
        return self.lam

    def _solve(self, X, y):
        p = X.shape[1]
        alpha = self.alpha.astype(X.dtype)

        def body(_, carry):
            w, mask = carry
            w = _lstsq_masked(X, y, mask, alpha)
            mask = mask & (jnp.abs(w) >= self.lam)
            return jnp.where(mask, w, 0.0), mask

        w0 = jnp.zeros((p,), X.dtype)
        w, _ = jax.lax.fori_loop(0, self.iterations or p, body, (w0, jnp.ones((p,), bool)))
        return w


PROX = {
    "l0": lambda x, wt: x * (jnp.abs(x) > jnp.sqrt(2 * wt)),
    "l1": lambda x, wt: jnp.sign(x) * jnp.maximum(jnp.abs(x) - wt, 0.0),
}


class SR3(AbstractRegressor):
    """Sparse relaxed regularised regression (Zheng et al. 2018), the UDE paper's regressor.

    Minimises ``½‖y − Xw‖² + λR(v) + ‖w − v‖²/(2ν)`` by alternating an exact ridge-like solve for w
    (one Cholesky factorisation, reused) with the prox of R for v, which is returned. For
    ``R = L0`` the prox is hard thresholding at ``sqrt(2λν)``; for ``L1`` soft thresholding at λν.
    Runs a fixed ``iterations`` count from ``init``: ``"zeros"`` (the default: the first w is then
    the ridge solution with weight 1/ν) or ``"lstsq"`` (pysindy's start). On an ill-conditioned
    library (high-degree monomials) the least-squares start is huge along near-null directions,
    which the relaxation only forgets at rate 1/(1 + νσ²) per iteration, so it can keep every term
    for any λ. Matches ``pysindy.optimizers.SR3(reg_weight_lam=λ, relax_coeff_nu=ν,
    regularizer=..., initial_guess=...)`` run for the same number of iterations.

    Args:
        lam: regularisation weight λ (the sparsity knob).
        nu: relaxation ν > 0.
        regularizer: ``"l0"`` or ``"l1"``.
        iterations: fixed iteration count (static).
        normalize: divide the library columns by their L2 norms first.
        unbias: finish with plain least squares on the kept terms.
        init: ``"zeros"`` or ``"lstsq"`` (static).
    """

    lam: Array
    nu: Array
    regularizer: str = eqx.field(static=True)
    iterations: int = eqx.field(static=True)
    normalize: bool = eqx.field(static=True)
    unbias: bool = eqx.field(static=True)
    init: str = eqx.field(static=True)

    def __init__(
        self,
        lam=0.005,
        nu=1.0,
        *,
        regularizer: str = "l0",
        iterations: int = 100,
        normalize: bool = True,
        unbias: bool = False,
        init: str = "zeros",
    ):
        if not isinstance(lam, jax.core.Tracer) and float(lam) < 0:
            raise ValueError(f"SR3: lam must be >= 0, got {lam!r}")
        if not isinstance(nu, jax.core.Tracer) and float(nu) <= 0:
            raise ValueError(f"SR3: nu must be > 0, got {nu!r}")
        if regularizer.lower() not in PROX:
            raise ValueError(f"SR3: regularizer must be one of {sorted(PROX)}, got {regularizer!r}")
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"SR3: iterations must be a positive integer, got {iterations!r}")
        if init not in ("zeros", "lstsq"):
            raise ValueError(f"SR3: init must be 'zeros' or 'lstsq', got {init!r}")
        self.init = init
        self.lam = jnp.asarray(lam, dtype=jnp.result_type(float))
        self.nu = jnp.asarray(nu, dtype=jnp.result_type(float))
        self.regularizer = regularizer.lower()
        self.iterations = iterations
        self.normalize = bool(normalize)
        self.unbias = bool(unbias)

    @staticmethod
    def l0_weight(threshold, nu=1.0):
        """The L0 weight λ whose prox thresholds at ``threshold``: ``threshold² / (2ν)``."""
        return threshold**2 / (2 * nu)

    def _solve(self, X, y):
        p = X.shape[1]
        nu = self.nu.astype(X.dtype)
        lam = self.lam.astype(X.dtype)
        prox = PROX[self.regularizer]
        chol = jsl.cho_factor(X.T @ X + jnp.eye(p, dtype=X.dtype) / nu)
        Xty = X.T @ y
        v0 = jnp.linalg.lstsq(X, y)[0] if self.init == "lstsq" else jnp.zeros((p,), X.dtype)

        def body(_, v):
            w = jsl.cho_solve(chol, Xty + v / nu)
            return prox(w, lam * nu)

        return jax.lax.fori_loop(0, self.iterations, body, v0)


def sweep(
    regressor: AbstractRegressor,
    Theta: Float[ArrayLike, "n terms"],
    Y: Float[ArrayLike, "n targets"],
    lams: Float[ArrayLike, " lams"],
) -> Float[Array, "lams terms targets"]:
    """Run ``regressor`` for every λ in ``lams`` (one vmapped program)."""
    lams = jnp.asarray(lams, dtype=regressor.lam.dtype)
    if lams.ndim != 1:
        raise ValueError(f"sweep: lams must be 1-D, got shape {lams.shape}")
    return jax.vmap(lambda lam: regressor.with_lam(lam)(Theta, Y))(lams)


sweep_jit = eqx.filter_jit(sweep)


class BaggedResult(eqx.Module):
    """:class:`BaggedRegressor` output: aggregated ``coefficients (terms, targets)``, each term's
    ``inclusion`` probability (fraction of members that keep it) and all ``members (models, terms,
    targets)``."""

    coefficients: Float[Array, "terms targets"]
    inclusion: Float[Array, "terms targets"]
    members: Float[Array, "models terms targets"]


class BaggedRegressor(eqx.Module):
    """Bagging (Fasel et al. 2022, pysindy's ``EnsembleOptimizer(bagging=True)``): run ``regressor``
    on ``n_models`` resamples of the rows of one regression and report inclusion probabilities
    (an ensemble of *trained UDEs* is :mod:`ude.train.ensemble`; its discovery,
    :mod:`ude.discovery.ensemble`).

    Args:
        regressor: any :class:`AbstractRegressor`.
        n_models: number of resamples (static).
        fraction: rows per resample as a fraction of n (static).
        replace: sample rows with replacement (bootstrap).
        aggregate: ``"median"`` (pysindy's default) or ``"mean"`` of the members.

    Example::

        res = BaggedRegressor(STLSQ(0.1), n_models=50)(Theta, dY, key=jr.key(0))
        res.inclusion  # (terms, targets), 1.0 for terms every member keeps
    """

    regressor: AbstractRegressor
    n_models: int = eqx.field(static=True)
    fraction: float = eqx.field(static=True)
    replace: bool = eqx.field(static=True)
    aggregate: str = eqx.field(static=True)

    def __init__(
        self,
        regressor: AbstractRegressor,
        n_models: int = 20,
        *,
        fraction: float = 1.0,
        replace: bool = True,
        aggregate: str = "median",
    ):
        if not isinstance(regressor, AbstractRegressor):
            raise ValueError(
                "BaggedRegressor: regressor must be an AbstractRegressor, got "
                f"{type(regressor).__name__}"
            )
        if not isinstance(n_models, int) or n_models < 1:
            raise ValueError(
                f"BaggedRegressor: n_models must be a positive integer, got {n_models!r}"
            )
        if not 0 < fraction <= (10.0 if replace else 1.0):
            raise ValueError(
                f"BaggedRegressor: fraction must be in (0, 1] without replacement, got {fraction!r}"
            )
        if aggregate not in ("median", "mean"):
            raise ValueError(
                f"BaggedRegressor: aggregate must be 'median' or 'mean', got {aggregate!r}"
            )
        self.regressor = regressor
        self.n_models = n_models
        self.fraction = float(fraction)
        self.replace = bool(replace)
        self.aggregate = aggregate

    def __call__(
        self, Theta: Float[ArrayLike, "n terms"], Y: Float[ArrayLike, "n targets"], *, key
    ) -> BaggedResult:
        Theta = jnp.asarray(Theta)
        Y = jnp.asarray(Y, dtype=Theta.dtype)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        n = Theta.shape[0]
        k = max(1, int(round(self.fraction * n)))
        keys = jr.split(key, self.n_models)
        rows = jax.vmap(lambda kk: jr.choice(kk, n, (k,), replace=self.replace))(keys)
        members = _members(self.regressor, Theta, Y2, rows)
        agg = jnp.median if self.aggregate == "median" else jnp.mean
        inclusion = jnp.mean(members != 0, axis=0)
        coef = agg(members, axis=0)
        if Y.ndim == 1:
            return BaggedResult(coef[:, 0], inclusion[:, 0], members[..., 0])
        return BaggedResult(coef, inclusion, members)

    def with_lam(self, lam) -> BaggedRegressor:
        return eqx.tree_at(lambda e: e.regressor, self, self.regressor.with_lam(lam))


@eqx.filter_jit
def _members(regressor, Theta, Y, rows):
    return jax.vmap(lambda r: regressor(Theta[r], Y[r]))(rows)


__all__ = [
    "AbstractRegressor",
    "STLSQ",
    "SR3",
    "BaggedRegressor",
    "BaggedResult",
    "sweep",
    "sweep_jit",
    "PROX",
]
