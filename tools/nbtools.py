#!/usr/bin/env python
"""Notebook maintenance for the book.

    python tools/nbtools.py sync  chapters   # rewrite every setup cell from _config.yml
    python tools/nbtools.py strip chapters   # drop outputs, execution counts, widget state
    python tools/nbtools.py check chapters   # exit 1 if a notebook is unstripped or out of sync
    python tools/nbtools.py widths _stage/chapters   # exit 1 if a code or printed line is too wide

The repository URL lives once, in ``_config.yml`` (``repository.url``), and so does the version of
iemlib the chapters are written for (``iemlib_ref``: a release tag, which the release process sets,
never a moving branch). Every notebook's first code cell (tagged ``setup`` and ``hide-output``)
installs iemlib at that tag from that URL when it is missing (Colab, Binder), so that a page opened
from a release runs the library of that release; ``sync`` regenerates that cell,
``tests/test_book.py`` checks it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SETUP_TAGS = ["setup", "hide-output"]


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """The book's repository URL, as set in ``_config.yml``."""
    cfg = yaml.safe_load(config.read_text())
    return str(cfg["repository"]["url"]).rstrip("/")


def iemlib_ref(config: Path = ROOT / "_config.yml") -> str:
    """The tag (or commit) of this repository whose iemlib the setup cells install."""
    cfg = yaml.safe_load(config.read_text())
    ref = str(cfg.get("iemlib_ref", "")).strip()
    if not ref or ref in {"main", "master", "HEAD"}:
        raise ValueError(f"_config.yml: iemlib_ref must name a release tag or a commit, got {ref!r}")
    return ref


def setup_source(url: str, ref: str) -> str:
    """The setup cell every notebook starts its code with, derived from ``url`` and ``ref``."""
    return (
        "# Setup: use the installed iemlib, or install the version this book was written for\n"
        "# from its repository (on Colab or Binder this takes about a minute the first time).\n"
        "try:\n"
        "    import iemlib\n"
        "except ImportError:\n"
        f'    IEMLIB = "git+{url}@{ref}"\n'
        '    %pip install --quiet "iemlib @ {IEMLIB}"\n'
        "    import iemlib"
    )


def notebooks(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.rglob("*.ipynb")) if p.is_dir() else [p])
    return [p for p in out if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts]


def setup_cell(nb: dict) -> dict | None:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "setup" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def strip(nb: dict) -> dict:
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    return nb


def sync(nb: dict, url: str, ref: str) -> dict:
    cell = setup_cell(nb)
    src = setup_source(url, ref)
    if cell is None:
        first_code = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
        cell = {"cell_type": "code", "execution_count": None, "id": "setup", "metadata": {}, "outputs": [], "source": ""}
        nb["cells"].insert(first_code, cell)
    cell["source"] = src
    if nb.get("nbformat_minor", 0) >= 5 or nb.get("nbformat", 4) > 4:
        ids = {c.get("id") for c in nb["cells"] if c is not cell}
        if not cell.get("id") or cell["id"] in ids:
            cell["id"] = "setup" if "setup" not in ids else "setup-cell"
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    for t in SETUP_TAGS:
        if t not in tags:
            tags.append(t)
    return nb


def problems(nb: dict, url: str, ref: str) -> list[str]:
    out = []
    if "widgets" in nb.get("metadata", {}):
        out.append("widget state in metadata")
    if any(c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb["cells"]):
        out.append("outputs or execution counts committed")
    cell = setup_cell(nb)
    if cell is None:
        out.append("no setup cell tagged 'setup'")
    else:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if src != setup_source(url, ref):
            out.append("setup cell differs from the one derived from _config.yml (run make sync)")
        if "hide-output" not in cell.get("metadata", {}).get("tags", []):
            out.append("setup cell not tagged hide-output")
    return out


#: The widest code or printed line the rendered page shows without clipping (characters).
MAX_WIDTH = 88


def _lines(text: str | list[str]) -> list[str]:
    return ("".join(text) if isinstance(text, list) else text).split("\n")


def wide_lines(nb: dict, limit: int = MAX_WIDTH) -> list[str]:
    """Code lines, and lines a cell prints (stdout, plain-text results, errors), wider than ``limit``.

    Markdown results (tables) are left out: the page renders them as tables, not as fixed-width
    text. Each entry names the cell (its id) and the line's start.
    """
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        cid = cell.get("id", "?")
        for ln in _lines(cell["source"]):
            if len(ln) > limit:
                out.append(f"cell {cid}: code line of {len(ln)} characters: {ln[:60]!r}")
        for o in cell.get("outputs", []):
            texts = []
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                texts = _lines(o.get("text", ""))
            elif o.get("output_type") in ("execute_result", "display_data"):
                data = o.get("data", {})
                if "text/plain" in data and not ({"text/markdown", "text/html", "image/png"} & set(data)):
                    texts = _lines(data["text/plain"])
            for ln in texts:
                if len(ln) > limit:
                    out.append(f"cell {cid}: printed line of {len(ln)} characters: {ln[:60]!r}")
    return out


def _write(path: Path, nb: dict) -> None:
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"sync", "strip", "check", "widths"}:
        print(__doc__)
        return 2
    cmd, paths = argv[0], argv[1:]
    url, ref = repository_url(), iemlib_ref()
    bad = 0
    for path in notebooks(paths):
        nb = json.loads(path.read_text())
        if cmd == "widths":
            for p in wide_lines(nb):
                print(f"{path}: {p}")
                bad += 1
            continue
        if cmd == "check":
            for p in problems(nb, url, ref):
                print(f"{path}: {p}")
                bad += 1
            continue
        if cmd == "sync":
            nb = sync(nb, url, ref)
        _write(path, strip(nb))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
