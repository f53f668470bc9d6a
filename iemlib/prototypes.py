"""Prototypes learned by gradient descent: one learner, its loss, and how to read its runs.

Data ``x_i`` (N points in D dimensions), prototypes ``mu_j`` (K of them), a length scale
``sigma`` and the prototype distances ``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)``
(:func:`iemlib.distances.prototype_distances`). The book's loss (minimized) is

    loss(mu) = -(1/N) sum_i log sum_j exp(-d_ij),

the negative mean of ``L_i = lse(d_i)``. By Theorem 1, ``d loss / d d_ij = r_ij / N``: gradient
descent on it moves every prototype towards the responsibility-weighted mean of the data.

* :func:`fit_prototypes` is the one learner (chapters 1, 3, 7, 9 and 10): full-batch gradient
  descent for one set of prototypes or a batch of independent runs, on any objective of
  :data:`PROTOTYPE_OBJECTIVES`, with gradients by autograd or in closed form, optionally with
  learned scales (with or without the log-determinant volume term, weight decay, a normalization
  of the distances) or a uniform background component with learned weights. It returns a
  :class:`PrototypeFit`.
* :func:`prototype_loss`, :func:`prototype_loss_gradient` (closed form) and
  :func:`em_mean_update` (classical EM for the means) for one or a batch of prototype sets.
* :func:`coverage`: which true centres the prototypes found.
* :func:`initial_prototypes`, :func:`far_starts`: starts near the data's centroid or far from it.
* How each objective of the taxonomy assigns points (chapter 7): :func:`memberships`,
  :func:`gradient_weights`, :func:`weight_sums`, :func:`prototype_gradient_norms`,
  :func:`far_point_profile`, :func:`trajectory_coupling`, :func:`coverage_table`.
* Without gradients (chapter 3): :func:`es_gradient` (evolution strategies) and
  :func:`smoothed_gradient`, its expectation.
* Learned scales (chapter 9): :data:`SCALE_VARIANTS`, :func:`scaled_mixture_objective`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ._validation import as_numpy, as_tensor, check_int, check_positive, to_numpy
from ._kernels import check_objective, check_points_means, objective_distance, point_loss, scaled_distances, squared_distances
from .distances import prototype_distances
from .metrics import responsibility_entropy
from .objectives import LOSSES, gradient_jacobian_closed_form
from .runtime import single_threaded

__all__ = [
    "PROTOTYPE_OBJECTIVES",
    "GRADIENTS",
    "SCALE_VARIANTS",
    "PrototypeFit",
    "fit_prototypes",
    "prototype_loss",
    "prototype_loss_gradient",
    "em_mean_update",
    "Coverage",
    "coverage",
    "CoverageTable",
    "coverage_table",
    "initial_prototypes",
    "far_starts",
    "memberships",
    "gradient_weights",
    "weight_sums",
    "prototype_gradient_norms",
    "FarPointProfile",
    "far_point_profile",
    "TrajectoryCoupling",
    "trajectory_coupling",
    "es_gradient",
    "smoothed_gradient",
    "scaled_mixture_objective",
]

#: Objectives the learner accepts: chapter 7's ``LOSSES`` and chapter 3's partition function.
PROTOTYPE_OBJECTIVES: tuple[str, ...] = ("lse", "partition", "sigmoid", "correntropy", "sqrt")
#: How the learner differentiates: torch autograd, or the closed form (``"lse"``, ``"partition"``).
GRADIENTS: tuple[str, ...] = ("autograd", "closed_form")
#: Chapter 9's learned-scale variants: name -> (log-determinant term?, weight decay, normalized distances?).
SCALE_VARIANTS: dict[str, tuple[bool, float, bool]] = {
    "no log-det": (False, 0.0, False),
    "log-det": (True, 0.0, False),
    "no log-det + weight decay": (False, 0.01, False),
    "no log-det + normalization": (False, 0.0, True),
    "log-det + weight decay": (True, 0.01, False),
}


def _check_sigma_vector(sigma: Any, K: int, name: str, like: torch.Tensor) -> torch.Tensor:
    s = as_tensor(sigma, name, ndim=1).detach().to(like.dtype)
    if s.shape[0] != K:
        raise ValueError(f"{name} must have {K} entries, one per component, got {s.shape[0]}")
    if bool((s <= 0).any()):
        raise ValueError(f"{name} must be positive")
    return s


# ================================================================================================
# The result
# ================================================================================================
@dataclass(frozen=True)
class PrototypeFit:
    """A gradient-descent run of :func:`fit_prototypes` (numpy arrays, float64 for float64 input).

    ``T`` recorded steps (every ``record_every`` steps and the last); ``[B,]`` is present for a
    batch of runs. Fields that the run's options do not produce are ``None``.

    Attributes
    ----------
    objective, sigma, lr, gradient
        the options of the run.
    steps
        (T,) the step index of each record (0 is the start).
    means
        (T, [B,] K, D) the prototypes at each recorded step.
    loss
        (T, [B]) the loss minimized (weight decay included).
    objective_value
        (T, [B]) the mean objective maximized, without weight decay (``-loss`` when
        there is none; for learned scales the mean ``L_i`` of the variant).
    step_norms
        (T, [B,] K) ``||lr * d loss / d mu_j||``, how far each prototype moves in the step
        taken from that record (at the last record: the step that would follow).
    responsibilities
        (T, [B,] N, K) ``softmax(-d)`` of the current distances; with a background
        component (T, [B,] N, K + 1), background first. Only with ``record_responsibilities``.
    distance_gradient
        (T, [B,] N, K) ``d loss / d d_ij`` read off the backward pass (runs by
        autograd without a background, with ``record_responsibilities``; per run for a batch): ``N`` times it is ``r`` for
        the log-sum-exp loss (Theorem 1). ``d`` is the distance the log-sum-exp takes (for learned
        scales: the scaled distance, minus the volume term when there is one).
    entropy
        (T, [B]) mean responsibility entropy of ``responsibilities`` in nats (``log K`` =
        uniform). With ``record_responsibilities``.
    usage
        (T, [B,] K) mean responsibility of each component over the points. With
        ``record_responsibilities``.
    scales
        (T, K) the learned ``sigma_j`` (learned scales only).
    scale_gradient
        (T, K) ``d loss / d log sigma_j`` (learned scales only; negative: descent grows
        ``sigma_j``).
    log_likelihood
        (T,) the mean log-likelihood of the current parameters as a Gaussian mixture
        with equal weights, constants included (learned scales only).
    weights
        (T, [B,] K + 1) the mixture weights, background first (background only).
    """

    objective: str
    sigma: float
    lr: float
    gradient: str
    steps: np.ndarray
    means: np.ndarray
    loss: np.ndarray
    objective_value: np.ndarray
    step_norms: np.ndarray
    responsibilities: np.ndarray | None = None
    distance_gradient: np.ndarray | None = None
    entropy: np.ndarray | None = None
    usage: np.ndarray | None = None
    scales: np.ndarray | None = None
    scale_gradient: np.ndarray | None = None
    log_likelihood: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def final_means(self) -> np.ndarray:
        """The prototypes after the last step, ([B,] K, D)."""
        return self.means[-1]

    @property
    def n_steps(self) -> int:
        """Number of gradient steps taken."""
        return int(self.steps[-1])


class _Record:
    """Collects what a kernel records at each step and builds the :class:`PrototypeFit`."""

    def __init__(self, n: int, every: int, record_r: bool) -> None:
        self.n, self.every, self.record_r = n, every, record_r
        self.rows: dict[str, list] = {}

    def due(self, t: int) -> bool:
        return t % self.every == 0 or t == self.n

    def add(self, **values: Any) -> None:
        for k, v in values.items():
            if v is None:
                continue
            if k == "responsibilities":
                self.rows.setdefault("usage", []).append(to_numpy(v.mean(-2)).copy())
            self.rows.setdefault(k, []).append(to_numpy(v).copy() if isinstance(v, torch.Tensor) else v)

    def build(self, squeeze: bool, **options: Any) -> PrototypeFit:
        out = {k: np.asarray(v) for k, v in self.rows.items()}
        if squeeze:  # a single run computed as a batch of one
            out = {k: (v if k == "steps" else v[:, 0]) for k, v in out.items()}
        if "responsibilities" in out:
            out["entropy"] = np.asarray(responsibility_entropy(out["responsibilities"]))
        return PrototypeFit(**options, **out)


# ================================================================================================
# The kernels: one per way of computing, each keeping the floating-point operations of the
# learner it replaces (gradient descent from near-symmetric starts amplifies any rounding change)
# ================================================================================================
def _fit_autograd_single(x, mu, objective, s, lr, rec):
    """One run (K, D) by autograd of the per-sample loss from the objective's own distances."""
    mu = mu.clone()
    for t in range(rec.n + 1):
        mu_ = mu.clone().requires_grad_(True)
        e = scaled_distances(x, mu_, s)
        loss = point_loss(objective, objective_distance(objective, e)).mean()
        if rec.record_r:
            g_e, g_mu = torch.autograd.grad(loss, [e, mu_])
        else:
            (g_mu,) = torch.autograd.grad(loss, mu_)
        if rec.due(t):
            lv = float(loss.detach())
            rec.add(steps=t, means=mu, loss=lv, objective_value=-lv, step_norms=(lr * g_mu).norm(dim=-1))
            if rec.record_r:
                rec.add(responsibilities=torch.softmax(-e.detach(), dim=-1), distance_gradient=g_e)
        if t < rec.n:
            mu = mu - lr * g_mu


