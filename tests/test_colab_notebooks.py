"""The notebooks for Jupyter and Colab (tools/colab_notebooks.py): no MyST survives the conversion.

`make book` converts the chapters with the numbers of the HTML build and checks the result; these
tests run before any build, with labels and titles read from the sources (numbers stand-ins), so
that a new directive, role or unknown label fails here first.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import colab_notebooks as cn  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
BASE = "https://example.org/book/"


class SourceResolver(cn.Resolver):
    """Labels and titles from the sources; every numbered label gets the stand-in number "N"."""

    def number(self, label):
        self._label(label)
        if label in ("ch-m-step-readings", "app-speed"):
            raise cn.ConversionError(f"label {label!r} has no number")
        return "section", "N"


def _md(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(scope="module")
def resolver():
    labels, titles = {}, {}
    for path in sorted((ROOT / "chapters").glob("*")):
        if path.suffix not in (".ipynb", ".md"):
            continue
        doc = f"chapters/{path.stem}"
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            text = "\n".join(_md(c) for c in nb["cells"] if c["cell_type"] == "markdown")
            for c in nb["cells"]:
                name = c.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
                if name:
                    labels[name] = (doc, name, "a figure")
        else:
            text = path.read_text()
        title = re.search(r"^# (.+)$", text, flags=re.M)
        titles[doc] = title.group(1) if title else path.stem
        for m in re.finditer(r"^\(([\w:-]+)\)=\s*\n#+ (.+)$", text, flags=re.M):
            labels[m.group(1)] = (doc, m.group(1), m.group(2))
        for m in re.finditer(r"^:label: ([\w:-]+)", text, flags=re.M):
            labels[m.group(1)] = (doc, m.group(1), "an exercise")
    return SourceResolver(base_url=BASE, labels=labels, titles=titles, bib=cn.read_bib(ROOT / "chapters/references.bib"))


def _convert(text, resolver, doc="chapters/04_unsupervised"):
    return cn.convert_markdown(text, cn.Context(resolver, doc))


QUICK_CHECK = """::::{admonition} Quick check
:class: tip
Why is the sky blue?
:::{dropdown} Answer
Rayleigh scattering, $\\propto \\lambda^{-4}$.
:::
::::
"""


def test_a_quick_check_becomes_a_blockquote_with_its_answer_folded(resolver):
    out = _convert(QUICK_CHECK, resolver)
    assert out.startswith("> **Quick check**")
    assert "<details>" in out and "<summary>Answer</summary>" in out
    # The answer sits inside the <details> element, which a browser shows closed.
    assert out.index("<details>") < out.index("Rayleigh") < out.index("</details>")
    html = __import__("markdown_it").MarkdownIt("commonmark").render(out)
    assert "<blockquote>" in html and "{dropdown}" not in html and ":class:" not in html


def test_citations_and_references_become_text_and_links(resolver):
    out = _convert("As {cite:t}`dempster1977em` showed {cite:p}`dempster1977em`; "
                   "see {numref}`chapter %s <ch-theorem>`, {ref}`ch-m-step-readings` and {doc}`notation`.", resolver)
    assert "Dempster et al. (1977) showed (Dempster et al., 1977)" in out
    assert f"[chapter N]({BASE}chapters/03_theorem.html#ch-theorem)" in out
    assert f"({BASE}chapters/08b_m_step_readings.html#ch-m-step-readings)" in out
    assert f"[Notation]({BASE}chapters/notation.html)" in out
    assert resolver.cited == ["dempster1977em"]
    assert "Dempster, A. P." in resolver.references_cell()


def test_inline_code_keeps_its_role_syntax_as_an_example(resolver):
    out = _convert("Write `{cite:p}` to cite.", resolver)
    assert "`{cite:p}`" in out


@pytest.mark.parametrize("text, message", [
    (":::{figure} x.png\nA figure\n:::\n", "directive {figure}"),
    ("{term}`x`", "role {term}"),
    ("{numref}`chapter %s <ch-nowhere>`", "unknown label"),
    ("{numref}`ch-m-step-readings`", "no number"),
    ("{cite:p}`nobody2099`", "unknown citation"),
    ("[a page](nowhere.md)", "unknown page"),
    (":::{dropdown} Answer\nnever closed\n", "unclosed"),
])
def test_what_cannot_be_converted_is_an_error(resolver, text, message):
    with pytest.raises(cn.ConversionError, match=re.escape(message)):
        _convert(text, resolver)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_converts_with_no_myst_left(resolver, path):
    nb = json.loads(path.read_text())
    doc = f"chapters/{path.stem}"
    reader = cn.convert_notebook(nb, resolver, doc)
    student = cn.convert_notebook(cn.student_edition(nb), resolver, doc)
    for edition in (reader, student):
        assert cn.leftovers(edition) == []
        # the code is the chapter's code: same cells in order (a form-mode title line aside)
        code = [_md(c).split("\n", 1)[-1] if _md(c).startswith("# @title") else _md(c)
                for c in edition["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] for c in edition["cells"] if c["cell_type"] == "code")
        assert len(code) >= 1
    # Every quick-check answer is folded in both editions.
    for edition in (reader, student):
        for c in edition["cells"]:
            src = _md(c)
            if c["cell_type"] == "markdown" and "**Quick check**" in src:
                assert "<details>" in src and "<summary>Answer</summary>" in src, src[:200]
    # The student edition holds no solution.
    text = "\n".join(_md(c) for c in student["cells"])
    assert "Solution to Exercise" not in text
    if "{exercise}" in "\n".join(_md(c) for c in nb["cells"]):
        assert "Solution to Exercise" in "\n".join(_md(c) for c in reader["cells"])


def test_check_fails_on_a_notebook_with_myst_left(tmp_path):
    (tmp_path / "chapters").mkdir()
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["See {cite:p}`x`.\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "chapters" / "a.ipynb").write_text(json.dumps(nb))
    assert cn.check(tmp_path) == 1
    nb["cells"][0]["source"] = ["See (X, 2020).\n"]
    (tmp_path / "chapters" / "a.ipynb").write_text(json.dumps(nb))
    assert cn.check(tmp_path) == 0


def test_launch_buttons_open_the_converted_notebooks():
    sys.path.insert(0, str(ROOT / "tools" / "sphinx"))
    import reading

    assert reading.notebooks_branch("main") == "notebooks"
    assert reading.notebooks_branch("v0.3.0") == "notebooks-v0.3.0"
    buttons = [{"type": "group", "buttons": [
        {"url": "https://colab.research.google.com/github/o/r/blob/main/chapters/a.ipynb"},
        {"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/chapters/a.ipynb"},
        {"url": "https://github.com/o/r/blob/main/chapters/a.ipynb"}]}]
    reading._rewrite(buttons, "main", "notebooks")
    urls = [b["url"] for b in buttons[0]["buttons"]]
    assert urls[0].endswith("/blob/notebooks/chapters/a.ipynb")
    assert "/v2/gh/o/r/notebooks?urlpath=" in urls[1]
    assert urls[2].endswith("/blob/main/chapters/a.ipynb")  # the source link is unchanged
