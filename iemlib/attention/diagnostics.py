"""Training diagnostics for attention heads (Agarwal, Dalal and Misra 2025, §8.1), principal
components of value trajectories, and the two settling steps of a training history.

The diagnostics are generic over attention outputs: they take the arrays an attention head produces
(``alpha`` of shape ``(..., T, T)`` with rows summing to one, values ``v`` and upstream gradients
``u`` of shape ``(..., T, d_v)``), with any leading batch or time axes, as numpy arrays or torch
tensors, and return the same kind. They compute nothing about a particular model, so they apply to
:func:`iemlib.attention.closed_form_backward`'s outputs, to a training history stacked along a
leading step axis, or to a real transformer's head.

Signs. ``u_i = dL/dg_i`` is a gradient of the cross-entropy **loss** (minimized). :func:`advantage`
is the paper's §3.4 ``A_ij = -(b_ij - E_{alpha_i}[b])``, positive where a gradient-descent step
*raises* the score ``s_ij``; its negative ``b_ij - E_{alpha_i}[b]`` is §8.1's "advantage matrix"
and the factor in ``dL/ds_ij = alpha_ij (b_ij - E_{alpha_i}[b])``.

Settling steps, two different measurements:

* :func:`displacement_step` — the first step at which a trajectory has made a given fraction
  (default 90 %) of its total displacement from the start (chapter 5's ``t90``);
* :func:`decay_step` — the first step, after its peak, at which a non-negative per-step change
  (such as ``||alpha_{t+1} - alpha_t||``) has fallen to a given fraction (default 10 %) of that
  peak (chapter 8's "settles").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .._validation import ArrayLike, as_float_array, as_numpy, check_int, check_positive, is_torch

__all__ = [
    "compatibility",
    "advantage",
    "column_usage",
    "value_norms",
    "attention_entropy",
    "PCA",
    "pca",
    "displacement_step",
    "decay_step",
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


def _as_pair(a: ArrayLike, b: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Two arrays, one of them a tensor, as tensors of their promoted dtype (on ``a``'s or ``b``'s device)."""
    a_ = a if is_torch(a) else torch.as_tensor(a, device=b.device)
    b_ = b if is_torch(b) else torch.as_tensor(b, device=a_.device)
    dtype = torch.promote_types(a_.dtype, b_.dtype)
    return a_.to(dtype), b_.to(dtype)


def compatibility(u: ArrayLike, v: ArrayLike) -> ArrayLike:
    """Compatibility matrix ``B = (b_ij)``, ``b_ij = u_i^T v_j`` (§2.2, §8.1).

    Parameters
    ----------
    u : ``(..., T_q, d_v)``
        Upstream gradients ``dL/dg_i`` of the **loss**.
    v : ``(..., T_k, d_v)``
        Values.

    Returns
    -------
    ``(..., T_q, T_k)``: ``b_ij = dL/dalpha_ij``; negative means more attention from ``i`` to ``j``
    would lower the loss.
    """
    u = as_float_array(u, "u", min_ndim=2)
    v = as_float_array(v, "v", min_ndim=2)
    if u.shape[-1] != v.shape[-1]:
        raise ValueError(f"u and v must share their last axis (d_v), got {tuple(u.shape)} and {tuple(v.shape)}")
    if is_torch(u) or is_torch(v):
        u_, v_ = _as_pair(u, v)
        return u_ @ v_.transpose(-1, -2)
    return u @ np.swapaxes(v, -1, -2)


def advantage(B: ArrayLike, alpha: ArrayLike, mask: Any = None) -> ArrayLike:
    """The paper's §3.4 advantage ``A_ij = -(b_ij - E_{alpha_i}[b])``, ``E_{alpha_i}[b] = sum_j alpha_ij b_ij``.

    Positive ``A_ij``: ``v_j`` is better than the attention-weighted average for query ``i``
    (lower ``dL/dalpha``), and a gradient-descent step on the loss moves ``s_ij`` by
    ``+eta * alpha_ij * A_ij`` — up. ``-A`` is §8.1's "advantage matrix".

    Parameters
    ----------
    B : ``(..., T, T)`` compatibilities (:func:`compatibility`).
    alpha : ``(..., T, T)`` attention weights, rows summing to one.
    mask : boolean, broadcastable to ``B``'s shape (True = allowed); masked entries are set to 0.

    Returns
    -------
    ``A`` of ``B``'s shape (torch when ``B`` or ``alpha`` is).
    """
    alpha = _check_alpha(alpha)
    B = as_float_array(B, "B", min_ndim=2)
    if tuple(B.shape) != tuple(alpha.shape):
        raise ValueError(f"B must have the same shape as alpha {tuple(alpha.shape)}, got {tuple(B.shape)}")
    m = _check_mask(mask, tuple(B.shape))
    if is_torch(B) or is_torch(alpha):
        B_, a_ = _as_pair(B, alpha)
        out = B_ - (a_ * B_).sum(-1, keepdim=True)
        if m is not None:
            keep = torch.as_tensor(np.broadcast_to(m, tuple(out.shape)).copy(), device=out.device)
            out = out.masked_fill(~keep, 0.0)
        return -out
    out = B - np.sum(alpha * B, axis=-1, keepdims=True)
    if m is not None:
        out = np.where(m, out, 0.0)
    return -out


