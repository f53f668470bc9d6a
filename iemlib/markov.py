"""The sticky Markov chain of the attention paper's §7.2, its entropy rate, and its data.

The gradient-dynamics paper of :cite:t:`aggarwal2025gradient` trains a single attention head
on sequences from an 8-state "sticky" chain: stay with probability ``stay_prob``, otherwise
move to another state with a probability that depends on the circular distance between the
two states. The paper describes the off-diagonal weights in one garbled sentence; this module
builds every plausible reading (:data:`READINGS`) so that a chapter can compute each one's
entropy rate and show which reproduces the printed minimum (1.8833 nats). The reading that
does is ``"inverse_circular"``: off-diagonal weight proportional to ``1 / circular distance``,
normalized to ``1 - stay_prob``.

The authors' public implementation normalizes each row once more *with the diagonal
included* (``include_diagonal_in_normalization=True``), which turns the self-transition
probability 0.3 into 0.3498 and the minimum entropy into 1.8292 nats.

Data: ``x_t = mu_{y_{t-1}} + eps_t`` with fixed symbol means ``mu`` (seeded by
``means_random_state``) and ``eps_t ~ N(0, I)``; the target at position ``t`` is ``y_t``. The
sequence generator reproduces the random-number order of the public implementation (torch's
generator: start state, then one ``torch.multinomial`` draw per step, then the noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ._validation import as_numpy, check_int, check_labels, check_positive

__all__ = [
    "READINGS",
    "Dataset",
    "circular_distance",
    "sticky_transition_matrix",
    "stationary_distribution",
    "entropy_rate",
    "symbol_means",
    "sample_sequence",
    "make_dataset",
    "bayes_filter_predictive",
    "bayes_filter_loss",
    "BayesFilter",
    "bayes_filter",
    "transition_mle",
]


def circular_distance(i: int, j: int, n_states: int) -> int:
    """Distance between states ``i`` and ``j`` on a ring of ``n_states`` states.

    Parameters
    ----------
    i, j : states in ``[0, n_states)``; n_states : the ring's size.

    Returns
    -------
    int
        ``min(|i - j| mod n, n - |i - j| mod n)``.
    """
    d = abs(int(i) - int(j)) % n_states
    return min(d, n_states - d)


def _fwd(i: int, j: int, n: int) -> int:
    return (j - i) % n


#: Candidate readings of §7.2's sentence on the off-diagonal transition weights:
#: name -> (description, weight function ``w(i, j, n_states)`` for ``i != j``).
READINGS: dict[str, tuple[str, Callable[[int, int, int], float]]] = {
    "inverse_circular": ("∝ 1 / circular distance (nearby more likely)",
                         lambda i, j, n: 1.0 / circular_distance(i, j, n)),
    "circular": ("∝ circular distance (literal 'proportional to the distance')",
                 lambda i, j, n: float(circular_distance(i, j, n))),
    "uniform": ("uniform over the other states", lambda i, j, n: 1.0),
    "exp_circular": ("∝ exp(−circular distance)", lambda i, j, n: float(np.exp(-circular_distance(i, j, n)))),
    "linear_nearby": ("∝ (n/2 + 1) − circular distance",
                      lambda i, j, n: float(n // 2 + 1 - circular_distance(i, j, n))),
    "inverse_circular_sq": ("∝ 1 / circular distance²", lambda i, j, n: circular_distance(i, j, n) ** -2.0),
    "forward_mod": ("∝ (j − i) mod n ('modulo distance')", lambda i, j, n: float(_fwd(i, j, n))),
    "inverse_forward_mod": ("∝ 1 / ((j − i) mod n)", lambda i, j, n: 1.0 / _fwd(i, j, n)),
    "inverse_absolute": ("∝ 1 / |i − j| (no wrap-around)", lambda i, j, n: 1.0 / abs(i - j)),
    "absolute": ("∝ |i − j| (no wrap-around)", lambda i, j, n: float(abs(i - j))),
}


def sticky_transition_matrix(
    n_states: int = 8,
    stay_prob: float = 0.3,
    *,
    reading: str = "inverse_circular",
    include_diagonal_in_normalization: bool = False,
) -> np.ndarray:
    """Transition matrix ``P[i, j] = P(y_{t+1} = j | y_t = i)`` of the sticky chain (float64).

    Parameters
    ----------
    n_states : int, >= 2
    stay_prob : float in [0, 1)
        Self-transition probability before any renormalization.
    reading : str
        Which reading of the off-diagonal weights (a key of :data:`READINGS`). The default
        reproduces the paper's Table 1 minimum entropy, 1.8833 nats.
    include_diagonal_in_normalization : bool
        ``False`` (the paper's words): off-diagonal weights are scaled to sum to
        ``1 - stay_prob`` and the diagonal is ``stay_prob``. ``True`` (the authors' public
        code): the row, diagonal included, is first rescaled to ``1 - stay_prob`` and then
        ``stay_prob`` is added to the diagonal, so the self-transition probability becomes
        ``stay_prob + (1 - stay_prob) * stay_prob / (stay_prob + sum of weights)``.

    Returns
    -------
    numpy array of shape ``(n_states, n_states)``, rows summing to one.
    """
    n = check_int(n_states, "n_states", minimum=2)
    s = check_positive(stay_prob, "stay_prob", allow_zero=True)
    if s >= 1.0:
        raise ValueError(f"stay_prob must lie in [0, 1), got {stay_prob!r}")
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {sorted(READINGS)}, got {reading!r}")
    w = READINGS[reading][1]
    P = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                P[i, j] = w(i, j, n)
        if include_diagonal_in_normalization:
            P[i, i] = s
            P[i] = P[i] / P[i].sum() * (1.0 - s)
            P[i, i] += s
            P[i] /= P[i].sum()
        else:
            P[i] = P[i] / P[i].sum() * (1.0 - s)
            P[i, i] = s
    return P


def _check_stochastic(P: np.ndarray | torch.Tensor, name: str = "P") -> np.ndarray:
    P = as_numpy(P, name, ndim=2)
    if P.shape[0] != P.shape[1]:
        raise ValueError(f"{name} must be square, got shape {P.shape}")
    if (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(f"{name} must be row-stochastic (non-negative rows summing to 1)")
    return P


def stationary_distribution(P: np.ndarray | torch.Tensor) -> np.ndarray:
    """Stationary distribution ``pi`` with ``pi P = pi`` (the left eigenvector for eigenvalue 1).

    Parameters
    ----------
    P : ``(n, n)`` row-stochastic matrix (numpy or torch).

    Returns
    -------
    ``(n,)`` float64, non-negative, summing to one.
    """
    P = _check_stochastic(P)
    n = P.shape[0]
    # Solve (P^T - I) pi = 0 with sum(pi) = 1 as a least-squares system (robust for any chain).
    A = np.vstack([P.T - np.eye(n), np.ones((1, n))])
    rhs = np.zeros(n + 1)
    rhs[-1] = 1.0
    pi = np.linalg.lstsq(A, rhs, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def entropy_rate(P: np.ndarray | torch.Tensor) -> float:
    """Entropy rate in nats, ``H = -sum_i pi_i sum_j P_ij log P_ij`` (stationary-weighted).

    This is the smallest expected cross-entropy any predictor of ``y_t`` can reach when it
    knows ``y_{t-1}`` exactly: Table 1's "theoretical min entropy".

    Parameters
    ----------
    P : ``(n, n)`` row-stochastic matrix (numpy or torch).

    Returns
    -------
    float
    """
    P = _check_stochastic(P)
    pi = stationary_distribution(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(np.where(P > 0, P, 1.0)), 0.0)
    return float(-(pi[:, None] * plogp).sum())


def symbol_means(n_states: int = 8, d_x: int = 20, random_state: int = 0) -> torch.Tensor:
    """Fixed symbol means ``mu`` of shape ``(n_states, d_x)``: ``torch.randn`` (float32) from a
    generator seeded with ``random_state``."""
    n = check_int(n_states, "n_states", minimum=1)
    d = check_int(d_x, "d_x", minimum=1)
    g = torch.Generator().manual_seed(check_int(random_state, "random_state", minimum=0))
    return torch.randn(n, d, generator=g)


def sample_sequence(P: np.ndarray | torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``length`` states from the chain ``P`` (int64 tensor).

    The start state is uniform (``torch.randint``); each next state is one
    ``torch.multinomial`` draw from the current row, in float32, as in the public
    implementation, so that a seeded generator gives the same sequence as that code.

    Parameters
    ----------
    P : ``(n, n)`` row-stochastic matrix; length : states to draw (>= 1);
    generator : the ``torch.Generator`` to draw from (advanced by the draws).

    Returns
    -------
    ``(length,)`` int64 tensor.
    """
    P = _check_stochastic(P)
    L = check_int(length, "length", minimum=1)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    Pt = torch.as_tensor(P, dtype=torch.float32)
    n = Pt.shape[0]
    seq = [int(torch.randint(n, (1,), generator=generator).item())]
    for _ in range(L - 1):
        seq.append(int(torch.multinomial(Pt[seq[-1]], 1, generator=generator).item()))
    return torch.tensor(seq, dtype=torch.int64)


@dataclass(frozen=True)
class Dataset:
    """One sequence of the chain and its inputs (:func:`make_dataset`).

    Attributes
    ----------
    x
        ``(N, d_x)`` float32 inputs ``x_t = mu_{y_{t-1}} + eps_t``.
    y
        ``(N,)`` int64 targets ``y_t``.
    y_prev
        ``(N,)`` int64 previous symbols ``y_{t-1}``.
    mu
        ``(n_states, d_x)`` the symbol means.
    P
        the transition matrix.
    random_state
        the seed of the sequence and its noise.
    """

    x: torch.Tensor
    y: torch.Tensor
    y_prev: torch.Tensor
    mu: torch.Tensor
    P: np.ndarray
    random_state: int


def make_dataset(
    P: np.ndarray | torch.Tensor,
    seq_len: int = 2000,
    d_x: int = 20,
    random_state: int = 42,
    *,
    means_random_state: int = 0,
    noise_std: float = 1.0,
) -> Dataset:
    """Inputs ``x_t = mu_{y_{t-1}} + eps_t`` and targets ``y_t`` for ``t = 2..seq_len``.

    Parameters
    ----------
    P : ``(n_states, n_states)`` row-stochastic transition matrix.
    seq_len : states drawn; a sequence of ``seq_len`` states gives ``N = seq_len - 1`` (input,
        target) pairs.
    d_x : input dimension.
    random_state : seed of the torch generator that draws the sequence, then the noise (float32):
        the random-number order of the public implementation.
    means_random_state : seed of the symbol means (:func:`symbol_means`; it does not disturb the
        sequence's generator).
    noise_std : standard deviation of ``eps_t``.

    Returns
    -------
    Dataset
    """
    P = _check_stochastic(P)
    L = check_int(seq_len, "seq_len", minimum=2)
    noise = check_positive(noise_std, "noise_std", allow_zero=True)
    s = check_int(random_state, "random_state", minimum=0)
    mu = symbol_means(P.shape[0], d_x, means_random_state)
    g = torch.Generator().manual_seed(s)
    seq = sample_sequence(P, L, g)
    y_prev, y = seq[:-1], seq[1:]
    x = mu[y_prev] + noise * torch.randn(L - 1, mu.shape[1], generator=g)
    return Dataset(x=x, y=y, y_prev=y_prev, mu=mu, P=P, random_state=s)


def bayes_filter_predictive(
    P: np.ndarray | torch.Tensor,
    mu: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    noise_std: float = 1.0,
) -> np.ndarray:
    """Exact Bayes predictive ``p(y_t | x_1..x_t)`` (N, n_states) by an HMM forward filter.

    The hidden state behind ``x_t`` is ``y_{t-1}`` (emission ``N(mu_{y_{t-1}}, noise_std² I)``),
    and ``y_t`` follows ``P``. The start state is uniform. Its cross-entropy on data is the
    true minimum loss, which the noise raises slightly above the entropy rate.

    Parameters
    ----------
    P : ``(n, n)`` transition matrix; mu : ``(n, d_x)`` symbol means; x : ``(N, d_x)`` inputs;
    noise_std : the emission noise's standard deviation.

    Returns
    -------
    ``(N, n)`` float64, rows summing to one (:func:`bayes_filter`'s ``predictive``).
    """
    return bayes_filter(P, mu, x, noise_std).predictive


def bayes_filter_loss(data: Dataset) -> float:
    """The exact Bayes filter's mean cross-entropy (nats) on one sequence: the least loss any model can expect.

    ``-mean_t log p(y_t | x_1..x_t)`` under :func:`bayes_filter_predictive` with the sequence's own chain and means.
    """
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a Dataset (make_dataset), got {type(data).__name__}")
    pb = bayes_filter_predictive(data.P, data.mu, data.x)
    return float(-np.log(pb[np.arange(len(data.y)), data.y.numpy()]).mean())


@dataclass(frozen=True, eq=False)
class BayesFilter:
    """The exact forward filter of the chain on one sequence (:func:`bayes_filter`).

    Attributes
    ----------
    posterior
        ``(N, n)`` ``p(y_{t-1} | x_1..x_t)``: the filter's posterior over the hidden symbol behind
        ``x_t``.
    log_posterior
        ``(N, n)`` its logarithm, computed in the log domain (finite where the posterior underflows).
    entropy
        ``(N,)`` the posterior's entropy in nats.
    predictive
        ``(N, n)`` ``p(y_t | x_1..x_t) = posterior @ P``.
    """

    posterior: np.ndarray
    log_posterior: np.ndarray
    entropy: np.ndarray
    predictive: np.ndarray


def bayes_filter(
    P: np.ndarray | torch.Tensor,
    mu: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    noise_std: float = 1.0,
) -> BayesFilter:
    """Exact HMM forward filter: posterior over the hidden symbol and predictive at every position.

    The hidden state behind ``x_t`` is ``y_{t-1}`` (emission ``N(mu_{y_{t-1}}, noise_std² I)``),
    and ``y_t`` follows ``P``; the start state is uniform. Nothing is fitted: this is Bayes' rule
    applied exactly, position by position.

    Parameters
    ----------
    P : ``(n, n)`` transition matrix; mu : ``(n, d_x)`` symbol means; x : ``(N, d_x)`` inputs;
    noise_std : the emission noise's standard deviation.

    Returns
    -------
    BayesFilter
        float64 numpy arrays.
    """
    P = _check_stochastic(P)
    mu = as_numpy(mu, "mu", ndim=2)
    x = as_numpy(x, "x", ndim=2)
    if mu.shape[0] != P.shape[0] or x.shape[1] != mu.shape[1]:
        raise ValueError(f"mu must have shape ({P.shape[0]}, x.shape[1]), got {mu.shape} for x {x.shape}")
    sd = check_positive(noise_std, "noise_std")
    loglik = -0.5 * ((x[:, None, :] - mu[None]) ** 2).sum(-1) / sd**2  # (N, n)
    n = P.shape[0]
    prior = np.full(n, 1.0 / n)  # p(y_0): uniform start
    out = np.empty((x.shape[0], n))
    post_all = np.empty_like(out)
    logpost = np.empty_like(out)
    for t in range(x.shape[0]):
        lw = np.log(np.maximum(prior, 1e-300)) + loglik[t]
        w = np.exp(lw - lw.max())
        post = w / w.sum()  # p(y_{t-1} | x_1..x_t)
        post_all[t] = post
        logpost[t] = lw - lw.max() - np.log(w.sum())
        out[t] = post @ P  # p(y_t | x_1..x_t)
        prior = out[t]
    entropy = -(post_all * logpost).sum(1)
    return BayesFilter(posterior=post_all, log_posterior=logpost, entropy=entropy, predictive=out)


def transition_mle(states: np.ndarray | torch.Tensor, n_states: int) -> np.ndarray:
    """Maximum-likelihood transition matrix of one observed state sequence: the transition counts
    ``n_ij`` (state ``i`` followed by ``j``) divided by their row sums.

    It maximizes the log-likelihood ``sum_t log P[s_{t-1}, s_t]`` of the sequence over all
    row-stochastic ``P``: the chain that fits the sampling of this sequence's counts exactly. A
    state never left (no counts in its row) gets the uniform row.

    Parameters
    ----------
    states : ``(L,)`` integer states in ``0 .. n_states - 1``, ``L >= 2``.
    n_states : number of states.

    Returns
    -------
    ``(n_states, n_states)`` float64, rows summing to one.
    """
    n = check_int(n_states, "n_states", minimum=1)
    s = check_labels(states, "states", n)
    s = (s.cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s)).astype(int)
    if s.ndim != 1 or s.shape[0] < 2:
        raise ValueError(f"states must be one sequence of at least two states, got shape {s.shape}")
    counts = np.zeros((n, n))
    np.add.at(counts, (s[:-1], s[1:]), 1.0)
    rows = counts.sum(1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1.0), 1.0 / n)
