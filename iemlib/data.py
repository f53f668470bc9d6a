"""Every data set the book uses: synthetic ones, drawn from a seed, and scikit-learn's bundled
digits (no download). The sticky Markov chain of the attention paper has its own module,
:mod:`iemlib.markov`, because its exact Bayes filter belongs with it.

Sections: Gaussian mixtures with full covariances; isotropic clusters, outliers and multi-label
tasks; the digits and images derived from them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from ._validation import as_float_array, as_numpy, check_int, check_labels, check_positive, is_torch
from .mixture import MixtureParams, check_mixture


__all__ = [
    "sample_gaussian_mixture",
    "make_gaussian_mixture",
    "CLUSTER_MEANS",
    "make_clusters",
    "make_clusters_with_outliers",
    "DIGIT_PIXELS",
    "DigitSplit",
    "OpenSetDigits",
    "DigitOODSets",
    "load_digits",
    "load_digits_open_set",
    "stack_digit_splits",
    "gaussian_noise_images",
    "pixel_marginal_noise",
    "matched_gaussian_noise",
    "occlude",
    "blur",
    "shuffle_pixels",
    "digit_ood_sets",
    "symmetric_noise_matrix",
    "sample_noisy_labels",
    "make_multilabel_task",
]

# ------------------------------------------------------------------------------------------------
# Gaussian mixtures with full covariances (chapters 2 and 4)
# ------------------------------------------------------------------------------------------------


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


#: Pixels of a flattened 8x8 digit.
DIGIT_PIXELS = 64
_FLOAT_DTYPES = (torch.float32, torch.float64)


def _check_float_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_seed(random_state: Any, name: str = "random_state") -> int:
    return check_int(random_state, name, minimum=0)


def _check_test_size(test_size: Any) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, (float, int, np.floating, np.integer)):
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    if not (np.isfinite(test_size) and 0.0 < float(test_size) < 1.0):
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    return float(test_size)


def _check_digit_classes(classes: Any) -> list[int]:
    if isinstance(classes, (str, bytes)):
        raise ValueError(f"classes must be an iterable of digits 0..9, got {classes!r}")
    try:
        cls = list(classes)
    except TypeError as exc:
        raise ValueError(f"classes must be an iterable of digits 0..9, got {classes!r}") from exc
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in cls):
        raise ValueError(f"classes must hold integers 0..9, got {cls!r}")
    cls = [int(c) for c in cls]
    if len(cls) < 2:
        raise ValueError(f"classes must name at least two digits, got {cls!r}")
    if len(set(cls)) != len(cls):
        raise ValueError(f"classes must not repeat a digit, got {cls!r}")
    if min(cls) < 0 or max(cls) > 9:
        raise ValueError(f"classes must hold digits 0..9, got {cls!r}")
    return cls


@functools.cache
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (no download): raw pixels in [0, 16] (float64) and digits (int64).

    Read once per process (scikit-learn parses a text file on every call) and returned read-only.
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    data = _sklearn_digits()
    X, y = data.data.astype(np.float64), data.target.astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


@dataclass(frozen=True, eq=False)
class DigitSplit:
    """A stratified train/test split of scikit-learn's bundled 8x8 digits, standardized.

    Attributes
    ----------
    X_train, X_test
        float tensors (N, 64), or (S, N, 64) for ``S`` stacked splits
        (:func:`stack_digit_splits`), standardized with the *training* per-pixel mean and standard
        deviation; pixels constant on the training set (standard deviation 0) are only centred.
    y_train, y_test
        int64 tensors (N,) or (S, N): labels; digit ``classes[i]`` has label ``i``.
    mean, std
        numpy float64 arrays (64,) or (S, 64): the raw-pixel training statistics used
        (``std`` with 0 replaced by 1), so that other images can be standardized alike.
    classes
        tuple of int: the digits kept, in label order.
    """

    X_train: torch.Tensor
    X_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    mean: np.ndarray
    std: np.ndarray
    classes: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class OpenSetDigits(DigitSplit):
    """:class:`DigitSplit` of the known digits plus the inputs of a closed-world check.

    Attributes
    ----------
    X_train, X_test, y_train, y_test, mean, std, classes
        as in :class:`DigitSplit` (the known digits).
    X_unknown
        float tensor (M, 64): every image of the other digits, standardized with the known
        training statistics.
    digit_unknown
        int64 tensor (M,): their digit values.
    X_noise
        float tensor (N_test, 64): uniform pixel noise on the raw range [0, 16], as many images
        as there are test images, standardized the same way.
    """

    X_unknown: torch.Tensor
    digit_unknown: torch.Tensor
    X_noise: torch.Tensor


@dataclass(frozen=True, eq=False)
class DigitOODSets:
    """The closed world of :func:`digit_ood_sets` and its out-of-distribution sets.

    Attributes
    ----------
    known
        tuple of int: the known digits (label ``i`` is digit ``known[i]``).
    X_train, y_train
        the known digits' standardized training images and labels.
    y_test
        labels of the held-out known images (``sets["held-out known"]``).
    sets
        dict name -> float64 tensor (n, 64) of standardized images: ``"held-out known"`` first,
        then the sets of :data:`iemlib.experiments.open_set.OOD_SETS` in that order.
    mean, std
        numpy (64,): the known training images' raw-pixel statistics used to standardize.
    """

    known: tuple[int, ...]
    X_train: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    sets: dict[str, torch.Tensor]
    mean: np.ndarray
    std: np.ndarray


def load_digits(
    classes: Iterable[int] | None = None,
    test_size: float = 0.3,
    random_state: int = 0,
    dtype: torch.dtype = torch.float64,
) -> DigitSplit:
    """scikit-learn's bundled 8x8 digits (no download), split (stratified) and standardized.

    Parameters
    ----------
    classes : iterable of int in 0..9, optional
        Keep only these digits (at least two, no repeats); digit ``classes[i]`` gets label ``i``.
        ``None`` keeps all ten.
    test_size : float in (0, 1)
        Fraction held out for testing, stratified by class.
    random_state : int >= 0
        Seed of the split.
    dtype : torch.float32 or torch.float64
        Feature dtype.

    Returns
    -------
    DigitSplit
    """
    test_size = _check_test_size(test_size)
    random_state = _check_seed(random_state)
    dtype = _check_float_dtype(dtype)
    X, y = _raw_digits()
    if classes is None:
        cls = list(range(10))
    else:
        cls = _check_digit_classes(classes)
        keep = np.isin(y, cls)
        remap = np.full(10, -1, dtype=np.int64)
        remap[cls] = np.arange(len(cls))
        X, y = X[keep], remap[y[keep]]
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=y)
    mean = X_tr.mean(axis=0)
    std = X_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return DigitSplit(
        X_train=torch.as_tensor((X_tr - mean) / std, dtype=dtype),
        X_test=torch.as_tensor((X_te - mean) / std, dtype=dtype),
        y_train=torch.as_tensor(y_tr, dtype=torch.int64),
        y_test=torch.as_tensor(y_te, dtype=torch.int64),
        mean=mean,
        std=std,
        classes=tuple(cls),
    )


def load_digits_open_set(
    known: Iterable[int] = range(5),
    test_size: float = 0.3,
    random_state: int = 0,
    dtype: torch.dtype = torch.float64,
) -> OpenSetDigits:
    """The digits split into a closed world (the ``known`` digits) and the rest, for open-set checks.

    The known part is :func:`load_digits` with ``classes=known``; ``X_unknown`` holds every image of
    the other digits and ``X_noise`` uniform pixel noise on the raw range [0, 16], both standardized
    with the known training statistics.

    Parameters
    ----------
    known : iterable of at least two digits 0..9 (label ``i`` is digit ``known[i]``).
    test_size : float in (0, 1). random_state : int >= 0, seeds the split and the noise.
    dtype : torch.float32 or torch.float64.

    Returns
    -------
    OpenSetDigits
    """
    split = load_digits(classes=known, test_size=test_size, random_state=random_state, dtype=dtype)
    X_raw, digit = _raw_digits()
    other = ~np.isin(digit, split.classes)
    X_unk = (X_raw[other] - split.mean) / split.std
    rng = np.random.default_rng(random_state)
    X_noise = (rng.uniform(0.0, 16.0, size=(split.X_test.shape[0], DIGIT_PIXELS)) - split.mean) / split.std
    return OpenSetDigits(
        **{f: getattr(split, f) for f in DigitSplit.__dataclass_fields__},
        X_unknown=torch.as_tensor(X_unk, dtype=dtype),
        digit_unknown=torch.as_tensor(digit[other]),
        X_noise=torch.as_tensor(X_noise, dtype=dtype),
    )


def stack_digit_splits(seeds: Iterable[int] = range(5), test_size: float = 0.3,
                       dtype: torch.dtype = torch.float32) -> DigitSplit:
    """Several stratified train/test splits of all ten digits, stacked along a leading axis.

    Split ``s`` is ``load_digits(test_size=test_size, random_state=seeds[s], dtype=dtype)``,
    standardized with its own training statistics; stratification makes every split the same size.

    Parameters
    ----------
    seeds : non-empty iterable of ints >= 0, one split each.
    test_size : float in (0, 1).
    dtype : torch.float32 (default, as chapter 9 uses them) or torch.float64.

    Returns
    -------
    DigitSplit with ``X_train`` (S, N, 64), ``y_train`` (S, N), ``mean`` and ``std`` (S, 64), and so on.
    """
    if isinstance(seeds, (str, bytes)):
        raise ValueError(f"seeds must be an iterable of non-negative integers, got {seeds!r}")
    seeds = [_check_seed(s, "seeds") for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    parts = [load_digits(test_size=test_size, random_state=s, dtype=dtype) for s in seeds]
    return DigitSplit(
        X_train=torch.stack([p.X_train for p in parts]),
        X_test=torch.stack([p.X_test for p in parts]),
        y_train=torch.stack([p.y_train for p in parts]),
        y_test=torch.stack([p.y_test for p in parts]),
        mean=np.stack([p.mean for p in parts]),
        std=np.stack([p.std for p in parts]),
        classes=parts[0].classes,
    )


# ---- out-of-distribution images ------------------------------------------------------------------
def gaussian_noise_images(n: int = 300, n_features: int = DIGIT_PIXELS, scale: float = 1.0,
                          random_state: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Noise "images" with i.i.d. ``N(0, scale^2)`` entries, in the *standardized* feature space.

    With ``scale = 1`` every pixel has the training data's mean and spread, but no digit's shape; the
    same ``random_state`` gives the same draw, rescaled, at every ``scale``.

    Parameters
    ----------
    n : int >= 1, number of images. n_features : int >= 1.
    scale : float > 0, the standard deviation.
    random_state : int >= 0, seeds a private ``torch.Generator`` (the global state is untouched).
    dtype : torch.float32 or torch.float64.

    Returns
    -------
    tensor (n, n_features)
    """
    n = check_int(n, "n", minimum=1)
    f = check_int(n_features, "n_features", minimum=1)
    s = check_positive(scale, "scale")
    dtype = _check_float_dtype(dtype)
    g = torch.Generator().manual_seed(_check_seed(random_state))
    return s * torch.randn(n, f, generator=g, dtype=dtype)


