"""Every objective of the book, written in distances, with its gradient.

Notation (the book's, every chapter): ``d`` holds distances (energies) ``d_j``; logits are
``z_j = -d_j``; ``L = log sum_j exp(-d_j)`` is the log marginal likelihood, which is
*maximized*; a *loss* is what gradient descent *minimizes*. Every function says which of the
two it returns and which one its gradient differentiates.

Sections:

* **Log-sum-exp and its relatives** (chapters 1 to 3, 6): :func:`lse`, :func:`responsibilities`,
  :func:`lse_gradient` (Theorem 1), the cross-entropy, sigmoid and correntropy losses with their
  closed-form gradients, and :func:`naive_responsibilities` (the formula as written, for the
  floating-point study of chapter 3).
* **Other kernels, no normalization** (chapter 3): ``L_f = log sum_k f(d_k)`` for the kernels of
  :data:`KERNELS` (:func:`kernel_objective`, :func:`kernel_posterior`, :func:`kernel_score`,
  :func:`kernel_gradient`) and the partition function ``Z`` itself or any ``g(Z)``
  (:func:`partition_objective`).
* **The taxonomy** (chapter 7): the losses of ``LOSSES`` from their own distances
  (:func:`loss_from_distances`), their gradients and gradient Jacobians by autograd and in closed
  form, and the power family ``(Z^alpha - 1) / alpha`` (:func:`power_objective`,
  :func:`power_weights`, :func:`power_hessian`).
* **Multi-label losses in logits** (chapter 9): :func:`multilabel_loss`,
  :func:`logit_gradient_jacobian`.
* **Soft targets** (chapter 10): :func:`soft_cross_entropy` and its gradient ``q - r``,
  :func:`smooth_labels`, :func:`noisy_label_targets`, :func:`smoothing_fixed_point`.

All functions accept numpy arrays and torch tensors (the taxonomy's and the multi-label
functions compute in torch and return tensors); torch inputs keep their autograd graph, so
``torch.autograd.grad`` can be checked against the closed forms. Reductions are over ``dim``
(default: the last axis, the components).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._kernels import CORRENTROPY_SIGMA, LOSSES, OBJECTIVES, check_objective, point_loss
from ._validation import ArrayLike, as_float_array, as_tensor, check_dim, check_int, check_labels, check_positive, is_torch, to_numpy

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
    "naive_responsibilities",
    "KERNELS",
    "kernel_log_f",
    "kernel_score",
    "kernel_objective",
    "kernel_posterior",
    "kernel_gradient",
    "partition_objective",
    "OBJECTIVES",
    "LOSSES",
    "CORRENTROPY_SIGMA",
    "loss_from_distances",
    "distance_gradient",
    "gradient_jacobian",
    "gradient_jacobian_closed_form",
    "max_off_diagonal",
    "power_objective",
    "power_weights",
    "power_hessian",
    "MULTILABEL_OBJECTIVES",
    "multilabel_loss",
    "logit_gradient_jacobian",
    "soft_cross_entropy",
    "soft_cross_entropy_gradient",
    "smooth_labels",
    "noisy_label_targets",
    "smoothing_fixed_point",
]


# ================================================================================================
# Log-sum-exp and its relatives
# ================================================================================================
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

    Parameters
    ----------
    d : array or tensor, at least 1-D; dim : the axis of the components (as :func:`lse`)

    Returns
    -------
    The kind and shape of ``d``.
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

    Returns
    -------
    Same kind and shape as ``d``.
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
    y = check_labels(y, "y", d.shape[-1], shape=tuple(d.shape[:-1]) if d.ndim > 1 else None)
    if d.ndim == 1 and (y.ndim != 0 and tuple(y.shape) != (1,)):
        raise ValueError(f"y must be a single label for a 1-D d, got shape {tuple(y.shape)}")
    return d, y


def cross_entropy(d: ArrayLike, y: Any) -> ArrayLike:
    """Cross-entropy *loss* written in distances: ``d_y + log sum_k exp(-d_k)`` (minimized).

    With logits ``z = -d`` this is the familiar ``-z_y + log sum_k exp(z_k)``.

    Parameters
    ----------
    d : array or tensor (..., K)
        Distances; the components run along the last axis.
    y : integer labels of shape ``d.shape[:-1]`` (one label for a 1-D ``d``)

    Returns
    -------
    One loss per sample (no reduction), the kind of ``d``.
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

    Returns
    -------
    Same kind and shape as ``d``.
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


