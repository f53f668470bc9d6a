"""Input validation of :mod:`iemlib.attention`'s head functions (package-private: shared by ``head`` and
``toy``; the public functions validate through these and raise ``ValueError`` naming the argument)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import ArrayLike, as_float_array, check_labels


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)



def check_matrix(W: Any, name: str, rows: int | None, cols: int, rows_name: str, cols_desc: str) -> ArrayLike:
    W = as_float_array(W, name, ndim=2, allow_sequence=False)
    if W.shape[1] != cols:
        raise ValueError(
            f"{name} must have shape ({rows_name}, {cols_desc}) with {cols_desc} = {cols}, got {tuple(W.shape)}"
        )
    if rows is not None and W.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, {cols}) ({rows_name} = {rows}), got {tuple(W.shape)}")
    return W



def validate_forward(x: Any, W_Q: Any, W_K: Any, W_V: Any, causal: Any) -> tuple[ArrayLike, ...]:
    x = as_float_array(x, "x", min_ndim=2, allow_sequence=False)
    d_x = x.shape[-1]
    if x.shape[-2] == 0 or d_x == 0:
        raise ValueError(f"x must have shape (..., T, d_x) with T >= 1 and d_x >= 1, got {tuple(x.shape)}")
    W_Q = check_matrix(W_Q, "W_Q", None, d_x, "d_k", "d_x")
    W_K = check_matrix(W_K, "W_K", W_Q.shape[0], d_x, "d_k", "d_x")
    W_V = check_matrix(W_V, "W_V", None, d_x, "d_v", "d_x")
    check_bool(causal, "causal")
    return x, W_Q, W_K, W_V



def validate_full(
    x: Any, y: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, b: Any, causal: Any
) -> tuple[Any, ...]:
    x, W_Q, W_K, W_V = validate_forward(x, W_Q, W_K, W_V, causal)
    d_v = W_V.shape[0]
    W_O = as_float_array(W_O, "W_O", ndim=2, allow_sequence=False)
    if W_O.shape[1] != d_v:
        raise ValueError(
            f"W_O must have shape (C, d_v) with d_v = W_V.shape[0] = {d_v}, got {tuple(W_O.shape)}"
        )
    C = W_O.shape[0]
    b = as_float_array(b, "b", ndim=1, allow_sequence=False)
    if b.shape[0] != C:
        raise ValueError(f"b must have shape (C,) with C = W_O.shape[0] = {C}, got {tuple(b.shape)}")
    y = check_labels(y, "y", C, shape=tuple(x.shape[:-1]))
    return x, y, W_Q, W_K, W_V, W_O, b
