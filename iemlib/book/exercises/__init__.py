"""Checkers for the chapters' exercises.

Each chapter has a module ``iemlib.book.exercises.chNN`` whose ``check_*`` functions take the
reader's answer and return :class:`Feedback`. A checker

- gives a verdict: right, or not yet;
- on a wrong answer it recognises, names the *kind* of mistake (``Feedback.kind``: a flipped
  sign, a missing factor, a transposed matrix, a wrong normalization, ...) without the answer;
- gives graded hints only when asked: ``check_x(answer, hint=1)``, ``hint=2``, ...; the last
  hint is close to the solution. No message before the hints states a formula or a value.

The shared machinery lives here: :class:`Exercise` (a numeric exercise: its expected value, the
mistakes it recognises, its hints), :class:`Choice` (a prediction or judgement answered with one
of a few words) and helpers for checkers that run the reader's answer (``verdict``,
``with_hint``). Each chapter module lists its exercises in ``EXERCISES``; :func:`registry` collects
them from the modules named in :data:`CHAPTER_MODULES` (an explicit list: importing a module has no
side effect on any other), so that the tests can check every exercise of the book: its solution
passes, each recognised mistake is named, no early message leaks the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..._validation import to_numpy

__all__ = [
    "Feedback",
    "Mistake",
    "Exercise",
    "Choice",
    "Custom",
    "CHAPTER_MODULES",
    "registry",
    "exercise_text",
    "check_close",
    "check_true",
    "no_answer",
    "matches",
    "hint_text",
    "no_answer_feedback",
    "with_hint",
    "FLIPPED_SIGN",
    "MISSING_FACTOR",
    "TRANSPOSED",
    "NORMALIZATION",
    "WRONG_QUANTITY",
    "WRONG_UNITS",
    "WRONG_SHAPE",
    "WRONG_TYPE",
    "NOT_FINITE",
    "NOT_CLOSE",
    "NO_ANSWER",
]

# The kinds of mistake a checker names (``Feedback.kind``).
FLIPPED_SIGN = "flipped sign"
MISSING_FACTOR = "missing or extra factor"
TRANSPOSED = "transposed"
NORMALIZATION = "wrong normalization"
WRONG_QUANTITY = "a related but different quantity"
WRONG_UNITS = "wrong units"
WRONG_SHAPE = "wrong shape"
WRONG_TYPE = "wrong type"
NOT_FINITE = "not finite"
NOT_CLOSE = "not close"
NO_ANSWER = "no answer"


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer. Truthy when correct; renders as a line of Markdown.

    ``kind`` names the recognised mistake (one of this module's kind constants), or is ``None``
    when the answer is right.
    """

    correct: bool
    message: str
    kind: str | None = None

    def __bool__(self) -> bool:
        return self.correct

    def _verdict(self, bold: bool) -> str:
        if self.correct:
            word = "Correct."
        elif self.kind in (None, NO_ANSWER, NOT_CLOSE):
            word = "Not yet."
        else:
            word = f"Not yet ({self.kind})."
        return f"**{word}**" if bold else word

    def __str__(self) -> str:
        return f"{self._verdict(False)} {self.message}"

    def _repr_markdown_(self) -> str:
        return f"{self._verdict(True)} {self.message}"


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
        a = to_numpy(answer).astype(np.float64)
        t = to_numpy(target).astype(np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == t.shape and bool(np.allclose(a, t, rtol=rtol, atol=atol))


def _hint_level(hint: Any) -> int:
    try:
        k = int(hint)
    except (TypeError, ValueError):
        return 0
    return max(k, 0)


def hint_text(hints: Sequence[str], hint: Any) -> str:
    """``"Hint k of n: ..."`` for ``hint = k`` (clamped to the last hint), or ``""`` for 0."""
    k = _hint_level(hint)
    if k == 0 or not hints:
        return ""
    k = min(k, len(hints))
    more = "" if k < len(hints) else " (the last hint)"
    return f"Hint {k} of {len(hints)}{more}: {hints[k - 1]}"


def _ask_for_hint(name: str, n: int) -> str:
    if n == 0:
        return ""
    if "(" in name:  # a full call, e.g. "check_x(answer, z_ex, y_ex, hint=1)"
        call = f"`{name}`"
    else:
        call = f"`{name}(answer, hint=1)`" if name else "`hint=1`"
    return f"Stuck? {call} gives a first hint ({n} in all, the last close to the solution)."


def with_hint(fb: Feedback, hints: Sequence[str], hint: Any, name: str = "") -> Feedback:
    """Append the requested hint to ``fb``, or, when none was requested and the answer is
    wrong, say how to ask for one. A correct answer is returned as it is."""
    if fb.correct:
        return fb
    text = hint_text(hints, hint) or _ask_for_hint(name, len(hints))
    return Feedback(False, f"{fb.message} {text}".strip(), fb.kind)


def no_answer_feedback(what: str, *, placeholder: str = "your code") -> Feedback:
    """The message for an unanswered exercise: it names what is asked, never how."""
    return Feedback(False, f"{what}: no answer yet. Replace the `...` with {placeholder}.", NO_ANSWER)


@dataclass(frozen=True)
class Mistake:
    """A wrong answer the checker recognises.

    ``value`` is the wrong answer this mistake produces (or a callable returning it, evaluated
    lazily); ``kind`` is one of the module's kind constants; ``message`` explains what went wrong
    without giving the answer.
    """

    kind: str
    value: Any
    message: str

    def target(self) -> Any:
        return self.value() if callable(self.value) else self.value


#: The chapter modules that hold exercises (``iemlib.book.exercises.<name>``), in book order.
CHAPTER_MODULES: tuple[str, ...] = tuple(f"ch{k:02d}" for k in range(1, 12))


def exercise_text(chapter: str) -> dict[str, dict[str, Any]]:
    """The text of a chapter's exercises, from ``text/<chapter>.toml`` (package data): for each label,
    the keyword arguments of its :class:`Exercise`, :class:`Choice` or :class:`Custom` that are words
    (``what``, ``hints``, ``success``, ``secrets``, ...), lists as tuples, the label included. Keeping
    the words apart from the grading code lets an instructor adapt a hint without touching Python."""
    import tomllib
    from importlib import resources

    raw = tomllib.loads(resources.files(__name__).joinpath("text", f"{chapter}.toml").read_text(encoding="utf-8"))
    return {label: {"label": label, **{k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}}
            for label, t in raw.items()}


def registry() -> dict[str, "Exercise | Choice | Custom"]:
    """Every exercise of the book, by its label in the notebook (``ex-chNN-...``), in book order.

    Imports each module of :data:`CHAPTER_MODULES` and reads its ``EXERCISES``; a label used twice
    raises ``ValueError``.
    """
    import importlib

    out: dict[str, Exercise | Choice | Custom] = {}
    for name in CHAPTER_MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        for ex in mod.EXERCISES:
            if ex.label in out:
                raise ValueError(f"exercise label {ex.label!r} is used twice")
            out[ex.label] = ex
    return out


def _closeness(a: np.ndarray, e: np.ndarray) -> str:
    """A coarse description of how far ``a`` is from ``e`` that does not reveal ``e``."""
    scale = max(float(np.max(np.abs(e))), 1e-12)
    rel = float(np.max(np.abs(a - e))) / scale
    if rel < 0.05:
        return "close, but not within the tolerance: look for a rounded constant or a small missing term"
    if rel < 0.5:
        return "in the right range but off"
    return "far off"


class _Checker:
    """An exercise is its own checker: ``check_x(answer)`` or ``check_x(answer, hint=1)``."""

    def __call__(self, answer: Any, hint: Any = 0) -> "Feedback":
        return self.check(answer, hint)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Exercise(_Checker):
    """A numeric exercise: what is asked, its expected value, the mistakes and hints.

    ``expected`` is a callable returning the right answer (scalar or array), ``equivalent`` an
    optional list of other right answers (e.g. either sign of a direction), ``secrets`` strings
    that give the solution away and must not appear before the hints (the tests check it).
    ``generic`` turns on the mistakes recognised for every numeric exercise: a flipped sign, a
    transposed matrix, an answer off by a constant factor.
    """

    label: str
    name: str
    what: str
    expected: Callable[[], Any]
    hints: tuple[str, ...]
    mistakes: tuple[Mistake, ...] = ()
    success: str = ""
    rtol: float = 1e-6
    atol: float = 1e-9
    equivalent: Callable[[], Sequence[Any]] | None = None
    generic: bool = True
    secrets: tuple[str, ...] = ()
    placeholder: str = "your code"
    kind: str = "compute"
    call: str = ""  # how the reader asks for a hint, when the checker takes data: "check_x(answer, z, hint=1)"

    def solutions(self) -> list[np.ndarray]:
        out = [to_numpy(self.expected()).astype(np.float64)]
        if self.equivalent is not None:
            out += [to_numpy(v).astype(np.float64) for v in self.equivalent()]
        return out

    def wrong_examples(self) -> list[tuple[Any, str]]:
        """Wrong answers with the kind the checker must name (for the tests)."""
        out = [(m.target(), m.kind) for m in self.mistakes]
        e = self.solutions()[0]
        if self.generic and np.any(e != 0) and not any(np.allclose(-e, s) for s in self.solutions()):
            if not any(matches(-e, t) for t, _ in out):
                out.append((-e, FLIPPED_SIGN))
        return out

    def _grade(self, answer: Any) -> Feedback:
        what = self.what
        if no_answer(answer):
            return no_answer_feedback(what, placeholder=self.placeholder)
        sols = self.solutions()
        e = sols[0]
        try:
            a = to_numpy(answer).astype(np.float64)
        except (TypeError, ValueError):
            return Feedback(False, f"{what}: expected a number or an array, got {type(answer).__name__}.", WRONG_TYPE)
        if a.shape != e.shape:
            if a.ndim == 2 and a.T.shape == e.shape and any(
                    np.allclose(a.T, s, rtol=self.rtol, atol=self.atol) for s in sols):
                return Feedback(False, f"{what}: rows and columns are swapped; check which index is which.", TRANSPOSED)
            if a.size == e.size and any(np.allclose(a.reshape(e.shape), s, rtol=self.rtol, atol=self.atol) for s in sols):
                return Feedback(False, f"{what}: the numbers are right but the shape is {a.shape}; "
                                       f"the exercise asks for shape {e.shape}.", WRONG_SHAPE)
            return Feedback(False, f"{what}: expected shape {e.shape}, got {a.shape}.", WRONG_SHAPE)
        if not np.all(np.isfinite(a)):
            return Feedback(False, f"{what}: your answer holds NaN or inf (an overflow, or a log of zero?).", NOT_FINITE)
        if any(np.allclose(a, s, rtol=self.rtol, atol=self.atol) for s in sols):
            return Feedback(True, f"{what}: right. {self.success}".strip())
        for m in self.mistakes:
            try:
                t = m.target()
            except Exception:  # a mistake whose value cannot be built for this answer
                continue
            if matches(a, t, rtol=max(self.rtol, 1e-6), atol=max(self.atol, 1e-9)):
                return Feedback(False, f"{what}: {m.message}", m.kind)
        if self.generic:
            fb = self._generic(a, sols)
            if fb is not None:
                return fb
        return Feedback(False, f"{what}: {_closeness(a, e)}.", NOT_CLOSE)

    def _generic(self, a: np.ndarray, sols: list[np.ndarray]) -> Feedback | None:
        what = self.what
        tol = dict(rtol=max(self.rtol, 1e-6), atol=max(self.atol, 1e-9))
        for s in sols:
            if np.any(s != 0) and np.allclose(a, -s, **tol):
                return Feedback(False, f"{what}: right size, wrong sign. Is it the objective L (maximized) "
                                       "or a loss (minimized), and which variable do you differentiate by?",
                                FLIPPED_SIGN)
        for s in sols:
            if s.ndim == 2 and s.shape[0] == s.shape[1] and not np.allclose(s, s.T, **tol) and np.allclose(a, s.T, **tol):
                return Feedback(False, f"{what}: rows and columns are swapped; check which index is which.", TRANSPOSED)
        for s in sols:
            if s.size < 2:  # any wrong number is a multiple of a scalar: saying so would mislead
                continue
            flat_s, flat_a = s.reshape(-1), a.reshape(-1)
            k = int(np.argmax(np.abs(flat_s)))
            if flat_s[k] == 0 or flat_a[k] == 0:
                continue
            c = flat_a[k] / flat_s[k]
            if not np.isclose(abs(c), 1.0, rtol=1e-6) and np.allclose(a, c * s, **tol):
                return Feedback(False, f"{what}: the pattern is right but every entry is off by the same factor: "
                                       "a missing or extra constant (a 1/N, a variance, a temperature?).",
                                MISSING_FACTOR)
        return None

    def check(self, answer: Any, hint: Any = 0) -> Feedback:
        """Grade ``answer``; with ``hint=k`` (k >= 1) add the k-th hint. Never raises."""
        try:
            fb = self._grade(answer)
        except Exception as exc:  # the reader's answer may be anything
            fb = Feedback(False, f"{self.what}: could not read your answer ({type(exc).__name__}).", WRONG_TYPE)
        return with_hint(fb, self.hints, hint, self.call or self.name)


@dataclass(frozen=True)
class Choice(_Checker):
    """A prediction or judgement answered with one word from ``options``.

    ``wrong`` maps each wrong option to the message that explains why it is wrong (without
    saying which option is right) and ``kinds`` optionally maps it to a mistake kind.
    """

    label: str
    name: str
    what: str
    options: tuple[str, ...]
    correct: str
    hints: tuple[str, ...]
    wrong: dict[str, str] = field(default_factory=dict)
    success: str = ""
    kinds: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    kind: str = "predict"

    def solutions(self) -> list[str]:
        return [self.correct]

    def wrong_examples(self) -> list[tuple[Any, str]]:
        return [(o, self.kinds.get(o, WRONG_QUANTITY)) for o in self.options if o != self.correct]

    def _grade(self, answer: Any) -> Feedback:
        opts = ", ".join(f'"{o}"' for o in self.options)
        if no_answer(answer):
            return no_answer_feedback(self.what, placeholder=f"one of {opts}")
        if not isinstance(answer, str) or answer.strip().lower() not in self.options:
            return Feedback(False, f"{self.what}: answer with one of {opts}, got {answer!r}.", WRONG_TYPE)
        a = answer.strip().lower()
        if a == self.correct:
            return Feedback(True, f"{self.what}: right. {self.success}".strip())
        return Feedback(False, f"{self.what}: {self.wrong.get(a, 'not that one.')}", self.kinds.get(a, WRONG_QUANTITY))

    def check(self, answer: Any, hint: Any = 0) -> Feedback:
        """Grade ``answer``; with ``hint=k`` (k >= 1) add the k-th hint. Never raises."""
        return with_hint(self._grade(answer), self.hints, hint, self.name)


@dataclass(frozen=True)
class Custom(_Checker):
    """An exercise whose checker runs or inspects the reader's answer (a design, a search).

    ``grade`` maps an answer (never ``...``) to :class:`Feedback`; ``example`` returns one right
    answer and ``wrong`` a list of ``(answer, kind)`` pairs, both for the tests.
    """

    label: str
    name: str
    what: str
    grade: Callable[[Any], Feedback]
    hints: tuple[str, ...]
    example: Callable[[], Any]
    wrong: Callable[[], list[tuple[Any, str]]]
    secrets: tuple[str, ...] = ()
    placeholder: str = "your code"
    kind: str = "design"
    call: str = ""

    def solutions(self) -> list[Any]:
        return [self.example()]

    def wrong_examples(self) -> list[tuple[Any, str]]:
        return self.wrong()

    def check(self, answer: Any, hint: Any = 0) -> Feedback:
        """Grade ``answer``; with ``hint=k`` (k >= 1) add the k-th hint. Never raises."""
        if no_answer(answer):
            fb = no_answer_feedback(self.what, placeholder=self.placeholder)
        else:
            try:
                fb = self.grade(answer)
            except Exception as exc:  # the reader's answer may be anything
                fb = Feedback(False, f"{self.what}: could not use your answer ({type(exc).__name__}: {exc}).",
                              WRONG_TYPE)
        return with_hint(fb, self.hints, hint, self.call or self.name)


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

    Kept for code outside the chapters' checkers. The message names ``what`` was checked and,
    on failure, adds ``hint`` and how far off the answer is, coarsely, without the expected value.
    """
    if no_answer(answer):
        return Feedback(False, f"{what}: no answer yet. Replace the `...` with your code. {hint}", NO_ANSWER)
    try:
        a = to_numpy(answer).astype(np.float64)
    except (TypeError, ValueError):
        return Feedback(False, f"{what}: expected a number or an array, got {type(answer).__name__}. {hint}", WRONG_TYPE)
    e = to_numpy(expected).astype(np.float64)
    if a.shape != e.shape:
        return Feedback(False, f"{what}: expected shape {e.shape}, got {a.shape}. {hint}", WRONG_SHAPE)
    if not np.all(np.isfinite(a)):
        return Feedback(False, f"{what}: your answer holds NaN or inf. {hint}", NOT_FINITE)
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return Feedback(True, f"{what} matches. {success}".strip())
    return Feedback(False, f"{what}: {_closeness(a, e)}. {hint}", NOT_CLOSE)


def check_true(condition: Callable[[], bool] | bool, *, what: str, hint: str, success: str = "") -> Feedback:
    """Feedback for a yes/no property of the reader's answer."""
    try:
        ok = bool(condition() if callable(condition) else condition)
    except Exception as exc:  # the reader's code may raise anything; report it as feedback
        return Feedback(False, f"{what}: evaluating your answer raised {type(exc).__name__}: {exc}. {hint}", WRONG_TYPE)
    if ok:
        return Feedback(True, f"{what} holds. {success}".strip())
    return Feedback(False, f"{what} does not hold. {hint}", NOT_CLOSE)
