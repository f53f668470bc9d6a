"""The PDF edition without TeX: the LaTeX the Sphinx extension writes (tools/sphinx/pdf_edition.py), the pure
parts of the PDF check (tools/pdf_check.py) and of the student PDF's leak check, and the wiring (Makefile,
config, CI). `make pdf` builds and checks the real PDF (run by .ci/run)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "sphinx"))
sys.path.insert(0, str(ROOT / "tools"))
import pdf_check  # noqa: E402
import pdf_edition  # noqa: E402
import student  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()


# --- the extension's pure parts ---------------------------------------------------------------------

def test_mathjax_macros_are_defined_for_latex():
    cfg = SimpleNamespace(mathjax3_config={"tex": {"macros": {"R": "\\mathbb{R}", "norm": ["\\lVert #1\\rVert", 1]}}})
    tex = pdf_edition.mathjax_macros_as_latex(cfg)
    assert "\\providecommand{\\R}{}\\renewcommand{\\R}{\\mathbb{R}}" in tex
    assert "\\renewcommand{\\norm}[1]{\\lVert #1\\rVert}" in tex
    # The book's own config: every MathJax macro it declares gets a LaTeX definition.
    book = SimpleNamespace(mathjax3_config=CONFIG["sphinx"]["config"]["mathjax3_config"])
    for name in CONFIG["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]:
        assert f"\\renewcommand{{\\{name}}}" in pdf_edition.mathjax_macros_as_latex(book)


def test_title_page_version():
    assert pdf_edition.release_line("v0.3.0", "v0.3.0") == "0.3.0"
    assert pdf_edition.release_line("v0.3.0", "main") == "0.3.0+ (main)"
    assert pdf_edition.release_line("", "main") == ""


@pytest.mark.parametrize("rows", [
    [["a", "b"], ["1", "2"]],
    [["seed", "final loss", "monotone", "entropy", "usage > 1", "link 2 corr", "rise, A>0", "rise, A<0", "link 3",
      "score sign", "value cos", "norm growth", "PC 1 share"],
     ["0", "2.146", "0", "0.80", "2", "0.12", "57%", "43%", "100%", "55%", "0.951", "2.0", "0.992"]],
    [["configuration", "schedule", "train loss", "heldout loss", "train acc", "heldout acc", "heldout entropy",
      "KL(Bayes‖model) train", "KL(Bayes‖model) heldout", "memorizing"],
     ["paper reading", "em"] + ["1.9670 ± 0.0181"] * 7 + ["0 of 5"]],
])
def test_table_layout_fits_the_text_width(rows):
    for width in (pdf_edition.TEXT_WIDTH_PT, pdf_edition.TEXT_WIDTH_PT - 20):
        command, sep, shares, fits = pdf_edition.table_layout(rows, width)
        assert fits and len(shares) == len(rows[0]) and sum(shares) <= 1 + 1e-9
        size = {c: s for c, s, _ in pdf_edition.TABLE_SIZES}[command]
        room = width - len(shares) * (2 * sep + 0.4)
        # every column at least as wide as its widest unbreakable piece at the chosen size
        for j, share in enumerate(shares):
            least = max(pdf_edition._cell_widths(r[j])[0] for r in rows)
            assert share * room >= size * least, (j, share * room, size * least)


def test_small_tables_keep_their_natural_widths_and_wide_ones_shrink():
    small = pdf_edition.table_layout([["x", "y"], ["1", "2"]])
    assert small[0] == r"\small" and sum(small[2]) < 0.2
    wide = pdf_edition.table_layout([[f"column {k}" for k in range(13)], ["0.123456"] * 13])
    assert wide[0] in (r"\footnotesize", r"\scriptsize")


def test_long_identifiers_may_break_after_underscores_and_brackets():
    assert pdf_edition._pieces("include_diagonal_in_normalization") == ["include_", "diagonal_", "in_", "normalization"]
    assert pdf_edition._pieces("KL(Bayes‖model)") == ["KL(", "Bayes‖", "model)"]
    assert pdf_edition._pieces("1.9670") == ["1.9670"]  # numbers never break


SPHINX_DOCS = {
    "index.rst": """
        The book
        ========

        Front page text.

        .. toctree::
           :numbered:
           :caption: Numbered

           one

        .. toctree::
           :caption: Companion

           companion
        """,
    "one.rst": """
        One
        ===

        .. math::

           a = b + c

        .. list-table::
           :header-rows: 1

           * - name
             - include_diagonal_in_normalization
           * - 1.9670 ± 0.0181
             - 2
        """,
    "companion.rst": """
        Companion
        =========

        Text.
        """,
}


@pytest.fixture(scope="module")
def latex_source(tmp_path_factory):
    """A two-chapter Sphinx project built with the LaTeX builder and the extension (no TeX run)."""
    from sphinx.application import Sphinx

    src = tmp_path_factory.mktemp("src")
    (src / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tools' / 'sphinx')!r})
        extensions = ["pdf_edition"]
        project = "T"
        latex_documents = [("index", "book.tex", "T", "A", "manual")]
        mathjax3_config = {{"tex": {{"macros": {{"R": "\\\\mathbb{{R}}"}}}}}}
        """))
    for name, text in SPHINX_DOCS.items():
        (src / name).write_text(textwrap.dedent(text))
    out = tmp_path_factory.mktemp("latex")
    app = Sphinx(str(src), str(src), str(out), str(out / ".doctrees"), "latex", status=None, warning=None,
                 freshenv=True)
    app.build()
    return (out / "book.tex").read_text()


