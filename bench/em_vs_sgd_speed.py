"""Time the batched EM-vs-SGD trainer against a re-implementation of the public per-seed loop.

Same work on the same machine, one after the other: 5 seeds x 2 schedules (EM-like, SGD) x
``--n-steps`` steps of the public implementation's configuration (``iemlib.legacy.em_vs_sgd.PUBLIC``,
float32). The reference is ``bench/reference_impl.py`` (our re-implementation of the authors'
straightforward loop: one seed at a time, full T x T masked attention, ``loss.backward()``).
With ``--n-steps`` below 1000 both sides do that same fraction of the work and the per-step
times extrapolate linearly to the full 1000 steps (both are a fixed cost per step).

The machine may be shared: the script prints the load average before and after and the
process CPU time of each side; the *ratio* of the two wall times, measured back to back
(ours, reference, ours again; the two runs of ours are averaged), is the number to read.

    python bench/em_vs_sgd_speed.py --n-steps 1000
    python bench/em_vs_sgd_speed.py --n-steps 1000 --reference-script PATH/em_vs_sgd_multiseed.py

``--reference-script`` times the authors' own file instead of our re-implementation: a local
checkout of ``experiments/paper2_gradient/em_vs_sgd_multiseed.py`` from
https://github.com/vishalmisra/bayesian-wind-tunnel (we read commit 670c6d6; the file is unchanged
since it was added in 239d6e2). The bench imports it from that path and calls its
``run_single_seed(seed, device="cpu", n_steps=...)``; nothing of it is copied into this repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_impl as ref  # noqa: E402

from iemlib.legacy.em_vs_sgd import PUBLIC, train  # noqa: E402


def time_ours(n_steps: int, n_seeds: int):
    cfg = replace(PUBLIC, n_steps=n_steps, seeds=PUBLIC.seeds[:n_seeds])
    w, c = time.perf_counter(), time.process_time()
    res = train(cfg, progress=False, device="cpu")
    return time.perf_counter() - w, time.process_time() - c, res


def time_reference(n_steps: int, n_seeds: int):
    w, c = time.perf_counter(), time.process_time()
    out = [ref.run_single_seed(s, n_steps) for s in ref.SEEDS[:n_seeds]]
    return time.perf_counter() - w, time.process_time() - c, out


def load_script(path: str):
    """Import the authors' script from a local file (a module object; its ``main`` is not run)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise SystemExit(f"--reference-script: no such file {p}")
    spec = importlib.util.spec_from_file_location("authors_em_vs_sgd_multiseed", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "run_single_seed"):
        raise SystemExit(f"--reference-script: {p} has no run_single_seed(seed, device, n_steps)")
    return mod


def time_script(mod, n_steps: int, n_seeds: int):
    """The authors' per-seed loop, as their ``main`` calls it; losses renamed to our keys."""
    w, c = time.perf_counter(), time.process_time()
    out = []
    for s in ref.SEEDS[:n_seeds]:
        r = mod.run_single_seed(s, device="cpu", n_steps=n_steps)
        out.append({"seed": s, "em": r["em"], "sgd": r["sgd"],
                    "losses_em": r["losses_em_full"], "losses_sgd": r["losses_sgd_full"]})
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ref-threads", type=int, default=None,
                    help="torch threads for the reference (default: torch's default, all cores)")
    ap.add_argument("--reference-script", default=None, metavar="PATH",
                    help="a local copy of the authors' em_vs_sgd_multiseed.py, timed instead of bench/reference_impl.py")
    args = ap.parse_args()
    script = load_script(args.reference_script) if args.reference_script else None
    if args.ref_threads is not None:
        torch.set_num_threads(args.ref_threads)
    n, S = args.n_steps, args.seeds
    runsteps = 2 * S * n
    print(f"torch {torch.__version__}, reference on {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"work: {S} seeds x 2 schedules x {n} steps, T=2000, float32")
    print(f"load average before: {os.getloadavg()}")
    w1, c1, res = time_ours(n, S)
    print(f"ours (batched, closed form)    : {w1:7.1f} s wall, {c1:7.1f} s CPU, {1e3 * w1 / runsteps:6.2f} ms/run-step")
    if script is None:
        wr, cr, out = time_reference(n, S)
        label = "reference (per-seed autograd)  "
    else:
        wr, cr, out = time_script(script, n, S)
        label = "authors' script (per seed)     "
    print(f"{label}: {wr:7.1f} s wall, {cr:7.1f} s CPU, {1e3 * wr / runsteps:6.2f} ms/run-step")
    w2, c2, _ = time_ours(n, S)
    print(f"ours again                     : {w2:7.1f} s wall, {c2:7.1f} s CPU, {1e3 * w2 / runsteps:6.2f} ms/run-step")
    print(f"load average after: {os.getloadavg()}")
    w = 0.5 * (w1 + w2)
    print(f"time ratio ours / reference = {w / wr:.3f}  (speed-up {wr / w:.2f}x); "
          f"CPU-time ratio = {0.5 * (c1 + c2) / cr:.3f}")
    if n < 1000:
        print(f"extrapolated to 1000 steps: ours {w * 1000 / n:.0f} s, reference {wr * 1000 / n:.0f} s")
    for o in out:
        print(f"seed {o['seed']}: final loss EM {o['em']['loss']:.4f} (ours "
              f"{res.final['loss'][res.index('public code', o['seed'], 'em')]:.4f}), SGD {o['sgd']['loss']:.4f} "
              f"(ours {res.final['loss'][res.index('public code', o['seed'], 'sgd')]:.4f})")
    # Same data, same initial weights, same updates: the two must agree (float32 rounding aside).
    diffs = []
    for o in out:
        for s in ("em", "sgd"):
            r = res.index("public code", o["seed"], s)
            diffs.append(abs(res.final["loss"][r] - o[s]["loss"]))
            diffs.append(float(np.max(np.abs(res.loss[r] - np.array(o["losses_" + s])))))
    print(f"largest |loss(ours) - loss(reference)| over every step, seed and schedule: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
