"""Checkers for chapter 5 (attention as conditional mixture; closed-form attention gradients).

Every exercise works on the same small problem, :func:`exercise_problem` (``T = 4``, ``d_x = 3``,
``d_k = d_v = 2``, ``C = 3``, no causal mask), so the reader and the checker see the same numbers.
All gradients are of the summed cross-entropy **loss** (minimized).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attention import PARAM_NAMES, closed_form_backward, init_params
from . import Feedback, check_close

__all__ = [
    "exercise_problem",
    "check_score_gradient",
    "check_score_direction",
    "check_value_projection_gradient",
    "check_realized_value_update",
]


def exercise_problem() -> dict[str, Any]:
    """The chapter's exercise problem and its forward/backward quantities (float64 numpy).

    Keys: ``x (4, 3)``, ``y (4,)``, ``params`` (dict ``W_Q, W_K, W_V, W_O, b``), ``lr`` (0.1), and
    from the closed forms ``alpha, v, u, B`` (``u_i = dL/dg_i``, ``B = u v^T``).
    """
    rng = np.random.default_rng(2025)
    x = rng.standard_normal((4, 3))
    y = rng.integers(0, 3, size=4)
    params = init_params(3, 2, 2, 3, scale=0.8, seed=5)
    st = closed_form_backward(x, y, *(params[k] for k in PARAM_NAMES), causal=False)
    return {
        "x": x, "y": y, "params": params, "lr": 0.1,
        "alpha": st["alpha"], "v": st["v"], "u": st["u"], "B": st["B"],
    }


def _state() -> dict[str, Any]:
    pb = exercise_problem()
    return closed_form_backward(pb["x"], pb["y"], *(pb["params"][k] for k in PARAM_NAMES), causal=False)


def check_score_gradient(answer: Any) -> Feedback:
    """Exercise 1: ``dL/ds`` (a ``(4, 4)`` array) from ``alpha`` and ``B`` alone."""
    return check_close(
        answer, _state()["dL_ds"], what="dL/ds (gradient of the loss with respect to the scores)",
        hint="Row i is alpha_ij times (b_ij minus the alpha_i-weighted mean of row i of B); "
        "keep the mean as a column (keepdims=True) so it broadcasts across j.",
        rtol=1e-8, atol=1e-12,
        success="Each row sums to zero: softmax ignores a common shift of the scores.",
    )


def check_score_direction(answer: Any) -> Feedback:
    """Exercise 2: after a gradient-descent step, does ``s_ij`` rise where ``b_ij`` is "above" or
    "below" the attention-weighted mean ``E_{alpha_i}[b]``?"""
    if answer is None or answer is Ellipsis:
        return Feedback(False, 'no answer yet: set answer = "above" or "below".')
    if not isinstance(answer, str) or answer.strip().lower() not in {"above", "below"}:
        return Feedback(False, f'answer with the string "above" or "below", got {answer!r}.')
    if answer.strip().lower() == "below":
        return Feedback(
            True,
            "Descent moves s_ij by -lr * alpha_ij * (b_ij - E[b]): up where b_ij < E[b]. "
            "b_ij = dL/dalpha_ij, so a low b_ij is a value that lowers the loss.",
        )
    return Feedback(
        False,
        "Write the step as s_ij - lr * dL/ds_ij with dL/ds_ij = alpha_ij (b_ij - E[b]) and look at "
        "the sign of the change when b_ij > E[b]. Remember b_ij is the gradient of the loss with "
        "respect to alpha_ij.",
    )


def check_value_projection_gradient(answer: Any) -> Feedback:
    """Exercise 3: ``grad W_V = U A X^T`` (shape ``(2, 3)``) from ``u``, ``alpha``, ``x``."""
    return check_close(
        answer, _state()["W_V"], what="the gradient of the loss with respect to W_V",
        hint="U has the u_i as columns (u.T), A is alpha, X has the x_j as columns (x.T); "
        "the result has W_V's shape (d_v, d_x).",
        rtol=1e-8, atol=1e-12,
        success="Input x_j enters weighted by the attention column sum_i alpha_ij u_i.",
    )


def check_realized_value_update(answer: Any) -> Feedback:
    """Exercise 4: the change of every value ``v_j`` (shape ``(4, 2)``) after one descent step of
    size ``lr`` on ``W_V`` alone."""
    pb = exercise_problem()
    st = _state()
    expected = pb["x"] @ (-pb["lr"] * st["W_V"]).T
    paper = -pb["lr"] * st["dL_dv"]
    fb = check_close(
        answer, expected, what="the realized value update Delta v_j = Delta W_V x_j",
        hint="Take the descent step on W_V (minus lr times its gradient), then recompute "
        "v_j = W_V x_j for every row x_j of x and subtract the old values.",
        rtol=1e-8, atol=1e-12,
        success="It differs from the paper's -lr * sum_i alpha_ij u_i: the prototype is W_V.",
    )
    if not fb.correct and answer is not None and answer is not Ellipsis:
        try:
            if np.allclose(np.asarray(answer, dtype=float), paper, rtol=1e-8, atol=1e-12):
                return Feedback(
                    False,
                    "That is the paper's Delta v_j = -lr * sum_i alpha_ij u_i, the update of a free "
                    "value vector. Here v_j = W_V x_j and only W_V is trained: step W_V and recompute.",
                )
        except (TypeError, ValueError):
            pass
    return fb
