"""Tests of iemlib.failure_modes: the limits of implicit EM as experiments."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from iemlib import failure_modes as F
from iemlib.taxonomy import make_mixture_task, max_off_diagonal

F64 = torch.float64


# ---------------------------------------------------------------- §6.1 multi-label
def test_multilabel_task_and_training():
    X, T = F.make_multilabel_task(n=200, seed=1)
    assert X.shape == (200, 5) and T.shape == (200, 4)
    assert set(T.unique().tolist()) <= {0.0, 1.0}
    for kind in ("sigmoid", "softmax"):
        h = F.train_multilabel(X, T, kind, epochs=50)
        assert h["loss"][-1] < h["loss"][0]
        assert h["W"].shape == (5, 4) and h["b"].shape == (4,)


@given(
    arrays(np.float64, (3, 4), elements=st.floats(-8, 8)),
    arrays(np.float64, (3, 4), elements=st.sampled_from([0.0, 1.0])),
)
def test_logit_jacobians_closed_forms(Z, T):
    Z, T = torch.as_tensor(Z), torch.as_tensor(T)
    Js = F.logit_gradient_jacobian(Z, T, "sigmoid")
    p = torch.sigmoid(Z)
    assert torch.allclose(Js, torch.diag_embed(p * (1 - p)), atol=1e-12)
    assert max_off_diagonal(Js) == 0.0
    Jm = F.logit_gradient_jacobian(Z, T, "softmax")
    q = torch.softmax(Z, 1)
    # softmax cross-entropy Hessian: (sum_j q_target_j) (diag(p) - p p^T); rows with no label have zero
    w = (T.sum(1) / T.sum(1).clamp_min(1.0))[:, None, None]
    assert torch.allclose(Jm, w * (torch.diag_embed(q) - q[:, :, None] * q[:, None, :]), atol=1e-12)


def test_sigmoid_gradient_of_one_label_ignores_the_others():
    Z = torch.tensor([[0.3, -1.0, 2.0]], dtype=F64, requires_grad=True)
    T = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    loss = (torch.nn.functional.softplus(Z) - T * Z).sum()
    (g,) = torch.autograd.grad(loss, Z)
    assert torch.allclose(g, torch.sigmoid(Z) - T)


# ---------------------------------------------------------------- §6.1 outliers
def test_outlier_task_fraction():
    task = F.make_outlier_task(n_per_component=50, outlier_fraction=0.1)
    frac = float(task["is_outlier"].double().mean())
    assert abs(frac - 0.1) < 0.01
    assert task["x"].shape[0] == task["is_outlier"].shape[0]
    clean = F.make_outlier_task(n_per_component=50, outlier_fraction=0.0)
    assert not clean["is_outlier"].any()


def test_outliers_pull_lse_not_correntropy():
    task = F.make_outlier_task(n_per_component=100, outlier_fraction=0.15, seed=2)
    res = F.outlier_pull(task["x"], task["means"], n_steps=300)
    assert res["lse"]["mean_error"] > 3 * res["correntropy"]["mean_error"]
    assert res["correntropy"]["mean_error"] < 0.3
    assert res["lse"]["error"].shape == (3,)


# ---------------------------------------------------------------- §6.2 collapse
@pytest.fixture(scope="module")
def mixture():
    x, _, m = make_mixture_task(n_per_component=[80, 40, 20], seed=0)
    g = torch.Generator().manual_seed(0)
    return x, m + 0.3 * torch.randn(3, 2, generator=g, dtype=F64)


def test_without_logdet_scales_explode_and_objective_saturates(mixture):
    x, mu0 = mixture
    h = F.fit_scaled_mixture(x, mu0, torch.ones(3, dtype=F64), logdet=False, n_steps=600, record_every=100)
    assert np.all(np.diff(h["sigma"], axis=0) > 0)  # every scale grows, every step recorded
    assert h["sigma"][-1].min() > 20
    assert h["objective"][-1] <= math.log(3) + 1e-12
    assert h["objective"][-1] > math.log(3) - 1e-2
    assert h["entropy"][-1] > 0.99  # responsibilities uniform
    assert np.all(h["grad_log_sigma"] <= 0)  # descent always grows sigma


def test_with_logdet_scales_settle(mixture):
    x, mu0 = mixture
    h = F.fit_scaled_mixture(x, mu0, torch.ones(3, dtype=F64), logdet=True, n_steps=600, record_every=100)
    assert np.all((h["sigma"][-1] > 0.6) & (h["sigma"][-1] < 1.0))
    assert np.allclose(h["mass"][-1], [80 / 140, 40 / 140, 20 / 140], atol=0.02)
    # the proper log-likelihood equals the objective minus the constants
    const = -math.log(3) - math.log(2 * math.pi)
    assert abs(h["gmm_loglik"][-1] - (h["objective"][-1] + const)) < 1e-9


def test_singular_collapse_with_logdet_and_weight_decay_stops_it(mixture):
    x, mu0 = mixture
    xs = torch.cat([x, torch.tensor([[8.0, 8.0]], dtype=F64)])
    mu1 = mu0.clone()
    mu1[2] = torch.tensor([8.0, 8.0], dtype=F64)
    s1 = torch.tensor([1.0, 1.0, 0.5], dtype=F64)
    h = F.fit_scaled_mixture(xs, mu1, s1, logdet=True, n_steps=600, record_every=100)
    assert h["sigma"][-1, 2] < 0.05 and np.all(np.diff(h["sigma"][:, 2]) < 0)
    # log sigma falls at the constant rate lr * D * r / N, r -> 1 for the isolated point
    rate = -np.diff(np.log(h["sigma"][:, 2]))[-1] / 100
    assert abs(rate - 0.5 * 2 / len(xs)) < 1e-4
    hw = F.fit_scaled_mixture(xs, mu1, s1, logdet=True, weight_decay=0.01, n_steps=600, record_every=100)
    assert hw["sigma"][-1, 2] > 0.5


def test_scaled_mixture_objective_bounds(mixture):
    x, mu0 = mixture
    mu = mu0.clone()
    mu[2] = x[0]
    obj = [F.scaled_mixture_objective(x, mu, torch.tensor([1.0, 1.0, s], dtype=F64), logdet=True) for s in (1e-2, 1e-4, 1e-8)]
    assert obj[0] < obj[1] < obj[2]  # unbounded as sigma -> 0
    # each factor 100 in sigma adds D log(100) / N for the one point
    assert abs((obj[1] - obj[0]) - 2 * math.log(100) / len(x)) < 1e-6
    big = F.scaled_mixture_objective(x, mu0, torch.full((3,), 1e6, dtype=F64), logdet=False)
    assert math.log(3) - 1e-6 < big <= math.log(3)


def test_normalization_variant_runs(mixture):
    x, mu0 = mixture
    h = F.fit_scaled_mixture(x, mu0, torch.ones(3, dtype=F64), logdet=False, normalize=True, n_steps=200, record_every=50)
    assert h["sigma"].shape == (5, 3) and np.isfinite(h["sigma"]).all()
    assert set(F.SCALE_VARIANTS) >= {"no log-det", "log-det"}


# ---------------------------------------------------------------- §6.3 closed world
def test_scores_and_auroc():
    z = torch.tensor([[10.0, 0.0], [0.0, 0.0]], dtype=F64)
    assert np.allclose(F.max_softmax(z), [1 / (1 + math.exp(-10)), 0.5])
    assert np.allclose(F.log_partition(z), [math.log(math.exp(10) + 1), math.log(2)])
    assert F.ood_auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert F.ood_auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert F.ood_auroc([0.5, 0.5], [0.5, 0.5]) == 0.5


def test_prototype_classifier_and_reject():
    X, T = F.make_multilabel_task(n=60, seed=0)
    y = T[:, 0].long()
    model = F.PrototypeClassifier(X, y, 2)
    z = model(X)
    assert z.shape == (60, 2) and (z <= 0).all()
    far = model(100 * torch.ones(1, 5, dtype=F64))
    assert F.log_partition(far)[0] < F.log_partition(z).min()
    tau = F.reject_threshold(F.log_partition(z), 0.1)
    assert abs(float((F.log_partition(z) < tau).mean()) - 0.1) < 0.03
    out = F.confidence_vs_noise_scale(model, [1.0, 10.0], n=20, n_features=5)
    assert out["median_log_partition"][1] < out["median_log_partition"][0]


def test_noise_images():
    a = F.gaussian_noise_images(10, 64, 2.0, seed=3)
    assert a.shape == (10, 64) and torch.equal(a, F.gaussian_noise_images(10, 64, 2.0, seed=3))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: F.make_multilabel_task(n=0), "n"),
        (lambda: F.train_multilabel(torch.ones(3, 2, dtype=F64), torch.ones(3, 2, dtype=F64), "relu"), "kind"),
        (lambda: F.train_multilabel(torch.ones(3, 2, dtype=F64), torch.ones(4, 2, dtype=F64)), "T"),
        (lambda: F.train_multilabel(torch.ones(3, 2, dtype=F64), 0.5 * torch.ones(3, 2, dtype=F64)), "T"),
        (lambda: F.logit_gradient_jacobian(torch.ones(3, 2, dtype=F64), torch.ones(3, 3, dtype=F64)), "T"),
        (lambda: F.make_outlier_task(outlier_fraction=1.0), "outlier_fraction"),
        (lambda: F.make_outlier_task(box=-1.0), "box"),
        (lambda: F.fit_scaled_mixture(torch.ones(4, 2, dtype=F64), torch.ones(2, 2, dtype=F64), torch.ones(3, dtype=F64), logdet=True), "sigma0"),
        (lambda: F.fit_scaled_mixture(torch.ones(4, 2, dtype=F64), torch.ones(2, 2, dtype=F64), -torch.ones(2, dtype=F64), logdet=True), "sigma0"),
        (lambda: F.fit_scaled_mixture(torch.ones(4, 2, dtype=F64), torch.ones(2, 3, dtype=F64), torch.ones(2, dtype=F64), logdet=True), "mu0"),
        (lambda: F.fit_scaled_mixture(torch.ones(4, 2, dtype=F64), torch.ones(2, 2, dtype=F64), torch.ones(2, dtype=F64), logdet=True, weight_decay=-1.0), "weight_decay"),
        (lambda: F.scaled_mixture_objective(torch.ones(4, 2, dtype=F64), torch.ones(2, 2, dtype=F64), torch.zeros(2, dtype=F64), logdet=True), "sigma"),
        (lambda: F.max_softmax(torch.ones(3, dtype=F64)), "logits"),
        (lambda: F.log_partition(torch.tensor([[1.0, float("nan")]], dtype=F64)), "logits"),
        (lambda: F.ood_auroc([], [0.1]), "scores_in"),
        (lambda: F.ood_auroc([0.2], [[0.1]]), "scores_out"),
        (lambda: F.reject_threshold([0.1, 0.2], 1.5), "quantile"),
        (lambda: F.gaussian_noise_images(scale=0.0), "scale"),
        (lambda: F.PrototypeClassifier(torch.ones(4, 2, dtype=F64), torch.tensor([0, 0, 0, 0]), 2), "class"),
        (lambda: F.confidence_vs_noise_scale("model", [1.0]), "model"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
