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
from .taxonomy import fit_prototypes, make_mixture_task, prototype_errors

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
