"""Classification on scikit-learn's bundled digits: the constrained regime of implicit EM.

A classifier produces logits ``z_j``; the book reads them as negative distances
``d_j = -z_j``. The cross-entropy *loss* (minimized) of a sample with label ``y`` is

    loss = d_y + log sum_k exp(-d_k)  =  -z_y + log sum_k exp(z_k),

and its gradient **with respect to the distances** is ``d loss / d d_j = 1[j = y] - r_j``
(with respect to the logits ``z`` the sign flips: ``r_j - 1[j = y]``). This module provides
the data, two models, a deterministic gradient-descent trainer, and the measurements the
chapter makes: per-sample gradients of the loss with respect to ``d`` read off the backward
pass, and how far a small parameter step moves each class's distance.

Everything here is deterministic for a given ``seed`` and uses float64 by default, because
the chapter compares autograd with closed forms to the last few ulps.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import as_float_array, check_int, check_labels, check_positive, is_torch

__all__ = [
    "load_digits_data",
    "load_digits_open_set",
    "make_classifier",
    "train_classifier",
    "distance_gradients",
    "single_sample_step",
    "push_per_class",
    "push_shares",
    "RECORDABLE",
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


def _check_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_seed(seed: Any) -> int:
    return check_int(seed, "seed", minimum=0)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def load_digits_data(
    classes: Iterable[int] | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    return_stats: bool = False,
) -> tuple:
    """scikit-learn's bundled 8x8 digits (no download), split and standardized.

    Parameters
    ----------
    classes : iterable of int in 0..9, optional
        Keep only these digits (at least two, no repeats). Labels are re-indexed in the
        order given: digit ``classes[i]`` gets label ``i``. ``None`` keeps all ten.
    test_size : float in (0, 1)
        Fraction held out for testing (stratified by class).
    seed : int >= 0
        Seed of the split.
    dtype : torch.float32 or torch.float64
        Feature dtype.

    Returns
    -------
    X_train, X_test, y_train, y_test : torch tensors
        Features of shape (n, 64) standardized with the *training* mean and standard
        deviation; pixels constant on the training set (standard deviation 0) are only
        centred (divided by 1), so they stay finite. Labels are int64.
    mean, std : numpy arrays of shape (64,), only when ``return_stats``
        The raw-pixel training statistics used, so other images can be standardized alike.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(test_size, bool) or not isinstance(test_size, (float, int, np.floating, np.integer)):
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    if not (np.isfinite(test_size) and 0.0 < float(test_size) < 1.0):
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    seed = _check_seed(seed)
    dtype = _check_dtype(dtype)

    data = load_digits()
    X, y = data.data.astype(np.float64), data.target.astype(np.int64)
    if classes is not None:
        try:
            cls = [c for c in classes]
        except TypeError as exc:
            raise ValueError(f"classes must be an iterable of digits 0..9, got {classes!r}") from exc
        if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in cls):
            raise ValueError(f"classes must hold integers 0..9, got {cls!r}")
        cls = [int(c) for c in cls]
        if len(cls) < 2:
            raise ValueError(f"classes must name at least two digits, got {cls!r}")
        if len(set(cls)) != len(cls):
            raise ValueError(f"classes must not repeat a digit, got {cls!r}")
        if min(cls) < 0 or max(cls) > 9:
            raise ValueError(f"classes must hold digits 0..9, got {cls!r}")
        keep = np.isin(y, cls)
        remap = np.full(10, -1, dtype=np.int64)
        remap[cls] = np.arange(len(cls))
        X, y = X[keep], remap[y[keep]]

    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=float(test_size), random_state=seed, stratify=y
    )
    mean, std = _pixel_stats(X_tr)
    X_tr = (X_tr - mean) / std
    X_te = (X_te - mean) / std
    out = (
        torch.as_tensor(X_tr, dtype=dtype),
        torch.as_tensor(X_te, dtype=dtype),
        torch.as_tensor(y_tr, dtype=torch.int64),
        torch.as_tensor(y_te, dtype=torch.int64),
    )
    if return_stats:
        return out + (mean, std)
    return out


