"""EM-like vs plain SGD training of a single causal attention head (attention paper §5.3, §7.2).

A batched trainer: every (configuration, seed, schedule) triple is one *run*, and all runs
advance together, one step at a time, as a batch of independent models. Gradients are the
paper's closed forms (§3), not autograd, computed block by block over the queries so that

* the masked upper triangle of the ``T x T`` attention matrix is never computed (query block
  ``[a, e)`` only meets keys ``[0, e)``),
* the attention matrix of a block is used for its forward *and* backward pass while it is
  still in cache, and never stored,
* ``sum_j alpha_ij b_ij`` (the advantage baseline, eq. 12) is read off as ``u_i . g_i`` and
  subtracted inside the matmul that forms ``b_ij`` (an extra column of ``U``),
* gradients are accumulated transposed, so that every product has its thin factor on the left
  (BLAS is several times faster that way round for these shapes),
* on a CPU the runs are split over single-threaded worker threads.

Layout: rows are positions (``x @ W``), so ``W_Q`` here is the paper's ``W_Q`` transposed;
``V`` holds one value vector per position. Gradients are of the *loss* (cross-entropy,
minimized), averaged over the ``N = T - 1`` positions unless ``reduction="sum"``.

Schedules (per run):

``"sgd"``
    every parameter moves by ``-lr_sgd * gradient``.
``"em"``
    E-like step: forward pass, ``alpha_ij`` and ``u_i = W_O^T (p_i - e_{y_i})``;
    M-like step: ``Delta v_j = -lr_value * sum_i alpha_ij u_i`` (eq. 33), applied to the free
    value vectors (``values="free"``) or, for ``v_j = W_V x_j``, through
    ``Delta W_V = sum_j Delta v_j x_j^T`` (eq. 31); then a small SGD step (``lr_routing``) on
    ``W_Q, W_K, W_O`` (and ``b``). With ``em_update="simultaneous"`` that SGD step uses the
    gradients of the same forward pass (the public implementation); with
    ``"alternating"`` it uses a fresh forward pass after the value update (§5.3's order).
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import torch

from ._validation import as_float_array, check_int, check_labels, check_positive
from .markov import entropy_rate, make_dataset, sticky_transition_matrix

__all__ = [
    "Config",
    "PAPER",
    "PUBLIC",
    "Result",
    "default_device",
    "init_params",
    "attention_pass",
    "train",
    "kl_divergence",
    "steps_to_reach",
    "summarize",
]

SEEDS: tuple[int, ...] = (42, 2024, 1337, 7777, 9999)


def default_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Config:
    """One configuration of the experiment (chain, model, optimizer). See the module docstring."""

    name: str = "paper"
    n_states: int = 8
    stay_prob: float = 0.3
    reading: str = "inverse_circular"
    include_diagonal_in_normalization: bool = False
    seq_len: int = 2000
    d_x: int = 20
    d_k: int = 10
    d_v: int = 15
    n_steps: int = 1000
    init_std: float = 0.1
    bias: bool = True
    values: str = "projected"  # "projected": v_j = W_V x_j ; "free": one free vector per position
    reduction: str = "mean"  # "mean" or "sum" over positions
    lr_sgd: float = 0.01
    lr_value: float = 0.1
    lr_routing: float = 0.01
    em_update: str = "simultaneous"  # or "alternating"
    seeds: tuple[int, ...] = SEEDS

    def __post_init__(self) -> None:
        for k in ("n_states", "seq_len", "d_x", "d_k", "d_v"):
            check_int(getattr(self, k), k, minimum=2)
        check_int(self.n_steps, "n_steps", minimum=0)
        for k in ("init_std", "lr_sgd", "lr_value", "lr_routing"):
            check_positive(getattr(self, k), k)
        if self.values not in ("projected", "free"):
            raise ValueError(f"values must be 'projected' or 'free', got {self.values!r}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.em_update not in ("alternating", "simultaneous"):
            raise ValueError(f"em_update must be 'alternating' or 'simultaneous', got {self.em_update!r}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")

    def transition_matrix(self) -> np.ndarray:
        return sticky_transition_matrix(
            self.n_states, self.stay_prob, reading=self.reading,
            include_diagonal_in_normalization=self.include_diagonal_in_normalization,
        )

    def min_entropy(self) -> float:
        """Entropy rate of the chain: Table 1's theoretical minimum."""
        return entropy_rate(self.transition_matrix())


