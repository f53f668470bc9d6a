"""Open-set and out-of-distribution scores, their metrics, and the inputs a skeptic would test them on.

Every score follows one convention: **higher means "more like the training distribution"**
(in-distribution is the positive class), so a detector rejects inputs whose score is low.

Scores computed from a classifier's logits ``z`` (distances ``d = -z``):

* :func:`max_softmax_score` — ``max_j softmax(z)_j`` (Hendrycks & Gimpel 2017);
* :func:`energy_score` — ``T log sum_j exp(z_j / T)``, the negative free energy of Liu et al.
  (2020); with ``T = 1`` and ``z = -d`` it is the book's objective ``L = log sum_j exp(-d_j)``;
* :func:`temperature_softmax_score` — ``max_j softmax(z / T)_j``, the temperature part of ODIN
  (Liang et al. 2018); :func:`odin_score` adds ODIN's input perturbation (optional, it needs the
  model and a gradient with respect to the input);
* :func:`reject_log_odds` — the log-odds ``log((1 - r_0) / r_0) = tau + L`` of *not* rejecting,
  for a "none of the above" component at fixed distance ``tau`` (chapter 10); ranking by it is
  ranking by ``L``, without the float64 saturation of ``1 - r_0``.

Scores computed from features (Lee et al. 2018): :func:`fit_class_gaussians` fits one Gaussian
per class (shared or per-class covariance, with shrinkage) and :func:`mahalanobis_score` returns
``max_k -(x - mu_k)^T Sigma_k^{-1} (x - mu_k)`` (shared) or the largest class-conditional Gaussian
log-density (per-class: the log-determinant, the volume term of chapter 9, enters).

Metrics: :func:`auroc` (Mann-Whitney, ties counted one half; equal to
``sklearn.metrics.roc_auc_score``), :func:`fpr_at_tpr` (false-positive rate at 95 % true-positive
rate by default), and bootstrap confidence intervals: :func:`bootstrap_mean_ci` over runs (splits
and seeds) and :func:`bootstrap_metric_ci` over the test samples of one run.

Out-of-distribution inputs (raw 8x8 digit pixels in [0, 16]): :func:`pixel_marginal_noise`,
:func:`matched_gaussian_noise`, :func:`occlude`, :func:`blur`, :func:`shuffle_pixels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ._validation import ArrayLike, as_float_array, check_int, check_labels, check_positive, is_torch

__all__ = [
    "max_softmax_score",
    "energy_score",
    "temperature_softmax_score",
    "odin_score",
    "reject_log_odds",
    "ClassGaussians",
    "fit_class_gaussians",
    "mahalanobis_score",
    "auroc",
    "fpr_at_tpr",
    "bootstrap_mean_ci",
    "bootstrap_metric_ci",
    "pixel_marginal_noise",
    "matched_gaussian_noise",
    "occlude",
    "blur",
    "shuffle_pixels",
    "OOD_SETS",
    "SCORES",
    "digit_ood_sets",
    "digit_open_set_run",
]


def _np64(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    arr = as_float_array(x, name, ndim=ndim)
    if is_torch(arr):
        return arr.detach().cpu().numpy().astype(np.float64)
    return np.asarray(arr, dtype=np.float64)


def _logits(z: Any) -> np.ndarray:
    z = _np64(z, "z", ndim=2)
    if z.shape[1] < 2:
        raise ValueError(f"z must have at least two classes (columns), got shape {z.shape}")
    return z


def _lse(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))


# --------------------------------------------------------------------------------------
# Scores from logits
# --------------------------------------------------------------------------------------
def max_softmax_score(z: Any) -> np.ndarray:
    """``max_j softmax(z)_j`` per row of the logits ``z`` (N, K): in ``[1/K, 1]``."""
    z = _logits(z)
    return np.exp(z.max(1) - _lse(z))


def energy_score(z: Any, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T log sum_j exp(z_j / T)`` per row (Liu et al. 2020).

    With ``T = 1`` and ``z = -d`` this is the objective ``L = log sum_j exp(-d_j)`` (maximized):
    the log of the normalizer that softmax divides out. Unlike max-softmax it is not
    shift-invariant: it keeps the absolute level of the logits.
    """
    z = _logits(z)
    t = check_positive(temperature, "temperature")
    return t * _lse(z / t)


