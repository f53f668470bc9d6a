"""Tests of iemlib.objectives: values, stability, properties, bad input, and every closed-form
gradient against torch autograd and central finite differences (log-sum-exp and its relatives;
other kernels and the partition function; the taxonomy's losses, Jacobians and power family;
the multi-label losses; soft targets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.objectives import (
    correntropy,
    correntropy_gradient,
    cross_entropy,
    cross_entropy_gradient,
    lse,
    lse_gradient,
    responsibilities,
    sigmoid_bce,
    sigmoid_bce_gradient,
)

RNG_SEED = 20251201


def _naive_lse(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.log(np.sum(np.exp(-d.astype(np.float64)), axis=axis))


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


# --------------------------------------------------------------------------- values
def test_lse_and_responsibilities_known_values():
    d = np.array([0.0, 0.0])
    assert lse(d) == pytest.approx(math.log(2.0), abs=1e-15)
    np.testing.assert_allclose(responsibilities(d), [0.5, 0.5], atol=1e-16)
    d = np.array([1.0, 2.0, 3.0])
    expected = np.exp(-d) / np.exp(-d).sum()
    np.testing.assert_allclose(responsibilities(d), expected, rtol=1e-14)
    assert lse(d) == pytest.approx(float(_naive_lse(d)), rel=1e-14)
    # one component: L = -d, r = 1
    assert lse(np.array([3.5])) == pytest.approx(-3.5, abs=0)
    np.testing.assert_array_equal(responsibilities(np.array([3.5])), [1.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_and_torch_agree(dtype):
    d_np = _rng().normal(scale=3.0, size=(5, 7)).astype(np.float64)
    d_t = torch.tensor(d_np, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    for dim in (0, 1, -1, -2):
        out_t = lse(d_t, dim=dim)
        out_n = lse(d_np, dim=dim)
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == dtype
        assert isinstance(out_n, np.ndarray)
        np.testing.assert_allclose(out_t.numpy(), out_n, rtol=tol, atol=tol)
        np.testing.assert_allclose(responsibilities(d_t, dim=dim).numpy(), responsibilities(d_np, dim=dim), rtol=tol, atol=tol)


def test_numpy_dtype_preserved():
    d = np.array([1.0, 2.0], dtype=np.float32)
    assert lse(d).dtype == np.float32
    assert responsibilities(d).dtype == np.float32


def test_dim_argument_matches_transpose():
    d = _rng().normal(size=(4, 6, 3))
    for dim in range(3):
        moved = np.moveaxis(d, dim, -1)
        np.testing.assert_allclose(lse(d, dim=dim), lse(moved), rtol=1e-14)
        np.testing.assert_allclose(np.moveaxis(responsibilities(d, dim=dim), dim, -1), responsibilities(moved), rtol=1e-14)
        np.testing.assert_allclose(responsibilities(d, dim=dim).sum(axis=dim), 1.0, atol=1e-14)


def test_sequence_input_becomes_numpy():
    out = responsibilities([0.0, math.log(3.0)])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.75, 0.25], rtol=1e-14)


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4, 1e6, 1e30])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_stable_for_large_distances(scale, backend):
    # The naive formula overflows (negative d) or underflows to log(0) (positive d).
    d64 = np.array([scale, scale + 1.0, scale + 2.0])
    for d in (d64, -d64[::-1].copy()):
        x = torch.tensor(d) if backend == "torch" else d
        L = float(lse(x))
        r = responsibilities(x)
        r = r.numpy() if backend == "torch" else r
        assert math.isfinite(L)
        assert np.all(np.isfinite(r))
        # exact: L = -min(d) + log(1 + e^-1 + e^-2) up to rounding of d itself
        spacing = np.spacing(np.abs(d).max())
        expected_r = np.exp(-(d - d.min())) / np.exp(-(d - d.min())).sum()
        if spacing < 1e-3:
            np.testing.assert_allclose(r, expected_r, rtol=1e-9)
        assert abs(L - (-d.min() + math.log(1 + math.exp(-1) + math.exp(-2)))) <= 4 * spacing + 1e-12


def test_naive_formula_does_overflow():
    with np.errstate(over="ignore", divide="ignore"):
        assert not np.isfinite(_naive_lse(np.array([-1e4, 0.0])))
        assert not np.isfinite(_naive_lse(np.array([1e4, 1e4 + 1])))
    assert np.isfinite(lse(np.array([-1e4, 0.0])))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_span_of_finite_distances(backend, dtype):
    """Any finite d: here the span max(d) - min(d) itself overflows the dtype.

    Regression test: the numpy path used to raise 'overflow encountered in subtract'
    (a RuntimeWarning, an error under this project's pytest configuration).
    """
    big = float(np.finfo(dtype).max)
    d_np = np.array([-big, 0.0, big], dtype=dtype)
    x = torch.tensor(d_np) if backend == "torch" else d_np
    L = lse(x)
    r = responsibilities(x)
    r = r.numpy() if backend == "torch" else r
    assert float(L) == pytest.approx(big, rel=1e-6)
    np.testing.assert_array_equal(r, np.array([1.0, 0.0, 0.0], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_gradient_stable_at_1e4(dtype):
    g = torch.Generator().manual_seed(1)
    d = ((torch.rand(1000, generator=g, dtype=torch.float64) * 2 - 1) * 1e4).to(dtype).requires_grad_(True)
    (grad,) = torch.autograd.grad(lse(d), d)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, lse_gradient(d.detach()))
    assert float(-grad.sum()) == pytest.approx(1.0, abs=d.numel() * torch.finfo(dtype).eps)  # worst-case summation bound


# --------------------------------------------------------------------------- properties
finite_d = hnp.arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
)


@given(finite_d)
def test_property_sum_to_one_and_nonnegative(d):
    r = responsibilities(d)
    assert np.all(r >= 0) and np.all(r <= 1)
    assert abs(r.sum() - 1.0) <= 8 * np.finfo(np.float64).eps * d.size
    assert r[np.argmin(d)] == r.max()


@given(finite_d, st.floats(-1e3, 1e3, allow_nan=False))
def test_property_shift_invariance(d, c):
    # responsibilities are invariant to adding c to every distance; L shifts by -c
    r0, r1 = responsibilities(d), responsibilities(d + c)
    np.testing.assert_allclose(r1, r0, atol=1e-9)
    assert float(lse(d + c)) == pytest.approx(float(lse(d)) - c, abs=1e-9 * (1 + abs(c) + np.abs(d).max()))


@given(finite_d)
def test_property_lse_bounds(d):
    # max(-d) <= L <= max(-d) + log K
    L = float(lse(d))
    top = float(np.max(-d))
    assert top - 1e-9 * (1 + abs(top)) <= L <= top + math.log(d.size) + 1e-9 * (1 + abs(top))


@given(finite_d)
def test_property_log_responsibility_identity(d):
    # log r_j = -d_j - L  (the definition, checked where r_j is not underflowed)
    r = responsibilities(d)
    mask = r > 1e-300
    np.testing.assert_allclose(np.log(r[mask]), (-d - lse(d))[mask], atol=1e-9 * (1 + np.abs(d).max()))


@given(finite_d)
def test_property_torch_matches_numpy(d):
    np.testing.assert_allclose(responsibilities(torch.tensor(d)).numpy(), responsibilities(d), atol=1e-12)
    assert float(lse(torch.tensor(d))) == pytest.approx(float(lse(d)), rel=1e-12, abs=1e-12)


@given(finite_d, st.integers(0, 11))
def test_property_cross_entropy_matches_definition(d, y):
    y = y % d.size
    loss = float(cross_entropy(d, y))
    assert loss >= -1e-9 * (1 + np.abs(d).max())
    assert loss == pytest.approx(d[y] + float(lse(d)), abs=1e-9 * (1 + np.abs(d).max()))
    g = cross_entropy_gradient(d, y)
    assert abs(g.sum()) <= 1e-12 * d.size
    assert g[y] >= 0 and np.all(np.delete(g, y) <= 0)


# --------------------------------------------------------------------------- gradients
def _fd_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central finite differences of scalar f(x).sum() at x (float64)."""
    x = x.detach().clone()
    g = torch.zeros_like(x)
    flat, gflat = x.view(-1), g.view(-1)
    for k in range(flat.numel()):
        old = float(flat[k])
        flat[k] = old + h
        fp = float(f(x).sum())
        flat[k] = old - h
        fm = float(f(x).sum())
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * h)
    return g


