"""Tests of iemlib.mixture.batched_lbfgs and the closed-form loss and gradient it optimizes:
the gradient against autograd and finite differences (a hypothesis property), the optimum
against EM's, the counters, and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from iemlib.data import make_gaussian_mixture
from iemlib.mixture import (
    MixtureParams,
    QuasiNewtonFit,
    batched_em,
    batched_lbfgs,
    batched_log_likelihood,
    batched_starts,
    compare_optima,
)
from iemlib.mixture._kernels import (
    covariance_from_raw,
    pack_raw,
    raw_loss_and_gradient,
    raw_to_tensors,
    to_unconstrained,
    torch_distances,
    unpack_raw,
)

X, _, _ = make_gaussian_mixture(n_samples=300, random_state=0)
S = batched_starts(X, 3, 3, random_state=0)


def _autograd_loss(Z, flat, K, reg):
    """The same loss written with torch and differentiated by autograd."""
    D = Z.shape[1]
    lg, mu, theta = (p.requires_grad_(True) for p in raw_to_tensors(flat, K, D))
    cov = covariance_from_raw(theta, reg)
    d = torch_distances(torch.tensor(Z), torch.log_softmax(lg, 0), mu, cov, "full")
    loss = -torch.logsumexp(-d, 1).mean()
    loss.backward()
    rows, cols = np.tril_indices(D)
    g = np.concatenate([lg.grad.numpy(), mu.grad.numpy().ravel(), theta.grad.numpy()[:, rows, cols].ravel()])
    return float(loss.detach()), g


def _random_flat(rng, K, D):
    return rng.normal(scale=0.5, size=K + K * D + K * D * (D + 1) // 2)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), D=st.integers(1, 3))
def test_closed_form_gradient_is_autograd_and_finite_differences(seed, K, D):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(40, D))
    flat = _random_flat(rng, K, D)
    f, g = raw_loss_and_gradient(Z, flat, K, 1e-6)
    f_ag, g_ag = _autograd_loss(Z, flat, K, 1e-6)
    assert abs(f - f_ag) < 1e-12 * max(1.0, abs(f))
    np.testing.assert_allclose(g, g_ag, rtol=1e-9, atol=1e-11)
    h = 1e-6
    fd = np.array([(raw_loss_and_gradient(Z, flat + h * e, K, 1e-6)[0]
                    - raw_loss_and_gradient(Z, flat - h * e, K, 1e-6)[0]) / (2 * h) for e in np.eye(flat.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_pack_and_unpack_are_the_parametrisation_of_implicit_em():
    raw = to_unconstrained(S.weights, S.means, S.covariances, X.mean(0), float(X.std()), 1e-6)
    flat = pack_raw([p[1] for p in raw])
    back = raw_to_tensors(flat, 3, 2)
    for a, b in zip(back, [p[1] for p in raw]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=0)
    lg, mu, C, _, _ = unpack_raw(flat, 3, 2)
    cov = C @ np.swapaxes(C, -1, -2) + 1e-6 * np.eye(2)
    np.testing.assert_allclose(cov * X.std() ** 2, S.covariances[1], rtol=1e-10)


def test_lbfgs_reaches_em_optimum_and_counts_its_evaluations():
    means_before = S.means.copy()
    em = batched_em(X, S, tol=1e-12, max_iter=5000)
    fit = batched_lbfgs(X, S)
    assert isinstance(fit, QuasiNewtonFit) and isinstance(fit, MixtureParams)
    assert fit.converged.all()
    assert compare_optima(em, fit, scale=float(X.std())).same.all()
    np.testing.assert_array_equal(fit.n_fun_evals, fit.n_grad_evals)
    assert (fit.n_fun_evals >= fit.n_iter).all() and (fit.n_iter > 0).all()
    np.testing.assert_allclose(fit.log_likelihood, batched_log_likelihood(X, fit), atol=1e-12)
    for b in range(3):  # the iterates' log-likelihood: the start first, never decreasing, the end last
        h = fit.history[b, : fit.n_iter[b] + 1]
        assert np.isfinite(h).all() and np.all(np.diff(h) > -1e-12)
        assert abs(h[0] - batched_log_likelihood(X, S[b])[0]) < 1e-10
        assert abs(h[-1] - fit.log_likelihood[b]) < 1e-10
    np.testing.assert_array_equal(S.means, means_before)  # the start is not modified


def test_a_non_finite_loss_is_infinite_with_zero_gradient():
    flat = _random_flat(np.random.default_rng(0), 2, 2)
    flat[2:6] = 1e200  # means far beyond float range in the Mahalanobis term
    f, g = raw_loss_and_gradient(np.zeros((5, 2)), flat, 2, 1e-6)
    assert f == np.inf and not g.any()


@pytest.mark.parametrize(
    "kwargs, name",
    [({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol"), ({"gtol": -1.0}, "gtol"),
     ({"history_size": 0}, "history_size"), ({"reg_covar": -1.0}, "reg_covar")],
)
def test_bad_input_raises_value_error_naming_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        batched_lbfgs(X, S, **kwargs)
    with pytest.raises(ValueError, match="X"):
        batched_lbfgs(np.full((5, 2), np.nan), S)
