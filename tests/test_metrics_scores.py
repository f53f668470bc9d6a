"""Tests of the classification, calibration and out-of-distribution section of iemlib.metrics.

Values are checked by hand, against scikit-learn (roc_auc_score, roc_curve), scipy's Gaussian
densities and autograd; hypothesis checks bounds and the agreement of the torch and numpy routes;
bad input raises ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score
from torch import nn

from iemlib import metrics as M

finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)


def _rows(n, k, seed=0, scale=5.0):
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------- scores from logits
def test_max_softmax_and_energy_by_hand():
    z = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert np.allclose(M.max_softmax(z), [0.5, 0.75])
    assert np.allclose(M.energy_score(z), [math.log(2.0), math.log(4.0)])
    # temperature T: T log sum exp(z / T); T = 2 on (2 log 3, 0) gives 2 log 4
    assert np.allclose(M.energy_score(np.array([[2 * math.log(3.0), 0.0]]), temperature=2.0), [2 * math.log(4.0)])
    zt = torch.tensor([[10.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert np.allclose(M.max_softmax(zt), [1 / (1 + math.exp(-10)), 0.5])
    assert np.allclose(M.energy_score(zt), [math.log(math.exp(10) + 1), math.log(2)])


def test_scores_return_float64_numpy_for_both_kinds():
    z = _rows(20, 4)
    for f in (M.max_softmax, M.energy_score, M.temperature_softmax_score):
        for arg in (z, z.numpy(), z.float()):
            out = f(arg)
            assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (20,)


def test_torch_route_is_torch_softmax_and_logsumexp_exactly():
    z = _rows(50, 7)
    assert np.array_equal(M.max_softmax(z), torch.softmax(z, 1).max(1).values.numpy())
    assert np.array_equal(M.energy_score(z), torch.logsumexp(z, 1).numpy())


@given(arrays(np.float64, (6, 4), elements=finite), st.floats(0.1, 10))
def test_torch_and_numpy_routes_agree(z, T):
    assert np.allclose(M.max_softmax(z), M.max_softmax(torch.as_tensor(z)), rtol=1e-13, atol=1e-15)
    assert np.allclose(M.energy_score(z, T), M.energy_score(torch.as_tensor(z), T), rtol=1e-13, atol=1e-13)


def test_energy_is_the_books_objective():
    d = _rows(50, 7)
    L = torch.logsumexp(-d, 1).numpy()
    assert np.allclose(M.energy_score(-d), L, atol=1e-12)
    assert np.allclose(M.energy_score(-d.numpy()), L, atol=1e-12)
    assert np.allclose(M.max_softmax(-d.numpy()), torch.softmax(-d, 1).max(1).values.numpy(), atol=1e-12)


def test_large_logits_do_not_overflow():
    z = np.array([[1000.0, 999.0, -1000.0]])
    for arg in (z, torch.as_tensor(z)):
        assert np.isfinite(M.energy_score(arg)).all()
        assert np.allclose(M.energy_score(arg), 1000.0 + math.log(1 + math.exp(-1.0)))
        assert np.allclose(M.max_softmax(arg), 1 / (1 + math.exp(-1.0)))


@given(st.lists(finite, min_size=2, max_size=6), st.floats(0.1, 10))
def test_energy_and_confidence_bounds(zs, T):
    z = np.asarray([zs])
    e = M.energy_score(z, T)[0]
    assert max(zs) - 1e-9 <= e <= max(zs) + T * math.log(len(zs)) + 1e-9
    c = M.max_softmax(z)[0]
    assert 1 / len(zs) - 1e-12 <= c <= 1 + 1e-12


def test_temperature_softmax_limit_ranks_by_gap_to_mean():
    z = np.array([[3.0, 0.0, 0.0], [2.0, 1.5, 1.5], [1.0, -2.0, 0.0]])
    T = 1e4
    approx = 1 / 3 + (z.max(1) - z.mean(1)) / (3 * T)
    assert np.allclose(M.temperature_softmax_score(z, T), approx, atol=1e-8)
    assert np.allclose(M.temperature_softmax_score(z, 1.0), M.max_softmax(z))


def test_odin_without_perturbation_is_temperature_scaling_and_perturbation_raises_confidence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    with torch.no_grad():
        base = M.temperature_softmax_score(model(x).numpy(), 10.0)
    assert np.array_equal(M.odin_score(model, x, 10.0, 0.0), base)
    pert = M.odin_score(model, x, 10.0, 1e-3)
    assert np.all(pert >= base - 1e-12)  # a small step against the loss gradient raises the confidence
    assert np.any(pert > base)
    assert all(p.grad is None for p in model.parameters())  # the model is not modified


def test_odin_perturbation_is_the_sign_of_the_input_gradient():
    torch.manual_seed(1)
    model = nn.Linear(4, 3).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    xv = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(-torch.log_softmax(model(xv) / 5.0, 1).max(1).values.sum(), xv)
    with torch.no_grad():
        want = M.temperature_softmax_score(model(x - 0.01 * torch.sign(g)).numpy(), 5.0)
    assert np.array_equal(M.odin_score(model, x, 5.0, 0.01), want)


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=10), st.floats(-20, 20))
def test_reject_responsibility_matches_appended_softmax(rows, tau):
    d = torch.tensor(rows, dtype=torch.float64)
    full = torch.softmax(-torch.cat([d, torch.full((d.shape[0], 1), tau)], 1), 1)[:, -1].numpy()
    assert np.allclose(M.reject_responsibility(d, tau), full, atol=1e-12)
    assert np.allclose(M.reject_responsibility(d.numpy(), tau), full, atol=1e-12)


def test_reject_ranking_is_energy_ranking():
    d = _rows(40, 5, seed=4, scale=3.0)
    L = torch.logsumexp(-d, 1).numpy()
    for tau in (-3.0, 0.0, 5.0):
        r0 = M.reject_responsibility(d, tau)
        assert np.array_equal(np.argsort(r0), np.argsort(-L))
        assert np.array_equal(np.argsort(M.reject_log_odds(d, tau)), np.argsort(L))


def test_reject_log_odds_is_logit_of_one_minus_r0():
    d = np.random.default_rng(0).normal(size=(30, 4)) * 2
    tau = 1.5
    r0 = M.reject_responsibility(d, tau)
    assert np.allclose(M.reject_log_odds(d, tau), np.log((1 - r0) / r0), atol=1e-9)
    assert np.allclose(M.reject_log_odds(torch.as_tensor(d), tau), M.reject_log_odds(d, tau), atol=1e-12)
    far = np.full((1, 4), 200.0)  # no saturation far away, where 1 - r0 rounds to 0
    assert float(1 - M.reject_responsibility(far, tau)[0]) == 0.0
    assert np.allclose(M.reject_log_odds(far, tau), tau - 200.0 + math.log(4))


# ---------------------------------------------------------------------------------------- class Gaussians
def _two_class_data():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(3, 0.5, (100, 2))])
    return X, np.array([0] * 200 + [1] * 100)


def test_class_gaussians_match_pooled_and_per_class_ml_estimates():
    X, y = _two_class_data()
    g = M.fit_class_gaussians(X, y, 2, shared=True, shrinkage=1e-12)
    cen = X - np.stack([X[y == 0].mean(0), X[y == 1].mean(0)])[y]
    assert np.allclose(np.linalg.inv(g.precisions[0]), cen.T @ cen / len(X), atol=1e-8)
    assert np.allclose(g.precisions[0], g.precisions[1])
    gp = M.fit_class_gaussians(X, torch.as_tensor(y), 2, shared=False, shrinkage=1e-12)
    for k in range(2):
        assert np.allclose(np.linalg.inv(gp.precisions[k]), np.cov(X[y == k].T, bias=True), atol=1e-8)
        assert np.isclose(gp.logdets[k], np.linalg.slogdet(np.cov(X[y == k].T, bias=True))[1], atol=1e-8)


def test_mahalanobis_score_by_hand():
    g = M.ClassGaussians(
        means=np.array([[0.0, 0.0], [4.0, 0.0]]),
        precisions=np.stack([np.diag([1.0, 0.25])] * 2),
        logdets=np.array([math.log(4.0)] * 2),
        shared=True,
    )
    x = np.array([[1.0, 2.0], [4.0, 0.0]])
    # point 1: to mean 0: 1 + 4/4 = 2; to mean 1: 9 + 1 = 10 -> -2; point 2: 0
    assert np.allclose(g.energies(x), [[2.0, 10.0], [16.0, 0.0]])
    assert np.allclose(M.mahalanobis_score(x, g), [-2.0, 0.0])
    gp = M.ClassGaussians(g.means, g.precisions, np.array([0.0, 3.0]), shared=False)
    # per-class: add log det: point 1: min(2 + 0, 10 + 3) = 2; point 2: min(16 + 0, 0 + 3) = 3
    assert np.allclose(M.mahalanobis_score(x, gp), [-2.0, -3.0])


def test_per_class_score_is_gaussian_log_density_up_to_constant():
    from scipy.stats import multivariate_normal

    X, y = _two_class_data()
    gp = M.fit_class_gaussians(X, y, 2, shared=False, shrinkage=1e-12)
    x = np.random.default_rng(1).normal(1, 2, (40, 2))
    dens = np.stack([multivariate_normal(X[y == k].mean(0), np.cov(X[y == k].T, bias=True)).logpdf(x) for k in range(2)], 1)
    assert np.allclose(M.mahalanobis_score(x, gp), 2 * dens.max(1) + 2 * math.log(2 * math.pi), atol=1e-6)


def test_shrinkage_makes_singular_covariance_invertible():
    X = np.zeros((10, 3))
    X[:, 0] = np.arange(10.0)  # two constant features
    g = M.fit_class_gaussians(X, np.array([0, 1] * 5), 2, shared=False, shrinkage=0.1)
    assert np.isfinite(g.precisions).all() and np.isfinite(g.logdets).all()
    g0 = M.fit_class_gaussians(np.zeros((4, 2)), np.array([0, 1, 0, 1]), 2)  # all constant: the identity
    assert np.allclose(g0.precisions[0], np.eye(2) / 0.1)


# ---------------------------------------------------------------------------------------- metrics
def test_auroc_by_hand():
    assert M.auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert M.auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert M.auroc([2.0, 4.0], [1.0, 3.0]) == 0.75  # pairs: win, loss, win, win
    assert M.auroc([1.0, 1.0], [1.0]) == 0.5  # ties count one half
    assert M.auroc([2.0, 1.0], [1.0, 0.0]) == (1 + 1 + 0.5 + 1) / 4
    assert M.auroc(torch.tensor([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=30), st.lists(st.integers(-5, 5), min_size=1, max_size=30))
def test_auroc_equals_sklearn_with_ties(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ref = roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b])
    assert math.isclose(M.auroc(a, b), ref, abs_tol=1e-12)
    assert math.isclose(M.auroc(b, a), 1 - ref, abs_tol=1e-12)  # swapping the classes mirrors the curve


def test_auroc_is_the_correctly_rounded_pair_count():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 1, 271), rng.normal(0, 1, 896)
    wins = (a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()
    assert M.auroc(a, b) == float(wins / (len(a) * len(b)))


def test_fpr_at_tpr_by_hand():
    s_in = np.arange(1.0, 21.0)  # 20 in-distribution scores 1..20
    # 95 % of 20 = 19 kept: threshold is the 19th largest, 2; accept out >= 2
    assert M.fpr_at_tpr(s_in, [0.0, 1.0, 1.5, 2.0]) == 0.25
    assert M.fpr_at_tpr(s_in, [0.5, 1.9]) == 0.0
    assert M.fpr_at_tpr(s_in, [2.0, 30.0]) == 1.0
    assert M.fpr_at_tpr(s_in, [1.0, 0.9], tpr=1.0) == 0.5  # tpr = 1 keeps everything down to the smallest
    assert M.fpr_at_tpr([1.0, 2.0, 3.0], [1.5], tpr=0.5) == 0.0  # ceil(1.5) = 2nd largest = 2


def test_fpr_at_tpr_matches_sklearn_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 200), rng.normal(0, 1, 300)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(200), np.zeros(300)], np.r_[a, b])
    assert math.isclose(M.fpr_at_tpr(a, b), fpr[np.searchsorted(tpr, 0.95, side="left")])


def test_reject_threshold():
    s = np.arange(100.0)
    assert M.reject_threshold(s, 0.05) == np.quantile(s, 0.05)
    z = _rows(500, 4, seed=2)
    L = M.energy_score(z)
    tau = M.reject_threshold(L, 0.1)
    assert abs(float((L < tau).mean()) - 0.1) < 0.01


def _ece_reference(p, y, nb=15):
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for k in range(nb):
        m = (conf > k / nb) & (conf <= (k + 1) / nb)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - (pred[m] == y[m]).mean())
    return total


def test_ece_by_hand():
    # two samples at confidence 0.9 (one right, one wrong) and two at 0.6 (both right)
    P = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # bin of 0.9: acc 0.5, conf 0.9 -> 0.4; bin of 0.6: acc 1, conf 0.6 -> 0.4; weights 1/2 each
    assert math.isclose(M.expected_calibration_error(P, y, n_bins=10), 0.4)
    assert M.expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0
    assert math.isclose(M.expected_calibration_error(P, y, n_bins=1), abs(0.75 - 0.75), abs_tol=1e-15)
    sure = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    assert M.expected_calibration_error(sure, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.5)


def test_ece_against_reference_and_batched():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 200, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = rng.integers(0, 4, size=(3, 200))
    one = M.expected_calibration_error(torch.as_tensor(p[0]), torch.as_tensor(y[0]))
    assert isinstance(one, float) and abs(one - _ece_reference(p[0], y[0])) < 1e-12
    stack = M.expected_calibration_error(p, y)
    assert isinstance(stack, np.ndarray) and stack.shape == (3,)
    assert np.allclose(stack, [_ece_reference(p[s], y[s]) for s in range(3)], atol=1e-12)
    f32 = M.expected_calibration_error(torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(y))
    assert f32.dtype == np.float32 and np.allclose(f32, stack, atol=1e-6)


@given(arrays(np.float64, (30, 3), elements=st.floats(-6, 6)), st.integers(1, 20))
def test_ece_bounds(z, nb):
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.arange(30) % 3
    e = M.expected_calibration_error(p, y, n_bins=nb)
    assert 0.0 <= e <= 1.0 + 1e-12
    assert e >= abs(p.max(1).mean() - (p.argmax(1) == y).mean()) - 1e-12  # one bin is the smallest ECE


def test_bootstrap_mean_ci():
    ci = M.bootstrap_mean_ci([1.0, 1.0, 1.0])
    assert (ci.estimate, ci.low, ci.high, ci.level) == (1.0, 1.0, 1.0, 0.95)
    v = np.random.default_rng(0).normal(0, 1, 400)
    ci = M.bootstrap_mean_ci(v, n_boot=4000)
    se = v.std() / math.sqrt(len(v))
    assert math.isclose(ci.estimate, v.mean())
    assert math.isclose(ci.high - ci.low, 2 * 1.96 * se, rel_tol=0.1)  # the normal-theory width
    assert M.bootstrap_mean_ci(v, random_state=3) == M.bootstrap_mean_ci(v, random_state=3)
    assert M.bootstrap_mean_ci(v, random_state=3) != M.bootstrap_mean_ci(v, random_state=4)


def test_bootstrap_metric_ci_contains_value_and_is_degenerate_when_separated():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 150), rng.normal(0, 1, 150)
    ci = M.bootstrap_metric_ci(a, b, n_boot=300)
    assert ci.estimate == M.auroc(a, b) and ci.low < ci.estimate < ci.high
    ci = M.bootstrap_metric_ci([2.0, 3.0], [0.0, 1.0], n_boot=50)
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    ci = M.bootstrap_metric_ci(a, b, metric=M.fpr_at_tpr, n_boot=100)
    assert ci.low <= ci.estimate <= ci.high


def test_multilabel_scores_by_hand():
    T_ = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    Z = torch.tensor([[2.0, -1.0], [-1.0, -3.0], [-2.0, -1.0]], dtype=torch.float64)
    s = M.multilabel_scores(Z, T_, "sigmoid")
    assert s.label_accuracy == pytest.approx(4 / 6)
    assert s.exact_set == pytest.approx(2 / 3)
    assert s.none_predicted == pytest.approx(2 / 3)
    assert s.silently_dropped == pytest.approx(1 / 2)  # row 3 carries labels, gets none
    assert s.empty_wrong == 0.0
    sm = M.multilabel_scores(Z.numpy(), T_.numpy(), "softmax")
    assert sm.none_predicted == 0.0 and sm.empty_wrong == 1.0  # softmax always predicts a label


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.max_softmax(np.array([1.0, 2.0])), "z"),
        (lambda: M.max_softmax(np.array([[np.nan, 1.0]])), "z"),
        (lambda: M.max_softmax(np.ones((3, 1))), "z"),
        (lambda: M.max_softmax(torch.ones(3, dtype=torch.float64)), "z"),
        (lambda: M.energy_score(torch.tensor([[1.0, float("nan")]], dtype=torch.float64)), "z"),
        (lambda: M.energy_score(np.ones((2, 2)), temperature=0.0), "temperature"),
        (lambda: M.temperature_softmax_score(np.ones((2, 2)), temperature=-1.0), "temperature"),
        (lambda: M.odin_score("model", np.ones((2, 2))), "model"),
        (lambda: M.odin_score(nn.Linear(2, 2).double(), np.ones((2, 2)), epsilon=-1.0), "epsilon"),
        (lambda: M.odin_score(nn.Linear(2, 2).double(), np.ones(2)), "x"),
        (lambda: M.reject_log_odds(np.ones((2, 2)), np.inf), "tau"),
        (lambda: M.reject_responsibility(np.zeros(3), 1.0), "d_known"),
        (lambda: M.reject_responsibility(np.zeros((2, 3)), float("nan")), "tau"),
        (lambda: M.reject_responsibility(np.zeros((2, 3)), np.ones(2)), "tau"),
        (lambda: M.fit_class_gaussians(np.ones((4, 2)), np.array([0, 0, 0, 0]), 2), "class"),
        (lambda: M.fit_class_gaussians(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2, shrinkage=0.0), "shrinkage"),
        (lambda: M.fit_class_gaussians(np.ones((4, 2)), np.array([0.0, 1, 0, 1]), 2), "y"),
        (lambda: M.fit_class_gaussians(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2, shared="yes"), "shared"),
        (lambda: M.mahalanobis_score(np.ones((2, 2)), "g"), "gaussians"),
        (lambda: M.mahalanobis_score(np.ones((2, 3)), M.fit_class_gaussians(np.eye(2), np.array([0, 1]), 2)), "features"),
        (lambda: M.auroc([], [1.0]), "scores_in"),
        (lambda: M.auroc([1.0], [np.inf]), "scores_out"),
        (lambda: M.auroc(np.ones((2, 2)), [1.0]), "scores_in"),
        (lambda: M.fpr_at_tpr([1.0], [1.0], tpr=1.5), "tpr"),
        (lambda: M.reject_threshold([0.1, 0.2], 1.5), "quantile"),
        (lambda: M.expected_calibration_error(np.ones((2, 2)), np.array([0, 1])), "probs"),
        (lambda: M.expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 2])), "y"),
        (lambda: M.expected_calibration_error(np.full((2, 2), 0.5), np.array([0.0, 1.0])), "y"),
        (lambda: M.expected_calibration_error(np.full((2, 2), 0.5), np.array([0])), "y"),
        (lambda: M.expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1]), n_bins=0), "n_bins"),
        (lambda: M.bootstrap_mean_ci([1.0], level=1.0), "level"),
        (lambda: M.bootstrap_mean_ci([1.0], n_boot=0), "n_boot"),
        (lambda: M.bootstrap_mean_ci([1.0], random_state=-1), "random_state"),
        (lambda: M.bootstrap_metric_ci([1.0], [0.0], metric=3), "metric"),
        (lambda: M.multilabel_scores(np.zeros((3, 2)), np.zeros((3, 2)), "relu"), "kind"),
        (lambda: M.multilabel_scores(np.zeros((3, 2)), np.zeros((2, 2)), "sigmoid"), "T"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------- success counts
def test_wilson_interval_matches_scipy_and_hand_values():
    from scipy.stats import binomtest

    for k, n in [(0, 30), (3, 30), (20, 30), (30, 30), (1, 1), (7, 60)]:
        ci = M.wilson_interval(k, n)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert ci.successes == k and ci.n == n and ci.estimate == k / n and ci.level == 0.95
        assert math.isclose(ci.low, ref.low, abs_tol=1e-12) and math.isclose(ci.high, ref.high, abs_tol=1e-12)
    # by hand: 30/30 at 95 %: low = n / (n + z^2)
    z = 1.959963984540054
    assert math.isclose(M.wilson_interval(30, 30).low, 30 / (30 + z * z), rel_tol=1e-12)
    assert M.wilson_interval(0, 30).low == 0.0 and M.wilson_interval(30, 30).high == 1.0
    assert str(M.wilson_interval(20, 30)) == "20/30 [0.49, 0.81]"


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.5, 0.999))
def test_wilson_interval_properties(kn, level):
    k, n = kn
    ci = M.wilson_interval(k, n, level)
    assert 0.0 <= ci.low <= ci.estimate <= ci.high <= 1.0
    assert ci.low < ci.high
    wider = M.wilson_interval(k, n, min(0.9999, level + (1 - level) / 2))
    assert wider.low <= ci.low + 1e-12 and wider.high >= ci.high - 1e-12
    mirror = M.wilson_interval(n - k, n, level)  # symmetric in successes and failures
    assert math.isclose(mirror.low, 1 - ci.high, abs_tol=1e-12)


def test_wilson_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="n"):
        M.wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        M.wilson_interval(4, 3)
    with pytest.raises(ValueError, match="successes"):
        M.wilson_interval(-1, 3)
    with pytest.raises(ValueError, match="successes"):
        M.wilson_interval(1.5, 3)
    with pytest.raises(ValueError, match="level"):
        M.wilson_interval(1, 3, level=1.0)


def test_mcnemar_exact_matches_binomial_test():
    from scipy.stats import binomtest

    a = np.array([1] * 20 + [0] * 10, bool)
    b = np.array([1] * 3 + [0] * 17 + [1] * 2 + [0] * 8, bool)
    t = M.mcnemar_exact(a, b)
    assert (t.n, t.successes_a, t.successes_b, t.only_a, t.only_b) == (30, 20, 5, 17, 2)
    assert math.isclose(t.p_value, binomtest(17, 19, 0.5).pvalue, rel_tol=1e-12)
    # all discordant pairs one way: p = 2 / 2^m
    t8 = M.mcnemar_exact([1] * 8 + [1] * 4, [0] * 8 + [1] * 4)
    assert math.isclose(t8.p_value, 2 * 0.5**8, rel_tol=1e-12)
    assert M.mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant pair
    assert M.mcnemar_exact(torch.tensor([True, False]), [0, 1]).only_b == 1


@given(arrays(np.bool_, 25), arrays(np.bool_, 25))
def test_mcnemar_exact_properties(a, b):
    t, r = M.mcnemar_exact(a, b), M.mcnemar_exact(b, a)
    assert 0.0 < t.p_value <= 1.0 and t.p_value == r.p_value
    assert (t.only_a, t.only_b) == (r.only_b, r.only_a)
    assert t.successes_a - t.successes_b == t.only_a - t.only_b


def test_mcnemar_exact_rejects_bad_input():
    with pytest.raises(ValueError, match="b must have the shape"):
        M.mcnemar_exact([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="a must hold"):
        M.mcnemar_exact([2, 0], [1, 0])
    with pytest.raises(ValueError, match="a"):
        M.mcnemar_exact([], [])


def test_class_gaussians_volume_ablation():
    X, y = _two_class_data()
    gp = M.fit_class_gaussians(X, y, 2, shared=False)
    with_v, without = gp.energies(X), gp.energies(X, volume=False)
    np.testing.assert_allclose(with_v - without, np.broadcast_to(gp.logdets, with_v.shape), rtol=1e-12)
    np.testing.assert_allclose(M.mahalanobis_score(X, gp, volume=False), -without.min(1))
    g = M.fit_class_gaussians(X, y, 2, shared=True)  # tied covariances have no volume term to drop
    np.testing.assert_array_equal(g.energies(X), g.energies(X, volume=False))
    with pytest.raises(ValueError, match="^volume "):
        gp.energies(X, volume=1)
