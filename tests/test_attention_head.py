"""iemlib.attention.head: the closed-form attention gradients (Agarwal, Dalal & Misra 2025, §3) against
autograd and finite differences, the loss written from scores and values, and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib import responsibilities
from iemlib.attention import (
    PARAM_NAMES,
    Backward,
    HeadParams,
    attention_forward,
    attention_loss,
    attention_score_gradient,
    attention_value_gradient,
    autograd_gradients,
    closed_form_backward,
    closed_form_gradients,
    gradient_step,
    init_params,
)

from iemlib.gradcheck import max_relative_error  # noqa: E402

TOL = 1e-10


def make_problem(seed=0, T=5, d_x=3, d_k=2, d_v=2, C=3, batch=(), scale=0.8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, T, d_x))
    y = rng.integers(0, C, size=(*batch, T))
    P = init_params(d_x, d_k, d_v, C, scale=scale, random_state=seed + 1)
    return x, y, replace(P, b=rng.standard_normal(C))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_parameter_gradients_match_autograd(causal, batch):
    x, y, P = make_problem(seed=4, T=7, d_x=4, d_k=3, d_v=5, C=4, batch=batch)
    cf = closed_form_gradients(x, y, *P, causal=causal)
    ag = autograd_gradients(x, y, *P, causal=causal)
    assert isinstance(cf, dict) and list(cf) == list(PARAM_NAMES)  # the BOOK_MAP API returns a dict
    for k in PARAM_NAMES:
        assert cf[k].shape == getattr(P, k).shape
        assert max_relative_error(cf[k], getattr(ag, k)) <= TOL, k


@pytest.mark.parametrize("causal", [True, False])
def test_intermediate_closed_forms_match_autograd(causal):
    x, y, P = make_problem(seed=7, T=6, d_x=3, d_k=2, d_v=3, C=3)
    st_ = closed_form_backward(x, y, *P, causal=causal)
    ag = autograd_gradients(x, y, *P, causal=causal)
    pairs = {"u": "dL_dg", "B": "dL_dalpha", "dL_ds": "dL_ds", "dL_dv": "dL_dv", "dL_dq": "dL_dq", "dL_dk": "dL_dk"}
    for mine, ref in pairs.items():
        assert max_relative_error(getattr(st_, mine), getattr(ag, ref)) <= TOL, mine
    assert isinstance(st_, Backward) and isinstance(st_.loss, float)
    alpha, v, g, s = attention_forward(x, P.W_Q, P.W_K, P.W_V, causal=causal)
    assert st_.loss == pytest.approx(float(attention_loss(s, v, P.W_O, P.b, y, causal=causal)), rel=1e-14)
    for k in PARAM_NAMES:
        assert np.array_equal(getattr(st_.grads, k), getattr(st_, k))


@pytest.mark.parametrize("causal", [True, False])
def test_closed_forms_against_finite_differences(causal):
    """Central differences of the loss (float64) on every coordinate of every parameter."""
    x, y, P = make_problem(seed=11, T=5, d_x=3, d_k=2, d_v=2, C=3)
    cf = closed_form_gradients(x, y, *P, causal=causal)

    def loss(params: HeadParams) -> float:
        _, v, _, s = attention_forward(x, params.W_Q, params.W_K, params.W_V, causal=causal)
        return float(attention_loss(s, v, params.W_O, params.b, y, causal=causal))

    h = 1e-6
    for k in PARAM_NAMES:
        W = getattr(P, k)
        fd = np.zeros_like(W)
        for idx in np.ndindex(W.shape):
            e = np.zeros_like(W)
            e[idx] = h
            fd[idx] = (loss(replace(P, **{k: W + e})) - loss(replace(P, **{k: W - e}))) / (2 * h)
        np.testing.assert_allclose(cf[k], fd, atol=1e-7, err_msg=k)


@given(
    T=st.integers(1, 6),
    d_x=st.integers(1, 4),
    d_k=st.integers(1, 3),
    d_v=st.integers(1, 3),
    C=st.integers(2, 4),
    nb=st.integers(0, 2),
    causal=st.booleans(),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
)
def test_closed_forms_property(T, d_x, d_k, d_v, C, nb, causal, seed, scale):
    batch = (nb,) if nb else ()
    x, y, P = make_problem(seed=seed, T=T, d_x=d_x, d_k=d_k, d_v=d_v, C=C, batch=batch, scale=scale)
    cf = closed_form_gradients(x, y, *P, causal=causal)
    ag = autograd_gradients(x, y, *P, causal=causal)
    for k in PARAM_NAMES:
        ref = np.abs(getattr(ag, k)).max()
        err = np.abs(cf[k] - getattr(ag, k)).max()
        if ref == 0:  # e.g. T = 1: one key, alpha = 1, no gradient reaches W_Q, W_K
            assert err == 0, (k, err)
        else:
            assert err <= TOL * ref, (k, err, ref)


def test_advantage_law_structure():
    x, y, P = make_problem(seed=2, T=6)
    for causal in (True, False):
        s = closed_form_backward(x, y, *P, causal=causal)
        # rows of dL/ds sum to zero (softmax is shift-invariant), masked entries vanish
        assert np.allclose(s.dL_ds.sum(-1), 0.0, atol=1e-14)
        assert np.allclose(s.dL_ds, s.alpha * s.B_centered, atol=0)
        assert np.allclose(s.advantage, -s.B_centered)
        assert np.array_equal(s.dL_dalpha, s.B)
        assert np.allclose(s.E_B, (s.alpha * s.B).sum(-1))
        if causal:
            upper = ~np.tril(np.ones((6, 6), dtype=bool))
            assert np.all(s.alpha[upper] == 0) and np.all(s.dL_ds[upper] == 0)
            assert np.all(s.advantage[upper] == 0) and not s.mask[upper].any()
        assert np.allclose((s.alpha * s.B_centered).sum(-1), 0.0, atol=1e-14)


def test_WV_gradient_is_U_A_Xt_and_sum_of_value_gradients():
    x, y, P = make_problem(seed=3, T=5)
    s = closed_form_backward(x, y, *P, causal=False)
    U, A, X = s.u.T, s.alpha, x.T
    assert np.allclose(s.W_V, U @ A @ X.T, rtol=1e-13, atol=1e-15)
    assert np.allclose(s.W_V, sum(np.outer(s.dL_dv[j], x[j]) for j in range(5)), rtol=1e-12)
    assert np.allclose(s.dL_dv[2], sum(s.alpha[i, 2] * s.u[i] for i in range(5)))
    # u_i = W_O^T (p_i - e_{y_i}) and the output-layer gradients
    onehot = np.eye(3)[y]
    assert np.allclose(s.u, (s.p - onehot) @ P.W_O)
    assert np.allclose(s.W_O, (s.p - onehot).T @ s.g) and np.allclose(s.b, (s.p - onehot).sum(0))


def test_attention_is_responsibilities_of_negative_scores():
    x, y, P = make_problem(seed=5, T=5)
    alpha, v, g, s = attention_forward(x, P.W_Q, P.W_K, P.W_V, causal=False)
    assert np.allclose(alpha, responsibilities(-s), atol=1e-15)
    fwd = attention_forward(x, P.W_Q, P.W_K, P.W_V, causal=True)
    for i in range(5):
        assert np.allclose(fwd.alpha[i, : i + 1], responsibilities(-fwd.s[i, : i + 1]), atol=1e-15)
    assert np.allclose(g, alpha @ v)
    assert np.allclose(v, x @ P.W_V.T)
    assert np.allclose(s, (x @ P.W_Q.T) @ (x @ P.W_K.T).T / math.sqrt(2))


def test_forward_torch_keeps_graph_and_batches():
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    W = [torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)] + [
        torch.randn(5, 3, dtype=torch.float64)
    ]
    alpha, v, g, s = attention_forward(x, *W)
    assert alpha.shape == (4, 6, 6) and v.shape == (4, 6, 5) and g.shape == (4, 6, 5) and s.shape == (4, 6, 6)
    assert torch.allclose(alpha.sum(-1), torch.ones(4, 6, dtype=torch.float64))
    g.sum().backward()
    assert x.grad is not None and W[0].grad is not None
    a1, *_ = attention_forward(x[1].detach(), *[w.detach() for w in W])
    assert torch.allclose(alpha[1].detach(), a1)


def test_numpy_and_torch_agree_and_types():
    x, y, P = make_problem(seed=6)
    cf_np = closed_form_gradients(x, y, *P)
    cf_t = closed_form_gradients(torch.from_numpy(x), torch.from_numpy(y), *[torch.from_numpy(a) for a in P])
    for k in PARAM_NAMES:
        assert isinstance(cf_np[k], np.ndarray) and isinstance(cf_t[k], torch.Tensor)
        assert np.array_equal(cf_np[k], cf_t[k].numpy())
    W = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in P]
    cf32 = closed_form_gradients(torch.tensor(x, dtype=torch.float32), y, *W)
    for k in PARAM_NAMES:
        assert cf32[k].dtype == torch.float32 and not cf32[k].requires_grad
        assert max_relative_error(cf32[k], cf_np[k]) < 1e-4
    bt = closed_form_backward(torch.from_numpy(x), y, *[torch.from_numpy(a) for a in P])
    assert isinstance(bt.loss, torch.Tensor) and bt.loss.ndim == 0


def test_gradient_step_descends():
    x, y, P = make_problem(seed=8, scale=0.5)

    def loss(params):
        _, v, _, s = attention_forward(x, params.W_Q, params.W_K, params.W_V)
        return float(attention_loss(s, v, params.W_O, params.b, y, causal=True))

    new, state = gradient_step(P, x, y, lr=1e-3)
    assert state.loss == pytest.approx(loss(P), rel=1e-14)
    assert loss(new) < loss(P)
    for k in PARAM_NAMES:
        assert np.allclose(getattr(new, k), getattr(P, k) - 1e-3 * getattr(state, k))


def test_init_params_draws_and_iteration():
    P = init_params(3, 2, 4, 5, scale=0.5, random_state=9)
    rng = np.random.default_rng(9)
    for k, shape in (("W_Q", (2, 3)), ("W_K", (2, 3)), ("W_V", (4, 3)), ("W_O", (5, 4))):
        np.testing.assert_array_equal(getattr(P, k), 0.5 * rng.standard_normal(shape))
    assert np.array_equal(P.b, np.zeros(5))
    assert [a is b for a, b in zip(P, (P.W_Q, P.W_K, P.W_V, P.W_O, P.b))] == [True] * 5


# ---------------------------------------------------------------------------------------------
# the loss written from scores and values, and its value and score gradients (chapter 3)
# ---------------------------------------------------------------------------------------------
def _score_case(seed=0, T=5, Tk=6, dv=4, C=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(T, Tk, generator=g, dtype=dtype) * 2
    v = torch.randn(Tk, dv, generator=g, dtype=dtype)
    W_O = torch.randn(C, dv, generator=g, dtype=dtype)
    b = torch.randn(C, generator=g, dtype=dtype)
    y = torch.randint(0, C, (T,), generator=g)
    return s, v, W_O, b, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_value_and_score_gradients_against_autograd_and_finite_differences(seed, causal):
    s, v, W_O, b, y = _score_case(seed, Tk=5)
    sr, vr = s.clone().requires_grad_(), v.clone().requires_grad_()
    gs, gv = torch.autograd.grad(attention_loss(sr, vr, W_O, b, y, causal=causal), (sr, vr))
    cs = attention_score_gradient(s, v, W_O, b, y, causal=causal)
    cv = attention_value_gradient(s, v, W_O, b, y, causal=causal)
    torch.testing.assert_close(cs, gs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cv, gv, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cs.sum(-1), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-14)
    if causal:
        assert torch.all(cs[torch.ones(5, 5, dtype=torch.bool).triu(1)] == 0)
    h = 1e-6
    for i, j in ((0, 0), (2, 1), (4, 3)):
        e = torch.zeros_like(v)
        e[i, j] = h
        fd = (attention_loss(s, v + e, W_O, b, y, causal=causal) - attention_loss(s, v - e, W_O, b, y, causal=causal)) / (2 * h)
        assert float(fd) == pytest.approx(float(cv[i, j]), abs=1e-7)
        e = torch.zeros_like(s)
        e[j, i] = h
        fd = (attention_loss(s + e, v, W_O, b, y, causal=causal) - attention_loss(s - e, v, W_O, b, y, causal=causal)) / (2 * h)
        assert float(fd) == pytest.approx(float(cs[j, i]), abs=1e-7)


def test_attention_loss_matches_direct_computation_and_the_head():
    s, v, W_O, b, y = _score_case()
    alpha = torch.softmax(s, -1)
    logits = (alpha @ v) @ W_O.T + b
    expected = -torch.log_softmax(logits, -1)[torch.arange(5), y].sum()
    torch.testing.assert_close(attention_loss(s, v, W_O, b, y), expected)
    out = attention_loss(s.numpy(), v.numpy(), W_O.numpy(), b.numpy(), y.numpy())  # numpy in, tensor out
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, expected)
    # the head's closed-form loss is this loss of its scores and values
    x, yy, P = make_problem(seed=12, T=6)
    for causal in (True, False):
        fwd = attention_forward(x, P.W_Q, P.W_K, P.W_V, causal=causal)
        bw = closed_form_backward(x, yy, *P, causal=causal)
        assert float(attention_loss(fwd.s, fwd.v, P.W_O, P.b, yy, causal=causal)) == pytest.approx(bw.loss, rel=1e-14)


def test_score_space_bad_input():
    s, v, W_O, b, y = _score_case()
    for fn in (attention_loss, attention_value_gradient, attention_score_gradient):
        with pytest.raises(ValueError, match="^v must have 6 rows"):
            fn(s, v[:3], W_O, b, y)
        with pytest.raises(ValueError, match="^W_O must have 4 columns"):
            fn(s, v, W_O[:, :2], b, y)
        with pytest.raises(ValueError, match="^b must have 3"):
            fn(s, v, W_O, b[:2], y)
        with pytest.raises(ValueError, match="^y "):
            fn(s, v, W_O, b, y + 3)
        with pytest.raises(ValueError, match="^s "):
            fn(s[0], v, W_O, b, y)
        with pytest.raises(ValueError, match="^s "):
            fn(s * float("nan"), v, W_O, b, y)
        with pytest.raises(ValueError, match="causal"):
            fn(s, v, W_O, b, y, causal=1)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, y, P: (x[0], y, P), "x must have at least 2"),
        (lambda x, y, P: (x.astype(int), y, P), "x must be a floating-point"),
        (lambda x, y, P: (np.where(x > 1, np.nan, x), y, P), "x must be finite"),
        (lambda x, y, P: (x, y, replace(P, W_Q=P.W_Q[:, :2])), "W_Q must have shape"),
        (lambda x, y, P: (x, y, replace(P, W_K=P.W_K[:1])), "W_K must have shape"),
        (lambda x, y, P: (x, y, replace(P, W_V=P.W_V.T)), "W_V must have shape"),
        (lambda x, y, P: (x, y, replace(P, W_O=P.W_O[:, :1])), "W_O must have shape"),
        (lambda x, y, P: (x, y, replace(P, b=P.b[:2])), "b must have shape"),
        (lambda x, y, P: (x, y, replace(P, W_O=np.full_like(P.W_O, np.inf))), "W_O must be finite"),
        (lambda x, y, P: (x, y + 3, P), r"y must lie in \[0, 3\)"),
        (lambda x, y, P: (x, y.astype(float), P), "y must hold integer"),
        (lambda x, y, P: (x, y[:3], P), "y must have shape"),
    ],
)
def test_bad_input_raises_naming_the_argument(mutate, match):
    x, y, P = make_problem()
    x, y, P = mutate(x, y, P)
    for fn in (closed_form_gradients, closed_form_backward, autograd_gradients):
        with pytest.raises(ValueError, match=match):
            fn(x, y, *P)


def test_bad_flags_and_hyperparameters():
    x, y, P = make_problem()
    with pytest.raises(ValueError, match="causal"):
        closed_form_gradients(x, y, *P, causal="yes")
    with pytest.raises(ValueError, match="W_Q must be a numpy array"):
        attention_forward(x, [[1.0, 2.0, 3.0]], P.W_K, P.W_V)
    with pytest.raises(ValueError, match="lr"):
        gradient_step(P, x, y, lr=-1.0)
    with pytest.raises(ValueError, match="params must be a HeadParams"):
        gradient_step({"W_Q": P.W_Q}, x, y, lr=0.1)
    with pytest.raises(ValueError, match="n_classes"):
        init_params(3, 2, 2, 1)
    with pytest.raises(ValueError, match="random_state"):
        init_params(3, 2, 2, 3, random_state=-1)
    with pytest.raises(ValueError, match="scale"):
        init_params(3, 2, 2, 3, scale=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_closed_forms_on_cuda_match_the_cpu():
    x, y, P = make_problem(seed=13, T=9, d_x=4, d_k=3, d_v=3, C=4, batch=(2,))
    cpu = closed_form_gradients(x, y, *P)
    dev = closed_form_gradients(torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda"),
                                *[torch.tensor(a, device="cuda") for a in P])
    for k in PARAM_NAMES:
        assert dev[k].device.type == "cuda"
        np.testing.assert_allclose(dev[k].cpu().numpy(), cpu[k], rtol=1e-10, atol=1e-13)
    bw = closed_form_backward(torch.tensor(x, device="cuda"), y, *P)  # mixed: moved to the tensor's device
    assert bw.alpha.device.type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_score_space_loss_and_gradients_on_cuda():
    s, v, W_O, b, y = _score_case(3)
    L = attention_loss(s.cuda(), v, W_O, b, y, causal=True)  # mixed devices: computed on the GPU
    assert L.device.type == "cuda"
    assert float(L) == pytest.approx(float(attention_loss(s, v, W_O, b, y, causal=True)), rel=1e-12)
    g = attention_score_gradient(s.cuda(), v.cuda(), W_O.cuda(), b.cuda(), y.cuda())
    torch.testing.assert_close(g.cpu(), attention_score_gradient(s, v, W_O, b, y), rtol=1e-10, atol=1e-13)
