"""Chapter 8's judgement exercise: the first message says wrong and what is off in kind, the fix waits
for the hints (issue 21)."""

from __future__ import annotations

import iemlib.book.exercises as E
from iemlib.book.exercises import ch08


def test_prediction_first_message_names_the_kind_not_the_fix():
    ex = ch08.check_lr_prediction
    for wrong in ("higher", "same"):
        fb = ex(wrong)
        assert not fb.correct and fb.kind in (E.FLIPPED_SIGN, E.WRONG_QUANTITY)
        text = fb.message.lower()
        assert "wrong" in text  # it says so
        assert "not" in text  # and what the answer describes instead of the case asked about
        for h in ex.hints:  # no hint is given before it is asked for
            assert h.lower() not in text
        assert ex.correct not in text.replace("hint=1", "")
        assert ex.hints[0] in ex(wrong, hint=1).message
