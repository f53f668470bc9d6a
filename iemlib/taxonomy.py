"""The taxonomy of §4.4: one mixture task, three objectives, and what couples their gradients.

The paper's claim (Oursland, 2025, §4.4) is that *normalization* is what turns
distances into responsibilities. This module puts three losses on the same footing, all
written in terms of the energy ``e_ij = ||x_i - mu_j||^2 / (2 s^2)`` of point ``i`` under
prototype ``j`` (``s`` is a fixed length scale), and all **minimized** by gradient descent:

``"lse"``
    the negative log marginal likelihood ``-log sum_j exp(-e_ij)`` (the loss ``-L``; the
    objective ``L`` is maximized). Normalized: its gradient weights are responsibilities.
``"sigmoid"``
    independent sigmoids, each component claiming the point on its own: component ``j`` has
    membership ``sigmoid(-e_ij)`` and target 1, i.e. ``iemlib.objectives.sigmoid_bce(e, 1)``
    summed over components, ``sum_j softplus(e_ij)``. No partition function.
``"correntropy"``
    the correntropy kernel of the Euclidean distance ``rho_ij = ||x_i - mu_j|| / s`` with
    kernel width ``sqrt(2)``, ``iemlib.objectives.correntropy(rho, sqrt(2))`` summed over
    components, ``sum_j 1 - exp(-e_ij)``. No partition function either.

The distance each objective takes as its argument (``e`` for the first two, ``rho`` for the
correntropy kernel) is what :func:`gradient_jacobian` differentiates against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_int, check_positive
from .objectives import correntropy, lse, sigmoid_bce

__all__ = [
    "OBJECTIVES",
    "CORRENTROPY_SIGMA",
    "make_mixture_task",
    "energies",
    "objective_distances",
    "loss_from_distances",
    "per_sample_loss",
    "distance_gradient",
    "gradient_jacobian",
    "gradient_jacobian_closed_form",
    "max_off_diagonal",
    "memberships",
    "gradient_weights",
    "fit_prototypes",
    "prototype_errors",
    "initial_prototypes",
    "coverage_over_inits",
    "prototype_gradient_norms",
    "far_point_profile",
]

#: The three objectives compared, in the order the book plots them.
OBJECTIVES: tuple[str, ...] = ("lse", "sigmoid", "correntropy")
#: Kernel width of the correntropy objective in units of ``s``: ``1 - exp(-rho^2 / 2) = 1 - exp(-e)``.
CORRENTROPY_SIGMA: float = math.sqrt(2.0)


def _check_kind(kind: Any) -> str:
    if kind not in OBJECTIVES:
        raise ValueError(f"kind must be one of {OBJECTIVES}, got {kind!r}")
    return str(kind)


def _as_tensor(x: Any, name: str, ndim: int | None = None) -> torch.Tensor:
    arr = as_float_array(x, name, ndim=ndim)
    if isinstance(arr, torch.Tensor):
        return arr
    return torch.as_tensor(np.asarray(arr), dtype=torch.float64)


def _check_points_prototypes(x: Any, mu: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_tensor(x, "x", ndim=2)
    mu = _as_tensor(mu, "mu", ndim=2)
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"mu must have {x.shape[1]} columns like x, got shape {tuple(mu.shape)}")
    return x, mu.to(x.dtype)


def make_mixture_task(
    n_per_component: int | Any = 150,
    means: Any = None,
    std: float = 0.8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian clusters: ``(x, labels, means)``.

    Default means: three well-separated clusters in the plane, ``(-3, 0)``, ``(3, 0)``, ``(0, 4.5)``.
    ``n_per_component`` is one size for every cluster or a sequence of sizes, one per mean.
    """
    s = check_positive(std, "std")
    check_int(seed, "seed")
    if means is None:
        means = [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.5]]
    m = torch.as_tensor(np.asarray(as_float_array(means, "means", ndim=2)), dtype=dtype)
    if isinstance(n_per_component, (list, tuple, np.ndarray)):
        sizes = [check_int(n, "n_per_component", minimum=1) for n in n_per_component]
        if len(sizes) != m.shape[0]:
            raise ValueError(f"n_per_component must give {m.shape[0]} sizes, one per mean, got {len(sizes)}")
    else:
        sizes = [check_int(n_per_component, "n_per_component", minimum=1)] * m.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    x = torch.cat([mj + s * torch.randn(n, m.shape[1], generator=g, dtype=dtype) for mj, n in zip(m, sizes)])
    labels = torch.repeat_interleave(torch.arange(m.shape[0]), torch.as_tensor(sizes))
    return x, labels, m


