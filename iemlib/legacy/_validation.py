"""Input validation shared by every public ``iemlib`` function.

Public functions accept numpy arrays and torch tensors (and, where documented, Python
sequences). Bad input raises :class:`ValueError` naming the argument and what was expected,
so a reader sees *which* argument is wrong and *why* instead of a NaN three cells later.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "ArrayLike",
    "is_torch",
    "as_float_array",
    "check_dim",
    "check_positive",
    "check_int",
    "check_labels",
    "check_same_shape",
]


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor."""
    return isinstance(x, torch.Tensor)


def _describe(x: Any) -> str:
    if is_torch(x) or isinstance(x, np.ndarray):
        return f"{type(x).__name__} of dtype {x.dtype} and shape {tuple(x.shape)}"
    return type(x).__name__


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_ndim: int = 0,
    allow_empty: bool = False,
    allow_sequence: bool = True,
) -> ArrayLike:
    """Validate ``x`` as a finite floating-point numpy array or torch tensor.

    Torch tensors are returned unchanged (so autograd graphs survive); numpy arrays keep
    their dtype; Python sequences become float64 numpy arrays when ``allow_sequence``.

    Raises
    ------
    ValueError
        If ``x`` is of the wrong type, not floating point, of the wrong number of
        dimensions, empty, or holds NaN or infinity.
    """
    if is_torch(x):
        arr: ArrayLike = x
        if not torch.is_floating_point(x):
            raise ValueError(
                f"{name} must be a floating-point tensor (float32 or float64), got {_describe(x)}"
            )
    elif isinstance(x, np.ndarray):
        arr = x
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(
                f"{name} must be a floating-point array (float32 or float64), got {_describe(x)}"
            )
    elif allow_sequence and isinstance(x, (list, tuple, float, int, np.floating, np.integer)) and not isinstance(x, bool):
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric, got {x!r}") from exc
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {_describe(x)}")

    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {tuple(arr.shape)}")
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(arr.shape)}"
        )
    n = arr.numel() if is_torch(arr) else arr.size
    if n == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
    finite = bool(torch.isfinite(arr.detach()).all()) if is_torch(arr) else bool(np.isfinite(arr).all())
    if not finite:
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def check_dim(x: ArrayLike, dim: int, name: str = "dim") -> int:
    """Validate an axis index against ``x`` and return it as a non-negative int."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise ValueError(f"{name} must be an integer axis, got {dim!r}")
    if x.ndim == 0:
        raise ValueError(f"{name}={dim} needs an input with at least one dimension, got a scalar")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}={dim} is out of range for an input of shape {tuple(x.shape)}")
    d = int(dim) % x.ndim
    if x.shape[d] == 0:
        raise ValueError(f"axis {name}={dim} must not be empty, got shape {tuple(x.shape)}")
    return d


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Validate a finite positive (or non-negative) scalar and return it as float."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a positive number, got {value!r}") from exc
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
    return v


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Validate an integer (optionally ``>= minimum``) and return it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_labels(y: Any, name: str, n_classes: int, shape: tuple[int, ...] | None = None) -> ArrayLike:
    """Validate integer class labels in ``[0, n_classes)``; returns numpy or torch as given."""
    if is_torch(y):
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
            raise ValueError(f"{name} must hold integer class labels, got {_describe(y)}")
        lo, hi = (int(y.min()), int(y.max())) if y.numel() else (0, 0)
    else:
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class labels, got {_describe(y)}")
        lo, hi = (int(y.min()), int(y.max())) if y.size else (0, 0)
    if shape is not None and tuple(y.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(y.shape)}")
    if (y.numel() if is_torch(y) else y.size) == 0:
        raise ValueError(f"{name} must not be empty")
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{name} must lie in [0, {n_classes}), got values in [{lo}, {hi}]")
    return y


def check_same_shape(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str) -> None:
    """Raise if two arrays differ in shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_b} must have the same shape as {name_a} {tuple(a.shape)}, got {tuple(b.shape)}"
        )
