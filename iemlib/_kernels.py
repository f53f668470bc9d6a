"""Tensor computations that several concept modules share in their inner loops (package-private).

No validation here beyond :func:`check_objective` and :func:`check_points_means`: the public functions of
:mod:`iemlib.objectives`, :mod:`iemlib.distances` and :mod:`iemlib.prototypes` check their input and then
call these, so that a learner's loop does not re-validate at every step. The constants are re-exported,
documented, by :mod:`iemlib.objectives`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._validation import as_tensor

#: The three objectives compared in chapter 7, in the order the book plots them.
OBJECTIVES: tuple[str, ...] = ("lse", "sigmoid", "correntropy")
#: The losses chapter 7 compares: the three of ``OBJECTIVES`` and the counter-example ``"sqrt"``.
#: The functions below also accept ``"partition"`` (chapter 3's ``-Z``).
LOSSES: tuple[str, ...] = OBJECTIVES + ("sqrt",)
#: Kernel width of the correntropy objective in units of ``s``: ``1 - exp(-rho^2 / 2) = 1 - exp(-e)``.
CORRENTROPY_SIGMA: float = math.sqrt(2.0)
ALL_LOSSES: tuple[str, ...] = LOSSES + ("partition",)


def check_objective(objective: Any) -> str:
    if objective not in ALL_LOSSES:
        raise ValueError(f"objective must be one of {ALL_LOSSES}, got {objective!r}")
    return str(objective)


def point_loss(objective: str, d: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of checked distances ``d`` (..., K) -> (...); no validation (hot loops)."""
    if objective == "lse":
        return -torch.logsumexp(-d, dim=-1)
    if objective == "sqrt":
        return 2.0 - 2.0 * torch.exp(0.5 * torch.logsumexp(-d, dim=-1))
    if objective == "partition":
        return -torch.exp(-d).sum(-1)
    if objective == "sigmoid":
        return (torch.nn.functional.softplus(-d) + torch.ones_like(d) * d).sum(-1)
    u = d / CORRENTROPY_SIGMA
    return (1.0 - torch.exp(-(u**2))).sum(-1)


def squared_distances(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``||x_i - mu_j||^2`` for x (..., N, D), means (..., K, D) -> (..., N, K); no validation."""
    return ((x[..., :, None, :] - means[..., None, :, :]) ** 2).sum(-1)


def scaled_distances(x: torch.Tensor, means: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`prototype_distances` of checked tensors (the learners' hot loops)."""
    return squared_distances(x, means) / (2.0 * sigma * sigma)


def check_points_means(x: Any, means: Any, means_name: str = "means") -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, D) or (B, N, D), means (K, D) or (B, K, D) as tensors of x's dtype (float64 from numpy)."""
    x = as_tensor(x, "x", ndim=(2, 3))
    m = as_tensor(means, means_name, ndim=(2, 3))
    if m.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"{means_name} must have {x.shape[-1]} columns (the dimension of x), got shape {tuple(m.shape)}"
        )
    if x.ndim == 3 and m.ndim == 3 and x.shape[0] != m.shape[0]:
        raise ValueError(
            f"{means_name} must hold one prototype set per data set in x ({x.shape[0]}), got {m.shape[0]}"
        )
    return x, m.to(x.dtype)


def objective_distance(objective: str, d: torch.Tensor) -> torch.Tensor:
    if objective == "correntropy":
        # clamp keeps autograd finite if a point sits exactly on a prototype
        return torch.sqrt(2.0 * d.clamp_min(1e-300))
    return d
