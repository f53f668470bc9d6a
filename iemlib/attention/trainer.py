"""The batched trainer of chapter 8: EM-like vs plain SGD training of a single causal attention head
(attention paper §5.3, §7.2).

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
* on a CPU the runs are split over single-threaded worker threads (:func:`iemlib.runtime.single_threaded`).

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

Device. :func:`train` runs where :func:`iemlib.runtime.resolve_device` says: the CPU unless asked
(``device="cuda"``, or ``"auto"`` for CUDA when there is one). Every tensor of a run is created on
that device in the run's dtype; results come back as float64 numpy. On CUDA the matrix products are
kept in full float32 (no TF32) while training, so that the tolerance of
:func:`iemlib.experiments.em_vs_sgd.compare_runs` holds.

The configurations of the book's experiment (the paper's reading, the public code, the control
grid) and the archive of its control runs are in :mod:`iemlib.experiments.em_vs_sgd`.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .._validation import as_float_array, check_int, check_labels, check_positive
from ..markov import bayes_filter_predictive, entropy_rate, make_dataset, sticky_transition_matrix
from ..metrics import kl_divergence
from ..runtime import resolve_device, single_threaded

__all__ = [
    "SEEDS",
    "Config",
    "RowParams",
    "init_row_params",
    "AttentionPass",
    "attention_pass",
    "gradient_value_map",
    "least_squares_value_map",
    "effective_step_scale",
    "FinalScores",
    "HeldOutScores",
    "BayesScores",
    "Probes",
    "Checkpoints",
    "Result",
    "train",
]

#: The five seeds of the paper's Table 1 (and of the public script).
SEEDS: tuple[int, ...] = (42, 2024, 1337, 7777, 9999)


@dataclass(frozen=True)
class Config:
    """One configuration of the experiment (chain, model, optimizer); see the module docstring.

    Attributes
    ----------
    name
        the configuration's name (runs are keyed by ``(name, seed, schedule)``).
    n_states, stay_prob, reading, include_diagonal_in_normalization
        the chain
        (:func:`iemlib.markov.sticky_transition_matrix`).
    seq_len
        states per sequence (``N = seq_len - 1`` positions).
    d_x, d_k, d_v
        dimensions of inputs, queries/keys, values.
    n_steps
        training steps. init_std : standard deviation of the initial weights.
    bias
        train the output bias ``b``. values : ``"projected"`` (``v_j = W_V x_j``) or ``"free"``.
    reduction
        ``"mean"`` or ``"sum"`` of the cross-entropy over positions.
    lr_sgd
        SGD's rate; lr_sgd_value : SGD's rate on ``W_V`` (``None``: ``lr_sgd``).
    lr_value, lr_routing
        the EM-like schedule's value and routing steps.
    em_update
        ``"simultaneous"`` or ``"alternating"``.
    seeds
        data and initialization seeds.
    value_map
        ``"gradient"`` (eq. 31) or ``"least_squares"`` for the EM-like step on projected values.
    match_effective_step
        scale the free / least-squares value step by ``kappa = tr(X^T X)/d_x``.
    heldout_offset
        the held-out sequence's seed is the data seed plus this.
    """

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
        """The chain's transition matrix (float64 numpy)."""
        return sticky_transition_matrix(
            self.n_states, self.stay_prob, reading=self.reading,
            include_diagonal_in_normalization=self.include_diagonal_in_normalization,
        )

    def min_entropy(self) -> float:
        """Entropy rate of the chain: Table 1's theoretical minimum."""
        return entropy_rate(self.transition_matrix())


@dataclass(frozen=True, eq=False)
class RowParams:
    """The weights of one head (or of a batch of runs, leading axis ``R``) in the trainer's row layout.

    Row layout: positions are rows and weights act on the right (``q_i = x_i W_Q``), so each weight
    is the paper's transposed.

    Attributes
    ----------
    W_Q, W_K
        ``(d_x, d_k)``; W_V : ``(d_x, d_v)``; W_O : ``(d_v, C)``; b : ``(C,)``.
    V
        ``(N, d_v)`` the values of a trained model on its training sequence (``x W_V``, or the free
        values); ``None`` for an initialization.
    """

    W_Q: Any
    W_K: Any
    W_V: Any
    W_O: Any
    b: Any
    V: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.W_Q, self.W_K, self.W_V, self.W_O, self.b))


