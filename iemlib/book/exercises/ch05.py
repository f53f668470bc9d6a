"""Checkers for chapter 5 (attention as conditional mixture; closed-form attention gradients)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from iemlib.attention import closed_form_backward, init_params
from . import exercise_text, FLIPPED_SIGN, MISSING_FACTOR, NORMALIZATION, TRANSPOSED, WRONG_QUANTITY, Choice, Exercise, Mistake

#: The text of this chapter's exercises (what is asked, hints, messages): text/ch05.toml.
TEXT = exercise_text("ch05")

__all__ = ["exercise_problem", "check_score_gradient", "check_score_direction",
           "check_value_projection_gradient", "check_realized_value_update", "check_control_design"]


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


#: Exercise 1: ``dL/ds`` (a ``(4, 4)`` array) from ``alpha`` and ``B`` alone.
check_score_gradient = Exercise(
    **TEXT["ex-ch05-advantage"],
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
    rtol=1e-8,
    atol=1e-12,
)

#: Exercise 2: after a gradient-descent step, does ``s_ij`` rise where ``b_ij`` is "above" or "below" the attention-weighted mean ``E_{alpha_i}[b]``?
check_score_direction = Choice(
    **TEXT["ex-ch05-direction"],
    kinds={"above": FLIPPED_SIGN},
)


def _wv_expected() -> np.ndarray:
    return _state().W_V


#: Exercise 3: ``grad W_V = U A X^T`` (shape ``(2, 3)``) from ``u``, ``alpha``, ``x``.
check_value_projection_gradient = Exercise(
    **TEXT["ex-ch05-wv"],
    expected=_wv_expected,
    mistakes=(
        Mistake(TRANSPOSED, lambda: (lambda pb: pb["u"].T @ pb["alpha"].T @ pb["x"])(exercise_problem()),
                "alpha is transposed: value j is used by query i with weight alpha_ij (row i, column j)."),
        Mistake(FLIPPED_SIGN, lambda: -_wv_expected(), "right size, wrong sign: this is the gradient of the loss, not the step."),
    ),
    rtol=1e-8,
    atol=1e-12,
)


def _realized() -> np.ndarray:
    pb = exercise_problem()
    return pb["x"] @ (-pb["lr"] * _state().W_V).T


#: Exercise 4: the change of every value ``v_j`` (shape ``(4, 2)``) after one descent step of size ``lr`` on ``W_V`` alone.
check_realized_value_update = Exercise(
    **TEXT["ex-ch05-realized"],
    expected=_realized,
    mistakes=(
        Mistake(WRONG_QUANTITY, lambda: -exercise_problem()["lr"] * _state().dL_dv,
                "that is the paper's update of a *free* value vector. Here v_j = W_V x_j and only W_V is trained: "
                "step W_V and recompute the values."),
        Mistake(FLIPPED_SIGN, lambda: -_realized(), "right size, wrong sign: descent steps against the gradient."),
        Mistake(MISSING_FACTOR, lambda: _realized() / exercise_problem()["lr"], "the learning rate is missing."),
    ),
    rtol=1e-8,
    atol=1e-12,
)

#: Exercise 5 (design): which control run separates "usage" from "input geometry" as the cause of a value's large realized update: ``"equal-norm"``, ``"more-steps"``, ``"larger-lr"`` or ``"more-seeds"``?
check_control_design = Choice(
    **TEXT["ex-ch05-control"],
    kinds={"more-steps": "does not separate the explanations", "larger-lr": "does not separate the explanations",
           "more-seeds": "does not separate the explanations"},
)


#: This chapter's exercises, in the order the chapter sets them.
EXERCISES = (check_score_gradient, check_score_direction, check_value_projection_gradient, check_realized_value_update, check_control_design)
