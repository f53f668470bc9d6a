"""Checkers for chapter 8 (EM-like vs SGD on the sticky Markov chain).

Each ``check_*(answer, hint=0)`` returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of
a recognised mistake, and with ``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iemlib.markov import entropy_rate, sticky_transition_matrix
from . import (
    FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, TRANSPOSED, WRONG_QUANTITY, Choice, Exercise, Feedback, Mistake,
    )

__all__ = [
    "EX1_STAY",
    "EX3_ALPHA",
    "EX3_U",
    "EX3_ETA",
    "EX5_LR",
    "check_entropy_rate",
    "check_public_diagonal",
    "check_value_update",
    "check_equivalent_lr",
    "check_lr_prediction",
    "EX6_SEED",
    "check_step_scale",
]

#: Exercise 1: the stay probability of a stickier chain.
EX1_STAY = 0.5
#: Exercise 3: causal attention weights alpha_ij (rows i, columns j) of a 3-position sequence,
#: the upstream signals u_i (rows) and the value learning rate.
EX3_ALPHA = np.array([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.5, 0.25, 0.25]])
EX3_U = np.array([[1.0, 0.0], [0.0, 2.0], [-2.0, 4.0]])
EX3_ETA = 0.1
#: Exercise 5: the plain-SGD learning rate (on every parameter) whose effect the reader predicts.
EX5_LR = 0.03
#: Exercise 6 (chapter 8b): the data seed whose training inputs define the matched step scale.
EX6_SEED = 2024


def _paper_rate(stay: float) -> float:
    return float(entropy_rate(sticky_transition_matrix(8, stay)))


_EX1 = Exercise(
    label="ex-ch08-entropy", name="check_entropy_rate", what="Entropy rate at stay_prob = 0.5",
    expected=lambda: _paper_rate(EX1_STAY),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: _paper_rate(0.3), "that is the entropy rate at the paper's stay probability 0.3."),
        Mistake(WRONG_QUANTITY, lambda: float(np.log(8.0)), "that is the entropy of a uniform next symbol, log 8: the chain's stickiness is ignored."),
        Mistake("wrong units", lambda: _paper_rate(EX1_STAY) / np.log(2.0), "that is in bits; the book uses nats."),
    ),
    generic=False, rtol=1e-6, atol=1e-8,
    hints=(
        "Before computing: a stickier chain is more predictable. Which way should the entropy rate move from 1.8833?",
        "The entropy rate is sum_i pi_i H(P[i, :]). For the paper-reading chain use sticky_transition_matrix(8, stay).",
        "The chain is circulant, so pi is uniform: entropy_rate(sticky_transition_matrix(8, EX1_STAY)).",
    ),
    success="Stickier chain, smaller entropy: the next symbol is easier to predict.",
    secrets=("entropy_rate(sticky_transition_matrix(8, EX1_STAY))",),
)


def _public_diag(s: float = 0.3) -> float:
    return s + (1 - s) * s / (s + 2 * (1 + 1 / 2 + 1 / 3) + 1 / 4)


_EX2 = Exercise(
    label="ex-ch08-diagonal", name="check_public_diagonal", what="Public-code self-transition probability",
    expected=_public_diag,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.3, "that is the stay probability before the public code's normalization; "
                                             "the rescaled row keeps a share of the diagonal entry too."),
        Mistake(NORMALIZATION, lambda: 0.3 + 0.7 * 0.3 / (2 * (1 + 1 / 2 + 1 / 3) + 1 / 4),
                "the rescaling must include the diagonal entry 0.3 in the row sum."),
        Mistake(NORMALIZATION, lambda: 0.7 * 0.3 / (0.3 + 2 * (1 + 1 / 2 + 1 / 3) + 1 / 4),
                "you rescaled the row but forgot to add 0.3 to the diagonal afterwards."),
    ),
    generic=False, rtol=1e-4, atol=1e-6,
    hints=(
        "Follow the recipe literally: build the row, rescale it to sum to 0.7, then add 0.3 on the diagonal.",
        "The row's diagonal entry is 0.3 and its off-diagonal entries are 1/d for circular distances 1, 2, 3, 4, 3, 2, 1. "
        "The rescaling divides by the sum of all eight entries.",
        "Diagonal = 0.3 + 0.7 * 0.3 / (0.3 + sum of 1/d over the seven other states).",
    ),
    success="The diagonal gains (1 - s) s / (s + sum 1/d), which is why the minimum entropy drops to 1.8292.",
    secrets=("0.3498", "0.3 + 0.7 * 0.3 /"),
)


def _value_update() -> np.ndarray:
    return -EX3_ETA * EX3_ALPHA.T @ EX3_U


_EX3 = Exercise(
    label="ex-ch08-mstep", name="check_value_update", what="The M-like value update",
    expected=_value_update,
    mistakes=(
        Mistake(TRANSPOSED, lambda: -EX3_ETA * EX3_ALPHA @ EX3_U,
                "alpha is used untransposed: that sums over keys for each query. Value j collects from the queries i "
                "that attend to it: a column of alpha."),
        Mistake(MISSING_FACTOR, lambda: EX3_ALPHA.T @ EX3_U, "the step size -eta is missing."),
    ),
    rtol=1e-9, atol=1e-12,
    hints=(
        "Value j is used by every query i with weight alpha_ij. Which slice of alpha holds those weights?",
        "Delta v_j = -eta sum_i alpha_ij u_i sums over the rows i of column j of alpha.",
        "In matrix form: -EX3_ETA * EX3_ALPHA.T @ EX3_U, one row per value.",
    ),
    success="The last value is used only by the last query, so it moves along -u_3 alone.",
    secrets=("EX3_ALPHA.T @ EX3_U",),
)

_EX4 = Exercise(
    label="ex-ch08-lr", name="check_equivalent_lr", what="Learning rate",
    expected=lambda: 0.1,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.01, "that is the rate of the other parameters (W_Q, W_K, W_O); the value step is larger."),
        Mistake(MISSING_FACTOR, lambda: 0.1 * 1999, "with the mean loss the rate is the closed-form rate itself; no factor for the number of positions."),
    ),
    generic=False, rtol=1e-9,
    hints=(
        "Write the change of W_V that the M-like step on the values implies, with v_j = W_V x_j.",
        "sum_j (sum_i alpha_ij u_i) x_j^T is exactly dLoss/dW_V (eq. 31): the M-like step is a gradient step on W_V.",
        "So the equivalent rate is the rate the public code uses for the value step.",
    ),
    success="With v_j = W_V x_j the closed-form value step is the gradient step on W_V, so the public 'EM-like' schedule "
            "is SGD with a ten times larger rate on W_V.",
    secrets=("0.1",),
)

_EX5 = Choice(
    label="ex-ch08-predict-lr", name="check_lr_prediction",
    what="Your prediction", options=("lower", "higher", "same"), correct="lower",
    wrong={
        "higher": "a larger step would raise the loss if training were near a minimum, or unstable; is it, after 100 "
                  "steps? Look at how far the curves above are from the entropy rate.",
        "same": "the learning rate multiplies every update; with the same number of steps the run ends elsewhere.",
    },
    kinds={"higher": FLIPPED_SIGN, "same": WRONG_QUANTITY},
    hints=(
        "Where is plain SGD after 100 steps: close to the minimum, or still far above it with a loss falling steadily?",
        "Far from a minimum and well below the step size where training becomes unstable, a larger step goes further "
        "down in the same number of steps.",
        "The sweep above already ran SGD at 0.1 on every parameter. Did a larger step help there?",
    ),
    success="A larger step helps while training is far from the minimum and stable. That is also why comparing "
            "schedules at unmatched learning rates says little about the schedules.",
    kind="predict",
)


def _train_inputs(seed: int):
    from iemlib.experiments.em_vs_sgd import PAPER
    from iemlib.markov import make_dataset

    return make_dataset(PAPER.transition_matrix(), 2000, 20, seed).x.double()


def _kappa(seed: int) -> float:
    from iemlib.attention import effective_step_scale

    return float(effective_step_scale(_train_inputs(seed)))


_EX6 = Exercise(
    label="ex-ch08-kappa", name="check_step_scale", what="Matched step scale kappa for seed EX6_SEED",
    expected=lambda: _kappa(EX6_SEED),
    mistakes=(
        Mistake(MISSING_FACTOR, lambda: _kappa(EX6_SEED) * 20.0,
                "that is the whole trace of X X^T: the average over the input dimension is missing."),
        Mistake(NORMALIZATION, lambda: _kappa(EX6_SEED) / 2000.0,
                "that is divided by the number of positions as well: the gradient map sums over positions, "
                "it does not average over them."),
        Mistake(WRONG_QUANTITY, lambda: _kappa(42),
                "that is the scale for another seed's training inputs: use EX6_SEED."),
    ),
    generic=False, rtol=1e-6, atol=1e-8,
    hints=(
        "Compare how far one step moves a value vector under the gradient map (the requested change passes through "
        "x x^T, summed over positions) and under free values (the requested change itself).",
        "The average gain of x x^T over directions is its trace divided by the input dimension d_x = 20.",
        "effective_step_scale(make_dataset(PAPER.transition_matrix(), 2000, 20, EX6_SEED).x.double()).",
    ),
    success="The gradient map's gain grows with the number of positions; a free value vector sees only its own, which "
            "is why the literal readings barely move at the public step.",
    kind="compute",
)

def check_entropy_rate(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 1: entropy rate (nats) of the paper-reading chain with stay_prob = 0.5."""
    return _EX1.check(answer, hint)


def check_public_diagonal(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 2: the self-transition probability of the public code's chain for stay_prob = 0.3."""
    return _EX2.check(answer, hint)


def check_value_update(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 3: Delta v_j = -eta sum_i alpha_ij u_i for EX3_ALPHA, EX3_U, EX3_ETA (rows j)."""
    return _EX3.check(answer, hint)


def check_equivalent_lr(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 4: the plain-SGD learning rate on W_V that reproduces the public EM-like value step."""
    return _EX4.check(answer, hint)


def check_lr_prediction(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 5 (predict, before running): with plain SGD at ``EX5_LR`` instead of 0.01 on every
    parameter, is the loss after 100 steps (paper reading, every seed) ``"lower"``, ``"higher"`` or
    ``"same"`` as the base SGD run's?"""
    return _EX5.check(answer, hint)


def check_step_scale(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 6 (chapter 8b): kappa = tr(X X^T) / d_x for the training inputs of seed ``EX6_SEED``."""
    return _EX6.check(answer, hint)

#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (_EX1, _EX2, _EX3, _EX4, _EX5, _EX6)
