"""Tests of iemlib.classifiers.

The claims checked by value: the gradient of the cross-entropy loss with respect to the distances
d = -z is onehot - r (autograd by two routes, closed form, finite differences, hypothesis), the
paper's printed r - onehot is the gradient with respect to z; a linear model's single-sample step
moves each wrong class's distance by lr (||x||^2 + 1) r_j; the trainers are plain gradient descent
(against torch.optim.SGD / Adam) and deterministic; the soft-target trainer reaches the smoothing
fixed point; the reject component's gradient is -r_0; bad input raises ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from iemlib import classifiers as C
from iemlib.data import load_digits, make_multilabel_task, symmetric_noise_matrix


@pytest.fixture(scope="module")
def small():
    split = load_digits()
    return split.X_train[:200], split.y_train[:200]


@pytest.fixture(scope="module")
def trained(small):
    X, y = small
    models = {}
    for kind in ("linear", "mlp"):
        m = C.make_classifier(kind, hidden=16)
        C.train_classifier(m, X, y, epochs=5, lr=0.5)
        models[kind] = m
    return models


def _onehot(y, K):
    return nn.functional.one_hot(y, K).double()


def _smooth(y, K, eps):
    return (1 - eps) * _onehot(y, K) + eps / K


# ---------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_make_classifier_shapes_determinism_and_rng(kind):
    state = torch.get_rng_state()
    m1 = C.make_classifier(kind, n_features=5, n_classes=3, hidden=7, random_state=1)
    assert torch.equal(state, torch.get_rng_state())  # global random state untouched
    m2 = C.make_classifier(kind, n_features=5, n_classes=3, hidden=7, random_state=1)
    m3 = C.make_classifier(kind, n_features=5, n_classes=3, hidden=7, random_state=2)
    x = torch.randn(4, 5, dtype=torch.float64)
    assert m1(x).shape == (4, 3) and m1(x).dtype == torch.float64
    assert torch.equal(m1(x), m2(x)) and not torch.equal(m1(x), m3(x))
    assert C.make_classifier(kind, dtype=torch.float32)(torch.zeros(1, 64)).dtype == torch.float32


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_make_classifier_independent_of_default_dtype(kind):
    a = C.make_classifier(kind, random_state=3)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        b = C.make_classifier(kind, random_state=3)
        torch.set_default_dtype(torch.float32)
        c = C.make_classifier(kind, random_state=3)
    finally:
        torch.set_default_dtype(old)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert pa.dtype == torch.float64 and torch.equal(pa, pb) and torch.equal(pa, pc)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kind": "cnn"}, "kind"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_features": 0}, "n_features"),
        ({"hidden": 0}, "hidden"),
        ({"random_state": 1.5}, "random_state"),
        ({"dtype": torch.float16}, "dtype"),
    ],
)
def test_make_classifier_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        C.make_classifier(**kwargs)


def test_prototype_classifier_distances_and_far_inputs():
    X, T = make_multilabel_task(n=60, random_state=0)
    y = T[:, 0].long()
    model = C.PrototypeClassifier(X, y, 2)
    assert torch.allclose(model.mu[1], X[y == 1].mean(0)) and float(model.log_a.detach()) == 0.0
    z = model(X)
    assert z.shape == (60, 2) and (z <= 0).all()
    with torch.no_grad():
        model.log_a.fill_(0.3)
        sq = torch.cdist(X, model.mu) ** 2
        assert torch.allclose(model(X), -sq * math.exp(0.6) / 2, atol=1e-12)
        fast = C.PrototypeClassifier(X, y, 2, expanded=True)
        fast.load_state_dict(model.state_dict())
        assert torch.allclose(fast(X), model(X), atol=1e-10)
    far = model(100 * torch.ones(1, 5, dtype=torch.float64))
    assert torch.logsumexp(far, 1) < torch.logsumexp(model(X), 1).min()


def test_reject_option_module_and_training_signal():
    torch.manual_seed(0)
    base = nn.Linear(4, 3).double()
    model = C.RejectOption(base, 2.0)
    X = torch.randn(7, 4, dtype=torch.float64)
    z = model(X)
    assert z.shape == (7, 4) and torch.all(z[:, -1] == -2.0)
    r0 = torch.softmax(z, 1)[:, -1]
    d_known = -base(X)
    assert torch.allclose(r0, torch.exp(torch.tensor(-2.0)) / (torch.exp(torch.tensor(-2.0)) + torch.exp(-d_known).sum(1)))
    # cross-entropy on known labels: the reject component is a wrong class, gradient -r0 w.r.t. its distance
    dd = (-z).detach().clone().requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(-dd, y, reduction="sum"), dd)  # loss, w.r.t. d
    assert torch.allclose(g[:, -1], -r0.detach())
    assert list(model.parameters()) == list(base.parameters())  # no parameter of its own


# ---------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("batch_size", [None, 32])
def test_train_deterministic(small, batch_size):
    X, y = small
    runs = []
    for _ in range(2):
        m = C.make_classifier("mlp", hidden=8)
        h = C.train_classifier(m, X, y, epochs=4, lr=0.2, batch_size=batch_size, random_state=5, record=C.RECORDABLE)
        runs.append((h, [p.detach().clone() for p in m.parameters()]))
    (h1, p1), (h2, p2) = runs
    assert isinstance(h1, C.TrainHistory) and h1.test_loss is None
    for k in ("epoch", *C.RECORDABLE):
        assert np.array_equal(getattr(h1, k), getattr(h2, k)), k
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert h1.r.shape == (5, 200, 10)


def test_train_history_values(small):
    X, y = small
    m = C.make_classifier("linear")
    with torch.no_grad():
        z0 = m(X)
    h = C.train_classifier(m, X, y, epochs=20, lr=0.5, record=("loss", "accuracy", "r_correct", "r_correct_min", "r_wrong_max"),
                           X_test=X[:50], y_test=y[:50])
    assert np.array_equal(h.epoch, np.arange(21)) and h.r is None
    # entry 0 is before training and equals the cross-entropy written in distances, d = -z
    d0 = -z0
    ce0 = (d0[torch.arange(200), y] + torch.logsumexp(-d0, 1)).mean()
    assert h.loss[0] == pytest.approx(float(ce0), rel=1e-12)
    r0 = torch.softmax(z0, -1)[torch.arange(200), y]
    assert h.r_correct[0] == pytest.approx(float(r0.mean()), rel=1e-12)
    assert h.r_correct_min[0] == pytest.approx(float(r0.min()), rel=1e-12)
    assert h.loss[-1] < 0.5 * h.loss[0] and h.r_correct[-1] > h.r_correct[0]
    assert np.all((h.r_correct_min <= h.r_correct) & (h.r_correct <= 1))
    assert h.accuracy[-1] > 0.9 and len(h.test_accuracy) == 21
    with torch.no_grad():
        assert h.loss[-1] == pytest.approx(float(nn.functional.cross_entropy(m(X), y)), rel=1e-12)


def test_train_without_records_gives_the_same_weights(small):
    X, y = small
    a, b = C.make_classifier("mlp", hidden=8), C.make_classifier("mlp", hidden=8)
    ha = C.train_classifier(a, X, y, epochs=6, lr=0.3, record=())
    C.train_classifier(b, X, y, epochs=6, lr=0.3, record=C.RECORDABLE)
    assert ha.loss is None and np.array_equal(ha.epoch, np.arange(7))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_train_is_plain_gradient_descent(small):
    """One full-batch epoch is exactly theta - lr * grad of the mean loss."""
    X, y = small
    m, ref = C.make_classifier("linear"), C.make_classifier("linear")
    gW, gb = torch.autograd.grad(nn.functional.cross_entropy(ref(X), y), [ref.weight, ref.bias])
    C.train_classifier(m, X, y, epochs=1, lr=0.3, record=())
    assert torch.allclose(m.weight, ref.weight - 0.3 * gW, atol=1e-14)
    assert torch.allclose(m.bias, ref.bias - 0.3 * gb, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_train_matches_torch_sgd(small, weight_decay):
    """Mini-batch training equals torch.optim.SGD with the same batches and weight decay."""
    X, y = small
    m, ref = C.make_classifier("mlp", hidden=8), C.make_classifier("mlp", hidden=8)
    C.train_classifier(m, X, y, epochs=3, lr=0.2, batch_size=64, weight_decay=weight_decay, random_state=7, record=())
    opt = torch.optim.SGD(ref.parameters(), lr=0.2, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        for b in torch.randperm(200, generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(ref(X[b]), y[b]).backward()
            opt.step()
    for a, b in zip(m.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-13)


def test_train_diverging_loss_raises(small):
    X, y = small
    with pytest.raises(FloatingPointError, match="lr"):
        C.train_classifier(C.make_classifier("linear"), X * 1e150, y, epochs=3, lr=1e150, record=())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"random_state": -2}, "random_state"),
        ({"record": ("loss", "nope")}, "record"),
        ({"record": 3}, "record"),
        ({"X_test": "only"}, "X_test"),
    ],
)
def test_train_bad_arguments(small, kwargs, name):
    X, y = small
    with pytest.raises(ValueError, match=name):
        C.train_classifier(C.make_classifier("linear"), X, y, **kwargs)


def test_train_bad_data(small):
    X, y = small
    m = C.make_classifier("linear")
    with pytest.raises(ValueError, match="model"):
        C.train_classifier("not a model", X, y)
    with pytest.raises(ValueError, match="X"):
        C.train_classifier(m, X.float(), y)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="X"):
        C.train_classifier(m, bad, y)
    with pytest.raises(ValueError, match="X"):
        C.train_classifier(m, X[:, :10], y)
    with pytest.raises(ValueError, match="y"):
        C.train_classifier(m, X, y + 10)
    with pytest.raises(ValueError, match="y"):
        C.train_classifier(m, X, y[:-1])
    with pytest.raises(ValueError, match="y"):
        C.train_classifier(m, X, y.double())
    frozen = C.make_classifier("linear").requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        C.train_classifier(frozen, X, y)


# ---------------------------------------------------------------------------------------- gradients w.r.t. d
@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("method", ["hook", "func"])
def test_distance_gradient_is_onehot_minus_r(trained, small, kind, method):
    X, y = small
    m = trained[kind]
    before = [p.detach().clone() for p in m.parameters()]
    assert all(p.grad is None for p in m.parameters())  # training leaves no stale .grad
    out = C.cross_entropy_distance_gradients(m, X, y, method=method)
    grad_d, r, onehot = out.grad_d, out.r, out.onehot
    assert grad_d.shape == r.shape == onehot.shape == (200, 10)
    assert all(p.grad is None for p in m.parameters())  # and the gradients add none
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with torch.no_grad():
        d = -m(X)
    assert torch.equal(r, torch.softmax(-d, -1))
    assert torch.equal(onehot, _onehot(y, 10))
    assert (grad_d - (onehot - r)).abs().max() < 1e-14  # the book's closed form, with respect to d
    # the paper's printed r - onehot is the negative: the gradient with respect to the logits
    assert (grad_d - (r - onehot)).abs().max() > 0.5
    assert grad_d.sum(-1).abs().max() < 1e-14


def test_hook_and_func_agree(trained, small):
    X, y = small
    for m in trained.values():
        a = C.cross_entropy_distance_gradients(m, X, y, method="hook").grad_d
        b = C.cross_entropy_distance_gradients(m, X, y, method="func").grad_d
        assert (a - b).abs().max() < 1e-14


def test_gradient_with_respect_to_logits_is_papers_formula(trained, small):
    X, y = small
    z = trained["mlp"](X).detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(nn.functional.cross_entropy(z, y, reduction="sum"), z)
    assert (gz - (torch.softmax(z.detach(), -1) - _onehot(y, 10))).abs().max() < 1e-14


def test_distance_gradient_finite_differences(trained, small):
    """Central differences of each sample's loss in d_j agree with the autograd gradient."""
    X, y = small
    m = trained["mlp"]
    grad_d = C.cross_entropy_distance_gradients(m, X[:20], y[:20]).grad_d
    with torch.no_grad():
        d = -m(X[:20])

    def ce(dd):
        return dd[torch.arange(20), y[:20]] + torch.logsumexp(-dd, -1)

    h, eye = 1e-6, torch.eye(10, dtype=torch.float64)
    fd = torch.stack([(ce(d + h * eye[j]) - ce(d - h * eye[j])) / (2 * h) for j in range(10)], dim=-1)
    assert (fd - grad_d).abs().max() < 1e-8


