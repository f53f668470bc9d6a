"""Reading responsibilities off a backward pass, and what they say about a mixture's health.

By Theorem 1 the gradient of a log-sum-exp loss with respect to the distances ``d`` *is* the
responsibilities (up to the loss's scale and, for a supervised loss, the targets). This module reads
them off a real backward pass and diagnoses them:

* :class:`ResponsibilityHook` records the gradient flowing through ``d`` on its way to the
  parameters (a tensor hook: what the M-step actually receives) and
  :func:`responsibilities_from_gradient` turns such a gradient into responsibilities;
* :func:`responsibility_defect` says whether the result is a distribution at all (it is not when the
  loss has no partition function, e.g. independent sigmoids);
* :func:`specialization` measures how sharply points are assigned (entropy, effective number of
  components, usage) and :func:`detect_degeneration` flags dead or dominating components and a
  mixture that does not specialize.

Conventions (the book's): ``d`` are distances, logits ``z = -d``; ``L = log sum_j exp(-d_j)`` is the
objective (maximized); a loss is minimized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import ArrayLike, as_float_array, as_numpy, check_labels, check_positive, is_torch, to_numpy

__all__ = [
    "responsibilities_from_gradient",
    "ResponsibilityHook",
    "responsibility_defect",
    "Specialization",
    "specialization",
    "Degeneration",
    "detect_degeneration",
]


def _check_probability_rows(q: ArrayLike, name: str, tol: float = 1e-6) -> None:
    qq = to_numpy(q, np.float64)
    if qq.min() < -tol or np.abs(qq.sum(-1) - 1.0).max() > tol:
        raise ValueError(f"{name} must hold probability distributions along its last axis (non-negative, summing to 1)")


def _is_float_array(x: Any) -> bool:
    if is_torch(x):
        return torch.is_floating_point(x)
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)


def responsibilities_from_gradient(grad_d: ArrayLike, targets: Any = None, scale: float = 1.0) -> ArrayLike:
    """Recover responsibilities from the gradient of a *loss* (minimized) with respect to ``d``.

    Two loss forms are covered, with ``c = scale`` (e.g. ``1/N`` for a mean over ``N`` samples):

    * unsupervised (``targets=None``): ``loss = -c sum_i L_i`` with ``L_i = log sum_j exp(-d_ij)``
      (the negative of the maximized objective). By Theorem 1 ``d loss / d d_ij = c r_ij``, so
      ``r = grad_d / c``;
    * supervised (``targets`` = integer labels of shape (N,) or a soft target ``q`` of ``grad_d``'s
      shape): ``loss = c sum_i [sum_j q_ij d_ij + L_i]`` (cross-entropy; hard labels are one-hot
      ``q``), whose gradient is ``c (q_ij - r_ij)``, so ``r = q - grad_d / c``.

    Parameters
    ----------
    grad_d : (..., K) gradient of the loss with respect to the distances.
    targets : None, integer labels of shape ``grad_d.shape[:-1]``, or float targets of ``grad_d``'s shape.
    scale : float > 0, the factor ``c``.

    Returns
    -------
    The same kind as ``grad_d`` (numpy or torch). Nothing here checks that the loss *was* of that
    form; :func:`responsibility_defect` says whether the result is a distribution.
    """
    g = as_float_array(grad_d, "grad_d", min_ndim=1)
    c = check_positive(scale, "scale")
    if targets is None:
        return g / c
    K = g.shape[-1]
    if _is_float_array(targets):
        q = as_float_array(targets, "targets")
        if tuple(q.shape) != tuple(g.shape):
            raise ValueError(f"targets must have the shape of grad_d {tuple(g.shape)}, got {tuple(q.shape)}")
        _check_probability_rows(q, "targets")
    else:
        y = check_labels(targets, "targets", K, shape=tuple(g.shape[:-1]))
        if is_torch(g):
            yt = y if is_torch(y) else torch.as_tensor(np.asarray(y))
            q = nn.functional.one_hot(yt.long().to(g.device), K).to(g.dtype)
        else:
            q = np.eye(K, dtype=g.dtype)[to_numpy(y)]
    if is_torch(g) and not is_torch(q):
        q = torch.as_tensor(np.asarray(q), dtype=g.dtype, device=g.device)
    elif not is_torch(g) and is_torch(q):
        q = to_numpy(q, g.dtype)
    return q - g / c


class ResponsibilityHook:
    """Read responsibilities off a real backward pass through a tensor hook on the distances.

    Usage::

        hook = ResponsibilityHook()
        d = hook.watch(distance_fn(x))          # registers the hook, returns d unchanged
        loss = -torch.logsumexp(-d, 1).sum()    # or a cross-entropy in d
        loss.backward()                         # the parameters get their gradients as usual
        r = hook.responsibilities()             # = grad / scale (or q - grad / scale)

    The hook only *records* the gradient flowing through ``d`` on its way to the parameters (what
    the M-step actually receives); it does not change it. Attribute ``grad`` holds the last one
    (``None`` before the first backward pass).
    """

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None

    def watch(self, d: torch.Tensor) -> torch.Tensor:
        """Register the hook on ``d`` and return ``d`` unchanged.

        Parameters
        ----------
        d : floating-point tensor (..., K) of distances that requires grad.

        Returns
        -------
        d itself.
        """
        if not is_torch(d) or not torch.is_floating_point(d):
            raise ValueError(f"d must be a floating-point torch tensor, got {type(d).__name__}")
        if not d.requires_grad:
            raise ValueError("d must require grad (it must depend on trainable parameters)")
        if d.ndim < 1 or d.shape[-1] == 0:
            raise ValueError(f"d must have components along its last axis, got shape {tuple(d.shape)}")

        def _record(g: torch.Tensor) -> None:
            self.grad = g.detach().clone()

        d.register_hook(_record)
        return d

    def responsibilities(self, targets: Any = None, scale: float = 1.0) -> torch.Tensor:
        """Responsibilities from the last recorded gradient.

        Parameters
        ----------
        targets, scale : as in :func:`responsibilities_from_gradient`.

        Returns
        -------
        tensor of the recorded gradient's shape.
        """
        if self.grad is None:
            raise ValueError("no gradient recorded yet: call watch(d) and run a backward pass first")
        return responsibilities_from_gradient(self.grad, targets=targets, scale=scale)


def responsibility_defect(r: ArrayLike) -> float:
    """How far the rows of ``r`` are from probability distributions: ``max(|sum_j r_j - 1|, -min r)``.

    About machine precision when ``r`` came from the gradient of a log-sum-exp loss; large when the
    loss has no partition function (independent sigmoids, for instance), where the same recipe
    recovers numbers that are not responsibilities.

    Parameters
    ----------
    r : (..., K) float array or tensor.

    Returns
    -------
    float >= 0
    """
    rr = as_numpy(r, "r", min_ndim=1)
    return float(max(np.max(np.abs(rr.sum(-1) - 1.0)), max(0.0, -float(rr.min()))))


@dataclass(frozen=True, eq=False)
class Specialization:
    """Specialization statistics of a responsibility matrix (:func:`specialization`).

    Attributes
    ----------
    entropy
        (N,) ``H_i = -sum_j r_ij log r_ij`` in nats (0: one component takes the point;
        ``log K``: an even split).
    mean_entropy
        mean of ``H_i``.
    normalized_entropy
        mean of ``H_i / log K``, in [0, 1] (0 when K = 1).
    effective_components
        (N,) ``exp(H_i)``, how many components share point ``i`` (1 to K).
    mean_effective_components
        their mean.
    usage
        (K,) mean responsibility of each component over the points (sums to one).
    effective_usage
        ``exp`` of the entropy of ``usage``: how many components are in use over the
        whole data set (1 to K).
    """

    entropy: np.ndarray
    mean_entropy: float
    normalized_entropy: float
    effective_components: np.ndarray
    mean_effective_components: float
    usage: np.ndarray
    effective_usage: float


def specialization(r: ArrayLike) -> Specialization:
    """Specialization statistics of a responsibility matrix whose rows are distributions.

    Parameters
    ----------
    r : (N, K) responsibilities (rows non-negative, summing to one within 1e-6).

    Returns
    -------
    Specialization: per-point entropies, effective numbers of components, usage.
    """
    rr = as_numpy(r, "r", ndim=2)
    _check_probability_rows(rr, "r", tol=1e-6)
    rr = np.clip(rr, 0.0, None)
    K = rr.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.sum(np.where(rr > 0, rr * np.log(rr), 0.0), axis=1)
    usage = rr.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        Hu = -np.sum(np.where(usage > 0, usage * np.log(usage), 0.0))
    return Specialization(
        entropy=H,
        mean_entropy=float(H.mean()),
        normalized_entropy=float(H.mean() / math.log(K)) if K > 1 else 0.0,
        effective_components=np.exp(H),
        mean_effective_components=float(np.exp(H).mean()),
        usage=usage,
        effective_usage=float(np.exp(Hu)),
    )


@dataclass(frozen=True, eq=False)
class Degeneration:
    """The verdict of :func:`detect_degeneration`.

    Attributes
    ----------
    dead
        components whose usage is below ``dead_fraction / K``.
    dominant
        components whose usage exceeds ``dominant_share``.
    unspecialized
        whether the mean normalized responsibility entropy exceeds ``blur_entropy``.
    degenerate
        any of the three.
    usage
        (K,) mean responsibility of each component.
    normalized_entropy
        mean ``H_i / log K``.
    message
        the verdict in words ("healthy" when not degenerate).
    """

    dead: list[int]
    dominant: list[int]
    unspecialized: bool
    degenerate: bool
    usage: np.ndarray
    normalized_entropy: float
    message: str


def _check_unit_interval(value: Any, name: str) -> float:
    v = check_positive(value, name)
    if v >= 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return v


def detect_degeneration(r: ArrayLike, dead_fraction: float = 0.1, dominant_share: float = 0.75,
                        blur_entropy: float = 0.9) -> Degeneration:
    """Flag a degenerate mixture from its responsibilities.

    * a component is **dead** when its usage (mean responsibility) is below ``dead_fraction / K``:
      it explains almost nothing and, since its gradient is weighted by its responsibilities, it also
      learns almost nothing;
    * a component **dominates** when its usage exceeds ``dominant_share``;
    * the mixture is **unspecialized** when the mean normalized responsibility entropy exceeds
      ``blur_entropy``: every point is split almost evenly, the responsibilities carry no assignment
      (the blur of chapter 9's mixture without a volume term).

    Parameters
    ----------
    r : (N, K) responsibilities.
    dead_fraction : float > 0. dominant_share : float in (0, 1). blur_entropy : float in (0, 1).

    Returns
    -------
    Degeneration
    """
    df = check_positive(dead_fraction, "dead_fraction")
    ds = _check_unit_interval(dominant_share, "dominant_share")
    be = _check_unit_interval(blur_entropy, "blur_entropy")
    s = specialization(r)
    K = len(s.usage)
    dead = [int(j) for j in np.flatnonzero(s.usage < df / K)]
    dom = [int(j) for j in np.flatnonzero(s.usage > ds)]
    blur = bool(K > 1 and s.normalized_entropy > be)
    parts = []
    if dead:
        parts.append(f"dead component(s) {dead}")
    if dom:
        parts.append(f"dominating component(s) {dom}")
    if blur:
        parts.append(f"unspecialized (entropy/log K = {s.normalized_entropy:.3f})")
    return Degeneration(dead=dead, dominant=dom, unspecialized=blur, degenerate=bool(dead or dom or blur),
                        usage=s.usage, normalized_entropy=s.normalized_entropy,
                        message="; ".join(parts) if parts else "healthy")
