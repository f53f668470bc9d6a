#!/usr/bin/env python
"""Train chapter 8's control runs and write the archive the chapter and 8b read.

    .venv/bin/python bench/ch08_controls.py                 # writes iemlib/data/em_vs_sgd_controls.npz
    .venv/bin/python bench/ch08_controls.py --out PATH      # somewhere else (e.g. to compare)
    .venv/bin/python bench/ch08_controls.py --check         # retrain and compare with the shipped archive
    .venv/bin/python bench/ch08_controls.py --check --device cuda   # the same on a GPU (device tolerance)

The runs are ``iemlib.experiments.em_vs_sgd.control_runs()``: 120 runs of 1000 steps (the learning-rate
grid, the chain x bias 2 x 2, the least-squares and free readings), one batched ``train`` call;
about 21 minutes on two CPU cores (1252 s measured 2026-12-02). The result is deterministic:
fixed seeds, float32 on the CPU; run again on the same machine it reproduces the archive exactly.
``--check`` writes the retrained archive to ``--out`` when given, else to a temporary file that is
removed afterwards, and compares it with the shipped one by ``compare_runs`` (device-aware tolerance).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from iemlib.attention.trainer import train
from iemlib.experiments.em_vs_sgd import archive_path, compare_runs, control_runs, load_result, save_result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="archive to write (default: the shipped one)")
    ap.add_argument("--check", action="store_true", help="compare with the shipped archive instead of overwriting it")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto (iemlib.runtime.resolve_device)")
    a = ap.parse_args(argv)
    runs = control_runs()
    n = sum(len(c.seeds) * len(s) for c, s in runs)
    print(f"{n} runs x {runs[0][0].n_steps} steps; load average before: {os.getloadavg()}", flush=True)
    t0 = time.perf_counter()
    res = train(runs, device=a.device, desc="chapter 8 controls")
    wall = time.perf_counter() - t0
    print(f"trained on {res.device} in {wall:.0f} s ({1e3 * wall / (n * runs[0][0].n_steps):.2f} ms per run-step); "
          f"diverged runs: {int(res.diverged.sum())}; load average after: {os.getloadavg()}")
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            out = a.out or Path(tmp) / "em_vs_sgd_controls_check.npz"
            cmp = compare_runs(load_result(save_result(res, out)), load_result(archive_path()))
        print(f"against the shipped archive: {cmp}")
        return 0 if cmp.agree else 1
    out = a.out or archive_path()
    save_result(res, out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
