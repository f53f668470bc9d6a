"""Chapter 1's prototype learner: plain gradient descent on a log-sum-exp loss.

Data ``x_i`` (N points in D dimensions), prototypes ``mu_j`` (K of them), a fixed width
``sigma``, distances ``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)`` and the *loss* (minimized)

    loss(mu) = -(1/N) sum_i log sum_j exp(-d_ij),

the negative mean of ``L_i = lse(d_i)``. By Theorem 1, ``d loss / d d_ij = r_ij / N``: the
learner reads the responsibilities off the autograd gradient with respect to the distances
(it never calls a softmax), and records them with the means and the mean responsibility
entropy at every step.

For contrast, :func:`fit_prototypes_random_search` minimizes the same loss without gradients
(accept a random perturbation of all prototypes when the loss drops), so its updates are not
responsibility-weighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_int, check_positive, is_torch
from .objectives import lse, responsibilities

__all__ = [
    "PrototypeRun",
    "prototype_distances",
    "prototype_loss",
    "responsibility_entropy",
    "prototype_loss_gradient",
    "em_mean_update",
    "em_mean_update_batch",
    "nearest_center_match",
    "fit_prototypes",
    "fit_prototypes_random_search",
    "update_alignment",
]


def _as_tensor(a: ArrayLike) -> torch.Tensor:
    return a.to(torch.float64) if is_torch(a) else torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _check_xm(x: Any, means: Any, means_name: str = "means") -> tuple[torch.Tensor, torch.Tensor]:
    x = as_float_array(x, "x", ndim=2)
    means = as_float_array(means, means_name, ndim=2)
    if x.shape[1] != means.shape[1]:
        raise ValueError(
            f"{means_name} must have {x.shape[1]} columns (the dimension of x), got shape {tuple(means.shape)}"
        )
    return _as_tensor(x), _as_tensor(means)


def prototype_distances(x: ArrayLike, means: ArrayLike, sigma: float = 1.0) -> torch.Tensor:
    """``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)``, shape (N, K), float64."""
    x_t, m_t = _check_xm(x, means)
    s = check_positive(sigma, "sigma")
    return _dist(x_t, m_t, s)  # a torch ``means`` keeps its graph (``.to`` is differentiable)


def _dist(x: torch.Tensor, m: torch.Tensor, s: float) -> torch.Tensor:
    return ((x[:, None, :] - m[None, :, :]) ** 2).sum(-1) / (2.0 * s * s)


def prototype_loss(x: ArrayLike, means: ArrayLike, sigma: float = 1.0) -> torch.Tensor:
    """The loss (minimized) ``-(1/N) sum_i log sum_j exp(-d_ij)``, a scalar tensor."""
    return -lse(prototype_distances(x, means, sigma), dim=1).mean()


def responsibility_entropy(r: ArrayLike) -> float:
    """Mean over rows of ``-sum_j r_ij log r_ij`` (nats; ``0 log 0 = 0``). Rows must be
    non-negative and sum to one (within 1e-6). ``log K`` is the maximum (uniform), 0 is hard."""
    r = as_float_array(r, "r", ndim=2)
    r_np = r.detach().cpu().numpy() if is_torch(r) else np.asarray(r)
    r_np = r_np.astype(np.float64)
    if r_np.min() < 0 or not np.allclose(r_np.sum(1), 1.0, atol=1e-6):
        raise ValueError("r must hold non-negative rows that sum to one")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(r_np > 0, r_np * np.log(np.where(r_np > 0, r_np, 1.0)), 0.0)
    return float(-t.sum(1).mean())


def prototype_loss_gradient(x: ArrayLike, means: ArrayLike, sigma: float = 1.0) -> np.ndarray:
    """Closed form of ``d loss / d mu_j = -(1/(N sigma^2)) sum_i r_ij (x_i - mu_j)``: the
    responsibility-weighted pull of every point on every prototype (gradient of the loss)."""
    x_t, m_t = _check_xm(x, means)
    s = check_positive(sigma, "sigma")
    r = responsibilities(_dist(x_t, m_t, s), dim=1)  # (N, K)
    N = x_t.shape[0]
    pull = r.T @ x_t - r.sum(0)[:, None] * m_t  # sum_i r_ij (x_i - mu_j)
    return (-pull / (N * s * s)).numpy()


def em_mean_update(x: ArrayLike, means: ArrayLike, sigma: float = 1.0) -> np.ndarray:
    """One classical EM step for the means (equal weights, fixed sigma):
    ``mu_j <- sum_i r_ij x_i / sum_i r_ij``. A prototype with no responsibility at all keeps its mean."""
    x_t, m_t = _check_xm(x, means)
    s = check_positive(sigma, "sigma")
    r = responsibilities(_dist(x_t, m_t, s), dim=1)
    Nj = r.sum(0)
    new = (r.T @ x_t) / torch.where(Nj > 0, Nj, 1.0)[:, None]
    return torch.where((Nj > 0)[:, None], new, m_t).numpy()


def em_mean_update_batch(x: ArrayLike, means: ArrayLike, sigma: float = 1.0, n_steps: int = 1) -> np.ndarray:
    """``n_steps`` classical EM mean updates (equal weights, fixed sigma) for B prototype sets at
    once. ``x``: one data set (N, D) or one per set (B, N, D); ``means``: (B, K, D). Returns the
    means after the last update, shape (B, K, D). A prototype with no responsibility keeps its mean."""
    x = as_float_array(x, "x", ndim=(2, 3))
    m = as_float_array(means, "means", ndim=3)
    s = check_positive(sigma, "sigma")
    n = check_int(n_steps, "n_steps", minimum=0)
    xt = _as_tensor(x)
    mt = _as_tensor(m).clone()
    if xt.ndim == 2:
        xt = xt[None].expand(mt.shape[0], -1, -1)
    if xt.shape[0] != mt.shape[0] or xt.shape[-1] != mt.shape[-1]:
        raise ValueError(f"means must have shape (B, K, {xt.shape[-1]}) with B = {xt.shape[0]}, got {tuple(mt.shape)}")
    for _ in range(n):
        d = ((xt[:, :, None, :] - mt[:, None, :, :]) ** 2).sum(-1) / (2.0 * s * s)
        r = torch.softmax(-d, dim=-1)  # (B, N, K)
        Nj = r.sum(1)  # (B, K)
        new = torch.einsum("bnk,bnd->bkd", r, xt) / torch.where(Nj > 0, Nj, 1.0)[..., None]
        mt = torch.where((Nj > 0)[..., None], new, mt)
    return mt.numpy()


def nearest_center_match(means: ArrayLike, centers: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """For prototype sets ``means`` (B, K, D) and true ``centers`` (C, D): whether the K prototypes'
    nearest centres are all different (a (B,) bool array; needs K <= C to be possible) and the
    largest distance from a prototype to its nearest centre (a (B,) array)."""
    m = as_float_array(means, "means", ndim=3)
    c = as_float_array(centers, "centers", ndim=2)
    m = m.detach().cpu().numpy() if is_torch(m) else np.asarray(m, dtype=np.float64)
    c = c.detach().cpu().numpy() if is_torch(c) else np.asarray(c, dtype=np.float64)
    if m.shape[-1] != c.shape[-1]:
        raise ValueError(f"centers must have {m.shape[-1]} columns, got shape {c.shape}")
    dist = np.linalg.norm(m[:, :, None, :] - c[None, None, :, :], axis=-1)  # (B, K, C)
    nearest = dist.argmin(-1)
    distinct = np.array([len(set(row.tolist())) == m.shape[1] for row in nearest])
    return distinct, dist.min(-1).max(-1)


@dataclass(frozen=True)
class PrototypeRun:
    """A recorded optimization run (index 0 is the start, index t after t steps).

    means: (T+1, K, D); responsibilities: (T+1, N, K) (empty when not recorded);
    entropy, loss: (T+1,); accepted: (T,) bool for random search, all True for gradient descent.
    """

    method: str
    sigma: float
    step: float
    means: np.ndarray
    responsibilities: np.ndarray
    entropy: np.ndarray
    loss: np.ndarray
    accepted: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.means.shape[0] - 1

    @property
    def final_means(self) -> np.ndarray:
        return self.means[-1]


def _check_run_args(x, means_init, sigma, step, step_name, n_steps):
    x_t, m_t = _check_xm(x, means_init, "means_init")
    s = check_positive(sigma, "sigma")
    st = check_positive(step, step_name)
    n = check_int(n_steps, "n_steps", minimum=0)
    return x_t, m_t, s, st, n


def fit_prototypes(
    x: ArrayLike,
    means_init: ArrayLike,
    *,
    sigma: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 100,
    record_responsibilities: bool = True,
) -> PrototypeRun:
    """Plain (full-batch) gradient descent ``mu <- mu - lr * d loss / d mu`` with torch autograd.

    Responsibilities are read from the autograd gradient of the loss with respect to the
    distances, ``r_ij = N * d loss / d d_ij`` (Theorem 1), not from a softmax.
    """
    x_t, mu, s, lr, n = _check_run_args(x, means_init, sigma, lr, "lr", n_steps)
    if not isinstance(record_responsibilities, bool):
        raise ValueError(f"record_responsibilities must be a bool, got {record_responsibilities!r}")
    N, (K, D) = x_t.shape[0], mu.shape
    means = np.empty((n + 1, K, D))
    resp = np.empty((n + 1, N, K)) if record_responsibilities else np.empty((0, N, K))
    ent, losses = np.empty(n + 1), np.empty(n + 1)
    mu = mu.clone()
    for t in range(n + 1):
        mu_ = mu.clone().requires_grad_(True)
        d = _dist(x_t, mu_, s)
        loss = -lse(d, dim=1).mean()
        g_d, g_mu = torch.autograd.grad(loss, [d, mu_])
        r = (N * g_d).clamp_min(0.0)  # exact up to rounding; clamp guards -0.0-level noise
        means[t] = mu.numpy()
        losses[t] = float(loss.detach())
        if record_responsibilities:
            resp[t] = r.numpy()
        ent[t] = responsibility_entropy(r / r.sum(1, keepdim=True))
        if t < n:
            mu = mu - lr * g_mu
    return PrototypeRun("gradient descent", s, lr, means, resp, ent, losses, np.ones(n, dtype=bool))


def fit_prototypes_random_search(
    x: ArrayLike,
    means_init: ArrayLike,
    *,
    sigma: float = 1.0,
    step_size: float = 0.1,
    n_steps: int = 100,
    seed: int = 0,
    record_responsibilities: bool = True,
) -> PrototypeRun:
    """Gradient-free minimization of the same loss: propose ``mu + step_size * N(0, I)`` for all
    prototypes at once and accept when the loss decreases. Responsibilities (recorded for
    comparison) come from a softmax here; they play no part in the updates."""
    x_t, mu, s, step, n = _check_run_args(x, means_init, sigma, step_size, "step_size", n_steps)
    seed = check_int(seed, "seed", minimum=0)
    if not isinstance(record_responsibilities, bool):
        raise ValueError(f"record_responsibilities must be a bool, got {record_responsibilities!r}")
    g = torch.Generator().manual_seed(seed)
    N, (K, D) = x_t.shape[0], mu.shape
    means = np.empty((n + 1, K, D))
    resp = np.empty((n + 1, N, K)) if record_responsibilities else np.empty((0, N, K))
    ent, losses, acc = np.empty(n + 1), np.empty(n + 1), np.zeros(n, dtype=bool)

    def loss_of(m: torch.Tensor) -> float:
        return float(-lse(_dist(x_t, m, s), dim=1).mean())

    cur = loss_of(mu)
    for t in range(n + 1):
        r = responsibilities(_dist(x_t, mu, s), dim=1)
        means[t], losses[t] = mu.numpy(), cur
        if record_responsibilities:
            resp[t] = r.numpy()
        ent[t] = responsibility_entropy(r)
        if t < n:
            prop = mu + step * torch.randn(K, D, generator=g, dtype=torch.float64)
            new = loss_of(prop)
            if new < cur:
                mu, cur, acc[t] = prop, new, True
    return PrototypeRun("random search", s, step, means, resp, ent, losses, acc)


def update_alignment(
    x: ArrayLike, run: PrototypeRun, components: Any = None, *, min_pull: float = 1e-6
) -> np.ndarray:
    """Cosine between each accepted update of a prototype and its responsibility-weighted pull.

    For every accepted step ``t`` of ``run`` and every prototype ``j`` in ``components`` (default:
    all), the cosine between the update ``mu_j(t+1) - mu_j(t)`` and the pull
    ``-d loss / d mu_j = sum_i r_ij (x_i - mu_j) / (N sigma^2)`` at ``mu(t)`` (the negative gradient
    of the loss, see :func:`prototype_loss_gradient`). Pairs whose pull is shorter than
    ``min_pull`` are skipped (the prototype has converged, or owns no data). Gradient descent gives
    cosines of exactly one; a gradient-free learner does not. Returns a flat float64 array.
    """
    if not isinstance(run, PrototypeRun):
        raise ValueError(f"run must be a PrototypeRun, got {type(run).__name__}")
    x_np = as_float_array(x, "x", ndim=2)
    x_np = x_np.detach().cpu().numpy() if is_torch(x_np) else np.asarray(x_np, dtype=np.float64)
    K, D = run.means.shape[1:]
    if x_np.shape[1] != D:
        raise ValueError(f"x must have {D} columns (the dimension of the run's means), got shape {x_np.shape}")
    if components is None:
        comps = np.arange(K)
    else:
        comps = np.asarray(components)
        if comps.ndim != 1 or comps.size == 0 or not np.issubdtype(comps.dtype, np.integer) or comps.min() < 0 or comps.max() >= K:
            raise ValueError(f"components must be a non-empty list of indices in [0, {K}), got {components!r}")
    mp = check_positive(min_pull, "min_pull")
    cos = []
    for t in np.flatnonzero(run.accepted):
        step = run.means[t + 1] - run.means[t]
        pull = -prototype_loss_gradient(x_np, run.means[t], run.sigma)
        for j in comps:
            npull = np.linalg.norm(pull[j])
            if npull < mp:
                continue
            cos.append(step[j] @ pull[j] / (np.linalg.norm(step[j]) * npull + 1e-300))
    return np.asarray(cos, dtype=np.float64)
