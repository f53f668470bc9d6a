"""Checkers for chapter 5 (attention as conditional mixture; closed-form attention gradients).

Every exercise works on the same small problem, :func:`exercise_problem` (``T = 4``, ``d_x = 3``,
``d_k = d_v = 2``, ``C = 3``, no causal mask), so the reader and the checker see the same numbers.
All gradients are of the summed cross-entropy **loss** (minimized). Each ``check_*(answer, hint=0)``
returns :class:`~iemlib.book.exercises.Feedback`: a verdict, the kind of a recognised mistake, and with
``hint=1, 2, ...`` graded hints.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from iemlib.attention import closed_form_backward, init_params
from . import FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, TRANSPOSED, WRONG_QUANTITY, Choice, Exercise, Feedback, Mistake

__all__ = [
    "exercise_problem",
    "check_score_gradient",
    "check_score_direction",
    "check_value_projection_gradient",
    "check_realized_value_update",
    "check_control_design",
]


def exercise_problem() -> dict[str, Any]:
    """The chapter's exercise problem and its forward/backward quantities (float64 numpy).

    Keys: ``x (4, 3)``, ``y (4,)``, ``params`` (:class:`~iemlib.attention.HeadParams`), ``lr`` (0.1), and
    from the closed forms ``alpha, v, u, B`` (``u_i = dL/dg_i``, ``B = u v^T``).
    """
    rng = np.random.default_rng(2025)
    x = rng.standard_normal((4, 3))
    y = rng.integers(0, 3, size=4)
    params = init_params(3, 2, 2, 3, scale=0.8, random_state=5)
    st = closed_form_backward(x, y, *params, causal=False)
    return {
        "x": x, "y": y, "params": params, "lr": 0.1,
        "alpha": st.alpha, "v": st.v, "u": st.u, "B": st.B,
    }


@lru_cache(maxsize=1)
def _state() -> Any:
    pb = exercise_problem()
    return closed_form_backward(pb["x"], pb["y"], *pb["params"], causal=False)


def _a_B() -> tuple[np.ndarray, np.ndarray]:
    st = _state()
    return st.alpha, st.B


_EX1 = Exercise(
    label="ex-ch05-advantage", name="check_score_gradient", what="dL/ds (gradient of the loss with respect to the scores)",
    expected=lambda: _state().dL_ds,
    mistakes=(
        Mistake(NORMALIZATION, lambda: (lambda a, B: a * (B - (a * B).sum(0, keepdims=True)))(*_a_B()),
                "the attention-weighted mean is taken over the wrong axis: each query i (a row) has its own mean."),
        Mistake(NORMALIZATION, lambda: (lambda a, B: a * (B - B.mean(1, keepdims=True)))(*_a_B()),
                "you subtracted the plain mean of the row; the baseline is the attention-weighted mean."),
        Mistake(WRONG_QUANTITY, lambda: (lambda a, B: a * B)(*_a_B()),
                "the baseline is missing: softmax's Jacobian subtracts the attention-weighted mean of the row."),
        Mistake(WRONG_QUANTITY, lambda: (lambda a, B: B - (a * B).sum(1, keepdims=True))(*_a_B()),
                "the outer factor alpha_ij is missing."),
    ),
    hints=(
        "The scores enter the loss only through alpha_i = softmax(s_i). Use the softmax Jacobian, row by row.",
        "dL/ds_ij = alpha_ij (b_ij - sum_k alpha_ik b_ik), with b_ij = dL/dalpha_ij = B[i, j].",
        "In NumPy: a * (B - (a * B).sum(1, keepdims=True)), keeping the row mean as a column so it broadcasts.",
    ),
    rtol=1e-8, atol=1e-12, success="Each row sums to zero: softmax ignores a common shift of the scores.",
    secrets=("(a * B).sum(1", "keepdims=True"),
)

_EX2 = Choice(
    label="ex-ch05-direction", name="check_score_direction",
    what="Your answer", options=("above", "below"), correct="below",
    wrong={"above": "follow the sign: the step is s_ij - lr * dL/ds_ij. What is the sign of dL/ds_ij when "
                    "b_ij > E[b], and what does subtracting it do? (The paper's prose makes this slip too.)"},
    kinds={"above": FLIPPED_SIGN},
    hints=(
        "Write the step as s_ij <- s_ij - lr * dL/ds_ij and use the advantage law from exercise 1.",
        "dL/ds_ij = alpha_ij (b_ij - E[b]) with alpha_ij > 0: its sign is the sign of b_ij - E[b].",
        "b_ij is the gradient of the *loss* with respect to alpha_ij: a low b_ij marks a value whose extra attention lowers the loss.",
    ),
    success="Descent moves s_ij by -lr * alpha_ij * (b_ij - E[b]): up where b_ij < E[b]. b_ij = dL/dalpha_ij, "
            "so a low b_ij is a value that lowers the loss.",
)


def _wv_expected() -> np.ndarray:
    return _state().W_V


_EX3 = Exercise(
    label="ex-ch05-wv", name="check_value_projection_gradient", what="The gradient of the loss with respect to W_V",
    expected=_wv_expected,
    mistakes=(
        Mistake(TRANSPOSED, lambda: (lambda pb: pb["u"].T @ pb["alpha"].T @ pb["x"])(exercise_problem()),
                "alpha is transposed: value j is used by query i with weight alpha_ij (row i, column j)."),
        Mistake(FLIPPED_SIGN, lambda: -_wv_expected(), "right size, wrong sign: this is the gradient of the loss, not the step."),
    ),
    hints=(
        "Each value v_j = W_V x_j; the loss reaches v_j through every query that attends to it.",
        "dL/dv_j = sum_i alpha_ij u_i, and dL/dW_V = sum_j (dL/dv_j) x_j^T.",
        "With U = u.T, A = alpha, X = x.T: U A X^T, i.e. u.T @ alpha @ x, of shape (d_v, d_x).",
    ),
    rtol=1e-8, atol=1e-12, success="Input x_j enters weighted by the attention column sum_i alpha_ij u_i.",
    secrets=("u.T @ alpha @ x", 'ex["u"].T @ ex["alpha"]'),
)


def _realized() -> np.ndarray:
    pb = exercise_problem()
    return pb["x"] @ (-pb["lr"] * _state().W_V).T


_EX4 = Exercise(
    label="ex-ch05-realized", name="check_realized_value_update", what="The realized value update Delta v_j = Delta W_V x_j",
    expected=_realized,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: -exercise_problem()["lr"] * _state().dL_dv,
                "that is the paper's update of a *free* value vector. Here v_j = W_V x_j and only W_V is trained: "
                "step W_V and recompute the values."),
        Mistake(FLIPPED_SIGN, lambda: -_realized(), "right size, wrong sign: descent steps against the gradient."),
        Mistake(MISSING_FACTOR, lambda: _realized() / exercise_problem()["lr"], "the learning rate is missing."),
    ),
    hints=(
        "The values are not parameters: v_j = W_V x_j. A step changes W_V; the values follow.",
        "Delta W_V = -lr * dL/dW_V (your previous answer); then Delta v_j = Delta W_V x_j for each row x_j of x.",
        "x @ (-lr * gW).T gives all four rows at once.",
    ),
    rtol=1e-8, atol=1e-12, success="It differs from the paper's -lr * sum_i alpha_ij u_i: the prototype is W_V.",
    secrets=("x @ (-lr", '(-ex["lr"] * gW).T'),
)

_EX5 = Choice(
    label="ex-ch05-control", name="check_control_design",
    what="Your control", options=("equal-norm", "more-steps", "larger-lr", "more-seeds"), correct="equal-norm",
    wrong={
        "more-steps": "training longer changes both usage and the values' motion together; it cannot tell which one sets the size of the update.",
        "larger-lr": "a larger step scales every update by the same factor, so the ranking of positions, and the confound, stay.",
        "more-seeds": "more seeds narrow the spread of the same comparison, but in every seed the input norms still vary with usage.",
    },
    kinds={"more-steps": "does not separate the explanations", "larger-lr": "does not separate the explanations",
           "more-seeds": "does not separate the explanations"},
    hints=(
        "The two explanations for a large realized update of v_j are: its position is used a lot (usage), or its input x_j is large (geometry).",
        "A control changes one explanation and holds the other fixed. Which of the four options removes differences in input size?",
        "Rescale every x_j to the same norm and rerun: if the usage-update correlation of the realized update rises "
        "towards the free-value one, geometry was the cause.",
    ),
    success="With every input at the same norm, geometry can no longer differ between positions; what is left of "
            "the correlation between usage and realized update is due to usage.",
    kind="design",
)


def check_score_gradient(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 1: ``dL/ds`` (a ``(4, 4)`` array) from ``alpha`` and ``B`` alone."""
    return _EX1.check(answer, hint)


def check_score_direction(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 2: after a gradient-descent step, does ``s_ij`` rise where ``b_ij`` is "above" or
    "below" the attention-weighted mean ``E_{alpha_i}[b]``?"""
    return _EX2.check(answer, hint)


def check_value_projection_gradient(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 3: ``grad W_V = U A X^T`` (shape ``(2, 3)``) from ``u``, ``alpha``, ``x``."""
    return _EX3.check(answer, hint)


def check_realized_value_update(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 4: the change of every value ``v_j`` (shape ``(4, 2)``) after one descent step of
    size ``lr`` on ``W_V`` alone."""
    return _EX4.check(answer, hint)


def check_control_design(answer: Any, hint: int = 0) -> Feedback:
    """Exercise 5 (design): which control run separates "usage" from "input geometry" as the
    cause of a value's large realized update: ``"equal-norm"``, ``"more-steps"``, ``"larger-lr"``
    or ``"more-seeds"``?"""
    return _EX5.check(answer, hint)

#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (_EX1, _EX2, _EX3, _EX4, _EX5)
