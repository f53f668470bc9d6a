"""Tests of iemlib.legacy.classification and the chapter 6 exercise checkers.

The chapter's claims checked here by value: the gradient of the cross-entropy loss with respect
to the distances d = -z is onehot - r (autograd by two routes, closed form, finite differences),
the paper's printed r - onehot is the gradient with respect to z, a linear model's single-sample
step moves each wrong class's distance by lr (||x||^2 + 1) r_j, and everything is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from iemlib.legacy.classification import (
    RECORDABLE,
    distance_gradients,
    load_digits_data,
    make_classifier,
    push_per_class,
    push_shares,
    single_sample_step,
    train_classifier,
)
from iemlib.book.exercises.ch06 import check_distance_gradient, check_linear_step, check_wrong_push_total
from iemlib.legacy.objectives import cross_entropy, cross_entropy_gradient


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


@pytest.fixture(scope="module")
def small(digits):
    X_tr, _, y_tr, _ = digits
    return X_tr[:200], y_tr[:200]


@pytest.fixture(scope="module")
def trained(small):
    X, y = small
    models = {}
    for kind in ("linear", "mlp"):
        m = make_classifier(kind, hidden=16)
        train_classifier(m, X, y, epochs=5, lr=0.5)
        models[kind] = m
    return models


# ---------------------------------------------------------------------------- data
def test_digits_shapes_dtypes_and_standardization(digits):
    X_tr, X_te, y_tr, y_te = digits
    assert X_tr.shape == (1257, 64) and X_te.shape == (540, 64)
    assert X_tr.dtype == torch.float64 and y_tr.dtype == torch.int64 and y_te.dtype == torch.int64
    assert torch.isfinite(X_tr).all() and torch.isfinite(X_te).all()
    assert torch.allclose(X_tr.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    std = X_tr.std(0, unbiased=False)
    constant = std < 1e-12
    assert constant.any()  # some corner pixels are always 0 on the training set
    assert torch.allclose(std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64))
    assert sorted(torch.unique(y_tr).tolist()) == list(range(10))


def test_digits_deterministic_and_seeded():
    a = load_digits_data(seed=3, dtype=torch.float32)
    b = load_digits_data(seed=3, dtype=torch.float32)
    c = load_digits_data(seed=4, dtype=torch.float32)
    assert a[0].dtype == torch.float32
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[2], c[2])


def test_digits_classes_reindexed_in_given_order():
    from sklearn.datasets import load_digits

    target = load_digits().target
    X_tr, X_te, y_tr, y_te = load_digits_data(classes=[3, 1], test_size=0.25)
    y = torch.cat([y_tr, y_te])
    assert sorted(torch.unique(y).tolist()) == [0, 1]
    assert int((y == 0).sum()) == int((target == 3).sum())
    assert int((y == 1).sum()) == int((target == 1).sum())
    X5 = load_digits_data(classes=range(5))
    assert sorted(torch.unique(X5[2]).tolist()) == [0, 1, 2, 3, 4]
    assert X5[0].shape[0] + X5[1].shape[0] == int((target < 5).sum())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"test_size": 0.0}, "test_size"),
        ({"test_size": 1.5}, "test_size"),
        ({"test_size": "a"}, "test_size"),
        ({"classes": [1]}, "classes"),
        ({"classes": [1, 1]}, "classes"),
        ({"classes": [1, 10]}, "classes"),
        ({"classes": [1.0, 2.0]}, "classes"),
        ({"classes": 5}, "classes"),
        ({"seed": -1}, "seed"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_digits_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_digits_data(**kwargs)


# ---------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_make_classifier_shapes_determinism_and_rng(kind):
    state = torch.get_rng_state()
    m1 = make_classifier(kind, n_features=5, n_classes=3, hidden=7, seed=1)
    assert torch.equal(state, torch.get_rng_state())  # global random state untouched
    m2 = make_classifier(kind, n_features=5, n_classes=3, hidden=7, seed=1)
    m3 = make_classifier(kind, n_features=5, n_classes=3, hidden=7, seed=2)
    x = torch.randn(4, 5, dtype=torch.float64)
    assert m1(x).shape == (4, 3) and m1(x).dtype == torch.float64
    assert torch.equal(m1(x), m2(x)) and not torch.equal(m1(x), m3(x))
    assert make_classifier(kind, dtype=torch.float32)(torch.zeros(1, 64)).dtype == torch.float32


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_make_classifier_independent_of_default_dtype(kind):
    a = make_classifier(kind, seed=3)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        b = make_classifier(kind, seed=3)
        torch.set_default_dtype(torch.float32)
        c = make_classifier(kind, seed=3)
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
        ({"seed": 1.5}, "seed"),
        ({"dtype": torch.float16}, "dtype"),
    ],
)
def test_make_classifier_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_classifier(**kwargs)


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("batch_size", [None, 32])
def test_train_deterministic(small, batch_size):
    X, y = small
    runs = []
    for _ in range(2):
        m = make_classifier("mlp", hidden=8)
        h = train_classifier(m, X, y, epochs=4, lr=0.2, batch_size=batch_size, seed=5, record=RECORDABLE)
        runs.append((h, [p.detach().clone() for p in m.parameters()]))
    (h1, p1), (h2, p2) = runs
    assert set(h1) == {"epoch", *RECORDABLE}
    for k in h1:
        assert np.array_equal(h1[k], h2[k]), k
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert h1["r"].shape == (5, 200, 10)


def test_train_history_values(small):
    X, y = small
    m = make_classifier("linear")
    with torch.no_grad():
        z0 = m(X)
    h = train_classifier(
        m, X, y, epochs=20, lr=0.5, record=("loss", "accuracy", "r_correct", "r_correct_min", "r_wrong_max"),
        X_test=X[:50], y_test=y[:50],
    )
    assert np.array_equal(h["epoch"], np.arange(21))
    # entry 0 is before training and equals the cross-entropy written in distances, d = -z
    assert h["loss"][0] == pytest.approx(float(cross_entropy(-z0, y).mean()), rel=1e-12)
    r0 = torch.softmax(z0, -1)[torch.arange(200), y]
    assert h["r_correct"][0] == pytest.approx(float(r0.mean()), rel=1e-12)
    assert h["r_correct_min"][0] == pytest.approx(float(r0.min()), rel=1e-12)
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["r_correct"][-1] > h["r_correct"][0]
    assert np.all((h["r_correct_min"] <= h["r_correct"]) & (h["r_correct"] <= 1))
    assert h["accuracy"][-1] > 0.9 and len(h["test_accuracy"]) == 21
    with torch.no_grad():
        assert h["loss"][-1] == pytest.approx(float(nn.functional.cross_entropy(m(X), y)), rel=1e-12)


def test_train_is_plain_gradient_descent(small):
    """One full-batch epoch is exactly theta - lr * grad of the mean loss."""
    X, y = small
    m = make_classifier("linear")
    ref = make_classifier("linear")
    loss = nn.functional.cross_entropy(ref(X), y)
    gW, gb = torch.autograd.grad(loss, [ref.weight, ref.bias])
    train_classifier(m, X, y, epochs=1, lr=0.3, record=())
    assert torch.allclose(m.weight, ref.weight - 0.3 * gW, atol=1e-14)
    assert torch.allclose(m.bias, ref.bias - 0.3 * gb, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_train_matches_torch_sgd(small, weight_decay):
    """Mini-batch training equals torch.optim.SGD with the same batches and weight decay."""
    X, y = small
    m = make_classifier("mlp", hidden=8)
    ref = make_classifier("mlp", hidden=8)
    train_classifier(m, X, y, epochs=3, lr=0.2, batch_size=64, weight_decay=weight_decay, seed=7, record=())
    opt = torch.optim.SGD(ref.parameters(), lr=0.2, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        for b in torch.randperm(200, generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(ref(X[b]), y[b]).backward()
            opt.step()
    for a, b in zip(m.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-13)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"seed": -2}, "seed"),
        ({"record": ("loss", "nope")}, "record"),
        ({"X_test": "only"}, "X_test"),
    ],
)
def test_train_bad_arguments(small, kwargs, name):
    X, y = small
    with pytest.raises(ValueError, match=name):
        train_classifier(make_classifier("linear"), X, y, **kwargs)


def test_train_bad_data(small):
    X, y = small
    m = make_classifier("linear")
    with pytest.raises(ValueError, match="model"):
        train_classifier("not a model", X, y)
    with pytest.raises(ValueError, match="X"):
        train_classifier(m, X.float(), y)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="X"):
        train_classifier(m, bad, y)
    with pytest.raises(ValueError, match="X"):
        train_classifier(m, X[:, :10], y)
    with pytest.raises(ValueError, match="y"):
        train_classifier(m, X, y + 10)
    with pytest.raises(ValueError, match="y"):
        train_classifier(m, X, y[:-1])
    with pytest.raises(ValueError, match="y"):
        train_classifier(m, X, y.double())


# ---------------------------------------------------------------------------- gradients w.r.t. d
@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("method", ["hook", "func"])
def test_distance_gradient_is_onehot_minus_r(trained, small, kind, method):
    X, y = small
    m = trained[kind]
    before = [p.detach().clone() for p in m.parameters()]
    assert all(p.grad is None for p in m.parameters())  # training leaves no stale .grad
    grad_d, r, onehot = distance_gradients(m, X, y, method=method)
    assert grad_d.shape == r.shape == onehot.shape == (200, 10)
    assert all(p.grad is None for p in m.parameters())  # and distance_gradients adds none
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with torch.no_grad():
        d = -m(X)
    assert torch.allclose(r, torch.softmax(-d, -1), atol=0, rtol=0)
    assert torch.equal(onehot, nn.functional.one_hot(y, 10).double())
    # the book's closed form, with respect to d (not z)
    assert (grad_d - (onehot - r)).abs().max() < 1e-14
    assert (grad_d - cross_entropy_gradient(d, y)).abs().max() < 1e-14
    # the paper's printed r - onehot is the negative: the gradient with respect to the logits
    assert (grad_d - (r - onehot)).abs().max() > 0.5
    assert torch.allclose(grad_d, -(r - onehot), atol=1e-14)
    assert grad_d.sum(-1).abs().max() < 1e-14


def test_hook_and_func_agree(trained, small):
    X, y = small
    for m in trained.values():
        a = distance_gradients(m, X, y, method="hook")[0]
        b = distance_gradients(m, X, y, method="func")[0]
        assert (a - b).abs().max() < 1e-14


def test_gradient_with_respect_to_logits_is_papers_formula(trained, small):
    X, y = small
    z = trained["mlp"](X).detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(nn.functional.cross_entropy(z, y, reduction="sum"), z)
    r = torch.softmax(z.detach(), -1)
    assert (gz - (r - nn.functional.one_hot(y, 10))).abs().max() < 1e-14


def test_distance_gradient_finite_differences(trained, small):
    """Central differences of each sample's loss in d_j agree with onehot - r."""
    X, y = small
    m = trained["mlp"]
    grad_d, _, _ = distance_gradients(m, X[:20], y[:20])
    with torch.no_grad():
        d = -m(X[:20])
    h = 1e-6
    eye = torch.eye(10, dtype=torch.float64)
    fd = torch.stack(
        [(cross_entropy(d + h * eye[j], y[:20]) - cross_entropy(d - h * eye[j], y[:20])) / (2 * h) for j in range(10)],
        dim=-1,
    )
    assert (fd - grad_d).abs().max() < 1e-8


