"""Gaussian mixtures in the book's notation: densities, distances, the E- and M-steps, starts.

For a mixture with weights ``w_j``, means ``mu_j`` and covariances ``Sigma_j`` the distance
(energy) of point ``x_i`` to component ``j`` is

    d_ij = -log(w_j N(x_i | mu_j, Sigma_j)),

so that ``L_i = log sum_j exp(-d_ij)`` (``iemlib.lse``) is the log-likelihood of ``x_i``
(maximized) and ``r_ij = exp(-d_ij) / sum_k exp(-d_ik)`` (``iemlib.responsibilities``) is the
E-step posterior. The *loss* of the mixture is ``-(1/n) sum_i L_i``; :func:`distance_gradients`
returns its gradient with respect to every ``d_ij`` (Theorem 1: the responsibilities).

Covariance shapes are scikit-learn's: ``"spherical"`` (K,), ``"diag"`` (K, D), ``"full"``
(K, D, D); precisions are their inverses, with the same shapes. The numpy functions here serve
one mixture; the same formulas in torch (one mixture, or a batch ``B`` of full-covariance
mixtures), which the estimators, the batched sweeps and the rates run, are in the package-private
module ``_kernels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import as_numpy, check_int, check_positive
from ._checks import (
    COVARIANCE_TYPES,
    check_covariance_type,
    check_covariances,
    check_means,
    check_params,
    check_seed,
    check_weights,
    check_X,
)
from ._kernels import LOG_2PI, diagonal_terms, torch_distances
from ..objectives import lse, responsibilities

__all__ = [
    "COVARIANCE_TYPES", "MixtureParams", "Start", "check_mixture", "random_start", "batched_starts",
    "covariances_from_precisions", "precisions_from_covariances", "full_covariances",
    "component_log_densities", "component_distances", "e_step", "m_step", "log_likelihood", "distance_gradients",
]

# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True, eq=False)
class MixtureParams:
    """The parameters of one Gaussian mixture, or of a batch of them (one per start).

    Attributes
    ----------
    weights
        ndarray
        (K,) mixture weights summing to one; (B, K) for a batch.
    means
        ndarray
        (K, D); (B, K, D) for a batch.
    covariances
        ndarray
        One mixture: the shape of its covariance type ((K,), (K, D) or (K, D, D)); a batch
        (the batched sweeps, full covariances): (B, K, D, D).

    Notes
    -----
    Indexing a batch selects starts and keeps the batch axis: ``p[b]`` and ``p[b:b + 1]`` are the
    batch of start ``b`` alone, ``p[[0, 3]]`` starts 0 and 3. The fits of ``iemlib.mixture.batched``
    are ``MixtureParams`` (their fitted parameters) with their diagnostics added, so a fit can be
    passed wherever a start is expected (to polish it, or to restart another method from it).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __getitem__(self, index: Any) -> "MixtureParams":
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            index = [int(index)]
        return MixtureParams(self.weights[index], self.means[index], self.covariances[index])


@dataclass(frozen=True, eq=False)
class Start:
    """A start shared by :class:`~iemlib.mixture.GaussianMixtureEM`, :class:`~iemlib.mixture.ImplicitEM`
    and scikit-learn's ``GaussianMixture``: pass ``**start.as_kwargs()``.

    Attributes
    ----------
    means_init
        ndarray (K, D)
    weights_init
        ndarray (K,), uniform
    precisions_init
        ndarray, the shape of the covariance type (inverse covariances)
    """

    means_init: np.ndarray
    weights_init: np.ndarray
    precisions_init: np.ndarray

    def as_kwargs(self) -> dict[str, np.ndarray]:
        """``{"means_init": ..., "weights_init": ..., "precisions_init": ...}``: the estimators' keyword arguments."""
        return {"means_init": self.means_init, "weights_init": self.weights_init,
                "precisions_init": self.precisions_init}