#: Our reading of the paper's words: the chain that reproduces 1.8833 nats, the bias ``b`` of
#: eq. 7, one E-like pass per step whose ``alpha, u`` serve both the M-like value update and
#: the small SGD step (§7.2's list). Learning rates and initialization: the public code's.
PAPER = Config(name="paper reading")
#: The authors' public implementation: diagonal inside the row normalization, no bias.
PUBLIC = Config(name="public code", include_diagonal_in_normalization=True, bias=False)


def init_params(seed: int, d_x: int = 20, d_k: int = 10, d_v: int = 15, n_classes: int = 8,
                init_std: float = 0.1) -> dict[str, torch.Tensor]:
    """Initial weights, row layout, as the public code draws them: ``torch.manual_seed(seed)``
    then ``W_Q, W_K, W_V, W_O`` from ``N(0, init_std²)`` in that order; ``b = 0``."""
    g = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    s = check_positive(init_std, "init_std")
    return {
        "W_Q": torch.randn(d_x, d_k, generator=g) * s,
        "W_K": torch.randn(d_x, d_k, generator=g) * s,
        "W_V": torch.randn(d_x, d_v, generator=g) * s,
        "W_O": torch.randn(d_v, n_classes, generator=g) * s,
        "b": torch.zeros(n_classes),
    }


def attention_pass(
    x: torch.Tensor,
    y: torch.Tensor,
    W_Q: torch.Tensor,
    W_K: torch.Tensor,
    V: torch.Tensor,
    W_O: torch.Tensor,
    b: torch.Tensor,
    weight: torch.Tensor | float = 1.0,
    *,
    block: int = 64,
    need_probs: bool = False,
) -> dict[str, torch.Tensor]:
    """Forward pass and closed-form gradients of a batch of causal single-head attention models.

    Shapes (``R`` runs, ``N`` positions): ``x (R, N, d_x)``, ``y (R, N)`` integer targets,
    ``W_Q, W_K (R, d_x, d_k)``, ``V (R, N, d_v)`` (the value vectors), ``W_O (R, d_v, C)``,
    ``b (R, C)``. ``weight`` (scalar or ``(R,)``) multiplies each position's loss: ``1/N`` for
    the mean, ``1`` for the sum.

    Returns a dict with per-run ``loss`` (mean cross-entropy per position, whatever
    ``weight``), ``acc``, ``entropy`` (mean predictive entropy), and the gradients of the
    weighted loss: ``dQ, dK`` with respect to ``q_i = x_i W_Q`` and ``k_j`` (eqs. 25, 27),
    ``dV`` with respect to ``v_j`` (eq. 16: ``sum_i alpha_ij u_i``), ``dW_O``, ``db``; plus
    ``probs (R, N, C)`` when ``need_probs``.
    """
    for name, t, nd in (("x", x, 3), ("W_Q", W_Q, 3), ("W_K", W_K, 3), ("V", V, 3), ("W_O", W_O, 3), ("b", b, 2)):
        as_float_array(t, name, ndim=nd)
    R, N, _ = x.shape
    C = W_O.shape[-1]
    check_labels(y, "y", C, shape=(R, N))
    if V.shape[:2] != (R, N) or W_O.shape[:2] != (R, V.shape[-1]) or b.shape != (R, C):
        raise ValueError(f"V, W_O, b must have shapes (R, N, d_v), (R, d_v, C), (R, C); got "
                         f"{tuple(V.shape)}, {tuple(W_O.shape)}, {tuple(b.shape)}")
    if W_Q.shape != W_K.shape or W_Q.shape[:2] != (R, x.shape[-1]):
        raise ValueError(f"W_Q and W_K must have shape (R, d_x, d_k), got {tuple(W_Q.shape)}, {tuple(W_K.shape)}")
    B = check_int(block, "block", minimum=1)
    return _attention_pass(x, y, W_Q, W_K, V, W_O, b, weight, B, need_probs)