def test_chapters_are_numbered_as_on_the_site(latex_source):
    tex = latex_source
    assert tex.index(r"\iemNumberedChapter{1}") < tex.index(r"\chapter{One}")
    assert tex.index(r"\iemUnnumberedChapter") < tex.index(r"\chapter{Companion}")
    assert r"\newcommand{\iemNumberedChapter}" in tex and r"\renewcommand{\R}{\mathbb{R}}" in tex


def test_tables_get_column_widths_and_equations_fit(latex_source):
    tex = latex_source
    assert re.search(r"\\def\\iemTableSize\{\\(small|footnotesize|scriptsize)\}", tex)
    assert r">{\raggedright\arraybackslash}p{\dimexpr(\linewidth-" in tex
    assert r"include\_\allowbreak{}diagonal\_\allowbreak{}in\_\allowbreak{}normalization" in tex
    assert r"\begin{equation*}\iemFitWidth{\begin{aligned}a = b + c\end{aligned}}\end{equation*}" in tex


def test_the_site_links_the_pdf_from_the_download_menu():
    group = {"type": "group", "label": "download-buttons", "buttons": []}
    ctx = {"header_buttons": [group], "pathto": lambda name, resource=0: f"../{name}"}
    pdf_edition._pdf_link(None, "chapters/x", "page.html", ctx, None)
    (button,) = group["buttons"]
    assert button["url"] == "../book.pdf" and "pdf" in button["text"].lower()


# --- the PDF check's pure parts -------------------------------------------------------------------------

def test_latex_contents_file_is_read(tmp_path):
    (tmp_path / "book.toc").write_text(
        "\\contentsline {part}{The result}{5}{part*.2}%\n"
        "\\contentsline {chapter}{\\numberline {1}Introduction: clustering that nobody programmed}{7}{chapter.1}%\n"
        "\\contentsline {section}{\\numberline {1.1}Learning objectives}{7}{section.1.1}%\n"
        "\\contentsline {chapter}{The M\\sphinxhyphen {}step read three ways}{179}{chapter*.30}%\n")
    assert pdf_check.latex_toc(tmp_path) == [
        ("part", "", "The result"), ("chapter", "1", "Introduction: clustering that nobody programmed"),
        ("chapter", "", "The M-step read three ways")]


def test_toc_entries_number_the_chapters_of_numbered_parts():
    entries = pdf_check.toc_entries(ROOT)
    numbers = {Path(e["file"]).name: e["number"] for e in entries}
    assert numbers["08_em_vs_sgd"] == 8 and numbers["08b_m_step_readings"] is None
    assert numbers["09_failure_modes"] == 9 and numbers["10_open_directions"] == 10
    assert entries[0]["file"] == "chapters/index" and all(e["title"] for e in entries)


@pytest.mark.parametrize("line", [r"where \frac{a}{b} stays", "the value $x_i$ here", "see {ref}`fig-1`",
                                  "```{note}", ":::{admonition} x", "(fig-label)=", r"a \(x\) b", "{{ value }}"])
def test_raw_latex_and_myst_are_found(line):
    assert any(rx.search(line) for _, rx in pdf_check.RAW_PATTERNS), line


@pytest.mark.parametrize("line", ["The gradient is −r_j, and it costs $5 or 6 dollars.", "a {set} of values",
                                  "Fig. 3.2: the loss (minimized).", "x ∈ ℝ², 𝜕𝐿/𝜕𝑑𝑗 = −𝑟𝑗"])
def test_plain_text_is_not_raw(line):
    assert not any(rx.search(line) for _, rx in pdf_check.RAW_PATTERNS), line


