"""Theorem 1's three conditions, re-examined (chapter 3).

The paper (Oursland, §3.3) says implicit EM needs an exponential, a normalization and a gradient.
This module holds the computations that test each condition:

* **Other kernels.** For ``L_f = log sum_k f(d_k)`` (maximized) with a positive decreasing kernel
  ``f``, the chain rule gives ``dL_f/dd_j = w_j * (log f)'(d_j)`` with ``w_j = f(d_j) / sum_k f(d_k)``,
  the posterior of component ``j`` when ``f`` is its likelihood. The gradient is still
  posterior-weighted; only for ``f = exp(-d)`` is the factor ``(log f)'`` the constant ``-1``, so that
  the gradient *is* (minus) the posterior. :func:`kernel_objective`, :func:`kernel_posterior`,
  :func:`kernel_score` and :func:`kernel_gradient`.
* **No normalization.** :func:`partition_objective` is ``Z = sum_j exp(-d_j)`` (no logarithm); its
  gradient splits within one point exactly as the responsibilities do, but its per-point mass is
  ``Z`` and no component's gradient depends on another's distance. :func:`fit_prototypes_batch`
  runs the prototype learner of chapter 1 on either objective for a batch of seeds at once.
* **No gradient.** :func:`es_gradient` is the antithetic Gaussian evolution-strategy estimate of
  the gradient of the prototype loss; its expectation is the gradient of the Gaussian-smoothed loss,
  which :func:`smoothed_gradient` estimates from closed-form gradients at perturbed points.
* **Floating point.** :func:`naive_responsibilities` evaluates ``exp(-d)/sum exp(-d)`` as written,
  in the dtype of ``d``, to measure how much accuracy it loses in the subnormal range before it
  returns NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_dim, check_int, check_positive, is_torch

__all__ = [
    "KERNELS",
    "kernel_log_f",
    "kernel_objective",
    "kernel_posterior",
    "kernel_score",
    "kernel_gradient",
    "partition_objective",
    "prototype_loss_batch",
    "prototype_loss_gradient_batch",
    "BatchRun",
    "fit_prototypes_batch",
    "clusters_covered",
    "es_gradient",
    "es_gradient_path",
    "smoothed_gradient",
    "naive_responsibilities",
]

#: kernel name -> what it is: f, the allowed d, and the factor (log f)' between gradient and posterior
KERNELS: dict[str, str] = {
    "exponential": "f(d) = exp(-d), any d; (log f)' = -1",
    "inverse": "f(d) = 1/d, d > 0; (log f)' = -1/d",
    "cauchy": "f(d) = 1/(1 + d), d > -1; (log f)' = -1/(1 + d)",
    "gaussian": "f(d) = exp(-d^2), any d; (log f)' = -2 d",
}


def _check_kernel(kernel: Any) -> str:
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    return kernel


def _check_kernel_d(d: Any, kernel: str) -> ArrayLike:
    d = as_float_array(d, "d", min_ndim=1)
    lo = {"inverse": 0.0, "cauchy": -1.0}.get(kernel)
    if lo is not None:
        dmin = float(d.detach().min()) if is_torch(d) else float(np.min(d))
        if dmin <= lo:
            raise ValueError(f"d must be > {lo:g} for the {kernel} kernel, got a minimum of {dmin!r}")
    return d


def kernel_log_f(d: ArrayLike, kernel: str = "exponential") -> ArrayLike:
    """``log f(d)`` elementwise for one of :data:`KERNELS` (same kind and dtype as ``d``)."""
    kernel = _check_kernel(kernel)
    d = _check_kernel_d(d, kernel)
    t = is_torch(d)
    log = torch.log if t else np.log
    log1p = torch.log1p if t else np.log1p
    if kernel == "exponential":
        return -d
    if kernel == "inverse":
        return -log(d)
    if kernel == "cauchy":
        return -log1p(d)
    return -(d**2)


def kernel_score(d: ArrayLike, kernel: str = "exponential") -> ArrayLike:
    """``(log f)'(d)`` elementwise: the factor between the gradient and the posterior."""
    kernel = _check_kernel(kernel)
    d = _check_kernel_d(d, kernel)
    if kernel == "exponential":
        return -(d * 0 + 1)
    if kernel == "inverse":
        return -1.0 / d
    if kernel == "cauchy":
        return -1.0 / (1.0 + d)
    return -2.0 * d


def _lse_pos(a: ArrayLike, ax: int) -> ArrayLike:
    if is_torch(a):
        return torch.logsumexp(a, dim=ax)
    m = np.max(a, axis=ax, keepdims=True)
    return np.squeeze(m + np.log(np.sum(np.exp(a - m), axis=ax, keepdims=True)), axis=ax)


