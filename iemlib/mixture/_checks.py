"""Input validation shared by the modules of :mod:`iemlib.mixture` (private to the package).

Every check raises :class:`ValueError` naming the argument and what was expected, and returns
float64 numpy arrays (a torch tensor is detached and copied to the CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_numpy, check_int

COVARIANCE_TYPES = ("spherical", "diag", "full")


def check_X(X: Any, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Data (n, D), finite, float, at least one feature (and ``n_features`` of them when given)."""
    X = as_numpy(X, name, ndim=2)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {X.shape}")
    return X


def check_covariance_type(covariance_type: Any) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return str(covariance_type)


def check_weights(weights: Any, K: int | None = None, name: str = "weights") -> np.ndarray:
    """Mixture weights (K,): in (0, 1], summing to 1 within 1e-8."""
    w = as_numpy(weights, name, ndim=1)
    if K is not None and w.shape[0] != K:
        raise ValueError(f"{name} must have shape ({K},), got {w.shape}")
    if (w <= 0).any() or (w > 1).any():
        raise ValueError(f"{name} must lie in (0, 1], got values in [{w.min()}, {w.max()}]")
    if abs(1.0 - w.sum()) > 1e-8:
        raise ValueError(f"{name} must sum to 1, got {w.sum()!r}")
    return w


def check_means(means: Any, K: int | None = None, D: int | None = None, name: str = "means") -> np.ndarray:
    """Means (K, D), one row per component."""
    m = as_numpy(means, name, ndim=2)
    if K is not None and m.shape[0] != K:
        raise ValueError(f"{name} must have {K} rows (one per component), got shape {m.shape}")
    if D is not None and m.shape[1] != D:
        raise ValueError(f"{name} must have {D} columns (the features of X), got shape {m.shape}")
    return m


def check_spd(c: np.ndarray, name: str) -> np.ndarray:
    """Symmetric positive definite matrices along the last two axes of ``c``."""
    if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(c).max()))):
        raise ValueError(f"{name} must be symmetric matrices")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError(f"{name} must be positive definite")
    return c


def check_covariances(cov: Any, covariance_type: str, K: int, D: int, name: str = "covariances") -> np.ndarray:
    """Covariances (or precisions) of the given type: shape (K,), (K, D) or (K, D, D), positive."""
    c = as_numpy(cov, name)
    shape = {"spherical": (K,), "diag": (K, D), "full": (K, D, D)}[covariance_type]
    if c.shape != shape:
        raise ValueError(f"{name} must have shape {shape} for covariance_type={covariance_type!r}, got {c.shape}")
    if covariance_type == "full":
        return check_spd(c, name)
    if (c <= 0).any():
        raise ValueError(f"{name} must be positive")
    return c


def check_params(X: Any, weights: Any, means: Any, covariances: Any, covariance_type: Any):
    """Data X and one mixture's parameters: ``(X, weights, means, covariances, covariance_type)``."""
    X = check_X(X)
    covariance_type = check_covariance_type(covariance_type)
    m = check_means(means, D=X.shape[1])
    K = m.shape[0]
    w = check_weights(weights, K)
    c = check_covariances(covariances, covariance_type, K, X.shape[1])
    return X, w, m, c, covariance_type


def check_batch(X: np.ndarray, start: Any, name: str = "start"):
    """A batch of full-covariance mixtures (anything with ``weights`` (B, K), ``means`` (B, K, D),
    ``covariances`` (B, K, D, D): a :class:`~iemlib.mixture.MixtureParams` or a fit) against X."""
    if not all(hasattr(start, a) for a in ("weights", "means", "covariances")):
        raise ValueError(f"{name} must be a MixtureParams (weights, means, covariances), got {type(start).__name__}")
    n, D = X.shape
    m = as_numpy(start.means, "means", ndim=3)
    if m.shape[2] != D:
        raise ValueError(f"means must have shape (B, K, {D}) (D = the features of X), got {m.shape}")
    B, K, _ = m.shape
    w = as_numpy(start.weights, "weights", ndim=2)
    if w.shape != (B, K):
        raise ValueError(f"weights must have shape ({B}, {K}), got {w.shape}")
    if (w <= 0).any() or np.abs(w.sum(1) - 1.0).max() > 1e-8:
        raise ValueError("weights must be positive and each row must sum to 1")
    c = as_numpy(start.covariances, "covariances", ndim=4)
    if c.shape != (B, K, D, D):
        raise ValueError(f"covariances must have shape ({B}, {K}, {D}, {D}), got {c.shape}")
    check_spd(c, "covariances")
    if n < K:
        raise ValueError(f"X must have at least K={K} samples, got {n}")
    return w, m, c


def check_seed(random_state: Any) -> int:
    return check_int(random_state, "random_state", minimum=0)
