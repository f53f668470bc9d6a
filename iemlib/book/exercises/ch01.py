"""Checkers for chapter 1 (the puzzle and the one-line result).

Each ``check_*(answer, hint=0)`` returns :class:`~iemlib.book.exercises.Feedback`; it names a
recognised mistake without the answer, and ``hint=1, 2, ...`` adds graded hints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import MISSING_FACTOR, NORMALIZATION, WRONG_QUANTITY, WRONG_UNITS, FLIPPED_SIGN
from . import NOT_CLOSE, Custom, Exercise, Feedback, Mistake, _to_numpy

__all__ = [
    "EX1_GRAD",
    "EX2_N",
    "EX2_NJ",
    "EX2_SIGMA",
    "EX3_R",
    "EX4_TARGET",
    "check_responsibilities_from_gradient",
    "check_em_learning_rate",
    "check_entropy",
    "check_designed_distances",
]

#: Exercise 1: autograd's gradient of the loss -(1/N) sum_i L_i with respect to the distances
#: d_ij, for N = 2 points and K = 3 prototypes.
EX1_GRAD = np.array([[0.25, 0.15, 0.10], [0.05, 0.05, 0.40]])
#: Exercise 2: N points, N_j = sum_i r_ij for one prototype, and the fixed width sigma.
EX2_N, EX2_NJ, EX2_SIGMA = 600, 200.0, 0.5
#: Exercise 3: one point's responsibilities.
EX3_R = np.array([0.5, 0.25, 0.25])
#: Exercise 4: the loss gradient (equivalently, the responsibilities) the reader designs distances for.
EX4_TARGET = np.array([0.7, 0.2, 0.1])

#: Exercise 1: the responsibilities r_ij behind ``EX1_GRAD``.
check_responsibilities_from_gradient = Exercise(
    label="ex-ch01-resp-from-grad", name="check_responsibilities_from_gradient",
    what="Responsibilities from the gradient",
    expected=lambda: EX1_GRAD * EX1_GRAD.shape[0],
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX1_GRAD,
                "these are the gradient entries themselves; their rows do not sum to one. The loss is a mean over points."),
        Mistake(FLIPPED_SIGN, lambda: -EX1_GRAD * EX1_GRAD.shape[0],
                "responsibilities are probabilities, never negative; the gradient of the loss is already positive."),
    ),
    hints=(
        "The loss averages over the N points. How does one point's term enter the gradient?",
        "For one point, the gradient of -log sum_j exp(-d_j) with respect to d_j is r_j (Theorem 1); the mean adds a factor 1/N.",
        "Undo the 1/N: multiply the gradient by the number of rows, and check each row sums to one.",
    ),
    success="Every row sums to one: the backward pass delivered the E-step.",
    secrets=("2 * EX1_GRAD", "EX1_GRAD * 2", "0.5, 0.3, 0.2"),
)

#: Exercise 2: the learning rate at which one gradient step on mu_j equals the EM mean update.
check_em_learning_rate = Exercise(
    label="ex-ch01-em-rate", name="check_em_learning_rate",
    what="Learning rate that makes the gradient step an EM step",
    expected=lambda: EX2_N * EX2_SIGMA**2 / EX2_NJ,
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX2_N / EX2_NJ, "the width sigma is missing: the gradient carries a 1/sigma^2."),
        Mistake(MISSING_FACTOR, lambda: EX2_SIGMA**2 / EX2_NJ, "the mean over the N points is missing: the loss carries a 1/N."),
        Mistake(MISSING_FACTOR, lambda: EX2_N * EX2_SIGMA / EX2_NJ, "sigma enters squared, not linearly."),
        Mistake(WRONG_QUANTITY, lambda: EX2_NJ / (EX2_N * EX2_SIGMA**2),
                "that is the inverse: the step must undo the factors in front of (mean_j - mu_j), not multiply by them again."),
    ),
    hints=(
        "Write the gradient of the mean loss with respect to mu_j; it is a multiple of (m_j - mu_j), with m_j the "
        "responsibility-weighted mean.",
        "The loss gradient is -(N_j / (N sigma^2)) (m_j - mu_j). A descent step of size eta moves mu_j by eta times minus that.",
        "Choose eta so that eta N_j / (N sigma^2) = 1.",
    ),
    rtol=1e-9, success="With that step size, gradient descent lands exactly on the M-step mean.",
    secrets=("0.75", "N sigma^2 / N_j", "N * sigma"),
)

#: Exercise 3: the entropy (nats) of the responsibilities ``EX3_R``.
check_entropy = Exercise(
    label="ex-ch01-entropy", name="check_entropy",
    what="Entropy of the responsibilities",
    expected=lambda: float(-(EX3_R * np.log(EX3_R)).sum()),
    mistakes=(
        Mistake(WRONG_UNITS, lambda: float(-(EX3_R * np.log2(EX3_R)).sum()),
                "that is in bits; the book uses nats (natural logarithm)."),
        Mistake(WRONG_UNITS, lambda: float(-(EX3_R * np.log10(EX3_R)).sum()),
                "that uses the base-10 logarithm; the book uses nats (natural logarithm)."),
        Mistake(FLIPPED_SIGN, lambda: float((EX3_R * np.log(EX3_R)).sum()),
                "an entropy is never negative: mind the minus sign in front of the sum."),
        Mistake(WRONG_QUANTITY, lambda: float(-np.log(EX3_R).sum()),
                "each log r_j must be weighted by r_j itself."),
    ),
    hints=(
        "The entropy of a distribution r is an expectation of -log r_j under r.",
        "H = -sum_j r_j log r_j, natural logarithm.",
        "Two of the three terms are equal: H = -(0.5 log 0.5 + 2 * 0.25 log 0.25).",
    ),
    success="Between 0 (hard assignment) and log 3 (no preference).",
    secrets=("1.040", "1.5 log 2", "1.5*log(2)"),
)


def _loss_grad_of(d: np.ndarray) -> np.ndarray:
    e = np.exp(-(d - d.min()))
    return e / e.sum()


def _grade_designed(answer: Any) -> Feedback:
    what = "Your distances"
    d = _to_numpy(answer).astype(np.float64).reshape(-1)
    if d.shape != (3,):
        return Feedback(False, f"{what}: give three distances, one per prototype (got {d.size} numbers).", "wrong shape")
    if not np.all(np.isfinite(d)):
        return Feedback(False, f"{what}: they must be finite numbers.", "not finite")
    g = _loss_grad_of(d)
    if np.allclose(g, EX4_TARGET, atol=1e-6):
        note = ("" if np.all(d >= 0) else
                " (Some of your distances are negative: the gradient does not mind, but a distance would.)")
        return Feedback(True, f"{what}: right, the loss gradient is the target. Add any constant to all three and "
                              f"it stays the same: only differences of distances matter.{note}")
    if np.allclose(_loss_grad_of(-d), EX4_TARGET, atol=1e-6):
        return Feedback(False, f"{what}: the order is reversed: the prototype that should get the most "
                               "responsibility is the farthest. A larger distance means a smaller share.", FLIPPED_SIGN)
    if np.allclose(d, EX4_TARGET, atol=1e-6):
        return Feedback(False, f"{what}: you entered the target itself; those are responsibilities, not distances.",
                        WRONG_QUANTITY)
    if np.argsort(g).tolist() == np.argsort(EX4_TARGET).tolist():
        return Feedback(False, f"{what}: the ranking is right, the sizes are not: the shares are exponentials "
                               "of minus the distances.", NOT_CLOSE)
    return Feedback(False, f"{what}: the loss gradient they give is not the target.", NOT_CLOSE)


#: Exercise 4 (design): three distances whose loss gradient is ``EX4_TARGET``; any shift works.
check_designed_distances = Custom(
    label="ex-ch01-design", name="check_designed_distances",
    what="Your distances", grade=_grade_designed,
    hints=(
        "The loss gradient with respect to d is the responsibilities r_j = exp(-d_j) / sum_k exp(-d_k).",
        "Take logarithms: -d_j = log r_j + (a constant that is the same for every j).",
        "Try d = -log(EX4_TARGET), then add 5 to every entry and check again.",
    ),
    example=lambda: -np.log(EX4_TARGET),
    wrong=lambda: [(np.log(EX4_TARGET), FLIPPED_SIGN), (EX4_TARGET.copy(), WRONG_QUANTITY)],
    secrets=("-log(EX4_TARGET)", "-np.log"),
    placeholder="three distances", kind="design",
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_responsibilities_from_gradient, check_em_learning_rate, check_entropy, check_designed_distances)
