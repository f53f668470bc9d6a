"""Checkers for chapter 3 (Theorem 1). Each takes the reader's answer and returns Feedback."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Feedback, check_close

__all__ = [
    "EX1_D",
    "EX2_D",
    "EX2_Y",
    "EX3_D",
    "EX3_TAU",
    "check_loss_gradient",
    "check_cross_entropy_gradient",
    "check_temperature_gradient",
]

#: Exercise 1: distances at which the reader differentiates the loss -L.
EX1_D = (0.0, float(np.log(2.0)), float(np.log(4.0)))
#: Exercise 2: distances and label for the cross-entropy loss.
EX2_D, EX2_Y = (1.0, 0.0, 2.0), 0
#: Exercise 3: distances and temperature for L_tau = tau * log sum_j exp(-d_j / tau).
EX3_D, EX3_TAU = (1.0, 2.0, 3.0), 0.5


def _softmax_neg(d: Any) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    e = np.exp(-(d - d.min()))
    return e / e.sum()


def check_loss_gradient(answer: Any) -> Feedback:
    """Exercise 1: the gradient of the loss ``-L`` with respect to ``d`` at ``EX1_D``."""
    expected = _softmax_neg(EX1_D)
    fb = check_close(
        answer,
        expected,
        what="Gradient of the loss -L",
        hint="The objective L has gradient -r_j; the loss is -L. The exponentials exp(-d_j) here are 1, 1/2 and 1/4.",
        rtol=1e-6,
        atol=1e-9,
        success="Gradient descent on -L moves each d_j down by a step proportional to r_j.",
    )
    if not fb and answer is not None and answer is not Ellipsis:
        try:
            if np.allclose(np.asarray(answer, dtype=float), -expected, rtol=1e-6):
                return Feedback(False, "Gradient of the loss -L: right size, wrong sign. That is the gradient of L, the objective.")
        except (TypeError, ValueError):
            pass
    return fb


def check_cross_entropy_gradient(answer: Any) -> Feedback:
    """Exercise 2: the gradient of the cross-entropy loss ``d_y + log sum_k exp(-d_k)`` with
    respect to the distances ``d`` (not the logits) at ``EX2_D``, label ``EX2_Y``."""
    r = _softmax_neg(EX2_D)
    expected = np.eye(len(EX2_D))[EX2_Y] - r
    fb = check_close(
        answer,
        expected,
        what="Cross-entropy gradient with respect to d",
        hint="Differentiate d_y and the log-sum-exp term separately; the second one is Theorem 1.",
        success="The correct class's distance has a positive gradient (descent pulls it in), the others negative (pushed away).",
    )
    if not fb and answer is not None and answer is not Ellipsis:
        try:
            if np.allclose(np.asarray(answer, dtype=float), -expected, rtol=1e-6):
                return Feedback(
                    False,
                    "Cross-entropy gradient with respect to d: that is r - 1[j=y], the gradient with respect to the logits z = -d. Flip to d.",
                )
        except (TypeError, ValueError):
            pass
    return fb


def check_temperature_gradient(answer: Any) -> Feedback:
    """Exercise 3: the gradient of ``L_tau = tau log sum_j exp(-d_j / tau)`` (maximized) with
    respect to ``d`` at ``EX3_D``, ``tau = EX3_TAU``."""
    expected = -_softmax_neg(np.asarray(EX3_D) / EX3_TAU)
    return check_close(
        answer,
        expected,
        what="Gradient of L_tau",
        hint="The chain rule through d/tau gives a factor 1/tau, which the tau in front cancels. The responsibilities are those of d/tau.",
        success="A lower temperature sharpens the responsibilities; the identity keeps its form.",
    )