def _attention_pass(x, y, W_Q, W_K, V, W_O, b, weight, B: int, need_probs: bool = False) -> dict:
    """:func:`attention_pass` without input validation (the trainer's hot path)."""
    R, N, _ = x.shape
    C = W_O.shape[-1]
    dt, dev = x.dtype, x.device
    d_k = W_Q.shape[-1]
    scale = 1.0 / math.sqrt(d_k)
    w = torch.as_tensor(weight, dtype=dt, device=dev).reshape(-1, 1, 1).expand(R, 1, 1)

    Qs = torch.bmm(x, W_Q) * scale  # scaled queries, (R, N, d_k)
    K = torch.bmm(x, W_K)
    Kt = K.transpose(1, 2).contiguous()
    QsT = Qs.transpose(1, 2).contiguous()
    d_v = V.shape[-1]
    # [V^T; 1]: one matmul then gives b_ij - E_alpha_i[b] (the baseline rides along as an extra column of U)
    Vt1 = torch.cat([V.transpose(1, 2), torch.ones(R, 1, N, dtype=dt, device=dev)], 1)
    # Gradients are accumulated transposed, (R, d, N): every product then has the thin matrix on the
    # left and the (n x e) block on the right, which BLAS runs two to five times faster than the
    # thin-output orientation.
    dQsT = torch.empty(R, d_k, N, dtype=dt, device=dev)
    dKT = torch.zeros(R, d_k, N, dtype=dt, device=dev)
    dVT = torch.zeros(R, d_v, N, dtype=dt, device=dev)
    Gs, dls = [], []
    probs = torch.empty(R, N, C, dtype=dt, device=dev) if need_probs else None
    tri = torch.full((B, B), float("-inf"), dtype=dt, device=dev).triu_(1)  # causal mask of a diagonal block
    W_Ot = W_O.transpose(1, 2)
    loss = torch.zeros(R, dtype=dt, device=dev)
    correct = torch.zeros(R, dtype=dt, device=dev)
    ent = torch.zeros(R, dtype=dt, device=dev)
    for a in range(0, N, B):
        e = min(a + B, N)
        n = e - a
        S = torch.bmm(Qs[:, a:e], Kt[:, :, :e])  # (R, n, e): keys j < e only, the masked half is skipped
        S[:, :, a:e] += tri[:n, :n]
        A = torch.softmax(S, dim=-1)  # alpha_ij: the E-like step
        del S
        At = A.transpose(1, 2)
        G = torch.bmm(Vt1[:, :d_v, :e], At).transpose(1, 2)  # g_i = sum_j alpha_ij v_j, (R, n, d_v)
        logits = torch.baddbmm(b[:, None, :], G, W_O)
        logp = torch.log_softmax(logits, dim=-1)
        p = logp.exp()
        yb = y[:, a:e, None]
        loss -= logp.gather(-1, yb).sum((1, 2))
        correct += (logits.argmax(-1, keepdim=True) == yb).sum((1, 2)).to(dt)
        ent -= (p * logp).sum((1, 2))
        if probs is not None:
            probs[:, a:e] = p
        dl = p.scatter_add_(-1, yb, torch.full(yb.shape, -1.0, dtype=dt, device=dev)).mul_(w)  # dLoss/dlogits
        U = torch.bmm(dl, W_Ot)  # u_i = W_O^T (p_i - e_{y_i}), eq. 10
        Gs.append(G)
        dls.append(dl)
        c = (U * G).sum(-1, keepdim=True)  # E_alpha_i[b] = sum_j alpha_ij b_ij = u_i . g_i, eq. 12
        dA = torch.bmm(torch.cat([U, -c], -1), Vt1[:, :, :e])  # b_ij - E[b] with b_ij = u_i . v_j, eq. 11
        dA.mul_(A)  # dLoss/ds_ij = alpha_ij (b_ij - E[b]), eq. 23
        dQsT[:, :, a:e] = torch.bmm(Kt[:, :, :e], dA.transpose(1, 2))  # sum_j dLoss/ds_ij k_j
        dKT[:, :, :e] += torch.bmm(QsT[:, :, a:e], dA)  # sum_i dLoss/ds_ij q_i
        dVT[:, :, :e] += torch.bmm(U.transpose(1, 2), A)  # sum_i alpha_ij u_i, eq. 16
    G = torch.cat(Gs, 1)
    dl = torch.cat(dls, 1)
    dQs, dK, dV = dQsT.transpose(1, 2), dKT.transpose(1, 2), dVT.transpose(1, 2)
    out = {
        "loss": loss / N, "acc": correct / N, "entropy": ent / N,
        "dQ": dQs * scale, "dK": dK, "dV": dV, "dW_O": torch.bmm(G.transpose(1, 2), dl), "db": dl.sum(1),
    }
    if probs is not None:
        out["probs"] = probs
    return out


