"""Classifiers read in distances: the constrained regime of implicit EM (chapters 6, 9 and 10).

A classifier produces logits ``z_j``; the book reads them as negative distances ``d_j = -z_j``. The
cross-entropy *loss* (minimized) of a sample with label ``y`` is

    loss = d_y + log sum_k exp(-d_k)  =  -z_y + log sum_k exp(z_k),

and its gradient **with respect to the distances** is ``d loss / d d_j = 1[j = y] - r_j`` (with
respect to the logits ``z`` the sign flips: ``r_j - 1[j = y]``).

What is here:

* models: :func:`make_classifier` (linear or one-hidden-layer MLP, seeded),
  :class:`PrototypeClassifier` (one prototype per class and a learned scale: logits are negative
  squared distances) and :class:`RejectOption` (a "none of the above" component at a fixed distance);
* trainers, all plain and deterministic: :func:`train_classifier` (gradient descent on the
  cross-entropy loss, per-epoch records), :func:`train_soft_classifier` (soft targets),
  :func:`train_mlp_ensemble` (many small MLPs at once with Adam, optionally with the forward loss
  correction for label noise) and :func:`train_multilabel` (independent sigmoids or softmax);
* the chapter-6 measurements: :func:`cross_entropy_distance_gradients` (per-sample gradients of the
  loss with respect to ``d`` read off autograd), :func:`single_sample_step` (how a small step on one
  sample's loss moves its distances), :func:`push_shares` and :func:`push_per_class`.

Everything is deterministic for a given ``random_state`` and leaves the global random state alone.
Training loops run under :func:`iemlib.runtime.single_threaded`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import as_float_array, as_numpy, as_tensor, check_int, check_labels, check_positive, is_torch
from ._validation import to_numpy
from .runtime import single_threaded

__all__ = [
    "RECORDABLE",
    "make_classifier",
    "TrainHistory",
    "train_classifier",
    "DistanceGradients",
    "cross_entropy_distance_gradients",
    "single_sample_step",
    "PushShares",
    "push_shares",
    "PushPerClass",
    "push_per_class",
    "PrototypeClassifier",
    "RejectOption",
    "SoftTrainHistory",
    "train_soft_classifier",
    "EnsembleFit",
    "train_mlp_ensemble",
    "MultilabelFit",
    "train_multilabel",
]

#: Quantities :func:`train_classifier` can record once per epoch (``record=``).
RECORDABLE: tuple[str, ...] = (
    "loss",  # mean cross-entropy loss on the training data (minimized)
    "accuracy",  # training accuracy
    "r_correct",  # mean responsibility of the correct class, mean_i r_{i, y_i}
    "r_correct_min",  # smallest responsibility of the correct class over the samples
    "r_wrong_max",  # mean over samples of the largest wrong-class responsibility
    "r",  # the full (N, K) responsibility matrix (memory: epochs * N * K floats)
)
_DEFAULT_RECORD = ("loss", "accuracy", "r_correct")
_FLOAT_DTYPES = (torch.float32, torch.float64)


def _check_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_model(model: Any, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters")
    return params


def _check_X(X: Any, model: nn.Module, name: str = "X") -> torch.Tensor:
    """``X`` as a detached (N, F) tensor of the model's dtype (numpy input is converted)."""
    X = as_float_array(X, name, ndim=2)
    mdt = next((p.dtype for p in model.parameters()), None)
    if not is_torch(X):
        X = torch.as_tensor(X, dtype=mdt or torch.float64)
    if mdt is not None and X.dtype != mdt:
        raise ValueError(f"{name} must have the model's dtype {mdt}, got {X.dtype}")
    return X.detach()


def _logits(model: nn.Module, X: torch.Tensor, name: str = "X") -> torch.Tensor:
    try:
        z = model(X)
    except RuntimeError as exc:  # typically a shape mismatch with the first layer
        raise ValueError(f"{name} of shape {tuple(X.shape)} does not fit the model: {exc}") from exc
    if z.ndim != 2 or z.shape[0] != X.shape[0] or z.shape[1] < 2:
        raise ValueError(f"model must map {name} of shape (N, F) to logits of shape (N, K >= 2), got {tuple(z.shape)}")
    return z


def _n_classes(model: nn.Module, X: torch.Tensor, name: str = "X") -> int:
    with torch.no_grad():
        return _logits(model, X, name).shape[1]


