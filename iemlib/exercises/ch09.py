"""Exercise checkers for chapter 9 (limits and failure modes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import Feedback, check_close

__all__ = [
    "COLLAPSE_SETTING",
    "EXERCISE_LOGITS",
    "check_objective_bound",
    "check_collapse_rate",
    "check_scaled_confidence",
]

#: Exercise 2: learning rate, dimension and number of points of the single-point collapse.
COLLAPSE_SETTING = {"lr": 0.5, "D": 2, "N": 421}
#: Exercise 3: logits of one input, to be multiplied by 10.
EXERCISE_LOGITS = (2.0, 1.0, 0.5)


def check_objective_bound(answer: Any) -> Feedback:
    """Exercise 1: the supremum of ``mean_i log sum_j exp(-d_ij)`` over scales, ``K = 3``, no log-det."""
    return check_close(
        answer,
        math.log(3.0),
        what="The upper bound of the objective without the volume term (K = 3)",
        hint="Every distance is >= 0, so every exp(-d) is <= 1; what is the sum of K such terms at most?",
        success="log K, reached only as every distance goes to 0: the scales must grow without bound.",
    )


def check_collapse_rate(answer: Any) -> Feedback:
    """Exercise 2: per-step decrease of ``log sigma`` of a component alone on one point."""
    s = COLLAPSE_SETTING
    return check_close(
        answer,
        s["lr"] * s["D"] / s["N"],
        what="The per-step decrease of log sigma",
        hint=(
            "With the log-det term, that point's loss is -D log a + (a term that is 0 at the centre) "
            "divided by N in the mean; its gradient with respect to log a is -D / N times r = 1."
        ),
        rtol=1e-6,
        success="Constant: log sigma falls linearly, sigma geometrically, and nothing in the gradient stops it.",
    )


def check_scaled_confidence(answer: Any) -> Feedback:
    """Exercise 3: ``max softmax(10 z)`` for ``z = EXERCISE_LOGITS``."""
    z = 10.0 * np.asarray(EXERCISE_LOGITS)
    p = np.exp(z - z.max())
    return check_close(
        answer,
        (p / p.sum()).max(),
        what="The max-softmax confidence of 10 z",
        hint="Multiply the logits by 10, subtract the largest, exponentiate and normalize.",
        rtol=1e-9,
        success="Above 0.9999: scaling an input of a linear model scales its logits, and softmax grows as sure as you like.",
    )
