"""Tests of iemlib.distances: prototype distances (one set or a batch), the objectives' distances, and
|Wx+b| as a Mahalanobis distance along principal directions."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from iemlib.distances import (
    PrincipalAffine,
    objective_distances,
    principal_kernel_log_density,
    prototype_distances,
    abs_via_relu,
    affine_abs,
    mahalanobis,
    mahalanobis_ellipse,
    principal_affine,
    principal_distances,
    relu,
)


def _gaussian(seed, D):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D))
    cov = A @ A.T + 0.3 * np.eye(D)
    return rng.normal(size=D), cov, rng.normal(size=(25, D)) * 2


@given(seed=st.integers(0, 10_000), D=st.integers(1, 5))
def test_mahalanobis_matches_scipy(seed, D):
    mean, cov, x = _gaussian(seed, D)
    VI = np.linalg.inv(cov)
    want = np.array([scipy_mahalanobis(xi, mean, VI) for xi in x])
    np.testing.assert_allclose(mahalanobis(x, mean, cov), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mahalanobis(x[0], mean, cov), want[0], rtol=1e-10)


@given(seed=st.integers(0, 10_000), D=st.integers(1, 5))
def test_principal_decomposition_sums_to_squared_mahalanobis(seed, D):
    mean, cov, x = _gaussian(seed, D)
    W, b, lam, V = principal_affine(mean, cov)
    # W_k = lambda_k^{-1/2} v_k^T and b_k = -W_k mu
    np.testing.assert_allclose(W, V.T / np.sqrt(lam)[:, None], rtol=1e-12)
    np.testing.assert_allclose(b, -W @ mean, rtol=1e-12, atol=1e-12)
    per_dir = principal_distances(x, mean, cov)
    assert per_dir.shape == x.shape
    np.testing.assert_allclose((per_dir**2).sum(1), mahalanobis(x, mean, cov) ** 2, rtol=1e-9, atol=1e-11)
    # each direction is |lambda^{-1/2} v^T (x - mu)|
    direct = np.abs((x - mean) @ V) / np.sqrt(lam)
    np.testing.assert_allclose(per_dir, direct, rtol=1e-10, atol=1e-12)


@given(z=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_abs_is_sum_of_two_relus(z):
    z = np.array(z)
    np.testing.assert_array_equal(abs_via_relu(z), np.abs(z))
    np.testing.assert_array_equal(relu(z) - relu(-z), z)
    zt = torch.tensor(z)
    assert torch.equal(abs_via_relu(zt), zt.abs())


def test_torch_and_numpy_agree_and_autograd_flows():
    mean, cov, x = _gaussian(3, 3)
    xt = torch.tensor(x, requires_grad=True)
    dt = mahalanobis(xt, torch.tensor(mean), torch.tensor(cov))
    np.testing.assert_allclose(dt.detach().numpy(), mahalanobis(x, mean, cov), rtol=1e-12)
    dt.sum().backward()
    # d/dx sqrt(q) = Sigma^{-1}(x - mu) / dist
    want = (x - mean) @ np.linalg.inv(cov) / mahalanobis(x, mean, cov)[:, None]
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-9)
    pa = principal_affine(torch.tensor(mean), torch.tensor(cov))
    np.testing.assert_allclose(pa.W.numpy(), principal_affine(mean, cov).W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        affine_abs(xt.detach(), pa.W, pa.b).numpy(), principal_distances(x, mean, cov), rtol=1e-10, atol=1e-12
    )


def test_ellipse_lies_on_the_level_set():
    mean, cov, _ = _gaussian(7, 2)
    pts = mahalanobis_ellipse(mean, cov, radius=2.5, n_points=50)
    np.testing.assert_allclose(mahalanobis(pts, mean, cov), 2.5, rtol=1e-12)


def test_affine_abs_shapes():
    x = np.arange(6.0).reshape(3, 2)
    assert affine_abs(x, np.ones((4, 2)), np.zeros(4)).shape == (3, 4)
    assert affine_abs(x, np.array([1.0, -1.0]), 0.5).shape == (3,)
    np.testing.assert_allclose(affine_abs(x[0], np.array([1.0, -1.0]), 0.5), 0.5)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: mahalanobis(np.array([[np.nan, 0.0]]), np.zeros(2), np.eye(2)), "x"),
        (lambda: mahalanobis(np.array([[np.inf, 0.0]]), np.zeros(2), np.eye(2)), "x"),
        (lambda: mahalanobis(np.zeros((0, 2)), np.zeros(2), np.eye(2)), "x"),
        (lambda: mahalanobis(np.zeros((2, 2), dtype=int), np.zeros(2), np.eye(2)), "x"),
        (lambda: mahalanobis(np.zeros((1, 3)), np.zeros(2), np.eye(2)), "x"),
        (lambda: mahalanobis(np.zeros((1, 2)), np.zeros(2), np.eye(3)), "cov"),
        (lambda: mahalanobis(np.zeros((1, 2)), np.zeros(2), -np.eye(2)), "cov"),
        (lambda: mahalanobis(np.zeros((1, 2)), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])), "cov"),
        (lambda: mahalanobis(np.zeros((1, 2)), np.zeros((2, 2)), np.eye(2)), "mean"),
        (lambda: principal_affine(np.array([np.nan, 0.0]), np.eye(2)), "mean"),
        (lambda: principal_distances(np.zeros((2, 2, 2)), np.zeros(2), np.eye(2)), "x"),
        (lambda: affine_abs(np.zeros((2, 2)), np.ones((3, 3)), np.zeros(3)), "W"),
        (lambda: affine_abs(np.zeros((2, 2)), np.ones((3, 2)), np.zeros(2)), "b"),
        (lambda: affine_abs(np.zeros((2, 2)), np.ones((3, 2)), np.array([0.0, np.inf, 0.0])), "b"),
        (lambda: abs_via_relu(np.array([], dtype=float)), "z"),
        (lambda: abs_via_relu(np.array([1, 2])), "z"),
        (lambda: relu(torch.tensor([float("nan")])), "z"),
        (lambda: mahalanobis_ellipse(np.zeros(3), np.eye(3)), "mean"),
        (lambda: mahalanobis_ellipse(np.zeros(2), np.eye(2), radius=-1.0), "radius"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ----------------------------------------------------------------------------- kernels of the units
def test_principal_kernel_log_densities_normalize_and_match_scipy():
    from scipy.stats import laplace, multivariate_normal

    mu = np.array([1.0, 0.5])
    Sigma = np.array([[2.0, 1.2], [1.2, 1.0]])
    g = np.linspace(-25, 27, 801)
    G1, G2 = np.meshgrid(g, g)
    grid = np.stack([G1.ravel(), G2.ravel()], 1)
    cell = (g[1] - g[0]) ** 2
    for kernel in ("gaussian", "laplace"):
        p = np.exp(principal_kernel_log_density(grid, mu, Sigma, kernel))
        assert abs(p.sum() * cell - 1.0) < 2e-3, kernel  # a density (quadrature on a grid)
        m = (p[:, None] * grid).sum(0) * cell
        np.testing.assert_allclose(m, mu, atol=5e-3)
    pg = principal_kernel_log_density(grid[:50], mu, Sigma, "gaussian")
    np.testing.assert_allclose(pg, multivariate_normal(mu, Sigma).logpdf(grid[:50]), rtol=1e-12)
    # covariance of the Laplace-product density is 2 Sigma
    p = np.exp(principal_kernel_log_density(grid, mu, Sigma, "laplace"))
    C = ((p[:, None, None] * np.einsum("nd,ne->nde", grid - mu, grid - mu)).sum(0)) * cell
    np.testing.assert_allclose(C, 2 * Sigma, atol=3e-2)
    # 1-D: a Laplace density with scale sqrt(var)
    x = np.linspace(-3, 3, 7)[:, None]
    np.testing.assert_allclose(principal_kernel_log_density(x, np.array([0.5]), np.array([[4.0]]), "laplace"),
                               laplace(loc=0.5, scale=2.0).logpdf(x[:, 0]), rtol=1e-12)


def test_principal_kernel_log_density_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        principal_kernel_log_density(np.zeros((2, 2)), np.zeros(2), np.eye(2), "cauchy")
    with pytest.raises(ValueError, match="x"):
        principal_kernel_log_density(np.zeros((2, 3)), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="cov"):
        principal_kernel_log_density(np.zeros((2, 2)), np.zeros(2), -np.eye(2))


# ----------------------------------------------------------------------------- prototype distances
def test_prototype_distances_values():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    m = np.array([[0.0, 0.0], [0.0, 2.0]])
    d = prototype_distances(x, m, sigma=2.0)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), [[0.0, 0.5], [0.5, 1.0]])
    assert torch.equal(prototype_distances(x, m), 4.0 * d)


@given(
    hnp.arrays(np.float64, (4, 3, 2), elements=st.floats(-5, 5)),
    hnp.arrays(np.float64, (4, 6, 2), elements=st.floats(-5, 5)),
    st.floats(0.3, 3.0),
)
def test_property_batch_equals_each_set_bitwise(means, xs, sigma):
    """A batch of prototype sets (shared data or one data set per set) gives each set's distances exactly."""
    shared = prototype_distances(xs[0], means, sigma)
    per_set = prototype_distances(xs, means, sigma)
    assert shared.shape == (4, 6, 3) and per_set.shape == (4, 6, 3)
    for b in range(4):
        assert torch.equal(shared[b], prototype_distances(xs[0], means[b], sigma))
        assert torch.equal(per_set[b], prototype_distances(xs[b], means[b], sigma))
    # one prototype set, many data sets
    assert torch.equal(prototype_distances(xs, means[0], sigma)[2], prototype_distances(xs[2], means[0], sigma))
    # the definition
    direct = ((xs[:, :, None, :] - means[:, None, :, :]) ** 2).sum(-1) / (2 * sigma**2)
    np.testing.assert_allclose(per_set.numpy(), direct, rtol=1e-13, atol=1e-300)


