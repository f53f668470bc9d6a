#!/usr/bin/env python
"""Did a change move any number the book prints?  Execute the chapters before and after, and diff.

    python tools/output_diff.py execute OUT_DIR [--tree PATH] [--jobs 2] [NOTEBOOK ...]
    python tools/output_diff.py compare BEFORE_DIR AFTER_DIR [--show 40]
    python tools/output_diff.py check --rev REV [--jobs 2] [NOTEBOOK ...]

``execute`` runs the chapters of a source tree (default: this checkout; ``--tree`` another one,
e.g. a ``git worktree`` of an older commit) in a temporary copy, with that tree's ``iemlib`` first
on ``PYTHONPATH``, and writes the executed notebooks to ``OUT_DIR``. ``compare`` reads two such
folders and, per notebook, lists the printed numbers that differ. ``check --rev REV`` does both:
it executes ``REV`` (in a temporary worktree) and this checkout, and compares them.

What counts as printed: the text a reader sees under a cell (stdout, ``text/markdown`` or
``text/plain`` results), never stderr (progress bars) or images. Wall-clock timings are masked
(a number followed by ``s``, ``ms``, ``min``, ``seconds``, ``it/s``, ``run-step``...). Numbers are
compared as they are printed, in order; a number that only moved (a table transposed, a line
wrapped) is matched wherever it went, so what is reported is a number that appears on one side
and not the other. Exit status 1 when any notebook differs.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A number: optional sign, digits with an optional fraction (or a bare fraction ".0171"), optional
# exponent. Hyphens inside words (e.g. "ex-ch01-2") are not signs.
NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
# A timing: the number before a unit of time or of speed.
TIMING = re.compile(
    r"(?<![\w.])(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?\s*"
    r"(?:s|ms|µs|us|min|sec|secs|seconds?|minutes?|h|it/s|run-steps?/s)\b(?!-)"
    r"|(?<![\w.])\d+(?:\.\d+)?\s*ms per run-step"
    r"|\(\s*\d+(?:\.\d+)?\s*ms\b"
)


# A line that reports the machine's load (it differs between any two runs).
LOAD = re.compile(r"load average", re.I)


def printed_text(nb: dict) -> list[str]:
    """The text each code cell prints, one string per cell (stderr and images left out)."""
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                if o.get("name") == "stdout":
                    parts.append("".join(o.get("text", "")))
            elif o.get("output_type") in ("execute_result", "display_data"):
                data = o.get("data", {})
                for mime in ("text/markdown", "text/latex", "text/plain"):
                    if mime in data:
                        parts.append("".join(data[mime]))
                        break
            elif o.get("output_type") == "error":
                parts.append("ERROR " + o.get("ename", "") + ": " + o.get("evalue", ""))
        out.append("\n".join(parts))
    return out


def numbers(text: str) -> list[str]:
    """The numbers in ``text`` as printed (timings and load averages masked), ASCII signs."""
    text = "\n".join(ln for ln in text.splitlines() if not LOAD.search(ln))
    text = TIMING.sub(" <time> ", text)
    return [t.replace("−", "-") for t in NUMBER.findall(text)]


def _canon(tok: str) -> str:
    """A printed number in canonical form: '.0171' and '0.0171' are the same printed value."""
    t = tok.lstrip("+")
    neg = t.startswith("-")
    t = t.lstrip("-")
    if t.startswith("."):
        t = "0" + t
    return ("-" if neg and t.strip("0.eE+-") else "") + t


def diff_numbers(before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """Numbers only in ``before`` and only in ``after`` (as multisets, after aligning in order)."""
    a = [_canon(t) for t in before]
    b = [_canon(t) for t in after]
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    gone, new = [], []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            gone += a[i1:i2]
            new += b[j1:j2]
    # A number that moved appears in both lists: cancel those.
    cg, cn = collections.Counter(gone), collections.Counter(new)
    common = cg & cn
    return list((cg - common).elements()), list((cn - common).elements())


def compare(before_dir: Path, after_dir: Path, show: int = 40) -> int:
    names = sorted({p.name for p in before_dir.glob("*.ipynb")} | {p.name for p in after_dir.glob("*.ipynb")})
    bad = 0
    for name in names:
        pa, pb = before_dir / name, after_dir / name
        if not pa.exists() or not pb.exists():
            print(f"{name}: only in {'after' if not pa.exists() else 'before'}")
            bad += 1
            continue
        ta = "\n".join(printed_text(json.loads(pa.read_text())))
        tb = "\n".join(printed_text(json.loads(pb.read_text())))
        na, nb_ = numbers(ta), numbers(tb)
        gone, new = diff_numbers(na, nb_)
        errors = [ln for ln in tb.splitlines() if ln.startswith("ERROR ")]
        if not gone and not new and not errors:
            print(f"{name}: {len(na)} printed numbers, none changed")
            continue
        bad += 1
        print(f"{name}: {len(gone)} numbers only before, {len(new)} only after (of {len(na)} / {len(nb_)})")
        if gone:
            print("   before: " + " ".join(gone[:show]) + (" ..." if len(gone) > show else ""))
        if new:
            print("   after : " + " ".join(new[:show]) + (" ..." if len(new) > show else ""))
        for e in errors:
            print("   " + e)
    print("no printed number changed" if not bad else f"{bad} notebook(s) differ")
    return 1 if bad else 0


def _execute_one(src: Path, dst: Path, workdir: Path, tree: Path, timeout: int) -> tuple[str, float, str]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(tree) + (os.pathsep + env_path if env_path else "")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    err = ""
    try:
        client.execute()
    except Exception as exc:  # keep going: the error shows in the compare step
        err = f"{type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}"
    nbformat.write(nb, dst)
    return src.name, time.perf_counter() - t0, err


def execute(tree: Path, out: Path, jobs: int, only: list[str], timeout: int = 1200) -> int:
    tree = tree.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "chapters"
        shutil.copytree(tree / "chapters", work)
        paths = sorted(work.glob("*.ipynb"))
        if only:
            paths = [p for p in paths if p.name in {Path(o).name for o in only}]
        # The longest first, so that the others share the second worker meanwhile.
        paths.sort(key=lambda p: (not p.name.startswith("08"), p.name))
        # One BLAS thread per notebook: `jobs` notebooks already share the cores.
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[k] = "1"
        with ThreadPoolExecutor(max(1, jobs)) as ex:
            futs = [ex.submit(_execute_one, p, out / p.name, work, tree, timeout) for p in paths]
            failed = 0
            for f in futs:
                name, dt, err = f.result()
                print(f"{name:32s} {dt:7.1f} s {err}", flush=True)
                failed += bool(err)
    return 1 if failed else 0


def check(rev: str, jobs: int, only: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), rev], check=True)
        try:
            print(f"== executing {rev}")
            execute(old, Path(tmp) / "before", jobs, only)
            print("== executing the working tree")
            execute(ROOT, Path(tmp) / "after", jobs, only)
            print("== comparing")
            return compare(Path(tmp) / "before", Path(tmp) / "after")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("execute", help="execute the chapters of a tree into a folder")
    e.add_argument("out", type=Path)
    e.add_argument("--tree", type=Path, default=ROOT)
    e.add_argument("--jobs", type=int, default=2)
    e.add_argument("notebooks", nargs="*")
    c = sub.add_parser("compare", help="compare two folders of executed notebooks")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--show", type=int, default=40)
    k = sub.add_parser("check", help="execute REV and the working tree, then compare")
    k.add_argument("--rev", required=True)
    k.add_argument("--jobs", type=int, default=2)
    k.add_argument("notebooks", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd == "execute":
        return execute(a.tree, a.out, a.jobs, a.notebooks)
    if a.cmd == "compare":
        return compare(a.before, a.after, a.show)
    return check(a.rev, a.jobs, a.notebooks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
