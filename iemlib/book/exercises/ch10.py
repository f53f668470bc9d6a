"""Checkers for chapter 10, beyond the paper: the open directions of §7.3.

Gradients here are of a *loss* (minimized) with respect to the **distances** ``d = -z`` unless a
checker says otherwise. The exercises' data are module constants, so the chapter and the tests
use the same numbers. Each ``check_*(answer, ..., hint=0)`` returns
:class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of a recognised mistake, and with
``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iemlib.objectives import responsibilities
from ..._validation import to_numpy
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, WRONG_QUANTITY, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch10.toml.
TEXT = exercise_text("ch10")

__all__ = ["EX1_D", "EX1_Q", "EX3_D", "EX3_TAU", "EX4_R", "check_soft_gradient", "check_noise_as_smoothing",
           "check_reject_responsibility", "check_effective_components", "check_largest_rejecting_tau"]

#: Exercise 10.1: distances of one sample and a soft target (label smoothing, eps = 0.2, K = 4, y = 1).
EX1_D = np.array([1.2, 0.3, 2.0, 0.9])
EX1_Q = np.array([0.05, 0.85, 0.05, 0.05])
#: Exercise 10.3: three inputs' distances to K = 3 known classes, and the reject distance tau.
EX3_D = np.array([[0.5, 3.0, 4.0], [2.5, 2.6, 2.4], [9.0, 8.0, 12.0]])
EX3_TAU = 3.0
#: Exercise 10.4: responsibilities of four points over three components.
EX4_R = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1]])


def _softmax_neg(d: np.ndarray) -> np.ndarray:
    return responsibilities(d)


def _soft_exercise(d: Any, q: Any) -> Exercise:
    d_ = to_numpy(d).astype(np.float64)
    q_ = to_numpy(q).astype(np.float64)
    expected = q_ - _softmax_neg(d_)
    return Exercise(
        **TEXT["ex-ch10-soft"],
        expected=lambda: expected,
        mistakes=(
            Mistake(FLIPPED_SIGN, lambda: -expected,
                    "you have the opposite sign, which is the gradient with respect to the logits z = -d."),
            Mistake(WRONG_QUANTITY, lambda: np.eye(len(q_))[int(np.argmax(q_))] - _softmax_neg(d_),
                    "that uses the hard label; the target here is the smoothed q."),
        ),
    )


_EX1 = _soft_exercise(EX1_D, EX1_Q)


def _noise_exercise(rho: float, K: int) -> Exercise:
    return Exercise(
        **TEXT["ex-ch10-noise"],
        expected=lambda: float(rho) * K / (K - 1),
        mistakes=(
            Mistake(WRONG_QUANTITY, lambda: float(rho),
                    "eps = rho would give the labelled class more than 1 - rho: smoothing gives eps / K back to "
                    "the true class itself."),
            Mistake(MISSING_FACTOR, lambda: float(rho) * (K - 1) / K, "the ratio is inverted: eps must be larger than rho."),
        ),
        generic=False,
    )


_EX2 = _noise_exercise(0.2, 10)


def _reject_expected(d: np.ndarray, t: float) -> np.ndarray:
    m = np.minimum(d.min(1), t)
    num = np.exp(-(t - m))
    return num / (num + np.exp(-(d - m[:, None])).sum(1))


def _reject_exercise(d_known: Any, tau: float) -> Exercise:
    d = to_numpy(d_known).astype(np.float64)
    t = float(tau)
    expected = _reject_expected(d, t)
    return Exercise(
        **TEXT["ex-ch10-reject"],
        expected=lambda: expected,
        mistakes=(
            Mistake(NORMALIZATION, lambda: np.exp(-t) * np.ones(len(d)),
                    "exp(-d0) alone is not a responsibility: normalize against the known classes."),
            Mistake(WRONG_QUANTITY, lambda: 1.0 - expected, "that is the total responsibility of the known classes."),
            Mistake(FLIPPED_SIGN, lambda: _reject_expected(-d, -t), "the signs of the distances are flipped: a larger distance gives a smaller share."),
        ),
        generic=False,
    )


_EX3 = _reject_exercise(EX3_D, EX3_TAU)


def _entropy_rows(rr: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(rr > 0, rr * np.log(np.where(rr > 0, rr, 1.0)), 0.0), axis=1)


def _effective_exercise(r: Any) -> Exercise:
    rr = to_numpy(r).astype(np.float64)
    H = _entropy_rows(rr)
    return Exercise(
        **TEXT["ex-ch10-effective"],
        expected=lambda: np.exp(H),
        mistakes=(
            Mistake(WRONG_QUANTITY, lambda: H, "that is the entropy H_i itself; the effective number is its exponential."),
            Mistake("wrong units", lambda: np.exp(H / np.log(2.0)), "that mixes bases: the entropy in bits needs 2**H, not exp(H)."),
        ),
        generic=False,
    )


_EX4 = _effective_exercise(EX4_R)


def _largest_tau() -> float:
    d = EX3_D[1]
    return float(-(-d.min() + np.log(np.exp(-(d - d.min())).sum())))


_EX5 = Exercise(
    **TEXT["ex-ch10-tau"],
    expected=_largest_tau,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: float(EX3_D[1].min()),
                "that is the distance to the nearest class, a property of one class alone, not the boundary where the reject component takes over."),
        Mistake(WRONG_QUANTITY, lambda: float(EX3_D[1].mean()), "the mean distance is not what the responsibilities compare."),
    ),
    rtol=1e-6,
)


def check_soft_gradient(answer: Any, d: Any = EX1_D, q: Any = EX1_Q, hint: int = 0) -> Feedback:
    """Exercise 10.1: the gradient of the soft cross-entropy loss with respect to ``d``."""
    return _soft_exercise(d, q).check(answer, hint)


def check_noise_as_smoothing(answer: Any, rho: float = 0.2, n_classes: int = 10, hint: int = 0) -> Feedback:
    """Exercise 10.2: the smoothing ``eps`` whose target equals symmetric label noise of rate ``rho``."""
    return _noise_exercise(rho, int(n_classes)).check(answer, hint)


def check_reject_responsibility(answer: Any, d_known: Any = EX3_D, tau: float = EX3_TAU, hint: int = 0) -> Feedback:
    """Exercise 10.3: the reject component's responsibility for each row of ``d_known``."""
    return _reject_exercise(d_known, tau).check(answer, hint)


def check_effective_components(answer: Any, r: Any = EX4_R, hint: int = 0) -> Feedback:
    """Exercise 10.4: the effective number of components ``exp(H_i)`` of each row of ``r``."""
    return _effective_exercise(r).check(answer, hint)


def check_largest_rejecting_tau(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 10.5 (explore): the largest reject distance ``tau`` at which the second input of
    ``EX3_D`` is still rejected (``r_0 > 1/2``)."""
    return _EX5.check(answer, hint)

#: This chapter's exercises, in the order the chapter sets them.

#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (_EX1, _EX2, _EX3, _EX4, _EX5)
