"""Tests of iemlib.data's Gaussian-mixture section: make_gaussian_mixture and sample_gaussian_mixture."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from iemlib.data import make_gaussian_mixture, sample_gaussian_mixture
from iemlib.mixture import MixtureParams

X, LABELS, TRUE = make_gaussian_mixture(n_samples=400, random_state=0)


def test_data_is_seeded_and_labelled():
    X2, l2, t2 = make_gaussian_mixture(n_samples=400, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(LABELS, l2)
    np.testing.assert_array_equal(TRUE.means, t2.means)
    assert X.shape == (400, 2) and X.dtype == np.float64 and set(np.unique(LABELS)) <= {0, 1, 2}
    assert not np.array_equal(X, make_gaussian_mixture(n_samples=400, random_state=1)[0])


def test_truth_is_a_valid_mixture():
    assert isinstance(TRUE, MixtureParams)
    assert TRUE.weights.shape == (3,) and TRUE.means.shape == (3, 2) and TRUE.covariances.shape == (3, 2, 2)
    assert abs(TRUE.weights.sum() - 1.0) < 1e-12 and (TRUE.weights > 0).all()
    lam = np.linalg.eigvalsh(TRUE.covariances)
    assert lam.min() >= 0.3 - 1e-12 and lam.max() <= 1.5 + 1e-12  # eigenvalues drawn in [0.3, 1.5]
    np.testing.assert_allclose(TRUE.covariances, np.swapaxes(TRUE.covariances, 1, 2))


def test_samples_approach_the_generating_parameters():
    Xs, ls = sample_gaussian_mixture(50_000, TRUE.weights, TRUE.means, TRUE.covariances, random_state=3)
    np.testing.assert_allclose(np.bincount(ls) / len(ls), TRUE.weights, atol=0.01)
    for k in range(3):
        np.testing.assert_allclose(Xs[ls == k].mean(0), TRUE.means[k], atol=0.05)
        np.testing.assert_allclose(np.cov(Xs[ls == k], rowvar=False), TRUE.covariances[k], atol=0.06)


def test_separation_sets_the_distance_between_means():
    for sep in (1.5, 6.0):
        _, _, t = make_gaussian_mixture(n_samples=10, separation=sep, random_state=0)
        d = np.linalg.norm(t.means[:, None] - t.means[None], axis=2)[np.triu_indices(3, 1)]
        # on a circle with chord `sep`, jittered by 0.3 per coordinate
        assert abs(np.mean(d) - sep) < 1.5


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), D=st.integers(1, 3))
def test_shapes_and_labels_for_any_size(seed, K, D):
    Xh, lh, th = make_gaussian_mixture(n_samples=50, n_components=K, n_features=D, random_state=seed)
    assert Xh.shape == (50, D) and lh.shape == (50,) and lh.max() < K
    assert th.means.shape == (K, D) and th.covariances.shape == (K, D, D)
    assert np.isfinite(Xh).all()


def test_torch_parameters_are_accepted():
    a, la = sample_gaussian_mixture(20, TRUE.weights, TRUE.means, TRUE.covariances, random_state=5)
    b, lb = sample_gaussian_mixture(20, torch.tensor(TRUE.weights), torch.tensor(TRUE.means),
                                    torch.tensor(TRUE.covariances), random_state=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: make_gaussian_mixture(n_samples=0), "n_samples"),
        (lambda: make_gaussian_mixture(n_components=0), "n_components"),
        (lambda: make_gaussian_mixture(n_features=0), "n_features"),
        (lambda: make_gaussian_mixture(separation=-1.0), "separation"),
        (lambda: make_gaussian_mixture(random_state=-1), "random_state"),
        (lambda: sample_gaussian_mixture(10, [0.5, 0.5], np.zeros((2, 2)), np.ones((2, 2, 2))), "covariances"),
        (lambda: sample_gaussian_mixture(10, [0.5, 0.6], np.zeros((2, 2)), np.tile(np.eye(2), (2, 1, 1))), "weights"),
        (lambda: sample_gaussian_mixture(10, [0.5, 0.5], np.zeros((2, 2)), np.tile(np.eye(2), (3, 1, 1))), "covariances"),
        (lambda: sample_gaussian_mixture(10, [0.5, 0.5], np.full((2, 2), np.nan), np.tile(np.eye(2), (2, 1, 1))), "means"),
        (lambda: sample_gaussian_mixture(1.5, [0.5, 0.5], np.zeros((2, 2)), np.tile(np.eye(2), (2, 1, 1))), "n_samples"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