def init_row_params(random_state: int, d_x: int = 20, d_k: int = 10, d_v: int = 15, n_classes: int = 8,
                    init_std: float = 0.1) -> RowParams:
    """The trainer's initial weights, drawn as the public code draws them.

    Parameters
    ----------
    random_state : seed of a fresh ``torch.Generator`` (the same stream as ``torch.manual_seed``).
    d_x, d_k, d_v, n_classes : dimensions.
    init_std : standard deviation of every weight.

    Returns
    -------
    RowParams
        float32 CPU tensors, row layout: ``W_Q, W_K, W_V, W_O`` drawn from ``N(0, init_std²)`` in
        that order; ``b = 0``.
    """
    g = torch.Generator().manual_seed(check_int(random_state, "random_state", minimum=0))
    s = check_positive(init_std, "init_std")
    return RowParams(
        W_Q=torch.randn(d_x, d_k, generator=g) * s,
        W_K=torch.randn(d_x, d_k, generator=g) * s,
        W_V=torch.randn(d_x, d_v, generator=g) * s,
        W_O=torch.randn(d_v, n_classes, generator=g) * s,
        b=torch.zeros(n_classes),
    )


@dataclass(frozen=True, eq=False)
class AttentionPass:
    """One forward pass and the closed-form gradients of a batch of ``R`` models (:func:`attention_pass`).

    Attributes
    ----------
    loss, acc, entropy
        ``(R,)`` mean cross-entropy per position (whatever the weight), accuracy,
        mean predictive entropy.
    dQ, dK
        ``(R, N, d_k)`` gradients of the weighted loss with respect to ``q_i = x_i W_Q`` and
        ``k_j`` (eqs. 25, 27).
    dV
        ``(R, N, d_v)`` with respect to ``v_j`` (eq. 16: ``sum_i alpha_ij u_i``).
    dW_O
        ``(R, d_v, C)``; db : ``(R, C)``.
    probs
        ``(R, N, C)`` predictive distributions, when asked for (else ``None``).
    """

    loss: torch.Tensor
    acc: torch.Tensor
    entropy: torch.Tensor
    dQ: torch.Tensor
    dK: torch.Tensor
    dV: torch.Tensor
    dW_O: torch.Tensor
    db: torch.Tensor
    probs: torch.Tensor | None = None


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
) -> AttentionPass:
    """Forward pass and closed-form gradients of a batch of causal single-head attention models.

    Gradients are of the weighted cross-entropy **loss** (minimized), computed block by block over
    the queries (see the module docstring); no autograd.

    Parameters
    ----------
    x : ``(R, N, d_x)`` inputs of ``R`` runs, ``N`` positions.
    y : ``(R, N)`` integer targets.
    W_Q, W_K : ``(R, d_x, d_k)``; V : ``(R, N, d_v)`` the value vectors; W_O : ``(R, d_v, C)``;
    b : ``(R, C)``.
    weight : scalar or ``(R,)``, multiplies each position's loss: ``1/N`` for the mean, ``1`` for
        the sum.
    block : queries per block.
    need_probs : also return the predictive distributions.

    Returns
    -------
    AttentionPass
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
    return AttentionPass(**_attention_pass(x, y, W_Q, W_K, V, W_O, b, weight, B, need_probs))


def _attention_pass(x, y, W_Q, W_K, V, W_O, b, weight, B: int, need_probs: bool = False) -> dict:
    """:func:`attention_pass` without input validation (the trainer's hot path): a name -> tensor table."""
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
    """``sum_j dV_j x_j^T`` in row layout: ``x^T dV``, the gradient map (eq. 31).

    Parameters
    ----------
    x : ``(..., N, d_x)`` the inputs.
    dV : ``(..., N, d_v)`` the requested value changes (or the value gradients).

    Returns
    -------
    ``(..., d_x, d_v)``: moved by ``-eta``, the EM-like step on ``W_V`` read as eq. 31.
    """
    as_float_array(x, "x", min_ndim=2)
    as_float_array(dV, "dV", min_ndim=2)
    if x.shape[:-1] != dV.shape[:-1]:
        raise ValueError(f"dV must have the positions of x {tuple(x.shape[:-1])}, got {tuple(dV.shape)}")
    return x.transpose(-1, -2) @ dV


def least_squares_value_map(x: torch.Tensor, dV: torch.Tensor) -> torch.Tensor:
    """The ``Delta W`` whose values ``x @ Delta W`` are closest to ``dV`` in least squares.

    Row layout: ``(x^T x)^{-1} x^T dV``; in the paper's column layout ``U_bar X^T (X X^T)^{-1}``.
    It is the gradient map preconditioned by ``(x^T x)^{-1}``.

    Parameters
    ----------
    x : ``(..., N, d_x)`` of full column rank; dV : ``(..., N, d_v)``.

    Returns
    -------
    ``(..., d_x, d_v)``
    """
    g = gradient_value_map(x, dV)
    gram = x.transpose(-1, -2) @ x
    return torch.linalg.solve(gram, g)


def effective_step_scale(x: torch.Tensor) -> torch.Tensor | float:
    """``kappa = tr(x^T x) / d_x``: the mean non-zero eigenvalue of the Gram matrix ``x x^T``.

    The gradient map changes the values by ``-eta x x^T dV``; the free and least-squares
    readings by ``-eta dV`` (projected, for the latter). ``eta * kappa`` in those two readings
    matches the gradient map's average gain at ``eta``.

    Parameters
    ----------
    x : ``(..., N, d_x)``

    Returns
    -------
    A float for one sequence, else a tensor with one value per leading index.
    """
    as_float_array(x, "x", min_ndim=2)
    k = (x * x).sum((-1, -2)) / x.shape[-1]
    return float(k) if k.ndim == 0 else k


@dataclass(frozen=True, eq=False)
class FinalScores:
    """Scores of every run after its last update, on its training sequence; each ``(R,)``.

    Attributes
    ----------
    loss
        mean cross-entropy per position (nats). acc : accuracy. entropy : mean predictive entropy.
    kl_bayes
        mean ``KL(Bayes filter || model)`` over positions (NaN when not computed).
    """

    loss: np.ndarray
    acc: np.ndarray
    entropy: np.ndarray
    kl_bayes: np.ndarray


@dataclass(frozen=True, eq=False)
class HeldOutScores(FinalScores):
    """:class:`FinalScores` on the held-out sequence (seed + ``heldout_offset``); NaN for free values,
    which have no value map for a new sequence.

    Attributes
    ----------
    probs
        ``(R, N, C)`` the predictive distributions (``(R, 0, C)`` in a result read from an archive).
    """

    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))


