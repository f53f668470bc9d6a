"""How results are scored: one implementation of each score the book reports.

Sections: entropies of responsibilities; divergences and correlations; classification,
calibration and out-of-distribution scores with their bootstrap intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ._validation import as_float_array, as_numpy, as_tensor, check_int, check_labels, check_positive
from ._validation import is_torch, to_numpy
from .objectives import lse, responsibilities


__all__ = [
    "responsibility_entropy",
    "kl_divergence",
    "pearson",
    "max_softmax",
    "energy_score",
    "temperature_softmax_score",
    "odin_score",
    "reject_responsibility",
    "reject_log_odds",
    "ClassGaussians",
    "fit_class_gaussians",
    "mahalanobis_score",
    "auroc",
    "fpr_at_tpr",
    "reject_threshold",
    "expected_calibration_error",
    "ConfidenceInterval",
    "bootstrap_mean_ci",
    "bootstrap_metric_ci",
    "BinomialInterval",
    "wilson_interval",
    "PairedBinaryTest",
    "mcnemar_exact",
    "MultilabelScores",
    "multilabel_scores",
]

# ------------------------------------------------------------------------------------------------
# Entropies of responsibilities
# ------------------------------------------------------------------------------------------------


def responsibility_entropy(r: Any) -> float | np.ndarray:
    """Mean over points of the entropy ``H_i = -sum_j r_ij log r_ij`` of the responsibilities (nats).

    ``log K`` when every point is shared evenly, 0 when every point has one owner (``0 log 0 = 0``).

    Parameters
    ----------
    r : array or tensor (N, K), or (..., N, K) for a batch of responsibility matrices
        Non-negative rows that sum to one (within 1e-6); computed in float64.

    Returns
    -------
    float for (N, K) input; a float64 array of shape ``r.shape[:-2]`` for batched input.
    """
    r = as_numpy(r, "r", min_ndim=2)
    if r.min() < 0 or not np.allclose(r.sum(-1), 1.0, atol=1e-6):
        raise ValueError("r must hold non-negative rows that sum to one")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    h = -t.sum(-1).mean(-1)
    return float(h) if r.ndim == 2 else h


# ------------------------------------------------------------------------------------------------
# Divergences and correlations
# ------------------------------------------------------------------------------------------------


def kl_divergence(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over positions of ``KL(p_i || q_i) = sum_c p_ic log(p_ic / q_ic)``, in nats.

    Parameters
    ----------
    p, q : arrays or tensors of one shape ``(..., C)``
        Distributions over the last axis (rows summing to one), e.g. a reference predictor and a model.
    eps : float
        Floor on the probabilities inside the logarithms (``0 log 0 = 0``, no infinite divergence).

    Returns
    -------
    float
        The divergence averaged over every leading index (float64 arithmetic).
    """
    p_ = as_numpy(p, "p", min_ndim=1)
    q_ = as_numpy(q, "q", min_ndim=1)
    if p_.shape != q_.shape:
        raise ValueError(f"q must have the same shape as p {p_.shape}, got {q_.shape}")
    e = check_positive(eps, "eps")
    kl = (p_ * (np.log(np.maximum(p_, e)) - np.log(np.maximum(q_, e)))).sum(-1)
    return float(kl.mean())