def test_model_without_parameters():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.cat([x, -x], 1)

    X = torch.randn(5, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    out = C.cross_entropy_distance_gradients(Fixed(), X, y)
    assert torch.allclose(out.grad_d, out.onehot - out.r, atol=1e-15)


@given(seed=st.integers(0, 2**16), scale=st.floats(0.01, 30.0), n_classes=st.integers(2, 6))
def test_distance_gradient_property(seed, scale, n_classes):
    """For random linear models and inputs of any scale, autograd == onehot - r to a few ulps."""
    g = torch.Generator().manual_seed(seed)
    X = scale * torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (7,), generator=g)
    m = C.make_classifier("linear", n_features=3, n_classes=n_classes, random_state=seed)
    out = C.cross_entropy_distance_gradients(m, X, y)
    assert (out.grad_d - (out.onehot - out.r)).abs().max() <= 4 * torch.finfo(torch.float64).eps
    assert torch.allclose(out.r.sum(-1), torch.ones(7, dtype=torch.float64), atol=1e-14)


def test_distance_gradients_bad_input(small):
    X, y = small
    m = C.make_classifier("linear")
    with pytest.raises(ValueError, match="method"):
        C.cross_entropy_distance_gradients(m, X, y, method="numeric")
    with pytest.raises(ValueError, match="y"):
        C.cross_entropy_distance_gradients(m, X, y[:5])
    with pytest.raises(ValueError, match="X"):
        C.cross_entropy_distance_gradients(m, X[0], y)
    with pytest.raises(ValueError, match="model"):
        C.cross_entropy_distance_gradients(lambda x: x, X, y)
    with pytest.raises(ValueError, match="logits"):
        C.cross_entropy_distance_gradients(nn.Linear(64, 1).double(), X, y)