def energies(x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """``e_ij = ||x_i - mu_j||^2 / (2 scale^2)``, shape ``(N, K)``; differentiable in ``x`` and ``mu``."""
    x, mu = _check_points_prototypes(x, mu)
    s = check_positive(scale, "scale")
    return ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1) / (2.0 * s**2)


def objective_distances(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """The distance each objective takes: ``e`` for ``"lse"``/``"sigmoid"``, ``rho = sqrt(2 e)`` for correntropy."""
    kind = _check_kind(kind)
    e = energies(x, mu, scale)
    if kind == "correntropy":
        # clamp keeps autograd finite if a point sits exactly on a prototype
        return torch.sqrt(2.0 * e.clamp_min(1e-300))
    return e


def loss_from_distances(kind: str, d: Any) -> torch.Tensor:
    """Per-sample loss (minimized), shape ``(N,)``, from the objective's own distances ``d`` ``(N, K)``."""
    kind = _check_kind(kind)
    d = _as_tensor(d, "d", ndim=2)
    if kind == "lse":
        return -lse(d, dim=-1)
    if kind == "sigmoid":
        return sigmoid_bce(d, torch.ones_like(d)).sum(-1)
    return correntropy(d, CORRENTROPY_SIGMA).sum(-1)


def per_sample_loss(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """Per-sample loss (minimized) of points ``x`` under prototypes ``mu``."""
    return loss_from_distances(kind, objective_distances(kind, x, mu, scale))


def distance_gradient(kind: str, d: Any) -> torch.Tensor:
    """``g_ij = d loss_i / d d_ij`` by autograd (the loss, minimized), shape ``(N, K)``."""
    kind = _check_kind(kind)
    d = _as_tensor(d, "d", ndim=2).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_from_distances(kind, d).sum(), d)
    return g


def gradient_jacobian(kind: str, d: Any) -> torch.Tensor:
    """Per-sample Jacobian ``J_i[j, k] = d g_ij / d d_ik`` of the loss gradient, by autograd.

    Shape ``(N, K, K)``. Off-diagonal entries measure how one component's gradient depends on
    another component's distance: the coupling that normalization creates.
    """
    kind = _check_kind(kind)
    d = _as_tensor(d, "d", ndim=2).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_from_distances(kind, d).sum(), d, create_graph=True)
    K = d.shape[1]
    rows = []
    for j in range(K):
        (hj,) = torch.autograd.grad(g[:, j].sum(), d, retain_graph=j < K - 1, allow_unused=True)
        rows.append(torch.zeros_like(d) if hj is None else hj)
    return torch.stack(rows, dim=1).detach()


def gradient_jacobian_closed_form(kind: str, d: Any) -> torch.Tensor:
    """Closed forms of :func:`gradient_jacobian`.

    ``"lse"`` (loss ``-L``, gradient ``r``): ``r r^T - diag(r)`` — off-diagonal ``+r_j r_k``
    (for the maximized objective ``L``, whose gradient is ``-r``, every sign flips).
    ``"sigmoid"`` (gradient ``1 - sigmoid(-d)``): ``diag(sigmoid(d) sigmoid(-d))``.
    ``"correntropy"`` (gradient ``(2 d / sigma^2) exp(-d^2 / sigma^2)``):
    ``diag((2 / sigma^2)(1 - 2 d^2 / sigma^2) exp(-d^2 / sigma^2))``.
    """
    kind = _check_kind(kind)
    d = _as_tensor(d, "d", ndim=2).detach()
    if kind == "lse":
        r = torch.softmax(-d, dim=-1)
        return r[:, :, None] * r[:, None, :] - torch.diag_embed(r)
    if kind == "sigmoid":
        return torch.diag_embed(torch.sigmoid(d) * torch.sigmoid(-d))
    s2 = CORRENTROPY_SIGMA**2
    return torch.diag_embed((2.0 / s2) * (1.0 - 2.0 * d**2 / s2) * torch.exp(-(d**2) / s2))