@dataclass
class Result:
    """What :func:`train` returns; arrays are numpy, indexed by run ``r``."""

    runs: list[tuple[str, int, str]]  # (config name, seed, schedule)
    configs: dict[str, Config]
    loss: np.ndarray  # (R, n_steps): mean cross-entropy before each update
    acc: np.ndarray
    entropy: np.ndarray
    final: dict[str, np.ndarray]  # loss, acc, entropy after the last update, (R,)
    probs: np.ndarray  # (R, N, C) final predictive distributions
    value_steps: np.ndarray  # steps at which value vectors were recorded
    values: np.ndarray  # (R, len(value_steps), n_sample, d_v)
    value_index: np.ndarray  # the sampled positions
    diverged: np.ndarray  # (R,) bool: a non-finite loss was met (the run was frozen there)
    params: dict[str, np.ndarray] = field(default_factory=dict)  # final W_Q, W_K, W_V, W_O, b, V (row layout)
    seconds: float = 0.0
    device: str = "cpu"

    def index(self, config: str, seed: int, schedule: str) -> int:
        return self.runs.index((config, seed, schedule))

    def select(self, config: str, schedule: str) -> list[int]:
        return [r for r, (c, _, s) in enumerate(self.runs) if c == config and s == schedule]


def train(
    configs: Config | Sequence[Config | tuple[Config, Sequence[str]]],
    schedules: Iterable[str] = ("em", "sgd"),
    *,
    seeds: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    block: int = 64,
    n_value_samples: int = 200,
    record_every: int = 10,
    progress: bool = True,
    desc: str = "training",
    n_workers: int | None = None,
) -> Result:
    """Train every (configuration, seed, schedule) as one batch; see the module docstring.

    ``configs`` is a :class:`Config`, or a list of them, or of ``(Config, schedules)`` pairs
    (each configuration with its own schedules; plain entries use ``schedules``).

    ``seeds`` overrides each configuration's seeds. Both schedules of a seed start from the
    same initialization and see the same data. Runs whose loss becomes non-finite are frozen
    and flagged in ``Result.diverged``.
    """
    from tqdm import tqdm  # text bar on stderr: live in Jupyter, left out of the HTML book

    items = [configs] if isinstance(configs, Config) else list(configs)
    if not items:
        raise ValueError("configs must not be empty")
    pairs = [(c, tuple(schedules)) if isinstance(c, Config) else (c[0], tuple(c[1])) for c in items]
    cfgs = [c for c, _ in pairs]
    if not all(isinstance(c, Config) for c in cfgs):
        raise ValueError("configs must be Config objects or (Config, schedules) pairs")
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise ValueError(f"configs must have distinct names, got {names}")
    for _, sc in pairs:
        if not sc or any(s not in ("em", "sgd") for s in sc):
            raise ValueError(f"schedules must be a non-empty list of 'em'/'sgd', got {list(sc)}")
    shapes = {(c.n_states, c.seq_len, c.d_x, c.d_k, c.d_v, c.n_steps) for c in cfgs}
    if len(shapes) != 1:
        raise ValueError("configs batched together must share n_states, seq_len, d_x, d_k, d_v, n_steps")
    dev = torch.device(device) if device is not None else default_device()
    c0 = cfgs[0]
    C, N, n_steps = c0.n_states, c0.seq_len - 1, c0.n_steps

    runs: list[tuple[str, int, str]] = []
    X, Y = [], []
    WQ, WK, WV, WO = [], [], [], []
    lrV, lrQKO, use_b, free, alt, wgt = [], [], [], [], [], []
    data_cache: dict[tuple, object] = {}
    for cfg, scheds in pairs:
        P = cfg.transition_matrix()
        for seed in (seeds if seeds is not None else cfg.seeds):
            key = (cfg.reading, cfg.include_diagonal_in_normalization, cfg.stay_prob, seed)
            if key not in data_cache:
                data_cache[key] = make_dataset(P, cfg.seq_len, cfg.d_x, int(seed))
            ds = data_cache[key]
            p0 = init_params(int(seed), cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
            for s in scheds:
                runs.append((cfg.name, int(seed), s))
                X.append(ds.x); Y.append(ds.y)
                WQ.append(p0["W_Q"]); WK.append(p0["W_K"]); WV.append(p0["W_V"]); WO.append(p0["W_O"])
                lrV.append(cfg.lr_sgd if s == "sgd" else cfg.lr_value)
                lrQKO.append(cfg.lr_sgd if s == "sgd" else cfg.lr_routing)
                use_b.append(cfg.bias)
                free.append(cfg.values == "free")
                alt.append(s == "em" and cfg.em_update == "alternating")
                wgt.append(1.0 / N if cfg.reduction == "mean" else 1.0)
    R = len(runs)
    f = dict(dtype=dtype, device=dev)
    state = {
        "x": torch.stack(X).to(**f), "y": torch.stack(Y).to(dev),
        "W_Q": torch.stack(WQ).to(**f), "W_K": torch.stack(WK).to(**f),
        "W_V": torch.stack(WV).to(**f), "W_O": torch.stack(WO).to(**f),
        "b": torch.zeros(R, C, **f),
        "lrV": torch.tensor(lrV, **f).view(R, 1, 1), "lrR": torch.tensor(lrQKO, **f).view(R, 1, 1),
        "bmask": torch.tensor(use_b, **f).view(R, 1), "free": torch.tensor(free, device=dev),
        "alt": torch.tensor(alt, device=dev), "weight": torch.tensor(wgt, **f),
    }
    gen = np.random.default_rng(0)
    v_idx = np.sort(gen.choice(N, size=min(n_value_samples, N), replace=False))
    v_steps = np.arange(0, n_steps + 1, record_every)
    if v_steps[-1] != n_steps:
        v_steps = np.append(v_steps, n_steps)

    # Independent runs: on a CPU, split them over worker threads, each single-threaded (no
    # barrier between cores per operation, which costs much on a busy machine).
    if n_workers is None:
        n_workers = 1 if dev.type != "cpu" else max(1, min(R, os.cpu_count() or 1, 2))
    n_workers = check_int(n_workers, "n_workers", minimum=1)
    cost = [2 if a_ else 1 for a_ in alt]
    groups: list[list[int]] = [[] for _ in range(n_workers)]
    load = [0] * n_workers
    for r in sorted(range(R), key=lambda r: -cost[r]):
        k = int(np.argmin(load))
        groups[k].append(r)
        load[k] += cost[r]
    groups = [sorted(g) for g in groups if g]
    t0 = time.perf_counter()
    bar = tqdm(total=R * n_steps, desc=desc, disable=not progress, mininterval=1.0, unit="run-step")
    lock = threading.Lock()

    def tick(n: int) -> None:
        with lock:
            bar.update(n)

    if len(groups) == 1:
        outs = [_train_group(state, groups[0], n_steps, v_idx, v_steps, block, tick)]
    else:
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(len(groups)) as ex:
                outs = list(ex.map(lambda g: _train_group(state, g, n_steps, v_idx, v_steps, block, tick), groups))
        finally:
            torch.set_num_threads(threads_before)
    bar.close()
    seconds = time.perf_counter() - t0
    order = np.concatenate(groups)
    inv = np.argsort(order)
    merged = {k: np.concatenate([o[k] for o in outs])[inv] for k in outs[0]}
    diverged = ~np.isfinite(merged["loss"]).all(1) | ~np.isfinite(merged["final_loss"])
    return Result(
        runs=runs, configs={c.name: c for c in cfgs},
        loss=merged["loss"], acc=merged["acc"], entropy=merged["entropy"],
        final={k: merged["final_" + k] for k in ("loss", "acc", "entropy")},
        probs=merged["probs"], value_steps=v_steps, values=merged["values"], value_index=v_idx,
        diverged=diverged, seconds=seconds, device=str(dev),
        params={k: merged[k] for k in ("W_Q", "W_K", "W_V", "W_O", "b", "V")},
    )


def _train_group(state: dict, group: list[int], n_steps: int, v_idx: np.ndarray, v_steps: np.ndarray,
                 block: int, tick) -> dict[str, np.ndarray]:
    """Train the runs ``group`` (indices into ``state``'s batch) for ``n_steps``; numpy outputs."""
    dev = state["x"].device
    gi = torch.as_tensor(group, device=dev)
    s = {k: v.index_select(0, gi) for k, v in state.items()}
    x, y, W_Q, W_K, W_V, W_O, b = (s[k] for k in ("x", "y", "W_Q", "W_K", "W_V", "W_O", "b"))
    lrV, lrR, bmask, free, weight = s["lrV"], s["lrR"], s["bmask"], s["free"], s["weight"]
    R = len(group)
    dtype = x.dtype
    alt_idx = torch.nonzero(s["alt"]).flatten()
    any_free = bool(free.any())
    free3 = free.view(R, 1, 1)
    xt = x.transpose(1, 2).contiguous()
    V_free = torch.bmm(x, W_V)  # free values start where the projected ones are
    v_idx_t = torch.as_tensor(v_idx, device=dev)
    values_rec = torch.zeros(R, len(v_steps), len(v_idx), W_V.shape[-1], dtype=dtype, device=dev)

    def values(W_V, V_free) -> torch.Tensor:
        Vp = torch.bmm(x, W_V)
        return torch.where(free3, V_free, Vp) if any_free else Vp

    loss_h = torch.zeros(R, n_steps, dtype=dtype, device=dev)
    acc_h = torch.zeros_like(loss_h)
    ent_h = torch.zeros_like(loss_h)
    alive = torch.ones(R, 1, 1, dtype=dtype, device=dev)
    rec = 0
    for step in range(n_steps + 1):
        V = values(W_V, V_free)
        if rec < len(v_steps) and step == v_steps[rec]:
            values_rec[:, rec] = V[:, v_idx_t]
            rec += 1
        if step == n_steps:
            break
        out = _attention_pass(x, y, W_Q, W_K, V, W_O, b * bmask, weight, block)
        loss_h[:, step], acc_h[:, step], ent_h[:, step] = out["loss"], out["acc"], out["entropy"]
        alive = alive * torch.isfinite(out["loss"]).view(R, 1, 1).to(dtype)
        gate_v, gate_r = lrV * alive, lrR * alive
        # M-like step on the values: Delta v_j = -eta sum_i alpha_ij u_i (eq. 33); for
        # v_j = W_V x_j it reaches W_V as Delta W_V = sum_j Delta v_j x_j^T (eq. 31).
        dV = torch.nan_to_num(out["dV"])
        if any_free:
            V_free = V_free - gate_v * dV * free3
            W_V = W_V - gate_v * torch.bmm(xt, dV) * (~free3)
        else:
            W_V = W_V - gate_v * torch.bmm(xt, dV)
        gQ, gK, gO, gb = out["dQ"], out["dK"], out["dW_O"], out["db"]
        if len(alt_idx):  # alternating EM runs: routing gradients from a fresh E-like pass
            i = alt_idx
            V2 = torch.bmm(x[i], W_V[i])
            if any_free:
                V2 = torch.where(free3[i], V_free[i], V2)
            o2 = _attention_pass(x[i], y[i], W_Q[i], W_K[i], V2, W_O[i], (b * bmask)[i], weight[i], block)
            gQ, gK, gO, gb = gQ.clone(), gK.clone(), gO.clone(), gb.clone()
            gQ[i], gK[i], gO[i], gb[i] = o2["dQ"], o2["dK"], o2["dW_O"], o2["db"]
        # Small SGD step on W_Q, W_K, W_O (and b).
        W_Q = W_Q - gate_r * torch.nan_to_num(torch.bmm(xt, gQ))
        W_K = W_K - gate_r * torch.nan_to_num(torch.bmm(xt, gK))
        W_O = W_O - gate_r * torch.nan_to_num(gO)
        b = b - gate_r[:, :, 0] * torch.nan_to_num(gb) * bmask
        tick(R)
    final = _attention_pass(x, y, W_Q, W_K, values(W_V, V_free), W_O, b * bmask, weight, block, need_probs=True)
    cpu = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    return {
        "loss": cpu(loss_h), "acc": cpu(acc_h), "entropy": cpu(ent_h),
        "final_loss": cpu(final["loss"]), "final_acc": cpu(final["acc"]), "final_entropy": cpu(final["entropy"]),
        "probs": cpu(final["probs"]), "values": cpu(values_rec),
        "W_Q": cpu(W_Q), "W_K": cpu(W_K), "W_V": cpu(W_V), "W_O": cpu(W_O), "b": cpu(b * bmask),
        "V": cpu(values(W_V, V_free)),
    }


def kl_divergence(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over positions of ``KL(p_i || q_i) = sum_c p_ic log(p_ic / q_ic)`` in nats."""
    p = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
    q = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float64)
    as_float_array(p, "p", min_ndim=1)
    as_float_array(q, "q", min_ndim=1)
    if p.shape != q.shape:
        raise ValueError(f"q must have the same shape as p {p.shape}, got {q.shape}")
    kl = (p * (np.log(np.maximum(p, eps)) - np.log(np.maximum(q, eps)))).sum(-1)
    return float(kl.mean())


def steps_to_reach(curve: np.ndarray, level: float) -> int | None:
    """First step (0-based) at which ``curve <= level``; ``None`` if never."""
    c = np.asarray(as_float_array(np.asarray(curve, dtype=np.float64), "curve", ndim=1))
    hit = np.nonzero(c <= level)[0]
    return int(hit[0]) if hit.size else None


def summarize(result: Result, config: str) -> dict[str, np.ndarray]:
    """Per-seed Table 1 quantities for one configuration (arrays over its seeds)."""
    em, sgd = result.select(config, "em"), result.select(config, "sgd")
    if not em or not sgd or len(em) != len(sgd):
        raise ValueError(f"config {config!r} needs both schedules for every seed in the result")
    f = result.final
    kl = np.array([kl_divergence(result.probs[i], result.probs[j]) for i, j in zip(em, sgd)])
    reach = [steps_to_reach(result.loss[i], f["loss"][j]) for i, j in zip(em, sgd)]
    return {
        "seeds": np.array([result.runs[i][1] for i in em]),
        "loss_em": f["loss"][em], "loss_sgd": f["loss"][sgd],
        "acc_em": f["acc"][em], "acc_sgd": f["acc"][sgd],
        "entropy_em": f["entropy"][em], "entropy_sgd": f["entropy"][sgd],
        "kl_em_sgd": kl,
        "em_steps_to_sgd_final": np.array([np.nan if r is None else r for r in reach], dtype=float),
        "min_entropy": np.full(len(em), result.configs[config].min_entropy()),
    }
