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

from typing import Any  # noqa: E402  (imports of this section kept in it, so that the sections merge cleanly)

from ._validation import as_float_array, check_int, check_positive  # noqa: E402

#: The three well-separated cluster centres of chapters 7, 9 and 10.
CLUSTER_MEANS: tuple[tuple[float, float], ...] = ((-3.0, 0.0), (3.0, 0.0), (0.0, 4.5))


def make_clusters(
    n_per_component: int | Any = 150,
    means: Any = None,
    std: float = 0.8,
    random_state: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian clusters ``N(mean_j, std^2 I)``, drawn from one seed.

    Parameters
    ----------
    n_per_component : int, or a sequence of ints (one per mean)
        Cluster sizes.
    means : array (K, D), optional
        Cluster centres; default :data:`CLUSTER_MEANS`, three well-separated clusters in the plane.
    std : float > 0
        Standard deviation of every coordinate.
    random_state : int >= 0
        Seed of the draw (``torch.Generator``): the same arguments give the same points.
    dtype : torch dtype

    Returns
    -------
    ``(x, labels, means)``: points (N, D) cluster after cluster, their cluster indices (N,)
    (int64), and the centres (K, D) as a tensor of ``dtype``.
    """
    s = check_positive(std, "std")
    seed = check_int(random_state, "random_state", minimum=0)
    m = torch.as_tensor(np.asarray(as_float_array(CLUSTER_MEANS if means is None else means, "means", ndim=2)), dtype=dtype)
    if isinstance(n_per_component, (list, tuple, np.ndarray)):
        sizes = [check_int(n, "n_per_component", minimum=1) for n in n_per_component]
        if len(sizes) != m.shape[0]:
            raise ValueError(f"n_per_component must give {m.shape[0]} sizes, one per mean, got {len(sizes)}")
    else:
        sizes = [check_int(n_per_component, "n_per_component", minimum=1)] * m.shape[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([mj + s * torch.randn(n, m.shape[1], generator=g, dtype=dtype) for mj, n in zip(m, sizes)])
    labels = torch.repeat_interleave(torch.arange(m.shape[0]), torch.as_tensor(sizes))
    return x, labels, m


def make_clusters_with_outliers(
    n_per_component: int | Any = 150,
    outlier_fraction: float = 0.1,
    box: float = 12.0,
    std: float = 0.8,
    random_state: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clusters of :func:`make_clusters` plus outliers drawn uniformly from ``[-box, box]^D``.

    Parameters
    ----------
    n_per_component : int or sequence of ints
        Cluster sizes (:func:`make_clusters`, default centres).
    outlier_fraction : float in [0, 1)
        The fraction of the *final* data set that is outliers.
    box : float > 0
        Half-width of the box the outliers are drawn from.
    std : float > 0
        Standard deviation of the clusters.
    random_state : int >= 0
        Seed: the clusters are drawn with it, the outliers with ``random_state + 1``.

    Returns
    -------
    ``(x, is_outlier, means)``: the points (N, D) float64, clusters first and outliers last, a
    boolean mask (N,), and the cluster centres (K, D).
    """
    frac = check_positive(outlier_fraction, "outlier_fraction", allow_zero=True)
    if frac >= 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    bx = check_positive(box, "box")
    x, _, means = make_clusters(n_per_component, std=std, random_state=random_state)
    n_out = int(round(frac * len(x) / (1.0 - frac)))
    g = torch.Generator().manual_seed(check_int(random_state, "random_state") + 1)
    out = (2.0 * torch.rand(n_out, x.shape[1], generator=g, dtype=x.dtype) - 1.0) * bx
    is_out = torch.cat([torch.zeros(len(x), dtype=torch.bool), torch.ones(n_out, dtype=torch.bool)])
    return torch.cat([x, out]), is_out, means


# ------------------------------------------------------------------------------------------------
# Digits, and images derived from them (chapters 6, 9, 10)
# ------------------------------------------------------------------------------------------------

# (classifiers section: load_digits, digit splits, out-of-distribution images, noisy labels,
#  the multi-label task)