def temperature_softmax_score(z: Any, temperature: float = 1000.0) -> np.ndarray:
    """``max_j softmax(z / T)_j`` per row: ODIN's temperature scaling without the input perturbation.

    For large ``T``, ``max softmax(z/T) ~ 1/K + (z_max - mean_j z_j) / (K T)``: the ranking tends to
    that of the gap between the top logit and the mean logit (Liang et al. 2018, their eq. 3).
    """
    z = _logits(z)
    t = check_positive(temperature, "temperature")
    return max_softmax_score(z / t)


def odin_score(model: nn.Module, x: Any, temperature: float = 1000.0, epsilon: float = 0.0) -> np.ndarray:
    """ODIN (Liang et al. 2018): temperature-scaled max-softmax after a small input perturbation.

    ``x' = x - epsilon * sign(grad_x ell(x))`` with ``ell(x) = -log max_j softmax(model(x) / T)_j``,
    the loss of the predicted class at temperature ``T`` (minimized: the step *raises* the
    confidence); the score is ``max_j softmax(model(x') / T)_j``. With ``epsilon = 0`` it equals
    :func:`temperature_softmax_score` of ``model(x)``. ``x`` is in the model's input space (here
    standardized pixels), so ``epsilon`` is in those units. The model is not modified.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    t = check_positive(temperature, "temperature")
    eps = check_positive(epsilon, "epsilon", allow_zero=True)
    xt = as_float_array(x, "x", ndim=2)
    dtype = next(model.parameters()).dtype
    xt = (xt if is_torch(xt) else torch.as_tensor(np.asarray(xt))).detach().to(dtype)
    if eps > 0:
        with torch.enable_grad():
            xv = xt.clone().requires_grad_(True)
            logp = torch.log_softmax(model(xv) / t, dim=1).max(1).values
            (g,) = torch.autograd.grad(-logp.sum(), xv)
        xt = xt - eps * torch.sign(g)
    with torch.no_grad():
        return temperature_softmax_score(model(xt), t)


def reject_log_odds(d_known: Any, tau: float) -> np.ndarray:
    """``log((1 - r_0) / r_0) = tau + L`` for a reject component at distance ``tau`` (chapter 10).

    ``r_0 = sigmoid(-tau - L)`` with ``L = log sum_k exp(-d_k)`` over the known distances ``d_known``
    (N, K). The log-odds never saturates, whereas ``1 - r_0`` rounds to 0 in float64 once
    ``tau + L < -37``; both rank inputs exactly as ``L`` does.
    """
    d = _np64(d_known, "d_known", ndim=2)
    t = float(as_float_array(tau, "tau", ndim=0))
    return t + _lse(-d)


# --------------------------------------------------------------------------------------
# Scores from features: class Gaussians (Lee et al. 2018)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassGaussians:
    """Class means and covariances fitted by :func:`fit_class_gaussians`.

    ``means`` (K, F); ``precisions`` (K, F, F) (all equal when ``shared``); ``logdets`` (K,),
    ``log det Sigma_k``; ``shared`` says whether one covariance is tied across classes.
    """

    means: np.ndarray
    precisions: np.ndarray
    logdets: np.ndarray
    shared: bool


def fit_class_gaussians(features: Any, y: Any, n_classes: int, shared: bool = True, shrinkage: float = 0.1) -> ClassGaussians:
    """Fit one Gaussian per class to ``features`` (N, F) with labels ``y`` (N,).

    ``shared=True`` ties the covariance (the pooled within-class covariance, as Lee et al. 2018
    and linear discriminant analysis); ``shared=False`` fits one per class (quadratic discriminant
    analysis). Each covariance is shrunk towards a multiple of the identity,
    ``(1 - s) Sigma + s (tr Sigma / F) I`` with ``s = shrinkage`` in (0, 1], so that it is invertible
    even when features are constant or there are fewer samples than dimensions (maximum-likelihood
    estimates, divided by the number of samples).
    """
    X = _np64(features, "features", ndim=2)
    K = check_int(n_classes, "n_classes", minimum=2)
    yy = np.asarray(check_labels(y.detach().cpu().numpy() if is_torch(y) else y, "y", K, shape=(X.shape[0],)))
    if not isinstance(shared, bool):
        raise ValueError(f"shared must be a bool, got {shared!r}")
    s = check_positive(shrinkage, "shrinkage")
    if s > 1.0:
        raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage!r}")
    missing = [k for k in range(K) if not np.any(yy == k)]
    if missing:
        raise ValueError(f"y has no sample of class(es) {missing}")
    F = X.shape[1]
    means = np.stack([X[yy == k].mean(0) for k in range(K)])
    centred = X - means[yy]

    def shrink(cov: np.ndarray) -> np.ndarray:
        scale = np.trace(cov) / F
        if scale <= 0:  # all features constant: fall back to the identity
            scale = 1.0
        return (1.0 - s) * cov + s * scale * np.eye(F)

    if shared:
        covs = [shrink(centred.T @ centred / X.shape[0])] * K
    else:
        covs = [shrink(centred[yy == k].T @ centred[yy == k] / int(np.sum(yy == k))) for k in range(K)]
    precisions = np.stack([np.linalg.inv(c) for c in covs])
    logdets = np.array([np.linalg.slogdet(c)[1] for c in covs])
    return ClassGaussians(means=means, precisions=precisions, logdets=logdets, shared=shared)


def mahalanobis_score(features: Any, gaussians: ClassGaussians) -> np.ndarray:
    """Confidence from class Gaussians: higher for inputs close to some class.

    Shared covariance: ``max_k -(x - mu_k)^T P (x - mu_k)``, the negative of the smallest squared
    Mahalanobis distance (Lee et al. 2018, without their input preprocessing or layer ensemble).
    Per-class covariances: ``max_k -[(x - mu_k)^T P_k (x - mu_k) + log det Sigma_k]``, twice the
    largest class-conditional Gaussian log-density up to a constant, so the volume term counts.
    """
    if not isinstance(gaussians, ClassGaussians):
        raise ValueError(f"gaussians must be a ClassGaussians (from fit_class_gaussians), got {type(gaussians).__name__}")
    X = _np64(features, "features", ndim=2)
    F = gaussians.means.shape[1]
    if X.shape[1] != F:
        raise ValueError(f"features must have {F} columns like the fitted means, got {X.shape[1]}")
    return -_class_energies(X, gaussians).min(1)


def _class_energies(X: np.ndarray, g: ClassGaussians) -> np.ndarray:
    """(N, K) squared Mahalanobis distances to each class (plus log det Sigma_k when not shared)."""
    m2 = np.empty((X.shape[0], g.means.shape[0]))
    for k in range(g.means.shape[0]):
        diff = X - g.means[k]
        m2[:, k] = ((diff @ g.precisions[k]) * diff).sum(1)
    if not g.shared:
        m2 = m2 + g.logdets[None, :]
    return m2


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
def _pair(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _np64(scores_in, "scores_in", ndim=1)
    b = _np64(scores_out, "scores_out", ndim=1)
    return a, b


def _rank_auroc(a: np.ndarray, b: np.ndarray) -> float:
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    n_a, n_b = len(a), len(b)
    return float((ranks[:n_a].sum() - n_a * (n_a + 1) / 2.0) / (n_a * n_b))


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve with in-distribution as the positive class.

    ``P(s_in > s_out) + P(s_in = s_out) / 2`` over all pairs (the Mann-Whitney statistic):
    1 separates perfectly, 0.5 is chance, 0 is perfectly inverted. Equals
    ``sklearn.metrics.roc_auc_score`` on the concatenated scores.
    """
    a, b = _pair(scores_in, scores_out)
    return _rank_auroc(a, b)


