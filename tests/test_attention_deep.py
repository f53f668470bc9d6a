"""iemlib.attention.deep: the batched multi-head, multi-layer model against nn.TransformerEncoder,
its AdamW against torch.optim.AdamW, and the advantage law by autograd on every head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iemlib.attention.deep import (
    DeepConfig, DeepRun, TorchReference, deep_forward, head_diagnostics, init_deep_params,
    target_key_advantage_gap, train_deep,
)
from iemlib.markov import make_dataset

C = DeepConfig(seq_len=60, d_model=16, n_layers=2, n_heads=4, d_ff=32, n_steps=5)


def test_forward_is_nn_transformer_encoder():
    p = init_deep_params(C, [1, 2], torch.float64)
    x = torch.randn(2, 59, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = deep_forward(p, x, C.n_heads).logits
    for r in range(2):
        ref = TorchReference(C).double().load_run(p, r)
        assert torch.allclose(ref(x[r:r + 1])[0], z[r], atol=1e-12)


def test_causal():
    p = init_deep_params(C, [1], torch.float64)
    x = torch.randn(1, 59, 20, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 30:] += 1.0
    assert torch.allclose(deep_forward(p, x, 4).logits[:, :30], deep_forward(p, x2, 4).logits[:, :30])


def test_training_matches_torch_adamw():
    res = train_deep([DeepRun(7)], C, dtype=torch.float64, progress=False)
    d = make_dataset(C.transition_matrix(), C.seq_len, C.d_x, 7)
    model = TorchReference(C).double().load_run(init_deep_params(C, [7], torch.float64), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=C.lr, weight_decay=C.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, C.n_steps)
    ref = []
    for _ in range(C.n_steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(d.x[None].double())[0], d.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), C.clip)
        opt.step()
        sched.step()
        ref.append(loss.item())
    assert np.allclose(res.loss[0], ref, atol=1e-10)


def test_variants_and_prefix():
    runs = [DeepRun(3), DeepRun(3, 10.0)]
    full = train_deep(runs, C, progress=False)
    short = train_deep(runs, C, stop_after=2, progress=False)
    assert np.array_equal(short.loss, full.loss[:, :2])
    assert full.loss[0, 0] == full.loss[1, 0] and full.loss[0, -1] != full.loss[1, -1]
    assert full.select(10.0) == [1] and runs[1].label == "EM-like (x10)"
    assert full.heldout_curve.shape == (2, 1) and np.isfinite(full.heldout_loss).all()


def test_advantage_law_on_every_head():
    res = train_deep([DeepRun(5)], replace(C, n_steps=3), progress=False)
    d = make_dataset(C.transition_matrix(), C.seq_len, C.d_x, 5)
    dg = head_diagnostics(res.params, d.x, d.y, C.n_heads)
    assert dg.advantage_law_error.shape == (1, 2, 4) and dg.advantage_law_error.max() < 1e-10
    assert np.allclose(dg.loss, res.final_loss, atol=1e-5)
    assert ((0 < dg.self_mass) & (dg.self_mass <= 1)).all() and len(dg.residual) == 3
    assert (dg.attention_entropy > 0).all() and ((0 < dg.usage_top) & (dg.usage_top <= 1)).all()
    assert dg.advantage is None
    # the kept advantage matrices: causal, centred under each row's attention, and their share of
    # positive entries on the kept block is what the full count would give on that block
    m = 12
    dk = head_diagnostics(res.params, d.x[:m], d.y[:m], C.n_heads, keep_advantage=m)
    A = dk.advantage
    assert A.shape == (1, 2, 4, m, m) and np.all(np.triu(A, 1) == 0)
    out = deep_forward({k: torch.as_tensor(v, dtype=torch.float64).requires_grad_()
                        for k, v in res.params.items()},
                       torch.as_tensor(d.x[:m], dtype=torch.float64)[None], C.n_heads, capture=True)
    for layer, alpha in enumerate(out.alpha):
        centred = (alpha[0].detach().numpy() * A[0, layer]).sum(-1)  # E_alpha_i[A_i.] = 0 for every row
        assert np.abs(centred).max() < 1e-12
    assert np.allclose(dk.advantage_positive, (A > 0).sum((-1, -2)) / (m * (m + 1) / 2))
    with pytest.raises(ValueError, match="keep_advantage"):
        head_diagnostics(res.params, d.x[:m], d.y[:m], C.n_heads, keep_advantage=m + 1)


def test_bad_input():
    with pytest.raises(ValueError, match="n_heads"):
        DeepConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="lr"):
        DeepConfig(lr=0)
    with pytest.raises(ValueError, match="value_lr_scale"):
        DeepRun(1, 0.0)
    with pytest.raises(ValueError, match="stop_after"):
        train_deep([DeepRun(1)], C, stop_after=99, progress=False)
    with pytest.raises(ValueError, match="runs"):
        train_deep([], C)
    with pytest.raises(ValueError, match="params"):
        head_diagnostics({}, np.zeros((5, 20)), np.zeros(5, dtype=int), 4)


def test_target_key_advantage_gap():
    """By hand on a 4-position block: keys carrying the target (y_{j-1} = y_i) against the others."""
    y = np.array([[0, 0, 1, 0]])
    # causal entries with j >= 1: (1,1) (2,1) (2,2) (3,1) (3,2) (3,3); carries target y_i = y_{j-1}:
    # (1,1): y0=0=y1 yes; (2,1): y0=0 vs y2=1 no; (2,2): y1=0 vs 1 no; (3,1): 0=0 yes; (3,2): 0=0 yes;
    # (3,3): y2=1 vs 0 no
    A = np.zeros((1, 1, 1, 4, 4))
    for (i, j), v in {(1, 1): 3.0, (2, 1): -1.0, (2, 2): 0.0, (3, 1): 1.0, (3, 2): 2.0, (3, 3): 2.0}.items():
        A[0, 0, 0, i, j] = v
    A[0, 0, 0, :, 0] = 100.0  # key 0 is ignored
    gap = target_key_advantage_gap(A, y)
    assert gap.shape == (1, 1, 1)
    assert gap[0, 0, 0] == pytest.approx((3 + 1 + 2) / 3 - (-1 + 0 + 2) / 3)
    # flipping the sign of every advantage flips the gap
    assert target_key_advantage_gap(-A, y)[0, 0, 0] == pytest.approx(-gap[0, 0, 0])
    with pytest.raises(ValueError, match="advantage"):
        target_key_advantage_gap(np.zeros((1, 4, 4)), y)
    with pytest.raises(ValueError, match="y must be"):
        target_key_advantage_gap(A, y[:, :3])
    with pytest.raises(ValueError, match="y must be"):
        target_key_advantage_gap(A, y.astype(float))
    with pytest.raises(ValueError, match="no gap"):
        target_key_advantage_gap(A, np.zeros((1, 4), int))
    with pytest.raises(ValueError, match="advantage"):
        target_key_advantage_gap(np.full((1, 1, 1, 4, 4), np.nan), y)