def _batch_loss(objective: str, e: torch.Tensor) -> torch.Tensor:
    """Mean per-sample loss of every run from its energies e (S, N, K) -> (S,)."""
    if objective == "lse":
        return -torch.logsumexp(-e, -1).mean(-1)
    if objective == "sqrt":
        return (2.0 - 2.0 * torch.exp(0.5 * torch.logsumexp(-e, -1))).mean(-1)
    if objective == "partition":
        return -torch.exp(-e).sum(-1).mean(-1)
    if objective == "sigmoid":
        return torch.nn.functional.softplus(e).sum(-1).mean(-1)
    return (1.0 - torch.exp(-e)).sum(-1).mean(-1)  # correntropy with sigma = sqrt(2): 1 - exp(-e)


def _fit_autograd_batch(x, mu, objective, s, lr, rec):
    """B runs (B, K, D) at once by autograd of the summed per-run losses (block-diagonal gradient)."""
    mu = mu.clone().requires_grad_(True)
    for t in range(rec.n + 1):
        e = scaled_distances(x, mu, s)
        per_run = _batch_loss(objective, e)
        if rec.record_r:
            g_e, g = torch.autograd.grad(per_run.sum(), [e, mu])
        else:
            (g,) = torch.autograd.grad(per_run.sum(), mu)
        if rec.due(t):
            lv = per_run.detach()
            rec.add(steps=t, means=mu.detach(), loss=lv, objective_value=-lv, step_norms=(lr * g).norm(dim=-1))
            if rec.record_r:
                rec.add(responsibilities=torch.softmax(-e.detach(), dim=-1), distance_gradient=g_e)
        if t < rec.n:
            with torch.no_grad():
                mu -= lr * g


def _point_objective(objective: str, d: torch.Tensor) -> torch.Tensor:
    """Per-point objective (maximized) of the closed-form learner: ``L_i`` or ``Z_i``."""
    return torch.logsumexp(-d, dim=-1) if objective == "lse" else torch.exp(-d).sum(-1)


def _closed_form_gradient(x: torch.Tensor, m: torch.Tensor, s: float, objective: str, d: torch.Tensor | None = None) -> torch.Tensor:
    """``-(1/(N s^2)) sum_i c_ij (x_i - mu_j)``, c = r (lse) or exp(-d) (partition); x (S or 1, N, D), m (B, K, D)."""
    if d is None:
        d = scaled_distances(x, m, s)
    c = torch.softmax(-d, dim=-1) if objective == "lse" else torch.exp(-d)  # (B, N, K)
    N = x.shape[1]
    xb = x.expand(m.shape[0], -1, -1) if x.shape[0] == 1 else x
    pull = torch.einsum("bnk,bnd->bkd", c, xb) - c.sum(1)[..., None] * m
    return -pull / (N * s * s)


def _fit_closed_form(x, mu, objective, s, lr, rec):
    """B runs (B, K, D) with the closed-form gradient of the lse or partition loss."""
    for t in range(rec.n + 1):
        d = scaled_distances(x, mu, s)
        lv = -_point_objective(objective, d).mean(-1)
        g = _closed_form_gradient(x, mu, s, objective, d)
        if rec.due(t):
            rec.add(steps=t, means=mu, loss=lv, objective_value=-lv, step_norms=(lr * g).norm(dim=-1))
            if rec.record_r:
                rec.add(responsibilities=torch.softmax(-d, dim=-1))
        if t < rec.n:
            mu = mu - lr * g


def _scaled_distances(x: torch.Tensor, mu: torch.Tensor, log_a: torch.Tensor, logdet: bool, normalize: bool) -> torch.Tensor:
    """``a_j^2 ||x_i - mu_j||^2 / 2`` (optionally rescaled to mean D/2), minus ``D log a_j`` with the volume term."""
    D = x.shape[-1]
    a = torch.exp(log_a)
    d = squared_distances(x, mu) * a**2 / 2.0
    if normalize:
        # a normalization layer on the distances: their mean over the batch and the components is
        # held at D / 2 (its value for a well-fitted Gaussian); gradients flow through the statistic
        d = d * (D / 2.0) / d.mean()
    return d - D * log_a if logdet else d


