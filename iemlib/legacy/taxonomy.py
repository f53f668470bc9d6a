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

A fourth loss, ``"sqrt"``, is not one of the three the chapter compares in ``OBJECTIVES`` but
the counter-example to "only the log couples": ``2 - 2 sqrt(Z_i)`` with ``Z_i = sum_j exp(-e_ij)``,
the loss of the objective ``L = 2 (sqrt(Z) - 1)``. Its Jacobian is not diagonal (any nonlinear
function of ``Z`` couples the components), but its update weights ``sqrt(Z_i) r_ij`` do not
sum to one.

**Functions of the partition function.** For any objective ``L = g(Z)``, ``Z = sum_k exp(-d_k)``
(maximized), ``dL/dd_j = -g'(Z) exp(-d_j) = -g'(Z) Z r_j``: the update weights are always
proportional to the responsibilities within a point, and sum to ``g'(Z) Z``, which is one for
every ``d`` exactly when ``g = log + const``. The mixed second derivative is
``g''(Z) exp(-d_j) exp(-d_k)``, non-zero for every ``g`` that is not affine. The power
family ``g_alpha(Z) = (Z^alpha - 1) / alpha`` (``alpha = 0``: ``log Z``; ``alpha = 1``: ``Z - 1``,
the correntropy kernel up to a constant; ``alpha = 1/2``: the ``"sqrt"`` objective) has the
closed forms in :func:`power_objective`, :func:`power_weights` and :func:`power_hessian`
(the maximum L_q-likelihood family of Ferrari and Yang, 2010, with ``alpha = 1 - q``).
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
    "LOSSES",
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
    "partition_objective",
    "power_objective",
    "power_weights",
    "power_hessian",
    "weight_sums",
    "fit_prototypes_batch",
    "far_starts",
    "coverage_table",
    "trajectory_coupling",
]

#: The three objectives compared, in the order the book plots them.
OBJECTIVES: tuple[str, ...] = ("lse", "sigmoid", "correntropy")
#: Every loss the functions below accept: the three of ``OBJECTIVES`` and the counter-example ``"sqrt"``.
LOSSES: tuple[str, ...] = OBJECTIVES + ("sqrt",)
#: Kernel width of the correntropy objective in units of ``s``: ``1 - exp(-rho^2 / 2) = 1 - exp(-e)``.
CORRENTROPY_SIGMA: float = math.sqrt(2.0)