def check_mixture(
    weights: Any, means: Any, covariances: Any, covariance_type: str = "full", n_features: int | None = None
) -> MixtureParams:
    """Validate one mixture's parameters and return them as float64 arrays.

    Parameters
    ----------
    weights : (K,) in (0, 1], summing to one.
    means : (K, D); ``D`` must equal ``n_features`` when it is given.
    covariances : the shape of ``covariance_type``, positive (full: symmetric positive definite).
    covariance_type : one of ``COVARIANCE_TYPES``.

    Returns
    -------
    MixtureParams
        The three arrays as float64 numpy arrays.

    Raises
    ------
    ValueError
        Naming the argument that is wrong and what was expected.
    """
    covariance_type = check_covariance_type(covariance_type)
    m = check_means(means, D=n_features)
    K, D = m.shape
    return MixtureParams(check_weights(weights, K), m, check_covariances(covariances, covariance_type, K, D))


# --------------------------------------------------------------------------- starts
def random_start(
    X: Any, n_components: int, covariance_type: str = "full", random_state: int = 0, spread: float | None = None
) -> Start:
    """A start shared by every estimator: ``**start.as_kwargs()`` for
    :class:`~iemlib.mixture.GaussianMixtureEM`, :class:`~iemlib.mixture.ImplicitEM` and
    scikit-learn's ``GaussianMixture``.

    Parameters
    ----------
    X : (n, D) data, n >= n_components.
    n_components : int, K.
    covariance_type : one of ``COVARIANCE_TYPES``.
    random_state : int, the seed.
    spread : float, optional
        None: the means are ``n_components`` distinct data points drawn at random. A number: the
        data mean plus Gaussian noise of standard deviation ``spread`` times the data's scale (a
        nearly symmetric start).

    Returns
    -------
    Start
        Every covariance the data's covariance of the given type (plus 1e-6), as precisions;
        uniform weights.
    """
    X = check_X(X)
    K = check_int(n_components, "n_components", minimum=1)
    covariance_type = check_covariance_type(covariance_type)
    seed = check_seed(random_state)
    n, D = X.shape
    if n < K:
        raise ValueError(f"X must have at least n_components={K} samples, got {n}")
    rng = np.random.default_rng(seed)
    var = X.var(axis=0) + 1e-6
    if spread is None:
        means = X[rng.choice(n, size=K, replace=False)].copy()
    else:
        s = check_positive(spread, "spread")
        means = X.mean(0) + s * np.sqrt(var.mean()) * rng.standard_normal((K, D))
    if covariance_type == "spherical":
        prec = np.full(K, 1.0 / var.mean())
    elif covariance_type == "diag":
        prec = np.tile(1.0 / var, (K, 1))
    else:
        C = np.atleast_2d(np.cov(X, rowvar=False, bias=True)) + 1e-6 * np.eye(D)
        prec = np.tile(np.linalg.inv(C), (K, 1, 1))
        prec = 0.5 * (prec + np.swapaxes(prec, 1, 2))
    return Start(means_init=means, weights_init=np.full(K, 1.0 / K), precisions_init=prec)


def batched_starts(
    X: Any, n_components: int, n_starts: int, random_state: int = 0, spread: float | None = None
) -> MixtureParams:
    """``n_starts`` starts of :func:`random_start` (full covariances), stacked into a batch.

    Parameters
    ----------
    X : (n, D) data.
    n_components : int, K.
    n_starts : int, B.
    random_state : int, the seed of the first start; start b has seed ``random_state + b``.
    spread : float, optional, as :func:`random_start`.

    Returns
    -------
    MixtureParams
        weights (B, K), means (B, K, D), covariances (B, K, D, D).
    """
    X = check_X(X)
    K = check_int(n_components, "n_components", minimum=1)
    B = check_int(n_starts, "n_starts", minimum=1)
    seed = check_seed(random_state)
    starts = [random_start(X, K, "full", random_state=seed + b, spread=spread) for b in range(B)]
    cov = np.stack([np.linalg.inv(s.precisions_init) for s in starts])
    return MixtureParams(
        weights=np.stack([s.weights_init for s in starts]),
        means=np.stack([s.means_init for s in starts]),
        covariances=0.5 * (cov + np.swapaxes(cov, -1, -2)),
    )


# --------------------------------------------------------------------------- covariances
def _invert(P: Any, covariance_type: str, name: str) -> np.ndarray:
    covariance_type = check_covariance_type(covariance_type)
    P = check_covariances(P, covariance_type, *_type_dims(P, covariance_type, name), name)
    if covariance_type == "full":
        C = np.linalg.inv(P)
        return 0.5 * (C + np.swapaxes(C, 1, 2))
    return 1.0 / P