# ---------------------------------------------------------------------------------------- a small step
def test_linear_single_sample_step_exact(trained, small):
    X, y = small
    m = trained["linear"]
    delta = C.single_sample_step(m, X, y, lr=1e-3)
    g = C.cross_entropy_distance_gradients(m, X, y)
    s = (X**2).sum(1, keepdim=True) + 1.0
    # linear model: d_i moves by -lr * (||x_i||^2 + 1) * (onehot - r), divided by lr
    assert (delta - s * (g.r - g.onehot)).abs().max() < 1e-9
    push = C.push_per_class(delta, g.r, y)
    assert np.allclose(push.share_corr, 1.0, atol=1e-12)
    assert np.all(push.share_maxdiff < 1e-10)
    assert np.all(push.slope > 0) and push.n.sum() == 200 * 9


def test_single_sample_step_matches_ntk(trained, small):
    """MLP: the finite step agrees with its first-order prediction -J J^T (onehot - r)."""
    from torch.func import functional_call, jacrev

    X, y = small
    m = trained["mlp"]
    delta = C.single_sample_step(m, X[:5], y[:5], lr=1e-6)
    g = C.cross_entropy_distance_gradients(m, X[:5], y[:5])
    params = {k: v.detach() for k, v in m.named_parameters()}
    for i in range(5):
        J = jacrev(lambda p: -functional_call(m, p, (X[i : i + 1],))[0])(params)
        Jm = torch.cat([J[k].reshape(10, -1) for k in params], dim=1)
        pred = -(Jm @ Jm.T) @ (g.onehot[i] - g.r[i])
        assert torch.allclose(delta[i], pred, rtol=1e-4, atol=1e-6)
    last = C.single_sample_step(m, X, y, param_names=["2.weight", "2.bias"])
    r = C.cross_entropy_distance_gradients(m, X, y).r
    assert np.allclose(C.push_per_class(last, r, y).share_corr, 1.0, atol=1e-9)
    before = [p.detach().clone() for p in m.parameters()]
    C.single_sample_step(m, X, y)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))  # the model is not modified


