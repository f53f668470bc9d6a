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
from . import FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, WRONG_QUANTITY, WRONG_TYPE
from . import Custom, Exercise, Feedback, Mistake, _to_numpy

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
    z_ = _to_numpy(z).astype(np.float64)
    y_ = np.asarray(_to_numpy(y)).astype(np.int64)
    K = z_.shape[-1]
    expected = np.eye(K)[y_] - _softmax(z_)
    return Exercise(
        label="ex-ch06-gradient", name="check_distance_gradient", what="The gradient of the loss with respect to d",
        call="check_distance_gradient(answer, z_ex, y_ex, hint=1)",
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
        success="The correct class's distance has a positive gradient (descent pulls it closer); every wrong class "
                "has gradient -r_j (descent pushes it away).",
        secrets=("onehot(y) - r", "one_hot(y_ex"),
    )


_EX1 = _distance_exercise(EX1_Z, EX1_Y)


def _push_exercise(r_y: float) -> Exercise:
    return Exercise(
        label="ex-ch06-total", name="check_wrong_push_total", what="The summed gradient of the wrong classes' distances",
        call="check_wrong_push_total(answer, r_y=0.7, hint=1)",
        expected=lambda: np.float64(-(1.0 - float(r_y))),
        mistakes=(
            Mistake(WRONG_QUANTITY, lambda: np.float64(-float(r_y)),
                    "that is minus the correct class's responsibility; the wrong classes share what it is missing."),
            Mistake(WRONG_QUANTITY, lambda: np.float64(1.0 - float(r_y)),
                    "right size, wrong sign: each wrong class's loss gradient is negative (descent pushes it away)."),
        ),
        generic=False,
        hints=(
            "What is the loss gradient with respect to one wrong class's distance d_j?",
            "Each wrong class contributes -r_j. What do all K responsibilities sum to?",
            "Sum -r_j over j != y: it is -(1 - r_y), whatever the split.",
        ),
        success="The wrong classes share exactly the responsibility the correct class is missing.",
        secrets=("-(1 - r_y)", "-0.3"),
    )


_EX2 = _push_exercise(0.7)


def _step_exercise(x: Any, z: Any, y: int, lr: float) -> Exercise:
    x_ = _to_numpy(x).astype(np.float64).reshape(-1)
    z_ = _to_numpy(z).astype(np.float64)
    K = z_.shape[-1]
    g = np.eye(K)[int(y)] - _softmax(z_)  # gradient of the loss with respect to d
    expected = -float(lr) * (x_ @ x_ + 1.0) * g
    return Exercise(
        label="ex-ch06-step", name="check_linear_step", what="The change of d after one step",
        call="check_linear_step(answer, x_ex, z_step, y_step, eta_ex, hint=1)",
        expected=lambda: expected,
        mistakes=(
            Mistake(FLIPPED_SIGN, lambda: -expected,
                    "the sign is flipped. Descent moves d against the gradient with respect to d, and d = -z."),
            Mistake(MISSING_FACTOR, lambda: -float(lr) * g,
                    "right direction, wrong size. Class j's distance depends on its row of W and on b_j; count how much each moves it."),
            Mistake(MISSING_FACTOR, lambda: -float(lr) * (x_ @ x_) * g,
                    "almost: the bias b_j moves too, and adds to the change."),
        ),
        hints=(
            "d_j = -(W_j x + b_j) depends only on row j of W and on b_j. What are their loss gradients?",
            "dloss/dW_j = -(dloss/dd_j) x and dloss/db_j = -(dloss/dd_j). Apply the step, then recompute d_j.",
            "The change is -lr (||x||^2 + 1) (onehot(y) - r).",
        ),
        rtol=1e-6, atol=1e-12,
        success="Every wrong class moves away by lr (||x||^2 + 1) r_j: in exact proportion to its responsibility.",
        secrets=("||x||^2 + 1", "x_ex @ x_ex + 1"),
    )


_EX3 = _step_exercise(EX3_X, EX3_Z, EX3_Y, EX3_LR)


def _largest_push_custom(z: Any, y: int) -> Custom:
    z_ = _to_numpy(z).astype(np.float64).reshape(-1)
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
            return Feedback(False, f"{what}: the push grows with the responsibility, it does not shrink with it.",
                            FLIPPED_SIGN)
        return Feedback(False, f"{what}: not that class. What decides the size of a wrong class's push?", WRONG_QUANTITY)

    worst = int(np.argmin(np.where(np.arange(len(r)) == int(y), np.inf, r)))
    return Custom(
        label="ex-ch06-predict", name="check_largest_push", what="Your prediction", grade=grade,
        hints=(
            "Before computing the step: which quantity, per wrong class, is the push proportional to?",
            "In a linear model a wrong class j moves away by lr (||x||^2 + 1) r_j. Which r_j is largest, leaving out the label?",
            "Take softmax(z), set the label's entry aside, and pick the index of the largest remaining entry.",
        ),
        example=lambda: best, wrong=lambda: [(int(y), "confused pull and push"), (worst, FLIPPED_SIGN)],
        placeholder="a class index", kind="predict", call="check_largest_push(answer, z_step, y_step, hint=1)",
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
