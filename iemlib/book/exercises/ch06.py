"""Checkers for chapter 6, the constrained regime: cross-entropy classification.

Every gradient here is of the cross-entropy *loss* (minimized), ``loss = d_y + log sum_k exp(-d_k)``,
taken with respect to the **distances** ``d = -z`` unless a checker says otherwise. Each
``check_*(answer, ..., hint=0)`` returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of a
recognised mistake, and with ``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iemlib.objectives import responsibilities
from ..._validation import to_numpy
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, WRONG_QUANTITY, WRONG_TYPE
from . import Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch06.toml.
TEXT = exercise_text("ch06")

__all__ = ["check_distance_gradient", "check_wrong_push_total", "check_linear_step", "check_largest_push"]

#: The notebook's exercise data (used when a checker is called without its data, and by the tests).
EX1_Z, EX1_Y = np.array([0.2, 2.0, -1.0, 0.5, 1.1]), 3
_RNG = np.random.default_rng(6)
EX3_X, EX3_Z, EX3_Y, EX3_LR = _RNG.normal(size=64), _RNG.normal(size=10) * 2, 4, 1e-3
del _RNG


def _softmax(z: np.ndarray) -> np.ndarray:
    return responsibilities(-z)


_GRAD_HINTS = (
    "Write the loss in distances, d_y + log sum_k exp(-d_k), and differentiate each term with respect to d_j.",
    "The first term gives 1 for j = y, 0 otherwise; the derivative of log sum_k exp(-d_k) is minus a responsibility.",
    "The answer is onehot(y) - r with r = softmax(z); the paper's r - onehot is the gradient with respect to z.",
)


def _distance_exercise(z: Any, y: Any) -> Exercise:
    z_ = to_numpy(z).astype(np.float64)
    y_ = np.asarray(to_numpy(y)).astype(np.int64)
    K = z_.shape[-1]
    expected = np.eye(K)[y_] - _softmax(z_)
    return Exercise(
        **TEXT["ex-ch06-gradient"],
        expected=lambda: expected,
        mistakes=(
            Mistake(FLIPPED_SIGN, lambda: -expected,
                    "you have the opposite sign: r - onehot is the gradient with respect to the logits z (the formula "
                    "printed in the paper). Since d = -z, the chain rule flips it."),
            Mistake(WRONG_QUANTITY, lambda: -_softmax(z_), "the label term is missing: the loss has d_y in front."),
            Mistake(NORMALIZATION, lambda: np.eye(K)[y_] - np.exp(z_),
                    "the softmax normalizer is missing: responsibilities sum to one."),
        ),
        hints=_GRAD_HINTS,
    )


_EX1 = _distance_exercise(EX1_Z, EX1_Y)


def _push_exercise(r_y: float) -> Exercise:
    return Exercise(
        **TEXT["ex-ch06-total"],
        expected=lambda: np.float64(-(1.0 - float(r_y))),
        mistakes=(
            Mistake(WRONG_QUANTITY, lambda: np.float64(-float(r_y)),
                    "that is minus the correct class's responsibility; the wrong classes share what it is missing."),
            Mistake(WRONG_QUANTITY, lambda: np.float64(1.0 - float(r_y)),
                    "right size, wrong sign: each wrong class's loss gradient is negative (descent pushes it away)."),
        ),
        generic=False,
    )


_EX2 = _push_exercise(0.7)


def _step_exercise(x: Any, z: Any, y: int, lr: float) -> Exercise:
    x_ = to_numpy(x).astype(np.float64).reshape(-1)
    z_ = to_numpy(z).astype(np.float64)
    K = z_.shape[-1]
    g = np.eye(K)[int(y)] - _softmax(z_)  # gradient of the loss with respect to d
    expected = -float(lr) * (x_ @ x_ + 1.0) * g
    return Exercise(
        **TEXT["ex-ch06-step"],
        expected=lambda: expected,
        mistakes=(
            Mistake(FLIPPED_SIGN, lambda: -expected,
                    "the sign is flipped. Descent moves d against the gradient with respect to d, and d = -z."),
            Mistake(MISSING_FACTOR, lambda: -float(lr) * g,
                    "right direction, wrong size. Class j's distance depends on its row of W and on b_j; count how much each moves it."),
            Mistake(MISSING_FACTOR, lambda: -float(lr) * (x_ @ x_) * g,
                    "almost: the bias b_j moves too, and adds to the change."),
        ),
        rtol=1e-6,
        atol=1e-12,
    )


_EX3 = _step_exercise(EX3_X, EX3_Z, EX3_Y, EX3_LR)


def _largest_push_custom(z: Any, y: int) -> Custom:
    z_ = to_numpy(z).astype(np.float64).reshape(-1)
    r = _softmax(z_)
    wrong_r = np.where(np.arange(len(r)) == int(y), -np.inf, r)
    best = int(np.argmax(wrong_r))

    def grade(answer: Any) -> Feedback:
        what = "Your prediction"
        try:
            a = int(answer)
        except (TypeError, ValueError):
            return Feedback(False, f"{what}: give a class index (an integer).", WRONG_TYPE)
        if a == best:
            return Feedback(True, f"{what}: right. The wrong class with the largest responsibility is pushed the "
                                  "hardest: the push is proportional to r_j.")
        if a == int(y):
            return Feedback(False, f"{what}: that is the label; the correct class is pulled closer, not pushed away.",
                            "confused pull and push")
        if a == int(np.argmin(np.where(np.arange(len(r)) == int(y), np.inf, r))):
            return Feedback(False, f"{what}: not that class. You picked the wrong class that one step pushes the "
                                   "least: your ranking runs the wrong way.", FLIPPED_SIGN)
        return Feedback(False, f"{what}: not that class. It is a wrong class, but not the one pushed the most; "
                               "the ranking needs a per-class quantity you have not used yet.", WRONG_QUANTITY)

    worst = int(np.argmin(np.where(np.arange(len(r)) == int(y), np.inf, r)))
    return Custom(
        **TEXT["ex-ch06-predict"],
        grade=grade,
        example=lambda: best,
        wrong=lambda: [(int(y), "confused pull and push"), (worst, FLIPPED_SIGN)],
    )


_EX4 = _largest_push_custom(EX3_Z, EX3_Y)


def check_distance_gradient(answer: Any, z: Any = EX1_Z, y: Any = EX1_Y, hint: int = 0) -> Feedback:
    """Exercise 6.1: the gradient of the cross-entropy loss with respect to ``d = -z``.

    ``z``: logits of shape (K,) or (N, K); ``y``: the label(s).
    """
    return _distance_exercise(z, y).check(answer, hint)


def check_wrong_push_total(answer: Any, r_y: float = 0.7, hint: int = 0) -> Feedback:
    """Exercise 6.2: ``sum_{j != y} d loss / d d_j`` for a sample whose correct class has responsibility ``r_y``."""
    return _push_exercise(r_y).check(answer, hint)


def check_linear_step(answer: Any, x: Any = EX3_X, z: Any = EX3_Z, y: int = EX3_Y, lr: float = EX3_LR,
                      hint: int = 0) -> Feedback:
    """Exercise 6.3: the change of every distance after one SGD step of size ``lr`` on one sample.

    Model: linear, ``d = -(W x + b)``; ``z`` are the logits before the step, ``x`` the input.
    """
    return _step_exercise(x, z, y, lr).check(answer, hint)


def check_largest_push(answer: Any, z: Any = EX3_Z, y: int = EX3_Y, hint: int = 0) -> Feedback:
    """Exercise 6.4 (predict): the index of the wrong class whose distance one descent step on this
    sample (logits ``z``, label ``y``) increases the most, predicted before computing the step."""
    return _largest_push_custom(z, y).check(answer, hint)

#: This chapter's exercises, in the order the chapter sets them.

#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (_EX1, _EX2, _EX3, _EX4)
