"""Tests of iemlib.legacy.open_set: scores, metrics, bootstrap intervals and out-of-distribution inputs.

Values are checked against hand-computable cases and against scikit-learn (roc_auc_score, the
discriminant-analysis Gaussians); bad input raises ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from torch import nn

from iemlib.legacy import open_set as S
from iemlib.legacy.open_directions import reject_responsibility

finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------
def test_max_softmax_and_energy_by_hand():
    z = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert np.allclose(S.max_softmax_score(z), [0.5, 0.75])
    assert np.allclose(S.energy_score(z), [math.log(2.0), math.log(4.0)])
    # temperature T: T log sum exp(z / T); T = 2 on (2 log 3, 0) gives 2 log 4
    assert np.allclose(S.energy_score(np.array([[2 * math.log(3.0), 0.0]]), temperature=2.0), [2 * math.log(4.0)])


def test_energy_is_the_books_objective_and_matches_torch():
    d = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    L = torch.logsumexp(-d, 1).numpy()
    assert np.allclose(S.energy_score(-d), L, atol=1e-12)
    assert np.allclose(S.max_softmax_score(-d), torch.softmax(-d, 1).max(1).values.numpy(), atol=1e-12)


def test_large_logits_do_not_overflow():
    z = np.array([[1000.0, 999.0, -1000.0]])
    assert np.isfinite(S.energy_score(z)).all()
    assert np.allclose(S.energy_score(z), 1000.0 + math.log(1 + math.exp(-1.0)))


def test_temperature_softmax_limit_ranks_by_gap_to_mean():
    # max softmax(z / T) ~ 1/K + (z_max - mean z) / (K T) for large T
    z = np.array([[3.0, 0.0, 0.0], [2.0, 1.5, 1.5], [1.0, -2.0, 0.0]])
    T = 1e4
    approx = 1 / 3 + (z.max(1) - z.mean(1)) / (3 * T)
    assert np.allclose(S.temperature_softmax_score(z, T), approx, atol=1e-8)
    assert np.allclose(S.temperature_softmax_score(z, 1.0), S.max_softmax_score(z))


def test_odin_without_perturbation_is_temperature_scaling_and_perturbation_raises_confidence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    with torch.no_grad():
        base = S.temperature_softmax_score(model(x), 10.0)
    assert np.allclose(S.odin_score(model, x, 10.0, 0.0), base)
    pert = S.odin_score(model, x, 10.0, 1e-3)
    assert np.all(pert >= base - 1e-12)  # a small step against the loss gradient raises the confidence
    assert np.any(pert > base)
    # the model is not modified and gets no .grad
    assert all(p.grad is None for p in model.parameters())


def test_reject_log_odds_is_logit_of_one_minus_r0():
    d = np.random.default_rng(0).normal(size=(30, 4)) * 2
    tau = 1.5
    r0 = reject_responsibility(d, tau)
    assert np.allclose(S.reject_log_odds(d, tau), np.log((1 - r0) / r0), atol=1e-9)
    # no saturation far away, where 1 - r0 rounds to 0
    far = np.full((1, 4), 200.0)
    assert float(1 - reject_responsibility(far, tau)[0]) == 0.0
    assert np.allclose(S.reject_log_odds(far, tau), tau - 200.0 + math.log(4))


# ------------------------------------------------------------------------------------------
# Class Gaussians
# ------------------------------------------------------------------------------------------
def _two_class_data():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(3, 0.5, (100, 2))])
    y = np.array([0] * 200 + [1] * 100)
    return X, y


def test_class_gaussians_match_pooled_and_per_class_ml_estimates():
    X, y = _two_class_data()
    g = S.fit_class_gaussians(X, y, 2, shared=True, shrinkage=1e-12)
    cen = X - np.stack([X[y == 0].mean(0), X[y == 1].mean(0)])[y]
    pooled = cen.T @ cen / len(X)
    assert np.allclose(np.linalg.inv(g.precisions[0]), pooled, atol=1e-8)
    assert np.allclose(g.precisions[0], g.precisions[1])
    gp = S.fit_class_gaussians(X, y, 2, shared=False, shrinkage=1e-12)
    for k in range(2):
        assert np.allclose(np.linalg.inv(gp.precisions[k]), np.cov(X[y == k].T, bias=True), atol=1e-8)
        assert np.isclose(gp.logdets[k], np.linalg.slogdet(np.cov(X[y == k].T, bias=True))[1], atol=1e-8)


def test_mahalanobis_score_by_hand():
    g = S.ClassGaussians(
        means=np.array([[0.0, 0.0], [4.0, 0.0]]),
        precisions=np.stack([np.diag([1.0, 0.25])] * 2),
        logdets=np.array([math.log(4.0)] * 2),
        shared=True,
    )
    x = np.array([[1.0, 2.0], [4.0, 0.0]])
    # point 1: to mean 0: 1 + 4/4 = 2; to mean 1: 9 + 1 = 10 -> -2; point 2: 0
    assert np.allclose(S.mahalanobis_score(x, g), [-2.0, 0.0])
    gp = S.ClassGaussians(g.means, g.precisions, np.array([0.0, 3.0]), shared=False)
    # per-class: add log det: point 1: min(2 + 0, 10 + 3) = 2; point 2: min(16 + 0, 0 + 3) = 3
    assert np.allclose(S.mahalanobis_score(x, gp), [-2.0, -3.0])


def test_per_class_score_is_gaussian_log_density_up_to_constant():
    from scipy.stats import multivariate_normal

    X, y = _two_class_data()
    gp = S.fit_class_gaussians(X, y, 2, shared=False, shrinkage=1e-12)
    x = np.random.default_rng(1).normal(1, 2, (40, 2))
    dens = np.stack(
        [multivariate_normal(X[y == k].mean(0), np.cov(X[y == k].T, bias=True)).logpdf(x) for k in range(2)], 1
    )
    const = 2 * math.log(2 * math.pi)  # D log(2 pi), D = 2
    assert np.allclose(S.mahalanobis_score(x, gp), 2 * dens.max(1) + const, atol=1e-6)


def test_shrinkage_makes_singular_covariance_invertible():
    X = np.zeros((10, 3))
    X[:, 0] = np.arange(10.0)  # two constant features
    y = np.array([0, 1] * 5)
    g = S.fit_class_gaussians(X, y, 2, shared=False, shrinkage=0.1)
    assert np.isfinite(g.precisions).all() and np.isfinite(g.logdets).all()


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------
def test_auroc_by_hand():
    assert S.auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert S.auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    # pairs: (2 vs 1) win, (2 vs 3) loss, (4 vs 1) win, (4 vs 3) win -> 3/4
    assert S.auroc([2.0, 4.0], [1.0, 3.0]) == 0.75
    # ties count one half
    assert S.auroc([1.0, 1.0], [1.0]) == 0.5
    assert S.auroc([2.0, 1.0], [1.0, 0.0]) == (1 + 1 + 0.5 + 1) / 4


@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
)
def test_auroc_equals_sklearn_with_ties(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ref = roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b])
    assert math.isclose(S.auroc(a, b), ref, abs_tol=1e-12)


def test_fpr_at_tpr_by_hand():
    s_in = np.arange(1.0, 21.0)  # 20 in-distribution scores 1..20
    # 95 % of 20 = 19 kept: threshold is the 19th largest, 2; accept out >= 2
    assert S.fpr_at_tpr(s_in, [0.0, 1.0, 1.5, 2.0]) == 0.25
    assert S.fpr_at_tpr(s_in, [0.5, 1.9]) == 0.0
    assert S.fpr_at_tpr(s_in, [2.0, 30.0]) == 1.0
    # tpr = 1 keeps everything down to the smallest in-score
    assert S.fpr_at_tpr(s_in, [1.0, 0.9], tpr=1.0) == 0.5
    # the threshold keeps at least the asked share
    assert S.fpr_at_tpr([1.0, 2.0, 3.0], [1.5], tpr=0.5) == 0.0  # ceil(1.5) = 2nd largest = 2


def test_fpr_at_tpr_matches_sklearn_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 200), rng.normal(0, 1, 300)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(200), np.zeros(300)], np.r_[a, b])
    ref = fpr[np.searchsorted(tpr, 0.95, side="left")]
    assert math.isclose(S.fpr_at_tpr(a, b), ref)


def test_bootstrap_mean_ci():
    m, lo, hi = S.bootstrap_mean_ci([1.0, 1.0, 1.0])
    assert (m, lo, hi) == (1.0, 1.0, 1.0)
    v = np.random.default_rng(0).normal(0, 1, 400)
    m, lo, hi = S.bootstrap_mean_ci(v, n_boot=4000)
    se = v.std() / math.sqrt(len(v))
    assert math.isclose(m, v.mean())
    assert math.isclose(hi - lo, 2 * 1.96 * se, rel_tol=0.1)  # the normal-theory width
    assert S.bootstrap_mean_ci(v, seed=3) == S.bootstrap_mean_ci(v, seed=3)


def test_bootstrap_metric_ci_contains_value_and_is_degenerate_when_separated():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 150), rng.normal(0, 1, 150)
    v, lo, hi = S.bootstrap_metric_ci(a, b, n_boot=300)
    assert v == S.auroc(a, b) and lo < v < hi
    assert S.bootstrap_metric_ci([2.0, 3.0], [0.0, 1.0], n_boot=50) == (1.0, 1.0, 1.0)
    v, lo, hi = S.bootstrap_metric_ci(a, b, metric=S.fpr_at_tpr, n_boot=100)
    assert lo <= v <= hi


# ------------------------------------------------------------------------------------------
# Out-of-distribution inputs
# ------------------------------------------------------------------------------------------
def _digits_raw():
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float64)


def test_pixel_marginal_noise_draws_each_pixel_from_its_own_values():
    X = _digits_raw()[:300]
    N = S.pixel_marginal_noise(X, 2000, seed=0)
    assert N.shape == (2000, 64)
    for p in (0, 20, 36):
        assert set(np.unique(N[:, p])) <= set(np.unique(X[:, p]))
    assert np.allclose(N.mean(0), X.mean(0), atol=0.6)


def test_matched_gaussian_noise_matches_norms_and_moments():
    X = _digits_raw()
    N = S.matched_gaussian_noise(X, 3000, seed=0)
    mu = X.mean(0)
    ref = np.sort(np.linalg.norm(X - mu, axis=1))
    got = np.sort(np.linalg.norm(N - mu, axis=1))
    assert abs(np.median(got) - np.median(ref)) < 0.03 * np.median(ref)
    assert np.allclose(N.mean(0), mu, atol=0.5)
    raw = S.matched_gaussian_noise(X, 20000, seed=1, match_norm=False)
    assert np.allclose(raw.std(0), X.std(0), atol=0.15)


def test_corruptions():
    X = _digits_raw()[:50]
    occ = S.occlude(X, 4, seed=0)
    changed = (occ != X).reshape(-1, 8, 8)
    assert ((occ == 0) | (occ == X)).all()
    assert (changed.sum((1, 2)) <= 16).all()
    # blur of a constant image is constant inside, and of a delta spreads its mass over 3x3
    delta = np.zeros((1, 64))
    delta[0, 27] = 9.0
    b = S.blur(delta, 3).reshape(8, 8)
    assert np.allclose(b[2:5, 2:5], 1.0) and math.isclose(b.sum(), 9.0)
    assert np.allclose(S.blur(X, 1), X)
    sh = S.shuffle_pixels(X, seed=0)
    assert np.allclose(np.sort(sh, 1), np.sort(X, 1))
    assert not np.allclose(sh, X)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.max_softmax_score(np.array([1.0, 2.0])), "z"),
        (lambda: S.max_softmax_score(np.array([[np.nan, 1.0]])), "z"),
        (lambda: S.max_softmax_score(np.ones((3, 1))), "z"),
        (lambda: S.energy_score(np.ones((2, 2)), temperature=0.0), "temperature"),
        (lambda: S.temperature_softmax_score(np.ones((2, 2)), temperature=-1.0), "temperature"),
        (lambda: S.odin_score("model", np.ones((2, 2))), "model"),
        (lambda: S.odin_score(nn.Linear(2, 2).double(), np.ones((2, 2)), epsilon=-1.0), "epsilon"),
        (lambda: S.reject_log_odds(np.ones((2, 2)), np.inf), "tau"),
        (lambda: S.fit_class_gaussians(np.ones((4, 2)), np.array([0, 0, 0, 0]), 2), "class"),
        (lambda: S.fit_class_gaussians(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2, shrinkage=0.0), "shrinkage"),
        (lambda: S.fit_class_gaussians(np.ones((4, 2)), np.array([0.0, 1, 0, 1]), 2), "y"),
        (lambda: S.fit_class_gaussians(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2, shared="yes"), "shared"),
        (lambda: S.mahalanobis_score(np.ones((2, 2)), "g"), "gaussians"),
        (lambda: S.auroc([], [1.0]), "scores_in"),
        (lambda: S.auroc([1.0], [np.inf]), "scores_out"),
        (lambda: S.auroc(np.ones((2, 2)), [1.0]), "scores_in"),
        (lambda: S.fpr_at_tpr([1.0], [1.0], tpr=1.5), "tpr"),
        (lambda: S.bootstrap_mean_ci([1.0], level=1.0), "level"),
        (lambda: S.bootstrap_mean_ci([1.0], n_boot=0), "n_boot"),
        (lambda: S.bootstrap_metric_ci([1.0], [0.0], metric=3), "metric"),
        (lambda: S.occlude(np.ones((2, 10))), "x_raw"),
        (lambda: S.occlude(np.ones((2, 64)), size=9), "size"),
        (lambda: S.blur(np.ones((2, 64)), width=2), "width"),
        (lambda: S.pixel_marginal_noise(np.ones((2, 64)), 0), "n"),
        (lambda: S.matched_gaussian_noise(np.ones((2, 64)), 3, match_norm=1), "match_norm"),
        (lambda: S.shuffle_pixels(np.ones((2, 64)), seed=-1), "seed"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@given(st.lists(finite, min_size=2, max_size=6), st.floats(0.1, 10))
def test_energy_bounds(zs, T):
    z = np.asarray([zs])
    e = S.energy_score(z, T)[0]
    assert max(zs) - 1e-9 <= e <= max(zs) + T * math.log(len(zs)) + 1e-9


# ------------------------------------------------------------------------------------------
# The chapter-10 benchmark
# ------------------------------------------------------------------------------------------
def test_digit_ood_sets_shapes_and_standardization():
    data = S.digit_ood_sets([0, 1, 2, 3, 4, 5], seed=0)
    sets = data["sets"]
    assert list(sets) == ["held-out known", *S.OOD_SETS]
    n = len(data["y_test"])
    assert sets["held-out known"].shape == (n, 64)
    for k in ("pixel-marginal noise", "matched Gaussian noise", "occluded", "blurred", "shuffled pixels", "uniform noise"):
        assert sets[k].shape == (n, 64)
    from sklearn.datasets import load_digits

    assert sets["unknown digits"].shape[0] == int(np.isin(load_digits().target, [6, 7, 8, 9]).sum())
    assert torch.allclose(data["X_train"].mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    # shuffling keeps each image's values: the raw sorted pixels agree with the held-out images'
    assert not torch.allclose(sets["shuffled pixels"], sets["held-out known"])


def test_digit_open_set_run_is_deterministic_and_in_range():
    a = S.digit_open_set_run(3, mlp_epochs=20, proto_epochs=20)
    b = S.digit_open_set_run(3, mlp_epochs=20, proto_epochs=20)
    assert a["auroc"] == b["auroc"] and a["fpr95"] == b["fpr95"]
    assert len(a["known"]) == 6 and a["known"] == sorted(a["known"])
    assert set(a["auroc"]) == set(S.SCORES)
    for s in S.SCORES:
        assert set(a["auroc"][s]) == set(S.OOD_SETS)
        assert all(0.0 <= v <= 1.0 for v in a["auroc"][s].values())
        assert all(0.0 <= v <= 1.0 for v in a["fpr95"][s].values())
    # the reject log-odds is L shifted by tau: identical ranking, identical metrics
    assert a["auroc"]["prototype L"] != a["auroc"]["reject component"]  # different models (trained with tau)
    assert all(0.5 < v <= 1.0 for v in a["accuracy"].values())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.digit_open_set_run(-1), "seed"),
        (lambda: S.digit_open_set_run(0, n_known=10), "n_known"),
        (lambda: S.digit_open_set_run(0, tau=np.nan), "tau"),
        (lambda: S.digit_ood_sets([0, 0, 1]), "classes"),
        (lambda: S.digit_open_set_run(0, mlp_epochs=0), "mlp_epochs"),
    ],
)
def test_benchmark_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
