"""Exercise checkers for chapter 9 (limits and failure modes).

Each ``check_*(answer, hint=0)`` returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of
a recognised mistake, and with ``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import FLIPPED_SIGN, MISSING_FACTOR, WRONG_QUANTITY, Exercise, Feedback, Mistake

__all__ = [
    "COLLAPSE_SETTING",
    "EXERCISE_LOGITS",
    "EX4_TARGET",
    "check_objective_bound",
    "check_collapse_rate",
    "check_scaled_confidence",
    "check_confidence_scale",
]

#: Exercise 2: learning rate, dimension and number of points of the single-point collapse.
COLLAPSE_SETTING = {"lr": 0.5, "D": 2, "N": 421}
#: Exercise 3: logits of one input, to be multiplied by 10.
EXERCISE_LOGITS = (2.0, 1.0, 0.5)
#: Exercise 4: the confidence the reader's scale factor must reach.
EX4_TARGET = 0.999


def _max_softmax(z: np.ndarray) -> float:
    p = np.exp(z - z.max())
    return float((p / p.sum()).max())


#: Exercise 1: the supremum of ``mean_i log sum_j exp(-d_ij)`` over scales, ``K = 3``, no log-det.
check_objective_bound = Exercise(
    label="ex-ch09-bound", name="check_objective_bound",
    what="The upper bound of the objective without the volume term (K = 3)",
    expected=lambda: math.log(3.0),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.0, "0 would be the bound with a single component; here three terms add up inside the log."),
        Mistake(WRONG_QUANTITY, lambda: 3.0, "that bounds the sum inside the log; the objective is its logarithm."),
        Mistake(FLIPPED_SIGN, lambda: -math.log(3.0), "the sign is flipped: the objective is log of a sum that can reach K."),
    ),
    generic=False,
    hints=(
        "Every distance is >= 0. How large can each exp(-d_ij) be?",
        "Each exp(-d_ij) <= 1, with equality only at d_ij = 0. What is the sum of K such terms at most?",
        "The bound is log K, approached as every distance goes to 0 (all scales grow without bound).",
    ),
    success="log K, reached only as every distance goes to 0: the scales must grow without bound.",
    secrets=("log K", "1.0986", "log 3"),
)

#: Exercise 2: per-step decrease of ``log sigma`` of a component alone on one point.
check_collapse_rate = Exercise(
    label="ex-ch09-rate", name="check_collapse_rate", what="The per-step decrease of log sigma",
    expected=lambda: COLLAPSE_SETTING["lr"] * COLLAPSE_SETTING["D"] / COLLAPSE_SETTING["N"],
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["lr"] * COLLAPSE_SETTING["D"],
                "the mean over the N points is missing: one point's term carries a 1/N."),
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["lr"] / COLLAPSE_SETTING["N"],
                "the dimension is missing: the log-determinant of a spherical scale counts every dimension."),
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["D"] / COLLAPSE_SETTING["N"], "the learning rate is missing."),
    ),
    rtol=1e-6,
    hints=(
        "Write the isolated point's term in the mean loss with the volume term, as a function of log a (a = 1/sigma).",
        "At the centre the distance term is 0, so the term is -(1/N) D log a for the component with r = 1.",
        "Its gradient with respect to log a is -D/N; one step changes log sigma by -lr D / N.",
    ),
    success="Constant: log sigma falls linearly, sigma geometrically, and nothing in the gradient stops it.",
    secrets=("lr * D / N", "0.002375", "0.00237"),
)

#: Exercise 3: ``max softmax(10 z)`` for ``z = EXERCISE_LOGITS``.
check_scaled_confidence = Exercise(
    label="ex-ch09-conf", name="check_scaled_confidence", what="The max-softmax confidence of 10 z",
    expected=lambda: _max_softmax(10.0 * np.asarray(EXERCISE_LOGITS)),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: _max_softmax(np.asarray(EXERCISE_LOGITS)),
                "that is the confidence of the unscaled logits."),
        Mistake(WRONG_QUANTITY, lambda: _max_softmax(np.asarray(EXERCISE_LOGITS) / 10.0),
                "you divided the logits by 10 instead of multiplying."),
    ),
    generic=False, rtol=1e-9,
    hints=(
        "Multiply the logits by 10, then take the softmax and its largest entry.",
        "Subtract the largest scaled logit before exponentiating, so nothing overflows.",
        "The largest softmax output is 1 / (1 + e^{-10} + e^{-15}).",
    ),
    success="Above 0.9999: scaling an input of a linear model scales its logits, and softmax grows as sure as you like.",
    secrets=("0.99995", "1 / (1 + e^{-10}"),
)


def _smallest_scale() -> float:
    z = np.asarray(EXERCISE_LOGITS)
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _max_softmax(mid * z) < EX4_TARGET else (lo, mid)
    return hi


#: Exercise 4 (explore): the smallest ``c > 0`` with ``max softmax(c z) >= EX4_TARGET`` for ``z = EXERCISE_LOGITS`` (to 0.1 %).
check_confidence_scale = Exercise(
    label="ex-ch09-scale", name="check_confidence_scale",
    what="The smallest scale factor that reaches confidence 0.999",
    expected=_smallest_scale,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 10.0, "10 overshoots: it is the factor of the previous exercise."),
    ),
    generic=False, rtol=1e-3,
    hints=(
        "Try a few factors c and print the max-softmax of c * EXERCISE_LOGITS: where does it cross 0.999?",
        "The confidence rises monotonically with c > 0, so a bisection (or a fine grid) finds the crossing.",
        "Solve 1 / (1 + e^{-c} + e^{-1.5 c}) = 0.999 for c, numerically.",
    ),
    success="A modest factor is enough: confidence on an amplified input says nothing about how familiar it is.",
    secrets=(), kind="explore",
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_objective_bound, check_collapse_rate, check_scaled_confidence, check_confidence_scale)
