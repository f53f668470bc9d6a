"""tools/reading_time.py: what it counts, at what rate, and that the guide's check bites."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import reading_time as rt  # noqa: E402


def _nb(cells):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text, outputs=(), tags=()):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": text, "outputs": list(outputs),
            "execution_count": None}


def _write(tmp_path, name, cells):
    p = tmp_path / f"{name}.ipynb"
    p.write_text(json.dumps(_nb(cells)))
    return p


def test_parts_and_rates(tmp_path):
    words = " ".join(["w"] * 200)
    p = _write(tmp_path, "x", [
        _md("(ch-x)=\n# Title\n\n" + words),                 # 1 + 200 prose words in the core
        _code("a = 1 " * 25),                                 # 75 visible code words
        _code("hidden " * 500, tags=["hide-input"],           # folded code: not counted ...
              outputs=[{"output_type": "stream", "name": "stdout", "text": "n " * 100},
                       {"output_type": "stream", "name": "stderr", "text": "bar " * 999},
                       {"output_type": "display_data", "data": {"image/png": "x", "text/plain": "<Figure>"}}]),
        _md(":::{dropdown} Answer\n" + words + "\n:::\n"),   # markup lines do not count
        _md("## For the skeptic: is it real?\n\n" + words),
        _code("b = 2"),
        _md("## Summary\n\nback to the core"),
        _md("## Exercises\n\n" + " ".join(["e"] * 100)),
    ])
    r = rt.measure(p)
    core = r.parts["core"]
    assert core.prose == 1 + 200 + 200 + 1 + 4 and core.code == 75 and core.output == 100 and core.figures == 1
    assert abs(r.minutes("core") - (406 / 100 + 75 / 50 + 100 / 100 + 1)) < 1e-9
    opt = r.parts["optional"]
    assert opt.prose == 6 + 200 and opt.code == 3
    assert r.parts["exercises"].prose == 101


def test_the_guide_check_bites(tmp_path):
    p = _write(tmp_path, "04_x", [_md("(ch-x)=\n# T\n\n" + " ".join(["w"] * 1000))])  # 10 min core
    guide = tmp_path / "guide.md"
    guide.write_text("| chapter | core | optional | ex |\n|---|---|---|---|\n| {doc}`T <04_x>` | 10 | 0 | 0 |\n")
    assert rt.check_guide(guide, tmp_path) == []
    guide.write_text(guide.read_text().replace("| 10 |", "| 25 |"))
    problems = rt.check_guide(guide, tmp_path)
    assert len(problems) == 1 and "core 25" in problems[0]
    assert rt.update_guide(guide, tmp_path) == 1 and rt.check_guide(guide, tmp_path) == []
    assert p.exists()