def _fit_scaled(x, mu, sigma0, logdet, wd, normalize, lr, rec, prior=None, floor=None):
    """One run (K, D) with learned scales ``a_j = 1 / sigma_j`` (parametrized by ``log a_j``).
    ``prior = (alpha, beta)``: an inverse-gamma prior on each ``sigma_j^2``, its negative log density
    divided by N added to the loss; ``floor``: after each step ``sigma_j >= floor``."""
    N, D = x.shape
    K = mu.shape[0]
    mu = mu.clone().requires_grad_(True)
    log_a = (-torch.log(sigma0)).clone().requires_grad_(True)
    const = -math.log(K) - 0.5 * D * math.log(2.0 * math.pi)
    for t in range(rec.n + 1):
        e = _scaled_distances(x, mu, log_a, logdet, normalize)
        L = torch.logsumexp(-e, dim=1)
        loss = -L.mean() + wd * torch.exp(2.0 * log_a).sum()
        if prior is not None:  # -log IG(sigma^2 | alpha, beta) = -2 (alpha + 1) log a + beta a^2 + const
            loss = loss + prior[1] * torch.exp(2.0 * log_a).sum() / N \
                - 2.0 * (prior[0] + 1.0) * log_a.sum() / N
        if rec.record_r:
            g_e, g_mu, g_la = torch.autograd.grad(loss, [e, mu, log_a])
        else:
            g_mu, g_la = torch.autograd.grad(loss, [mu, log_a])
        if rec.due(t):
            with torch.no_grad():
                raw = squared_distances(x, mu) * torch.exp(2 * log_a) / 2.0
                ll = torch.logsumexp(-raw + D * log_a, dim=1).mean() + const
            rec.add(steps=t, means=mu.detach(), loss=float(loss.detach()), objective_value=float(L.detach().mean()),
                    step_norms=(lr * g_mu).norm(dim=-1), scales=torch.exp(-log_a.detach()),
                    scale_gradient=-g_la, log_likelihood=float(ll))
            if rec.record_r:
                rec.add(responsibilities=torch.softmax(-e.detach(), dim=1), distance_gradient=g_e)
        if t < rec.n:
            with torch.no_grad():
                mu -= lr * g_mu
                log_a -= lr * g_la
                if floor is not None:
                    log_a.clamp_(max=-math.log(floor))


def _fit_background(x, mu, s, log_volume, lr, rec):
    """B runs (B, K, D) of a Gaussian mixture (covariance s^2 I) plus a uniform background, with
    learned weights (softmax logits, started equal): the model of Banfield and Raftery (1993)."""
    S, K, D = mu.shape
    if log_volume is None:
        span = (x.amax(1) - x.amin(1)).clamp_min(1e-12)  # (S or 1, D)
        logV = torch.log(span).sum(-1)
    else:
        logV = as_tensor(log_volume, "log_volume", ndim=(0, 1)).to(x.dtype).reshape(-1)
    logV = logV.expand(S) if logV.numel() == 1 else logV
    if logV.shape[0] != S:
        raise ValueError(f"log_volume must hold 1 or {S} values, got {logV.shape[0]}")
    mu = mu.clone().requires_grad_(True)
    logits = torch.zeros(S, K + 1, dtype=x.dtype, requires_grad=True)
    c = 0.5 * D * math.log(2.0 * math.pi) + D * math.log(s)
    for t in range(rec.n + 1):
        logpi = torch.log_softmax(logits, dim=-1)  # (S, K + 1)
        gauss = logpi[:, None, 1:] - scaled_distances(x, mu, s) - c
        bg = (logpi[:, 0] - logV)[:, None, None].expand(-1, gauss.shape[1], 1)
        lj = torch.cat([bg, gauss], dim=-1)  # (S, N, K + 1): the log joint, background first
        per_run = -torch.logsumexp(lj, -1).mean(-1)
        g_mu, g_l = torch.autograd.grad(per_run.sum(), [mu, logits])
        if rec.due(t):
            lv = per_run.detach()
            rec.add(steps=t, means=mu.detach(), loss=lv, objective_value=-lv, step_norms=(lr * g_mu).norm(dim=-1),
                    weights=torch.softmax(logits.detach(), -1))
            if rec.record_r:
                rec.add(responsibilities=torch.softmax(lj.detach(), -1))
        if t < rec.n:
            with torch.no_grad():
                mu -= lr * g_mu
                logits -= lr * g_l


# ================================================================================================
# The learner
# ================================================================================================
def _check_fit_options(objective, gradient, scales_init, logdet, weight_decay, normalize, background, log_volume, sigma):
    if objective not in PROTOTYPE_OBJECTIVES:
        raise ValueError(f"objective must be one of {PROTOTYPE_OBJECTIVES}, got {objective!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    for name, v in (("logdet", logdet), ("normalize", normalize), ("background", background)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be a bool, got {v!r}")
    wd = check_positive(weight_decay, "weight_decay", allow_zero=True)
    learned = scales_init is not None
    if not learned and (logdet or normalize or wd > 0):
        raise ValueError("logdet, normalize and weight_decay act on learned scales: pass scales_init")
    if log_volume is not None and not background:
        raise ValueError("log_volume is the background's volume: pass background=True")
    if (learned or background) and objective != "lse":
        raise ValueError(f"objective must be 'lse' with learned scales or a background, got {objective!r}")
    if learned and background:
        raise ValueError("scales_init and background=True cannot be combined")
    if gradient == "closed_form" and (objective not in ("lse", "partition") or learned or background):
        raise ValueError("gradient='closed_form' is available for objective 'lse' or 'partition' without scales or background")
    if learned and sigma != 1.0:
        raise ValueError(f"sigma must be 1.0 with learned scales (scales_init gives the initial scales), got {sigma!r}")
    return wd


def _check_scale_remedies(scale_prior: Any, min_scale: Any, scales_init: Any) -> tuple[Any, Any]:
    """Validate ``scale_prior`` (alpha > -1, beta > 0) and ``min_scale`` (> 0); both need learned scales."""
    if (scale_prior is not None or min_scale is not None) and scales_init is None:
        raise ValueError("scale_prior and min_scale act on learned scales: pass scales_init")
    prior = None
    if scale_prior is not None:
        try:
            alpha, beta = (float(v) for v in scale_prior)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scale_prior must be a pair (alpha, beta), got {scale_prior!r}") from exc
        if not (np.isfinite(alpha) and alpha > -1.0 and np.isfinite(beta) and beta > 0.0):
            raise ValueError(f"scale_prior must have alpha > -1 and beta > 0, got {scale_prior!r}")
        prior = (alpha, beta)
    floor = None if min_scale is None else check_positive(min_scale, "min_scale")
    return prior, floor


