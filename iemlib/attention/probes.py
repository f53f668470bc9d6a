"""Linear probes of an attention head's representations against the exact Bayes filter.

How much of the filter's posterior (:func:`iemlib.markov.bayes_filter`) a representation carries
*linearly*: a ridge regression from the representation at position ``i`` (the head's context
``g_i``, its value ``v_i`` or its logits ``z_i``) to the filter's centred log-posterior over the
hidden symbol and to the posterior's entropy, fitted on one sequence and scored (R²) on another.
And how many dimensions the representation spans (principal components) and whether its leading
direction follows the posterior's entropy.

Layout: rows are positions and weights act on the right (the row layout of
``iemlib.attention.trainer``: ``q_i = x_i W_Q``), with any leading batch axis of runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import as_numpy, check_int, check_positive
from ..markov import BayesFilter
from .diagnostics import pca

__all__ = [
    "HeadFeatures",
    "head_features",
    "ProbeTargets",
    "probe_targets",
    "ProbeFit",
    "ridge_probe",
    "r_squared",
    "Dimension",
    "representation_dimension",
]


@dataclass(frozen=True, eq=False)
class HeadFeatures:
    """A causal head's representations on one sequence (:func:`head_features`), float64 numpy.

    Attributes
    ----------
    g
        ``(..., N, d_v)`` contexts ``g_i = sum_{j <= i} alpha_ij v_j``.
    values
        ``(..., N, d_v)`` values ``v_i = x_i W_V``.
    logits
        ``(..., N, C)`` ``z_i = g_i W_O + b``.
    attention_entropy
        ``(...,)`` mean entropy of the attention rows (nats).
    """

    g: np.ndarray
    values: np.ndarray
    logits: np.ndarray
    attention_entropy: np.ndarray


def _t(a: Any, name: str, ndim_min: int) -> torch.Tensor:
    arr = as_numpy(a, name)
    if arr.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimensions, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return torch.as_tensor(arr, dtype=torch.float64)


def head_features(x: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, b: Any) -> HeadFeatures:
    """Forward pass of a batch of causal heads in row layout, returning what a probe reads.

    Nothing is trained or minimized here; the attention is the full causal softmax
    ``alpha_ij = softmax_j(x_i W_Q W_K^T x_j^T / sqrt(d_k))`` over ``j <= i``, in float64.

    Parameters
    ----------
    x : ``(N, d_x)`` or ``(R, N, d_x)`` inputs (one sequence for every run, or one per run).
    W_Q, W_K : ``(..., d_x, d_k)``; W_V : ``(..., d_x, d_v)``; W_O : ``(..., d_v, C)``;
    b : ``(..., C)`` -- the same leading axes for all five (none for a single head).

    Returns
    -------
    HeadFeatures
    """
    x_ = _t(x, "x", 2)
    Wq, Wk, Wv, Wo = (_t(w, n, 2) for w, n in ((W_Q, "W_Q"), (W_K, "W_K"), (W_V, "W_V"), (W_O, "W_O")))
    b_ = _t(b, "b", 1)
    lead = Wq.shape[:-2]
    if Wk.shape != Wq.shape or Wv.shape[:-1] != Wq.shape[:-1] or Wo.shape[:-2] != lead:
        raise ValueError(f"W_Q, W_K, W_V, W_O must share their leading axes and d_x, got {tuple(Wq.shape)}, "
                         f"{tuple(Wk.shape)}, {tuple(Wv.shape)}, {tuple(Wo.shape)}")
    if Wo.shape[-2] != Wv.shape[-1] or b_.shape != (*lead, Wo.shape[-1]):
        raise ValueError(f"W_O must be (..., d_v, C) and b (..., C), got {tuple(Wo.shape)}, {tuple(b_.shape)}")
    if x_.shape[-1] != Wq.shape[-2]:
        raise ValueError(f"x must have d_x = {Wq.shape[-2]} columns, got shape {tuple(x_.shape)}")
    if x_.ndim == 3 and x_.shape[0] != (lead[0] if lead else 1):
        raise ValueError(f"x with a run axis must have {lead[0] if lead else 1} rows of sequences")
    if x_.ndim > 3:
        raise ValueError(f"x must be (N, d_x) or (R, N, d_x), got shape {tuple(x_.shape)}")
    N = x_.shape[-2]
    q, k, v = x_ @ Wq, x_ @ Wk, x_ @ Wv
    s = q @ k.transpose(-1, -2) / math.sqrt(Wq.shape[-1])
    s = s.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
    logA = torch.log_softmax(s, -1)
    A = logA.exp()
    ent = -(A * logA.nan_to_num(neginf=0.0)).sum(-1).mean(-1)
    g = A @ v
    z = g @ Wo + b_.unsqueeze(-2)
    return HeadFeatures(g=g.numpy(), values=v.numpy(), logits=z.numpy(), attention_entropy=ent.numpy())


@dataclass(frozen=True, eq=False)
class ProbeTargets:
    """What the probes are asked to read (:func:`probe_targets`).

    Attributes
    ----------
    log_posterior
        ``(N, n)`` the filter's log-posterior over the hidden symbol, centred over the symbols
        (each row minus its mean: the part that does not depend on the normalizer).
    entropy
        ``(N,)`` the posterior's entropy (nats).
    """

    log_posterior: np.ndarray
    entropy: np.ndarray


def probe_targets(bf: BayesFilter) -> ProbeTargets:
    """The centred log-posterior and the entropy of a :class:`~iemlib.markov.BayesFilter`.

    Parameters
    ----------
    bf : the filter on one sequence.

    Returns
    -------
    ProbeTargets
    """
    if not isinstance(bf, BayesFilter):
        raise ValueError(f"bf must be an iemlib.markov.BayesFilter, got {type(bf).__name__}")
    lp = as_numpy(bf.log_posterior, "bf.log_posterior", ndim=2)
    return ProbeTargets(log_posterior=lp - lp.mean(1, keepdims=True), entropy=as_numpy(bf.entropy, "bf.entropy"))


def r_squared(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination ``1 - SSE / SST`` (SST about ``y_true``'s column means).

    For several columns the sums run over all of them (variance-weighted R²). It is 1 for a
    perfect prediction, 0 for predicting the mean, negative for worse.

    Parameters
    ----------
    y_true, y_pred : ``(n,)`` or ``(n, k)`` of the same shape.

    Returns
    -------
    float
    """
    yt = as_numpy(y_true, "y_true")
    yp = as_numpy(y_pred, "y_pred")
    if yt.shape != yp.shape or yt.ndim not in (1, 2) or yt.shape[0] < 2:
        raise ValueError(f"y_true and y_pred must have the same shape (n >= 2 rows), got {yt.shape}, {yp.shape}")
    sst = float(((yt - yt.mean(0)) ** 2).sum())
    if sst == 0:
        raise ValueError("y_true must not be constant (R² undefined)")
    return 1.0 - float(((yt - yp) ** 2).sum()) / sst


