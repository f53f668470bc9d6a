"""Exercise checkers for chapter 7 (the taxonomy: normalization, coupling, far points).

Each ``check_*(answer, hint=0)`` returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of
a recognised mistake, and with ``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import FLIPPED_SIGN, MISSING_FACTOR, WRONG_QUANTITY, WRONG_TYPE, Custom, Exercise, Feedback, Mistake

__all__ = [
    "EXERCISE_D",
    "EX4_SIGMA",
    "check_lse_coupling",
    "check_correntropy_far_gradient",
    "check_coupled_objectives",
    "check_correntropy_peak",
]

#: The distances used in exercise 1.
EXERCISE_D = (0.5, 1.0, 2.0)
#: Exercise 4: the kernel width whose strongest pull the reader finds.
EX4_SIGMA = math.sqrt(2.0)


def _r() -> np.ndarray:
    d = np.asarray(EXERCISE_D)
    return np.exp(-d) / np.exp(-d).sum()


#: Exercise 1: ``d g_0 / d d_1`` for the loss ``-L`` at ``d = EXERCISE_D``.
check_lse_coupling = Exercise(
    label="ex-ch07-coupling", name="check_lse_coupling", what="The coupling d g_0 / d d_1 of the loss -L",
    expected=lambda: _r()[0] * _r()[1],
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_r()[0] * _r()[1],
                "right size, wrong sign: that is the coupling for the objective L; the exercise asks about the loss -L."),
        Mistake(WRONG_QUANTITY, lambda: _r()[0] * (1 - _r()[0]), "that is a diagonal entry (d g_0 / d d_0 up to sign), not the coupling."),
        Mistake(WRONG_QUANTITY, lambda: -_r()[0] * (1 - _r()[0]), "that is a diagonal entry, not the coupling between 0 and 1."),
    ),
    hints=(
        "For the loss -L, g_j = r_j (Theorem 1). The coupling is how r_0 changes when d_1 moves.",
        "r_0 = exp(-d_0) / Z, and only Z depends on d_1: dZ/dd_1 = -exp(-d_1).",
        "d r_0 / d d_1 = r_0 r_1, with r the responsibilities of EXERCISE_D.",
    ),
    success="It is r_0 r_1 > 0: moving component 1 away raises component 0's share, and its gradient.",
    secrets=("r_0 r_1", "r[0] * r[1]", "0.181"),
)


def _corr_grad(d: float) -> float:
    return (2 * d / EX4_SIGMA**2) * math.exp(-(d**2) / EX4_SIGMA**2)


#: Exercise 2: the correntropy loss gradient at ``d = 4``, ``sigma = sqrt(2)``.
check_correntropy_far_gradient = Exercise(
    label="ex-ch07-far", name="check_correntropy_far_gradient", what="The correntropy gradient at d = 4, sigma = sqrt(2)",
    expected=lambda: _corr_grad(4.0),
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: math.exp(-16.0 / 2.0),
                "the factor from the chain rule on the exponent is missing."),
        Mistake(MISSING_FACTOR, lambda: 4.0 * math.exp(-16.0 / 2.0) / 2.0,
                "the derivative of d^2 is 2d: a factor 2 is missing."),
    ),
    hints=(
        "Differentiate 1 - exp(-d^2 / sigma^2) with respect to d, with the chain rule on the exponent.",
        "d/dd of -d^2 / sigma^2 is -2d / sigma^2.",
        "The gradient is (2d / sigma^2) exp(-d^2 / sigma^2); put in d = 4, sigma^2 = 2.",
    ),
    rtol=1e-4, success="About 1e-3: a point four kernel widths away barely moves its prototype.",
    secrets=("4 e^{-8}", "1.3e-3", "1.34e-03", "(2d / sigma^2)"),
)


def _grade_set(answer: Any) -> Feedback:
    what = "Your set of coupled objectives"
    if isinstance(answer, str):
        return Feedback(False, f'{what}: give a set of names, e.g. {{"sigmoid"}}, not a single string.', WRONG_TYPE)
    try:
        names = {str(a).strip().lower() for a in answer}
    except TypeError:
        return Feedback(False, f'{what}: give a set (or list) of objective names, e.g. {{"sigmoid"}}.', WRONG_TYPE)
    known = {"lse", "sigmoid", "correntropy"}
    if not names <= known:
        return Feedback(False, f"{what}: unknown names {sorted(names - known)}; use lse, sigmoid, correntropy.", WRONG_TYPE)
    if names == {"lse"}:
        return Feedback(True, f"{what}: right. Only the log-sum-exp couples components; the other two are sums of "
                              "per-component terms.")
    if "lse" not in names:
        return Feedback(False, f"{what}: one coupled objective is missing from your set.", "missed a coupled objective")
    return Feedback(False, f"{what}: your set includes an objective whose loss is a sum of one term per component.",
                    "included an uncoupled objective")


#: Exercise 3: the set of objectives whose gradient Jacobian has non-zero off-diagonal entries.
check_coupled_objectives = Custom(
    label="ex-ch07-which", name="check_coupled_objectives", what="Your set of coupled objectives", grade=_grade_set,
    hints=(
        "A loss of the form sum_j f(d_j) has gradient entries f'(d_j): does entry j depend on d_k?",
        "Which of the three losses has a partition function, a sum over components inside a log?",
        "Sigmoid and correntropy are sums of per-component terms; log-sum-exp is not.",
    ),
    example=lambda: {"lse"},
    wrong=lambda: [({"sigmoid"}, "missed a coupled objective"), ({"lse", "correntropy"}, "included an uncoupled objective"),
                   ("lse", WRONG_TYPE)],
    placeholder='a set of names such as {"sigmoid"}', kind="predict",
)

#: Exercise 4 (explore): the distance at which the correntropy loss ``1 - exp(-d^2/sigma^2)``, ``sigma = EX4_SIGMA``, pulls hardest (its gradient with respect to ``d`` is largest).
check_correntropy_peak = Exercise(
    label="ex-ch07-peak", name="check_correntropy_peak", what="The distance of the strongest correntropy pull",
    expected=lambda: EX4_SIGMA / math.sqrt(2.0),
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX4_SIGMA, "that is the kernel width sigma itself; the pull peaks closer in for this parameterization."),
        Mistake(MISSING_FACTOR, lambda: EX4_SIGMA**2, "that is sigma^2, a squared length, not a distance."),
    ),
    generic=False, rtol=1e-3,
    hints=(
        "Evaluate correntropy_gradient (or the formula of exercise 2) on a grid of distances and look for the maximum.",
        "Set the derivative of (2d / sigma^2) exp(-d^2 / sigma^2) with respect to d to zero.",
        "1 - 2 d^2 / sigma^2 = 0, so d = sigma / sqrt(2).",
    ),
    success="Beyond it, the farther the point, the weaker its pull: the opposite of log-sum-exp, whose pull grows with distance.",
    secrets=("sigma / sqrt(2)", "1 - 2 d^2"), kind="explore",
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_lse_coupling, check_correntropy_far_gradient, check_coupled_objectives, check_correntropy_peak)