@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 30.0),
    n_classes=st.integers(2, 6),
)
def test_distance_gradient_property(seed, scale, n_classes):
    """For random linear models and inputs of any scale, autograd == onehot - r to a few ulps."""
    g = torch.Generator().manual_seed(seed)
    X = scale * torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (7,), generator=g)
    m = make_classifier("linear", n_features=3, n_classes=n_classes, seed=seed)
    grad_d, r, onehot = distance_gradients(m, X, y)
    assert (grad_d - (onehot - r)).abs().max() <= 4 * torch.finfo(torch.float64).eps
    assert torch.allclose(r.sum(-1), torch.ones(7, dtype=torch.float64), atol=1e-14)


def test_distance_gradients_bad_input(small):
    X, y = small
    m = make_classifier("linear")
    with pytest.raises(ValueError, match="method"):
        distance_gradients(m, X, y, method="numeric")
    with pytest.raises(ValueError, match="y"):
        distance_gradients(m, X, y[:5])
    with pytest.raises(ValueError, match="X"):
        distance_gradients(m, X[0], y)
    with pytest.raises(ValueError, match="model"):
        distance_gradients(lambda x: x, X, y)


# ---------------------------------------------------------------------------- a small step
def test_linear_single_sample_step_exact(trained, small):
    X, y = small
    m = trained["linear"]
    delta = single_sample_step(m, X, y, lr=1e-3)
    _, r, onehot = distance_gradients(m, X, y)
    s = (X**2).sum(1, keepdim=True) + 1.0
    # linear model: d_i moves by -lr * (||x_i||^2 + 1) * (onehot - r), divided by lr
    assert (delta - s * (r - onehot)).abs().max() < 1e-9
    push = push_per_class(delta, r, y)
    assert np.allclose(push["share_corr"], 1.0, atol=1e-12)
    assert np.all(push["share_maxdiff"] < 1e-10)
    assert np.all(push["slope"] > 0) and push["n"].sum() == 200 * 9


