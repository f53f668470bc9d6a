"""Objectives written in distances, and their closed-form gradients.

Notation (the book's, every chapter): ``d`` holds distances (energies) ``d_j``; logits are
``z_j = -d_j``; ``L = log sum_j exp(-d_j)`` is the log marginal likelihood, which is
*maximized*; a *loss* is what gradient descent *minimizes*. Every function says which of the
two it returns and which one its gradient differentiates.

All functions accept numpy arrays and torch tensors and return the same kind; torch inputs
keep their autograd graph, so ``torch.autograd.grad`` can be checked against the closed forms
below. Reductions are over ``dim`` (default: the last axis, the components).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_dim, check_labels, check_positive, is_torch

__all__ = [
    "lse",
    "responsibilities",
    "lse_gradient",
    "cross_entropy",
    "cross_entropy_gradient",
    "sigmoid_bce",
    "sigmoid_bce_gradient",
    "correntropy",
    "correntropy_gradient",
]


def lse(d: ArrayLike, dim: int = -1) -> ArrayLike:
    """Log-sum-exp of negative distances, ``L = log sum_j exp(-d_j)`` (maximized).

    Computed stably by shifting by the smallest distance, so any finite ``d`` gives a finite
    result (``L = -min(d) + log sum_j exp(-(d_j - min d))``).

    Parameters
    ----------
    d : numpy array or torch tensor, floating point, finite, non-empty
        Distances; the components run along ``dim``.
    dim : int
        Axis of the components.

    Returns
    -------
    Same kind as ``d``, with ``dim`` removed.
    """
    d = as_float_array(d, "d", min_ndim=1)
    ax = check_dim(d, dim)
    if is_torch(d):
        return torch.logsumexp(-d, dim=ax)
    m = np.min(d, axis=ax, keepdims=True)
    with np.errstate(over="ignore"):  # d - m may overflow to +inf for a huge span; exp(-inf) = 0 is exact
        out = -m + np.log(np.sum(np.exp(-(d - m)), axis=ax, keepdims=True))
    return np.squeeze(out, axis=ax)


def responsibilities(d: ArrayLike, dim: int = -1) -> ArrayLike:
    """Responsibilities ``r_j = exp(-d_j) / sum_k exp(-d_k)`` (softmax of ``-d``).

    Non-negative, summing to one along ``dim``; stable for any finite ``d``.
    """
    d = as_float_array(d, "d", min_ndim=1)
    ax = check_dim(d, dim)
    if is_torch(d):
        return torch.softmax(-d, dim=ax)
    with np.errstate(over="ignore"):  # as in lse: an overflowed d - min(d) gives exp(-inf) = 0
        e = np.exp(-(d - np.min(d, axis=ax, keepdims=True)))
    return e / np.sum(e, axis=ax, keepdims=True)


def lse_gradient(d: ArrayLike, dim: int = -1) -> ArrayLike:
    """Closed form of Theorem 1: ``dL/dd_j = -r_j`` for ``L = lse(d)`` (the maximized objective).

    The loss ``-L`` has gradient ``+r_j``.
    """
    return -responsibilities(d, dim=dim)


def _onehot_like(d: ArrayLike, y: Any) -> ArrayLike:
    K = d.shape[-1]
    if is_torch(d):
        y_t = y if is_torch(y) else torch.as_tensor(np.asarray(y), device=d.device)
        return torch.nn.functional.one_hot(y_t.long(), K).to(d.dtype)
    return np.eye(K, dtype=d.dtype)[np.asarray(y)]


def _check_ce_inputs(d: Any, y: Any) -> tuple[ArrayLike, ArrayLike]:
    d = as_float_array(d, "d", min_ndim=1)
    if d.shape[-1] == 0:
        raise ValueError("d must have at least one component along its last axis")
    y = check_labels(y, "y", d.shape[-1], shape=tuple(d.shape[:-1]) if d.ndim > 1 else None)
    if d.ndim == 1 and (y.ndim != 0 and tuple(y.shape) != (1,)):
        raise ValueError(f"y must be a single label for a 1-D d, got shape {tuple(y.shape)}")
    return d, y


def cross_entropy(d: ArrayLike, y: Any) -> ArrayLike:
    """Cross-entropy *loss* written in distances: ``d_y + log sum_k exp(-d_k)`` (minimized).

    With logits ``z = -d`` this is the familiar ``-z_y + log sum_k exp(z_k)``. Components run
    along the last axis; ``y`` holds integer labels of shape ``d.shape[:-1]``. Returns one loss
    per sample (no reduction).
    """
    d, y = _check_ce_inputs(d, y)
    onehot = _onehot_like(d, y).reshape(d.shape)
    dy = (onehot * d).sum(-1)
    return dy + lse(d, dim=-1)


def cross_entropy_gradient(d: ArrayLike, y: Any) -> ArrayLike:
    """Closed-form gradient of :func:`cross_entropy` (the loss) with respect to ``d``.

    ``d loss / d d_j = 1[j = y] - r_j``. The correct class's distance has gradient
    ``1 - r_y >= 0`` (gradient descent pulls it *down*, closer); every wrong class has
    gradient ``-r_j <= 0`` (descent pushes it *up*, away, in proportion to ``r_j``).
    With respect to the logits ``z = -d`` the sign flips: ``r_j - 1[j = y]``.
    """
    d, y = _check_ce_inputs(d, y)
    return _onehot_like(d, y).reshape(d.shape) - responsibilities(d, dim=-1)


def _check_targets(d: ArrayLike, t: Any) -> ArrayLike:
    t = as_float_array(t, "t")
    if tuple(t.shape) != tuple(d.shape):
        raise ValueError(f"t must have the same shape as d {tuple(d.shape)}, got {tuple(t.shape)}")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"t must hold targets in [0, 1], got values in [{lo}, {hi}]")
    return t


def sigmoid_bce(d: ArrayLike, t: Any) -> ArrayLike:
    """Independent-sigmoid binary cross-entropy *loss*, elementwise, in distances.

    Each component ``j`` has its own probability ``sigmoid(-d_j)`` and target ``t_j`` in
    [0, 1]; the loss ``softplus(-d_j) + t_j d_j`` has no partition function, so no
    component's gradient depends on any other component (no responsibilities).
    """
    d = as_float_array(d, "d")
    t = _check_targets(d, t)
    if is_torch(d):
        t_ = t if is_torch(t) else torch.as_tensor(np.asarray(t), dtype=d.dtype, device=d.device)
        return torch.nn.functional.softplus(-d) + t_ * d
    return np.logaddexp(0.0, -d) + np.asarray(t, dtype=d.dtype) * d


def sigmoid_bce_gradient(d: ArrayLike, t: Any) -> ArrayLike:
    """Closed-form gradient of :func:`sigmoid_bce` (the loss): ``t_j - sigmoid(-d_j)``."""
    d = as_float_array(d, "d")
    t = _check_targets(d, t)
    if is_torch(d):
        t_ = t if is_torch(t) else torch.as_tensor(np.asarray(t), dtype=d.dtype, device=d.device)
        return t_ - torch.sigmoid(-d)
    # numerically stable logistic: 1 / (1 + exp(d)) == exp(-logaddexp(0, d))
    return np.asarray(t, dtype=d.dtype) - np.exp(-np.logaddexp(0.0, d))


def correntropy(d: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """Correntropy-kernel *loss*, elementwise: ``1 - exp(-d^2 / sigma^2)`` (minimized).

    A Gaussian kernel with no partition function: a point far from a prototype
    (``|d| >> sigma``) gives a loss near 1 and a gradient near 0.
    """
    d = as_float_array(d, "d")
    s = check_positive(sigma, "sigma")
    u = d / s
    if is_torch(d):
        return 1.0 - torch.exp(-(u**2))
    with np.errstate(over="ignore"):  # u**2 may overflow to inf: exp(-inf) = 0 is exact here
        return 1.0 - np.exp(-(u**2))


def correntropy_gradient(d: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """Closed-form gradient of :func:`correntropy`: ``(2 d / sigma^2) exp(-d^2 / sigma^2)``."""
    d = as_float_array(d, "d")
    s = check_positive(sigma, "sigma")
    u = d / s
    if is_torch(d):
        return (2.0 * u / s) * torch.exp(-(u**2))
    with np.errstate(over="ignore"):  # u**2 may overflow to inf; the factor exp(-inf) = 0 wins
        return (2.0 * u / s) * np.exp(-(u**2))
