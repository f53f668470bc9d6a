"""Checkers for chapter 8 (EM-like vs SGD on the sticky Markov chain)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..markov import entropy_rate, sticky_transition_matrix
from . import Feedback, check_close

__all__ = [
    "EX1_STAY",
    "EX3_ALPHA",
    "EX3_U",
    "EX3_ETA",
    "check_entropy_rate",
    "check_public_diagonal",
    "check_value_update",
    "check_equivalent_lr",
]

#: Exercise 1: the stay probability of a stickier chain.
EX1_STAY = 0.5
#: Exercise 3: causal attention weights alpha_ij (rows i, columns j) of a 3-position sequence,
#: the upstream signals u_i (rows) and the value learning rate.
EX3_ALPHA = np.array([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.5, 0.25, 0.25]])
EX3_U = np.array([[1.0, 0.0], [0.0, 2.0], [-2.0, 4.0]])
EX3_ETA = 0.1


def check_entropy_rate(answer: Any) -> Feedback:
    """Exercise 1: entropy rate (nats) of the paper-reading chain with stay_prob = 0.5."""
    expected = entropy_rate(sticky_transition_matrix(8, EX1_STAY))
    return check_close(
        answer, expected, what="Entropy rate at stay_prob = 0.5", rtol=1e-6, atol=1e-8,
        hint="Build the chain with sticky_transition_matrix(8, 0.5) (the reading that reproduces 1.8833) and "
             "weight each row's entropy by the stationary distribution (uniform here: the chain is circulant).",
        success="Stickier chain, smaller entropy: the next symbol is easier to predict.",
    )


def check_public_diagonal(answer: Any) -> Feedback:
    """Exercise 2: the self-transition probability of the public code's chain for stay_prob = 0.3."""
    s = 0.3
    expected = s + (1 - s) * s / (s + 2 * (1 + 1 / 2 + 1 / 3) + 1 / 4)
    return check_close(
        answer, expected, what="Public-code self-transition probability", rtol=1e-4, atol=1e-6,
        hint="The row [0.3, 1/d(i, j) for j != i] is rescaled to sum to 0.7 *with* its diagonal entry in it, and "
             "then 0.3 is added to the diagonal. The circular distances from one state are 1, 1, 2, 2, 3, 3, 4.",
        success="The diagonal gains (1 − s)·s / (s + Σ 1/d), which is why the minimum entropy drops to 1.8292.",
    )


def check_value_update(answer: Any) -> Feedback:
    """Exercise 3: Delta v_j = -eta sum_i alpha_ij u_i for EX3_ALPHA, EX3_U, EX3_ETA (rows j)."""
    expected = -EX3_ETA * EX3_ALPHA.T @ EX3_U
    return check_close(
        answer, expected, what="The M-like value update", rtol=1e-9, atol=1e-12,
        hint="Value j collects the upstream signal u_i of every query i, weighted by how much i attends to j: "
             "sum over the rows i of column j of alpha. The result has one row per value (3 x 2).",
        success="The last value is used only by the last query, so it moves along −u_3 alone.",
    )


def check_equivalent_lr(answer: Any) -> Feedback:
    """Exercise 4: the plain-SGD learning rate on W_V that reproduces the public EM-like value step."""
    if answer is None or answer is Ellipsis:
        return Feedback(False, "Learning rate: no answer yet — replace the `...` with a number. "
                               "Compare the M-like step on W_V with an SGD step on W_V.")
    try:
        a = float(answer)
    except (TypeError, ValueError):
        return Feedback(False, f"Learning rate: expected a number, got {type(answer).__name__}.")
    if np.isclose(a, 0.1, rtol=1e-9):
        return Feedback(True, "Learning rate matches: with v_j = W_V x_j the closed-form value step is the gradient "
                              "step on W_V, so the public 'EM-like' schedule is SGD with a ten times larger rate on W_V.")
    return Feedback(False, "Learning rate: not that one. The M-like step moves each v_j by −η Σ_i α_ij u_i, and "
                           "Σ_j (Σ_i α_ij u_i) x_jᵀ is exactly ∂Loss/∂W_V (eq. 31). Which η does the public code use?")
