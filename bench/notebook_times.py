#!/usr/bin/env python
"""Execute every chapter notebook once, one at a time, and print seconds per notebook and in all.

    .venv/bin/python bench/notebook_times.py [chapters/03_theorem.ipynb ...]

Notebooks are executed in a temporary copy of chapters/ (the committed files stay stripped),
with the same kernel the book uses. Budgets: 45 s a chapter, 240 s for the EM-vs-SGD
reproduction (chapter 8), 400 s for the whole book.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {"08_em_vs_sgd.ipynb": 240.0, "08b_m_step_readings.ipynb": 120.0}
DEFAULT_BUDGET_S = 45.0
BOOK_BUDGET_S = 400.0


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "chapters").glob("*.ipynb"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "chapters"
        shutil.copytree(ROOT / "chapters", work)
        for path in paths:
            nb = nbformat.read(work / path.name, as_version=4)
            client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}})
            t0 = time.perf_counter()
            client.execute()
            dt = time.perf_counter() - t0
            budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
            rows.append((path.name, dt, budget))
            print(f"{path.name:32s} {dt:7.1f} s  (budget {budget:.0f} s){'  OVER' if dt > budget else ''}", flush=True)
    total = sum(r[1] for r in rows)
    print(f"{'total':32s} {total:7.1f} s  (budget {BOOK_BUDGET_S:.0f} s){'  OVER' if total > BOOK_BUDGET_S else ''}")
    return 1 if any(dt > b for _, dt, b in rows) or total > BOOK_BUDGET_S else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
