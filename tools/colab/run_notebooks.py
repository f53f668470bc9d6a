#!/usr/bin/env python
"""Execute notebooks with nbclient, in parallel kernels, and fail on any error output.

    python tools/colab/run_notebooks.py OUT_DIR NB.ipynb [NB.ipynb ...] [--workers 2] [--timeout 600]

Uses only what Colab itself ships (nbclient, nbformat, ipykernel), so that `make colab-check`
installs nothing beyond Colab's pinned packages and iemlib. Each notebook runs in its own
kernel with its own directory as working directory; the executed copy is written to OUT_DIR.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def _errors(nb) -> list[str]:
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"cell {i}: {o.get('ename')}: {o.get('evalue')}")
            elif o.get("output_type") == "stream" and "Traceback (most recent call last)" in o.get("text", ""):
                out.append(f"cell {i}: traceback printed on {o.get('name')}")
    return out


def run_one(path: str, out_dir: str, timeout: int) -> tuple[str, float, list[str]]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    p = Path(path)
    nb = nbformat.read(p, as_version=4)
    t0 = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}})
    try:
        client.execute()
        problems = _errors(nb)
    except CellExecutionError as exc:  # the first failing cell, with its traceback
        problems = [str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)]
    except Exception as exc:  # a kernel that died, a timeout
        problems = [f"{type(exc).__name__}: {exc}"]
    elapsed = time.perf_counter() - t0
    nbformat.write(nb, Path(out_dir) / p.name)
    return p.name, elapsed, problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args(argv)
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    failed = 0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        futures = [pool.submit(run_one, nb, a.out_dir, a.timeout) for nb in a.notebooks]
        for f in as_completed(futures):  # report each notebook as it finishes
            name, sec, problems = f.result()
            status = "ok" if not problems else "FAILED"
            print(f"  {status:6s} {sec:7.1f} s  {name}", flush=True)
            for pr in problems:
                print(f"         {pr}", flush=True)
            failed += bool(problems)
    n = len(a.notebooks)
    print(f"notebooks executed: {n - failed} passed, {failed} failed ({time.perf_counter() - t0:.0f} s wall)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
