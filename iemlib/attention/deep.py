"""A batch of small pre-norm transformers (several heads, several layers) and their trainer.

The authors' public script has a ``--deep`` mode: a pre-norm transformer (input projection to
``d_model``, blocks of multi-head causal attention and a GELU feed-forward network, each behind a
LayerNorm and on a residual path, a final LayerNorm and a linear read-out), trained on the sticky
chain with AdamW and a cosine learning-rate decay. This module implements that architecture for a
*batch* of independent models (leading axis ``R``: seeds and variants), vectorized over runs and
heads (the heads of a layer are one tensor axis; the only Python loop in a step is over layers),
and trains it with autograd and a batched AdamW that gives every run its own rates, so an
"EM-like" variant (a larger rate on every value projection) trains beside the plain one.

The **loss** minimized is each run's mean cross-entropy of ``y_t`` given ``x_1..x_t`` on its one
training sequence (full batch). AdamW per run (PyTorch's ``torch.optim.AdamW`` update): decoupled
weight decay ``p -= lr wd p``, then Adam with ``betas = (0.9, 0.999)``, ``eps = 1e-8``; the rate
follows ``lr_t = lr (1 + cos(pi t / n_steps)) / 2`` (``CosineAnnealingLR`` to zero); the gradient
of each run is clipped to total norm ``clip`` first, as the authors do. No dropout (the authors use
0.1; without it runs are deterministic and the diagnostics read the trained weights as they are).

Layout: rows are positions and weights act on the right (``x @ W``). Initialization as
``torch.nn.Linear`` (weights and biases uniform in ``+-1/sqrt(fan_in)``) and ``LayerNorm``
(gain 1, bias 0), drawn per run from a generator seeded with the run's seed, so both variants of a
seed start from the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import as_numpy, check_int, check_positive
from ..markov import bayes_filter_loss, make_dataset, sticky_transition_matrix
from ..runtime import resolve_device, single_threaded

__all__ = [
    "DeepConfig",
    "DeepRun",
    "param_shapes",
    "init_deep_params",
    "DeepForward",
    "deep_forward",
    "HELDOUT_EVERY",
    "DeepTraining",
    "train_deep",
    "HeadDiagnostics",
    "head_diagnostics",
    "target_key_advantage_gap",
    "deep_to_arrays",
    "deep_from_arrays",
    "TorchReference",
]


@dataclass(frozen=True)
class DeepConfig:
    """The chain, the model's sizes and the optimizer of the deep runs.

    Attributes
    ----------
    name
        a label.
    n_states, stay_prob, include_diagonal_in_normalization
        the chain (:func:`iemlib.markov.sticky_transition_matrix`, reading ``"inverse_circular"``).
    seq_len
        states per sequence (``N = seq_len - 1`` positions), training and held-out.
    d_x, d_model, n_layers, n_heads, d_ff
        sizes (``d_model`` divisible by ``n_heads``).
    n_steps
        training steps (the cosine schedule's length).
    lr, weight_decay, clip
        AdamW's rate, decoupled weight decay and the gradient-norm clip.
    heldout_offset
        the held-out sequence's seed is the run's seed plus this.
    """

    name: str = "deep"
    n_states: int = 8
    stay_prob: float = 0.3
    include_diagonal_in_normalization: bool = False
    seq_len: int = 2000
    d_x: int = 20
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 256
    n_steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.01
    clip: float = 1.0
    heldout_offset: int = 10000

    def __post_init__(self) -> None:
        for k in ("n_states", "seq_len", "d_x", "d_model", "d_ff"):
            check_int(getattr(self, k), k, minimum=2)
        for k in ("n_layers", "n_heads", "n_steps", "heldout_offset"):
            check_int(getattr(self, k), k, minimum=1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for k in ("lr", "clip"):
            check_positive(getattr(self, k), k)
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)

    def transition_matrix(self) -> np.ndarray:
        """The chain's transition matrix."""
        return sticky_transition_matrix(self.n_states, self.stay_prob,
                                        include_diagonal_in_normalization=self.include_diagonal_in_normalization)


@dataclass(frozen=True)
class DeepRun:
    """One deep run: a seed and the factor on the value projections' rate.

    Attributes
    ----------
    random_state
        the seed of the training sequence and of the initial weights.
    value_lr_scale
        the rate on every value projection (``W_v``, ``b_v`` of every layer) is ``lr`` times
        this: 1 for plain AdamW, larger for the EM-like variant.
    """

    random_state: int
    value_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_int(self.random_state, "random_state", minimum=0)
        check_positive(self.value_lr_scale, "value_lr_scale")

    @property
    def label(self) -> str:
        """``"AdamW"`` or ``"EM-like (x10)"``."""
        return "AdamW" if self.value_lr_scale == 1 else f"EM-like (x{self.value_lr_scale:g})"


def param_shapes(c: DeepConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape (without the run axis) of every parameter of a model of ``c``'s sizes."""
    D, L, Fd, C = c.d_model, c.n_layers, c.d_ff, c.n_states
    return {
        "W_in": (c.d_x, D), "b_in": (D,),
        "ln1_w": (L, D), "ln1_b": (L, D),
        "W_q": (L, D, D), "b_q": (L, D), "W_k": (L, D, D), "b_k": (L, D), "W_v": (L, D, D), "b_v": (L, D),
        "W_o": (L, D, D), "b_o": (L, D),
        "ln2_w": (L, D), "ln2_b": (L, D),
        "W_1": (L, D, Fd), "b_1": (L, Fd), "W_2": (L, Fd, D), "b_2": (L, D),
        "lnf_w": (D,), "lnf_b": (D,), "W_out": (D, C), "b_out": (C,),
    }


#: The fan-in of each linear map (weights and biases are uniform in +-1/sqrt(fan_in)).
def _fan_in(c: DeepConfig, name: str) -> int:
    return {"in": c.d_x, "1": c.d_model, "2": c.d_ff}.get(name.split("_")[1], c.d_model)


def init_deep_params(c: DeepConfig, seeds: Sequence[int], dtype: torch.dtype = torch.float32
                     ) -> dict[str, torch.Tensor]:
    """Initial weights of one model per seed (leading axis ``R = len(seeds)``), CPU tensors."""
    if not isinstance(c, DeepConfig):
        raise ValueError(f"c must be a DeepConfig, got {type(c).__name__}")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in param_shapes(c)}
    for s in seeds:
        g = torch.Generator().manual_seed(check_int(s, "seeds", minimum=0))
        for k, shp in param_shapes(c).items():
            if k.startswith("ln"):
                t = torch.ones(shp) if k.endswith("_w") else torch.zeros(shp)
            else:
                a = 1.0 / math.sqrt(_fan_in(c, k))
                t = (torch.rand(shp, generator=g) * 2 - 1) * a
            out[k].append(t)
    return {k: torch.stack(v).to(dtype) for k, v in out.items()}


@dataclass(frozen=True, eq=False)
class DeepForward:
    """:func:`deep_forward`'s outputs (tensors; per-layer lists when ``capture``).

    Attributes
    ----------
    logits
        ``(R, N, C)``.
    residual
        the residual stream after the input projection and after each block:
        ``n_layers + 1`` tensors ``(R, N, d_model)`` (empty unless captured).
    scores, alpha
        per layer ``(R, H, N, N)`` causal scores (upper triangle ``-inf``) and attention weights.
    values, g
        per layer ``(R, H, N, d_head)`` each head's values and its outputs ``g_i = sum_j alpha_ij v_j``.
    """

    logits: torch.Tensor
    residual: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    alpha: list = field(default_factory=list)
    values: list = field(default_factory=list)
    g: list = field(default_factory=list)


def _ln(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(h, h.shape[-1:]) * w.unsqueeze(-2) + b.unsqueeze(-2)


def deep_forward(p: dict[str, torch.Tensor], x: torch.Tensor, n_heads: int, *, capture: bool = False) -> DeepForward:
    """Forward pass of a batch of ``R`` models on their sequences ``x`` of shape ``(R, N, d_x)``.

    Heads are one tensor axis: a layer's queries, keys and values are ``(R, H, N, d_head)`` and one
    call of ``torch.nn.functional.scaled_dot_product_attention`` (causal) serves every head of every
    run. With ``capture`` the attention is formed explicitly and the per-layer tensors are returned
    (scores and head outputs with ``retain_grad``, for the advantage law by autograd).
    """
    R, N, _ = x.shape
    L = p["W_q"].shape[1]
    D = p["W_q"].shape[-1]
    H = check_int(n_heads, "n_heads", minimum=1)
    dh = D // H
    mask = torch.ones(N, N, dtype=torch.bool, device=x.device).triu(1)
    h = torch.baddbmm(p["b_in"].unsqueeze(1), x, p["W_in"])
    out = DeepForward(logits=h)
    if capture:
        out.residual.append(h)

    def heads(t: torch.Tensor) -> torch.Tensor:  # (R, N, D) -> (R, H, N, dh)
        return t.view(R, N, H, dh).transpose(1, 2)

    for layer in range(L):
        a = _ln(h, p["ln1_w"][:, layer], p["ln1_b"][:, layer])
        q, k, v = (heads(torch.baddbmm(p["b_" + n][:, layer].unsqueeze(1), a, p["W_" + n][:, layer]))
                   for n in "qkv")
        if not capture:  # PyTorch's fused causal attention: the N x N weights are never stored
            g = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            s = s.masked_fill(mask, float("-inf"))
            alpha = torch.softmax(s, -1)
            g = alpha @ v
        if capture:
            s.retain_grad()
            g.retain_grad()
            out.scores.append(s)
            out.alpha.append(alpha)
            out.values.append(v)
            out.g.append(g)
        o = g.transpose(1, 2).reshape(R, N, D)
        h = h + torch.baddbmm(p["b_o"][:, layer].unsqueeze(1), o, p["W_o"][:, layer])
        a2 = _ln(h, p["ln2_w"][:, layer], p["ln2_b"][:, layer])
        f = F.gelu(torch.baddbmm(p["b_1"][:, layer].unsqueeze(1), a2, p["W_1"][:, layer]))
        h = h + torch.baddbmm(p["b_2"][:, layer].unsqueeze(1), f, p["W_2"][:, layer])
        if capture:
            out.residual.append(h)
    z = torch.baddbmm(p["b_out"].unsqueeze(1), _ln(h, p["lnf_w"], p["lnf_b"]), p["W_out"])
    return dataclasses.replace(out, logits=z)


#: The held-out loss is measured every this many steps during training.
HELDOUT_EVERY: int = 25


def _mean_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(R,)`` mean cross-entropy of each run."""
    R, N, C = z.shape
    return F.cross_entropy(z.reshape(R * N, C), y.reshape(R * N), reduction="none").view(R, N).mean(1)


@dataclass(frozen=True, eq=False)
class DeepTraining:
    """What :func:`train_deep` returns (float64 numpy, leading run axis ``R``).

    Attributes
    ----------
    runs, config
        the runs and the configuration.
    loss
        ``(R, n)`` training loss before each step (``n`` the steps made).
    final_loss, heldout_loss
        ``(R,)`` after the last step made, on the training and held-out sequences.
    heldout_steps, heldout_curve
        ``(K,)`` steps and ``(R, K)`` the held-out loss before those steps (every
        ``HELDOUT_EVERY`` steps).
    bayes_loss, bayes_heldout_loss
        ``(R,)`` the exact Bayes filter's on the same sequences.
    params
        name -> ``(R, ...)`` the weights after the last step.
    diverged
        ``(R,)`` non-finite loss at some step.
    seconds, device
        wall time of the loop and where it ran.
    """

    runs: tuple[DeepRun, ...]
    config: DeepConfig
    loss: np.ndarray
    final_loss: np.ndarray
    heldout_loss: np.ndarray
    heldout_steps: np.ndarray
    heldout_curve: np.ndarray
    bayes_loss: np.ndarray
    bayes_heldout_loss: np.ndarray
    params: dict[str, np.ndarray]
    diverged: np.ndarray
    seconds: float
    device: str

    def select(self, value_lr_scale: float) -> list[int]:
        """Indices of the runs of one variant, in run order."""
        return [i for i, r in enumerate(self.runs) if math.isclose(r.value_lr_scale, value_lr_scale)]


def _sequences(c: DeepConfig, seed: int) -> tuple:
    P = c.transition_matrix()
    ds = make_dataset(P, c.seq_len, c.d_x, seed)
    dh = make_dataset(P, c.seq_len, c.d_x, seed + c.heldout_offset)
    return ds, dh, bayes_filter_loss(ds), bayes_filter_loss(dh)


def _adamw_step(p, grads, state, lr_t, scale_v, c: DeepConfig, t: int) -> None:
    """One batched AdamW update in place; ``lr_t`` is ``(R,)``, value projections get ``lr_t * scale_v``."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    for k, w in p.items():
        g = grads[k]
        shp = (-1,) + (1,) * (w.dim() - 1)
        lr = (lr_t * scale_v if k in ("W_v", "b_v") else lr_t).view(shp)
        m, v = state[k]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        w.mul_(1 - lr * c.weight_decay)
        denom = (v / (1 - b2**t)).sqrt_().add_(eps)
        w.sub_(lr / (1 - b1**t) * m / denom)


def train_deep(runs: Sequence[DeepRun], config: DeepConfig, *, stop_after: int | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
               progress: bool = True, desc: str = "deep runs") -> DeepTraining:
    """Train every run as one batch of models; see the module docstring.

    Minimizes each run's mean cross-entropy loss on its training sequence with batched AdamW
    (per-run gradient clipping, cosine decay over ``config.n_steps``).

    Longer than 80 lines: the training loop is kept in one piece, in the order of its
    floating-point operations, because the chapter checks live runs against the archive it wrote.

    Parameters
    ----------
    runs : the runs (:class:`DeepRun`).
    config : the :class:`DeepConfig`.
    stop_after : stop after that many steps of the ``n_steps`` schedule (a prefix of the full
        runs, for checks against an archive); ``None``: all.
    device, dtype : where and in what precision (:func:`iemlib.runtime.resolve_device`).
    progress, desc : a tqdm bar and its label.

    Returns
    -------
    DeepTraining
    """
    from tqdm import tqdm

    runs = tuple(runs)
    if not runs or not all(isinstance(r, DeepRun) for r in runs):
        raise ValueError("runs must be a non-empty sequence of DeepRun")
    if not isinstance(config, DeepConfig):
        raise ValueError(f"config must be a DeepConfig, got {type(config).__name__}")
    n = config.n_steps if stop_after is None else check_int(stop_after, "stop_after", minimum=1)
    if n > config.n_steps:
        raise ValueError(f"stop_after must be at most n_steps = {config.n_steps}, got {n}")
    dev = resolve_device(device)
    data = {s: _sequences(config, s) for s in sorted({r.random_state for r in runs})}
    f = dict(dtype=dtype, device=dev)
    x = torch.stack([data[r.random_state][0].x for r in runs]).to(**f)
    y = torch.stack([data[r.random_state][0].y for r in runs]).to(dev)
    p = {k: v.to(**f).requires_grad_() for k, v in
         init_deep_params(config, [r.random_state for r in runs], dtype).items()}
    state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in p.items()}
    scale_v = torch.tensor([r.value_lr_scale for r in runs], **f)
    R = len(runs)
    loss_h = torch.zeros(R, n, **f)
    xh = torch.stack([data[r.random_state][1].x for r in runs]).to(**f)
    yh = torch.stack([data[r.random_state][1].y for r in runs]).to(dev)
    h_steps = list(range(0, n, HELDOUT_EVERY))
    held_h = torch.zeros(R, len(h_steps), **f)
    ctx = single_threaded() if dev.type == "cpu" else contextlib.nullcontext()
    bar = tqdm(total=n, desc=desc, disable=not progress, mininterval=1.0, unit="step")
    with ctx:
        t0 = time.perf_counter()
        for step in range(n):
            if step % HELDOUT_EVERY == 0:
                with torch.no_grad():
                    held_h[:, step // HELDOUT_EVERY] = _mean_ce(deep_forward(p, xh, config.n_heads).logits, yh)
            loss = _mean_ce(deep_forward(p, x, config.n_heads).logits, y)
            grads = torch.autograd.grad(loss.sum(), list(p.values()))
            grads = dict(zip(p, (torch.nan_to_num(g) for g in grads)))
            with torch.no_grad():
                loss_h[:, step] = loss.detach()
                norm = torch.sqrt(sum((g.reshape(R, -1) ** 2).sum(1) for g in grads.values()))
                coef = (config.clip / (norm + 1e-6)).clamp(max=1.0)
                for k in grads:
                    grads[k] = grads[k] * coef.view((-1,) + (1,) * (grads[k].dim() - 1))
                lr_t = torch.full((R,), config.lr * 0.5 * (1 + math.cos(math.pi * step / config.n_steps)), **f)
                _adamw_step(p, grads, state, lr_t, scale_v, config, step + 1)
            bar.update(1)
        seconds = time.perf_counter() - t0
        bar.close()
        with torch.no_grad():
            fin = _mean_ce(deep_forward(p, x, config.n_heads).logits, y)
            held = _mean_ce(deep_forward(p, xh, config.n_heads).logits, yh)
    cpu = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    lh = cpu(loss_h)
    return DeepTraining(
        runs=runs, config=config, loss=lh, final_loss=cpu(fin), heldout_loss=cpu(held),
        heldout_steps=np.array(h_steps), heldout_curve=cpu(held_h),
        bayes_loss=np.array([data[r.random_state][2] for r in runs]),
        bayes_heldout_loss=np.array([data[r.random_state][3] for r in runs]),
        params={k: cpu(v) for k, v in p.items()},
        diverged=~(np.isfinite(lh).all(1) & np.isfinite(cpu(fin))), seconds=seconds, device=str(dev),
    )


# ------------------------------------------------------------------------------------------------
# diagnostics (the paper's §8.1, per layer and head) and the advantage law by autograd
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class HeadDiagnostics:
    """Per layer and head diagnostics of trained deep models on a sequence (:func:`head_diagnostics`).

    Arrays are ``(R, L, H)`` unless said otherwise.

    Attributes
    ----------
    loss
        ``(R,)`` mean cross-entropy on the sequence.
    attention_entropy
        mean entropy of the attention rows (nats).
    self_mass, previous_mass
        mean ``alpha_ii`` and ``alpha_{i,i-1}``: attention to the current and the previous position.
    usage_top
        share of the total column usage ``sum_i alpha_ij`` held by the 10 % most used columns.
    value_norm
        mean ``||v_j||``.
    advantage_positive
        fraction of causal entries with positive advantage ``A_ij = -(b_ij - E_alpha_i[b])``.
    advantage_law_error
        largest ``|dLoss/ds_ij - alpha_ij (b_ij - E_alpha_i[b])|`` over the entries, divided by the
        largest ``|dLoss/ds_ij|``: ``dLoss/ds`` by autograd, the right side from ``u_i = dLoss/dg_i``
        (autograd) and the head's values.
    residual
        ``L + 1`` arrays ``(R, N, d_model)``: the residual stream after the input projection and
        after each block (for probes).
    advantage
        ``(R, L, H, m, m)``: the advantage matrices ``A_ij`` of the first ``m`` query and key
        positions (``m = keep_advantage``; zero above the diagonal), or ``None`` when ``m = 0``.
    """

    loss: np.ndarray
    attention_entropy: np.ndarray
    self_mass: np.ndarray
    previous_mass: np.ndarray
    usage_top: np.ndarray
    value_norm: np.ndarray
    advantage_positive: np.ndarray
    advantage_law_error: np.ndarray
    residual: list
    advantage: np.ndarray | None = None


def head_diagnostics(params: dict[str, Any], x: Any, y: Any, n_heads: int, *,
                     keep_advantage: int = 0) -> HeadDiagnostics:
    """The paper's §8.1 diagnostics for every head of every layer, and the advantage law checked by autograd.

    One forward and one backward pass (float64) of the mean cross-entropy **loss** of each model on
    the sequence ``x, y``; ``u_i = dLoss/dg_i`` and ``dLoss/ds_ij`` are read off autograd, and the
    advantage law ``dLoss/ds_ij = alpha_ij (b_ij - E_alpha_i[b])`` with ``b_ij = u_i . v_j`` is
    checked on every head (it holds for any head whose output feeds a differentiable loss).

    Parameters
    ----------
    params : name -> ``(R, ...)`` weights (``DeepTraining.params``).
    x : ``(N, d_x)`` or ``(R, N, d_x)``; y : ``(N,)`` or ``(R, N)`` integer targets.
    n_heads : heads per layer.
    keep_advantage : int >= 0, keep the advantage matrices of the first ``keep_advantage``
        positions (``HeadDiagnostics.advantage``; at most the sequence length).

    Returns
    -------
    HeadDiagnostics
    """
    if not isinstance(params, dict) or "W_q" not in params:
        raise ValueError("params must be a DeepTraining.params dict")
    p = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64).requires_grad_() for k, v in params.items()}
    R = p["W_q"].shape[0]
    x_ = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y_ = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if x_.ndim == 2:
        x_, y_ = x_.expand(R, *x_.shape), y_.expand(R, *y_.shape)
    if x_.ndim != 3 or y_.shape != x_.shape[:2] or x_.shape[0] != R:
        raise ValueError(f"x must be (N, d_x) or (R, N, d_x) and y match it, got {tuple(x_.shape)}, {tuple(y_.shape)}")
    out = deep_forward(p, x_, n_heads, capture=True)
    loss = _mean_ce(out.logits, y_)
    loss.sum().backward()
    N = x_.shape[1]
    m = check_int(keep_advantage, "keep_advantage", minimum=0)
    if m > N:
        raise ValueError(f"keep_advantage must be at most the sequence length {N}, got {m}")
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    res = {k: [] for k in ("ent", "self", "prev", "top", "vn", "pos", "err", "adv")}
    k_top = max(1, N // 10)
    with torch.no_grad():
        for s, A, v, g in zip(out.scores, out.alpha, out.values, out.g):
            res["ent"].append(-(A * torch.log(A.clamp_min(1e-300))).sum(-1).mean(-1))
            res["self"].append(A.diagonal(dim1=-2, dim2=-1).mean(-1))
            res["prev"].append(A.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1))
            use = A.sum(-2)
            res["top"].append(use.topk(k_top, -1).values.sum(-1) / use.sum(-1))
            res["vn"].append(v.norm(dim=-1).mean(-1))
            B = g.grad @ v.transpose(-1, -2)  # b_ij = u_i . v_j
            B = B.masked_fill(~causal, 0.0)
            adv = -(B - (A * B).sum(-1, keepdim=True))
            res["pos"].append(((adv > 0) & causal).sum((-1, -2)) / causal.sum())
            res["adv"].append(adv[..., :m, :m].masked_fill(~causal[:m, :m], 0.0))
            law = A * (-adv)
            ds = s.grad.masked_fill(~causal, 0.0)
            res["err"].append((ds - law).abs().amax((-1, -2)) / ds.abs().amax((-1, -2)).clamp_min(1e-300))
    st = lambda k: torch.stack(res[k], 1).numpy()  # noqa: E731  (R, L, H)
    return HeadDiagnostics(
        loss=loss.detach().numpy(), attention_entropy=st("ent"), self_mass=st("self"), previous_mass=st("prev"),
        usage_top=st("top"), value_norm=st("vn"), advantage_positive=st("pos"), advantage_law_error=st("err"),
        residual=[h.detach().numpy() for h in out.residual],
        advantage=st("adv") if m else None,
    )