def _raw_images(x: Any, name: str = "x_raw") -> np.ndarray:
    X = as_numpy(x, name, ndim=2)
    if X.shape[1] != DIGIT_PIXELS:
        raise ValueError(f"{name} must hold flattened 8x8 images (64 columns), got shape {X.shape}")
    return X


def pixel_marginal_noise(x_ref: Any, n: int, random_state: int = 0) -> np.ndarray:
    """Images whose pixel ``p`` is drawn independently from the values of pixel ``p`` in ``x_ref``.

    Every pixel's distribution (mean, spread, range, the exact histogram) matches the reference
    images; only the dependence between pixels, the digit's shape, is gone.

    Parameters
    ----------
    x_ref : (M, F) reference images. n : int >= 1, number of images drawn.
    random_state : int >= 0.

    Returns
    -------
    numpy float64 array (n, F)
    """
    X = as_numpy(x_ref, "x_ref", ndim=2)
    n = check_int(n, "n", minimum=1)
    idx = np.random.default_rng(_check_seed(random_state)).integers(0, X.shape[0], size=(n, X.shape[1]))
    return X[idx, np.arange(X.shape[1])[None, :]]


def matched_gaussian_noise(x_ref: Any, n: int, random_state: int = 0, match_norm: bool = True) -> np.ndarray:
    """Gaussian images with each pixel's mean and standard deviation taken from ``x_ref``.

    With ``match_norm`` each image's deviation from the mean image is rescaled so that its norm is
    the norm of a randomly drawn reference image's deviation: the noise is then as far from the mean
    image as the reference images are (independent per-pixel noise is otherwise shorter, since real
    pixels are correlated).

    Parameters
    ----------
    x_ref : (M, F) reference images. n : int >= 1. random_state : int >= 0.
    match_norm : bool.

    Returns
    -------
    numpy float64 array (n, F)
    """
    X = as_numpy(x_ref, "x_ref", ndim=2)
    n = check_int(n, "n", minimum=1)
    if not isinstance(match_norm, bool):
        raise ValueError(f"match_norm must be a bool, got {match_norm!r}")
    rng = np.random.default_rng(_check_seed(random_state))
    mu, sd = X.mean(0), X.std(0)
    dev = rng.standard_normal((n, X.shape[1])) * sd
    if match_norm:
        ref = np.linalg.norm(X - mu, axis=1)[rng.integers(0, X.shape[0], n)]
        nrm = np.linalg.norm(dev, axis=1)
        dev = dev * np.where(nrm > 0, ref / np.where(nrm > 0, nrm, 1.0), 0.0)[:, None]
    return mu + dev


