"""Exercise checkers for chapter 4, *The unsupervised regime*."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validation import to_numpy
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, NOT_FINITE
from . import WRONG_SHAPE, Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch04.toml.
TEXT = exercise_text("ch04")

__all__ = ["EXERCISE_D", "bridge_problem", "basin_data", "run_em_and_gd", "check_loss_gradient",
           "check_bridge_step", "check_different_optima"]

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


def _bridge_resp() -> np.ndarray:
    p = bridge_problem()
    X, w, m, v = p["X"], p["weights"], p["means"], p["variances"]
    logp = np.log(w) - 0.5 * (np.log(2 * np.pi * v) + (X - m.T) ** 2 / v)
    r = np.exp(logp - logp.max(1, keepdims=True))
    return r / r.sum(1, keepdims=True)


def _bridge_expected() -> np.ndarray:
    X = bridge_problem()["X"]
    r = _bridge_resp()
    return (r.T @ X) / r.sum(0)[:, None]


def _bridge_plain_step() -> np.ndarray:
    p = bridge_problem()
    r = _bridge_resp()
    g = (r * (p["X"] - p["means"].T)).sum(0) / p["variances"]
    return p["means"] + g[:, None]


def _loss_r() -> np.ndarray:
    return np.exp(-EXERCISE_D) / np.exp(-EXERCISE_D).sum()


#: Exercise 1: the gradient of the *loss* ``-log sum_j exp(-d_j)`` (minimized) with respect to ``d`` at ``d = EXERCISE_D``, shape (3,).
check_loss_gradient = Exercise(
    **TEXT["ex-ch04-sign"],
    expected=_loss_r,
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_loss_r(),
                "right size, wrong sign: that is dL/dd for the objective L; the loss is -L."),
        Mistake(NORMALIZATION, lambda: np.exp(-EXERCISE_D),
                "the normalizer is missing: the entries of this gradient sum to one."),
    ),
)

#: Exercise 2: the means (shape (2, 1)) after one gradient-ascent step on the summed log-likelihood, preconditioned by ``variance_j / N_j`` with step size 1.
check_bridge_step = Exercise(
    **TEXT["ex-ch04-bridge"],
    expected=_bridge_expected,
    mistakes=(
        Mistake(MISSING_FACTOR, _bridge_plain_step,
                "that is a plain gradient step with step size 1: the preconditioner variance_j / N_j is missing."),
        Mistake(MISSING_FACTOR, lambda: (lambda p, r: p["means"] + ((r * (p["X"] - p["means"].T)).sum(0)
                                                                     / p["variances"] * p["variances"] / len(p["X"]))[:, None])(
            bridge_problem(), _bridge_resp()),
                "you divided by the number of points; the preconditioner uses each component's N_j = sum_i r_ij."),
    ),
    rtol=1e-10,
    atol=1e-12,
)

# Exercise 3: two 1-D means of a mixture with unit variances and equal weights, fitted to three
# clusters; EM and gradient ascent from the reader's start.
_RNG = np.random.default_rng(0)
_BASIN_X = np.concatenate([_RNG.normal(-4.0, 0.6, 10), _RNG.normal(0.0, 0.6, 10), _RNG.normal(3.5, 0.6, 10)])
del _RNG
#: Exercise 3: gradient ascent's step size on the mean log-likelihood, and the iteration counts.
BASIN_LR, BASIN_EM_STEPS, BASIN_GD_STEPS = 1.0, 300, 2000


def basin_data() -> np.ndarray:
    """Exercise 3's data: 30 points in 1-D, three clusters (returned as a copy, shape (30,))."""
    return _BASIN_X.copy()


def _resp(m: np.ndarray) -> np.ndarray:
    lp = -0.5 * (_BASIN_X[None, :, None] - m[:, None, :]) ** 2
    lp -= lp.max(2, keepdims=True)
    r = np.exp(lp)
    return r / r.sum(2, keepdims=True)