def test_single_sample_step_bad_input(trained, small):
    X, y = small
    with pytest.raises(ValueError, match="param_names"):
        C.single_sample_step(trained["mlp"], X, y, param_names=["nope"])
    with pytest.raises(ValueError, match="param_names"):
        C.single_sample_step(trained["mlp"], X, y, param_names=[])
    with pytest.raises(ValueError, match="lr"):
        C.single_sample_step(trained["mlp"], X, y, lr=-1.0)


def test_push_per_class_synthetic_and_bad_input():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4))
    r = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, 4, 50)
    out = C.push_per_class(3.0 * r, r, y)  # proportional everywhere, same factor for every sample
    assert np.allclose(out.slope, 3.0) and np.allclose(out.corr, 1.0) and np.allclose(out.rel_resid, 0.0)
    assert out.n.dtype == np.int64 and out.n.sum() == 50 * 3
    with pytest.raises(ValueError, match="r"):
        C.push_per_class(3.0 * r, r[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        C.push_per_class(3.0 * r, r, y + 4)
    with pytest.raises(ValueError, match="delta_d"):
        C.push_per_class(3.0 * r[0], r, y)


def test_push_shares_synthetic_and_bad_input():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 5))
    r = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, 5, 40)
    scale = rng.uniform(0.5, 3.0, size=(40, 1))
    out = C.push_shares(torch.as_tensor(scale * r), r, torch.as_tensor(y))  # a different factor per sample
    wrong = out.wrong
    assert wrong.sum() == 40 * 4 and not wrong[np.arange(40), y].any()
    assert np.all(np.isnan(out.share_push[~wrong])) and np.all(np.isnan(out.share_r[~wrong]))
    assert np.allclose(out.share_push[wrong], out.share_r[wrong], atol=1e-12)
    assert np.allclose(np.nansum(out.share_r, 1), 1.0) and np.allclose(np.nansum(out.share_push, 1), 1.0)
    r_y = r[np.arange(40), y]
    assert np.allclose(out.share_r, np.where(wrong, r / (1 - r_y)[:, None], np.nan), equal_nan=True)
    assert np.allclose(C.push_per_class(scale * r, r, y).share_corr, 1.0)
    with pytest.raises(ValueError, match="r"):
        C.push_shares(r, r[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        C.push_shares(r, r, y + 5)
    with pytest.raises(ValueError, match="delta_d"):
        C.push_shares(np.full((40, 5), np.nan), r, y)


# ---------------------------------------------------------------------------------------- soft targets
class _Free(nn.Module):
    """Free per-sample logits: the optimum of the soft cross-entropy is r = q exactly."""

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.zeros(n, k, dtype=torch.float64))

    def forward(self, X):
        return self.z + 0.0 * X[:, :1]


def test_train_soft_classifier_reaches_fixed_point_for_free_distances():
    y = torch.arange(30) % 5
    q = _smooth(y, 5, 0.2)
    h = C.train_soft_classifier(_Free(30, 5), torch.zeros(30, 2, dtype=torch.float64), q, epochs=400, lr=20.0, record_every=100)
    assert isinstance(h, C.SoftTrainHistory) and list(h.epoch) == [0, 100, 200, 300, 400]
    assert abs(h.r_target[-1] - (1 - 0.2 + 0.2 / 5)) < 1e-6  # r_y* = 1 - eps + eps / K
    assert h.loss[-1] <= h.loss[0] and h.grad_norm[-1] < 1e-6


def test_train_soft_classifier_is_plain_gradient_descent_on_the_soft_loss(small):
    X, y = small
    q = _smooth(y, 10, 0.1)
    m, ref = C.make_classifier("linear"), C.make_classifier("linear")
    h = C.train_soft_classifier(m, X, q, epochs=1, lr=0.5, record_every=1)
    d = -ref(X)
    loss = (-(q * torch.log_softmax(-d, 1)).sum(1)).mean()  # -sum_j q_j log r_j
    gW, gb = torch.autograd.grad(loss, [ref.weight, ref.bias])
    assert h.loss[0] == pytest.approx(float(loss.detach()), rel=1e-13)
    assert h.grad_norm[0] == pytest.approx(float(torch.sqrt((gW**2).sum() + (gb**2).sum())), rel=1e-12)
    assert torch.allclose(m.weight, ref.weight - 0.5 * gW, atol=1e-14)
    # the soft loss's gradient with respect to d is q - r
    dv = d.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(((q * dv).sum(1) + torch.logsumexp(-dv, 1)).sum(), dv)
    assert torch.allclose(g, q - torch.softmax(-dv.detach(), 1), atol=1e-14)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64) / 2), "q"),
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64) / 3), "q"),
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)), "q"),
        (lambda: C.train_soft_classifier("no", torch.zeros(4, 2, dtype=torch.float64), torch.ones(4, 3) / 3), "model"),
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2, dtype=torch.float64), torch.ones(4, 3) / 3, epochs=0), "epochs"),
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2).float(), torch.ones(4, 3) / 3), "X"),
        (lambda: C.train_soft_classifier(nn.Linear(2, 3).double(), torch.zeros(4, 2, dtype=torch.float64), torch.ones(4, 3) / 3, record_every=0), "record_every"),
    ],
)
def test_soft_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------------------- the ensemble
def _task(n=60, f=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g, dtype=torch.float64), torch.randint(0, k, (n,), generator=g)


