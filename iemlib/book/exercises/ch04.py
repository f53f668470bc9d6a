"""Exercise checkers for chapter 4, *The unsupervised regime*."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validation import to_numpy
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NOT_FINITE, WRONG_QUANTITY
from . import WRONG_SHAPE, Custom, Exercise, Feedback, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch04.toml.
TEXT = exercise_text("ch04")

__all__ = ["rate_problem", "bridge_problem", "basin_data", "run_em_and_gd", "check_em_rate",
           "check_bridge_step", "check_different_optima", "SADDLE"]

#: The kind of mistake of exercise 3 when a start ends at a stationary point that is not an optimum.
SADDLE = "a saddle, not an optimum"


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


def _bridge_resp(log_norm: str = "right") -> np.ndarray:
    """Responsibilities of the bridge problem; ``log_norm`` says how the density is normalized:
    ``"right"``, ``"none"`` (the factor 1/sqrt(2 pi variance) left out) or ``"variance"`` (divided
    by the variance instead of its square root)."""
    p = bridge_problem()
    X, w, m, v = p["X"], p["weights"], p["means"], p["variances"]
    norm = {"right": 0.5 * np.log(2 * np.pi * v), "none": 0.0,
            "variance": 0.5 * np.log(2 * np.pi) + np.log(v)}[log_norm]
    logp = np.log(w) - norm - 0.5 * (X - m.T) ** 2 / v
    r = np.exp(logp - logp.max(1, keepdims=True))
    return r / r.sum(1, keepdims=True)


def _bridge_expected(log_norm: str = "right") -> np.ndarray:
    X = bridge_problem()["X"]
    r = _bridge_resp(log_norm)
    return (r.T @ X) / r.sum(0)[:, None]


def _bridge_plain_step() -> np.ndarray:
    p = bridge_problem()
    r = _bridge_resp()
    g = (r * (p["X"] - p["means"].T)).sum(0) / p["variances"]
    return p["means"] + g[:, None]


# Exercise 1: EM on the two means of a 1-D mixture (unit variances, equal weights), 40 points
# from two overlapping clusters; the reader sees its mean log-likelihood in the linear phase.
_RATE_RNG = np.random.default_rng(5)
_RATE_X = np.concatenate([_RATE_RNG.normal(-0.8, 1.0, 20), _RATE_RNG.normal(0.8, 1.0, 20)])
del _RATE_RNG
#: Exercise 1: EM's start (the two means) and the iterations whose log-likelihoods the reader gets.
RATE_START, RATE_ITERATIONS = (-0.5, 0.5), (22, 32)


def _rate_loglik(m: np.ndarray) -> float:
    lp = -0.5 * (_RATE_X[:, None] - m[None, :]) ** 2 - np.log(2.0) - 0.5 * np.log(2 * np.pi)
    mx = lp.max(1, keepdims=True)
    return float((np.log(np.exp(lp - mx).sum(1)) + mx[:, 0]).mean())


def rate_problem() -> dict[str, np.ndarray]:
    """Exercise 1's EM run: data ``X`` (40,), and the mean log-likelihood ``loglik`` after each of
    the EM iterations ``iterations`` (22 to 32; two means, unit variances, equal weights)."""
    m = np.array(RATE_START, dtype=np.float64)
    lo, hi = RATE_ITERATIONS
    trace = []
    for t in range(1, hi + 1):
        lp = -0.5 * (_RATE_X[:, None] - m[None, :]) ** 2
        r = np.exp(lp - lp.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        m = (r * _RATE_X[:, None]).sum(0) / r.sum(0)
        if t >= lo:
            trace.append(_rate_loglik(m))
    return {"X": _RATE_X.copy(), "loglik": np.array(trace), "iterations": np.arange(lo, hi + 1)}


def _rate_squared() -> float:
    """The factor by which the log-likelihood increments shrink per iteration (a fit over the trace)."""
    inc = np.diff(rate_problem()["loglik"])
    return float(np.exp(np.polyfit(np.arange(len(inc)), np.log(inc), 1)[0]))


#: Exercise 1: EM's linear rate, the factor by which the parameter error shrinks per iteration,
#: estimated from the log-likelihood trace of :func:`rate_problem` (a number).
check_em_rate = Exercise(
    **TEXT["ex-ch04-rate"],
    expected=lambda: np.sqrt(_rate_squared()),
    mistakes=(
        Mistake(WRONG_QUANTITY, _rate_squared,
                "that is the factor by which the log-likelihood increments shrink per iteration, "
                "not the factor of the parameter error."),
        Mistake(WRONG_QUANTITY, lambda: 1 / _rate_squared(),
                "a ratio above one, taken the wrong way round (the increments shrink), and a factor of the "
                "increments, not of the parameter error."),
        Mistake(WRONG_QUANTITY, lambda: 1 / np.sqrt(_rate_squared()),
                "a ratio above one, taken the wrong way round: the error shrinks."),
        Mistake(WRONG_QUANTITY, 1.0,
                "one, to many digits: that is a ratio of log-likelihoods, not of their changes."),
        Mistake(FLIPPED_SIGN, lambda: -np.sqrt(_rate_squared()),
                "a rate of convergence is a positive factor; check the signs of the ratio."),
    ),
    generic=False,
    rtol=1.5e-3,
    atol=0.0,
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
        Mistake(MISSING_FACTOR, lambda: _bridge_expected("none"),
                "the step has the right form, but the responsibilities it uses are off: the Gaussian density "
                "in them is missing its normalizing factor, which differs between the two components."),
        Mistake(MISSING_FACTOR, lambda: _bridge_expected("variance"),
                "the step has the right form, but the responsibilities it uses are off: the normalizing factor "
                "of the Gaussian density in them has the wrong power of the variance."),
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


def _curvature(m: np.ndarray) -> float:
    """The largest eigenvalue of the Hessian of the mean log-likelihood (the objective) with respect
    to the two means at ``m`` (shape (2,)): positive where the objective still rises along some
    direction, so that a stationary point there is a saddle, not a maximum."""
    r = _resp(np.asarray(m, dtype=np.float64)[None])[0]  # (30, 2)
    u = _BASIN_X[:, None] - m[None, :]  # x_i - mu_j
    ru = r * u
    # H_jk = mean_i [ r_ij (delta_jk - r_ik) u_ij u_ik - delta_jk r_ij ]
    H = np.diag((ru * u).mean(0) - r.mean(0)) - (ru.T @ ru) / len(_BASIN_X)
    return float(np.linalg.eigvalsh(H).max())


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
        return Feedback(False, f"{what}: not yet a pair of optima: gradient ascent is still moving after "
                               f"{BASIN_GD_STEPS} steps from there, so its end is not a stationary point.",
                        "not converged")
    saddles = [name for name, end in (("EM", em), ("gradient ascent", gd)) if _curvature(end) > 1e-8]
    if saddles:
        who = " and ".join(saddles)
        msg = (f"{what}: not two optima. {who} {'stop' if len(saddles) > 1 else 'stops'} at a saddle: "
               "the gradient is zero, but the log-likelihood still rises along some direction.")
        if min(abs(em[1] - em[0]), abs(gd[1] - gd[0])) < 1e-6:
            msg += " Both means are equal there."
        return Feedback(False, msg, SADDLE)
    if np.max(np.abs(em - gd)) > 0.5:
        return Feedback(True, f"{what}: right. EM ends at means {np.round(em, 2)} (mean log-likelihood "
                              f"{out['em_loglik'][0]:.4f}), gradient ascent at {np.round(gd, 2)} "
                              f"({out['gd_loglik'][0]:.4f}). Same objective, same start, different optima: "
                              "EM's large first step crossed a basin boundary that the small steps did not.")
    return Feedback(False, f"{what}: not yet: both methods reach the same optimum, means {np.round(em, 2)}. "
                           "Most starts do.", "same optimum")


#: Exercise 3 (explore): two starting means from which EM and gradient ascent, run on :func:`basin_data` by :func:`run_em_and_gd`, reach different optima.
check_different_optima = Custom(
    **TEXT["ex-ch04-basins"],
    grade=_grade_optima,
    example=lambda: np.array([-0.6, -0.8]),
    wrong=lambda: [(np.array([-4.0, 3.5]), "same optimum"), (np.array([0.5, 0.5]), SADDLE),
                   (np.array([1.0, 2.0, 3.0]), WRONG_SHAPE)],
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_em_rate, check_bridge_step, check_different_optima)
