"""Tests of iemlib.legacy.mixture_sweep: the batched fitters equal the one-start estimators, the
comparison of optima, EM's Jacobian against finite differences and against the missing
information (Dempster, Laird & Rubin 1977), and the full Xu & Jordan bridge of iemlib.legacy.mixture."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from iemlib.legacy.mixture import (
    COVARIANCE_TYPES,
    GaussianMixtureEM,
    ImplicitEM,
    covariances_from_precisions,
    e_step,
    log_likelihood,
    m_step,
    make_mixture_data,
    preconditioned_em_step,
    random_start,
)
from iemlib.legacy.mixture_sweep import (
    batched_distances,
    batched_em,
    batched_gradient_descent,
    batched_log_likelihood,
    batched_starts,
    compare_optima,
    em_jacobian,
    em_map,
    linear_rate,
    match_components,
    missing_information_fraction,
    online_em,
    minibatch_gradient_descent,
)
from iemlib.legacy.mixture import component_distances

X, LABELS, TRUE = make_mixture_data(n_samples=300, random_state=0)
S = batched_starts(X, 3, 3, random_state=0)


def _one(d, b):
    return {k: v[b : b + 1] for k, v in d.items()}


def test_starts_are_random_start_stacked():
    for b in range(3):
        s = random_start(X, 3, "full", random_state=b)
        np.testing.assert_array_equal(S["means"][b], s["means_init"])
        np.testing.assert_allclose(S["covariances"][b], np.linalg.inv(s["precisions_init"]), rtol=1e-12)


def test_batched_distances_and_log_likelihood_match_the_one_start_functions():
    d = batched_distances(X, S["weights"], S["means"], S["covariances"])
    ll = batched_log_likelihood(X, S["weights"], S["means"], S["covariances"])
    for b in range(3):
        np.testing.assert_allclose(d[b], component_distances(X, S["weights"][b], S["means"][b], S["covariances"][b]), rtol=1e-12)
        assert abs(ll[b] - log_likelihood(X, S["weights"][b], S["means"][b], S["covariances"][b])) < 1e-12


def test_batched_em_is_gaussian_mixture_em_for_every_start():
    out = batched_em(X, S["weights"], S["means"], S["covariances"], tol=1e-10, max_iter=1000)
    for b in range(3):
        s = random_start(X, 3, "full", random_state=b)
        em = GaussianMixtureEM(3, tol=1e-10, max_iter=1000, **s).fit(X)
        assert out["n_iter"][b] == em.n_iter_ and out["n_e_steps"][b] == em.n_e_steps_
        np.testing.assert_allclose(out["means"][b], em.means_, atol=1e-10)
        np.testing.assert_allclose(out["covariances"][b], em.covariances_, atol=1e-10)
        np.testing.assert_allclose(out["weights"][b], em.weights_, atol=1e-12)
        h = out["history"][b, : em.n_iter_ + 1]
        np.testing.assert_allclose(h, em.history_["log_likelihood"], atol=1e-11)
        assert np.isnan(out["history"][b, em.n_iter_ + 1 :]).all()
    # the inputs are not modified
    np.testing.assert_array_equal(S["means"][0], random_start(X, 3, "full", random_state=0)["means_init"])


def test_batched_gradient_descent_is_implicit_em_iterate_for_iterate():
    out = batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], max_iter=400)
    for b in range(3):
        s = random_start(X, 3, "full", random_state=b)
        ie = ImplicitEM(3, max_iter=400, **s).fit(X)
        assert out["n_iter"][b] == ie.n_iter_
        assert out["n_fun_evals"][b] == ie.n_fun_evals_ and out["n_grad_evals"][b] == ie.n_grad_evals_
        h = out["history"][b, : ie.n_iter_ + 1]
        np.testing.assert_allclose(h, ie.history_["log_likelihood"], atol=1e-10)
        np.testing.assert_array_equal(out["fun_evals"][b, : ie.n_iter_ + 1], ie.history_["n_fun_evals"])
        np.testing.assert_allclose(out["means"][b], ie.means_, atol=1e-8)
        assert abs(out["log_likelihood"][b] - ie.score(X)) < 1e-10
    assert out["monotone"].all()


def test_implicit_em_counts_its_evaluations():
    s = random_start(X, 3, "full", random_state=1)
    ie = ImplicitEM(3, max_iter=50, **s).fit(X)
    # one forward pass per iteration (t = 0..n_iter) plus at least one trial per step
    assert ie.n_grad_evals_ == ie.n_iter_
    assert ie.n_fun_evals_ >= (ie.n_iter_ + 1) + ie.n_iter_
    assert ie.history_["n_fun_evals"][-1] == ie.n_fun_evals_
    fixed = ImplicitEM(3, max_iter=50, optimizer="sgd", **s).fit(X)
    assert fixed.n_fun_evals_ == fixed.n_iter_ + 1 and fixed.n_grad_evals_ == fixed.n_iter_


def test_ablation_switches_change_what_they_say():
    fixed = batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], backtracking=False, max_iter=60)
    assert (fixed["n_fun_evals"] == fixed["n_iter"] + 1).all()  # no trial evaluations
    big = batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], backtracking=False, lr=50.0,
                                   max_iter=60, best_so_far=False)
    best = batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], backtracking=False, lr=50.0,
                                    max_iter=60, best_so_far=True)
    # with an oversized fixed step the last iterate is no better than the best one seen
    ok = np.isfinite(big["log_likelihood"])
    assert np.all(best["log_likelihood"][ok] >= big["log_likelihood"][ok] - 1e-12)
    raw = batched_gradient_descent(X * 10.0, S["weights"], S["means"] * 10.0, S["covariances"] * 100.0,
                                   standardize=False, max_iter=30)
    std = batched_gradient_descent(X * 10.0, S["weights"], S["means"] * 10.0, S["covariances"] * 100.0, max_iter=30)
    assert not np.allclose(raw["history"], std["history"])


def test_match_and_compare():
    a = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    perm = np.array([2, 0, 1])
    b = np.empty_like(a)
    b[perm] = a  # b[perm[k]] = a[k]
    np.testing.assert_array_equal(match_components(a, b), perm)
    fa = {"means": a[None], "log_likelihood": np.array([-1.0])}
    fb = {"means": (b + 0.01)[None], "log_likelihood": np.array([-1.0 - 1e-7])}
    out = compare_optima(fa, fb, scale=1.0)
    assert out["same"][0] and out["gap"][0] == pytest.approx(1e-7) and out["mean_diff"][0] == pytest.approx(np.sqrt(2) * 0.01)
    fc = {"means": (b + 0.5)[None], "log_likelihood": np.array([-1.0])}
    assert not compare_optima(fa, fc, scale=1.0)["same"][0]
    fd = {"means": b[None], "log_likelihood": np.array([-1.01])}
    assert not compare_optima(fa, fd, scale=1.0)["same"][0]


def _em_fixed_point(seed=0, sep=3.0):
    Xs, _, _ = make_mixture_data(n_samples=300, separation=sep, random_state=seed)
    s = batched_starts(Xs, 3, 1, random_state=seed)
    em = batched_em(Xs, s["weights"], s["means"], s["covariances"], tol=1e-15, max_iter=5000, reg_covar=0.0)
    return Xs, em


def test_em_map_is_one_em_iteration():
    s = random_start(X, 3, "full", random_state=2)
    c = covariances_from_precisions(s["precisions_init"], "full")
    w, m, cv = em_map(X, s["weights_init"], s["means_init"], c)
    r, _ = e_step(X, s["weights_init"], s["means_init"], c)
    w2, m2, c2 = m_step(X, r, "full", reg_covar=0.0)
    np.testing.assert_allclose(m, m2, atol=1e-12)
    np.testing.assert_allclose(cv, c2, atol=1e-12)
    np.testing.assert_allclose(w, w2, atol=1e-12)


def test_em_jacobian_matches_finite_differences_and_missing_information():
    Xs, em = _em_fixed_point()
    w, m, c = em["weights"][0], em["means"][0], em["covariances"][0]
    J = em_jacobian(Xs, w, m, c)
    K, D = m.shape
    il = np.tril_indices(D)

    def pack(w_, m_, c_):
        return np.concatenate([m_.ravel(), c_[:, il[0], il[1]].ravel(), w_[:-1]])

    def unpack(th):
        mm = th[: K * D].reshape(K, D)
        low = th[K * D : K * D + K * 3].reshape(K, 3)
        cc = np.zeros((K, D, D))
        cc[:, il[0], il[1]] = low
        cc = cc + np.tril(cc, -1).transpose(0, 2, 1)
        ww = np.append(th[K * D + K * 3 :], 1 - th[K * D + K * 3 :].sum())
        return ww, mm, cc

    th0 = pack(w, m, c)
    h = 1e-6
    Jfd = np.empty_like(J)
    for k in range(len(th0)):
        e = np.zeros_like(th0)
        e[k] = h
        up, dn = pack(*em_map(Xs, *unpack(th0 + e))), pack(*em_map(Xs, *unpack(th0 - e)))
        Jfd[:, k] = (up - dn) / (2 * h)
    np.testing.assert_allclose(J, Jfd, atol=1e-6)
    # at a fixed point: the Jacobian's eigenvalues are the fractions of missing information, in [0, 1)
    ev = np.sort(np.linalg.eigvals(J).real)[::-1]
    mif = missing_information_fraction(Xs, w, m, c)
    np.testing.assert_allclose(ev, mif["eigenvalues"], atol=1e-7)
    assert 0.0 < mif["largest"] < 1.0 and ev.min() > -1e-8
    # and EM's observed rate is the largest eigenvalue
    lls = em["history"][0]
    rho = linear_rate(np.nanmax(lls) - lls, lo=1e-12, hi=1e-6)
    assert abs(rho - mif["largest"]) < 0.02, (rho, mif["largest"])


def test_linear_rate_of_a_geometric_sequence():
    g = 3.0 * 0.9 ** (2 * np.arange(200))
    assert linear_rate(g, lo=1e-12, hi=1.0) == pytest.approx(0.9, rel=1e-10)
    assert np.isnan(linear_rate(np.array([1.0, np.nan, 0.5])))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), ct=st.sampled_from(COVARIANCE_TYPES))
def test_xu_jordan_bridge_for_weights_means_and_covariances(seed, ct):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3) * 3)
    means = X[rng.choice(len(X), 3, replace=False)]
    full = TRUE["covariances"][rng.permutation(3)] * rng.uniform(0.5, 2.0)
    cov = {"full": full, "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
           "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1)}[ct]
    out = preconditioned_em_step(X, w, means, cov, ct)
    diff = out["max_abs_diff"]
    assert diff["weights"] < 1e-12 and diff["means"] < 1e-11 and diff["covariances_q"] < 1e-10
    # at the current means the covariance step lands on S_j(mu_t) = EM's Sigma + (mu_{t+1} - mu_t)(...)^T
    dm = out["em"][1] - means
    outer = np.einsum("kd,ke->kde", dm, dm)
    extra = {"full": outer, "diag": np.diagonal(outer, axis1=1, axis2=2), "spherical": np.trace(outer, axis1=1, axis2=2) / 2}[ct]
    np.testing.assert_allclose(out["step"][2], out["em"][2] + extra, atol=1e-10)
    # the gradients are the textbook ones: dl/dw_j = N_j / w_j; dl/dSigma_j = (N_j/2) S^-1 (S_j - Sigma_j) S^-1
    r, _ = e_step(X, w, means, cov, ct)
    np.testing.assert_allclose(out["gradients"]["weights"], r.sum(0) / w, rtol=1e-10)
    if ct == "full":
        N = r.sum(0)
        Sold = np.einsum("nk,knd,kne->kde", r, X[None] - means[:, None], X[None] - means[:, None]) / N[:, None, None]
        P = np.linalg.inv(cov)
        want = 0.5 * N[:, None, None] * np.einsum("kde,kef,kfg->kdg", P, Sold - cov, P)
        np.testing.assert_allclose(out["gradients"]["covariances"], want, rtol=1e-9, atol=1e-10)


def test_bridge_gradients_match_finite_differences():
    s = random_start(X, 3, "full", random_state=3)
    c = covariances_from_precisions(s["precisions_init"], "full")
    w, m = s["weights_init"], s["means_init"]
    out = preconditioned_em_step(X, w, m, c, "full")

    def ll(w_, m_, c_):  # summed log-likelihood with raw (unnormalized) weights
        d = component_distances(X, w_ / w_.sum(), m_, c_) - np.log(w_.sum())
        return -(-np.log(np.exp(-d).sum(1))).sum()

    h = 1e-6
    e = np.zeros(3)
    e[1] = h
    assert (ll(w + e, m, c) - ll(w - e, m, c)) / (2 * h) == pytest.approx(out["gradients"]["weights"][1], rel=1e-6)
    E = np.zeros_like(c)
    E[0, 0, 0] = h
    assert (ll(w, m, c + E) - ll(w, m, c - E)) / (2 * h) == pytest.approx(out["gradients"]["covariances"][0, 0, 0], rel=1e-6)


# ----------------------------------------------------------------------------- stochastic
def test_online_em_and_minibatch_gd_improve_held_out_likelihood():
    Xtr, _, _ = make_mixture_data(n_samples=2000, random_state=5)
    Xte, _, _ = make_mixture_data(n_samples=500, random_state=5)
    start = batched_starts(Xtr, 3, 2, random_state=0)
    oem = online_em(Xtr, Xte, start["weights"], start["means"], start["covariances"], batch_size=50, n_epochs=2)
    mgd = minibatch_gradient_descent(Xtr, Xte, start["weights"], start["means"], start["covariances"], batch_size=50, n_epochs=2)
    for out in (oem, mgd):
        h = out["test_log_likelihood"]
        assert h.shape[0] == 2 and np.all(h[:, -1] > h[:, 0])
        assert np.isfinite(h).all()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: batched_em(X, S["weights"][:, :2], S["means"], S["covariances"]), "weights"),
        (lambda: batched_em(X, S["weights"], S["means"][..., :1], S["covariances"]), "means"),
        (lambda: batched_em(X, S["weights"], S["means"], -S["covariances"]), "covariances"),
        (lambda: batched_em(np.full((5, 2), np.nan), S["weights"], S["means"], S["covariances"]), "X"),
        (lambda: batched_em(X, S["weights"], S["means"], S["covariances"], max_iter=0), "max_iter"),
        (lambda: batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], lr=0.0), "lr"),
        (lambda: batched_gradient_descent(X, S["weights"], S["means"], S["covariances"], tol=-1.0), "tol"),
        (lambda: batched_starts(X, 3, 0), "n_starts"),
        (lambda: match_components(np.zeros((3, 2)), np.zeros((2, 2))), "means_b"),
        (lambda: compare_optima({"means": S["means"], "log_likelihood": np.zeros(3)},
                                {"means": S["means"], "log_likelihood": np.zeros(3)}, scale=0.0), "scale"),
        (lambda: em_jacobian(X, S["weights"][0], S["means"][0][:, :1], S["covariances"][0]), "means"),
        (lambda: linear_rate(np.zeros((2, 2))), "gaps"),
        (lambda: preconditioned_em_step(X, TRUE["weights"], TRUE["means"], TRUE["covariances"], "tied"), "covariance_type"),
        (lambda: online_em(X, X, S["weights"], S["means"], S["covariances"], batch_size=0), "batch_size"),
        (lambda: online_em(X, X, S["weights"], S["means"], S["covariances"], step_exponent=0.4), "step_exponent"),
        (lambda: minibatch_gradient_descent(X, X[:, :1], S["weights"], S["means"], S["covariances"]), "X_test"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_preconditioned_ascent_first_step_is_the_bridge_step_and_reaches_em_fixed_point():
    from iemlib.legacy.mixture_sweep import batched_preconditioned_ascent

    one = batched_preconditioned_ascent(X, S["weights"], S["means"], S["covariances"], max_iter=1)
    for b in range(3):
        out = preconditioned_em_step(X, S["weights"][b], S["means"][b], S["covariances"][b], "full")
        np.testing.assert_allclose(one["weights"][b], out["step"][0], atol=1e-12)
        np.testing.assert_allclose(one["means"][b], out["step"][1], atol=1e-10)
        np.testing.assert_allclose(one["covariances"][b], out["step"][2], atol=1e-9)
    full = batched_preconditioned_ascent(X, S["weights"], S["means"], S["covariances"], max_iter=2000, tol=1e-12)
    for b in range(3):  # its end is a fixed point of EM
        w2, m2, c2 = em_map(X, full["weights"][b], full["means"][b], full["covariances"][b])
        np.testing.assert_allclose(m2, full["means"][b], atol=1e-4)