def target_key_advantage_gap(advantage: Any, y: Any) -> np.ndarray:
    """Mean advantage of the keys that carry each query's target, minus that of the other keys.

    On the sticky chain the input at position ``j`` embeds the symbol ``y_{j-1}``, so key ``j``
    *carries* query ``i``'s target when ``y_{j-1} = y_i``. Over the causal entries ``1 <= j <= i``
    of the kept block (key 0 carries no symbol), the gap is the mean ``A_ij`` over the keys that
    carry the target minus the mean over those that do not; positive means a gradient step on the
    scores would shift attention towards the target-carrying keys.

    Parameters
    ----------
    advantage : ``(R, L, H, m, m)`` advantage matrices (``HeadDiagnostics.advantage``).
    y : ``(R, N)`` integer targets of the same sequences, ``N >= m``.

    Returns
    -------
    ``(R, L, H)`` float64 gaps.
    """
    A = as_numpy(advantage, "advantage", ndim=5)
    R, m = A.shape[0], A.shape[-1]
    if A.shape[-2] != m or m < 2:
        raise ValueError(f"advantage must be (R, L, H, m, m) with m >= 2, got {A.shape}")
    y_ = np.asarray(y)
    if y_.ndim != 2 or y_.shape[0] != R or y_.shape[1] < m or not np.issubdtype(y_.dtype, np.integer):
        raise ValueError(f"y must be ({R}, N >= {m}) integer targets, got {y_.shape} of {y_.dtype}")
    causal = np.tril(np.ones((m, m), bool))
    causal[:, 0] = False  # key 0 carries no symbol
    out = np.empty(A.shape[:3])
    for a in range(R):
        t = y_[a, :m]
        match = np.zeros((m, m), bool)
        match[:, 1:] = t[:, None] == t[None, :-1]
        on, off = match & causal, ~match & causal
        if not on.any() or not off.any():
            raise ValueError(f"run {a}: every causal key carries the target, or none does: no gap to take")
        out[a] = A[a][..., on].mean(-1) - A[a][..., off].mean(-1)
    return out


