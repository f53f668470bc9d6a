"""Tests of iemlib.gradcheck: the three-way checker, error units, the related identities, max_relative_error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.gradcheck import (
    IdentityCheck,
    check_gradient_identity,
    check_theorem1,
    errors_in_eps,
    errors_in_ulps,
    gaussian_logpdf,
    gaussian_logpdf_cov_gradient,
    fisher_identity,
    logdet_gradient,
    max_relative_error,
    theorem1_reference,
    volume_corrected_gradient,
    volume_corrected_objective,
)
from iemlib.objectives import cross_entropy, cross_entropy_gradient, lse, responsibilities


def _spd(k: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(k, k))
    return A @ A.T + k * np.eye(k)


# --------------------------------------------------------------------------- error units
def test_errors_in_eps_and_ulps_values():
    eps32 = np.finfo(np.float32).eps
    a = np.array([1.0, 0.5, 0.0])
    b = np.array([1.0 + 2 * eps32, 0.5, 0.0])
    np.testing.assert_allclose(errors_in_eps(a, b, np.float32), [2.0, 0.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(errors_in_eps(a, b, torch.float64), [2 * eps32 / np.finfo(np.float64).eps, 0, 0], rtol=1e-12)
    # one ulp at 1.0 in float32 is eps; at 0.5 it is eps/2
    np.testing.assert_allclose(errors_in_ulps(np.float32([1.0, 0.5]), np.float32([1.0 + eps32, 0.5 + eps32]), np.float32), [1.0, 2.0])
    # the smallest subnormal is one ulp away from zero; ulps magnify tiny absolute errors
    assert errors_in_ulps(np.array([0.0]), np.array([5e-324]), np.float64)[0] == 1.0
    assert errors_in_eps(np.array([0.0]), np.array([1e-310]), np.float64)[0] < 1e-200


def test_error_units_bad_input():
    with pytest.raises(ValueError, match="dtype"):
        errors_in_eps(np.zeros(2), np.zeros(2), np.float16)
    with pytest.raises(ValueError, match="dtype"):
        errors_in_ulps(np.zeros(2), np.zeros(2), torch.int64)
    with pytest.raises(ValueError, match="^b must have the same shape"):
        errors_in_eps(np.zeros(2), np.zeros(3), np.float64)
    with pytest.raises(ValueError, match="^reference must have the same shape"):
        errors_in_ulps(np.zeros(2), np.zeros(3), np.float64)
    with pytest.raises(ValueError, match="^a "):
        errors_in_eps(np.array([np.nan]), np.zeros(1), np.float64)


# --------------------------------------------------------------------------- the checker
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [1, 7, 1000, 100_000])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_theorem1_holds_across_sizes_scales_dtypes(dtype, K, scale):
    d = torch.tensor(np.random.default_rng(K).uniform(-scale, scale, K)).to(dtype)
    c = check_theorem1(d, n_coords=8, n_directions=3)
    assert isinstance(c, IdentityCheck)
    assert c.numel == K and c.dtype == str(dtype).split(".")[-1]
    assert c.autograd_vs_closed_eps.shape == (K,)
    # closed form (shift by the minimum) is accurate to a few eps of the dtype at any scale
    assert c.max_closed_ref_eps <= 4.0
    # autograd of logsumexp computes exp(-d_j - L): its error grows like |L| eps (backward stable)
    assert c.max_autograd_ref_eps <= 4.0 + 2.0 * scale
    # finite differences agree to their own accuracy
    assert c.fd_max_abs_error < 1e-6
    assert c.fd_coords.size == min(8, K) and c.fd_direction_abs_error.size == 3
    assert set(c.summary()) >= {"name", "dtype", "max |auto-closed| (eps)"}


def test_checker_detects_a_wrong_closed_form():
    d = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    wrong = check_gradient_identity(lse, lambda x: responsibilities(x), d)  # sign slip: +r instead of -r
    assert wrong.max_error_eps > 1e13
    assert wrong.fd_max_abs_error > 0.1
    right = check_gradient_identity(lse, lambda x: -responsibilities(x), d)
    assert right.max_error_eps < 4 and right.fd_max_abs_error < 1e-8


def test_checker_reports_exact_zero_for_identical_computations():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    c = check_gradient_identity(lambda t: (t**2).sum() / 2, lambda t: t, x, n_coords=3, n_directions=2)
    assert c.max_error_eps == 0.0 and c.max_error_ulps == 0.0 and c.max_abs_error == 0.0
    np.testing.assert_array_equal(c.fd_coords, [0, 1, 2])
    assert c.fd_max_abs_error < 1e-8


def test_checker_is_deterministic_and_accepts_numpy():
    d = np.random.default_rng(3).normal(size=50)
    a = check_theorem1(d, random_state=5)
    b = check_theorem1(torch.tensor(d), random_state=5)
    np.testing.assert_array_equal(a.fd_coords, b.fd_coords)
    np.testing.assert_array_equal(a.fd_direction_abs_error, b.fd_direction_abs_error)


def test_checker_works_on_matrices():
    S = torch.tensor(_spd(3))
    c = check_gradient_identity(torch.logdet, logdet_gradient, S, n_coords=9, n_directions=4)
    assert c.numel == 9 and c.max_error_eps < 64 and c.fd_max_abs_error < 1e-8


@given(
    hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e4, 1e4, allow_nan=False)),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_property_theorem1(d, dtype):
    c = check_theorem1(torch.tensor(d).to(dtype), n_coords=4, n_directions=2)
    assert c.max_closed_ref_eps <= 4.0
    assert c.max_autograd_ref_eps <= 4.0 + 2.0 * np.abs(d).max()
    assert c.fd_max_abs_error < 1e-6


def test_theorem1_reference():
    d = np.array([1.0, 2.0, 3.0])
    ref = theorem1_reference(d)
    assert ref.dtype == np.longdouble
    np.testing.assert_allclose(ref.astype(np.float64), -responsibilities(d), rtol=1e-15)
    np.testing.assert_allclose(theorem1_reference(np.array([[0.0, 0.0]])).astype(float), [[-0.5, -0.5]])
    with pytest.raises(ValueError, match="^d "):
        theorem1_reference(np.array([np.inf]))


def test_checker_bad_input():
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^f must be callable"):
        check_gradient_identity(1, lse, x)
    with pytest.raises(ValueError, match="^closed_form must be callable"):
        check_gradient_identity(lse, None, x)
    with pytest.raises(ValueError, match="^x "):
        check_gradient_identity(lse, lse, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="^x "):
        check_gradient_identity(lse, lse, [1.0, 2.0])  # sequences are not a point with a dtype
    with pytest.raises(ValueError, match="^x must be float32 or float64"):
        check_gradient_identity(lse, lse, torch.zeros(3, dtype=torch.float16))
    with pytest.raises(ValueError, match="^x "):
        check_gradient_identity(lse, lse, torch.zeros(0))
    with pytest.raises(ValueError, match="n_coords"):
        check_gradient_identity(lse, lse, x, n_coords=-1)
    with pytest.raises(ValueError, match="n_directions"):
        check_gradient_identity(lse, lse, x, n_directions=1.5)
    with pytest.raises(ValueError, match="fd_step"):
        check_gradient_identity(lse, lse, x, fd_step=0.0)
    with pytest.raises(ValueError, match="random_state"):
        check_gradient_identity(lse, lse, x, random_state=-2)
    with pytest.raises(ValueError, match="name"):
        check_gradient_identity(lse, lse, x, name=3)
    with pytest.raises(ValueError, match="^f must return a scalar"):
        check_gradient_identity(lambda t: t * 2, lse, x)
    with pytest.raises(ValueError, match="^closed_form must return the shape"):
        check_gradient_identity(lse, lambda t: t[:2], x)
    with pytest.raises(ValueError, match="^reference must have the shape"):
        check_gradient_identity(lse, lambda t: -responsibilities(t), x, reference=np.zeros(2))
    with pytest.raises(ValueError, match="^d must have 1"):
        check_theorem1(np.zeros((2, 2)))


# --------------------------------------------------------------------------- related identities
def test_cross_entropy_identity_with_checker():
    d = torch.tensor([0.2, 1.5, -0.7, 3.0], dtype=torch.float64)
    c = check_gradient_identity(lambda x: cross_entropy(x, 2), lambda x: cross_entropy_gradient(x, 2), d)
    assert c.max_error_eps < 8 and c.fd_max_abs_error < 1e-8
    # the paper's formula r - 1[j=y] is the gradient w.r.t. the logits z = -d, not w.r.t. d
    paper = lambda x: responsibilities(x) - torch.nn.functional.one_hot(torch.tensor(2), 4).double()  # noqa: E731
    assert check_gradient_identity(lambda x: cross_entropy(x, 2), paper, d).fd_max_abs_error > 0.1
    paper_in_z = lambda z: paper(-z)  # noqa: E731  (r is the softmax of z = -d)
    assert check_gradient_identity(lambda z: cross_entropy(-z, 2), paper_in_z, -d).fd_max_abs_error < 1e-8


@pytest.mark.parametrize("k", [1, 2, 5])
def test_logdet_and_gaussian_gradients(k):
    S = torch.tensor(_spd(k, k))
    c = check_gradient_identity(torch.logdet, logdet_gradient, S)
    assert c.max_error_eps < 64 and c.fd_max_abs_error < 1e-8
    torch.testing.assert_close(logdet_gradient(S), torch.linalg.inv(S))  # symmetric: Sigma^{-T} = Sigma^{-1}
    rng = np.random.default_rng(k)
    x, mu = torch.tensor(rng.normal(size=k)), torch.tensor(rng.normal(size=k))
    cg = check_gradient_identity(
        lambda SS: gaussian_logpdf(x, mu, SS), lambda SS: gaussian_logpdf_cov_gradient(x, mu, SS), S
    )
    assert cg.max_error_eps < 256 and cg.fd_max_abs_error < 1e-8
    # value against scipy
    from scipy.stats import multivariate_normal

    expected = multivariate_normal(mu.numpy(), S.numpy()).logpdf(x.numpy())
    assert float(gaussian_logpdf(x, mu, S)) == pytest.approx(expected, rel=1e-12)
    assert float(gaussian_logpdf(x.numpy(), mu.numpy(), S.numpy())) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(logdet_gradient(S.numpy()), np.linalg.inv(S.numpy()), rtol=1e-12)
    np.testing.assert_allclose(
        gaussian_logpdf_cov_gradient(x.numpy(), mu.numpy(), S.numpy()), gaussian_logpdf_cov_gradient(x, mu, S).numpy()
    )


def test_gaussian_gradient_at_the_mle_scale_vanishes_in_expectation():
    # at Sigma = delta delta^T + tiny, data and volume terms nearly cancel along delta
    k = 3
    S = np.eye(k)
    delta = np.array([1.0, 0.0, 0.0])
    g = gaussian_logpdf_cov_gradient(delta, np.zeros(k), S)
    np.testing.assert_allclose(g, 0.5 * (np.outer(delta, delta) - np.eye(k)))


def test_logdet_gaussian_bad_input():
    for fn in (logdet_gradient,):
        with pytest.raises(ValueError, match="^Sigma must be square"):
            fn(np.zeros((2, 3)))
        with pytest.raises(ValueError, match="^Sigma must be symmetric"):
            fn(np.array([[1.0, 0.5], [0.0, 1.0]]))
        with pytest.raises(ValueError, match="^Sigma must be positive definite"):
            fn(np.array([[1.0, 2.0], [2.0, 1.0]]))
        with pytest.raises(ValueError, match="^Sigma "):
            fn(np.array([[np.nan]]))
    S = np.eye(2)
    with pytest.raises(ValueError, match="^Sigma must be symmetric"):
        gaussian_logpdf_cov_gradient(np.zeros(2), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    gaussian_logpdf(np.zeros(2), np.zeros(2), np.array([[1.0, 1e-7], [0.0, 1.0]]))  # nearly symmetric is fine
    for fn in (gaussian_logpdf, gaussian_logpdf_cov_gradient):
        with pytest.raises(ValueError, match="^x must have 2"):
            fn(np.zeros(3), np.zeros(2), S)
        with pytest.raises(ValueError, match="^mu must have 2"):
            fn(np.zeros(2), np.zeros(1), S)
        with pytest.raises(ValueError, match="^Sigma must be positive definite"):
            fn(np.zeros(2), np.zeros(2), -S)
        with pytest.raises(ValueError, match="^x "):
            fn(np.array([np.inf, 0.0]), np.zeros(2), S)


# --------------------------------------------------------------------------- Fisher's identity
def test_fisher_identity_both_sides_equal():
    x = torch.tensor([0.3, -1.2], dtype=torch.float64)
    log_prior = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))

    def log_joint(mu):
        return log_prior - 0.5 * ((x - mu) ** 2).sum(-1)

    left, right = fisher_identity(log_joint, np.random.default_rng(0).normal(size=(3, 2)))
    np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-15)
    d = np.array([0.5, 1.0, 2.0])
    left, right = fisher_identity(lambda t: -t, d)  # Theorem 1: log p(x, z = j) = -d_j
    np.testing.assert_allclose(left, -responsibilities(d), rtol=1e-14)
    np.testing.assert_allclose(right, -responsibilities(d), rtol=1e-14)
    with pytest.raises(ValueError, match="log_joint"):
        fisher_identity("not callable", d)
    with pytest.raises(ValueError, match="1-D"):
        fisher_identity(lambda t: t.sum(), d)
    with pytest.raises(ValueError, match="^theta "):
        fisher_identity(lambda t: -t, np.array([np.nan]))


# --------------------------------------------------------------------------- max_relative_error
def test_max_relative_error_values():
    b = np.array([1.0, -4.0, 2.0])
    assert max_relative_error(b, b) == 0.0
    assert max_relative_error(b + np.array([0.0, 0.0, 0.4]), b) == pytest.approx(0.1)  # 0.4 / max|b|
    assert max_relative_error(torch.tensor(b) * 2, torch.tensor(b)) == pytest.approx(1.0)
    # relative to the reference's scale: a tiny reference does not divide by zero
    assert max_relative_error(np.array([1e-300]), np.array([0.0])) == pytest.approx(1e-300 / np.finfo(np.float64).tiny)
    assert max_relative_error(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        max_relative_error(np.zeros(2), np.zeros(3))


@given(hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-1e6, 1e6)), st.floats(1e-3, 1e3))
def test_property_max_relative_error_is_scale_invariant(b, c):
    a = b + 1e-3 * np.abs(b).max()
    e = max_relative_error(a, b)
    assert e == pytest.approx(max_relative_error(c * a, c * b), rel=1e-9, abs=1e-12)
    assert e >= 0.0


# --------------------------------------------------------------------------- the volume-corrected identity
def _volume_inputs(K: int, D: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # W_j = orthogonal-ish + identity keeps det away from 0 and the condition number modest
    W = rng.normal(size=(K, D, D)) * 0.5 + np.eye(D)
    return W, rng.normal(size=(K, D)), rng.normal(size=D)


def test_volume_corrected_gradient_against_autograd_and_finite_differences():
    W, b, x = _volume_inputs(3, 4, 0)
    bt, xt = torch.tensor(b), torch.tensor(x)
    c = check_gradient_identity(lambda Wt: volume_corrected_objective(Wt, bt, xt),
                                lambda Wt: volume_corrected_gradient(Wt, bt, xt), torch.tensor(W),
                                n_coords=48, n_directions=8, name="volume-corrected identity (objective)")
    assert c.numel == 48 and c.max_error_eps < 64 and c.fd_max_abs_error < 1e-8
    # the formula term by term: r_j (W_j^{-T} - z_j x^T), r from Theorem 1
    z = np.einsum("kij,j->ki", W, x) + b
    d = 0.5 * (z**2).sum(1) - np.linalg.slogdet(W)[1]
    r = responsibilities(d)
    want = r[:, None, None] * (np.linalg.inv(W).transpose(0, 2, 1) - z[:, :, None] * x)
    np.testing.assert_allclose(volume_corrected_gradient(W, b, x), want, rtol=1e-12, atol=1e-15)
    assert volume_corrected_objective(W, b, x) == pytest.approx(float(lse(d)), rel=1e-14)


def test_volume_corrected_gradient_is_reachable_as_iemlib_identities():
    import iemlib
    import iemlib.identities as ids

    assert iemlib.identities.volume_corrected_gradient is ids.volume_corrected_gradient
    W, b, x = _volume_inputs(2, 3, 1)
    g = ids.volume_corrected_gradient(torch.tensor(W), torch.tensor(b), torch.tensor(x))
    assert isinstance(g, torch.Tensor) and g.shape == (2, 3, 3) and g.dtype == torch.float64
    assert ids.volume_corrected_gradient(W.astype(np.float32), b, x).dtype == np.float32


@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 10_000), st.floats(0.1, 3.0))
def test_property_volume_corrected_gradient(K, D, seed, scale):
    W, b, x = _volume_inputs(K, D, seed)
    x = x * scale
    Wt = torch.tensor(W, requires_grad=True)
    (auto,) = torch.autograd.grad(volume_corrected_objective(Wt, torch.tensor(b), torch.tensor(x)), Wt)
    g = volume_corrected_gradient(W, b, x)
    np.testing.assert_allclose(g, auto.numpy(), rtol=1e-9, atol=1e-11)
    # finite differences along one random direction (the formula, not the arithmetic)
    v = np.random.default_rng(seed + 1).normal(size=W.shape)
    v /= np.linalg.norm(v)
    h = 1e-6
    fd = (volume_corrected_objective(W + h * v, b, x) - volume_corrected_objective(W - h * v, b, x)) / (2 * h)
    assert abs(fd - float((g * v).sum())) < 1e-6
    # contracted with W itself: sum_j tr(W_j^T dL/dW_j) = sum_j r_j (D - z_j . W_j x), the volume term giving
    # r_j tr(W_j^T W_j^{-T}) = r_j D and the data term r_j z_j . W_j x
    z = np.einsum("kij,j->ki", W, x) + b
    d = 0.5 * (z**2).sum(1) - np.linalg.slogdet(W)[1]
    r = responsibilities(d)
    euler = np.einsum("kij,kij->", W, g)
    assert euler == pytest.approx(float((r * (D - (z * np.einsum("kij,j->ki", W, x)).sum(1))).sum()), abs=1e-8)


@pytest.mark.parametrize("args, match", [
    ((np.ones((2, 3)), np.ones((2, 3)), np.ones(3)), "^W "),
    ((np.ones((2, 3, 2)), np.ones((2, 3)), np.ones(3)), "^W "),
    ((np.stack([np.eye(3)] * 2), np.ones((3, 3)), np.ones(3)), "^b "),
    ((np.stack([np.eye(3)] * 2), np.ones((2, 3)), np.ones(2)), "^x "),
    ((np.stack([np.eye(3), np.zeros((3, 3))]), np.ones((2, 3)), np.ones(3)), r"^W\[1\] "),
    ((np.stack([np.eye(3)] * 2), np.ones((2, 3)), np.array([1.0, np.nan, 0.0])), "^x "),
])
def test_volume_corrected_gradient_rejects_bad_input(args, match):
    for fn in (volume_corrected_gradient, volume_corrected_objective):
        with pytest.raises(ValueError, match=match):
            fn(*args)