def test_single_sample_step_matches_ntk(trained, small):
    """MLP: the finite step agrees with its first-order prediction -J J^T (onehot - r)."""
    from torch.func import functional_call, jacrev

    X, y = small
    m = trained["mlp"]
    lr = 1e-6
    delta = single_sample_step(m, X[:5], y[:5], lr=lr)
    _, r, onehot = distance_gradients(m, X[:5], y[:5])
    params = {k: v.detach() for k, v in m.named_parameters()}
    for i in range(5):
        J = jacrev(lambda p: -functional_call(m, p, (X[i : i + 1],))[0])(params)
        Jm = torch.cat([J[k].reshape(10, -1) for k in params], dim=1)
        pred = -(Jm @ Jm.T) @ (onehot[i] - r[i])
        assert torch.allclose(delta[i], pred, rtol=1e-4, atol=1e-6)
    last = single_sample_step(m, X, y, param_names=["2.weight", "2.bias"])
    _, r, _ = distance_gradients(m, X, y)
    assert np.allclose(push_per_class(last, r, y)["share_corr"], 1.0, atol=1e-9)


def test_single_sample_step_bad_input(trained, small):
    X, y = small
    with pytest.raises(ValueError, match="param_names"):
        single_sample_step(trained["mlp"], X, y, param_names=["nope"])
    with pytest.raises(ValueError, match="lr"):
        single_sample_step(trained["mlp"], X, y, lr=-1.0)


