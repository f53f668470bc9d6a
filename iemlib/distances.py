"""Distances: between points and prototypes, and the ones neural layers compute.

**Prototype distances** (chapters 1, 3, 7, 9): ``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)``, the
energy of point ``i`` under an isotropic Gaussian prototype ``j`` of width ``sigma``, for one set
of prototypes or a batch of independent sets (:func:`prototype_distances`), and the distance each
objective of the taxonomy takes as its argument (:func:`objective_distances`).

**Affine-absolute and Mahalanobis distances** (chapter 2, after Oursland, 2024): a linear unit
followed by an absolute value, ``|w^T x + b|``, is a Mahalanobis distance along one principal
direction of a Gaussian. For a Gaussian with mean ``mu`` and covariance
``Sigma = sum_k lambda_k v_k v_k^T``,

    ``|lambda_k^{-1/2} v_k^T (x - mu)|`` = ``|W_k x + b_k|``,  W_k = lambda_k^{-1/2} v_k^T,  b_k = -W_k mu,

and the squared Mahalanobis distance is the sum over directions of their squares. A ReLU
network computes the absolute value as two half-space detectors, ``|z| = relu(z) + relu(-z)``.

Every function accepts numpy arrays or torch tensors (floating point, finite, non-empty); bad
input raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_int, check_positive, is_torch, to_numpy
from ._kernels import check_objective, check_points_means, objective_distance, scaled_distances

__all__ = [
    "prototype_distances",
    "objective_distances",
    "relu",
    "abs_via_relu",
    "UnitPairing",
    "unit_pairing",
    "affine_abs",
    "PrincipalAffine",
    "principal_affine",
    "principal_distances",
    "mahalanobis",
    "mahalanobis_ellipse",
    "principal_kernel_log_density",
]


# ================================================================================================
# Prototype distances
# ================================================================================================


def prototype_distances(x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)`` for one or a batch of prototype sets.

    Parameters
    ----------
    x : array or tensor (N, D), or (B, N, D) for one data set per prototype set
        Points.
    means : array or tensor (K, D), or (B, K, D) for B independent prototype sets
        Prototypes; a torch ``means`` keeps its autograd graph.
    sigma : float > 0
        Length scale.

    Returns
    -------
    torch tensor (N, K), or (B, N, K) when ``x`` or ``means`` has a batch axis; the dtype of a
    torch ``x`` (float64 for numpy input).
    """
    x, m = check_points_means(x, means)
    s = check_positive(sigma, "sigma")
    return scaled_distances(x, m, s)


