"""Exercise checkers for chapter 2, *The geometric substrate*."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validation import to_numpy
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, NOT_CLOSE, WRONG_QUANTITY
from . import WRONG_SHAPE, WRONG_TYPE, Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch02.toml.
TEXT = exercise_text("ch02")

__all__ = ["EXERCISE_MEAN", "EXERCISE_COV", "EXERCISE_D", "em_exercise_data", "check_principal_unit",
           "check_lse_gradient", "check_em_means", "check_symmetric_means"]

#: Exercise 1: the Gaussian whose largest-variance principal direction the reader turns into a unit.
EXERCISE_MEAN = np.array([1.0, -2.0])
EXERCISE_COV = np.array([[3.0, 1.0], [1.0, 2.0]])
#: Exercise 2: the distances at which the reader differentiates L = log sum_j exp(-d_j).
EXERCISE_D = np.array([0.5, 1.0, 3.0])


def em_exercise_data() -> tuple[np.ndarray, np.ndarray]:
    """Exercise 3's data: five 2-D points ``X`` (5, 2) and responsibilities ``resp`` (5, 2)."""
    X = np.array([[0.0, 0.0], [1.0, 0.5], [4.0, 4.0], [5.0, 3.5], [2.5, 2.0]])
    resp = np.array([[0.95, 0.05], [0.9, 0.1], [0.05, 0.95], [0.02, 0.98], [0.5, 0.5]])
    return X, resp


def _expected_unit() -> tuple[np.ndarray, float]:
    lam, V = np.linalg.eigh(EXERCISE_COV)
    W = V[:, -1] / np.sqrt(lam[-1])
    return W, float(-W @ EXERCISE_MEAN)


_PTS = np.random.default_rng(0).normal(size=(20, 2)) * 2 + EXERCISE_MEAN


def _unit_distance(W: np.ndarray, b: float) -> np.ndarray:
    return np.abs(_PTS @ W + b)


def _grade_unit(answer: Any) -> Feedback:
    what = "Your unit (W, b)"
    try:
        W, b = answer
        W = to_numpy(W).astype(np.float64).reshape(-1)
        b = float(np.asarray(to_numpy(b), dtype=np.float64).reshape(-1)[0])
    except Exception:  # the reader's answer may be anything
        return Feedback(False, f"{what}: expected a pair (W, b) with W of shape (2,) and a number b.", WRONG_TYPE)
    if W.shape != (2,):
        return Feedback(False, f"{what}: W must have shape (2,), got {W.shape}.", WRONG_SHAPE)
    We, be = _expected_unit()
    want = _unit_distance(We, be)
    if np.allclose(_unit_distance(W, b), want, rtol=1e-6, atol=1e-9):
        return Feedback(True, f"{what}: right, |W x + b| is the Mahalanobis distance along the main axis "
                              "(either sign works: |.| ignores it).")
    lam, V = np.linalg.eigh(EXERCISE_COV)
    cands = [
        (V[:, 0] / np.sqrt(lam[0]), "it measures along the direction of *smallest* variance.", WRONG_QUANTITY),
        (V[:, -1] * np.sqrt(lam[-1]), "the direction is right, the scale is inverted: the unit grows with the "
                                      "spread along the axis where a distance should shrink with it.", MISSING_FACTOR),
        (V[:, -1] / lam[-1], "the direction is right, the scale is off: the unit does not count standard "
                             "deviations along the axis.", MISSING_FACTOR),
        (V[:, -1], "the direction is right but the scale is missing.", MISSING_FACTOR),
    ]
    for Wc, msg, kind in cands:
        for s in (1.0, -1.0):
            if np.allclose(s * W, Wc, rtol=1e-6, atol=1e-9):
                return Feedback(False, f"{what}: {msg}", kind)
    if np.allclose(np.abs(W), np.abs(We), rtol=1e-6, atol=1e-9):
        s = 1.0 if np.allclose(W, We) else -1.0
        if np.isclose(b, -s * be, rtol=1e-6, atol=1e-9):
            return Feedback(False, f"{what}: W is right; the offset b has the wrong sign: the distance must be 0 at the mean.",
                            FLIPPED_SIGN)
        return Feedback(False, f"{what}: W is right; the offset b is not: the distance must be 0 at the mean.", NOT_CLOSE)
    return Feedback(False, f"{what}: |W x + b| is not the distance along the principal axis.", NOT_CLOSE)


