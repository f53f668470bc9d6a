"""iemlib.attention.diagnostics: the §8.1 diagnostics on hand-computed cases, numpy and torch, PCA, the two
settling steps, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib.attention import closed_form_backward, init_params
from iemlib.attention.diagnostics import (
    PCA,
    advantage,
    attention_entropy,
    column_usage,
    compatibility,
    decay_step,
    displacement_step,
    pca,
    value_norms,
)

ALPHA = np.array([[1.0, 0.0], [0.25, 0.75]])
U = np.array([[1.0, 0.0], [0.0, 2.0]])
V = np.array([[3.0, 4.0], [-1.0, 1.0]])
B_HAND = np.array([[3.0, -1.0], [8.0, 2.0]])  # b_ij = u_i . v_j by hand


def test_compatibility_by_hand():
    assert np.array_equal(compatibility(U, V), B_HAND)
    assert torch.equal(compatibility(torch.tensor(U), torch.tensor(V)), torch.tensor(B_HAND))
    mixed = compatibility(torch.tensor(U, dtype=torch.float32), V)  # promoted to float64
    assert mixed.dtype == torch.float64 and torch.equal(mixed, torch.tensor(B_HAND))


def test_advantage_by_hand():
    # E_{alpha_1}[b] = 3; E_{alpha_2}[b] = 0.25*8 + 0.75*2 = 3.5
    centered = np.array([[0.0, -4.0], [4.5, -1.5]])
    assert np.allclose(advantage(B_HAND, ALPHA), -centered)
    mask = np.tril(np.ones((2, 2), dtype=bool))
    assert np.allclose(advantage(B_HAND, ALPHA, mask), [[0.0, 0.0], [-4.5, 1.5]])
    t = advantage(torch.tensor(B_HAND), torch.tensor(ALPHA), torch.tensor(mask))
    assert torch.allclose(t, torch.tensor([[0.0, 0.0], [-4.5, 1.5]], dtype=torch.float64))
    assert np.allclose((ALPHA * advantage(B_HAND, ALPHA)).sum(-1), 0.0)


def test_column_usage_norms_entropy_by_hand():
    assert np.allclose(column_usage(ALPHA), [1.25, 0.75])
    assert np.allclose(value_norms(V), [5.0, math.sqrt(2)])
    assert torch.allclose(value_norms(torch.tensor(V)), torch.tensor([5.0, math.sqrt(2)], dtype=torch.float64))
    h = attention_entropy(ALPHA)
    assert np.allclose(h, [0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])
    assert torch.allclose(attention_entropy(torch.tensor(ALPHA)), torch.tensor(h))
    assert np.allclose(attention_entropy(np.full((3, 4), 0.25)), math.log(4))


def test_batched_history_axes():
    hist = np.stack([ALPHA, np.full((2, 2), 0.5)])
    assert column_usage(hist).shape == (2, 2)
    assert np.allclose(column_usage(hist)[1], [1.0, 1.0])
    assert attention_entropy(hist).shape == (2, 2)


def test_diagnostics_agree_with_closed_form_backward():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    P = init_params(3, 2, 2, 3, scale=0.7, random_state=1)
    for causal in (True, False):
        s = closed_form_backward(x, y, *P, causal=causal)
        assert np.allclose(compatibility(s.u, s.v), s.B)
        assert np.allclose(advantage(s.B, s.alpha, s.mask), s.advantage)
        assert np.allclose(column_usage(s.alpha).sum(), 5.0)


def test_pca_on_a_line_and_against_sklearn():
    t = np.linspace(-1, 1, 11)
    pts = np.stack([t, 2 * t, -t], axis=1) + 5.0
    res = pca(pts, 1)
    assert isinstance(res, PCA)
    assert res.explained_variance_ratio[0] == pytest.approx(1.0)
    assert np.allclose(res.components[0], np.array([1, 2, -1]) / math.sqrt(6))  # largest coordinate positive
    from sklearn.decomposition import PCA as SkPCA

    X = np.random.default_rng(3).standard_normal((30, 4)) @ np.diag([3, 2, 1, 0.5])
    proj, comps, ratio = pca(X, 2)
    sk = SkPCA(2).fit(X)
    assert np.allclose(ratio, sk.explained_variance_ratio_)
    assert np.allclose(np.abs(proj), np.abs(sk.transform(X)))
    assert np.allclose(pca(torch.tensor(X), 2).projected, proj)


def test_displacement_step():
    traj = np.array([0.0, 5.0, 9.0, 9.5, 10.0])
    assert displacement_step(traj, 0.9) == 2
    assert displacement_step(traj, 1.0) == 4
    assert displacement_step(np.ones((4, 2, 2))) == 0
    t2 = np.zeros((3, 2, 2))
    t2[1, 0, 0], t2[2, 0, 0] = 1.0, 1.0
    assert displacement_step(t2) == 1  # any trailing shape: norm of the displacement
    with pytest.raises(ValueError, match="fraction"):
        displacement_step(traj, 0.0)
    with pytest.raises(ValueError, match="two steps"):
        displacement_step(np.zeros((1, 3)))


def test_decay_step():
    steps = np.array([0, 10, 20, 30, 40])
    assert decay_step(np.array([1.0, 4.0, 2.0, 0.3, 0.1]), steps, 0.1) == 30
    assert decay_step(np.array([1.0, 4.0, 2.0, 0.3, 0.1]), steps, 0.5) == 20
    assert math.isnan(decay_step(np.array([1.0, 4.0, 2.0]), steps[:3], 0.1))
    with pytest.raises(ValueError, match="steps"):
        decay_step(np.ones(3), steps)
    with pytest.raises(ValueError, match="curve"):
        decay_step(np.array([1.0, np.nan]), steps[:2])
    with pytest.raises(ValueError, match="fraction"):
        decay_step(np.ones(2), steps[:2], 0.0)


@given(n=st.integers(2, 30), seed=st.integers(0, 10_000), f=st.floats(0.05, 1.0))
def test_settling_steps_property(n, seed, f):
    rng = np.random.default_rng(seed)
    traj = np.cumsum(rng.standard_normal((n, 3)), 0)
    t = displacement_step(traj, f)
    disp = np.linalg.norm(traj - traj[0], axis=1)
    assert 0 <= t < n and (disp[-1] == 0 or (disp[t] >= f * disp[-1] and (disp[:t] < f * disp[-1]).all()))
    curve = np.abs(rng.standard_normal(n)) + 1e-3
    s = decay_step(curve, np.arange(n), f)
    k = int(np.argmax(curve))
    assert math.isnan(s) or (k <= s and curve[int(s)] <= f * curve[k] and (curve[k:int(s)] > f * curve[k]).all())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: column_usage(np.array([[0.5, 0.6], [0.5, 0.5]])), "rows summing to 1"),
        (lambda: column_usage(np.array([[1.5, -0.5], [0.5, 0.5]])), "non-negative"),
        (lambda: column_usage(np.array([0.5, 0.5])), "alpha must have at least 2"),
        (lambda: column_usage(np.array([[np.nan, 1.0], [0.5, 0.5]])), "alpha must be finite"),
        (lambda: compatibility(U, V[:, :1]), "last axis"),
        (lambda: compatibility(U.astype(int), V), "u must be a floating-point"),
        (lambda: advantage(B_HAND[:1], ALPHA), "B must have the same shape"),
        (lambda: advantage(B_HAND, ALPHA, np.ones((2, 2))), "mask must be a boolean"),
        (lambda: advantage(B_HAND, ALPHA, np.ones((3, 3), bool)), "does not broadcast"),
        (lambda: attention_entropy(np.zeros((2, 0))), "alpha must"),
        (lambda: pca(np.ones((3, 2)), 3), "n_components"),
        (lambda: pca(np.ones(3), 1), "points must have 2"),
        (lambda: value_norms(np.array([np.inf])), "v must be finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@given(T=st.integers(1, 6), nb=st.integers(1, 3), seed=st.integers(0, 10_000), causal=st.booleans())
def test_diagnostic_invariants_property(T, nb, seed, causal):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((nb, T, T)) * 3
    mask = np.tril(np.ones((T, T), dtype=bool)) if causal else np.ones((T, T), dtype=bool)
    e = np.where(mask, np.exp(s - s.max(-1, keepdims=True)), 0.0)
    alpha = e / e.sum(-1, keepdims=True)
    B = rng.standard_normal((nb, T, T))
    usage = column_usage(alpha)
    assert usage.shape == (nb, T) and np.allclose(usage.sum(-1), T)
    A = advantage(B, alpha, mask)
    assert np.allclose((alpha * A).sum(-1), 0.0, atol=1e-12)  # the weighted advantage vanishes row by row
    assert np.all(A[..., ~mask] == 0)
    h = attention_entropy(alpha)
    assert np.all(h >= -1e-12) and np.all(h <= np.log(T) + 1e-12)
    assert np.allclose(advantage(torch.tensor(B), torch.tensor(alpha), mask).numpy(), A)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_mixed_with_numpy():
    A = advantage(B_HAND, torch.tensor(ALPHA, device="cuda"), np.tril(np.ones((2, 2), dtype=bool)))
    assert A.device.type == "cuda" and torch.allclose(A.cpu(), torch.tensor([[0.0, 0.0], [-4.5, 1.5]], dtype=torch.float64))
    assert compatibility(torch.tensor(U, device="cuda"), V).device.type == "cuda"
    assert attention_entropy(torch.tensor(ALPHA, device="cuda")).device.type == "cuda"
