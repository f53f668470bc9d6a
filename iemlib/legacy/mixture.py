"""Gaussian mixtures: data, classical EM, and EM done implicitly by gradient descent.

Written in the book's notation. For a mixture with weights ``w_j``, means ``mu_j`` and
covariances ``Sigma_j``, the distance (energy) of point ``x_i`` to component ``j`` is

    d_ij = -log(w_j N(x_i | mu_j, Sigma_j)),

so that ``L_i = log sum_j exp(-d_ij)`` (``iemlib.lse``) is the log-likelihood of ``x_i``
(maximized) and ``r_ij = exp(-d_ij) / sum_k exp(-d_ik)`` (``iemlib.responsibilities``) is
the E-step posterior. The *loss* minimized by :class:`ImplicitEM` is ``-(1/n) sum_i L_i``.

* :class:`GaussianMixtureEM` is classical EM, following scikit-learn's ``GaussianMixture``
  conventions (``reg_covar`` added to the covariances in the M-step, stopping when the change
  of the lower bound is below ``tol``, covariance shapes per type), so that from the same start
  both give the same parameters to about 1e-8 or better.
* :class:`ImplicitEM` has the same API but never runs an E-step: it minimizes the loss by a
  gradient method (torch, float64) in an unconstrained parametrisation.
* :func:`distance_gradients` returns the gradient of the summed loss with respect to each
  ``d_ij``, captured by autograd (it equals ``r_ij``, the E-step posterior);
  :func:`preconditioned_mean_step` is the Xu & Jordan (1996) bridge: one gradient-ascent step
  on the means of the summed log-likelihood, preconditioned by ``Sigma_j / N_j``, is the EM
  mean update.

Covariance shapes (scikit-learn's): ``"spherical"`` (K,), ``"diag"`` (K, D),
``"full"`` (K, D, D); precisions are their inverses, with the same shapes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from ._validation import as_float_array, check_int, check_positive, is_torch
from .objectives import lse, responsibilities

__all__ = [
    "COVARIANCE_TYPES",
    "sample_gaussian_mixture",
    "make_mixture_data",
    "random_start",
    "covariances_from_precisions",
    "precisions_from_covariances",
    "full_covariances",
    "component_log_densities",
    "component_distances",
    "e_step",
    "m_step",
    "log_likelihood",
    "responsibility_entropy",
    "distance_gradients",
    "preconditioned_mean_step",
    "preconditioned_em_step",
    "GaussianMixtureEM",
    "ImplicitEM",
]

COVARIANCE_TYPES = ("spherical", "diag", "full")
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- validation
def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


def _check_X(X: Any, name: str = "X", n_features: int | None = None) -> np.ndarray:
    X = as_float_array(X, name, ndim=2)
    X = np.asarray(_np(X), dtype=np.float64)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {X.shape}")
    return X


def _check_covariance_type(covariance_type: Any) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return str(covariance_type)


def _check_weights(weights: Any, K: int | None = None, name: str = "weights") -> np.ndarray:
    w = np.asarray(_np(as_float_array(weights, name, ndim=1)), dtype=np.float64)
    if K is not None and w.shape[0] != K:
        raise ValueError(f"{name} must have shape ({K},), got {w.shape}")
    if (w <= 0).any() or (w > 1).any():
        raise ValueError(f"{name} must lie in (0, 1], got values in [{w.min()}, {w.max()}]")
    if abs(1.0 - w.sum()) > 1e-8:
        raise ValueError(f"{name} must sum to 1, got {w.sum()!r}")
    return w


def _check_means(means: Any, K: int | None = None, D: int | None = None, name: str = "means") -> np.ndarray:
    m = np.asarray(_np(as_float_array(means, name, ndim=2)), dtype=np.float64)
    if K is not None and m.shape[0] != K:
        raise ValueError(f"{name} must have {K} rows (one per component), got shape {m.shape}")
    if D is not None and m.shape[1] != D:
        raise ValueError(f"{name} must have {D} columns (the features of X), got shape {m.shape}")
    return m


def _check_cov(cov: Any, covariance_type: str, K: int, D: int, name: str = "covariances") -> np.ndarray:
    """Validate covariances (or precisions) of the given type: shape, positivity."""
    c = np.asarray(_np(as_float_array(cov, name)), dtype=np.float64)
    shape = {"spherical": (K,), "diag": (K, D), "full": (K, D, D)}[covariance_type]
    if c.shape != shape:
        raise ValueError(f"{name} must have shape {shape} for covariance_type={covariance_type!r}, got {c.shape}")
    if covariance_type == "full":
        if not np.allclose(c, np.swapaxes(c, 1, 2), rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(c).max()))):
            raise ValueError(f"{name} must be symmetric matrices")
        if np.linalg.eigvalsh(c).min() <= 0:
            raise ValueError(f"{name} must be positive definite")
    elif (c <= 0).any():
        raise ValueError(f"{name} must be positive")
    return c


def _check_params(X: np.ndarray, weights: Any, means: Any, covariances: Any, covariance_type: Any):
    covariance_type = _check_covariance_type(covariance_type)
    m = _check_means(means, D=X.shape[1])
    K = m.shape[0]
    w = _check_weights(weights, K)
    c = _check_cov(covariances, covariance_type, K, X.shape[1])
    return w, m, c, covariance_type


# --------------------------------------------------------------------------- data
def sample_gaussian_mixture(
    n_samples: int,
    weights: Any,
    means: Any,
    covariances: Any,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` points from a Gaussian mixture with full covariances (K, D, D).

    Returns ``(X, labels)``: X (n, D) float64 and the generating component of each point.
    Seeded: the same ``random_state`` gives the same data.
    """
    n = check_int(n_samples, "n_samples", minimum=1)
    m = _check_means(means)
    K, D = m.shape
    w = _check_weights(weights, K)
    c = _check_cov(covariances, "full", K, D)
    seed = check_int(random_state, "random_state", minimum=0)
    rng = np.random.default_rng(seed)
    labels = rng.choice(K, size=n, p=w)
    chol = np.linalg.cholesky(c)
    eps = rng.standard_normal((n, D))
    X = m[labels] + np.einsum("nde,ne->nd", chol[labels], eps)
    return X, labels