@dataclass(frozen=True, eq=False)
class ProbeFit:
    """A ridge probe fitted on one sequence and scored on another (:func:`ridge_probe`).

    Attributes
    ----------
    r2_train
        R² on the sequence it was fitted on.
    r2_test
        R² on the held-out sequence (the number to report).
    coef
        ``(d, k)`` weights on the standardized features; intercept : ``(k,)``.
    mean, scale
        the training features' mean and standard deviation (used to standardize).
    """

    r2_train: float
    r2_test: float
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def predict(self, features: Any) -> np.ndarray:
        """The probe's prediction for ``(n, d)`` features."""
        F = as_numpy(features, "features", ndim=2)
        return ((F - self.mean) / self.scale) @ self.coef + self.intercept


def ridge_probe(features_train: Any, target_train: Any, features_test: Any, target_test: Any, *,
                ridge: float = 1e-3) -> ProbeFit:
    """Fit a linear probe by ridge regression and score it on held-out data.

    Minimizes ``||F w + c - Y||^2 / n + ridge ||w||^2`` on the training sequence, with the
    features standardized (zero mean, unit variance on the training sequence; constant columns
    are left at zero) and the intercept ``c`` unpenalized, in closed form.

    Parameters
    ----------
    features_train : ``(n, d)``; target_train : ``(n,)`` or ``(n, k)``.
    features_test : ``(m, d)``; target_test : ``(m,)`` or ``(m, k)``.
    ridge : the penalty (> 0).

    Returns
    -------
    ProbeFit
    """
    F = as_numpy(features_train, "features_train", ndim=2)
    Ft = as_numpy(features_test, "features_test", ndim=2)
    Y = as_numpy(target_train, "target_train")
    Yt = as_numpy(target_test, "target_test")
    lam = check_positive(ridge, "ridge")
    for name, a in (("features_train", F), ("features_test", Ft), ("target_train", Y), ("target_test", Yt)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    if Y.shape[0] != F.shape[0] or Yt.shape[0] != Ft.shape[0] or Ft.shape[1] != F.shape[1]:
        raise ValueError(f"features and targets disagree: {F.shape}, {Y.shape}, {Ft.shape}, {Yt.shape}")
    if Y.ndim != Yt.ndim or Y.shape[1:] != Yt.shape[1:]:
        raise ValueError(f"target_train and target_test must have the same columns, got {Y.shape}, {Yt.shape}")
    mean = F.mean(0)
    scale = F.std(0)
    scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0))), scale, np.inf)
    Z = (F - mean) / scale
    y_mean = Y.mean(0)
    n, d = Z.shape
    coef = np.linalg.solve(Z.T @ Z / n + lam * np.eye(d), Z.T @ (Y - y_mean) / n)
    pred_tr = Z @ coef + y_mean
    pred_te = ((Ft - mean) / scale) @ coef + y_mean
    return ProbeFit(r2_train=r_squared(Y, pred_tr), r2_test=r_squared(Yt, pred_te), coef=coef,
                    intercept=np.asarray(y_mean), mean=mean, scale=scale)


