#!/usr/bin/env python
"""Chapter 11 on a GPU: the full retraining timed, and the authors' full-size deep model.

    python bench/ch11_gpu.py --out iemlib/data/manifolds_gpu.npz      # needs CUDA

1. Retrains every archived run as ``RETRAIN = True`` in the chapter does (the 60 single heads with
   their probes, the 10 scaled deep runs) on the GPU, times it, and compares the loss curves with
   the CPU-trained archive.
2. Trains the authors' ``--deep`` sizes unscaled (d_model 64, 4 layers, 4 heads, FFN 256, T = 2000,
   1000 steps, AdamW 3e-4 with cosine decay, on the paper-reading chain), plain and EM-like, five
   seeds, and scores them against the Bayes filter.

Writes the timings and scores to ``--out`` (an ``.npz`` holding one JSON string).

Not yet run on a GPU: none was lent to the session that wrote it (2026-12-04). Its logic was run
on a CPU with every size shrunk (the runs retrained, compared with an archive of the same sizes,
the results written); the chapter does not read its output yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from iemlib.attention import DeepConfig, train_deep, train_head
from iemlib.experiments.manifolds import (
    CHECKPOINTS, CONFIG, DEEP_CONFIG, archive_probes, deep_runs, head_runs, load_archive,
)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args(argv)
    out: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                 "torch": torch.__version__}
    arc = load_archive()
    t0 = time.perf_counter()
    heads = train_head(head_runs(), CONFIG, checkpoint_steps=CHECKPOINTS, probe_every=100,
                       device=a.device, progress=False)
    t1 = time.perf_counter()
    archive_probes(heads)
    t2 = time.perf_counter()
    deep = train_deep(deep_runs(), DEEP_CONFIG, device=a.device, progress=False)
    t3 = time.perf_counter()
    sgd = [i for i, r in enumerate(heads.runs) if r.optimizer != "adam"]
    adam = [i for i, r in enumerate(heads.runs) if r.optimizer == "adam"]
    out["retrain"] = {
        "heads_s": t1 - t0, "probes_s": t2 - t1, "deep_s": t3 - t2, "total_s": t3 - t0,
        "heads_vs_archive_sgd_momentum": float(np.abs(heads.loss[sgd] - arc.heads.loss[sgd]).max()),
        "heads_vs_archive_adam": float(np.abs(heads.loss[adam] - arc.heads.loss[adam]).max()),
        "deep_vs_archive": float(np.abs(deep.loss - arc.deep.loss).max()),
    }
    print(json.dumps(out, indent=1), flush=True)
    full = DeepConfig(name="authors' size")
    t4 = time.perf_counter()
    fd = train_deep(deep_runs(), full, device=a.device, progress=False)
    out["full_deep"] = {
        "config": {k: getattr(full, k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "seq_len",
                                                  "n_steps", "lr")},
        "seconds": time.perf_counter() - t4,
        "runs": [[r.random_state, r.value_lr_scale] for r in fd.runs],
        "final_minus_bayes": (fd.final_loss - fd.bayes_loss).tolist(),
        "heldout_minus_bayes": (fd.heldout_loss - fd.bayes_heldout_loss).tolist(),
        "best_heldout_minus_bayes": (fd.heldout_curve.min(1) - fd.bayes_heldout_loss).tolist(),
        "best_heldout_step": fd.heldout_steps[fd.heldout_curve.argmin(1)].tolist(),
    }
    print(json.dumps(out["full_deep"], indent=1), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, meta=np.array(json.dumps(out)))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