def _targets_like(t: ArrayLike, d: ArrayLike) -> ArrayLike:
    if is_torch(d):
        return t if is_torch(t) else torch.as_tensor(np.asarray(t), dtype=d.dtype, device=d.device)
    return np.asarray(t, dtype=d.dtype)


def sigmoid_bce(d: ArrayLike, t: Any) -> ArrayLike:
    """Independent-sigmoid binary cross-entropy *loss* (minimized), elementwise, in distances.

    Each component ``j`` has its own probability ``sigmoid(-d_j)`` and target ``t_j`` in
    [0, 1]; the loss ``softplus(-d_j) + t_j d_j`` has no partition function, so no
    component's gradient depends on any other component (no responsibilities).

    Parameters
    ----------
    d : array or tensor
        Distances.
    t : array or tensor of the shape of ``d``, values in [0, 1]
        Targets.

    Returns
    -------
    The elementwise loss, the kind and shape of ``d``.
    """
    d = as_float_array(d, "d")
    t = _targets_like(_check_targets(d, t), d)
    if is_torch(d):
        return torch.nn.functional.softplus(-d) + t * d
    return np.logaddexp(0.0, -d) + t * d


def sigmoid_bce_gradient(d: ArrayLike, t: Any) -> ArrayLike:
    """Closed-form gradient of :func:`sigmoid_bce` (the loss) with respect to ``d``: ``t_j - sigmoid(-d_j)``.

    Parameters
    ----------
    d : array or tensor; t : targets in [0, 1] of the shape of ``d``

    Returns
    -------
    The kind and shape of ``d``.
    """
    d = as_float_array(d, "d")
    t = _targets_like(_check_targets(d, t), d)
    if is_torch(d):
        return t - torch.sigmoid(-d)
    # numerically stable logistic: 1 / (1 + exp(d)) == exp(-logaddexp(0, d))
    return t - np.exp(-np.logaddexp(0.0, d))


