"""Tests of iemlib.markov: the sticky chain of the attention paper's §7.2, its entropy rate, its data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib.markov import (
    READINGS,
    bayes_filter_predictive,
    circular_distance,
    entropy_rate,
    make_dataset,
    sample_sequence,
    stationary_distribution,
    sticky_transition_matrix,
    symbol_means,
)


def test_rows_are_distributions_with_the_stay_probability_on_the_diagonal():
    P = sticky_transition_matrix(8, 0.3)
    assert P.shape == (8, 8) and P.dtype == np.float64
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.diag(P), 0.3, atol=1e-15)


def test_off_diagonal_weights_are_inverse_circular_distance():
    P = sticky_transition_matrix(8, 0.3)
    for i in range(8):
        for j in range(8):
            if i != j:
                # P_ij * d(i, j) is the same constant (0.7 / sum_d 1/d) in every cell
                assert P[i, j] * circular_distance(i, j, 8) == pytest.approx(0.7 / (2 + 1 + 2 / 3 + 1 / 4), rel=1e-12)
    assert np.allclose(P, P.T)  # symmetric and circulant: nearby states are likelier


def test_entropy_rate_reproduces_table_1_and_the_public_code():
    assert round(entropy_rate(sticky_transition_matrix()), 4) == 1.8833
    Pp = sticky_transition_matrix(include_diagonal_in_normalization=True)
    assert round(Pp[0, 0], 4) == 0.3498
    assert round(entropy_rate(Pp), 4) == 1.8292


def test_only_one_reading_gives_1_8833():
    hits = [r for r in READINGS if round(entropy_rate(sticky_transition_matrix(reading=r)), 4) == 1.8833]
    assert hits == ["inverse_circular"]


def test_entropy_rate_by_hand():
    assert entropy_rate(np.eye(4)[[1, 2, 3, 0]]) == pytest.approx(0.0, abs=1e-12)  # deterministic cycle
    assert entropy_rate(np.full((5, 5), 0.2)) == pytest.approx(math.log(5))
    # Two states, stationary pi = (b, a) / (a + b): H = pi_0 h(a) + pi_1 h(b)
    a, b = 0.1, 0.4
    P = np.array([[1 - a, a], [b, 1 - b]])
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert entropy_rate(P) == pytest.approx((b * h(a) + a * h(b)) / (a + b), rel=1e-12)
    assert entropy_rate(torch.tensor(P)) == pytest.approx(entropy_rate(P))


@given(st.integers(2, 6), st.integers(0, 10_000))
def test_stationary_distribution_is_stationary(n, seed):
    P = np.random.default_rng(seed).dirichlet(np.ones(n), size=n)
    pi = stationary_distribution(P)
    np.testing.assert_allclose(pi @ P, pi, atol=1e-10)
    assert pi.sum() == pytest.approx(1.0)


@given(st.integers(2, 12), st.floats(0.0, 0.95))
def test_every_reading_is_a_stochastic_matrix(n, s):
    for r in READINGS:
        for inc in (False, True):
            P = sticky_transition_matrix(n, s, reading=r, include_diagonal_in_normalization=inc)
            np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
            assert np.all(P >= 0)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"n_states": 1}, "n_states"), ({"n_states": 2.5}, "n_states"), ({"stay_prob": 1.0}, "stay_prob"),
     ({"stay_prob": -0.1}, "stay_prob"), ({"stay_prob": float("nan")}, "stay_prob"), ({"reading": "nope"}, "reading")],
)
def test_bad_chain_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        sticky_transition_matrix(**kwargs)


@pytest.mark.parametrize("P", [np.ones((2, 3)) / 3, np.array([[0.5, 0.6], [0.5, 0.5]]), np.array([[1.5, -0.5], [0.5, 0.5]]),
                               np.array([[np.nan, 1], [0.5, 0.5]]), np.zeros((0, 0)), np.eye(2, dtype=np.int64)])
def test_entropy_rate_rejects_non_stochastic(P):
    with pytest.raises(ValueError, match="P"):
        entropy_rate(P)


def test_dataset_shapes_and_relations():
    P = sticky_transition_matrix()
    d = make_dataset(P, 300, 20, random_state=3)
    assert d.x.shape == (299, 20) and d.y.shape == (299,) and d.y.dtype == torch.int64
    assert torch.equal(d.y[:-1], d.y_prev[1:])  # the target at t is the previous symbol at t + 1
    noise = d.x - d.mu[d.y_prev]
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1
    d2 = make_dataset(P, 300, 20, random_state=3)
    assert torch.equal(d.x, d2.x) and torch.equal(d.y, d2.y)  # deterministic
    assert not torch.equal(make_dataset(P, 300, 20, random_state=4).y, d.y)


def test_sequence_follows_the_public_codes_random_stream():
    """Same draws as the public script's global-generator loop (seed, randint, multinomial, ...)."""
    P = sticky_transition_matrix(include_diagonal_in_normalization=True)
    Pt = torch.as_tensor(P, dtype=torch.float32)
    torch.manual_seed(7)
    seq = [torch.randint(8, (1,)).item()]
    for _ in range(199):
        seq.append(torch.multinomial(Pt[seq[-1]], 1).item())
    ours = sample_sequence(P, 200, torch.Generator().manual_seed(7))
    assert ours.tolist() == seq


