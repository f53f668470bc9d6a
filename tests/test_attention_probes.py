"""iemlib.attention.probes and iemlib.markov.bayes_filter: the filter's posterior, the head's
representations, ridge probes, R² and the principal-component dimension."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from iemlib.attention import attention_forward, init_row_params
from iemlib.attention.probes import (
    head_features, probe_targets, r_squared, representation_dimension, ridge_probe,
)
from iemlib.markov import (
    BayesFilter, bayes_filter, bayes_filter_predictive, make_dataset, sticky_transition_matrix,
)


@pytest.fixture(scope="module")
def data():
    P = sticky_transition_matrix()
    return P, make_dataset(P, 300, 20, 42)


def test_bayes_filter_is_bayes_rule(data):
    P, d = data
    bf = bayes_filter(P, d.mu, d.x)
    assert np.allclose(bf.posterior.sum(1), 1) and np.allclose(bf.predictive, bf.posterior @ P)
    assert np.allclose(bf.predictive, bayes_filter_predictive(P, d.mu, d.x), rtol=0, atol=0)
    assert np.allclose(np.exp(bf.log_posterior), bf.posterior, atol=1e-12)
    assert np.isfinite(bf.log_posterior).all() and (bf.entropy >= -1e-12).all()
    # first position: uniform prior, so the posterior is the softmax of the log-likelihoods
    ll = -0.5 * ((d.x[0].double().numpy() - d.mu.double().numpy()) ** 2).sum(1)
    assert np.allclose(bf.posterior[0], np.exp(ll - ll.max()) / np.exp(ll - ll.max()).sum())
    # the hidden symbol is read correctly almost always (the emissions are informative)
    assert (bf.posterior.argmax(1) == d.y_prev.numpy()).mean() > 0.9


def test_head_features_match_the_paper_layout_forward(data):
    _, d = data
    p = init_row_params(3)
    f = head_features(d.x, p.W_Q, p.W_K, p.W_V, p.W_O, p.b)
    fw = attention_forward(d.x.double(), p.W_Q.double().T, p.W_K.double().T, p.W_V.double().T)
    assert np.allclose(f.g, fw.g.numpy(), atol=1e-10) and np.allclose(f.values, fw.v.numpy())
    assert np.allclose(f.logits, f.g @ p.W_O.double().numpy() + p.b.numpy())
    # a batch of two heads gives each head's features
    W = [torch.stack([w, 2 * w]) for w in (p.W_Q, p.W_K, p.W_V, p.W_O, p.b)]
    fb = head_features(d.x, *W)
    assert np.allclose(fb.g[0], f.g) and fb.attention_entropy.shape == (2,)
    assert 0 < f.attention_entropy < np.log(d.x.shape[0])


def test_ridge_probe_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    F, Ft = rng.normal(size=(400, 5)), rng.normal(size=(300, 5))
    W = rng.normal(size=(5, 3))
    fit = ridge_probe(F, F @ W + 1.0, Ft, Ft @ W + 1.0, ridge=1e-8)
    assert fit.r2_test > 1 - 1e-9 and fit.r2_train > 1 - 1e-9
    assert np.allclose(fit.predict(Ft), Ft @ W + 1.0, atol=1e-6)
    noise = ridge_probe(F, rng.normal(size=400), Ft, rng.normal(size=300))
    assert noise.r2_test < 0.05
    # a constant feature column is ignored, not divided by zero
    Fc = np.c_[F, np.ones(400)]
    assert ridge_probe(Fc, F[:, 0], np.c_[Ft, np.ones(300)], Ft[:, 0]).r2_test > 0.99


@given(st.integers(0, 10_000))
def test_r_squared_properties(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(50, 2))
    assert r_squared(y, y) == 1.0
    assert r_squared(y, np.broadcast_to(y.mean(0), y.shape)) == pytest.approx(0.0, abs=1e-12)
    assert r_squared(y, y + rng.normal(size=y.shape)) < 1.0


def test_representation_dimension():
    rng = np.random.default_rng(1)
    t = rng.normal(size=500)
    pts = np.outer(t, [1.0, 2.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(500, 4))
    dim = representation_dimension(pts, t)
    assert dim.n_components == 1 and dim.explained_variance_ratio[0] > 0.99
    assert abs(dim.leading_correlation) > 0.99
    assert np.isnan(representation_dimension(pts).leading_correlation)
    assert representation_dimension(rng.normal(size=(500, 4))).n_components >= 3


def test_probe_targets_are_centred(data):
    P, d = data
    t = probe_targets(bayes_filter(P, d.mu, d.x))
    assert np.allclose(t.log_posterior.mean(1), 0) and t.entropy.shape == (len(d.y),)


def test_bad_input(data):
    P, d = data
    p = init_row_params(0)
    with pytest.raises(ValueError, match="W_O"):
        head_features(d.x, p.W_Q, p.W_K, p.W_V, p.W_O[:3], p.b)
    with pytest.raises(ValueError, match="x"):
        head_features(d.x[:, :5], p.W_Q, p.W_K, p.W_V, p.W_O, p.b)
    with pytest.raises(ValueError, match="ridge"):
        ridge_probe(np.ones((5, 2)), np.arange(5.0), np.ones((5, 2)), np.arange(5.0), ridge=0)
    with pytest.raises(ValueError, match="features_train"):
        ridge_probe(np.full((5, 2), np.nan), np.arange(5.0), np.ones((5, 2)), np.arange(5.0))
    with pytest.raises(ValueError, match="y_true"):
        r_squared(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="threshold"):
        representation_dimension(np.ones((5, 2)), threshold=1.5)
    with pytest.raises(ValueError, match="bf"):
        probe_targets("not a filter")
    with pytest.raises(ValueError, match="mu"):
        bayes_filter(P, d.mu[:, :3], d.x)
    assert isinstance(bayes_filter(P, d.mu, d.x), BayesFilter)


@given(st.integers(0, 10_000), st.floats(0.1, 10.0), st.floats(-5.0, 5.0))
def test_ridge_probe_ignores_feature_scale_and_shift(seed, scale, shift):
    """The features are standardized first, so rescaling or shifting a feature changes nothing."""
    rng = np.random.default_rng(seed)
    F, Ft = rng.normal(size=(60, 3)), rng.normal(size=(40, 3))
    w = rng.normal(size=3)
    y, yt = F @ w + 0.1 * rng.normal(size=60), Ft @ w + 0.1 * rng.normal(size=40)
    a = ridge_probe(F, y, Ft, yt)
    G, Gt = F * [scale, 1, 1] + shift, Ft * [scale, 1, 1] + shift
    b = ridge_probe(G, y, Gt, yt)
    assert b.r2_test == pytest.approx(a.r2_test, abs=1e-9)


@given(st.integers(0, 10_000))
def test_bayes_filter_posteriors_are_distributions(seed):
    P = sticky_transition_matrix()
    d = make_dataset(P, 30, 20, seed)
    bf = bayes_filter(P, d.mu, d.x, noise_std=2.0)
    assert np.allclose(bf.posterior.sum(1), 1) and (bf.posterior >= 0).all()
    assert ((bf.entropy >= -1e-12) & (bf.entropy <= np.log(8) + 1e-12)).all()
