"""Tests of iemlib.monitor: responsibilities read off a real backward pass equal the softmax (for the
mixture objective and for cross-entropy, hard or soft targets), the structure defect tells a
log-sum-exp loss from independent sigmoids, specialization and degeneration by value; bad input
raises ValueError naming the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from iemlib import monitor as O
from iemlib.book.exercises import ch10

finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


def _rows(n: int, k: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hook_recovers_mixture_responsibilities():
    d0 = _rows(50, 4)
    W = d0.clone().requires_grad_(True)
    hook = O.ResponsibilityHook()
    d = hook.watch(W * 1.0)
    assert hook.grad is None
    (-torch.logsumexp(-d, 1).mean()).backward()  # loss = -(1/N) sum_i L_i
    r = hook.responsibilities(scale=1 / 50)
    assert torch.allclose(r, torch.softmax(-d0, 1), atol=1e-14)
    assert torch.allclose(W.grad, hook.grad)  # the hook records, it does not change the gradient
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
    assert O.responsibility_defect(r) < 1e-13
    # the same recipe on independent sigmoids recovers numbers that are not a distribution
    hook2 = O.ResponsibilityHook()
    d2 = hook2.watch(-lin(X))
    onehot = nn.functional.one_hot(y, 3).double()
    torch.autograd.grad((nn.functional.softplus(-d2) + onehot * d2).sum(1).mean(), list(lin.parameters()))
    assert O.responsibility_defect(hook2.responsibilities(targets=y, scale=1 / 40)) > 0.1


def test_responsibilities_from_gradient_soft_targets_and_numpy():
    d = _rows(10, 5).numpy()
    e = np.exp(-(d - d.min(1, keepdims=True)))
    r = e / e.sum(1, keepdims=True)
    q = np.full((10, 5), 0.06)
    q[np.arange(10), np.arange(10) % 5] = 0.76
    g = (q - r) / 7.0  # the soft cross-entropy gradient with respect to d, scaled by c = 1/7
    out = O.responsibilities_from_gradient(g, targets=q, scale=1 / 7.0)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, r, atol=1e-14)
    # integer labels with a numpy gradient, torch labels with a numpy gradient
    y = np.arange(10) % 5
    g_hard = np.eye(5)[y] - r
    np.testing.assert_allclose(O.responsibilities_from_gradient(g_hard, targets=y), r, atol=1e-15)
    np.testing.assert_allclose(O.responsibilities_from_gradient(g_hard, targets=torch.as_tensor(y)), r, atol=1e-15)
    # a torch gradient with numpy soft targets
    rt = O.responsibilities_from_gradient(torch.as_tensor(g), targets=q, scale=1 / 7.0)
    assert isinstance(rt, torch.Tensor) and torch.allclose(rt, torch.as_tensor(r), atol=1e-14)


@given(st.lists(st.lists(finite, min_size=4, max_size=4), min_size=1, max_size=12), st.floats(1e-3, 1e3))
def test_unsupervised_recovery_against_autograd(rows, c):
    d = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(-c * torch.logsumexp(-d, 1).sum(), d)  # loss = -c sum_i L_i
    r = O.responsibilities_from_gradient(g, scale=c)
    assert torch.allclose(r, torch.softmax(-d.detach(), 1), atol=1e-12)
    assert O.responsibility_defect(r) < 1e-12


def test_responsibilities_from_finite_differences():
    d = _rows(3, 4, seed=5)
    h = 1e-6
    L = lambda v: torch.logsumexp(-v, 1)  # noqa: E731  (one objective per row, maximized)
    E = torch.zeros(4, 3, 4, dtype=torch.float64)
    for j in range(4):
        E[j, :, j] = 1.0  # perturb d_ij in every row i at once: the rows are independent
    fd = torch.stack([(-L(d + h * E[j]) + L(d - h * E[j])) / (2 * h) for j in range(4)], -1)  # loss -L
    assert torch.allclose(O.responsibilities_from_gradient(fd), torch.softmax(-d, 1), atol=1e-8)


def test_hook_errors():
    hook = O.ResponsibilityHook()
    with pytest.raises(ValueError, match="no gradient"):
        hook.responsibilities()
    with pytest.raises(ValueError, match="d must require grad"):
        hook.watch(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="d must be"):
        hook.watch(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="d must be"):
        hook.watch(torch.zeros(3, 2, dtype=torch.long))


def test_specialization_values():
    s = O.specialization(ch10.EX4_R)
    assert isinstance(s, O.Specialization)
    np.testing.assert_allclose(s.effective_components[:3], [1.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(s.effective_components[3], 1.895, atol=1e-3)
    np.testing.assert_allclose(s.usage.sum(), 1.0)
    np.testing.assert_allclose(s.entropy, np.log(s.effective_components))
    assert s.mean_effective_components == pytest.approx(s.effective_components.mean())
    assert 1.0 <= s.effective_usage <= 3.0 and 0.0 <= s.normalized_entropy <= 1.0
    uniform = O.specialization(np.full((4, 3), 1 / 3))
    assert uniform.normalized_entropy == pytest.approx(1.0) and uniform.effective_usage == pytest.approx(3.0)
    assert O.specialization(np.ones((5, 1))).normalized_entropy == 0.0  # K = 1


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=20))
def test_specialization_bounds(rows):
    s = O.specialization(torch.softmax(-torch.tensor(rows, dtype=torch.float64), 1))
    assert np.all(s.effective_components >= 1 - 1e-9) and np.all(s.effective_components <= 3 + 1e-9)
    assert 1 - 1e-9 <= s.effective_usage <= 3 + 1e-9
    assert -1e-12 <= s.normalized_entropy <= 1 + 1e-12


def test_detect_degeneration_cases():
    rng = np.random.default_rng(0)
    sharp = np.eye(3)[rng.integers(0, 3, 300)]
    healthy = O.detect_degeneration(sharp)
    assert healthy.message == "healthy" and not healthy.degenerate and healthy.dead == []
    assert O.detect_degeneration(np.eye(4)[rng.integers(0, 3, 300)]).dead == [3]
    dom = np.eye(3)[np.r_[np.zeros(280, int), np.ones(20, int)]]
    out = O.detect_degeneration(dom)
    assert out.dominant == [0] and 2 in out.dead and out.degenerate
    assert "dominating component(s) [0]" in out.message
    blur = O.detect_degeneration(np.full((10, 3), 1 / 3))
    assert blur.unspecialized and blur.message.startswith("unspecialized")


def test_exercise_claims():
    np.testing.assert_allclose(O.specialization(ch10.EX4_R).effective_components[3], 1.895, atol=1e-3)
    assert ch10.check_effective_components(O.specialization(ch10.EX4_R).effective_components)
    assert not ch10.check_effective_components(O.specialization(ch10.EX4_R).entropy)


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


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), scale=0), "scale"),
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), targets=np.array([0, 5])), "targets"),
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), targets=np.ones((2, 2)) / 2), "targets"),
        (lambda: O.responsibilities_from_gradient(np.zeros((2, 3)), targets=np.ones((2, 3))), "targets"),
        (lambda: O.responsibilities_from_gradient(np.full((2, 3), np.inf)), "grad_d"),
        (lambda: O.responsibility_defect(np.array([[np.nan, 1.0]])), "r"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_responsibility_defect_values():
    assert O.responsibility_defect(np.array([[0.2, 0.8], [0.5, 0.5]])) == 0.0
    assert O.responsibility_defect(np.array([[0.2, 0.9]])) == pytest.approx(0.1)
    assert O.responsibility_defect(np.array([[1.3, -0.3]])) == pytest.approx(0.3)
    assert math.isclose(O.responsibility_defect(torch.tensor([0.25, 0.25, 0.25, 0.25])), 0.0)