# ------------------------------------------------------------------------------------------------
# archive helpers
# ------------------------------------------------------------------------------------------------
_ARRAYS = ("loss", "final_loss", "heldout_loss", "heldout_steps", "heldout_curve", "bayes_loss", "bayes_heldout_loss", "diverged")


def deep_to_arrays(d: DeepTraining) -> tuple[dict, dict[str, np.ndarray]]:
    """A :class:`DeepTraining` as JSON-able metadata and named arrays (for an ``.npz``)."""
    if not isinstance(d, DeepTraining):
        raise ValueError(f"d must be a DeepTraining, got {type(d).__name__}")
    meta = {"runs": [dataclasses.asdict(r) for r in d.runs], "config": dataclasses.asdict(d.config),
            "seconds": d.seconds, "device": d.device}
    arrays = {k: np.asarray(getattr(d, k)) for k in _ARRAYS}
    arrays["loss"] = d.loss.astype(np.float32)
    arrays.update({f"param.{k}": v.astype(np.float32) for k, v in d.params.items()})
    return meta, arrays


def deep_from_arrays(meta: dict, arrays: dict[str, np.ndarray]) -> DeepTraining:
    """The inverse of :func:`deep_to_arrays`."""
    fl = lambda a: a.astype(np.float64) if a.dtype.kind == "f" else a  # noqa: E731
    return DeepTraining(
        runs=tuple(DeepRun(**r) for r in meta["runs"]), config=DeepConfig(**meta["config"]),
        params={k[6:]: fl(v) for k, v in arrays.items() if k.startswith("param.")},
        seconds=float(meta["seconds"]), device=str(meta["device"]), **{k: fl(arrays[k]) for k in _ARRAYS},
    )


