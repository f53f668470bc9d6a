"""Checkers for chapter 8 (EM-like vs SGD on the sticky Markov chain)."""

from __future__ import annotations


import numpy as np

from iemlib.markov import entropy_rate, sticky_transition_matrix
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, TRANSPOSED
from . import WRONG_QUANTITY, Choice, Exercise, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch08.toml.
TEXT = exercise_text("ch08")

__all__ = ["EX1_STAY", "EX3_ALPHA", "EX3_U", "EX3_ETA", "EX5_LR", "check_entropy_rate",
           "check_public_diagonal", "check_value_update", "check_equivalent_lr", "check_lr_prediction",
           "EX6_SEED", "check_step_scale"]

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


#: Exercise 1: entropy rate (nats) of the paper-reading chain with stay_prob = 0.5.
check_entropy_rate = Exercise(
    **TEXT["ex-ch08-entropy"],
    expected=lambda: _paper_rate(EX1_STAY),
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: _paper_rate(0.3), "that is the entropy rate at the paper's stay probability 0.3."),
        Mistake(WRONG_QUANTITY, lambda: float(np.log(8.0)), "that is the entropy of a uniform next symbol, log 8: the chain's stickiness is ignored."),
        Mistake("wrong units", lambda: _paper_rate(EX1_STAY) / np.log(2.0), "that is in bits; the book uses nats."),
    ),
    generic=False,
    rtol=1e-6,
    atol=1e-8,
)


def _public_diag(s: float = 0.3) -> float:
    return s + (1 - s) * s / (s + 2 * (1 + 1 / 2 + 1 / 3) + 1 / 4)


#: Exercise 2: the self-transition probability of the public code's chain for stay_prob = 0.3.
check_public_diagonal = Exercise(
    **TEXT["ex-ch08-diagonal"],
    expected=_public_diag,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.3, "that is the stay probability before the public code's normalization; "
                                             "the rescaled row keeps a share of the diagonal entry too."),
        Mistake(NORMALIZATION, lambda: 0.3 + 0.7 * 0.3 / (2 * (1 + 1 / 2 + 1 / 3) + 1 / 4),
                "that is the row rescaled without its diagonal entry: the paper reading's normalization, "
                "not the public code's."),
        Mistake(NORMALIZATION, lambda: 0.7 * 0.3 / (0.3 + 2 * (1 + 1 / 2 + 1 / 3) + 1 / 4),
                "that is the diagonal of the rescaled row, before the last step of the public code's recipe."),
    ),
    generic=False,
    rtol=1e-4,
    atol=1e-6,
)


def _value_update() -> np.ndarray:
    return -EX3_ETA * EX3_ALPHA.T @ EX3_U


#: Exercise 3: Delta v_j = -eta sum_i alpha_ij u_i for EX3_ALPHA, EX3_U, EX3_ETA (rows j).
check_value_update = Exercise(
    **TEXT["ex-ch08-mstep"],
    expected=_value_update,
    mistakes=(
        Mistake(TRANSPOSED, lambda: -EX3_ETA * EX3_ALPHA @ EX3_U,
                "alpha is used untransposed: that sums over the keys of each query, not over the queries "
                "that use each value."),
        Mistake(MISSING_FACTOR, lambda: EX3_ALPHA.T @ EX3_U, "the step size -eta is missing."),
    ),
    rtol=1e-9,
    atol=1e-12,
)

#: Exercise 4: the plain-SGD learning rate on W_V that reproduces the public EM-like value step.
check_equivalent_lr = Exercise(
    **TEXT["ex-ch08-lr"],
    expected=lambda: 0.1,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: 0.01, "that is the rate of the routing weights (W_Q, W_K, W_O), not of W_V."),
        Mistake(MISSING_FACTOR, lambda: 0.1 * 1999, "with the mean loss the rate is the closed-form rate itself; no factor for the number of positions."),
    ),
    generic=False,
    rtol=1e-9,
)

#: Exercise 5 (predict, before running): with plain SGD at ``EX5_LR`` instead of 0.01 on every parameter, is the loss after 100 steps (paper reading, every seed) ``"lower"``, ``"higher"`` or ``"same"`` as the base SGD run's?
check_lr_prediction = Choice(
    **TEXT["ex-ch08-predict-lr"],
    kinds={"higher": FLIPPED_SIGN, "same": WRONG_QUANTITY},
)


def _train_inputs(seed: int):
    from iemlib.experiments.em_vs_sgd import PAPER
    from iemlib.markov import make_dataset

    return make_dataset(PAPER.transition_matrix(), 2000, 20, seed).x.double()


def _kappa(seed: int) -> float:
    from iemlib.attention import effective_step_scale

    return float(effective_step_scale(_train_inputs(seed)))


#: Exercise 6 (chapter 8b): kappa = tr(X X^T) / d_x for the training inputs of seed ``EX6_SEED``.
check_step_scale = Exercise(
    **TEXT["ex-ch08-kappa"],
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
    generic=False,
    rtol=1e-6,
    atol=1e-8,
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_entropy_rate, check_public_diagonal, check_value_update, check_equivalent_lr, check_lr_prediction, check_step_scale)