def pearson(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Pearson correlation of two equally shaped arrays (flattened).

    Parameters
    ----------
    a, b : arrays or tensors of one shape, at least two entries, neither constant.

    Returns
    -------
    float
        The correlation in ``[-1, 1]`` (float64 arithmetic).
    """
    a_ = as_numpy(a, "a")
    b_ = as_numpy(b, "b")
    if a_.shape != b_.shape:
        raise ValueError(f"b must have the same shape as a {a_.shape}, got {b_.shape}")
    a_, b_ = a_.ravel(), b_.ravel()
    if a_.size < 2:
        raise ValueError("a and b must hold at least two entries")
    a_, b_ = a_ - a_.mean(), b_ - b_.mean()
    na, nb = np.sqrt((a_**2).sum()), np.sqrt((b_**2).sum())
    if na == 0 or nb == 0:
        raise ValueError("a and b must not be constant (zero variance)")
    return float((a_ * b_).sum() / (na * nb))


# ------------------------------------------------------------------------------------------------
# Classification, calibration and out-of-distribution scores
# ------------------------------------------------------------------------------------------------

# Conventions of this section. Every out-of-distribution score is oriented so that **higher means
# "more like the training distribution"** (in-distribution is the positive class): a detector
# rejects inputs whose score is low. Scores of logits ``z`` (distances ``d = -z``) accept numpy
# arrays and torch tensors and always return float64 numpy arrays; a torch tensor is scored with
# torch operations in its own dtype, a numpy array with numpy operations in float64 (the two routes
# agree to a few ulps).


def _logits(z: Any, name: str = "z") -> Any:
    """Validated (N, K >= 2) logits: a detached tensor (its dtype kept) or a float64 numpy array."""
    z = as_float_array(z, name, ndim=2)
    if z.shape[1] < 2:
        raise ValueError(f"{name} must have at least two classes (columns), got shape {tuple(z.shape)}")
    return z.detach() if is_torch(z) else np.asarray(z, dtype=np.float64)


def _as_float64(a: Any) -> np.ndarray:
    return to_numpy(a, np.float64)


# ---- scores from logits --------------------------------------------------------------------------
def max_softmax(z: Any) -> np.ndarray:
    """Confidence ``max_j softmax(z)_j`` per row of the logits (Hendrycks & Gimpel 2017).

    Equal to the largest responsibility ``max_j r_j`` with ``d = -z``: higher means more confident.
    Torch input: ``softmax`` then the maximum; numpy input: ``exp(max_j z_j - L)`` with
    ``L = log sum_j exp(z_j)``.

    Parameters
    ----------
    z : (N, K) logits, K >= 2, numpy array or torch tensor.

    Returns
    -------
    numpy float64 array (N,), values in ``[1/K, 1]``.
    """
    z = _logits(z)
    if is_torch(z):
        return _as_float64(responsibilities(-z, dim=1).max(dim=1).values)
    return np.exp(z.max(1) - lse(-z, dim=1))


def energy_score(z: Any, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T log sum_j exp(z_j / T)`` per row of the logits (Liu et al. 2020).

    With ``T = 1`` and ``z = -d`` it is the book's objective ``L = log sum_j exp(-d_j)`` (maximized):
    the log of the normalizer that softmax divides out, which keeps the absolute level of the logits
    (how close an input is to *any* class). Higher means more like the training data.

    Parameters
    ----------
    z : (N, K) logits, K >= 2, numpy array or torch tensor.
    temperature : float > 0, the ``T``.

    Returns
    -------
    numpy float64 array (N,).
    """
    z = _logits(z)
    t = check_positive(temperature, "temperature")
    return _as_float64(t * lse(-(z / t), dim=1))


def temperature_softmax_score(z: Any, temperature: float = 1000.0) -> np.ndarray:
    """``max_j softmax(z / T)_j`` per row: ODIN's temperature scaling without its input perturbation.

    For large ``T``, ``max softmax(z/T) ~ 1/K + (z_max - mean_j z_j) / (K T)``: the ranking tends to
    that of the gap between the top logit and the mean logit (Liang et al. 2018, their eq. 3).

    Parameters
    ----------
    z : logits of shape (N, K) with K >= 2 (torch or numpy)
    temperature : float > 0; ODIN's default is 1000

    Returns
    -------
    float64 numpy array (N,) with values in ``[1/K, 1]``.
    """
    z = _logits(z)
    t = check_positive(temperature, "temperature")
    return max_softmax(z / t)


def odin_score(model: nn.Module, x: Any, temperature: float = 1000.0, epsilon: float = 0.0) -> np.ndarray:
    """ODIN (Liang et al. 2018): temperature-scaled max-softmax after a small input perturbation.

    ``x' = x - epsilon * sign(grad_x ell(x))`` with ``ell(x) = -log max_j softmax(model(x) / T)_j``,
    the loss of the predicted class at temperature ``T`` (minimized: the step *raises* the
    confidence); the score is ``max_j softmax(model(x') / T)_j``, computed from the logits in float64
    numpy. With ``epsilon = 0`` it is :func:`temperature_softmax_score` of ``model(x)``. The model is
    not modified.

    Parameters
    ----------
    model : torch.nn.Module mapping (N, F) inputs to (N, K) logits.
    x : (N, F) inputs in the model's input space (so ``epsilon`` is in those units).
    temperature : float > 0.
    epsilon : float >= 0, the size of the perturbation.

    Returns
    -------
    numpy float64 array (N,).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    t = check_positive(temperature, "temperature")
    eps = check_positive(epsilon, "epsilon", allow_zero=True)
    xt = as_tensor(x, "x", ndim=2).detach()
    xt = xt.to(next(model.parameters(), xt).dtype)
    if eps > 0:
        with torch.enable_grad():
            xv = xt.clone().requires_grad_(True)
            logp = torch.log_softmax(model(xv) / t, dim=1).max(1).values
            (g,) = torch.autograd.grad(-logp.sum(), xv)
        xt = xt - eps * torch.sign(g)
    with torch.no_grad():
        return temperature_softmax_score(_as_float64(model(xt)), t)


def _known_distances(d_known: Any, tau: Any) -> tuple[Any, float]:
    d = as_float_array(d_known, "d_known", ndim=2)
    d = d.detach() if is_torch(d) else np.asarray(d, dtype=np.float64)
    return d, float(as_float_array(tau, "tau", ndim=0))


def reject_responsibility(d_known: Any, tau: float) -> np.ndarray:
    """Responsibility ``r_0`` of a reject component at distance ``tau`` beside the known components.

    ``r_0 = exp(-tau) / (exp(-tau) + sum_k exp(-d_k)) = sigmoid(-tau - L)`` with
    ``L = log sum_k exp(-d_k)`` the objective of the known components: a fixed, decreasing function
    of ``L``, so as a ranking score it is equivalent to ``-L``; ``tau`` only sets where ``r_0 = 1/2``
    (at ``L = -tau``). ``1 - r_0`` rounds to 0 in float64 once ``tau + L < -37``: rank by
    :func:`reject_log_odds` instead.

    Parameters
    ----------
    d_known : (N, K) distances ``d = -z`` of the known classes, numpy array or torch tensor.
    tau : finite float, the reject component's distance.

    Returns
    -------
    numpy float64 array (N,), values in [0, 1].
    """
    d, t = _known_distances(d_known, tau)
    L = lse(d, dim=1)
    if is_torch(d):
        return _as_float64(torch.sigmoid(-t - L))
    u = -t - L
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def reject_log_odds(d_known: Any, tau: float) -> np.ndarray:
    """``log((1 - r_0) / r_0) = tau + L`` for a reject component at distance ``tau`` (see :func:`reject_responsibility`).

    The log-odds never saturates, whereas ``1 - r_0`` rounds to 0 in float64 once ``tau + L < -37``;
    both rank inputs exactly as ``L = log sum_k exp(-d_k)`` does. Higher means more like the
    training data.

    Parameters
    ----------
    d_known : (N, K) distances of the known classes, numpy array or torch tensor.
    tau : finite float.

    Returns
    -------
    numpy float64 array (N,).
    """
    d, t = _known_distances(d_known, tau)
    return _as_float64(t + lse(d, dim=1))


# ---- scores from features: class Gaussians (Lee et al. 2018) -----------------------------------
@dataclass(frozen=True, eq=False)
class ClassGaussians:
    """One Gaussian per class, fitted by :func:`fit_class_gaussians`.

    Attributes
    ----------
    means
        (K, F) class means.
    precisions
        (K, F, F) inverse covariances (all equal when ``shared``).
    logdets
        (K,) ``log det Sigma_k``.
    shared
        whether one covariance is tied across the classes.
    """

    means: np.ndarray
    precisions: np.ndarray
    logdets: np.ndarray
    shared: bool

    def energies(self, features: Any, volume: bool = True) -> np.ndarray:
        """Squared Mahalanobis distances to each class, plus ``log det Sigma_k`` when the covariances
        are not shared (the volume term) and ``volume`` is True.

        Parameters
        ----------
        features : (N, F) float array or tensor.
        volume : bool, add the volume term of per-class covariances (``False``: the ablation without it).

        Returns
        -------
        numpy float64 array (N, K).
        """
        X = as_numpy(features, "features", ndim=2)
        if X.shape[1] != self.means.shape[1]:
            raise ValueError(f"features must have {self.means.shape[1]} columns like the fitted means, got {X.shape[1]}")
        m2 = np.empty((X.shape[0], self.means.shape[0]))
        for k in range(self.means.shape[0]):
            diff = X - self.means[k]
            m2[:, k] = ((diff @ self.precisions[k]) * diff).sum(1)
        if not isinstance(volume, bool):
            raise ValueError(f"volume must be a bool, got {volume!r}")
        if not self.shared and volume:
            m2 = m2 + self.logdets[None, :]
        return m2


def fit_class_gaussians(features: Any, y: Any, n_classes: int, shared: bool = True,
                        shrinkage: float = 0.1) -> ClassGaussians:
    """Fit one Gaussian per class to features with labels (Lee et al. 2018).

    ``shared=True`` ties the covariance (the pooled within-class covariance, as Lee et al. and linear
    discriminant analysis); ``shared=False`` fits one per class (quadratic discriminant analysis).
    Each maximum-likelihood covariance (divided by the number of samples) is shrunk towards a
    multiple of the identity, ``(1 - s) Sigma + s (tr Sigma / F) I``, so that it is invertible even
    for constant features or fewer samples than dimensions.

    Parameters
    ----------
    features : (N, F) float array or tensor.
    y : (N,) integer labels in ``[0, n_classes)``; every class must occur.
    n_classes : int >= 2.
    shared : bool, one covariance for all classes.
    shrinkage : float in (0, 1], the ``s``.

    Returns
    -------
    ClassGaussians
    """
    X = as_numpy(features, "features", ndim=2)
    K = check_int(n_classes, "n_classes", minimum=2)
    yy = np.asarray(check_labels(to_numpy(y), "y", K, shape=(X.shape[0],)))
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


def mahalanobis_score(features: Any, gaussians: ClassGaussians, volume: bool = True) -> np.ndarray:
    """Confidence from class Gaussians: higher for inputs close to some class.

    Shared covariance: ``max_k -(x - mu_k)^T P (x - mu_k)``, the negative of the smallest squared
    Mahalanobis distance (Lee et al. 2018, without their input preprocessing or layer ensemble).
    Per-class covariances: ``max_k -[(x - mu_k)^T P_k (x - mu_k) + log det Sigma_k]``, twice the
    largest class-conditional Gaussian log-density up to a constant, so the volume term counts
    (``volume=False`` drops it: the ablation of chapter 10).

    Parameters
    ----------
    features : (N, F) float array or tensor.
    gaussians : ClassGaussians of :func:`fit_class_gaussians`, fitted on F features.
    volume : bool, keep the per-class volume term ``log det Sigma_k``.

    Returns
    -------
    numpy float64 array (N,).
    """
    if not isinstance(gaussians, ClassGaussians):
        raise ValueError(f"gaussians must be a ClassGaussians (from fit_class_gaussians), got {type(gaussians).__name__}")
    return -gaussians.energies(features, volume=volume).min(1)


# ---- metrics of a score --------------------------------------------------------------------------
def _score_pair(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    return as_numpy(scores_in, "scores_in", ndim=1), as_numpy(scores_out, "scores_out", ndim=1)


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve of a score, in-distribution (``scores_in``) being the positive class.

    ``P(s_in > s_out) + P(s_in = s_out) / 2`` over all pairs, computed from average ranks (the
    Mann-Whitney statistic, one rounding at the end): 1 separates perfectly, 0.5 is chance, 0 is
    perfectly inverted. Equals ``sklearn.metrics.roc_auc_score`` on the concatenated scores to
    rounding (scikit-learn integrates the curve and may differ in the last bit).

    Parameters
    ----------
    scores_in : (n_in,) scores of in-distribution inputs (higher = more in-distribution).
    scores_out : (n_out,) scores of out-of-distribution inputs.

    Returns
    -------
    float in [0, 1].
    """
    a, b = _score_pair(scores_in, scores_out)
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    ranks = np.empty(len(both))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average rank of each tie group
    n_a, n_b = len(a), len(b)
    return float((ranks[:n_a].sum() - n_a * (n_a + 1) / 2.0) / (n_a * n_b))


def fpr_at_tpr(scores_in: Any, scores_out: Any, tpr: float = 0.95) -> float:
    """False-positive rate at the threshold that keeps a share ``tpr`` of the in-distribution inputs.

    The threshold ``t`` is the largest value with ``mean(scores_in >= t) >= tpr`` (the
    ``ceil(tpr * n_in)``-th largest in-distribution score); the result is ``mean(scores_out >= t)``,
    the share of out-of-distribution inputs accepted. 0 is perfect, lower is better.

    Parameters
    ----------
    scores_in : (n_in,) in-distribution scores. scores_out : (n_out,) out-of-distribution scores.
    tpr : float in (0, 1], the true-positive rate kept.

    Returns
    -------
    float in [0, 1].
    """
    a, b = _score_pair(scores_in, scores_out)
    p = check_positive(tpr, "tpr")
    if p > 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    k = int(np.ceil(p * len(a) - 1e-9))
    t = np.sort(a)[::-1][max(k, 1) - 1]
    return float(np.mean(b >= t))


def reject_threshold(train_scores: Any, quantile: float = 0.05) -> float:
    """The threshold below which an input is rejected: the ``quantile`` of the training scores.

    By construction about ``quantile`` of the training inputs are rejected.

    Parameters
    ----------
    train_scores : (N,) scores of the training inputs (higher = more in-distribution).
    quantile : float in (0, 1).

    Returns
    -------
    float
    """
    s = as_numpy(train_scores, "train_scores", ndim=1)
    q = check_positive(quantile, "quantile")
    if q >= 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    return float(np.quantile(s, q))


def expected_calibration_error(probs: Any, y: Any, n_bins: int = 15) -> float | np.ndarray:
    """Expected calibration error of the top-label confidence (Naeini et al. 2015; Guo et al. 2017).

    The confidence ``max_j p_j`` of each sample is put into one of ``n_bins`` equal-width bins of
    ``(0, 1]`` (bin ``k`` is ``(k/B, (k+1)/B]``, the first also holding 0); ECE is
    ``sum_b (n_b / N) |acc_b - conf_b|`` with ``acc_b`` the accuracy and ``conf_b`` the mean
    confidence in bin ``b``. 0 is perfectly calibrated.

    Parameters
    ----------
    probs : (N, K) predicted class probabilities of one run, or (S, N, K) of ``S`` runs (rows sum to one).
    y : (N,) or (S, N) integer labels.
    n_bins : int >= 1

    Returns
    -------
    float for one run; a numpy array (S,) for a stack of runs. Computed in ``probs``' dtype.
    """
    p = as_tensor(probs, "probs", ndim=(2, 3)).detach()
    if float(p.min()) < -1e-9 or float((p.sum(-1) - 1).abs().max()) > 1e-6:
        raise ValueError("probs must hold probability distributions along its last axis")
    single = p.ndim == 2
    p = p[None] if single else p
    yy = check_labels(y, "y", p.shape[-1], shape=tuple(p.shape[1:2] if single else p.shape[:2]))
    yy = (yy if is_torch(yy) else torch.as_tensor(np.asarray(yy))).to(p.device)
    yy = yy[None] if single else yy
    nb = check_int(n_bins, "n_bins", minimum=1)
    conf, pred = p.max(-1)
    acc = (pred == yy).to(p.dtype)
    idx = torch.clamp(torch.ceil(conf * nb).long() - 1, 0, nb - 1)
    N = p.shape[1]
    ece = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    for k in range(nb):
        m = (idx == k).to(p.dtype)
        cnt = m.sum(1)
        gap = ((conf * m).sum(1) - (acc * m).sum(1)).abs()  # = n_b |mean confidence - accuracy|
        ece += torch.where(cnt > 0, gap, torch.zeros_like(gap)) / N
    return float(ece[0]) if single else ece.cpu().numpy()


# ---- bootstrap intervals -------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceInterval:
    """A statistic and its percentile bootstrap interval.

    Attributes
    ----------
    estimate
        the statistic on the full sample.
    low, high
        the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its bootstrap replicates.
    level
        the coverage asked for (e.g. 0.95).
    """

    estimate: float
    low: float
    high: float
    level: float


def _check_level(level: Any) -> float:
    lv = check_positive(level, "level")
    if lv >= 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return lv


def bootstrap_mean_ci(values: Any, n_boot: int = 2000, level: float = 0.95, random_state: int = 0) -> ConfidenceInterval:
    """Mean of ``values`` (one per run: a split and a seed) and its percentile bootstrap interval.

    Resamples the runs with replacement ``n_boot`` times. With the runs independent (a fresh split and
    seed each) the interval covers split-to-split and test-sample variation together; with few runs
    it is narrower than the truth: report the runs.

    Parameters
    ----------
    values : (R,) one value per run.
    n_boot : int >= 1, bootstrap replicates.
    level : float in (0, 1), the coverage.
    random_state : int >= 0, seed of the resampling.

    Returns
    -------
    ConfidenceInterval (``estimate`` is the mean of ``values``).
    """
    v = as_numpy(values, "values", ndim=1)
    B = check_int(n_boot, "n_boot", minimum=1)
    lv = _check_level(level)
    rng = np.random.default_rng(check_int(random_state, "random_state", minimum=0))
    means = v[rng.integers(0, len(v), size=(B, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - lv) / 2, (1 + lv) / 2])
    return ConfidenceInterval(float(v.mean()), float(lo), float(hi), lv)


def bootstrap_metric_ci(scores_in: Any, scores_out: Any, metric: Callable[[np.ndarray, np.ndarray], float] = auroc,
                        n_boot: int = 1000, level: float = 0.95, random_state: int = 0) -> ConfidenceInterval:
    """A metric of one run (e.g. :func:`auroc`) and its percentile bootstrap interval over the test samples.

    In- and out-of-distribution scores are resampled separately (stratified), ``n_boot`` times. The
    interval covers test-sample noise only: it says nothing about another split or seed.

    Parameters
    ----------
    scores_in, scores_out : (n_in,) and (n_out,) scores.
    metric : callable ``(scores_in, scores_out) -> float``.
    n_boot : int >= 1. level : float in (0, 1). random_state : int >= 0.

    Returns
    -------
    ConfidenceInterval (``estimate`` is the metric on the full samples).
    """
    a, b = _score_pair(scores_in, scores_out)
    if not callable(metric):
        raise ValueError(f"metric must be callable (scores_in, scores_out) -> float, got {metric!r}")
    B = check_int(n_boot, "n_boot", minimum=1)
    lv = _check_level(level)
    rng = np.random.default_rng(check_int(random_state, "random_state", minimum=0))
    vals = np.empty(B)
    for i in range(B):
        vals[i] = metric(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
    lo, hi = np.quantile(vals, [(1 - lv) / 2, (1 + lv) / 2])
    return ConfidenceInterval(float(metric(a, b)), float(lo), float(hi), lv)


# ---- success counts: binomial intervals and a paired test ---------------------------------------
@dataclass(frozen=True)
class BinomialInterval:
    """A success count out of ``n`` independent runs and the Wilson score interval of its rate.

    Attributes
    ----------
    successes, n
        the count and the number of runs.
    estimate
        ``successes / n``.
    low, high
        the Wilson score interval of the success probability at ``level``.
    level
        the coverage asked for (e.g. 0.95).
    """

    successes: int
    n: int
    estimate: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.successes}/{self.n} [{self.low:.2f}, {self.high:.2f}]"


def wilson_interval(successes: Any, n: Any, level: float = 0.95) -> BinomialInterval:
    """Wilson score interval for a binomial proportion (Wilson 1927).

    The set of success probabilities ``p`` that a two-sided score test at ``1 - level`` does
    not reject: with ``k = successes``, ``h = k / n`` and ``z`` the ``(1 + level) / 2`` normal
    quantile, ``(h + z^2/(2n) +- z sqrt(h(1-h)/n + z^2/(4n^2))) / (1 + z^2/n)``. Unlike the
    Wald interval it stays inside [0, 1] and is not empty at ``k = 0`` or ``k = n``.

    Parameters
    ----------
    successes : int, 0 <= successes <= n
    n : int >= 1, the number of independent runs
    level : float in (0, 1), the coverage.

    Returns
    -------
    BinomialInterval
    """
    from scipy.stats import norm

    N = check_int(n, "n", minimum=1)
    k = check_int(successes, "successes", minimum=0)
    if k > N:
        raise ValueError(f"successes must be <= n = {N}, got {k}")
    lv = _check_level(level)
    z = float(norm.ppf((1 + lv) / 2))
    h = k / N
    denom = 1 + z * z / N
    centre = (h + z * z / (2 * N)) / denom
    half = z * math.sqrt(h * (1 - h) / N + z * z / (4 * N * N)) / denom
    low = 0.0 if k == 0 else min(h, max(0.0, centre - half))
    high = 1.0 if k == N else max(h, min(1.0, centre + half))
    return BinomialInterval(k, N, h, low, high, lv)


@dataclass(frozen=True)
class PairedBinaryTest:
    """Exact McNemar test of two methods scored success/failure on the same runs (:func:`mcnemar_exact`).

    Attributes
    ----------
    n
        the number of paired runs.
    successes_a, successes_b
        successes of each method.
    only_a, only_b
        the discordant runs: ``a`` succeeded and ``b`` failed, and the reverse.
    p_value
        the two-sided exact p-value, ``min(1, 2 P(Bin(only_a + only_b, 1/2) <= min(only_a, only_b)))``
        (1 when there is no discordant run).
    """

    n: int
    successes_a: int
    successes_b: int
    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(a: Any, b: Any) -> PairedBinaryTest:
    """Exact McNemar test: do two methods, run on the same starts, succeed equally often?

    Only the discordant pairs carry information; under the null hypothesis each of them favours
    ``a`` or ``b`` with probability 1/2, so their split is Binomial(n_discordant, 1/2)
    (McNemar 1947; the exact, conditional form).

    Parameters
    ----------
    a, b : (R,) booleans (or 0/1), the success of each method on the same R runs.

    Returns
    -------
    PairedBinaryTest
    """
    from scipy.stats import binom

    x = _as_binary(a, "a")
    y = _as_binary(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"b must have the shape of a {x.shape}, got {y.shape}")
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    m = only_a + only_b
    p = 1.0 if m == 0 else min(1.0, 2.0 * float(binom.cdf(min(only_a, only_b), m, 0.5)))
    return PairedBinaryTest(len(x), int(x.sum()), int(y.sum()), only_a, only_b, p)


def _as_binary(v: Any, name: str) -> np.ndarray:
    if is_torch(v):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray) and (v.dtype == bool or np.issubdtype(v.dtype, np.integer)):
        v = v.astype(np.float64)
    arr = as_numpy(v, name, ndim=1)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold booleans or 0/1, got values {np.unique(arr)[:5].tolist()}")
    return arr.astype(bool)