def fit_prototypes(
    x: Any,
    means_init: Any,
    *,
    objective: str = "lse",
    sigma: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 100,
    record_every: int = 1,
    gradient: str = "autograd",
    scales_init: Any = None,
    logdet: bool = False,
    weight_decay: float = 0.0,
    normalize: bool = False,
    background: bool = False,
    log_volume: Any = None,
    scale_prior: Any = None,
    min_scale: float | None = None,
    record_responsibilities: bool = False,
) -> PrototypeFit:
    """Full-batch gradient descent ``mu <- mu - lr * d loss / d mu`` on the mean per-sample loss.

    Parameters
    ----------
    x : array or tensor (N, D), or (B, N, D): one data set per run
    means_init : array or tensor (K, D) (one run), or (B, K, D) (B independent runs; with a
        (K, D) start and (B, N, D) data every run starts from the same prototypes)
    objective : one of :data:`PROTOTYPE_OBJECTIVES`
        The loss minimized, in the distances ``d_ij = ||x_i - mu_j||^2 / (2 sigma^2)``: ``"lse"``
        ``-log sum_j exp(-d_ij)``; ``"partition"`` ``-sum_j exp(-d_ij)``; ``"sigmoid"``
        ``sum_j softplus(d_ij)``; ``"correntropy"`` ``sum_j 1 - exp(-d_ij)``; ``"sqrt"``
        ``2 - 2 sqrt(sum_j exp(-d_ij))`` (see :func:`iemlib.objectives.loss_from_distances`).
    sigma : float > 0
        The fixed length scale.
    lr : float > 0
    n_steps : int >= 0
    record_every : int >= 1
        Record every ``record_every`` steps and the last.
    gradient : ``"autograd"`` or ``"closed_form"``
        The closed form ``-(1/(N sigma^2)) sum_i c_ij (x_i - mu_j)`` (``c = r`` or ``exp(-d)``)
        exists for ``"lse"`` and ``"partition"``.
    scales_init : array (K,) of positive ``sigma_j``, optional
        Learn one scale per component (``"lse"``, one run): ``d_ij = ||x_i - mu_j||^2 / (2 sigma_j^2)``,
        parametrized by ``log a_j = -log sigma_j``.
    logdet : bool
        With learned scales, subtract the volume term ``D log a_j`` from ``d_ij`` (the Gaussian
        log-likelihood with equal weights up to a constant). Without it the objective is bounded
        by ``log K`` and the scales grow without bound.
    weight_decay : float >= 0
        With learned scales, add ``weight_decay * sum_j a_j^2`` to the loss.
    scale_prior : (alpha, beta), optional
        With learned scales, a conjugate inverse-gamma prior ``IG(alpha, beta)`` on each
        ``sigma_j^2``: ``(beta a_j^2 - 2 (alpha + 1) log a_j) / N`` is added to the mean loss, so the
        fit is the maximum a posteriori one (MAP-EM's objective; Ormoneit and Tresp 1998, Fraley and
        Raftery 2007). ``alpha > -1`` and ``beta > 0``; weight decay is the improper case ``alpha = -1``,
        ``beta = N * weight_decay``.
    min_scale : float > 0, optional
        With learned scales, a variance floor: after each step ``sigma_j`` is raised to ``min_scale``
        where it fell below it (a projection).
    normalize : bool
        With learned scales, rescale the distances so that their mean is ``D / 2`` (a
        normalization layer; gradients flow through the statistic).
    background : bool
        Add a uniform background component of density ``1 / V`` and learn the K + 1 mixture
        weights (``"lse"``): the loss is ``-mean_i log(pi_0 / V + sum_j pi_j N(x_i | mu_j, sigma^2 I))``.
    log_volume : float or array (B,), optional
        ``log V``; default: the log volume of each data set's bounding box.
    record_responsibilities : bool
        Record ``responsibilities``, ``distance_gradient`` (autograd), ``entropy`` and ``usage``.

    Returns
    -------
    PrototypeFit
        Unbatched fields for (K, D) starts with (N, D) data, batched otherwise.

    Notes
    -----
    Longer than 80 lines only because this docstring documents every option; the body checks the
    input and hands the run to one kernel per way of computing (one run by autograd, a batch by
    autograd, the closed form, learned scales, a background). Each kernel keeps the floating-point
    operations of the learner it replaced, so that the book's runs from near-symmetric starts,
    which amplify any rounding change, print the same numbers.
    """
    x, m = check_points_means(x, means_init, "means_init")
    s = check_positive(sigma, "sigma")
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=0)
    every = check_int(record_every, "record_every", minimum=1)
    if not isinstance(record_responsibilities, bool):
        raise ValueError(f"record_responsibilities must be a bool, got {record_responsibilities!r}")
    wd = _check_fit_options(objective, gradient, scales_init, logdet, weight_decay, normalize, background, log_volume, s)
    prior, floor = _check_scale_remedies(scale_prior, min_scale, scales_init)
    x, m = x.detach(), m.detach()
    single = x.ndim == 2 and m.ndim == 2
    if m.ndim == 2 and x.ndim == 3:
        m = m[None].expand(x.shape[0], -1, -1).contiguous()
    rec = _Record(n, every, record_responsibilities)
    options = dict(objective=objective, sigma=s, lr=eta, gradient=gradient)
    with single_threaded():
        if scales_init is not None:
            if not single:
                raise ValueError("learned scales (scales_init) are fitted for one run: x (N, D) and means_init (K, D)")
            _fit_scaled(x, m, _check_sigma_vector(scales_init, m.shape[0], "scales_init", x), logdet, wd, normalize, eta, rec,
                        prior, floor)
            return rec.build(False, **options)
        xb = x[None] if x.ndim == 2 else x
        mb = m[None] if m.ndim == 2 else m
        if background:
            _fit_background(xb, mb, s, log_volume, eta, rec)
        elif gradient == "closed_form":
            _fit_closed_form(xb, mb, objective, s, eta, rec)
        elif single:
            _fit_autograd_single(x, m, objective, s, eta, rec)
            return rec.build(False, **options)
        else:
            _fit_autograd_batch(xb, mb, objective, s, eta, rec)
        return rec.build(single, **options)


# ================================================================================================
# The loss, its closed-form gradient, the EM update
# ================================================================================================
def _check_prototype_objective(objective: Any) -> str:
    if objective not in ("lse", "partition"):
        raise ValueError(f"objective must be 'lse' or 'partition', got {objective!r}")
    return objective


def prototype_loss(x: Any, means: Any, sigma: float = 1.0, objective: str = "lse") -> torch.Tensor:
    """The loss (minimized) ``-(1/N) sum_i log sum_j exp(-d_ij)`` (``"lse"``) or
    ``-(1/N) sum_i sum_j exp(-d_ij)`` (``"partition"``, no normalization).

    Parameters
    ----------
    x : (N, D), or (B, N, D) one data set per prototype set
    means : (K, D), or (B, K, D) for B prototype sets; a torch ``means`` keeps its graph
    sigma : float > 0
    objective : ``"lse"`` or ``"partition"``

    Returns
    -------
    torch scalar, or (B,) for a batch.
    """
    objective = _check_prototype_objective(objective)
    return -_point_objective(objective, prototype_distances(x, means, sigma)).mean(-1)


