"""Feedback on judgement, prediction, design and exploration exercises: the verdict and the kind of what is
off come first; the fix waits for ``hint=``.

For these exercises a first message that names the fix turns a question of judgement into a lookup. So for
each wrong answer a checker recognises, the message it gives without a hint must (1) say that the answer is
not right, (2) name the kind of mistake in at most 30 words, and (3) share no run of five consecutive words
with any of its hints: what the hints say is not said before they are asked for. A numeric exercise with a one-slip mistake
(a sign) may name the slip; those are not tested here.
"""

from __future__ import annotations

import re

import pytest

import iemlib.book.exercises as E

REGISTRY = E.registry()
JUDGEMENT = sorted(label for label, ex in REGISTRY.items()
                   if getattr(ex, "kind", "") in ("predict", "judge", "design", "explore"))
RUN = 5
#: A first message is a verdict and a kind, not an explanation: at most this many words (the
#: "Stuck? ..." pointer to the hints aside).
MAX_WORDS = 30


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_there_are_judgement_exercises():
    assert len(JUDGEMENT) >= 10, JUDGEMENT


@pytest.mark.parametrize("label", JUDGEMENT)
def test_first_message_gives_verdict_and_kind_but_not_the_fix(label):
    ex = REGISTRY[label]
    hint_runs = set().union(*(_runs(h) for h in ex.hints))
    wrong = ex.wrong_examples()
    assert wrong, f"{label}: no wrong answer is recognised"
    for answer, kind in wrong:
        fb = ex.check(answer)
        assert not fb.correct, (label, answer)
        assert fb.kind == kind, (label, answer, fb.kind, kind)
        assert str(fb).startswith("Not yet"), str(fb)
        said = fb.message.split(" Stuck? ")[0].removeprefix(f"{getattr(ex, 'what', '')}:")
        assert len(_words(said)) <= MAX_WORDS, f"{label}: a first message of {len(_words(said))} words: {said!r}"
        shared = _runs(said) & hint_runs
        assert not shared, f"{label}: the first message repeats a hint: {' '.join(sorted(shared)[0])!r}"


def test_the_rule_bites():
    """Sanity check of the test itself: a message that copies a hint is caught."""
    hint = "Compare the loss at the start with the loss at the end of the run."
    assert _runs("Not yet: compare the loss at the start with the loss at the end.") & _runs(hint)
    assert not _runs("Not yet: this is a statement about the wrong loss.") & _runs(hint)