def max_off_diagonal(J: Any) -> float:
    """Largest ``|J_i[j, k]|`` over samples and ``j != k`` for a stack of ``(N, K, K)`` Jacobians."""
    J = _as_tensor(J, "J", ndim=3)
    if J.shape[1] != J.shape[2]:
        raise ValueError(f"J must hold square matrices, got shape {tuple(J.shape)}")
    mask = ~torch.eye(J.shape[1], dtype=torch.bool)
    if not mask.any():
        return 0.0
    return float(J[:, mask].abs().max())


def memberships(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """How much each component claims each point under the objective's own model, ``(N, K)``.

    ``"lse"``: responsibilities ``r_ij`` (rows sum to one); ``"sigmoid"``: ``sigmoid(-e_ij)``;
    ``"correntropy"``: the kernel ``exp(-e_ij)``. Only the first is a soft assignment.
    """
    kind = _check_kind(kind)
    e = energies(x, mu, scale).detach()
    if kind == "lse":
        return torch.softmax(-e, dim=-1)
    if kind == "sigmoid":
        return torch.sigmoid(-e)
    return torch.exp(-e)


def gradient_weights(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """``w_ij = d loss_i / d e_ij`` by autograd: the weight of point ``i`` in prototype ``j``'s update.

    Since ``d e_ij / d mu_j = (mu_j - x_i) / s^2`` for every objective, gradient descent moves
    ``mu_j`` towards ``sum_i w_ij x_i``: ``w`` plays the role of EM's responsibilities. For
    ``"lse"`` it *is* ``r`` (Theorem 1); for ``"correntropy"`` it is ``exp(-e)``; for
    ``"sigmoid"`` it is ``sigmoid(e)``, largest for the *farthest* component.
    """
    kind = _check_kind(kind)
    x, mu = _check_points_prototypes(x, mu)
    e = energies(x, mu, scale).detach().clone().requires_grad_(True)
    d = torch.sqrt(2.0 * e.clamp_min(1e-300)) if kind == "correntropy" else e
    (w,) = torch.autograd.grad(loss_from_distances(kind, d).sum(), e)
    return w


def fit_prototypes(
    kind: str,
    x: Any,
    mu0: Any,
    *,
    scale: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 400,
    record_every: int = 10,
) -> dict[str, Any]:
    """Full-batch gradient descent on the mean per-sample loss, from prototypes ``mu0``.

    Returns ``{"steps", "mu" (T, K, D), "loss" (T,), "mu_final" (K, D)}``; ``T`` snapshots,
    every ``record_every`` steps and the last one.
    """
    kind = _check_kind(kind)
    x, mu0 = _check_points_prototypes(x, mu0)
    s = check_positive(scale, "scale")
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    every = check_int(record_every, "record_every", minimum=1)
    x = x.detach()
    mu = mu0.detach().clone().requires_grad_(True)
    steps, mus, losses = [], [], []
    for t in range(n + 1):
        loss = per_sample_loss(kind, x, mu, s).mean()
        if t % every == 0 or t == n:
            steps.append(t)
            mus.append(mu.detach().clone())
            losses.append(float(loss.detach()))
        if t == n:
            break
        (g,) = torch.autograd.grad(loss, mu)
        with torch.no_grad():
            mu -= eta * g
    return {
        "steps": np.asarray(steps),
        "mu": torch.stack(mus),
        "loss": np.asarray(losses),
        "mu_final": mu.detach(),
    }


def prototype_errors(mu: Any, true_means: Any) -> dict[str, Any]:
    """How well prototypes cover the true means.

    Returns ``{"nearest_true" (K,): index of each prototype's nearest true mean,
    "error" (K,): distance to it, "covered": number of distinct true means that are some
    prototype's nearest, "uncovered_gap": largest distance from a true mean to its nearest
    prototype}``.
    """
    mu, m = _check_points_prototypes(mu, true_means)
    dist = torch.cdist(mu.detach(), m.detach())
    err, idx = dist.min(dim=1)
    return {
        "nearest_true": idx.numpy(),
        "error": err.numpy(),
        "covered": int(len(set(idx.tolist()))),
        "uncovered_gap": float(dist.min(dim=0).values.max()),
    }


def initial_prototypes(x: Any, n_components: int = 3, spread: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Prototypes started near the data's centroid: ``mean(x) + spread * N(0, I)``, seeded."""
    x = _as_tensor(x, "x", ndim=2)
    K = check_int(n_components, "n_components", minimum=1)
    sp = check_positive(spread, "spread", allow_zero=True)
    g = torch.Generator().manual_seed(check_int(seed, "seed"))
    return x.detach().mean(0) + sp * torch.randn(K, x.shape[1], generator=g, dtype=x.dtype)


def coverage_over_inits(
    x: Any,
    true_means: Any,
    seeds: Any = range(10),
    *,
    kinds: tuple[str, ...] = OBJECTIVES,
    spread: float = 0.5,
    lr: float = 0.5,
    n_steps: int = 300,
) -> dict[str, np.ndarray]:
    """For each objective, how many true clusters the fitted prototypes cover, per initial seed.

    Every objective starts from the same :func:`initial_prototypes` for a given seed. Returns
    ``{kind: array of covered counts, one per seed}``.
    """
    x, m = _check_points_prototypes(x, true_means)
    seeds = [check_int(s_, "seeds") for s_ in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    kinds = tuple(_check_kind(k) for k in kinds)
    out: dict[str, list[int]] = {k: [] for k in kinds}
    for seed in seeds:
        mu0 = initial_prototypes(x, m.shape[0], spread, seed)
        for k in kinds:
            h = fit_prototypes(k, x, mu0, lr=lr, n_steps=n_steps, record_every=n_steps)
            out[k].append(prototype_errors(h["mu_final"], m)["covered"])
    return {k: np.asarray(v) for k, v in out.items()}


def prototype_gradient_norms(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """``||d loss_i / d mu||`` (all prototypes together) for each point ``x_i``, shape ``(N,)``."""
    kind = _check_kind(kind)
    x, mu = _check_points_prototypes(x, mu)
    s = check_positive(scale, "scale")
    mu, x = mu.detach(), x.detach()
    # one point at a time would be N backward passes; instead use that loss_i depends on mu
    # only through row i: the per-sample gradient is w_ij (mu_j - x_i) / s^2.
    w = gradient_weights(kind, x, mu, s)
    g = w[:, :, None] * (mu[None, :, :] - x[:, None, :]) / s**2
    return g.flatten(1).norm(dim=1)


def far_point_profile(
    kind: str,
    mu: Any,
    distances: Any,
    direction: Any = None,
    scale: float = 1.0,
    origin: Any = None,
) -> dict[str, np.ndarray]:
    """Gradient magnitude for points moving away from every prototype.

    Points ``x(t) = c + t u`` on a ray from ``origin`` ``c`` (default: the prototypes'
    centroid) along the unit vector ``u`` (default: the first axis), one per entry of
    ``distances`` (values of ``t``). Returns ``{"t", "nearest" (distance to the nearest
    prototype), "grad_norm"}``.
    """
    kind = _check_kind(kind)
    mu = _as_tensor(mu, "mu", ndim=2).detach()
    t = _as_tensor(distances, "distances", ndim=1).to(mu.dtype)
    if direction is None:
        u = torch.zeros(mu.shape[1], dtype=mu.dtype)
        u[0] = 1.0
    else:
        u = _as_tensor(direction, "direction", ndim=1).to(mu.dtype)
        if u.shape[0] != mu.shape[1]:
            raise ValueError(f"direction must have {mu.shape[1]} entries, got {u.shape[0]}")
        if float(u.norm()) == 0.0:
            raise ValueError("direction must be non-zero")
        u = u / u.norm()
    if origin is None:
        c = mu.mean(0)
    else:
        c = _as_tensor(origin, "origin", ndim=1).to(mu.dtype)
        if c.shape[0] != mu.shape[1]:
            raise ValueError(f"origin must have {mu.shape[1]} entries, got {c.shape[0]}")
    x = c[None, :] + t[:, None] * u[None, :]
    nearest = torch.cdist(x, mu).min(dim=1).values
    gn = prototype_gradient_norms(kind, x, mu, scale)
    return {"t": t.numpy(), "nearest": nearest.numpy(), "grad_norm": gn.numpy()}
