"""Beyond the paper: the four open directions of §7.3 of Oursland (2025), as small experiments.

These are the *book's* experiments, not claims of the paper. Four pieces, one per section of
chapter 10:

* **Gradient-based diagnostics.** Read responsibilities off the backward pass (a tensor hook on
  the distances ``d``: :class:`ResponsibilityHook`, :func:`responsibilities_from_gradient`),
  check that a gradient has the log-sum-exp structure at all (:func:`responsibility_defect`),
  measure specialization (:func:`specialization`: per-sample responsibility entropy, the
  effective number of components ``exp(H)``, usage per component) and flag degeneration
  (:func:`detect_degeneration`: a dead component, a dominating one, or no specialization).
  :func:`fit_mixture_tracked` trains a mixture by gradient descent and records all of these
  from the hook at every step.
* **Volume control.** The same trainer with learned scales, with or without the log-determinant
  term (``learn_scale=True, logdet=...``). Chapter 9 treats collapse in depth.
* **Soft supervision.** A soft target ``q`` (label smoothing, the expectation of noisy labels):
  :func:`soft_cross_entropy` and its gradient ``q_j - r_j`` with respect to ``d``
  (:func:`soft_cross_entropy_gradient`), :func:`smooth_labels`, :func:`noisy_label_targets`,
  :func:`smoothing_fixed_point` and a plain gradient-descent trainer
  (:func:`train_soft_classifier`).
* **Open-set rejection.** An explicit "none of the above" component with a fixed distance
  ``tau`` (:class:`RejectOption`, :func:`reject_responsibility`).

Conventions (the book's): ``d`` are distances, logits ``z = -d``; ``L = log sum_j exp(-d_j)``
is the objective (maximized); a loss is minimized. Every function says which it differentiates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import ArrayLike, as_float_array, check_int, check_labels, check_positive, is_torch

__all__ = [
    "responsibilities_from_gradient",
    "ResponsibilityHook",
    "responsibility_defect",
    "specialization",
    "detect_degeneration",
    "fit_mixture_tracked",
    "smooth_labels",
    "noisy_label_targets",
    "sample_noisy_labels",
    "smoothing_fixed_point",
    "soft_cross_entropy",
    "soft_cross_entropy_gradient",
    "train_soft_classifier",
    "RejectOption",
    "reject_responsibility",
    "open_set_scores",
]


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


def _tensor(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    arr = as_float_array(x, name, ndim=ndim)
    if is_torch(arr):
        return arr
    return torch.as_tensor(np.asarray(arr), dtype=torch.float64)


def _check_probability_rows(q: ArrayLike, name: str, tol: float = 1e-6) -> None:
    lo = float(q.min())
    if lo < -tol:
        raise ValueError(f"{name} must be non-negative (a distribution per row), got a minimum of {lo:.3g}")
    s = q.sum(-1)
    dev = float((s - 1).abs().max()) if is_torch(s) else float(np.max(np.abs(s - 1)))
    if dev > tol:
        raise ValueError(f"{name} must have rows summing to 1, off by up to {dev:.3g}")


# ------------------------------------------------------------------------------------------
# 1. Gradient-based diagnostics
# ------------------------------------------------------------------------------------------
def responsibilities_from_gradient(grad_d: ArrayLike, targets: Any = None, scale: float = 1.0) -> ArrayLike:
    """Recover responsibilities from the gradient of a *loss* (minimized) with respect to ``d``.

    Two loss forms are covered, with ``c = scale`` (e.g. ``1/N`` for a mean over ``N`` samples):

    * unsupervised (``targets=None``): ``loss = -c sum_i L_i`` with ``L_i = log sum_j exp(-d_ij)``
      (the negative of the maximized objective). By Theorem 1, ``d loss / d d_ij = c r_ij``, so
      ``r = grad_d / c``;
    * supervised (``targets`` = labels of shape (N,) or a soft target ``q`` of shape (N, K)):
      ``loss = c sum_i [sum_j q_ij d_ij + L_i]`` (cross-entropy, hard labels being one-hot ``q``),
      whose gradient is ``c (q_ij - r_ij)``, so ``r = q - grad_d / c``.

    Returns the same kind as ``grad_d`` (numpy or torch). Nothing here checks that the loss
    *was* of that form; :func:`responsibility_defect` says whether the result is a distribution.
    """
    g = as_float_array(grad_d, "grad_d", min_ndim=1)
    c = check_positive(scale, "scale")
    if targets is None:
        return g / c
    if isinstance(targets, (np.ndarray, torch.Tensor)) and (
        (is_torch(targets) and torch.is_floating_point(targets))
        or (not is_torch(targets) and np.issubdtype(np.asarray(targets).dtype, np.floating))
    ):
        q = as_float_array(targets, "targets")
        if tuple(q.shape) != tuple(g.shape):
            raise ValueError(f"targets must have the shape of grad_d {tuple(g.shape)}, got {tuple(q.shape)}")
        _check_probability_rows(q, "targets")
    else:
        y = check_labels(targets, "targets", g.shape[-1], shape=tuple(g.shape[:-1]))
        K = g.shape[-1]
        if is_torch(g):
            yt = y if is_torch(y) else torch.as_tensor(np.asarray(y))
            q = nn.functional.one_hot(yt.long().to(g.device), K).to(g.dtype)
        else:
            q = np.eye(K, dtype=g.dtype)[np.asarray(y)]
    if is_torch(g) and not is_torch(q):
        q = torch.as_tensor(np.asarray(q), dtype=g.dtype, device=g.device)
    elif not is_torch(g) and is_torch(q):
        q = _np(q).astype(g.dtype)
    return q - g / c


class ResponsibilityHook:
    """Read responsibilities off a real backward pass through a tensor hook on the distances.

    Usage::

        hook = ResponsibilityHook()
        d = hook.watch(distance_fn(x))          # registers the hook, returns d unchanged
        loss = -torch.logsumexp(-d, 1).sum()    # or a cross-entropy in d
        loss.backward()                         # the parameters get their gradients as usual
        r = hook.responsibilities()             # = grad / scale (or q - grad / scale)

    The hook only *records* the gradient flowing through ``d`` on its way to the parameters
    (what the M-step actually receives); it does not change it. ``grad`` holds the last one.
    """

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None

    def watch(self, d: torch.Tensor) -> torch.Tensor:
        """Register the hook on ``d`` (a tensor that requires grad) and return ``d``."""
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
        """Responsibilities from the last recorded gradient (see :func:`responsibilities_from_gradient`)."""
        if self.grad is None:
            raise ValueError("no gradient recorded yet: call watch(d) and run a backward pass first")
        return responsibilities_from_gradient(self.grad, targets=targets, scale=scale)


def responsibility_defect(r: ArrayLike) -> float:
    """How far each row of ``r`` is from a probability distribution: ``max(|sum_j r_j - 1|, -min r)``.

    About machine precision when ``r`` came from the gradient of a log-sum-exp loss; large when
    the loss has no partition function (independent sigmoids, for instance), where the same
    recipe recovers numbers that are not responsibilities.
    """
    r = as_float_array(r, "r", min_ndim=1)
    rr = _np(r).astype(np.float64)
    return float(max(np.max(np.abs(rr.sum(-1) - 1.0)), max(0.0, -float(rr.min()))))


def specialization(r: ArrayLike) -> dict[str, Any]:
    """Specialization statistics of a responsibility matrix ``r`` of shape (N, K).

    Returns a dict:

    * ``entropy`` (N,): ``H_i = -sum_j r_ij log r_ij`` in nats (0: one component takes the
      point; ``log K``: an even split);
    * ``mean_entropy`` and ``normalized_entropy`` (mean ``H_i / log K``, in [0, 1]);
    * ``effective_components`` (N,) and ``mean_effective_components``: ``exp(H_i)``, how many
      components share point ``i`` (1 to K);
    * ``usage`` (K,): mean responsibility of each component over the points (sums to 1);
    * ``effective_usage``: ``exp`` of the entropy of ``usage``, how many components are in use
      over the whole data set (1 to K).
    """
    r = as_float_array(r, "r", ndim=2)
    rr = _np(r).astype(np.float64)
    _check_probability_rows(rr, "r", tol=1e-6)
    rr = np.clip(rr, 0.0, None)
    K = rr.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.sum(np.where(rr > 0, rr * np.log(rr), 0.0), axis=1)
    usage = rr.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        Hu = -np.sum(np.where(usage > 0, usage * np.log(usage), 0.0))
    return {
        "entropy": H,
        "mean_entropy": float(H.mean()),
        "normalized_entropy": float(H.mean() / math.log(K)) if K > 1 else 0.0,
        "effective_components": np.exp(H),
        "mean_effective_components": float(np.exp(H).mean()),
        "usage": usage,
        "effective_usage": float(np.exp(Hu)),
    }


def detect_degeneration(
    r: ArrayLike, dead_fraction: float = 0.1, dominant_share: float = 0.75, blur_entropy: float = 0.9
) -> dict[str, Any]:
    """Flag a degenerate mixture from its responsibilities ``r`` (N, K).

    * a component is **dead** when its usage (mean responsibility) is below
      ``dead_fraction / K``: it explains almost nothing and, since its gradient is weighted by
      its responsibilities, it also learns almost nothing;
    * a component **dominates** when its usage exceeds ``dominant_share``;
    * the mixture is **unspecialized** when the mean normalized responsibility entropy exceeds
      ``blur_entropy``: every point is split almost evenly, the responsibilities carry no
      assignment (the blur of chapter 9's mixture without a volume term).

    Returns ``{"dead": [j...], "dominant": [j...], "unspecialized": bool, "degenerate": bool,
    "usage": (K,), "normalized_entropy": float, "message": str}``.
    """
    df = check_positive(dead_fraction, "dead_fraction")
    ds = check_positive(dominant_share, "dominant_share")
    if ds >= 1.0:
        raise ValueError(f"dominant_share must be in (0, 1), got {dominant_share!r}")
    be = check_positive(blur_entropy, "blur_entropy")
    if be >= 1.0:
        raise ValueError(f"blur_entropy must be in (0, 1), got {blur_entropy!r}")
    s = specialization(r)
    K = len(s["usage"])
    dead = [int(j) for j in np.flatnonzero(s["usage"] < df / K)]
    dom = [int(j) for j in np.flatnonzero(s["usage"] > ds)]
    blur = bool(K > 1 and s["normalized_entropy"] > be)
    parts = []
    if dead:
        parts.append(f"dead component(s) {dead}")
    if dom:
        parts.append(f"dominating component(s) {dom}")
    if blur:
        parts.append(f"unspecialized (entropy/log K = {s['normalized_entropy']:.3f})")
    return {
        "dead": dead,
        "dominant": dom,
        "unspecialized": blur,
        "degenerate": bool(dead or dom or blur),
        "usage": s["usage"],
        "normalized_entropy": s["normalized_entropy"],
        "message": "; ".join(parts) if parts else "healthy",
    }


def fit_mixture_tracked(
    x: Any,
    mu0: Any,
    sigma0: Any = None,
    *,
    learn_scale: bool = False,
    logdet: bool = False,
    lr: float = 0.5,
    n_steps: int = 200,
    record_every: int = 5,
) -> dict[str, Any]:
    """Gradient descent on an equal-weight spherical mixture, diagnosed from the backward pass.

    Component ``j`` has a mean ``mu_j`` and a scale ``sigma_j`` (parametrized by
    ``log a_j = -log sigma_j``, learned only when ``learn_scale``); its distance is
    ``d_ij = ||x_i - mu_j||^2 / (2 sigma_j^2)``, minus ``D log a_j`` when ``logdet`` (the
    log-determinant, or volume, term of a Gaussian). The loss minimized is the negative mean
    objective ``-(1/N) sum_i log sum_j exp(-d_ij)``.

    At every step a :class:`ResponsibilityHook` on ``d`` records the gradient of that loss
    with respect to ``d``; the responsibilities recorded are ``N * grad`` (Theorem 1), never a
    softmax. Every ``record_every`` steps (and at the last) the history gets ``steps``,
    ``usage`` (T, K), ``normalized_entropy`` (T,), ``effective_components`` (T,) (mean
    ``exp(H_i)``), ``sigma`` (T, K), ``objective`` (T,) (mean ``L_i``, maximized),
    ``hook_error`` (T,) (largest ``|r_hook - softmax(-d)|``, the check that the backward pass
    carries the responsibilities) and ``mean_step`` (T, K) (how far each mean moved in that
    step). Also returned: ``mu`` (K, D) and ``r`` (N, K), the final means and hook
    responsibilities.
    """
    x = _tensor(x, "x", ndim=2).detach()
    mu0 = _tensor(mu0, "mu0", ndim=2).detach().to(x.dtype)
    N, D = x.shape
    if mu0.shape[1] != D:
        raise ValueError(f"mu0 must have {D} columns like x, got shape {tuple(mu0.shape)}")
    K = mu0.shape[0]
    if sigma0 is None:
        s0 = torch.ones(K, dtype=x.dtype)
    else:
        s0 = _tensor(sigma0, "sigma0", ndim=1).detach().to(x.dtype)
        if s0.shape[0] != K:
            raise ValueError(f"sigma0 must have {K} entries, one per component, got {s0.shape[0]}")
        if bool((s0 <= 0).any()):
            raise ValueError("sigma0 must be positive")
    if not isinstance(learn_scale, bool):
        raise ValueError(f"learn_scale must be a bool, got {learn_scale!r}")
    if not isinstance(logdet, bool):
        raise ValueError(f"logdet must be a bool, got {logdet!r}")
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    every = check_int(record_every, "record_every", minimum=1)

    mu = mu0.clone().requires_grad_(True)
    log_a = (-torch.log(s0)).clone().requires_grad_(learn_scale)
    params = [mu, log_a] if learn_scale else [mu]
    keys = ("steps", "usage", "normalized_entropy", "effective_components", "sigma", "objective", "hook_error", "mean_step")
    rec: dict[str, list] = {k: [] for k in keys}
    hook = ResponsibilityHook()
    r = None
    for t in range(n + 1):
        sq = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
        d = sq * torch.exp(2.0 * log_a) / 2.0
        if logdet:
            d = d - D * log_a
        hook.watch(d)
        L = torch.logsumexp(-d, dim=1)
        loss = -L.mean()
        grads = torch.autograd.grad(loss, params)
        r = hook.responsibilities(scale=1.0 / N)  # loss = -(1/N) sum_i L_i: grad = r / N
        with torch.no_grad():
            step = eta * grads[0]
            if t % every == 0 or t == n:
                s = specialization(r)
                rec["steps"].append(t)
                rec["usage"].append(s["usage"])
                rec["normalized_entropy"].append(s["normalized_entropy"])
                rec["effective_components"].append(s["mean_effective_components"])
                rec["sigma"].append(torch.exp(-log_a).numpy().copy())
                rec["objective"].append(float(L.mean()))
                rec["hook_error"].append(float((r - torch.softmax(-d, 1)).abs().max()))
                rec["mean_step"].append(step.norm(dim=1).numpy().copy())
            if t == n:
                break
            mu -= step
            if learn_scale:
                log_a -= eta * grads[1]
    out: dict[str, Any] = {k: np.asarray(v) for k, v in rec.items()}
    out["mu"] = mu.detach()
    out["r"] = r.detach()
    return out


# ------------------------------------------------------------------------------------------
# 3. Soft supervision
# ------------------------------------------------------------------------------------------
def _check_eps(eps: Any, name: str = "eps") -> float:
    e = check_positive(eps, name, allow_zero=True)
    if e > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {eps!r}")
    return e


def smooth_labels(y: Any, n_classes: int, eps: float) -> torch.Tensor:
    """Label smoothing: ``q = (1 - eps) onehot(y) + eps / K``, rows summing to one (float64 tensor)."""
    K = check_int(n_classes, "n_classes", minimum=2)
    e = _check_eps(eps)
    y = check_labels(y, "y", K)
    yt = (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()
    return (1.0 - e) * nn.functional.one_hot(yt, K).to(torch.float64) + e / K


def noisy_label_targets(y: Any, n_classes: int, rho: float) -> torch.Tensor:
    """The expected one-hot target under symmetric label noise of rate ``rho``.

    A label is kept with probability ``1 - rho`` and otherwise replaced by one of the ``K - 1``
    other classes uniformly, so ``E[onehot] = (1 - rho) onehot(y) + rho / (K - 1) (1 - onehot(y))``:
    label smoothing with ``eps = rho K / (K - 1)``.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    p = _check_eps(rho, "rho")
    y = check_labels(y, "y", K)
    yt = (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()
    oh = nn.functional.one_hot(yt, K).to(torch.float64)
    return (1.0 - p) * oh + p / (K - 1) * (1.0 - oh)


def sample_noisy_labels(y: Any, n_classes: int, rho: float, seed: int = 0) -> torch.Tensor:
    """Draw labels under symmetric label noise of rate ``rho`` (the model of :func:`noisy_label_targets`).

    Each label is kept with probability ``1 - rho`` and otherwise replaced by one of the ``K - 1``
    other classes, uniformly: ``(y + U{1, ..., K-1}) mod K``. Seeded (``torch.Generator``), so two
    calls with the same arguments return the same labels. Returns a long tensor of ``y``'s shape.
    """
    K = check_int(n_classes, "n_classes", minimum=2)
    p = _check_eps(rho, "rho")
    y = check_labels(y, "y", K)
    yt = (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()
    g = torch.Generator().manual_seed(check_int(seed, "seed"))
    flip = torch.rand(yt.shape, generator=g, dtype=torch.float64) < p
    offset = torch.randint(1, K, yt.shape, generator=g)
    return torch.where(flip, (yt + offset) % K, yt)


def smoothing_fixed_point(eps: float, n_classes: int) -> float:
    """The responsibility of the labelled class where the smoothed loss is stationary: ``1 - eps + eps / K``."""
    K = check_int(n_classes, "n_classes", minimum=2)
    e = _check_eps(eps)
    return 1.0 - e + e / K


def _check_soft(d: Any, q: Any) -> tuple[ArrayLike, ArrayLike]:
    d = as_float_array(d, "d", min_ndim=1)
    q = as_float_array(q, "q", min_ndim=1)
    if tuple(q.shape) != tuple(d.shape):
        raise ValueError(f"q must have the same shape as d {tuple(d.shape)}, got {tuple(q.shape)}")
    _check_probability_rows(q, "q")
    if is_torch(d) and not is_torch(q):
        q = torch.as_tensor(np.asarray(q), dtype=d.dtype, device=d.device)
    elif not is_torch(d) and is_torch(q):
        q = _np(q).astype(d.dtype)
    elif is_torch(d):
        q = q.to(d.dtype)
    return d, q


def soft_cross_entropy(d: Any, q: Any) -> ArrayLike:
    """Cross-entropy *loss* (minimized) against a soft target ``q``, per sample, in distances.

    ``loss = sum_j q_j d_j + log sum_k exp(-d_k) = -sum_j q_j log r_j``, for rows of ``q``
    summing to one. A one-hot ``q`` gives the ordinary cross-entropy ``d_y + log sum_k exp(-d_k)``.
    """
    d, q = _check_soft(d, q)
    if is_torch(d):
        return (q * d).sum(-1) + torch.logsumexp(-d, dim=-1)
    m = d.min(-1, keepdims=True)
    return (q * d).sum(-1) - m[..., 0] + np.log(np.exp(-(d - m)).sum(-1))


def soft_cross_entropy_gradient(d: Any, q: Any) -> ArrayLike:
    """Closed-form gradient of :func:`soft_cross_entropy` (the loss) with respect to ``d``: ``q_j - r_j``.

    The labelled class is pulled only until ``r_y = q_y`` (the clamp is partial), and a wrong
    class with ``r_j < q_j`` is pulled *closer* rather than pushed away.
    """
    d, q = _check_soft(d, q)
    if is_torch(d):
        return q - torch.softmax(-d, dim=-1)
    e = np.exp(-(d - d.min(-1, keepdims=True)))
    return q - e / e.sum(-1, keepdims=True)


def train_soft_classifier(
    model: nn.Module,
    X: Any,
    q: Any,
    epochs: int = 300,
    lr: float = 0.5,
    record_every: int = 10,
) -> dict[str, np.ndarray]:
    """Full-batch gradient descent on the mean soft cross-entropy *loss* ``mean_i soft_ce(d_i, q_i)``.

    ``d = -model(X)``; ``q`` (N, K) soft targets with rows summing to one. Plain steps
    ``theta <- theta - lr * grad`` (no momentum). Trains ``model`` in place, deterministically.
    Records every ``record_every`` epochs (and the last): ``epoch``, ``loss``, ``grad_norm``
    (norm of the loss gradient with respect to all parameters: near 0 at a stationary point)
    and ``r_target`` (mean over samples of the responsibility of each sample's most-weighted
    class ``argmax_j q_ij``).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters")
    X = _tensor(X, "X", ndim=2).detach()
    if X.dtype != params[0].dtype:
        raise ValueError(f"X must have the model's dtype {params[0].dtype}, got {X.dtype}")
    q = _tensor(q, "q", ndim=2).detach().to(X.dtype)
    if q.shape[0] != X.shape[0]:
        raise ValueError(f"q must have one row per sample of X ({X.shape[0]}), got {q.shape[0]}")
    _check_probability_rows(q, "q")
    n = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    every = check_int(record_every, "record_every", minimum=1)
    with torch.no_grad():
        K = model(X[:1]).shape[-1]
    if q.shape[1] != K:
        raise ValueError(f"q must have {K} columns, one per model output, got {q.shape[1]}")
    top = q.argmax(1)
    idx = torch.arange(X.shape[0])
    rec: dict[str, list] = {k: [] for k in ("epoch", "loss", "grad_norm", "r_target")}
    for t in range(n + 1):
        d = -model(X)
        loss = soft_cross_entropy(d, q).mean()
        grads = torch.autograd.grad(loss, params)
        if t % every == 0 or t == n:
            with torch.no_grad():
                rec["epoch"].append(t)
                rec["loss"].append(float(loss))
                rec["grad_norm"].append(float(torch.sqrt(sum((g**2).sum() for g in grads))))
                rec["r_target"].append(float(torch.softmax(-d, 1)[idx, top].mean()))
        if t == n:
            break
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(eta * g)
    return {k: np.asarray(v) for k, v in rec.items()}


# ------------------------------------------------------------------------------------------
# 4. Open-set rejection
# ------------------------------------------------------------------------------------------
class RejectOption(nn.Module):
    """A classifier with an explicit "none of the above" component at a fixed distance ``tau``.

    Wraps ``base`` (returning logits ``z`` of shape (N, K), distances ``d = -z``) and returns
    K + 1 logits ``[z, -tau]``: the last component has distance ``tau`` for every input and no
    parameters. Its responsibility is ``exp(-tau) / (exp(-tau) + sum_k exp(-d_k))``. Trained
    with cross-entropy on labels in ``[0, K)``, the reject component is always a wrong class:
    the loss pushes the labelled distance below ``tau``, anchoring the absolute level of the
    distances, which plain softmax ignores.
    """

    def __init__(self, base: nn.Module, tau: float) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise ValueError(f"base must be a torch.nn.Module, got {type(base).__name__}")
        v = as_float_array(tau, "tau", ndim=0)
        self.base = base
        self.tau = float(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        z = self.base(x)
        return torch.cat([z, torch.full_like(z[:, :1], -self.tau)], dim=1)


def reject_responsibility(d_known: Any, tau: float) -> ArrayLike:
    """Responsibility of a reject component at distance ``tau`` next to the known distances ``d_known`` (N, K).

    ``r_0 = exp(-tau) / (exp(-tau) + sum_k exp(-d_k)) = sigmoid(-tau - L)`` with
    ``L = log sum_k exp(-d_k)`` the objective of the known components: a fixed, decreasing
    function of ``L``. As a ranking score it is therefore equivalent to ``-L``; ``tau`` only sets
    where ``r_0 = 1/2`` (at ``L = -tau``). Returns the same kind as ``d_known``, shape (N,).
    """
    d = as_float_array(d_known, "d_known", ndim=2)
    t = float(as_float_array(tau, "tau", ndim=0))
    if is_torch(d):
        return torch.sigmoid(-t - torch.logsumexp(-d, dim=1))
    m = d.min(1, keepdims=True)
    L = -m[:, 0] + np.log(np.exp(-(d - m)).sum(1))
    u = -t - L
    # numerically stable logistic
    return np.where(u >= 0, 1.0 / (1.0 + np.exp(-np.abs(u))), np.exp(-np.abs(u)) / (1.0 + np.exp(-np.abs(u))))


def open_set_scores(
    d_sets: dict[str, Any], tau: float | None = None, positive: str | None = None, d_train: Any = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Open-set scores of one trained model, from its known-class distances on several input sets.

    Parameters
    ----------
    d_sets : dict of name -> (N, K) distances ``d = -z`` of the known classes on each input set;
        the first set (or ``positive``) is the in-distribution one.
    tau : distance of a reject component (:func:`reject_responsibility`), or None for none.
    positive : name of the in-distribution set (default: the first key of ``d_sets``).
    d_train : (N, K) distances on the training inputs, for the training rejection rate (optional).

    Returns
    -------
    ``(row, r0)``. ``row`` holds, for every other set ``k``, the AUROC of separating ``positive``
    (positive class) from ``k`` by max-softmax (``"auc_ms k"``) and by the objective
    ``L = log sum_j exp(-d_j)`` (``"auc_L k"``); with ``tau`` also by ``1 - r_0`` (``"auc_r0 k"``),
    and for every set the share rejected at the built-in threshold ``r_0 > 1/2`` (``"rej k"``,
    plus ``"rej train"`` when ``d_train`` is given). ``r0`` maps each set to its ``r_0`` (numpy),
    empty without ``tau``.
    """
    from .failure_modes import max_softmax, ood_auroc

    if not isinstance(d_sets, dict) or not d_sets:
        raise ValueError("d_sets must be a non-empty dict of name -> (N, K) distances")
    ds = {k: _tensor(v, f"d_sets[{k!r}]", ndim=2).detach() for k, v in d_sets.items()}
    K = {v.shape[1] for v in ds.values()}
    if len(K) != 1:
        raise ValueError(f"d_sets must all have the same number of classes, got {sorted(K)}")
    pos = next(iter(ds)) if positive is None else positive
    if pos not in ds:
        raise ValueError(f"positive must name a key of d_sets {list(ds)}, got {positive!r}")
    ms = {k: max_softmax(-v) for k, v in ds.items()}
    L = {k: torch.logsumexp(-v, 1).numpy() for k, v in ds.items()}
    others = [k for k in ds if k != pos]
    row: dict[str, float] = {}
    for k in others:
        row[f"auc_ms {k}"] = ood_auroc(ms[pos], ms[k])
        row[f"auc_L {k}"] = ood_auroc(L[pos], L[k])
    r0: dict[str, np.ndarray] = {}
    if tau is not None:
        r0 = {k: _np(reject_responsibility(v, tau)) for k, v in ds.items()}
        if d_train is not None:
            row["rej train"] = float((_np(reject_responsibility(_tensor(d_train, "d_train", ndim=2), tau)) > 0.5).mean())
        for k in ds:
            row[f"rej {k}"] = float((r0[k] > 0.5).mean())
        for k in others:
            row[f"auc_r0 {k}"] = ood_auroc(1 - r0[pos], 1 - r0[k])
    elif d_train is not None:
        _tensor(d_train, "d_train", ndim=2)
    return row, r0