@dataclass(frozen=True, eq=False)
class BayesScores:
    """The exact Bayes filter on each run's sequences; each ``(R,)``.

    Attributes
    ----------
    train_loss, train_acc, heldout_loss, heldout_acc
        its cross-entropy (the true minimum loss) and
        accuracy on the training and the held-out sequence.
    """

    train_loss: np.ndarray
    train_acc: np.ndarray
    heldout_loss: np.ndarray
    heldout_acc: np.ndarray


@dataclass(frozen=True, eq=False)
class Probes:
    """The mechanism, measured at ``Result.probe_steps``; each ``(R, n_probes)``.

    Attributes
    ----------
    attn_entropy
        mean over queries of ``-sum_j alpha_ij log alpha_ij`` (nats).
    dalpha
        ``||alpha_{t+1} - alpha_t||_F``; dvalue : ``||V_{t+1} - V_t||_F``; vnorm : ``||V_t||_F``.
    """

    attn_entropy: np.ndarray
    dalpha: np.ndarray
    dvalue: np.ndarray
    vnorm: np.ndarray


@dataclass(frozen=True, eq=False)
class Checkpoints:
    """Scores of every run after ``steps[k]`` updates (``train(..., checkpoints=...)``); each ``(R, n)``.

    One long run then stands for several budgets: the model after 1000 updates of a 5000-step run
    is the model a 1000-step run ends with (same start, same data, same updates).

    Attributes
    ----------
    steps
        ``(n,)`` the numbers of updates.
    loss, acc, entropy
        mean cross-entropy per position (nats), accuracy and predictive entropy on the
        training sequence.
    heldout_loss, heldout_acc, heldout_entropy
        the same on the held-out sequence (NaN for free values).
    kl_em_sgd, heldout_kl_em_sgd
        for an ``"em"`` run whose configuration also has the ``"sgd"`` run of its seed: the mean
        ``KL(EM || SGD)`` of the two models' predictive distributions, on the training and the
        held-out sequence; NaN for every other run.
    """

    steps: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    entropy: np.ndarray
    heldout_loss: np.ndarray
    heldout_acc: np.ndarray
    heldout_entropy: np.ndarray
    kl_em_sgd: np.ndarray
    heldout_kl_em_sgd: np.ndarray

    def at(self, step: int) -> int:
        """Column of ``step`` in the arrays."""
        hit = np.nonzero(self.steps == step)[0]
        if not hit.size:
            raise ValueError(f"step: no checkpoint at {step}; the checkpoints are {self.steps.tolist()}")
        return int(hit[0])