def prototype_loss_gradient(x: Any, means: Any, sigma: float = 1.0, objective: str = "lse") -> np.ndarray:
    """Closed form of ``d loss / d mu_j = -(1/(N sigma^2)) sum_i c_ij (x_i - mu_j)`` for
    :func:`prototype_loss`: ``c_ij = r_ij`` (``"lse"``: the responsibility-weighted pull of every
    point on every prototype) or ``c_ij = exp(-d_ij)`` (``"partition"``).

    Parameters
    ----------
    x, means, sigma, objective : as :func:`prototype_loss`

    Returns
    -------
    numpy array (K, D), or (B, K, D) for a batch.
    """
    objective = _check_prototype_objective(objective)
    x, m = check_points_means(x, means)
    s = check_positive(sigma, "sigma")
    x, m = x.detach(), m.detach()
    if x.ndim == 2 and m.ndim == 2:
        d = scaled_distances(x, m, s)
        c = torch.softmax(-d, dim=1) if objective == "lse" else torch.exp(-d)  # (N, K)
        pull = c.T @ x - c.sum(0)[:, None] * m  # sum_i c_ij (x_i - mu_j)
        return to_numpy(-pull / (x.shape[0] * s * s))
    xb = x[None] if x.ndim == 2 else x
    return to_numpy(_closed_form_gradient(xb, m[None] if m.ndim == 2 else m, s, objective))


def em_mean_update(x: Any, means: Any, sigma: float = 1.0, n_steps: int = 1) -> np.ndarray:
    """``n_steps`` classical EM updates of the means (equal weights, fixed sigma):
    ``mu_j <- sum_i r_ij x_i / sum_i r_ij``. A prototype with no responsibility keeps its mean.

    Parameters
    ----------
    x : (N, D), or (B, N, D) one data set per prototype set
    means : (K, D), or (B, K, D) for B prototype sets
    sigma : float > 0
    n_steps : int >= 0

    Returns
    -------
    numpy array of the shape of ``means``: the means after the last update.
    """
    x, m = check_points_means(x, means)
    s = check_positive(sigma, "sigma")
    n = check_int(n_steps, "n_steps", minimum=0)
    x, m = x.detach(), m.detach()
    # one update of one set is a handful of tiny operations: no loop, nothing for the thread rule to save
    with single_threaded() if n > 1 or m.ndim == 3 or x.ndim == 3 else contextlib.nullcontext():
        if x.ndim == 2 and m.ndim == 2:
            for _ in range(n):
                r = torch.softmax(-scaled_distances(x, m, s), dim=1)
                Nj = r.sum(0)
                new = (r.T @ x) / torch.where(Nj > 0, Nj, 1.0)[:, None]
                m = torch.where((Nj > 0)[:, None], new, m)
            return to_numpy(m).copy()
        if m.ndim == 2:
            m = m[None].expand(x.shape[0], -1, -1)
        xb = x[None].expand(m.shape[0], -1, -1) if x.ndim == 2 else x
        for _ in range(n):
            r = torch.softmax(-scaled_distances(xb, m, s), dim=-1)  # (B, N, K)
            Nj = r.sum(1)  # (B, K)
            new = torch.einsum("bnk,bnd->bkd", r, xb) / torch.where(Nj > 0, Nj, 1.0)[..., None]
            m = torch.where((Nj > 0)[..., None], new, m)
        return to_numpy(m).copy()


# ================================================================================================
# Coverage, starts
# ================================================================================================
@dataclass(frozen=True)
class Coverage:
    """How prototypes cover true centres (:func:`coverage`); ``[B]`` for a batch of prototype sets.

    Attributes
    ----------
    nearest
        ([B,] K) int, the index of each prototype's nearest centre.
    error
        ([B,] K), the distance to it.
    covered
        ([B]) int, the number of distinct centres that are some prototype's nearest.
    distinct
        ([B]) bool, every prototype's nearest centre is a different one (needs K <= C).
    worst_error
        ([B]), the largest distance from a prototype to its nearest centre.
    gap
        ([B]), the largest distance from a centre to its nearest prototype (0 when every centre
        has a prototype on it).
    within
        ([B]) int, the number of centres with a prototype closer than ``radius``
        (``None`` without a radius).
    """

    nearest: np.ndarray
    error: np.ndarray
    covered: np.ndarray | int
    distinct: np.ndarray | bool
    worst_error: np.ndarray | float
    gap: np.ndarray | float
    within: np.ndarray | int | None = None


def coverage(means: Any, centers: Any, radius: float | None = None) -> Coverage:
    """Which of the true ``centers`` the prototypes found.

    Parameters
    ----------
    means : (K, D), or (B, K, D) for B prototype sets
    centers : (C, D)
    radius : float > 0, optional
        For ``Coverage.within``.

    Returns
    -------
    Coverage (scalars and (K,) arrays for one prototype set).
    """
    m = as_numpy(means, "means", ndim=(2, 3))
    c = as_numpy(centers, "centers", ndim=2)
    if m.shape[-1] != c.shape[-1]:
        raise ValueError(f"centers must have {m.shape[-1]} columns, got shape {c.shape}")
    rad = None if radius is None else check_positive(radius, "radius")
    single = m.ndim == 2
    mb = m[None] if single else m
    dist = np.linalg.norm(mb[:, :, None, :] - c[None, None, :, :], axis=-1)  # (B, K, C)
    nearest = dist.argmin(-1)
    error = dist.min(-1)
    covered = np.array([len(set(row.tolist())) for row in nearest])
    out = dict(nearest=nearest, error=error, covered=covered, distinct=covered == mb.shape[1],
               worst_error=error.max(-1), gap=dist.min(1).max(-1),
               within=None if rad is None else (dist.min(1) < rad).sum(-1))
    if single:
        out = {k: (None if v is None else (v[0] if v.ndim > 1 else v[0].item())) for k, v in out.items()}
    return Coverage(**out)


def initial_prototypes(x: Any, n_components: int = 3, spread: float = 0.5, random_state: int = 0) -> torch.Tensor:
    """Prototypes started near the data's centroid: ``mean(x) + spread * N(0, I)``, seeded.

    Parameters
    ----------
    x : (N, D); n_components : K >= 1; spread : float >= 0; random_state : int >= 0

    Returns
    -------
    torch tensor (K, D), the dtype of ``x``.
    """
    x = as_tensor(x, "x", ndim=2)
    K = check_int(n_components, "n_components", minimum=1)
    sp = check_positive(spread, "spread", allow_zero=True)
    g = torch.Generator().manual_seed(check_int(random_state, "random_state", minimum=0))
    return x.detach().mean(0) + sp * torch.randn(K, x.shape[1], generator=g, dtype=x.dtype)