def _softmax_pos(a: ArrayLike, ax: int) -> ArrayLike:
    if is_torch(a):
        return torch.softmax(a, dim=ax)
    e = np.exp(a - np.max(a, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


def kernel_objective(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """``L_f = log sum_k f(d_k)`` over ``dim`` (an objective, maximized), computed stably.

    With ``kernel="exponential"`` this is :func:`iemlib.lse`. Torch inputs keep their graph.
    """
    kernel = _check_kernel(kernel)
    d = _check_kernel_d(d, kernel)
    ax = check_dim(d, dim)
    return _lse_pos(kernel_log_f(d, kernel), ax)


def kernel_posterior(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """``w_j = f(d_j) / sum_k f(d_k)``: the posterior of component ``j`` under kernel ``f``
    (equal priors). For the exponential kernel these are the responsibilities."""
    kernel = _check_kernel(kernel)
    d = _check_kernel_d(d, kernel)
    ax = check_dim(d, dim)
    return _softmax_pos(kernel_log_f(d, kernel), ax)


def kernel_gradient(d: ArrayLike, kernel: str = "exponential", dim: int = -1) -> ArrayLike:
    """Closed form ``dL_f/dd_j = w_j * (log f)'(d_j)`` of :func:`kernel_objective` (the objective).

    Posterior-weighted for every kernel; equal to ``-w_j`` only for the exponential kernel.
    """
    return kernel_posterior(d, kernel, dim) * kernel_score(d, kernel)


def partition_objective(d: ArrayLike, dim: int = -1) -> ArrayLike:
    """``Z = sum_j exp(-d_j)`` over ``dim``: the exponential kept, the normalizing logarithm dropped
    (an objective, maximized). Its gradient is ``-exp(-d_j) = -Z r_j``."""
    d = as_float_array(d, "d", min_ndim=1)
    ax = check_dim(d, dim)
    return (torch.exp(-d) if is_torch(d) else np.exp(-d)).sum(ax)


# ---------------------------------------------------------------------------------------------
# The prototype loss for a batch of prototype sets (seeds, or ES perturbations) at once.
# ---------------------------------------------------------------------------------------------

_OBJECTIVES = ("lse", "partition")


def _check_batch(x: Any, means: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """x: (N, D) or (S, N, D); means: (B, K, D). Returns float64 tensors (x with a batch axis)."""
    x = as_float_array(x, "x", ndim=(2, 3))
    means = as_float_array(means, "means", ndim=3)
    xt = x.detach().to(torch.float64) if is_torch(x) else torch.as_tensor(np.asarray(x), dtype=torch.float64)
    mt = means.detach().to(torch.float64) if is_torch(means) else torch.as_tensor(np.asarray(means), dtype=torch.float64)
    shared = xt.ndim == 2
    if shared:
        xt = xt[None]
    if xt.shape[-1] != mt.shape[-1]:
        raise ValueError(f"means must have {xt.shape[-1]} columns (the dimension of x), got shape {tuple(mt.shape)}")
    if not shared and xt.shape[0] != mt.shape[0]:
        raise ValueError(f"means must have one prototype set per data set ({xt.shape[0]}), got {mt.shape[0]}")
    return xt, mt, shared


def _batch_d(x: torch.Tensor, m: torch.Tensor, sigma: float) -> torch.Tensor:
    # x (S or 1, N, D), m (B, K, D) -> (B, N, K)
    return ((x[:, :, None, :] - m[:, None, :, :]) ** 2).sum(-1) / (2.0 * sigma * sigma)


def _check_objective(objective: Any) -> str:
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
    return objective


def prototype_loss_batch(x: ArrayLike, means: ArrayLike, sigma: float = 1.0, objective: str = "lse") -> np.ndarray:
    """The chapter-1 loss for every prototype set in ``means`` (shape (B, K, D)), a (B,) array.

    ``objective="lse"``: ``-(1/N) sum_i log sum_j exp(-d_ij)``; ``"partition"``:
    ``-(1/N) sum_i sum_j exp(-d_ij)`` (no normalization). ``x`` is one data set (N, D) shared by
    all B sets, or one per set (B, N, D). Distances ``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)``.
    """
    xt, mt, _ = _check_batch(x, means)
    s = check_positive(sigma, "sigma")
    objective = _check_objective(objective)
    d = _batch_d(xt, mt, s)
    per_point = torch.logsumexp(-d, dim=-1) if objective == "lse" else torch.exp(-d).sum(-1)
    return (-per_point.mean(-1)).numpy()


def prototype_loss_gradient_batch(
    x: ArrayLike, means: ArrayLike, sigma: float = 1.0, objective: str = "lse"
) -> np.ndarray:
    """Closed-form gradient of :func:`prototype_loss_batch` with respect to every prototype,
    shape (B, K, D): ``-(1/(N sigma^2)) sum_i c_ij (x_i - mu_j)`` with ``c_ij = r_ij`` (lse) or
    ``c_ij = exp(-d_ij)`` (partition)."""
    xt, mt, _ = _check_batch(x, means)
    s = check_positive(sigma, "sigma")
    objective = _check_objective(objective)
    return _grad_batch(xt, mt, s, objective).numpy()


def _grad_batch(xt: torch.Tensor, mt: torch.Tensor, s: float, objective: str) -> torch.Tensor:
    d = _batch_d(xt, mt, s)
    c = torch.softmax(-d, dim=-1) if objective == "lse" else torch.exp(-d)  # (B, N, K)
    N = xt.shape[1]
    xb = xt.expand(mt.shape[0], -1, -1) if xt.shape[0] == 1 else xt
    pull = torch.einsum("bnk,bnd->bkd", c, xb) - c.sum(1)[..., None] * mt
    return -pull / (N * s * s)


@dataclass(frozen=True)
class BatchRun:
    """A batch of gradient-descent runs: ``means`` (n_steps+1, B, K, D), ``loss`` (n_steps+1, B)."""

    objective: str
    sigma: float
    lr: float
    means: np.ndarray
    loss: np.ndarray

    @property
    def final_means(self) -> np.ndarray:
        return self.means[-1]


def fit_prototypes_batch(
    x: ArrayLike,
    means_init: ArrayLike,
    *,
    sigma: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 100,
    objective: str = "lse",
) -> BatchRun:
    """Full-batch gradient descent on :func:`prototype_loss_batch` for B prototype sets at once
    (closed-form gradients, float64). ``x``: (N, D) shared or (B, N, D), one data set per run."""
    xt, mt, _ = _check_batch(x, means_init)
    s = check_positive(sigma, "sigma")
    lr = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=0)
    objective = _check_objective(objective)
    means = np.empty((n + 1, *mt.shape))
    losses = np.empty((n + 1, mt.shape[0]))
    mu = mt.clone()
    for t in range(n + 1):
        means[t] = mu.numpy()
        d = _batch_d(xt, mu, s)
        per_point = torch.logsumexp(-d, dim=-1) if objective == "lse" else torch.exp(-d).sum(-1)
        losses[t] = (-per_point.mean(-1)).numpy()
        if t < n:
            mu = mu - lr * _grad_batch(xt, mu, s, objective)
    return BatchRun(objective, s, lr, means, losses)


def clusters_covered(means: ArrayLike, centers: ArrayLike, radius: float) -> np.ndarray:
    """For each prototype set in ``means`` (B, K, D): how many of the ``centers`` (C, D) have a
    prototype within ``radius``. Returns a (B,) integer array."""
    m = as_float_array(means, "means", ndim=3)
    c = as_float_array(centers, "centers", ndim=2)
    m = m.detach().cpu().numpy() if is_torch(m) else np.asarray(m, dtype=np.float64)
    c = c.detach().cpu().numpy() if is_torch(c) else np.asarray(c, dtype=np.float64)
    if m.shape[-1] != c.shape[-1]:
        raise ValueError(f"centers must have {m.shape[-1]} columns, got shape {c.shape}")
    rad = check_positive(radius, "radius")
    dist = np.linalg.norm(m[:, :, None, :] - c[None, None, :, :], axis=-1)  # (B, K, C)
    return (dist.min(1) < rad).sum(-1)


# ---------------------------------------------------------------------------------------------
# Evolution strategies: the expected update is the gradient of a smoothed loss.
# ---------------------------------------------------------------------------------------------


def _perturbations(shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    # numpy fills the array in order, so the first k of n draws do not depend on n
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, *shape)))


def es_gradient(
    x: ArrayLike,
    means: ArrayLike,
    *,
    sigma: float = 1.0,
    smoothing: float = 0.1,
    n_samples: int = 100,
    seed: int = 0,
    chunk: int = 2048,
) -> np.ndarray:
    """Antithetic Gaussian evolution-strategy estimate of the gradient of the prototype loss.

    ``g = (1 / (2 n s)) sum_k eps_k [loss(mu + s eps_k) - loss(mu - s eps_k)]`` with ``eps_k`` iid
    standard normal of the shape of ``means`` (K, D), ``s = smoothing``. It uses loss values only
    (2 n of them). Its expectation is the gradient of the smoothed loss
    ``E_eps[loss(mu + s eps)]``, see :func:`smoothed_gradient`. Returns a (K, D) array.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return es_gradient_path(x, means, [n_samples], sigma=sigma, smoothing=smoothing, seed=seed, chunk=chunk)[0]


def es_gradient_path(
    x: ArrayLike,
    means: ArrayLike,
    sample_sizes: Any,
    *,
    sigma: float = 1.0,
    smoothing: float = 0.1,
    seed: int = 0,
    chunk: int = 2048,
) -> np.ndarray:
    """:func:`es_gradient` for several sample sizes at once, from the prefixes of one stream of
    perturbations (the estimate with ``n`` samples uses the first ``n``), so the cost is that of the
    largest size. Returns an array of shape (len(sample_sizes), K, D)."""
    m = as_float_array(means, "means", ndim=2)
    sm = check_positive(smoothing, "smoothing")
    sizes = [check_int(n, "sample_sizes", minimum=1) for n in np.atleast_1d(np.asarray(sample_sizes)).tolist()]
    if not sizes:
        raise ValueError("sample_sizes must hold at least one positive integer")
    seed = check_int(seed, "seed", minimum=0)
    ch = check_int(chunk, "chunk", minimum=1)
    check_positive(sigma, "sigma")
    mt = m.detach().to(torch.float64) if is_torch(m) else torch.as_tensor(np.asarray(m), dtype=torch.float64)
    n = max(sizes)
    eps = _perturbations(tuple(mt.shape), n, seed)
    contrib = torch.empty_like(eps)
    for a in range(0, n, ch):
        e = eps[a : a + ch]
        lp = torch.as_tensor(prototype_loss_batch(x, mt + sm * e, sigma))
        lm = torch.as_tensor(prototype_loss_batch(x, mt - sm * e, sigma))
        contrib[a : a + ch] = (lp - lm)[:, None, None] * e / (2.0 * sm)
    csum = contrib.cumsum(0)
    return np.stack([(csum[k - 1] / k).numpy() for k in sizes])


def smoothed_gradient(
    x: ArrayLike,
    means: ArrayLike,
    *,
    sigma: float = 1.0,
    smoothing: float = 0.1,
    n_samples: int = 10_000,
    seed: int = 0,
    chunk: int = 2048,
) -> np.ndarray:
    """Monte-Carlo estimate of the gradient of the smoothed loss, ``E_eps[grad loss(mu + s eps)]``,
    from closed-form (responsibility-weighted) gradients at ``n_samples`` perturbed points (antithetic
    pairs). The ES estimate :func:`es_gradient` has the same expectation. Returns a (K, D) array."""
    m = as_float_array(means, "means", ndim=2)
    sm = check_positive(smoothing, "smoothing")
    n = check_int(n_samples, "n_samples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    ch = check_int(chunk, "chunk", minimum=1)
    s = check_positive(sigma, "sigma")
    mt = m.detach().to(torch.float64) if is_torch(m) else torch.as_tensor(np.asarray(m), dtype=torch.float64)
    xt, _, _ = _check_batch(x, mt[None])
    eps = _perturbations(tuple(mt.shape), n, seed)
    total = torch.zeros_like(mt)
    for a in range(0, n, ch):
        e = eps[a : a + ch]
        total += _grad_batch(xt, mt + sm * e, s, "lse").sum(0) + _grad_batch(xt, mt - sm * e, s, "lse").sum(0)
    return (total / (2.0 * n)).numpy()


# ---------------------------------------------------------------------------------------------
# Floating point: the formula as written.
# ---------------------------------------------------------------------------------------------


def naive_responsibilities(d: ArrayLike, dim: int = -1) -> np.ndarray:
    """``exp(-d_j) / sum_k exp(-d_k)`` exactly as written (no shift), in the dtype of ``d``.

    For study only: it returns NaN when every ``exp(-d_j)`` underflows to zero or one overflows,
    and loses relative accuracy without warning once the ``exp(-d_j)`` are subnormal
    (``d`` above about 87.3 in float32, 708.4 in float64). Numpy in, numpy out.
    """
    d = as_float_array(d, "d", min_ndim=1)
    if is_torch(d):
        d = d.detach().cpu().numpy()
    ax = check_dim(d, dim)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        e = np.exp(-d)
        return e / np.sum(e, axis=ax, keepdims=True)
