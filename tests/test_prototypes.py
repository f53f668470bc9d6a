"""Tests of iemlib.prototypes: the one learner (every kernel and option), its loss and closed-form
gradient, the EM update, coverage, starts, the taxonomy's assignment functions, evolution strategies
and learned scales."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib import prototypes as P
from iemlib.data import make_clusters, make_clusters_with_outliers
from iemlib.distances import objective_distances, prototype_distances
from iemlib.metrics import responsibility_entropy
from iemlib.objectives import LOSSES, OBJECTIVES, loss_from_distances, responsibilities

F64 = torch.float64


def _blobs(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x = np.concatenate([c + 0.7 * rng.normal(size=(n, 2)) for c in centers])
    m0 = x.mean(0) + 0.05 * rng.normal(size=(3, 2))
    return x, m0, centers


@pytest.fixture(scope="module")
def task():
    return make_clusters(n_per_component=60, random_state=3)


# =============================================================================================
# The loss, its closed-form gradient, the EM update
# =============================================================================================
def test_distances_and_loss_values():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    m = np.array([[0.0, 0.0], [0.0, 2.0]])
    expected = -np.mean([math.log(1 + math.exp(-0.5)), math.log(math.exp(-0.5) + math.exp(-1.0))])
    assert float(P.prototype_loss(x, m, sigma=2.0)) == pytest.approx(expected, rel=1e-14)
    z = -np.mean([1 + math.exp(-0.5), math.exp(-0.5) + math.exp(-1.0)])
    assert float(P.prototype_loss(x, m, sigma=2.0, objective="partition")) == pytest.approx(z, rel=1e-14)


def test_loss_gradient_closed_form_against_autograd_and_fd():
    x, m0, _ = _blobs()
    for objective in ("lse", "partition"):
        m = torch.tensor(m0, requires_grad=True)
        (g,) = torch.autograd.grad(P.prototype_loss(x, m, sigma=1.3, objective=objective), m)
        closed = P.prototype_loss_gradient(x, m0, sigma=1.3, objective=objective)
        np.testing.assert_allclose(closed, g.numpy(), rtol=1e-12, atol=1e-15)
        h = 1e-6
        for j, k in ((0, 0), (2, 1)):
            e = np.zeros_like(m0)
            e[j, k] = h
            fd = (float(P.prototype_loss(x, m0 + e, 1.3, objective)) - float(P.prototype_loss(x, m0 - e, 1.3, objective))) / (2 * h)
            assert abs(fd - closed[j, k]) < 1e-8


@pytest.mark.parametrize("objective", ["lse", "partition"])
def test_batch_loss_and_gradient_against_autograd(objective):
    x, _, _ = _blobs()
    means = np.random.default_rng(1).normal(size=(5, 3, 2))
    losses = P.prototype_loss(x, means, 1.3, objective)
    grads = P.prototype_loss_gradient(x, means, 1.3, objective)
    assert losses.shape == (5,) and grads.shape == (5, 3, 2)
    for b in range(5):
        m = torch.tensor(means[b], requires_grad=True)
        d = ((torch.tensor(x)[:, None, :] - m[None]) ** 2).sum(-1) / (2 * 1.3**2)
        loss = -torch.logsumexp(-d, 1).mean() if objective == "lse" else -torch.exp(-d).sum(1).mean()
        (g,) = torch.autograd.grad(loss, m)
        assert float(losses[b]) == pytest.approx(float(loss.detach()), rel=1e-13)
        np.testing.assert_allclose(grads[b], g.numpy(), rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(grads[b], P.prototype_loss_gradient(x, means[b], 1.3, objective), rtol=1e-12, atol=1e-15)
    # one data set per prototype set
    xs = np.stack([x + b for b in range(5)])
    np.testing.assert_allclose(P.prototype_loss_gradient(xs, means, 1.3, objective)[3],
                               P.prototype_loss_gradient(x + 3, means[3], 1.3, objective), rtol=1e-11, atol=1e-14)


@given(
    hnp.arrays(np.float64, (5, 2), elements=st.floats(-5, 5)),
    hnp.arrays(np.float64, (3, 2), elements=st.floats(-5, 5)),
    st.floats(0.3, 3.0),
)
def test_property_gradient_is_responsibility_weighted(x, m, sigma):
    g = P.prototype_loss_gradient(x, m, sigma)
    r = responsibilities(prototype_distances(x, m, sigma), dim=1).numpy()
    expected = -np.einsum("ij,ijd->jd", r, x[:, None, :] - m[None]) / (len(x) * sigma**2)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)


def test_gd_step_with_per_component_rate_is_an_em_step():
    """mu_j - (N sigma^2 / N_j) * dloss/dmu_j equals the EM mean update."""
    x, m0, _ = _blobs(1)
    sigma = 1.5
    r = responsibilities(prototype_distances(x, m0, sigma), dim=1).numpy()
    Nj = r.sum(0)
    step = m0 - (len(x) * sigma**2 / Nj)[:, None] * P.prototype_loss_gradient(x, m0, sigma)
    np.testing.assert_allclose(step, P.em_mean_update(x, m0, sigma), rtol=1e-12, atol=1e-12)


def test_em_update_keeps_an_unclaimed_prototype():
    x = np.zeros((4, 2))
    m = np.array([[0.0, 0.0], [1e3, 1e3]])
    out = P.em_mean_update(x, m, sigma=1.0)
    np.testing.assert_array_equal(out[1], m[1])
    np.testing.assert_allclose(out[0], [0.0, 0.0])
    np.testing.assert_array_equal(P.em_mean_update(x, m, 1.0, n_steps=0), m)


def test_em_mean_update_batch_matches_the_single_update():
    x, m0, _ = _blobs(2)
    ms = m0[None] + 0.3 * np.random.default_rng(0).normal(size=(3, 3, 2))
    out = P.em_mean_update(x, ms, sigma=1.2, n_steps=4)
    for b in range(3):
        ref = ms[b]
        for _ in range(4):
            ref = P.em_mean_update(x, ref, sigma=1.2)
        np.testing.assert_allclose(out[b], ref, rtol=1e-12, atol=1e-12)
        # n_steps single updates at once are the loop of single updates, bitwise
        np.testing.assert_array_equal(P.em_mean_update(x, ms[b], 1.2, n_steps=4), ref)
    np.testing.assert_allclose(P.em_mean_update(np.stack([x] * 3), ms, 1.2, 4), out, rtol=1e-12)
    np.testing.assert_array_equal(P.em_mean_update(x, ms, 1.2, 0), ms)
    # EM is a fixed point at convergence: the means stop moving
    conv = P.em_mean_update(x, m0, 1.0, n_steps=200)
    np.testing.assert_allclose(P.em_mean_update(x, conv, 1.0), conv, atol=1e-10)


def test_loss_gradient_em_bad_input():
    x, m0, _ = _blobs()
    for fn in (P.prototype_loss, P.prototype_loss_gradient, P.em_mean_update):
        with pytest.raises(ValueError, match="^x "):
            fn(x[:, 0], m0)
        with pytest.raises(ValueError, match="^x "):
            fn(np.full((2, 2), np.nan), m0)
        with pytest.raises(ValueError, match="^means must have 2 columns"):
            fn(x, np.zeros((3, 3)))
        with pytest.raises(ValueError, match="sigma"):
            fn(x, m0, sigma=0.0)
        with pytest.raises(ValueError, match="one prototype set per data set"):
            fn(np.stack([x, x]), np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="objective"):
        P.prototype_loss(x, m0, 1.0, "softmax")
    with pytest.raises(ValueError, match="n_steps"):
        P.em_mean_update(x, m0, n_steps=-1)


# =============================================================================================
# The learner: plain gradient descent (chapters 1, 3, 7)
# =============================================================================================
def test_fit_reads_responsibilities_off_the_gradient():
    x, m0, centers = _blobs()
    fit = P.fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=80, record_responsibilities=True)
    assert isinstance(fit, P.PrototypeFit) and fit.n_steps == 80 and fit.gradient == "autograd"
    assert fit.means.shape == (81, 3, 2) and fit.responsibilities.shape == (81, len(x), 3)
    assert fit.distance_gradient.shape == (81, len(x), 3) and fit.steps.tolist() == list(range(81))
    np.testing.assert_array_equal(fit.means[0], m0)
    # Theorem 1: N times the gradient of the loss with respect to the distances is r, at every step
    for t in (0, 10, 80):
        r = responsibilities(prototype_distances(x, fit.means[t], 1.0), dim=1).numpy()
        np.testing.assert_allclose(len(x) * fit.distance_gradient[t], r, atol=1e-12)
        np.testing.assert_array_equal(fit.responsibilities[t], r)
    np.testing.assert_allclose(fit.usage, fit.responsibilities.mean(1), rtol=1e-13)
    np.testing.assert_allclose(fit.entropy[5], responsibility_entropy(fit.responsibilities[5]), rtol=1e-15)
    # the loss never increases (small step), the entropy drops from near log K, prototypes specialize
    assert np.all(np.diff(fit.loss) <= 1e-12)
    np.testing.assert_array_equal(fit.objective_value, -fit.loss)
    assert fit.entropy[0] > 0.9 * math.log(3) and fit.entropy[-1] < 0.1
    found = fit.final_means[np.argsort(fit.final_means[:, 0] + 10 * fit.final_means[:, 1])]
    want = centers[np.argsort(centers[:, 0] + 10 * centers[:, 1])]
    np.testing.assert_allclose(found, want, atol=0.3)
    # every step is a gradient step, and step_norms measure it
    m1 = m0 - 1.0 * P.prototype_loss_gradient(x, m0, 1.0)
    np.testing.assert_allclose(fit.means[1], m1, rtol=1e-12)
    np.testing.assert_allclose(fit.step_norms[0], np.linalg.norm(m1 - m0, axis=1), rtol=1e-12)


def test_fit_without_recording_and_zero_steps():
    x, m0, _ = _blobs()
    fit = P.fit_prototypes(x, m0, n_steps=0)
    assert fit.means.shape == (1, 3, 2) and fit.responsibilities is None and fit.entropy is None
    assert fit.distance_gradient is None and fit.scales is None and fit.weights is None
    np.testing.assert_array_equal(fit.final_means, m0)
    fit = P.fit_prototypes(x, m0, n_steps=7, record_every=3)
    assert fit.steps.tolist() == [0, 3, 6, 7] and fit.loss.shape == (4,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.loss = None


def test_recording_does_not_change_the_run():
    x, m0, _ = _blobs(4)
    a = P.fit_prototypes(x, m0, n_steps=30, record_responsibilities=True)
    b = P.fit_prototypes(x, m0, n_steps=30, record_every=10)
    np.testing.assert_array_equal(a.means[::10], b.means)
    np.testing.assert_array_equal(a.loss[::10], b.loss)


def test_an_unclaimed_prototype_does_not_move():
    x, m0, _ = _blobs()
    far = np.vstack([m0, [[50.0, 50.0]]])
    fit = P.fit_prototypes(x, far, sigma=1.0, lr=1.0, n_steps=100)
    assert np.abs(fit.final_means[3] - far[3]).max() < 1e-12  # its responsibility is 0: so is its gradient
    assert fit.step_norms[:, 3].max() < 1e-12


@pytest.mark.parametrize("objective", ["lse", "partition"])
def test_closed_form_and_autograd_agree(objective):
    x, m0, _ = _blobs(5)
    a = P.fit_prototypes(x, m0, objective=objective, lr=0.8, n_steps=40)
    c = P.fit_prototypes(x, m0, objective=objective, lr=0.8, n_steps=40, gradient="closed_form")
    assert c.gradient == "closed_form" and c.means.shape == a.means.shape
    np.testing.assert_allclose(c.means, a.means, atol=1e-10)
    np.testing.assert_allclose(c.loss, a.loss, rtol=1e-12)


def test_batch_fit_matches_single_fit_and_per_seed_data():
    x, _, _ = _blobs(1)
    m0 = x.mean(0) + 0.1 * np.random.default_rng(1).normal(size=(2, 3, 2))
    for gradient in ("closed_form", "autograd"):
        run = P.fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=60, gradient=gradient)
        assert run.means.shape == (61, 2, 3, 2) and run.loss.shape == (61, 2) and run.step_norms.shape == (61, 2, 3)
        single = P.fit_prototypes(x, m0[1], sigma=1.0, lr=1.0, n_steps=60)
        np.testing.assert_allclose(run.means[:, 1], single.means, atol=1e-10)
        np.testing.assert_allclose(run.loss[:, 1], single.loss, rtol=1e-12)
        xs = np.stack([x, x[::-1]])  # one data set per run (the same points, reordered)
        run2 = P.fit_prototypes(xs, m0, sigma=1.0, lr=1.0, n_steps=60, gradient=gradient)
        np.testing.assert_allclose(run2.means, run.means, atol=1e-10)
    # a (K, D) start with (B, N, D) data: every run from the same start
    xs = np.stack([x, x + 1.0])
    run3 = P.fit_prototypes(xs, m0[0], n_steps=20)
    np.testing.assert_allclose(run3.final_means[1], P.fit_prototypes(x + 1.0, m0[0], n_steps=20).final_means, atol=1e-10)


def test_batch_fit_follows_the_single_fits_for_every_loss(task):
    x, _, _ = task
    mu0 = torch.stack([P.initial_prototypes(x, 3, random_state=s) for s in (0, 1)])
    for kind in LOSSES + ("partition",):
        hb = P.fit_prototypes(x, mu0, objective=kind, lr=0.5, n_steps=50, record_every=10, record_responsibilities=True)
        assert hb.means.shape == (6, 2, 3, 2) and hb.responsibilities.shape == (6, 2, len(x), 3) and hb.entropy.shape == (6, 2)
        for s in range(2):
            h = P.fit_prototypes(x, mu0[s], objective=kind, lr=0.5, n_steps=50, record_every=10)
            np.testing.assert_allclose(hb.final_means[s], h.final_means, atol=1e-10)
            assert abs(hb.loss[-1, s] - h.loss[-1]) < 1e-10


def test_coupling_specializes_partition_does_not():
    """With the log every prototype finds its own cluster; without it they all share one."""
    x, _, centers = _blobs(2, n=80)
    m0 = x.mean(0) + 0.1 * np.random.default_rng(2).normal(size=(4, 3, 2))
    lse_run = P.fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=300, gradient="closed_form", record_every=300)
    z_run = P.fit_prototypes(x, m0, sigma=1.0, lr=1.0, n_steps=300, objective="partition", gradient="closed_form", record_every=300)
    assert P.coverage(lse_run.final_means, centers, 1.0).within.tolist() == [3, 3, 3, 3]
    assert P.coverage(z_run.final_means, centers, 1.0).within.tolist() == [1, 1, 1, 1]


def test_lse_specializes_sigmoid_merges_correntropy_seeks_modes(task):
    x, _, m = task
    mu0 = P.initial_prototypes(x, 3, random_state=0)
    res = {k: P.fit_prototypes(x, mu0, objective=k, lr=0.5, n_steps=300, record_every=50) for k in OBJECTIVES}
    lse_cov = P.coverage(res["lse"].final_means, m)
    assert lse_cov.covered == 3 and lse_cov.error.max() < 0.3
    mu_s = torch.as_tensor(res["sigmoid"].final_means)
    assert float(torch.cdist(mu_s, mu_s).max()) < 1e-3  # all prototypes merged
    assert P.coverage(res["correntropy"].final_means, m).error.max() < 0.3  # each sits on a mode
    for h in res.values():
        assert h.means.shape == (len(h.steps), 3, 2) and h.steps[-1] == 300
        assert h.loss[-1] <= h.loss[0] + 1e-12


@given(
    hnp.arrays(np.float64, (6, 2), elements=st.floats(-4, 4)),
    hnp.arrays(np.float64, (3, 2), elements=st.floats(-4, 4)),
    st.sampled_from(LOSSES + ("partition",)),
    st.floats(0.5, 2.0),
)
def test_property_one_step_is_a_gradient_step_of_the_mean_loss(x, m, objective, sigma):
    fit = P.fit_prototypes(x, m, objective=objective, sigma=sigma, lr=0.1, n_steps=1)
    mu = torch.tensor(m, requires_grad=True)
    loss = loss_from_distances(objective, objective_distances(objective, x, mu, sigma)).mean()
    (g,) = torch.autograd.grad(loss, mu)
    np.testing.assert_allclose(fit.means[1], m - 0.1 * g.numpy(), rtol=1e-12, atol=1e-12)
    assert fit.loss[0] == pytest.approx(float(loss.detach()), rel=1e-13, abs=1e-300)


# =============================================================================================
# Learned scales (chapters 9, 10)
# =============================================================================================
@pytest.fixture(scope="module")
def mixture():
    x, _, m = make_clusters(n_per_component=[80, 40, 20], random_state=0)
    g = torch.Generator().manual_seed(0)
    return x, m + 0.3 * torch.randn(3, 2, generator=g, dtype=F64)


def test_without_logdet_scales_explode_and_objective_saturates(mixture):
    x, mu0 = mixture
    h = P.fit_prototypes(x, mu0, scales_init=torch.ones(3, dtype=F64), n_steps=600, record_every=100, record_responsibilities=True)
    assert np.all(np.diff(h.scales, axis=0) > 0)  # every scale grows
    assert h.scales[-1].min() > 20
    assert h.objective_value[-1] <= math.log(3) + 1e-12
    assert h.objective_value[-1] > math.log(3) - 1e-2
    assert h.entropy[-1] / math.log(3) > 0.99  # responsibilities uniform
    assert np.all(h.scale_gradient <= 0)  # descent always grows sigma
    np.testing.assert_array_equal(h.objective_value, -h.loss)  # no weight decay


def test_with_logdet_scales_settle(mixture):
    x, mu0 = mixture
    h = P.fit_prototypes(x, mu0, scales_init=torch.ones(3, dtype=F64), logdet=True, n_steps=600, record_every=100,
                         record_responsibilities=True)
    assert np.all((h.scales[-1] > 0.6) & (h.scales[-1] < 1.0))
    assert np.allclose(h.usage[-1], [80 / 140, 40 / 140, 20 / 140], atol=0.02)
    # the proper log-likelihood equals the objective minus the constants
    const = -math.log(3) - math.log(2 * math.pi)
    assert abs(h.log_likelihood[-1] - (h.objective_value[-1] + const)) < 1e-9
    # with the volume term the recorded distance gradient is still r / N
    np.testing.assert_allclose(len(x) * h.distance_gradient[-1], h.responsibilities[-1], atol=1e-12)


def test_scale_gradient_matches_autograd_of_the_loss(mixture):
    x, mu0 = mixture
    s0 = torch.tensor([0.7, 1.2, 1.0], dtype=F64)
    h = P.fit_prototypes(x, mu0, scales_init=s0, logdet=True, weight_decay=0.01, n_steps=1)
    log_sigma = torch.log(s0).requires_grad_(True)
    d = ((x[:, None] - mu0[None]) ** 2).sum(-1) / (2 * torch.exp(2 * log_sigma)) + 2 * log_sigma
    loss = -torch.logsumexp(-d, 1).mean() + 0.01 * torch.exp(-2 * log_sigma).sum()
    (g,) = torch.autograd.grad(loss, log_sigma)
    np.testing.assert_allclose(h.scale_gradient[0], g.numpy(), rtol=1e-10)
    assert h.loss[0] == pytest.approx(float(loss.detach()), rel=1e-13)
    assert h.objective_value[0] == pytest.approx(-(float(loss.detach()) - 0.01 * float((1 / s0**2).sum())), rel=1e-12)


def test_singular_collapse_with_logdet_and_weight_decay_stops_it(mixture):
    x, mu0 = mixture
    xs = torch.cat([x, torch.tensor([[8.0, 8.0]], dtype=F64)])
    mu1 = mu0.clone()
    mu1[2] = torch.tensor([8.0, 8.0], dtype=F64)
    s1 = torch.tensor([1.0, 1.0, 0.5], dtype=F64)
    h = P.fit_prototypes(xs, mu1, scales_init=s1, logdet=True, n_steps=600, record_every=100)
    assert h.scales[-1, 2] < 0.05 and np.all(np.diff(h.scales[:, 2]) < 0)
    rate = -np.diff(np.log(h.scales[:, 2]))[-1] / 100  # lr * D * r / N with r -> 1 for the isolated point
    assert abs(rate - 0.5 * 2 / len(xs)) < 1e-4
    hw = P.fit_prototypes(xs, mu1, scales_init=s1, logdet=True, weight_decay=0.01, n_steps=600, record_every=100)
    assert hw.scales[-1, 2] > 0.5


def test_scaled_mixture_objective_bounds(mixture):
    x, mu0 = mixture
    mu = mu0.clone()
    mu[2] = x[0]
    obj = [P.scaled_mixture_objective(x, mu, torch.tensor([1.0, 1.0, s], dtype=F64), logdet=True) for s in (1e-2, 1e-4, 1e-8)]
    assert obj[0] < obj[1] < obj[2]  # unbounded as sigma -> 0
    assert abs((obj[1] - obj[0]) - 2 * math.log(100) / len(x)) < 1e-6
    big = P.scaled_mixture_objective(x, mu0, torch.full((3,), 1e6, dtype=F64), logdet=False)
    assert math.log(3) - 1e-6 < big <= math.log(3)
    # at the start of a run it is the run's first recorded objective
    h = P.fit_prototypes(x, mu0, scales_init=torch.full((3,), 0.9, dtype=F64), logdet=True, n_steps=1)
    assert P.scaled_mixture_objective(x, mu0, torch.full((3,), 0.9, dtype=F64), logdet=True) == pytest.approx(h.objective_value[0], rel=1e-14)


def test_normalization_variant_holds_the_mean_distance(mixture):
    x, mu0 = mixture
    h = P.fit_prototypes(x, mu0, scales_init=torch.ones(3, dtype=F64), normalize=True, n_steps=200, record_every=100)
    assert np.isfinite(h.scales).all() and h.scales[-1].max() < 20  # the scales no longer run away
    assert set(P.SCALE_VARIANTS) >= {"no log-det", "log-det", "no log-det + normalization"}
    for name, (logdet, wd, norm) in P.SCALE_VARIANTS.items():
        assert isinstance(logdet, bool) and wd >= 0 and isinstance(norm, bool), name


# =============================================================================================
# A uniform background component (chapter 9)
# =============================================================================================
def test_background_likelihood_matches_direct_formula():
    x = torch.tensor([[0.0, 0.0], [0.3, -0.2], [5.0, 5.0], [-6.0, 4.0]], dtype=F64)
    mu0 = torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=F64)
    res = P.fit_prototypes(x, mu0, background=True, n_steps=1, lr=1e-12, record_responsibilities=True)
    w = torch.as_tensor(res.weights[0])
    assert res.weights.shape == (2, 3) and torch.allclose(w, torch.full((3,), 1 / 3, dtype=F64))
    V = float((x.max(0).values - x.min(0).values).prod())
    dens = w[0] / V + sum(w[j + 1] * torch.exp(-((x - mu0[j]) ** 2).sum(1) / 2) / (2 * math.pi) for j in range(2))
    assert abs(float(-torch.log(dens).mean()) - float(res.loss[0])) < 1e-9
    r = torch.as_tensor(res.responsibilities[0])
    assert torch.allclose(r.sum(1), torch.ones(4, dtype=F64))
    assert torch.allclose(r[:, 0], w[0] / V / dens, atol=1e-9)  # the background column
    # an explicit log volume, and sigma
    res2 = P.fit_prototypes(x, mu0, background=True, log_volume=math.log(V), sigma=1.0, n_steps=1, lr=1e-12)
    assert res2.loss[0] == pytest.approx(res.loss[0], rel=1e-14)
    res3 = P.fit_prototypes(x, mu0, background=True, log_volume=math.log(V), sigma=2.0, n_steps=1, lr=1e-12)
    dens3 = w[0] / V + sum(w[j + 1] * torch.exp(-((x - mu0[j]) ** 2).sum(1) / 8) / (8 * math.pi) for j in range(2))
    assert abs(float(-torch.log(dens3).mean()) - float(res3.loss[0])) < 1e-9


def test_background_ignores_far_points_and_keeps_the_means():
    x, is_out, means = make_clusters_with_outliers(n_per_component=60, outlier_fraction=0.2, box=12.0, random_state=4)
    res = P.fit_prototypes(x, means, background=True, n_steps=200, record_every=200, record_responsibilities=True)
    err = np.linalg.norm(res.final_means - means.numpy(), axis=1)
    assert err.max() < 0.3
    r0 = torch.as_tensor(res.responsibilities[-1][:, 0])
    far = is_out & (torch.cdist(x, means).min(1).values > 4.0)
    assert bool((r0[far] > 0.9).all())
    assert float(r0[~is_out].max()) < 0.5
    lse_fit = P.fit_prototypes(x, means, n_steps=200, record_every=200).final_means
    assert np.linalg.norm(lse_fit - means.numpy(), axis=1).mean() > 2 * err.mean()
    # batched runs equal single runs
    xb = torch.stack([x, x + 1.0])
    rb = P.fit_prototypes(xb, means, background=True, n_steps=50, record_every=50)
    r1 = P.fit_prototypes(x + 1.0, means, background=True, n_steps=50, record_every=50)
    assert rb.weights.shape == (2, 2, 4) and r1.weights.shape == (2, 4)
    np.testing.assert_allclose(rb.final_means[1], r1.final_means, atol=1e-10)


# =============================================================================================
# Options and bad input
# =============================================================================================
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"means_init": np.zeros(2)}, "^means_init "),
        ({"means_init": np.zeros((3, 1))}, "^means_init must have 2 columns"),
        ({"lr": -1.0}, "lr"),
        ({"n_steps": -1}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"record_every": 0}, "record_every"),
        ({"sigma": float("inf")}, "sigma"),
        ({"record_responsibilities": 1}, "record_responsibilities"),
        ({"x": np.zeros((0, 2))}, "^x "),
        ({"x": np.full((4, 2), np.nan)}, "^x "),
        ({"objective": "softmax"}, "objective"),
        ({"gradient": "numeric"}, "gradient"),
        ({"gradient": "closed_form", "objective": "sigmoid"}, "closed_form"),
        ({"logdet": True}, "scales_init"),
        ({"weight_decay": 0.1}, "scales_init"),
        ({"normalize": True}, "scales_init"),
        ({"logdet": 1, "scales_init": np.ones(3)}, "logdet"),
        ({"weight_decay": -1.0, "scales_init": np.ones(3)}, "weight_decay"),
        ({"scales_init": np.ones(2)}, "scales_init"),
        ({"scales_init": -np.ones(3)}, "scales_init"),
        ({"scales_init": np.ones(3), "objective": "sigmoid"}, "objective"),
        ({"scales_init": np.ones(3), "sigma": 2.0}, "sigma"),
        ({"scales_init": np.ones(3), "background": True}, "background"),
        ({"scales_init": np.ones(3), "means_init": np.zeros((2, 3, 2))}, "scales_init"),
        ({"log_volume": 1.0}, "background"),
        ({"background": True, "log_volume": np.ones(3), "means_init": np.zeros((2, 3, 2))}, "log_volume"),
        ({"background": True, "gradient": "closed_form"}, "closed_form"),
    ],
)
def test_fit_bad_input_names_the_argument(kwargs, name):
    x, m0, _ = _blobs()
    args = {"x": x, "means_init": m0, **kwargs}
    with pytest.raises(ValueError, match=name):
        P.fit_prototypes(args.pop("x"), args.pop("means_init"), **args)


def test_fit_batch_shape_mismatch():
    with pytest.raises(ValueError, match="means_init must hold one prototype set per data set"):
        P.fit_prototypes(torch.ones(2, 3, 2), torch.ones(3, 2, 2))


# =============================================================================================
# Coverage and starts
# =============================================================================================
def test_coverage_values():
    c = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    m = np.array([[[0.1, 0.0], [5.0, 0.2], [0.0, 4.0]], [[0.1, 0.0], [0.2, 0.0], [0.0, 5.0]]])
    cov = P.coverage(m, c, radius=0.5)
    assert cov.distinct.tolist() == [True, False] and cov.covered.tolist() == [3, 2]
    np.testing.assert_allclose(cov.worst_error, [1.0, 0.2])
    assert cov.within.tolist() == [2, 2]
    assert cov.nearest.tolist() == [[0, 1, 2], [0, 0, 2]]
    np.testing.assert_allclose(cov.gap, [1.0, 4.8])  # centre (5, 0): nearest prototype (0.2, 0)
    one = P.coverage(m[1], c)
    assert one.covered == 2 and one.distinct is False and one.within is None and isinstance(one.gap, float)
    np.testing.assert_allclose(one.error, [0.1, 0.2, 0.0])
    assert P.coverage(np.array([[[0.1, 0.0], [0.0, 0.2]], [[4.9, 0.0], [0.0, 0.0]]]), c[:2], 0.5).within.tolist() == [1, 2]


@given(hnp.arrays(np.float64, (4, 3, 2), elements=st.floats(-10, 10)), hnp.arrays(np.float64, (3, 2), elements=st.floats(-10, 10)))
def test_property_coverage_batch_equals_each_set(m, c):
    cov = P.coverage(m, c, radius=2.0)
    for b in range(4):
        one = P.coverage(m[b], c, radius=2.0)
        assert one.covered == cov.covered[b] and one.within == cov.within[b] and one.gap == cov.gap[b]
        assert 1 <= one.covered <= 3 and (one.distinct == (one.covered == 3))
        assert one.worst_error >= 0 and one.gap >= 0


def test_coverage_bad_input():
    c = np.zeros((2, 2))
    with pytest.raises(ValueError, match="centers"):
        P.coverage(np.zeros((2, 2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="radius"):
        P.coverage(np.zeros((2, 2, 2)), c, 0.0)
    with pytest.raises(ValueError, match="^means "):
        P.coverage(np.zeros(2), c)


def test_starts(task):
    x, _, _ = task
    mu0 = P.initial_prototypes(x, 4, spread=0.5, random_state=2)
    assert mu0.shape == (4, 2) and torch.equal(mu0, P.initial_prototypes(x, 4, spread=0.5, random_state=2))
    assert torch.allclose(P.initial_prototypes(x, 2, spread=0.0), x.mean(0).expand(2, 2))
    fs = P.far_starts(x, 3, radius=12.0, seeds=[0, 1, 2])
    assert fs.shape == (3, 3, 2)
    assert torch.allclose((fs - x.mean(0)).norm(dim=-1), torch.full((3, 3), 12.0, dtype=F64))
    with pytest.raises(ValueError, match="n_components"):
        P.initial_prototypes(x, 0)
    with pytest.raises(ValueError, match="random_state"):
        P.initial_prototypes(x, 2, random_state=-1)
    with pytest.raises(ValueError, match="seeds"):
        P.far_starts(x, seeds=[])
    with pytest.raises(ValueError, match="radius"):
        P.far_starts(x, radius=0.0)
    with pytest.raises(ValueError, match="^x must have at least 2 columns"):
        P.far_starts(torch.ones(3, 1, dtype=F64))


def test_coverage_table(task):
    x, _, m = task
    fs = P.far_starts(x, 3, radius=12.0, seeds=[0, 1])
    near = torch.stack([P.initial_prototypes(x, 3, random_state=s) for s in (0, 1)])
    tab = P.coverage_table(x, m, {"near": near, "far": fs}, n_steps=200)
    assert tab.starts == ("near", "far") and tab.objectives == LOSSES and tab.covered.shape == (2, 4, 2)
    assert (tab.counts("near", "lse") == 3).all() and (tab.counts("near", "sigmoid") == 1).all()
    fit = P.fit_prototypes(x, fs, objective="correntropy", n_steps=200, record_every=200)
    np.testing.assert_array_equal(tab.counts("far", "correntropy"), P.coverage(fit.final_means, m).covered)
    with pytest.raises(ValueError, match="starts"):
        P.coverage_table(x, m, {})
    with pytest.raises(ValueError, match="starts"):
        P.coverage_table(x, m, {"a": near, "b": fs[:1]})


def test_coverage_table_within_a_radius_and_frozen_baseline(task):
    x, _, m = task
    fs = P.far_starts(x, 3, radius=12.0, seeds=[0, 1, 2])
    near = torch.stack([P.initial_prototypes(x, 3, random_state=s) for s in (0, 1, 2)])
    tab = P.coverage_table(x, m, {"near": near, "far": fs}, ("lse", "sqrt"), n_steps=200, radius=0.8)
    assert tab.radius == 0.8 and tab.within.shape == tab.covered.shape == (2, 2, 3)
    assert tab.means_init.shape == (2, 3, 3, 2) and tab.final_means.shape == (2, 2, 3, 3, 2)
    # each family's batch gives what it gives alone, and the scores are coverage()'s
    for f, (name, mu0) in enumerate({"near": near, "far": fs}.items()):
        np.testing.assert_array_equal(tab.means_init[f], mu0.numpy())
        for o, k in enumerate(tab.objectives):
            fit = P.fit_prototypes(x, mu0, objective=k, n_steps=200, record_every=200)
            np.testing.assert_array_equal(tab.final_means[f, o], fit.final_means)
            cov = P.coverage(fit.final_means, m, radius=0.8)
            np.testing.assert_array_equal(tab.counts(name, k, "within"), cov.within)
            np.testing.assert_array_equal(tab.counts(name, k), cov.covered)
        start = P.coverage(mu0, m, radius=0.8)
        np.testing.assert_array_equal(tab.frozen(name, "within"), start.within)
        np.testing.assert_array_equal(tab.frozen(name), start.covered)
    # the starts sit far from every centre: the radius gives them nothing
    assert (tab.frozen("near", "within") == 0).all() and (tab.frozen("far", "within") == 0).all()
    # the sqrt loss hands far points almost no weight: from the far circle its prototypes barely move
    np.testing.assert_allclose(tab.final_means[1, 1], fs.numpy(), atol=1e-3)
    assert (tab.counts("far", "sqrt", "within") == 0).all()
    assert (tab.counts("near", "lse", "within") == 3).all()
    with pytest.raises(ValueError, match="metric"):
        tab.counts("near", "lse", "nearest")
    with pytest.raises(ValueError, match="start"):
        tab.frozen("wide")
    no_radius = P.coverage_table(x, m, {"near": near[:1]}, ("lse",), n_steps=2)
    assert no_radius.within is None and no_radius.frozen_within is None
    with pytest.raises(ValueError, match="radius"):
        no_radius.counts("near", "lse", "within")
    with pytest.raises(ValueError, match="radius"):
        P.coverage_table(x, m, {"near": near}, ("lse",), n_steps=2, radius=0.0)


# =============================================================================================
# How each objective assigns points (chapter 7)
# =============================================================================================
def test_memberships_and_weights(task):
    x, _, m = task
    mu = m + 0.3
    r = P.memberships("lse", x, mu)
    assert torch.allclose(r.sum(1), torch.ones(len(x), dtype=F64))
    assert torch.allclose(P.gradient_weights("lse", x, mu), r)
    e = prototype_distances(x, mu)
    for kind in ("correntropy", "partition"):
        assert torch.allclose(P.gradient_weights(kind, x, mu), torch.exp(-e))
        assert torch.equal(P.memberships(kind, x, mu), torch.exp(-e))
    assert torch.allclose(P.gradient_weights("sigmoid", x, mu), torch.sigmoid(e))
    assert torch.allclose(P.memberships("sigmoid", x, mu), torch.sigmoid(-e))
    Z = torch.exp(-e).sum(1)
    assert torch.allclose(P.gradient_weights("sqrt", x, mu), Z.sqrt()[:, None] * r)
    assert P.memberships("correntropy", x, mu).sum(1).std() > 0.1  # unnormalized memberships do not sum to one
    assert torch.allclose(P.weight_sums("sqrt", x, m), torch.exp(-prototype_distances(x, m)).sum(1).sqrt())
    assert torch.allclose(P.weight_sums("lse", x, m), torch.ones(len(x), dtype=F64))


def test_gradient_weights_batched_and_finite_differences(task):
    x, _, m = task
    mus = torch.stack([m, m + 0.5])
    for kind in LOSSES:
        wb = P.gradient_weights(kind, x, mus)
        assert wb.shape == (2, len(x), 3)
        assert torch.equal(wb[1], P.gradient_weights(kind, x, mus[1]))
    # w_ij = d loss_i / d e_ij by central differences in the energy
    e = prototype_distances(x[:3], m)
    h = 1e-6
    for kind in LOSSES:
        w = P.gradient_weights(kind, x[:3], m)
        E = torch.zeros_like(e)
        E[1, 2] = h
        lp = loss_from_distances(kind, objective_distances_from_energy(kind, e + E))
        lm = loss_from_distances(kind, objective_distances_from_energy(kind, e - E))
        assert abs(float((lp - lm)[1]) / (2 * h) - float(w[1, 2])) < 1e-8, kind


def objective_distances_from_energy(kind, e):
    return torch.sqrt(2.0 * e) if kind == "correntropy" else e


def test_prototype_gradient_norms_match_autograd(task):
    x, _, m = task
    x = x[:7]
    mu = m + torch.tensor([0.4, -0.2], dtype=F64)
    for kind in LOSSES:
        got = P.prototype_gradient_norms(kind, x, mu)
        for i in range(len(x)):
            mu_ = mu.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(loss_from_distances(kind, objective_distances(kind, x[i : i + 1], mu_)).sum(), mu_)
            assert abs(float(g.norm()) - float(got[i])) < 1e-10


def test_far_points():
    m = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.5]], dtype=F64)
    t = np.array([5.0, 10.0, 20.0])
    prof = {k: P.far_point_profile(k, m, t, direction=[1.0, -0.5]) for k in OBJECTIVES}
    assert isinstance(prof["lse"], P.FarPointProfile)
    assert np.all(np.diff(prof["lse"].nearest) > 0)
    assert np.all(np.diff(prof["lse"].grad_norm) > 0)  # LSE: a far point pulls harder
    assert np.all(np.diff(prof["sigmoid"].grad_norm) > 0)
    assert prof["correntropy"].grad_norm[-1] < 1e-30  # correntropy: vanishing
    assert abs(prof["lse"].grad_norm[-1] - prof["lse"].nearest[-1]) / prof["lse"].nearest[-1] < 0.05
    p = P.far_point_profile("correntropy", m, t, direction=[1.0, -0.5], origin=m[1])
    assert np.allclose(p.nearest, t)
    assert np.allclose(p.grad_norm[:1], t[:1] * np.exp(-(t[:1] ** 2) / 2), rtol=1e-6)
    p0 = P.far_point_profile("lse", m, t)  # default: along the first axis from the centroid
    np.testing.assert_allclose(p0.t, t)


def test_trajectory_coupling_lse_is_shared_mass(task):
    x, _, m = task
    mu = torch.stack([m, m + 0.5])  # (T=2, K, D)
    tc = P.trajectory_coupling("lse", x, mu)
    r = P.memberships("lse", x, m)
    assert abs(tc.mean_offdiag[0] - float((1 - (r**2).sum(1)).mean())) < 1e-12
    assert tc.mean_offdiag.shape == (2,)
    for kind in ("sigmoid", "correntropy", "partition"):
        assert np.all(P.trajectory_coupling(kind, x, mu).mean_offdiag == 0.0)
    tc2 = P.trajectory_coupling("lse", x, mu[:, None].expand(2, 3, 3, 2))
    assert tc2.shared.shape == (2, 3)
    # a PrototypeFit's batched path goes in as it is
    fit = P.fit_prototypes(x, torch.stack([m, m + 0.1]), n_steps=3)
    assert P.trajectory_coupling("lse", x, fit.means).shared.shape == (4, 2)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: P.memberships("softmax", torch.ones(3, 2), torch.ones(2, 2)), "objective"),
        (lambda: P.gradient_weights("lse", torch.ones(3, 2), torch.ones(2, 3)), "means"),
        (lambda: P.weight_sums("lse", torch.ones(3, 2), torch.ones(2, 2), sigma=0.0), "sigma"),
        (lambda: P.prototype_gradient_norms("lse", torch.ones(2, 3, 2), torch.ones(2, 2)), "x"),
        (lambda: P.far_point_profile("lse", torch.ones(2, 2), [1.0], direction=[0.0, 0.0]), "direction"),
        (lambda: P.far_point_profile("lse", torch.ones(2, 2), [1.0], direction=[1.0]), "direction"),
        (lambda: P.far_point_profile("lse", torch.ones(2, 2), [1.0], origin=[1.0, 2.0, 3.0]), "origin"),
        (lambda: P.far_point_profile("lse", torch.ones(2, 2), [np.nan]), "distances"),
        (lambda: P.trajectory_coupling("lse", torch.ones(3, 2), torch.ones(2, 2)), "means_path"),
        (lambda: P.trajectory_coupling("relu", torch.ones(3, 2), torch.ones(2, 2, 2)), "objective"),
    ],
)
def test_assignment_functions_reject_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# =============================================================================================
# Evolution strategies (chapter 3)
# =============================================================================================
def test_es_expectation_is_the_smoothed_gradient():
    x, _, _ = _blobs(3)
    rng = np.random.default_rng(3)
    mu = np.vstack([x.mean(0) + rng.normal(size=(3, 2)), [[9.0, 9.0]]])
    exact = P.prototype_loss_gradient(x, mu, 1.0)
    smooth = P.smoothed_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=2000, random_state=0)
    assert np.linalg.norm(smooth - exact) / np.linalg.norm(exact) < 0.02  # small smoothing, small bias
    est = P.es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=8000, random_state=1)
    cos = (est * smooth).sum() / (np.linalg.norm(est) * np.linalg.norm(smooth))
    assert cos > 0.99
    # prefixes: the estimates for several sizes equal separate calls with the same stream
    path = P.es_gradient(x, mu, n_samples=[1, 10, 100], sigma=1.0, smoothing=0.05, random_state=4)
    assert path.shape == (3, 4, 2)
    np.testing.assert_allclose(path[2], P.es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=100, random_state=4), rtol=1e-12)
    np.testing.assert_allclose(path[0], P.es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=1, random_state=4), rtol=1e-12)
    np.testing.assert_array_equal(path, P.es_gradient(x, mu, n_samples=[1, 10, 100], sigma=1.0, smoothing=0.05, random_state=4))
    # chunking does not change the estimate
    np.testing.assert_allclose(P.es_gradient(x, mu, n_samples=100, random_state=4, chunk=7),
                               P.es_gradient(x, mu, n_samples=100, random_state=4), rtol=1e-12, atol=1e-15)


def test_es_on_a_single_cluster_is_unbiased_for_the_exact_gradient_at_small_smoothing():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 2))
    mu = np.array([[0.5, -0.3]])
    exact = P.prototype_loss_gradient(x, mu, 1.0)  # one prototype: loss quadratic in mu, ES exact in expectation
    est = P.es_gradient(x, mu, sigma=1.0, smoothing=0.01, n_samples=4000, random_state=0)
    np.testing.assert_allclose(est, exact, atol=0.05 * np.linalg.norm(exact))
    smooth = P.smoothed_gradient(x, mu, sigma=1.0, smoothing=0.01, n_samples=50, random_state=0)
    np.testing.assert_allclose(smooth, exact, rtol=1e-10)  # a quadratic loss: smoothing changes nothing


def test_es_bad_input():
    x, _, _ = _blobs()
    mu = np.zeros((3, 2))
    with pytest.raises(ValueError, match="smoothing"):
        P.es_gradient(x, mu, smoothing=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        P.es_gradient(x, mu, n_samples=0)
    with pytest.raises(ValueError, match="n_samples"):
        P.es_gradient(x, mu, n_samples=[0, 5])
    with pytest.raises(ValueError, match="n_samples"):
        P.smoothed_gradient(x, mu, n_samples=0)
    with pytest.raises(ValueError, match="means"):
        P.es_gradient(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="random_state"):
        P.smoothed_gradient(x, mu, random_state=-1)
    with pytest.raises(ValueError, match="chunk"):
        P.es_gradient(x, mu, chunk=0)
    with pytest.raises(ValueError, match="x must be"):
        P.es_gradient(x, np.zeros((2, 3, 2)))


# =============================================================================================
# Chapter 10's diagnosed runs: responsibilities read off the backward pass
# =============================================================================================
def test_dead_component_and_the_readout():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 2, generator=g, dtype=F64) * 0.5 + torch.tensor([-3.0, 0.0], dtype=F64),
                   torch.randn(60, 2, generator=g, dtype=F64) * 0.5 + torch.tensor([3.0, 0.0], dtype=F64)])
    mu0 = torch.tensor([[-2.5, 0.2], [2.5, -0.2], [20.0, 20.0]], dtype=F64)
    h = P.fit_prototypes(x, mu0, lr=0.5, n_steps=40, record_every=10, record_responsibilities=True)
    assert h.steps.tolist() == [0, 10, 20, 30, 40]
    readout = h.distance_gradient / (1.0 / len(x))  # r = grad / c for loss = -c sum_i L_i, c = 1/N
    assert np.abs(readout - h.responsibilities).max() < 1e-12
    assert h.usage[-1, 2] < 1e-20 and np.allclose(h.final_means[2], mu0[2].numpy())  # dead: no responsibility, no step
    assert h.step_norms[:, 2].max() < 1e-20
    assert h.objective_value[-1] >= h.objective_value[0]


def test_volume_term_keeps_the_responsibilities_specialized():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(80, 2, generator=g, dtype=F64) * 0.8 + m for m in torch.tensor([[-3.0, 0.0], [3.0, 0.0]], dtype=F64)])
    mu0 = torch.tensor([[-3.0, 0.1], [3.0, -0.1]], dtype=F64)
    no = P.fit_prototypes(x, mu0, scales_init=torch.ones(2, dtype=F64), n_steps=150, record_every=50, record_responsibilities=True)
    ld = P.fit_prototypes(x, mu0, scales_init=torch.ones(2, dtype=F64), logdet=True, n_steps=150, record_every=50,
                          record_responsibilities=True)
    assert no.scales[-1].min() > 5.0 and no.entropy[-1] / math.log(2) > 0.9  # blur
    assert np.all(np.abs(ld.scales[-1] - 0.8) < 0.15) and ld.entropy[-1] / math.log(2) < 0.2
    assert np.allclose(ld.usage[-1], 0.5, atol=0.02)


def test_batched_runs_record_the_distance_gradient(task):
    x, _, _ = task
    mu0 = torch.stack([P.initial_prototypes(x, 3, random_state=s) for s in (0, 1)])
    h = P.fit_prototypes(x, mu0, n_steps=5, record_responsibilities=True)
    assert h.distance_gradient.shape == (6, 2, len(x), 3)
    np.testing.assert_allclose(len(x) * h.distance_gradient, h.responsibilities, atol=1e-12)  # r / N per run
    c = P.fit_prototypes(x, mu0, n_steps=5, record_responsibilities=True, gradient="closed_form")
    assert c.distance_gradient is None and c.responsibilities.shape == (6, 2, len(x), 3)
    np.testing.assert_allclose(c.responsibilities, h.responsibilities, atol=1e-12)
    tab = P.coverage_table(x, x[:3], {"a": mu0}, ("lse",), n_steps=2)
    with pytest.raises(ValueError, match="start"):
        tab.counts("b", "lse")
    with pytest.raises(ValueError, match="objective"):
        tab.counts("a", "sqrt")


def test_scale_prior_map_point_and_gradient(mixture):
    """A component alone on its point (r = 1, d = 0): the MAP scale of the inverse-gamma prior is
    a^2 = (D + 2 alpha + 2) / (2 beta); the prior's loss term matches autograd of its density."""
    x1 = torch.tensor([[1.0, -2.0]], dtype=F64)
    alpha, beta = 2.0, 0.8
    h = P.fit_prototypes(x1, x1.clone(), scales_init=torch.tensor([1.0], dtype=F64), logdet=True,
                         scale_prior=(alpha, beta), lr=0.05, n_steps=600, record_every=600)
    a2 = 1.0 / h.scales[-1, 0] ** 2
    assert a2 == pytest.approx((2 + 2 * alpha + 2) / (2 * beta), rel=1e-8)
    x, mu0 = mixture
    s0 = torch.tensor([0.7, 1.2, 1.0], dtype=F64)
    h = P.fit_prototypes(x, mu0, scales_init=s0, logdet=True, scale_prior=(alpha, beta), n_steps=1)
    log_a = (-torch.log(s0)).requires_grad_(True)
    d = ((x[:, None] - mu0[None]) ** 2).sum(-1) * torch.exp(2 * log_a) / 2 - 2 * log_a
    ig = torch.distributions.InverseGamma(torch.tensor(alpha, dtype=F64), torch.tensor(beta, dtype=F64))
    # the density of sigma^2 = exp(-2 log a), constants dropped by the loss but not by the gradient
    loss = -torch.logsumexp(-d, 1).mean() - ig.log_prob(torch.exp(-2 * log_a)).sum() / len(x)
    (g,) = torch.autograd.grad(loss, log_a)
    np.testing.assert_allclose(h.scale_gradient[0], -g.numpy(), rtol=1e-10)


