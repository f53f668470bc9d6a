"""Chapter 9's scale experiments: what cross-entropy does to the scale of the distances, and what
that does to confidence.

* :func:`train_scale_runs`: a prototype classifier (one learned scale ``a``) or a linear classifier
  trained by full-batch gradient descent on several digit splits at once, with the scale, the
  training loss and the held-out accuracy, NLL, calibration error and confidence recorded along the way.
* :func:`confidence_vs_noise_scale`: a classifier's median max-softmax confidence and median
  objective ``L`` on Gaussian noise images of growing amplitude.
* :data:`LINEAR_SCALE_RUN`, :func:`save_scale_runs`, :func:`load_scale_runs`,
  :func:`scale_archive_path`: the long run of the linear model past separation (32000 steps, too long
  for the chapter), written by ``bench/ch09_linear_scale.py`` and checked live against the chapter's
  own first 200 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import as_numpy, check_int, check_positive
from ..data import DIGIT_PIXELS, DigitSplit, gaussian_noise_images
from ..metrics import energy_score, expected_calibration_error, max_softmax
from ..runtime import single_threaded

__all__ = ["SCALE_MODELS", "ScaleRuns", "train_scale_runs", "NoiseConfidence", "confidence_vs_noise_scale",
           "LINEAR_SCALE_RUN", "scale_archive_path", "save_scale_runs", "load_scale_runs"]

#: The models of :func:`train_scale_runs`.
SCALE_MODELS: tuple[str, ...] = ("prototype", "linear")


@dataclass(frozen=True, eq=False)
class ScaleRuns:
    """Records of :func:`train_scale_runs` at the steps ``step``, per split: arrays of shape (T, S).

    Attributes
    ----------
    step
        (T,) the recorded steps.
    scale
        the scale of the distances: ``a^2`` (prototype) or ``||W||_F`` (linear).
    train_loss
        mean training cross-entropy (minimized).
    train_acc, test_acc
        training and held-out accuracy.
    test_nll
        held-out mean cross-entropy.
    test_ece
        held-out expected calibration error (:func:`iemlib.metrics.expected_calibration_error`, 15 bins).
    test_conf
        held-out mean max-softmax confidence.
    logit_spread
        mean over held-out inputs of the standard deviation of their logits.
    """

    step: np.ndarray
    scale: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    test_nll: np.ndarray
    test_ece: np.ndarray
    test_conf: np.ndarray
    logit_spread: np.ndarray


def _scale_model(kind: str, Xtr: torch.Tensor, ytr: torch.Tensor, K: int, random_state: int) -> tuple[list, Any, Any]:
    """Parameters, logits function and scale function of the ``S`` models of :func:`train_scale_runs`."""
    S, _, D = Xtr.shape
    dt = Xtr.dtype
    if kind == "prototype":
        mu = torch.stack([torch.stack([Xtr[s][ytr[s] == k].mean(0) for k in range(K)]) for s in range(S)])
        mu.requires_grad_(True)
        log_a = torch.zeros(S, dtype=dt, requires_grad=True)

        def proto_logits(X: torch.Tensor) -> torch.Tensor:
            sq = (X**2).sum(-1, keepdim=True) - 2.0 * X @ mu.transpose(1, 2) + (mu**2).sum(-1)[:, None, :]
            return -sq.clamp_min(0.0) * torch.exp(2.0 * log_a)[:, None, None] / 2.0

        return [mu, log_a], proto_logits, lambda: torch.exp(2.0 * log_a)
    g = torch.Generator().manual_seed(random_state)
    W = (0.01 * torch.randn(S, D, K, generator=g, dtype=dt)).requires_grad_(True)
    b = torch.zeros(S, 1, K, dtype=dt, requires_grad=True)
    return [W, b], lambda X: X @ W + b, lambda: W.flatten(1).norm(dim=1)


def train_scale_runs(kind: str, data: DigitSplit, *, epochs: int = 1000, lr: float = 0.3,
                     record_at: Any = (0, 10, 30, 100, 300, 1000), random_state: int = 0) -> ScaleRuns:
    """Full-batch gradient descent on the cross-entropy loss for ``S`` digit splits at once.

    ``kind="prototype"``: logits ``z_j = -a^2 ||x - mu_j||^2 / 2`` (distances ``d = -z``), one
    prototype per class started at the class mean and one learned scale ``a`` started at 1 (the model
    of :class:`iemlib.classifiers.PrototypeClassifier`); its scale is ``a^2``. ``kind="linear"``:
    ``z = W x + b``, ``W`` started at ``0.01 N(0, 1)``, its scale ``||W||_F``. The loss minimized is
    the sum over splits of each split's mean cross-entropy.

    Parameters
    ----------
    kind : "prototype" or "linear".
    data : the stacked :class:`~iemlib.data.DigitSplit` of :func:`iemlib.data.stack_digit_splits`.
    epochs : int >= 1. lr : float > 0.
    record_at : steps (0..epochs) at which the records are taken.
    random_state : int >= 0, seeds the linear model's ``W``.

    Returns
    -------
    ScaleRuns
    """
    if kind not in SCALE_MODELS:
        raise ValueError(f"kind must be one of {SCALE_MODELS}, got {kind!r}")
    if not isinstance(data, DigitSplit) or data.X_train.ndim != 3:
        raise ValueError("data must be the stacked DigitSplit of iemlib.data.stack_digit_splits")
    Xtr, Xte, ytr, yte = data.X_train, data.X_test, data.y_train, data.y_test
    ep = check_int(epochs, "epochs", minimum=1)
    eta = check_positive(lr, "lr")
    rec = sorted({check_int(int(t), "record_at", minimum=0) for t in np.atleast_1d(record_at)})
    if rec[-1] > ep:
        raise ValueError(f"record_at must not exceed epochs={ep}, got {rec[-1]}")
    K = int(ytr.max()) + 1
    dt = Xtr.dtype
    params, logits, scale = _scale_model(kind, Xtr, ytr, K, check_int(random_state, "random_state", minimum=0))

    def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -torch.log_softmax(z, -1).gather(-1, y[..., None])[..., 0].mean(-1)

    out: dict[str, list] = {k: [] for k in ScaleRuns.__dataclass_fields__}
    with single_threaded():
        for t in range(ep + 1):
            z = logits(Xtr)
            loss = ce(z, ytr)
            if t in rec:
                with torch.no_grad():
                    zt = logits(Xte)
                    p = torch.softmax(zt, -1)
                    out["step"].append(t)
                    out["scale"].append(scale().numpy().copy())
                    out["train_loss"].append(loss.numpy().copy())
                    out["train_acc"].append((z.argmax(-1) == ytr).to(dt).mean(1).numpy())
                    out["test_acc"].append((zt.argmax(-1) == yte).to(dt).mean(1).numpy())
                    out["test_nll"].append(ce(zt, yte).numpy())
                    out["test_ece"].append(expected_calibration_error(p, yte))
                    out["test_conf"].append(p.max(-1).values.mean(1).numpy())
                    out["logit_spread"].append(zt.std(-1).mean(-1).numpy())
            if t == ep:
                break
            grads = torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                for p_, g_ in zip(params, grads):
                    p_ -= eta * g_
    return ScaleRuns(**{k: np.asarray(v) for k, v in out.items()})


@dataclass(frozen=True, eq=False)
class NoiseConfidence:
    """The result of :func:`confidence_vs_noise_scale`.

    Attributes
    ----------
    scale
        (A,) noise amplitudes.
    median_confidence
        (A,) median max-softmax confidence on the noise images.
    median_L
        (A,) median objective ``L = log sum_j exp(z_j)`` (:func:`iemlib.metrics.energy_score`).
    """

    scale: np.ndarray
    median_confidence: np.ndarray
    median_L: np.ndarray


def confidence_vs_noise_scale(model: nn.Module, scales: Any, n: int = 300, n_features: int = DIGIT_PIXELS,
                              random_state: int = 0) -> NoiseConfidence:
    """Median max-softmax and median ``L`` of a classifier on noise images of growing amplitude.

    For each amplitude ``s``, ``n`` images of :func:`iemlib.data.gaussian_noise_images` (``N(0, s^2)``
    per standardized pixel, the same draw rescaled) are scored by ``model`` (not modified).

    Parameters
    ----------
    model : torch.nn.Module returning logits.
    scales : (A,) positive amplitudes.
    n : int >= 1 images per amplitude. n_features : the model's input width.
    random_state : int >= 0.

    Returns
    -------
    NoiseConfidence
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    sc = as_numpy(scales, "scales", ndim=1)
    if (sc <= 0).any():
        raise ValueError("scales must be positive")
    dtype = next(model.parameters()).dtype
    conf, lp = [], []
    with torch.no_grad():
        for s in sc:
            z = model(gaussian_noise_images(n, n_features, float(s), random_state, dtype))
            conf.append(float(np.median(max_softmax(z))))
            lp.append(float(np.median(energy_score(z))))
    return NoiseConfidence(scale=sc, median_confidence=np.asarray(conf), median_L=np.asarray(lp))