def _autograd(f, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return g


CASES = {
    "lse": (lambda d, aux: lse(d), lambda d, aux: lse_gradient(d)),
    "cross_entropy": (lambda d, aux: cross_entropy(d, aux["y"]), lambda d, aux: cross_entropy_gradient(d, aux["y"])),
    "sigmoid_bce": (lambda d, aux: sigmoid_bce(d, aux["t"]), lambda d, aux: sigmoid_bce_gradient(d, aux["t"])),
    "correntropy": (lambda d, aux: correntropy(d, 1.5), lambda d, aux: correntropy_gradient(d, 1.5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shape", [(6,), (4, 5)])
def test_closed_form_gradients_against_autograd_and_fd(name, shape):
    rng = _rng()
    d = torch.tensor(rng.normal(scale=2.0, size=shape))
    aux = {
        "y": torch.tensor(rng.integers(0, shape[-1], size=shape[:-1])) if len(shape) > 1 else int(rng.integers(0, shape[-1])),
        "t": torch.tensor(rng.uniform(size=shape)),
    }
    f, closed = CASES[name]
    g_closed = closed(d, aux)
    g_auto = _autograd(lambda x: f(x, aux), d)
    g_fd = _fd_grad(lambda x: f(x, aux), d)
    torch.testing.assert_close(g_closed, g_auto, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(g_closed, g_fd, rtol=1e-7, atol=1e-8)
    # numpy closed form agrees with torch closed form
    aux_np = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in aux.items()}
    np.testing.assert_allclose(closed(d.numpy(), aux_np), g_closed.numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_lse_gradient_dim_against_autograd(dim):
    d = torch.tensor(_rng().normal(size=(3, 4, 5)))
    g_auto = _autograd(lambda x: lse(x, dim=dim), d)
    torch.testing.assert_close(lse_gradient(d, dim=dim), g_auto, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(lse_gradient(d.numpy(), dim=dim), g_auto.numpy(), rtol=1e-13, atol=1e-15)


def test_cross_entropy_sign_convention_distances_vs_logits():
    """With respect to d the loss gradient is 1[j=y] - r_j; with respect to z = -d it is r_j - 1[j=y]."""
    d = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    y = 1
    r = responsibilities(d)
    onehot = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    g_d = _autograd(lambda x: cross_entropy(x, y), d)
    g_z = _autograd(lambda z: cross_entropy(-z, y), -d)
    torch.testing.assert_close(g_d, onehot - r)
    torch.testing.assert_close(g_z, r - onehot)
    # agrees with torch's own cross-entropy on logits
    z = (-d).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(z[None], torch.tensor([y])).backward()
    torch.testing.assert_close(z.grad, g_z)


def test_cross_entropy_matches_torch():
    rng = _rng()
    d = torch.tensor(rng.normal(size=(8, 5)))
    y = torch.tensor(rng.integers(0, 5, size=8))
    torch.testing.assert_close(cross_entropy(d, y), torch.nn.functional.cross_entropy(-d, y, reduction="none"))
    np.testing.assert_allclose(cross_entropy(d.numpy(), y.numpy()), cross_entropy(d, y).numpy(), rtol=1e-13)


def test_sigmoid_bce_matches_torch_and_is_uncoupled():
    rng = _rng()
    d = torch.tensor(rng.normal(size=6))
    t = torch.tensor(rng.uniform(size=6))
    torch.testing.assert_close(
        sigmoid_bce(d, t), torch.nn.functional.binary_cross_entropy_with_logits(-d, t, reduction="none")
    )
    # the gradient of component 0 does not change when another component moves
    g0 = sigmoid_bce_gradient(d, t)[0]
    d2 = d.clone()
    d2[3] += 10.0
    assert float(sigmoid_bce_gradient(d2, t)[0]) == float(g0)
    # whereas the LSE gradient of component 0 does
    assert float(lse_gradient(d2)[0]) != float(lse_gradient(d)[0])


def test_sigmoid_bce_numpy_stable_for_large_d():
    d = np.array([-1e4, 1e4, 0.0])
    t = np.array([1.0, 0.0, 0.5])
    out = sigmoid_bce(d, t)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(sigmoid_bce_gradient(d, t), [0.0, 0.0, 0.0], atol=1e-15)


def test_correntropy_values():
    d = np.array([0.0, 1.0, 100.0])
    np.testing.assert_allclose(correntropy(d, 1.0), [0.0, 1 - math.exp(-1), 1.0])
    np.testing.assert_allclose(correntropy_gradient(d, 1.0), [0.0, 2 * math.exp(-1), 0.0], atol=1e-300)


# --------------------------------------------------------------------------- bad input
BAD_D = [
    (np.array([1.0, np.nan]), "finite"),
    (np.array([1.0, np.inf]), "finite"),
    (np.array([]), "empty"),
    (np.array([1, 2]), "floating"),
    (torch.tensor([1, 2]), "floating"),
    (torch.tensor([float("nan")]), "finite"),
    ("abc", "numpy array or torch tensor"),
    (None, "numpy array or torch tensor"),
]


@pytest.mark.parametrize("fn", [lse, responsibilities, lse_gradient])
@pytest.mark.parametrize("bad,msg", BAD_D)
def test_bad_d_raises(fn, bad, msg):
    with pytest.raises(ValueError, match=r"^d ") as exc:
        fn(bad)
    assert msg in str(exc.value)


@pytest.mark.parametrize("fn", [lse, responsibilities, lse_gradient])
def test_scalar_and_bad_dim_raise(fn):
    with pytest.raises(ValueError, match="d must have at least 1"):
        fn(np.float64(1.0))
    d = np.zeros((2, 3))
    for dim in (2, -3, 1.0, "a", True):
        with pytest.raises(ValueError, match="dim"):
            fn(d, dim=dim)
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((2, 0)), dim=1)


@pytest.mark.parametrize("fn", [cross_entropy, cross_entropy_gradient])
def test_cross_entropy_bad_input(fn):
    d = np.zeros((3, 4))
    with pytest.raises(ValueError, match="^y "):
        fn(d, np.array([0, 1, 4]))  # out of range
    with pytest.raises(ValueError, match="^y "):
        fn(d, np.array([0, 1]))  # wrong shape
    with pytest.raises(ValueError, match="^y "):
        fn(d, np.array([0.0, 1.0, 2.0]))  # not integer
    with pytest.raises(ValueError, match="^y "):
        fn(d, np.array([-1, 0, 0]))
    with pytest.raises(ValueError, match="^d "):
        fn(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="^y "):
        fn(np.zeros(3), np.array([0, 1]))


@pytest.mark.parametrize("fn", [sigmoid_bce, sigmoid_bce_gradient])
def test_sigmoid_bce_bad_input(fn):
    d = np.zeros(3)
    with pytest.raises(ValueError, match="^t "):
        fn(d, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="^t "):
        fn(d, np.array([0.0, 1.5, 0.0]))
    with pytest.raises(ValueError, match="^t "):
        fn(d, np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="^d "):
        fn(np.array([np.inf, 0.0, 0.0]), np.zeros(3))


@pytest.mark.parametrize("fn", [correntropy, correntropy_gradient])
def test_correntropy_bad_input(fn):
    for s in (0.0, -1.0, float("nan"), float("inf"), "x", True):
        with pytest.raises(ValueError, match="sigma"):
            fn(np.zeros(2), s)
    with pytest.raises(ValueError, match="^d "):
        fn(np.array([np.nan]), 1.0)


def test_correntropy_huge_distance_does_not_warn():
    assert float(correntropy(np.array([1e200]), 1.0)[0]) == 1.0
    assert float(correntropy_gradient(np.array([1e200, -1e300]), 1.0).max()) == 0.0
    assert float(correntropy(np.array([1e30], dtype=np.float32), 1.0)[0]) == 1.0


# =============================================================================================
# Naive responsibilities (chapter 3, floating point)
# =============================================================================================
from iemlib import objectives as O  # noqa: E402

F64 = torch.float64


def test_naive_responsibilities_lose_accuracy_then_fail():
    ok = O.naive_responsibilities(np.array([10.0, 11.0, 12.0], dtype=np.float32))
    np.testing.assert_allclose(ok, responsibilities(np.array([10.0, 11.0, 12.0])), rtol=1e-6)
    assert ok.dtype == np.float32
    ref = responsibilities(np.array([100.0, 101.0, 102.0]))
    sub = O.naive_responsibilities(np.array([100.0, 101.0, 102.0], dtype=np.float32))
    rel = np.abs(sub - ref) / ref
    assert np.isfinite(sub).all() and abs(sub.sum() - 1) < 1e-6 and rel.max() > 1e-2  # finite, normalized, wrong
    assert np.isnan(O.naive_responsibilities(np.array([104.0, 105.0], dtype=np.float32))).all()
    assert np.isnan(O.naive_responsibilities(np.array([-100.0, -99.0], dtype=np.float32))).all()  # overflow side
    np.testing.assert_allclose(O.naive_responsibilities(np.array([720.0, 721.0])), responsibilities(np.array([0.0, 1.0])), rtol=1e-9)
    # torch in, numpy out; the dim argument
    out = O.naive_responsibilities(torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=F64), dim=0)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.sum(0), [1.0, 1.0], rtol=1e-15)
    with pytest.raises(ValueError, match="^d "):
        O.naive_responsibilities(np.array([np.nan, 1.0]))


# =============================================================================================
# Other kernels and the partition function (chapter 3)
# =============================================================================================
_POSITIVE = hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0.05, 20.0))


def _grad_np(fn, d):
    t = torch.tensor(d, dtype=F64, requires_grad=True)
    return torch.autograd.grad(fn(t), t)[0].numpy()


def _central_fd(fn, d, h=1e-6):
    out = np.empty_like(d)
    for j in range(d.size):
        e = np.zeros_like(d)
        e[j] = h
        out[j] = (float(fn(torch.tensor(d + e))) - float(fn(torch.tensor(d - e)))) / (2 * h)
    return out


@pytest.mark.parametrize("kernel", sorted(O.KERNELS))
@given(d=_POSITIVE)
def test_kernel_gradient_is_posterior_times_score(kernel, d):
    """dL_f/dd_j = w_j (log f)'(d_j): closed form vs autograd and vs finite differences."""
    closed = O.kernel_gradient(d, kernel)
    np.testing.assert_allclose(_grad_np(lambda t: O.kernel_objective(t, kernel), d), closed, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(_central_fd(lambda t: O.kernel_objective(t, kernel), d), closed, rtol=1e-5, atol=1e-7)
    w = O.kernel_posterior(d, kernel)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(closed, w * O.kernel_score(d, kernel), rtol=1e-14)


def test_kernel_values_by_hand():
    d = np.array([0.5, 2.0])
    np.testing.assert_allclose(O.kernel_log_f(d, "inverse"), -np.log(d), rtol=1e-15)
    np.testing.assert_allclose(O.kernel_log_f(d, "cauchy"), -np.log1p(d), rtol=1e-15)
    np.testing.assert_allclose(O.kernel_log_f(d, "gaussian"), -(d**2), rtol=1e-15)
    np.testing.assert_array_equal(O.kernel_score(d, "exponential"), [-1.0, -1.0])
    np.testing.assert_allclose(O.kernel_objective(d, "cauchy"), math.log(1 / 1.5 + 1 / 3.0), rtol=1e-14)
    np.testing.assert_allclose(O.kernel_posterior(d, "gaussian"), np.exp(-(d**2)) / np.exp(-(d**2)).sum(), rtol=1e-14)


def test_exponential_kernel_is_theorem1():
    d = np.array([0.3, 1.0, 4.0, -2.0])
    np.testing.assert_allclose(O.kernel_objective(d, "exponential"), lse(d), rtol=1e-14)
    np.testing.assert_allclose(O.kernel_gradient(d, "exponential"), -responsibilities(d), rtol=1e-14)
    t = torch.tensor(d)
    assert torch.equal(O.kernel_objective(t, "exponential"), lse(t))  # bitwise: lse of -(-d)


def test_only_the_exponential_is_shift_invariant_with_unit_mass():
    d = np.array([1.0, 2.0, 3.0])
    for kernel in ("inverse", "cauchy", "gaussian"):
        assert not np.allclose(O.kernel_posterior(d, kernel), O.kernel_posterior(d + 10, kernel), atol=1e-3)
        assert abs(np.abs(O.kernel_gradient(d, kernel)).sum() - 1.0) > 1e-2
    np.testing.assert_allclose(O.kernel_posterior(d, "exponential"), O.kernel_posterior(d + 10, "exponential"), rtol=1e-13)
    w = (1 / d) / (1 / d).sum()
    np.testing.assert_allclose(O.kernel_gradient(d, "inverse"), -w / d, rtol=1e-14)


def test_kernel_torch_keeps_dtype_and_graph_and_dim():
    d = torch.tensor([0.5, 1.5], dtype=torch.float32, requires_grad=True)
    L = O.kernel_objective(d, "cauchy")
    assert L.dtype == torch.float32
    (g,) = torch.autograd.grad(L, d)
    np.testing.assert_allclose(g.numpy(), O.kernel_gradient(d.detach(), "cauchy").numpy(), rtol=1e-6)
    D = np.random.default_rng(0).uniform(0.1, 3.0, size=(4, 3))
    np.testing.assert_allclose(O.kernel_posterior(D, "inverse", dim=0).sum(0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(O.kernel_objective(D, "inverse", dim=0), np.log((1 / D).sum(0)), rtol=1e-13)


def test_kernel_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        O.kernel_objective(np.ones(3), "laplace")
    with pytest.raises(ValueError, match="d must be > 0"):
        O.kernel_objective(np.array([1.0, 0.0]), "inverse")
    with pytest.raises(ValueError, match="d must be > -1"):
        O.kernel_posterior(np.array([-1.5]), "cauchy")
    with pytest.raises(ValueError, match="^d "):
        O.kernel_gradient(np.array([np.nan, 1.0]), "exponential")
    with pytest.raises(ValueError, match="^d "):
        O.kernel_score(np.array([1, 2]), "exponential")


def test_partition_objective_split_is_r_but_no_coupling():
    d = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    g = _grad_np(O.partition_objective, d.numpy())
    np.testing.assert_allclose(g, -np.exp(-d.numpy()), rtol=1e-14)
    np.testing.assert_allclose(g / g.sum(), responsibilities(d.numpy()), rtol=1e-13)
    H = torch.autograd.functional.hessian(O.partition_objective, d).numpy()
    assert np.all(H[~np.eye(3, dtype=bool)] == 0)
    H_lse = torch.autograd.functional.hessian(lse, d).numpy()
    r = responsibilities(d.numpy())
    np.testing.assert_allclose(H_lse[0, 1], -r[0] * r[1], rtol=1e-12)
    # numpy, the dim argument, and g
    D = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(O.partition_objective(D, dim=0), np.exp(-D).sum(0), rtol=1e-15)
    np.testing.assert_allclose(O.partition_objective(D, np.log), lse(D), rtol=1e-14)  # g = log: L


def test_partition_objective_bad_input():
    with pytest.raises(ValueError, match="^g "):
        O.partition_objective(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match="^d "):
        O.partition_objective(np.array([np.inf]))
    with pytest.raises(ValueError, match="dim"):
        O.partition_objective(np.ones(3), dim=1)


# =============================================================================================
# The taxonomy (chapter 7)
# =============================================================================================
def dist_arrays(min_k=1):
    return st.integers(min_value=min_k, max_value=5).flatmap(
        lambda k: hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.just(k)), elements=st.floats(0.0, 12.0, allow_nan=False))
    )


ALL_KINDS = O.LOSSES + ("partition",)


def test_constants():
    assert O.OBJECTIVES == ("lse", "sigmoid", "correntropy")
    assert O.LOSSES == ("lse", "sigmoid", "correntropy", "sqrt")
    assert O.CORRENTROPY_SIGMA == math.sqrt(2.0)


def test_losses_match_their_formulas():
    d = torch.tensor([[0.2, 1.5, 3.0], [4.0, 0.0, 0.7]], dtype=F64)
    assert torch.allclose(O.loss_from_distances("lse", d), -torch.logsumexp(-d, 1))
    assert torch.allclose(O.loss_from_distances("sigmoid", d), torch.nn.functional.softplus(d).sum(1))
    assert torch.allclose(O.loss_from_distances("correntropy", d), (1 - torch.exp(-(d**2) / 2)).sum(1))
    assert torch.allclose(O.loss_from_distances("partition", d), -torch.exp(-d).sum(1))
    assert torch.allclose(O.loss_from_distances("sqrt", d), 2 - 2 * torch.exp(-d).sum(1).sqrt())
    # the same as the elementwise losses of this module
    assert torch.equal(O.loss_from_distances("sigmoid", d), sigmoid_bce(d, torch.ones_like(d)).sum(-1))
    assert torch.equal(O.loss_from_distances("correntropy", d), correntropy(d, O.CORRENTROPY_SIGMA).sum(-1))
    assert torch.equal(O.loss_from_distances("lse", d), -lse(d, dim=-1))
    # numpy input becomes a float64 tensor
    assert O.loss_from_distances("lse", d.numpy()).dtype == F64


@given(dist_arrays())
def test_jacobian_closed_form_matches_autograd(d):
    for kind in ALL_KINDS:
        J = O.gradient_jacobian(kind, torch.as_tensor(d))
        Jc = O.gradient_jacobian_closed_form(kind, torch.as_tensor(d))
        assert J.shape == (d.shape[0], d.shape[1], d.shape[1])
        assert torch.allclose(J, Jc, atol=1e-12)


@given(dist_arrays(min_k=2))
def test_only_the_log_couples_among_the_separable_losses(d):
    d = torch.as_tensor(d)
    r = responsibilities(d)
    J = O.gradient_jacobian("lse", d)
    assert math.isclose(float(J[0, 0, 1]), float(r[0, 0] * r[0, 1]), rel_tol=1e-9, abs_tol=1e-15)
    for kind in ("sigmoid", "correntropy", "partition"):
        assert O.max_off_diagonal(O.gradient_jacobian(kind, d)) == 0.0


def test_lse_gradient_is_responsibility_and_coupling_is_visible():
    d = torch.tensor([[0.0, 0.0, 5.0]], dtype=F64)
    assert torch.allclose(O.distance_gradient("lse", d), responsibilities(d))
    assert torch.allclose(O.distance_gradient("partition", d), torch.exp(-d))  # loss -Z
    J = O.gradient_jacobian("lse", d)
    assert abs(float(J[0, 0, 1]) - float(responsibilities(d)[0, 0] ** 2)) < 1e-12
    assert O.max_off_diagonal(J) > 0.2


def test_distance_gradient_finite_differences():
    d = torch.tensor([[0.3, 1.1, 2.0]], dtype=F64)
    h = 1e-6
    for kind in ALL_KINDS:
        g = O.distance_gradient(kind, d)
        for j in range(3):
            e = torch.zeros_like(d)
            e[0, j] = h
            fd = (O.loss_from_distances(kind, d + e) - O.loss_from_distances(kind, d - e)) / (2 * h)
            assert abs(float(fd) - float(g[0, j])) < 1e-8, kind


def test_max_off_diagonal_single_component_and_bad_shape():
    assert O.max_off_diagonal(torch.ones(3, 1, 1)) == 0.0
    assert O.max_off_diagonal(np.array([[[1.0, -2.0], [0.5, 1.0]]])) == 2.0
    with pytest.raises(ValueError, match="^J "):
        O.max_off_diagonal(torch.ones(3, 2, 4))
    with pytest.raises(ValueError, match="^J "):
        O.max_off_diagonal(torch.ones(3, 2))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.loss_from_distances("softmax", torch.ones(2, 2)), "objective"),
        (lambda: O.loss_from_distances("lse", torch.ones(2)), "d"),
        (lambda: O.loss_from_distances("lse", torch.tensor([[1.0, float("nan")]])), "d"),
        (lambda: O.distance_gradient("lse", torch.ones(2, 2, dtype=torch.int64)), "d"),
        (lambda: O.gradient_jacobian("lse", np.array([[1.0, np.inf]])), "d"),
        (lambda: O.gradient_jacobian_closed_form("relu", np.ones((2, 2))), "objective"),
        (lambda: O.power_objective(torch.ones(2, 2), alpha=float("nan")), "alpha"),
        (lambda: O.power_weights(torch.ones(2, 2), alpha="x"), "alpha"),
        (lambda: O.power_weights(torch.ones(2, 2), alpha=True), "alpha"),
        (lambda: O.power_hessian(torch.ones(2), 0.5), "d"),
    ],
)
def test_taxonomy_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_numpy_input_accepted_by_the_taxonomy():
    d = np.array([[0.5, 1.0]])
    assert O.gradient_jacobian("lse", d).shape == (1, 2, 2)
    assert O.gradient_jacobian_closed_form("sigmoid", d).dtype == F64


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
    L = O.power_objective(dd, alpha)
    assert torch.allclose(L, O.partition_objective(d, _g_alpha(alpha)), atol=1e-12)
    (grad,) = torch.autograd.grad(L.sum(), dd)
    assert torch.allclose(-grad, O.power_weights(d, alpha), atol=1e-13)
    H = O.power_hessian(d, alpha)
    for i in range(len(d)):
        Hi = torch.autograd.functional.hessian(lambda z: O.partition_objective(z[None], _g_alpha(alpha)).sum(), d[i])
        assert torch.allclose(Hi, H[i], atol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_power_family_finite_differences(alpha):
    d = torch.tensor([[0.3, 1.1, 2.0]], dtype=F64)
    h = 1e-5
    w = O.power_weights(d, alpha)
    H = O.power_hessian(d, alpha)
    for j in range(3):
        e = torch.zeros_like(d)
        e[0, j] = h
        fd = (O.power_objective(d + e, alpha) - O.power_objective(d - e, alpha)) / (2 * h)
        assert abs(float(fd) + float(w[0, j])) < 1e-9
        fd_w = (O.power_weights(d + e, alpha) - O.power_weights(d - e, alpha)) / (2 * h)  # d w / d d_j = -H[:, j]
        assert torch.allclose(-fd_w[0], H[0, :, j], atol=1e-8)


@given(dist_arrays(min_k=2), st.sampled_from(ALPHAS))
def test_weights_are_responsibilities_times_z_alpha(d, alpha):
    d = torch.as_tensor(d)
    w = O.power_weights(d, alpha)
    r = responsibilities(d)
    Z = torch.exp(-d).sum(1)
    assert torch.allclose(w, r * Z[:, None] ** alpha, rtol=1e-10, atol=1e-300)
    assert torch.allclose(w.sum(1), Z**alpha, rtol=1e-10)
    if alpha == 0.0:
        assert torch.allclose(w.sum(1), torch.ones(len(d), dtype=F64))


def test_only_the_log_sums_to_one_and_only_affine_g_is_separable():
    d = torch.tensor([[0.0, 0.5, 3.0], [2.0, 2.5, 6.0]], dtype=F64)
    for alpha in ALPHAS:
        sums = O.power_weights(d, alpha).sum(1)
        assert bool(torch.allclose(sums, torch.ones(2, dtype=F64))) == (alpha == 0.0)
        off = O.max_off_diagonal(O.power_hessian(d, alpha))
        assert (off < 1e-15) == (alpha == 1.0)
    dd = d.clone().requires_grad_(True)
    H = torch.autograd.functional.hessian(lambda z: (-torch.exp(-z).sum(-1).sqrt()).sum(), dd)
    assert abs(float(H[0, 0, 0, 1])) > 1e-3


def test_sqrt_loss_is_minus_the_half_power_objective():
    d = torch.tensor([[0.2, 1.5, 3.0], [4.0, 0.0, 0.7]], dtype=F64)
    assert torch.allclose(O.loss_from_distances("sqrt", d), -O.power_objective(d, 0.5))
    assert torch.allclose(O.gradient_jacobian("sqrt", d), O.gradient_jacobian_closed_form("sqrt", d), atol=1e-13)
    assert O.max_off_diagonal(O.gradient_jacobian("sqrt", d)) > 1e-3
    assert torch.equal(O.power_objective(d, 0.0), lse(d, dim=-1))


# =============================================================================================
# Multi-label losses (chapter 9)
# =============================================================================================
@given(
    hnp.arrays(np.float64, (3, 4), elements=st.floats(-8, 8)),
    hnp.arrays(np.float64, (3, 4), elements=st.sampled_from([0.0, 1.0])),
)
def test_logit_jacobians_closed_forms(Z, T):
    Z, T = torch.as_tensor(Z), torch.as_tensor(T)
    Js = O.logit_gradient_jacobian(Z, T, "sigmoid")
    p = torch.sigmoid(Z)
    assert torch.allclose(Js, torch.diag_embed(p * (1 - p)), atol=1e-12)
    assert O.max_off_diagonal(Js) == 0.0
    Jm = O.logit_gradient_jacobian(Z, T, "softmax")
    q = torch.softmax(Z, 1)
    w = (T.sum(1) / T.sum(1).clamp_min(1.0))[:, None, None]
    assert torch.allclose(Jm, w * (torch.diag_embed(q) - q[:, :, None] * q[:, None, :]), atol=1e-12)


def test_multilabel_loss_values_and_gradient():
    Z = torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.0, -0.5]], dtype=F64, requires_grad=True)
    T = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=F64)
    s = O.multilabel_loss(Z, T, "sigmoid")
    assert torch.allclose(s, torch.nn.functional.binary_cross_entropy_with_logits(Z, T, reduction="none").sum(1))
    # with d = -z it is the sum of the elementwise sigmoid losses in distances
    assert torch.allclose(s, sigmoid_bce(-Z, T).sum(1))
    (g,) = torch.autograd.grad(s.sum(), Z)
    assert torch.allclose(g, torch.sigmoid(Z) - T)
    m = O.multilabel_loss(Z, T, "softmax")
    assert float(m[1].detach()) == 0.0  # no label, no loss
    assert torch.allclose(m[0], -(torch.log_softmax(Z[0], 0)[[0, 2]]).sum() / 2)


