"""Tests of iemlib.metrics.responsibility_entropy (the CORE section of metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.metrics import responsibility_entropy
from iemlib.objectives import responsibilities


def test_entropy_values():
    assert responsibility_entropy(np.full((3, 4), 0.25)) == pytest.approx(math.log(4))
    assert responsibility_entropy(np.eye(3)) == 0.0
    assert responsibility_entropy(torch.tensor([[0.5, 0.5, 0.0]])) == pytest.approx(math.log(2))
    # the mean over points
    r = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert responsibility_entropy(r) == pytest.approx(math.log(2) / 2)
    assert isinstance(responsibility_entropy(r), float)
    # float32 input is computed in float64
    assert responsibility_entropy(np.full((2, 3), 1 / 3, dtype=np.float32)) == pytest.approx(math.log(3), rel=1e-6)


def test_batched_entropies():
    r = np.stack([np.full((5, 4), 0.25), np.tile(np.eye(4)[:1], (5, 1))])  # (2, 5, 4)
    h = responsibility_entropy(r)
    assert h.shape == (2,)
    np.testing.assert_allclose(h, [math.log(4), 0.0])
    rr = np.stack([r, r[::-1]])  # (2, 2, 5, 4)
    np.testing.assert_allclose(responsibility_entropy(rr), [[math.log(4), 0.0], [0.0, math.log(4)]])


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=st.floats(-30, 30)))
def test_property_entropy_bounds(d):
    r = responsibilities(d, dim=1)
    h = responsibility_entropy(r)
    assert -1e-12 <= h <= math.log(d.shape[1]) + 1e-12
    # equals the definition on rows without zeros
    rr = np.clip(r, 1e-300, None)
    assert h == pytest.approx(float(-(r * np.log(rr)).sum(1).mean()), abs=1e-12)


@given(hnp.arrays(np.float64, (3, 4, 3), elements=st.floats(-10, 10)))
def test_property_batch_equals_each_matrix(d):
    r = responsibilities(d, dim=-1)
    h = responsibility_entropy(r)
    for b in range(3):
        assert h[b] == responsibility_entropy(r[b])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[0.5, 0.6]]), "^r must hold"),
        (np.array([[1.5, -0.5]]), "^r must hold"),
        (np.array([0.5, 0.5]), "^r "),
        (np.array([[np.nan, 1.0]]), "^r "),
        (np.zeros((0, 3)), "^r "),
        (np.array([[1, 0]]), "^r "),
    ],
)
def test_entropy_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        responsibility_entropy(bad)
