"""Closed-form attention gradients (Aggarwal, Dalal & Misra 2025, §3) against autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib import responsibilities
from iemlib.legacy.attention import (
    PARAM_NAMES,
    attention_forward,
    attention_loss,
    autograd_gradients,
    closed_form_backward,
    closed_form_gradients,
    gradient_step,
    init_params,
    max_relative_error,
    simulate_toy,
)

TOL = 1e-10


def make_problem(seed=0, T=5, d_x=3, d_k=2, d_v=2, C=3, batch=(), scale=0.8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, T, d_x))
    y = rng.integers(0, C, size=(*batch, T))
    P = init_params(d_x, d_k, d_v, C, scale=scale, seed=seed + 1)
    P["b"] = rng.standard_normal(C)
    return x, y, P


def args(P):
    return [P[k] for k in PARAM_NAMES]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_parameter_gradients_match_autograd(causal, batch):
    x, y, P = make_problem(seed=4, T=7, d_x=4, d_k=3, d_v=5, C=4, batch=batch)
    cf = closed_form_gradients(x, y, *args(P), causal=causal)
    ag = autograd_gradients(x, y, *args(P), causal=causal)
    assert set(cf) == set(PARAM_NAMES)
    for k in PARAM_NAMES:
        assert cf[k].shape == P[k].shape
        assert max_relative_error(cf[k], ag[k]) <= TOL, k


@pytest.mark.parametrize("causal", [True, False])
def test_intermediate_closed_forms_match_autograd(causal):
    x, y, P = make_problem(seed=7, T=6, d_x=3, d_k=2, d_v=3, C=3)
    st_ = closed_form_backward(x, y, *args(P), causal=causal)
    ag = autograd_gradients(x, y, *args(P), causal=causal, intermediates=True)
    pairs = {"u": "dL_dg", "B": "dL_dalpha", "dL_ds": "dL_ds", "dL_dv": "dL_dv", "dL_dq": "dL_dq", "dL_dk": "dL_dk"}
    for mine, ref in pairs.items():
        if mine == "B" and causal:
            # autograd's dL/dalpha is b_ij on every entry too (g is linear in alpha); the mask acts on s
            pass
        assert max_relative_error(st_[mine], ag[ref]) <= TOL, mine
    assert abs(st_["loss"] - attention_loss(x, y, *args(P), causal=causal)) < 1e-12


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
    cf = closed_form_gradients(x, y, *args(P), causal=causal)
    ag = autograd_gradients(x, y, *args(P), causal=causal)
    for k in PARAM_NAMES:
        ref = np.abs(ag[k]).max()
        err = np.abs(cf[k] - ag[k]).max()
        if ref == 0:  # e.g. T = 1: one key, alpha = 1, no gradient reaches W_Q, W_K
            assert err == 0, (k, err)
        else:
            assert err <= TOL * ref, (k, err, ref)


def test_advantage_law_structure():
    x, y, P = make_problem(seed=2, T=6)
    for causal in (True, False):
        s = closed_form_backward(x, y, *args(P), causal=causal)
        # rows of dL/ds sum to zero (softmax is shift-invariant), masked entries vanish
        assert np.allclose(s["dL_ds"].sum(-1), 0.0, atol=1e-14)
        assert np.allclose(s["dL_ds"], s["alpha"] * s["B_centered"], atol=0)
        assert np.allclose(s["advantage"], -s["B_centered"])
        if causal:
            upper = ~np.tril(np.ones((6, 6), dtype=bool))
            assert np.all(s["alpha"][upper] == 0) and np.all(s["dL_ds"][upper] == 0)
            assert np.all(s["advantage"][upper] == 0)
        # E_{alpha_i}[b] and the weighted mean of the centered compatibilities
        assert np.allclose((s["alpha"] * s["B_centered"]).sum(-1), 0.0, atol=1e-14)


def test_WV_gradient_is_U_A_Xt_and_sum_of_value_gradients():
    x, y, P = make_problem(seed=3, T=5)
    s = closed_form_backward(x, y, *args(P), causal=False)
    U, A, X = s["u"].T, s["alpha"], x.T
    assert np.allclose(s["W_V"], U @ A @ X.T, rtol=1e-13, atol=1e-15)
    assert np.allclose(s["W_V"], sum(np.outer(s["dL_dv"][j], x[j]) for j in range(5)), rtol=1e-12)
    # dL/dv_j = sum_i alpha_ij u_i
    assert np.allclose(s["dL_dv"][2], sum(s["alpha"][i, 2] * s["u"][i] for i in range(5)))


def test_attention_is_responsibilities_of_negative_scores():
    x, y, P = make_problem(seed=5, T=5)
    alpha, v, g, s = attention_forward(x, P["W_Q"], P["W_K"], P["W_V"], causal=False)
    assert np.allclose(alpha, responsibilities(-s), atol=1e-15)
    alpha_c, _, _, s_c = attention_forward(x, P["W_Q"], P["W_K"], P["W_V"], causal=True)
    for i in range(5):
        assert np.allclose(alpha_c[i, : i + 1], responsibilities(-s_c[i, : i + 1]), atol=1e-15)
    assert np.allclose(g, alpha @ v)
    assert np.allclose(v, x @ P["W_V"].T)
    assert np.allclose(s, (x @ P["W_Q"].T) @ (x @ P["W_K"].T).T / math.sqrt(2))


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
    # each batch element equals the unbatched forward pass
    a1, *_ = attention_forward(x[1].detach(), *[w.detach() for w in W])
    assert torch.allclose(alpha[1].detach(), a1)


def test_numpy_and_torch_agree_and_types():
    x, y, P = make_problem(seed=6)
    cf_np = closed_form_gradients(x, y, *args(P))
    cf_t = closed_form_gradients(torch.from_numpy(x), torch.from_numpy(y), *[torch.from_numpy(a) for a in args(P)])
    for k in PARAM_NAMES:
        assert isinstance(cf_np[k], np.ndarray) and isinstance(cf_t[k], torch.Tensor)
        assert np.allclose(cf_np[k], cf_t[k].numpy(), rtol=0, atol=0)
    # float32 works (lower precision), and requires_grad inputs are not disturbed
    W = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in args(P)]
    cf32 = closed_form_gradients(torch.tensor(x, dtype=torch.float32), y, *W)
    for k in PARAM_NAMES:
        assert cf32[k].dtype == torch.float32 and not cf32[k].requires_grad
        assert max_relative_error(cf32[k], cf_np[k]) < 1e-4


def test_gradient_step_descends_and_simulation_is_deterministic():
    x, y, P = make_problem(seed=8, scale=0.5)
    L0 = attention_loss(x, y, *args(P))
    new, state = gradient_step(P, x, y, lr=1e-3)
    assert state["loss"] == pytest.approx(L0)
    assert attention_loss(x, y, *args(new)) < L0
    for k in PARAM_NAMES:
        assert np.allclose(new[k], P[k] - 1e-3 * state[k])
    r1 = simulate_toy(n_steps=10)
    r2 = simulate_toy(n_steps=10)
    assert np.array_equal(r1.loss, r2.loss) and np.array_equal(r1.alpha, r2.alpha)
    assert r1.n_steps == 10 and r1.alpha.shape == (11, 5, 5) and r1.v.shape == (11, 5, 2)
    assert r1.params["W_V"].shape == (11, 2, 3)
    # the recorded values are W_V x_j at each step
    assert np.allclose(r1.v[7], r1.x @ r1.params["W_V"][7].T)


def test_default_toy_run_reduces_loss_monotonically():
    r = simulate_toy()
    assert r.loss[0] == pytest.approx(5 * math.log(3), abs=0.1)
    assert np.all(np.diff(r.loss) < 0)
    assert r.loss[-1] < 0.5


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, y, P: (x[0], y, P), "x must have at least 2"),
        (lambda x, y, P: (x.astype(int), y, P), "x must be a floating-point"),
        (lambda x, y, P: (np.where(x > 1, np.nan, x), y, P), "x must be finite"),
        (lambda x, y, P: (x, y, {**P, "W_Q": P["W_Q"][:, :2]}), "W_Q must have shape"),
        (lambda x, y, P: (x, y, {**P, "W_K": P["W_K"][:1]}), "W_K must have shape"),
        (lambda x, y, P: (x, y, {**P, "W_V": P["W_V"].T}), "W_V must have shape"),
        (lambda x, y, P: (x, y, {**P, "W_O": P["W_O"][:, :1]}), "W_O must have shape"),
        (lambda x, y, P: (x, y, {**P, "b": P["b"][:2]}), "b must have shape"),
        (lambda x, y, P: (x, y, {**P, "W_O": np.full_like(P["W_O"], np.inf)}), "W_O must be finite"),
        (lambda x, y, P: (x, y + 3, P), r"y must lie in \[0, 3\)"),
        (lambda x, y, P: (x, y.astype(float), P), "y must hold integer"),
        (lambda x, y, P: (x, y[:3], P), "y must have shape"),
    ],
)
def test_bad_input_raises_naming_the_argument(mutate, match):
    x, y, P = make_problem()
    x, y, P = mutate(x, y, P)
    with pytest.raises(ValueError, match=match):
        closed_form_gradients(x, y, *args(P))


def test_bad_flags_and_hyperparameters():
    x, y, P = make_problem()
    with pytest.raises(ValueError, match="causal"):
        closed_form_gradients(x, y, *args(P), causal="yes")
    with pytest.raises(ValueError, match="W_Q must be a numpy array"):
        attention_forward(x, [[1.0, 2.0, 3.0]], P["W_K"], P["W_V"])
    with pytest.raises(ValueError, match="lr"):
        gradient_step(P, x, y, lr=-1.0)
    with pytest.raises(ValueError, match="params must hold"):
        gradient_step({"W_Q": P["W_Q"]}, x, y, lr=0.1)
    with pytest.raises(ValueError, match="init_scale"):
        simulate_toy(init_scale=0.0)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        max_relative_error(np.zeros(2), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# chapter 5 exercise checkers: accept the right answer, reject wrong ones, never raise
# ---------------------------------------------------------------------------------------------
from iemlib.book.exercises.ch05 import (  # noqa: E402
    check_realized_value_update,
    check_score_direction,
    check_score_gradient,
    check_value_projection_gradient,
    exercise_problem,
)


def test_ch05_checkers_accept_right_and_reject_wrong():
    pb = exercise_problem()
    a, B, u, x, lr = pb["alpha"], pb["B"], pb["u"], pb["x"], pb["lr"]
    assert check_score_gradient(a * (B - (a * B).sum(1, keepdims=True)))
    assert not check_score_gradient(a * (B - B.mean(1, keepdims=True)))
    assert not check_score_gradient(-a * (B - (a * B).sum(1, keepdims=True)))
    assert check_score_gradient(torch.tensor(a * (B - (a * B).sum(1, keepdims=True))))
    assert check_score_direction("below") and check_score_direction(" Below ")
    assert not check_score_direction("above") and not check_score_direction(1)
    gW = u.T @ a @ x
    assert check_value_projection_gradient(gW)
    assert not check_value_projection_gradient(u.T @ a.T @ x)
    assert not check_value_projection_gradient(gW.T)
    assert check_realized_value_update(x @ (-lr * gW).T)
    paper = check_realized_value_update(-lr * a.T @ u)
    assert not paper and "paper" in paper.message
    for chk in (check_score_gradient, check_score_direction, check_value_projection_gradient, check_realized_value_update):
        fb = chk(...)
        assert not fb and "no answer yet" in fb.message
        assert not chk("not a number")


def test_toy_summary_numbers_match_the_run():
    from iemlib.legacy.attention import simulate_toy, toy_summary

    run = simulate_toy(seed=1, n_steps=100)
    s = toy_summary(run)
    assert s["loss_start"] == run.loss[0] and s["loss_end"] == run.loss[-1]
    assert s["monotone"] == float(np.all(np.diff(run.loss) < 0))
    usage = run.alpha[-1].sum(0)
    assert s["columns_over_one"] == float((usage > 1).sum())
    assert s["value_step_lowers_compat"] == 1.0  # an identity: -lr sum_j ||ubar_j||^2 < 0
    assert s["score_grad_row_sum_max"] < 1e-12  # the advantage law sums to zero over keys
    assert 0.0 < s["score_grad_positive_fraction"] < 1.0  # either sign
    disp = np.linalg.norm((run.alpha - run.alpha[0]).reshape(101, -1), axis=1)
    t = int(s["t90_alpha"])
    assert disp[t] >= 0.9 * disp[-1] and (t == 0 or disp[t - 1] < 0.9 * disp[-1])
    with pytest.raises(ValueError, match="ToyRun"):
        toy_summary("not a run")