def occlude(x_raw: Any, size: int = 4, random_state: int = 0) -> np.ndarray:
    """Each 8x8 image with one ``size`` x ``size`` square set to 0 (background), at a random place.

    Parameters
    ----------
    x_raw : (N, 64) raw images (pixels in [0, 16]); not modified.
    size : int in 1..8. random_state : int >= 0.

    Returns
    -------
    numpy float64 array (N, 64)
    """
    X = _raw_images(x_raw).copy()
    s = check_int(size, "size", minimum=1)
    if s > 8:
        raise ValueError(f"size must be at most 8, got {size}")
    rng = np.random.default_rng(_check_seed(random_state))
    imgs = X.reshape(-1, 8, 8)
    rows = rng.integers(0, 9 - s, len(imgs))
    cols = rng.integers(0, 9 - s, len(imgs))
    for i, (r, c) in enumerate(zip(rows, cols)):
        imgs[i, r : r + s, c : c + s] = 0.0
    return imgs.reshape(-1, DIGIT_PIXELS)


def blur(x_raw: Any, width: int = 3) -> np.ndarray:
    """Each 8x8 image averaged over a ``width`` x ``width`` box (zero padding outside the image).

    Parameters
    ----------
    x_raw : (N, 64) raw images. width : odd int >= 1 (1 leaves the images as they are).

    Returns
    -------
    numpy float64 array (N, 64)
    """
    X = _raw_images(x_raw)
    w = check_int(width, "width", minimum=1)
    if w % 2 == 0:
        raise ValueError(f"width must be odd, got {width}")
    h = w // 2
    imgs = np.pad(X.reshape(-1, 8, 8), ((0, 0), (h, h), (h, h)))
    out = np.zeros((X.shape[0], 8, 8))
    for dr in range(w):
        for dc in range(w):
            out += imgs[:, dr : dr + 8, dc : dc + 8]
    return (out / (w * w)).reshape(-1, DIGIT_PIXELS)