def _mean_loglik(m: np.ndarray) -> np.ndarray:
    lp = -0.5 * (_BASIN_X[None, :, None] - m[:, None, :]) ** 2 - np.log(2.0) - 0.5 * np.log(2 * np.pi)
    mx = lp.max(2, keepdims=True)
    return (np.log(np.exp(lp - mx).sum(2)) + mx[..., 0]).mean(1)


def run_em_and_gd(starts: Any) -> dict[str, np.ndarray]:
    """Run EM and gradient ascent (step ``BASIN_LR`` on the mean log-likelihood, the objective)
    from each start in ``starts`` (shape (2,) or (B, 2): the two means) on :func:`basin_data`.

    Returns ``em``, ``gd`` (final means, sorted, (B, 2)), ``em_loglik``, ``gd_loglik`` (B,) and
    ``gd_grad`` (the largest gradient entry at gradient ascent's end, (B,)).
    """
    m0 = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if m0.ndim != 2 or m0.shape[1] != 2:
        raise ValueError(f"starts: expected shape (2,) or (B, 2), got {np.shape(starts)}")
    if not np.all(np.isfinite(m0)):
        raise ValueError("starts: expected finite numbers")
    m = m0.copy()
    for _ in range(BASIN_EM_STEPS):
        r = _resp(m)
        m = (r * _BASIN_X[None, :, None]).sum(1) / np.maximum(r.sum(1), 1e-300)
    em = m
    m = m0.copy()
    for _ in range(BASIN_GD_STEPS):
        r = _resp(m)
        m = m + BASIN_LR * (r * (_BASIN_X[None, :, None] - m[:, None, :])).mean(1)
    r = _resp(m)
    grad = np.abs((r * (_BASIN_X[None, :, None] - m[:, None, :])).mean(1)).max(1)
    return {"em": np.sort(em, 1), "gd": np.sort(m, 1), "em_loglik": _mean_loglik(em),
            "gd_loglik": _mean_loglik(m), "gd_grad": grad}


def _grade_optima(answer: Any) -> Feedback:
    what = "Your start"
    a = to_numpy(answer).astype(np.float64).reshape(-1)
    if a.shape != (2,):
        return Feedback(False, f"{what}: give the two starting means, shape (2,), got {a.size} numbers.", WRONG_SHAPE)
    if not np.all(np.isfinite(a)):
        return Feedback(False, f"{what}: the means must be finite.", NOT_FINITE)
    out = run_em_and_gd(a)
    em, gd = out["em"][0], out["gd"][0]
    if out["gd_grad"][0] > 1e-6:
        return Feedback(False, f"{what}: gradient ascent has not converged from there in {BASIN_GD_STEPS} steps; "
                               "pick a start that both methods finish from.", "not converged")
    if np.max(np.abs(em - gd)) > 0.5:
        return Feedback(True, f"{what}: right. EM ends at means {np.round(em, 2)} (mean log-likelihood "
                              f"{out['em_loglik'][0]:.4f}), gradient ascent at {np.round(gd, 2)} "
                              f"({out['gd_loglik'][0]:.4f}). Same objective, same start, different optima: "
                              "EM's large first step crossed a basin boundary that the small steps did not.")
    return Feedback(False, f"{what}: both methods reach the same optimum, means {np.round(em, 2)}. Most starts do.",
                    "same optimum")


#: Exercise 3 (explore): two starting means from which EM and gradient ascent, run on :func:`basin_data` by :func:`run_em_and_gd`, reach different optima.
check_different_optima = Custom(
    **TEXT["ex-ch04-basins"],
    grade=_grade_optima,
    example=lambda: np.array([-0.6, -0.8]),
    wrong=lambda: [(np.array([-4.0, 3.5]), "same optimum"), (np.array([1.0, 2.0, 3.0]), WRONG_SHAPE)],
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_loss_gradient, check_bridge_step, check_different_optima)