def test_sigmoid_gradient_of_one_label_ignores_the_others():
    Z = torch.tensor([[0.3, -1.0, 2.0]], dtype=F64, requires_grad=True)
    T = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    (g,) = torch.autograd.grad(O.multilabel_loss(Z, T).sum(), Z)
    Z2 = Z.detach().clone()
    Z2[0, 2] += 5.0
    Z2.requires_grad_(True)
    (g2,) = torch.autograd.grad(O.multilabel_loss(Z2, T).sum(), Z2)
    assert float(g[0, 0]) == float(g2[0, 0])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.logit_gradient_jacobian(torch.ones(3, 2, dtype=F64), torch.ones(3, 3, dtype=F64)), "t"),
        (lambda: O.logit_gradient_jacobian(torch.ones(3, 2, dtype=F64), torch.ones(3, 2, dtype=F64), "relu"), "objective"),
        (lambda: O.multilabel_loss(torch.ones(3, dtype=F64), torch.ones(3, dtype=F64)), "z"),
        (lambda: O.multilabel_loss(torch.ones(3, 2, dtype=F64), torch.full((3, 2), float("nan"))), "t"),
    ],
)
def test_multilabel_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# =============================================================================================
# Soft targets (chapter 10)
# =============================================================================================
finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


def _rows(n: int, k: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=F64)


