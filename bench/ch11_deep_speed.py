#!/usr/bin/env python
"""Time chapter 11's batched deep trainer against a plain PyTorch loop of the same size.

    .venv/bin/python bench/ch11_deep_speed.py                 # 5 runs x 20 steps, one thread
    .venv/bin/python bench/ch11_deep_speed.py --steps 50 --device cuda

Both sides train the same models (``iemlib.experiments.manifolds.DEEP_CONFIG``, plain AdamW, the
five seeds) from the same initial weights on the same sequences for the same steps
(``iemlib.experiments.manifolds.time_deep_against_torch``):

* ours: ``iemlib.attention.train_deep``, every run in one batch (heads and runs as tensor axes);
* the reference: one ``iemlib.attention.TorchReference`` (``nn.TransformerEncoder``, pre-norm,
  GELU, no dropout) per run, trained in a Python loop over runs with ``torch.optim.AdamW``,
  ``CosineAnnealingLR`` and ``clip_grad_norm_`` -- what one writes without batching.

Measured side by side in one process: ours, the reference, ours again (the mean of the two), all on
one thread on a CPU. Measured 2026-12-04 on the 2-core CPU of the book's build machine with nothing
else running (load average 1.5): 20 steps, 16.6 and 16.7 ms per run-step batched against 19.4 and
18.8 ms for the loop (speed-up 1.17 and 1.13); 100 steps, 16.2 against 19.1 ms (1.18). An earlier
measurement under a load average of 12 to 15 (other jobs) gave 0.41 to 1.14: the timings move with
the load. On one CPU thread batching buys little: the work is the same large products (PyTorch's
fused causal attention on both sides), and batching saves the Python overhead. The loss curves
agree to 4.8e-7 nats.
"""

from __future__ import annotations

import argparse
import os
import sys

from iemlib.experiments.manifolds import DEEP_CONFIG, time_deep_against_torch


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    c = DEEP_CONFIG
    print(f"{c.name}: d_model {c.d_model}, {c.n_layers} layers, {c.n_heads} heads, FFN {c.d_ff}, "
          f"T = {c.seq_len}; {a.steps} steps on {a.device}; load average {os.getloadavg()}", flush=True)
    sp = time_deep_against_torch(a.steps, device=a.device)
    ms = lambda s: 1e3 * s / (sp.n_runs * sp.n_steps)  # noqa: E731
    print(f"batched trainer: {sp.seconds_batched:.2f} s ({ms(sp.seconds_batched):.1f} ms per run-step)")
    print(f"nn.TransformerEncoder loop: {sp.seconds_reference:.2f} s ({ms(sp.seconds_reference):.1f} ms "
          f"per run-step)")
    print(f"speed-up of the batched trainer: {sp.speedup:.2f}x; largest loss difference "
          f"{sp.max_loss_difference:.1e} nats")
    return 0 if sp.max_loss_difference < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
