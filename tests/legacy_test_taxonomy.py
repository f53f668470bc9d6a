"""Tests of iemlib.legacy.taxonomy: three objectives, their gradient couplings, far points."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from iemlib.legacy import taxonomy as T
from iemlib.legacy.objectives import responsibilities

KINDS = T.OBJECTIVES
F64 = torch.float64


def dist_arrays(min_k=1):
    return st.integers(min_value=min_k, max_value=5).flatmap(
        lambda k: arrays(
            np.float64,
            st.tuples(st.integers(1, 4), st.just(k)),
            elements=st.floats(0.0, 12.0, allow_nan=False),
        )
    )


@pytest.fixture(scope="module")
def task():
    return T.make_mixture_task(n_per_component=60, seed=3)


# ---------------------------------------------------------------- losses and gradients
def test_losses_match_their_formulas():
    d = torch.tensor([[0.2, 1.5, 3.0], [4.0, 0.0, 0.7]], dtype=F64)
    assert torch.allclose(T.loss_from_distances("lse", d), -torch.logsumexp(-d, 1))
    assert torch.allclose(T.loss_from_distances("sigmoid", d), torch.nn.functional.softplus(d).sum(1))
    assert torch.allclose(T.loss_from_distances("correntropy", d), (1 - torch.exp(-(d**2) / 2)).sum(1))


def test_the_three_losses_share_one_energy():
    x, _, m = T.make_mixture_task(n_per_component=5)
    e = T.energies(x, m)
    assert torch.allclose(T.per_sample_loss("correntropy", x, m), (1 - torch.exp(-e)).sum(1))
    assert torch.allclose(T.per_sample_loss("lse", x, m), -torch.logsumexp(-e, 1))


@given(dist_arrays())
def test_jacobian_closed_form_matches_autograd(d):
    for kind in KINDS:
        J = T.gradient_jacobian(kind, torch.as_tensor(d))
        Jc = T.gradient_jacobian_closed_form(kind, torch.as_tensor(d))
        assert J.shape == (d.shape[0], d.shape[1], d.shape[1])
        assert torch.allclose(J, Jc, atol=1e-12)


@given(dist_arrays(min_k=2))
def test_only_lse_couples_components(d):
    d = torch.as_tensor(d)
    r = responsibilities(d)
    J = T.gradient_jacobian("lse", d)
    i, j, k = 0, 0, 1
    assert math.isclose(float(J[i, j, k]), float(r[i, j] * r[i, k]), rel_tol=1e-9, abs_tol=1e-15)
    assert T.max_off_diagonal(T.gradient_jacobian("sigmoid", d)) == 0.0
    assert T.max_off_diagonal(T.gradient_jacobian("correntropy", d)) == 0.0


def test_lse_gradient_is_responsibility_and_coupling_is_visible():
    d = torch.tensor([[0.0, 0.0, 5.0]], dtype=F64)
    assert torch.allclose(T.distance_gradient("lse", d), responsibilities(d))
    J = T.gradient_jacobian("lse", d)
    # two equally near components: coupling r_1 r_2 close to 1/4
    assert abs(float(J[0, 0, 1]) - float(responsibilities(d)[0, 0] ** 2)) < 1e-12
    assert T.max_off_diagonal(J) > 0.2


def test_gradient_finite_differences():
    d = torch.tensor([[0.3, 1.1, 2.0]], dtype=F64)
    h = 1e-6
    for kind in KINDS:
        g = T.distance_gradient(kind, d)
        for j in range(3):
            e = torch.zeros_like(d)
            e[0, j] = h
            fd = (T.loss_from_distances(kind, d + e) - T.loss_from_distances(kind, d - e)) / (2 * h)
            assert abs(float(fd) - float(g[0, j])) < 1e-8


def test_max_off_diagonal_single_component_and_bad_shape():
    assert T.max_off_diagonal(torch.ones(3, 1, 1)) == 0.0
    with pytest.raises(ValueError, match="J"):
        T.max_off_diagonal(torch.ones(3, 2, 4))
    with pytest.raises(ValueError, match="J"):
        T.max_off_diagonal(torch.ones(3, 2))


# ---------------------------------------------------------------- assignment
def test_memberships_and_weights(task):
    x, _, m = task
    mu = m + 0.3
    r = T.memberships("lse", x, mu)
    assert torch.allclose(r.sum(1), torch.ones(len(x), dtype=F64))
    assert torch.allclose(T.gradient_weights("lse", x, mu), r)
    e = T.energies(x, mu)
    assert torch.allclose(T.gradient_weights("correntropy", x, mu), torch.exp(-e))
    assert torch.allclose(T.memberships("correntropy", x, mu), torch.exp(-e))
    assert torch.allclose(T.gradient_weights("sigmoid", x, mu), torch.sigmoid(e))
    assert torch.allclose(T.memberships("sigmoid", x, mu), torch.sigmoid(-e))
    # the unnormalized memberships do not sum to one
    assert T.memberships("correntropy", x, mu).sum(1).std() > 0.1


def test_prototype_gradient_norms_match_autograd(task):
    x, _, m = task
    x = x[:7]
    mu = m + torch.tensor([0.4, -0.2], dtype=F64)
    for kind in KINDS:
        got = T.prototype_gradient_norms(kind, x, mu)
        for i in range(len(x)):
            mu_ = mu.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(T.per_sample_loss(kind, x[i : i + 1], mu_).sum(), mu_)
            assert abs(float(g.norm()) - float(got[i])) < 1e-10


# ---------------------------------------------------------------- training
def test_lse_specializes_sigmoid_merges_correntropy_seeks_modes(task):
    x, _, m = task
    mu0 = T.initial_prototypes(x, 3, seed=0)
    res = {k: T.fit_prototypes(k, x, mu0, lr=0.5, n_steps=300, record_every=50) for k in KINDS}
    lse_err = T.prototype_errors(res["lse"]["mu_final"], m)
    assert lse_err["covered"] == 3 and lse_err["error"].max() < 0.3
    mu_s = res["sigmoid"]["mu_final"]
    assert float(torch.cdist(mu_s, mu_s).max()) < 1e-3  # all prototypes merged
    # correntropy prototypes each sit on a mode
    assert T.prototype_errors(res["correntropy"]["mu_final"], m)["error"].max() < 0.3
    for k in KINDS:
        h = res[k]
        assert h["mu"].shape == (len(h["steps"]), 3, 2)
        assert h["steps"][-1] == 300
        assert h["loss"][-1] <= h["loss"][0] + 1e-12


def test_coverage_over_inits(task):
    x, _, m = task
    cov = T.coverage_over_inits(x, m, seeds=[0, 1], n_steps=200)
    assert set(cov) == set(KINDS)
    assert (cov["lse"] == 3).all() and (cov["sigmoid"] == 1).all()
    with pytest.raises(ValueError, match="seeds"):
        T.coverage_over_inits(x, m, seeds=[])


def test_far_points():
    m = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.5]], dtype=F64)
    t = np.array([5.0, 10.0, 20.0])
    prof = {k: T.far_point_profile(k, m, t, direction=[1.0, -0.5]) for k in KINDS}
    assert np.all(np.diff(prof["lse"]["nearest"]) > 0)
    assert np.all(np.diff(prof["lse"]["grad_norm"]) > 0)  # LSE: a far point pulls harder
    assert np.all(np.diff(prof["sigmoid"]["grad_norm"]) > 0)
    assert prof["correntropy"]["grad_norm"][-1] < 1e-30  # correntropy: vanishing
    # LSE far-point gradient: the nearest prototype is pulled with the full distance / s^2
    assert abs(prof["lse"]["grad_norm"][-1] - prof["lse"]["nearest"][-1]) / prof["lse"]["nearest"][-1] < 0.05
    # from a prototype outward, the distance to the nearest prototype is the ray parameter
    p = T.far_point_profile("correntropy", m, t, direction=[1.0, -0.5], origin=m[1])
    assert np.allclose(p["nearest"], t)
    rho = t  # scale 1: gradient norm rho exp(-rho^2 / 2) from the one prototype that matters
    assert np.allclose(p["grad_norm"][:1], rho[:1] * np.exp(-(rho[:1] ** 2) / 2), rtol=1e-6)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: T.loss_from_distances("softmax", torch.ones(2, 2)), "kind"),
        (lambda: T.loss_from_distances("lse", torch.ones(2)), "d"),
        (lambda: T.loss_from_distances("lse", torch.tensor([[1.0, float("nan")]])), "d"),
        (lambda: T.energies(torch.ones(3, 2), torch.ones(2, 3)), "mu"),
        (lambda: T.energies(torch.ones(3, 2), torch.ones(2, 2), scale=0.0), "scale"),
        (lambda: T.energies(torch.ones(3, 2, dtype=torch.int64), torch.ones(2, 2)), "x"),
        (lambda: T.fit_prototypes("lse", torch.ones(3, 2), torch.ones(2, 2), lr=-1.0), "lr"),
        (lambda: T.fit_prototypes("lse", torch.ones(3, 2), torch.ones(2, 2), n_steps=0), "n_steps"),
        (lambda: T.make_mixture_task(n_per_component=0), "n_per_component"),
        (lambda: T.make_mixture_task(std=-1.0), "std"),
        (lambda: T.far_point_profile("lse", torch.ones(2, 2), [1.0], direction=[0.0, 0.0]), "direction"),
        (lambda: T.far_point_profile("lse", torch.ones(2, 2), [1.0], direction=[1.0]), "direction"),
        (lambda: T.far_point_profile("lse", torch.ones(2, 2), [1.0], origin=[1.0, 2.0, 3.0]), "origin"),
        (lambda: T.initial_prototypes(torch.ones(3, 2), 0), "n_components"),
        (lambda: T.gradient_jacobian("lse", np.array([[1.0, np.inf]])), "d"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_numpy_input_accepted():
    d = np.array([[0.5, 1.0]])
    assert T.gradient_jacobian("lse", d).shape == (1, 2, 2)
    x, _, m = T.make_mixture_task(n_per_component=3)
    assert T.energies(x.numpy(), m.numpy()).shape == (9, 3)


# ---------------------------------------------------------------- exercise checkers
def test_ch07_checkers():
    from iemlib.book.exercises import ch07

    r = responsibilities(torch.tensor(ch07.EXERCISE_D, dtype=F64))
    assert ch07.check_lse_coupling(float(r[0] * r[1]))
    assert not ch07.check_lse_coupling(-float(r[0] * r[1]))
    assert not ch07.check_lse_coupling(...)
    assert ch07.check_correntropy_far_gradient(4 * math.exp(-8))
    assert not ch07.check_correntropy_far_gradient(4.0)
    assert ch07.check_coupled_objectives({"lse"})
    assert not ch07.check_coupled_objectives(["lse", "sigmoid"])
    assert not ch07.check_coupled_objectives(...)
    assert not ch07.check_coupled_objectives(3)


# ---------------------------------------------------------------- functions of the partition function
ALPHAS = (-1.0, 0.0, 0.5, 1.0, 2.0)


def _g_alpha(alpha):
    if alpha == 0.0:
        return torch.log
    return lambda Z: (Z**alpha - 1.0) / alpha


@pytest.mark.parametrize("alpha", ALPHAS)
def test_power_family_closed_forms_match_autograd(alpha):
    g = torch.Generator().manual_seed(1)
    d = 3.0 * torch.rand(5, 4, generator=g, dtype=F64)
    dd = d.clone().requires_grad_(True)
    L = T.power_objective(dd, alpha)
    assert torch.allclose(L, T.partition_objective(d, _g_alpha(alpha)), atol=1e-12)
    (grad,) = torch.autograd.grad(L.sum(), dd)
    assert torch.allclose(-grad, T.power_weights(d, alpha), atol=1e-13)
    H = T.power_hessian(d, alpha)
    for i in range(len(d)):
        Hi = torch.autograd.functional.hessian(lambda z: T.partition_objective(z[None], _g_alpha(alpha)).sum(), d[i])
        assert torch.allclose(Hi, H[i], atol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_power_family_finite_differences(alpha):
    d = torch.tensor([[0.3, 1.1, 2.0]], dtype=F64)
    h = 1e-5
    w = T.power_weights(d, alpha)
    H = T.power_hessian(d, alpha)
    for j in range(3):
        e = torch.zeros_like(d)
        e[0, j] = h
        fd = (T.power_objective(d + e, alpha) - T.power_objective(d - e, alpha)) / (2 * h)
        assert abs(float(fd) + float(w[0, j])) < 1e-9
        fd_w = (T.power_weights(d + e, alpha) - T.power_weights(d - e, alpha)) / (2 * h)  # d w / d d_j = -H[:, j]
        assert torch.allclose(-fd_w[0], H[0, :, j], atol=1e-8)


@given(dist_arrays(min_k=2), st.sampled_from(ALPHAS))
def test_weights_are_responsibilities_times_z_alpha(d, alpha):
    d = torch.as_tensor(d)
    w = T.power_weights(d, alpha)
    r = responsibilities(d)
    Z = torch.exp(-d).sum(1)
    assert torch.allclose(w, r * Z[:, None] ** alpha, rtol=1e-10, atol=1e-300)
    # the split within a point is always r; the total is Z^alpha, one for every d only at alpha = 0
    assert torch.allclose(w.sum(1), Z**alpha, rtol=1e-10)
    if alpha == 0.0:
        assert torch.allclose(w.sum(1), torch.ones(len(d), dtype=F64))


def test_only_the_log_sums_to_one_and_only_affine_g_is_separable():
    d = torch.tensor([[0.0, 0.5, 3.0], [2.0, 2.5, 6.0]], dtype=F64)  # Z differs between the rows
    for alpha in ALPHAS:
        sums = T.power_weights(d, alpha).sum(1)
        assert bool(torch.allclose(sums, torch.ones(2, dtype=F64))) == (alpha == 0.0)
        off = T.max_off_diagonal(T.power_hessian(d, alpha))
        assert (off < 1e-15) == (alpha == 1.0)
    # -sqrt(Z), the counter-example: a nonlinear g that couples
    dd = d.clone().requires_grad_(True)
    H = torch.autograd.functional.hessian(lambda z: (-torch.exp(-z).sum(-1).sqrt()).sum(), dd)
    assert abs(float(H[0, 0, 0, 1])) > 1e-3


def test_sqrt_loss_is_minus_the_half_power_objective():
    d = torch.tensor([[0.2, 1.5, 3.0], [4.0, 0.0, 0.7]], dtype=F64)
    assert torch.allclose(T.loss_from_distances("sqrt", d), -T.power_objective(d, 0.5))
    assert torch.allclose(T.gradient_jacobian("sqrt", d), T.gradient_jacobian_closed_form("sqrt", d), atol=1e-13)
    assert T.max_off_diagonal(T.gradient_jacobian("sqrt", d)) > 1e-3
    x, _, m = T.make_mixture_task(n_per_component=4)
    e = T.energies(x, m)
    assert torch.allclose(T.weight_sums("sqrt", x, m), torch.exp(-e).sum(1).sqrt())
    assert torch.allclose(T.weight_sums("lse", x, m), torch.ones(len(x), dtype=F64))


def test_batch_fit_follows_the_single_fits(task):
    x, _, m = task
    mu0 = torch.stack([T.initial_prototypes(x, 3, seed=s) for s in (0, 1)])
    for kind in T.LOSSES:
        hb = T.fit_prototypes_batch(kind, x, mu0, lr=0.5, n_steps=50, record_every=10)
        for s in range(2):
            h = T.fit_prototypes(kind, x, mu0[s], lr=0.5, n_steps=50, record_every=10)
            assert torch.allclose(hb["mu_final"][s], h["mu_final"], atol=1e-10)
            assert abs(hb["loss"][s] - h["loss"][-1]) < 1e-10
        assert hb["mu"].shape == (6, 2, 3, 2)
    # one data set per run
    xb = torch.stack([x, x + 1.0])
    hb = T.fit_prototypes_batch("lse", xb, mu0, n_steps=20)
    h1 = T.fit_prototypes("lse", x + 1.0, mu0[1], n_steps=20, record_every=20)
    assert torch.allclose(hb["mu_final"][1], h1["mu_final"], atol=1e-10)


def test_far_starts_and_coverage_table(task):
    x, _, m = task
    fs = T.far_starts(x, 3, radius=12.0, seeds=[0, 1, 2])
    assert fs.shape == (3, 3, 2)
    assert torch.allclose((fs - x.mean(0)).norm(dim=-1), torch.full((3, 3), 12.0, dtype=F64))
    near = torch.stack([T.initial_prototypes(x, 3, seed=s) for s in (0, 1)])
    tab = T.coverage_table(x, m, {"near": near, "far": fs}, n_steps=200)
    assert (tab["near"]["lse"] == 3).all() and (tab["near"]["sigmoid"] == 1).all()
    assert tab["far"]["lse"].shape == (3,)


def test_trajectory_coupling_lse_is_shared_mass(task):
    x, _, m = task
    mu = torch.stack([m, m + 0.5])  # (T=2, K, D)
    tc = T.trajectory_coupling("lse", x, mu)
    r = T.memberships("lse", x, m)
    assert abs(tc["mean_offdiag"][0] - float((1 - (r**2).sum(1)).mean())) < 1e-12
    assert tc["mean_offdiag"].shape == (2,)
    for kind in ("sigmoid", "correntropy"):
        assert np.all(T.trajectory_coupling(kind, x, mu)["mean_offdiag"] == 0.0)
    tc2 = T.trajectory_coupling("lse", x, mu[:, None].expand(2, 3, 3, 2))
    assert tc2["shared"].shape == (2, 3)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: T.power_objective(torch.ones(2, 2), alpha=float("nan")), "alpha"),
        (lambda: T.power_weights(torch.ones(2, 2), alpha="x"), "alpha"),
        (lambda: T.power_hessian(torch.ones(2), 0.5), "d"),
        (lambda: T.partition_objective(torch.ones(2, 2), 3), "g"),
        (lambda: T.fit_prototypes_batch("lse", torch.ones(3, 2), torch.ones(2, 2)), "mu0"),
        (lambda: T.fit_prototypes_batch("lse", torch.ones(2, 3, 2), torch.ones(3, 2, 2)), "x"),
        (lambda: T.fit_prototypes_batch("lse", torch.ones(3, 2), torch.ones(1, 2, 3)), "mu0"),
        (lambda: T.far_starts(torch.ones(3, 2), seeds=[]), "seeds"),
        (lambda: T.far_starts(torch.ones(3, 2), radius=0.0), "radius"),
        (lambda: T.coverage_table(torch.ones(3, 2), torch.ones(2, 2), {}), "starts"),
        (lambda: T.trajectory_coupling("lse", torch.ones(3, 2), torch.ones(2, 2)), "mu_path"),
    ],
)
def test_new_functions_reject_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
