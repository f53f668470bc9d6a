#!/usr/bin/env python
"""How long a chapter takes to read: counted, at stated rates, for the core and the optional parts.

    python tools/reading_time.py EXECUTED.ipynb [...]          # a table, one row per notebook
    python tools/reading_time.py --json EXECUTED.ipynb [...]   # the same as JSON
    python tools/reading_time.py --check GUIDE.md EXECUTED_DIR # the guide's table agrees (exit 1 if not)
    python tools/reading_time.py --update GUIDE.md EXECUTED_DIR  # rewrite the guide's table

The rule (the instructors' guide states it):

- prose: the words of the Markdown cells (math tokens count as words; MyST markup lines do not),
  at ``PROSE_WPM`` words a minute;
- code a reader sees: the words of code cells that are not folded (``hide-input``, ``remove-input``,
  ``remove-cell``), at ``CODE_WPM`` words a minute;
- what the cells print: stdout, Markdown/HTML tables and plain results (not stderr, not folded
  output), at ``OUTPUT_WPM`` words a minute;
- figures: ``FIGURE_MIN`` minute each.

A notebook splits into three parts by its level-2 headings: **optional** is every section whose
heading starts with "For the skeptic" (the site folds them), **exercises** is the "Exercises" section
(its statements, solutions and checker cells; the time to *work* an exercise is not estimated), and
**core** is everything else. The executed notebook is read, so that tables and figures count.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROSE_WPM = 100
CODE_WPM = 50
OUTPUT_WPM = 100
FIGURE_MIN = 1.0

SKEPTIC = "For the skeptic"
EXERCISES = "Exercises"
PARTS = ("core", "optional", "exercises")
_FOLDED = {"hide-input", "remove-input", "remove-cell"}
_MARKUP = re.compile(r"^\s*(:{3,}|`{3,})|^\s*:[\w-]+:|^\s*\([\w-]+\)=\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass
class Part:
    prose: int = 0
    code: int = 0
    output: int = 0
    figures: int = 0

    @property
    def minutes(self) -> float:
        return (self.prose / PROSE_WPM + self.code / CODE_WPM + self.output / OUTPUT_WPM
                + self.figures * FIGURE_MIN)


@dataclass
class Reading:
    notebook: str
    parts: dict[str, Part] = field(default_factory=lambda: {p: Part() for p in PARTS})

    def minutes(self, part: str) -> float:
        return self.parts[part].minutes

    def as_dict(self) -> dict:
        d = {"notebook": self.notebook}
        for p in PARTS:
            d[p] = {**asdict(self.parts[p]), "minutes": round(self.minutes(p), 1)}
        return d


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _words(text: str) -> int:
    return len(text.split())


def _prose_words(line: str) -> int:
    if _MARKUP.match(line):
        return 0
    line = re.sub(r"^\s*#{1,6}\s+", "", line)  # a heading's words, not its hashes
    line = re.sub(r"\{[\w:-]+\}`([^`]*)`", lambda m: m.group(1).split("<")[0], line)  # roles: their text
    return _words(line.replace("|", " "))


def _output_words(cell: dict) -> tuple[int, int]:
    """(words printed, figures) of a code cell's outputs."""
    words = figures = 0
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & {"remove-output", "remove-cell", "hide-output"}:
        return 0, 0
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            if out.get("name") == "stdout":
                words += _words(_src({"source": out.get("text", "")}))
            continue
        data = out.get("data", {})
        if "image/png" in data or "image/svg+xml" in data:
            figures += 1
        elif "text/markdown" in data:
            md = _src({"source": data["text/markdown"]})
            words += _words(re.sub(r"[|:\-]{3,}", " ", md).replace("|", " "))
        elif "text/html" in data:
            html = _src({"source": data["text/html"]})
            html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
            words += _words(re.sub(r"<[^>]+>", " ", html))
        elif "text/plain" in data and "application/vnd.jupyter.widget-view+json" not in data:
            words += _words(_src({"source": data["text/plain"]}))
    return words, figures


def measure(path: str | Path) -> Reading:
    """Count one executed notebook's words, code, output and figures, per part."""
    nb = json.loads(Path(path).read_text())
    reading = Reading(Path(path).stem)
    part = "core"
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in _src(cell).splitlines():
                m = _HEADING.match(line)
                if m and len(m.group(1)) <= 2:
                    title = m.group(2).strip()
                    part = ("optional" if title.startswith(SKEPTIC)
                            else "exercises" if title == EXERCISES else "core")
                reading.parts[part].prose += _prose_words(line)
        elif cell["cell_type"] == "code":
            tags = set(cell.get("metadata", {}).get("tags", []))
            if not tags & _FOLDED:
                reading.parts[part].code += _words(_src(cell))
            words, figures = _output_words(cell)
            reading.parts[part].output += words
            reading.parts[part].figures += figures
    return reading


