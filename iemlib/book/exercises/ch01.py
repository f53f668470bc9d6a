"""Checkers for chapter 1 (the puzzle and the one-line result)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validation import to_numpy
from . import exercise_text, MISSING_FACTOR, WRONG_QUANTITY, WRONG_UNITS, FLIPPED_SIGN
from . import NOT_CLOSE, Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch01.toml.
TEXT = exercise_text("ch01")

__all__ = ["EX1_GRAD", "EX2_N", "EX2_NJ", "EX2_SIGMA", "EX3_R", "EX4_TARGET",
           "check_responsibilities_from_gradient", "check_em_learning_rate", "check_entropy",
           "check_designed_distances"]

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
    **TEXT["ex-ch01-resp-from-grad"],
    expected=lambda: EX1_GRAD * EX1_GRAD.shape[0],
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX1_GRAD,
                "these are the gradient entries themselves; their rows do not sum to one. The loss is a mean over points."),
        Mistake(FLIPPED_SIGN, lambda: -EX1_GRAD * EX1_GRAD.shape[0],
                "responsibilities are probabilities, never negative; the gradient of the loss is already positive."),
    ),
)

#: Exercise 2: the learning rate at which one gradient step on mu_j equals the EM mean update.
check_em_learning_rate = Exercise(
    **TEXT["ex-ch01-em-rate"],
    expected=lambda: EX2_N * EX2_SIGMA**2 / EX2_NJ,
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX2_N / EX2_NJ, "the width sigma is missing: the gradient carries a 1/sigma^2."),
        Mistake(MISSING_FACTOR, lambda: EX2_SIGMA**2 / EX2_NJ, "the mean over the N points is missing: the loss carries a 1/N."),
        Mistake(MISSING_FACTOR, lambda: EX2_N * EX2_SIGMA / EX2_NJ, "sigma enters squared, not linearly."),
        Mistake(WRONG_QUANTITY, lambda: EX2_NJ / (EX2_N * EX2_SIGMA**2),
                "that is the inverse: the step must undo the factors in front of (mean_j - mu_j), not multiply by them again."),
    ),
    rtol=1e-9,
)

#: Exercise 3: the entropy (nats) of the responsibilities ``EX3_R``.
check_entropy = Exercise(
    **TEXT["ex-ch01-entropy"],
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
)


def _loss_grad_of(d: np.ndarray) -> np.ndarray:
    e = np.exp(-(d - d.min()))
    return e / e.sum()


def _grade_designed(answer: Any) -> Feedback:
    what = "Your distances"
    d = to_numpy(answer).astype(np.float64).reshape(-1)
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
        return Feedback(False, f"{what}: the ranking is right, the sizes are not: the gaps between your "
                               "distances give other shares than the target.", NOT_CLOSE)
    return Feedback(False, f"{what}: the loss gradient they give is not the target.", NOT_CLOSE)


#: Exercise 4 (design): three distances whose loss gradient is ``EX4_TARGET``; any shift works.
check_designed_distances = Custom(
    **TEXT["ex-ch01-design"],
    grade=_grade_designed,
    example=lambda: -np.log(EX4_TARGET),
    wrong=lambda: [(np.log(EX4_TARGET), FLIPPED_SIGN), (EX4_TARGET.copy(), WRONG_QUANTITY)],
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_responsibilities_from_gradient, check_em_learning_rate, check_entropy, check_designed_distances)