def objective_distances(objective: str, x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """The distance each objective of ``iemlib.objectives.LOSSES`` takes as its argument.

    The prototype distance ``e = prototype_distances(x, means, sigma)`` for ``"lse"``,
    ``"sigmoid"``, ``"sqrt"`` and ``"partition"``; the Euclidean distance in units of ``sigma``,
    ``rho = sqrt(2 e)``, for ``"correntropy"`` (whose kernel takes an unsquared distance).

    Parameters
    ----------
    objective : one of LOSSES or ``"partition"``; x, means, sigma : as :func:`prototype_distances`

    Returns
    -------
    torch tensor (N, K) (or batched, as :func:`prototype_distances`).
    """
    objective = check_objective(objective)
    return objective_distance(objective, prototype_distances(x, means, sigma))


# ================================================================================================
# Affine-absolute and Mahalanobis distances
# ================================================================================================
def relu(z: ArrayLike) -> ArrayLike:
    """Elementwise ``max(z, 0)`` of an array or tensor ``z``; returns the kind and shape of ``z``."""
    z = as_float_array(z, "z")
    return torch.relu(z) if is_torch(z) else np.maximum(z, 0.0)


def abs_via_relu(z: ArrayLike) -> ArrayLike:
    """``|z|`` computed as ``relu(z) + relu(-z)``: two half-space detectors, one per sign.

    Returns an array or tensor of the kind and shape of ``z``.
    """
    z = as_float_array(z, "z")
    if is_torch(z):
        return torch.relu(z) + torch.relu(-z)
    return np.maximum(z, 0.0) + np.maximum(-z, 0.0)


@dataclass(frozen=True)
class UnitPairing:
    """How close a layer of units ``a_k = w_k^T x + b_k`` comes to holding the pairs that
    ``|a| = relu(a) + relu(-a)`` needs (:func:`unit_pairing`).

    Attributes
    ----------
    partner_cosine
        (H,) for each unit, the smallest cosine between its ``(w_k, b_k)`` and another unit's: -1 when
        some unit is an exact mirror ``(w_l, b_l) = -c (w_k, b_k)``, ``c > 0``.
    partner
        (H,) int, the index of that most anti-aligned unit.
    aligned_cosine
        (H,) the largest cosine with another unit (the control: how aligned units are at all).
    partner_correlation, aligned_correlation
        (H,) the same over data: the smallest and largest correlation of unit ``k``'s pre-activations
        ``a_k(x_i)`` with another unit's, over the points ``x`` (``None`` without points).
    """

    partner_cosine: np.ndarray
    partner: np.ndarray
    aligned_cosine: np.ndarray
    partner_correlation: np.ndarray | None = None
    aligned_correlation: np.ndarray | None = None

    def pairs(self, threshold: float = -0.9) -> int:
        """The number of units whose most anti-aligned partner has cosine ``<= threshold``."""
        return int((self.partner_cosine <= threshold).sum())


def _extreme_offdiagonal(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = c.copy(), c.copy()
    np.fill_diagonal(lo, np.inf)
    np.fill_diagonal(hi, -np.inf)
    return lo.min(1), lo.argmin(1), hi.max(1)


def unit_pairing(weight: Any, bias: Any, x: Any = None) -> UnitPairing:
    """Anti-aligned pairs in a layer of ``H`` units ``a_k = weight[k] @ x + bias[k]``.

    Pairs with ``(w_l, b_l) = -c (w_k, b_k)`` are what a ReLU layer needs to compute
    ``|a_k| = relu(a_k) + relu(-a_k)`` (up to the scale ``c``, which the next layer can absorb). For
    every unit the measure is the most negative cosine between its ``(w_k, b_k)`` and another unit's
    (the criterion of Shang et al. 2016 for convolution filters), and, with points ``x``, the most
    negative correlation of the pre-activations over the points. Nothing is maximized or minimized.

    Parameters
    ----------
    weight : (H, F) array or tensor, H >= 2 units of F inputs
    bias : (H,)
    x : optional (N, F) points, N >= 2

    Returns
    -------
    UnitPairing
    """
    W = as_float_array(weight, "weight", ndim=2)
    W = to_numpy(W, np.float64)
    b = to_numpy(as_float_array(bias, "bias", ndim=1), np.float64)
    if W.shape[0] < 2:
        raise ValueError(f"weight must hold at least 2 units, got shape {W.shape}")
    if b.shape[0] != W.shape[0]:
        raise ValueError(f"bias must have {W.shape[0]} entries (one per unit), got shape {b.shape}")
    v = np.concatenate([W, b[:, None]], 1)
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        raise ValueError("weight and bias must not hold a unit that is zero everywhere")
    v = v / norms[:, None]
    lo, arg, hi = _extreme_offdiagonal(v @ v.T)
    corr_lo = corr_hi = None
    if x is not None:
        xa = to_numpy(as_float_array(x, "x", ndim=2), np.float64)
        if xa.shape[1] != W.shape[1] or xa.shape[0] < 2:
            raise ValueError(f"x must have shape (N >= 2, {W.shape[1]}), got {xa.shape}")
        a = xa @ W.T + b
        a = a - a.mean(0)
        sd = np.linalg.norm(a, axis=0)
        if np.any(sd == 0):
            raise ValueError("x must not leave a unit constant (its correlation is undefined)")
        a = a / sd
        corr_lo, _, corr_hi = _extreme_offdiagonal(a.T @ a)
    return UnitPairing(lo, arg, hi, corr_lo, corr_hi)


def _as_kind(value: Any, like: ArrayLike) -> ArrayLike:
    """Convert ``value`` to the kind (numpy/torch) and dtype of ``like``."""
    if is_torch(like):
        if is_torch(value):
            return value.to(dtype=like.dtype)
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)
    return to_numpy(value, like.dtype)


def _check_points(x: Any, name: str = "x") -> tuple[ArrayLike, bool]:
    """Points as a 2-D array (n, D); returns (array, was_1d)."""
    x = as_float_array(x, name, ndim=(1, 2))
    if x.ndim == 1:
        return x[None, :], True
    return x, False


def affine_abs(x: ArrayLike, W: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Affine-absolute distance ``|W x + b|`` for each point and each unit.

    Parameters
    ----------
    x : (n, D) or (D,) array
        Points.
    W : (m, D) or (D,) array
        One row per unit (a 1-D ``W`` is a single unit).
    b : (m,) array or scalar
        Offsets, one per unit.

    Returns
    -------
    (n, m) array, or (n,) / (m,) / scalar when ``x`` or ``W`` is 1-D; same kind as ``x``.
    """
    x2, x1d = _check_points(x, "x")
    W = as_float_array(W, "W", ndim=(1, 2))
    w1d = W.ndim == 1
    W2 = W[None, :] if w1d else W
    if W2.shape[1] != x2.shape[1]:
        raise ValueError(f"W must have {x2.shape[1]} columns (the dimension of x), got shape {tuple(W.shape)}")
    b = as_float_array(b, "b", ndim=(0, 1))
    b1 = b.reshape(-1) if b.ndim == 1 else b.reshape(1)
    if b1.shape[0] not in (1, W2.shape[0]):
        raise ValueError(f"b must be a scalar or have {W2.shape[0]} entries (one per row of W), got shape {tuple(b.shape)}")
    W2 = _as_kind(W2, x2)
    b1 = _as_kind(b1, x2)
    z = x2 @ W2.T + b1
    out = abs(z)
    if w1d:
        out = out[:, 0]
    if x1d:
        out = out[0]
    return out


def _check_gaussian(mean: Any, cov: Any) -> tuple[ArrayLike, ArrayLike]:
    mean = as_float_array(mean, "mean", ndim=1)
    cov = as_float_array(cov, "cov", ndim=2)
    D = mean.shape[0]
    if tuple(cov.shape) != (D, D):
        raise ValueError(f"cov must have shape ({D}, {D}) to match mean, got {tuple(cov.shape)}")
    c = to_numpy(cov)
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(c).max()))):
        raise ValueError("cov must be symmetric")
    if np.linalg.eigvalsh(c.astype(np.float64)).min() <= 0:
        raise ValueError("cov must be positive definite")
    return mean, cov


@dataclass(frozen=True)
class PrincipalAffine:
    """The affine units of a Gaussian's principal directions (:func:`principal_affine`).

    Fields: ``W`` (D, D), row ``k`` is ``lambda_k^{-1/2} v_k^T``; ``b`` (D,), ``b_k = -W_k mu``;
    ``eigenvalues`` (D,), ascending (``eigh`` order); ``eigenvectors`` (D, D),
    ``eigenvectors[:, k] = v_k``. Unpacks as ``W, b, eigenvalues, eigenvectors``.
    """

    W: ArrayLike
    b: ArrayLike
    eigenvalues: ArrayLike
    eigenvectors: ArrayLike

    def __iter__(self) -> Iterator[ArrayLike]:
        return iter((self.W, self.b, self.eigenvalues, self.eigenvectors))


def principal_affine(mean: ArrayLike, cov: ArrayLike) -> PrincipalAffine:
    """Affine units ``(W, b)`` whose absolute values are the Mahalanobis distances along the
    principal directions of ``N(mean, cov)``.

    Parameters
    ----------
    mean : (D,) array or tensor
    cov : (D, D) symmetric positive definite

    Returns
    -------
    :class:`PrincipalAffine`, of the kind of ``mean``. The sign of each eigenvector is fixed so
    that its largest-magnitude entry is positive (``|.|`` does not care; the fix makes the output
    deterministic).
    """
    mean, cov = _check_gaussian(mean, cov)
    cov = _as_kind(cov, mean)
    if is_torch(mean):
        lam, V = torch.linalg.eigh(cov)
        idx = V.abs().argmax(dim=0)
        sign = torch.sign(V[idx, torch.arange(V.shape[1])])
        V = V * sign
        W = V.T / torch.sqrt(lam)[:, None]
    else:
        lam, V = np.linalg.eigh(cov)
        idx = np.abs(V).argmax(axis=0)
        V = V * np.sign(V[idx, np.arange(V.shape[1])])
        W = V.T / np.sqrt(lam)[:, None]
    b = -(W @ mean)
    return PrincipalAffine(W, b, lam, V)


def _check_gaussian_points(x: Any, mean: Any, cov: Any) -> tuple[ArrayLike, bool, ArrayLike, ArrayLike]:
    x2, x1d = _check_points(x, "x")
    mean, cov = _check_gaussian(mean, cov)
    if x2.shape[1] != mean.shape[0]:
        raise ValueError(f"x must have {mean.shape[0]} columns to match mean, got shape {tuple(x.shape)}")
    return x2, x1d, mean, cov


def principal_distances(x: ArrayLike, mean: ArrayLike, cov: ArrayLike) -> ArrayLike:
    """``|W_k x + b_k|`` for every principal direction ``k`` of ``N(mean, cov)``.

    Parameters
    ----------
    x : (n, D) or (D,) points; mean : (D,); cov : (D, D) symmetric positive definite

    Returns
    -------
    (n, D) for (n, D) points ((D,) for one point), the kind of ``x``; the row-wise sum of
    squares is the squared Mahalanobis distance.
    """
    x2, x1d, mean, cov = _check_gaussian_points(x, mean, cov)
    W, b, _, _ = principal_affine(_as_kind(mean, x2), _as_kind(cov, x2))
    out = affine_abs(x2, W, b)
    return out[0] if x1d else out


def mahalanobis(x: ArrayLike, mean: ArrayLike, cov: ArrayLike) -> ArrayLike:
    """Mahalanobis distance ``sqrt((x - mean)^T cov^{-1} (x - mean))`` of each point.

    Computed with a Cholesky solve (not an explicit inverse).

    Parameters
    ----------
    x : (n, D) or (D,) points; mean : (D,); cov : (D, D) symmetric positive definite

    Returns
    -------
    (n,) for (n, D) points, a scalar for one (D,) point; the kind of ``x``.
    """
    x2, x1d, mean, cov = _check_gaussian_points(x, mean, cov)
    mean = _as_kind(mean, x2)
    cov = _as_kind(cov, x2)
    diff = x2 - mean
    if is_torch(x2):
        Lc = torch.linalg.cholesky(cov)
        y = torch.linalg.solve_triangular(Lc, diff.T, upper=False)
        out = torch.sqrt((y**2).sum(0))
    else:
        from scipy.linalg import solve_triangular

        Lc = np.linalg.cholesky(cov)
        y = solve_triangular(Lc, diff.T, lower=True)
        out = np.sqrt((y**2).sum(0))
    return out[0] if x1d else out


def mahalanobis_ellipse(mean: ArrayLike, cov: ArrayLike, radius: float = 1.0, n_points: int = 100) -> np.ndarray:
    """Points of the level set ``{x : mahalanobis(x, mean, cov) = radius}`` of a 2-D Gaussian,
    for drawing: ``mean + radius * Sigma^{1/2} u`` for unit vectors ``u``.

    Parameters
    ----------
    mean : (2,); cov : (2, 2) symmetric positive definite; radius : float > 0; n_points : int >= 3

    Returns
    -------
    numpy float64 array (n_points, 2).
    """
    mean, cov = _check_gaussian(mean, cov)
    if mean.shape[0] != 2:
        raise ValueError(f"mean must be 2-D to draw an ellipse, got shape {tuple(mean.shape)}")
    r = check_positive(radius, "radius")
    k = check_int(n_points, "n_points", minimum=3)
    m = to_numpy(mean, np.float64)
    c = to_numpy(cov, np.float64)
    lam, V = np.linalg.eigh(c)
    t = np.linspace(0.0, 2.0 * np.pi, k)
    u = np.stack([np.cos(t), np.sin(t)], 1)
    return m + r * (u * np.sqrt(lam)) @ V.T


def principal_kernel_log_density(x: ArrayLike, mean: ArrayLike, cov: ArrayLike, kernel: str = "gaussian") -> ArrayLike:
    """Log-density built from the principal units ``z_k = W_k x + b_k`` of ``N(mean, cov)``.

    * ``kernel="gaussian"``: ``-(1/2) sum_k z_k^2 - (D/2) log(2 pi) - (1/2) log det cov``, the
      Gaussian ``N(mean, cov)`` (squared units: the Mahalanobis distance squared);
    * ``kernel="laplace"``: ``-sum_k |z_k| - D log 2 - (1/2) log det cov``, a product of
      Laplace densities ``(1/2) exp(-|z_k|)`` along the principal directions (absolute units,
      the paper's ``|Wx + b|``): mean ``mean``, covariance ``2 cov``, level sets that are
      diamonds (L1 balls) in whitened coordinates, not ellipses.

    Either way ``-log density`` is a distance ``d`` for Theorem 1.

    Parameters
    ----------
    x : (n, D) or (D,) points; mean : (D,); cov : (D, D) symmetric positive definite;
    kernel : ``"gaussian"`` or ``"laplace"``

    Returns
    -------
    (n,) for (n, D) points, a scalar for one point; the kind of ``x``.
    """
    if kernel not in ("gaussian", "laplace"):
        raise ValueError(f"kernel must be 'gaussian' or 'laplace', got {kernel!r}")
    x2, x1d, mean, cov = _check_gaussian_points(x, mean, cov)
    D = mean.shape[0]
    z = principal_distances(x2, mean, cov)  # |z_k|, (n, D)
    half_logdet = 0.5 * float(np.linalg.slogdet(to_numpy(cov, np.float64))[1])
    if kernel == "gaussian":
        out = -0.5 * (z**2).sum(1) - 0.5 * D * np.log(2.0 * np.pi) - half_logdet
    else:
        out = -z.sum(1) - D * np.log(2.0) - half_logdet
    return out[0] if x1d else out
