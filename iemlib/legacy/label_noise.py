"""Label noise against label smoothing: many small MLPs trained at once, and their calibration.

Symmetric label noise of rate ``rho`` and label smoothing with ``eps = rho K / (K - 1)`` have the same
*expected* target, so at a fixed ``d`` the expected gradient of the loss is the same (linearity in the
target). They differ in what a network can do with them: noisy labels are *fixed* per example, and a
network with enough capacity can memorize them; a smoothed target is the same soft vector for every
example of a class. :func:`train_mlp_ensemble` trains one small MLP per (target, seed) pair in one
batched computation, so the conditions see the same inputs, initializations and optimizer.
:func:`forward_corrected_targets` gives the forward loss correction of Patrini et al. (2017), and
:func:`expected_calibration_error` the standard binned calibration error (Naeini et al. 2015; Guo et
al. 2017).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import as_float_array, check_int, check_labels, check_positive, is_torch

__all__ = ["symmetric_noise_matrix", "train_mlp_ensemble", "expected_calibration_error"]


def symmetric_noise_matrix(n_classes: int, rho: float) -> torch.Tensor:
    """``T[i, j] = P(noisy label j | true label i)``: ``1 - rho`` on the diagonal, ``rho / (K - 1)`` elsewhere (float64)."""
    K = check_int(n_classes, "n_classes", minimum=2)
    p = check_positive(rho, "rho", allow_zero=True)
    if p > 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    T = torch.full((K, K), p / (K - 1), dtype=torch.float64)
    T.fill_diagonal_(1.0 - p)
    return T


def train_mlp_ensemble(
    X: Any,
    targets: Any,
    seeds: Any,
    *,
    hidden: int = 64,
    epochs: int = 300,
    lr: float = 0.01,
    noise_matrix: Any = None,
    correct: Any = None,
    X_test: Any = None,
    record_every: int = 25,
) -> dict[str, Any]:
    """Train ``M`` one-hidden-layer ReLU MLPs at once with Adam on the mean cross-entropy loss against soft targets.

    Parameters
    ----------
    X : (N, F) float inputs, shared by all models.
    targets : (M, N, K) float targets, one distribution per row (one-hot rows for hard labels).
    seeds : M non-negative ints; model ``m`` is initialized like
        ``iemlib.classification.make_classifier("mlp", F, K, hidden, seed=seeds[m])``.
    noise_matrix : optional (K, K) row-stochastic matrix ``T``; when given, models with
        ``correct[m]`` true are trained on the forward-corrected loss of Patrini et al. (2017),
        ``-sum_j q_j log (softmax(z) T)_j``, and predict with ``softmax(z)``.
    correct : M bools (default all False), which models use the correction.
    X_test : optional (N_test, F) inputs on which the models' logits are recorded.
    epochs, lr : full-batch Adam steps (betas 0.9, 0.999) and step size; ``record_every``: how
        often the test logits are recorded.

    Returns
    -------
    dict with ``epoch`` (T,), ``train_logits`` (M, N, K) at the end, and with ``X_test``
    ``test_logits`` (M, N_test, K) at the end and ``test_logits_history`` (T, M, N_test, K).
    Deterministic for given arguments.
    """
    Xt = _float(X, "X", 2)
    Q = _float(targets, "targets", 3).to(Xt.dtype)
    M, N, K = Q.shape
    if N != Xt.shape[0]:
        raise ValueError(f"targets must have one row per sample of X ({Xt.shape[0]}), got {N}")
    if float(Q.min()) < -1e-9 or float((Q.sum(-1) - 1).abs().max()) > 1e-6:
        raise ValueError("targets must hold probability distributions along the last axis")
    seeds = [check_int(s, "seeds", minimum=0) for s in (seeds if not isinstance(seeds, int) else [seeds])]
    if len(seeds) != M:
        raise ValueError(f"seeds must have one entry per model ({M}), got {len(seeds)}")
    H = check_int(hidden, "hidden", minimum=1)
    n_ep = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    every = check_int(record_every, "record_every", minimum=1)
    if correct is None:
        corr = torch.zeros(M, dtype=torch.bool)
    else:
        corr = torch.as_tensor(np.asarray(correct, dtype=bool))
        if corr.shape != (M,):
            raise ValueError(f"correct must hold {M} bools, one per model, got shape {tuple(corr.shape)}")
    T = None
    if noise_matrix is not None:
        T = _float(noise_matrix, "noise_matrix", 2).to(Xt.dtype)
        if tuple(T.shape) != (K, K) or float((T.sum(1) - 1).abs().max()) > 1e-6 or float(T.min()) < 0:
            raise ValueError(f"noise_matrix must be a ({K}, {K}) row-stochastic matrix")
    elif bool(corr.any()):
        raise ValueError("correct needs a noise_matrix")
    Xte = _float(X_test, "X_test", 2).to(Xt.dtype) if X_test is not None else None
    if Xte is not None and Xte.shape[1] != Xt.shape[1]:
        raise ValueError(f"X_test must have {Xt.shape[1]} columns like X, got {Xte.shape[1]}")

    from .classification import make_classifier

    nets = [make_classifier("mlp", Xt.shape[1], K, H, seed=s, dtype=Xt.dtype) for s in seeds]
    W1 = torch.stack([n[0].weight.detach().T for n in nets]).requires_grad_(True)  # (M, F, H)
    b1 = torch.stack([n[0].bias.detach() for n in nets])[:, None, :].requires_grad_(True)  # (M, 1, H)
    W2 = torch.stack([n[2].weight.detach().T for n in nets]).requires_grad_(True)  # (M, H, K)
    b2 = torch.stack([n[2].bias.detach() for n in nets])[:, None, :].requires_grad_(True)  # (M, 1, K)
    params = [W1, b1, W2, b2]

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ W1 + b1) @ W2 + b2

    m_state = [torch.zeros_like(p) for p in params]
    v_state = [torch.zeros_like(p) for p in params]
    b1c, b2c = 0.9, 0.999
    hist_ep, hist_te = [], []
    for t in range(n_ep + 1):
        if Xte is not None and (t % every == 0 or t == n_ep):
            with torch.no_grad():
                hist_ep.append(t)
                hist_te.append(logits(Xte).clone())
        if t == n_ep:
            break
        z = logits(Xt)
        logp = torch.log_softmax(z, -1)
        if T is not None and bool(corr.any()):
            logp_noisy = torch.log((torch.softmax(z, -1) @ T).clamp_min(1e-300))
            logp = torch.where(corr[:, None, None], logp_noisy, logp)
        loss = -(Q * logp).sum(-1).mean(-1).sum()  # sum over models of each model's mean loss
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g, m, v in zip(params, grads, m_state, v_state):
                m.mul_(b1c).add_(g, alpha=1 - b1c)
                v.mul_(b2c).addcmul_(g, g, value=1 - b2c)
                mh = m / (1 - b1c ** (t + 1))
                vh = v / (1 - b2c ** (t + 1))
                p.sub_(eta * mh / (vh.sqrt() + 1e-8))
    out: dict[str, Any] = {"epoch": np.asarray(hist_ep)}
    with torch.no_grad():
        out["train_logits"] = logits(Xt)
        if Xte is not None:
            out["test_logits"] = logits(Xte)
            out["test_logits_history"] = torch.stack(hist_te)
    return out


def _float(x: Any, name: str, ndim: int) -> torch.Tensor:
    a = as_float_array(x, name, ndim=ndim)
    return (a if is_torch(a) else torch.as_tensor(np.asarray(a))).detach()


def expected_calibration_error(probs: Any, y: Any, n_bins: int = 15) -> float:
    """Expected calibration error of predicted class probabilities ``probs`` (N, K) against labels ``y`` (N,).

    The confidence ``max_j p_j`` of each sample is binned into ``n_bins`` equal-width bins on
    [0, 1] (right-closed, the first bin also holding 0); ECE is ``sum_b (n_b / N) |acc_b - conf_b|``
    with ``acc_b`` the accuracy and ``conf_b`` the mean confidence in bin ``b`` (Naeini et al. 2015;
    Guo et al. 2017). 0 is perfectly calibrated.
    """
    P = as_float_array(probs, "probs", ndim=2)
    P = P.detach().cpu().numpy() if is_torch(P) else np.asarray(P, dtype=np.float64)
    if P.min() < -1e-9 or np.abs(P.sum(1) - 1).max() > 1e-6:
        raise ValueError("probs must hold probability distributions along its rows")
    yy = check_labels(y.detach().cpu().numpy() if is_torch(y) else y, "y", P.shape[1], shape=(P.shape[0],))
    B = check_int(n_bins, "n_bins", minimum=1)
    conf = P.max(1)
    correct = (P.argmax(1) == np.asarray(yy)).astype(np.float64)
    bins = np.clip(np.ceil(conf * B).astype(int) - 1, 0, B - 1)
    ece = 0.0
    for b in range(B):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)
