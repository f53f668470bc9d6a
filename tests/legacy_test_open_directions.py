"""Tests of iemlib.legacy.open_directions and the chapter 10 exercise checkers.

The chapter's claims checked here by value: responsibilities read off the backward pass equal the
softmax (for the mixture objective and for cross-entropy); the soft cross-entropy loss has
gradient q - r with respect to d (autograd, finite differences); its fixed point under label
smoothing is 1 - eps + eps/K; symmetric label noise equals smoothing with eps = rho K / (K - 1);
the reject responsibility is sigmoid(-tau - L); and bad input raises ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from iemlib.legacy import open_directions as O
from iemlib.book.exercises import ch10
from iemlib.legacy.objectives import sigmoid_bce

@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


def _rows(n: int, k: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# 1. Diagnostics
# ------------------------------------------------------------------------------------------
def test_hook_recovers_mixture_responsibilities():
    d0 = _rows(50, 4)
    W = d0.clone().requires_grad_(True)
    hook = O.ResponsibilityHook()
    d = hook.watch(W * 1.0)
    loss = -torch.logsumexp(-d, 1).mean()  # loss = -(1/N) sum L
    loss.backward()
    r = hook.responsibilities(scale=1 / 50)
    assert torch.allclose(r, torch.softmax(-d0, 1), atol=1e-14)
    assert O.responsibility_defect(r) < 1e-13


def test_hook_recovers_classifier_responsibilities_and_sigmoid_defect():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    X = torch.randn(40, 5, dtype=torch.float64)
    y = torch.arange(40) % 3
    hook = O.ResponsibilityHook()
    d = hook.watch(-lin(X))
    torch.autograd.grad(nn.functional.cross_entropy(-d, y), list(lin.parameters()))
    r = hook.responsibilities(targets=y, scale=1 / 40)
    assert torch.allclose(r, torch.softmax(lin(X), 1).detach(), atol=1e-14)
    hook2 = O.ResponsibilityHook()
    d2 = hook2.watch(-lin(X))
    onehot = nn.functional.one_hot(y, 3).double()
    torch.autograd.grad(sigmoid_bce(d2, onehot).sum(1).mean(), list(lin.parameters()))
    assert O.responsibility_defect(hook2.responsibilities(targets=y, scale=1 / 40)) > 0.1


def test_responsibilities_from_gradient_soft_targets_and_numpy():
    d = _rows(10, 5).numpy()
    q = O.smooth_labels(np.arange(10) % 5, 5, 0.3).numpy()
    g = O.soft_cross_entropy_gradient(d, q)
    r = O.responsibilities_from_gradient(g, targets=q)
    assert isinstance(r, np.ndarray)
    e = np.exp(-(d - d.min(1, keepdims=True)))
    np.testing.assert_allclose(r, e / e.sum(1, keepdims=True), atol=1e-14)


def test_hook_errors():
    hook = O.ResponsibilityHook()
    with pytest.raises(ValueError, match="no gradient"):
        hook.responsibilities()
    with pytest.raises(ValueError, match="d must require grad"):
        hook.watch(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="d must be"):
        hook.watch(np.zeros((3, 2)))


def test_specialization_values():
    r = ch10.EX4_R
    s = O.specialization(r)
    np.testing.assert_allclose(s["effective_components"][:3], [1.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(s["usage"].sum(), 1.0)
    assert 1.0 <= s["effective_usage"] <= 3.0
    assert 0.0 <= s["normalized_entropy"] <= 1.0


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=20))
def test_specialization_bounds(rows):
    r = O.specialization(torch.softmax(-torch.tensor(rows, dtype=torch.float64), 1))
    assert np.all(r["effective_components"] >= 1 - 1e-9)
    assert np.all(r["effective_components"] <= 3 + 1e-9)
    assert 1 - 1e-9 <= r["effective_usage"] <= 3 + 1e-9


def test_detect_degeneration_cases():
    rng = np.random.default_rng(0)
    sharp = np.eye(3)[rng.integers(0, 3, 300)]
    assert O.detect_degeneration(sharp)["message"] == "healthy"
    dead = np.eye(4)[rng.integers(0, 3, 300)]
    assert O.detect_degeneration(dead)["dead"] == [3]
    dom = np.eye(3)[np.r_[np.zeros(280, int), np.ones(20, int)]]
    out = O.detect_degeneration(dom)
    assert out["dominant"] == [0] and 2 in out["dead"] and out["degenerate"]
    blur = np.full((10, 3), 1 / 3)
    assert O.detect_degeneration(blur)["unspecialized"]


@pytest.mark.parametrize(
    "kwargs, name",
    [({"dead_fraction": 0}, "dead_fraction"), ({"dominant_share": 1.5}, "dominant_share"), ({"blur_entropy": -1}, "blur_entropy")],
)
def test_detect_degeneration_bad_thresholds(kwargs, name):
    with pytest.raises(ValueError, match=name):
        O.detect_degeneration(np.eye(3), **kwargs)


@pytest.mark.parametrize(
    "bad",
    [np.array([[0.5, 0.6]]), np.array([[1.2, -0.2]]), np.array([[np.nan, 1.0]]), np.zeros((0, 3)), np.ones(3) / 3],
)
def test_specialization_bad_input(bad):
    with pytest.raises(ValueError, match="r"):
        O.specialization(bad)


def test_fit_mixture_tracked_dead_component_and_hook():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 2, generator=g) * 0.5 + torch.tensor([-3.0, 0.0]),
                   torch.randn(60, 2, generator=g) * 0.5 + torch.tensor([3.0, 0.0])])
    mu0 = torch.tensor([[-2.5, 0.2], [2.5, -0.2], [20.0, 20.0]])
    h = O.fit_mixture_tracked(x, mu0, lr=0.5, n_steps=40, record_every=10)
    assert h["hook_error"].max() < 1e-12
    assert O.detect_degeneration(h["r"])["dead"] == [2]
    assert torch.allclose(h["mu"][2], mu0[2])
    assert list(h["steps"]) == [0, 10, 20, 30, 40]
    assert h["objective"][-1] >= h["objective"][0]


def test_fit_mixture_tracked_volume_term():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(80, 2, generator=g) * 0.8 + m for m in torch.tensor([[-3.0, 0.0], [3.0, 0.0]])])
    mu0 = torch.tensor([[-3.0, 0.1], [3.0, -0.1]])
    no = O.fit_mixture_tracked(x, mu0, torch.ones(2), learn_scale=True, logdet=False, n_steps=150, record_every=50)
    ld = O.fit_mixture_tracked(x, mu0, torch.ones(2), learn_scale=True, logdet=True, n_steps=150, record_every=50)
    assert no["sigma"][-1].min() > 5.0 and O.detect_degeneration(no["r"])["unspecialized"]
    assert np.all(np.abs(ld["sigma"][-1] - 0.8) < 0.15) and not O.detect_degeneration(ld["r"])["degenerate"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 3))}, "mu0"),
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 2)), "sigma0": np.ones(3)}, "sigma0"),
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 2)), "sigma0": -np.ones(2)}, "sigma0"),
        ({"x": np.full((5, 2), np.nan), "mu0": np.zeros((2, 2))}, "x"),
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 2)), "lr": 0}, "lr"),
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 2)), "n_steps": 0}, "n_steps"),
        ({"x": np.zeros((5, 2)), "mu0": np.zeros((2, 2)), "logdet": 1}, "logdet"),
    ],
)
def test_fit_mixture_tracked_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        O.fit_mixture_tracked(**kwargs)


# ------------------------------------------------------------------------------------------
# 3. Soft supervision
# ------------------------------------------------------------------------------------------
@given(st.lists(finite, min_size=2, max_size=8), st.floats(0, 1), st.integers(0, 100))
def test_soft_gradient_matches_autograd(ds, eps, yseed):
    d = torch.tensor(ds, dtype=torch.float64)
    K = len(ds)
    q = O.smooth_labels(torch.tensor([yseed % K]), K, eps)[0]
    dv = d.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(O.soft_cross_entropy(dv, q), dv)  # loss, with respect to d
    assert torch.allclose(g, O.soft_cross_entropy_gradient(d, q), atol=1e-12)
    assert abs(float(O.soft_cross_entropy_gradient(d, q).sum())) < 1e-12


def test_soft_gradient_finite_differences_numpy():
    d = _rows(1, 5, seed=3)[0].numpy()
    q = np.array([0.1, 0.6, 0.1, 0.1, 0.1])
    h = 1e-6
    fd = np.array([(O.soft_cross_entropy(d + h * e, q) - O.soft_cross_entropy(d - h * e, q)) / (2 * h) for e in np.eye(5)])
    np.testing.assert_allclose(fd, O.soft_cross_entropy_gradient(d, q), atol=1e-8)
    np.testing.assert_allclose(O.soft_cross_entropy(d, q), O.soft_cross_entropy(torch.tensor(d), torch.tensor(q)).item())


def test_soft_ce_reduces_to_hard_ce():
    d = _rows(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    q = O.smooth_labels(y, 4, 0.0)
    assert torch.allclose(O.soft_cross_entropy(d, q), nn.functional.cross_entropy(-d, y, reduction="none"))


def test_fixed_point_is_stationary():
    for eps, K in [(0.1, 10), (0.3, 4), (1.0, 3)]:
        q = O.smooth_labels(torch.tensor([0]), K, eps)[0]
        d = -torch.log(q.clamp_min(1e-300))  # r = q
        assert float(O.soft_cross_entropy_gradient(d, q).abs().max()) < 1e-12
        assert math.isclose(float(torch.softmax(-d, 0)[0]), O.smoothing_fixed_point(eps, K), rel_tol=1e-12)


def test_noise_equals_smoothing():
    y = torch.arange(20) % 10
    for rho in (0.0, 0.2, 0.5):
        eps = rho * 10 / 9
        assert torch.allclose(O.noisy_label_targets(y, 10, rho), O.smooth_labels(y, 10, eps), atol=1e-15)
        assert torch.allclose(O.noisy_label_targets(y, 10, rho).sum(1), torch.ones(20, dtype=torch.float64))


def test_train_soft_classifier_reaches_fixed_point_for_free_distances():
    # A "model" whose outputs are free per-sample logits: the optimum is r = q exactly.
    class Free(nn.Module):
        def __init__(self):
            super().__init__()
            self.z = nn.Parameter(torch.zeros(30, 5, dtype=torch.float64))

        def forward(self, X):
            return self.z + 0.0 * X[:, :1]

    y = torch.arange(30) % 5
    q = O.smooth_labels(y, 5, 0.2)
    m = Free()
    h = O.train_soft_classifier(m, torch.zeros(30, 2), q, epochs=400, lr=20.0, record_every=100)
    assert abs(h["r_target"][-1] - O.smoothing_fixed_point(0.2, 5)) < 1e-6
    assert h["loss"][-1] <= h["loss"][0]


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.smooth_labels([0, 1], 2, 1.5), "eps"),
        (lambda: O.smooth_labels([0, 3], 2, 0.1), "y"),
        (lambda: O.smooth_labels([0, 1], 1, 0.1), "n_classes"),
        (lambda: O.noisy_label_targets([0, 1], 3, -0.1), "rho"),
        (lambda: O.smoothing_fixed_point(2.0, 3), "eps"),
        (lambda: O.soft_cross_entropy(np.zeros((2, 3)), np.ones((2, 3))), "q"),
        (lambda: O.soft_cross_entropy(np.zeros((2, 3)), np.ones((2, 2)) / 2), "q"),
        (lambda: O.soft_cross_entropy_gradient(np.full(3, np.inf), np.ones(3) / 3), "d"),
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), scale=0), "scale"),
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), targets=np.array([0, 5])), "targets"),
        (lambda: O.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2), torch.ones(4, 2) / 2), "q"),
        (lambda: O.train_soft_classifier("no", torch.zeros(4, 2), torch.ones(4, 3) / 3), "model"),
        (lambda: O.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2), torch.ones(4, 3) / 3, epochs=0), "epochs"),
    ],
)
def test_soft_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ------------------------------------------------------------------------------------------
# 4. Open set
# ------------------------------------------------------------------------------------------
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=10), st.floats(-20, 20))
def test_reject_responsibility_matches_appended_softmax(rows, tau):
    d = torch.tensor(rows, dtype=torch.float64)
    full = torch.softmax(-torch.cat([d, torch.full((d.shape[0], 1), tau)], 1), 1)[:, -1]
    assert torch.allclose(O.reject_responsibility(d, tau), full, atol=1e-12)
    assert np.allclose(O.reject_responsibility(d.numpy(), tau), full.numpy(), atol=1e-12)


def test_reject_option_module_and_training_signal():
    torch.manual_seed(0)
    base = nn.Linear(4, 3).double()
    model = O.RejectOption(base, 2.0)
    X = torch.randn(7, 4, dtype=torch.float64)
    z = model(X)
    assert z.shape == (7, 4) and torch.all(z[:, -1] == -2.0)
    r0 = torch.softmax(z, 1)[:, -1]
    assert torch.allclose(r0, O.reject_responsibility(-base(X), 2.0))
    # cross-entropy on known labels: the reject component is a wrong class, gradient -r0 w.r.t. its distance
    dz = z.detach().clone().requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(dz, y, reduction="sum"), dz)  # loss, w.r.t. logits
    assert torch.allclose(-g[:, -1], -r0.detach())  # w.r.t. d = -z: 1[j=y] - r_j = -r0


def test_reject_ranking_is_energy_ranking():
    d = _rows(40, 5, seed=4)
    L = torch.logsumexp(-d, 1)
    for tau in (-3.0, 0.0, 5.0):
        r0 = O.reject_responsibility(d, tau)
        assert torch.equal(torch.argsort(r0), torch.argsort(-L))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.reject_responsibility(np.zeros(3), 1.0), "d_known"),
        (lambda: O.reject_responsibility(np.zeros((2, 3)), float("nan")), "tau"),
        (lambda: O.reject_responsibility(np.zeros((2, 3)), np.ones(2)), "tau"),
        (lambda: O.RejectOption("model", 1.0), "base"),
        (lambda: O.RejectOption(nn.Linear(2, 2), float("inf")), "tau"),
    ],
)
def test_open_set_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ------------------------------------------------------------------------------------------
# Exercise checkers
# ------------------------------------------------------------------------------------------
def test_checkers_accept_right_answers_and_refuse_wrong_ones():
    r = np.exp(-ch10.EX1_D) / np.exp(-ch10.EX1_D).sum()
    assert ch10.check_soft_gradient(ch10.EX1_Q - r)
    fb = ch10.check_soft_gradient(r - ch10.EX1_Q)
    assert not fb and "opposite sign" in fb.message
    assert not ch10.check_soft_gradient(...)
    assert ch10.check_noise_as_smoothing(0.2 * 10 / 9)
    assert not ch10.check_noise_as_smoothing(0.2)
    assert not ch10.check_noise_as_smoothing("abc")
    assert ch10.check_reject_responsibility(O.reject_responsibility(ch10.EX3_D, ch10.EX3_TAU))
    assert not ch10.check_reject_responsibility(np.zeros(3))
    assert ch10.check_effective_components(O.specialization(ch10.EX4_R)["effective_components"])
    H = O.specialization(ch10.EX4_R)["entropy"]
    fb = ch10.check_effective_components(H)
    assert not fb and "entropy" in fb.message
    assert not ch10.check_effective_components(...)


def test_exercise_claims():
    r0 = O.reject_responsibility(ch10.EX3_D, ch10.EX3_TAU)
    assert list(r0 > 0.5) == [False, False, True]
    np.testing.assert_allclose(O.specialization(ch10.EX4_R)["effective_components"][3], 1.895, atol=1e-3)
    g = ch10.EX1_Q - np.exp(-ch10.EX1_D) / np.exp(-ch10.EX1_D).sum()
    assert np.all(np.delete(g, 1) < 0)  # every wrong class still pushed away


def test_sample_noisy_labels_matches_expected_target_and_is_seeded():
    K, rho, M = 5, 0.3, 40000
    y = torch.full((M,), 2)
    y_noisy = O.sample_noisy_labels(y, K, rho, seed=3)
    assert y_noisy.shape == y.shape and y_noisy.dtype == torch.long
    assert torch.equal(y_noisy, O.sample_noisy_labels(y, K, rho, seed=3))
    freq = torch.bincount(y_noisy, minlength=K).double() / M
    expected = O.noisy_label_targets(torch.tensor([2]), K, rho)[0]
    assert float((freq - expected).abs().max()) < 4 / math.sqrt(M)
    assert torch.equal(O.sample_noisy_labels(y, K, 0.0, seed=0), y)  # rho = 0 keeps every label
    flipped = O.sample_noisy_labels(np.arange(K).repeat(100), K, 1.0, seed=1)
    assert not torch.any(flipped == torch.as_tensor(np.arange(K).repeat(100)))  # rho = 1 changes every label
    # the mean hard-label cross-entropy gradient (loss, with respect to d) approaches E[q] - r
    d = torch.randn(1, K, generator=torch.Generator().manual_seed(0)).repeat(M, 1).requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(-d, y_noisy, reduction="sum"), d)
    assert float((g.mean(0) - (expected - torch.softmax(-d[0].detach(), 0))).abs().max()) < 4 / math.sqrt(M)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.sample_noisy_labels([0, 1], 3, 1.5), "rho"),
        (lambda: O.sample_noisy_labels([0, 3], 3, 0.1), "y"),
        (lambda: O.sample_noisy_labels([0.0, 1.0], 3, 0.1), "y"),
        (lambda: O.sample_noisy_labels([0, 1], 1, 0.1), "n_classes"),
        (lambda: O.sample_noisy_labels([0, 1], 3, float("nan")), "rho"),
    ],
)
def test_sample_noisy_labels_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_open_set_scores_far_inputs_and_ranking_equivalence():
    g = torch.Generator().manual_seed(0)
    d_in = torch.rand(60, 3, generator=g)  # close to some class
    d_far = 20.0 + torch.rand(40, 3, generator=g)  # far from every class
    d_mid = torch.full((30, 3), 0.5) + 0.01 * torch.rand(30, 3, generator=g)  # ambiguous but close
    sets = {"in": d_in, "far": d_far, "mid": d_mid}
    row, r0 = O.open_set_scores(sets, tau=5.0, d_train=d_in)
    assert set(r0) == set(sets) and r0["far"].shape == (40,)
    assert row["auc_L far"] == 1.0 and row["auc_r0 far"] == 1.0  # L and r0 rank identically (no saturation here)
    assert row["rej far"] == 1.0 and row["rej in"] == 0.0 and row["rej train"] == 0.0 and row["rej mid"] == 0.0
    from iemlib.legacy.failure_modes import max_softmax, ood_auroc

    assert row["auc_ms mid"] == ood_auroc(max_softmax(-d_in), max_softmax(-d_mid))
    assert row["auc_r0 mid"] == pytest.approx(row["auc_L mid"])
    row0, r00 = O.open_set_scores(sets)  # no reject component: no r0, no rejection rates
    assert r00 == {} and not any(k.startswith(("rej", "auc_r0")) for k in row0)
    assert row0["auc_L far"] == row["auc_L far"]
    row_pos, _ = O.open_set_scores(sets, positive="far")
    assert row_pos["auc_L in"] == 0.0


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.open_set_scores({}), "d_sets"),
        (lambda: O.open_set_scores({"a": torch.zeros(3, 2), "b": torch.zeros(3, 4)}), "d_sets"),
        (lambda: O.open_set_scores({"a": torch.zeros(3, 2), "b": torch.full((3, 2), float("nan"))}), "d_sets"),
        (lambda: O.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, positive="c"), "positive"),
        (lambda: O.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, tau=float("inf")), "tau"),
        (lambda: O.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, d_train=torch.zeros(3)), "d_train"),
    ],
)
def test_open_set_scores_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
