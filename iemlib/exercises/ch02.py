"""Exercise checkers for chapter 2, *The geometric substrate*.

Each ``check_*`` takes the reader's answer and returns :class:`~iemlib.exercises.Feedback`
(never raises); with ``...`` it says there is no answer yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Feedback, _to_numpy, check_close

__all__ = [
    "EXERCISE_MEAN",
    "EXERCISE_COV",
    "EXERCISE_D",
    "em_exercise_data",
    "check_principal_unit",
    "check_lse_gradient",
    "check_em_means",
]

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
    v, l = V[:, -1], lam[-1]
    W = v / np.sqrt(l)
    return W, float(-W @ EXERCISE_MEAN)


def check_principal_unit(answer: Any) -> Feedback:
    """Exercise 1: ``answer = (W, b)`` with ``W`` of shape (2,) and scalar ``b`` such that
    ``|W x + b|`` is the Mahalanobis distance of ``x`` from ``N(EXERCISE_MEAN, EXERCISE_COV)``
    along its principal direction of largest variance. Either sign of ``(W, b)`` is right."""
    what = "Your unit (W, b)"
    hint = ("Take the eigenvector v of the covariance with the largest eigenvalue lambda; "
            "W = v / sqrt(lambda) and b = -W @ mean.")
    if answer is None or answer is Ellipsis:
        return Feedback(False, f"{what}: no answer yet — replace the `...` with your code. {hint}")
    try:
        W, b = answer
        W = _to_numpy(W).astype(np.float64).reshape(-1)
        b = float(np.asarray(_to_numpy(b), dtype=np.float64).reshape(-1)[0])
    except Exception:  # the reader's answer may be anything
        return Feedback(False, f"{what}: expected a pair (W, b) with W of shape (2,) and a number b. {hint}")
    if W.shape != (2,):
        return Feedback(False, f"{what}: W must have shape (2,), got {W.shape}. {hint}")
    We, be = _expected_unit()
    pts = np.random.default_rng(0).normal(size=(20, 2)) * 2 + EXERCISE_MEAN
    got, want = np.abs(pts @ W + b), np.abs(pts @ We + be)
    if np.allclose(got, want, rtol=1e-6, atol=1e-9):
        return Feedback(True, f"{what} gives the Mahalanobis distance along the main axis (either sign works: |.| ignores it).")
    lam, V = np.linalg.eigh(EXERCISE_COV)
    if np.allclose(np.abs(W), np.abs(V[:, 0] / np.sqrt(lam[0])), rtol=1e-6):
        return Feedback(False, f"{what} uses the direction of smallest variance. {hint}")
    return Feedback(False, f"{what}: |W x + b| differs from the expected distance by up to {np.max(np.abs(got - want)):.3g}. {hint}")


def check_lse_gradient(answer: Any) -> Feedback:
    """Exercise 2: the gradient of the objective ``L = log sum_j exp(-d_j)`` (maximized) with
    respect to ``d`` at ``d = EXERCISE_D``, as an array of shape (3,)."""
    r = np.exp(-EXERCISE_D) / np.exp(-EXERCISE_D).sum()
    fb = check_close(answer, -r, what="Your gradient dL/dd", hint="Differentiate log Z with Z = sum_k exp(-d_k); mind the sign.",
                     success="It is minus the responsibilities: Theorem 1.")
    if not fb and answer is not None and answer is not Ellipsis:
        try:
            if np.allclose(_to_numpy(answer).astype(np.float64), r):
                return Feedback(False, "Your gradient dL/dd has the wrong sign: increasing a distance lowers L.")
        except (TypeError, ValueError):
            pass
    return fb


def check_em_means(answer: Any) -> Feedback:
    """Exercise 3: the M-step means (shape (2, 2)) for :func:`em_exercise_data`."""
    X, resp = em_exercise_data()
    expected = (resp.T @ X) / resp.sum(0)[:, None]
    return check_close(answer, expected, what="Your M-step means",
                       hint="Each mean is the responsibility-weighted average of the points: divide by N_j = sum_i r_ij, not by n.",
                       rtol=1e-8)
