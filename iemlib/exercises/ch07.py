"""Exercise checkers for chapter 7 (the taxonomy: normalization, coupling, far points)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import Feedback, check_close, check_true

__all__ = [
    "EXERCISE_D",
    "check_lse_coupling",
    "check_correntropy_far_gradient",
    "check_coupled_objectives",
]

#: The distances used in exercise 1.
EXERCISE_D = (0.5, 1.0, 2.0)


def check_lse_coupling(answer: Any) -> Feedback:
    """Exercise 1: ``d g_0 / d d_1`` for the loss ``-L`` at ``d = EXERCISE_D``."""
    d = np.asarray(EXERCISE_D)
    r = np.exp(-d) / np.exp(-d).sum()
    return check_close(
        answer,
        r[0] * r[1],
        what="The coupling d g_0 / d d_1 of the loss -L",
        hint="The loss gradient is g_j = r_j; differentiate r_0 with respect to d_1 (a softmax of -d).",
        success="It is r_0 r_1 > 0: moving component 1 away raises component 0's share, and its gradient.",
    )


def check_correntropy_far_gradient(answer: Any) -> Feedback:
    """Exercise 2: the correntropy loss gradient at ``d = 4``, ``sigma = sqrt(2)``."""
    d, s2 = 4.0, 2.0
    return check_close(
        answer,
        (2 * d / s2) * math.exp(-(d**2) / s2),
        what="The correntropy gradient at d = 4, sigma = sqrt(2)",
        hint="Differentiate 1 - exp(-d^2 / sigma^2) with respect to d (chain rule on the exponent).",
        rtol=1e-4,
        success="About 1e-3: a point four kernel widths away barely moves its prototype.",
    )


def check_coupled_objectives(answer: Any) -> Feedback:
    """Exercise 3: the set of objectives whose gradient Jacobian has non-zero off-diagonal entries."""
    if answer is None or answer is Ellipsis:
        return Feedback(False, "no answer yet — replace the `...` with a set of names such as {\"lse\"}.")
    try:
        names = {str(a).lower() for a in answer}
    except TypeError:
        return Feedback(False, "give a set (or list) of objective names, e.g. {\"sigmoid\"}.")
    return check_true(
        names == {"lse"},
        what="Your set of coupled objectives",
        hint="Which of the three losses has a partition function, a sum over components inside a log?",
        success="Only the log-sum-exp couples components; the other two are sums of per-component terms.",
    )
