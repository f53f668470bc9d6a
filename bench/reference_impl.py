"""RE-IMPLEMENTATION (not the authors' file) of the public EM-vs-SGD script's training loop.

The authors of the gradient-dynamics paper (Aggarwal, Dalal & Misra 2025) published a script,
``em_vs_sgd_multiseed.py``, that runs the sticky Markov-chain experiment of §7.2 one seed at a
time. We read it and re-implemented, in our own code, its *straightforward* loop, so that
``bench/em_vs_sgd_speed.py`` can time it against :mod:`iemlib.legacy.em_vs_sgd` on the same machine:

* data: ``torch.manual_seed(seed)``; symbol means ``torch.randn(8, 20)`` under seed 0 (the global
  generator's state saved and restored around it); a uniform start state, then one
  ``torch.multinomial`` draw per step from the transition matrix whose rows are normalized with
  the diagonal included (self-transition 0.3498); inputs ``x_t = mu_{y_{t-1}} + N(0, I)``;
  1999 (input, target) pairs;
* model: ``x @ W`` layout, ``W_Q, W_K (20, 10)``, ``W_V (20, 15)``, ``W_O (15, 8)`` drawn
  ``N(0, 0.1²)``, no biases; full ``T x T`` scores with the upper triangle masked to ``-inf``;
* both models re-initialized from ``torch.manual_seed(seed)`` (same start);
* SGD: ``torch.optim.SGD(lr=0.01)`` on the mean cross-entropy, 1000 steps;
* "EM-like": one ``loss.backward()`` per step, then ``W_V -= 0.1 * grad`` and
  ``W_Q, W_K, W_O -= 0.01 * grad``;
* evaluation: a final forward pass for loss, accuracy and mean predictive entropy.

Run ``python bench/reference_impl.py --n-steps 1000`` for the full five-seed table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEEDS = (42, 2024, 1337, 7777, 9999)


def make_transition_matrix(n_symbols: int = 8, self_prob: float = 0.3) -> torch.Tensor:
    P = torch.zeros(n_symbols, n_symbols)
    for i in range(n_symbols):
        for j in range(n_symbols):
            if i == j:
                P[i, j] = self_prob
            else:
                d = min(abs(i - j), n_symbols - abs(i - j))
                P[i, j] = 1.0 / d
        # The row is rescaled with its diagonal entry still in it, then the diagonal is added.
        P[i, :] = P[i, :] / P[i, :].sum() * (1 - self_prob) + (torch.arange(n_symbols) == i).float() * self_prob
        P[i, :] = P[i, :] / P[i, :].sum()
    return P


def generate_data(T: int = 2000, n_symbols: int = 8, d_embed: int = 20, self_prob: float = 0.3):
    P = make_transition_matrix(n_symbols, self_prob)
    state = torch.get_rng_state()
    torch.manual_seed(0)
    mu = torch.randn(n_symbols, d_embed)
    torch.set_rng_state(state)
    seq = [torch.randint(n_symbols, (1,)).item()]
    for _ in range(T - 1):
        seq.append(torch.multinomial(P[seq[-1]], 1).item())
    seq = torch.tensor(seq)
    inputs = mu[seq[:-1]] + torch.randn(T - 1, d_embed)
    targets = seq[1:]
    H_min = -(P * torch.log(P + 1e-10)).sum(dim=1).mean().item()
    return inputs, targets, P, H_min


class SingleHeadAttention(nn.Module):
    def __init__(self, d_x: int = 20, d_k: int = 10, d_v: int = 15, n_classes: int = 8):
        super().__init__()
        self.d_k = d_k
        self.W_Q = nn.Parameter(torch.randn(d_x, d_k) * 0.1)
        self.W_K = nn.Parameter(torch.randn(d_x, d_k) * 0.1)
        self.W_V = nn.Parameter(torch.randn(d_x, d_v) * 0.1)
        self.W_O = nn.Parameter(torch.randn(d_v, n_classes) * 0.1)

    def forward(self, x: torch.Tensor):
        Q, K, V = x @ self.W_Q, x @ self.W_K, x @ self.W_V
        scores = Q @ K.T / self.d_k**0.5
        T = x.shape[0]
        mask = torch.triu(torch.ones(T, T), diagonal=1).bool()
        alpha = F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        return (alpha @ V) @ self.W_O, alpha


def _reinit(model: SingleHeadAttention, seed: int) -> None:
    torch.manual_seed(seed)
    for p in (model.W_Q, model.W_K, model.W_V, model.W_O):
        p.data = torch.randn_like(p) * 0.1


def train_sgd(model, x, y, n_steps: int, lr: float = 0.01) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x)[0], y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_em_like(model, x, y, n_steps: int, lr_routing: float = 0.01, lr_value: float = 0.1) -> list[float]:
    losses = []
    for _ in range(n_steps):
        loss = F.cross_entropy(model(x)[0], y)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            model.W_V -= lr_value * model.W_V.grad
            for p in (model.W_Q, model.W_K, model.W_O):
                p -= lr_routing * p.grad
        for p in (model.W_Q, model.W_K, model.W_V, model.W_O):
            p.grad = None
    return losses


def evaluate(model, x, y) -> dict[str, float]:
    with torch.no_grad():
        logits, _ = model(x)
        probs = F.softmax(logits, dim=-1)
        return {
            "loss": F.cross_entropy(logits, y).item(),
            "entropy": -(probs * torch.log(probs + 1e-10)).sum(-1).mean().item(),
            "accuracy": (logits.argmax(-1) == y).float().mean().item(),
        }


def run_single_seed(seed: int, n_steps: int = 1000) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    x, y, _, H_min = generate_data()
    out = {"seed": seed, "H_min": H_min}
    for name, fit in (("sgd", train_sgd), ("em", train_em_like)):
        model = SingleHeadAttention()
        _reinit(model, seed)
        out["losses_" + name] = fit(model, x, y, n_steps)
        out[name] = evaluate(model, x, y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    for seed in SEEDS[: args.seeds]:
        r = run_single_seed(seed, args.n_steps)
        print(f"seed {seed}: H_min={r['H_min']:.4f}  SGD {r['sgd']}  EM {r['em']}")
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