def _check_y(y: Any, n: int, n_classes: int, name: str = "y") -> torch.Tensor:
    y = check_labels(y, name, n_classes, shape=(n,))
    return (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
def make_classifier(kind: str = "linear", n_features: int = 64, n_classes: int = 10, hidden: int = 64,
                    random_state: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A classifier returning logits ``z`` (the distances are ``d = -z``).

    ``kind="linear"``: ``z = W x + b`` (``nn.Linear``). ``kind="mlp"``: one hidden ReLU layer,
    ``nn.Sequential(Linear, ReLU, Linear)``. PyTorch's default initialization under ``random_state``,
    drawn in float32 and cast to ``dtype`` (so the weights do not depend on the global default
    dtype), without touching the global random state.

    Parameters
    ----------
    kind : "linear" or "mlp".
    n_features : int >= 1. n_classes : int >= 2. hidden : int >= 1, width of the MLP's hidden layer.
    random_state : int >= 0. dtype : torch.float32 or torch.float64.

    Returns
    -------
    torch.nn.Module
    """
    if kind not in ("linear", "mlp"):
        raise ValueError(f"kind must be 'linear' or 'mlp', got {kind!r}")
    n_features = check_int(n_features, "n_features", minimum=1)
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    hidden = check_int(hidden, "hidden", minimum=1)
    random_state = check_int(random_state, "random_state", minimum=0)
    dtype = _check_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        f32 = {"dtype": torch.float32}
        if kind == "linear":
            model: nn.Module = nn.Linear(n_features, n_classes, **f32)
        else:
            model = nn.Sequential(nn.Linear(n_features, hidden, **f32), nn.ReLU(), nn.Linear(hidden, n_classes, **f32))
    return model.to(dtype)


class PrototypeClassifier(nn.Module):
    """A distance-based classifier: logits ``z_j = -d_j`` with ``d_j = a^2 ||x - mu_j||^2 / 2``.

    One prototype ``mu_j`` per class, initialized at the class means of ``X`` (N, F) with labels
    ``y`` (N,), and one learned scale ``a`` (parameter ``log_a``, started at 0). Trained with
    cross-entropy like any classifier, it keeps the information softmax discards:
    ``L = log sum_j exp(-d_j)`` (:func:`iemlib.metrics.energy_score` of its logits) falls without
    bound as an input moves away from every prototype.

    ``expanded=True`` computes ``||x - mu_j||^2`` as ``||x||^2 - 2 x . mu_j + ||mu_j||^2`` (matrix
    products, clamped at 0): faster for many inputs, equal to rounding.
    """

    def __init__(self, X: Any, y: Any, n_classes: int, *, expanded: bool = False) -> None:
        super().__init__()
        X = as_tensor(X, "X", ndim=2).detach()
        K = check_int(n_classes, "n_classes", minimum=2)
        y = torch.as_tensor(np.asarray(y) if not is_torch(y) else y)
        if y.shape != (X.shape[0],) or y.dtype.is_floating_point:
            raise ValueError(f"y must hold {X.shape[0]} integer labels, got {tuple(y.shape)} of {y.dtype}")
        missing = [k for k in range(K) if not bool((y == k).any())]
        if missing:
            raise ValueError(f"y has no sample of class(es) {missing}")
        if not isinstance(expanded, bool):
            raise ValueError(f"expanded must be a bool, got {expanded!r}")
        self.expanded = expanded
        self.mu = nn.Parameter(torch.stack([X[y == k].mean(0) for k in range(K)]))
        self.log_a = nn.Parameter(torch.zeros((), dtype=X.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.expanded:
            sq = (x * x).sum(1, keepdim=True) - 2.0 * x @ self.mu.T + (self.mu * self.mu).sum(1)[None, :]
            return -sq.clamp_min(0.0) * torch.exp(2.0 * self.log_a) / 2.0
        sq = ((x[:, None, :] - self.mu[None, :, :]) ** 2).sum(-1)
        return -sq * torch.exp(2.0 * self.log_a) / 2.0


class RejectOption(nn.Module):
    """A classifier with an explicit "none of the above" component at a fixed distance ``tau``.

    Wraps ``base`` (logits ``z`` of shape (N, K), distances ``d = -z``) and returns K + 1 logits
    ``[z, -tau]``: the last component has distance ``tau`` for every input and no parameters. Its
    responsibility is ``exp(-tau) / (exp(-tau) + sum_k exp(-d_k))``
    (:func:`iemlib.metrics.reject_responsibility`). Trained with cross-entropy on labels in
    ``[0, K)``, the reject component is always a wrong class: the loss pushes the labelled distance
    below ``tau``, anchoring the absolute level of the distances, which plain softmax ignores.
    """

    def __init__(self, base: nn.Module, tau: float) -> None:
        super().__init__()
        self.base = _check_model(base, "base")
        self.tau = float(as_float_array(tau, "tau", ndim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        z = self.base(x)
        return torch.cat([z, torch.full_like(z[:, :1], -self.tau)], dim=1)


# --------------------------------------------------------------------------------------------------
# Training on hard labels
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TrainHistory:
    """What :func:`train_classifier` measured on the whole training set, before training (entry 0)
    and after every epoch; a quantity not asked for (``record=``) is ``None``.

    Attributes
    ----------
    epoch
        (epochs + 1,) int.
    loss
        (epochs + 1,) mean cross-entropy loss (minimized).
    accuracy
        (epochs + 1,) training accuracy.
    r_correct
        (epochs + 1,) mean responsibility of the correct class.
    r_correct_min
        (epochs + 1,) smallest responsibility of the correct class.
    r_wrong_max
        (epochs + 1,) mean over samples of the largest wrong-class responsibility.
    r
        (epochs + 1, N, K) responsibilities.
    test_loss, test_accuracy
        (epochs + 1,) on ``X_test, y_test`` when given.
    """

    epoch: np.ndarray
    loss: np.ndarray | None = None
    accuracy: np.ndarray | None = None
    r_correct: np.ndarray | None = None
    r_correct_min: np.ndarray | None = None
    r_wrong_max: np.ndarray | None = None
    r: np.ndarray | None = None
    test_loss: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None


def _measure(model: nn.Module, X: torch.Tensor, y: torch.Tensor, record: Sequence[str], X_test: Any,
             y_test: Any) -> dict[str, Any]:
    """The quantities of ``record`` on the training set, and the held-out loss and accuracy (no gradient)."""
    out: dict[str, Any] = {}
    with torch.no_grad():
        z = model(X)
        r = torch.softmax(z, dim=-1)  # responsibilities r_j = exp(-d_j) / sum_k exp(-d_k), d = -z
        idx = torch.arange(len(y))
        r_y = r[idx, y]
        for key in record:
            if key == "loss":
                out[key] = float(nn.functional.cross_entropy(z, y))
            elif key == "accuracy":
                out[key] = float((z.argmax(-1) == y).double().mean())
            elif key == "r_correct":
                out[key] = float(r_y.mean())
            elif key == "r_correct_min":
                out[key] = float(r_y.min())
            elif key == "r_wrong_max":
                r_wrong = r.clone()
                r_wrong[idx, y] = -1.0
                out[key] = float(r_wrong.max(-1).values.mean())
            elif key == "r":
                out[key] = r.detach().cpu().numpy().copy()
        if X_test is not None:
            zt = model(X_test)
            out["test_loss"] = float(nn.functional.cross_entropy(zt, y_test))
            out["test_accuracy"] = float((zt.argmax(-1) == y_test).double().mean())
    return out


def _batches(X: torch.Tensor, y: torch.Tensor, batch_size: int | None,
             gen: torch.Generator) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The whole set (``batch_size`` None or >= N) or the mini-batches of a permutation drawn from ``gen``."""
    if batch_size is None or batch_size >= X.shape[0]:
        return ((X, y),)
    return ((X[b], y[b]) for b in torch.randperm(X.shape[0], generator=gen).split(batch_size))


def _check_record(record: Any) -> tuple[str, ...]:
    if isinstance(record, str):
        record = (record,)
    try:
        record = tuple(record)
    except TypeError as exc:
        raise ValueError(f"record must be an iterable of names from {RECORDABLE}, got {record!r}") from exc
    bad = [k for k in record if k not in RECORDABLE]
    if bad:
        raise ValueError(f"record must hold names from {RECORDABLE}, got {bad!r}")
    return record


def _check_held_out(model: nn.Module, X_test: Any, y_test: Any, K: int) -> tuple[Any, Any]:
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is None:
        return None, None
    X_test = _check_X(X_test, model, "X_test")
    _n_classes(model, X_test, "X_test")
    return X_test, _check_y(y_test, X_test.shape[0], K, "y_test")


def _sgd_step(model: nn.Module, params: list, X: torch.Tensor, y: torch.Tensor, lr: float, weight_decay: float,
              epoch: int) -> None:
    """One step ``theta <- theta - lr * (grad + weight_decay * theta)`` on the mean cross-entropy of ``(X, y)``."""
    loss = nn.functional.cross_entropy(model(X), y)
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"the loss became {loss.item()} at epoch {epoch}; lower lr (now {lr})")
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        if weight_decay:
            grads = [p * weight_decay if g is None else g + weight_decay * p for p, g in zip(params, grads)]
        for p, g in zip(params, grads):
            if g is not None:
                p.sub_(lr * g)


def train_classifier(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 100,
    lr: float = 0.5,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    random_state: int = 0,
    record: Iterable[str] = _DEFAULT_RECORD,
    *,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
) -> TrainHistory:
    """Train ``model`` in place by plain (stochastic) gradient descent on the mean cross-entropy loss.

    The loss minimized is ``mean_i [d_{i,y_i} + log sum_k exp(-d_{ik})]`` with ``d = -model(X)``,
    plus ``weight_decay/2 * ||theta||^2``. No momentum, no adaptive step: the update is
    ``theta <- theta - lr * (gradient + weight_decay * theta)``, the same as
    ``torch.optim.SGD(lr=lr, weight_decay=weight_decay)``. Parameters' ``.grad`` fields are not used.

    Parameters
    ----------
    model : torch.nn.Module returning logits of shape (N, K)
    X : float tensor (N, F) of the model's dtype; y : int tensor (N,) with labels in [0, K)
    epochs : int >= 1
    lr : float > 0
    batch_size : int >= 1 or None
        ``None`` is full-batch gradient descent; otherwise mini-batches of a permutation drawn from a
        generator seeded with ``random_state`` (the global random state is untouched).
    weight_decay : float >= 0
    random_state : int >= 0
    record : iterable of names from :data:`RECORDABLE`
        What to measure on the whole training set before training and after every epoch. With
        nothing to record (and no test set) no measurement pass is made.
    X_test, y_test : optional held-out data; adds ``test_loss`` and ``test_accuracy``.

    Returns
    -------
    TrainHistory. Deterministic: the same arguments give the same history and final weights.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_positive(lr, "lr")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
    gen = torch.Generator().manual_seed(check_int(random_state, "random_state", minimum=0))
    record = _check_record(record)
    K = _n_classes(model, X)
    y = _check_y(y, X.shape[0], K)
    X_test, y_test = _check_held_out(model, X_test, y_test, K)
    params = _trainable(model)
    history: dict[str, list] = {}
    was_training = model.training
    model.train()
    with single_threaded():
        for epoch in range(epochs + 1):
            if epoch:
                for Xb, yb in _batches(X, y, batch_size, gen):
                    _sgd_step(model, params, Xb, yb, lr, weight_decay, epoch)
            if record or X_test is not None:
                for k, v in _measure(model, X, y, record, X_test, y_test).items():
                    history.setdefault(k, []).append(v)
    model.train(was_training)
    return TrainHistory(epoch=np.arange(epochs + 1), **{k: np.asarray(v) for k, v in history.items()})


# --------------------------------------------------------------------------------------------------
# Gradients with respect to the distances, and how a step moves them
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DistanceGradients:
    """Per-sample gradients of the cross-entropy loss with respect to the distances (:func:`cross_entropy_distance_gradients`).

    Attributes
    ----------
    grad_d
        (N, K) autograd gradient of the loss with respect to ``d = -z`` (closed form ``onehot - r``).
    r
        (N, K) responsibilities ``softmax(-d) = softmax(z)``.
    onehot
        (N, K) one-hot targets.
    All detached tensors in the model's dtype.
    """

    grad_d: torch.Tensor
    r: torch.Tensor
    onehot: torch.Tensor


def _hook_distance_gradient(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    captured: list[torch.Tensor] = []
    with torch.enable_grad():
        d = -_logits(model, X)
        if not d.requires_grad:  # a model without trainable parameters
            d = d.detach().requires_grad_(True)
        d.register_hook(lambda g: captured.append(g.detach().clone()))
        loss = nn.functional.cross_entropy(-d, y, reduction="sum")
        targets = [p for p in model.parameters() if p.requires_grad] or [d]
        torch.autograd.grad(loss, targets, allow_unused=True)
    return captured[0], d.detach()


def _func_distance_gradient(model: nn.Module, X: torch.Tensor, y: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def sample_loss(delta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        dist = -z + delta.unsqueeze(0)
        return nn.functional.cross_entropy(-dist, t.unsqueeze(0), reduction="sum")

    grad_d = vmap(grad(sample_loss))(torch.zeros(X.shape[0], K, dtype=X.dtype), X, y)
    with torch.no_grad():
        return grad_d, -model(X)


def cross_entropy_distance_gradients(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                                     method: str = "hook") -> DistanceGradients:
    """Per-sample gradients of the cross-entropy loss with respect to the distances ``d = -z``.

    The loss differentiated is the *summed* cross-entropy ``sum_i [d_{i,y_i} + log sum_k exp(-d_{ik})]``
    (minimized); since sample ``i``'s loss is the only term that depends on ``d_i``, row ``i`` of
    its gradient is sample ``i``'s own gradient. The closed form is ``1[j = y_i] - r_ij``; this
    function does **not** use it: it reads the gradient from autograd.

    Parameters
    ----------
    model, X, y : as in :func:`train_classifier`.
    method : "hook" or "func"
        ``"hook"``: one forward and backward pass of the whole batch to the parameters; a tensor
        hook on ``d`` records the gradient flowing through it (what the parameters receive).
        ``"func"``: per-sample gradients with ``torch.func`` (``vmap`` of ``grad``), differentiating
        each sample's loss with respect to a zero perturbation added to its ``d``. The two are
        independent autograd routes.

    Returns
    -------
    DistanceGradients. Parameter ``.grad`` fields are left untouched.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    if method not in ("hook", "func"):
        raise ValueError(f"method must be 'hook' or 'func', got {method!r}")
    K = _n_classes(model, X)
    y = _check_y(y, X.shape[0], K)
    if method == "hook":
        grad_d, d = _hook_distance_gradient(model, X, y)
    else:
        grad_d, d = _func_distance_gradient(model, X, y, K)
    return DistanceGradients(grad_d=grad_d, r=torch.softmax(-d, dim=-1), onehot=nn.functional.one_hot(y, K).to(d.dtype))


def single_sample_step(model: nn.Module, X: torch.Tensor, y: torch.Tensor, lr: float = 1e-3, *,
                       param_names: Iterable[str] | None = None) -> torch.Tensor:
    """How a small gradient step on one sample's loss moves that sample's distances.

    For every sample ``i`` independently (vectorised with ``torch.func``): take one gradient-descent
    step of size ``lr`` on the parameters using only sample ``i``'s cross-entropy loss (minimized),
    and return ``(d_i(theta_after) - d_i(theta_before)) / lr`` with ``d = -model(x)``. The model
    itself is not modified.

    To first order this is ``-J_i J_i^T (1[j = y_i] - r_i)`` with ``J_i = d d_i / d theta``. For a
    linear model ``J_i J_i^T = (||x_i||^2 + 1) I`` exactly, so every wrong class's distance rises by
    ``(||x_i||^2 + 1) r_ij``: in exact proportion to its responsibility. Hidden layers shared by the
    classes add off-diagonal terms, making the proportionality approximate.

    Parameters
    ----------
    model, X, y : as in :func:`train_classifier`.
    lr : float > 0, the step.
    param_names : names from ``model.named_parameters()`` to step (e.g. ``["2.weight", "2.bias"]``
        for the output layer of the MLP of :func:`make_classifier`); None steps all trainable ones.

    Returns
    -------
    tensor (N, K) in the model's dtype.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    lr = check_positive(lr, "lr")
    y = _check_y(y, X.shape[0], _n_classes(model, X))
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model must have trainable parameters")
    frozen: dict[str, torch.Tensor] = {}
    if param_names is not None:
        names = [param_names] if isinstance(param_names, str) else list(param_names)
        unknown = [n for n in names if n not in params]
        if not names or unknown:
            raise ValueError(f"param_names must name trainable parameters from {sorted(params)}, got {names!r}")
        frozen = {k: v for k, v in params.items() if k not in names}
        params = {k: params[k] for k in names}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def dist(p: dict, x: torch.Tensor) -> torch.Tensor:
        return -functional_call(model, ({**frozen, **p}, buffers), (x.unsqueeze(0),))[0]

    def sample_loss(p: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(-dist(p, x).unsqueeze(0), t.unsqueeze(0), reduction="sum")

    def change(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g = grad(sample_loss)(params, x, t)
        stepped = {k: params[k] - lr * g[k] for k in params}
        return (dist(stepped, x) - dist(params, x)) / lr

    with torch.no_grad():
        return vmap(change)(X, y)


@dataclass(frozen=True, eq=False)
class PushShares:
    """Each wrong class's share of its sample's push and of the missing responsibility (:func:`push_shares`).

    Attributes
    ----------
    wrong
        (N, K) bool mask of the wrong classes ``j != y_i``.
    share_push
        (N, K) ``delta_d_ij / sum_{k != y_i} delta_d_ik``.
    share_r
        (N, K) ``r_ij / sum_{k != y_i} r_ik = r_ij / (1 - r_iy)``.
    Entries of the correct class are NaN; the wrong-class entries of each row sum to one (NaN or inf
    where a row's total is zero).
    """

    wrong: np.ndarray
    share_push: np.ndarray
    share_r: np.ndarray


def _push_inputs(delta_d: Any, r: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dd = as_numpy(delta_d, "delta_d", ndim=2)
    rr = as_numpy(r, "r", ndim=2)
    if dd.shape != rr.shape:
        raise ValueError(f"r must have the same shape as delta_d {dd.shape}, got {rr.shape}")
    N, K = dd.shape
    yy = check_labels(to_numpy(y), "y", K, shape=(N,))
    return dd, rr, np.asarray(yy)


def push_shares(delta_d: Any, r: Any, y: Any) -> PushShares:
    """Each wrong class's share of its sample's push, and its share of the missing responsibility.

    Parameters
    ----------
    delta_d : (N, K) change of the distances (e.g. :func:`single_sample_step`, or a gradient)
    r : (N, K) responsibilities before the change
    y : (N,) labels

    Returns
    -------
    PushShares. When the push is exactly proportional to responsibility, ``share_push == share_r``
    whatever each sample's overall step size.
    """
    dd, rr, yy = _push_inputs(delta_d, r, y)
    N, K = dd.shape
    wrong = np.ones((N, K), dtype=bool)
    wrong[np.arange(N), yy] = False
    total_push = np.where(wrong, dd, 0.0).sum(1, keepdims=True)
    missing = np.where(wrong, rr, 0.0).sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_push = np.where(wrong, dd / total_push, np.nan)
        share_r = np.where(wrong, rr / missing, np.nan)
    return PushShares(wrong=wrong, share_push=share_push, share_r=share_r)


@dataclass(frozen=True, eq=False)
class PushPerClass:
    """Per class ``j``, how the change in ``d_j`` relates to ``r_j`` where ``j`` is wrong (:func:`push_per_class`).

    All fields are length-K numpy arrays, NaN where undefined (fewer than two samples, or no spread).

    Attributes
    ----------
    slope
        least squares through the origin of ``delta_d[:, j]`` on ``r[:, j]``.
    corr
        Pearson correlation of the two.
    rel_resid
        ``||delta - slope * r|| / ||delta||``.
    n
        number of samples used (int).
    share_corr
        correlation, over the (sample, wrong class) pairs of class ``j``, between the
        class's share of the push and its share of the missing responsibility (1 when the push is
        split exactly in proportion to responsibility, whatever each sample's step size).
    share_maxdiff
        largest absolute difference between those two shares.
    """

    slope: np.ndarray
    corr: np.ndarray
    rel_resid: np.ndarray
    n: np.ndarray
    share_corr: np.ndarray
    share_maxdiff: np.ndarray


def push_per_class(delta_d: Any, r: Any, y: Any) -> PushPerClass:
    """Per class ``j``: how the change in ``d_j`` relates to ``r_j`` over the samples where ``j`` is wrong.

    Built on the shares :func:`push_shares` computes.

    Parameters
    ----------
    delta_d, r, y : as in :func:`push_shares`.

    Returns
    -------
    PushPerClass
    """
    dd, rr, yy = _push_inputs(delta_d, r, y)
    N, K = dd.shape
    sh = push_shares(dd, rr, yy)
    wrong, share_push, share_r = sh.wrong, sh.share_push, sh.share_r
    out = {k: np.full(K, np.nan) for k in ("slope", "corr", "rel_resid", "share_corr", "share_maxdiff")}
    n = np.zeros(K, dtype=np.int64)
    for j in range(K):
        m = wrong[:, j]
        a, b = rr[m, j], dd[m, j]
        n[j] = int(m.sum())
        if m.sum() < 2 or not np.any(a):
            continue
        s = float(a @ b / (a @ a))
        out["slope"][j] = s
        if np.std(a) > 0 and np.std(b) > 0:
            out["corr"][j] = float(np.corrcoef(a, b)[0, 1])
        nb = np.linalg.norm(b)
        out["rel_resid"][j] = float(np.linalg.norm(b - s * a) / nb) if nb > 0 else np.nan
        ok = m & np.isfinite(share_push[:, j]) & np.isfinite(share_r[:, j])
        if ok.any():
            out["share_maxdiff"][j] = float(np.max(np.abs(share_push[ok, j] - share_r[ok, j])))
        if ok.sum() >= 2 and np.std(share_r[ok, j]) > 0 and np.std(share_push[ok, j]) > 0:
            out["share_corr"][j] = float(np.corrcoef(share_r[ok, j], share_push[ok, j])[0, 1])
    return PushPerClass(n=n, **out)


# --------------------------------------------------------------------------------------------------
# Training on soft targets
# --------------------------------------------------------------------------------------------------
def _check_distributions(q: torch.Tensor, name: str, tol: float = 1e-6) -> None:
    if float(q.min()) < -tol or float((q.sum(-1) - 1).abs().max()) > tol:
        raise ValueError(f"{name} must hold probability distributions along its last axis (non-negative, summing to 1)")


@dataclass(frozen=True, eq=False)
class SoftTrainHistory:
    """Records of :func:`train_soft_classifier`, every ``record_every`` epochs and at the last.

    Attributes
    ----------
    epoch
        (T,) int.
    loss
        (T,) mean soft cross-entropy loss (minimized).
    grad_norm
        (T,) norm of the loss gradient with respect to all parameters (near 0 at a stationary point).
    r_target
        (T,) mean responsibility of each sample's most-weighted class ``argmax_j q_ij``.
    """

    epoch: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    r_target: np.ndarray


def train_soft_classifier(model: nn.Module, X: Any, q: Any, epochs: int = 300, lr: float = 0.5,
                          record_every: int = 10) -> SoftTrainHistory:
    """Full-batch gradient descent on the mean soft cross-entropy *loss* ``mean_i [sum_j q_ij d_ij + L_i]``.

    ``d = -model(X)`` and ``L_i = log sum_j exp(-d_ij)`` (:func:`iemlib.objectives.soft_cross_entropy`,
    written inline in the loop). Plain steps ``theta <- theta - lr * grad`` (no momentum); trains
    ``model`` in place, deterministically.

    Parameters
    ----------
    model : torch.nn.Module returning (N, K) logits.
    X : (N, F) inputs of the model's dtype.
    q : (N, K) soft targets, rows summing to one.
    epochs : int >= 1. lr : float > 0.
    record_every : int >= 1; the last epoch is always recorded.

    Returns
    -------
    SoftTrainHistory
    """
    model = _check_model(model)
    params = _trainable(model)
    X = as_tensor(X, "X", ndim=2).detach()
    if X.dtype != params[0].dtype:
        raise ValueError(f"X must have the model's dtype {params[0].dtype}, got {X.dtype}")
    q = as_tensor(q, "q", ndim=2).detach().to(X.dtype)
    if q.shape[0] != X.shape[0]:
        raise ValueError(f"q must have one row per sample of X ({X.shape[0]}), got {q.shape[0]}")
    _check_distributions(q, "q")
    n = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    every = check_int(record_every, "record_every", minimum=1)
    K = _n_classes(model, X)
    if q.shape[1] != K:
        raise ValueError(f"q must have {K} columns, one per model output, got {q.shape[1]}")
    top = q.argmax(1)
    idx = torch.arange(X.shape[0])
    rec: dict[str, list] = {k: [] for k in ("epoch", "loss", "grad_norm", "r_target")}
    with single_threaded():
        for t in range(n + 1):
            d = -model(X)
            loss = ((q * d).sum(-1) + torch.logsumexp(-d, dim=-1)).mean()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the loss became {loss.item()} at epoch {t}; lower lr (now {lr})")
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
    return SoftTrainHistory(**{k: np.asarray(v) for k, v in rec.items()})


# --------------------------------------------------------------------------------------------------
# Many small MLPs at once (label noise against label smoothing)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EnsembleFit:
    """The result of :func:`train_mlp_ensemble` for ``M`` models.

    Attributes
    ----------
    epoch
        (T,) the steps at which the test logits were recorded (empty without ``X_test``).
    train_logits
        (M, N, K) logits on ``X`` after training.
    test_logits
        (M, N_test, K) logits on ``X_test`` after training, or None.
    test_logits_history
        (T, M, N_test, K) logits on ``X_test`` at the steps ``epoch``, or None.
    """

    epoch: np.ndarray
    train_logits: torch.Tensor
    test_logits: torch.Tensor | None = None
    test_logits_history: torch.Tensor | None = None


def _check_ensemble_options(M: int, K: int, dtype: torch.dtype, noise_matrix: Any, correct: Any
                            ) -> tuple[torch.Tensor | None, torch.Tensor]:
    if correct is None:
        corr = torch.zeros(M, dtype=torch.bool)
    else:
        corr = torch.as_tensor(np.asarray(correct, dtype=bool))
        if corr.shape != (M,):
            raise ValueError(f"correct must hold {M} bools, one per model, got shape {tuple(corr.shape)}")
    T = None
    if noise_matrix is not None:
        T = as_tensor(noise_matrix, "noise_matrix", ndim=2).detach().to(dtype)
        if tuple(T.shape) != (K, K) or float((T.sum(1) - 1).abs().max()) > 1e-6 or float(T.min()) < 0:
            raise ValueError(f"noise_matrix must be a ({K}, {K}) row-stochastic matrix")
    elif bool(corr.any()):
        raise ValueError("correct needs a noise_matrix")
    return T, corr


def _check_ensemble_data(X: Any, targets: Any, seeds: Any) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    Xt = as_tensor(X, "X", ndim=2).detach()
    Q = as_tensor(targets, "targets", ndim=3).detach().to(Xt.dtype)
    if Q.shape[1] != Xt.shape[0]:
        raise ValueError(f"targets must have one row per sample of X ({Xt.shape[0]}), got {Q.shape[1]}")
    if float(Q.min()) < -1e-9 or float((Q.sum(-1) - 1).abs().max()) > 1e-6:
        raise ValueError("targets must hold probability distributions along the last axis")
    seeds = [check_int(s, "seeds", minimum=0) for s in (seeds if not isinstance(seeds, int) else [seeds])]
    if len(seeds) != Q.shape[0]:
        raise ValueError(f"seeds must have one entry per model ({Q.shape[0]}), got {len(seeds)}")
    return Xt, Q, seeds


def _adam_step(params: list[torch.Tensor], grads: Sequence[torch.Tensor], m_state: list[torch.Tensor],
               v_state: list[torch.Tensor], t: int, eta: float, b1c: float = 0.9, b2c: float = 0.999) -> None:
    """Step ``t`` (from 1) of Adam, as ``torch.optim.Adam`` does it (eps 1e-8, no weight decay)."""
    with torch.no_grad():
        for p, g, m, v in zip(params, grads, m_state, v_state):
            m.mul_(b1c).add_(g, alpha=1 - b1c)
            v.mul_(b2c).addcmul_(g, g, value=1 - b2c)
            mh = m / (1 - b1c**t)
            vh = v / (1 - b2c**t)
            p.sub_(eta * mh / (vh.sqrt() + 1e-8))


def _stacked_mlps(seeds: list[int], F: int, K: int, H: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """The weights of ``make_classifier("mlp", F, K, H, random_state=s)`` for every seed, stacked for
    batched products: ``W1`` (M, F, H), ``b1`` (M, 1, H), ``W2`` (M, H, K), ``b2`` (M, 1, K)."""
    nets = [make_classifier("mlp", F, K, H, random_state=s, dtype=dtype) for s in seeds]
    W1 = torch.stack([n[0].weight.detach().T for n in nets])
    b1 = torch.stack([n[0].bias.detach() for n in nets])[:, None, :]
    W2 = torch.stack([n[2].weight.detach().T for n in nets])
    b2 = torch.stack([n[2].bias.detach() for n in nets])[:, None, :]
    return [p.requires_grad_(True) for p in (W1, b1, W2, b2)]


def train_mlp_ensemble(
    X: Any,
    targets: Any,
    seeds: Any,
    *,
    hidden: int = 64,
    epochs: int = 300,
    lr: float = 0.01,
    noise_matrix: Any = None,
    correct: Any = None,
    X_test: Any = None,
    record_every: int = 25,
) -> EnsembleFit:
    """Train ``M`` one-hidden-layer ReLU MLPs at once with Adam on the mean cross-entropy loss against soft targets.

    Parameters
    ----------
    X : (N, F) float inputs, shared by all models.
    targets : (M, N, K) float targets, one distribution per row (one-hot rows for hard labels).
    seeds : M non-negative ints, one per model
        Model ``m`` starts as ``make_classifier("mlp", F, K, hidden, random_state=seeds[m])``.
    hidden : width of the hidden layer.
    epochs, lr : full-batch Adam steps (betas 0.9, 0.999, eps 1e-8) and step size.
    noise_matrix : optional (K, K) row-stochastic matrix ``T``; models with ``correct[m]`` true are
        trained on the forward-corrected loss of Patrini et al. (2017),
        ``-sum_j q_j log (softmax(z) T)_j``, and predict with ``softmax(z)``.
    correct : M bools (default all False), which models use the correction.
    X_test : optional (N_test, F) inputs on which the logits are recorded every ``record_every`` steps.

    Returns
    -------
    EnsembleFit. Deterministic for given arguments. The loop is written out (rather than
    ``torch.optim.Adam`` on ``M`` separate models) so that all models step as one batched tensor.
    """
    Xt, Q, seeds = _check_ensemble_data(X, targets, seeds)
    M, N, K = Q.shape
    H = check_int(hidden, "hidden", minimum=1)
    n_ep = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    every = check_int(record_every, "record_every", minimum=1)
    T, corr = _check_ensemble_options(M, K, Xt.dtype, noise_matrix, correct)
    Xte = as_tensor(X_test, "X_test", ndim=2).detach().to(Xt.dtype) if X_test is not None else None
    if Xte is not None and Xte.shape[1] != Xt.shape[1]:
        raise ValueError(f"X_test must have {Xt.shape[1]} columns like X, got {Xte.shape[1]}")
    params = _stacked_mlps(seeds, Xt.shape[1], K, H, Xt.dtype)
    W1, b1, W2, b2 = params

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ W1 + b1) @ W2 + b2

    m_state = [torch.zeros_like(p) for p in params]
    v_state = [torch.zeros_like(p) for p in params]
    hist_ep, hist_te = [], []
    with single_threaded():
        for t in range(n_ep + 1):
            if Xte is not None and (t % every == 0 or t == n_ep):
                with torch.no_grad():
                    hist_ep.append(t)
                    hist_te.append(logits(Xte).clone())
            if t == n_ep:
                break
            z = logits(Xt)
            logp = torch.log_softmax(z, -1)
            if T is not None and bool(corr.any()):
                logp_noisy = torch.log((torch.softmax(z, -1) @ T).clamp_min(1e-300))
                logp = torch.where(corr[:, None, None], logp_noisy, logp)
            loss = -(Q * logp).sum(-1).mean(-1).sum()  # sum over models of each model's mean loss
            _adam_step(params, torch.autograd.grad(loss, params), m_state, v_state, t + 1, eta)
        with torch.no_grad():
            return EnsembleFit(
                epoch=np.asarray(hist_ep, dtype=np.int64),
                train_logits=logits(Xt),
                test_logits=logits(Xte) if Xte is not None else None,
                test_logits_history=torch.stack(hist_te) if Xte is not None else None,
            )


# --------------------------------------------------------------------------------------------------
# Multi-label: independent sigmoids against a softmax
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MultilabelFit:
    """A linear multi-label model ``Z = X W + b`` fitted by :func:`train_multilabel`.

    Attributes
    ----------
    W
        (F, K) weights. b : (K,) biases. loss : (epochs + 1,) mean training loss (minimized), entry 0 at the start.
    """

    W: torch.Tensor
    b: torch.Tensor
    loss: np.ndarray


def train_multilabel(X: Any, T: Any, kind: str = "sigmoid", epochs: int = 300, lr: float = 0.5,
                     random_state: int = 0) -> MultilabelFit:
    """Full-batch gradient descent on a linear multi-label model ``Z = X W + b``.

    ``kind="sigmoid"`` minimizes the sum over labels of independent binary cross-entropies,
    ``softplus(z_j) - t_j z_j`` (no partition function); ``kind="softmax"`` minimizes the softmax
    cross-entropy against the label set normalized to sum to one, ``-sum_j q_j log softmax(z)_j`` with
    ``q = T / max(|T|, 1)`` (labels compete; a point without labels contributes nothing). Both losses
    are averaged over the points.

    Parameters
    ----------
    X : (N, F) inputs. T : (N, K) 0/1 targets.
    kind : "sigmoid" or "softmax".
    epochs : int >= 1. lr : float > 0.
    random_state : int >= 0; ``W`` starts at ``0.01 N(0, 1)``, ``b`` at 0.

    Returns
    -------
    MultilabelFit
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"kind must be 'sigmoid' or 'softmax', got {kind!r}")
    X = as_tensor(X, "X", ndim=2)
    T = as_tensor(T, "T", ndim=2).to(X.dtype)
    if T.shape[0] != X.shape[0]:
        raise ValueError(f"T must have {X.shape[0]} rows like X, got shape {tuple(T.shape)}")
    if bool(((T != 0) & (T != 1)).any()):
        raise ValueError("T must hold 0/1 targets")
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_positive(lr, "lr")
    g = torch.Generator().manual_seed(check_int(random_state, "random_state", minimum=0))
    W = (0.01 * torch.randn(X.shape[1], T.shape[1], generator=g, dtype=X.dtype)).requires_grad_(True)
    b = torch.zeros(T.shape[1], dtype=X.dtype, requires_grad=True)
    q = T / T.sum(-1, keepdim=True).clamp_min(1.0)
    losses = []
    with single_threaded():
        for ep in range(epochs + 1):
            Z = X @ W + b
            if kind == "sigmoid":
                loss = (nn.functional.softplus(Z) - T * Z).sum(-1).mean()
            else:
                loss = (-(q * torch.log_softmax(Z, dim=-1)).sum(-1)).mean()
            losses.append(float(loss.detach()))
            if ep == epochs:
                break
            gW, gb = torch.autograd.grad(loss, [W, b])
            with torch.no_grad():
                W -= lr * gW
                b -= lr * gb
    return MultilabelFit(W=W.detach(), b=b.detach(), loss=np.asarray(losses))