#: The archived long run of chapter 9: ``train_scale_runs("linear", stack_digit_splits(range(5)), **LINEAR_SCALE_RUN)``.
LINEAR_SCALE_RUN: dict[str, Any] = {
    "epochs": 32000, "lr": 1.0, "random_state": 0,
    "record_at": (0, 10, 30, 100, 200, 500, 1000, 2000, 4000, 8000, 16000, 32000),
}


def scale_archive_path() -> Path:
    """The shipped archive of :data:`LINEAR_SCALE_RUN` (package data, written by ``bench/ch09_linear_scale.py``)."""
    return Path(__file__).resolve().parents[1] / "data" / "linear_scale_run.npz"


def save_scale_runs(runs: ScaleRuns, path: Any) -> Path:
    """Write a :class:`ScaleRuns` to ``path`` (npz, one array per field); returns the path."""
    if not isinstance(runs, ScaleRuns):
        raise ValueError(f"runs must be a ScaleRuns, got {type(runs).__name__}")
    out = Path(path)
    np.savez_compressed(out, **{k: getattr(runs, k) for k in ScaleRuns.__dataclass_fields__})
    return out


def load_scale_runs(path: Any = None) -> ScaleRuns:
    """Read a :class:`ScaleRuns` written by :func:`save_scale_runs` (default: :func:`scale_archive_path`)."""
    p = scale_archive_path() if path is None else Path(path)
    if not p.is_file():
        raise ValueError(f"path must name an archive written by save_scale_runs, got {p}")
    with np.load(p) as f:
        missing = set(ScaleRuns.__dataclass_fields__) - set(f.files)
        if missing:
            raise ValueError(f"path {p} lacks the fields {sorted(missing)}")
        return ScaleRuns(**{k: f[k] for k in ScaleRuns.__dataclass_fields__})
