"""The limits of implicit EM (§6 of Oursland, 2025), as experiments that run.

Four pieces, one per section of the chapter:

* **No normalization** (§6.1): multi-label training with independent sigmoids, its gradient
  Jacobian with respect to the logits (diagonal), and the outlier-pull experiment comparing the
  log-sum-exp loss with the correntropy kernel (:func:`outlier_pull`).
* **Scale and collapse** (§6.2): a mixture whose components have learned scales, trained by
  gradient descent with or without the log-determinant (volume) term and with the heuristics
  the paper names (weight decay, normalization): :func:`fit_scaled_mixture`.
* **The closed world** (§6.3): scores for out-of-distribution inputs from a classifier's logits
  (:func:`max_softmax`, :func:`log_partition`) and their AUROC (:func:`ood_auroc`).
* **Beyond the two objectives the paper contrasts**: held-out scores of the multi-label models
  (:func:`multilabel_scores`); the mixture with a uniform background component of Banfield and
  Raftery (1993), which keeps the normalization and still ignores outliers
  (:func:`fit_background_mixture`, :func:`outlier_sweep`); the scale of a classifier trained by
  cross-entropy on separable data and its held-out calibration (:func:`train_scale_runs`,
  :func:`expected_calibration_error`); normalization layers in a real network
  (:func:`fit_embedding_mixture`).

Conventions: ``L = log sum_j exp(-d_j)`` is the objective (maximized); a loss is minimized.
Every function says which it differentiates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import as_float_array, check_int, check_positive
from .taxonomy import fit_prototypes, fit_prototypes_batch, make_mixture_task, prototype_errors

__all__ = [
    "make_multilabel_task",
    "train_multilabel",
    "logit_gradient_jacobian",
    "make_outlier_task",
    "outlier_pull",
    "SCALE_VARIANTS",
    "fit_scaled_mixture",
    "scaled_mixture_objective",
    "max_softmax",
    "log_partition",
    "ood_auroc",
    "gaussian_noise_images",
    "PrototypeClassifier",
    "reject_threshold",
    "confidence_vs_noise_scale",
    "multilabel_scores",
    "fit_background_mixture",
    "update_weights",
    "outlier_sweep",
    "stack_digit_splits",
    "expected_calibration_error",
    "train_scale_runs",
    "fit_embedding_mixture",
]


def _tensor(x: Any, name: str, ndim: int | None = None) -> torch.Tensor:
    arr = as_float_array(x, name, ndim=ndim)
    if isinstance(arr, torch.Tensor):
        return arr
    return torch.as_tensor(np.asarray(arr), dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# §6.1 Independent sigmoids: multi-label training
# ------------------------------------------------------------------------------------------
def make_multilabel_task(
    n: int = 400, n_features: int = 5, n_labels: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic multi-label data: ``x ~ N(0, I)``, label ``j`` on when ``w_j . x + b_j > 0``.

    Returns ``(X (n, n_features), T (n, n_labels))`` with ``T`` in {0., 1.}; a point can carry any
    number of labels, none included.
    """
    n = check_int(n, "n", minimum=1)
    f = check_int(n_features, "n_features", minimum=1)
    k = check_int(n_labels, "n_labels", minimum=1)
    g = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    X = torch.randn(n, f, generator=g, dtype=dtype)
    W = torch.randn(f, k, generator=g, dtype=dtype)
    b = 0.5 * torch.randn(k, generator=g, dtype=dtype)
    return X, (X @ W + b > 0).to(dtype)


def _multilabel_loss(Z: torch.Tensor, T: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "sigmoid":
        # binary cross-entropy in logits: softplus(z) - t z, summed over labels
        return (torch.nn.functional.softplus(Z) - T * Z).sum(-1)
    # softmax cross-entropy against the label set normalized to sum to one
    q = T / T.sum(-1, keepdim=True).clamp_min(1.0)
    return -(q * torch.log_softmax(Z, dim=-1)).sum(-1)


def train_multilabel(
    X: Any, T: Any, kind: str = "sigmoid", epochs: int = 300, lr: float = 0.5, seed: int = 0
) -> dict[str, Any]:
    """Full-batch gradient descent on a linear multi-label model ``Z = X W + b``.

    ``kind="sigmoid"`` minimizes the sum of independent binary cross-entropies (no partition
    function); ``kind="softmax"`` minimizes the softmax cross-entropy against the label set
    normalized to sum to one (labels compete). Returns ``{"W", "b", "loss" (epochs + 1,)}``.
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"kind must be 'sigmoid' or 'softmax', got {kind!r}")
    X = _tensor(X, "X", ndim=2)
    T = _tensor(T, "T", ndim=2).to(X.dtype)
    if T.shape[0] != X.shape[0]:
        raise ValueError(f"T must have {X.shape[0]} rows like X, got shape {tuple(T.shape)}")
    if bool(((T != 0) & (T != 1)).any()):
        raise ValueError("T must hold 0/1 targets")
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_positive(lr, "lr")
    g = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    W = (0.01 * torch.randn(X.shape[1], T.shape[1], generator=g, dtype=X.dtype)).requires_grad_(True)
    b = torch.zeros(T.shape[1], dtype=X.dtype, requires_grad=True)
    losses = []
    for ep in range(epochs + 1):
        loss = _multilabel_loss(X @ W + b, T, kind).mean()
        losses.append(float(loss.detach()))
        if ep == epochs:
            break
        gW, gb = torch.autograd.grad(loss, [W, b])
        with torch.no_grad():
            W -= lr * gW
            b -= lr * gb
    return {"W": W.detach(), "b": b.detach(), "loss": np.asarray(losses)}


def logit_gradient_jacobian(Z: Any, T: Any, kind: str = "sigmoid") -> torch.Tensor:
    """Per-sample Jacobian ``J_i[j, k] = d g_ij / d z_ik`` of the loss gradient ``g = d loss / d z``.

    By autograd, shape ``(N, K, K)``. For ``"sigmoid"`` it is ``diag(p (1 - p))`` with
    ``p = sigmoid(z)``: the gradient of label ``j`` depends on ``z_j`` and ``t_j`` only. For
    ``"softmax"`` it is ``diag(p) - p p^T`` with ``p = softmax(z)``, whatever the targets.
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"kind must be 'sigmoid' or 'softmax', got {kind!r}")
    Z = _tensor(Z, "Z", ndim=2).detach().clone().requires_grad_(True)
    T = _tensor(T, "T", ndim=2).to(Z.dtype)
    if tuple(T.shape) != tuple(Z.shape):
        raise ValueError(f"T must have the shape of Z {tuple(Z.shape)}, got {tuple(T.shape)}")
    (g,) = torch.autograd.grad(_multilabel_loss(Z, T, kind).sum(), Z, create_graph=True)
    rows = []
    for j in range(Z.shape[1]):
        (h,) = torch.autograd.grad(g[:, j].sum(), Z, retain_graph=True)
        rows.append(h)
    return torch.stack(rows, dim=1).detach()