def test_push_per_class_synthetic_and_bad_input():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4))
    r = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, 4, 50)
    delta = 3.0 * r  # proportional everywhere, same factor for every sample
    out = push_per_class(delta, r, y)
    assert np.allclose(out["slope"], 3.0) and np.allclose(out["corr"], 1.0) and np.allclose(out["rel_resid"], 0.0)
    with pytest.raises(ValueError, match="r"):
        push_per_class(delta, r[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        push_per_class(delta, r, y + 4)
    with pytest.raises(ValueError, match="delta_d"):
        push_per_class(delta[0], r, y)


def test_push_shares_synthetic_and_bad_input():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 5))
    r = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, 5, 40)
    scale = rng.uniform(0.5, 3.0, size=(40, 1))
    out = push_shares(scale * r, r, y)  # proportional within each sample, a different factor per sample
    wrong = out["wrong"]
    assert wrong.sum() == 40 * 4 and not wrong[np.arange(40), y].any()
    assert np.all(np.isnan(out["share_push"][~wrong])) and np.all(np.isnan(out["share_r"][~wrong]))
    assert np.allclose(out["share_push"][wrong], out["share_r"][wrong], atol=1e-12)
    assert np.allclose(np.nansum(out["share_r"], 1), 1.0) and np.allclose(np.nansum(out["share_push"], 1), 1.0)
    r_y = r[np.arange(40), y]
    assert np.allclose(out["share_r"], np.where(wrong, r / (1 - r_y)[:, None], np.nan), equal_nan=True)
    # push_per_class's share statistics are built on the same shares
    assert np.allclose(push_per_class(scale * r, r, y)["share_corr"], 1.0)
    with pytest.raises(ValueError, match="r"):
        push_shares(r, r[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        push_shares(r, r, y + 5)
    with pytest.raises(ValueError, match="delta_d"):
        push_shares(np.full((40, 5), np.nan), r, y)


# ---------------------------------------------------------------------------- checkers
def test_check_distance_gradient():
    z = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    r = torch.softmax(z, -1)
    right = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) - r
    assert check_distance_gradient(right, z, 1)
    wrong_sign = check_distance_gradient(-right, z, 1)
    assert not wrong_sign and "opposite sign" in wrong_sign.message
    assert not check_distance_gradient(right + 0.1, z, 1)
    assert not check_distance_gradient(..., z, 1)
    assert not check_distance_gradient("text", z, 1)
    Z = torch.randn(4, 3, dtype=torch.float64)
    Y = torch.tensor([0, 2, 1, 1])
    assert check_distance_gradient(nn.functional.one_hot(Y, 3) - torch.softmax(Z, -1), Z, Y)


def test_check_wrong_push_total():
    assert check_wrong_push_total(-0.3, 0.7)
    assert not check_wrong_push_total(0.3, 0.7)
    assert not check_wrong_push_total(..., 0.7)


def test_check_linear_step():
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    z = torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)
    m = nn.Linear(2, 3).double()
    with torch.no_grad():
        m.weight.zero_()
        m.bias.copy_(z)
    loss = nn.functional.cross_entropy(m(x[None]), torch.tensor([2]))
    gW, gb = torch.autograd.grad(loss, [m.weight, m.bias])
    with torch.no_grad():
        d_after = -((m.weight - 0.1 * gW) @ x + (m.bias - 0.1 * gb))
    truth = d_after - (-z)
    assert check_linear_step(truth, x, z, 2, 0.1)
    assert not check_linear_step(-truth, x, z, 2, 0.1)
    small = -0.1 * (torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) - torch.softmax(z, -1))
    fb = check_linear_step(small, x, z, 2, 0.1)
    assert not fb and "wrong size" in fb.message
    assert not check_linear_step(..., x, z, 2, 0.1)


def test_load_digits_open_set_standardizes_unknowns_with_known_statistics():
    from sklearn.datasets import load_digits

    from iemlib.legacy.classification import load_digits_data, load_digits_open_set

    data = load_digits_open_set(known=range(5), seed=0)
    X_tr, X_te, y_tr, y_te, mean, std = load_digits_data(classes=range(5), seed=0, return_stats=True)
    assert torch.equal(data["X_train"], X_tr) and torch.equal(data["y_test"], y_te)
    raw = load_digits()
    other = raw.target >= 5
    assert data["X_unknown"].shape == (int(other.sum()), 64)
    assert set(data["digit_unknown"].tolist()) == {5, 6, 7, 8, 9}
    expected = (raw.data[other] - mean) / std
    assert np.allclose(data["X_unknown"].numpy(), expected, atol=1e-12)
    assert data["X_noise"].shape == X_te.shape
    # The known training set is standardized: mean 0 per pixel.
    assert float(X_tr.mean(0).abs().max()) < 1e-10
    with pytest.raises(ValueError, match="classes"):
        load_digits_open_set(known=[3])
