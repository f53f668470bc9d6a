"""Time the batched EM-vs-SGD trainer against a plain per-seed loop on the same work.

Same work on the same machine, back to back (ours, reference, ours again; the two runs of ours are
averaged), both sides on one torch thread and one BLAS thread: ``n_seeds`` seeds x 2 schedules
(EM-like, SGD) x ``--n-steps`` steps of the public implementation's configuration
(``iemlib.experiments.em_vs_sgd.PUBLIC``, float32). This is the code the appendix runs with 10 steps
(``iemlib.experiments.em_vs_sgd.time_against_reference``). The reference is
``iemlib.attention.reference.run_reference``, our re-implementation of the authors' straightforward
loop (one seed at a time, full T x T masked attention, ``loss.backward()``). With ``--n-steps`` below 1000
both sides do that same fraction of the work and the per-step times extrapolate linearly to the full
1000 steps (both are a fixed cost per step).

The machine may be shared: the script prints the load average before and after; the *ratio* of the
two wall times is the number to read.

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
from pathlib import Path

import numpy as np
import torch

from iemlib.attention.reference import ReferenceRun
from iemlib.experiments.em_vs_sgd import PUBLIC, time_against_reference


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


def script_reference(mod):
    """The authors' per-seed loop, as their ``main`` calls it, returned as a ReferenceRun."""
    def run(seed: int, n_steps: int) -> ReferenceRun:
        r = mod.run_single_seed(seed, device="cpu", n_steps=n_steps)
        return ReferenceRun(seed=seed, em_losses=np.array(r["losses_em_full"]), sgd_losses=np.array(r["losses_sgd_full"]),
                            em_loss=r["em"]["loss"], sgd_loss=r["sgd"]["loss"], em_acc=r["em"]["accuracy"],
                            sgd_acc=r["sgd"]["accuracy"], em_entropy=r["em"]["entropy"], sgd_entropy=r["sgd"]["entropy"])
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--reference-script", default=None, metavar="PATH",
                    help="a local copy of the authors' em_vs_sgd_multiseed.py, timed instead of our re-implementation")
    args = ap.parse_args()
    kw = {"reference": script_reference(load_script(args.reference_script))} if args.reference_script else {}
    n, S = args.n_steps, args.seeds
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, both sides on one thread; "
          f"work: {S} seeds x 2 schedules x {n} steps, T=2000, float32")
    print(f"load average before: {os.getloadavg()}")
    sp = time_against_reference(n, S, **kw)
    label = "authors' script (per seed)     " if args.reference_script else "reference (per-seed autograd)  "
    print(f"ours (batched, closed form)    : {sp.seconds_trainer:7.1f} s wall, "
          f"{sp.ms_per_run_step('trainer'):6.2f} ms/run-step (mean of the runs before and after the reference)")
    print(f"{label}: {sp.seconds_reference:7.1f} s wall, {sp.ms_per_run_step('reference'):6.2f} ms/run-step")
    print(f"load average after: {os.getloadavg()}")
    print(f"time ratio ours / reference = {sp.ratio:.3f}  (speed-up {sp.speedup:.2f}x)")
    if n < 1000:
        print(f"extrapolated to 1000 steps: ours {sp.seconds_trainer * 1000 / n:.0f} s, "
              f"reference {sp.seconds_reference * 1000 / n:.0f} s")
    res = sp.trainer
    for r in sp.reference:
        print(f"seed {r.seed}: final loss EM {r.em_loss:.4f} (ours {res.final.loss[res.index(PUBLIC.name, r.seed, 'em')]:.4f}), "
              f"SGD {r.sgd_loss:.4f} (ours {res.final.loss[res.index(PUBLIC.name, r.seed, 'sgd')]:.4f})")
    # Same data, same initial weights, same updates: the two must agree (float32 rounding aside).
    print(f"largest |loss(ours) - loss(reference)| over every step, seed and schedule: {sp.max_loss_difference:.2e}")


if __name__ == "__main__":
    main()