def _unit_wrong() -> list[tuple[Any, str]]:
    lam, V = np.linalg.eigh(EXERCISE_COV)
    We, be = _expected_unit()
    return [
        ((V[:, 0] / np.sqrt(lam[0]), float(-(V[:, 0] / np.sqrt(lam[0])) @ EXERCISE_MEAN)), WRONG_QUANTITY),
        ((V[:, -1] * np.sqrt(lam[-1]), 0.0), MISSING_FACTOR),
        ((We, -be), FLIPPED_SIGN),
    ]


#: Exercise 1: ``answer = (W, b)`` with ``W`` of shape (2,) and scalar ``b`` such that ``|W x + b|`` is the Mahalanobis distance of ``x`` from ``N(EXERCISE_MEAN, EXERCISE_COV)`` along its principal direction of largest variance. Either sign of ``(W, b)`` is right.
check_principal_unit = Custom(
    **TEXT["ex-ch02-unit"],
    grade=_grade_unit,
    example=_expected_unit,
    wrong=_unit_wrong,
)


def _r() -> np.ndarray:
    e = np.exp(-EXERCISE_D)
    return e / e.sum()


#: Exercise 2: the gradient of the objective ``L = log sum_j exp(-d_j)`` (maximized) with respect to ``d`` at ``d = EXERCISE_D``, as an array of shape (3,).
check_lse_gradient = Exercise(
    **TEXT["ex-ch02-grad"],
    expected=lambda: -_r(),
    mistakes=(
        Mistake(FLIPPED_SIGN, _r, "right size, wrong sign: increasing a distance lowers L, so dL/dd is negative."),
        Mistake(NORMALIZATION, lambda: -np.exp(-EXERCISE_D),
                "the normalizer is missing: differentiating log Z divides by Z."),
        Mistake(NORMALIZATION, lambda: np.exp(-EXERCISE_D),
                "both the sign and the normalizer are off: d/dd_j of log Z is (1/Z) dZ/dd_j."),
    ),
)


def _means() -> np.ndarray:
    X, resp = em_exercise_data()
    return (resp.T @ X) / resp.sum(0)[:, None]


#: Exercise 3: the M-step means (shape (2, 2)) for :func:`em_exercise_data`.
check_em_means = Exercise(
    **TEXT["ex-ch02-mstep"],
    expected=_means,
    mistakes=(
        Mistake(NORMALIZATION, lambda: (lambda X, r: (r.T @ X) / X.shape[0])(*em_exercise_data()),
                "you divided by the number of points; each component's mean is normalized by its own total responsibility."),
        Mistake(NORMALIZATION, lambda: (lambda X, r: r.T @ X)(*em_exercise_data()),
                "these are weighted sums, not weighted averages: the normalization is missing."),
        Mistake(NORMALIZATION, lambda: (lambda X, r: (r.T @ X) / r.sum(0)[None, :])(*em_exercise_data()),
                "the normalizer is broadcast along the wrong axis: row j must be divided by component j's total."),
        Mistake(NORMALIZATION, lambda: (lambda X, r: (r.T @ X) / r.sum())(*em_exercise_data()),
                "you divided by the total responsibility of all components; use each component's own total."),
    ),
    rtol=1e-8,
)


def _sym_means() -> np.ndarray:
    X, _ = em_exercise_data()
    return np.tile(X.mean(0), (2, 1))


#: Exercise 4 (predict): the M-step means (2, 2) for the points of :func:`em_exercise_data` when every responsibility is 1/2.
check_symmetric_means = Exercise(
    **TEXT["ex-ch02-symmetric"],
    expected=_sym_means,
    mistakes=(
        Mistake(NORMALIZATION, lambda: np.tile(0.5 * em_exercise_data()[0].sum(0), (2, 1)),
                "with equal responsibilities the weights still need normalizing: each component's total is half the points."),
        Mistake(WRONG_QUANTITY, _means, "that is the M-step for the exercise's responsibilities, not for equal ones."),
    ),
    rtol=1e-8,
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_principal_unit, check_lse_gradient, check_em_means, check_symmetric_means)
