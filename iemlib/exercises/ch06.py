"""Checkers for chapter 6, the constrained regime: cross-entropy classification.

Every gradient here is of the cross-entropy *loss* (minimized), ``loss = d_y + log sum_k exp(-d_k)``,
taken with respect to the **distances** ``d = -z`` unless a checker says otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..objectives import responsibilities
from . import Feedback, _to_numpy, check_close, matches

__all__ = ["check_distance_gradient", "check_wrong_push_total", "check_linear_step"]


def _softmax(z: np.ndarray) -> np.ndarray:
    return responsibilities(-z)


def check_distance_gradient(answer: Any, z: Any, y: Any) -> Feedback:
    """Exercise 6.1: the gradient of the cross-entropy loss with respect to ``d = -z``.

    ``z``: logits of shape (K,) or (N, K); ``y``: the label(s). The expected answer is
    ``1[j = y] - r_j`` with ``r = softmax(z)``.
    """
    what = "The gradient of the loss with respect to d"
    hint = (
        "Write the loss in distances, d_y + log sum_k exp(-d_k), and differentiate each term with "
        "respect to d_j; the derivative of log sum_k exp(-d_k) is minus a responsibility."
    )
    z_ = _to_numpy(z).astype(np.float64)
    y_ = np.asarray(_to_numpy(y)).astype(np.int64)
    K = z_.shape[-1]
    expected = np.eye(K)[y_] - _softmax(z_)
    if matches(answer, -expected):
        return Feedback(
                False,
                f"{what}: you have the opposite sign: r - onehot is the gradient with respect to the "
                "logits z (the formula printed in the paper). Since d = -z, the chain rule flips it.",
            )
    return check_close(
        answer,
        expected,
        what=what,
        hint=hint,
        success="The correct class's distance has a positive gradient (descent pulls it closer); "
        "every wrong class has gradient -r_j (descent pushes it away).",
    )


def check_wrong_push_total(answer: Any, r_y: float) -> Feedback:
    """Exercise 6.2: ``sum_{j != y} d loss / d d_j`` for a sample whose correct class has responsibility ``r_y``."""
    return check_close(
        answer,
        np.float64(-(1.0 - float(r_y))),
        what="The summed gradient of the wrong classes' distances",
        hint="Each wrong class contributes -r_j, and the responsibilities of all classes sum to one.",
        success="The wrong classes share exactly the responsibility the correct class is missing.",
    )


def check_linear_step(answer: Any, x: Any, z: Any, y: int, lr: float) -> Feedback:
    """Exercise 6.3: the change of every distance after one SGD step of size ``lr`` on one sample.

    Model: linear, ``d = -(W x + b)``; ``z`` are the logits before the step. Expected:
    ``d_after - d_before = lr * (||x||^2 + 1) * (r - onehot)``.
    """
    x_ = _to_numpy(x).astype(np.float64)
    z_ = _to_numpy(z).astype(np.float64)
    K = z_.shape[-1]
    g = np.eye(K)[int(y)] - _softmax(z_)  # gradient of the loss with respect to d
    expected = -float(lr) * (x_ @ x_ + 1.0) * g
    if matches(answer, -expected, atol=1e-12):
        return Feedback(False, "The change of d: the sign is flipped. Descent moves d against the "
                               "gradient with respect to d, and d = -z.")
    if matches(answer, -float(lr) * g, atol=1e-12):
        return Feedback(False, "The change of d: right direction, wrong size. Class j's distance "
                               "depends on its row of W and on b_j; count how much each moves it.")
    return check_close(
        answer,
        expected,
        what="The change of d after one step",
        hint="Row j of W and b_j only affect d_j; their gradients are the gradient with respect to d_j "
        "times -x and -1.",
        rtol=1e-6,
        atol=1e-12,
        success="Every wrong class moves away by lr (||x||^2 + 1) r_j: in exact proportion to its responsibility.",
    )