def make_mixture_data(
    n_samples: int = 600,
    n_components: int = 3,
    n_features: int = 2,
    separation: float = 4.0,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A seeded synthetic mixture: random means ``separation`` apart on average, random
    anisotropic covariances (eigenvalues between 0.3 and 1.5), unequal weights.

    Returns ``(X, labels, true_params)`` with ``true_params`` holding ``weights``, ``means``
    and full ``covariances``.
    """
    n = check_int(n_samples, "n_samples", minimum=1)
    K = check_int(n_components, "n_components", minimum=1)
    D = check_int(n_features, "n_features", minimum=1)
    sep = check_positive(separation, "separation")
    seed = check_int(random_state, "random_state", minimum=0)
    rng = np.random.default_rng(seed)
    if K == 1:
        means = np.zeros((1, D))
    else:
        # points on a circle/simplex-like arrangement, jittered, so clusters are separated
        angles = 2 * np.pi * np.arange(K) / K + rng.uniform(0, 2 * np.pi)
        base = np.zeros((K, D))
        base[:, 0] = np.cos(angles)
        if D > 1:
            base[:, 1] = np.sin(angles)
        means = sep * (base / (2 * np.sin(np.pi / K))) + 0.3 * rng.standard_normal((K, D))
    covs = np.empty((K, D, D))
    for k in range(K):
        Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        lam = rng.uniform(0.3, 1.5, size=D)
        covs[k] = (Q * lam) @ Q.T
    weights = rng.dirichlet(np.full(K, 8.0))
    X, labels = sample_gaussian_mixture(n, weights, means, covs, random_state=seed + 1)
    return X, labels, {"weights": weights, "means": means, "covariances": covs}


def random_start(
    X: Any, n_components: int, covariance_type: str = "full", random_state: int = 0, spread: float | None = None
) -> dict[str, np.ndarray]:
    """A start shared by every estimator: keyword arguments ``means_init``, ``weights_init``,
    ``precisions_init`` for :class:`GaussianMixtureEM`, :class:`ImplicitEM` and scikit-learn's
    ``GaussianMixture``.

    Means are ``n_components`` distinct data points drawn at random (or, when ``spread`` is
    given, the data mean plus Gaussian noise of standard deviation ``spread`` times the data's
    scale: a nearly symmetric start); every covariance is the data's covariance of the given
    type; weights are uniform.
    """
    X = _check_X(X)
    K = check_int(n_components, "n_components", minimum=1)
    covariance_type = _check_covariance_type(covariance_type)
    seed = check_int(random_state, "random_state", minimum=0)
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
    return {"means_init": means, "weights_init": np.full(K, 1.0 / K), "precisions_init": prec}


def _invert(P: Any, covariance_type: str, name: str) -> np.ndarray:
    covariance_type = _check_covariance_type(covariance_type)
    P = np.asarray(_np(as_float_array(P, name)), dtype=np.float64)
    if covariance_type == "full":
        if P.ndim != 3 or P.shape[1] != P.shape[2]:
            raise ValueError(f"{name} must have shape (K, D, D) for covariance_type='full', got {P.shape}")
        _check_cov(P, "full", P.shape[0], P.shape[1], name)
        C = np.linalg.inv(P)
        return 0.5 * (C + np.swapaxes(C, 1, 2))
    want = 1 if covariance_type == "spherical" else 2
    if P.ndim != want:
        raise ValueError(f"{name} must have {want} dimension(s) for covariance_type={covariance_type!r}, got shape {P.shape}")
    if (P <= 0).any():
        raise ValueError(f"{name} must be positive")
    return 1.0 / P


def covariances_from_precisions(precisions: Any, covariance_type: str) -> np.ndarray:
    """Invert precisions (shapes per ``covariance_type``) into covariances."""
    return _invert(precisions, covariance_type, "precisions")


def precisions_from_covariances(covariances: Any, covariance_type: str) -> np.ndarray:
    """Invert covariances into precisions (the inverse of :func:`covariances_from_precisions`)."""
    return _invert(covariances, covariance_type, "covariances")


def full_covariances(covariances: Any, covariance_type: str, n_features: int) -> np.ndarray:
    """Expand covariances of any type to full matrices (K, D, D), e.g. for drawing."""
    covariance_type = _check_covariance_type(covariance_type)
    D = check_int(n_features, "n_features", minimum=1)
    c = np.asarray(_np(as_float_array(covariances, "covariances")), dtype=np.float64)
    K = c.shape[0] if c.ndim else 0
    c = _check_cov(c, covariance_type, K, D)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "diag":
        return np.einsum("kd,de->kde", c, np.eye(D))
    return c[:, None, None] * np.eye(D)[None]


# --------------------------------------------------------------------------- densities
def _log_gauss_np(X: np.ndarray, means: np.ndarray, cov: np.ndarray, covariance_type: str) -> np.ndarray:
    n, D = X.shape
    diff = X[:, None, :] - means[None, :, :]  # (n, K, D)
    if covariance_type == "spherical":
        maha = (diff**2).sum(-1) / cov[None, :]
        logdet = D * np.log(cov)
    elif covariance_type == "diag":
        maha = (diff**2 / cov[None]).sum(-1)
        logdet = np.log(cov).sum(-1)
    else:
        from scipy.linalg import solve_triangular

        Lc = np.linalg.cholesky(cov)  # (K, D, D)
        maha = np.empty((n, means.shape[0]))
        for k in range(means.shape[0]):  # solve L_k y = (x - mu_k) for every point at once
            y = solve_triangular(Lc[k], diff[:, k, :].T, lower=True)
            maha[:, k] = (y**2).sum(0)
        logdet = 2.0 * np.log(np.diagonal(Lc, axis1=1, axis2=2)).sum(-1)
    return -0.5 * (D * _LOG_2PI + logdet[None, :] + maha)


def component_log_densities(X: Any, means: Any, covariances: Any, covariance_type: str = "full") -> np.ndarray:
    """``log N(x_i | mu_j, Sigma_j)`` for every point and component, shape (n, K), float64."""
    X = _check_X(X)
    covariance_type = _check_covariance_type(covariance_type)
    m = _check_means(means, D=X.shape[1])
    c = _check_cov(covariances, covariance_type, m.shape[0], X.shape[1])
    return _log_gauss_np(X, m, c, covariance_type)


def component_distances(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> np.ndarray:
    """Distances ``d_ij = -log(w_j N(x_i | mu_j, Sigma_j))``, shape (n, K), float64."""
    X = _check_X(X)
    w, m, c, ct = _check_params(X, weights, means, covariances, covariance_type)
    return -(np.log(w)[None, :] + _log_gauss_np(X, m, c, ct))


def e_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> tuple[np.ndarray, float]:
    """E-step: responsibilities ``r_ij`` (n, K) and the mean log-likelihood per sample.

    Both come from the distances through ``iemlib.responsibilities`` and ``iemlib.lse``
    (log space, stable).
    """
    d = component_distances(X, weights, means, covariances, covariance_type)
    return responsibilities(d), float(np.mean(lse(d)))


def log_likelihood(X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full") -> float:
    """Mean log-likelihood per sample, ``(1/n) sum_i L_i`` (the quantity EM increases)."""
    return e_step(X, weights, means, covariances, covariance_type)[1]


def responsibility_entropy(resp: Any) -> float:
    """Mean over points of the entropy ``-sum_j r_ij log r_ij`` of the responsibilities (nats).

    ``log K`` when every point is shared evenly, 0 when every point has one owner.
    """
    r = np.asarray(_np(as_float_array(resp, "resp", ndim=2)), dtype=np.float64)
    if (r < 0).any() or not np.allclose(r.sum(1), 1.0, atol=1e-8):
        raise ValueError("resp must hold non-negative rows summing to 1")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    return float(-t.sum(1).mean())


def m_step(
    X: Any, resp: Any, covariance_type: str = "full", reg_covar: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step with scikit-learn's conventions: ``N_j = sum_i r_ij + 10 eps``, responsibility-
    weighted means and covariances, ``reg_covar`` added to the covariances' diagonal, weights
    ``N_j / n`` renormalized. Returns ``(weights, means, covariances)``.
    """
    X = _check_X(X)
    covariance_type = _check_covariance_type(covariance_type)
    r = np.asarray(_np(as_float_array(resp, "resp", ndim=2)), dtype=np.float64)
    if r.shape[0] != X.shape[0]:
        raise ValueError(f"resp must have {X.shape[0]} rows (one per sample), got shape {r.shape}")
    if (r < 0).any():
        raise ValueError("resp must be non-negative")
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


# --------------------------------------------------------------------------- autograd views
def _torch_distances(
    X: torch.Tensor, log_w: torch.Tensor, means: torch.Tensor, cov: torch.Tensor, covariance_type: str
) -> torch.Tensor:
    """d_ij = -(log w_j + log N(x_i | mu_j, Sigma_j)) in torch (differentiable in every input)."""
    D = X.shape[1]
    diff = X[:, None, :] - means[None, :, :]
    if covariance_type == "spherical":
        maha = (diff**2).sum(-1) / cov[None, :]
        logdet = D * torch.log(cov)
    elif covariance_type == "diag":
        maha = (diff**2 / cov[None]).sum(-1)
        logdet = torch.log(cov).sum(-1)
    else:
        Lc = torch.linalg.cholesky(cov)
        y = torch.linalg.solve_triangular(Lc[None], diff[..., None], upper=False)[..., 0]
        maha = (y**2).sum(-1)
        logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=1, dim2=2)).sum(-1)
    return -(log_w[None, :] - 0.5 * (D * _LOG_2PI + logdet[None, :] + maha))


