"""Checkers for chapter 1 (the puzzle and the one-line result)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Feedback, check_close

__all__ = [
    "EX1_GRAD",
    "EX2_N",
    "EX2_NJ",
    "EX2_SIGMA",
    "EX3_R",
    "check_responsibilities_from_gradient",
    "check_em_learning_rate",
    "check_entropy",
]

#: Exercise 1: autograd's gradient of the loss -(1/N) sum_i L_i with respect to the distances
#: d_ij, for N = 2 points and K = 3 prototypes.
EX1_GRAD = np.array([[0.25, 0.15, 0.10], [0.05, 0.05, 0.40]])
#: Exercise 2: N points, N_j = sum_i r_ij for one prototype, and the fixed width sigma.
EX2_N, EX2_NJ, EX2_SIGMA = 600, 200.0, 0.5
#: Exercise 3: one point's responsibilities.
EX3_R = np.array([0.5, 0.25, 0.25])


def check_responsibilities_from_gradient(answer: Any) -> Feedback:
    """Exercise 1: the responsibilities r_ij behind ``EX1_GRAD``."""
    expected = EX1_GRAD * EX1_GRAD.shape[0]
    return check_close(
        answer,
        expected,
        what="Responsibilities from the gradient",
        hint="The loss averages over the N points, so each d_ij carries a factor 1/N; each row of r must sum to one.",
        success="Every row sums to one: the backward pass delivered the E-step.",
    )


def check_em_learning_rate(answer: Any) -> Feedback:
    """Exercise 2: the learning rate at which one gradient step on mu_j equals the EM mean update."""
    expected = EX2_N * EX2_SIGMA**2 / EX2_NJ
    return check_close(
        answer,
        expected,
        what="Learning rate that makes the gradient step an EM step",
        hint="The loss gradient is -(N_j / (N sigma^2)) (mean_j - mu_j), where mean_j is the responsibility-weighted mean.",
        rtol=1e-9,
        success="With that step size, gradient descent lands exactly on the M-step mean.",
    )


def check_entropy(answer: Any) -> Feedback:
    """Exercise 3: the entropy (nats) of the responsibilities ``EX3_R``."""
    expected = float(-(EX3_R * np.log(EX3_R)).sum())
    fb = check_close(
        answer,
        expected,
        what="Entropy of the responsibilities",
        hint="H = -sum_j r_j log r_j with the natural logarithm.",
        rtol=1e-6,
        success="Between 0 (hard assignment) and log 3 (no preference).",
    )
    if not fb and answer is not None and answer is not Ellipsis:
        try:
            if abs(float(answer) - expected / np.log(2)) < 1e-6:
                return Feedback(False, "Entropy of the responsibilities: that is in bits; the book uses nats (natural log).")
        except (TypeError, ValueError):
            pass
    return fb
