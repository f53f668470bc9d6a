"""A plain per-seed training loop of the public EM-vs-SGD script, to time the batched trainer against.

RE-IMPLEMENTATION, in our own code, of the *straightforward* loop of the authors' public script
``em_vs_sgd_multiseed.py`` (Agarwal, Dalal & Misra 2025; we read it and wrote this from its
description), importable so that every build of the book can time :func:`iemlib.attention.train`
against it (``iemlib.experiments.em_vs_sgd.time_against_reference``):

* data: a generator seeded with ``seed`` draws a uniform start state, then one
  ``torch.multinomial`` draw per step from the transition matrix whose rows are normalized with
  the diagonal included (self-transition 0.3498), then the noise; symbol means
  ``torch.randn(8, 20)`` from a generator seeded with 0; inputs ``x_t = mu_{y_{t-1}} + N(0, I)``;
  1999 (input, target) pairs;
* model: ``x @ W`` layout, ``W_Q, W_K (20, 10)``, ``W_V (20, 15)``, ``W_O (15, 8)`` drawn
  ``N(0, 0.1²)`` from a generator seeded with ``seed`` (both schedules start there), no biases;
  full ``T x T`` scores with the upper triangle masked to ``-inf``;
* SGD: ``torch.optim.SGD(lr=0.01)`` on the mean cross-entropy, with ``loss.backward()``;
* "EM-like": one ``loss.backward()`` per step, then ``W_V -= 0.1 * grad`` and
  ``W_Q, W_K, W_O -= 0.01 * grad``;
* evaluation: a final forward pass for loss, accuracy and mean predictive entropy.

The script seeds torch's global generator; this loop draws the same numbers from its own
generators and leaves the global state alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int

__all__ = ["ReferenceRun", "run_reference"]

_N_SYMBOLS, _D_X, _D_K, _D_V, _SEQ_LEN, _STAY = 8, 20, 10, 15, 2000, 0.3


@dataclass(frozen=True, eq=False)
class ReferenceRun:
    """Both schedules of one seed of the reference loop (:func:`iemlib.attention.run_reference`).

    Attributes
    ----------
    seed
        the seed.
    em_losses, sgd_losses
        ``(n_steps,)`` mean cross-entropy before each update.
    em_loss, sgd_loss, em_acc, sgd_acc, em_entropy, sgd_entropy
        after the last update: loss,
        accuracy and mean predictive entropy.
    """

    seed: int
    em_losses: np.ndarray
    sgd_losses: np.ndarray
    em_loss: float
    sgd_loss: float
    em_acc: float
    sgd_acc: float
    em_entropy: float
    sgd_entropy: float


def _transition_matrix() -> torch.Tensor:
    P = torch.zeros(_N_SYMBOLS, _N_SYMBOLS)
    for i in range(_N_SYMBOLS):
        for j in range(_N_SYMBOLS):
            if i == j:
                P[i, j] = _STAY
            else:
                d = min(abs(i - j), _N_SYMBOLS - abs(i - j))
                P[i, j] = 1.0 / d
        # the row is rescaled with its diagonal entry still in it, then the diagonal is added
        P[i, :] = P[i, :] / P[i, :].sum() * (1 - _STAY) + (torch.arange(_N_SYMBOLS) == i).float() * _STAY
        P[i, :] = P[i, :] / P[i, :].sum()
    return P


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = _transition_matrix()
    mu = torch.randn(_N_SYMBOLS, _D_X, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    seq = [int(torch.randint(_N_SYMBOLS, (1,), generator=g).item())]
    for _ in range(_SEQ_LEN - 1):
        seq.append(int(torch.multinomial(P[seq[-1]], 1, generator=g).item()))
    s = torch.tensor(seq)
    return mu[s[:-1]] + torch.randn(_SEQ_LEN - 1, _D_X, generator=g), s[1:]


def _init(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = ((_D_X, _D_K), (_D_X, _D_K), (_D_X, _D_V), (_D_V, _N_SYMBOLS))
    return [(torch.randn(*s, generator=g) * 0.1).requires_grad_() for s in shapes]


def _logits(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    W_Q, W_K, W_V, W_O = params
    scores = (x @ W_Q) @ (x @ W_K).T / _D_K**0.5
    T = x.shape[0]
    mask = torch.triu(torch.ones(T, T), diagonal=1).bool()
    alpha = F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    return (alpha @ (x @ W_V)) @ W_O


def _train_sgd(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, n_steps: int) -> list[float]:
    opt = torch.optim.SGD(params, lr=0.01)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        loss = F.cross_entropy(_logits(params, x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _train_em_like(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, n_steps: int) -> list[float]:
    losses = []
    for _ in range(n_steps):
        loss = F.cross_entropy(_logits(params, x), y)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            params[2] -= 0.1 * params[2].grad
            for p in (params[0], params[1], params[3]):
                p -= 0.01 * p.grad
        for p in params:
            p.grad = None
    return losses


def _evaluate(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    with torch.no_grad():
        logits = _logits(params, x)
        probs = F.softmax(logits, dim=-1)
        return (F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item(),
                -(probs * torch.log(probs + 1e-10)).sum(-1).mean().item())


def run_reference(seed: int, n_steps: int = 1000) -> ReferenceRun:
    """Train the public configuration for one seed, SGD then EM-like, one dense autograd step at a time.

    Parameters
    ----------
    seed : the data and initialization seed (the public script's ``seed``).
    n_steps : steps of each schedule.

    Returns
    -------
    ReferenceRun
    """
    seed = check_int(seed, "seed", minimum=0)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    x, y = _data(seed)
    out = {}
    for name, fit in (("sgd", _train_sgd), ("em", _train_em_like)):
        params = _init(seed)
        losses = fit(params, x, y, n_steps)
        loss, acc, ent = _evaluate(params, x, y)
        out.update({f"{name}_losses": np.array(losses), f"{name}_loss": loss, f"{name}_acc": acc,
                    f"{name}_entropy": ent})
    return ReferenceRun(seed=seed, **out)
