"""Exercise checkers for chapter 9 (limits and failure modes)."""

from __future__ import annotations

import math

import numpy as np

from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, WRONG_QUANTITY, Exercise, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch09.toml.
TEXT = exercise_text("ch09")

__all__ = ["COLLAPSE_SETTING", "EXERCISE_LOGITS", "EX4_TARGET", "check_objective_bound",
           "check_collapse_rate", "check_scaled_confidence", "check_confidence_scale"]

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
    **TEXT["ex-ch09-bound"],
    expected=lambda: math.log(3.0),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.0, "0 would be the bound with a single component; here three terms add up inside the log."),
        Mistake(WRONG_QUANTITY, lambda: 3.0, "that bounds the sum inside the log; the objective is its logarithm."),
        Mistake(FLIPPED_SIGN, lambda: -math.log(3.0), "the sign is flipped: the objective is log of a sum that can reach K."),
    ),
    generic=False,
)

#: Exercise 2: per-step decrease of ``log sigma`` of a component alone on one point.
check_collapse_rate = Exercise(
    **TEXT["ex-ch09-rate"],
    expected=lambda: COLLAPSE_SETTING["lr"] * COLLAPSE_SETTING["D"] / COLLAPSE_SETTING["N"],
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["lr"] * COLLAPSE_SETTING["D"],
                "the mean over the N points is missing: one point's term carries a 1/N."),
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["lr"] / COLLAPSE_SETTING["N"],
                "the dimension is missing: the log-determinant of a spherical scale counts every dimension."),
        Mistake(MISSING_FACTOR, lambda: COLLAPSE_SETTING["D"] / COLLAPSE_SETTING["N"], "the learning rate is missing."),
    ),
    rtol=1e-6,
)

#: Exercise 3: ``max softmax(10 z)`` for ``z = EXERCISE_LOGITS``.
check_scaled_confidence = Exercise(
    **TEXT["ex-ch09-conf"],
    expected=lambda: _max_softmax(10.0 * np.asarray(EXERCISE_LOGITS)),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: _max_softmax(np.asarray(EXERCISE_LOGITS)),
                "that is the confidence of the unscaled logits."),
        Mistake(WRONG_QUANTITY, lambda: _max_softmax(np.asarray(EXERCISE_LOGITS) / 10.0),
                "you divided the logits by 10 instead of multiplying."),
    ),
    generic=False,
    rtol=1e-9,
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
    **TEXT["ex-ch09-scale"],
    expected=_smallest_scale,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 10.0, "that is the factor of the previous exercise, chosen there, not the smallest one that reaches the target confidence."),
    ),
    generic=False,
    rtol=1e-3,
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_objective_bound, check_collapse_rate, check_scaled_confidence, check_confidence_scale)
