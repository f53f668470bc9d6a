"""Exercise checkers for chapter 4, *The unsupervised regime*.

Each ``check_*`` takes the reader's answer and returns :class:`~iemlib.exercises.Feedback`
(never raises); with ``...`` it says there is no answer yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Feedback, _to_numpy, check_close

__all__ = ["EXERCISE_D", "bridge_problem", "check_loss_gradient", "check_bridge_step"]

#: Exercise 1: distances of one point to three components.
EXERCISE_D = np.array([2.0, 0.5, 1.5])


def bridge_problem() -> dict[str, np.ndarray]:
    """Exercise 2's mixture: 1-D data ``X`` (8, 1) and spherical parameters
    ``weights`` (2,), ``means`` (2, 1), ``variances`` (2,)."""
    X = np.array([[-2.1], [-1.7], [-1.2], [-0.4], [0.3], [1.1], [1.8], [2.6]])
    return {
        "X": X,
        "weights": np.array([0.4, 0.6]),
        "means": np.array([[-1.0], [1.0]]),
        "variances": np.array([0.8, 1.2]),
    }


def _bridge_expected() -> np.ndarray:
    p = bridge_problem()
    X, w, m, v = p["X"], p["weights"], p["means"], p["variances"]
    logp = np.log(w) - 0.5 * (np.log(2 * np.pi * v) + (X - m.T) ** 2 / v)
    r = np.exp(logp - logp.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return (r.T @ X) / r.sum(0)[:, None]


def check_loss_gradient(answer: Any) -> Feedback:
    """Exercise 1: the gradient of the *loss* ``-log sum_j exp(-d_j)`` (minimized) with respect
    to ``d`` at ``d = EXERCISE_D``, shape (3,)."""
    r = np.exp(-EXERCISE_D) / np.exp(-EXERCISE_D).sum()
    fb = check_close(answer, r, what="Your gradient of the loss",
                     hint="The loss is -L; Theorem 1 gives dL/dd_j = -r_j.",
                     success="It is +r: the loss's gradient is the responsibilities themselves.")
    if not fb and answer is not None and answer is not Ellipsis:
        try:
            if np.allclose(_to_numpy(answer).astype(np.float64), -r):
                return Feedback(False, "That is dL/dd for the objective L; the loss is -L, so the sign flips.")
        except (TypeError, ValueError):
            pass
    return fb


def check_bridge_step(answer: Any) -> Feedback:
    """Exercise 2: the means (shape (2, 1)) after one gradient-ascent step on the summed
    log-likelihood, preconditioned by ``variance_j / N_j`` with step size 1."""
    return check_close(answer, _bridge_expected(), what="Your preconditioned step",
                       hint="g_j = sum_i r_ij (x_i - mu_j) / variance_j; the step is mu_j + variance_j g_j / N_j.",
                       success="It lands on the EM mean update, as Xu & Jordan's bridge says.", rtol=1e-10, atol=1e-12)
