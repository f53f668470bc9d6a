"""Tests of iemlib.legacy.mixture: classical EM against scikit-learn, implicit EM against EM,
responsibilities read off autograd, and the Xu & Jordan bridge."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

import iemlib.book.exercises.ch02 as ex2
import iemlib.book.exercises.ch04 as ex4
from iemlib.legacy.mixture import (
    COVARIANCE_TYPES,
    GaussianMixtureEM,
    ImplicitEM,
    component_distances,
    component_log_densities,
    covariances_from_precisions,
    full_covariances,
    distance_gradients,
    e_step,
    log_likelihood,
    m_step,
    make_mixture_data,
    precisions_from_covariances,
    preconditioned_mean_step,
    random_start,
    responsibility_entropy,
    sample_gaussian_mixture,
)

X, LABELS, TRUE = make_mixture_data(n_samples=400, random_state=0)


def _to_type(cov_full, ct):
    if ct == "full":
        return cov_full
    diag = np.diagonal(cov_full, axis1=1, axis2=2)
    return diag if ct == "diag" else diag.mean(1)


# ----------------------------------------------------------------------------- data, densities
def test_data_is_seeded_and_labelled():
    X2, l2, _ = make_mixture_data(n_samples=400, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(LABELS, l2)
    assert X.shape == (400, 2) and set(np.unique(LABELS)) <= {0, 1, 2}
    Xs, ls = sample_gaussian_mixture(50_000, TRUE["weights"], TRUE["means"], TRUE["covariances"], random_state=3)
    for k in range(3):  # sample moments approach the generating parameters
        np.testing.assert_allclose(Xs[ls == k].mean(0), TRUE["means"][k], atol=0.05)
        np.testing.assert_allclose(np.cov(Xs[ls == k], rowvar=False), TRUE["covariances"][k], atol=0.06)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_log_densities_match_scipy(ct):
    cov = _to_type(TRUE["covariances"], ct)
    got = component_log_densities(X, TRUE["means"], cov, ct)
    for k in range(3):
        C = {"full": cov[k], "diag": np.diag(cov[k]) if ct == "diag" else None}.get(ct)
        if ct == "spherical":
            C = cov[k] * np.eye(2)
        elif ct == "diag":
            C = np.diag(cov[k])
        np.testing.assert_allclose(got[:, k], multivariate_normal(TRUE["means"][k], C).logpdf(X), rtol=1e-12)
    d = component_distances(X, TRUE["weights"], TRUE["means"], cov, ct)
    np.testing.assert_allclose(d, -(np.log(TRUE["weights"]) + got), rtol=1e-13)
    resp, ll = e_step(X, TRUE["weights"], TRUE["means"], cov, ct)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(ll, np.mean(np.log(np.exp(-d).sum(1))), rtol=1e-12)


def test_precisions_round_trip():
    for ct in COVARIANCE_TYPES:
        c = _to_type(TRUE["covariances"], ct)
        np.testing.assert_allclose(covariances_from_precisions(precisions_from_covariances(c, ct), ct), c, rtol=1e-12)


# ----------------------------------------------------------------------------- classical EM
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_em_matches_sklearn_from_the_same_start(ct, seed):
    start = random_start(X, 3, ct, random_state=seed)
    ours = GaussianMixtureEM(3, covariance_type=ct, **start).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(3, covariance_type=ct, **start).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, atol=1e-8)
    np.testing.assert_allclose(ours.weights_, ref.weights_, atol=1e-8)
    np.testing.assert_allclose(ours.precisions_, ref.precisions_, rtol=1e-7)
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-8
    assert abs(ours.score(X) - ref.score(X)) < 1e-8
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.covariances_.shape == {"spherical": (3,), "diag": (3, 2), "full": (3, 2, 2)}[ct]


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES), K=st.integers(1, 4))
def test_em_log_likelihood_is_monotone(seed, ct, K):
    Xh, _, _ = make_mixture_data(n_samples=150, n_components=3, random_state=seed)
    em = GaussianMixtureEM(K, covariance_type=ct, tol=1e-8, max_iter=60, random_state=seed).fit(Xh)
    ll = np.array(em.history_["log_likelihood"])
    assert len(ll) == em.n_iter_ + 1 and len(em.history_["means"]) == em.n_iter_ + 1
    assert np.all(np.diff(ll) >= -1e-10), np.diff(ll).min()
    assert abs(ll[-1] - em.score(Xh)) < 1e-12


def test_m_step_is_the_weighted_average():
    resp, _ = e_step(X, TRUE["weights"], TRUE["means"], TRUE["covariances"], "full")
    w, m, c = m_step(X, resp, "full", reg_covar=0.0)
    Nk = resp.sum(0)
    np.testing.assert_allclose(m, resp.T @ X / Nk[:, None], rtol=1e-12)
    for k in range(3):
        diff = X - m[k]
        np.testing.assert_allclose(c[k], (resp[:, k, None] * diff).T @ diff / Nk[k], rtol=1e-10)
    np.testing.assert_allclose(w, Nk / len(X), rtol=1e-12)


# ----------------------------------------------------------------------------- implicit EM
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_implicit_em_reaches_em_lower_bound(ct):
    start = random_start(X, 3, ct, random_state=0)
    em = GaussianMixtureEM(3, covariance_type=ct, tol=1e-10, max_iter=1000, **start).fit(X)
    ie = ImplicitEM(3, covariance_type=ct, **start).fit(X)  # defaults must converge
    assert ie.converged_
    assert np.all(np.diff(ie.history_["log_likelihood"]) >= -1e-12)  # monotone, like EM
    assert abs(em.score(X) - ie.score(X)) < 1e-3
    assert abs(ie.lower_bound_ - ie.score(X)) < 1e-10
    np.testing.assert_allclose(ie.history_["means"][0], start["means_init"], atol=1e-12)  # the same start
    np.testing.assert_allclose(ie.means_, em.means_, atol=2e-2)
    np.testing.assert_allclose(ie.weights_, em.weights_, atol=2e-2)
    assert ie.predict_proba(X).shape == (len(X), 3)


def test_implicit_em_adam_and_fixed_step_options_converge():
    start = random_start(X, 3, "full", random_state=1)
    em = GaussianMixtureEM(3, covariance_type="full", tol=1e-10, max_iter=1000, **start).fit(X)
    for opt, lr in (("adam", 0.05), ("sgd", 0.3)):
        ie = ImplicitEM(3, covariance_type="full", optimizer=opt, lr=lr, **start).fit(X)
        assert ie.converged_ and abs(em.score(X) - ie.score(X)) < 1e-3, opt


def test_implicit_em_captures_gradients_equal_to_posteriors():
    start = random_start(X, 3, "full", random_state=1)
    ie = ImplicitEM(3, covariance_type="full", max_iter=30, capture_at=(0, 10, 30), **start).fit(X)
    assert set(ie.history_["captured"]) == {0, 10, 30}
    for snap in ie.history_["captured"].values():
        resp, _ = e_step(X, snap["weights"], snap["means"], snap["covariances"], "full")
        np.testing.assert_allclose(snap["grad_d"], resp, atol=1e-12)


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_distance_gradients_are_posteriors(seed, ct):
    start = random_start(X, 3, ct, random_state=seed)
    cov = covariances_from_precisions(start["precisions_init"], ct)
    g = distance_gradients(X, start["weights_init"], start["means_init"], cov, ct)
    resp, _ = e_step(X, start["weights_init"], start["means_init"], cov, ct)
    np.testing.assert_allclose(g, resp, atol=1e-13)


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_xu_jordan_bridge(seed, ct):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3))
    means = X[rng.choice(len(X), 3, replace=False)]
    cov = _to_type(TRUE["covariances"][rng.permutation(3)] * rng.uniform(0.5, 2.0), ct)
    out = preconditioned_mean_step(X, w, means, cov, ct)
    assert out["max_abs_diff"] < 1e-12
    # and the gradient itself is sum_i r_ij Sigma_j^{-1}(x_i - mu_j) (autograd vs closed form)
    resp, _ = e_step(X, w, means, cov, ct)
    full = {"full": cov, "diag": None, "spherical": None}[ct]
    for k in range(3):
        Ck = full[k] if ct == "full" else np.diag(cov[k]) if ct == "diag" else cov[k] * np.eye(2)
        want = np.linalg.solve(Ck, (resp[:, k, None] * (X - means[k])).sum(0))
        np.testing.assert_allclose(out["gradient"][k], want, rtol=1e-9, atol=1e-10)


def test_responsibility_entropy_bounds():
    assert responsibility_entropy(np.full((4, 3), 1 / 3)) == pytest.approx(np.log(3))
    assert responsibility_entropy(np.eye(3)) == 0.0


# ----------------------------------------------------------------------------- bad input
GOOD = dict(weights=TRUE["weights"], means=TRUE["means"], covariances=TRUE["covariances"])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: e_step(np.array([[np.nan, 0.0]]), **GOOD), "X"),
        (lambda: e_step(np.array([[np.inf, 0.0]]), **GOOD), "X"),
        (lambda: e_step(np.zeros((0, 2)), **GOOD), "X"),
        (lambda: e_step(np.zeros((3, 2), dtype=np.int64), **GOOD), "X"),
        (lambda: e_step(np.zeros(4), **GOOD), "X"),
        (lambda: e_step(X, TRUE["weights"], TRUE["means"][:, :1], TRUE["covariances"]), "means"),
        (lambda: e_step(X, np.array([0.5, 0.6, -0.1]), TRUE["means"], TRUE["covariances"]), "weights"),
        (lambda: e_step(X, TRUE["weights"], TRUE["means"], -TRUE["covariances"]), "covariances"),
        (lambda: e_step(X, TRUE["weights"], TRUE["means"], TRUE["covariances"], "tied"), "covariance_type"),
        (lambda: component_log_densities(X, TRUE["means"], np.ones(3), "diag"), "covariances"),
        (lambda: component_distances(X, TRUE["weights"], TRUE["means"], np.ones((3, 2))), "covariances"),
        (lambda: m_step(X, np.ones((5, 3))), "resp"),
        (lambda: m_step(X, np.full((len(X), 3), np.nan)), "resp"),
        (lambda: log_likelihood(X.astype(np.float32)[:, :1], **GOOD), "X"),
        (lambda: distance_gradients(torch.tensor([[np.nan, 1.0]]), **GOOD), "X"),
        (lambda: preconditioned_mean_step(np.zeros((0, 2)), **GOOD), "X"),
        (lambda: sample_gaussian_mixture(10, [0.5, 0.5], np.zeros((2, 2)), np.ones((2, 2, 2))), "covariances"),
        (lambda: make_mixture_data(n_samples=0), "n_samples"),
        (lambda: random_start(X, 3, "full", random_state=-1), "random_state"),
        (lambda: responsibility_entropy(np.full((2, 2), 0.9)), "resp"),
        (lambda: GaussianMixtureEM(3).fit(np.zeros((2, 2))), "X"),
        (lambda: GaussianMixtureEM(0).fit(X), "n_components"),
        (lambda: GaussianMixtureEM(3, covariance_type="tied").fit(X), "covariance_type"),
        (lambda: GaussianMixtureEM(3, means_init=np.zeros((2, 2))).fit(X), "means_init"),
        (lambda: GaussianMixtureEM(3, weights_init=np.array([0.2, 0.2, 0.2])).fit(X), "weights_init"),
        (lambda: GaussianMixtureEM(3, precisions_init=np.ones((3, 2))).fit(X), "precisions_init"),
        (lambda: GaussianMixtureEM(3).predict(X), "fit"),
        (lambda: GaussianMixtureEM(3, max_iter=3).fit(X).score(np.zeros((2, 5))), "X"),
        (lambda: ImplicitEM(3, lr=-1.0).fit(X), "lr"),
        (lambda: ImplicitEM(3, optimizer="rmsprop").fit(X), "optimizer"),
        (lambda: ImplicitEM(3, tol=float("nan")).fit(X), "tol"),
        (lambda: ImplicitEM(3).fit(np.full((5, 2), np.inf)), "X"),
        (lambda: precisions_from_covariances(-np.ones(3), "spherical"), "covariances"),
        (lambda: covariances_from_precisions(np.ones((3, 2)), "full"), "precisions"),
        (lambda: full_covariances(np.ones((3, 3)), "diag", 2), "covariances"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ----------------------------------------------------------------------------- exercise checkers
def test_ch02_checkers_accept_right_and_reject_wrong():
    lam, V = np.linalg.eigh(ex2.EXERCISE_COV)
    W = V[:, -1] / np.sqrt(lam[-1])
    assert ex2.check_principal_unit((W, -W @ ex2.EXERCISE_MEAN))
    assert ex2.check_principal_unit((-W, W @ ex2.EXERCISE_MEAN))
    assert not ex2.check_principal_unit((V[:, 0] / np.sqrt(lam[0]), 0.0))
    assert not ex2.check_principal_unit(...)
    assert not ex2.check_principal_unit("nonsense")
    r = np.exp(-ex2.EXERCISE_D) / np.exp(-ex2.EXERCISE_D).sum()
    assert ex2.check_lse_gradient(-r) and not ex2.check_lse_gradient(r) and not ex2.check_lse_gradient(...)
    Xe, Re = ex2.em_exercise_data()
    assert ex2.check_em_means(Re.T @ Xe / Re.sum(0)[:, None])
    assert not ex2.check_em_means(Re.T @ Xe / len(Xe))


def test_ch04_checkers_accept_right_and_reject_wrong():
    r = np.exp(-ex4.EXERCISE_D) / np.exp(-ex4.EXERCISE_D).sum()
    assert ex4.check_loss_gradient(r) and not ex4.check_loss_gradient(-r) and not ex4.check_loss_gradient(...)
    p = ex4.bridge_problem()
    out = preconditioned_mean_step(p["X"], p["weights"], p["means"], p["variances"], "spherical")
    assert ex4.check_bridge_step(out["step"])
    assert not ex4.check_bridge_step(p["means"])
    assert not ex4.check_bridge_step(...)
