"""Tests of iemlib.mixture.batched: the batched fitters equal the one-start estimators, the
ablation switches, the stochastic fitters, the comparison of optima, and the result types."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from iemlib.data import make_gaussian_mixture
from iemlib.mixture import (
    AscentFit,
    EMFit,
    GaussianMixtureEM,
    GradientDescentFit,
    ImplicitEM,
    MinibatchStream,
    MixtureParams,
    OptimaComparison,
    StreamFit,
    batched_distances,
    batched_em,
    batched_gradient_descent,
    batched_log_likelihood,
    batched_preconditioned_ascent,
    batched_starts,
    compare_optima,
    component_distances,
    em_map,
    log_likelihood,
    match_components,
    minibatch_gradient_descent,
    online_em,
    preconditioned_em_step,
    random_start,
)

X, LABELS, TRUE = make_gaussian_mixture(n_samples=300, random_state=0)
S = batched_starts(X, 3, 3, random_state=0)


def test_batched_distances_and_log_likelihood_match_the_one_start_functions():
    d = batched_distances(X, S)
    ll = batched_log_likelihood(X, S)
    assert d.shape == (3, 300, 3) and ll.shape == (3,)
    for b in range(3):
        np.testing.assert_allclose(d[b], component_distances(X, S.weights[b], S.means[b], S.covariances[b]), rtol=1e-12)
        assert abs(ll[b] - log_likelihood(X, S.weights[b], S.means[b], S.covariances[b])) < 1e-12


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), B=st.integers(1, 4), K=st.integers(1, 4))
def test_batched_distances_per_start_property(seed, B, K):
    Xh, _, _ = make_gaussian_mixture(n_samples=40, n_components=2, random_state=seed)
    Sh = batched_starts(Xh, K, B, random_state=seed)
    d = batched_distances(Xh, Sh)
    b = seed % B
    np.testing.assert_allclose(d[b], component_distances(Xh, Sh.weights[b], Sh.means[b], Sh.covariances[b]), rtol=1e-11)
    np.testing.assert_array_equal(batched_distances(Xh, Sh[b])[0], d[b])


def test_batched_em_is_gaussian_mixture_em_for_every_start():
    means_before = S.means.copy()
    out = batched_em(X, S, tol=1e-10, max_iter=1000)
    assert isinstance(out, EMFit) and isinstance(out, MixtureParams)
    for b in range(3):
        s = random_start(X, 3, "full", random_state=b).as_kwargs()
        em = GaussianMixtureEM(3, tol=1e-10, max_iter=1000, **s).fit(X)
        assert out.n_iter[b] == em.n_iter_ and out.n_e_steps[b] == em.n_e_steps_ and out.converged[b]
        np.testing.assert_allclose(out.means[b], em.means_, atol=1e-10)
        np.testing.assert_allclose(out.covariances[b], em.covariances_, atol=1e-10)
        np.testing.assert_allclose(out.weights[b], em.weights_, atol=1e-12)
        np.testing.assert_allclose(out.history[b, : em.n_iter_ + 1], em.history_.log_likelihood, atol=1e-11)
        assert np.isnan(out.history[b, em.n_iter_ + 1 :]).all()
        assert out.log_likelihood[b] == out.history[b, em.n_iter_]
    np.testing.assert_array_equal(S.means, means_before)  # the start is not modified


def test_batched_gradient_descent_is_implicit_em_iterate_for_iterate():
    out = batched_gradient_descent(X, S, max_iter=200)
    assert isinstance(out, GradientDescentFit)
    for b in range(3):
        s = random_start(X, 3, "full", random_state=b).as_kwargs()
        ie = ImplicitEM(3, max_iter=200, **s).fit(X)
        assert out.n_iter[b] == ie.n_iter_
        assert out.n_fun_evals[b] == ie.n_fun_evals_ and out.n_grad_evals[b] == ie.n_grad_evals_
        np.testing.assert_allclose(out.history[b, : ie.n_iter_ + 1], ie.history_.log_likelihood, atol=1e-10)
        np.testing.assert_array_equal(out.fun_evals[b, : ie.n_iter_ + 1], ie.history_.n_fun_evals)
        np.testing.assert_allclose(out.means[b], ie.means_, atol=1e-8)
        assert abs(out.log_likelihood[b] - ie.score(X)) < 1e-10
    assert out.monotone.all() and not out.diverged.any()


def test_ablation_switches_change_what_they_say():
    fixed = batched_gradient_descent(X, S, backtracking=False, max_iter=60)
    assert (fixed.n_fun_evals == fixed.n_iter + 1).all()  # no trial evaluations
    big = batched_gradient_descent(X, S, backtracking=False, lr=50.0, max_iter=60, best_so_far=False)
    best = batched_gradient_descent(X, S, backtracking=False, lr=50.0, max_iter=60, best_so_far=True)
    # with an oversized fixed step the last iterate is no better than the best one seen
    ok = np.isfinite(big.log_likelihood)
    assert np.all(best.log_likelihood[ok] >= big.log_likelihood[ok] - 1e-12)
    np.testing.assert_array_equal(big.last_log_likelihood, best.last_log_likelihood)
    S10 = MixtureParams(S.weights, S.means * 10.0, S.covariances * 100.0)
    raw = batched_gradient_descent(X * 10.0, S10, standardize=False, max_iter=30)
    std = batched_gradient_descent(X * 10.0, S10, max_iter=30)
    assert not np.allclose(raw.history, std.history)


def test_a_fit_is_a_start_polishing_does_not_move_a_converged_em():
    em = batched_em(X, S, tol=1e-12, max_iter=3000)
    again = batched_em(X, em, tol=1e-12, max_iter=3000)
    np.testing.assert_allclose(again.means, em.means, atol=1e-4)
    assert (again.n_iter < em.n_iter).all()
    one = batched_em(X, em[1], tol=1e-12, max_iter=3000)
    np.testing.assert_array_equal(one.means[0], again.means[1])


def test_exactly_symmetric_start_stays_symmetric():
    C0 = np.cov(X, rowvar=False, bias=True) + 1e-6 * np.eye(2)
    sym = MixtureParams(np.full((1, 3), 1 / 3), np.tile(X.mean(0), (1, 3, 1)), np.tile(C0, (1, 3, 1, 1)))
    one = batched_em(X, MixtureParams(np.ones((1, 1)), X.mean(0)[None, None], C0[None, None]))
    for f in (batched_em(X, sym), batched_gradient_descent(X, sym)):
        assert np.abs(f.means[0] - f.means[0].mean(0)).max() < 1e-12
        assert f.log_likelihood[0] == pytest.approx(one.log_likelihood[0], abs=1e-10)


def test_preconditioned_ascent_first_step_is_the_bridge_step_and_reaches_em_fixed_point():
    one = batched_preconditioned_ascent(X, S, max_iter=1)
    assert isinstance(one, AscentFit) and (one.n_fun_evals == 2).all() and (one.n_grad_evals == 1).all()
    for b in range(3):
        out = preconditioned_em_step(X, S.weights[b], S.means[b], S.covariances[b], "full")
        np.testing.assert_allclose(one.weights[b], out.step.weights, atol=1e-12)
        np.testing.assert_allclose(one.means[b], out.step.means, atol=1e-10)
        np.testing.assert_allclose(one.covariances[b], out.step.covariances, atol=1e-9)
    full = batched_preconditioned_ascent(X, S, max_iter=2000, tol=1e-12)
    for b in range(3):  # its end is a fixed point of EM
        w2, m2, c2 = em_map(X, full.weights[b], full.means[b], full.covariances[b])
        np.testing.assert_allclose(m2, full.means[b], atol=1e-4)


# ----------------------------------------------------------------------------- comparing optima
def test_match_and_compare():
    a = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    perm = np.array([2, 0, 1])
    b = np.empty_like(a)
    b[perm] = a  # b[perm[k]] = a[k]
    np.testing.assert_array_equal(match_components(a, b), perm)
    fa = dataclasses.make_dataclass("Fit", ["means", "log_likelihood"])(a[None], np.array([-1.0]))  # any such fit
    fb = dataclasses.replace(fa, means=(b + 0.01)[None], log_likelihood=np.array([-1.0 - 1e-7]))
    out = compare_optima(fa, fb, scale=1.0)
    assert isinstance(out, OptimaComparison)
    assert out.same[0] and out.gap[0] == pytest.approx(1e-7) and out.mean_diff[0] == pytest.approx(np.sqrt(2) * 0.01)
    np.testing.assert_array_equal(out.perm[0], perm)
    assert not compare_optima(fa, dataclasses.replace(fa, means=(b + 0.5)[None]), scale=1.0).same[0]
    assert not compare_optima(fa, dataclasses.replace(fa, means=b[None], log_likelihood=np.array([-1.01])), scale=1.0).same[0]
    assert compare_optima(fa, dataclasses.replace(fa, means=(b + 0.5)[None]), scale=20.0).same[0]  # in units of scale


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 5))
def test_match_components_recovers_any_relabelling(seed, K):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, 3)) * 5
    perm = rng.permutation(K)
    b = np.empty_like(a)
    b[perm] = a + 1e-3 * rng.standard_normal((K, 3))
    np.testing.assert_array_equal(match_components(a, b), perm)


def test_batched_fits_compare_as_the_chapter_does():
    em = batched_em(X, S, tol=1e-10, max_iter=2000)
    gd = batched_gradient_descent(X, S)
    c = compare_optima(em, gd, scale=float(X.std()))
    assert c.same.all() and np.abs(c.gap).max() < 1e-5
    both = dataclasses.replace(c, same=c.same & em.converged & gd.converged)
    assert both.same.all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.same = None


# ----------------------------------------------------------------------------- stochastic
def test_online_em_and_minibatch_gd_improve_held_out_likelihood():
    Xtr, _, _ = make_gaussian_mixture(n_samples=2000, random_state=5)
    Xte, _, _ = make_gaussian_mixture(n_samples=500, random_state=5)
    start = batched_starts(Xtr, 3, 2, random_state=0)
    stream = MinibatchStream(batch_size=50, n_epochs=2)
    oem = online_em(Xtr, Xte, start, stream=stream)
    mgd = minibatch_gradient_descent(Xtr, Xte, start, stream=stream)
    adam = minibatch_gradient_descent(Xtr, Xte, start, stream=stream, lr=np.array([0.02, 0.05]), optimizer="adam")
    for out in (oem, mgd, adam):
        assert isinstance(out, StreamFit)
        h = out.test_log_likelihood
        assert h.shape == (2, 21) and np.all(h[:, -1] > h[:, 0])
        assert np.isfinite(h).all()
        np.testing.assert_array_equal(out.n_seen, np.r_[0, np.round(np.arange(1, 21) * 80 / 20) * 50])
        assert np.abs(out.weights.sum(1) - 1).max() < 1e-12


def test_online_em_start_is_the_start_and_stream_is_shared():
    Xtr, _, _ = make_gaussian_mixture(n_samples=600, random_state=2)
    start = batched_starts(Xtr, 3, 2, random_state=1)
    out = online_em(Xtr, Xtr, start, stream=MinibatchStream(batch_size=100, n_evals=3))
    np.testing.assert_allclose(out.test_log_likelihood[:, 0], batched_log_likelihood(Xtr, start), atol=1e-12)
    s = MinibatchStream(batch_size=100, n_epochs=2, random_state=4)
    a, b = s.batches(600), s.batches(600)
    assert len(a) == 12 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a[:6]).tolist()) == list(range(600))  # one epoch is a permutation
    assert s.eval_points(12) == set(np.round(np.arange(1, 21) * 12 / 20).astype(int).tolist())


# ----------------------------------------------------------------------------- bad input
def _with(**kw):
    return MixtureParams(kw.get("weights", S.weights), kw.get("means", S.means), kw.get("covariances", S.covariances))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: batched_em(X, _with(weights=S.weights[:, :2])), "weights"),
        (lambda: batched_em(X, _with(weights=S.weights * 2)), "weights"),
        (lambda: batched_em(X, _with(means=S.means[..., :1])), "means"),
        (lambda: batched_em(X, _with(covariances=-S.covariances)), "covariances"),
        (lambda: batched_em(X, _with(covariances=S.covariances[:, :, :1])), "covariances"),
        (lambda: batched_em(X, {"weights": S.weights, "means": S.means, "covariances": S.covariances}), "start"),
        (lambda: batched_em(np.full((5, 2), np.nan), S), "X"),
        (lambda: batched_em(X[:2], S), "X"),
        (lambda: batched_em(X, S, max_iter=0), "max_iter"),
        (lambda: batched_em(X, S, reg_covar=-1.0), "reg_covar"),
        (lambda: batched_gradient_descent(X, S, lr=0.0), "lr"),
        (lambda: batched_gradient_descent(X, S, tol=-1.0), "tol"),
        (lambda: batched_preconditioned_ascent(X, S, max_iter=-3), "max_iter"),
        (lambda: batched_distances(X[:, :1], S), "means"),
        (lambda: match_components(np.zeros((3, 2)), np.zeros((2, 2))), "means_b"),
        (lambda: match_components(np.zeros((8, 2)), np.zeros((8, 2))), "means_a"),
        (lambda: compare_optima(batched_em(X, S, max_iter=2), batched_em(X, S, max_iter=2), scale=0.0), "scale"),
        (lambda: compare_optima(S, S, scale=1.0), "fit_a"),
        (lambda: MinibatchStream(batch_size=0), "batch_size"),
        (lambda: MinibatchStream(n_epochs=0), "n_epochs"),
        (lambda: MinibatchStream(n_evals=0), "n_evals"),
        (lambda: MinibatchStream(random_state=-1), "random_state"),
        (lambda: online_em(X, X, S, stream=MinibatchStream(batch_size=1000)), "batch_size"),
        (lambda: online_em(X, X, S, stream={"batch_size": 10}), "stream"),
        (lambda: online_em(X, X, S, step_exponent=0.4), "step_exponent"),
        (lambda: online_em(X, X, S, step_exponent=np.array([0.6, 0.7])), "step_exponent"),
        (lambda: minibatch_gradient_descent(X, X[:, :1], S), "X_test"),
        (lambda: minibatch_gradient_descent(X, X, S, optimizer="rmsprop"), "optimizer"),
        (lambda: minibatch_gradient_descent(X, X, S, lr=-0.1), "lr"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