def column_usage(alpha: ArrayLike) -> ArrayLike:
    """Column usage ``sum_i alpha_ij`` (§8.1), shape ``(..., T)``: how much attention value ``j``
    receives in total. Sums to ``T`` over ``j``; a column near 0 is an unused ("dead") value.

    Parameters
    ----------
    alpha : ``(..., T, T)`` attention weights, rows summing to one.
    """
    alpha = _check_alpha(alpha)
    return alpha.sum(-2)


def value_norms(v: ArrayLike) -> ArrayLike:
    """Euclidean norms ``||v_j||`` of value vectors (last axis), shape ``v.shape[:-1]`` (§8.1).

    Parameters
    ----------
    v : ``(..., d_v)`` values.
    """
    v = as_float_array(v, "v", min_ndim=1)
    if is_torch(v):
        return torch.linalg.vector_norm(v, dim=-1)
    return np.linalg.norm(v, axis=-1)


def attention_entropy(alpha: ArrayLike) -> ArrayLike:
    """Entropy in nats of each query's attention row, ``-sum_j alpha_ij log alpha_ij`` (``0 log 0 = 0``).

    Parameters
    ----------
    alpha : ``(..., T, T)`` attention weights, rows summing to one.

    Returns
    -------
    Shape ``alpha.shape[:-1]``: ``log T`` for uniform attention, 0 for one-hot.
    """
    alpha = _check_alpha(alpha)
    if is_torch(alpha):
        return -torch.special.xlogy(alpha, alpha).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(alpha > 0, alpha * np.log(np.where(alpha > 0, alpha, 1.0)), 0.0)
    return -terms.sum(-1)


class PCA(NamedTuple):
    """:func:`pca`'s outputs (a named tuple: ``projected, components, ratio = pca(...)``).

    Attributes
    ----------
    projected
        ``(n, n_components)`` the centred points in the components' coordinates.
    components
        ``(n_components, d)`` unit principal directions.
    explained_variance_ratio
        ``(n_components,)`` share of the total variance along each.
    """

    projected: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray


def pca(points: ArrayLike, n_components: int = 2) -> PCA:
    """Principal components of a point cloud (rows), by SVD of the centred data.

    Parameters
    ----------
    points : ``(n, d)``
    n_components : ``<= min(n, d)``

    Returns
    -------
    PCA
        float64 numpy. Component signs are fixed so that each component's largest-magnitude
        coordinate is positive (deterministic output).
    """
    X = as_numpy(points, "points", ndim=2)
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
    return PCA(Xc @ comps.T, comps, ratio)


def displacement_step(trajectory: ArrayLike, fraction: float = 0.9) -> int:
    """First step ``t`` at which ``||X_t - X_0|| >= fraction * ||X_T - X_0||``.

    How long a quantity takes to make ``fraction`` of its total change (chapter 5's ``t90``).

    Parameters
    ----------
    trajectory : ``(n_steps + 1, ...)``, the step axis first (any trailing shape).
    fraction : in ``(0, 1]``.

    Returns
    -------
    int
        The step; 0 when the quantity does not change at all.
    """
    X = as_numpy(trajectory, "trajectory", min_ndim=1)
    if X.shape[0] < 2:
        raise ValueError(f"trajectory must hold at least two steps, got {X.shape[0]}")
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    disp = np.linalg.norm((X - X[0]).reshape(X.shape[0], -1), axis=1)
    if disp[-1] == 0:
        return 0
    return int(np.argmax(disp >= f * disp[-1]))


def decay_step(curve: ArrayLike, steps: ArrayLike, fraction: float = 0.1) -> float:
    """First step, after its peak, at which a non-negative per-step change has fallen to ``fraction``
    of that peak: when a quantity such as ``||alpha_{t+1} - alpha_t||`` "settles" (chapter 8).

    Parameters
    ----------
    curve : ``(n,)`` the per-step change, measured at ``steps``.
    steps : ``(n,)`` the steps of the measurements.
    fraction : > 0.

    Returns
    -------
    float
        That step, ``nan`` if the change never falls so far.
    """
    c = as_numpy(curve, "curve", ndim=1)
    st = np.asarray(steps)
    if st.shape != c.shape:
        raise ValueError(f"steps must have the shape of curve {c.shape}, got {st.shape}")
    f = check_positive(fraction, "fraction")
    k = int(np.argmax(c))
    hit = np.nonzero(c[k:] <= f * c[k])[0]
    return float(st[k + hit[0]]) if hit.size else float("nan")