def _check_kind(kind: Any) -> str:
    if kind not in LOSSES:
        raise ValueError(f"kind must be one of {LOSSES}, got {kind!r}")
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
    if kind == "sqrt":
        return 2.0 - 2.0 * torch.exp(0.5 * lse(d, dim=-1))
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
    if kind == "sqrt":
        return -power_hessian(d, 0.5)
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
    ``"sqrt"`` splits each point among the components by ``r_ij`` too.
    """
    kind = _check_kind(kind)
    e = energies(x, mu, scale).detach()
    if kind in ("lse", "sqrt"):
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


# ------------------------------------------------------------------------------------------
# Objectives that are functions of the partition function: what the log buys
# ------------------------------------------------------------------------------------------
def partition_objective(d: Any, g: Any) -> torch.Tensor:
    """``L_i = g(Z_i)`` with ``Z_i = sum_k exp(-d_ik)``, for a torch callable ``g`` (maximized).

    ``d`` has shape ``(N, K)``; the result has shape ``(N,)`` and keeps ``d``'s autograd graph,
    so ``torch.autograd`` can differentiate any ``g`` (this is what the tests check the closed
    forms of :func:`power_weights` and :func:`power_hessian` against).
    """
    d = _as_tensor(d, "d", ndim=2)
    if not callable(g):
        raise ValueError(f"g must be a callable of Z, got {type(g).__name__}")
    return g(torch.exp(-d).sum(-1))


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alpha must be a finite number, got {alpha!r}") from exc
    if not math.isfinite(a):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    return a


def power_objective(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """The power family ``L_i = (Z_i^alpha - 1) / alpha`` (maximized), ``alpha = 0`` giving ``log Z_i``.

    ``alpha = 0`` is the log-sum-exp objective; ``alpha = 1`` is ``Z - 1`` (separable: the
    correntropy kernel of chapter 7 up to a constant); ``alpha = 1/2`` is ``2 (sqrt(Z) - 1)``.
    Computed through ``log Z`` (stable for any finite ``d``). Shape ``(N,)``.
    """
    d = _as_tensor(d, "d", ndim=2)
    a = _check_alpha(alpha)
    logZ = lse(d, dim=-1)
    if a == 0.0:
        return logZ
    return torch.expm1(a * logZ) / a


def power_weights(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """Closed-form update weights ``w_ij = -dL_i/dd_ij = Z_i^alpha r_ij`` of :func:`power_objective`.

    ``dL/dd_j = -g'(Z) exp(-d_j)`` with ``g'(Z) = Z^(alpha - 1)``: within a point the weights are
    the responsibilities ``r_ij`` scaled by ``Z_i^alpha``, so they sum to ``Z_i^alpha``, which is
    one for every ``d`` only when ``alpha = 0`` (the log). Shape ``(N, K)``.
    """
    d = _as_tensor(d, "d", ndim=2).detach()
    a = _check_alpha(alpha)
    return torch.exp(a * lse(d, dim=-1))[:, None] * torch.softmax(-d, dim=-1)


def power_hessian(d: Any, alpha: float = 0.0) -> torch.Tensor:
    """Closed-form ``H_i[j, k] = d^2 L_i / dd_ij dd_ik`` of :func:`power_objective` (maximized).

    ``H = Z^alpha ((alpha - 1) r r^T + diag(r))``: off-diagonal ``(alpha - 1) Z^alpha r_j r_k``,
    zero only for ``alpha = 1``, the one member of the family that is affine in ``Z``. For
    ``alpha = 0`` it is ``diag(r) - r r^T``, the negative of the log-sum-exp loss Jacobian.
    Shape ``(N, K, K)``.
    """
    d = _as_tensor(d, "d", ndim=2).detach()
    a = _check_alpha(alpha)
    r = torch.softmax(-d, dim=-1)
    za = torch.exp(a * lse(d, dim=-1))[:, None, None]
    return za * ((a - 1.0) * r[:, :, None] * r[:, None, :] + torch.diag_embed(r))


def weight_sums(kind: str, x: Any, mu: Any, scale: float = 1.0) -> torch.Tensor:
    """``sum_j w_ij`` per point: how much pull point ``i`` hands out in total under each loss, ``(N,)``.

    One for ``"lse"`` (every point counts once), ``sqrt(Z_i)`` for ``"sqrt"``, ``Z_i`` for
    ``"correntropy"`` and ``sum_j sigmoid(e_ij)`` for ``"sigmoid"``.
    """
    return gradient_weights(kind, x, mu, scale).sum(1)


def _batch_loss(kind: str, x: torch.Tensor, mu: torch.Tensor, s: float) -> torch.Tensor:
    """Mean per-sample loss of every start: ``x`` (S or 1, N, D), ``mu`` (S, K, D) -> (S,)."""
    e = ((x[:, :, None, :] - mu[:, None, :, :]) ** 2).sum(-1) / (2.0 * s**2)  # (S, N, K)
    if kind == "lse":
        return -torch.logsumexp(-e, -1).mean(-1)
    if kind == "sqrt":
        return (2.0 - 2.0 * torch.exp(0.5 * torch.logsumexp(-e, -1))).mean(-1)
    if kind == "sigmoid":
        return torch.nn.functional.softplus(e).sum(-1).mean(-1)
    return (1.0 - torch.exp(-e)).sum(-1).mean(-1)  # correntropy with sigma = sqrt(2): 1 - exp(-e)


def fit_prototypes_batch(
    kind: str,
    x: Any,
    mu0: Any,
    *,
    scale: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 300,
    record_every: int | None = None,
) -> dict[str, Any]:
    """:func:`fit_prototypes` for many starts (and optionally many data sets) at once.

    ``mu0`` has shape ``(S, K, D)``: ``S`` independent runs of full-batch gradient descent on the
    mean per-sample loss, each from its own start. ``x`` is ``(N, D)`` (one data set shared by
    every run) or ``(S, N, D)`` (run ``s`` on data set ``s``). The runs do not interact (the
    summed loss has a block-diagonal gradient), so each follows exactly the path
    :func:`fit_prototypes` would. Returns ``{"mu_final" (S, K, D), "loss" (S,)}`` and, when
    ``record_every`` is given, ``"steps"`` and ``"mu"`` ``(T, S, K, D)``.
    """
    kind = _check_kind(kind)
    x = _as_tensor(x, "x", ndim=(2, 3)).detach()
    mu0 = _as_tensor(mu0, "mu0", ndim=3).detach().to(x.dtype)
    xb = x[None] if x.ndim == 2 else x
    if xb.shape[0] not in (1, mu0.shape[0]):
        raise ValueError(f"x must hold 1 or {mu0.shape[0]} data sets (one per start), got shape {tuple(x.shape)}")
    if xb.shape[-1] != mu0.shape[-1]:
        raise ValueError(f"mu0 must have {xb.shape[-1]} coordinates like x, got shape {tuple(mu0.shape)}")
    s = check_positive(scale, "scale")
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    every = None if record_every is None else check_int(record_every, "record_every", minimum=1)
    mu = mu0.clone().requires_grad_(True)
    steps, mus = [], []
    for t in range(n + 1):
        if every is not None and (t % every == 0 or t == n):
            steps.append(t)
            mus.append(mu.detach().clone())
        if t == n:
            break
        (g,) = torch.autograd.grad(_batch_loss(kind, xb, mu, s).sum(), mu)
        with torch.no_grad():
            mu -= eta * g
    with torch.no_grad():
        loss = _batch_loss(kind, xb, mu, s)
    out: dict[str, Any] = {"mu_final": mu.detach(), "loss": loss.numpy()}
    if every is not None:
        out["steps"] = np.asarray(steps)
        out["mu"] = torch.stack(mus)
    return out


def far_starts(x: Any, n_components: int = 3, radius: float = 12.0, seeds: Any = range(8)) -> torch.Tensor:
    """Starts far from the data: ``K`` prototypes at seeded random angles on a circle of ``radius``.

    The circle is centred on the data's centroid, in the plane of its first two coordinates
    (the others at the centroid). Shape ``(S, K, D)``, one start per seed.
    """
    x = _as_tensor(x, "x", ndim=2)
    K = check_int(n_components, "n_components", minimum=1)
    R = check_positive(radius, "radius")
    seeds = [check_int(s_, "seeds") for s_ in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if x.shape[1] < 2:
        raise ValueError(f"x must have at least 2 columns, got shape {tuple(x.shape)}")
    c = x.detach().mean(0)
    out = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        ang = 2 * math.pi * torch.rand(K, generator=g, dtype=x.dtype)
        mu = c.repeat(K, 1)
        mu[:, 0] += R * torch.cos(ang)
        mu[:, 1] += R * torch.sin(ang)
        out.append(mu)
    return torch.stack(out)


def coverage_table(
    x: Any,
    true_means: Any,
    starts: dict[str, Any],
    *,
    kinds: tuple[str, ...] = LOSSES,
    lr: float = 0.5,
    n_steps: int = 300,
) -> dict[str, dict[str, np.ndarray]]:
    """Clusters covered (see :func:`prototype_errors`) per start, for every family of starts and loss.

    ``starts`` maps a name to an ``(S, K, D)`` stack of initial prototypes. Returns
    ``{start name: {kind: covered counts (S,)}}``; all kinds start from the same prototypes.
    """
    x, m = _check_points_prototypes(x, true_means)
    kinds = tuple(_check_kind(k) for k in kinds)
    if not starts:
        raise ValueError("starts must not be empty")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, mu0 in starts.items():
        mu0 = _as_tensor(mu0, f"starts[{name!r}]", ndim=3)
        out[name] = {}
        for k in kinds:
            mu = fit_prototypes_batch(k, x, mu0, lr=lr, n_steps=n_steps)["mu_final"]
            out[name][k] = np.asarray([prototype_errors(mu_s, m)["covered"] for mu_s in mu])
    return out


def trajectory_coupling(kind: str, x: Any, mu_path: Any, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Coupling along a training trajectory: how much each point's components interact, per snapshot.

    ``mu_path`` is ``(T, K, D)`` (or ``(T, S, K, D)`` for ``S`` runs). For each snapshot, the
    per-point Jacobian of the loss gradient ``J_i`` is taken in closed form and summarized by
    ``"mean_offdiag"``: the mean over points of ``sum_{j != k} |J_i[j, k]|`` (for ``"lse"`` it is
    ``1 - sum_j r_ij^2``, the responsibility mass a point shares, 0 for a point owned by one
    component and ``1 - 1/K`` for one split evenly), and ``"shared"``: the fraction of points
    with some ``|J_i[j, k]| > 0.01``. Arrays of shape ``(T,)`` or ``(T, S)``.
    """
    kind = _check_kind(kind)
    x = _as_tensor(x, "x", ndim=2).detach()
    P = _as_tensor(mu_path, "mu_path", ndim=(3, 4)).detach()
    single = P.ndim == 3
    if single:
        P = P[:, None]
    T_, S = P.shape[:2]
    mo = np.zeros((T_, S))
    sh = np.zeros((T_, S))
    K = P.shape[2]
    mask = ~torch.eye(K, dtype=torch.bool)
    for t in range(T_):
        for s_ in range(S):
            J = gradient_jacobian_closed_form(kind, objective_distances(kind, x, P[t, s_], scale))
            off = J[:, mask].abs()
            mo[t, s_] = float(off.sum(1).mean()) if K > 1 else 0.0
            sh[t, s_] = float((off.amax(1) > 0.01).double().mean()) if K > 1 else 0.0
    if single:
        mo, sh = mo[:, 0], sh[:, 0]
    return {"mean_offdiag": mo, "shared": sh}