def test_variance_floor_and_weight_decay_as_improper_prior(mixture):
    x, mu0 = mixture
    xs = torch.cat([x, torch.tensor([[8.0, 8.0]], dtype=F64)])
    mu1 = mu0.clone()
    mu1[2] = torch.tensor([8.0, 8.0], dtype=F64)
    s1 = torch.tensor([1.0, 1.0, 0.5], dtype=F64)
    h = P.fit_prototypes(xs, mu1, scales_init=s1, logdet=True, min_scale=0.2, n_steps=600, record_every=50)
    assert h.scales.min() >= 0.2 - 1e-12 and h.scales[-1, 2] == pytest.approx(0.2)
    wd = P.fit_prototypes(xs, mu1, scales_init=s1, logdet=True, weight_decay=0.01, n_steps=50, record_every=50)
    near = P.fit_prototypes(xs, mu1, scales_init=s1, logdet=True, scale_prior=(-1 + 1e-12, 0.01 * len(xs)),
                            n_steps=50, record_every=50)
    np.testing.assert_allclose(near.scales, wd.scales, rtol=1e-9)


@pytest.mark.parametrize("kw, match", [
    (dict(scale_prior=(2.0, 1.0)), "scale_prior and min_scale act on learned scales"),
    (dict(min_scale=0.1), "scale_prior and min_scale act on learned scales"),
])
def test_scale_remedies_need_learned_scales(mixture, kw, match):
    x, mu0 = mixture
    with pytest.raises(ValueError, match=match):
        P.fit_prototypes(x, mu0, **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(scale_prior=(-1.0, 1.0)), "^scale_prior "),
    (dict(scale_prior=(1.0, 0.0)), "^scale_prior "),
    (dict(scale_prior=3.0), "^scale_prior "),
    (dict(min_scale=0.0), "^min_scale "),
    (dict(min_scale=np.nan), "^min_scale "),
])
def test_scale_remedies_bad_input(mixture, kw, match):
    x, mu0 = mixture
    with pytest.raises(ValueError, match=match):
        P.fit_prototypes(x, mu0, scales_init=torch.ones(3, dtype=F64), **kw)
