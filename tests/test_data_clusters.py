"""Tests of iemlib.data's isotropic clusters and outliers (make_clusters, make_clusters_with_outliers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iemlib.data import CLUSTER_MEANS, make_clusters, make_clusters_with_outliers


def test_make_clusters_shapes_labels_and_seed():
    x, labels, means = make_clusters(n_per_component=50, random_state=3)
    assert x.shape == (150, 2) and x.dtype == torch.float64
    assert labels.tolist() == [0] * 50 + [1] * 50 + [2] * 50
    assert torch.equal(means, torch.tensor(CLUSTER_MEANS, dtype=torch.float64))
    x2, _, _ = make_clusters(n_per_component=50, random_state=3)
    assert torch.equal(x, x2)  # seeded
    assert not torch.equal(x, make_clusters(n_per_component=50, random_state=4)[0])
    # cluster statistics: means near the centres, spread near std
    for j in range(3):
        xj = x[labels == j]
        assert float((xj.mean(0) - means[j]).norm()) < 0.35
        assert abs(float(xj.std(0).mean()) - 0.8) < 0.2


def test_make_clusters_sizes_means_dtype():
    x, labels, means = make_clusters(n_per_component=[5, 7], means=np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]), std=0.1,
                                     dtype=torch.float32)
    assert x.shape == (12, 3) and x.dtype == torch.float32 and means.dtype == torch.float32
    assert np.bincount(labels.numpy()).tolist() == [5, 7]
    assert float(x[labels == 1, 0].mean()) == pytest.approx(10.0, abs=0.2)


def test_the_first_draws_do_not_depend_on_the_sizes_that_follow():
    a, _, _ = make_clusters(n_per_component=[4, 4, 4], random_state=0)
    b, _, _ = make_clusters(n_per_component=[4, 9, 9], random_state=0)
    assert torch.equal(a[:4], b[:4])


def test_outlier_task_fraction():
    x, is_out, means = make_clusters_with_outliers(n_per_component=50, outlier_fraction=0.1)
    frac = float(is_out.double().mean())
    assert abs(frac - 0.1) < 0.01 and is_out.dtype == torch.bool
    assert x.shape[0] == is_out.shape[0] and is_out[-1] and not is_out[0]
    assert float(x[is_out].abs().max()) <= 12.0
    # the clusters are make_clusters' clusters with the same seed
    xc, _, mc = make_clusters(n_per_component=50, random_state=0)
    assert torch.equal(x[~is_out], xc) and torch.equal(means, mc)
    _, clean, _ = make_clusters_with_outliers(n_per_component=50, outlier_fraction=0.0)
    assert not clean.any()
    x3, _, _ = make_clusters_with_outliers(n_per_component=50, outlier_fraction=0.3, box=2.0, random_state=2)
    assert float(x3[150:].abs().max()) <= 2.0 and x3.shape[0] == 150 + round(0.3 * 150 / 0.7)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: make_clusters(n_per_component=0), "n_per_component"),
        (lambda: make_clusters(n_per_component=[3, 3]), "n_per_component"),
        (lambda: make_clusters(std=-1.0), "std"),
        (lambda: make_clusters(random_state=-1), "random_state"),
        (lambda: make_clusters(random_state=1.5), "random_state"),
        (lambda: make_clusters(means=np.array([np.nan, 0.0])), "means"),
        (lambda: make_clusters_with_outliers(outlier_fraction=1.0), "outlier_fraction"),
        (lambda: make_clusters_with_outliers(outlier_fraction=-0.1), "outlier_fraction"),
        (lambda: make_clusters_with_outliers(box=-1.0), "box"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 1000), st.floats(0.05, 3.0))
def test_property_sizes_labels_and_seed(sizes, seed, std):
    means = np.arange(2 * len(sizes), dtype=float).reshape(len(sizes), 2) * 10.0
    x, labels, m = make_clusters(sizes, means=means, std=std, random_state=seed)
    assert x.shape == (sum(sizes), 2) and np.bincount(labels.numpy(), minlength=len(sizes)).tolist() == sizes
    assert torch.equal(x, make_clusters(sizes, means=means, std=std, random_state=seed)[0])
    # every point is a draw around its own centre: within 8 standard deviations
    assert float((x - m[labels]).abs().max()) < 8 * std
