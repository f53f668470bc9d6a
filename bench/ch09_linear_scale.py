#!/usr/bin/env python
"""Train chapter 9's long linear run (cross-entropy past separation) and write the archive the chapter reads.

    .venv/bin/python bench/ch09_linear_scale.py              # writes iemlib/data/linear_scale_run.npz
    .venv/bin/python bench/ch09_linear_scale.py --out PATH   # somewhere else (e.g. to compare)

The run is ``iemlib.experiments.calibration.train_scale_runs("linear", stack_digit_splits(range(5)),
**LINEAR_SCALE_RUN)``: the linear classifier of chapter 9 on its five digit splits, full-batch gradient
descent (step 1.0) for 32000 steps, records at roughly doubling steps. About two and a half minutes of
CPU time on one core. Deterministic (fixed seeds, float32, one thread): the chapter retrains its first
200 steps and compares them with the archive.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from iemlib.data import stack_digit_splits
from iemlib.experiments.calibration import LINEAR_SCALE_RUN, save_scale_runs, scale_archive_path, train_scale_runs


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="archive to write (default: the shipped one)")
    a = ap.parse_args(argv)
    t0 = time.process_time()
    runs = train_scale_runs("linear", stack_digit_splits(range(5)), **LINEAR_SCALE_RUN)
    print(f"trained in {time.process_time() - t0:.0f} s of CPU time; final ||W|| {runs.scale[-1].round(2).tolist()}")
    out = save_scale_runs(runs, a.out or scale_archive_path())
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
