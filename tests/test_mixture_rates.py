"""Tests of iemlib.mixture.rates: the EM map and its Jacobian (autograd against finite differences
and against the missing information of Dempster, Laird & Rubin 1977), the measured linear rate, and
the Xu & Jordan bridge (autograd gradients against closed forms and finite differences)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import iemlib.book.exercises.ch04 as ex4
from iemlib.data import make_gaussian_mixture
from iemlib.mixture import (
    COVARIANCE_TYPES,
    EMBridge,
    MeanBridge,
    MissingInformation,
    MixtureParams,
    batched_em,
    batched_starts,
    component_distances,
    covariances_from_precisions,
    e_step,
    em_jacobian,
    em_map,
    linear_rate,
    m_step,
    missing_information_fraction,
    preconditioned_em_step,
    preconditioned_mean_step,
    random_start,
)

X, LABELS, TRUE = make_gaussian_mixture(n_samples=300, random_state=0)


def _to_type(cov_full, ct):
    diag = np.diagonal(cov_full, axis1=1, axis2=2).copy()
    return {"full": cov_full, "diag": diag, "spherical": diag.mean(1)}[ct]


def _em_fixed_point(seed=0, sep=3.0):
    Xs, _, _ = make_gaussian_mixture(n_samples=300, separation=sep, random_state=seed)
    s = batched_starts(Xs, 3, 1, random_state=seed)
    return Xs, batched_em(Xs, s, tol=1e-15, max_iter=5000, reg_covar=0.0)


FIXED = _em_fixed_point()


# ----------------------------------------------------------------------------- EM's rate
def test_em_map_is_one_em_iteration():
    s = random_start(X, 3, "full", random_state=2)
    c = covariances_from_precisions(s.precisions_init, "full")
    w, m, cv = em_map(X, s.weights_init, s.means_init, c)
    r, _ = e_step(X, s.weights_init, s.means_init, c)
    w2, m2, c2 = m_step(X, r, "full", reg_covar=0.0)
    np.testing.assert_allclose(m, m2, atol=1e-12)
    np.testing.assert_allclose(cv, c2, atol=1e-12)
    np.testing.assert_allclose(w, w2, atol=1e-12)
    _, _, creg = em_map(X, s.weights_init, s.means_init, c, reg_covar=0.1)
    np.testing.assert_allclose(creg - cv, 0.1 * np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-12)


def test_em_map_fixes_em_fixed_point():
    Xs, em = FIXED
    w, m, c = em_map(Xs, em.weights[0], em.means[0], em.covariances[0])
    np.testing.assert_allclose(m, em.means[0], atol=1e-7)
    np.testing.assert_allclose(w, em.weights[0], atol=1e-8)


def _pack(w_, m_, c_, il):
    return np.concatenate([m_.ravel(), c_[:, il[0], il[1]].ravel(), w_[:-1]])


def _unpack(th, K, D, il):
    nc = D * (D + 1) // 2
    mm = th[: K * D].reshape(K, D)
    cc = np.zeros((K, D, D))
    cc[:, il[0], il[1]] = th[K * D : K * D + K * nc].reshape(K, nc)
    cc = cc + np.tril(cc, -1).transpose(0, 2, 1)
    ww = np.append(th[K * D + K * nc :], 1 - th[K * D + K * nc :].sum())
    return ww, mm, cc


def test_em_jacobian_matches_finite_differences_and_missing_information():
    Xs, em = FIXED
    w, m, c = em.weights[0], em.means[0], em.covariances[0]
    J = em_jacobian(Xs, w, m, c)
    K, D = m.shape
    assert J.shape == (K * D + K * D * (D + 1) // 2 + K - 1,) * 2
    il = np.tril_indices(D)
    th0 = _pack(w, m, c, il)
    h = 1e-6
    Jfd = np.empty_like(J)
    for k in range(len(th0)):
        e = np.zeros_like(th0)
        e[k] = h
        up = _pack(*em_map(Xs, *_unpack(th0 + e, K, D, il)), il)
        dn = _pack(*em_map(Xs, *_unpack(th0 - e, K, D, il)), il)
        Jfd[:, k] = (up - dn) / (2 * h)
    np.testing.assert_allclose(J, Jfd, atol=1e-6)
    # at a fixed point: the Jacobian's eigenvalues are the fractions of missing information, in [0, 1)
    ev = np.sort(np.linalg.eigvals(J).real)[::-1]
    mif = missing_information_fraction(Xs, w, m, c)
    assert isinstance(mif, MissingInformation)
    np.testing.assert_allclose(ev, mif.eigenvalues, atol=1e-7)
    assert 0.0 < mif.largest < 1.0 and ev.min() > -1e-8
    assert mif.observed.shape == mif.complete.shape == J.shape
    np.testing.assert_allclose(mif.observed, mif.observed.T, atol=1e-8 * np.abs(mif.observed).max())
    # and EM's observed rate is the largest eigenvalue
    lls = em.history[0]
    rho = linear_rate(np.nanmax(lls) - lls, lo=1e-12, hi=1e-6)
    assert abs(rho - mif.largest) < 0.02, (rho, mif.largest)


def test_linear_rate_of_a_geometric_sequence():
    g = 3.0 * 0.9 ** (2 * np.arange(200))
    assert linear_rate(g, lo=1e-12, hi=1.0) == pytest.approx(0.9, rel=1e-10)
    assert np.isnan(linear_rate(np.array([1.0, np.nan, 0.5])))
    steps = 2.0 * np.arange(200)  # two evaluations per step: the rate per evaluation is sqrt(0.9)
    assert linear_rate(g, lo=1e-12, hi=1.0, steps=steps) == pytest.approx(np.sqrt(0.9), rel=1e-10)


@settings(max_examples=20)
@given(rho=st.floats(0.05, 0.995), c=st.floats(1e-3, 10.0))
def test_linear_rate_recovers_any_rate(rho, c):
    g = c * rho ** (2 * np.arange(3000.0))
    g[::7] = np.nan  # missing steps are skipped
    got = linear_rate(g, lo=1e-11, hi=1e-5)
    if np.sum((g >= 1e-11) & (g <= 1e-5)) >= 3:
        assert got == pytest.approx(rho, rel=1e-8)
    else:
        assert np.isnan(got)


# ----------------------------------------------------------------------------- the Xu & Jordan bridge
@settings(max_examples=15)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_xu_jordan_mean_bridge(seed, ct):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3))
    means = X[rng.choice(len(X), 3, replace=False)]
    cov = _to_type(TRUE.covariances[rng.permutation(3)] * rng.uniform(0.5, 2.0), ct)
    out = preconditioned_mean_step(X, w, means, cov, ct)
    assert isinstance(out, MeanBridge) and out.max_abs_diff < 1e-12
    # the gradient itself is sum_i r_ij Sigma_j^{-1}(x_i - mu_j) (autograd vs closed form)
    resp, _ = e_step(X, w, means, cov, ct)
    for k in range(3):
        Ck = cov[k] if ct == "full" else np.diag(cov[k]) if ct == "diag" else cov[k] * np.eye(2)
        want = np.linalg.solve(Ck, (resp[:, k, None] * (X - means[k])).sum(0))
        np.testing.assert_allclose(out.gradient[k], want, rtol=1e-9, atol=1e-10)


def test_mean_gradient_matches_finite_differences():
    s = random_start(X, 3, "full", random_state=4)
    c = covariances_from_precisions(s.precisions_init, "full")
    out = preconditioned_mean_step(X, s.weights_init, s.means_init, c)

    def ll(m_):  # the summed log-likelihood (the objective)
        d = component_distances(X, s.weights_init, m_, c)
        return np.log(np.exp(-d).sum(1)).sum()

    h = 1e-6
    for k, j in [(0, 0), (1, 1), (2, 0)]:
        E = np.zeros_like(s.means_init)
        E[k, j] = h
        fd = (ll(s.means_init + E) - ll(s.means_init - E)) / (2 * h)
        assert fd == pytest.approx(out.gradient[k, j], rel=1e-6, abs=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_xu_jordan_bridge_for_weights_means_and_covariances(seed, ct):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3) * 3)
    means = X[rng.choice(len(X), 3, replace=False)]
    cov = _to_type(TRUE.covariances[rng.permutation(3)] * rng.uniform(0.5, 2.0), ct)
    out = preconditioned_em_step(X, w, means, cov, ct)
    assert isinstance(out, EMBridge) and isinstance(out.step, MixtureParams)
    e = out.max_abs_diff
    assert e.weights < 1e-12 and e.means < 1e-11 and e.covariances_q < 1e-10
    np.testing.assert_array_equal(out.step.means, out.step_q.means)
    # at the current means the covariance step lands on S_j(mu_t) = EM's Sigma + (mu_{t+1} - mu_t)(...)^T
    dm = out.em.means - means
    outer = np.einsum("kd,ke->kde", dm, dm)
    extra = {"full": outer, "diag": np.diagonal(outer, axis1=1, axis2=2), "spherical": np.trace(outer, axis1=1, axis2=2) / 2}[ct]
    np.testing.assert_allclose(out.step.covariances, out.em.covariances + extra, atol=1e-10)
    # the gradients are the textbook ones: dl/dw_j = N_j / w_j; dl/dSigma_j = (N_j/2) S^-1 (S_j - Sigma_j) S^-1
    r, _ = e_step(X, w, means, cov, ct)
    np.testing.assert_allclose(out.gradients.weights, r.sum(0) / w, rtol=1e-10)
    if ct == "full":
        N = r.sum(0)
        Sold = np.einsum("nk,knd,kne->kde", r, X[None] - means[:, None], X[None] - means[:, None]) / N[:, None, None]
        P = np.linalg.inv(cov)
        want = 0.5 * N[:, None, None] * np.einsum("kde,kef,kfg->kdg", P, Sold - cov, P)
        np.testing.assert_allclose(out.gradients.covariances, want, rtol=1e-9, atol=1e-10)


def test_bridge_gradients_match_finite_differences():
    s = random_start(X, 3, "full", random_state=3)
    c = covariances_from_precisions(s.precisions_init, "full")
    w, m = s.weights_init, s.means_init
    out = preconditioned_em_step(X, w, m, c, "full")

    def ll(w_, m_, c_):  # summed log-likelihood with raw (unnormalized) weights
        d = component_distances(X, w_ / w_.sum(), m_, c_) - np.log(w_.sum())
        return np.log(np.exp(-d).sum(1)).sum()

    h = 1e-6
    e = np.zeros(3)
    e[1] = h
    assert (ll(w + e, m, c) - ll(w - e, m, c)) / (2 * h) == pytest.approx(out.gradients.weights[1], rel=1e-6)
    E = np.zeros_like(c)
    E[0, 0, 0] = h
    assert (ll(w, m, c + E) - ll(w, m, c - E)) / (2 * h) == pytest.approx(out.gradients.covariances[0, 0, 0], rel=1e-6)


def test_ch04_bridge_exercise_is_the_library_step():
    p = ex4.bridge_problem()
    out = preconditioned_mean_step(p["X"], p["weights"], p["means"], p["variances"], "spherical")
    assert ex4.check_bridge_step(out.step)
    np.testing.assert_allclose(out.step, out.em_means, atol=1e-14)
    assert not ex4.check_bridge_step(p["means"])
    assert not ex4.check_bridge_step(...)


# ----------------------------------------------------------------------------- bad input
S = batched_starts(X, 3, 1, random_state=0)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: em_jacobian(X, S.weights[0], S.means[0][:, :1], S.covariances[0]), "means"),
        (lambda: em_jacobian(X, S.weights[0][:2], S.means[0], S.covariances[0]), "weights"),
        (lambda: em_map(X, S.weights[0], S.means[0], -S.covariances[0]), "covariances"),
        (lambda: em_map(X, S.weights[0], S.means[0], S.covariances[0], reg_covar=-1.0), "reg_covar"),
        (lambda: em_map(np.full((4, 2), np.nan), S.weights[0], S.means[0], S.covariances[0]), "X"),
        (lambda: missing_information_fraction(X, S.weights[0], S.means[0], np.ones((3, 2))), "covariances"),
        (lambda: linear_rate(np.zeros((2, 2))), "gaps"),
        (lambda: linear_rate(np.array([])), "gaps"),
        (lambda: linear_rate("abc"), "gaps"),
        (lambda: linear_rate(np.ones(5), lo=0.0), "lo"),
        (lambda: linear_rate(np.ones(5), steps=np.ones(4)), "steps"),
        (lambda: preconditioned_em_step(X, TRUE.weights, TRUE.means, TRUE.covariances, "tied"), "covariance_type"),
        (lambda: preconditioned_em_step(X, TRUE.weights, TRUE.means, TRUE.covariances, "diag"), "covariances"),
        (lambda: preconditioned_mean_step(np.zeros((0, 2)), TRUE.weights, TRUE.means, TRUE.covariances), "X"),
        (lambda: preconditioned_mean_step(X, TRUE.weights[:2], TRUE.means, TRUE.covariances), "weights"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