def shuffle_pixels(x_raw: Any, random_state: int = 0) -> np.ndarray:
    """Each image with its pixels permuted at random (a fresh permutation per image).

    Keeps every image's set of pixel values, so its norm, mean and histogram, exactly.

    Parameters
    ----------
    x_raw : (N, 64) raw images. random_state : int >= 0.

    Returns
    -------
    numpy float64 array (N, 64)
    """
    X = _raw_images(x_raw)
    perm = np.argsort(np.random.default_rng(_check_seed(random_state)).random(X.shape), axis=1)
    return np.take_along_axis(X, perm, axis=1)


def digit_ood_sets(known: Iterable[int], random_state: int = 0, test_size: float = 0.3) -> DigitOODSets:
    """The digits split into a closed world (the ``known`` digits) and out-of-distribution sets.

    Built on :func:`load_digits` with ``classes=known``. ``sets`` holds standardized images (with the
    known training images' per-pixel statistics), in this order: ``"held-out known"`` (the
    in-distribution test images, labels ``y_test``); ``"unknown digits"`` (every image of the other
    digits); ``"pixel-marginal noise"`` and ``"matched Gaussian noise"`` (as many as held-out images,
    :func:`pixel_marginal_noise` and :func:`matched_gaussian_noise` of the raw training images);
    ``"occluded"`` (4x4 square), ``"blurred"`` (3x3 box) and ``"shuffled pixels"`` versions of the
    held-out images; ``"uniform noise"`` on the raw range [0, 16], far from every digit after
    standardization.

    Parameters
    ----------
    known : iterable of at least two digits 0..9.
    random_state : int >= 0, seeds the split and every draw.
    test_size : float in (0, 1).

    Returns
    -------
    DigitOODSets
    """
    random_state = _check_seed(random_state)
    split = load_digits(classes=known, test_size=test_size, random_state=random_state)
    mean, std = split.mean, split.std
    raw_tr = split.X_train.numpy() * std + mean
    raw_te = split.X_test.numpy() * std + mean
    X_raw, digit = _raw_digits()
    n = raw_te.shape[0]
    raw = {
        "held-out known": raw_te,
        "unknown digits": X_raw[~np.isin(digit, split.classes)],
        "pixel-marginal noise": pixel_marginal_noise(raw_tr, n, random_state=random_state),
        "matched Gaussian noise": matched_gaussian_noise(raw_tr, n, random_state=random_state),
        "occluded": occlude(raw_te, 4, random_state=random_state),
        "blurred": blur(raw_te, 3),
        "shuffled pixels": shuffle_pixels(raw_te, random_state=random_state),
        "uniform noise": np.random.default_rng(random_state).uniform(0.0, 16.0, (n, DIGIT_PIXELS)),
    }
    sets = {k: torch.as_tensor((v - mean) / std, dtype=torch.float64) for k, v in raw.items()}
    return DigitOODSets(known=split.classes, X_train=split.X_train, y_train=split.y_train, y_test=split.y_test,
                        sets=sets, mean=mean, std=std)


