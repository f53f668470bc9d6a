#!/usr/bin/env python
"""Time chapter 11's batched deep trainer against a plain PyTorch loop of the same size.

    .venv/bin/python bench/ch11_deep_speed.py                 # 10 runs x 20 steps, one thread
    .venv/bin/python bench/ch11_deep_speed.py --steps 50 --device cuda

Both sides train the same models (``iemlib.experiments.manifolds.DEEP_CONFIG``, plain AdamW, the
runs' seeds) from the same initial weights on the same sequences for the same steps:

* ours: ``iemlib.attention.train_deep``, every run in one batch (heads and runs as tensor axes);
* the reference: one ``iemlib.attention.deep.TorchReference`` (``nn.TransformerEncoder``, pre-norm,
  GELU, no dropout) per run, trained in a Python loop over runs with ``torch.optim.AdamW``,
  ``CosineAnnealingLR`` and ``clip_grad_norm_`` -- what one writes without batching.

Measured side by side in one process: ours, the reference, ours again (the mean of the two), all on
one thread on a CPU. The loss curves of the two sides are compared (they compute the same iterates
up to float32 rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from iemlib.attention.deep import TorchReference, init_deep_params, train_deep
from iemlib.experiments.manifolds import DEEP_CONFIG, deep_runs
from iemlib.markov import make_dataset
from iemlib.runtime import resolve_device, single_threaded


def reference_loop(runs, c, dev) -> tuple[float, np.ndarray]:
    P = c.transition_matrix()
    init = init_deep_params(c, [r.random_state for r in runs])
    losses = np.zeros((len(runs), c.n_steps))
    data = [make_dataset(P, c.seq_len, c.d_x, r.random_state) for r in runs]  # outside the timing,
    t0 = time.perf_counter()  # as train_deep's seconds count its loop only
    for i, d in enumerate(data):
        x, y = d.x[None].to(dev), d.y.to(dev)
        model = TorchReference(c).load_run(init, i).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, c.n_steps)
        for step in range(c.n_steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x)[0], y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip)
            opt.step()
            sched.step()
            losses[i, step] = loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, losses


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    # the cosine schedule over --steps on both sides, so the curves can be compared
    c = replace(DEEP_CONFIG, n_steps=a.steps)
    runs = [r for r in deep_runs() if r.value_lr_scale == 1.0]
    print(f"{len(runs)} runs x {c.n_steps} steps of {c.name} (d_model {c.d_model}, {c.n_layers} layers, "
          f"{c.n_heads} heads, FFN {c.d_ff}, T = {c.seq_len}) on {dev}; load average {os.getloadavg()}",
          flush=True)
    ctx = single_threaded() if dev.type == "cpu" else contextlib.nullcontext()
    with ctx:
        t1 = train_deep(runs, c, device=dev, progress=False)
        t_ref, ref_losses = reference_loop(runs, c, dev)
        t2 = train_deep(runs, c, device=dev, progress=False)
    ours = 0.5 * (t1.seconds + t2.seconds)
    diff = float(np.abs(t1.loss - ref_losses).max())
    ms = lambda s: 1e3 * s / (len(runs) * c.n_steps)  # noqa: E731
    print(f"batched trainer: {ours:.2f} s ({ms(ours):.1f} ms per run-step; runs {t1.seconds:.2f} and "
          f"{t2.seconds:.2f} s)")
    print(f"nn.TransformerEncoder loop: {t_ref:.2f} s ({ms(t_ref):.1f} ms per run-step)")
    print(f"speed-up of the batched trainer: {t_ref / ours:.2f}x; largest loss difference {diff:.1e} nats")
    return 0 if math.isfinite(diff) and diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
