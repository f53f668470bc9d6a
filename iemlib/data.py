"""Every data set the book uses: synthetic ones, drawn from a seed, and scikit-learn's bundled
digits (no download). The sticky Markov chain of the attention paper has its own module,
:mod:`iemlib.markov`, because its exact Bayes filter belongs with it.

Sections: Gaussian mixtures with full covariances; isotropic clusters, outliers and multi-label
tasks; the digits and images derived from them.
"""

from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# Gaussian mixtures with full covariances (chapters 2 and 4)
# ------------------------------------------------------------------------------------------------

from typing import Any  # noqa: E402  (mixture section)

from ._validation import check_int, check_positive  # noqa: E402
from .mixture import MixtureParams, check_mixture  # noqa: E402


def sample_gaussian_mixture(
    n_samples: int,
    weights: Any,
    means: Any,
    covariances: Any,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` points from a Gaussian mixture with full covariances.

    Parameters
    ----------
    n_samples : int, at least 1.
    weights : (K,) mixture weights summing to one.
    means : (K, D).
    covariances : (K, D, D), symmetric positive definite.
    random_state : int, the seed: the same seed gives the same data.

    Returns
    -------
    X : (n_samples, D) float64
    labels : (n_samples,) the generating component of each point.
    """
    n = check_int(n_samples, "n_samples", minimum=1)
    p = check_mixture(weights, means, covariances, "full")
    K, D = p.means.shape
    seed = check_int(random_state, "random_state", minimum=0)
    rng = np.random.default_rng(seed)
    labels = rng.choice(K, size=n, p=p.weights)
    chol = np.linalg.cholesky(p.covariances)
    eps = rng.standard_normal((n, D))
    X = p.means[labels] + np.einsum("nde,ne->nd", chol[labels], eps)
    return X, labels


def make_gaussian_mixture(
    n_samples: int = 600,
    n_components: int = 3,
    n_features: int = 2,
    separation: float = 4.0,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, MixtureParams]:
    """A seeded synthetic Gaussian mixture: means ``separation`` apart on average (on a circle,
    jittered), random anisotropic covariances (eigenvalues between 0.3 and 1.5), unequal weights
    (Dirichlet(8)).

    Parameters
    ----------
    n_samples, n_components, n_features : int, at least 1.
    separation : float > 0, the typical distance between two means.
    random_state : int, the seed (the points are drawn with seed ``random_state + 1``).

    Returns
    -------
    X : (n_samples, n_features) float64
    labels : (n_samples,) the generating component of each point.
    truth : :class:`iemlib.mixture.MixtureParams`, the generating ``weights`` (K,), ``means`` (K, D)
        and full ``covariances`` (K, D, D).
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
    return X, labels, MixtureParams(weights=weights, means=means, covariances=covs)


# ------------------------------------------------------------------------------------------------
# Isotropic clusters, outliers, multi-label tasks (chapters 1, 3, 7, 9)
# ------------------------------------------------------------------------------------------------

# (prototypes section: make_clusters, make_clusters_with_outliers)


# ------------------------------------------------------------------------------------------------
# Digits, and images derived from them (chapters 6, 9, 10)
# ------------------------------------------------------------------------------------------------

# (classifiers section: load_digits, digit splits, out-of-distribution images, noisy labels,
#  the multi-label task)
