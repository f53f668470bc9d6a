"""iemlib.attention.baselines: the best head with attention frozen uniform (a logistic regression on
prefix means), checked against the trainer's own head with zero queries (uniform attention) and its
optimality against autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iemlib.attention import attention_pass, fit_uniform_attention, prefix_means
from iemlib.markov import make_dataset, sticky_transition_matrix


@pytest.fixture(scope="module")
def data():
    P = sticky_transition_matrix(8, 0.3)
    return make_dataset(P, 300, 20, 42), make_dataset(P, 300, 20, 10042)


@pytest.fixture(scope="module")
def fit(data):
    d, h = data
    return fit_uniform_attention(d.x, d.y.numpy(), 8, h.x, h.y.numpy())


def _mean_ce(x, y, A, b):
    m = torch.as_tensor(prefix_means(x))
    return torch.nn.functional.cross_entropy(m @ A.T + b, torch.as_tensor(np.asarray(y), dtype=torch.long))


def test_prefix_means():
    x = np.arange(6.0).reshape(3, 2)
    assert np.allclose(prefix_means(x), [[0, 1], [1, 2], [2, 3]])
    with pytest.raises(ValueError, match="x"):
        prefix_means(np.ones(3))


def test_the_fit_is_the_head_with_uniform_attention(fit, data):
    """A = W_O W_V for a head with d_v = 15 >= C = 8; zero queries give uniform causal attention, and the
    trainer's closed-form pass then scores exactly the fitted logistic regression."""
    d, _ = data
    U, S, Vt = np.linalg.svd(fit.A, full_matrices=False)  # (8, 8), (8,), (8, 20)
    W_O = np.zeros((8, 15)); W_O[:, :8] = U * S  # paper layout W_O (C, d_v)
    W_V = np.zeros((15, 20)); W_V[:8] = Vt  # paper layout W_V (d_v, d_x)
    x = d.x.double()[None]
    V = x @ torch.as_tensor(W_V.T)
    out = attention_pass(x, d.y[None], torch.zeros(1, 20, 10, dtype=torch.float64),
                         torch.zeros(1, 20, 10, dtype=torch.float64), V,
                         torch.as_tensor(W_O.T)[None], torch.as_tensor(fit.b)[None], 1.0 / x.shape[1])
    assert float(out.loss[0]) == pytest.approx(fit.loss, abs=1e-10)


def test_the_fit_is_a_minimum(fit, data):
    d, _ = data
    A = torch.tensor(fit.A, requires_grad=True)
    b = torch.tensor(fit.b, requires_grad=True)
    loss = _mean_ce(d.x, d.y.numpy(), A, b)
    loss.backward()
    # the gradient in raw coordinates is small (the fit converged on the standardized ones)
    assert float(A.grad.abs().max()) < 1e-4 and float(b.grad.abs().max()) < 1e-6
    assert fit.grad_norm < 1e-5
    assert float(loss.detach()) == pytest.approx(fit.loss, abs=1e-12)
    # finite differences along a random direction agree with autograd's directional derivative
    g = torch.Generator().manual_seed(0)
    dA = torch.randn(A.shape, generator=g, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = (_mean_ce(d.x, d.y.numpy(), A + h * dA, b) - _mean_ce(d.x, d.y.numpy(), A - h * dA, b)) / (2 * h)
    assert float(fd) == pytest.approx(float((A.grad * dA).sum()), abs=1e-7)
    assert np.isfinite(fit.heldout_loss)


@settings(max_examples=10, deadline=None)
@given(st.floats(-1.0, 1.0), st.integers(0, 10_000))
def test_no_other_weights_do_better(fit, data, scale, seed):
    """Convex problem: any perturbation of the optimum raises the loss (up to rounding)."""
    d, _ = data
    g = torch.Generator().manual_seed(seed)
    A = torch.as_tensor(fit.A) + scale * torch.randn(fit.A.shape, generator=g, dtype=torch.float64)
    b = torch.as_tensor(fit.b) + scale * torch.randn(fit.b.shape, generator=g, dtype=torch.float64)
    assert float(_mean_ce(d.x, d.y.numpy(), A, b)) >= fit.loss - 1e-9


def test_bad_input(data):
    d, _ = data
    with pytest.raises(ValueError, match="n_classes"):
        fit_uniform_attention(d.x, d.y.numpy(), 1)
    with pytest.raises(ValueError, match="y"):
        fit_uniform_attention(d.x, d.y.numpy()[:-1], 8)
    with pytest.raises(ValueError, match="y_heldout"):
        fit_uniform_attention(d.x, d.y.numpy(), 8, d.x, d.y.numpy() + 100)
