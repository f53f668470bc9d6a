"""Checkers for chapter 3 (Theorem 1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, WRONG_QUANTITY, Exercise, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch03.toml.
TEXT = exercise_text("ch03")

__all__ = ["EX1_D", "EX2_D", "EX2_Y", "EX3_D", "EX3_TAU", "check_loss_gradient",
           "check_cross_entropy_gradient", "check_temperature_gradient", "check_zero_temperature_limit"]

#: Exercise 1: distances at which the reader differentiates the loss -L.
EX1_D = (0.0, float(np.log(2.0)), float(np.log(4.0)))
#: Exercise 2: distances and label for the cross-entropy loss.
EX2_D, EX2_Y = (1.0, 0.0, 2.0), 0
#: Exercise 3: distances and temperature for L_tau = tau * log sum_j exp(-d_j / tau).
EX3_D, EX3_TAU = (1.0, 2.0, 3.0), 0.5


def _softmax_neg(d: Any) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    e = np.exp(-(d - d.min()))
    return e / e.sum()


#: Exercise 1: the gradient of the loss ``-L`` with respect to ``d`` at ``EX1_D``.
check_loss_gradient = Exercise(
    **TEXT["ex-ch03-loss-gradient"],
    expected=lambda: _softmax_neg(EX1_D),
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_softmax_neg(EX1_D),
                "right size, wrong sign: that is the gradient of the objective L, not of the loss -L."),
        Mistake(NORMALIZATION, lambda: np.exp(-np.asarray(EX1_D)),
                "the normalizer is missing: the derivative of a log divides by its argument."),
    ),
)


def _ce_expected() -> np.ndarray:
    return np.eye(len(EX2_D))[EX2_Y] - _softmax_neg(EX2_D)


#: Exercise 2: the gradient of the cross-entropy loss ``d_y + log sum_k exp(-d_k)`` with respect to the distances ``d`` (not the logits) at ``EX2_D``, label ``EX2_Y``.
check_cross_entropy_gradient = Exercise(
    **TEXT["ex-ch03-cross-entropy"],
    expected=_ce_expected,
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_ce_expected(),
                "that is the gradient with respect to the logits z = -d (the paper's §4.3 formula); the chain rule "
                "through z = -d flips it."),
        Mistake(WRONG_QUANTITY, lambda: -_softmax_neg(EX2_D),
                "the label term is missing: the loss has d_y in front of the log-sum-exp."),
        Mistake(WRONG_QUANTITY, lambda: _softmax_neg(EX2_D),
                "that is the gradient of the log-sum-exp part alone, with its sign flipped; the label term d_y is missing."),
    ),
)


def _temp_expected() -> np.ndarray:
    return -_softmax_neg(np.asarray(EX3_D) / EX3_TAU)


#: Exercise 3: the gradient of ``L_tau = tau log sum_j exp(-d_j / tau)`` (maximized) with respect to ``d`` at ``EX3_D``, ``tau = EX3_TAU``.
check_temperature_gradient = Exercise(
    **TEXT["ex-ch03-temperature"],
    expected=_temp_expected,
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: _temp_expected() / EX3_TAU,
                "an extra 1/tau: the tau in front of the log cancels the 1/tau of the chain rule."),
        Mistake(MISSING_FACTOR, lambda: _temp_expected() * EX3_TAU,
                "an extra factor tau: the chain rule through d/tau gives a 1/tau that cancels it."),
        Mistake(WRONG_QUANTITY, lambda: -_softmax_neg(EX3_D),
                "these are the responsibilities at temperature 1; the temperature also changes which r appears."),
        Mistake(FLIPPED_SIGN, lambda: -_temp_expected(), "right size, wrong sign: L_tau is an objective (maximized)."),
    ),
)


def _limit() -> np.ndarray:
    d = np.asarray(EX3_D, dtype=np.float64)
    return -(d == d.min()).astype(np.float64)


#: Exercise 4 (predict): the limit of ``dL_tau/dd`` at ``EX3_D`` as ``tau -> 0``, shape (3,).
check_zero_temperature_limit = Exercise(
    **TEXT["ex-ch03-zero-temperature"],
    expected=_limit,
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_limit(), "right pattern, wrong sign: L_tau is maximized; moving a component away lowers it."),
        Mistake(WRONG_QUANTITY, lambda: -np.ones(3) / 3, "that is the limit tau -> infinity (no preference), not tau -> 0."),
        Mistake(WRONG_QUANTITY, lambda: np.zeros(3), "the gradient does not vanish: the responsibilities always sum to one."),
    ),
    rtol=0.0,
    atol=1e-6,
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_loss_gradient, check_cross_entropy_gradient, check_temperature_gradient, check_zero_temperature_limit)