@dataclass(frozen=True, eq=False)
class Dimension:
    """How many dimensions a point cloud spans (:func:`representation_dimension`).

    Attributes
    ----------
    explained_variance_ratio
        ``(k,)`` share of the variance along each of the first ``k`` principal components.
    n_components
        the fewest components explaining at least ``threshold`` of the variance.
    threshold
        that share.
    leading_correlation
        Pearson correlation of the points' coordinate on the first component with
        ``covariate`` (NaN when no covariate was given); its sign is arbitrary.
    """

    explained_variance_ratio: np.ndarray
    n_components: int
    threshold: float
    leading_correlation: float


def representation_dimension(points: Any, covariate: Any = None, *, threshold: float = 0.9) -> Dimension:
    """Principal-component dimension of a representation, and what its leading axis follows.

    Parameters
    ----------
    points : ``(n, d)`` one row per position.
    covariate : ``(n,)`` optional, e.g. the filter's posterior entropy at each position.
    threshold : share of the variance, in ``(0, 1]``.

    Returns
    -------
    Dimension
    """
    X = as_numpy(points, "points", ndim=2)
    t = check_positive(threshold, "threshold")
    if t > 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    k = min(X.shape)
    check_int(k, "min(points.shape)", minimum=1)
    res = pca(X, k)
    ratio = res.explained_variance_ratio
    n_comp = int(min(k, np.searchsorted(np.cumsum(ratio), t - 1e-12) + 1))
    corr = float("nan")
    if covariate is not None:
        c = as_numpy(covariate, "covariate", ndim=1)
        if c.shape[0] != X.shape[0]:
            raise ValueError(f"covariate must have {X.shape[0]} entries, got {c.shape[0]}")
        lead = res.projected[:, 0]
        if lead.std() > 0 and c.std() > 0:
            corr = float(np.corrcoef(lead, c)[0, 1])
    return Dimension(explained_variance_ratio=ratio, n_components=n_comp, threshold=t, leading_correlation=corr)
