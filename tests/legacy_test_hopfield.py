"""Tests of iemlib.legacy.hopfield: the modern Hopfield energy is Theorem 1 in the similarities, and its
update is a unit gradient step that never increases the energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iemlib.legacy.hopfield import hopfield_energy, hopfield_retrieve, hopfield_similarities, hopfield_update
from iemlib.legacy.objectives import responsibilities


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
    # chain rule: dE/dxi = sum_j dE/ds_j * beta x_j + xi with dE/ds_j = -alpha_j / beta
    s = hopfield_similarities(xi.detach().numpy(), X, beta)
    alpha = responsibilities(-s)
    np.testing.assert_allclose(g.numpy(), -(alpha @ X) + xi.detach().numpy(), atol=1e-13)
    # finite differences on the energy
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
        assert run.states.shape == (6, 12, 20) and run.energy.shape == (6, 12)
        assert np.diff(run.energy, axis=0).max() <= 1e-12
    run = hopfield_retrieve(queries, X, 32.0, n_steps=3)
    assert (run.nearest_pattern(X) == np.arange(12)).all()
    np.testing.assert_allclose(run.states[-1], X, atol=1e-6)
    # tiny beta: the state falls to (nearly) the mean of the patterns
    run0 = hopfield_retrieve(queries, X, 1e-3, n_steps=1)
    np.testing.assert_allclose(run0.states[-1], np.tile(X.mean(0), (12, 1)), atol=1e-2)


def test_energy_is_bounded_below_by_zero():
    X, rng = _patterns(2)
    E = hopfield_energy(rng.normal(size=(50, 20)) * 3, X, 2.0)
    assert E.shape == (50,) and (E >= -1e-12).all()


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
