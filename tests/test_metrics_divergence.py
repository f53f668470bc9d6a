"""iemlib.metrics, section "Divergences and correlations": kl_divergence and pearson."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib.metrics import kl_divergence, pearson


def test_kl_by_hand():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    expected = np.mean([0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75), 0.9 * math.log(1.8) + 0.1 * math.log(0.2)])
    assert kl_divergence(p, q) == pytest.approx(expected)
    assert kl_divergence(torch.tensor(p), torch.tensor(q, dtype=torch.float32)) == pytest.approx(expected, rel=1e-6)
    # 0 log 0 = 0; a zero in q is floored at eps, not infinite
    assert kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))
    assert np.isfinite(kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])))


@given(C=st.integers(2, 6), n=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_kl_properties(C, n, seed):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(C), size=n), rng.dirichlet(np.ones(C), size=n)
    kl = kl_divergence(p, q)
    assert kl >= -1e-12
    assert kl == pytest.approx(np.mean([(p[i] * np.log(p[i] / q[i])).sum() for i in range(n)]), rel=1e-9, abs=1e-12)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_kl_bad_input():
    p = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="q must have the same shape"):
        kl_divergence(p, np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="p must be finite"):
        kl_divergence(p * np.nan, p)
    with pytest.raises(ValueError, match="q must be a floating-point"):
        kl_divergence(p, np.array([[1, 0]]))
    with pytest.raises(ValueError, match="eps"):
        kl_divergence(p, p, eps=0.0)


@given(r=st.floats(-0.99, 0.99), seed=st.integers(0, 1000))
def test_pearson_properties(r, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(50)
    assert pearson(a, a) == pytest.approx(1.0)
    assert pearson(a, -3 * a + 1) == pytest.approx(-1.0)
    b = r * a + rng.standard_normal(50)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert pearson(torch.tensor(a), torch.tensor(b)) == pytest.approx(pearson(a, b), abs=1e-15)
    assert pearson(a.reshape(5, 10), b.reshape(5, 10)) == pytest.approx(pearson(a, b), abs=1e-15)  # flattened


@pytest.mark.parametrize(
    "a, b, match",
    [(np.ones(3), np.arange(3.0), "constant"), (np.ones(3), np.ones(2), "same shape"),
     (np.ones(1), np.ones(1), "at least two"), (np.array([1.0, np.nan]), np.ones(2), "a must be finite"),
     (np.arange(3.0), np.arange(3), "b must be a floating-point")],
)
def test_pearson_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        pearson(a, b)
