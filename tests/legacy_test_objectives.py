"""Tests of iemlib.legacy.objectives: values, stability, properties, bad input, and every closed-form
gradient against torch autograd and central finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iemlib.legacy.objectives import (
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