def fpr_at_tpr(scores_in: Any, scores_out: Any, tpr: float = 0.95) -> float:
    """False-positive rate at the threshold that keeps a share ``tpr`` of the in-distribution inputs.

    The threshold ``t`` is the largest value with ``mean(scores_in >= t) >= tpr`` (the
    ``ceil(tpr * n_in)``-th largest in-distribution score); the result is ``mean(scores_out >= t)``,
    the share of out-of-distribution inputs accepted. 0 is perfect, lower is better.
    """
    a, b = _pair(scores_in, scores_out)
    p = check_positive(tpr, "tpr")
    if p > 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    k = int(np.ceil(p * len(a) - 1e-9))
    t = np.sort(a)[::-1][max(k, 1) - 1]
    return float(np.mean(b >= t))


def _check_level(level: Any) -> float:
    lv = check_positive(level, "level")
    if lv >= 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return lv


def bootstrap_mean_ci(values: Any, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (one per run: a split and a seed) and its percentile bootstrap interval.

    Resamples the runs with replacement ``n_boot`` times. Returns ``(mean, low, high)``. With the
    runs independent (fresh split and seed each), the interval covers split-to-split and
    test-sample variation together. With few runs it is narrower than the truth: report the runs.
    """
    v = _np64(values, "values", ndim=1)
    B = check_int(n_boot, "n_boot", minimum=1)
    lv = _check_level(level)
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    means = v[rng.integers(0, len(v), size=(B, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - lv) / 2, (1 + lv) / 2])
    return float(v.mean()), float(lo), float(hi)


def bootstrap_metric_ci(
    scores_in: Any,
    scores_out: Any,
    metric: Callable[[np.ndarray, np.ndarray], float] = auroc,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A metric on one run and its percentile bootstrap interval over the test samples.

    In- and out-of-distribution scores are resampled separately (stratified), ``n_boot`` times.
    Returns ``(value, low, high)``, ``value`` the metric on the full samples. This interval
    covers test-sample noise only; it says nothing about another split or seed.
    """
    a, b = _pair(scores_in, scores_out)
    if not callable(metric):
        raise ValueError(f"metric must be callable (scores_in, scores_out) -> float, got {metric!r}")
    B = check_int(n_boot, "n_boot", minimum=1)
    lv = _check_level(level)
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    vals = np.empty(B)
    for i in range(B):
        vals[i] = metric(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
    lo, hi = np.quantile(vals, [(1 - lv) / 2, (1 + lv) / 2])
    return float(metric(a, b)), float(lo), float(hi)


# --------------------------------------------------------------------------------------
# Out-of-distribution inputs, in raw pixel space (8x8 digits, values in [0, 16])
# --------------------------------------------------------------------------------------
def _raw_images(x: Any, name: str = "x_raw") -> np.ndarray:
    X = _np64(x, name, ndim=2)
    if X.shape[1] != 64:
        raise ValueError(f"{name} must hold flattened 8x8 images (64 columns), got shape {X.shape}")
    return X


def _rng(seed: Any) -> np.random.Generator:
    return np.random.default_rng(check_int(seed, "seed", minimum=0))


def pixel_marginal_noise(x_ref: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images whose pixel ``p`` is drawn independently from the empirical values of pixel ``p`` in ``x_ref``.

    Every pixel's distribution (mean, spread, range, the exact histogram) matches the reference
    images; only the dependence between pixels, the digit's shape, is gone. ``x_ref`` (M, F).
    """
    X = _np64(x_ref, "x_ref", ndim=2)
    n = check_int(n, "n", minimum=1)
    idx = _rng(seed).integers(0, X.shape[0], size=(n, X.shape[1]))
    return X[idx, np.arange(X.shape[1])[None, :]]


def matched_gaussian_noise(x_ref: Any, n: int, seed: int = 0, match_norm: bool = True) -> np.ndarray:
    """``n`` Gaussian images with each pixel's mean and standard deviation taken from ``x_ref`` (M, F).

    With ``match_norm`` each image's deviation from the mean image is rescaled so that its norm is
    the norm of a randomly drawn reference image's deviation: the noise is then as far from the
    mean image as the reference images are (independent per-pixel noise is otherwise shorter,
    since real pixels are correlated).
    """
    X = _np64(x_ref, "x_ref", ndim=2)
    n = check_int(n, "n", minimum=1)
    if not isinstance(match_norm, bool):
        raise ValueError(f"match_norm must be a bool, got {match_norm!r}")
    rng = _rng(seed)
    mu, sd = X.mean(0), X.std(0)
    dev = rng.standard_normal((n, X.shape[1])) * sd
    if match_norm:
        ref = np.linalg.norm(X - mu, axis=1)[rng.integers(0, X.shape[0], n)]
        nrm = np.linalg.norm(dev, axis=1)
        dev = dev * np.where(nrm > 0, ref / np.where(nrm > 0, nrm, 1.0), 0.0)[:, None]
    return mu + dev


def occlude(x_raw: Any, size: int = 4, seed: int = 0) -> np.ndarray:
    """Each 8x8 image with one ``size`` x ``size`` square set to 0 (background), at a random position."""
    X = _raw_images(x_raw).copy()
    s = check_int(size, "size", minimum=1)
    if s > 8:
        raise ValueError(f"size must be at most 8, got {size}")
    rng = _rng(seed)
    imgs = X.reshape(-1, 8, 8)
    rows = rng.integers(0, 9 - s, len(imgs))
    cols = rng.integers(0, 9 - s, len(imgs))
    for i, (r, c) in enumerate(zip(rows, cols)):
        imgs[i, r : r + s, c : c + s] = 0.0
    return imgs.reshape(-1, 64)


def blur(x_raw: Any, width: int = 3) -> np.ndarray:
    """Each 8x8 image averaged over a ``width`` x ``width`` box (zero padding outside the image)."""
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
    return (out / (w * w)).reshape(-1, 64)


def shuffle_pixels(x_raw: Any, seed: int = 0) -> np.ndarray:
    """Each image with its pixels permuted at random (a fresh permutation per image).

    Keeps every image's set of pixel values, so its norm, mean and histogram, exactly.
    """
    X = _raw_images(x_raw)
    rng = _rng(seed)
    perm = np.argsort(rng.random(X.shape), axis=1)
    return np.take_along_axis(X, perm, axis=1)


# --------------------------------------------------------------------------------------
# The benchmark of chapter 10: every score on the same splits of the digits
# --------------------------------------------------------------------------------------
#: The out-of-distribution sets of :func:`digit_ood_sets`, in table order.
OOD_SETS: tuple[str, ...] = (
    "unknown digits",
    "pixel-marginal noise",
    "matched Gaussian noise",
    "occluded",
    "blurred",
    "shuffled pixels",
    "uniform noise",
)

#: The scores of :func:`digit_open_set_run`: name -> (model, what is scored).
SCORES: dict[str, tuple[str, str]] = {
    "max-softmax": ("MLP", "max_j softmax(z)_j (Hendrycks & Gimpel 2017)"),
    "ODIN, T = 1000": ("MLP", "max_j softmax(z / 1000)_j, no input perturbation (Liang et al. 2018)"),
    "ODIN, T = 1000, eps = 0.05": ("MLP", "the same after ODIN's input perturbation of size 0.05"),
    "energy": ("MLP", "log sum_j exp(z_j) (Liu et al. 2020)"),
    "Mahalanobis, shared": ("MLP hidden layer", "-min_k squared Mahalanobis distance, tied covariance (Lee et al. 2018)"),
    "Gaussian, per-class": ("MLP hidden layer", "the same with one covariance per class and its log-determinant"),
    "prototype max-softmax": ("prototype", "max_j softmax(-d)_j"),
    "prototype L": ("prototype", "L = log sum_j exp(-d_j), the book's threshold score"),
    "reject component": ("prototype + reject, tau = 10", "tau + L = log((1 - r_0) / r_0)"),
    "pixel Gaussian, shared": ("class Gaussians on pixels", "-min_k squared Mahalanobis distance, tied covariance"),
    "pixel Gaussian, per-class": ("class Gaussians on pixels", "the same with one covariance per class and its log-determinant"),
}


def _descend(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    """Full-batch gradient descent on the mean cross-entropy loss, as
    :func:`iemlib.classification.train_classifier` does it (same updates), without its per-epoch records."""
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(model(X), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)


def _prototypes_class():
    from .failure_modes import PrototypeClassifier

    class _Fast(PrototypeClassifier):
        """:class:`~iemlib.failure_modes.PrototypeClassifier` with ``||x - mu||^2`` expanded into matrix products."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            sq = (x * x).sum(1, keepdim=True) - 2.0 * x @ self.mu.T + (self.mu * self.mu).sum(1)[None, :]
            return -sq.clamp_min(0.0) * torch.exp(2.0 * self.log_a) / 2.0

    return _Fast


def _Prototypes(X: torch.Tensor, y: torch.Tensor, K: int) -> nn.Module:
    return _prototypes_class()(X, y, K)


def digit_ood_sets(known: Any, seed: int = 0, test_size: float = 0.3) -> dict[str, Any]:
    """The digits split into a closed world (``known`` digits) and the out-of-distribution sets of :data:`OOD_SETS`.

    Built on :func:`iemlib.classification.load_digits_data` (scikit-learn's bundled digits, no
    download). Returns ``X_train, y_train`` and ``sets``: name -> standardized images (float64
    tensors; standardized with the known training images' per-pixel statistics), with
    ``"held-out known"`` first (the in-distribution test images, labels ``y_test``) and then:
    every image of the other digits; as many noise images as held-out ones, drawn from each
    pixel's training marginal (:func:`pixel_marginal_noise`) or Gaussian with the training pixels'
    means, spreads and norms (:func:`matched_gaussian_noise`); the held-out known images occluded
    by a 4x4 square, blurred by a 3x3 box, and with their pixels shuffled; and uniform noise on
    the raw range [0, 16], far from every digit after standardization.
    """
    from sklearn.datasets import load_digits

    from .classification import load_digits_data

    known = [int(k) for k in known] if not isinstance(known, (str, bytes)) else known
    seed = check_int(seed, "seed", minimum=0)
    X_tr, X_te, y_tr, y_te, mean, std = load_digits_data(classes=known, test_size=test_size, seed=seed, return_stats=True)
    raw_tr = X_tr.numpy() * std + mean
    raw_te = X_te.numpy() * std + mean
    data = load_digits()
    raw_unk = data.data[~np.isin(data.target, known)].astype(np.float64)
    n = raw_te.shape[0]
    raw = {
        "held-out known": raw_te,
        "unknown digits": raw_unk,
        "pixel-marginal noise": pixel_marginal_noise(raw_tr, n, seed=seed),
        "matched Gaussian noise": matched_gaussian_noise(raw_tr, n, seed=seed),
        "occluded": occlude(raw_te, 4, seed=seed),
        "blurred": blur(raw_te, 3),
        "shuffled pixels": shuffle_pixels(raw_te, seed=seed),
        "uniform noise": np.random.default_rng(seed).uniform(0.0, 16.0, (n, 64)),
    }
    sets = {k: torch.as_tensor((v - mean) / std, dtype=torch.float64) for k, v in raw.items()}
    return {"X_train": X_tr, "y_train": y_tr, "y_test": y_te, "sets": sets}


def digit_open_set_run(
    seed: int, n_known: int = 6, mlp_epochs: int = 200, proto_epochs: int = 200, tau: float = 10.0
) -> dict[str, Any]:
    """One run of chapter 10's open-set table: a random split of the ten digits, every score of :data:`SCORES`.

    ``seed`` draws the ``n_known`` known digits (the rest are unknown), the train/test split, the
    noise and corruptions, and the network's initialization. Trained on the known digits'
    training images (full-batch gradient descent on the mean cross-entropy loss,
    :func:`iemlib.classification.train_classifier`): an MLP (one hidden ReLU layer of 64 units,
    step 0.5, ``mlp_epochs``), a prototype classifier (:class:`iemlib.failure_modes.PrototypeClassifier`,
    step 0.1, ``proto_epochs``) and the same with a reject component at distance ``tau``
    (:class:`iemlib.open_directions.RejectOption`); fitted in closed form: class Gaussians on the MLP's
    hidden features and on the pixels (shrinkage 0.1).

    Returns ``known`` (the digits), ``accuracy`` (held-out known-class accuracy of the MLP, the
    prototype, the reject model's known classes and the per-class pixel Gaussians), and ``auroc``,
    ``fpr95``: dicts score -> set -> value, for every score of :data:`SCORES` and every set of
    :data:`OOD_SETS` (in-distribution = held-out known digits, the positive class).
    """
    from threadpoolctl import threadpool_limits

    seed = check_int(seed, "seed", minimum=0)
    K = check_int(n_known, "n_known", minimum=2)
    if K > 9:
        raise ValueError(f"n_known must leave at least one unknown digit (2..9), got {n_known}")
    tau = float(as_float_array(tau, "tau", ndim=0))
    mlp_epochs = check_int(mlp_epochs, "mlp_epochs", minimum=1)
    proto_epochs = check_int(proto_epochs, "proto_epochs", minimum=1)
    # The matrices are small: one BLAS thread is several times cheaper than a pool fighting for two cores.
    with threadpool_limits(limits=1, user_api="blas"):
        return _open_set_run(seed, K, mlp_epochs, proto_epochs, tau)


def _open_set_run(seed: int, K: int, mlp_epochs: int, proto_epochs: int, tau: float) -> dict[str, Any]:
    from .classification import make_classifier
    from .open_directions import RejectOption

    known = sorted(int(k) for k in np.random.default_rng(seed).permutation(10)[:K])
    data = digit_ood_sets(known, seed=seed)
    X, y, sets = data["X_train"], data["y_train"], data["sets"]
    mlp = make_classifier("mlp", n_classes=K, hidden=64, seed=seed)
    _descend(mlp, X, y, mlp_epochs, 0.5)
    proto = _Prototypes(X, y, K)
    _descend(proto, X, y, proto_epochs, 0.1)
    rbase = _Prototypes(X, y, K)
    _descend(RejectOption(rbase, tau), X, y, proto_epochs, 0.1)

    def hidden(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(mlp[0](x))

    with torch.no_grad():
        g_h = {sh: fit_class_gaussians(hidden(X), y, K, shared=sh) for sh in (True, False)}
    g_p = {sh: fit_class_gaussians(X, y, K, shared=sh) for sh in (True, False)}
    scores: dict[str, dict[str, np.ndarray]] = {s: {} for s in SCORES}
    for name, x in sets.items():
        with torch.no_grad():
            z, zp, zr, h = mlp(x), proto(x), rbase(x), hidden(x)
        scores["max-softmax"][name] = max_softmax_score(z)
        scores["ODIN, T = 1000"][name] = temperature_softmax_score(z, 1000.0)
        scores["ODIN, T = 1000, eps = 0.05"][name] = odin_score(mlp, x, 1000.0, 0.05)
        scores["energy"][name] = energy_score(z)
        scores["Mahalanobis, shared"][name] = mahalanobis_score(h, g_h[True])
        scores["Gaussian, per-class"][name] = mahalanobis_score(h, g_h[False])
        scores["prototype max-softmax"][name] = max_softmax_score(zp)
        scores["prototype L"][name] = energy_score(zp)
        scores["reject component"][name] = reject_log_odds(-zr, tau)
        scores["pixel Gaussian, shared"][name] = mahalanobis_score(x, g_p[True])
        scores["pixel Gaussian, per-class"][name] = mahalanobis_score(x, g_p[False])
    x_in, y_te = sets["held-out known"], data["y_test"].numpy()

    def acc(z: torch.Tensor) -> float:
        return float((z.argmax(1).numpy() == y_te).mean())

    qda = -_class_energies(x_in.numpy(), g_p[False])
    with torch.no_grad():
        accuracy = {"MLP": acc(mlp(x_in)), "prototype": acc(proto(x_in)), "prototype + reject": acc(rbase(x_in)),
                    "pixel Gaussian, per-class": float((qda.argmax(1) == y_te).mean())}
    s_in = {s: v["held-out known"] for s, v in scores.items()}
    return {
        "known": known,
        "accuracy": accuracy,
        "auroc": {s: {k: auroc(s_in[s], scores[s][k]) for k in OOD_SETS} for s in SCORES},
        "fpr95": {s: {k: fpr_at_tpr(s_in[s], scores[s][k]) for k in OOD_SETS} for s in SCORES},
    }