def _type_dims(P: Any, covariance_type: str, name: str) -> tuple[int, int]:
    """(K, D) read off an array of the given covariance type, or a ValueError on the wrong rank."""
    shape = tuple(np.shape(P))
    if covariance_type == "full" and (len(shape) != 3 or shape[1] != shape[2]):
        raise ValueError(f"{name} must have shape (K, D, D) for covariance_type='full', got {shape}")
    want = {"spherical": 1, "diag": 2, "full": 3}[covariance_type]
    if len(shape) != want:
        raise ValueError(
            f"{name} must have {want} dimension(s) for covariance_type={covariance_type!r}, got shape {shape}"
        )
    return shape[0], (shape[1] if want > 1 else 1)


def covariances_from_precisions(precisions: Any, covariance_type: str) -> np.ndarray:
    """Invert precisions into covariances.

    Parameters
    ----------
    precisions : (K,), (K, D) or (K, D, D) as ``covariance_type`` says; positive (definite).
    covariance_type : one of ``COVARIANCE_TYPES``.

    Returns
    -------
    ndarray of the same shape (full: symmetrized).
    """
    return _invert(precisions, covariance_type, "precisions")


def precisions_from_covariances(covariances: Any, covariance_type: str) -> np.ndarray:
    """Invert covariances into precisions: :func:`covariances_from_precisions` backwards.

    Parameters
    ----------
    covariances, covariance_type : the shapes and checks of :func:`covariances_from_precisions`.

    Returns
    -------
    The precisions, an ndarray of the shape of ``covariances``.
    """
    return _invert(covariances, covariance_type, "covariances")


def full_covariances(covariances: Any, covariance_type: str, n_features: int) -> np.ndarray:
    """Expand covariances of any type to full matrices, e.g. for drawing ellipses.

    Parameters
    ----------
    covariances : (K,), (K, D) or (K, D, D) as ``covariance_type`` says.
    covariance_type : one of ``COVARIANCE_TYPES``.
    n_features : int, D.

    Returns
    -------
    ndarray (K, D, D), a new array.
    """
    covariance_type = check_covariance_type(covariance_type)
    D = check_int(n_features, "n_features", minimum=1)
    K = np.shape(covariances)[0] if np.ndim(covariances) else 0
    c = check_covariances(covariances, covariance_type, K, D)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "diag":
        return np.einsum("kd,de->kde", c, np.eye(D))
    return c[:, None, None] * np.eye(D)[None]


# --------------------------------------------------------------------------- densities (numpy)
def _log_gauss_np(X: np.ndarray, means: np.ndarray, cov: np.ndarray, covariance_type: str) -> np.ndarray:
    n, D = X.shape
    diff = X[:, None, :] - means[None, :, :]  # (n, K, D)
    if covariance_type != "full":
        maha, logdet = diagonal_terms(diff, cov, covariance_type, np.log)
    else:
        from scipy.linalg import solve_triangular

        Lc = np.linalg.cholesky(cov)  # (K, D, D)
        maha = np.empty((n, means.shape[0]))
        for k in range(means.shape[0]):  # solve L_k y = (x - mu_k) for every point at once
            y = solve_triangular(Lc[k], diff[:, k, :].T, lower=True)
            maha[:, k] = (y**2).sum(0)
        logdet = 2.0 * np.log(np.diagonal(Lc, axis1=1, axis2=2)).sum(-1)
    return -0.5 * (D * LOG_2PI + logdet[None, :] + maha)


def component_log_densities(X: Any, means: Any, covariances: Any, covariance_type: str = "full") -> np.ndarray:
    """Gaussian log-densities ``log N(x_i | mu_j, Sigma_j)`` of every point under every component.

    Parameters
    ----------
    X : (n, D) data.
    means : (K, D).
    covariances : the shape of ``covariance_type``.
    covariance_type : one of ``COVARIANCE_TYPES``.

    Returns
    -------
    ndarray (n, K), float64.
    """
    X = check_X(X)
    covariance_type = check_covariance_type(covariance_type)
    m = check_means(means, D=X.shape[1])
    c = check_covariances(covariances, covariance_type, m.shape[0], X.shape[1])
    return _log_gauss_np(X, m, c, covariance_type)


