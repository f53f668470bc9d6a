"""The exercise checkers: right answers pass, recognised mistakes are named, nothing leaks early.

For every exercise in ``iemlib.book.exercises.registry()`` (all chapters):
- its solution passes;
- each wrong variant fails and is named as the right kind of mistake;
- no message a reader sees before asking for a hint states the answer: neither a number of the
  solution nor one of the exercise's ``secrets`` (the formulas that give it away);
- hints are graded (``hint=1..n``), the last one marked as such, and never raise.
Some wrong variants are written out here independently of the checkers' own mistake lists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import iemlib.book.exercises as E

REGISTRY = E.registry()
ROOT = Path(__file__).resolve().parents[1]
LABELS = sorted(REGISTRY)


def _numbers(obj) -> list[float]:
    try:
        a = np.asarray(obj, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return []
    return [float(x) for x in a if np.isfinite(x)]


def _leaks(message: str, ex) -> list[str]:
    """Numbers of the solution (3 significant digits) or secret strings found in ``message``."""
    found = [s for s in ex.secrets if s.lower() in message.lower()]
    nums = [float(m) for m in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+", message)
            if not (m.lstrip("-").isdigit() and abs(int(m)) <= 10)]  # small integers: "hint=1", "3 in all"
    for sol in ex.solutions():
        for v in _numbers(sol):
            if abs(v) < 1e-12 or (float(v).is_integer() and abs(v) <= 10):
                continue  # 0, 1, 2, ... appear in any sentence
            for n in nums:
                if n != 0 and np.isclose(n, v, rtol=5e-3, atol=0):
                    found.append(f"{n} ~ {v}")
    return found


def test_every_chapter_has_exercises_and_a_judgement_one():
    chapters = {lab.split("-")[1] for lab in LABELS}
    assert chapters == {f"ch{k:02d}" for k in range(1, 12)}
    for ch in chapters:
        kinds = {REGISTRY[lab].kind for lab in LABELS if lab.split("-")[1] == ch}
        assert kinds & {"predict", "explore", "design"}, (ch, kinds)


@pytest.mark.parametrize("label", LABELS)
def test_solution_passes(label):
    ex = REGISTRY[label]
    for sol in ex.solutions():
        fb = ex.check(sol)
        assert fb.correct, (label, str(fb))
        assert fb.kind is None
        assert str(fb).startswith("Correct.")


@pytest.mark.parametrize("label", LABELS)
def test_wrong_variants_fail_and_are_named(label):
    ex = REGISTRY[label]
    wrong = ex.wrong_examples()
    assert wrong, f"{label}: no wrong variant"
    for answer, kind in wrong:
        fb = ex.check(answer)
        assert not fb.correct, (label, answer)
        assert fb.kind == kind, (label, kind, fb.kind, str(fb))
        assert not _leaks(fb.message, ex), (label, _leaks(fb.message, ex), fb.message)


@pytest.mark.parametrize("label", LABELS)
def test_no_answer_and_unrecognised_answers_do_not_leak(label):
    ex = REGISTRY[label]
    msgs = [ex.check(...), ex.check(None), ex.check("not a number"), ex.check(object())]
    sol = ex.solutions()[0]
    if isinstance(ex, E.Exercise):
        msgs += [ex.check(np.asarray(sol) + 0.37), ex.check(sol * 0 + 123.0), ex.check(np.zeros(sol.size + 1))]
    for fb in msgs:
        assert not fb.correct, (label, str(fb))
        assert fb.kind is not None
        assert not _leaks(fb.message, ex), (label, _leaks(fb.message, ex), fb.message)
        # Before hints, the reader is told how to ask for one.
        assert "hint=1" in fb.message
    assert ex.check(...).kind == E.NO_ANSWER


@pytest.mark.parametrize("label", LABELS)
def test_hints_are_graded(label):
    ex = REGISTRY[label]
    n = len(ex.hints)
    assert n >= 2, label
    texts = [ex.check(..., hint=k).message for k in range(1, n + 1)]
    for k, t in enumerate(texts, start=1):
        assert f"Hint {k} of {n}" in t
        assert ex.hints[k - 1] in t
    assert "(the last hint)" in texts[-1]
    assert "(the last hint)" in ex.check(..., hint=n + 5).message  # clamped, never raises
    assert "Hint" not in ex.check(..., hint=0).message
    # A correct answer stays correct whatever hint is asked for.
    assert ex.check(ex.solutions()[0], hint=2).correct


def test_generic_kinds():
    ex = E.Exercise(label="t", name="check_t", what="T", expected=lambda: np.array([[1.0, 2.0], [3.0, 4.0]]),
                    hints=("a", "b"))
    e = ex.expected()
    assert ex.check(-e).kind == E.FLIPPED_SIGN
    assert ex.check(e.T).kind == E.TRANSPOSED
    assert ex.check(2.5 * e).kind == E.MISSING_FACTOR
    assert ex.check(e.reshape(-1)).kind == E.WRONG_SHAPE
    assert ex.check(e + np.array([[0, 0], [0, np.nan]])).kind == E.NOT_FINITE
    assert ex.check(e + 100).kind == E.NOT_CLOSE
    scalar = E.Exercise(label="s", name="check_s", what="S", expected=lambda: 0.75, hints=("a", "b"))
    assert scalar.check(1.5).kind == E.NOT_CLOSE  # not "a missing factor": every number is a multiple
    assert scalar.check(-0.75).kind == E.FLIPPED_SIGN
    assert "close, but not within" in scalar.check(0.76).message


def test_feedback_renders_the_kind():
    fb = E.Feedback(False, "x", E.FLIPPED_SIGN)
    assert str(fb).startswith("Not yet (flipped sign).")
    assert fb._repr_markdown_().startswith("**Not yet (flipped sign).**")
    assert str(E.Feedback(True, "y")) == "Correct. y"


# Wrong variants written independently of the checkers' mistake lists.
def test_chapter_mistakes_are_named_independently():
    from iemlib.book.exercises import ch01, ch02, ch03, ch04, ch06, ch08, ch10

    # ch01: forgetting the 1/N of the mean loss.
    assert ch01.check_responsibilities_from_gradient(ch01.EX1_GRAD).kind == E.MISSING_FACTOR
    # ch02: the eigenvector taken as a row, and dividing by n in the M-step.
    lam, V = np.linalg.eigh(ch02.EXERCISE_COV)
    W = V[:, 0] / np.sqrt(lam[0])
    assert ch02.check_principal_unit((W, -W @ ch02.EXERCISE_MEAN)).kind == E.WRONG_QUANTITY
    X, r = ch02.em_exercise_data()
    assert ch02.check_em_means(r.T @ X / len(X)).kind == E.NORMALIZATION
    assert ch02.check_em_means((r.T @ X / r.sum(0)[:, None]).T).kind == E.TRANSPOSED
    # ch03: the paper's gradient with respect to the logits.
    d = np.array(ch03.EX2_D)
    rr = np.exp(-d) / np.exp(-d).sum()
    assert ch03.check_cross_entropy_gradient(rr - np.eye(3)[ch03.EX2_Y]).kind == E.FLIPPED_SIGN
    # ch04: the rate of the increments given for the rate of the error; the density's normalizing
    # factor left out of the responsibilities (answers 3-5 % off).
    inc = np.diff(ch04.rate_problem()["loglik"])
    assert ch04.check_em_rate(np.sqrt(inc[-1] / inc[-2])).correct
    assert ch04.check_em_rate(inc[-1] / inc[-2]).kind == E.WRONG_QUANTITY
    p = ch04.bridge_problem()
    X, w, m, v = p["X"], p["weights"], p["means"], p["variances"]
    r = w * np.exp(-0.5 * (X - m.T) ** 2 / v)
    r /= r.sum(1, keepdims=True)
    fb = ch04.check_bridge_step(r.T @ X / r.sum(0)[:, None])
    assert fb.kind == E.MISSING_FACTOR and "normalizing factor" in fb.message, str(fb)
    assert "normalizing factor" in " ".join(ch04.check_bridge_step.hints)
    # ch06: a label given as an integer array; the sign of the logit gradient.
    z, y = np.array([0.2, 2.0, -1.0, 0.5, 1.1]), 3
    p = np.exp(z) / np.exp(z).sum()
    assert ch06.check_distance_gradient(p - np.eye(5)[y], z, y).kind == E.FLIPPED_SIGN
    assert ch06.check_distance_gradient(np.eye(5)[y] - p, z, y).correct
    # ch08: alpha untransposed.
    assert ch08.check_value_update(-ch08.EX3_ETA * ch08.EX3_ALPHA @ ch08.EX3_U).kind == E.TRANSPOSED
    # ch10: bits instead of nats.
    assert ch10.check_effective_components(np.exp(np.zeros(4))).kind == E.NOT_CLOSE


def test_the_formulas_the_issue_quoted_are_gone_from_early_messages():
    from iemlib.book.exercises import ch02, ch04

    early = str(ch02.check_principal_unit(...)) + str(ch04.check_bridge_step(...))
    assert "sqrt(lambda)" not in early and "-W @ mean" not in early
    assert "variance_j g_j / N_j" not in early
    assert "sqrt(lambda)" in str(ch02.check_principal_unit(..., hint=3))


def test_basin_exercise_finds_different_optima():
    from iemlib.book.exercises import ch04

    out = ch04.run_em_and_gd(np.array([[-0.6, -0.8], [-4.0, 3.5]]))
    assert np.abs(out["em"][0] - out["gd"][0]).max() > 0.5
    assert np.abs(out["em"][1] - out["gd"][1]).max() < 1e-3
    assert out["gd_grad"].max() < 1e-6
    with pytest.raises(ValueError, match="starts"):
        ch04.run_em_and_gd(np.array([1.0, np.nan]))


def test_basin_exercise_names_a_saddle():
    """A start on the symmetric line (both means equal) stays there: a saddle, not "the same optimum"."""
    from iemlib.book.exercises import ch04

    for start in ([0.5, 0.5], [-3.0, -3.0]):
        fb = ch04.check_different_optima(np.array(start))
        assert not fb.correct and fb.kind == ch04.SADDLE, str(fb)
        assert "saddle" in fb.message
    assert ch04.check_different_optima(np.array([-4.0, 3.5])).kind == "same optimum"


def _solution_code_lines() -> dict[str, list[str]]:
    """Lines of the notebooks' solution cells (between solution-start and solution-end)."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        inside = False
        for c in nb["cells"]:
            src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            if c["cell_type"] == "markdown" and "{solution-start}" in src:
                inside = "{solution-end}" not in src
                continue
            if c["cell_type"] == "markdown" and "{solution-end}" in src:
                inside = False
                continue
            if inside and c["cell_type"] == "code":
                out.setdefault(path.stem, []).extend(
                    ln.strip() for ln in src.splitlines() if len(ln.strip()) > 24 and not ln.strip().startswith("#"))
    return out


def test_no_early_message_contains_a_line_of_solution_code():
    lines = [ln for v in _solution_code_lines().values() for ln in v]
    assert lines, "no solution code cells found"
    for label in LABELS:
        ex = REGISTRY[label]
        msgs = [ex.check(...).message] + [ex.check(a).message for a, _ in ex.wrong_examples()]
        for m in msgs:
            for ln in lines:
                assert ln not in m, (label, ln)
