"""Checks of the book's structure: one repository URL, stripped notebooks, the template, the toc."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
# Chapters (and their companions, e.g. 08b) carry exercises; an engineering appendix does not.
EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("appendix_")]


def _toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def _markdown(nb: dict) -> str:
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
    )


def test_repository_url_is_set_once_and_launch_buttons_derive_from_it():
    url = nbtools.repository_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["launch_buttons"]["binderhub_url"].startswith("https://")
    assert CONFIG["html"]["use_repository_button"] is True
    # The README's GitHub and Colab links name the same repository.
    readme = (ROOT / "README.md").read_text()
    owner_repo = url.removeprefix("https://github.com/")
    for m in re.finditer(r"github(?:\.com)?/([\w.-]+/[\w.-]+)", readme):
        assert m.group(1) == owner_repo, f"README names {m.group(1)}, _config.yml names {owner_repo}"


def test_setup_cell_is_derived_from_the_repository_url_and_pins_the_release():
    url, ref = nbtools.repository_url(), nbtools.iemlib_ref()
    src = nbtools.setup_source(url, ref)
    assert f"git+{url}@{ref}" in src
    assert "%pip install" in src
    # The pin is the release of this very version of the package: one version string, in iemlib.
    import iemlib

    assert ref == f"v{iemlib.__version__}", (ref, iemlib.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "iemlib.__version__"}' in pyproject


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_in_sync(path):
    nb = json.loads(path.read_text())
    assert nbtools.problems(nb, nbtools.repository_url(), nbtools.iemlib_ref()) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_template(path):
    nb = json.loads(path.read_text())
    first = nb["cells"][0]
    first_src = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    # The H1 title, preceded by the chapter's label, which prose cites with {numref} or {ref}.
    m = re.match(r"\((ch|app)-[a-z0-9-]+\)=\n# ", first_src)
    assert first["cell_type"] == "markdown" and m, "first cell must be the chapter's label and its H1 title"
    md = _markdown(nb)
    assert len(re.findall(r"^# ", md, flags=re.M)) == 1, "exactly one H1"
    has_exercises = path in EXERCISE_NOTEBOOKS
    for heading in ("## Learning objectives", "## Summary") + (("## Exercises",) if has_exercises else ()):
        assert heading in md, f"missing section {heading!r}"
    assert "Prerequisites" in md
    if has_exercises:
        assert "{exercise}" in md and "{solution-start}" in md and ":class: dropdown" in md
    # No heading level is skipped (MyST warns, and the build treats warnings as errors).
    levels = [len(m.group(1)) for m in re.finditer(r"^(#{1,6}) ", md, flags=re.M)]
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), levels
    # The checkers are used.
    code = "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"] if c["cell_type"] == "code"
    )
    assert "iemlib.book.exercises" in code
    # Figures declared in cell metadata carry a caption and alt text.
    for c in nb["cells"]:
        fig = c.get("metadata", {}).get("mystnb", {}).get("figure")
        if fig is not None:
            assert fig.get("caption"), "figure without caption"
            assert c["metadata"]["mystnb"].get("image", {}).get("alt"), "figure without alt text"


def _src(c: dict) -> str:
    return "".join(c["source"]) if isinstance(c["source"], list) else c["source"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_setup_cell_and_no_placeholder_cells(path):
    """Exactly one setup cell, and no leftover template cell a reader would see."""
    nb = json.loads(path.read_text())
    setup = [c for c in nb["cells"] if c["cell_type"] == "code" and "setup" in c.get("metadata", {}).get("tags", [])]
    assert len(setup) == 1, "exactly one setup cell"
    for c in nb["cells"]:
        src = _src(c)
        assert "placeholder" not in src.lower() or c is setup[0], f"placeholder cell {c.get('id')}: {src[:60]!r}"
        if c is not setup[0] and c["cell_type"] == "code":
            assert "# Setup" not in src and "%pip install" not in src, f"second setup cell {c.get('id')}"
        assert src.strip(), f"empty cell {c.get('id')}"


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_a_gated_executed_solution(path):
    """Each {exercise} is followed by a reader's cell calling a checker, then a folded gated solution
    whose code cell asserts that the same checker accepts it (nbmake runs it in CI)."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    labels = []
    for i, c in enumerate(cells):
        src = _src(c)
        if c["cell_type"] == "markdown" and "```{exercise}" in src:
            label = re.search(r":label: (\S+)", src).group(1)
            labels.append(label)
            reader, start, sol, end = cells[i + 1:i + 5]
            assert reader["cell_type"] == "code" and "answer = ..." in _src(reader), label
            checker = re.search(r"(check_\w+)\(answer", _src(reader)).group(1)
            assert _src(start).startswith("```{solution-start} " + label) and ":class: dropdown" in _src(start), label
            assert sol["cell_type"] == "code" and f"feedback = {checker}(answer" in _src(sol), label
            assert "assert feedback, feedback" in _src(sol), label
            assert _src(end).strip().startswith("```{solution-end}"), label
        assert "```{solution}" not in src, "ungated solution: its code would not run"
    assert labels and all(lab.startswith(f"ex-ch{path.name[:2]}-") for lab in labels)
    # Every registered checker of this chapter appears in the notebook and vice versa.
    import iemlib.book.exercises as E

    registered = {lab for lab in E.registry() if lab.startswith(f"ex-ch{path.name[:2]}-")}
    # A chapter and its companions (08, 08b) share one checker module: together they use all of it.
    together = set()
    for other in EXERCISE_NOTEBOOKS:
        if other.name[:2] == path.name[:2]:
            together |= {re.search(r":label: (\S+)", _src(c)).group(1) for c in json.loads(other.read_text())["cells"]
                         if c["cell_type"] == "markdown" and "```{exercise}" in _src(c)}
    assert set(labels) <= registered and registered == together


