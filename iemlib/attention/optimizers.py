"""One attention head trained by realistic optimizers: SGD, SGD with momentum, Adam.

The attention paper's analysis is first order and its EM-like schedule is plain gradient descent
(§3.7, §5.3); its §10 leaves realistic optimizers open. This trainer runs a batch of single causal
heads (chapter 8's model, row layout, ``x @ W``) on the sticky chain with any of three update rules,
every run with its own rates, and measures whether the first-order picture survives:

* the **advantage law** (eq. 34 of the paper): a gradient step on the scores moves ``s_ij`` by
  ``-eta alpha_ij (b_ij - E_alpha_i[b])``, so in the direction of the advantage
  ``A_ij = -(b_ij - E_alpha_i[b])``. The trainer measures, at probe steps, the fraction of causal
  score entries ``(i, j <= i)`` whose *realized* change (through ``W_Q, W_K``, after the optimizer's
  update) has the sign of ``A_ij`` -- of the raw score and of the score centred under
  ``alpha_i`` (``Delta s_ij - sum_k alpha_ik Delta s_ik``, the first-order change of
  ``log alpha_ij``, since a shift of a whole row moves no attention);
* the **two timescales** (§5.3, §6.3): the per-step change ``||alpha_{t+1} - alpha_t||_F`` of the
  attention weights against ``||V_{t+1} - V_t||_F`` of the values.

Gradients are the paper's closed forms of the mean cross-entropy **loss** (minimized), as in
``iemlib.attention.trainer`` (its block-wise pass), not autograd. Update rules, per parameter
``p`` with gradient ``g`` (``t = 1, 2, ...``):

``"sgd"``
    ``p -= lr g``.
``"momentum"``
    ``m = mu m + g; p -= lr m`` (PyTorch's SGD with momentum ``mu``, no dampening).
``"adam"``
    ``m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`` with ``b1, b2, eps`` =
    ``ADAM_BETAS``, ``ADAM_EPS`` (PyTorch's defaults).

``W_V`` may get its own rate (``HeadRun.value_lr``): with ``"sgd"`` that is chapter 8's rate
vector, so the EM-like schedule of Table 1 is ``HeadRun("sgd", 0.01, seed, value_lr=0.1)``.
Weights can be recorded at chosen steps (checkpoints) for probes along training.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .._validation import check_int, check_positive
from ..markov import bayes_filter_loss, make_dataset
from ..runtime import resolve_device, single_threaded
from .trainer import Config, RowParams, _attention_pass, init_row_params

__all__ = ["OPTIMIZERS", "ADAM_BETAS", "ADAM_EPS", "PROBE_STRIDE", "HeadRun", "HeadTraining", "train_head"]

#: The update rules :func:`train_head` knows.
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")
#: Adam's decay rates of the first and second moments, and its ``eps`` (PyTorch's defaults).
ADAM_BETAS: tuple[float, float] = (0.9, 0.999)
ADAM_EPS: float = 1e-8


@dataclass(frozen=True)
class HeadRun:
    """One run: an update rule, its rates and a seed (data and initialization).

    Attributes
    ----------
    optimizer
        one of ``OPTIMIZERS``.
    lr
        the rate on ``W_Q, W_K, W_O, b`` (and on ``W_V`` unless ``value_lr`` is given).
    random_state
        the seed of the training sequence and of the initial weights (chapter 8's seeds).
    value_lr
        the rate on ``W_V`` (``None``: ``lr``).
    momentum
        ``mu`` of ``"momentum"`` (ignored by the other rules).
    """

    optimizer: str
    lr: float
    random_state: int
    value_lr: float | None = None
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check_positive(self.lr, "lr")
        check_int(self.random_state, "random_state", minimum=0)
        if self.value_lr is not None:
            check_positive(self.value_lr, "value_lr")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")

    @property
    def label(self) -> str:
        """A short name, e.g. ``"adam 0.003"`` or ``"sgd (0.1, 0.01)"`` (value rate first)."""
        if self.value_lr is None or self.value_lr == self.lr:
            return f"{self.optimizer} {self.lr:g}"
        return f"{self.optimizer} ({self.value_lr:g}, {self.lr:g})"


@dataclass(frozen=True, eq=False)
class HeadTraining:
    """What :func:`train_head` returns; arrays are float64 numpy with a leading run axis ``R``.

    Attributes
    ----------
    runs
        the :class:`HeadRun` of each row.
    config
        the chain, sizes, step count and initialization (:class:`~iemlib.attention.Config`).
    loss
        ``(R, n_steps)`` training loss before each step (mean cross-entropy, nats).
    final_loss, heldout_loss
        ``(R,)`` after the last step, on the training and on the held-out sequence.
    bayes_loss, bayes_heldout_loss
        ``(R,)`` the exact Bayes filter's loss on the same sequences.
    checkpoint_steps
        ``(K,)`` steps at which the weights were recorded (before that step's update).
    checkpoints
        :class:`~iemlib.attention.RowParams` of ``(R, K, ...)`` arrays.
    probe_steps
        ``(P,)`` steps whose update was probed.
    sign_agreement, sign_agreement_centred
        ``(R, P)`` fraction of causal score entries whose realized change in that step has the
        sign of the advantage (raw scores; scores centred under the attention row).
    dalpha, dvalue
        ``(R, P)`` ``||alpha_{t+1} - alpha_t||_F`` (over the probed query rows, every
        ``PROBE_STRIDE``-th) and ``||V_{t+1} - V_t||_F`` (all positions) in that step.
    score_cosine
        ``(R, P)`` cosine between the realized change of the causal scores and the change
        eq. (34) predicts, ``alpha_ij A_ij`` (positive for any small enough gradient step).
    diverged
        ``(R,)`` runs whose loss became non-finite (frozen from then on).
    seconds
        wall time of the training loop. device : where it ran.
    """

    runs: tuple[HeadRun, ...]
    config: Config
    loss: np.ndarray
    final_loss: np.ndarray
    heldout_loss: np.ndarray
    bayes_loss: np.ndarray
    bayes_heldout_loss: np.ndarray
    checkpoint_steps: np.ndarray
    checkpoints: RowParams
    probe_steps: np.ndarray
    sign_agreement: np.ndarray
    sign_agreement_centred: np.ndarray
    dalpha: np.ndarray
    dvalue: np.ndarray
    score_cosine: np.ndarray
    diverged: np.ndarray
    seconds: float
    device: str

    def select(self, optimizer: str | None = None, lr: float | None = None,
               value_lr: float | None = None) -> list[int]:
        """Indices of the runs with that rule and rates (``None`` matches any), in run order."""
        out = []
        for i, r in enumerate(self.runs):
            v = r.lr if r.value_lr is None else r.value_lr
            if ((optimizer is None or r.optimizer == optimizer) and (lr is None or math.isclose(r.lr, lr))
                    and (value_lr is None or math.isclose(v, value_lr))):
                out.append(i)
        return out


def _check_runs(runs: Sequence[HeadRun]) -> tuple[HeadRun, ...]:
    runs = tuple(runs)
    if not runs:
        raise ValueError("runs must not be empty")
    for r in runs:
        if not isinstance(r, HeadRun):
            raise ValueError(f"runs must hold HeadRun instances, got {type(r).__name__}")
    return runs


def _data(config: Config, seeds: list[int]) -> dict[int, tuple]:
    """Training and held-out sequences and the Bayes filter's losses, once per seed."""
    P = config.transition_matrix()
    out = {}
    for s in seeds:
        ds = make_dataset(P, config.seq_len, config.d_x, s)
        dh = make_dataset(P, config.seq_len, config.d_x, s + config.heldout_offset)
        out[s] = (ds, dh, bayes_filter_loss(ds), bayes_filter_loss(dh))
    return out


#: Probes read every this many query rows (rows 0, 4, 8, ...): a quarter of the N x N work.
PROBE_STRIDE: int = 4


def _probe_step(x, y, old: tuple, new: tuple, weight: float) -> tuple[float, ...]:
    """Sign agreement (raw, centred), ``||Delta alpha||_F`` (on the probed rows), ``||Delta V||_F``
    and the cosine of the realized score change with eq. (34)'s of one run's step, in float64."""
    f = lambda t: t.to(torch.float64)  # noqa: E731
    x = f(x)
    WQ, WK, WV, WO, b = (f(t) for t in old)
    WQ2, WK2, WV2 = (f(t) for t in new[:3])
    N = x.shape[0]
    rows = torch.arange(0, N, PROBE_STRIDE, device=x.device)
    xr = x[rows]
    c = 1.0 / math.sqrt(WQ.shape[-1])
    K1, K2 = x @ WK, x @ WK2
    s1 = (xr @ WQ) @ K1.T * c
    ds = ((xr @ (WQ2 - WQ)) @ K2.T + (xr @ WQ) @ (K2 - K1).T) * c  # s2 - s1, without cancellation
    causal = torch.arange(N, device=x.device)[None, :] <= rows[:, None]
    neg = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    A1 = torch.softmax(torch.where(causal, s1, neg), -1)
    A2 = torch.softmax(torch.where(causal, s1 + ds, neg), -1)
    V = x @ WV
    p = torch.softmax((torch.softmax(torch.where(torch.ones(N, N, dtype=torch.bool, device=x.device).tril(),
                                                 (x @ WQ) @ K1.T * c, neg), -1) @ V) @ WO + b, -1)
    p[torch.arange(N), y] -= 1.0
    u = weight * (p[rows] @ WO.T)  # dLoss/dg_i on the probed rows
    B = u @ V.T
    adv = -(B - (A1 * B).sum(-1, keepdim=True))  # A_ij = -(b_ij - E_alpha_i[b])
    ds = torch.where(causal, ds, torch.zeros_like(ds))
    dc = ds - (A1 * ds).sum(-1, keepdim=True)
    keep = causal & (adv != 0)
    n = int(keep.sum())
    raw = float(((torch.sign(ds) == torch.sign(adv)) & keep).sum()) / n
    cen = float(((torch.sign(dc) == torch.sign(adv)) & keep).sum()) / n
    da = float(torch.linalg.norm(A2 - A1))
    dv = float(torch.linalg.norm(x @ WV2 - V))
    pred = A1 * adv  # eq. (34): Delta s_ij = -eta alpha_ij (b_ij - E[b]) = eta alpha_ij A_ij
    cos = float((ds * pred).sum() / (torch.linalg.norm(ds) * torch.linalg.norm(pred)).clamp_min(1e-300))
    return raw, cen, da, dv, cos


def train_head(
    runs: Sequence[HeadRun],
    config: Config = Config(name="paper reading"),
    *,
    checkpoint_steps: Sequence[int] = (),
    probe_every: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    block: int = 64,
    progress: bool = True,
    desc: str = "training heads",
) -> HeadTraining:
    """Train every run of ``runs`` as one batch of single causal heads; see the module docstring.

    Minimizes the mean cross-entropy loss of each run on its training sequence (full batch) with
    its own update rule and rates. The chain, sizes, step count, bias and initialization are
    ``config``'s (its learning-rate fields are not used; its values must be projected).

    Longer than 80 lines: the training loop is kept in one piece, in the order of its
    floating-point operations, because the chapter checks live runs against the archive it wrote.

    Parameters
    ----------
    runs : the runs (:class:`HeadRun`); runs with the same seed see the same data and start.
    config : chapter 8's :class:`~iemlib.attention.Config` (default: the paper reading).
    checkpoint_steps : steps in ``[0, n_steps]`` at which to record the weights.
    probe_every : probe every that many steps (0: never); each probe forms ``N/4 x N`` matrices
        run by run (every ``PROBE_STRIDE``-th query row).
    device, dtype : where and in what precision to train (:func:`iemlib.runtime.resolve_device`).
    block : queries per block of the closed-form pass.
    progress, desc : a tqdm bar and its label.

    Returns
    -------
    HeadTraining
    """
    from tqdm import tqdm

    runs = _check_runs(runs)
    if not isinstance(config, Config):
        raise ValueError(f"config must be an iemlib.attention.trainer.Config, got {type(config).__name__}")
    if config.values != "projected" or config.reduction != "mean":
        raise ValueError("config must have projected values and the mean loss")
    n_steps = config.n_steps
    ck = sorted({check_int(s, "checkpoint_steps", minimum=0) for s in checkpoint_steps})
    if ck and ck[-1] > n_steps:
        raise ValueError(f"checkpoint_steps must lie in [0, {n_steps}], got {ck[-1]}")
    pe = check_int(probe_every, "probe_every", minimum=0)
    dev = resolve_device(device)
    f = dict(dtype=dtype, device=dev)
    data = _data(config, sorted({r.random_state for r in runs}))
    R, N, C = len(runs), config.seq_len - 1, config.n_states
    inits = [init_row_params(r.random_state, config.d_x, config.d_k, config.d_v, C, config.init_std)
             for r in runs]
    W = {k: torch.stack([getattr(p, k) for p in inits]).to(**f) for k in ("W_Q", "W_K", "W_V", "W_O", "b")}
    x = torch.stack([data[r.random_state][0].x for r in runs]).to(**f)
    y = torch.stack([data[r.random_state][0].y for r in runs]).to(dev)
    col = lambda v: torch.tensor(v, **f).view(R, 1, 1)  # noqa: E731
    lr = {k: col([r.lr for r in runs]) for k in ("W_Q", "W_K", "W_O", "b")}
    lr["W_V"] = col([r.lr if r.value_lr is None else r.value_lr for r in runs])
    is_adam = col([r.optimizer == "adam" for r in runs]).bool()
    mom = col([r.momentum if r.optimizer == "momentum" else 0.0 for r in runs])
    m = {k: torch.zeros_like(v) for k, v in W.items()}
    v2 = {k: torch.zeros_like(v) for k, v in W.items()}
    bmask = 1.0 if config.bias else 0.0
    (b1, b2), eps = ADAM_BETAS, ADAM_EPS
    xt = x.transpose(1, 2).contiguous()
    probe_steps = np.arange(0, n_steps, pe) if pe else np.zeros(0, dtype=int)
    probes = np.full((5, R, len(probe_steps)), np.nan)
    rec = {k: torch.zeros(R, len(ck), *v.shape[1:], **f) for k, v in W.items()}
    loss_h = torch.zeros(R, n_steps, **f)
    alive = torch.ones(R, 1, 1, **f)
    bar = tqdm(total=R * n_steps, desc=desc, disable=not progress, mininterval=1.0, unit="run-step")
    ctx = single_threaded() if dev.type == "cpu" else contextlib.nullcontext()
    with ctx:  # one thread: on a shared CPU, threads wait on each other at every small product
        t0 = time.perf_counter()
        for step in range(n_steps + 1):
            if step in ck:
                for k in W:
                    rec[k][:, ck.index(step)] = W[k]
            if step == n_steps:
                break
            out = _attention_pass(x, y, W["W_Q"], W["W_K"], torch.bmm(x, W["W_V"]), W["W_O"], W["b"] * bmask,
                                  1.0 / N, block)
            loss_h[:, step] = out["loss"]
            alive = alive * torch.isfinite(out["loss"]).view(R, 1, 1).to(dtype)
            grads = {"W_Q": torch.bmm(xt, out["dQ"]), "W_K": torch.bmm(xt, out["dK"]),
                     "W_V": torch.bmm(xt, out["dV"]), "W_O": out["dW_O"], "b": out["db"] * bmask}
            old = tuple(W[k] for k in ("W_Q", "W_K", "W_V", "W_O", "b"))
            t = step + 1
            for k, g in grads.items():
                g = torch.nan_to_num(g)
                shp = (R,) + (1,) * (g.dim() - 1)
                m_sgd = mom.view(shp) * m[k] + g
                m_adam = b1 * m[k] + (1 - b1) * g
                v2[k] = b2 * v2[k] + (1 - b2) * g * g
                a = is_adam.view(shp)
                d = torch.where(a, (m_adam / (1 - b1**t)) / ((v2[k] / (1 - b2**t)).sqrt() + eps), m_sgd)
                m[k] = torch.where(a, m_adam, m_sgd)
                W[k] = W[k] - (lr[k] * alive).view(shp) * d
            if pe and step % pe == 0:
                new = tuple(W[k] for k in ("W_Q", "W_K", "W_V"))
                for r in range(R):
                    probes[:, r, step // pe] = _probe_step(x[r], y[r], tuple(o[r] for o in old),
                                                           tuple(w[r] for w in new), 1.0 / N)
            bar.update(R)
    bar.close()
    seconds = time.perf_counter() - t0
    Wb = W["b"] * bmask
    fin = _attention_pass(x, y, W["W_Q"], W["W_K"], torch.bmm(x, W["W_V"]), W["W_O"], Wb, 1.0 / N, block)
    xh = torch.stack([data[r.random_state][1].x for r in runs]).to(**f)
    yh = torch.stack([data[r.random_state][1].y for r in runs]).to(dev)
    held = _attention_pass(xh, yh, W["W_Q"], W["W_K"], torch.bmm(xh, W["W_V"]), W["W_O"], Wb, 1.0 / N, block)
    cpu = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    lh = cpu(loss_h)
    return HeadTraining(
        runs=runs, config=replace(config, seeds=tuple(sorted({r.random_state for r in runs}))),
        loss=lh, final_loss=cpu(fin["loss"]), heldout_loss=cpu(held["loss"]),
        bayes_loss=np.array([data[r.random_state][2] for r in runs]),
        bayes_heldout_loss=np.array([data[r.random_state][3] for r in runs]),
        checkpoint_steps=np.array(ck, dtype=int),
        checkpoints=RowParams(*(cpu(rec[k]) for k in ("W_Q", "W_K", "W_V", "W_O", "b"))),
        probe_steps=probe_steps, sign_agreement=probes[0], sign_agreement_centred=probes[1],
        dalpha=probes[2], dvalue=probes[3], score_cosine=probes[4],
        diverged=~(np.isfinite(lh).all(1) & np.isfinite(cpu(fin["loss"]))),
        seconds=seconds, device=str(dev),
    )
