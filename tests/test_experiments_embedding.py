"""Tests of iemlib.experiments.embedding: implicit EM through an MLP embedding (chapter 9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iemlib.experiments.embedding import EMBEDDING_NORMS, EmbeddingFit, fit_embedding_mixture


@pytest.fixture(scope="module")
def splits():
    """Two small synthetic 'splits': four classes of 16-dimensional points, standardized."""
    out = {"X_train": [], "X_test": [], "y_test": []}
    for s in range(2):
        g = torch.Generator().manual_seed(s)
        centres = torch.randn(4, 16, generator=g, dtype=torch.float64)
        y = torch.arange(4).repeat_interleave(20)
        X = centres[y] + 0.5 * torch.randn(80, 16, generator=g, dtype=torch.float64)
        X = (X - X.mean(0)) / X.std(0)
        perm = torch.randperm(80, generator=g)
        X, y = X[perm], y[perm]
        out["X_train"].append(X[:50])
        out["X_test"].append(X[50:])
        out["y_test"].append(y[50:])
    return {k: torch.stack(v) for k, v in out.items()}


def test_fit_embedding_mixture(splits):
    for norm in EMBEDDING_NORMS:
        h = fit_embedding_mixture(splits["X_train"], splits["X_test"], splits["y_test"], norm, n_components=4,
                                  hidden=8, dim=4, n_steps=3, record_at=(0, 3))
        assert isinstance(h, EmbeddingFit) and h.step.tolist() == [0, 3]
        assert h.objective.shape == (2, 2)
        assert (h.objective <= math.log(4) + 1e-9).all()
        assert ((h.entropy >= 0) & (h.entropy <= 1 + 1e-9)).all()
        assert ((h.nmi >= 0) & (h.nmi <= 1 + 1e-9)).all()
        assert (h.spread > 0).all() and (h.mean_distance >= 0).all()
        assert (h.objective[1] > h.objective[0]).all()  # gradient ascent on L


def test_layernorm_fixes_the_spread_and_the_run_is_seeded(splits):
    args = (splits["X_train"], splits["X_test"], splits["y_test"])
    a = fit_embedding_mixture(*args, "layernorm", n_components=4, hidden=8, dim=4, n_steps=20, record_at=(0, 10, 20))
    # a layer norm without gain puts every embedding on a sphere of radius sqrt(dim): the spread is bounded
    assert (a.spread <= math.sqrt(4) + 1e-9).all()
    b = fit_embedding_mixture(*args, "layernorm", n_components=4, hidden=8, dim=4, n_steps=20, record_at=(0, 10, 20))
    np.testing.assert_array_equal(a.objective, b.objective)
    c = fit_embedding_mixture(*args, "layernorm", n_components=4, hidden=8, dim=4, n_steps=20, record_at=(0, 10, 20), random_state=5)
    assert not np.array_equal(a.objective, c.objective)
    # the objective at step 0 is the log-sum-exp objective of the initial embedding, at most log K
    assert (a.objective[0] <= math.log(4)).all()


def test_without_normalization_the_embedding_collapses(splits):
    h = fit_embedding_mixture(splits["X_train"], splits["X_test"], splits["y_test"], "none", n_components=4, hidden=8,
                              dim=4, lr=0.1, n_steps=200, record_at=(0, 200))
    assert (h.mean_distance[-1] < h.mean_distance[0]).all()  # every distance shrinks
    assert (h.objective[-1] > math.log(4) - 0.05).all()  # towards the bound log K
    assert (h.entropy[-1] > 0.9).all()  # the responsibilities blur


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"norm": "batchnorm"}, "norm"),
        ({"n_steps": 2, "record_at": (5,)}, "record_at"),
        ({"n_components": 1}, "n_components"),
        ({"lr": 0.0}, "lr"),
        ({"random_state": -1}, "random_state"),
    ],
)
def test_bad_input(splits, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fit_embedding_mixture(splits["X_train"], splits["X_test"], splits["y_test"], **kwargs)


def test_bad_data(splits):
    with pytest.raises(ValueError, match="X_test"):
        fit_embedding_mixture(splits["X_train"], splits["X_test"][:1], splits["y_test"])
    with pytest.raises(ValueError, match="y_test"):
        fit_embedding_mixture(splits["X_train"], splits["X_test"], splits["y_test"].double())
    with pytest.raises(ValueError, match="X_train"):
        fit_embedding_mixture(splits["X_train"][0], splits["X_test"], splits["y_test"])