def test_toc_and_chapters_agree():
    listed = _toc_files()
    for f in listed:
        stem = ROOT / f
        assert any(stem.with_suffix(s).exists() for s in (".md", ".ipynb")), f"{f} listed but missing"
    for nb in NOTEBOOKS:
        assert f"chapters/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_one_bibliography_directive():
    hits = []
    for p in list((ROOT / "chapters").glob("*.md")) + NOTEBOOKS:
        text = p.read_text()
        if "{bibliography}" in text:
            hits.append(p.name)
    assert hits == ["bibliography.md"]


def test_make_test_executes_notebooks_once_and_builds_strictly():
    mk = (ROOT / "Makefile").read_text()
    assert "--nbmake" in mk and "-W -n --keep-going" in mk
    assert "execute_notebooks:\\).*/\\1 \"off\"" in mk  # the staged build reuses executed notebooks
    assert "make test" in (ROOT / ".ci/run").read_text()


def _page_labels() -> dict[str, str]:
    """label -> notebook stem, from the ``(ch-...)=`` / ``(app-...)=`` line in each notebook's first cell."""
    labels = {}
    for nb_path in NOTEBOOKS:
        first = json.loads(nb_path.read_text())["cells"][0]
        m = re.search(r"^\(((?:ch|app)-[\w-]+)\)=\s*$", _src(first), flags=re.M)
        assert m, f"{nb_path.name}: no (ch-...)= label in the first cell"
        assert m.group(1) not in labels, m.group(1)
        labels[m.group(1)] = nb_path.stem
    return labels


# A chapter in a table: ``{numref}`%s. Title <ch-label>` `` (the build prints the number), or, for the unnumbered
# companions and appendices, ``{doc}`Title <stem>` `` or ``{doc}`stem` `` (the build prints the title).
_CHAPTER_CELL = re.compile(r"\{numref\}`%s\. (?P<ntitle>[^<`]*) <(?P<label>[\w-]+)>`"
                           r"|\{doc\}`(?:(?P<dtitle>[^<`]*) <)?(?P<stem>\d\d[a-z]?_\w+|appendix_\w+)>?`")


def _chapter_cells(text: str) -> list[tuple[str, str | None]]:
    """(notebook stem, title written or None) of every chapter cell, in order of appearance."""
    labels = _page_labels()
    cells = []
    for m in _CHAPTER_CELL.finditer(text):
        if m.group("label"):
            assert m.group("label") in labels, f"unknown label {m.group('label')}"
            cells.append((labels[m.group("label")], m.group("ntitle")))
        else:
            cells.append((m.group("stem"), m.group("dtitle")))
    return cells


def _title(stem: str) -> str:
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text())
    return re.search(r"^# (.+)$", _markdown(nb), flags=re.M).group(1)


def test_every_chapter_has_a_page_label_in_its_first_cell():
    labels = _page_labels()
    assert sorted(labels.values()) == sorted(p.stem for p in NOTEBOOKS)


def test_index_maps_every_chapter_in_toc_order():
    """The front page's chapter map links every notebook, in the order of the navigation bar, numbered
    chapters through their labels (the number comes from the build), the others by their file."""
    index = (ROOT / "chapters" / "index.md").read_text()
    table = "\n".join(line for line in index.splitlines() if line.startswith("| {"))
    cells = _chapter_cells(table)
    in_toc = [Path(f).name for f in _toc_files() if (ROOT / f).with_suffix(".ipynb").exists()]
    assert [stem for stem, _ in cells] == in_toc
    # Each row's title is the notebook's own title, so the map cannot drift from the chapters.
    for stem, written in cells:
        if written is not None:
            assert _title(stem).startswith(written.strip()), (stem, written, _title(stem))
    # A numbered chapter's number is printed by the build, never typed; an unnumbered page is never numref'd.
    numbered = {Path(c["file"]).name for part in TOC["parts"] if part.get("numbered") for c in part["chapters"]}
    for m in _CHAPTER_CELL.finditer(table):
        stem = _page_labels()[m.group("label")] if m.group("label") else m.group("stem")
        assert bool(m.group("label")) == (stem in numbered), f"{stem}: numref exactly the numbered chapters"


# Typed chapter, section and exercise numbers ("chapter 3", "chapters 1–3", "exercise 4.2", "ch. 9"); a number
# that is another book's says so ("chapter 9 of that book").
_TYPED_NUMBER = re.compile(r"\b(?:chapters?|exercises?|sections?|ch\.)[ -]\d+(?:\.\d+)?\b(?! of that book)", re.I)


