"""Training diagnostics for attention heads (Aggarwal, Dalal and Misra 2025, §8.1), and a few
generic helpers to watch their feedback loop.

All functions are generic over attention outputs: they take the arrays an attention head
produces (``alpha`` of shape ``(..., T, T)`` with rows summing to one, values ``v`` and upstream
gradients ``u`` of shape ``(..., T, d_v)``), with any leading batch or time axes, as numpy arrays
or torch tensors, and return the same kind. They compute nothing about a particular model, so
they apply to :func:`iemlib.attention.closed_form_backward`'s outputs, to a training history
stacked along a leading step axis, or to a real transformer's head.

Signs. ``u_i = dL/dg_i`` is a gradient of the cross-entropy **loss** (minimized).
:func:`centered_compatibility` is ``b_ij - E_{alpha_i}[b]``, the paper's §8.1 "advantage
matrix" and the factor in ``dL/ds_ij = alpha_ij (b_ij - E_{alpha_i}[b])``;
:func:`advantage` is its negative, the paper's §3.4 ``A_ij``, positive where a gradient-descent
step *raises* the score ``s_ij``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_int, is_torch

__all__ = [
    "compatibility",
    "centered_compatibility",
    "advantage",
    "column_usage",
    "value_norms",
    "attention_entropy",
    "mass_on_positive_advantage",
    "pearson",
    "pca",
    "settling_step",
]


def _check_alpha(alpha: Any, name: str = "alpha") -> ArrayLike:
    alpha = as_float_array(alpha, name, min_ndim=2, allow_sequence=True)
    if alpha.shape[-1] == 0 or alpha.shape[-2] == 0:
        raise ValueError(f"{name} must have shape (..., T, T) with T >= 1, got {tuple(alpha.shape)}")
    lo = float(alpha.min())
    if lo < 0:
        raise ValueError(f"{name} must be non-negative (attention weights), got a minimum of {lo:.3g}")
    rows = alpha.sum(-1)
    dev = float((rows - 1).abs().max()) if is_torch(rows) else float(np.max(np.abs(rows - 1)))
    if dev > 1e-4:
        raise ValueError(f"{name} must have rows summing to 1 (softmax over keys), off by up to {dev:.3g}")
    return alpha


def _check_mask(mask: Any, shape: tuple[int, ...]) -> Any:
    if mask is None:
        return None
    m = mask.detach().cpu().numpy() if is_torch(mask) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be a boolean array (True = allowed position), got dtype {m.dtype}")
    try:
        np.broadcast_to(m, shape)
    except ValueError as exc:
        raise ValueError(f"mask of shape {m.shape} does not broadcast to {shape}") from exc
    return m


def _like(x: ArrayLike, m: np.ndarray) -> ArrayLike:
    return torch.as_tensor(m, device=x.device) if is_torch(x) else m


def compatibility(u: ArrayLike, v: ArrayLike) -> ArrayLike:
    """Compatibility matrix ``B = (b_ij)``, ``b_ij = u_i^T v_j`` (§2.2, §8.1).

    ``u`` (``(..., T_q, d_v)``): upstream gradients ``dL/dg_i`` of the **loss**; ``v``
    (``(..., T_k, d_v)``): values. ``b_ij = dL/dalpha_ij``: negative means more attention from
    ``i`` to ``j`` would lower the loss. Returns ``(..., T_q, T_k)``.
    """
    u = as_float_array(u, "u", min_ndim=2)
    v = as_float_array(v, "v", min_ndim=2)
    if u.shape[-1] != v.shape[-1]:
        raise ValueError(f"u and v must share their last axis (d_v), got {tuple(u.shape)} and {tuple(v.shape)}")
    if is_torch(u) or is_torch(v):
        u_ = u if is_torch(u) else torch.as_tensor(u)
        v_ = v if is_torch(v) else torch.as_tensor(v)
        dtype = torch.promote_types(u_.dtype, v_.dtype)
        return u_.to(dtype) @ v_.to(dtype).transpose(-1, -2)
    return u @ np.swapaxes(v, -1, -2)


def centered_compatibility(B: ArrayLike, alpha: ArrayLike, mask: Any = None) -> ArrayLike:
    """``b_ij - E_{alpha_i}[b]`` with ``E_{alpha_i}[b] = sum_j alpha_ij b_ij``: §8.1's advantage matrix.

    ``dL/ds_ij = alpha_ij * centered_compatibility`` for the cross-entropy **loss**; gradient
    descent lowers ``s_ij`` where this is positive. Entries where ``mask`` (boolean, True =
    allowed, broadcast to ``B``'s shape) is False are set to 0.
    """
    alpha = _check_alpha(alpha)
    B = as_float_array(B, "B", min_ndim=2)
    if tuple(B.shape) != tuple(alpha.shape):
        raise ValueError(f"B must have the same shape as alpha {tuple(alpha.shape)}, got {tuple(B.shape)}")
    m = _check_mask(mask, tuple(B.shape))
    if is_torch(B) or is_torch(alpha):
        B_ = B if is_torch(B) else torch.as_tensor(B)
        a_ = alpha if is_torch(alpha) else torch.as_tensor(alpha)
        out = B_ - (a_ * B_).sum(-1, keepdim=True)
        if m is not None:
            out = out.masked_fill(~_like(out, np.broadcast_to(m, tuple(out.shape)).copy()), 0.0)
        return out
    out = B - np.sum(alpha * B, axis=-1, keepdims=True)
    if m is not None:
        out = np.where(m, out, 0.0)
    return out


def advantage(B: ArrayLike, alpha: ArrayLike, mask: Any = None) -> ArrayLike:
    """The paper's §3.4 advantage ``A_ij = -(b_ij - E_{alpha_i}[b])`` (masked entries 0).

    Positive ``A_ij``: ``v_j`` is better than the attention-weighted average for query ``i``
    (lower ``dL/dalpha``), and a gradient-descent step on the loss moves ``s_ij`` by
    ``+eta * alpha_ij * A_ij`` — up.
    """
    return -centered_compatibility(B, alpha, mask)


def column_usage(alpha: ArrayLike) -> ArrayLike:
    """Column usage ``sum_i alpha_ij`` (§8.1), shape ``(..., T)``: how much attention value ``j``
    receives in total. Sums to ``T`` over ``j``; a column near 0 is an unused ("dead") value."""
    alpha = _check_alpha(alpha)
    return alpha.sum(-2)


def value_norms(v: ArrayLike) -> ArrayLike:
    """Euclidean norms ``||v_j||`` of value vectors (last axis), shape ``v.shape[:-1]`` (§8.1)."""
    v = as_float_array(v, "v", min_ndim=1)
    if is_torch(v):
        return torch.linalg.vector_norm(v, dim=-1)
    return np.linalg.norm(v, axis=-1)


def attention_entropy(alpha: ArrayLike) -> ArrayLike:
    """Entropy in nats of each query's attention row, ``-sum_j alpha_ij log alpha_ij`` (``0 log 0 = 0``).

    Shape ``alpha.shape[:-1]``. ``log T`` for uniform attention, 0 for one-hot.
    """
    alpha = _check_alpha(alpha)
    if is_torch(alpha):
        return -torch.special.xlogy(alpha, alpha).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(alpha > 0, alpha * np.log(np.where(alpha > 0, alpha, 1.0)), 0.0)
    return -terms.sum(-1)


def mass_on_positive_advantage(alpha: ArrayLike, A: ArrayLike) -> ArrayLike:
    """Mean over queries of ``sum_j alpha_ij 1[A_ij > 0]``: the attention mass on positions with
    positive advantage (in :func:`advantage`'s sign). Shape ``alpha.shape[:-2]``."""
    alpha = _check_alpha(alpha)
    A = as_float_array(A, "A", min_ndim=2)
    if tuple(A.shape) != tuple(alpha.shape):
        raise ValueError(f"A must have the same shape as alpha {tuple(alpha.shape)}, got {tuple(A.shape)}")
    if is_torch(alpha) or is_torch(A):
        a_ = alpha if is_torch(alpha) else torch.as_tensor(alpha)
        A_ = A if is_torch(A) else torch.as_tensor(A)
        return (a_ * (A_ > 0).to(a_.dtype)).sum(-1).mean(-1)
    return (alpha * (A > 0)).sum(-1).mean(-1)


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation of two equally shaped arrays (flattened), as a float.

    Raises ``ValueError`` if either has fewer than two entries or zero variance.
    """
    a = as_float_array(a, "a")
    b = as_float_array(b, "b")
    a_ = a.detach().cpu().numpy() if is_torch(a) else np.asarray(a)
    b_ = b.detach().cpu().numpy() if is_torch(b) else np.asarray(b)
    if a_.shape != b_.shape:
        raise ValueError(f"b must have the same shape as a {a_.shape}, got {b_.shape}")
    a_, b_ = a_.ravel().astype(np.float64), b_.ravel().astype(np.float64)
    if a_.size < 2:
        raise ValueError("a and b must hold at least two entries")
    a_, b_ = a_ - a_.mean(), b_ - b_.mean()
    na, nb = np.sqrt((a_**2).sum()), np.sqrt((b_**2).sum())
    if na == 0 or nb == 0:
        raise ValueError("a and b must not be constant (zero variance)")
    return float((a_ * b_).sum() / (na * nb))


def pca(points: ArrayLike, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of a point cloud (rows), by SVD of the centred data.

    Returns ``(projected (n, n_components), components (n_components, d), explained_variance_ratio
    (n_components,))`` as float64 numpy. Component signs are fixed so that each component's
    largest-magnitude coordinate is positive (deterministic output).
    """
    X = as_float_array(points, "points", ndim=2)
    X = X.detach().cpu().numpy() if is_torch(X) else np.asarray(X)
    X = X.astype(np.float64)
    n, d = X.shape
    k = check_int(n_components, "n_components", minimum=1)
    if k > min(n, d):
        raise ValueError(f"n_components must be <= min(n_points, dim) = {min(n, d)}, got {k}")
    Xc = X - X.mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    comps = Vt[:k]
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    comps = comps * signs[:, None]
    total = float((S**2).sum())
    ratio = (S[:k] ** 2) / total if total > 0 else np.zeros(k)
    return Xc @ comps.T, comps, ratio


def settling_step(trajectory: ArrayLike, fraction: float = 0.9) -> int:
    """First step ``t`` at which ``||X_t - X_0|| >= fraction * ||X_T - X_0||`` for a trajectory with
    the step axis first (any trailing shape): how long the quantity takes to make ``fraction`` of
    its total change. Returns 0 when the quantity does not change at all."""
    X = as_float_array(trajectory, "trajectory", min_ndim=1)
    X = X.detach().cpu().numpy() if is_torch(X) else np.asarray(X, dtype=np.float64)
    if X.shape[0] < 2:
        raise ValueError(f"trajectory must hold at least two steps, got {X.shape[0]}")
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    disp = np.linalg.norm((X - X[0]).reshape(X.shape[0], -1), axis=1)
    if disp[-1] == 0:
        return 0
    return int(np.argmax(disp >= f * disp[-1]))
