"""Tests of iemlib.legacy.conditions: kernels other than the exponential, the unnormalized objective,
batched prototype learning, evolution-strategy gradients and the unshifted formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.legacy.conditions import (
    KERNELS,
    clusters_covered,
    es_gradient,
    es_gradient_path,
    fit_prototypes_batch,
    kernel_gradient,
    kernel_objective,
    kernel_posterior,
    kernel_score,
    naive_responsibilities,
    partition_objective,
    prototype_loss_batch,
    prototype_loss_gradient_batch,
    smoothed_gradient,
)
from iemlib.legacy.identities import fisher_identity
from iemlib.legacy.objectives import lse, responsibilities
from iemlib.legacy.prototypes import fit_prototypes, prototype_loss, prototype_loss_gradient

_POSITIVE = hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0.05, 20.0))


def _autograd(fn, d):
    d = torch.tensor(d, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(fn(d), d)[0].numpy()


def _central_fd(fn, d, h=1e-6):
    out = np.empty_like(d)
    for j in range(d.size):
        e = np.zeros_like(d)
        e[j] = h
        out[j] = (float(fn(torch.tensor(d + e))) - float(fn(torch.tensor(d - e)))) / (2 * h)
    return out


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@settings(max_examples=40, deadline=None)
@given(d=_POSITIVE)
def test_kernel_gradient_is_posterior_times_score(kernel, d):
    """dL_f/dd_j = w_j (log f)'(d_j): closed form vs autograd and vs finite differences."""
    closed = kernel_gradient(d, kernel)
    np.testing.assert_allclose(_autograd(lambda t: kernel_objective(t, kernel), d), closed, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(_central_fd(lambda t: kernel_objective(t, kernel), d), closed, rtol=1e-5, atol=1e-7)
    w = kernel_posterior(d, kernel)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(closed, w * kernel_score(d, kernel), rtol=1e-14)


def test_exponential_kernel_is_theorem1():
    d = np.array([0.3, 1.0, 4.0, -2.0])
    np.testing.assert_allclose(kernel_objective(d, "exponential"), lse(d), rtol=1e-14)
    np.testing.assert_allclose(kernel_gradient(d, "exponential"), -responsibilities(d), rtol=1e-14)


def test_only_the_exponential_is_shift_invariant_with_unit_mass():
    d = np.array([1.0, 2.0, 3.0])
    for kernel in ("inverse", "cauchy", "gaussian"):
        assert not np.allclose(kernel_posterior(d, kernel), kernel_posterior(d + 10, kernel), atol=1e-3)
        assert abs(np.abs(kernel_gradient(d, kernel)).sum() - 1.0) > 1e-2
    np.testing.assert_allclose(kernel_posterior(d, "exponential"), kernel_posterior(d + 10, "exponential"), rtol=1e-13)
    # the inverse kernel, by hand: w = (1/d)/sum(1/d), g = -w/d
    w = (1 / d) / (1 / d).sum()
    np.testing.assert_allclose(kernel_gradient(d, "inverse"), -w / d, rtol=1e-14)


def test_kernel_torch_keeps_dtype_and_graph():
    d = torch.tensor([0.5, 1.5], dtype=torch.float32, requires_grad=True)
    L = kernel_objective(d, "cauchy")
    assert L.dtype == torch.float32
    (g,) = torch.autograd.grad(L, d)
    np.testing.assert_allclose(g.numpy(), kernel_gradient(d.detach(), "cauchy").numpy(), rtol=1e-6)


def test_kernel_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        kernel_objective(np.ones(3), "laplace")
    with pytest.raises(ValueError, match="d must be > 0"):
        kernel_objective(np.array([1.0, 0.0]), "inverse")
    with pytest.raises(ValueError, match="d must be > -1"):
        kernel_posterior(np.array([-1.5]), "cauchy")
    with pytest.raises(ValueError, match="d"):
        kernel_gradient(np.array([np.nan, 1.0]), "exponential")


def test_partition_objective_split_is_r_but_no_coupling():
    d = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    g = _autograd(partition_objective, d.numpy())
    np.testing.assert_allclose(g, -np.exp(-d.numpy()), rtol=1e-14)
    np.testing.assert_allclose(g / g.sum(), responsibilities(d.numpy()), rtol=1e-13)
    H = torch.autograd.functional.hessian(partition_objective, d).numpy()
    assert np.all(H[~np.eye(3, dtype=bool)] == 0)
    H_lse = torch.autograd.functional.hessian(lse, d).numpy()
    r = responsibilities(d.numpy())
    np.testing.assert_allclose(H_lse[0, 1], -r[0] * r[1], rtol=1e-12)


def _blobs(seed=0, n=40):
    rng = np.random.default_rng(seed)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x = np.concatenate([c + 0.7 * rng.normal(size=(n, 2)) for c in centers])
    return x, centers, rng


@pytest.mark.parametrize("objective", ["lse", "partition"])
def test_batch_loss_and_gradient_against_autograd(objective):
    x, _, rng = _blobs()
    means = rng.normal(size=(5, 3, 2))
    losses = prototype_loss_batch(x, means, 1.3, objective)
    grads = prototype_loss_gradient_batch(x, means, 1.3, objective)
    for b in range(5):
        m = torch.tensor(means[b], requires_grad=True)
        d = ((torch.tensor(x)[:, None, :] - m[None]) ** 2).sum(-1) / (2 * 1.3**2)
        loss = -lse(d, dim=1).mean() if objective == "lse" else -torch.exp(-d).sum(1).mean()
        (g,) = torch.autograd.grad(loss, m)
        assert losses[b] == pytest.approx(float(loss.detach()), rel=1e-13)
        np.testing.assert_allclose(grads[b], g.numpy(), rtol=1e-11, atol=1e-14)
    if objective == "lse":
        assert losses[0] == pytest.approx(float(prototype_loss(x, means[0], 1.3)), rel=1e-13)


def test_batch_fit_matches_single_fit_and_per_seed_data():
    x, centers, rng = _blobs(1)
    m0 = x.mean(0) + 0.1 * rng.normal(size=(2, 3, 2))
    run = fit_prototypes_batch(x, m0, sigma=1.0, lr=1.0, n_steps=60)
    single = fit_prototypes(x, m0[1], sigma=1.0, lr=1.0, n_steps=60, record_responsibilities=False)
    np.testing.assert_allclose(run.means[:, 1], single.means, atol=1e-10)
    np.testing.assert_allclose(run.loss[:, 1], single.loss, rtol=1e-12)
    # one data set per run
    xs = np.stack([x, x[::-1]])
    run2 = fit_prototypes_batch(xs, m0, sigma=1.0, lr=1.0, n_steps=60)
    np.testing.assert_allclose(run2.means, run.means, atol=1e-10)


def test_coupling_specializes_partition_does_not():
    """With the log every prototype finds its own cluster; without it they all share one."""
    x, centers, rng = _blobs(2, n=80)
    m0 = x.mean(0) + 0.1 * rng.normal(size=(4, 3, 2))
    lse_run = fit_prototypes_batch(x, m0, sigma=1.0, lr=1.0, n_steps=300, objective="lse")
    z_run = fit_prototypes_batch(x, m0, sigma=1.0, lr=1.0, n_steps=300, objective="partition")
    assert clusters_covered(lse_run.final_means, centers, 1.0).tolist() == [3, 3, 3, 3]
    assert clusters_covered(z_run.final_means, centers, 1.0).tolist() == [1, 1, 1, 1]


def test_clusters_covered_values_and_bad_input():
    c = np.array([[0.0, 0.0], [5.0, 0.0]])
    m = np.array([[[0.1, 0.0], [0.0, 0.2]], [[4.9, 0.0], [0.0, 0.0]]])
    assert clusters_covered(m, c, 0.5).tolist() == [1, 2]
    with pytest.raises(ValueError, match="centers"):
        clusters_covered(m, np.zeros((2, 3)), 0.5)
    with pytest.raises(ValueError, match="radius"):
        clusters_covered(m, c, 0.0)


def test_es_expectation_is_the_smoothed_gradient():
    x, _, rng = _blobs(3)
    mu = np.vstack([x.mean(0) + rng.normal(size=(3, 2)), [[9.0, 9.0]]])
    exact = prototype_loss_gradient(x, mu, 1.0)
    smooth = smoothed_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=2000, seed=0)
    assert np.linalg.norm(smooth - exact) / np.linalg.norm(exact) < 0.02  # small smoothing, small bias
    est = es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=8000, seed=1)
    cos = (est * smooth).sum() / (np.linalg.norm(est) * np.linalg.norm(smooth))
    assert cos > 0.99
    # prefixes: the path's estimates equal separate calls with the same stream
    path = es_gradient_path(x, mu, [1, 10, 100], sigma=1.0, smoothing=0.05, seed=4)
    np.testing.assert_allclose(path[2], es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=100, seed=4), rtol=1e-12)
    np.testing.assert_allclose(path[0], es_gradient(x, mu, sigma=1.0, smoothing=0.05, n_samples=1, seed=4), rtol=1e-12)
    # deterministic
    np.testing.assert_array_equal(path, es_gradient_path(x, mu, [1, 10, 100], sigma=1.0, smoothing=0.05, seed=4))