@given(st.lists(finite, min_size=2, max_size=8), st.floats(0, 1), st.integers(0, 100))
def test_soft_gradient_matches_autograd(ds, eps, yseed):
    d = torch.tensor(ds, dtype=F64)
    K = len(ds)
    q = O.smooth_labels(torch.tensor([yseed % K]), K, eps)[0]
    dv = d.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(O.soft_cross_entropy(dv, q), dv)  # loss, with respect to d
    assert torch.allclose(g, O.soft_cross_entropy_gradient(d, q), atol=1e-12)
    assert abs(float(O.soft_cross_entropy_gradient(d, q).sum())) < 1e-12


def test_soft_gradient_finite_differences_numpy():
    d = _rows(1, 5, seed=3)[0].numpy()
    q = np.array([0.1, 0.6, 0.1, 0.1, 0.1])
    h = 1e-6
    fd = np.array([(O.soft_cross_entropy(d + h * e, q) - O.soft_cross_entropy(d - h * e, q)) / (2 * h) for e in np.eye(5)])
    np.testing.assert_allclose(fd, O.soft_cross_entropy_gradient(d, q), atol=1e-8)
    np.testing.assert_allclose(O.soft_cross_entropy(d, q), O.soft_cross_entropy(torch.tensor(d), torch.tensor(q)).item(), rtol=1e-14)
    assert isinstance(O.soft_cross_entropy_gradient(d, q), np.ndarray)


