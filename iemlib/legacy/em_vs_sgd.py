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

The M-like step, read three ways (``Config.values`` and ``Config.value_map``):

``values="projected", value_map="gradient"``
    ``Delta W_V = sum_j Delta v_j x_j^T`` (eq. 31) = ``-eta dLoss/dW_V``: the EM-like schedule
    is then SGD with the rate vector ``(lr_value on W_V, lr_routing on the rest)``.
``values="projected", value_map="least_squares"``
    the ``Delta W_V`` whose values ``X Delta W_V`` come closest (least squares) to the requested
    ``Delta v_j``: ``Delta W_V = (X^T X)^{-1} X^T Delta V`` in row layout, the paper's
    ``-eta U_bar X^T (X X^T)^{-1}``; a gradient step preconditioned by ``(X^T X)^{-1}``.
``values="free"``
    one free vector per training position, moved by ``Delta v_j`` itself. Such a model has
    no value map for a new sequence, so it cannot be scored on held-out data (NaN).

With the mean loss each ``Delta v_j`` is of order ``1/N``; ``match_effective_step=True``
multiplies the value step of the free and least-squares readings by
``kappa = tr(X^T X) / d_x`` (the mean non-zero eigenvalue of the Gram matrix ``X X^T`` that the
gradient map applies to the requested ``Delta V``), so all three move the values by comparable
amounts at the same ``lr_value``.

Every trained model is also scored on a held-out sequence from the same chain and the same
symbol means (data seed ``seed + heldout_offset``, the offset the authors' script uses for its
test sequence), beside the exact Bayes filter on both sequences; and, every ``probe_every``
steps, the trainer measures the attention entropy, ``||alpha_{t+1} - alpha_t||_F`` and
``||V_{t+1} - V_t||_F`` (the mechanism of §5.3/§7.2).
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
from .markov import bayes_filter_predictive, entropy_rate, make_dataset, sticky_transition_matrix

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
    "effective_step_scale",
    "least_squares_value_map",
    "gradient_value_map",
    "settling_step",
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
    value_map: str = "gradient"  # EM-like step on projected values: "gradient" (eq. 31) or "least_squares"
    match_effective_step: bool = False  # scale the free / least-squares value step by tr(X^T X)/d_x
    lr_sgd_value: float | None = None  # SGD's rate on W_V (or the free values); None: lr_sgd
    heldout_offset: int = 10000  # held-out sequence: data seed + this offset

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
        if self.value_map not in ("gradient", "least_squares"):
            raise ValueError(f"value_map must be 'gradient' or 'least_squares', got {self.value_map!r}")
        if self.lr_sgd_value is not None:
            check_positive(self.lr_sgd_value, "lr_sgd_value")
        check_int(self.heldout_offset, "heldout_offset", minimum=1)
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


def gradient_value_map(x: torch.Tensor, dV: torch.Tensor) -> torch.Tensor:
    """``sum_j dV_j x_j^T`` in row layout: ``x^T dV`` (``(..., d_x, d_v)``), the gradient map (eq. 31).

    ``x (..., N, d_x)`` are the inputs, ``dV (..., N, d_v)`` the requested value changes (or the
    value gradients): the result moved by ``-eta`` is the EM-like step on ``W_V`` read as eq. 31.
    """
    as_float_array(x, "x", min_ndim=2)
    as_float_array(dV, "dV", min_ndim=2)
    if x.shape[:-1] != dV.shape[:-1]:
        raise ValueError(f"dV must have the positions of x {tuple(x.shape[:-1])}, got {tuple(dV.shape)}")
    return x.transpose(-1, -2) @ dV


def least_squares_value_map(x: torch.Tensor, dV: torch.Tensor) -> torch.Tensor:
    """The ``Delta W`` whose values ``x @ Delta W`` are closest to ``dV`` in least squares.

    Row layout: ``(x^T x)^{-1} x^T dV``; in the paper's column layout ``U_bar X^T (X X^T)^{-1}``.
    It is the gradient map preconditioned by ``(x^T x)^{-1}`` (needs ``x`` of full column rank).
    """
    g = gradient_value_map(x, dV)
    gram = x.transpose(-1, -2) @ x
    return torch.linalg.solve(gram, g)