@pytest.mark.parametrize("page", ["index.md", "instructors.md", "notation.md"])
def test_front_and_back_pages_type_no_chapter_numbers(page):
    text = (ROOT / "chapters" / page).read_text()
    prose = re.sub(r"\{(?:numref|ref|doc)\}`[^`]*`", "", text)
    assert not _TYPED_NUMBER.findall(prose), _TYPED_NUMBER.findall(prose)
    labels = set(_page_labels())
    for label in re.findall(r"\{numref\}`[^`<]*<(ch-[\w-]+)>`", text):
        assert label in labels - {"ch-m-step-readings"}, label  # numref to an unnumbered page fails the build
    exercises = set(re.findall(r":label: (ex-[\w-]+)", "".join(p.read_text() for p in NOTEBOOKS)))
    for label in re.findall(r"\{numref\}`[^`<]*<(ex-[\w-]+)>`", text):
        assert label in exercises, label


def test_notation_and_instructor_pages_are_in_the_book():
    listed = _toc_files()
    assert "chapters/notation" in listed and "chapters/instructors" in listed
    notation = (ROOT / "chapters" / "notation.md").read_text()
    for sym in ("$d_j$", "$z_j = -d_j$", "$r_j$", "$L = \\log", "$\\ell$", "$\\alpha_{ij}$", "$u_i$"):
        assert sym in notation, sym
    assert "maximized" in notation and "minimizes" in notation
    guide = (ROOT / "chapters" / "instructors.md").read_text()
    for section in ("## Learning outcomes", "## Prerequisites", "## Time per chapter", "## Three 50-minute lecture plans",
                    "## Assessments", "## The reproduction project", "## Misconceptions", "make student"):
        assert section in guide, section
    # Every chapter appears in the guide's timing table (by its label, or by its file when unnumbered).
    timing = guide.split("## Time per chapter", 1)[1].split("\n## ", 1)[0]
    timed = [stem for stem, _ in _chapter_cells(timing)]
    assert sorted(timed) == sorted(p.stem for p in NOTEBOOKS), timed


def test_chapters_are_numbered_as_their_files():
    """The rendered number of every numbered chapter (Jupyter Book counts the chapters of numbered parts in
    order) is the number its file name starts with; companions (08b) and appendices sit in unnumbered parts."""
    k = 0
    for part in TOC["parts"]:
        for ch in part["chapters"]:
            name = Path(ch["file"]).name
            if part.get("numbered"):
                k += 1
                assert re.fullmatch(rf"{k:02d}_[a-z_]+", name), f"{name} renders as chapter {k}"
            else:
                assert not re.fullmatch(r"\d\d_[a-z_]+", name), f"{name} is a numbered chapter in an unnumbered part"
    assert k == 11


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_code_line_is_wider_than_the_page(path):
    """The rendered page shows nbtools.MAX_WIDTH characters of code; a longer line is clipped. (Printed lines are
    checked on the executed notebooks by `make html`: `tools/nbtools.py widths`.)"""
    nb = json.loads(path.read_text())
    wide = [w for w in nbtools.wide_lines(nb) if "code line" in w]
    assert not wide, "\n".join(wide[:10]) + (f"\n... {len(wide)} in all" if len(wide) > 10 else "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_bookkeeping_is_folded(path):
    """Code that draws a figure is bookkeeping: its cell carries hide-input (the reader can unfold it), and the
    chapter keeps no torch.set_num_threads call (iemlib.runtime.single_threaded is the one thread rule)."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        tags = c.get("metadata", {}).get("tags", [])
        if c.get("metadata", {}).get("mystnb", {}).get("figure") is not None:
            assert "hide-input" in tags, f"figure cell {c.get('id')} is not folded (tag hide-input)"
        assert "set_num_threads" not in _src(c), f"cell {c.get('id')} sets torch's thread count"


def _discarded_tables(src: str) -> list[int]:
    """Line numbers of ``report(...)`` calls whose table a notebook would discard: a bare call that is not the
    cell's last statement (Jupyter displays only the last expression; elsewhere wrap it in ``display``)."""
    import ast

    try:
        tree = ast.parse(src)
    except SyntaxError:  # IPython magics (the setup cell)
        return []
    last = tree.body[-1] if tree.body else None
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", None) == "report" and n is not last]


def test_discarded_tables_are_found():
    assert _discarded_tables("report(rows)\nprint(1)") == [1]
    assert _discarded_tables("for k in x:\n    report(k)\nprint(1)") == [2]
    assert _discarded_tables("print(1)\nreport(rows)") == []
    assert _discarded_tables("display(report(rows))\nprint(1)") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_table_is_displayed(path):
    """A table built by iemlib.book.report shows only as a cell's last expression or inside display(...)."""
    nb = json.loads(path.read_text())
    bad = [(c.get("id"), ln) for c in nb["cells"] if c["cell_type"] == "code"
           for ln in _discarded_tables(_src(c))]
    assert not bad, f"report(...) results discarded (cell id, line): {bad}"