# ------------------------------------------------------------------------------------------
# §6.1 Correntropy: outliers
# ------------------------------------------------------------------------------------------
def make_outlier_task(
    n_per_component: int = 150,
    outlier_fraction: float = 0.1,
    box: float = 12.0,
    std: float = 0.8,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The three-cluster task of chapter 7 plus outliers drawn uniformly from ``[-box, box]^2``.

    ``outlier_fraction`` is the fraction of the *final* data set that is outliers.
    Returns ``{"x", "is_outlier" (bool), "means"}``; float64.
    """
    frac = check_positive(outlier_fraction, "outlier_fraction", allow_zero=True)
    if frac >= 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    bx = check_positive(box, "box")
    x, _, means = make_mixture_task(n_per_component, std=std, seed=seed)
    n_out = int(round(frac * len(x) / (1.0 - frac)))
    g = torch.Generator().manual_seed(check_int(seed, "seed") + 1)
    out = (2.0 * torch.rand(n_out, x.shape[1], generator=g, dtype=x.dtype) - 1.0) * bx
    is_out = torch.cat([torch.zeros(len(x), dtype=torch.bool), torch.ones(n_out, dtype=torch.bool)])
    return {"x": torch.cat([x, out]), "is_outlier": is_out, "means": means}


def outlier_pull(
    x: Any,
    true_means: Any,
    kinds: tuple[str, ...] = ("lse", "correntropy"),
    *,
    mu0: Any = None,
    lr: float = 0.5,
    n_steps: int = 400,
) -> dict[str, dict[str, Any]]:
    """Fit prototypes under each loss and measure how far they end from the true means.

    Starts from ``mu0`` (default: the true means themselves, so that any displacement is the
    pull of the data, not a bad start). Returns ``{kind: {"mu", "error" (K,), "mean_error"}}``
    where ``error[j]`` is the distance of prototype ``j`` from true mean ``j``.
    """
    m = _tensor(true_means, "true_means", ndim=2)
    start = m if mu0 is None else _tensor(mu0, "mu0", ndim=2)
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        h = fit_prototypes(kind, x, start, lr=lr, n_steps=n_steps, record_every=n_steps)
        mu = h["mu_final"]
        err = (mu - m.to(mu.dtype)).norm(dim=1).numpy()
        out[kind] = {"mu": mu, "error": err, "mean_error": float(err.mean())}
    return out


# ------------------------------------------------------------------------------------------
# §6.2 Scale and collapse
# ------------------------------------------------------------------------------------------
#: The variants compared in the chapter: name -> (volume term?, weight decay, normalized distances?).
SCALE_VARIANTS: dict[str, tuple[bool, float, bool]] = {
    "no log-det": (False, 0.0, False),
    "log-det": (True, 0.0, False),
    "no log-det + weight decay": (False, 0.01, False),
    "no log-det + normalization": (False, 0.0, True),
    "log-det + weight decay": (True, 0.01, False),
}


def _scaled_energies(x: torch.Tensor, mu: torch.Tensor, log_a: torch.Tensor, logdet: bool, normalize: bool):
    D = x.shape[1]
    a = torch.exp(log_a)
    d = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1) * a**2 / 2.0
    if normalize:
        # a normalization layer on the distances: their mean over the batch and the
        # components is held at D / 2 (its value for a well-fitted Gaussian); gradients flow
        # through the statistic, as through a normalization layer.
        d = d * (D / 2.0) / d.mean()
    e = d - D * log_a if logdet else d
    return d, e


def fit_scaled_mixture(
    x: Any,
    mu0: Any,
    sigma0: Any,
    *,
    logdet: bool,
    weight_decay: float = 0.0,
    normalize: bool = False,
    lr: float = 0.5,
    n_steps: int = 2000,
    record_every: int = 20,
) -> dict[str, Any]:
    """Gradient descent on a spherical mixture with learned scales, with or without the volume term.

    Component ``j`` has a mean ``mu_j`` and a projection scale ``a_j = 1 / sigma_j``
    (parametrized by ``log a_j``); its distance is ``d_ij = a_j^2 ||x_i - mu_j||^2 / 2``. The
    loss minimized is ``-mean_i L_i + weight_decay * sum_j a_j^2`` with the objective

    * ``logdet=False``: ``L_i = log sum_j exp(-d_ij)`` (no volume term; ``L_i <= log K``);
    * ``logdet=True``: ``L_i = log sum_j exp(-d_ij + D log a_j)``, the Gaussian-mixture
      log-likelihood with equal weights up to the constant ``-log K - (D/2) log 2 pi``.

    ``normalize=True`` rescales the distances so that their mean is ``D/2`` (a normalization
    layer on the distances). Weight decay acts on the projection scales ``a_j``, as it would
    on the weights of a linear layer.

    Returns a dict of arrays over the recorded steps ``T``: ``"steps"``, ``"sigma"`` (T, K),
    ``"mass"`` (T, K) = mean responsibility of each component, ``"entropy"`` (T,) = mean
    responsibility entropy divided by ``log K`` (1 = uniform, responsibilities trivial),
    ``"objective"`` (T,) = mean ``L_i`` of the variant (maximized), ``"gmm_loglik"`` (T,) =
    the proper mean log-likelihood of the current parameters as a Gaussian mixture with
    equal weights (constants included), ``"grad_log_sigma"`` (T, K) = the gradient of the
    loss with respect to ``log sigma_j`` (negative: gradient descent grows ``sigma_j``), and
    ``"mu"`` (K, D), the final means.
    """
    x = _tensor(x, "x", ndim=2)
    mu0 = _tensor(mu0, "mu0", ndim=2).to(x.dtype)
    if mu0.shape[1] != x.shape[1]:
        raise ValueError(f"mu0 must have {x.shape[1]} columns like x, got shape {tuple(mu0.shape)}")
    s0 = _tensor(sigma0, "sigma0", ndim=1).to(x.dtype)
    if s0.shape[0] != mu0.shape[0]:
        raise ValueError(f"sigma0 must have {mu0.shape[0]} entries, one per component, got {s0.shape[0]}")
    if bool((s0 <= 0).any()):
        raise ValueError("sigma0 must be positive")
    wd = check_positive(weight_decay, "weight_decay", allow_zero=True)
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    every = check_int(record_every, "record_every", minimum=1)
    N, D = x.shape
    K = mu0.shape[0]
    mu = mu0.detach().clone().requires_grad_(True)
    log_a = (-torch.log(s0)).detach().clone().requires_grad_(True)
    const = -math.log(K) - 0.5 * D * math.log(2.0 * math.pi)
    rec: dict[str, list] = {k: [] for k in ("steps", "sigma", "mass", "entropy", "objective", "gmm_loglik", "grad_log_sigma")}
    for t in range(n + 1):
        d, e = _scaled_energies(x, mu, log_a, logdet, normalize)
        L = torch.logsumexp(-e, dim=1)
        loss = -L.mean() + wd * torch.exp(2.0 * log_a).sum()
        g_mu, g_la = torch.autograd.grad(loss, [mu, log_a])
        if t % every == 0 or t == n:
            with torch.no_grad():
                r = torch.softmax(-e, dim=1)
                ent = -(r * torch.log(r.clamp_min(1e-300))).sum(1).mean() / math.log(K) if K > 1 else torch.tensor(0.0)
                raw = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1) * torch.exp(2 * log_a) / 2.0
                ll = torch.logsumexp(-raw + D * log_a, dim=1).mean() + const
            rec["steps"].append(t)
            rec["sigma"].append(torch.exp(-log_a.detach()).numpy().copy())
            rec["mass"].append(r.mean(0).numpy())
            rec["entropy"].append(float(ent))
            rec["objective"].append(float(L.detach().mean()))
            rec["gmm_loglik"].append(float(ll))
            rec["grad_log_sigma"].append((-g_la).numpy().copy())  # d loss / d log sigma = -d loss / d log a
        if t == n:
            break
        with torch.no_grad():
            mu -= eta * g_mu
            log_a -= eta * g_la
    out = {k: np.asarray(v) for k, v in rec.items()}
    out["mu"] = mu.detach()
    return out


def scaled_mixture_objective(x: Any, mu: Any, sigma: Any, *, logdet: bool) -> float:
    """The mean objective ``mean_i L_i`` (maximized) of :func:`fit_scaled_mixture` at given parameters.

    No normalization, no weight decay: ``L_i = log sum_j exp(-||x_i - mu_j||^2 / (2 sigma_j^2)
    [+ D log(1 / sigma_j)])``. Without the volume term it is bounded above by ``log K``; with it,
    it grows without bound as a component centred on a data point shrinks (``sigma_j -> 0``).
    """
    x = _tensor(x, "x", ndim=2)
    mu = _tensor(mu, "mu", ndim=2).to(x.dtype)
    if mu.shape[1] != x.shape[1]:
        raise ValueError(f"mu must have {x.shape[1]} columns like x, got shape {tuple(mu.shape)}")
    sg = _tensor(sigma, "sigma", ndim=1).to(x.dtype)
    if sg.shape[0] != mu.shape[0]:
        raise ValueError(f"sigma must have {mu.shape[0]} entries, got {sg.shape[0]}")
    if bool((sg <= 0).any()):
        raise ValueError("sigma must be positive")
    _, e = _scaled_energies(x, mu, -torch.log(sg), bool(logdet), False)
    return float(torch.logsumexp(-e, dim=1).mean())


# ------------------------------------------------------------------------------------------
# §6.3 The closed world
# ------------------------------------------------------------------------------------------
def max_softmax(logits: Any) -> np.ndarray:
    """Confidence ``max_j softmax(z)_j`` per row of ``logits`` (N, K); in ``[1/K, 1]``."""
    z = _tensor(logits, "logits", ndim=2).detach()
    return torch.softmax(z, dim=1).max(dim=1).values.numpy()


def log_partition(logits: Any) -> np.ndarray:
    """``log sum_j exp(z_j)`` per row: the objective ``L = log sum_j exp(-d_j)`` with ``d = -z``.

    Softmax divides it out; it is the score that keeps the "how close to *any* class" information.
    """
    z = _tensor(logits, "logits", ndim=2).detach()
    return torch.logsumexp(z, dim=1).numpy()


def ood_auroc(scores_in: Any, scores_out: Any) -> float:
    """AUROC of a score that should be *higher* on in-distribution inputs than on the others.

    Uses :func:`sklearn.metrics.roc_auc_score` with in-distribution as the positive class:
    1.0 separates perfectly, 0.5 is chance.
    """
    from sklearn.metrics import roc_auc_score

    a = np.asarray(_tensor(scores_in, "scores_in", ndim=1).detach())
    b = np.asarray(_tensor(scores_out, "scores_out", ndim=1).detach())
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    return float(roc_auc_score(y, np.concatenate([a, b])))


def gaussian_noise_images(
    n: int = 300, n_features: int = 64, scale: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``n`` noise "images": i.i.d. ``N(0, scale^2)`` in the *standardized* feature space.

    With ``scale = 1`` every pixel has the training data's mean and spread, but no digit's shape.
    """
    n = check_int(n, "n", minimum=1)
    f = check_int(n_features, "n_features", minimum=1)
    s = check_positive(scale, "scale")
    g = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    return s * torch.randn(n, f, generator=g, dtype=dtype)


class PrototypeClassifier(nn.Module):
    """A distance-based classifier: logits ``z_j = -d_j`` with ``d_j = a^2 ||x - mu_j||^2 / 2``.

    One prototype ``mu_j`` per class (initialized at the class means of ``X``, ``y``) and one
    learned scale ``a``. Trained with cross-entropy like any classifier, it keeps the
    information softmax discards: ``L = log sum_j exp(-d_j)`` (:func:`log_partition` of its
    logits) falls without bound as an input moves away from every prototype.
    """

    def __init__(self, X: Any, y: Any, n_classes: int) -> None:
        super().__init__()
        X = _tensor(X, "X", ndim=2).detach()
        K = check_int(n_classes, "n_classes", minimum=2)
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
        if y.shape != (X.shape[0],) or y.dtype.is_floating_point:
            raise ValueError(f"y must hold {X.shape[0]} integer labels, got {tuple(y.shape)} of {y.dtype}")
        missing = [k for k in range(K) if not bool((y == k).any())]
        if missing:
            raise ValueError(f"y has no sample of class(es) {missing}")
        self.mu = nn.Parameter(torch.stack([X[y == k].mean(0) for k in range(K)]))
        self.log_a = nn.Parameter(torch.zeros((), dtype=X.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        sq = ((x[:, None, :] - self.mu[None, :, :]) ** 2).sum(-1)
        return -sq * torch.exp(2.0 * self.log_a) / 2.0


def reject_threshold(train_scores: Any, quantile: float = 0.05) -> float:
    """The threshold below which an input is rejected: the ``quantile`` of the training scores.

    By construction about ``quantile`` of the training inputs are rejected.
    """
    s = np.asarray(_tensor(train_scores, "train_scores", ndim=1).detach())
    q = check_positive(quantile, "quantile")
    if q >= 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    return float(np.quantile(s, q))


def confidence_vs_noise_scale(
    model: nn.Module, scales: Any, n: int = 300, n_features: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """Median max-softmax and median ``L`` of a classifier on noise images of growing amplitude.

    Returns ``{"scale", "median_confidence", "median_log_partition"}``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    sc = np.asarray(_tensor(scales, "scales", ndim=1).detach())
    if (sc <= 0).any():
        raise ValueError("scales must be positive")
    dtype = next(model.parameters()).dtype
    conf, lp = [], []
    with torch.no_grad():
        for s in sc:
            z = model(gaussian_noise_images(n, n_features, float(s), seed, dtype))
            conf.append(float(np.median(max_softmax(z))))
            lp.append(float(np.median(log_partition(z))))
    return {"scale": sc, "median_confidence": np.asarray(conf), "median_log_partition": np.asarray(lp)}


# ------------------------------------------------------------------------------------------
# §6.1 again: held-out scores of the multi-label models
# ------------------------------------------------------------------------------------------
def multilabel_scores(Z: Any, T: Any, kind: str = "sigmoid") -> dict[str, float]:
    """Held-out quality of a multi-label model's logits ``Z`` against 0/1 targets ``T``, both ``(N, K)``.

    Decision rules: ``"sigmoid"`` predicts label ``j`` when ``sigmoid(z_j) > 1/2``; ``"softmax"``
    (trained against the normalized label set) predicts ``j`` when ``softmax(z)_j > 1 / (2K)``,
    half the smallest non-zero target it was trained on, so it always predicts at least one label.
    Returns ``{"label_accuracy"`` (per label), ``"exact_set"`` (whole label set right),
    ``"none_predicted"`` (fraction of points given no label), ``"silently_dropped"`` (fraction of
    the points that carry a label but are given none), ``"empty_wrong"`` (fraction of the
    label-less points given some label)``}``.
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"kind must be 'sigmoid' or 'softmax', got {kind!r}")
    Z = _tensor(Z, "Z", ndim=2).detach()
    T = _tensor(T, "T", ndim=2).to(Z.dtype)
    if tuple(T.shape) != tuple(Z.shape):
        raise ValueError(f"T must have the shape of Z {tuple(Z.shape)}, got {tuple(T.shape)}")
    if kind == "sigmoid":
        pred = Z > 0
    else:
        pred = torch.softmax(Z, dim=1) > 1.0 / (2 * Z.shape[1])
    t = T > 0.5
    has = t.any(1)
    none = ~pred.any(1)
    return {
        "label_accuracy": float((pred == t).double().mean()),
        "exact_set": float((pred == t).all(1).double().mean()),
        "none_predicted": float(none.double().mean()),
        "silently_dropped": float((none & has).double().sum() / max(int(has.sum()), 1)),
        "empty_wrong": float((~none & ~has).double().sum() / max(int((~has).sum()), 1)),
    }


# ------------------------------------------------------------------------------------------
# §6.1 again: a uniform background component (Banfield and Raftery, 1993)
# ------------------------------------------------------------------------------------------
def _batched(x: Any, mu0: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = _tensor(x, "x", ndim=(2, 3)).detach()
    mu0 = _tensor(mu0, "mu0", ndim=(2, 3)).detach().to(x.dtype)
    xb = x[None] if x.ndim == 2 else x
    mb = mu0[None] if mu0.ndim == 2 else mu0
    if mb.shape[0] == 1 and xb.shape[0] > 1:
        mb = mb.expand(xb.shape[0], -1, -1)
    if xb.shape[0] not in (1, mb.shape[0]):
        raise ValueError(f"x must hold 1 or {mb.shape[0]} data sets (one per start), got shape {tuple(x.shape)}")
    if xb.shape[-1] != mb.shape[-1]:
        raise ValueError(f"mu0 must have {xb.shape[-1]} coordinates like x, got shape {tuple(mu0.shape)}")
    return xb, mb.contiguous()


def fit_background_mixture(
    x: Any,
    mu0: Any,
    *,
    log_volume: Any = None,
    lr: float = 0.5,
    n_steps: int = 400,
) -> dict[str, Any]:
    """Gradient descent on a Gaussian mixture plus a uniform background component.

    The model of Banfield and Raftery (1993): ``f(x) = pi_0 / V + sum_j pi_j N(x | mu_j, I)``, with
    ``V`` the volume of the region the data occupy (default: the bounding box of each data set,
    estimated from the data, not the box the outliers were drawn from). In the book's terms the
    background is one more component at a *fixed* distance ``d_0 = log V - log pi_0``, so the
    responsibilities of all ``K + 1`` components still sum to one: the normalization, and with
    it the competition, is kept, and a point far from every Gaussian is assigned to the
    background instead of pulling a mean. The loss minimized is ``-mean_i log f(x_i)``; the means
    and the weights (softmax logits, started equal) are learned, the unit covariances are fixed
    (as in the book's log-sum-exp loss, ``s = 1``).

    ``x`` is ``(N, D)`` or ``(S, N, D)`` and ``mu0`` ``(K, D)`` or ``(S, K, D)``: ``S`` independent runs
    at once. Returns ``{"mu" (S, K, D), "weights" (S, K + 1) (background first), "r" (S, N, K + 1)
    (background first), "loss" (S,)}``.
    """
    xb, mu = _batched(x, mu0)
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    S, K, D = mu.shape
    if log_volume is None:
        span = (xb.amax(1) - xb.amin(1)).clamp_min(1e-12)  # (S or 1, D)
        logV = torch.log(span).sum(-1)
    else:
        logV = _tensor(log_volume, "log_volume", ndim=(0, 1)).to(xb.dtype).reshape(-1)
    logV = logV.expand(S) if logV.numel() == 1 else logV
    if logV.shape[0] != S:
        raise ValueError(f"log_volume must hold 1 or {S} values, got {logV.shape[0]}")
    mu = mu.clone().requires_grad_(True)
    logits = torch.zeros(S, K + 1, dtype=xb.dtype, requires_grad=True)
    c = 0.5 * D * math.log(2.0 * math.pi)

    def log_joint() -> torch.Tensor:
        logpi = torch.log_softmax(logits, dim=-1)  # (S, K + 1)
        e = ((xb[:, :, None, :] - mu[:, None, :, :]) ** 2).sum(-1) / 2.0  # (S, N, K)
        gauss = logpi[:, None, 1:] - e - c
        bg = (logpi[:, 0] - logV)[:, None, None].expand(-1, gauss.shape[1], 1)
        return torch.cat([bg, gauss], dim=-1)  # (S, N, K + 1)

    for _ in range(n):
        loss = -torch.logsumexp(log_joint(), -1).mean(-1)
        g_mu, g_l = torch.autograd.grad(loss.sum(), [mu, logits])
        with torch.no_grad():
            mu -= eta * g_mu
            logits -= eta * g_l
    with torch.no_grad():
        lj = log_joint()
        loss = -torch.logsumexp(lj, -1).mean(-1)
        r = torch.softmax(lj, -1)
        w = torch.softmax(logits, -1)
    return {"mu": mu.detach(), "weights": w, "r": r, "loss": loss.numpy()}


def update_weights(kind: str, x: Any, mu: Any) -> torch.Tensor:
    """Weights ``w_ij`` of point ``i`` in mean ``j``'s gradient step, ``(S, N, K)``, for batched fits.

    ``"lse"``: the responsibilities; ``"correntropy"``: ``exp(-e_ij)``; ``"background"``: the
    responsibilities of the Gaussian components in :func:`fit_background_mixture` (pass its
    result dict as ``mu``). In every case gradient descent moves ``mu_j`` towards
    ``sum_i w_ij x_i / sum_i w_ij``.
    """
    if kind == "background":
        if not isinstance(mu, dict) or "r" not in mu:
            raise ValueError("mu must be the result of fit_background_mixture for kind='background'")
        return mu["r"][..., 1:]
    if kind not in ("lse", "correntropy"):
        raise ValueError(f"kind must be 'lse', 'correntropy' or 'background', got {kind!r}")
    xb, mb = _batched(x, mu)
    e = ((xb[:, :, None, :] - mb[:, None, :, :]) ** 2).sum(-1) / 2.0
    return torch.softmax(-e, -1) if kind == "lse" else torch.exp(-e)


OUTLIER_METHODS: tuple[str, ...] = ("lse", "correntropy", "background")


def outlier_sweep(
    fractions: Any = (0.0, 0.05, 0.1, 0.2, 0.3),
    seeds: Any = range(5),
    *,
    n_per_component: int = 150,
    box: float = 12.0,
    lr: float = 0.5,
    n_steps: int = 400,
) -> dict[str, Any]:
    """The outlier experiment over outlier fractions and data seeds, for three losses.

    For every fraction and seed, :func:`make_outlier_task` draws the data, and each method is fitted
    from the true means: ``"lse"`` (the log-sum-exp loss, every point assigned), ``"correntropy"``
    (no partition function, far points ignored) and ``"background"`` (:func:`fit_background_mixture`,
    assigned to a Gaussian or to the background). Returns ``{"fractions", "seeds", "error"``:
    ``{method: (F, S)}`` mean distance of the fitted means from the true ones, ``"outlier_share"``:
    ``{method: (F, S)}`` the outliers' share of the total update weight (for ``"lse"`` simply their
    share of the points), ``"flag_outliers"`` and ``"flag_inliers"`` ``(F, S)``: fractions of
    outliers and of inliers the background claims (responsibility above one half), ``"bg_weight"``
    ``(F, S)``: its fitted weight, and ``"example"``: the fits of the first seed at each fraction``}``.
    """
    fr = [float(check_positive(f, "fractions", allow_zero=True)) for f in np.atleast_1d(np.asarray(fractions, dtype=float))]
    seeds = [check_int(s_, "seeds", minimum=0) for s_ in seeds]
    if not fr or not seeds:
        raise ValueError("fractions and seeds must not be empty")
    F, S = len(fr), len(seeds)
    out: dict[str, Any] = {
        "fractions": np.asarray(fr),
        "seeds": np.asarray(seeds),
        "error": {m: np.zeros((F, S)) for m in OUTLIER_METHODS},
        "outlier_share": {m: np.zeros((F, S)) for m in OUTLIER_METHODS},
        "flag_outliers": np.full((F, S), np.nan),
        "flag_inliers": np.zeros((F, S)),
        "bg_weight": np.zeros((F, S)),
        "example": [],
    }
    for a, f in enumerate(fr):
        tasks = [make_outlier_task(n_per_component, f, box, seed=s_) for s_ in seeds]
        xb = torch.stack([t["x"] for t in tasks])
        out_mask = torch.stack([t["is_outlier"] for t in tasks])  # (S, N)
        m = tasks[0]["means"]
        mu0 = m[None].expand(S, -1, -1).contiguous()
        fits = {k: fit_prototypes_batch(k, xb, mu0, lr=lr, n_steps=n_steps)["mu_final"] for k in ("lse", "correntropy")}
        bg = fit_background_mixture(xb, mu0, lr=lr, n_steps=n_steps)
        fits["background"] = bg["mu"]
        for k in OUTLIER_METHODS:
            out["error"][k][a] = (fits[k] - m[None]).norm(dim=-1).mean(-1).numpy()
            w = update_weights(k, xb, bg if k == "background" else fits[k]).sum(-1)  # (S, N)
            out["outlier_share"][k][a] = ((w * out_mask).sum(1) / w.sum(1)).numpy()
        claimed = bg["r"][..., 0] > 0.5
        if out_mask.any():
            out["flag_outliers"][a] = ((claimed & out_mask).sum(1) / out_mask.sum(1).clamp_min(1)).numpy()
        out["flag_inliers"][a] = ((claimed & ~out_mask).sum(1) / (~out_mask).sum(1)).numpy()
        out["bg_weight"][a] = bg["weights"][:, 0].numpy()
        out["example"].append({"x": tasks[0]["x"], "is_outlier": tasks[0]["is_outlier"], "means": m,
                               **{k: fits[k][0] for k in OUTLIER_METHODS}})
    return out


# ------------------------------------------------------------------------------------------
# §6.2 again: the scale under cross-entropy, and calibration
# ------------------------------------------------------------------------------------------
def stack_digit_splits(seeds: Any = range(5), test_size: float = 0.3, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Several stratified train/test splits of the bundled digits, stacked: ``X_train (S, N, 64)`` etc.

    Split ``s`` is ``iemlib.classification.load_digits_data(test_size=test_size, seed=s)``
    (standardized with its own training statistics); stratification makes every split the same size.
    """
    from .classification import load_digits_data

    seeds = [check_int(s_, "seeds", minimum=0) for s_ in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    parts = [load_digits_data(test_size=test_size, seed=s_, dtype=dtype) for s_ in seeds]
    keys = ("X_train", "X_test", "y_train", "y_test")
    return {k: torch.stack([p[i] for p in parts]) for i, k in enumerate(keys)}


def expected_calibration_error(probs: Any, y: Any, n_bins: int = 15) -> np.ndarray:
    """Expected calibration error of the top-label confidence (Guo et al., 2017), per run.

    ``probs`` is ``(N, K)`` or ``(S, N, K)`` (rows sum to one), ``y`` the labels ``(N,)`` or ``(S, N)``.
    The confidences are binned into ``n_bins`` equal-width bins of ``(0, 1]``; ECE is the
    sample-weighted mean of ``|accuracy - mean confidence|`` over the bins. Returns ``(S,)``
    (a length-1 array for unbatched input).
    """
    p = _tensor(probs, "probs", ndim=(2, 3)).detach()
    p = p[None] if p.ndim == 2 else p
    yy = torch.as_tensor(y)
    if yy.dtype.is_floating_point:
        raise ValueError(f"y must hold integer labels, got dtype {yy.dtype}")
    yy = yy[None] if yy.ndim == 1 else yy
    if tuple(yy.shape) != tuple(p.shape[:2]):
        raise ValueError(f"y must have shape {tuple(p.shape[:2])}, got {tuple(yy.shape)}")
    nb = check_int(n_bins, "n_bins", minimum=1)
    conf, pred = p.max(-1)
    acc = (pred == yy).to(p.dtype)
    idx = torch.clamp(torch.ceil(conf * nb).long() - 1, 0, nb - 1)  # bin (k/nb, (k+1)/nb]
    N = p.shape[1]
    ece = torch.zeros(p.shape[0], dtype=p.dtype)
    for k in range(nb):
        m = (idx == k).to(p.dtype)
        cnt = m.sum(1)
        gap = ((conf * m).sum(1) - (acc * m).sum(1)).abs()  # = cnt * |mean conf - accuracy|
        ece += torch.where(cnt > 0, gap, torch.zeros_like(gap)) / N
    return ece.numpy()


SCALE_MODELS: tuple[str, ...] = ("prototype", "linear")


def train_scale_runs(
    kind: str,
    data: dict[str, torch.Tensor],
    *,
    epochs: int = 1000,
    lr: float = 0.3,
    record_at: Any = (0, 10, 30, 100, 300, 1000),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Full-batch gradient descent on the cross-entropy loss for ``S`` digit splits at once.

    ``kind="prototype"``: logits ``z_j = -a^2 ||x - mu_j||^2 / 2`` (distances ``d = -z``), one
    prototype per class started at the class mean and one learned scale ``a`` started at 1 (the
    model of :class:`PrototypeClassifier`); its scale is ``a^2``. ``kind="linear"``: ``z = W x + b``,
    ``W`` started small (seeded), its scale ``||W||_F``. ``data`` is :func:`stack_digit_splits`.
    At every step in ``record_at`` it records, per split (arrays of shape ``(T, S)``): ``"scale"``,
    ``"train_loss"``, ``"train_acc"``, ``"test_acc"``, ``"test_nll"`` (held-out cross-entropy),
    ``"test_ece"`` (:func:`expected_calibration_error`), ``"test_conf"`` (mean max-softmax on the
    test set) and ``"logit_spread"`` (mean over test inputs of the logits' standard deviation).
    """
    if kind not in SCALE_MODELS:
        raise ValueError(f"kind must be one of {SCALE_MODELS}, got {kind!r}")
    if not isinstance(data, dict) or not {"X_train", "X_test", "y_train", "y_test"} <= set(data):
        raise ValueError("data must be the dict of stack_digit_splits (X_train, X_test, y_train, y_test)")
    Xtr, Xte = _tensor(data["X_train"], "data['X_train']", ndim=3), _tensor(data["X_test"], "data['X_test']", ndim=3)
    ytr, yte = data["y_train"], data["y_test"]
    ep = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    rec = sorted({check_int(int(t), "record_at", minimum=0) for t in np.atleast_1d(record_at)})
    if rec[-1] > ep:
        raise ValueError(f"record_at must not exceed epochs={ep}, got {rec[-1]}")
    S, _, D = Xtr.shape
    K = int(ytr.max()) + 1
    dt = Xtr.dtype
    if kind == "prototype":
        mu = torch.stack([torch.stack([Xtr[s_][ytr[s_] == k].mean(0) for k in range(K)]) for s_ in range(S)])
        mu.requires_grad_(True)
        log_a = torch.zeros(S, dtype=dt, requires_grad=True)
        params = [mu, log_a]

        def logits(X: torch.Tensor) -> torch.Tensor:
            sq = (X**2).sum(-1, keepdim=True) - 2.0 * X @ mu.transpose(1, 2) + (mu**2).sum(-1)[:, None, :]
            return -sq.clamp_min(0.0) * torch.exp(2.0 * log_a)[:, None, None] / 2.0

        def scale() -> torch.Tensor:
            return torch.exp(2.0 * log_a)
    else:
        g = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
        W = (0.01 * torch.randn(S, D, K, generator=g, dtype=dt)).requires_grad_(True)
        b = torch.zeros(S, 1, K, dtype=dt, requires_grad=True)
        params = [W, b]

        def logits(X: torch.Tensor) -> torch.Tensor:
            return X @ W + b

        def scale() -> torch.Tensor:
            return W.flatten(1).norm(dim=1)

    def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -torch.log_softmax(z, -1).gather(-1, y[..., None])[..., 0].mean(-1)

    out: dict[str, list] = {k: [] for k in ("step", "scale", "train_loss", "train_acc", "test_acc", "test_nll", "test_ece", "test_conf", "logit_spread")}
    for t in range(ep + 1):
        z = logits(Xtr)
        loss = ce(z, ytr)
        if t in rec:
            with torch.no_grad():
                zt = logits(Xte)
                p = torch.softmax(zt, -1)
                out["step"].append(t)
                out["scale"].append(scale().numpy().copy())
                out["train_loss"].append(loss.numpy().copy())
                out["train_acc"].append((z.argmax(-1) == ytr).to(dt).mean(1).numpy())
                out["test_acc"].append((zt.argmax(-1) == yte).to(dt).mean(1).numpy())
                out["test_nll"].append(ce(zt, yte).numpy())
                out["test_ece"].append(expected_calibration_error(p, yte))
                out["test_conf"].append(p.max(-1).values.mean(1).numpy())
                out["logit_spread"].append(zt.std(-1).mean(-1).numpy())
        if t == ep:
            break
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            for p_, g_ in zip(params, grads):
                p_ -= eta * g_
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------
# §6.2 again: a normalization layer in a real network
# ------------------------------------------------------------------------------------------
EMBEDDING_NORMS: tuple[str, ...] = ("none", "layernorm", "layernorm-affine", "layernorm-hidden")


def fit_embedding_mixture(
    data: dict[str, torch.Tensor],
    norm: str = "none",
    *,
    n_components: int = 10,
    hidden: int = 32,
    dim: int = 8,
    lr: float = 0.1,
    n_steps: int = 300,
    record_at: Any = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Unsupervised implicit EM through a network: an MLP embedding and ``K`` prototypes, no volume term.

    For each of the ``S`` splits in ``data`` (:func:`stack_digit_splits`), an MLP
    ``f(x) = W_2 relu(W_1 x + b_1) + b_2`` maps a digit to ``R^dim``, and the loss minimized by
    full-batch gradient descent on the training images is the negative log-sum-exp objective
    ``-mean_i log sum_j exp(-||f(x_i) - mu_j||^2 / 2)`` (the labels are not used). ``norm`` places
    a ``torch.nn.functional.layer_norm`` (Ba et al., 2016): ``"layernorm"`` on the embedding,
    without a learned gain; ``"layernorm-affine"`` on the embedding with a learned per-feature gain
    and bias (as ``torch.nn.LayerNorm`` has by default); ``"layernorm-hidden"`` on the hidden
    layer, before the ReLU. The weights are seeded per split (``seed + s``), the prototypes start
    at the embeddings of ``K`` seeded training images.

    Returns arrays of shape ``(T, S)`` at the steps ``record_at`` (default: 0 and ``n_steps``):
    ``"objective"`` (mean training ``L``, maximized; at most ``log K``), ``"entropy"`` (mean
    responsibility entropy over the *test* images divided by ``log K``; 1 = uniform),
    ``"spread"`` (root mean squared distance of the test embeddings from their mean),
    ``"mean_distance"`` (mean test ``||f(x) - mu_j||^2 / 2`` over points and components), and
    ``"nmi"`` (normalized mutual information between the test images' most responsible
    component and their digit, 0 = unrelated, 1 = the digits recovered).
    """
    from sklearn.metrics import normalized_mutual_info_score

    if norm not in EMBEDDING_NORMS:
        raise ValueError(f"norm must be one of {EMBEDDING_NORMS}, got {norm!r}")
    if not isinstance(data, dict) or not {"X_train", "X_test", "y_test"} <= set(data):
        raise ValueError("data must be the dict of stack_digit_splits (X_train, X_test, y_test)")
    Xtr = _tensor(data["X_train"], "data['X_train']", ndim=3)
    Xte = _tensor(data["X_test"], "data['X_test']", ndim=3)
    yte = np.asarray(data["y_test"])
    K = check_int(n_components, "n_components", minimum=2)
    H = check_int(hidden, "hidden", minimum=1)
    m = check_int(dim, "dim", minimum=1)
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    rec = sorted({check_int(int(t), "record_at", minimum=0) for t in np.atleast_1d(record_at if record_at is not None else (0, n))})
    if rec[-1] > n:
        raise ValueError(f"record_at must not exceed n_steps={n}, got {rec[-1]}")
    S, N, D = Xtr.shape
    dt = Xtr.dtype
    W1, b1, W2, b2, gain, bias, mu = [], [], [], [], [], [], []
    for s_ in range(S):
        g = torch.Generator().manual_seed(seed + s_)
        W1.append(torch.randn(D, H, generator=g, dtype=dt) / math.sqrt(D))
        W2.append(torch.randn(H, m, generator=g, dtype=dt) / math.sqrt(H))
        idx = torch.randperm(N, generator=g)[:K]
        mu.append(idx)
    P = {
        "W1": torch.stack(W1), "b1": torch.zeros(S, 1, H, dtype=dt),
        "W2": torch.stack(W2), "b2": torch.zeros(S, 1, m, dtype=dt),
        "gain": torch.ones(S, 1, m, dtype=dt), "bias": torch.zeros(S, 1, m, dtype=dt),
    }

    def embed(X: torch.Tensor) -> torch.Tensor:
        h = X @ P["W1"] + P["b1"]
        if norm == "layernorm-hidden":
            h = torch.nn.functional.layer_norm(h, (H,))
        f = torch.relu(h) @ P["W2"] + P["b2"]
        if norm in ("layernorm", "layernorm-affine"):
            f = torch.nn.functional.layer_norm(f, (m,))
        if norm == "layernorm-affine":
            f = f * P["gain"] + P["bias"]
        return f

    with torch.no_grad():
        f0 = embed(Xtr)
        P["mu"] = torch.stack([f0[s_, mu[s_]] for s_ in range(S)]).clone()
    names = ["W1", "b1", "W2", "b2", "mu"] + (["gain", "bias"] if norm == "layernorm-affine" else [])
    for k in names:
        P[k].requires_grad_(True)

    def energies(f: torch.Tensor) -> torch.Tensor:
        return ((f[:, :, None, :] - P["mu"][:, None, :, :]) ** 2).sum(-1) / 2.0

    out: dict[str, list] = {k: [] for k in ("step", "objective", "entropy", "spread", "mean_distance", "nmi")}
    for t in range(n + 1):
        L = torch.logsumexp(-energies(embed(Xtr)), -1).mean(-1)  # (S,)
        if t in rec:
            with torch.no_grad():
                fe = embed(Xte)
                e = energies(fe)
                r = torch.softmax(-e, -1)
                ent = -(r * torch.log(r.clamp_min(1e-300))).sum(-1).mean(-1) / math.log(K)
                spread = ((fe - fe.mean(1, keepdim=True)) ** 2).sum(-1).mean(-1).sqrt()
                lab = r.argmax(-1).numpy()
                out["step"].append(t)
                out["objective"].append(L.detach().numpy().copy())
                out["entropy"].append(ent.numpy())
                out["spread"].append(spread.numpy())
                out["mean_distance"].append(e.mean((1, 2)).numpy())
                out["nmi"].append(np.array([normalized_mutual_info_score(yte[s_], lab[s_]) for s_ in range(S)]))
        if t == n:
            break
        grads = torch.autograd.grad(-L.sum(), [P[k] for k in names])
        with torch.no_grad():
            for k, g_ in zip(names, grads):
                P[k] -= eta * g_
    return {k: np.asarray(v) for k, v in out.items()}