def effective_step_scale(x: torch.Tensor) -> torch.Tensor | float:
    """``kappa = tr(x^T x) / d_x``: the mean non-zero eigenvalue of the Gram matrix ``x x^T``.

    The gradient map changes the values by ``-eta x x^T dV``; the free and least-squares
    readings by ``-eta dV`` (projected, for the latter). ``eta * kappa`` in those two readings
    matches the gradient map's average gain at ``eta``. ``x (..., N, d_x)``; one value per batch.
    """
    as_float_array(x, "x", min_ndim=2)
    k = (x * x).sum((-1, -2)) / x.shape[-1]
    return float(k) if k.ndim == 0 else k


def settling_step(curve: np.ndarray, steps: np.ndarray, fraction: float = 0.1) -> float:
    """First step, after its peak, at which a non-negative per-step change has fallen to
    ``fraction`` of that peak (``nan`` if it never does): when a quantity "settles"."""
    c = np.asarray(as_float_array(np.asarray(curve, dtype=np.float64), "curve", ndim=1))
    st = np.asarray(steps)
    if st.shape != c.shape:
        raise ValueError(f"steps must have the shape of curve {c.shape}, got {st.shape}")
    f = check_positive(fraction, "fraction")
    k = int(np.argmax(c))
    hit = np.nonzero(c[k:] <= f * c[k])[0]
    return float(st[k + hit[0]]) if hit.size else float("nan")


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
    #: held-out sequence (seed + heldout_offset): loss, acc, entropy, kl_bayes (R,), NaN for free values;
    #: probs (R, N, C)
    heldout: dict[str, np.ndarray] = field(default_factory=dict)
    #: exact Bayes filter on each run's sequences: train_loss, train_acc, heldout_loss, heldout_acc (R,)
    bayes: dict[str, np.ndarray] = field(default_factory=dict)
    #: mechanism probes at ``probe_steps``: attn_entropy (mean over queries of -sum_j alpha log alpha),
    #: dalpha = ||alpha_{t+1} - alpha_t||_F, dvalue = ||V_{t+1} - V_t||_F, vnorm = ||V_t||_F, (R, n_probes)
    probe_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    kappa: np.ndarray = field(default_factory=lambda: np.zeros(0))  # tr(X^T X)/d_x of each run's training x

    def memorizing(self) -> np.ndarray:
        """Runs whose final training loss is below the Bayes filter's on their training sequence."""
        return self.final["loss"] < self.bayes["train_loss"]

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
    probe_every: int = 10,
) -> Result:
    """Train every (configuration, seed, schedule) as one batch; see the module docstring.

    ``configs`` is a :class:`Config`, or a list of them, or of ``(Config, schedules)`` pairs
    (each configuration with its own schedules; plain entries use ``schedules``).

    ``seeds`` overrides each configuration's seeds. Both schedules of a seed start from the
    same initialization and see the same data. Runs whose loss becomes non-finite are frozen
    and flagged in ``Result.diverged``.

    After training every model is scored on a held-out sequence (``Result.heldout``) and the
    exact Bayes filter on both sequences (``Result.bayes``); every ``probe_every`` steps the
    attention entropy and the per-step change of the attention weights and the values are
    measured (``Result.probes``; ``probe_every=0`` turns that off).
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
    probe_every = check_int(probe_every, "probe_every", minimum=0)
    dev = torch.device(device) if device is not None else default_device()
    c0 = cfgs[0]
    C, N, n_steps = c0.n_states, c0.seq_len - 1, c0.n_steps

    runs: list[tuple[str, int, str]] = []
    X, Y, XH, YH = [], [], [], []
    WQ, WK, WV, WO = [], [], [], []
    lrV, lrQKO, use_b, free, alt, wgt, ls, kap = [], [], [], [], [], [], [], []
    bayes_rows: list[tuple] = []
    data_cache: dict[tuple, object] = {}
    for cfg, scheds in pairs:
        P = cfg.transition_matrix()
        for seed in (seeds if seeds is not None else cfg.seeds):
            key = (cfg.reading, cfg.include_diagonal_in_normalization, cfg.stay_prob, seed, cfg.heldout_offset)
            if key not in data_cache:
                ds = make_dataset(P, cfg.seq_len, cfg.d_x, int(seed))
                dh = make_dataset(P, cfg.seq_len, cfg.d_x, int(seed) + cfg.heldout_offset)
                pb_tr = bayes_filter_predictive(P, ds.mu, ds.x)
                pb_ho = bayes_filter_predictive(P, dh.mu, dh.x)
                data_cache[key] = (ds, dh, pb_tr, pb_ho, float((ds.x.double() ** 2).sum()) / cfg.d_x)
            ds, dh, pb_tr, pb_ho, kappa = data_cache[key]
            p0 = init_params(int(seed), cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
            for s in scheds:
                runs.append((cfg.name, int(seed), s))
                X.append(ds.x); Y.append(ds.y); XH.append(dh.x); YH.append(dh.y)
                WQ.append(p0["W_Q"]); WK.append(p0["W_K"]); WV.append(p0["W_V"]); WO.append(p0["W_O"])
                is_free = cfg.values == "free"
                is_ls = s == "em" and cfg.value_map == "least_squares" and not is_free
                lr_v = (cfg.lr_sgd if cfg.lr_sgd_value is None else cfg.lr_sgd_value) if s == "sgd" else cfg.lr_value
                if cfg.match_effective_step and (is_free or is_ls):
                    lr_v *= kappa
                lrV.append(lr_v)
                lrQKO.append(cfg.lr_sgd if s == "sgd" else cfg.lr_routing)
                use_b.append(cfg.bias)
                free.append(is_free)
                ls.append(is_ls)
                kap.append(kappa)
                alt.append(s == "em" and cfg.em_update == "alternating")
                wgt.append(1.0 / N if cfg.reduction == "mean" else 1.0)
                bayes_rows.append((pb_tr, ds.y.numpy(), pb_ho, dh.y.numpy()))
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
        "ls": torch.tensor(ls, device=dev),
        "xh": torch.stack(XH).to(**f), "yh": torch.stack(YH).to(dev),
    }
    if any(ls):  # least-squares map: (X^T X)^{-1} per run, formed in float64
        xd = torch.stack(X).to(torch.float64)
        state["Pls"] = torch.linalg.inv(xd.transpose(1, 2) @ xd).to(**f)
    gen = np.random.default_rng(0)
    v_idx = np.sort(gen.choice(N, size=min(n_value_samples, N), replace=False))
    v_steps = np.arange(0, n_steps + 1, record_every)
    if v_steps[-1] != n_steps:
        v_steps = np.append(v_steps, n_steps)
    p_steps = np.arange(0, n_steps, probe_every) if probe_every else np.zeros(0, dtype=int)

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
        outs = [_train_group(state, groups[0], n_steps, v_idx, v_steps, p_steps, block, tick)]
    else:
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(len(groups)) as ex:
                outs = list(ex.map(lambda g: _train_group(state, g, n_steps, v_idx, v_steps, p_steps, block, tick),
                                   groups))
        finally:
            torch.set_num_threads(threads_before)
    bar.close()
    seconds = time.perf_counter() - t0
    order = np.concatenate(groups)
    inv = np.argsort(order)
    merged = {k: np.concatenate([o[k] for o in outs])[inv] for k in outs[0]}
    diverged = ~np.isfinite(merged["loss"]).all(1) | ~np.isfinite(merged["final_loss"])
    bayes = {k: np.empty(R) for k in ("train_loss", "train_acc", "heldout_loss", "heldout_acc")}
    kl_tr, kl_ho = np.full(R, np.nan), np.full(R, np.nan)
    for r, (pb_tr, y_tr, pb_ho, y_ho) in enumerate(bayes_rows):
        for tag, pb, yy in (("train", pb_tr, y_tr), ("heldout", pb_ho, y_ho)):
            bayes[tag + "_loss"][r] = -np.log(pb[np.arange(len(yy)), yy]).mean()
            bayes[tag + "_acc"][r] = (pb.argmax(-1) == yy).mean()
        if np.isfinite(merged["probs"][r]).all():
            kl_tr[r] = kl_divergence(pb_tr, merged["probs"][r])
        if not free[r] and np.isfinite(merged["heldout_probs"][r]).all():
            kl_ho[r] = kl_divergence(pb_ho, merged["heldout_probs"][r])
    final = {k: merged["final_" + k] for k in ("loss", "acc", "entropy")}
    final["kl_bayes"] = kl_tr
    heldout = {k: merged["heldout_" + k] for k in ("loss", "acc", "entropy", "probs")}
    heldout["kl_bayes"] = kl_ho
    return Result(
        runs=runs, configs={c.name: c for c in cfgs},
        loss=merged["loss"], acc=merged["acc"], entropy=merged["entropy"],
        final=final,
        probs=merged["probs"], value_steps=v_steps, values=merged["values"], value_index=v_idx,
        diverged=diverged, seconds=seconds, device=str(dev),
        params={k: merged[k] for k in ("W_Q", "W_K", "W_V", "W_O", "b", "V")},
        heldout=heldout, bayes=bayes, probe_steps=p_steps,
        probes={k: merged["probe_" + k] for k in ("attn_entropy", "dalpha", "dvalue", "vnorm")},
        kappa=np.array(kap),
    )


def _attention_probe(x, W_Q, W_K, W_Q2, W_K2, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean attention entropy under ``(W_Q, W_K)`` and ``||alpha(W_Q2, W_K2) - alpha(W_Q, W_K)||_F``,
    block by block over the queries (the ``T x T`` matrices are never stored)."""
    R, N, _ = x.shape
    scale = 1.0 / math.sqrt(W_Q.shape[-1])
    dt, dev = x.dtype, x.device
    tri = torch.full((B, B), -1e30 if dt == torch.float32 else -1e300, dtype=dt, device=dev).triu_(1)
    Q1, Q2 = torch.bmm(x, W_Q) * scale, torch.bmm(x, W_Q2) * scale
    K1t, K2t = torch.bmm(x, W_K).transpose(1, 2), torch.bmm(x, W_K2).transpose(1, 2)
    ent = torch.zeros(R, dtype=dt, device=dev)
    d2 = torch.zeros(R, dtype=dt, device=dev)
    for a in range(0, N, B):
        e = min(a + B, N)
        n = e - a
        S1 = torch.bmm(Q1[:, a:e], K1t[:, :, :e])
        S1[:, :, a:e] += tri[:n, :n]
        logA = torch.log_softmax(S1, -1)
        A1 = logA.exp()
        ent -= (A1 * logA.clamp_min(-1e4)).sum((1, 2))
        S2 = torch.bmm(Q2[:, a:e], K2t[:, :, :e])
        S2[:, :, a:e] += tri[:n, :n]
        d2 += ((torch.softmax(S2, -1) - A1) ** 2).sum((1, 2))
    return ent / N, d2.sqrt()


