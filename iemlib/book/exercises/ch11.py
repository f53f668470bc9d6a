"""Checkers for chapter 11, beyond the papers: Bayesian manifolds measured against the exact filter,
realistic optimizers, several heads and depth.

Gradients here are of the cross-entropy *loss* (minimized). The exercises' data are module
constants, so the chapter and the tests use the same numbers. Each ``check_*(answer, hint=0)``
returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of a recognised mistake, and
with ``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import FLIPPED_SIGN, NORMALIZATION, WRONG_QUANTITY, Choice, Exercise, Feedback, Mistake
from . import exercise_text

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch11.toml.
TEXT = exercise_text("ch11")

__all__ = ["EX1_Y", "EX1_PRED", "EX2_LOGLIK", "EX3_ALPHA", "EX3_B", "check_r_squared",
           "check_first_posterior_entropy", "check_advantage", "check_baseline_judgement", "check_deep_law_prediction"]

#: Exercise 11.1: a probe's predictions ``EX1_PRED`` of a target ``EX1_Y`` on five held-out positions.
EX1_Y = np.array([0.2, 0.5, 0.1, 0.9, 0.3])
EX1_PRED = np.array([0.25, 0.4, 0.2, 0.7, 0.35])
#: Exercise 11.2: the log-likelihoods ``log p(x_1 | y_0 = k)`` (up to a shared constant) of four symbols.
EX2_LOGLIK = np.array([-2.0, -0.5, -4.0, -0.5])
#: Exercise 11.3: one query row of a causal head over three keys: attention weights and ``b_ij = u_i . v_j``.
EX3_ALPHA = np.array([0.5, 0.3, 0.2])
EX3_B = np.array([0.4, -0.2, 0.1])


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return 1.0 - float(((y - p) ** 2).sum()) / float(((y - y.mean()) ** 2).sum())


_EX1 = Exercise(
    **TEXT["ex-ch11-r2"],
    expected=lambda: _r2(EX1_Y, EX1_PRED),
    mistakes=(
        Mistake(NORMALIZATION, lambda: 1.0 - float(((EX1_Y - EX1_PRED) ** 2).sum()) / float((EX1_Y**2).sum()),
                "the total sum of squares is taken about zero, not about the target's mean: that flatters any probe."),
        Mistake(WRONG_QUANTITY, lambda: float(np.corrcoef(EX1_Y, EX1_PRED)[0, 1] ** 2),
                "that is the squared correlation, which forgives any offset and scale of the predictions; a "
                "held-out R² does not."),
        Mistake(FLIPPED_SIGN, lambda: float(((EX1_Y - EX1_PRED) ** 2).sum()) / float(((EX1_Y - EX1_Y.mean()) ** 2).sum()),
                "that is the unexplained share, not the explained one."),
    ),
    generic=False,
    rtol=1e-9,
)


def _posterior_entropy() -> float:
    w = np.exp(EX2_LOGLIK - EX2_LOGLIK.max())
    p = w / w.sum()
    return float(-(p * np.log(p)).sum())


_EX2 = Exercise(
    **TEXT["ex-ch11-posterior"],
    expected=_posterior_entropy,
    mistakes=(
        Mistake("wrong units", lambda: _posterior_entropy() / np.log(2.0),
                "that is in bits; the book measures entropy in nats (natural logarithm)."),
        Mistake(WRONG_QUANTITY, lambda: float(np.log(4.0)),
                "that is the prior's entropy: the observation has not been used."),
        Mistake(NORMALIZATION, lambda: float(-(np.exp(EX2_LOGLIK) * EX2_LOGLIK).sum()),
                "the likelihoods are not a distribution until they are normalized over the symbols."),
    ),
    generic=False,
    rtol=1e-6,
)


def _advantage() -> np.ndarray:
    return -(EX3_B - (EX3_ALPHA * EX3_B).sum())


_EX3 = Exercise(
    **TEXT["ex-ch11-advantage"],
    expected=_advantage,
    mistakes=(
        Mistake(FLIPPED_SIGN, lambda: -_advantage(),
                "that is b_ij - E[b], the gradient's factor; the advantage has the sign of the descent direction."),
        Mistake(WRONG_QUANTITY, lambda: -(EX3_B - EX3_B.mean()),
                "the baseline is the attention-weighted mean of b, not the plain mean."),
        Mistake(WRONG_QUANTITY, lambda: EX3_ALPHA * _advantage(),
                "that is alpha_ij A_ij, the score change of eq. (34) up to the rate; the advantage itself has no alpha factor."),
    ),
    generic=False,
    rtol=1e-9,
)

#: Exercise 11.4 (judge): does an R² of 0.94 from the *values* of an untrained head to the
#: filter's log-posterior show a Bayesian manifold sculpted by training?
check_baseline_judgement = Choice(
    **TEXT["ex-ch11-baseline"],
    kinds={"yes": WRONG_QUANTITY, "cannot tell": WRONG_QUANTITY},
)


def check_r_squared(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 11.1: the held-out R² of the predictions ``EX1_PRED`` of ``EX1_Y``."""
    return _EX1.check(answer, hint)


def check_first_posterior_entropy(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 11.2: the entropy (nats) of the filter's posterior at the first position, uniform prior."""
    return _EX2.check(answer, hint)


def check_advantage(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 11.3: the advantages ``A_ij = -(b_ij - E_alpha_i[b])`` of one query row."""
    return _EX3.check(answer, hint)


#: Exercise 11.5 (predict, before the check is run): does the advantage law hold on a head inside a
#: deep model with residual paths and LayerNorm -- ``"exactly"``, ``"approximately"`` or ``"no"``?
check_deep_law_prediction = Choice(
    **TEXT["ex-ch11-deep-law"],
    kinds={"approximately": WRONG_QUANTITY, "no": WRONG_QUANTITY},
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (_EX1, _EX2, _EX3, check_baseline_judgement, check_deep_law_prediction)
