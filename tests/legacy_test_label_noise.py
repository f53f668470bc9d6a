"""Tests of iemlib.legacy.label_noise: the batched MLP trainer against torch.optim.Adam on one model,
the forward correction, the noise matrix and the calibration error, by value; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iemlib.legacy import label_noise as LN
from iemlib.legacy.classification import make_classifier


def _task(n=60, f=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, f, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return X, y


def test_symmetric_noise_matrix():
    T = LN.symmetric_noise_matrix(4, 0.3)
    assert torch.allclose(T.sum(1), torch.ones(4, dtype=torch.float64))
    assert math.isclose(float(T[0, 0]), 0.7) and math.isclose(float(T[0, 1]), 0.1)


def test_batched_trainer_equals_torch_adam_on_each_model():
    X, y = _task()
    K = 3
    Q = torch.stack([torch.nn.functional.one_hot(y, K).double(), torch.full((60, K), 1 / K, dtype=torch.float64)])
    out = LN.train_mlp_ensemble(X, Q, [4, 7], hidden=8, epochs=30, lr=0.01, X_test=X[:10], record_every=10)
    for m, seed in enumerate([4, 7]):
        net = make_classifier("mlp", 5, K, 8, seed=seed)
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            loss = -(Q[m] * torch.log_softmax(net(X), 1)).sum(1).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            assert torch.allclose(out["train_logits"][m], net(X), atol=1e-9)
            assert torch.allclose(out["test_logits"][m], net(X[:10]), atol=1e-9)
    assert out["epoch"].tolist() == [0, 10, 20, 30]
    assert out["test_logits_history"].shape == (4, 2, 10, K)


def test_forward_correction_with_identity_is_plain_training_and_changes_with_noise():
    X, y = _task()
    Q = torch.nn.functional.one_hot(y, 3).double()[None].repeat(2, 1, 1)
    plain = LN.train_mlp_ensemble(X, Q, [0, 0], hidden=8, epochs=20, lr=0.01, noise_matrix=torch.eye(3, dtype=torch.float64), correct=[False, True])
    assert torch.allclose(plain["train_logits"][0], plain["train_logits"][1], atol=1e-9)
    T = LN.symmetric_noise_matrix(3, 0.4)
    corr = LN.train_mlp_ensemble(X, Q, [0, 0], hidden=8, epochs=20, lr=0.01, noise_matrix=T, correct=[False, True])
    assert not torch.allclose(corr["train_logits"][0], corr["train_logits"][1])


def test_forward_corrected_loss_gradient_matches_finite_differences():
    # loss(z) = -log (softmax(z) T)_y; check the autograd gradient the trainer relies on
    T = LN.symmetric_noise_matrix(3, 0.3)
    z = torch.tensor([0.2, -1.0, 0.7], dtype=torch.float64, requires_grad=True)
    f = lambda v: -torch.log(torch.softmax(v, 0) @ T)[1]
    (g,) = torch.autograd.grad(f(z), z)
    h = 1e-6
    fd = torch.stack([(f(z.detach() + h * e) - f(z.detach() - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    assert torch.allclose(g, fd, atol=1e-8)


def test_ece_by_hand():
    # two samples at confidence 0.9 (one right, one wrong) and two at 0.6 (both right)
    P = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # bin of 0.9: acc 0.5, conf 0.9 -> 0.4; bin of 0.6: acc 1, conf 0.6 -> 0.4; weights 1/2 each
    assert math.isclose(LN.expected_calibration_error(P, y, n_bins=10), 0.4)
    assert LN.expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0
    # one bin: |accuracy - mean confidence|
    assert math.isclose(LN.expected_calibration_error(P, y, n_bins=1), abs(0.75 - 0.75))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: LN.symmetric_noise_matrix(1, 0.1), "n_classes"),
        (lambda: LN.symmetric_noise_matrix(3, 1.5), "rho"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.ones((1, 4, 2)), [0]), "targets"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 3, 2), 0.5), [0]), "targets"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0, 1]), "seeds"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], correct=[True]), "noise_matrix"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], noise_matrix=np.ones((2, 2))), "noise_matrix"),
        (lambda: LN.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], lr=0), "lr"),
        (lambda: LN.train_mlp_ensemble(np.full((4, 2), np.nan), np.full((1, 4, 2), 0.5), [0]), "X"),
        (lambda: LN.expected_calibration_error(np.ones((2, 2)), np.array([0, 1])), "probs"),
        (lambda: LN.expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 2])), "y"),
        (lambda: LN.expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1]), n_bins=0), "n_bins"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
