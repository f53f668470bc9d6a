"""Chapter 9's implicit EM through a network: an embedding and prototypes trained together.

An MLP ``f(x) = W_2 relu(W_1 x + b_1) + b_2`` maps each image to ``R^dim`` and ``K`` prototypes
live there; the loss minimized by full-batch gradient descent is the negative log-sum-exp
objective ``-mean_i log sum_j exp(-||f(x_i) - mu_j||^2 / 2)``, with no volume term and no labels.
Without a volume term the network can shrink every distance at once; a normalization layer
(LayerNorm, Ba et al. 2016) is the heuristic the paper names. :func:`fit_embedding_mixture` runs
it for several data splits at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import as_tensor, check_int, check_positive
from ..metrics import responsibility_entropy
from ..runtime import single_threaded

__all__ = ["EMBEDDING_NORMS", "EmbeddingFit", "fit_embedding_mixture"]

#: Where the normalization goes: nowhere, on the embedding (without or with a learned gain and
#: bias), or on the hidden layer before the ReLU.
EMBEDDING_NORMS: tuple[str, ...] = ("none", "layernorm", "layernorm-affine", "layernorm-hidden")


@dataclass(frozen=True)
class EmbeddingFit:
    """The record of :func:`fit_embedding_mixture`: arrays (T, S), recorded steps by splits.

    Attributes
    ----------
    step
        (T,) the recorded steps.
    objective
        mean training ``L`` (maximized; at most ``log K``).
    entropy
        mean responsibility entropy over the held-out images divided by ``log K`` (1 = uniform).
    spread
        root mean squared distance of the held-out embeddings from their mean.
    mean_distance
        mean held-out ``||f(x) - mu_j||^2 / 2`` over points and components.
    nmi
        normalized mutual information between the held-out images' most responsible component
        and their class (0 = unrelated, 1 = the classes recovered).
    """

    step: np.ndarray
    objective: np.ndarray
    entropy: np.ndarray
    spread: np.ndarray
    mean_distance: np.ndarray
    nmi: np.ndarray


def _init(Xtr: torch.Tensor, K: int, H: int, m: int, seed: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    S, N, D = Xtr.shape
    dt = Xtr.dtype
    W1, W2, idx = [], [], []
    for s_ in range(S):
        g = torch.Generator().manual_seed(seed + s_)
        W1.append(torch.randn(D, H, generator=g, dtype=dt) / math.sqrt(D))
        W2.append(torch.randn(H, m, generator=g, dtype=dt) / math.sqrt(H))
        idx.append(torch.randperm(N, generator=g)[:K])
    P = {
        "W1": torch.stack(W1), "b1": torch.zeros(S, 1, H, dtype=dt),
        "W2": torch.stack(W2), "b2": torch.zeros(S, 1, m, dtype=dt),
        "gain": torch.ones(S, 1, m, dtype=dt), "bias": torch.zeros(S, 1, m, dtype=dt),
    }
    return P, idx


def _embed(P: dict[str, torch.Tensor], X: torch.Tensor, norm: str) -> torch.Tensor:
    h = X @ P["W1"] + P["b1"]
    if norm == "layernorm-hidden":
        h = torch.nn.functional.layer_norm(h, (h.shape[-1],))
    f = torch.relu(h) @ P["W2"] + P["b2"]
    if norm in ("layernorm", "layernorm-affine"):
        f = torch.nn.functional.layer_norm(f, (f.shape[-1],))
    if norm == "layernorm-affine":
        f = f * P["gain"] + P["bias"]
    return f


def _energies(f: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    return ((f[:, :, None, :] - mu[:, None, :, :]) ** 2).sum(-1) / 2.0


def _record(out: dict[str, list], t: int, L: torch.Tensor, P: dict[str, torch.Tensor], Xte: torch.Tensor,
            yte: np.ndarray, norm: str, K: int) -> None:
    from sklearn.metrics import normalized_mutual_info_score

    with torch.no_grad():
        fe = _embed(P, Xte, norm)
        e = _energies(fe, P["mu"])
        r = torch.softmax(-e, -1)
        spread = ((fe - fe.mean(1, keepdim=True)) ** 2).sum(-1).mean(-1).sqrt()
        lab = r.argmax(-1).numpy()
        out["step"].append(t)
        out["objective"].append(L.detach().numpy().copy())
        out["entropy"].append(responsibility_entropy(r) / math.log(K))
        out["spread"].append(spread.numpy())
        out["mean_distance"].append(e.mean((1, 2)).numpy())
        out["nmi"].append(np.array([normalized_mutual_info_score(yte[s_], lab[s_]) for s_ in range(len(lab))]))


def _check_embedding_args(X_train, X_test, y_test, norm, n_components, hidden, dim, lr, n_steps, record_at, random_state):
    if norm not in EMBEDDING_NORMS:
        raise ValueError(f"norm must be one of {EMBEDDING_NORMS}, got {norm!r}")
    Xtr = as_tensor(X_train, "X_train", ndim=3).detach()
    Xte = as_tensor(X_test, "X_test", ndim=3).detach().to(Xtr.dtype)
    if Xte.shape[0] != Xtr.shape[0] or Xte.shape[2] != Xtr.shape[2]:
        raise ValueError(f"X_test must have shape ({Xtr.shape[0]}, M, {Xtr.shape[2]}) like X_train, got {tuple(Xte.shape)}")
    yte = np.asarray(y_test.detach().cpu() if isinstance(y_test, torch.Tensor) else y_test)
    if yte.shape != tuple(Xte.shape[:2]) or not np.issubdtype(yte.dtype, np.integer):
        raise ValueError(f"y_test must hold integer classes of shape {tuple(Xte.shape[:2])}, got {yte.shape} of {yte.dtype}")
    K = check_int(n_components, "n_components", minimum=2)
    H = check_int(hidden, "hidden", minimum=1)
    m = check_int(dim, "dim", minimum=1)
    eta = check_positive(lr, "lr")
    n = check_int(n_steps, "n_steps", minimum=1)
    seed = check_int(random_state, "random_state", minimum=0)
    rec = sorted({check_int(int(t), "record_at", minimum=0) for t in np.atleast_1d(record_at if record_at is not None else (0, n))})
    if rec[-1] > n:
        raise ValueError(f"record_at must not exceed n_steps={n}, got {rec[-1]}")
    return Xtr, Xte, yte, K, H, m, eta, n, seed, rec


def fit_embedding_mixture(X_train: Any, X_test: Any, y_test: Any, norm: str = "none", *, n_components: int = 10,
                          hidden: int = 32, dim: int = 8, lr: float = 0.1, n_steps: int = 300, record_at: Any = None,
                          random_state: int = 0) -> EmbeddingFit:
    """Unsupervised implicit EM through an MLP embedding and ``K`` prototypes, no volume term.

    Parameters
    ----------
    X_train, X_test : (S, N, D) and (S, M, D): S data splits (e.g. stacked digit splits)
    y_test : (S, M) integer classes of the held-out images (used only to score, by NMI)
    norm : one of :data:`EMBEDDING_NORMS`
        ``"layernorm"``: a layer norm on the embedding, without a learned gain;
        ``"layernorm-affine"``: with a learned per-feature gain and bias (as ``torch.nn.LayerNorm``
        by default); ``"layernorm-hidden"``: on the hidden layer, before the ReLU.
    n_components, hidden, dim : K, the hidden width, the embedding dimension
    lr, n_steps : gradient descent on the loss ``-mean_i L_i``
    record_at : steps to record (default: 0 and ``n_steps``)
    random_state : int >= 0
        Split ``s`` draws its weights with seed ``random_state + s``; the prototypes start at the
        embeddings of ``K`` training images drawn with the same generator.

    Returns
    -------
    EmbeddingFit
    """
    Xtr, Xte, yte, K, H, m, eta, n, seed, rec = _check_embedding_args(
        X_train, X_test, y_test, norm, n_components, hidden, dim, lr, n_steps, record_at, random_state)
    S = Xtr.shape[0]
    P, idx = _init(Xtr, K, H, m, seed)
    with torch.no_grad():
        f0 = _embed(P, Xtr, norm)
        P["mu"] = torch.stack([f0[s_, idx[s_]] for s_ in range(S)]).clone()
    names = ["W1", "b1", "W2", "b2", "mu"] + (["gain", "bias"] if norm == "layernorm-affine" else [])
    for k in names:
        P[k].requires_grad_(True)
    out: dict[str, list] = {k: [] for k in ("step", "objective", "entropy", "spread", "mean_distance", "nmi")}
    with single_threaded():
        for t in range(n + 1):
            L = torch.logsumexp(-_energies(_embed(P, Xtr, norm), P["mu"]), -1).mean(-1)  # (S,)
            if t in rec:
                _record(out, t, L, P, Xte, yte, norm, K)
            if t == n:
                break
            grads = torch.autograd.grad(-L.sum(), [P[k] for k in names])
            with torch.no_grad():
                for k, g_ in zip(names, grads):
                    P[k] -= eta * g_
    return EmbeddingFit(**{k: np.asarray(v) for k, v in out.items()})
