"""Tests of iemlib.experiments.outliers: chapter 9's outlier sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iemlib.data import make_clusters_with_outliers
from iemlib.experiments.outliers import OUTLIER_METHODS, OutlierExample, OutlierSweep, outlier_sweep
from iemlib.prototypes import fit_prototypes, gradient_weights


@pytest.fixture(scope="module")
def sweep():
    return outlier_sweep((0.0, 0.2), seeds=[0, 1], n_per_component=50, n_steps=150)


def test_outlier_sweep_small(sweep):
    assert isinstance(sweep, OutlierSweep) and set(sweep.error) == set(OUTLIER_METHODS)
    assert sweep.error["lse"].shape == (2, 2) and sweep.fractions.tolist() == [0.0, 0.2] and sweep.seeds.tolist() == [0, 1]
    assert np.isnan(sweep.flag_outliers[0]).all()
    assert (sweep.error["lse"][1] > sweep.error["background"][1]).all()
    assert (sweep.error["lse"][1] > sweep.error["correntropy"][1]).all()
    assert np.allclose(sweep.outlier_share["lse"][1], 0.2, atol=0.01)  # every point counts once
    assert (sweep.outlier_share["background"][1] < 0.1).all()
    assert (sweep.outlier_share["correntropy"][1] < 0.1).all()
    np.testing.assert_array_equal(sweep.outlier_share["lse"][0], 0.0)
    assert (sweep.flag_outliers[1] > 0.5).all() and sweep.flag_inliers.max() < 0.05
    assert (sweep.bg_weight[1] > sweep.bg_weight[0]).all()


def test_examples_are_the_first_seed(sweep):
    assert len(sweep.examples) == 2 and isinstance(sweep.examples[1], OutlierExample)
    ex = sweep.examples[1]
    x, is_out, means = make_clusters_with_outliers(50, 0.2, 12.0, random_state=0)
    np.testing.assert_array_equal(ex.x, x.numpy())
    np.testing.assert_array_equal(ex.is_outlier, is_out.numpy())
    np.testing.assert_array_equal(ex.means, means.numpy())
    # the fitted means are those of a direct fit of that data set
    fit = fit_prototypes(x, means, objective="correntropy", n_steps=150, record_every=150)
    np.testing.assert_allclose(ex.fitted["correntropy"], fit.final_means, atol=1e-12)
    # the error is the mean distance of the fitted means from the true ones
    assert sweep.error["correntropy"][1, 0] == pytest.approx(np.linalg.norm(ex.fitted["correntropy"] - ex.means, axis=1).mean(), rel=1e-12)


def test_outlier_share_uses_the_update_weights(sweep):
    ex = sweep.examples[1]
    x, is_out = torch.as_tensor(ex.x), torch.as_tensor(ex.is_outlier)
    for k in ("lse", "correntropy"):
        w = gradient_weights(k, x, ex.fitted[k]).sum(-1)  # autograd of the loss w.r.t. the energies
        share = float((w * is_out).sum() / w.sum())
        assert share == pytest.approx(sweep.outlier_share[k][1, 0], rel=1e-10)


def test_outlier_sweep_bad_input():
    with pytest.raises(ValueError, match="fractions"):
        outlier_sweep([], seeds=[0])
    with pytest.raises(ValueError, match="fractions"):
        outlier_sweep([-0.1], seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        outlier_sweep([0.1], seeds=[-1])
    with pytest.raises(ValueError, match="lr"):
        outlier_sweep([0.1], seeds=[0], lr=0.0, n_per_component=5)