def test_empirical_transitions_match_the_chain():
    P = sticky_transition_matrix()
    y = sample_sequence(P, 20_000, torch.Generator().manual_seed(0)).numpy()
    counts = np.zeros((8, 8))
    np.add.at(counts, (y[:-1], y[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), P, atol=0.03)


def test_bayes_filter_is_close_to_the_entropy_rate():
    P = sticky_transition_matrix()
    d = make_dataset(P, 2000, 20, random_state=42)
    pred = bayes_filter_predictive(P, d.mu, d.x)
    np.testing.assert_allclose(pred.sum(1), 1.0, atol=1e-12)
    ce = -np.log(pred[np.arange(len(d.y)), d.y.numpy()]).mean()
    assert abs(ce - entropy_rate(P)) < 0.1  # one sample of 1999 positions
    with pytest.raises(ValueError, match="mu"):
        bayes_filter_predictive(P, d.mu[:, :5], d.x)


def test_dataset_records_its_seed_and_the_means_seed_does_not_disturb_the_sequence():
    P = sticky_transition_matrix()
    a = make_dataset(P, 50, 4, random_state=5)
    b = make_dataset(P, 50, 4, random_state=5, means_random_state=1)
    assert a.random_state == 5 and torch.equal(a.y, b.y) and not torch.equal(a.mu, b.mu)
    assert torch.allclose(a.x - a.mu[a.y_prev], b.x - b.mu[b.y_prev], atol=1e-6)  # the same noise
    assert torch.equal(symbol_means(8, 4, 0), a.mu)
    with pytest.raises(ValueError, match="random_state"):
        make_dataset(P, 50, 4, random_state=-1)
    with pytest.raises(ValueError, match="seq_len"):
        make_dataset(P, 1, 4)
    with pytest.raises(ValueError, match="generator"):
        sample_sequence(P, 5, 0)


def test_circular_distance_and_the_public_normalization_by_hand():
    assert [circular_distance(0, j, 8) for j in range(8)] == [0, 1, 2, 3, 4, 3, 2, 1]
    Pp = sticky_transition_matrix(include_diagonal_in_normalization=True)
    w = 2 + 1 + 2 / 3 + 1 / 4  # sum of 1/d over the seven other states
    assert Pp[0, 0] == pytest.approx(0.3 + 0.7 * 0.3 / (0.3 + w), rel=1e-12)


def test_transition_mle_counts():
    from iemlib.markov import transition_mle

    P = transition_mle(np.array([0, 1, 1, 0, 1]), 3)
    assert np.allclose(P, [[0, 1, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])  # state 2 never left: uniform
    assert np.allclose(transition_mle(torch.tensor([0, 1, 1, 0, 1]), 3), P)
    for bad, match in (([0], "states"), ([0, 3], "states"), ([0.5, 1.0], "states")):
        with pytest.raises(ValueError, match=match):
            transition_mle(np.array(bad), 3)


@given(st.integers(0, 10_000), st.integers(2, 5))
def test_transition_mle_maximizes_the_likelihood(seed, n):
    """No row-stochastic matrix gives the sequence a higher log-likelihood than the count estimate."""
    from iemlib.markov import transition_mle

    rng = np.random.default_rng(seed)
    s = rng.integers(0, n, size=60)
    P_hat = transition_mle(s, n)
    Q = rng.dirichlet(np.ones(n), size=n)

    def ll(P):
        return float(np.sum(np.log(np.maximum(P[s[:-1], s[1:]], 1e-300))))

    assert ll(P_hat) >= ll(Q) - 1e-9
    assert np.allclose(P_hat.sum(1), 1.0)


def test_bayes_filter_loss_is_the_filters_cross_entropy():
    from iemlib.markov import bayes_filter_loss, bayes_filter_predictive, make_dataset, sticky_transition_matrix

    P = sticky_transition_matrix(8, 0.3)
    d = make_dataset(P, 300, 20, 7)
    pb = bayes_filter_predictive(P, d.mu, d.x)
    direct = -np.log(pb[np.arange(len(d.y)), d.y.numpy()]).mean()
    assert bayes_filter_loss(d) == pytest.approx(direct, rel=0, abs=0)
    # the filter beats predicting the stationary distribution (uniform here) on its own sequence
    assert bayes_filter_loss(d) < np.log(8)
    with pytest.raises(ValueError, match="data"):
        bayes_filter_loss(P)