def far_starts(x: Any, n_components: int = 3, radius: float = 12.0, seeds: Any = range(8)) -> torch.Tensor:
    """Starts far from the data: ``K`` prototypes at seeded random angles on a circle of ``radius``.

    The circle is centred on the data's centroid, in the plane of its first two coordinates
    (the others at the centroid).

    Parameters
    ----------
    x : (N, D), D >= 2; n_components : K >= 1; radius : float > 0; seeds : ints >= 0, one start each

    Returns
    -------
    torch tensor (S, K, D).
    """
    x = as_tensor(x, "x", ndim=2)
    K = check_int(n_components, "n_components", minimum=1)
    R = check_positive(radius, "radius")
    seeds = [check_int(s_, "seeds", minimum=0) for s_ in seeds]
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


@dataclass(frozen=True)
class CoverageTable:
    """Clusters covered per start (:func:`coverage_table`), by two criteria, with the frozen starts.

    Attributes
    ----------
    starts
        the names of the families of starts, in order.
    objectives
        the objectives, in order.
    covered
        (F, O, S) int, ``Coverage.covered`` of the fitted prototypes for family ``f``,
        objective ``o`` and start ``s``: the centres that are some prototype's nearest. It
        credits a prototype wherever it sits, even one that never moved.
    radius
        the radius of ``within`` (``None`` when none was asked for).
    within
        (F, O, S) int, ``Coverage.within``: the centres with a fitted prototype closer than
        ``radius`` (``None`` without a radius).
    frozen_covered, frozen_within
        (F, S) int, the same two scores of the starts themselves (no training): what a run
        that never moves scores.
    means_init
        (F, S, K, D), the starts.
    final_means
        (F, O, S, K, D), the fitted prototypes.
    """

    starts: tuple[str, ...]
    objectives: tuple[str, ...]
    covered: np.ndarray
    radius: float | None = None
    within: np.ndarray | None = None
    frozen_covered: np.ndarray | None = None
    frozen_within: np.ndarray | None = None
    means_init: np.ndarray | None = None
    final_means: np.ndarray | None = None

    def _score(self, metric: str, frozen: bool) -> np.ndarray:
        if metric not in ("covered", "within"):
            raise ValueError(f"metric must be 'covered' or 'within', got {metric!r}")
        name = ("frozen_" if frozen else "") + metric
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"metric {metric!r} needs a radius: call coverage_table(..., radius=...)")
        return value

    def _family(self, start: str) -> int:
        if start not in self.starts:
            raise ValueError(f"start must be one of {self.starts}, got {start!r}")
        return self.starts.index(start)

    def counts(self, start: str, objective: str, metric: str = "covered") -> np.ndarray:
        """The counts (S,) of one family of starts under one objective, by ``metric``
        (``"covered"``: nearest centre; ``"within"``: a prototype within ``radius``)."""
        f = self._family(start)
        if objective not in self.objectives:
            raise ValueError(f"objective must be one of {self.objectives}, got {objective!r}")
        return self._score(metric, False)[f, self.objectives.index(objective)]

    def frozen(self, start: str, metric: str = "covered") -> np.ndarray:
        """The counts (S,) that the starts of one family score without any training."""
        f = self._family(start)
        return self._score(metric, True)[f]


def coverage_table(
    x: Any,
    centers: Any,
    starts: Mapping[str, Any],
    objectives: tuple[str, ...] = LOSSES,
    *,
    sigma: float = 1.0,
    lr: float = 0.5,
    n_steps: int = 300,
    radius: float | None = None,
) -> CoverageTable:
    """Fit every family of starts under every objective and count the centres covered
    (:func:`coverage`); every objective starts from the same prototypes.

    Each objective runs all families' starts as one batch of :func:`fit_prototypes` (the runs
    are independent: a run's result does not depend on the others in the batch). The starts
    themselves are scored too, as the do-nothing baseline.

    Parameters
    ----------
    x : (N, D)
    centers : (C, D) the true centres
    starts : mapping of a name to an (S, K, D) stack of initial prototypes
    objectives : objectives of :data:`PROTOTYPE_OBJECTIVES`
    sigma, lr, n_steps : as :func:`fit_prototypes`
    radius : float > 0, optional
        Also count the centres with a prototype closer than ``radius`` (``Coverage.within``).

    Returns
    -------
    CoverageTable
    """
    x = as_tensor(x, "x", ndim=2)
    c = as_numpy(centers, "centers", ndim=2)
    if not starts:
        raise ValueError("starts must not be empty")
    rad = None if radius is None else check_positive(radius, "radius")
    stacks = {name: as_tensor(mu0, f"starts[{name!r}]", ndim=3) for name, mu0 in starts.items()}
    S = {v.shape[0] for v in stacks.values()}
    if len(S) != 1:
        raise ValueError(f"starts must all hold the same number of starts, got {sorted(S)}")
    objectives = tuple(objectives)
    F, n = len(stacks), S.pop()
    mu0 = torch.cat(list(stacks.values()))  # (F S, K, D)
    final = np.stack([
        fit_prototypes(x, mu0, objective=k, sigma=sigma, lr=lr, n_steps=n_steps,
                       record_every=max(n_steps, 1)).final_means
        for k in objectives
    ])  # (O, F S, K, D)
    fit_cov = coverage(final.reshape(-1, *final.shape[2:]), c, rad)
    start_cov = coverage(to_numpy(mu0), c, rad)

    def per_run(v: np.ndarray | None) -> np.ndarray | None:  # (O F S,) -> (F, O, S)
        return None if v is None else v.reshape(len(objectives), F, n).transpose(1, 0, 2)

    def per_start(v: np.ndarray | None) -> np.ndarray | None:  # (F S,) -> (F, S)
        return None if v is None else v.reshape(F, n)

    return CoverageTable(
        tuple(stacks), objectives, per_run(fit_cov.covered), rad, per_run(fit_cov.within),
        per_start(start_cov.covered), per_start(start_cov.within),
        to_numpy(mu0).reshape(F, n, *mu0.shape[1:]),
        final.reshape(len(objectives), F, n, *final.shape[2:]).transpose(1, 0, 2, 3, 4),
    )