def table(readings: list[Reading]) -> str:
    rows = ["| notebook | core (min) | optional (min) | exercises (min) | core prose words |",
            "|---|---:|---:|---:|---:|"]
    for r in readings:
        rows.append(f"| {r.notebook} | {r.minutes('core'):.0f} | {r.minutes('optional'):.0f} | "
                    f"{r.minutes('exercises'):.0f} | {r.parts['core'].prose} |")
    return "\n".join(rows)


# A row of the guide's table: ``| {doc}`... <04_unsupervised>` | core | optional | exercises | ...`` (or a label,
# ``<ch-unsupervised>``, in place of the file name).
_ROW = r"^\|[^|\n]*<([\w-]+)>`[^|\n]*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
_ROW3 = r"^(\|[^|\n]*<([\w-]+)>`[^|\n]*\|)\s*[\d—-]+\s*\|\s*[\d—-]+\s*\|\s*[\d—-]+\s*\|"


def _stems(executed: Path) -> dict[str, str]:
    """Chapter label (``ch-unsupervised``) -> notebook stem, from each notebook's first cell."""
    stems = {}
    for nb in [*sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb")), *executed.glob("*.ipynb")]:
        first = json.loads(nb.read_text())["cells"][0]
        m = re.match(r"\(([\w-]+)\)=", _src(first))
        if m:
            stems[m.group(1)] = nb.stem
    return stems


def update_guide(guide: Path, executed: Path) -> int:
    """Rewrite the core / optional / exercise minutes of the guide's rows from the executed notebooks."""
    stems = _stems(executed)
    n = 0

    def row(m: re.Match) -> str:
        nonlocal n
        nb = executed / f"{stems.get(m.group(2), m.group(2))}.ipynb"
        if not nb.exists():
            return m.group(0)
        r = measure(nb)
        n += 1
        return (f"{m.group(1)} {r.minutes('core'):.0f} | {r.minutes('optional'):.0f} | "
                f"{r.minutes('exercises'):.0f} |")

    guide.write_text(re.sub(_ROW3, row, guide.read_text(), flags=re.M))
    return n


def check_guide(guide: Path, executed: Path, tolerance: float = 1.0) -> list[str]:
    """Problems with the guide's reading-time table: rows ``| <stem-prefix> ... | core | optional |``.

    The guide lists, per notebook, the core and optional minutes in a row that starts with a
    ``{doc}`` link to the chapter; each must be within ``tolerance`` minutes of the measurement.
    """
    text = guide.read_text()
    problems = []
    found = 0
    stems = _stems(executed)
    for m in re.finditer(_ROW, text, flags=re.M):
        stem, core, optional = stems.get(m.group(1), m.group(1)), float(m.group(2)), float(m.group(3))
        nb = executed / f"{stem}.ipynb"
        if not nb.exists():
            problems.append(f"{stem}: no executed notebook {nb}")
            continue
        found += 1
        r = measure(nb)
        for name, said in (("core", core), ("optional", optional)):
            got = r.minutes(name)
            if abs(got - said) > tolerance + 0.5:
                problems.append(f"{stem}: the guide says {name} {said:.0f} min, measured {got:.1f} min")
    if found == 0:
        problems.append(f"{guide}: no reading-time rows found")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", metavar="GUIDE", help="check GUIDE's table against the notebooks in the folder given")
    ap.add_argument("--update", metavar="GUIDE", help="rewrite GUIDE's table from the notebooks in the folder given")
    args = ap.parse_args(argv)
    if args.update:
        print(f"{update_guide(Path(args.update), Path(args.paths[0]))} rows of {args.update} rewritten")
        return 0
    if args.check:
        problems = check_guide(Path(args.check), Path(args.paths[0]))
        for p in problems:
            print(p)
        print(f"reading times in {args.check}: " + ("agree" if not problems else f"{len(problems)} problem(s)"))
        return 1 if problems else 0
    readings = [measure(p) for p in args.paths]
    if args.json:
        print(json.dumps([r.as_dict() for r in readings], indent=1))
    else:
        print(f"rates: prose {PROSE_WPM} words/min, visible code {CODE_WPM} words/min, "
              f"printed output {OUTPUT_WPM} words/min, {FIGURE_MIN:g} min per figure")
        print(table(readings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
