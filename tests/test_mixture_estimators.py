"""Tests of iemlib.mixture.estimators: classical EM against scikit-learn, implicit EM against EM,
responsibilities captured from autograd, the cost counters and the recorded histories."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.mixture import GaussianMixture

from iemlib.data import make_gaussian_mixture
from iemlib.mixture import (
    COVARIANCE_TYPES,
    Capture,
    FitHistory,
    GaussianMixtureEM,
    GradientHistory,
    ImplicitEM,
    e_step,
    random_start,
)

X, LABELS, TRUE = make_gaussian_mixture(n_samples=400, random_state=0)


# ----------------------------------------------------------------------------- classical EM
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_em_matches_sklearn_from_the_same_start(ct, seed):
    start = random_start(X, 3, ct, random_state=seed).as_kwargs()
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
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), atol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.covariances_.shape == {"spherical": (3,), "diag": (3, 2), "full": (3, 2, 2)}[ct]


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES), K=st.integers(1, 4))
def test_em_log_likelihood_is_monotone(seed, ct, K):
    Xh, _, _ = make_gaussian_mixture(n_samples=150, n_components=3, random_state=seed)
    em = GaussianMixtureEM(K, covariance_type=ct, tol=1e-8, max_iter=60, random_state=seed).fit(Xh)
    h = em.history_
    assert isinstance(h, FitHistory)
    assert h.log_likelihood.shape == (em.n_iter_ + 1,) and h.means.shape == (em.n_iter_ + 1, K, 2)
    assert h.weights.shape == (em.n_iter_ + 1, K) and h.resp_entropy.shape == (em.n_iter_ + 1,)
    assert np.all(np.diff(h.log_likelihood) >= -1e-10), np.diff(h.log_likelihood).min()
    assert abs(h.log_likelihood[-1] - em.score(Xh)) < 1e-12
    assert np.all((h.resp_entropy >= -1e-12) & (h.resp_entropy <= np.log(K) + 1e-12))


def test_em_counts_and_lower_bound_follow_sklearn_conventions():
    s = random_start(X, 3, "full", random_state=0).as_kwargs()
    em = GaussianMixtureEM(3, tol=1e-10, max_iter=1000, **s).fit(X)
    assert em.converged_ and em.n_e_steps_ == em.n_iter_ + 1 and em.n_m_steps_ == em.n_iter_
    assert em.lower_bound_ == em.history_.log_likelihood[-2]  # the E-step before the last M-step
    short = GaussianMixtureEM(3, tol=0.0, max_iter=3, **s).fit(X)
    assert not short.converged_ and short.n_iter_ == 3
    np.testing.assert_array_equal(short.history_.means[0], s["means_init"])


def test_default_start_is_random_start_and_fit_predict():
    a = GaussianMixtureEM(3, random_state=5, max_iter=20).fit(X)
    b = GaussianMixtureEM(3, max_iter=20, **random_start(X, 3, random_state=5).as_kwargs()).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(GaussianMixtureEM(3, random_state=5, max_iter=20).fit_predict(X), a.predict(X))


def test_histories_are_frozen():
    em = GaussianMixtureEM(2, max_iter=5).fit(X)
    with pytest.raises(dataclasses.FrozenInstanceError):
        em.history_.log_likelihood = None


# ----------------------------------------------------------------------------- implicit EM
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_implicit_em_reaches_em_lower_bound(ct):
    start = random_start(X, 3, ct, random_state=0)
    em = GaussianMixtureEM(3, covariance_type=ct, tol=1e-10, max_iter=1000, **start.as_kwargs()).fit(X)
    ie = ImplicitEM(3, covariance_type=ct, **start.as_kwargs()).fit(X)  # defaults must converge
    assert ie.converged_
    assert np.all(np.diff(ie.history_.log_likelihood) >= -1e-12)  # monotone, like EM
    assert abs(em.score(X) - ie.score(X)) < 1e-3
    assert abs(ie.lower_bound_ - ie.score(X)) < 1e-10
    np.testing.assert_allclose(ie.history_.means[0], start.means_init, atol=1e-12)  # the same start
    np.testing.assert_allclose(ie.means_, em.means_, atol=2e-2)
    np.testing.assert_allclose(ie.weights_, em.weights_, atol=2e-2)
    assert ie.predict_proba(X).shape == (len(X), 3)


def test_implicit_em_adam_and_fixed_step_options_converge():
    start = random_start(X, 3, "full", random_state=1).as_kwargs()
    em = GaussianMixtureEM(3, covariance_type="full", tol=1e-10, max_iter=1000, **start).fit(X)
    for opt, lr in (("adam", 0.05), ("sgd", 0.3)):
        ie = ImplicitEM(3, covariance_type="full", optimizer=opt, lr=lr, **start).fit(X)
        assert ie.converged_ and abs(em.score(X) - ie.score(X)) < 1e-3, opt


def test_implicit_em_captures_gradients_equal_to_posteriors():
    start = random_start(X, 3, "full", random_state=1).as_kwargs()
    ie = ImplicitEM(3, covariance_type="full", max_iter=30, capture_at=(0, 10, 30), **start).fit(X)
    assert isinstance(ie.history_, GradientHistory) and set(ie.history_.captured) == {0, 10, 30}
    for snap in ie.history_.captured.values():
        assert isinstance(snap, Capture)
        resp, _ = e_step(X, snap.weights, snap.means, snap.covariances, "full")
        np.testing.assert_allclose(snap.grad_d, resp, atol=1e-12)


def test_implicit_em_counts_its_evaluations_and_records_them():
    s = random_start(X, 3, "full", random_state=1).as_kwargs()
    ie = ImplicitEM(3, max_iter=50, **s).fit(X)
    # one forward pass per iteration (t = 0..n_iter) plus at least one trial per step
    assert ie.n_grad_evals_ == ie.n_iter_
    assert ie.n_fun_evals_ >= (ie.n_iter_ + 1) + ie.n_iter_
    h = ie.history_
    assert h.n_fun_evals[-1] == ie.n_fun_evals_ and np.all(np.diff(h.n_fun_evals) >= 2)
    np.testing.assert_array_equal(h.log_likelihood, -h.loss)
    fixed = ImplicitEM(3, max_iter=50, optimizer="sgd", **s).fit(X)
    assert fixed.n_fun_evals_ == fixed.n_iter_ + 1 and fixed.n_grad_evals_ == fixed.n_iter_


def test_implicit_em_is_unit_free():
    """Standardized coordinates: data x 10 (and reg_covar x 100) gives the same path, means x 10."""
    s = random_start(X, 3, "full", random_state=2)
    a = ImplicitEM(3, max_iter=40, **s.as_kwargs()).fit(X)
    b = ImplicitEM(3, max_iter=40, reg_covar=1e-4, means_init=10 * s.means_init, weights_init=s.weights_init,
                   precisions_init=s.precisions_init / 100).fit(10 * X)
    np.testing.assert_allclose(b.means_, 10 * a.means_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.history_.log_likelihood, a.history_.log_likelihood - 2 * np.log(10), atol=1e-8)


def test_implicit_em_restores_the_thread_count():
    before = torch.get_num_threads()
    ImplicitEM(2, max_iter=3).fit(X)
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: GaussianMixtureEM(3).fit(np.zeros((2, 2))), "X"),
        (lambda: GaussianMixtureEM(0).fit(X), "n_components"),
        (lambda: GaussianMixtureEM(3, covariance_type="tied").fit(X), "covariance_type"),
        (lambda: GaussianMixtureEM(3, max_iter=0).fit(X), "max_iter"),
        (lambda: GaussianMixtureEM(3, reg_covar=-1.0).fit(X), "reg_covar"),
        (lambda: GaussianMixtureEM(3, random_state=-2).fit(X), "random_state"),
        (lambda: GaussianMixtureEM(3, means_init=np.zeros((2, 2))).fit(X), "means_init"),
        (lambda: GaussianMixtureEM(3, weights_init=np.array([0.2, 0.2, 0.2])).fit(X), "weights_init"),
        (lambda: GaussianMixtureEM(3, precisions_init=np.ones((3, 2))).fit(X), "precisions_init"),
        (lambda: GaussianMixtureEM(3).predict(X), "fit"),
        (lambda: GaussianMixtureEM(3).score(X), "fit"),
        (lambda: GaussianMixtureEM(3, max_iter=3).fit(X).score(np.zeros((2, 5))), "X"),
        (lambda: ImplicitEM(3, lr=-1.0).fit(X), "lr"),
        (lambda: ImplicitEM(3, optimizer="rmsprop").fit(X), "optimizer"),
        (lambda: ImplicitEM(3, tol=float("nan")).fit(X), "tol"),
        (lambda: ImplicitEM(3, capture_at=(-1,)).fit(X), "capture_at"),
        (lambda: ImplicitEM(3).fit(np.full((5, 2), np.inf)), "X"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