def component_distances(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> np.ndarray:
    """Distances ``d_ij = -log(w_j N(x_i | mu_j, Sigma_j))`` of every point to every component.

    Parameters
    ----------
    X, means, covariances, covariance_type : as :func:`component_log_densities`.
    weights : (K,), summing to one.

    Returns
    -------
    ndarray (n, K), float64.
    """
    X, w, m, c, ct = check_params(X, weights, means, covariances, covariance_type)
    return -(np.log(w)[None, :] + _log_gauss_np(X, m, c, ct))


def e_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> tuple[np.ndarray, float]:
    """E-step: the responsibilities and the mean log-likelihood, both from the distances of
    :func:`component_distances` through ``iemlib.responsibilities`` and ``iemlib.lse`` (log
    space, stable).

    Parameters
    ----------
    X, weights, means, covariances, covariance_type : as :func:`component_distances`.

    Returns
    -------
    r : ndarray (n, K), ``r_ij = exp(-d_ij) / sum_k exp(-d_ik)``.
    log_likelihood : float, ``(1/n) sum_i L_i`` (the objective EM increases).
    """
    d = component_distances(X, weights, means, covariances, covariance_type)
    return responsibilities(d), float(np.mean(lse(d)))


def log_likelihood(X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full") -> float:
    """Mean log-likelihood per sample, ``(1/n) sum_i L_i`` (the objective EM increases).

    Parameters
    ----------
    X, weights, means, covariances, covariance_type : as :func:`component_distances`.

    Returns
    -------
    float
    """
    return e_step(X, weights, means, covariances, covariance_type)[1]


def m_step(
    X: Any, r: Any, covariance_type: str = "full", reg_covar: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step with scikit-learn's conventions: ``N_j = sum_i r_ij + 10 eps``, responsibility-
    weighted means and covariances, ``reg_covar`` added to the covariances' diagonal, weights
    ``N_j / n`` renormalized.

    Parameters
    ----------
    X : (n, D) data.
    r : (n, K) responsibilities, non-negative.
    covariance_type : one of ``COVARIANCE_TYPES``.
    reg_covar : float >= 0.

    Returns
    -------
    weights (K,), means (K, D), covariances (the shape of ``covariance_type``).
    """
    X = check_X(X)
    covariance_type = check_covariance_type(covariance_type)
    r = as_numpy(r, "r", ndim=2)
    if r.shape[0] != X.shape[0]:
        raise ValueError(f"r must have {X.shape[0]} rows (one per sample), got shape {r.shape}")
    if (r < 0).any():
        raise ValueError("r must be non-negative")
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    n, D = X.shape
    nk = r.sum(0) + 10 * np.finfo(r.dtype).eps
    means = (r.T @ X) / nk[:, None]
    if covariance_type == "full":
        diff = X[None, :, :] - means[:, None, :]  # (K, n, D)
        cov = np.einsum("nk,knd,kne->kde", r, diff, diff) / nk[:, None, None]
        cov[:, np.arange(D), np.arange(D)] += reg
    else:
        avg_X2 = (r.T @ (X * X)) / nk[:, None]
        cov = avg_X2 - means**2 + reg
        if covariance_type == "spherical":
            cov = cov.mean(1)
    weights = nk / n
    weights = weights / weights.sum()
    return weights, means, cov


# --------------------------------------------------------------------------- autograd view
def distance_gradients(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> np.ndarray:
    """Gradient of the summed *loss* ``-sum_i L_i`` (minimized) with respect to every distance
    ``d_ij``, captured by autograd (``retain_grad`` on the distances inside the graph), shape (n, K).

    Theorem 1 says ``dL_i/dd_ij = -r_ij`` for the objective, so this gradient of the loss is
    ``+r_ij``: the E-step posteriors. (For the mean loss divide by n.)

    Parameters
    ----------
    X, weights, means, covariances, covariance_type : as :func:`component_distances`.

    Returns
    -------
    ndarray (n, K)
    """
    X, w, m, c, ct = check_params(X, weights, means, covariances, covariance_type)
    Xt = torch.tensor(X, dtype=torch.float64)
    mt = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    log_w = torch.log(torch.tensor(w, dtype=torch.float64))
    d = torch_distances(Xt, log_w, mt, torch.tensor(c, dtype=torch.float64), ct)
    d.retain_grad()
    loss = -lse(d).sum()
    loss.backward()
    return d.grad.detach().numpy().copy()