def _pixel_stats(X_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel training mean and standard deviation (0 replaced by 1)."""
    mean = X_raw.mean(axis=0)
    std = X_raw.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def load_digits_open_set(
    known: Iterable[int] = range(5),
    test_size: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Digits split into a closed world (``known`` digits) and the rest, for open-set checks.

    Returns a dict with ``X_train, X_test, y_train, y_test`` exactly as
    :func:`load_digits_data` with ``classes=known`` gives them, plus ``X_unknown`` (every
    image of the other digits) and ``digit_unknown`` (their digit values), standardized with the
    *known* training statistics, and ``X_noise``: as many images of uniform pixel noise on the
    digits' raw range [0, 16] as there are test images, standardized the same way (seeded).
    """
    from sklearn.datasets import load_digits

    known = list(known) if not isinstance(known, (str, bytes)) else known
    X_tr, X_te, y_tr, y_te, mean, std = load_digits_data(
        classes=known, test_size=test_size, seed=seed, dtype=dtype, return_stats=True
    )
    data = load_digits()
    other = ~np.isin(data.target, [int(c) for c in known])
    X_unk = (data.data[other].astype(np.float64) - mean) / std
    rng = np.random.default_rng(seed)
    X_noise = (rng.uniform(0.0, 16.0, size=(X_te.shape[0], 64)) - mean) / std
    return {
        "X_train": X_tr,
        "X_test": X_te,
        "y_train": y_tr,
        "y_test": y_te,
        "X_unknown": torch.as_tensor(X_unk, dtype=dtype),
        "digit_unknown": torch.as_tensor(data.target[other].astype(np.int64)),
        "X_noise": torch.as_tensor(X_noise, dtype=dtype),
    }


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------
def make_classifier(
    kind: str = "linear",
    n_features: int = 64,
    n_classes: int = 10,
    hidden: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """A classifier returning logits ``z`` (the distances are ``d = -z``).

    ``kind="linear"``: ``z = W x + b``. ``kind="mlp"``: one hidden ReLU layer of width
    ``hidden``. Initialized with PyTorch's default initialization under ``seed`` (drawn in
    float32, then cast to ``dtype``, so the weights do not depend on the global default dtype),
    without touching the global random state.
    """
    if kind not in ("linear", "mlp"):
        raise ValueError(f"kind must be 'linear' or 'mlp', got {kind!r}")
    n_features = check_int(n_features, "n_features", minimum=1)
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    hidden = check_int(hidden, "hidden", minimum=1)
    seed = _check_seed(seed)
    dtype = _check_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Initialize in float32 whatever the global default dtype, then cast: the same seed
        # gives the same weights with and without torch.set_default_dtype(torch.float64).
        f32 = {"dtype": torch.float32}
        if kind == "linear":
            model: nn.Module = nn.Linear(n_features, n_classes, **f32)
        else:
            model = nn.Sequential(
                nn.Linear(n_features, hidden, **f32), nn.ReLU(), nn.Linear(hidden, n_classes, **f32)
            )
    return model.to(dtype)


# --------------------------------------------------------------------------------------
# Validation helpers shared by the functions below
# --------------------------------------------------------------------------------------
def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        return p.dtype
    return None


def _check_X(X: Any, model: nn.Module, name: str = "X") -> torch.Tensor:
    X = as_float_array(X, name, ndim=2)
    mdt = _model_dtype(model)
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
        raise ValueError(
            f"model must map {name} of shape (N, F) to logits of shape (N, K >= 2), got {tuple(z.shape)}"
        )
    return z


def _check_y(y: Any, n: int, n_classes: int, name: str = "y") -> torch.Tensor:
    y = check_labels(y, name, n_classes, shape=(n,))
    return (y if is_torch(y) else torch.as_tensor(np.asarray(y))).long()


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
def _metrics(z: torch.Tensor, y: torch.Tensor, record: Sequence[str]) -> dict[str, Any]:
    """Training-set quantities from logits ``z`` (no gradient)."""
    r = torch.softmax(z, dim=-1)  # responsibilities r_j = exp(-d_j) / sum_k exp(-d_k), d = -z
    out: dict[str, Any] = {}
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
    return out


def train_classifier(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 100,
    lr: float = 0.5,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    record: Iterable[str] = _DEFAULT_RECORD,
    *,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Train ``model`` in place by plain (stochastic) gradient descent on the mean cross-entropy loss.

    The loss minimized is ``mean_i [d_{i,y_i} + log sum_k exp(-d_{ik})]`` with ``d = -model(X)``,
    plus ``weight_decay/2 * ||theta||^2`` when ``weight_decay > 0``. No momentum, no adaptive
    step: the update is ``theta <- theta - lr * (gradient + weight_decay * theta)``, the same as
    ``torch.optim.SGD(lr=lr, weight_decay=weight_decay)``. Parameters' ``.grad`` fields are not used.

    Parameters
    ----------
    model : torch.nn.Module returning logits of shape (N, K)
    X : float tensor (N, F) of the model's dtype; y : int tensor (N,) with labels in [0, K)
    epochs : int >= 1
    lr : float > 0
    batch_size : int >= 1 or None
        ``None`` is full-batch gradient descent; otherwise mini-batches of a permutation
        drawn from a generator seeded with ``seed`` (the global random state is untouched).
    weight_decay : float >= 0
    seed : int >= 0
    record : iterable of names from :data:`RECORDABLE`
        What to measure on the whole training set before training and after every epoch.
    X_test, y_test : optional held-out data; adds ``test_loss`` and ``test_accuracy``.

    Returns
    -------
    dict of numpy arrays, each of length ``epochs + 1`` (entry 0 is before training):
    ``"epoch"`` and every recorded name (``"r"`` has shape (epochs + 1, N, K)).
    Deterministic: the same arguments give the same history and final weights.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_positive(lr, "lr")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
    seed = _check_seed(seed)
    if isinstance(record, str):
        record = (record,)
    try:
        record = tuple(record)
    except TypeError as exc:
        raise ValueError(f"record must be an iterable of names from {RECORDABLE}, got {record!r}") from exc
    bad = [k for k in record if k not in RECORDABLE]
    if bad:
        raise ValueError(f"record must hold names from {RECORDABLE}, got {bad!r}")
    with torch.no_grad():
        K = _logits(model, X).shape[1]
    y = _check_y(y, X.shape[0], K)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test = _check_X(X_test, model, "X_test")
        with torch.no_grad():
            _logits(model, X_test, "X_test")
        y_test = _check_y(y_test, X_test.shape[0], K, "y_test")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model must have trainable parameters")

    params = [p for p in model.parameters() if p.requires_grad]
    # The update is written out rather than taken from torch.optim.SGD (whose first use costs
    # seconds of imports): theta <- theta - lr * (grad + weight_decay * theta).
    gen = torch.Generator().manual_seed(seed)
    N = X.shape[0]
    history: dict[str, list] = {"epoch": []}
    for k in record:
        history[k] = []
    if X_test is not None:
        history["test_loss"], history["test_accuracy"] = [], []

    def log(epoch: int) -> None:
        with torch.no_grad():
            history["epoch"].append(epoch)
            for k, v in _metrics(model(X), y, record).items():
                history[k].append(v)
            if X_test is not None:
                zt = model(X_test)
                history["test_loss"].append(float(nn.functional.cross_entropy(zt, y_test)))
                history["test_accuracy"].append(float((zt.argmax(-1) == y_test).double().mean()))

    was_training = model.training
    model.train()
    log(0)
    for epoch in range(1, epochs + 1):
        if batch_size is None or batch_size >= N:
            batches: Iterable[torch.Tensor | slice] = (slice(None),)
        else:
            batches = torch.randperm(N, generator=gen).split(batch_size)
        for b in batches:
            loss = nn.functional.cross_entropy(model(X[b]), y[b])
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {float(loss)} at epoch {epoch}; lower lr (now {lr})"
                )
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if weight_decay:
                        g = p * weight_decay if g is None else g + weight_decay * p
                    if g is not None:
                        p.sub_(lr * g)
        log(epoch)
    model.train(was_training)
    return {k: np.asarray(v) for k, v in history.items()}


# --------------------------------------------------------------------------------------
# Gradients with respect to the distances
# --------------------------------------------------------------------------------------
def distance_gradients(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, method: str = "hook"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample gradients of the cross-entropy loss with respect to the distances ``d = -z``.

    The loss differentiated is the *summed* cross-entropy ``sum_i [d_{i,y_i} + log sum_k
    exp(-d_{ik})]`` (minimized); since sample ``i``'s loss is the only term that depends on
    ``d_i``, row ``i`` of its gradient is sample ``i``'s own gradient. The closed form is
    ``1[j = y_i] - r_ij``; this function does **not** use it: it reads the gradient from autograd.

    Parameters
    ----------
    model, X, y : as in :func:`train_classifier`.
    method : "hook" or "func"
        ``"hook"``: one forward and backward pass of the whole batch through the model to its
        parameters; a tensor hook on ``d`` records the gradient flowing through it (what the
        parameters actually receive). ``"func"``: per-sample gradients with ``torch.func``
        (``vmap`` of ``grad``), differentiating each sample's loss with respect to a zero
        perturbation added to its ``d``. The two are independent autograd routes.

    Returns
    -------
    grad_d : (N, K) autograd gradient of the loss with respect to ``d``
    r : (N, K) responsibilities ``softmax(-d) = softmax(z)``
    onehot : (N, K) one-hot targets
    All detached, in the model's dtype. Parameter ``.grad`` fields are left untouched.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    if method not in ("hook", "func"):
        raise ValueError(f"method must be 'hook' or 'func', got {method!r}")
    with torch.no_grad():
        K = _logits(model, X).shape[1]
    y = _check_y(y, X.shape[0], K)

    if method == "hook":
        captured: list[torch.Tensor] = []
        with torch.enable_grad():
            d = -_logits(model, X)
            if not d.requires_grad:  # a model without trainable parameters
                d = d.detach().requires_grad_(True)
            d.register_hook(lambda g: captured.append(g.detach().clone()))
            loss = nn.functional.cross_entropy(-d, y, reduction="sum")
            targets = [p for p in model.parameters() if p.requires_grad]
            if not targets:
                targets = [d]
            torch.autograd.grad(loss, targets, allow_unused=True)
        grad_d = captured[0]
        d = d.detach()
    else:
        from torch.func import functional_call, grad, vmap

        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}

        def sample_loss(delta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            z = functional_call(model, (params, buffers), (x.unsqueeze(0),))
            dist = -z + delta.unsqueeze(0)
            return nn.functional.cross_entropy(-dist, t.unsqueeze(0), reduction="sum")

        zeros = torch.zeros(X.shape[0], K, dtype=X.dtype)
        grad_d = vmap(grad(sample_loss))(zeros, X, y)
        with torch.no_grad():
            d = -model(X)
    r = torch.softmax(-d, dim=-1)
    onehot = nn.functional.one_hot(y, K).to(d.dtype)
    return grad_d, r, onehot


def single_sample_step(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    lr: float = 1e-3,
    *,
    param_names: Iterable[str] | None = None,
) -> torch.Tensor:
    """How a small gradient step on one sample's loss moves that sample's distances.

    For every sample ``i`` independently (vectorised with ``torch.func``): take one gradient
    descent step of size ``lr`` on the parameters using only sample ``i``'s cross-entropy loss
    (minimized), and return ``(d_i(theta_after) - d_i(theta_before)) / lr`` with ``d = -model(x)``.
    The model itself is not modified.

    To first order this is ``-J_i J_i^T (1[j = y_i] - r_i)`` with ``J_i = d d_i / d theta``. For a
    linear model ``J_i J_i^T = (||x_i||^2 + 1) I`` exactly, so every wrong class's distance rises
    by ``(||x_i||^2 + 1) r_ij``: in exact proportion to its responsibility. Hidden layers shared by
    the classes add off-diagonal terms, making the proportionality approximate.

    ``param_names`` restricts the step to those parameters (names from
    ``model.named_parameters()``, e.g. ``["2.weight", "2.bias"]`` for the output layer of the
    MLP of :func:`make_classifier`); ``None`` steps all trainable parameters.

    Returns an (N, K) tensor in the model's dtype.
    """
    model = _check_model(model)
    X = _check_X(X, model)
    lr = check_positive(lr, "lr")
    with torch.no_grad():
        K = _logits(model, X).shape[1]
    y = _check_y(y, X.shape[0], K)
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model must have trainable parameters")
    if param_names is not None:
        names = [param_names] if isinstance(param_names, str) else list(param_names)
        unknown = [n for n in names if n not in params]
        if not names or unknown:
            raise ValueError(
                f"param_names must name trainable parameters from {sorted(params)}, got {names!r}"
            )
        frozen = {k: v for k, v in params.items() if k not in names}
        params = {k: params[k] for k in names}
    else:
        frozen = {}
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


def _push_inputs(
    delta_d: torch.Tensor | np.ndarray, r: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dd = np.asarray(delta_d.detach().cpu() if is_torch(delta_d) else delta_d, dtype=np.float64)
    rr = np.asarray(r.detach().cpu() if is_torch(r) else r, dtype=np.float64)
    dd = np.asarray(as_float_array(dd, "delta_d", ndim=2))
    rr = np.asarray(as_float_array(rr, "r", ndim=2))
    if dd.shape != rr.shape:
        raise ValueError(f"r must have the same shape as delta_d {dd.shape}, got {rr.shape}")
    N, K = dd.shape
    yy = check_labels(y.detach().cpu().numpy() if is_torch(y) else y, "y", K, shape=(N,))
    return dd, rr, np.asarray(yy)


def push_shares(
    delta_d: torch.Tensor | np.ndarray, r: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray
) -> dict[str, np.ndarray]:
    """Each wrong class's share of its sample's push, and its share of the missing responsibility.

    Parameters
    ----------
    delta_d : (N, K) change of the distances (e.g. :func:`single_sample_step`, or a gradient)
    r : (N, K) responsibilities before the change
    y : (N,) labels

    Returns
    -------
    dict of numpy arrays: ``wrong`` (N, K) boolean mask of the wrong classes ``j != y_i``;
    ``share_push`` (N, K), ``delta_d_ij / sum_{k != y_i} delta_d_ik``; ``share_r`` (N, K),
    ``r_ij / sum_{k != y_i} r_ik = r_ij / (1 - r_iy)``. Entries of the correct class are NaN;
    the wrong-class entries of each row sum to one (NaN or inf where a row's total is zero).
    When the push is exactly proportional to responsibility, ``share_push == share_r``
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
    return {"wrong": wrong, "share_push": share_push, "share_r": share_r}


def push_per_class(
    delta_d: torch.Tensor | np.ndarray, r: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray
) -> dict[str, np.ndarray]:
    """Per class ``j``: how the change in ``d_j`` relates to ``r_j`` over the samples where ``j`` is wrong.

    Parameters
    ----------
    delta_d : (N, K) change of the distances (e.g. :func:`single_sample_step`, or a gradient)
    r : (N, K) responsibilities before the change
    y : (N,) labels

    Returns
    -------
    dict of length-K numpy arrays:
    ``slope`` (least squares through the origin of ``delta_d[:, j]`` on ``r[:, j]``),
    ``corr`` (Pearson correlation), ``rel_resid`` (``||delta - slope * r|| / ||delta||``),
    ``n`` (samples used), and ``share_corr``: correlation, over all (sample, wrong class) pairs
    of class ``j``, between each wrong class's share of the sample's total push,
    ``delta_d_ij / sum_{k != y_i} delta_d_ik``, and its share of the missing responsibility,
    ``r_ij / (1 - r_iy)`` (1 when the push is split exactly in proportion to responsibility,
    whatever the sample's overall step size), and ``share_maxdiff``, the largest absolute
    difference between those two shares.
    """
    dd, rr, yy = _push_inputs(delta_d, r, y)
    N, K = dd.shape
    sh = push_shares(dd, rr, yy)
    wrong, share_push, share_r = sh["wrong"], sh["share_push"], sh["share_r"]
    out = {k: np.full(K, np.nan) for k in ("slope", "corr", "rel_resid", "share_corr", "share_maxdiff")}
    out["n"] = np.zeros(K, dtype=np.int64)
    for j in range(K):
        m = wrong[:, j]
        a, b = rr[m, j], dd[m, j]
        out["n"][j] = int(m.sum())
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
    return out
