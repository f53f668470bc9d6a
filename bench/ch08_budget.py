#!/usr/bin/env python
"""Train chapter 8's budget sweep and write its archive (one file per run set).

    nice -n 10 .venv/bin/python bench/ch08_budget.py --set paper    # iemlib/data/em_vs_sgd_budget_paper.npz
    nice -n 10 .venv/bin/python bench/ch08_budget.py --set paper_sgd01   # SGD with one rate 0.1
    nice -n 10 .venv/bin/python bench/ch08_budget.py --set public   # the public code's two schedules
    .venv/bin/python bench/ch08_budget.py --set paper --out PATH    # somewhere else (e.g. to compare)

The runs are ``iemlib.experiments.em_vs_sgd.budget_runs(set)``: the chapter's configurations trained
with the book's trainer (``iemlib.attention.train``), five seeds, up to 5000 steps, and scored after
1000, 2000 and 5000 updates (``train(..., checkpoints=...)``): training and held-out loss, accuracy,
entropy and KL(EM || SGD). One long run stands for the three budgets.

The run is trained in segments (``--segments``, default 1000, 1000, 3000 updates): each segment
continues the previous one's weights exactly (``train(..., start=params)``; the iterates are those of
one uninterrupted run, checked in ``tests/test_experiments_em_vs_sgd.py``), and after each segment the
archive so far is written, so that a run stopped early leaves the budgets it reached. The attention
probes are off (``probe_every=0``); they do not change the training. Deterministic: fixed seeds,
float32 on the CPU. The script prints the wall time, the process CPU time and the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from iemlib.attention.trainer import Checkpoints, Probes, Result, train
from iemlib.experiments.em_vs_sgd import BUDGET_SETS, BUDGETS, budget_archive_path, budget_runs, save_result


def _cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([a, b], axis=1)


def chain(first: Result | None, second: Result, n_total: int) -> Result:
    """``second`` (trained from ``first``'s final weights) appended to ``first``: one result of
    ``n_total`` steps, with the configurations' ``n_steps`` set to it."""
    configs = {k: dataclasses.replace(c, n_steps=n_total) for k, c in second.configs.items()}
    if first is None:
        return dataclasses.replace(second, configs=configs)
    off = first.loss.shape[1]
    c1, c2 = first.checkpoints, second.checkpoints
    ck = Checkpoints(steps=np.concatenate([c1.steps, c2.steps + off]),
                     **{f.name: _cat(getattr(c1, f.name), getattr(c2, f.name))
                        for f in dataclasses.fields(Checkpoints) if f.name != "steps"})
    return dataclasses.replace(
        second, configs=configs, loss=_cat(first.loss, second.loss), acc=_cat(first.acc, second.acc),
        entropy=_cat(first.entropy, second.entropy), diverged=first.diverged | second.diverged,
        value_steps=np.concatenate([first.value_steps, second.value_steps[1:] + off]),
        values=_cat(first.values, second.values[:, 1:]), seconds=first.seconds + second.seconds,
        probes=Probes(*(_cat(getattr(first.probes, f.name), getattr(second.probes, f.name))
                        for f in dataclasses.fields(Probes))),
        probe_steps=np.concatenate([first.probe_steps, second.probe_steps + off]), checkpoints=ck,
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=BUDGET_SETS, default="paper", help="which run set")
    ap.add_argument("--out", type=Path, default=None, help="archive to write (default: the shipped one)")
    ap.add_argument("--segments", default="1000,1000,3000", help="updates per segment (default 1000,1000,3000)")
    ap.add_argument("--workers", type=int, default=5, help="worker threads (default 5)")
    a = ap.parse_args(argv)
    segments = [int(s) for s in a.segments.split(",")]
    ends = np.cumsum(segments)
    out = a.out or budget_archive_path(a.set)
    n = sum(len(c.seeds) * len(s) for c, s in budget_runs(a.set))
    print(f"budget sweep '{a.set}': {n} runs x {int(ends[-1])} steps in segments {segments}, "
          f"budgets {BUDGETS}, {a.workers} worker threads; load average before: {os.getloadavg()}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    res: Result | None = None
    for seg, end in zip(segments, ends):
        start = int(end) - seg
        checkpoints = [b - start for b in BUDGETS if start < b <= end] + [seg]
        part = train(budget_runs(a.set, seg), device="cpu", desc=f"{a.set}: steps {start}-{int(end)}",
                     probe_every=0, n_workers=a.workers, checkpoints=checkpoints,
                     start=None if res is None else res.params)
        res = chain(res, part, int(end))
        save_result(res, out)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"steps 0-{int(end)}: {wall:.0f} s wall, {cpu:.0f} s CPU so far; diverged runs: "
              f"{int(res.diverged.sum())}; load average: {os.getloadavg()}; wrote {out} "
              f"({out.stat().st_size / 1e3:.0f} kB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