def test_prototype_distances_autograd_and_dtype():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]], dtype=torch.float64)
    m = torch.tensor([[0.5, 0.5], [-1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    d = prototype_distances(x, m, sigma=1.5)
    (g,) = torch.autograd.grad(d.sum(), m)
    # d d_ij / d mu_j = (mu_j - x_i) / sigma^2, summed over i
    np.testing.assert_allclose(g.numpy(), ((m.detach()[None] - x[:, None]) / 1.5**2).sum(0).numpy(), rtol=1e-14)
    d32 = prototype_distances(x.float(), m.detach())
    assert d32.dtype == torch.float32  # a torch x keeps its dtype; the means follow it


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: prototype_distances(np.zeros(2), np.zeros((3, 2))), "^x "),
        (lambda: prototype_distances(np.full((2, 2), np.nan), np.zeros((3, 2))), "^x "),
        (lambda: prototype_distances(np.zeros((2, 2)), np.zeros((3, 3))), "^means must have 2 columns"),
        (lambda: prototype_distances(np.zeros((2, 4, 2)), np.zeros((3, 3, 2))), "^means must hold one prototype set per data set"),
        (lambda: prototype_distances(np.zeros((2, 2)), np.zeros((3, 2)), sigma=0.0), "sigma"),
        (lambda: prototype_distances(np.zeros((2, 2), dtype=int), np.zeros((3, 2))), "^x "),
        (lambda: objective_distances("softmax", np.zeros((2, 2)), np.zeros((3, 2))), "objective"),
    ],
)
def test_prototype_distances_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_objective_distances():
    rng = np.random.default_rng(0)
    x, m = rng.normal(size=(5, 2)), rng.normal(size=(3, 2))
    e = prototype_distances(x, m)
    for kind in ("lse", "sigmoid", "sqrt", "partition"):
        assert torch.equal(objective_distances(kind, x, m), e)
    rho = objective_distances("correntropy", x, m, sigma=1.0)
    np.testing.assert_allclose(rho.numpy(), np.linalg.norm(x[:, None] - m[None], axis=-1), rtol=1e-13)
    # finite gradient even for a point sitting on a prototype
    mu = torch.tensor(x[:1], requires_grad=True)
    (g,) = torch.autograd.grad(objective_distances("correntropy", x[:1], mu).sum(), mu)
    assert torch.isfinite(g).all()
    assert math.isclose(float(objective_distances("correntropy", [[3.0, 4.0]], [[0.0, 0.0]], sigma=2.0)), 2.5)