@dataclass(frozen=True, eq=False)
class Result:
    """What :func:`train` returns; arrays are float64 numpy (flags bool), indexed by run ``r``.

    Attributes
    ----------
    runs
        ``(config name, seed, schedule)`` of every run.
    configs
        name -> :class:`Config`.
    loss, acc, entropy
        ``(R, n_steps)`` mean cross-entropy, accuracy and predictive entropy before
        each update.
    final
        :class:`FinalScores` after the last update.
    probs
        ``(R, N, C)`` final predictive distributions on the training sequence.
    value_steps
        steps at which value vectors were recorded; value_index : the sampled positions;
    values
        ``(R, len(value_steps), n_sample, d_v)``.
    diverged
        ``(R,)`` a non-finite loss was met (the run was frozen there).
    params
        final :class:`RowParams` (batched over runs, ``V`` included); ``None`` when not kept.
    seconds
        training wall time. device : where the runs were trained (``"cpu"``, ``"cuda:0"``, ...).
    heldout
        :class:`HeldOutScores`. bayes : :class:`BayesScores`.
    probe_steps
        steps of the probes; probes : :class:`Probes`.
    kappa
        ``(R,)`` ``tr(X^T X)/d_x`` of each run's training inputs.
    checkpoints
        :class:`Checkpoints` when ``train`` was asked for them, else ``None``.
    """

    runs: list[tuple[str, int, str]]
    configs: dict[str, Config]
    loss: np.ndarray
    acc: np.ndarray
    entropy: np.ndarray
    final: FinalScores
    probs: np.ndarray
    value_steps: np.ndarray
    values: np.ndarray
    value_index: np.ndarray
    diverged: np.ndarray
    params: RowParams | None
    seconds: float
    device: str
    heldout: HeldOutScores
    bayes: BayesScores
    probe_steps: np.ndarray
    probes: Probes
    kappa: np.ndarray
    checkpoints: Checkpoints | None = None

    def memorizing(self) -> np.ndarray:
        """Runs whose final training loss is below the Bayes filter's on their training sequence."""
        return self.final.loss < self.bayes.train_loss

    def index(self, config: str, seed: int, schedule: str) -> int:
        """Index of run ``(config, seed, schedule)``."""
        return self.runs.index((config, seed, schedule))

    def select(self, config: str, schedule: str) -> list[int]:
        """Indices of the runs of ``config`` with ``schedule``, in seed order."""
        return [r for r, (c, _, s) in enumerate(self.runs) if c == config and s == schedule]


def _check_configs(configs: Any, schedules: Iterable[str]) -> list[tuple[Config, tuple[str, ...]]]:
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
    return pairs


@dataclass
class _Batch:
    """Per-run inputs, initial weights and rates, gathered on the CPU before training."""

    runs: list = field(default_factory=list)
    X: list = field(default_factory=list)
    Y: list = field(default_factory=list)
    XH: list = field(default_factory=list)
    YH: list = field(default_factory=list)
    init: list = field(default_factory=list)
    lrV: list = field(default_factory=list)
    lrQKO: list = field(default_factory=list)
    use_b: list = field(default_factory=list)
    free: list = field(default_factory=list)
    alt: list = field(default_factory=list)
    wgt: list = field(default_factory=list)
    ls: list = field(default_factory=list)
    kap: list = field(default_factory=list)
    bayes_rows: list = field(default_factory=list)