# ================================================================================================
# How each objective assigns points (chapter 7)
# ================================================================================================
def memberships(objective: str, x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """How much each component claims each point under the objective's own model.

    ``"lse"`` and ``"sqrt"``: responsibilities ``r_ij`` (rows sum to one); ``"sigmoid"``:
    ``sigmoid(-e_ij)``; ``"correntropy"`` and ``"partition"``: the kernel ``exp(-e_ij)``. Only the
    first is a soft assignment. ``e`` are the prototype distances. For ``"lse"`` and
    ``"correntropy"`` these are also the update weights (:func:`gradient_weights`) in closed form.

    Parameters
    ----------
    objective : one of :data:`PROTOTYPE_OBJECTIVES`; x : (N, D) or (B, N, D); means : (K, D) or
    (B, K, D); sigma : float > 0

    Returns
    -------
    torch tensor (N, K), or (B, N, K).
    """
    objective = check_objective(objective)
    e = prototype_distances(x, means, sigma).detach()
    if objective in ("lse", "sqrt"):
        return torch.softmax(-e, dim=-1)
    if objective == "sigmoid":
        return torch.sigmoid(-e)
    return torch.exp(-e)


def gradient_weights(objective: str, x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """``w_ij = d loss_i / d e_ij`` by autograd: the weight of point ``i`` in prototype ``j``'s update.

    Since ``d e_ij / d mu_j = (mu_j - x_i) / sigma^2`` for every objective, gradient descent moves
    ``mu_j`` towards ``sum_i w_ij x_i / sum_i w_ij``: ``w`` plays the role of EM's
    responsibilities. For ``"lse"`` it *is* ``r`` (Theorem 1); for ``"correntropy"`` and
    ``"partition"`` it is ``exp(-e)``; for ``"sigmoid"`` it is ``sigmoid(e)``, largest for the
    *farthest* component; for ``"sqrt"`` ``sqrt(Z_i) r_ij``.

    Parameters
    ----------
    objective : one of :data:`PROTOTYPE_OBJECTIVES`
    x : (N, D), or (B, N, D)
    means : (K, D), or (B, K, D)
    sigma : float > 0

    Returns
    -------
    torch tensor (N, K), or (B, N, K).
    """
    objective = check_objective(objective)
    e = prototype_distances(x, means, sigma).detach().clone().requires_grad_(True)
    (w,) = torch.autograd.grad(point_loss(objective, objective_distance(objective, e)).sum(), e)
    return w


def weight_sums(objective: str, x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """``sum_j w_ij`` per point: how much pull point ``i`` hands out in total under each loss.

    One for ``"lse"`` (every point counts once), ``sqrt(Z_i)`` for ``"sqrt"``, ``Z_i`` for
    ``"correntropy"`` and ``"partition"``, ``sum_j sigmoid(e_ij)`` for ``"sigmoid"``.

    Parameters
    ----------
    objective, x, means, sigma : as :func:`gradient_weights`

    Returns
    -------
    torch tensor (N,), or (B, N).
    """
    return gradient_weights(objective, x, means, sigma).sum(-1)


def prototype_gradient_norms(objective: str, x: Any, means: Any, sigma: float = 1.0) -> torch.Tensor:
    """``||d loss_i / d mu||`` (all prototypes together, the loss minimized) for each point ``x_i``.

    ``loss_i`` depends on the prototypes only through row ``i`` of the distances, so the
    per-sample gradient is ``w_ij (mu_j - x_i) / sigma^2`` (:func:`gradient_weights`).

    Parameters
    ----------
    objective : one of :data:`PROTOTYPE_OBJECTIVES`; x : (N, D); means : (K, D); sigma : float > 0

    Returns
    -------
    torch tensor (N,).
    """
    x, m = check_points_means(x, means)
    if x.ndim != 2 or m.ndim != 2:
        raise ValueError("x must be (N, D) and means (K, D) for per-point gradient norms")
    s = check_positive(sigma, "sigma")
    m, x = m.detach(), x.detach()
    w = gradient_weights(objective, x, m, s)
    g = w[:, :, None] * (m[None, :, :] - x[:, None, :]) / s**2
    return g.flatten(1).norm(dim=1)


@dataclass(frozen=True)
class FarPointProfile:
    """Gradient magnitude along a ray away from the prototypes (:func:`far_point_profile`).

    Attributes
    ----------
    t
        (T,) the ray parameters; nearest : (T,) the distance of each point to its nearest
    prototype; grad_norm : (T,) ``||d loss / d mu||`` of each point (the loss, minimized).
    """

    t: np.ndarray
    nearest: np.ndarray
    grad_norm: np.ndarray


def far_point_profile(
    objective: str,
    means: Any,
    distances: Any,
    direction: Any = None,
    sigma: float = 1.0,
    origin: Any = None,
) -> FarPointProfile:
    """Gradient magnitude for points moving away from every prototype.

    Points ``x(t) = c + t u`` on a ray from ``origin`` ``c`` (default: the prototypes'
    centroid) along the unit vector ``u`` (default: the first axis), one per entry of
    ``distances`` (values of ``t``).

    Parameters
    ----------
    objective : one of :data:`PROTOTYPE_OBJECTIVES`; means : (K, D); distances : (T,) the ray
    parameters; direction : (D,), optional; sigma : float > 0; origin : (D,), optional

    Returns
    -------
    FarPointProfile
    """
    mu = as_tensor(means, "means", ndim=2).detach()
    t = as_tensor(distances, "distances", ndim=1).to(mu.dtype)
    if direction is None:
        u = torch.zeros(mu.shape[1], dtype=mu.dtype)
        u[0] = 1.0
    else:
        u = as_tensor(direction, "direction", ndim=1).to(mu.dtype)
        if u.shape[0] != mu.shape[1]:
            raise ValueError(f"direction must have {mu.shape[1]} entries, got {u.shape[0]}")
        if float(u.norm()) == 0.0:
            raise ValueError("direction must be non-zero")
        u = u / u.norm()
    if origin is None:
        c = mu.mean(0)
    else:
        c = as_tensor(origin, "origin", ndim=1).to(mu.dtype)
        if c.shape[0] != mu.shape[1]:
            raise ValueError(f"origin must have {mu.shape[1]} entries, got {c.shape[0]}")
    x = c[None, :] + t[:, None] * u[None, :]
    nearest = torch.cdist(x, mu).min(dim=1).values
    gn = prototype_gradient_norms(objective, x, mu, sigma)
    return FarPointProfile(t.numpy(), nearest.numpy(), gn.numpy())


@dataclass(frozen=True)
class TrajectoryCoupling:
    """Coupling along a training trajectory (:func:`trajectory_coupling`), arrays (T,) or (T, S).

    Attributes
    ----------
    mean_offdiag
        the mean over points of ``sum_{j != k} |J_i[j, k]|`` (for ``"lse"``
        ``1 - sum_j r_ij^2``, the responsibility mass a point shares).
    shared
        the fraction of points with some ``|J_i[j, k]| > 0.01``.
    """

    mean_offdiag: np.ndarray
    shared: np.ndarray


def trajectory_coupling(objective: str, x: Any, means_path: Any, sigma: float = 1.0) -> TrajectoryCoupling:
    """How much each point's components interact, at every snapshot of a trajectory.

    For each snapshot the per-point Jacobian ``J_i`` of the loss gradient is taken in closed form
    (:func:`iemlib.objectives.gradient_jacobian_closed_form`) in the objective's own distances
    (0 for a point owned by one component, ``1 - 1/K`` for one split evenly under ``"lse"``).

    Parameters
    ----------
    objective : one of ``iemlib.objectives.LOSSES``
    x : (N, D)
    means_path : (T, K, D), or (T, S, K, D) for S runs (e.g. ``PrototypeFit.means``)
    sigma : float > 0

    Returns
    -------
    TrajectoryCoupling
    """
    objective = check_objective(objective)
    x = as_tensor(x, "x", ndim=2).detach()
    P = as_tensor(means_path, "means_path", ndim=(3, 4)).detach()
    s = check_positive(sigma, "sigma")
    single = P.ndim == 3
    if single:
        P = P[:, None]
    T_, S, K = P.shape[:3]
    mo = np.zeros((T_, S))
    sh = np.zeros((T_, S))
    mask = ~torch.eye(K, dtype=torch.bool)
    with single_threaded():
        for t in range(T_):
            for s_ in range(S):
                J = gradient_jacobian_closed_form(objective, objective_distance(objective, scaled_distances(x, P[t, s_], s)))
                off = J[:, mask].abs()
                mo[t, s_] = float(off.sum(1).mean()) if K > 1 else 0.0
                sh[t, s_] = float((off.amax(1) > 0.01).double().mean()) if K > 1 else 0.0
    if single:
        mo, sh = mo[:, 0], sh[:, 0]
    return TrajectoryCoupling(mo, sh)


# ================================================================================================
# Without gradients: evolution strategies (chapter 3)
# ================================================================================================
def _perturbations(shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    # numpy fills the array in order, so the first k of n draws do not depend on n
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, *shape)))


def _antithetic(m: torch.Tensor, eps: torch.Tensor, sm: float, chunk: int):
    """Chunks of antithetic perturbations: (start, eps, mu + s eps, mu - s eps)."""
    for a in range(0, eps.shape[0], chunk):
        e = eps[a : a + chunk]
        yield a, e, m + sm * e, m - sm * e


def _check_es(x, means, sigma, smoothing, random_state, chunk):
    x, m = check_points_means(x, means)
    if x.ndim != 2 or m.ndim != 2:
        raise ValueError("x must be (N, D) and means (K, D)")
    return (x.detach(), m.detach(), check_positive(sigma, "sigma"), check_positive(smoothing, "smoothing"),
            check_int(random_state, "random_state", minimum=0), check_int(chunk, "chunk", minimum=1))


def es_gradient(x: Any, means: Any, *, sigma: float = 1.0, smoothing: float = 0.1, n_samples: Any = 100,
                random_state: int = 0, chunk: int = 2048) -> np.ndarray:
    """Antithetic Gaussian evolution-strategy estimate of the gradient of :func:`prototype_loss`.

    ``g = (1 / (2 n s)) sum_k eps_k [loss(mu + s eps_k) - loss(mu - s eps_k)]`` with ``eps_k`` iid
    standard normal of the shape of ``means`` (K, D), ``s = smoothing``: loss values only (2 n of
    them). Its expectation is the gradient of the smoothed loss ``E_eps[loss(mu + s eps)]``
    (:func:`smoothed_gradient`).

    Parameters
    ----------
    x : (N, D)
    means : (K, D)
    sigma : float > 0, the length scale of the loss
    smoothing : float > 0
    n_samples : int >= 1, or a sequence of them
        For a sequence, the estimates from the prefixes of one stream of perturbations (the
        estimate with ``n`` samples uses the first ``n``), at the cost of the largest.
    random_state : int >= 0
    chunk : int >= 1, perturbations evaluated at once

    Returns
    -------
    numpy array (K, D), or (len(n_samples), K, D) for a sequence.
    """
    x, m, s, sm, seed, ch = _check_es(x, means, sigma, smoothing, random_state, chunk)
    one = np.ndim(n_samples) == 0
    sizes = [check_int(k, "n_samples", minimum=1) for k in np.atleast_1d(np.asarray(n_samples)).tolist()]
    if not sizes:
        raise ValueError("n_samples must hold at least one positive integer")
    n = max(sizes)
    eps = _perturbations(tuple(m.shape), n, seed)
    contrib = torch.empty_like(eps)
    with single_threaded():
        for a, e, plus, minus in _antithetic(m, eps, sm, ch):
            lp = -torch.logsumexp(-scaled_distances(x[None], plus, s), dim=-1).mean(-1)
            lm = -torch.logsumexp(-scaled_distances(x[None], minus, s), dim=-1).mean(-1)
            contrib[a : a + ch] = (lp - lm)[:, None, None] * e / (2.0 * sm)
        csum = contrib.cumsum(0)
    out = np.stack([(csum[k - 1] / k).numpy() for k in sizes])
    return out[0] if one else out


def smoothed_gradient(x: Any, means: Any, *, sigma: float = 1.0, smoothing: float = 0.1, n_samples: int = 10_000,
                      random_state: int = 0, chunk: int = 2048) -> np.ndarray:
    """Monte-Carlo estimate of the gradient of the smoothed loss, ``E_eps[grad loss(mu + s eps)]``,
    from closed-form (responsibility-weighted) gradients at ``n_samples`` perturbed points
    (antithetic pairs). :func:`es_gradient` has the same expectation.

    Returns
    -------
    numpy array (K, D).
    """
    x, m, s, sm, seed, ch = _check_es(x, means, sigma, smoothing, random_state, chunk)
    n = check_int(n_samples, "n_samples", minimum=1)
    total = torch.zeros_like(m)
    with single_threaded():
        for _, _, plus, minus in _antithetic(m, _perturbations(tuple(m.shape), n, seed), sm, ch):
            total += _closed_form_gradient(x[None], plus, s, "lse").sum(0) + _closed_form_gradient(x[None], minus, s, "lse").sum(0)
    return (total / (2.0 * n)).numpy()


# ================================================================================================
# Learned scales (chapter 9)
# ================================================================================================
def scaled_mixture_objective(x: Any, means: Any, sigma: Any, *, logdet: bool) -> float:
    """The mean objective ``mean_i L_i`` (maximized) of the learned-scale model of :func:`fit_prototypes`.

    No normalization, no weight decay: ``L_i = log sum_j exp(-||x_i - mu_j||^2 / (2 sigma_j^2)
    [+ D log(1 / sigma_j)])``. Without the volume term it is bounded above by ``log K``; with it,
    it grows without bound as a component centred on a data point shrinks (``sigma_j -> 0``).

    Parameters
    ----------
    x : (N, D); means : (K, D); sigma : (K,) positive scales; logdet : bool

    Returns
    -------
    float
    """
    x, mu = check_points_means(x, means)
    if x.ndim != 2 or mu.ndim != 2:
        raise ValueError("x must be (N, D) and means (K, D)")
    sg = _check_sigma_vector(sigma, mu.shape[0], "sigma", x)
    if not isinstance(logdet, bool):
        raise ValueError(f"logdet must be a bool, got {logdet!r}")
    e = _scaled_distances(x.detach(), mu.detach(), -torch.log(sg), logdet, False)
    return float(torch.logsumexp(-e, dim=1).mean())
