"""iemlib.attention.optimizers: SGD, momentum and Adam on a batch of heads, against chapter 8's
trainer and against torch.optim; checkpoints and the probes of the first-order picture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from iemlib.attention.optimizers import HeadRun, train_head
from iemlib.attention.trainer import init_row_params, train
from iemlib.experiments.em_vs_sgd import PAPER
from iemlib.markov import make_dataset

CFG = replace(PAPER, seq_len=120, n_steps=6, seeds=(42,))


def test_sgd_rate_vector_is_chapter_8s_trainer():
    live = train_head([HeadRun("sgd", 0.01, 42, value_lr=0.1), HeadRun("sgd", 0.01, 42)], CFG, progress=False)
    ref = train(CFG, ("em", "sgd"), progress=False, probe_every=0, n_workers=1)
    for i, s in enumerate(("em", "sgd")):
        j = ref.index(CFG.name, 42, s)
        assert np.abs(live.loss[i] - ref.loss[j]).max() < 1e-5
        assert abs(live.final_loss[i] - ref.final.loss[j]) < 1e-5
        assert abs(live.heldout_loss[i] - ref.heldout.loss[j]) < 1e-5


def _torch_reference(opt_name: str, lr: float, n_steps: int) -> list[float]:
    """The same head trained by torch.optim on autograd gradients (float64)."""
    d = make_dataset(CFG.transition_matrix(), CFG.seq_len, CFG.d_x, 42)
    x, y = d.x.double(), d.y
    p0 = init_row_params(42)
    params = [t.double().clone().requires_grad_() for t in p0]
    opt = (torch.optim.Adam(params, lr=lr) if opt_name == "adam" else
           torch.optim.SGD(params, lr=lr, momentum=0.9 if opt_name == "momentum" else 0.0))
    N = len(y)
    mask = torch.ones(N, N, dtype=torch.bool).triu(1)
    out = []
    for _ in range(n_steps):
        WQ, WK, WV, WO, b = params
        s = (x @ WQ) @ (x @ WK).T / np.sqrt(WQ.shape[1])
        A = torch.softmax(s.masked_fill(mask, float("-inf")), -1)
        loss = torch.nn.functional.cross_entropy(A @ (x @ WV) @ WO + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("opt,lr", [("momentum", 0.05), ("adam", 0.01)])
def test_update_rules_match_torch_optim(opt, lr):
    res = train_head([HeadRun(opt, lr, 42)], CFG, dtype=torch.float64, progress=False)
    assert np.allclose(res.loss[0], _torch_reference(opt, lr, CFG.n_steps), atol=1e-9)


def test_checkpoints_and_probes():
    runs = [HeadRun("sgd", 0.01, 42), HeadRun("adam", 0.01, 42)]
    res = train_head(runs, CFG, checkpoint_steps=(0, 3, 6), probe_every=3, progress=False)
    p0 = init_row_params(42)
    assert np.allclose(res.checkpoints.W_Q[:, 0], p0.W_Q.numpy()[None])
    assert res.checkpoints.W_V.shape == (2, 3, CFG.d_x, CFG.d_v)
    assert not np.allclose(res.checkpoints.W_Q[1, 2], res.checkpoints.W_Q[1, 0])
    assert res.sign_agreement.shape == (2, 2) and np.isfinite(res.sign_agreement).all()
    assert ((0 <= res.sign_agreement) & (res.sign_agreement <= 1)).all()
    # a small gradient step lowers the first-order loss: the realized score change points along eq. (34)
    assert (res.score_cosine[0] > 0).all()
    assert (res.dvalue > 0).all() and (res.dalpha > 0).all()
    assert res.select("adam") == [1] and res.select(lr=0.01) == [0, 1]
    assert res.bayes_loss[0] == res.bayes_loss[1] and 1.8 < res.bayes_loss[0] < 2.1


def test_bad_input():
    with pytest.raises(ValueError, match="optimizer"):
        HeadRun("rmsprop", 0.1, 1)
    with pytest.raises(ValueError, match="lr"):
        HeadRun("sgd", -0.1, 1)
    with pytest.raises(ValueError, match="momentum"):
        HeadRun("momentum", 0.1, 1, momentum=1.0)
    with pytest.raises(ValueError, match="runs"):
        train_head([], CFG)
    with pytest.raises(ValueError, match="checkpoint_steps"):
        train_head([HeadRun("sgd", 0.1, 42)], CFG, checkpoint_steps=(99,), progress=False)
    with pytest.raises(ValueError, match="config"):
        train_head([HeadRun("sgd", 0.1, 42)], replace(CFG, values="free"), progress=False)
