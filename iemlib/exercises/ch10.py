"""Checkers for chapter 10, beyond the paper: the open directions of §7.3.

Gradients here are of a *loss* (minimized) with respect to the **distances** ``d = -z`` unless a
checker says otherwise. The exercises' data are module constants, so the chapter and the tests
use the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..objectives import responsibilities
from . import Feedback, _to_numpy, check_close, matches

__all__ = [
    "EX1_D",
    "EX1_Q",
    "EX3_D",
    "EX3_TAU",
    "EX4_R",
    "check_soft_gradient",
    "check_noise_as_smoothing",
    "check_reject_responsibility",
    "check_effective_components",
]

#: Exercise 10.1: distances of one sample and a soft target (label smoothing, eps = 0.2, K = 4, y = 1).
EX1_D = np.array([1.2, 0.3, 2.0, 0.9])
EX1_Q = np.array([0.05, 0.85, 0.05, 0.05])
#: Exercise 10.3: three inputs' distances to K = 3 known classes, and the reject distance tau.
EX3_D = np.array([[0.5, 3.0, 4.0], [2.5, 2.6, 2.4], [9.0, 8.0, 12.0]])
EX3_TAU = 3.0
#: Exercise 10.4: responsibilities of four points over three components.
EX4_R = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1]])


def _softmax_neg(d: np.ndarray) -> np.ndarray:
    return responsibilities(d)


def check_soft_gradient(answer: Any, d: Any = EX1_D, q: Any = EX1_Q) -> Feedback:
    """Exercise 10.1: the gradient of the soft cross-entropy loss with respect to ``d``: ``q - r``."""
    d_ = _to_numpy(d).astype(np.float64)
    q_ = _to_numpy(q).astype(np.float64)
    expected = q_ - _softmax_neg(d_)
    what = "The gradient of the soft cross-entropy loss with respect to d"
    if matches(answer, -expected):
        return Feedback(
                False,
                f"{what}: you have the opposite sign, r - q, which is the gradient with respect to the "
                "logits z = -d. Differentiate sum_j q_j d_j + log sum_k exp(-d_k) with respect to d.",
            )
    return check_close(
        answer,
        expected,
        what=what,
        hint="Write the loss as sum_j q_j d_j + log sum_k exp(-d_k); the first term gives q_j, "
        "Theorem 1 gives the second.",
        success="It vanishes exactly when r = q: the label pulls only until r_y = q_y, and a wrong class "
        "with r_j < q_j is pulled closer.",
    )


def check_noise_as_smoothing(answer: Any, rho: float = 0.2, n_classes: int = 10) -> Feedback:
    """Exercise 10.2: the smoothing ``eps`` whose target equals symmetric label noise of rate ``rho``."""
    K = int(n_classes)
    expected = float(rho) * K / (K - 1)
    if matches(answer, np.float64(rho), rtol=1e-8, atol=1e-8):
        return Feedback(
                False,
                "eps = rho would give the labelled class 1 - rho + rho / K, not 1 - rho: smoothing gives "
                "eps / K back to the true class itself.",
            )
    return check_close(
        answer,
        expected,
        what="The equivalent smoothing eps",
        hint="Match the labelled entries, 1 - rho = 1 - eps + eps / K, and check the others, "
        "rho / (K - 1) = eps / K.",
        success="In expectation, symmetric label noise is label smoothing: the same partial clamp.",
    )


def check_reject_responsibility(answer: Any, d_known: Any = EX3_D, tau: float = EX3_TAU) -> Feedback:
    """Exercise 10.3: the reject component's responsibility for each row of ``d_known``."""
    d = _to_numpy(d_known).astype(np.float64)
    t = float(tau)
    m = np.minimum(d.min(1), t)
    num = np.exp(-(t - m))
    expected = num / (num + np.exp(-(d - m[:, None])).sum(1))
    return check_close(
        answer,
        expected,
        what="The reject responsibilities",
        hint="Append tau as one more distance to each row and take that component's responsibility, "
        "exp(-tau) / (exp(-tau) + sum_k exp(-d_k)).",
        success="Only the third input, far from every known class, is rejected (r_0 > 1/2); the second is "
        "ambiguous among the classes but close to them, so the reject component barely claims it.",
    )


def check_effective_components(answer: Any, r: Any = EX4_R) -> Feedback:
    """Exercise 10.4: the effective number of components ``exp(H_i)`` of each row of ``r``."""
    rr = _to_numpy(r).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.sum(np.where(rr > 0, rr * np.log(np.where(rr > 0, rr, 1.0)), 0.0), axis=1)
    expected = np.exp(H)
    if matches(answer, H):
        return Feedback(False, "That is the entropy H_i itself; the effective number is exp(H_i).")
    return check_close(
        answer,
        expected,
        what="The effective numbers of components",
        hint="Compute H_i = -sum_j r_ij log r_ij (with 0 log 0 = 0) in nats, then exp(H_i).",
        success="A point owned by one component counts 1, an even split over m components counts m.",
    )