def _train_group(state: dict, group: list[int], n_steps: int, v_idx: np.ndarray, v_steps: np.ndarray,
                 p_steps: np.ndarray, block: int, tick) -> dict[str, np.ndarray]:
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
    any_ls = bool(s["ls"].any())
    ls3 = s["ls"].view(R, 1, 1)
    xt = x.transpose(1, 2).contiguous()
    V_free = torch.bmm(x, W_V)  # free values start where the projected ones are
    v_idx_t = torch.as_tensor(v_idx, device=dev)
    values_rec = torch.zeros(R, len(v_steps), len(v_idx), W_V.shape[-1], dtype=dtype, device=dev)
    probe_set = {int(t): k for k, t in enumerate(p_steps)}
    pr = {k: torch.full((R, len(p_steps)), float("nan"), dtype=dtype, device=dev)
          for k in ("attn_entropy", "dalpha", "dvalue", "vnorm")}

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
        WQ_old, WK_old = W_Q, W_K
        # M-like step on the values: Delta v_j = -eta sum_i alpha_ij u_i (eq. 33); for
        # v_j = W_V x_j it reaches W_V as Delta W_V = sum_j Delta v_j x_j^T (eq. 31), or, for the
        # least-squares reading, as (X^T X)^{-1} X^T Delta V.
        dV = torch.nan_to_num(out["dV"])
        gW = torch.bmm(xt, dV)
        if any_ls:
            gW = torch.where(ls3, torch.bmm(s["Pls"], gW), gW)
        if any_free:
            V_free = V_free - gate_v * dV * free3
            W_V = W_V - gate_v * gW * (~free3)
        else:
            W_V = W_V - gate_v * gW
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
        if step in probe_set:  # the mechanism: how much attention and values move in this step
            k = probe_set[step]
            pr["attn_entropy"][:, k], pr["dalpha"][:, k] = _attention_probe(x, WQ_old, WK_old, W_Q, W_K, block)
            pr["dvalue"][:, k] = torch.linalg.vector_norm(values(W_V, V_free) - V, dim=(1, 2))
            pr["vnorm"][:, k] = torch.linalg.vector_norm(V, dim=(1, 2))
        tick(R)
    V = values(W_V, V_free)
    final = _attention_pass(x, y, W_Q, W_K, V, W_O, b * bmask, weight, block, need_probs=True)
    xh, yh = s["xh"], s["yh"]
    held = _attention_pass(xh, yh, W_Q, W_K, torch.bmm(xh, W_V), W_O, b * bmask, weight, block, need_probs=True)
    nan_free = torch.where(free, torch.full_like(held["loss"], float("nan")), torch.zeros_like(held["loss"]))
    cpu = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    out = {
        "loss": cpu(loss_h), "acc": cpu(acc_h), "entropy": cpu(ent_h),
        "final_loss": cpu(final["loss"]), "final_acc": cpu(final["acc"]), "final_entropy": cpu(final["entropy"]),
        "probs": cpu(final["probs"]), "values": cpu(values_rec),
        "W_Q": cpu(W_Q), "W_K": cpu(W_K), "W_V": cpu(W_V), "W_O": cpu(W_O), "b": cpu(b * bmask),
        "V": cpu(V),
        "heldout_probs": cpu(held["probs"] + nan_free[:, None, None]),
    }
    for k in ("loss", "acc", "entropy"):
        out["heldout_" + k] = cpu(held[k] + nan_free)
    for k, v in pr.items():
        out["probe_" + k] = cpu(v)
    return out


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
    """Per-seed Table 1 quantities for one configuration (arrays over its seeds).

    The KL divergences between the schedules need the predictive distributions; for a result
    loaded from an archive (:mod:`iemlib.em_vs_sgd_archive`), which keeps none, they are NaN.
    """
    em, sgd = result.select(config, "em"), result.select(config, "sgd")
    if not em or not sgd or len(em) != len(sgd):
        raise ValueError(f"config {config!r} needs both schedules for every seed in the result")
    f = result.final
    has_probs = result.probs.ndim == 3 and result.probs.shape[1] > 0  # an archived result keeps none
    kl = (np.array([kl_divergence(result.probs[i], result.probs[j]) for i, j in zip(em, sgd)])
          if has_probs else np.full(len(em), np.nan))
    reach = [steps_to_reach(result.loss[i], f["loss"][j]) for i, j in zip(em, sgd)]
    h = result.heldout
    kl_h = (np.array([kl_divergence(h["probs"][i], h["probs"][j]) for i, j in zip(em, sgd)])
            if h and "probs" in h and np.isfinite(h["probs"][em + sgd]).all() else np.full(len(em), np.nan))
    extra = {}
    if h:
        extra = {
            "heldout_loss_em": h["loss"][em], "heldout_loss_sgd": h["loss"][sgd],
            "heldout_acc_em": h["acc"][em], "heldout_acc_sgd": h["acc"][sgd],
            "heldout_entropy_em": h["entropy"][em], "heldout_entropy_sgd": h["entropy"][sgd],
            "heldout_kl_em_sgd": kl_h,
            "bayes_train_loss": result.bayes["train_loss"][em], "bayes_train_acc": result.bayes["train_acc"][em],
            "bayes_heldout_loss": result.bayes["heldout_loss"][em],
            "bayes_heldout_acc": result.bayes["heldout_acc"][em],
        }
    return extra | {
        "seeds": np.array([result.runs[i][1] for i in em]),
        "loss_em": f["loss"][em], "loss_sgd": f["loss"][sgd],
        "acc_em": f["acc"][em], "acc_sgd": f["acc"][sgd],
        "entropy_em": f["entropy"][em], "entropy_sgd": f["entropy"][sgd],
        "kl_em_sgd": kl,
        "em_steps_to_sgd_final": np.array([np.nan if r is None else r for r in reach], dtype=float),
        "min_entropy": np.full(len(em), result.configs[config].min_entropy()),
    }