def distance_gradients(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> np.ndarray:
    """Gradient of the summed *loss* ``-sum_i L_i`` with respect to every distance ``d_ij``,
    captured by autograd (``retain_grad`` on the distances inside the graph), shape (n, K).

    Theorem 1 says ``dL_i/dd_ij = -r_ij`` for the objective, so this gradient of the loss is
    ``+r_ij``: the E-step posteriors. (For the mean loss divide by n.)
    """
    X = _check_X(X)
    w, m, c, ct = _check_params(X, weights, means, covariances, covariance_type)
    Xt = torch.tensor(X, dtype=torch.float64)
    mt = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    d = _torch_distances(Xt, torch.log(torch.tensor(w, dtype=torch.float64)), mt, torch.tensor(c, dtype=torch.float64), ct)
    d.retain_grad()
    loss = -lse(d).sum()
    loss.backward()
    return d.grad.detach().numpy().copy()


def preconditioned_mean_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> dict[str, np.ndarray]:
    """The Xu & Jordan (1996) bridge between gradient ascent and EM for the means.

    Computes ``g_j``, the gradient of the summed log-likelihood ``sum_i L_i`` (the objective,
    maximized) with respect to ``mu_j`` by autograd, and takes one ascent step of size 1
    preconditioned by ``Sigma_j / N_j`` with ``N_j = sum_i r_ij``:

        mu_j + (Sigma_j / N_j) g_j = mu_j + (1/N_j) sum_i r_ij (x_i - mu_j) = sum_i r_ij x_i / N_j,

    the EM mean update. Returns ``{"gradient", "step", "em_means", "max_abs_diff"}`` where
    ``em_means`` comes from :func:`m_step` on the E-step responsibilities.
    """
    X = _check_X(X)
    w, m, c, ct = _check_params(X, weights, means, covariances, covariance_type)
    Xt = torch.tensor(X, dtype=torch.float64)
    mt = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    ct_ = torch.tensor(c, dtype=torch.float64)
    d = _torch_distances(Xt, torch.log(torch.tensor(w, dtype=torch.float64)), mt, ct_, ct)
    objective = lse(d).sum()
    (g,) = torch.autograd.grad(objective, mt)
    g = g.numpy()
    resp, _ = e_step(X, w, m, c, ct)
    Nk = resp.sum(0)
    if ct == "spherical":
        pre = c[:, None] * g
    elif ct == "diag":
        pre = c * g
    else:
        pre = np.einsum("kde,ke->kd", c, g)
    step = m + pre / Nk[:, None]
    em_means = m_step(X, resp, ct, reg_covar=0.0)[1]
    return {"gradient": g, "step": step, "em_means": em_means, "max_abs_diff": float(np.abs(step - em_means).max())}


def _torch_distances_general(X: torch.Tensor, w: torch.Tensor, means: torch.Tensor, cov: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """As :func:`_torch_distances`, but differentiable in the raw weights ``w`` (no simplex
    constraint) and, for full covariances, in every entry of ``Sigma`` (slogdet and solve,
    no Cholesky), so that autograd returns the textbook gradients d/dw_j and d/dSigma_j."""
    D = X.shape[1]
    diff = X[:, None, :] - means[None, :, :]
    if covariance_type == "spherical":
        maha = (diff**2).sum(-1) / cov[None, :]
        logdet = D * torch.log(cov)
    elif covariance_type == "diag":
        maha = (diff**2 / cov[None]).sum(-1)
        logdet = torch.log(cov).sum(-1)
    else:
        sol = torch.linalg.solve(cov[None], diff[..., None])[..., 0]  # Sigma_j^{-1}(x_i - mu_j)
        maha = (diff * sol).sum(-1)
        logdet = torch.linalg.slogdet(cov)[1]
    return -(torch.log(w)[None, :] - 0.5 * (D * _LOG_2PI + logdet[None, :] + maha))


def preconditioned_em_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> dict[str, Any]:
    """The Xu & Jordan (1996) bridge for every parameter: EM's update as a gradient-ascent
    step of size 1 on the summed log-likelihood ``l = sum_i L_i`` (the objective, maximized),
    preconditioned by the projection matrices (with ``N_j = sum_i r_ij``, ``n`` points)

    * weights:  ``P_w = (diag(w) - w w^T) / n``, so ``w + P_w dl/dw = N / n``;
    * means:    ``P_mu_j = Sigma_j / N_j``, so ``mu_j + P_mu_j dl/dmu_j = sum_i r_ij x_i / N_j``;
    * covariances: ``P_Sigma_j = (2 / N_j) Sigma_j (x) Sigma_j``, i.e.
      ``Sigma_j + (2 / N_j) Sigma_j (dl/dSigma_j) Sigma_j = S_j(mu_j)`` with
      ``S_j(m) = sum_i r_ij (x_i - m)(x_i - m)^T / N_j``; for diagonal covariances the same with
      every matrix diagonal, for spherical ones ``s_j + (2 s_j^2 / (D N_j)) dl/ds_j``.

    The gradients are autograd's (raw weights, no simplex constraint; full ``Sigma_j`` as a
    free matrix). The covariance step is taken at the *current* means, so it lands on
    ``S_j(mu_j^(t))``; EM's M-step uses the *updated* means, ``S_j(mu_j^(t+1)) =
    S_j(mu_j^(t)) - (mu_j^(t+1) - mu_j^(t))(mu_j^(t+1) - mu_j^(t))^T`` (diagonal / trace / D
    of it for the other types). Taking the covariance gradient at the updated means with the
    responsibilities held (the gradient of EM's Q function) gives EM's covariance exactly;
    both are returned.

    Returns ``{"gradients": {"weights", "means", "covariances"}, "step": (w, mu, Sigma) at the
    current means, "step_q": (w, mu, Sigma) with the covariance gradient of Q at the new
    means, "em": EM's (w, mu, Sigma) from m_step with reg_covar=0, "max_abs_diff":
    {"weights", "means", "covariances", "covariances_q"}}``.
    """
    X = _check_X(X)
    w, m, c, ct = _check_params(X, weights, means, covariances, covariance_type)
    n, D = X.shape
    Xt = torch.tensor(X, dtype=torch.float64)

    def grads(w_np, m_np, c_np, resp=None):
        wt = torch.tensor(w_np, dtype=torch.float64, requires_grad=True)
        mt = torch.tensor(m_np, dtype=torch.float64, requires_grad=True)
        cvt = torch.tensor(c_np, dtype=torch.float64, requires_grad=True)
        d = _torch_distances_general(Xt, wt, mt, cvt, ct)
        obj = torch.logsumexp(-d, 1).sum() if resp is None else -(torch.tensor(resp) * d).sum()
        return [g.numpy() for g in torch.autograd.grad(obj, (wt, mt, cvt))]

    resp, _ = e_step(X, w, m, c, ct)
    Nk = resp.sum(0)
    gw, gm, gc = grads(w, m, c)
    w_new = w + (np.diag(w) - np.outer(w, w)) @ gw / n
    if ct == "spherical":
        m_new = m + (c[:, None] * gm) / Nk[:, None]
    elif ct == "diag":
        m_new = m + (c * gm) / Nk[:, None]
    else:
        m_new = m + np.einsum("kde,ke->kd", c, gm) / Nk[:, None]

    def cov_step(G):
        if ct == "spherical":
            return c + 2.0 * c**2 * G / (D * Nk)
        if ct == "diag":
            return c + 2.0 * c**2 * G / Nk[:, None]
        out = c + 2.0 * np.einsum("kde,kef,kfg->kdg", c, G, c) / Nk[:, None, None]
        return 0.5 * (out + np.swapaxes(out, 1, 2))

    c_new = cov_step(gc)
    gq = grads(w, m_new, c, resp)[2]  # gradient of Q(theta | theta_t) in Sigma, at the new means
    c_q = cov_step(gq)
    em_w, em_m, em_c = m_step(X, resp, ct, reg_covar=0.0)
    return {
        "gradients": {"weights": gw, "means": gm, "covariances": gc},
        "step": (w_new, m_new, c_new),
        "step_q": (w_new, m_new, c_q),
        "em": (em_w, em_m, em_c),
        "max_abs_diff": {
            "weights": float(np.abs(w_new - em_w).max()),
            "means": float(np.abs(m_new - em_m).max()),
            "covariances": float(np.abs(c_new - em_c).max()),
            "covariances_q": float(np.abs(c_q - em_c).max()),
        },
    }


# --------------------------------------------------------------------------- estimators
class _MixtureBase:
    """Shared validation, initialisation and prediction for the two estimators."""

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        means_init: Any = None,
        weights_init: Any = None,
        precisions_init: Any = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.means_init = means_init
        self.weights_init = weights_init
        self.precisions_init = precisions_init

    # -- helpers
    def _validate(self, X: Any) -> np.ndarray:
        self._K = check_int(self.n_components, "n_components", minimum=1)
        self._ct = _check_covariance_type(self.covariance_type)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_positive(self.tol, "tol", allow_zero=True)
        check_positive(self.reg_covar, "reg_covar", allow_zero=True)
        if self.random_state is not None:
            check_int(self.random_state, "random_state", minimum=0)
        X = _check_X(X)
        if X.shape[0] < self._K:
            raise ValueError(f"X must have at least n_components={self._K} samples, got {X.shape[0]}")
        return X

    def _initial_parameters(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K, D, ct = self._K, X.shape[1], self._ct
        start = random_start(X, K, ct, random_state=0 if self.random_state is None else self.random_state)
        means = start["means_init"] if self.means_init is None else _check_means(self.means_init, K, D, "means_init")
        weights = start["weights_init"] if self.weights_init is None else _check_weights(self.weights_init, K, "weights_init")
        if self.precisions_init is None:
            prec = start["precisions_init"]
        else:
            prec = _check_cov(self.precisions_init, ct, K, D, "precisions_init")
        return weights.copy(), means.copy(), covariances_from_precisions(prec, ct)

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def _set_params(self, weights: np.ndarray, means: np.ndarray, cov: np.ndarray) -> None:
        self.weights_, self.means_, self.covariances_ = weights, means, cov
        self.precisions_ = precisions_from_covariances(cov, self._ct)

    # -- public API
    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior responsibilities ``r_ij`` of the fitted mixture, shape (n, K)."""
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1])
        return e_step(X, self.weights_, self.means_, self.covariances_, self._ct)[0]

    def predict(self, X: Any) -> np.ndarray:
        """The component with the largest responsibility for each point."""
        return np.argmax(self.predict_proba(X), axis=1)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood ``L_i`` of each point under the fitted mixture."""
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1])
        return lse(component_distances(X, self.weights_, self.means_, self.covariances_, self._ct))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample of ``X`` under the fitted mixture."""
        return float(np.mean(self.score_samples(X)))

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).predict(X)


class GaussianMixtureEM(_MixtureBase):
    """Classical EM for a Gaussian mixture, scikit-learn-style (numpy, float64).

    Parameters follow ``sklearn.mixture.GaussianMixture``; without ``*_init`` the start is
    :func:`random_start` (random data points as means, the data covariance, uniform weights),
    not k-means. Each iteration runs an E-step (responsibilities of the distances
    ``d_ij = -log(w_j N(x_i|mu_j, Sigma_j))`` via ``iemlib.responsibilities``) and an M-step
    (:func:`m_step`); it stops when the mean log-likelihood changes by less than ``tol``.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_ : the fitted parameters.
    converged_ : bool;  n_iter_ : int, the number of E/M iterations run.
    n_e_steps_, n_m_steps_ : int, the E-steps (each one evaluation of every distance and of the
        log-likelihood, like a loss evaluation) and M-steps run, the cost counters.
    lower_bound_ : float, as scikit-learn: the mean log-likelihood computed by the last E-step
        (i.e. of the parameters *before* the last M-step).
    history_ : dict of lists indexed by M-steps taken t = 0..n_iter_: ``"log_likelihood"``
        (mean per sample, of the parameters after t M-steps; non-decreasing),
        ``"means"`` ((K, D) arrays), ``"weights"``, ``"resp_entropy"`` (nats).
    """

    def fit(self, X: Any, y: Any = None) -> "GaussianMixtureEM":
        X = self._validate(X)
        ct, tol = self._ct, float(self.tol)
        w, m, c = self._initial_parameters(X)
        hist: dict[str, list] = {"log_likelihood": [], "means": [m.copy()], "weights": [w.copy()], "resp_entropy": []}
        lower_bound = -np.inf
        self.converged_ = False
        n_iter = 0
        for n_iter in range(1, int(self.max_iter) + 1):
            prev = lower_bound
            resp, lower_bound = e_step(X, w, m, c, ct)
            hist["log_likelihood"].append(lower_bound)
            hist["resp_entropy"].append(responsibility_entropy(resp))
            w, m, c = m_step(X, resp, ct, self.reg_covar)
            hist["means"].append(m.copy())
            hist["weights"].append(w.copy())
            if abs(lower_bound - prev) < tol:
                self.converged_ = True
                break
        resp, ll = e_step(X, w, m, c, ct)
        hist["log_likelihood"].append(ll)
        hist["resp_entropy"].append(responsibility_entropy(resp))
        self._set_params(w, m, c)
        self.n_iter_ = n_iter
        self.n_e_steps_ = n_iter + 1  # E-steps (function evaluations), the last for the final parameters
        self.n_m_steps_ = n_iter
        self.lower_bound_ = float(lower_bound)
        self.history_ = hist
        return self


class ImplicitEM(_MixtureBase):
    """The same mixture fitted with no E-step: gradient descent on the *loss*
    ``-(1/n) sum_i log sum_j exp(-d_ij)`` (torch, float64).

    Unconstrained parameters: means as they are; weights as softmax logits; variances as
    ``exp(theta) + reg_covar`` (spherical, diag) or, for full, ``Sigma = C C^T + reg_covar I``
    with ``C`` lower-triangular and its diagonal ``exp(theta)``. Optimization runs in
    standardized coordinates (data centred and divided by one global scale, which keeps the
    spherical family spherical) so that the default learning rate does not depend on the units;
    results are reported in data coordinates.

    Extra parameters: ``optimizer`` (default ``"gd"``: plain gradient descent, ``p <- p - lr * grad``,
    with a monotone adaptive step: the step is halved until the loss does not rise and grows
    by 1.2 after each accepted step, so that like EM the log-likelihood never decreases;
    ``"sgd"``: the same with a fixed step; ``"adam"``: Adam), ``lr`` (the initial or fixed step,
    default 0.3; about 0.05 suits Adam), ``capture_at`` (iterations at which to store the
    autograd gradient of the summed loss with respect to every ``d_ij`` together with the
    parameters it was taken at). ``max_iter`` defaults to 3000 and ``tol`` to 1e-10: it stops
    once the loss has changed by less than ``tol`` in 5 consecutive iterations. The returned
    parameters are those of the
    smallest loss seen.

    Attributes as :class:`GaussianMixtureEM`; ``lower_bound_`` is the mean log-likelihood of the
    returned parameters; ``history_`` holds ``"loss"``, ``"log_likelihood"`` (= -loss),
    ``"means"``, ``"weights"``, ``"resp_entropy"`` per iteration (t = 0 is the start),
    ``"n_fun_evals"`` and ``"n_grad_evals"`` (cumulative counts at each iteration) and
    ``"captured"``: {iteration: {"grad_d", "weights", "means", "covariances"}}.

    Cost counters: ``n_fun_evals_`` is the number of loss evaluations over all points (one per
    iteration, plus every trial step of the step halving), ``n_grad_evals_`` the number of
    backward passes (gradients of the loss).
    """

    _PATIENCE = 5  # consecutive iterations with |change of loss| < tol before stopping

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        max_iter: int = 3000,
        tol: float = 1e-10,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        means_init: Any = None,
        weights_init: Any = None,
        precisions_init: Any = None,
        lr: float = 0.3,
        optimizer: str = "gd",
        capture_at: Sequence[int] = (),
    ) -> None:
        super().__init__(
            n_components, covariance_type, max_iter, tol, reg_covar, random_state, means_init, weights_init, precisions_init
        )
        self.lr = lr
        self.optimizer = optimizer
        self.capture_at = capture_at

    # parameters <-> unconstrained tensors (in standardized coordinates)
    def _to_unconstrained(self, w, m, c, center, scale):
        ct, reg = self._ct, float(self.reg_covar) / scale**2
        logits = torch.tensor(np.log(w), dtype=torch.float64)
        mu = torch.tensor((m - center) / scale, dtype=torch.float64)
        cs = c / scale**2
        if ct == "full":
            D = cs.shape[1]
            shifted = cs - reg * np.eye(D)
            try:
                C = np.linalg.cholesky(shifted)
            except np.linalg.LinAlgError:
                C = np.linalg.cholesky(cs)
            raw = np.tril(C, -1) + np.einsum("kd,de->kde", np.log(np.diagonal(C, axis1=1, axis2=2)), np.eye(D))
            theta = torch.tensor(raw, dtype=torch.float64)
        else:
            v = np.where(cs - reg > 0, cs - reg, cs)
            theta = torch.tensor(np.log(v), dtype=torch.float64)
        return [logits.requires_grad_(True), mu.requires_grad_(True), theta.requires_grad_(True)]

    def _covariance(self, theta: torch.Tensor, reg: float) -> torch.Tensor:
        if self._ct == "full":
            D = theta.shape[-1]
            eye = torch.eye(D, dtype=theta.dtype)
            C = torch.tril(theta, -1) + torch.diag_embed(torch.exp(torch.diagonal(theta, dim1=-2, dim2=-1)))
            return C @ C.transpose(-1, -2) + reg * eye
        return torch.exp(theta) + reg

    def _numpy_params(self, params, center, scale):
        logits, mu, theta = params
        with torch.no_grad():
            w = torch.softmax(logits, 0).numpy().copy()
            m = mu.numpy() * scale + center
            c = self._covariance(theta, float(self.reg_covar) / scale**2).numpy() * scale**2
        if self._ct == "full":
            c = 0.5 * (c + np.swapaxes(c, 1, 2))
        return w, m, c

    def fit(self, X: Any, y: Any = None) -> "ImplicitEM":
        # Tiny tensors: torch's intra-op thread pool only adds contention, so run the loop on
        # one thread and restore the caller's setting afterwards.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(X)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, X: Any) -> "ImplicitEM":
        X = self._validate(X)
        lr = check_positive(self.lr, "lr")
        if self.optimizer not in ("adam", "sgd", "gd"):
            raise ValueError(f"optimizer must be 'gd', 'adam' or 'sgd', got {self.optimizer!r}")
        capture = {check_int(t, "capture_at", minimum=0) for t in self.capture_at}
        n, D = X.shape
        center = X.mean(0)
        scale = float(X.std()) or 1.0
        Z = torch.tensor((X - center) / scale, dtype=torch.float64)
        shift = D * math.log(scale)  # log-likelihood in X = log-likelihood in Z - D log(scale)
        reg = float(self.reg_covar) / scale**2
        w0, m0, c0 = self._initial_parameters(X)
        params = self._to_unconstrained(w0, m0, c0, center, scale)
        opt = (torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD)(params, lr=lr)
        step = lr  # current step of the monotone "gd" optimizer

        def loss_at(ps):
            with torch.no_grad():
                lg, m_, th = ps
                dd = _torch_distances(Z, torch.log_softmax(lg, 0), m_, self._covariance(th, reg), self._ct)
                return float(-torch.logsumexp(-dd, dim=1).mean())
        hist: dict[str, Any] = {"loss": [], "log_likelihood": [], "means": [], "weights": [], "resp_entropy": [],
                                "n_fun_evals": [], "n_grad_evals": [], "captured": {}}
        n_fun = n_grad = 0
        prev = math.inf
        quiet = 0
        self.converged_ = False
        t = 0
        best = (math.inf, None)
        for t in range(0, int(self.max_iter) + 1):
            opt.zero_grad()
            logits, mu, theta = params
            d = _torch_distances(Z, torch.log_softmax(logits, 0), mu, self._covariance(theta, reg), self._ct)
            if t in capture:
                d.retain_grad()
            L = torch.logsumexp(-d, dim=1)  # = iemlib.lse(d), without re-validating each step
            loss_t = -L.mean()
            loss = float(loss_t.detach()) + shift
            n_fun += 1
            with torch.no_grad():
                r = torch.softmax(-d, 1)
                ent = float(-(r * (-d - L[:, None])).sum(1).mean())
            with torch.no_grad():
                w = torch.softmax(logits, 0).numpy().copy()
                m = mu.detach().numpy() * scale + center
            hist["loss"].append(loss)
            hist["log_likelihood"].append(-loss)
            hist["means"].append(m)
            hist["weights"].append(w)
            hist["resp_entropy"].append(ent)
            hist["n_fun_evals"].append(n_fun)
            hist["n_grad_evals"].append(n_grad)
            if loss < best[0]:
                best = (loss, [p.detach().clone() for p in params])
            if t in capture:
                loss_t.backward()
                n_grad += 1
                wc, mc, cc = self._numpy_params(params, center, scale)
                hist["captured"][t] = {
                    "grad_d": (d.grad * n).detach().numpy().copy(),  # gradient of the summed loss
                    "weights": wc,
                    "means": mc,
                    "covariances": cc,
                }
            quiet = quiet + 1 if abs(prev - loss) < float(self.tol) else 0
            if quiet >= self._PATIENCE:
                self.converged_ = True
                break
            if t == int(self.max_iter):
                break
            prev = loss
            if t not in capture:
                loss_t.backward()
                n_grad += 1
            if self.optimizer == "gd":
                # gradient descent with a monotone adaptive step: shrink until the loss does
                # not rise, grow slowly after each accepted step (like EM, never goes downhill)
                base = loss - shift
                while True:
                    trial = [(p - step * p.grad).detach() for p in params]
                    n_fun += 1
                    try:
                        ok = loss_at(trial) <= base
                    except RuntimeError:  # e.g. a covariance that is not positive definite
                        ok = False
                    if ok or step < 1e-12:
                        break
                    step *= 0.5
                with torch.no_grad():
                    for p, q in zip(params, trial):
                        p.copy_(q)
                step *= 1.2
            else:
                opt.step()
        final = best[1]
        w, m, c = self._numpy_params(final, center, scale)
        self._set_params(w, m, c)
        self.n_iter_ = t
        self.lower_bound_ = float(-best[0])
        self.n_fun_evals_ = n_fun
        self.n_grad_evals_ = n_grad
        self.history_ = hist
        return self
