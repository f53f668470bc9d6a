"""Tests of iemlib.mixture.gaussian: densities against scipy, distances, the E- and M-steps,
covariance conversions, starts, and responsibilities read off autograd (against the closed form
and finite differences)."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from iemlib.data import make_gaussian_mixture
from iemlib.mixture import (
    COVARIANCE_TYPES,
    MixtureParams,
    Start,
    batched_starts,
    check_mixture,
    component_distances,
    component_log_densities,
    covariances_from_precisions,
    distance_gradients,
    e_step,
    full_covariances,
    log_likelihood,
    m_step,
    precisions_from_covariances,
    random_start,
)

X, LABELS, TRUE = make_gaussian_mixture(n_samples=400, random_state=0)
GOOD = dict(weights=TRUE.weights, means=TRUE.means, covariances=TRUE.covariances)


def _to_type(cov_full, ct):
    if ct == "full":
        return cov_full
    diag = np.diagonal(cov_full, axis1=1, axis2=2)
    return diag if ct == "diag" else diag.mean(1)


def _dense(cov, ct, D=2):
    return full_covariances(cov, ct, D)


# ----------------------------------------------------------------------------- densities
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_log_densities_match_scipy(ct):
    cov = _to_type(TRUE.covariances, ct)
    got = component_log_densities(X, TRUE.means, cov, ct)
    C = _dense(cov, ct)
    for k in range(3):
        np.testing.assert_allclose(got[:, k], multivariate_normal(TRUE.means[k], C[k]).logpdf(X), rtol=1e-12)
    d = component_distances(X, TRUE.weights, TRUE.means, cov, ct)
    np.testing.assert_allclose(d, -(np.log(TRUE.weights) + got), rtol=1e-13)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_e_step_is_softmax_and_logsumexp_of_the_distances(ct):
    cov = _to_type(TRUE.covariances, ct)
    d = component_distances(X, TRUE.weights, TRUE.means, cov, ct)
    resp, ll = e_step(X, TRUE.weights, TRUE.means, cov, ct)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(resp, np.exp(-d - logsumexp(-d, axis=1, keepdims=True)), rtol=1e-12, atol=1e-300)
    assert ll == pytest.approx(np.mean(logsumexp(-d, axis=1)), rel=1e-13)
    assert log_likelihood(X, TRUE.weights, TRUE.means, cov, ct) == ll


def test_the_three_types_agree_when_the_covariances_do():
    iso = np.array([0.7, 1.1, 0.5])
    a = component_distances(X, TRUE.weights, TRUE.means, iso, "spherical")
    b = component_distances(X, TRUE.weights, TRUE.means, np.repeat(iso[:, None], 2, 1), "diag")
    c = component_distances(X, TRUE.weights, TRUE.means, iso[:, None, None] * np.eye(2), "full")
    np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(a, c, rtol=1e-12)


def test_torch_inputs_give_the_numpy_answer():
    d = component_distances(torch.tensor(X), torch.tensor(TRUE.weights), torch.tensor(TRUE.means), torch.tensor(TRUE.covariances))
    np.testing.assert_array_equal(d, component_distances(X, **GOOD))


# ----------------------------------------------------------------------------- covariances
def test_precisions_round_trip():
    for ct in COVARIANCE_TYPES:
        c = _to_type(TRUE.covariances, ct)
        np.testing.assert_allclose(covariances_from_precisions(precisions_from_covariances(c, ct), ct), c, rtol=1e-12)


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), D=st.integers(1, 4))
def test_precisions_are_inverses_property(seed, K, D):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, D, D))
    C = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(D)
    P = precisions_from_covariances(C, "full")
    np.testing.assert_allclose(P @ C, np.broadcast_to(np.eye(D), (K, D, D)), atol=1e-9)
    np.testing.assert_allclose(P, np.swapaxes(P, 1, 2))  # returned symmetric
    v = rng.uniform(0.1, 3.0, size=(K, D))
    np.testing.assert_allclose(precisions_from_covariances(v, "diag"), 1.0 / v)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_full_covariances_expand_each_type(ct):
    cov = _to_type(TRUE.covariances, ct)
    F = full_covariances(cov, ct, 2)
    assert F.shape == (3, 2, 2)
    if ct == "full":
        np.testing.assert_array_equal(F, cov)
        assert F is not cov
    elif ct == "diag":
        np.testing.assert_array_equal(np.diagonal(F, axis1=1, axis2=2), cov)
        assert (F[:, 0, 1] == 0).all()
    else:
        np.testing.assert_array_equal(F, cov[:, None, None] * np.eye(2))


# ----------------------------------------------------------------------------- M-step
def test_m_step_is_the_weighted_average():
    resp, _ = e_step(X, **GOOD)
    w, m, c = m_step(X, resp, "full", reg_covar=0.0)
    Nk = resp.sum(0)
    np.testing.assert_allclose(m, resp.T @ X / Nk[:, None], rtol=1e-12)
    for k in range(3):
        diff = X - m[k]
        np.testing.assert_allclose(c[k], (resp[:, k, None] * diff).T @ diff / Nk[k], rtol=1e-10)
    np.testing.assert_allclose(w, Nk / len(X), rtol=1e-12)


def test_m_step_types_and_reg_covar():
    resp, _ = e_step(X, **GOOD)
    _, _, full = m_step(X, resp, "full", reg_covar=0.0)
    _, _, diag = m_step(X, resp, "diag", reg_covar=0.0)
    _, _, sph = m_step(X, resp, "spherical", reg_covar=0.0)
    np.testing.assert_allclose(diag, np.diagonal(full, axis1=1, axis2=2), rtol=1e-9)
    np.testing.assert_allclose(sph, diag.mean(1), rtol=1e-12)
    _, _, reg = m_step(X, resp, "full", reg_covar=0.25)
    np.testing.assert_allclose(reg - full, 0.25 * np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-14)


# ----------------------------------------------------------------------------- starts and parameters
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_random_start_uses_data_points_and_the_data_covariance(ct):
    s = random_start(X, 3, ct, random_state=4)
    assert isinstance(s, Start)
    assert all(any(np.array_equal(m, x) for x in X) for m in s.means_init)  # distinct data points
    assert len({tuple(m) for m in s.means_init}) == 3
    np.testing.assert_array_equal(s.weights_init, np.full(3, 1 / 3))
    cov = covariances_from_precisions(s.precisions_init, ct)
    C = np.cov(X, rowvar=False, bias=True)
    want = {"full": C + 1e-6 * np.eye(2), "diag": np.diag(C) + 1e-6, "spherical": np.diag(C).mean() + 1e-6}[ct]
    np.testing.assert_allclose(cov[0], want, rtol=1e-10)
    assert set(s.as_kwargs()) == {"means_init", "weights_init", "precisions_init"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.means_init = None


def test_random_start_with_spread_is_nearly_symmetric():
    s = random_start(X, 3, "full", random_state=0, spread=1e-6)
    assert np.abs(s.means_init - X.mean(0)).max() < 1e-4


def test_batched_starts_are_random_starts_stacked_and_index_as_batches():
    S = batched_starts(X, 3, 4, random_state=7)
    assert isinstance(S, MixtureParams) and S.covariances.shape == (4, 3, 2, 2)
    for b in range(4):
        s = random_start(X, 3, "full", random_state=7 + b)
        np.testing.assert_array_equal(S.means[b], s.means_init)
        np.testing.assert_allclose(S.covariances[b], np.linalg.inv(s.precisions_init), rtol=1e-12)
    one = S[2]
    assert one.means.shape == (1, 3, 2)
    np.testing.assert_array_equal(one.means, S[2:3].means)
    np.testing.assert_array_equal(S[[0, 3]].weights, S.weights[[0, 3]])


def test_check_mixture_returns_float64_and_names_bad_parts():
    p = check_mixture(TRUE.weights.astype(np.float32), TRUE.means, TRUE.covariances, "full", n_features=2)
    assert p.weights.dtype == np.float64
    with pytest.raises(ValueError, match="means"):
        check_mixture(TRUE.weights, TRUE.means, TRUE.covariances, n_features=3)
    with pytest.raises(ValueError, match="covariances"):
        bad = TRUE.covariances.copy()
        bad[0, 0, 1] += 1.0
        check_mixture(TRUE.weights, TRUE.means, bad)


# ----------------------------------------------------------------------------- Theorem 1 in the mixture
@settings(max_examples=15)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_distance_gradients_are_posteriors(seed, ct):
    start = random_start(X, 3, ct, random_state=seed)
    cov = covariances_from_precisions(start.precisions_init, ct)
    g = distance_gradients(X, start.weights_init, start.means_init, cov, ct)
    resp, _ = e_step(X, start.weights_init, start.means_init, cov, ct)
    np.testing.assert_allclose(g, resp, atol=1e-13)


def test_distance_gradients_match_finite_differences_of_the_loss():
    d = component_distances(X, **GOOD)
    g = distance_gradients(X, **GOOD)

    def loss(row):  # the summed loss -sum_i L_i depends on d_ij only through row i's term -L_i
        return -logsumexp(-row)

    h = 1e-6
    for i, j in [(0, 0), (5, 1), (123, 2), (399, 1)]:
        e = np.zeros(3)
        e[j] = h
        assert (loss(d[i] + e) - loss(d[i] - e)) / (2 * h) == pytest.approx(g[i, j], abs=1e-9)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: e_step(np.array([[np.nan, 0.0]]), **GOOD), "X"),
        (lambda: e_step(np.array([[np.inf, 0.0]]), **GOOD), "X"),
        (lambda: e_step(np.zeros((0, 2)), **GOOD), "X"),
        (lambda: e_step(np.zeros((3, 2), dtype=np.int64), **GOOD), "X"),
        (lambda: e_step(np.zeros(4), **GOOD), "X"),
        (lambda: e_step(X, TRUE.weights, TRUE.means[:, :1], TRUE.covariances), "means"),
        (lambda: e_step(X, np.array([0.5, 0.6, -0.1]), TRUE.means, TRUE.covariances), "weights"),
        (lambda: e_step(X, np.array([0.3, 0.3, 0.3]), TRUE.means, TRUE.covariances), "weights"),
        (lambda: e_step(X, TRUE.weights, TRUE.means, -TRUE.covariances), "covariances"),
        (lambda: e_step(X, TRUE.weights, TRUE.means, TRUE.covariances, "tied"), "covariance_type"),
        (lambda: component_log_densities(X, TRUE.means, np.ones(3), "diag"), "covariances"),
        (lambda: component_distances(X, TRUE.weights, TRUE.means, np.ones((3, 2))), "covariances"),
        (lambda: m_step(X, np.ones((5, 3))), "r"),
        (lambda: m_step(X, np.full((len(X), 3), np.nan)), "r"),
        (lambda: m_step(X, -np.ones((len(X), 3))), "r"),
        (lambda: m_step(X, np.ones((len(X), 3)), reg_covar=-1.0), "reg_covar"),
        (lambda: log_likelihood(X.astype(np.float32)[:, :1], **GOOD), "X"),
        (lambda: distance_gradients(torch.tensor([[np.nan, 1.0]]), **GOOD), "X"),
        (lambda: random_start(X, 3, "full", random_state=-1), "random_state"),
        (lambda: random_start(X[:2], 3), "X"),
        (lambda: random_start(X, 3, spread=0.0), "spread"),
        (lambda: batched_starts(X, 3, 0), "n_starts"),
        (lambda: precisions_from_covariances(-np.ones(3), "spherical"), "covariances"),
        (lambda: covariances_from_precisions(np.ones((3, 2)), "full"), "precisions"),
        (lambda: covariances_from_precisions(np.ones((3, 2, 2)), "diag"), "precisions"),
        (lambda: full_covariances(np.ones((3, 3)), "diag", 2), "covariances"),
        (lambda: full_covariances(np.ones(3), "spherical", 0), "n_features"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