# ---- multi-label predictions ---------------------------------------------------------------------
@dataclass(frozen=True)
class MultilabelScores:
    """Held-out quality of a multi-label model (:func:`multilabel_scores`).

    Attributes
    ----------
    label_accuracy
        share of (point, label) decisions that are right.
    exact_set
        share of points whose whole label set is right.
    none_predicted
        share of points given no label.
    silently_dropped
        share of the points that carry a label but are given none.
    empty_wrong
        share of the label-less points given some label.
    """

    label_accuracy: float
    exact_set: float
    none_predicted: float
    silently_dropped: float
    empty_wrong: float


def multilabel_scores(Z: Any, T: Any, kind: str = "sigmoid") -> MultilabelScores:
    """Held-out quality of a multi-label model's logits against 0/1 targets.

    Decision rules: ``"sigmoid"`` predicts label ``j`` when ``sigmoid(z_j) > 1/2``; ``"softmax"``
    (trained against the normalized label set) predicts ``j`` when ``softmax(z)_j > 1 / (2K)``, half
    the smallest non-zero target it was trained on, so it always predicts at least one label.

    Parameters
    ----------
    Z : (N, K) logits. T : (N, K) 0/1 targets.
    kind : "sigmoid" or "softmax".

    Returns
    -------
    MultilabelScores
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"kind must be 'sigmoid' or 'softmax', got {kind!r}")
    Z = as_tensor(Z, "Z", ndim=2).detach()
    T = as_tensor(T, "T", ndim=2).to(Z.dtype)
    if tuple(T.shape) != tuple(Z.shape):
        raise ValueError(f"T must have the shape of Z {tuple(Z.shape)}, got {tuple(T.shape)}")
    pred = Z > 0 if kind == "sigmoid" else responsibilities(-Z, dim=1) > 1.0 / (2 * Z.shape[1])
    t = T > 0.5
    has = t.any(1)
    none = ~pred.any(1)
    return MultilabelScores(
        label_accuracy=float((pred == t).double().mean()),
        exact_set=float((pred == t).all(1).double().mean()),
        none_predicted=float(none.double().mean()),
        silently_dropped=float((none & has).double().sum() / max(int(has.sum()), 1)),
        empty_wrong=float((~none & ~has).double().sum() / max(int((~has).sum()), 1)),
    )
