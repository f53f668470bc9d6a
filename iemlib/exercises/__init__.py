"""Checkers for the chapters' exercises.

Each chapter has a module ``iemlib.exercises.chNN`` whose ``check_*`` functions take the
reader's answer and return :class:`Feedback`: whether it is right and, if not, a hint that
says what to look at, never the answer itself. The shared helpers live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["Feedback", "check_close", "check_true", "no_answer", "matches"]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer. Truthy when correct; renders as a line of Markdown."""

    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        return ("Correct. " if self.correct else "Not yet. ") + self.message

    def _repr_markdown_(self) -> str:
        return ("**Correct.** " if self.correct else "**Not yet.** ") + self.message


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def no_answer(answer: Any) -> bool:
    """True when the reader has not answered yet (``None`` or the placeholder ``...``)."""
    return answer is None or answer is Ellipsis


def matches(answer: Any, target: Any, *, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """True when ``answer`` is numeric, has ``target``'s shape and is close to it.

    Used by checkers to recognise a *specific* wrong answer (a flipped sign, a missing factor)
    and explain it; never raises.
    """
    if no_answer(answer):
        return False
    try:
        a = _to_numpy(answer).astype(np.float64)
    except (TypeError, ValueError):
        return False
    t = _to_numpy(target).astype(np.float64)
    return a.shape == t.shape and bool(np.allclose(a, t, rtol=rtol, atol=atol))


def check_close(
    answer: Any,
    expected: Any,
    *,
    what: str,
    hint: str,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    success: str = "",
) -> Feedback:
    """Compare a numeric answer (scalar, array or tensor) with the expected value.

    The message names ``what`` was checked; on failure it adds ``hint`` and how far off the
    answer is (shape mismatch, or the largest absolute difference), without printing the
    expected value.
    """
    if no_answer(answer):
        return Feedback(False, f"{what}: no answer yet — replace the `...` with your code. {hint}")
    try:
        a = _to_numpy(answer).astype(np.float64)
    except (TypeError, ValueError):
        return Feedback(False, f"{what}: expected a number or an array, got {type(answer).__name__}. {hint}")
    e = _to_numpy(expected).astype(np.float64)
    if a.shape != e.shape:
        return Feedback(False, f"{what}: expected shape {e.shape}, got {a.shape}. {hint}")
    if not np.all(np.isfinite(a)):
        return Feedback(False, f"{what}: your answer holds NaN or inf. {hint}")
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return Feedback(True, f"{what} matches. {success}".strip())
    err = float(np.max(np.abs(a - e)))
    return Feedback(False, f"{what}: off by up to {err:.3g}. {hint}")


def check_true(condition: Callable[[], bool] | bool, *, what: str, hint: str, success: str = "") -> Feedback:
    """Feedback for a yes/no property of the reader's answer."""
    try:
        ok = bool(condition() if callable(condition) else condition)
    except Exception as exc:  # the reader's code may raise anything; report it as feedback
        return Feedback(False, f"{what}: evaluating your answer raised {type(exc).__name__}: {exc}. {hint}")
    return Feedback(True, f"{what} holds. {success}".strip()) if ok else Feedback(False, f"{what} does not hold. {hint}")
