#!/usr/bin/env python
"""The student edition: the book and its notebooks without the solutions.

    python tools/student.py notebooks SRC OUT      # student notebooks (solutions removed) from SRC/*.ipynb
    python tools/student.py stage EXECUTED OUT     # a Jupyter Book source tree for the student HTML
    python tools/student.py check-html HTML CHAPTERS   # exit 1 if a solution reached the student HTML
    python tools/student.py check-pdf PDF CHAPTERS     # exit 1 if a solution reached the student PDF

Every exercise's solution is a *gated* block (sphinx-exercise): a markdown cell opening
``{solution-start}``, the solution's code cells, and a markdown cell ``{solution-end}``. The
student edition drops those cells, and any ungated ``{solution}`` directive, and keeps everything
else (the exercise, the reader's ``answer = ...`` cell and its checker). The HTML is built from the
student notebooks with sphinx-exercise's ``hide_solutions: true`` as a second guard: that option
alone hides ungated solutions but not the code cells of a gated one, which is why the notebooks
are stripped first. ``make student`` runs these steps, builds the student PDF from the same sources and
checks its text the same way.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_UNGATED = re.compile(r"(`{3,}|:{3,})\{solution\}.*?\n\1[ \t]*(\n|$)", re.S)
_GENERIC = {"feedback", "assert feedback, feedback"}
#: Pages of the book that the student edition leaves out.
INSTRUCTOR_ONLY = ("instructors.md",)


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _set_src(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def solution_blocks(nb: dict) -> list[list[dict]]:
    """The cells of each gated solution, ``{solution-start}`` to ``{solution-end}`` inclusive."""
    blocks: list[list[dict]] = []
    cur: list[dict] | None = None
    for c in nb["cells"]:
        src = _src(c)
        if c["cell_type"] == "markdown" and "{solution-start}" in src:
            cur = [c]
            if "{solution-end}" in src:
                blocks.append(cur)
                cur = None
            continue
        if cur is not None:
            cur.append(c)
            if c["cell_type"] == "markdown" and "{solution-end}" in src:
                blocks.append(cur)
                cur = None
    if cur is not None:
        raise ValueError("a {solution-start} without its {solution-end}")
    return blocks


def student_notebook(nb: dict, *, keep_outputs: bool = False) -> dict:
    """A copy of ``nb`` without its solutions (gated blocks and ungated ``{solution}`` directives)."""
    nb = json.loads(json.dumps(nb))
    drop = {id(c) for block in solution_blocks(nb) for c in block}
    cells = []
    for c in nb["cells"]:
        if id(c) in drop:
            continue
        if c["cell_type"] == "markdown" and "Each folded solution" in _src(c):
            _set_src(c, re.sub(r" ?Each folded solution[^.]*\.", "", _src(c)))
        if c["cell_type"] == "markdown" and "{solution}" in _src(c):
            text = _UNGATED.sub("", _src(c)).strip()
            if not text:
                continue
            _set_src(c, text)
        if c["cell_type"] == "code" and not keep_outputs:
            c["outputs"], c["execution_count"] = [], None
        cells.append(c)
    nb["cells"] = cells
    nb.setdefault("metadata", {})["iemlib_edition"] = "student"
    return nb


def _plain(text: str) -> str:
    text = re.sub(r"[`*_]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def solution_texts(nb: dict, *, min_len: int = 28) -> list[str]:
    """Distinctive fragments of the solutions: code lines and prose sentences without math."""
    out: list[str] = []
    for block in solution_blocks(nb):
        for c in block:
            src = _src(c)
            if c["cell_type"] == "code":
                for ln in src.splitlines():
                    ln = ln.strip()
                    if len(ln) >= min_len // 2 and not ln.startswith("#") and ln not in _GENERIC:
                        out.append(re.sub(r"\s+", " ", ln))
            else:
                body = re.sub(r"```\{solution-(start|end)\}[^\n]*\n(:class:[^\n]*\n)?(```)?", "", src)
                for sentence in re.split(r"(?<=[.:;!?])\s+", body):
                    if "$" in sentence or "{" in sentence:
                        continue
                    p = _plain(sentence)
                    if len(p) >= min_len:
                        out.append(p)
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            for m in _UNGATED.finditer(_src(c)):
                for sentence in re.split(r"(?<=[.:;!?])\s+", m.group(0)):
                    p = _plain(sentence)
                    if len(p) >= min_len and "$" not in sentence and "{" not in sentence:
                        out.append(p)
    return out


def write_notebooks(src: Path, out: Path, *, keep_outputs: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in sorted(src.glob("*.ipynb")):
        nb = student_notebook(json.loads(p.read_text()), keep_outputs=keep_outputs)
        q = out / p.name
        q.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(q)
    return written


def _same_sources(a: dict, b: dict) -> bool:
    return [(c["cell_type"], _src(c)) for c in a["cells"]] == [(c["cell_type"], _src(c)) for c in b["cells"]]


def stage(executed: Path, out: Path, chapters: Path = ROOT / "chapters") -> list[str]:
    """A book source tree in ``out``: config with solutions hidden and execution off, the toc, the
    Markdown pages and bibliography, and a student notebook per chapter. A chapter's executed copy in
    ``executed`` (``make book``'s ``_stage/chapters``) is used, outputs kept, when its cells are those
    of the committed notebook; otherwise the committed notebook is used, without outputs.
    Returns the names of the chapters taken from ``executed``."""
    if out.exists():
        shutil.rmtree(out)
    (out / "chapters").mkdir(parents=True)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["title"] = f"{cfg.get('title', '')} (student edition)"
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    cfg.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    (out / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    # Local Sphinx extensions named in the config (e.g. the offline MathJax one) travel with it.
    for path in sorted(set((cfg.get("sphinx", {}).get("local_extensions") or {}).values())):
        if (ROOT / path).is_dir():
            shutil.copytree(ROOT / path, out / path)
    # The instructor's guide (rubrics, misconceptions, which mistake each exercise targets) stays out.
    toc = (ROOT / "_toc.yml").read_text()
    (out / "_toc.yml").write_text(re.sub(r"^\s*- file: chapters/instructors\s*\n", "", toc, flags=re.M))
    for p in chapters.iterdir():
        if p.name in INSTRUCTOR_ONLY:
            continue
        if p.suffix == ".md":
            text = re.sub(r"\{doc\}`[^`]*instructors>?`", "the instructor's guide (not part of the student edition)",
                          p.read_text())
            (out / "chapters" / p.name).write_text(text)
        elif p.suffix == ".bib" or p.is_dir() and not p.name.startswith((".", "_")):
            (shutil.copytree if p.is_dir() else shutil.copy)(p, out / "chapters" / p.name)
    used = []
    for p in sorted(chapters.glob("*.ipynb")):
        nb = json.loads(p.read_text())
        ex = executed / p.name
        if ex.exists():
            enb = json.loads(ex.read_text())
            if _same_sources(nb, enb):
                nb = enb
                if any(c.get("outputs") for c in enb["cells"] if c["cell_type"] == "code"):
                    used.append(p.name)
        snb = student_notebook(nb, keep_outputs=True)
        (out / "chapters" / p.name).write_text(json.dumps(snb, indent=1, ensure_ascii=False) + "\n")
    return used


def _html_text(path: Path) -> str:
    raw = path.read_text(errors="replace")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", raw)))


def check_html(html_dir: Path, chapters: Path) -> list[str]:
    """Problems: a chapter page missing, a solution admonition, or a solution fragment in the text."""
    problems = []
    for p in sorted(chapters.glob("*.ipynb")):
        page = html_dir / "chapters" / f"{p.stem}.html"
        if not page.exists():
            problems.append(f"{page}: missing")
            continue
        raw = page.read_text(errors="replace")
        if re.search(r'class="[^"]*\bsolution\b', raw):
            problems.append(f"{page.name}: a solution admonition is in the page")
        if "exercise" not in raw:
            problems.append(f"{page.name}: no exercise in the page")
        text = _html_text(page)
        for frag in solution_texts(json.loads(p.read_text())):
            if frag in text:
                problems.append(f"{page.name}: solution text {frag[:70]!r}")
    return problems


_TYPOGRAPHY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "␣": None, "↪": None})


def _squashed(text: str) -> str:
    """Text without white space and hyphens, quotes made straight: what survives the PDF's line breaks,
    hyphenation, wrapped code lines and typography (case and other punctuation kept)."""
    return re.sub(r"[\s\-\u00ad]+", "", text.translate(_TYPOGRAPHY))


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def check_pdf_text(text: str, chapters: Path, name: str = "book.pdf") -> list[str]:
    """Problems: a solution's heading, or a solution fragment, in the text of the student PDF."""
    problems = []
    if re.search(r"Solution to Exercise", text):
        problems.append(f"{name}: a solution heading is in the text")
    if "exercise" not in text.lower():
        problems.append(f"{name}: no exercise in the text")
    flat = _squashed(text)
    for p in sorted(chapters.glob("*.ipynb")):
        for frag in solution_texts(json.loads(p.read_text())):
            if _squashed(frag) in flat:
                problems.append(f"{name}: {p.name}: solution text {frag[:70]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("notebooks")
    a.add_argument("src", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--keep-outputs", action="store_true")
    b = sub.add_parser("stage")
    b.add_argument("executed", type=Path, help="executed notebooks to reuse where they match (e.g. _stage/chapters)")
    b.add_argument("out", type=Path)
    c = sub.add_parser("check-html")
    c.add_argument("html", type=Path)
    c.add_argument("chapters", type=Path)
    d = sub.add_parser("check-pdf")
    d.add_argument("pdf", type=Path)
    d.add_argument("chapters", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "notebooks":
        for q in write_notebooks(args.src, args.out, keep_outputs=args.keep_outputs):
            print(q)
        return 0
    if args.cmd == "stage":
        used = stage(args.executed, args.out)
        print(f"student book sources in {args.out}; executed outputs reused for {len(used)} chapters: "
              f"{', '.join(used) or 'none (built without outputs)'}")
        return 0
    n = len(list(args.chapters.glob("*.ipynb")))
    if args.cmd == "check-pdf":
        problems = check_pdf_text(pdf_text(args.pdf), args.chapters, args.pdf.name)
        where = f"student PDF {args.pdf}"
    else:
        problems = check_html(args.html, args.chapters)
        where = f"student HTML in {args.html}"
    for pr in problems:
        print("LEAK:", pr, file=sys.stderr)
    if not problems:
        print(f"{where}: no solution text found in {n} chapters")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
