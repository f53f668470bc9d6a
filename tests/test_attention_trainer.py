"""iemlib.attention.trainer: closed-form batched gradients against autograd, the schedules' first step against a
hand-computed update (float64), held-out and Bayes scores, probes, devices, and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from iemlib.attention import closed_form_gradients
from iemlib.attention.trainer import (
    AttentionPass,
    Config,
    Result,
    RowParams,
    attention_pass,
    effective_step_scale,
    gradient_value_map,
    init_row_params,
    least_squares_value_map,
    train,
)
from iemlib.markov import bayes_filter_predictive, make_dataset

DT = torch.float64


def _dense_loss(x, y, W_Q, W_K, V, W_O, b, reduction="mean"):
    """Plain dense causal attention (T x T, upper triangle masked), autograd-able; x @ W layout."""
    Q, K = x @ W_Q, x @ W_K
    S = Q @ K.transpose(-1, -2) / math.sqrt(W_Q.shape[-1])
    T = x.shape[-2]
    A = torch.softmax(S.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf), -1)
    logits = (A @ V) @ W_O + b[..., None, :]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, W_O.shape[-1]), y.reshape(-1), reduction="sum") / (
        T if reduction == "mean" else 1)


def _random_batch(R=3, N=37, d_x=6, d_k=4, d_v=5, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=DT)  # noqa: E731
    return dict(x=r(R, N, d_x), y=torch.randint(0, C, (R, N), generator=g), W_Q=r(R, d_x, d_k) * 0.5,
                W_K=r(R, d_x, d_k) * 0.5, W_V=r(R, d_x, d_v) * 0.5, W_O=r(R, d_v, C) * 0.5, b=r(R, C))


@pytest.mark.parametrize("block", [1, 8, 16, 37, 64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_closed_form_pass_matches_autograd(block, reduction):
    d = _random_batch()
    R, N = d["y"].shape
    params = [d[k].clone().requires_grad_() for k in ("W_Q", "W_K", "W_V", "W_O", "b")]
    V = d["x"] @ params[2]
    L = _dense_loss(d["x"], d["y"], params[0], params[1], V, params[3], params[4], reduction)
    gQ, gK, gV, gO, gb = torch.autograd.grad(L, params)
    out = attention_pass(d["x"], d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"],
                         1.0 / N if reduction == "mean" else 1.0, block=block, need_probs=True)
    xt = d["x"].transpose(1, 2)
    assert isinstance(out, AttentionPass)
    for ours, ref in ((xt @ out.dQ, gQ), (xt @ out.dK, gK), (xt @ out.dV, gV), (out.dW_O, gO), (out.db, gb)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        per_run = torch.stack([_dense_loss(d["x"][r], d["y"][r], d["W_Q"][r], d["W_K"][r], d["x"][r] @ d["W_V"][r],
                                           d["W_O"][r], d["b"][r]) for r in range(R)])
    torch.testing.assert_close(out.loss, per_run)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(R, N, dtype=DT))


def test_value_gradient_is_the_responsibility_weighted_upstream_signal():
    """dL/dv_j = sum_i alpha_ij u_i with u_i = W_O^T (p_i - e_{y_i}) (eq. 16), by explicit loops."""
    d = _random_batch(R=1, N=9)
    x, y, WQ, WK, WV, WO, b = (d[k][0] if k != "y" else d[k][0] for k in ("x", "y", "W_Q", "W_K", "W_V", "W_O", "b"))
    V = x @ WV
    S = (x @ WQ) @ (x @ WK).T / math.sqrt(WQ.shape[1])
    N = len(y)
    alpha = torch.zeros(N, N, dtype=DT)
    for i in range(N):
        alpha[i, : i + 1] = torch.softmax(S[i, : i + 1], 0)
    g = alpha @ V
    p = torch.softmax(g @ WO + b, -1)
    u = [(WO @ (p[i] - torch.nn.functional.one_hot(y[i], WO.shape[1]).to(DT))) for i in range(N)]
    expected = torch.stack([sum(alpha[i, j] * u[i] for i in range(N)) for j in range(N)])
    out = attention_pass(d["x"], d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"], 1.0, block=4)
    torch.testing.assert_close(out.dV[0], expected, rtol=1e-10, atol=1e-12)


def test_agrees_with_iemlib_attention_closed_forms():
    d = _random_batch(R=1, N=11)
    ref = closed_form_gradients(d["x"][0], d["y"][0], d["W_Q"][0].T, d["W_K"][0].T, d["W_V"][0].T,
                                    d["W_O"][0].T, d["b"][0], causal=True)
    out = attention_pass(d["x"], d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"], 1.0, block=4)
    xt = d["x"][0].T
    torch.testing.assert_close((xt @ out.dQ[0]).T, torch.as_tensor(ref["W_Q"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close((xt @ out.dK[0]).T, torch.as_tensor(ref["W_K"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close((xt @ out.dV[0]).T, torch.as_tensor(ref["W_V"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.dW_O[0].T, torch.as_tensor(ref["W_O"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.db[0], torch.as_tensor(ref["b"]), rtol=1e-9, atol=1e-12)


TINY = Config(name="tiny", seq_len=41, n_steps=1, seeds=(3, 5))


def _hand_step(cfg: Config, seed: int, schedule: str):
    """One update computed by hand (autograd for the gradients, explicit loops for Delta v)."""
    d = make_dataset(cfg.transition_matrix(), cfg.seq_len, cfg.d_x, seed)
    x, y = d.x.to(DT), d.y
    init = init_row_params(seed, cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
    p0 = {k: getattr(init, k).to(DT) for k in ("W_Q", "W_K", "W_V", "W_O", "b")}
    N = len(y)
    red = cfg.reduction

    def grads(WQ, WK, V, WO, b, wrt_V=False):
        ps = [t.clone().requires_grad_() for t in (WQ, WK, V, WO, b)]
        L = _dense_loss(x, y, ps[0], ps[1], ps[2], ps[3], ps[4], red)
        return torch.autograd.grad(L, ps)

    WQ, WK, WV, WO, b = p0["W_Q"], p0["W_K"], p0["W_V"], p0["W_O"], p0["b"]
    V = x @ WV
    gQ, gK, gV, gO, gb = grads(WQ, WK, V, WO, b)  # gV: dLoss/dv_j per position
    if schedule == "sgd":
        eta_v = eta_r = cfg.lr_sgd
        if cfg.lr_sgd_value is not None:
            eta_v = cfg.lr_sgd_value
    else:
        eta_v, eta_r = cfg.lr_value, cfg.lr_routing
    ls = schedule == "em" and cfg.value_map == "least_squares" and cfg.values != "free"
    if cfg.match_effective_step and (cfg.values == "free" or ls):
        eta_v = eta_v * sum(float(x[j] @ x[j]) for j in range(N)) / cfg.d_x  # tr(X^T X) / d_x
    bias = 1.0 if cfg.bias else 0.0
    if cfg.values == "free":
        V_new, WV_new = V - eta_v * gV, WV
    elif ls:  # the W_V change whose values best match the requested Delta v_j (numpy's lstsq)
        dW = np.linalg.lstsq(x.numpy(), (-eta_v * gV).numpy(), rcond=None)[0]
        WV_new = WV + torch.as_tensor(dW)
        V_new = x @ WV_new
    else:
        WV_new = WV - eta_v * x.T @ gV  # Delta W_V = sum_j Delta v_j x_j^T
        V_new = x @ WV_new
    if schedule == "em" and cfg.em_update == "alternating":
        gQ, gK, _, gO, gb = grads(WQ, WK, V_new, WO, b)
    return {"W_Q": WQ - eta_r * gQ, "W_K": WK - eta_r * gK, "W_V": WV_new, "W_O": WO - eta_r * gO,
            "b": b - eta_r * gb * bias, "V": V_new}


@pytest.mark.parametrize(
    "cfg",
    [TINY, replace(TINY, name="pub", include_diagonal_in_normalization=True, bias=False),
     replace(TINY, name="alt", em_update="alternating"), replace(TINY, name="free", values="free"),
     replace(TINY, name="sum", reduction="sum", lr_sgd=1e-4, lr_value=1e-3, lr_routing=1e-4),
     replace(TINY, name="init", init_std=0.3, lr_value=0.5),
     replace(TINY, name="ls", value_map="least_squares", lr_value=0.05),
     replace(TINY, name="ls-matched", value_map="least_squares", match_effective_step=True, lr_value=0.05),
     replace(TINY, name="free-matched", values="free", match_effective_step=True, lr_value=0.05),
     replace(TINY, name="sgd-vector", lr_sgd_value=0.1)],
)
def test_first_step_of_both_schedules_matches_the_hand_computed_update(cfg):
    res = train(cfg, dtype=DT, device="cpu", progress=False, block=16, n_workers=2)
    for seed in cfg.seeds:
        for schedule in ("em", "sgd"):
            r = res.index(cfg.name, seed, schedule)
            hand = _hand_step(cfg, seed, schedule)
            for k in ("W_Q", "W_K", "W_V", "W_O", "b", "V"):
                np.testing.assert_allclose(getattr(res.params, k)[r], hand[k].numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_em_value_step_is_the_closed_form_delta_v():
    """Free values move by exactly -eta sum_i alpha_ij u_i; SGD and EM share the start."""
    cfg = replace(TINY, name="free", values="free", seeds=(3,))
    res = train(cfg, dtype=DT, device="cpu", progress=False, block=8)
    d = make_dataset(cfg.transition_matrix(), cfg.seq_len, cfg.d_x, 3)
    p0 = init_row_params(3, cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
    x = d.x.to(DT)[None]
    V0 = x @ p0.W_V.to(DT)[None]
    out = attention_pass(x, d.y[None], p0.W_Q.to(DT)[None], p0.W_K.to(DT)[None], V0, p0.W_O.to(DT)[None],
                         p0.b.to(DT)[None], 1.0 / (cfg.seq_len - 1), block=8)
    r = res.index("free", 3, "em")
    np.testing.assert_allclose(res.params.V[r], (V0 - cfg.lr_value * out.dV)[0].numpy(), rtol=1e-12, atol=1e-14)
    assert res.loss[res.index("free", 3, "em"), 0] == res.loss[res.index("free", 3, "sgd"), 0]


def test_init_row_params_follow_the_public_codes_draws():
    state = torch.get_rng_state()
    torch.manual_seed(42)
    ref = [torch.randn(20, 10) * 0.1, torch.randn(20, 10) * 0.1, torch.randn(20, 15) * 0.1, torch.randn(15, 8) * 0.1]
    torch.set_rng_state(state)
    p = init_row_params(42)
    assert isinstance(p, RowParams) and p.V is None
    for k, r in zip(("W_Q", "W_K", "W_V", "W_O"), ref):
        assert torch.equal(getattr(p, k), r)
    assert torch.equal(p.b, torch.zeros(8))
    assert [t.shape for t in p] == [(20, 10), (20, 10), (20, 15), (15, 8), (8,)]
    with pytest.raises(ValueError, match="random_state"):
        init_row_params(-1)
    with pytest.raises(ValueError, match="init_std"):
        init_row_params(1, init_std=0.0)


def test_training_is_deterministic_and_reports_metrics():
    cfg = replace(TINY, n_steps=4)
    a = train(cfg, device="cpu", progress=False)
    b = train(cfg, device="cpu", progress=False, n_workers=1)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert isinstance(a, Result) and a.device == "cpu" and not a.diverged.any()
    assert a.values.shape == (4, len(a.value_steps), 40, cfg.d_v)
    assert a.loss.shape == a.acc.shape == a.entropy.shape == (4, 4)
    assert np.all((a.acc >= 0) & (a.acc <= 1)) and np.all(a.final.kl_bayes >= 0)
    assert a.runs == [("tiny", 3, "em"), ("tiny", 3, "sgd"), ("tiny", 5, "em"), ("tiny", 5, "sgd")]
    assert a.select("tiny", "sgd") == [1, 3] and a.index("tiny", 5, "em") == 2


def test_divergent_runs_are_frozen_and_flagged():
    cfg = replace(TINY, name="huge", reduction="sum", lr_value=1e6, lr_routing=1e6, lr_sgd=1e6, n_steps=5, seeds=(3,))
    res = train(cfg, device="cpu", progress=False)
    assert res.diverged.all()


@pytest.mark.parametrize("kwargs, word", [({"values": "x"}, "values"), ({"reduction": "avg"}, "reduction"),
                                          ({"value_map": "x"}, "value_map"), ({"lr_sgd_value": 0.0}, "lr_sgd_value"),
                                          ({"em_update": "x"}, "em_update"), ({"lr_value": -1.0}, "lr_value"),
                                          ({"seq_len": 1}, "seq_len"), ({"seeds": ()}, "seeds")])
def test_bad_config(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Config(**kwargs)


def test_bad_train_and_pass_arguments():
    with pytest.raises(ValueError, match="schedules"):
        train(TINY, schedules=("adam",), progress=False)
    with pytest.raises(ValueError, match="configs"):
        train([], progress=False)
    with pytest.raises(ValueError, match="names"):
        train([TINY, TINY], progress=False)
    d = _random_batch(R=1, N=5)
    with pytest.raises(ValueError, match="y"):
        attention_pass(d["x"], d["y"] + 10, d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"])
    with pytest.raises(ValueError, match="x"):
        attention_pass(d["x"] * np.nan, d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"])
    with pytest.raises(ValueError, match="W_Q and W_K"):
        attention_pass(d["x"], d["y"], d["W_Q"][:, :2], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"])
    with pytest.raises(ValueError, match="V, W_O, b"):
        attention_pass(d["x"], d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"][:, :2])
    with pytest.raises(ValueError, match="block"):
        attention_pass(d["x"], d["y"], d["W_Q"], d["W_K"], d["x"] @ d["W_V"], d["W_O"], d["b"], block=0)
    with pytest.raises(ValueError, match="share"):
        train([TINY, replace(TINY, name="longer", n_steps=2)], progress=False)
    with pytest.raises(ValueError, match="device"):
        train(TINY, device="nonsense", progress=False)
    with pytest.raises(ValueError, match="n_workers"):
        train(TINY, device="cpu", progress=False, n_workers=0)


def test_value_maps_against_hand_computed_updates():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, generator=g, dtype=DT)
    dV = torch.randn(9, 2, generator=g, dtype=DT)
    # gradient map: sum_j dV_j x_j^T, written out (row layout: d_x x d_v)
    hand = sum(torch.outer(x[j], dV[j]) for j in range(9))
    torch.testing.assert_close(gradient_value_map(x, dV), hand)
    # least squares: numpy's lstsq, and the paper's column form U_bar X^T (X X^T)^{-1}
    ls = least_squares_value_map(x, dV)
    np.testing.assert_allclose(ls.numpy(), np.linalg.lstsq(x.numpy(), dV.numpy(), rcond=None)[0], rtol=1e-10)
    Xc, Uc = x.T, dV.T  # columns x_j, u_bar_j
    torch.testing.assert_close(ls.T, Uc @ Xc.T @ torch.linalg.inv(Xc @ Xc.T))
    # it is the best realizable Delta V: the residual is orthogonal to the inputs
    torch.testing.assert_close(x.T @ (x @ ls - dV), torch.zeros(3, 2, dtype=DT), atol=1e-12, rtol=0)
    # x^T x = I makes the two maps equal
    q, _ = torch.linalg.qr(x)
    torch.testing.assert_close(least_squares_value_map(q, dV), gradient_value_map(q, dV))
    assert effective_step_scale(x) == pytest.approx(float(torch.trace(x.T @ x)) / 3)
    with pytest.raises(ValueError, match="dV"):
        gradient_value_map(x, dV[:5])
    with pytest.raises(ValueError, match="x"):
        effective_step_scale(x * np.inf)


def test_em_with_the_gradient_map_is_sgd_with_its_rate_vector():
    """Sanity check (holds by construction): EM-like (0.1 on W_V, 0.01 elsewhere) = SGD with that rate vector."""
    cfg = replace(TINY, name="t", n_steps=3, seeds=(3,))
    em = train(cfg, schedules=("em",), device="cpu", progress=False, dtype=DT)
    sgd = train(replace(cfg, lr_sgd=cfg.lr_routing, lr_sgd_value=cfg.lr_value), schedules=("sgd",), device="cpu",
                progress=False, dtype=DT)
    np.testing.assert_array_equal(em.loss, sgd.loss)
    for k in ("W_Q", "W_K", "W_V", "W_O", "b", "V"):
        np.testing.assert_array_equal(getattr(em.params, k), getattr(sgd.params, k))


def test_heldout_bayes_and_probes_against_dense_recomputation():
    cfg = replace(TINY, name="t", n_steps=2, seeds=(3,), seq_len=30)
    res = train([cfg, replace(cfg, name="f", values="free")], device="cpu", progress=False, dtype=DT, block=8,
                probe_every=1)
    P = cfg.transition_matrix()
    dh = make_dataset(P, cfg.seq_len, cfg.d_x, 3 + cfg.heldout_offset)
    dtr = make_dataset(P, cfg.seq_len, cfg.d_x, 3)
    for sched in ("em", "sgd"):
        r = res.index("t", 3, sched)
        p = {k: torch.as_tensor(getattr(res.params, k)[r]) for k in ("W_Q", "W_K", "W_V", "W_O", "b")}
        x = dh.x.to(DT)
        L = _dense_loss(x, dh.y, p["W_Q"], p["W_K"], x @ p["W_V"], p["W_O"], p["b"])
        assert res.heldout.loss[r] == pytest.approx(float(L), rel=1e-10)
        for tag, d in (("train", dtr), ("heldout", dh)):
            pb = bayes_filter_predictive(P, d.mu, d.x)
            assert getattr(res.bayes, tag + "_loss")[r] == pytest.approx(-np.log(pb[np.arange(len(d.y)), d.y.numpy()]).mean())
        assert res.final.kl_bayes[r] >= 0 and res.heldout.kl_bayes[r] >= 0
        # probe of step 0: attention entropy and ||alpha_1 - alpha_0||_F from dense causal softmax
        p0 = init_row_params(3, cfg.d_x, cfg.d_k, cfg.d_v, cfg.n_states, cfg.init_std)
        xt = dtr.x.to(DT)
        hand = _hand_step(cfg, 3, sched)

        def alpha(WQ, WK):
            S = (xt @ WQ) @ (xt @ WK).T / math.sqrt(cfg.d_k)
            return torch.softmax(S.masked_fill(torch.triu(torch.ones(len(xt), len(xt), dtype=torch.bool), 1),
                                               -math.inf), -1)
        a0, a1 = alpha(p0.W_Q.to(DT), p0.W_K.to(DT)), alpha(hand["W_Q"], hand["W_K"])
        ent = -(a0 * torch.log(torch.where(a0 > 0, a0, 1.0))).sum(-1).mean()
        assert res.probes.attn_entropy[r, 0] == pytest.approx(float(ent), rel=1e-9)
        assert res.probes.dalpha[r, 0] == pytest.approx(float(torch.linalg.norm(a1 - a0)), rel=1e-7)
        dv = torch.linalg.norm(hand["V"] - xt @ p0.W_V.to(DT))
        assert res.probes.dvalue[r, 0] == pytest.approx(float(dv), rel=1e-9)
    # free value vectors have no map to a new sequence: not scored there
    assert np.isnan(res.heldout.loss[res.index("f", 3, "em")])
    assert res.memorizing().dtype == bool


def test_float32_training_matches_float64_closely_and_stays_float32():
    cfg = replace(TINY, n_steps=3, seeds=(3,))
    r32 = train(cfg, device="cpu", progress=False)
    r64 = train(cfg, device="cpu", progress=False, dtype=DT)
    np.testing.assert_allclose(r32.loss, r64.loss, rtol=1e-5)
    assert r32.loss.dtype == np.float64  # results are float64 numpy whatever the training dtype


def test_one_worker_and_two_workers_give_identical_runs():
    cfg = replace(TINY, name="alt", em_update="alternating", n_steps=3, seeds=(3, 5))
    a = train(cfg, device="cpu", progress=False, n_workers=1)
    b = train(cfg, device="cpu", progress=False, n_workers=2)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.final.loss, b.final.loss)
    assert torch.get_num_threads() >= 1  # the worker threads' single-threaded block restored the count


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float64_training_matches_the_cpu():
    cfg = replace(TINY, n_steps=3, seeds=(3,))
    cpu = train([cfg, replace(cfg, name="free", values="free"), replace(cfg, name="ls", value_map="least_squares")],
                device="cpu", progress=False, dtype=DT, probe_every=1)
    gpu = train([cfg, replace(cfg, name="free", values="free"), replace(cfg, name="ls", value_map="least_squares")],
                device="cuda", progress=False, dtype=DT, probe_every=1)
    assert gpu.device.startswith("cuda") and cpu.device == "cpu"
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-12)
    np.testing.assert_allclose(gpu.params.W_V, cpu.params.W_V, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gpu.probes.dalpha, cpu.probes.dalpha, rtol=1e-8)
    np.testing.assert_allclose(gpu.heldout.loss, cpu.heldout.loss, rtol=1e-12, equal_nan=True)
    auto = train(cfg, device="auto", progress=False, probe_every=0)
    assert auto.device.startswith("cuda")


# ------------------------------------------------------------------------------------------------
# checkpoints and continuation (the budget sweep)
# ------------------------------------------------------------------------------------------------
def test_checkpoints_are_the_shorter_runs():
    """The scores after k updates of an n-step run are those a k-step run ends with, bit for bit;
    KL(EM || SGD) is filled in for the EM run of each pair and is what summarize computes."""
    from iemlib.experiments.em_vs_sgd import PAPER, summarize

    c = replace(PAPER, n_steps=5, seeds=(42,))
    long = train(c, progress=False, device="cpu", checkpoints=(3, 5), probe_every=0)
    short = train(replace(c, n_steps=3), progress=False, device="cpu", probe_every=0)
    ck = long.checkpoints
    assert ck.steps.tolist() == [3, 5] and ck.at(5) == 1
    assert np.array_equal(ck.loss[:, 0], short.final.loss)
    assert np.array_equal(ck.heldout_loss[:, 0], short.heldout.loss)
    assert np.array_equal(ck.acc[:, 0], short.final.acc)
    assert np.array_equal(ck.loss[:, 1], long.final.loss)
    assert np.array_equal(long.loss[:, :3], short.loss)
    em, sgd = long.select(PAPER.name, "em"), long.select(PAPER.name, "sgd")
    s = summarize(short, PAPER.name)
    assert ck.kl_em_sgd[em, 0] == pytest.approx(s.kl_em_sgd, rel=1e-12)
    assert ck.heldout_kl_em_sgd[em, 0] == pytest.approx(s.heldout_kl_em_sgd, rel=1e-12)
    assert np.isnan(ck.kl_em_sgd[sgd]).all()
    assert train(c, progress=False, device="cpu", probe_every=0).checkpoints is None
    with pytest.raises(ValueError, match="checkpoints"):
        train(c, progress=False, device="cpu", checkpoints=(6,))
    with pytest.raises(ValueError, match="step"):
        ck.at(4)


def test_start_continues_a_run_exactly():
    from iemlib.experiments.em_vs_sgd import FREE_VALUES, PAPER

    c = replace(PAPER, n_steps=5, seeds=(42,))
    whole = train(c, progress=False, device="cpu", probe_every=0)
    first = train(replace(c, n_steps=2), progress=False, device="cpu", probe_every=0)
    rest = train(replace(c, n_steps=3), progress=False, device="cpu", probe_every=0, start=first.params)
    assert np.array_equal(np.concatenate([first.loss, rest.loss], 1), whole.loss)
    assert np.array_equal(rest.final.loss, whole.final.loss)
    assert np.array_equal(rest.heldout.loss, whole.heldout.loss)
    with pytest.raises(ValueError, match="start"):
        train(c, progress=False, device="cpu", start={"W_Q": 1})
    with pytest.raises(ValueError, match="start"):
        train(replace(c, seeds=(42, 2024)), progress=False, device="cpu", start=first.params)
    with pytest.raises(ValueError, match="free"):
        train(replace(FREE_VALUES, n_steps=1, seeds=(42,)), schedules=("em",), progress=False,
              device="cpu", start=first.params)