def test_code_is_whitelisted(tmp_path):
    nb = {"cells": [
        {"cell_type": "code", "source": 'ax.set_ylabel(r"$\\partial L$")', "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "cost: $5 ?? $6\n"}]},
        {"cell_type": "markdown", "source": "Call `f(r\"\\alpha\")` here.\n\n```python\nprint('\\\\x')\n```\n"},
    ]}
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    blob = pdf_check._squash(pdf_check.code_whitelist([tmp_path / "a.ipynb"]))
    for line in ['ax.set_ylabel(r"$\\partial L$")', "cost: $5 ?? $6", 'f(r"\\alpha")', "print('\\\\x')"]:
        assert pdf_check._squash(line) in blob, line


def test_html_figures_are_counted_inside_the_article_only(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "x.html").write_text(
        '<header><img src="logo.png"></header><article class="bd-article"><figure><img src="a.png"></figure>'
        '<p><img src="b.png"></p></article><footer><img src="c.png"></footer>')
    assert pdf_check.html_figures(tmp_path, [{"file": "chapters/x"}]) == {"chapters/x": 2}


def test_student_pdf_leak_check_bites():
    path = sorted((ROOT / "chapters").glob("0*.ipynb"))[0]
    nb = json.loads(path.read_text())
    frag = student.solution_texts(nb)[0]
    chapters = path.parent
    # a fragment broken over two lines with a hyphenation and curly quotes still counts
    half = len(frag) // 2
    leaked = f"Exercise 1.1 text\n{frag[:half]}-\n{frag[half:].replace(chr(39), '’')}\n"
    problems = student.check_pdf_text(leaked, chapters)
    assert any("solution text" in p for p in problems)
    assert any("heading" in p for p in student.check_pdf_text("Exercise 1\nSolution to Exercise 1\n", chapters))
    assert student.check_pdf_text("Exercise 1.1: only the question.\n", chapters) == []


# --- the wiring -------------------------------------------------------------------------------------------

def test_make_pdf_builds_from_the_executed_stage_with_debian_tex():
    assert re.search(r"^pdf: setup tex$", MAKEFILE, flags=re.M) and re.search(r"^tex:$", MAKEFILE, flags=re.M)
    rule = MAKEFILE[MAKEFILE.index("\npdf: "):].split("\n\n")[0]
    assert "--builder pdflatex" in rule and "$(STAGE)" in rule and "--nbmake" not in rule
    assert "tools/pdf_check.py" in rule and "_build/html/book.pdf" in rule and "_build/screenshots/pdf" in rule
    packages = re.search(r"TEX_PACKAGES \?= ((?:.*\\\n)*.*)", MAKEFILE).group(1).replace("\\\n", " ").split()
    assert "texlive-xetex" in packages and "latexmk" in packages and "poppler-utils" in packages
    assert "texlive-fonts-extra" not in packages  # 500 MB; tools/sphinx/texmf/bbm.sty stands in
    assert (ROOT / "tools" / "sphinx" / "texmf" / "bbm.sty").is_file()


def test_config_builds_one_xelatex_pdf_named_book():
    assert CONFIG["latex"]["latex_engine"] == "xelatex"
    assert CONFIG["latex"]["latex_documents"]["targetname"] == "book.tex"
    assert CONFIG["sphinx"]["local_extensions"]["pdf_edition"] == "tools/sphinx"
    sphinx = CONFIG["sphinx"]["config"]
    assert sphinx["latex_additional_files"] == ["tools/sphinx/texmf/bbm.sty"]
    assert "DejaVu" in sphinx["latex_elements"]["fontpkg"] and "footnotesize" in sphinx["latex_elements"]["fvset"]


def test_student_edition_has_its_pdf_checked_for_solutions():
    rule = MAKEFILE[MAKEFILE.index("\nstudent: "):].split("\n\n")[0]
    assert "--builder pdflatex" in rule and "$(STUDENT)/book.pdf" in rule
    assert "tools/student.py check-pdf" in rule and "tools/pdf_check.py" in rule


def test_ci_and_pages_build_the_pdf():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make browser-test") < ci.index("make pdf") and "make tex" in ci
    pages = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    runs = [s.get("run", "") for job in pages["jobs"].values() for s in job.get("steps", [])]
    i_html = next(i for i, r in enumerate(runs) if r.startswith("make html"))
    i_pdf = next(i for i, r in enumerate(runs) if r.startswith("make pdf"))
    assert i_html < i_pdf and any("make tex" in r for r in runs[:i_pdf])
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    on = release.get("on", release.get(True))
    assert on["push"]["tags"] and release["permissions"]["contents"] == "write"
    rruns = "\n".join(s.get("run", "") for job in release["jobs"].values() for s in job.get("steps", []))
    assert "make pdf" in rruns and "gh release create" in rruns and "tools/release.py notes" in rruns
