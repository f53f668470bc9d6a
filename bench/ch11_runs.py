#!/usr/bin/env python
"""Train chapter 11's runs and write the archive the chapter reads.

    .venv/bin/python bench/ch11_runs.py --part heads     # single heads -> iemlib/data/manifolds_runs.npz
    .venv/bin/python bench/ch11_runs.py --part deep      # deep runs, added to the archive's heads
    .venv/bin/python bench/ch11_runs.py --part all --out PATH --device cuda   # everything elsewhere
    .venv/bin/python bench/ch11_runs.py --check          # retrain the heads, compare with the archive

Single heads: ``iemlib.experiments.manifolds.head_runs()`` (60 runs of 1000 steps on chapter 8's
paper-reading configuration: Table 1's schedules, the grid's corners, SGD / momentum / Adam at swept
rates, five seeds each), one batched ``iemlib.attention.train_head`` call, weights kept at
``CHECKPOINTS`` and the mechanism probed every 100 steps. Deep runs: ``iemlib.attention.deep``'s
trainer on ``DEEP_CONFIG`` (both variants, five seeds). Deterministic: fixed seeds, float32, one
thread on a CPU. Times are printed; the chapter prints the archived ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from iemlib.attention.optimizers import train_head
from iemlib.experiments.manifolds import (
    CHECKPOINTS, CONFIG, manifolds_archive_path, archive_probes, compare_head_runs, head_runs, load_archive,
    save_archive,
)


def train_heads(device: str):
    runs = head_runs()
    print(f"{len(runs)} single-head runs x {CONFIG.n_steps} steps; load average {os.getloadavg()}",
          flush=True)
    res = train_head(runs, CONFIG, checkpoint_steps=CHECKPOINTS, probe_every=100, device=device,
                     desc="chapter 11 heads")
    print(f"trained on {res.device} in {res.seconds:.0f} s "
          f"({1e3 * res.seconds / (len(runs) * CONFIG.n_steps):.2f} ms per run-step); "
          f"diverged: {int(res.diverged.sum())}", flush=True)
    return res


def train_deep_runs(device: str):
    from iemlib.attention.deep import train_deep
    from iemlib.experiments.manifolds import DEEP_CONFIG, deep_runs

    runs = deep_runs()
    print(f"{len(runs)} deep runs x {DEEP_CONFIG.n_steps} steps; load average {os.getloadavg()}",
          flush=True)
    res = train_deep(runs, DEEP_CONFIG, device=device, desc="chapter 11 deep")
    print(f"trained on {res.device} in {res.seconds:.0f} s; diverged: {int(res.diverged.sum())}",
          flush=True)
    return res


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("heads", "deep", "all"), default="all")
    ap.add_argument("--out", type=Path, default=None, help="archive to write (default: the shipped one)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ap.add_argument("--check", action="store_true", help="retrain the heads and compare with the archive")
    a = ap.parse_args(argv)
    out = a.out or manifolds_archive_path()
    t0 = time.perf_counter()
    if a.check:
        res = train_heads(a.device)
        cmp = compare_head_runs(res, load_archive().heads)
        print(f"against the shipped archive: {cmp}")
        return 0 if cmp.agree else 1
    old = load_archive(out) if out.is_file() else None
    if a.part in ("heads", "all"):
        heads = train_heads(a.device)
        t1 = time.perf_counter()
        probes = archive_probes(heads)
        print(f"probes in {time.perf_counter() - t1:.0f} s", flush=True)
    else:
        heads, probes = old.heads, old.probes
    deep = train_deep_runs(a.device) if a.part in ("deep", "all") else (old.deep if old else None)
    save_archive(out, heads, probes, deep)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
