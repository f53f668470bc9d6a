"""Tests of iemlib.legacy.prototypes: the gradient-descent prototype learner and its random-search foil."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.legacy.objectives import responsibilities
from iemlib.legacy.prototypes import (
    PrototypeRun,
    em_mean_update,
    fit_prototypes,
    fit_prototypes_random_search,
    prototype_distances,
    prototype_loss,
    prototype_loss_gradient,
    responsibility_entropy,
    update_alignment,
)


def _blobs(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x = np.concatenate([c + 0.7 * rng.normal(size=(n, 2)) for c in centers])
    m0 = x.mean(0) + 0.05 * rng.normal(size=(3, 2))
    return x, m0, centers


def test_distances_and_loss_values():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    m = np.array([[0.0, 0.0], [0.0, 2.0]])
    d = prototype_distances(x, m, sigma=2.0)
    np.testing.assert_allclose(d.numpy(), [[0.0, 0.5], [0.5, 1.0]])
    expected = -np.mean([math.log(1 + math.exp(-0.5)), math.log(math.exp(-0.5) + math.exp(-1.0))])
    assert float(prototype_loss(x, m, sigma=2.0)) == pytest.approx(expected, rel=1e-14)


def test_loss_gradient_closed_form_against_autograd():
    x, m0, _ = _blobs()
    m = torch.tensor(m0, requires_grad=True)
    (g,) = torch.autograd.grad(prototype_loss(x, m, sigma=1.3), m)
    np.testing.assert_allclose(prototype_loss_gradient(x, m0, sigma=1.3), g.numpy(), rtol=1e-12, atol=1e-15)


def test_gd_step_with_per_component_rate_is_an_em_step():
    """mu_j - (N sigma^2 / N_j) * dloss/dmu_j equals the EM mean update."""
    x, m0, _ = _blobs(1)
    sigma = 1.5
    r = responsibilities(prototype_distances(x, m0, sigma), dim=1).numpy()
    Nj = r.sum(0)
    step = m0 - (len(x) * sigma**2 / Nj)[:, None] * prototype_loss_gradient(x, m0, sigma)
    np.testing.assert_allclose(step, em_mean_update(x, m0, sigma), rtol=1e-12, atol=1e-12)


def test_em_update_keeps_an_unclaimed_prototype():
    x = np.zeros((4, 2))
    m = np.array([[0.0, 0.0], [1e3, 1e3]])
    out = em_mean_update(x, m, sigma=1.0)
    np.testing.assert_array_equal(out[1], m[1])
    np.testing.assert_allclose(out[0], [0.0, 0.0])


def test_fit_records_responsibilities_from_gradients():
    x, m0, centers = _blobs()
    run = fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=80)
    assert isinstance(run, PrototypeRun) and run.n_steps == 80 and run.method == "gradient descent"
    assert run.means.shape == (81, 3, 2) and run.responsibilities.shape == (81, len(x), 3)
    np.testing.assert_allclose(run.means[0], m0)
    # responsibilities read from autograd equal the softmax at every recorded step
    for t in (0, 10, 80):
        r = responsibilities(prototype_distances(x, run.means[t], 1.0), dim=1).numpy()
        np.testing.assert_allclose(run.responsibilities[t], r, atol=1e-12)
    np.testing.assert_allclose(run.responsibilities.sum(-1), 1.0, atol=1e-12)
    # the loss never increases (small step), the entropy drops from near log K, prototypes specialize
    assert np.all(np.diff(run.loss) <= 1e-12)
    assert run.entropy[0] > 0.9 * math.log(3) and run.entropy[-1] < 0.1
    found = run.final_means[np.argsort(run.final_means[:, 0] + 10 * run.final_means[:, 1])]
    want = centers[np.argsort(centers[:, 0] + 10 * centers[:, 1])]
    np.testing.assert_allclose(found, want, atol=0.3)
    # every step is a gradient step
    m1 = m0 - 1.0 * prototype_loss_gradient(x, m0, 1.0)
    np.testing.assert_allclose(run.means[1], m1, rtol=1e-12)


def test_fit_without_recording_and_zero_steps():
    x, m0, _ = _blobs()
    run = fit_prototypes(x, m0, n_steps=0, record_responsibilities=False)
    assert run.means.shape == (1, 3, 2) and run.responsibilities.shape[0] == 0
    assert run.accepted.shape == (0,)


def test_random_search_decreases_loss_and_is_not_responsibility_weighted():
    x, m0, _ = _blobs()
    far = np.vstack([m0, [[50.0, 50.0]]])  # a prototype with no responsibility for any point
    rs = fit_prototypes_random_search(x, far, sigma=1.0, step_size=0.2, n_steps=300, seed=3)
    gd = fit_prototypes(x, far, sigma=1.0, lr=1.0, n_steps=300, record_responsibilities=False)
    assert rs.method == "random search" and rs.accepted.any()
    assert np.all(np.diff(rs.loss) <= 0)
    assert rs.loss[-1] < rs.loss[0]
    # the unclaimed prototype: gradient descent leaves it exactly where it was (its r is 0) ...
    assert np.abs(gd.final_means[3] - far[3]).max() < 1e-12
    # ... random search moves it as much as any other
    assert np.linalg.norm(rs.final_means[3] - far[3]) > 0.5
    # deterministic given the seed
    rs2 = fit_prototypes_random_search(x, far, sigma=1.0, step_size=0.2, n_steps=300, seed=3)
    np.testing.assert_array_equal(rs.means, rs2.means)


def test_entropy_values():
    assert responsibility_entropy(np.full((3, 4), 0.25)) == pytest.approx(math.log(4))
    assert responsibility_entropy(np.eye(3)) == 0.0
    assert responsibility_entropy(torch.tensor([[0.5, 0.5, 0.0]])) == pytest.approx(math.log(2))


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=st.floats(-30, 30)))
def test_property_entropy_bounds(d):
    r = responsibilities(d, dim=1)
    h = responsibility_entropy(r)
    assert -1e-12 <= h <= math.log(d.shape[1]) + 1e-12


@given(
    hnp.arrays(np.float64, (5, 2), elements=st.floats(-5, 5)),
    hnp.arrays(np.float64, (3, 2), elements=st.floats(-5, 5)),
    st.floats(0.3, 3.0),
)
def test_property_gradient_is_responsibility_weighted(x, m, sigma):
    g = prototype_loss_gradient(x, m, sigma)
    r = responsibilities(prototype_distances(x, m, sigma), dim=1).numpy()
    expected = -np.einsum("ij,ijd->jd", r, x[:, None, :] - m[None]) / (len(x) * sigma**2)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)


def test_update_alignment_separates_gradient_descent_from_random_search():
    x, m0, _ = _blobs()
    far = np.vstack([m0, [[50.0, 50.0]]])
    gd = fit_prototypes(x, far, sigma=1.0, lr=1.0, n_steps=100, record_responsibilities=False)
    rs = fit_prototypes_random_search(x, far, sigma=1.0, step_size=0.2, n_steps=300, seed=3,
                                      record_responsibilities=False)
    cos_gd = update_alignment(x, gd, [0, 1, 2])
    cos_rs = update_alignment(x, rs, [0, 1, 2])
    assert cos_gd.size > 0 and np.abs(cos_gd - 1.0).max() < 1e-9  # every step is along the pull
    assert cos_rs.size == 3 * rs.accepted.sum()  # nothing converged: every pair counted
    assert np.all(np.abs(cos_rs) <= 1 + 1e-12) and cos_rs.mean() < 0.9 and np.any(cos_rs < 0)
    # the far prototype has no pull at all, so it is skipped by default
    assert update_alignment(x, gd, [3]).size == 0
    # matches a direct computation at one accepted step
    t = int(np.flatnonzero(rs.accepted)[0])
    step = rs.means[t + 1, 1] - rs.means[t, 1]
    pull = -prototype_loss_gradient(x, rs.means[t], 1.0)[1]
    direct = step @ pull / (np.linalg.norm(step) * np.linalg.norm(pull))
    assert update_alignment(x, rs, [1])[0] == pytest.approx(direct, rel=1e-12)


def test_update_alignment_bad_input():
    x, m0, _ = _blobs()
    gd = fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=3, record_responsibilities=False)
    with pytest.raises(ValueError, match="^run "):
        update_alignment(x, "not a run")
    with pytest.raises(ValueError, match="^x must have 2 columns"):
        update_alignment(np.zeros((4, 3)), gd)
    with pytest.raises(ValueError, match="^x "):
        update_alignment(np.full((4, 2), np.nan), gd)
    with pytest.raises(ValueError, match="^components "):
        update_alignment(x, gd, [5])
    with pytest.raises(ValueError, match="^components "):
        update_alignment(x, gd, [])
    with pytest.raises(ValueError, match="min_pull"):
        update_alignment(x, gd, min_pull=0.0)


def test_bad_input():
    x, m0, _ = _blobs()
    for fn in (prototype_distances, prototype_loss, prototype_loss_gradient, em_mean_update):
        with pytest.raises(ValueError, match="^x "):
            fn(x[:, 0], m0)
        with pytest.raises(ValueError, match="^x "):
            fn(np.full((2, 2), np.nan), m0)
        with pytest.raises(ValueError, match="^means must have 2 columns"):
            fn(x, np.zeros((3, 3)))
        with pytest.raises(ValueError, match="sigma"):
            fn(x, m0, sigma=0.0)
    for fn, kw in ((fit_prototypes, "lr"), (fit_prototypes_random_search, "step_size")):
        with pytest.raises(ValueError, match="^means_init "):
            fn(x, np.zeros(2))
        with pytest.raises(ValueError, match="^means_init must have 2 columns"):
            fn(x, np.zeros((3, 1)))
        with pytest.raises(ValueError, match=kw):
            fn(x, m0, **{kw: -1.0})
        with pytest.raises(ValueError, match="n_steps"):
            fn(x, m0, n_steps=-1)
        with pytest.raises(ValueError, match="n_steps"):
            fn(x, m0, n_steps=2.5)
        with pytest.raises(ValueError, match="sigma"):
            fn(x, m0, sigma=float("inf"))
        with pytest.raises(ValueError, match="record_responsibilities"):
            fn(x, m0, record_responsibilities=1)
        with pytest.raises(ValueError, match="^x "):
            fn(np.zeros((0, 2)), m0)
    with pytest.raises(ValueError, match="seed"):
        fit_prototypes_random_search(x, m0, seed=-1)
    with pytest.raises(ValueError, match="^r must hold"):
        responsibility_entropy(np.array([[0.5, 0.6]]))
    with pytest.raises(ValueError, match="^r "):
        responsibility_entropy(np.array([0.5, 0.5]))


# --------------------------------------------------------------------------- chapter 1 exercise checkers
def test_ch01_checkers():
    from iemlib.book.exercises import ch01

    assert ch01.check_responsibilities_from_gradient(ch01.EX1_GRAD * 2)
    assert not ch01.check_responsibilities_from_gradient(ch01.EX1_GRAD)
    assert ch01.check_em_learning_rate(ch01.EX2_N * ch01.EX2_SIGMA**2 / ch01.EX2_NJ)
    assert not ch01.check_em_learning_rate(1.0)
    h = float(-(ch01.EX3_R * np.log(ch01.EX3_R)).sum())
    assert ch01.check_entropy(h)
    fb = ch01.check_entropy(h / math.log(2))
    assert not fb and "bits" in fb.message
    for check in (ch01.check_responsibilities_from_gradient, ch01.check_em_learning_rate, ch01.check_entropy):
        for bad in (..., None, "text", [np.nan]):
            fb = check(bad)  # never raises
            assert not fb and isinstance(fb.message, str)


def test_em_mean_update_batch_matches_the_single_update():
    from iemlib.legacy.prototypes import em_mean_update_batch

    x, m0, _ = _blobs(2)
    rng = np.random.default_rng(0)
    ms = m0[None] + 0.3 * rng.normal(size=(3, 3, 2))
    out = em_mean_update_batch(x, ms, sigma=1.2, n_steps=4)
    for b in range(3):
        ref = ms[b]
        for _ in range(4):
            ref = em_mean_update(x, ref, sigma=1.2)
        np.testing.assert_allclose(out[b], ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(em_mean_update_batch(np.stack([x] * 3), ms, 1.2, 4), out, rtol=1e-12)
    np.testing.assert_array_equal(em_mean_update_batch(x, ms, 1.2, 0), ms)
    with pytest.raises(ValueError, match="means"):
        em_mean_update_batch(x, np.zeros((3, 3, 5)))


def test_nearest_center_match():
    from iemlib.legacy.prototypes import nearest_center_match

    c = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    m = np.array([[[0.1, 0.0], [5.0, 0.2], [0.0, 4.0]], [[0.1, 0.0], [0.2, 0.0], [0.0, 5.0]]])
    distinct, worst = nearest_center_match(m, c)
    assert distinct.tolist() == [True, False]
    np.testing.assert_allclose(worst, [1.0, 0.2])
    with pytest.raises(ValueError, match="centers"):
        nearest_center_match(m, np.zeros((3, 3)))