def test_batched_trainer_equals_torch_adam_on_each_model():
    X, y = _task()
    K = 3
    Q = torch.stack([_onehot(y, K), torch.full((60, K), 1 / K, dtype=torch.float64)])
    out = C.train_mlp_ensemble(X, Q, [4, 7], hidden=8, epochs=30, lr=0.01, X_test=X[:10], record_every=10)
    for m, seed in enumerate([4, 7]):
        net = C.make_classifier("mlp", 5, K, 8, random_state=seed)
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            (-(Q[m] * torch.log_softmax(net(X), 1)).sum(1).mean()).backward()
            opt.step()
        with torch.no_grad():
            assert torch.allclose(out.train_logits[m], net(X), atol=1e-9)
            assert torch.allclose(out.test_logits[m], net(X[:10]), atol=1e-9)
    assert out.epoch.tolist() == [0, 10, 20, 30]
    assert out.test_logits_history.shape == (4, 2, 10, K)
    without = C.train_mlp_ensemble(X, Q, [4, 7], hidden=8, epochs=30, lr=0.01)
    assert without.test_logits is None and without.test_logits_history is None and len(without.epoch) == 0
    assert torch.equal(without.train_logits, out.train_logits)


def test_forward_correction_with_identity_is_plain_training_and_changes_with_noise():
    X, y = _task()
    Q = _onehot(y, 3)[None].repeat(2, 1, 1)
    plain = C.train_mlp_ensemble(X, Q, [0, 0], hidden=8, epochs=20, lr=0.01, noise_matrix=torch.eye(3, dtype=torch.float64), correct=[False, True])
    assert torch.allclose(plain.train_logits[0], plain.train_logits[1], atol=1e-9)
    T = symmetric_noise_matrix(3, 0.4)
    corr = C.train_mlp_ensemble(X, Q, [0, 0], hidden=8, epochs=20, lr=0.01, noise_matrix=T, correct=[False, True])
    assert not torch.allclose(corr.train_logits[0], corr.train_logits[1])