def test_soft_ce_reduces_to_hard_ce():
    d = _rows(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    q = O.smooth_labels(y, 4, 0.0)
    assert torch.allclose(O.soft_cross_entropy(d, q), torch.nn.functional.cross_entropy(-d, y, reduction="none"))
    assert torch.allclose(O.soft_cross_entropy(d, q), cross_entropy(d, y))
    assert torch.allclose(O.soft_cross_entropy_gradient(d, q), cross_entropy_gradient(d, y))


def test_fixed_point_is_stationary():
    for eps, K in [(0.1, 10), (0.3, 4), (1.0, 3)]:
        q = O.smooth_labels(torch.tensor([0]), K, eps)[0]
        d = -torch.log(q.clamp_min(1e-300))  # r = q
        assert float(O.soft_cross_entropy_gradient(d, q).abs().max()) < 1e-12
        assert math.isclose(float(torch.softmax(-d, 0)[0]), O.smoothing_fixed_point(eps, K), rel_tol=1e-12)


def test_noise_equals_smoothing():
    y = torch.arange(20) % 10
    for rho in (0.0, 0.2, 0.5):
        eps = rho * 10 / 9
        assert torch.allclose(O.noisy_label_targets(y, 10, rho), O.smooth_labels(y, 10, eps), atol=1e-15)
        assert torch.allclose(O.noisy_label_targets(y, 10, rho).sum(1), torch.ones(20, dtype=F64))
    q = O.smooth_labels(np.array([1, 0]), 3, 0.3)
    assert q.dtype == F64 and torch.allclose(q, torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]], dtype=F64))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: O.smooth_labels([0, 1], 2, 1.5), "eps"),
        (lambda: O.smooth_labels([0, 3], 2, 0.1), "y"),
        (lambda: O.smooth_labels([0, 1], 1, 0.1), "n_classes"),
        (lambda: O.noisy_label_targets([0, 1], 3, -0.1), "rho"),
        (lambda: O.smoothing_fixed_point(2.0, 3), "eps"),
        (lambda: O.soft_cross_entropy(np.zeros((2, 3)), np.ones((2, 3))), "q"),
        (lambda: O.soft_cross_entropy(np.zeros((2, 3)), np.ones((2, 2)) / 2), "q"),
        (lambda: O.soft_cross_entropy(np.zeros((2, 3)), -np.ones((2, 3))), "q"),
        (lambda: O.soft_cross_entropy_gradient(np.full(3, np.inf), np.ones(3) / 3), "d"),
    ],
)
def test_soft_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
