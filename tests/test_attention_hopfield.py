"""iemlib.attention.hopfield: the modern Hopfield energy is Theorem 1 in the similarities, and its update
is a unit gradient step that never increases the energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iemlib import responsibilities
from iemlib.attention import HopfieldRun, hopfield_energy, hopfield_retrieve, hopfield_similarities, hopfield_update


def _patterns(seed=0, n=12, d=20):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True), rng


def test_update_is_a_unit_gradient_step_and_similarity_gradient_is_minus_alpha_over_beta():
    X, rng = _patterns()
    beta = 3.0
    xi = torch.tensor(rng.normal(size=20), requires_grad=True)
    (g,) = torch.autograd.grad(hopfield_energy(xi, X, beta), xi)
    np.testing.assert_allclose(g.numpy(), xi.detach().numpy() - hopfield_update(xi.detach().numpy(), X, beta), atol=1e-13)
    s = hopfield_similarities(xi.detach().numpy(), X, beta)
    alpha = responsibilities(-s)
    np.testing.assert_allclose(g.numpy(), -(alpha @ X) + xi.detach().numpy(), atol=1e-13)
    # dE/ds = -alpha / beta, by autograd through the similarities
    s_t = torch.tensor(s, requires_grad=True)
    (gs,) = torch.autograd.grad(-torch.logsumexp(s_t, 0) / beta, s_t)
    np.testing.assert_allclose(gs.numpy(), -alpha / beta, atol=1e-15)
    x0 = xi.detach().numpy()
    for j in range(3):
        e = np.zeros(20)
        e[j] = 1e-6
        fd = (hopfield_energy(x0 + e, X, beta) - hopfield_energy(x0 - e, X, beta)) / 2e-6
        assert fd == pytest.approx(g.numpy()[j], abs=1e-7)


def test_energy_never_increases_and_large_beta_retrieves():
    X, rng = _patterns(1)
    queries = X + 0.3 * rng.normal(size=X.shape) / np.sqrt(20)
    for beta in (0.5, 2.0, 8.0, 32.0):
        run = hopfield_retrieve(queries, X, beta, n_steps=5)
        assert isinstance(run, HopfieldRun) and run.beta == beta
        assert run.states.shape == (6, 12, 20) and run.energy.shape == (6, 12)
        assert np.diff(run.energy, axis=0).max() <= 1e-12
    run = hopfield_retrieve(queries, X, 32.0, n_steps=3)
    assert (run.nearest_pattern(X) == np.arange(12)).all()
    np.testing.assert_allclose(run.states[-1], X, atol=1e-6)
    run0 = hopfield_retrieve(queries, X, 1e-3, n_steps=1)
    np.testing.assert_allclose(run0.states[-1], np.tile(X.mean(0), (12, 1)), atol=1e-2)
    one = hopfield_retrieve(queries[0], X, 8.0, n_steps=2)  # a single state becomes a batch of one
    assert one.states.shape == (3, 1, 20)


def test_energy_is_bounded_below_by_zero_and_types_follow_the_input():
    X, rng = _patterns(2)
    E = hopfield_energy(rng.normal(size=(50, 20)) * 3, X, 2.0)
    assert isinstance(E, np.ndarray) and E.shape == (50,) and (E >= -1e-12).all()
    Et = hopfield_energy(torch.tensor(rng.normal(size=20)), X, 2.0)
    assert isinstance(Et, torch.Tensor) and Et.ndim == 0


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.05, 50.0))
def test_update_never_increases_the_energy_property(seed, beta):
    X, rng = _patterns(seed, n=6, d=5)
    xi = rng.normal(size=(4, 5)) * 2
    assert (hopfield_energy(hopfield_update(xi, X, beta), X, beta) <= hopfield_energy(xi, X, beta) + 1e-12).all()


def test_bad_input():
    X, _ = _patterns()
    with pytest.raises(ValueError, match="beta"):
        hopfield_energy(np.zeros(20), X, 0.0)
    with pytest.raises(ValueError, match="xi"):
        hopfield_update(np.zeros(7), X, 1.0)
    with pytest.raises(ValueError, match="X"):
        hopfield_update(np.zeros(20), np.full((3, 20), np.nan), 1.0)
    with pytest.raises(ValueError, match="n_steps"):
        hopfield_retrieve(np.zeros((2, 20)), X, 1.0, n_steps=-1)
    with pytest.raises(ValueError, match="xi"):
        hopfield_similarities(np.zeros((2, 2, 20)), X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_states():
    X, rng = _patterns(3)
    xi = torch.tensor(rng.normal(size=(4, 20)), device="cuda")
    assert hopfield_update(xi, X, 2.0).device.type == "cuda"
    run = hopfield_retrieve(xi, torch.tensor(X, device="cuda"), 2.0, n_steps=2)
    np.testing.assert_allclose(run.states, hopfield_retrieve(xi.cpu().numpy(), X, 2.0, n_steps=2).states, atol=1e-12)


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.05, 50.0))
def test_effective_patterns_is_the_inverse_participation_of_the_update_weights(seed, beta):
    X, rng = _patterns(seed)
    run = hopfield_retrieve(X + 0.3 * rng.normal(size=X.shape), X, beta, n_steps=2)
    n_eff = run.effective_patterns(X)
    s = beta * run.states[-1] @ X.T
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(n_eff, 1.0 / (p**2).sum(1), rtol=1e-12)
    assert n_eff.shape == (X.shape[0],) and (n_eff >= 1 - 1e-12).all() and (n_eff <= X.shape[0] + 1e-9).all()


def test_effective_patterns_is_one_at_a_pattern_and_n_at_the_global_average():
    X, _ = _patterns(3)
    np.testing.assert_allclose(hopfield_retrieve(X, X, 500.0, n_steps=0).effective_patterns(X), 1.0, atol=1e-9)
    flat = hopfield_retrieve(np.zeros((1, X.shape[1])), X, 1.0, n_steps=0)
    np.testing.assert_allclose(flat.effective_patterns(X), X.shape[0], rtol=1e-12)
    with pytest.raises(ValueError, match="X"):
        flat.effective_patterns(np.zeros(3))