def test_es_on_a_single_cluster_is_unbiased_for_the_exact_gradient_at_small_smoothing():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 2))
    mu = np.array([[0.5, -0.3]])
    exact = prototype_loss_gradient(x, mu, 1.0)  # one prototype: loss is quadratic in mu, ES exact in expectation
    est = es_gradient(x, mu, sigma=1.0, smoothing=0.01, n_samples=4000, seed=0)
    np.testing.assert_allclose(est, exact, atol=0.05 * np.linalg.norm(exact))  # noise ~ |g| / sqrt(n)


def test_es_bad_input():
    x, _, _ = _blobs()
    mu = np.zeros((3, 2))
    with pytest.raises(ValueError, match="smoothing"):
        es_gradient(x, mu, smoothing=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        es_gradient(x, mu, n_samples=0)
    with pytest.raises(ValueError, match="means"):
        es_gradient(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="sample_sizes"):
        es_gradient_path(x, mu, [0, 5])
    with pytest.raises(ValueError, match="objective"):
        prototype_loss_batch(x, mu[None], 1.0, "softmax")
    with pytest.raises(ValueError, match="one prototype set per data set"):
        prototype_loss_batch(np.stack([x, x]), np.zeros((3, 3, 2)))


def test_naive_responsibilities_lose_accuracy_then_fail():
    ok = naive_responsibilities(np.array([10.0, 11.0, 12.0], dtype=np.float32))
    np.testing.assert_allclose(ok, responsibilities(np.array([10.0, 11.0, 12.0])), rtol=1e-6)
    assert ok.dtype == np.float32
    sub = naive_responsibilities(np.array([100.0, 101.0, 102.0], dtype=np.float32))
    rel = np.abs(sub - responsibilities(np.array([100.0, 101.0, 102.0]))) / responsibilities(np.array([100.0, 101.0, 102.0]))
    assert np.isfinite(sub).all() and abs(sub.sum() - 1) < 1e-6 and rel.max() > 1e-2  # finite, normalized, wrong
    assert np.isnan(naive_responsibilities(np.array([104.0, 105.0], dtype=np.float32))).all()
    assert np.isnan(naive_responsibilities(np.array([-100.0, -99.0], dtype=np.float32))).all()  # overflow side
    np.testing.assert_allclose(naive_responsibilities(np.array([720.0, 721.0])), responsibilities(np.array([0.0, 1.0])), rtol=1e-9)


def test_fisher_identity_both_sides_equal():
    x = torch.tensor([0.3, -1.2], dtype=torch.float64)
    log_prior = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))

    def log_joint(mu):
        return log_prior - 0.5 * ((x - mu) ** 2).sum(-1)

    left, right = fisher_identity(log_joint, np.random.default_rng(0).normal(size=(3, 2)))
    np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-15)
    d = np.array([0.5, 1.0, 2.0])
    left, right = fisher_identity(lambda t: -t, d)
    np.testing.assert_allclose(left, -responsibilities(d), rtol=1e-14)
    np.testing.assert_allclose(right, -responsibilities(d), rtol=1e-14)
    with pytest.raises(ValueError, match="log_joint"):
        fisher_identity("not callable", d)
    with pytest.raises(ValueError, match="1-D"):
        fisher_identity(lambda t: t.sum(), d)