def test_principal_affine_is_a_frozen_dataclass_that_unpacks():
    pa = principal_affine(np.zeros(2), np.diag([4.0, 1.0]))
    assert isinstance(pa, PrincipalAffine)
    W, b, lam, V = pa
    np.testing.assert_allclose(lam, [1.0, 4.0])
    np.testing.assert_allclose(np.abs(W), [[0.0, 1.0], [0.5, 0.0]], atol=1e-15)  # rows v_k^T / sqrt(lambda_k), ascending
    with pytest.raises(AttributeError):
        pa.W = None


# ---- paired units (|a| = relu(a) + relu(-a)) ----------------------------------------------------
def test_unit_pairing_finds_exact_mirrors_and_brute_force():
    from iemlib.distances import unit_pairing

    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 5))
    b = rng.normal(size=6)
    W[3], b[3] = -2.5 * W[0], -2.5 * b[0]  # unit 3 mirrors unit 0
    x = rng.normal(size=(40, 5))
    p = unit_pairing(W, b, x)
    assert p.partner[0] == 3 and p.partner[3] == 0
    assert np.isclose(p.partner_cosine[0], -1.0) and np.isclose(p.partner_correlation[0], -1.0)
    assert p.pairs(-0.9) >= 2
    v = np.c_[W, b] / np.linalg.norm(np.c_[W, b], axis=1, keepdims=True)
    c = v @ v.T
    for k in range(6):
        others = np.delete(c[k], k)
        assert np.isclose(p.partner_cosine[k], others.min())
        assert np.isclose(p.aligned_cosine[k], others.max())
    assert unit_pairing(W, b).partner_correlation is None


@given(hnp.arrays(np.float64, (5, 4), elements=st.floats(-3, 3)),
       hnp.arrays(np.float64, (5,), elements=st.floats(0.1, 4)))
def test_unit_pairing_ignores_positive_scale_of_units(W, scale):
    from iemlib.distances import unit_pairing

    W = W + np.eye(5, 4)  # no zero unit
    b = np.linspace(-1, 1, 5)
    p = unit_pairing(W, b)
    q = unit_pairing(W * scale[:, None], b * scale)
    assert np.allclose(p.partner_cosine, q.partner_cosine, atol=1e-12)


def test_unit_pairing_validation():
    from iemlib.distances import unit_pairing

    with pytest.raises(ValueError, match="weight"):
        unit_pairing(np.ones((1, 3)), np.ones(1))
    with pytest.raises(ValueError, match="bias"):
        unit_pairing(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="x"):
        unit_pairing(np.eye(2, 3), np.ones(2), np.ones((4, 2)))
    with pytest.raises(ValueError, match="weight"):
        unit_pairing(np.array([[np.inf, 1.0], [1.0, 0.0]]), np.ones(2))