def correntropy(d: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """Correntropy-kernel *loss* (minimized), elementwise: ``1 - exp(-d^2 / sigma^2)``.

    A Gaussian kernel with no partition function: a point far from a prototype
    (``|d| >> sigma``) gives a loss near 1 and a gradient near 0.

    Parameters
    ----------
    d : array or tensor
        Distances (here: not squared).
    sigma : float > 0
        Kernel width.

    Returns
    -------
    The elementwise loss, the kind and shape of ``d``.
    """
    d = as_float_array(d, "d")
    s = check_positive(sigma, "sigma")
    u = d / s
    if is_torch(d):
        return 1.0 - torch.exp(-(u**2))
    with np.errstate(over="ignore"):  # u**2 may overflow to inf: exp(-inf) = 0 is exact here
        return 1.0 - np.exp(-(u**2))


def correntropy_gradient(d: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """Closed-form gradient of :func:`correntropy` (the loss): ``(2 d / sigma^2) exp(-d^2 / sigma^2)``.

    Parameters
    ----------
    d : array or tensor; sigma : float > 0, the kernel width

    Returns
    -------
    The kind and shape of ``d``.
    """
    d = as_float_array(d, "d")
    s = check_positive(sigma, "sigma")
    u = d / s
    if is_torch(d):
        return (2.0 * u / s) * torch.exp(-(u**2))
    with np.errstate(over="ignore"):  # u**2 may overflow to inf; the factor exp(-inf) = 0 wins
        return (2.0 * u / s) * np.exp(-(u**2))


def naive_responsibilities(d: ArrayLike, dim: int = -1) -> np.ndarray:
    """``exp(-d_j) / sum_k exp(-d_k)`` exactly as written (no shift), in the dtype of ``d``.

    For study only: it returns NaN when every ``exp(-d_j)`` underflows to zero or one overflows,
    and loses relative accuracy without warning once the ``exp(-d_j)`` are subnormal
    (``d`` above about 87.3 in float32, 708.4 in float64).

    Returns
    -------
    numpy array of the shape and dtype of ``d`` (a tensor is converted).
    """
    d = to_numpy(as_float_array(d, "d", min_ndim=1))
    ax = check_dim(d, dim)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        e = np.exp(-d)
        return e / np.sum(e, axis=ax, keepdims=True)


# ================================================================================================
# Other kernels, no normalization (chapter 3)
# ================================================================================================
#: kernel name -> what it is: f, the allowed d, and the factor (log f)' between gradient and posterior
KERNELS: dict[str, str] = {
    "exponential": "f(d) = exp(-d), any d; (log f)' = -1",
    "inverse": "f(d) = 1/d, d > 0; (log f)' = -1/d",
    "cauchy": "f(d) = 1/(1 + d), d > -1; (log f)' = -1/(1 + d)",
    "gaussian": "f(d) = exp(-d^2), any d; (log f)' = -2 d",
}


def _check_kernel(kernel: Any, d: Any) -> tuple[str, ArrayLike]:
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    d = as_float_array(d, "d", min_ndim=1)
    lo = {"inverse": 0.0, "cauchy": -1.0}.get(kernel)
    if lo is not None:
        dmin = float(d.detach().min()) if is_torch(d) else float(np.min(d))
        if dmin <= lo:
            raise ValueError(f"d must be > {lo:g} for the {kernel} kernel, got a minimum of {dmin!r}")
    return kernel, d


def kernel_log_f(d: ArrayLike, kernel: str = "exponential") -> ArrayLike:
    """``log f(d)`` elementwise for one of :data:`KERNELS`.

    Parameters
    ----------
    d : array or tensor (``d > 0`` for ``"inverse"``, ``d > -1`` for ``"cauchy"``); kernel : a key of :data:`KERNELS`

    Returns
    -------
    The kind, dtype and shape of ``d``.
    """
    kernel, d = _check_kernel(kernel, d)
    t = is_torch(d)
    if kernel == "exponential":
        return -d
    if kernel == "inverse":
        return -(torch.log if t else np.log)(d)
    if kernel == "cauchy":
        return -(torch.log1p if t else np.log1p)(d)
    return -(d**2)


def kernel_score(d: ArrayLike, kernel: str = "exponential") -> ArrayLike:
    """``(log f)'(d)`` elementwise: the factor between the gradient of ``L_f`` and the posterior.

    Parameters
    ----------
    d : array or tensor; kernel : a key of :data:`KERNELS`

    Returns
    -------
    The kind and shape of ``d``.
    """
    kernel, d = _check_kernel(kernel, d)
    if kernel == "exponential":
        return -(d * 0 + 1)
    if kernel == "inverse":
        return -1.0 / d
    if kernel == "cauchy":
        return -1.0 / (1.0 + d)
    return -2.0 * d


def kernel_objective(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """``L_f = log sum_k f(d_k)`` over ``dim`` (an objective, maximized), computed stably.

    It is :func:`lse` of the distances ``-log f(d)``; with ``kernel="exponential"`` it is
    :func:`lse` itself. Torch inputs keep their graph.

    Parameters
    ----------
    d : array or tensor, at least 1-D; kernel : a key of :data:`KERNELS`; dim : the axis of the components

    Returns
    -------
    The kind of ``d``, with ``dim`` removed.
    """
    return lse(-kernel_log_f(d, kernel), dim=dim)


def kernel_posterior(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """``w_j = f(d_j) / sum_k f(d_k)``: the posterior of component ``j`` under kernel ``f``
    (equal priors), the :func:`responsibilities` of the distances ``-log f(d)``. For the
    exponential kernel these are the responsibilities of ``d``.

    Parameters
    ----------
    d : array or tensor, at least 1-D; kernel : a key of :data:`KERNELS`; dim : the axis of the components

    Returns
    -------
    The kind and shape of ``d``.
    """
    return responsibilities(-kernel_log_f(d, kernel), dim=dim)


def kernel_gradient(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """Closed form ``dL_f/dd_j = w_j * (log f)'(d_j)`` of :func:`kernel_objective` (the objective, maximized).

    Posterior-weighted for every kernel; equal to ``-w_j`` only for the exponential kernel.
    Parameters as :func:`kernel_posterior`.

    Returns
    -------
    The gradient, of the kind and shape of ``d``.
    """
    return kernel_posterior(d, kernel, dim) * kernel_score(d, kernel)


def partition_objective(d: ArrayLike, g: Callable[[ArrayLike], ArrayLike] | None = None, dim: int = -1) -> ArrayLike:
    """``Z = sum_j exp(-d_j)`` over ``dim`` (the exponential kept, the normalizing logarithm
    dropped), or ``g(Z)`` for a callable ``g`` (an objective, maximized).

    The gradient of ``Z`` is ``-exp(-d_j) = -Z r_j``: it splits within a point exactly as the
    responsibilities do, but its per-point mass is ``Z`` and no component's gradient depends on
    another's distance. For ``L = g(Z)``, ``dL/dd_j = -g'(Z) Z r_j``; only ``g = log`` gives
    weights that sum to one (see :func:`power_weights`).

    Parameters
    ----------
    d : array or tensor, at least 1-D
        Distances; the components run along ``dim``.
    g : callable, optional
        Applied to ``Z`` (a tensor for torch ``d``); torch ``d`` keeps its graph, so autograd
        differentiates any ``g``.
    dim : int
        Axis of the components.

    Returns
    -------
    ``Z`` or ``g(Z)``: the kind of ``d``, with ``dim`` removed.
    """
    if g is not None and not callable(g):
        raise ValueError(f"g must be None or a callable of Z, got {type(g).__name__}")
    d = as_float_array(d, "d", min_ndim=1)
    ax = check_dim(d, dim)
    Z = (torch.exp(-d) if is_torch(d) else np.exp(-d)).sum(ax)
    return Z if g is None else g(Z)


# ================================================================================================
# The taxonomy (chapter 7): losses from their own distances, their couplings
# ================================================================================================


def loss_from_distances(objective: str, d: Any) -> torch.Tensor:
    """Per-sample loss (minimized) from the objective's own distances ``d`` (N, K).

    ``"lse"``: ``-log sum_j exp(-d_j)``; ``"sqrt"``: ``2 - 2 sqrt(Z)``; ``"partition"``: ``-Z``
    (``Z = sum_j exp(-d_j)``); ``"sigmoid"``: ``sum_j sigmoid_bce(d_j, 1) = sum_j softplus(d_j)``;
    ``"correntropy"``: ``sum_j correntropy(d_j, CORRENTROPY_SIGMA)`` (here ``d`` is the distance
    ``rho``, not squared; see :func:`iemlib.distances.objective_distances`).

    Returns
    -------
    torch tensor (N,); a torch ``d`` keeps its graph.
    """
    objective = check_objective(objective)
    return point_loss(objective, as_tensor(d, "d", ndim=2))


def distance_gradient(objective: str, d: Any) -> torch.Tensor:
    """``g_ij = d loss_i / d d_ij`` of :func:`loss_from_distances` (the loss, minimized) by autograd.

    Parameters
    ----------
    objective : one of ``LOSSES`` or ``"partition"``; d : (N, K) the objective's own distances

    Returns
    -------
    torch tensor (N, K).
    """
    objective = check_objective(objective)
    d = as_tensor(d, "d", ndim=2).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(point_loss(objective, d).sum(), d)
    return g


def gradient_jacobian(objective: str, d: Any) -> torch.Tensor:
    """Per-sample Jacobian ``J_i[j, k] = d g_ij / d d_ik`` of the loss gradient, by autograd.

    Off-diagonal entries measure how one component's gradient depends on another component's
    distance: the coupling that normalization creates.

    Returns
    -------
    torch tensor (N, K, K).
    """
    objective = check_objective(objective)
    d = as_tensor(d, "d", ndim=2).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(point_loss(objective, d).sum(), d, create_graph=True)
    K = d.shape[1]
    rows = []
    for j in range(K):
        (hj,) = torch.autograd.grad(g[:, j].sum(), d, retain_graph=j < K - 1, allow_unused=True)
        rows.append(torch.zeros_like(d) if hj is None else hj)
    return torch.stack(rows, dim=1).detach()


def gradient_jacobian_closed_form(objective: str, d: Any) -> torch.Tensor:
    """Closed forms of :func:`gradient_jacobian`, shape (N, K, K).

    ``"lse"`` (loss ``-L``, gradient ``r``): ``r r^T - diag(r)``, off-diagonal ``+r_j r_k``
    (for the maximized objective ``L``, whose gradient is ``-r``, every sign flips).
    ``"sqrt"``: ``-power_hessian(d, 1/2)``. ``"partition"`` (gradient ``exp(-d)``):
    ``-diag(exp(-d))``. ``"sigmoid"`` (gradient ``1 - sigmoid(-d)``):
    ``diag(sigmoid(d) sigmoid(-d))``. ``"correntropy"`` (gradient
    ``(2 d / sigma^2) exp(-d^2 / sigma^2)``): ``diag((2 / sigma^2)(1 - 2 d^2 / sigma^2) exp(-d^2 / sigma^2))``.

    Parameters
    ----------
    objective : one of ``LOSSES`` or ``"partition"``; d : (N, K) the objective's own distances

    Returns
    -------
    torch tensor (N, K, K).
    """
    objective = check_objective(objective)
    d = as_tensor(d, "d", ndim=2).detach()
    if objective == "lse":
        r = torch.softmax(-d, dim=-1)
        return r[:, :, None] * r[:, None, :] - torch.diag_embed(r)
    if objective == "sqrt":
        return -power_hessian(d, 0.5)
    if objective == "partition":
        return -torch.diag_embed(torch.exp(-d))
    if objective == "sigmoid":
        return torch.diag_embed(torch.sigmoid(d) * torch.sigmoid(-d))
    s2 = CORRENTROPY_SIGMA**2
    return torch.diag_embed((2.0 / s2) * (1.0 - 2.0 * d**2 / s2) * torch.exp(-(d**2) / s2))


def max_off_diagonal(J: Any) -> float:
    """Largest ``|J_i[j, k]|`` over samples and ``j != k``.

    Parameters
    ----------
    J : (N, K, K) a stack of square matrices (e.g. :func:`gradient_jacobian`)

    Returns
    -------
    float (0.0 for K = 1).
    """
    J = as_tensor(J, "J", ndim=3)
    if J.shape[1] != J.shape[2]:
        raise ValueError(f"J must hold square matrices, got shape {tuple(J.shape)}")
    mask = ~torch.eye(J.shape[1], dtype=torch.bool)
    if not mask.any():
        return 0.0
    return float(J[:, mask].abs().max())


def _check_alpha(alpha: Any) -> float:
    return float(as_float_array(alpha, "alpha", ndim=0))


def power_objective(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """The power family ``L_i = (Z_i^alpha - 1) / alpha`` (maximized), ``alpha = 0`` giving ``log Z_i``.

    ``alpha = 0`` is the log-sum-exp objective; ``alpha = 1`` is ``Z - 1`` (separable: the
    correntropy kernel of chapter 7 up to a constant); ``alpha = 1/2`` is ``2 (sqrt(Z) - 1)``
    (the ``"sqrt"`` loss is its negative). The maximum L_q-likelihood family of Ferrari and
    Yang (2010), ``alpha = 1 - q``. Computed through ``log Z`` (stable for any finite ``d``).

    Parameters
    ----------
    d : array or tensor (N, K)
    alpha : float

    Returns
    -------
    torch tensor (N,), keeping a torch ``d``'s graph.
    """
    d = as_tensor(d, "d", ndim=2)
    a = _check_alpha(alpha)
    logZ = lse(d, dim=-1)
    if a == 0.0:
        return logZ
    return torch.expm1(a * logZ) / a


def power_weights(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """Closed-form update weights ``w_ij = -dL_i/dd_ij = Z_i^alpha r_ij`` of :func:`power_objective` (maximized).

    ``dL/dd_j = -g'(Z) exp(-d_j)`` with ``g'(Z) = Z^(alpha - 1)``: within a point the weights are
    the responsibilities ``r_ij`` scaled by ``Z_i^alpha``, so they sum to ``Z_i^alpha``, which is
    one for every ``d`` only when ``alpha = 0`` (the log).

    Parameters
    ----------
    d : (N, K) distances; alpha : float

    Returns
    -------
    torch tensor (N, K).
    """
    d = as_tensor(d, "d", ndim=2).detach()
    a = _check_alpha(alpha)
    return torch.exp(a * lse(d, dim=-1))[:, None] * torch.softmax(-d, dim=-1)


def power_hessian(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """Closed-form ``H_i[j, k] = d^2 L_i / dd_ij dd_ik`` of :func:`power_objective` (maximized).

    ``H = Z^alpha ((alpha - 1) r r^T + diag(r))``: off-diagonal ``(alpha - 1) Z^alpha r_j r_k``,
    zero only for ``alpha = 1``, the one member of the family that is affine in ``Z``. For
    ``alpha = 0`` it is ``diag(r) - r r^T``, the negative of the log-sum-exp loss Jacobian.

    Parameters
    ----------
    d : (N, K) distances; alpha : float

    Returns
    -------
    torch tensor (N, K, K).
    """
    d = as_tensor(d, "d", ndim=2).detach()
    a = _check_alpha(alpha)
    r = torch.softmax(-d, dim=-1)
    za = torch.exp(a * lse(d, dim=-1))[:, None, None]
    return za * ((a - 1.0) * r[:, :, None] * r[:, None, :] + torch.diag_embed(r))


# ================================================================================================
# Multi-label losses in logits (chapter 9)
# ================================================================================================
#: The two multi-label losses: independent sigmoids, and softmax against the normalized label set.
MULTILABEL_OBJECTIVES: tuple[str, ...] = ("sigmoid", "softmax")


def _check_multilabel(z: Any, t: Any, objective: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    if objective not in MULTILABEL_OBJECTIVES:
        raise ValueError(f"objective must be one of {MULTILABEL_OBJECTIVES}, got {objective!r}")
    z = as_tensor(z, "z", ndim=2)
    t = as_tensor(t, "t", ndim=2).to(z.dtype)
    if tuple(t.shape) != tuple(z.shape):
        raise ValueError(f"t must have the shape of z {tuple(z.shape)}, got {tuple(t.shape)}")
    return z, t, str(objective)


def _multilabel_loss(z: torch.Tensor, t: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "sigmoid":
        # binary cross-entropy in logits: softplus(z) - t z, summed over labels
        return (torch.nn.functional.softplus(z) - t * z).sum(-1)
    # softmax cross-entropy against the label set normalized to sum to one
    q = t / t.sum(-1, keepdim=True).clamp_min(1.0)
    return -(q * torch.log_softmax(z, dim=-1)).sum(-1)


def multilabel_loss(z: Any, t: Any, objective: str = "sigmoid") -> torch.Tensor:
    """Per-sample multi-label *loss* (minimized) of logits ``z`` (N, K) against targets ``t`` (N, K).

    ``"sigmoid"``: the sum of independent binary cross-entropies ``softplus(z_j) - t_j z_j`` (no
    partition function; with ``d = -z`` it is ``sum_j sigmoid_bce(d_j, t_j)``); ``"softmax"``:
    the cross-entropy ``-sum_j q_j log softmax(z)_j`` against the label set normalized to sum to
    one, ``q = t / max(1, sum_j t_j)`` (labels compete; a point with no label has loss 0).

    Parameters
    ----------
    z : (N, K) logits; t : (N, K) targets (0/1 labels); objective : ``"sigmoid"`` or ``"softmax"``

    Returns
    -------
    torch tensor (N,), keeping a torch ``z``'s graph.
    """
    z, t, objective = _check_multilabel(z, t, objective)
    return _multilabel_loss(z, t, objective)


def logit_gradient_jacobian(z: Any, t: Any, objective: str = "sigmoid") -> torch.Tensor:
    """Per-sample Jacobian ``J_i[j, k] = d g_ij / d z_ik`` of the :func:`multilabel_loss` gradient
    ``g = d loss / d z``, by autograd.

    For ``"sigmoid"`` it is ``diag(p (1 - p))`` with ``p = sigmoid(z)``: the gradient of label
    ``j`` depends on ``z_j`` and ``t_j`` only. For ``"softmax"`` it is ``(sum_j q_j) (diag(p) - p p^T)``
    with ``p = softmax(z)``.

    Parameters
    ----------
    z : (N, K) logits; t : (N, K) targets; objective : ``"sigmoid"`` or ``"softmax"``

    Returns
    -------
    torch tensor (N, K, K).
    """
    z, t, objective = _check_multilabel(z, t, objective)
    z = z.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_multilabel_loss(z, t, objective).sum(), z, create_graph=True)
    rows = []
    for j in range(z.shape[1]):
        (h,) = torch.autograd.grad(g[:, j].sum(), z, retain_graph=True)
        rows.append(h)
    return torch.stack(rows, dim=1).detach()


# ================================================================================================
# Soft targets (chapter 10)
# ================================================================================================
def _check_probability_rows(q: ArrayLike, name: str, tol: float = 1e-6) -> None:
    lo = float(q.min())
    if lo < -tol:
        raise ValueError(f"{name} must be non-negative (a distribution per row), got a minimum of {lo:.3g}")
    s = q.sum(-1)
    dev = float((s - 1).abs().max()) if is_torch(s) else float(np.max(np.abs(s - 1)))
    if dev > tol:
        raise ValueError(f"{name} must have rows summing to 1, off by up to {dev:.3g}")


def _check_soft(d: Any, q: Any) -> tuple[ArrayLike, ArrayLike]:
    d = as_float_array(d, "d", min_ndim=1)
    q = as_float_array(q, "q", min_ndim=1)
    if tuple(q.shape) != tuple(d.shape):
        raise ValueError(f"q must have the same shape as d {tuple(d.shape)}, got {tuple(q.shape)}")
    _check_probability_rows(q, "q")
    if is_torch(d):
        q = q.to(d.dtype) if is_torch(q) else torch.as_tensor(np.asarray(q), dtype=d.dtype, device=d.device)
    else:
        q = to_numpy(q, d.dtype)
    return d, q


def soft_cross_entropy(d: Any, q: Any) -> ArrayLike:
    """Cross-entropy *loss* (minimized) against a soft target ``q``, per sample, in distances.

    ``loss = sum_j q_j d_j + log sum_k exp(-d_k) = -sum_j q_j log r_j``, for rows of ``q``
    summing to one. A one-hot ``q`` gives the ordinary :func:`cross_entropy`.

    Returns
    -------
    The kind of ``d``, with the last axis removed.
    """
    d, q = _check_soft(d, q)
    return (q * d).sum(-1) + lse(d, dim=-1)


def soft_cross_entropy_gradient(d: Any, q: Any) -> ArrayLike:
    """Closed-form gradient of :func:`soft_cross_entropy` (the loss) with respect to ``d``: ``q_j - r_j``.

    The labelled class is pulled only until ``r_y = q_y`` (the clamp is partial), and a wrong
    class with ``r_j < q_j`` is pulled *closer* rather than pushed away.

    Parameters
    ----------
    d : array or tensor (..., K) distances; q : soft targets of the same shape, rows summing to one

    Returns
    -------
    The kind and shape of ``d``.
    """
    d, q = _check_soft(d, q)
    return q - responsibilities(d, dim=-1)


def _check_eps(eps: Any, name: str = "eps") -> float:
    e = check_positive(eps, name, allow_zero=True)
    if e > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {eps!r}")
    return e


def _onehot_labels(y: Any, K: int) -> torch.Tensor:
    y = check_labels(y, "y", K)
    yt = (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()
    return torch.nn.functional.one_hot(yt, K).to(torch.float64)


def smooth_labels(y: Any, n_classes: int, eps: float) -> torch.Tensor:
    """Label smoothing: ``q = (1 - eps) onehot(y) + eps / K``, rows summing to one.

    Parameters
    ----------
    y : integer labels in [0, K); n_classes : K >= 2; eps : float in [0, 1]

    Returns
    -------
    float64 tensor of shape ``y.shape + (K,)``.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    e = _check_eps(eps)
    return (1.0 - e) * _onehot_labels(y, K) + e / K


def noisy_label_targets(y: Any, n_classes: int, rho: float) -> torch.Tensor:
    """The expected one-hot target under symmetric label noise of rate ``rho``.

    A label is kept with probability ``1 - rho`` and otherwise replaced by one of the ``K - 1``
    other classes uniformly, so ``E[onehot] = (1 - rho) onehot(y) + rho / (K - 1) (1 - onehot(y))``:
    label smoothing with ``eps = rho K / (K - 1)``.

    Parameters
    ----------
    y : integer labels in [0, K)
    n_classes : K >= 2
    rho : float in [0, 1], the probability that a label is replaced

    Returns
    -------
    float64 tensor ``y.shape + (K,)`` with rows summing to one.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    p = _check_eps(rho, "rho")
    oh = _onehot_labels(y, K)
    return (1.0 - p) * oh + p / (K - 1) * (1.0 - oh)


def smoothing_fixed_point(eps: float, n_classes: int) -> float:
    """The responsibility of the labelled class where the smoothed loss is stationary: ``1 - eps + eps / K``.

    Parameters
    ----------
    eps : float in [0, 1]; n_classes : K >= 2

    Returns
    -------
    float
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    e = _check_eps(eps)
    return 1.0 - e + e / K