def test_forward_corrected_loss_gradient_matches_finite_differences():
    # loss(z) = -log (softmax(z) T)_y: the autograd gradient the trainer relies on
    T = symmetric_noise_matrix(3, 0.3)
    z = torch.tensor([0.2, -1.0, 0.7], dtype=torch.float64, requires_grad=True)
    f = lambda v: -torch.log(torch.softmax(v, 0) @ T)[1]  # noqa: E731
    (g,) = torch.autograd.grad(f(z), z)
    h = 1e-6
    fd = torch.stack([(f(z.detach() + h * e) - f(z.detach() - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    assert torch.allclose(g, fd, atol=1e-8)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.ones((1, 4, 2)), [0]), "targets"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 3, 2), 0.5), [0]), "targets"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0, 1]), "seeds"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], correct=[True]), "noise_matrix"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], noise_matrix=np.ones((2, 2))), "noise_matrix"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], correct=[True, False]), "correct"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], lr=0), "lr"),
        (lambda: C.train_mlp_ensemble(np.full((4, 2), np.nan), np.full((1, 4, 2), 0.5), [0]), "X"),
        (lambda: C.train_mlp_ensemble(np.ones((4, 2)), np.full((1, 4, 2), 0.5), [0], X_test=np.ones((3, 3))), "X_test"),
    ],
)
def test_ensemble_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------- multi-label
def test_multilabel_training():
    X, T = make_multilabel_task(n=200, random_state=1)
    for kind in ("sigmoid", "softmax"):
        h = C.train_multilabel(X, T, kind, epochs=50)
        assert isinstance(h, C.MultilabelFit)
        assert h.loss[-1] < h.loss[0] and h.loss.shape == (51,)
        assert h.W.shape == (5, 4) and h.b.shape == (4,)
    h = C.train_multilabel(X, T, "sigmoid", epochs=300)
    assert float((((X @ h.W + h.b) > 0) == (T > 0)).double().mean()) > 0.95


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_multilabel_is_gradient_descent_on_its_loss(kind):
    X, T = make_multilabel_task(n=50, random_state=2)
    h1 = C.train_multilabel(X, T, kind, epochs=1, lr=0.5, random_state=3)
    W = (0.01 * torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).requires_grad_(True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    Z = X @ W + b
    if kind == "sigmoid":  # sum over labels of binary cross-entropies
        loss = nn.functional.binary_cross_entropy_with_logits(Z, T, reduction="sum") / 50
    else:  # softmax cross-entropy against the normalized label set
        q = T / T.sum(1, keepdim=True).clamp_min(1)
        loss = -(q * torch.log_softmax(Z, 1)).sum() / 50
    gW, gb = torch.autograd.grad(loss, [W, b])
    assert h1.loss[0] == pytest.approx(float(loss.detach()), rel=1e-12)
    assert torch.allclose(h1.W, W - 0.5 * gW, atol=1e-14) and torch.allclose(h1.b, b - 0.5 * gb, atol=1e-14)


def test_multilabel_sigmoid_gradient_of_one_label_ignores_the_others():
    Z = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    T = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    (g,) = torch.autograd.grad((nn.functional.softplus(Z) - T * Z).sum(), Z)
    assert torch.allclose(g, torch.sigmoid(Z) - T)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: C.train_multilabel(torch.ones(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64), "relu"), "kind"),
        (lambda: C.train_multilabel(torch.ones(3, 2, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64)), "T"),
        (lambda: C.train_multilabel(torch.ones(3, 2, dtype=torch.float64), 0.5 * torch.ones(3, 2, dtype=torch.float64)), "T"),
        (lambda: C.train_multilabel(torch.ones(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64), epochs=0), "epochs"),
        (lambda: C.PrototypeClassifier(torch.ones(4, 2, dtype=torch.float64), torch.tensor([0, 0, 0, 0]), 2), "class"),
        (lambda: C.PrototypeClassifier(torch.ones(4, 2, dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0, 1.0]), 2), "y"),
        (lambda: C.PrototypeClassifier(torch.ones(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1]), 2, expanded=1), "expanded"),
        (lambda: C.RejectOption("model", 1.0), "base"),
        (lambda: C.RejectOption(nn.Linear(2, 2), float("inf")), "tau"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