# ---- noisy labels --------------------------------------------------------------------------------
def _check_rate(value: Any, name: str) -> float:
    v = check_positive(value, name, allow_zero=True)
    if v > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def symmetric_noise_matrix(n_classes: int, rho: float) -> torch.Tensor:
    """``T[i, j] = P(noisy label j | true label i)`` under symmetric label noise of rate ``rho``.

    Parameters
    ----------
    n_classes : int >= 2. rho : float in [0, 1].

    Returns
    -------
    float64 tensor (K, K): ``1 - rho`` on the diagonal, ``rho / (K - 1)`` elsewhere; rows sum to one.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    p = _check_rate(rho, "rho")
    T = torch.full((K, K), p / (K - 1), dtype=torch.float64)
    T.fill_diagonal_(1.0 - p)
    return T


def sample_noisy_labels(y: Any, n_classes: int, rho: float, random_state: int = 0) -> torch.Tensor:
    """Labels drawn under symmetric label noise of rate ``rho`` (the model of :func:`symmetric_noise_matrix`).

    Each label is kept with probability ``1 - rho`` and otherwise replaced by one of the ``K - 1``
    other classes uniformly: ``(y + U{1, ..., K-1}) mod K``.

    Parameters
    ----------
    y : integer labels in ``[0, n_classes)``, any shape. n_classes : int >= 2. rho : float in [0, 1].
    random_state : int >= 0, seeds a private ``torch.Generator``.

    Returns
    -------
    int64 tensor of ``y``'s shape.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    p = _check_rate(rho, "rho")
    y = check_labels(y, "y", K)
    yt = (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()
    g = torch.Generator().manual_seed(_check_seed(random_state))
    flip = torch.rand(yt.shape, generator=g, dtype=torch.float64) < p
    offset = torch.randint(1, K, yt.shape, generator=g)
    return torch.where(flip, (yt + offset) % K, yt)


# ---- a multi-label task --------------------------------------------------------------------------
def make_multilabel_task(n: int = 400, n_features: int = 5, n_labels: int = 4, random_state: int = 0,
                         dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic multi-label data: ``x ~ N(0, I)``, label ``j`` on when ``w_j . x + b_j > 0``.

    ``w_j ~ N(0, I)`` and ``b_j ~ N(0, 1/4)`` are drawn with ``x`` from one ``torch.Generator``; a
    point can carry any number of labels, none included.

    Parameters
    ----------
    n : int >= 1 points. n_features : int >= 1. n_labels : int >= 1.
    random_state : int >= 0. dtype : torch.float32 or torch.float64.

    Returns
    -------
    (X, T): ``X`` (n, n_features) and 0/1 targets ``T`` (n, n_labels), both of ``dtype``.
    """
    n = check_int(n, "n", minimum=1)
    f = check_int(n_features, "n_features", minimum=1)
    k = check_int(n_labels, "n_labels", minimum=1)
    dtype = _check_float_dtype(dtype)
    g = torch.Generator().manual_seed(_check_seed(random_state))
    X = torch.randn(n, f, generator=g, dtype=dtype)
    W = torch.randn(f, k, generator=g, dtype=dtype)
    b = 0.5 * torch.randn(k, generator=g, dtype=dtype)
    return X, (X @ W + b > 0).to(dtype)
