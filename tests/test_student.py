"""The student edition carries no solution: notebooks (fast, here) and HTML (in `make student`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import student  # noqa: E402

NOTEBOOKS = sorted(p for p in (ROOT / "chapters").glob("*.ipynb") if not p.name.startswith("appendix_"))


def _all_text(nb: dict) -> str:
    parts = []
    for c in nb["cells"]:
        parts.append(student._src(c))
        for o in c.get("outputs", []):
            parts.append(json.dumps(o))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_notebook_has_no_solution(path, tmp_path):
    nb = json.loads(path.read_text())
    frags = student.solution_texts(nb)
    assert frags, "the chapter has no solution text to hide"
    (out,) = [q for q in student.write_notebooks(path.parent, tmp_path) if q.name == path.name]
    snb = json.loads(out.read_text())
    text = _all_text(snb)
    assert "{solution" not in text
    for frag in frags:
        assert frag not in student._plain(text).replace("\n", " ") and frag not in text, frag
    # Everything else stays: the exercises, the reader's cells with their checkers, the setup cell.
    n_ex = sum("```{exercise}" in student._src(c) for c in nb["cells"])
    assert n_ex == sum("```{exercise}" in student._src(c) for c in snb["cells"]) > 0
    assert sum("answer = ..." in student._src(c) for c in snb["cells"] if c["cell_type"] == "code") >= n_ex
    assert any("setup" in c.get("metadata", {}).get("tags", []) for c in snb["cells"])
    n_sol = sum(len(b) for b in student.solution_blocks(nb))
    assert len(snb["cells"]) == len(nb["cells"]) - n_sol
    assert snb["metadata"]["iemlib_edition"] == "student"


def test_ungated_solutions_and_outputs_are_removed():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "```{exercise}\n:label: e\nQ?\n```\n\n```{solution} e\n:class: dropdown\nThe secret answer is forty-two, as computed.\n```\n"},
        {"cell_type": "code", "metadata": {}, "outputs": [{"output_type": "stream", "text": "x"}], "execution_count": 3,
         "source": "answer = ...\ncheck(answer)"},
        {"cell_type": "markdown", "metadata": {}, "source": "```{solution-start} e\n:class: dropdown\n```\nBecause the gated text explains it all.\n"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "answer = compute_the_secret_value()"},
        {"cell_type": "markdown", "metadata": {}, "source": "```{solution-end}\n```"},
    ], "metadata": {}}
    frags = student.solution_texts(nb)
    assert "answer = compute_the_secret_value()" in frags
    assert any("forty-two" in f for f in frags) and any("gated text" in f for f in frags)
    s = student.student_notebook(nb)
    text = _all_text(s)
    assert "forty-two" not in text and "secret_value" not in text and "gated text" not in text
    assert "Q?" in text and s["cells"][1]["outputs"] == [] and s["cells"][1]["execution_count"] is None
    assert student.student_notebook(nb, keep_outputs=True)["cells"][1]["outputs"]


def test_unterminated_solution_is_an_error():
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "```{solution-start} e\n```"}]}
    with pytest.raises(ValueError, match="solution-end"):
        student.solution_blocks(nb)


def test_html_check_finds_a_leak(tmp_path):
    path = NOTEBOOKS[0]
    nb = json.loads(path.read_text())
    frag = student.solution_texts(nb)[0]
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / f"{path.stem}.html").write_text(
        f"<div class='exercise'>x</div><pre>{frag.replace('<', '&lt;')}</pre>")
    src = tmp_path / "src"
    src.mkdir()
    (src / path.name).write_text(path.read_text())
    problems = student.check_html(tmp_path, src)
    assert any("solution text" in p for p in problems)
    (tmp_path / "chapters" / f"{path.stem}.html").write_text("<div class='exercise'>only the question</div>")
    assert student.check_html(tmp_path, src) == []


def test_make_student_builds_hidden_solutions_and_checks_html():
    mk = (ROOT / "Makefile").read_text()
    assert "student:" in mk and "tools/student.py check-html" in mk
    # the student notebooks: solutions removed and MyST converted for Jupyter and Colab
    assert "tools/colab_notebooks.py build chapters" in mk and "/student $(STUDENT)/notebooks" in mk
    src = (ROOT / "tools" / "student.py").read_text()
    assert '"hide_solutions"] = True' in src


def test_stage_leaves_out_the_instructor_guide_and_hides_solutions(tmp_path):
    import yaml

    out = tmp_path / "book"
    used = student.stage(tmp_path / "no-executed-notebooks", out)
    assert used == []
    assert not (out / "chapters" / "instructors.md").exists()
    assert "instructors" not in (out / "_toc.yml").read_text()
    for md in (out / "chapters").glob("*.md"):
        assert "instructors" not in md.read_text(), md.name
    cfg = yaml.safe_load((out / "_config.yml").read_text())
    assert cfg["sphinx"]["config"]["hide_solutions"] is True
    assert cfg["execute"]["execute_notebooks"] == "off"
    for nb in NOTEBOOKS:
        assert "{solution" not in (out / "chapters" / nb.name).read_text()
