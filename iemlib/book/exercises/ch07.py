"""Exercise checkers for chapter 7 (the taxonomy: normalization, coupling, far points)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, WRONG_QUANTITY, WRONG_TYPE, Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch07.toml.
TEXT = exercise_text("ch07")

__all__ = ["EXERCISE_D", "EX4_SIGMA", "check_lse_coupling", "check_correntropy_far_gradient",
           "check_coupled_objectives", "check_correntropy_peak"]

#: The distances used in exercise 1.
EXERCISE_D = (0.5, 1.0, 2.0)
#: Exercise 4: the kernel width whose strongest pull the reader finds.
EX4_SIGMA = math.sqrt(2.0)


def _r() -> np.ndarray:
    d = np.asarray(EXERCISE_D)
    return np.exp(-d) / np.exp(-d).sum()


#: Exercise 1: ``d g_0 / d d_1`` for the loss ``-L`` at ``d = EXERCISE_D``.
check_lse_coupling = Exercise(
    **TEXT["ex-ch07-coupling"],
    expected=lambda: _r()[0] * _r()[1],
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_r()[0] * _r()[1],
                "right size, wrong sign: that is the coupling for the objective L; the exercise asks about the loss -L."),
        Mistake(WRONG_QUANTITY, lambda: _r()[0] * (1 - _r()[0]), "that is a diagonal entry (d g_0 / d d_0 up to sign), not the coupling."),
        Mistake(WRONG_QUANTITY, lambda: -_r()[0] * (1 - _r()[0]), "that is a diagonal entry, not the coupling between 0 and 1."),
    ),
)


def _corr_grad(d: float) -> float:
    return (2 * d / EX4_SIGMA**2) * math.exp(-(d**2) / EX4_SIGMA**2)


#: Exercise 2: the correntropy loss gradient at ``d = 4``, ``sigma = sqrt(2)``.
check_correntropy_far_gradient = Exercise(
    **TEXT["ex-ch07-far"],
    expected=lambda: _corr_grad(4.0),
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: math.exp(-16.0 / 2.0),
                "the factor from the chain rule on the exponent is missing."),
        Mistake(MISSING_FACTOR, lambda: 4.0 * math.exp(-16.0 / 2.0) / 2.0,
                "the derivative of d^2 is 2d: a factor 2 is missing."),
    ),
    rtol=1e-4,
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
        return Feedback(True, f"{what}: right. Of these three, log-sum-exp alone couples the components; the other "
                              "two are sums of per-component terms. Any nonlinear function of Z couples them too; "
                              "the log is what makes the weights sum to one.")
    if "lse" not in names:
        return Feedback(False, f"{what}: one coupled objective is missing from your set.", "missed a coupled objective")
    return Feedback(False, f"{what}: your set includes an objective whose components do not interact: its "
                           "Jacobian has no off-diagonal entries.", "included an uncoupled objective")


#: Exercise 3: the set of objectives whose gradient Jacobian has non-zero off-diagonal entries.
check_coupled_objectives = Custom(
    **TEXT["ex-ch07-which"],
    grade=_grade_set,
    example=lambda: {"lse"},
    wrong=lambda: [({"sigmoid"}, "missed a coupled objective"), ({"lse", "correntropy"}, "included an uncoupled objective"),
                   ("lse", WRONG_TYPE)],
)

#: Exercise 4 (explore): the distance at which the correntropy loss ``1 - exp(-d^2/sigma^2)``, ``sigma = EX4_SIGMA``, pulls hardest (its gradient with respect to ``d`` is largest).
check_correntropy_peak = Exercise(
    **TEXT["ex-ch07-peak"],
    expected=lambda: EX4_SIGMA / math.sqrt(2.0),
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: EX4_SIGMA, "that is the kernel width sigma itself, a parameter of the loss, not the distance where its pull peaks."),
        Mistake(MISSING_FACTOR, lambda: EX4_SIGMA**2, "that is sigma^2, a squared length, not a distance."),
    ),
    generic=False,
    rtol=1e-3,
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_lse_coupling, check_correntropy_far_gradient, check_coupled_objectives, check_correntropy_peak)