# ------------------------------------------------------------------------------------------------
# the same model as plain PyTorch modules (a reference to check and time the batched one against)
# ------------------------------------------------------------------------------------------------
class TorchReference(torch.nn.Module):
    """One model of :class:`DeepConfig`'s sizes built from ``torch.nn.TransformerEncoder`` (pre-norm,
    GELU, no dropout), with the input projection, final LayerNorm and read-out of the batched model.

    ``load_run`` copies run ``r`` of a batched parameter dict into it, so the two can be
    checked against each other; ``bench/ch11_deep_speed.py`` times a loop over such models.
    """

    def __init__(self, c: DeepConfig) -> None:
        super().__init__()
        self.c = c
        self.inp = torch.nn.Linear(c.d_x, c.d_model)
        layer = torch.nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.lnf = torch.nn.LayerNorm(c.d_model)
        self.out = torch.nn.Linear(c.d_model, c.n_states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N, C)`` for inputs ``(B, N, d_x)`` (causal)."""
        N = x.shape[1]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(N, device=x.device, dtype=x.dtype)
        return self.out(self.lnf(self.enc(self.inp(x), mask=mask, is_causal=True)))

    @torch.no_grad()
    def load_run(self, params: dict[str, Any], r: int) -> "TorchReference":
        """Copy run ``r`` of a batched parameter dict (row layout) into this module; returns it."""
        t = lambda k: torch.as_tensor(np.asarray(params[k][r]), dtype=self.inp.weight.dtype)  # noqa: E731
        self.inp.weight.copy_(t("W_in").T)
        self.inp.bias.copy_(t("b_in"))
        for i, lay in enumerate(self.enc.layers):
            at = lay.self_attn
            at.in_proj_weight.copy_(torch.cat([t(k)[i].T for k in ("W_q", "W_k", "W_v")]))
            at.in_proj_bias.copy_(torch.cat([t(k)[i] for k in ("b_q", "b_k", "b_v")]))
            at.out_proj.weight.copy_(t("W_o")[i].T)
            at.out_proj.bias.copy_(t("b_o")[i])
            for mod, w, b in ((lay.norm1, "ln1_w", "ln1_b"), (lay.norm2, "ln2_w", "ln2_b")):
                mod.weight.copy_(t(w)[i])
                mod.bias.copy_(t(b)[i])
            lay.linear1.weight.copy_(t("W_1")[i].T)
            lay.linear1.bias.copy_(t("b_1")[i])
            lay.linear2.weight.copy_(t("W_2")[i].T)
            lay.linear2.bias.copy_(t("b_2")[i])
        self.lnf.weight.copy_(t("lnf_w"))
        self.lnf.bias.copy_(t("lnf_b"))
        self.out.weight.copy_(t("W_out").T)
        self.out.bias.copy_(t("b_out"))
        return self