def _build_batch(pairs: list[tuple[Config, tuple[str, ...]]], seeds: Sequence[int] | None) -> _Batch:
    """Data, Bayes filter, initialization and rates of every run; sequences shared between runs are drawn once."""
    bt = _Batch()
    data_cache: dict[tuple, tuple] = {}
    for cfg, scheds in pairs:
        P = cfg.transition_matrix()
        N = cfg.seq_len - 1
        for seed in (seeds if seeds is not None else cfg.seeds):
            key = (cfg.reading, cfg.include_diagonal_in_normalization, cfg.stay_prob, seed, cfg.heldout_offset)
            if key not in data_cache:
                ds = make_dataset(P, cfg.seq_len, cfg.d_x, int(seed))
                dh = make_dataset(P, cfg.seq_len, cfg.d_x, int(seed) + cfg.heldout_offset)
                pb_tr = bayes_filter_predictive(P, ds.mu, ds.x)
                pb_ho = bayes_filter_predictive(P, dh.mu, dh.x)
                data_cache[key] = (ds, dh, pb_tr, pb_ho, float((ds.x.double() ** 2).sum()) / cfg.d_x)
            ds, dh, pb_tr, pb_ho, kappa = data_cache[key]
            p0 = init_row_params(int(seed), cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
            for s in scheds:
                bt.runs.append((cfg.name, int(seed), s))
                bt.X.append(ds.x)
                bt.Y.append(ds.y)
                bt.XH.append(dh.x)
                bt.YH.append(dh.y)
                bt.init.append(p0)
                is_free = cfg.values == "free"
                is_ls = s == "em" and cfg.value_map == "least_squares" and not is_free
                lr_v = (cfg.lr_sgd if cfg.lr_sgd_value is None else cfg.lr_sgd_value) if s == "sgd" else cfg.lr_value
                if cfg.match_effective_step and (is_free or is_ls):
                    lr_v *= kappa
                bt.lrV.append(lr_v)
                bt.lrQKO.append(cfg.lr_sgd if s == "sgd" else cfg.lr_routing)
                bt.use_b.append(cfg.bias)
                bt.free.append(is_free)
                bt.ls.append(is_ls)
                bt.kap.append(kappa)
                bt.alt.append(s == "em" and cfg.em_update == "alternating")
                bt.wgt.append(1.0 / N if cfg.reduction == "mean" else 1.0)
                bt.bayes_rows.append((pb_tr, ds.y.numpy(), pb_ho, dh.y.numpy()))
    return bt


def _set_start(bt: _Batch, start: RowParams) -> None:
    """Replace the initial weights of every run of ``bt`` by run ``r`` of the batched ``start``."""
    R = len(bt.runs)
    if not isinstance(start, RowParams):
        raise ValueError(f"start must be RowParams (a result's params), got {type(start).__name__}")
    if any(bt.free):
        raise ValueError("start: free values cannot be continued (their values are not weights)")
    ws = [torch.as_tensor(np.asarray(w), dtype=torch.float32) for w in start]
    for w, p0 in zip(ws, bt.init[0]):
        if w.shape != (R, *p0.shape):
            raise ValueError(f"start: a weight of shape {tuple(w.shape)} where ({R}, *{tuple(p0.shape)}) was expected")
    bt.init = [RowParams(*(w[r] for w in ws)) for r in range(R)]


def _device_state(bt: _Batch, C: int, dtype: torch.dtype, dev: torch.device) -> dict[str, torch.Tensor]:
    """The batch as tensors of ``dtype`` on ``dev`` (labels and flags as integers and booleans)."""
    R = len(bt.runs)
    f = dict(dtype=dtype, device=dev)

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([getattr(p, name) for p in bt.init]).to(**f)

    state = {
        "x": torch.stack(bt.X).to(**f), "y": torch.stack(bt.Y).to(dev),
        "W_Q": stacked("W_Q"), "W_K": stacked("W_K"), "W_V": stacked("W_V"), "W_O": stacked("W_O"),
        "b": torch.stack([torch.as_tensor(p.b) for p in bt.init]).to(**f),
        "lrV": torch.tensor(bt.lrV, **f).view(R, 1, 1), "lrR": torch.tensor(bt.lrQKO, **f).view(R, 1, 1),
        "bmask": torch.tensor(bt.use_b, **f).view(R, 1), "free": torch.tensor(bt.free, device=dev),
        "alt": torch.tensor(bt.alt, device=dev), "weight": torch.tensor(bt.wgt, **f),
        "ls": torch.tensor(bt.ls, device=dev),
        "xh": torch.stack(bt.XH).to(**f), "yh": torch.stack(bt.YH).to(dev),
    }
    if any(bt.ls):  # least-squares map: (X^T X)^{-1} per run, formed in float64 on the CPU
        xd = torch.stack(bt.X).to(torch.float64)
        state["Pls"] = torch.linalg.inv(xd.transpose(1, 2) @ xd).to(**f)
    return state


def _partition(cost: list[int], n_workers: int) -> list[list[int]]:
    """Runs split over ``n_workers`` groups of about equal cost (largest first), each in run order."""
    groups: list[list[int]] = [[] for _ in range(n_workers)]
    load = [0] * n_workers
    for r in sorted(range(len(cost)), key=lambda r: -cost[r]):
        k = int(np.argmin(load))
        groups[k].append(r)
        load[k] += cost[r]
    return [sorted(g) for g in groups if g]


@contextlib.contextmanager
def _full_float32(dev: torch.device) -> Iterator[None]:
    """Float32 matrix products in full precision (no TF32) on CUDA while the block runs."""
    before = torch.get_float32_matmul_precision()
    change = dev.type == "cuda" and before != "highest"
    if change:
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        if change:
            torch.set_float32_matmul_precision(before)


def _run_groups(state: dict, groups: list[list[int]], n_steps: int, v_idx: np.ndarray, v_steps: np.ndarray,
                p_steps: np.ndarray, block: int, bar: Any,
                c_steps: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """Train every group. Several groups run on worker threads, each single-threaded (no barrier
    between cores per operation, which costs much on a busy machine); one group runs as it is."""
    lock = threading.Lock()

    def tick(n: int) -> None:
        with lock:
            bar.update(n)

    def one(g: list[int]) -> dict[str, np.ndarray]:
        return _train_group(state, g, n_steps, v_idx, v_steps, p_steps, block, tick, c_steps)

    if len(groups) == 1:
        return [one(groups[0])]
    with single_threaded(), ThreadPoolExecutor(len(groups)) as ex:
        return list(ex.map(one, groups))


def _collect(bt: _Batch, cfgs: list[Config], merged: dict[str, np.ndarray], v_idx: np.ndarray,
             v_steps: np.ndarray, p_steps: np.ndarray, seconds: float, dev: torch.device,
             c_steps: np.ndarray | None = None) -> Result:
    """The :class:`Result` of the merged group outputs, with the Bayes filter's scores and the divergences."""
    R = len(bt.runs)
    diverged = ~np.isfinite(merged["loss"]).all(1) | ~np.isfinite(merged["final_loss"])
    bayes = {k: np.empty(R) for k in ("train_loss", "train_acc", "heldout_loss", "heldout_acc")}
    kl_tr, kl_ho = np.full(R, np.nan), np.full(R, np.nan)
    for r, (pb_tr, y_tr, pb_ho, y_ho) in enumerate(bt.bayes_rows):
        for tag, pb, yy in (("train", pb_tr, y_tr), ("heldout", pb_ho, y_ho)):
            bayes[tag + "_loss"][r] = -np.log(pb[np.arange(len(yy)), yy]).mean()
            bayes[tag + "_acc"][r] = (pb.argmax(-1) == yy).mean()
        if np.isfinite(merged["probs"][r]).all():
            kl_tr[r] = kl_divergence(pb_tr, merged["probs"][r])
        if not bt.free[r] and np.isfinite(merged["heldout_probs"][r]).all():
            kl_ho[r] = kl_divergence(pb_ho, merged["heldout_probs"][r])
    return Result(
        runs=bt.runs, configs={c.name: c for c in cfgs},
        loss=merged["loss"], acc=merged["acc"], entropy=merged["entropy"],
        final=FinalScores(merged["final_loss"], merged["final_acc"], merged["final_entropy"], kl_tr),
        probs=merged["probs"], value_steps=v_steps, values=merged["values"], value_index=v_idx,
        diverged=diverged, seconds=seconds, device=str(dev),
        params=RowParams(*(merged[k] for k in ("W_Q", "W_K", "W_V", "W_O", "b", "V"))),
        heldout=HeldOutScores(merged["heldout_loss"], merged["heldout_acc"], merged["heldout_entropy"], kl_ho,
                              merged["heldout_probs"]),
        bayes=BayesScores(**bayes), probe_steps=p_steps,
        probes=Probes(*(merged["probe_" + k] for k in ("attn_entropy", "dalpha", "dvalue", "vnorm"))),
        kappa=np.array(bt.kap), checkpoints=_checkpoints(bt, merged, c_steps),
    )


def _checkpoints(bt: _Batch, merged: dict[str, np.ndarray], c_steps: np.ndarray | None) -> Checkpoints | None:
    """The :class:`Checkpoints` of the merged outputs, with ``KL(EM || SGD)`` of each seed's pair."""
    if c_steps is None or not len(c_steps):
        return None
    R, n = len(bt.runs), len(c_steps)
    kl = {tag: np.full((R, n), np.nan) for tag in ("train", "heldout")}
    where = {run: r for r, run in enumerate(bt.runs)}
    for r, (name, seed, sched) in enumerate(bt.runs):
        j = where.get((name, seed, "sgd"))
        if sched != "em" or j is None:
            continue
        for tag, key in (("train", "ck_probs"), ("heldout", "ck_heldout_probs")):
            for k in range(n):
                p, q = merged[key][r, k], merged[key][j, k]
                if np.isfinite(p).all() and np.isfinite(q).all():
                    kl[tag][r, k] = kl_divergence(p, q)
    return Checkpoints(
        steps=np.asarray(c_steps, dtype=int), loss=merged["ck_loss"], acc=merged["ck_acc"],
        entropy=merged["ck_entropy"], heldout_loss=merged["ck_heldout_loss"],
        heldout_acc=merged["ck_heldout_acc"], heldout_entropy=merged["ck_heldout_entropy"],
        kl_em_sgd=kl["train"], heldout_kl_em_sgd=kl["heldout"],
    )


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
    checkpoints: Sequence[int] = (),
    start: RowParams | None = None,
) -> Result:
    """Train every (configuration, seed, schedule) as one batch; see the module docstring.

    Longer than 80 lines: most of it is this docstring, one entry per option.

    Both schedules of a seed start from the same initialization and see the same data. Runs whose
    loss becomes non-finite are frozen and flagged in ``Result.diverged``. After training every
    model is scored on a held-out sequence (``Result.heldout``) and the exact Bayes filter on both
    sequences (``Result.bayes``).

    Parameters
    ----------
    configs : a :class:`Config`, or a list of them, or of ``(Config, schedules)`` pairs (each
        configuration with its own schedules; plain entries use ``schedules``).
    schedules : ``"em"`` and/or ``"sgd"``.
    seeds : overrides each configuration's seeds.
    device : :func:`iemlib.runtime.resolve_device`'s argument (``None``: the CPU; ``"auto"``: CUDA
        when available).
    dtype : the training dtype (float32, as the public code; float64 for checks).
    block : queries per block of the attention pass.
    n_value_samples, record_every : value vectors of that many positions are recorded every
        ``record_every`` steps (and at the last).
    progress, desc : a tqdm bar on stderr, and its label.
    n_workers : worker threads on a CPU (default ``min(R, cores, 2)``); 1 on CUDA.
    probe_every : every that many steps, the attention entropy and the per-step change of the
        attention weights and the values are measured (``Result.probes``; 0 turns that off).
    checkpoints : numbers of updates (each in ``0 .. n_steps``) after which every model is also
        scored on its training and held-out sequences (``Result.checkpoints``): one long run
        then gives the results of shorter budgets. The scoring reads the weights and changes
        nothing of the training.
    start : continue from these weights instead of the initialization: the ``params`` of an
        earlier result of the same runs in the same order (each weight with a leading axis ``R``).
        ``n_steps`` more updates then continue that training exactly (the loss curve and the
        checkpoints count the new updates from 0); free values are not supported.

    Returns
    -------
    Result
    """
    from tqdm import tqdm  # text bar on stderr: live in Jupyter, left out of the HTML book

    pairs = _check_configs(configs, schedules)
    cfgs = [c for c, _ in pairs]
    probe_every = check_int(probe_every, "probe_every", minimum=0)
    dev = resolve_device(device)
    c0 = cfgs[0]
    C, N, n_steps = c0.n_states, c0.seq_len - 1, c0.n_steps

    bt = _build_batch(pairs, seeds)
    R = len(bt.runs)
    if start is not None:
        _set_start(bt, start)
    state = _device_state(bt, C, dtype, dev)
    gen = np.random.default_rng(0)
    v_idx = np.sort(gen.choice(N, size=min(n_value_samples, N), replace=False))
    v_steps = np.arange(0, n_steps + 1, record_every)
    if v_steps[-1] != n_steps:
        v_steps = np.append(v_steps, n_steps)
    p_steps = np.arange(0, n_steps, probe_every) if probe_every else np.zeros(0, dtype=int)
    c_steps = sorted({check_int(c, "checkpoints", minimum=0) for c in checkpoints})
    if c_steps and c_steps[-1] > n_steps:
        raise ValueError(f"checkpoints must be at most n_steps = {n_steps}, got {c_steps[-1]}")
    c_steps = np.array(c_steps, dtype=int)

    if n_workers is None:
        n_workers = 1 if dev.type != "cpu" else max(1, min(R, os.cpu_count() or 1, 2))
    n_workers = check_int(n_workers, "n_workers", minimum=1)
    groups = _partition([2 if a_ else 1 for a_ in bt.alt], n_workers)
    t0 = time.perf_counter()
    bar = tqdm(total=R * n_steps, desc=desc, disable=not progress, mininterval=1.0, unit="run-step")
    with _full_float32(dev):
        outs = _run_groups(state, groups, n_steps, v_idx, v_steps, p_steps, block, bar, c_steps)
    bar.close()
    seconds = time.perf_counter() - t0
    inv = np.argsort(np.concatenate(groups))
    merged = {k: np.concatenate([o[k] for o in outs])[inv] for k in outs[0]}
    return _collect(bt, cfgs, merged, v_idx, v_steps, p_steps, seconds, dev, c_steps)


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
                 p_steps: np.ndarray, block: int, tick,
                 c_steps: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Train the runs ``group`` (indices into ``state``'s batch) for ``n_steps``; numpy outputs.

    The hot loop, kept in one piece and in the order of its floating-point operations: chapter 8
    checks its live runs against the archive this loop wrote, so any reordering would move numbers."""
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
    ck_set = {int(t): k for k, t in enumerate(c_steps if c_steps is not None else ())}
    ck: dict[str, list] = {}
    rec = 0
    for step in range(n_steps + 1):
        V = values(W_V, V_free)
        if rec < len(v_steps) and step == v_steps[rec]:
            values_rec[:, rec] = V[:, v_idx_t]
            rec += 1
        if step in ck_set:  # score the current weights (after `step` updates); training is untouched
            _score_checkpoint(ck, s, W_Q, W_K, W_V, V, W_O, b * bmask, weight, block)
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
    if ck_set:
        for k, v in ck.items():
            out["ck_" + k] = np.stack([cpu(t) for t in v], 1)
    return out


def _score_checkpoint(ck: dict[str, list], s: dict, W_Q, W_K, W_V, V, W_O, b, weight, block: int) -> None:
    """Append the training and held-out scores of the current weights to the lists in ``ck``."""
    free = s["free"]
    tr = _attention_pass(s["x"], s["y"], W_Q, W_K, V, W_O, b, weight, block, need_probs=True)
    xh = s["xh"]
    ho = _attention_pass(xh, s["yh"], W_Q, W_K, torch.bmm(xh, W_V), W_O, b, weight, block, need_probs=True)
    nan = torch.where(free, torch.full_like(ho["loss"], float("nan")), torch.zeros_like(ho["loss"]))
    for k in ("loss", "acc", "entropy"):
        ck.setdefault(k, []).append(tr[k])
        ck.setdefault("heldout_" + k, []).append(ho[k] + nan)
    ck.setdefault("probs", []).append(tr["probs"])
    ck.setdefault("heldout_probs", []).append(ho["probs"] + nan[:, None, None])


