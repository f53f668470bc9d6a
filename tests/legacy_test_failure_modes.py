"""Tests of iemlib.legacy.failure_modes: the limits of implicit EM as experiments."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from iemlib.legacy import failure_modes as F
from iemlib.legacy import taxonomy as T
from iemlib.legacy.taxonomy import make_mixture_task, max_off_diagonal

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


# ---------------------------------------------------------------- multi-label scores
def test_multilabel_scores_by_hand():
    T_ = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    Z = torch.tensor([[2.0, -1.0], [-1.0, -3.0], [-2.0, -1.0]], dtype=torch.float64)
    s = F.multilabel_scores(Z, T_, "sigmoid")
    assert s["label_accuracy"] == pytest.approx(4 / 6)
    assert s["exact_set"] == pytest.approx(2 / 3)
    assert s["none_predicted"] == pytest.approx(2 / 3)
    assert s["silently_dropped"] == pytest.approx(1 / 2)  # row 2 carries labels, gets none
    assert s["empty_wrong"] == 0.0
    sm = F.multilabel_scores(Z, T_, "softmax")
    assert sm["none_predicted"] == 0.0 and sm["empty_wrong"] == 1.0  # softmax always predicts a label
    with pytest.raises(ValueError, match="kind"):
        F.multilabel_scores(Z, T_, "relu")
    with pytest.raises(ValueError, match="T"):
        F.multilabel_scores(Z, T_[:2], "sigmoid")


# ---------------------------------------------------------------- background component
def test_background_mixture_likelihood_matches_direct_formula():
    x = torch.tensor([[0.0, 0.0], [0.3, -0.2], [5.0, 5.0], [-6.0, 4.0]], dtype=torch.float64)
    mu0 = torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    res = F.fit_background_mixture(x, mu0, n_steps=1, lr=1e-12)  # parameters practically unchanged
    w = res["weights"][0]
    assert torch.allclose(w, torch.full((3,), 1 / 3, dtype=torch.float64))
    V = float((x.max(0).values - x.min(0).values).prod())
    dens = w[0] / V + sum(
        w[j + 1] * torch.exp(-((x - mu0[j]) ** 2).sum(1) / 2) / (2 * math.pi) for j in range(2)
    )
    assert abs(float(-torch.log(dens).mean()) - float(res["loss"][0])) < 1e-9
    r = res["r"][0]
    assert torch.allclose(r.sum(1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(r[:, 0], w[0] / V / dens, atol=1e-9)  # the background column


def test_background_ignores_far_points_and_keeps_the_means():
    task = F.make_outlier_task(n_per_component=60, outlier_fraction=0.2, box=12.0, seed=4)
    res = F.fit_background_mixture(task["x"], task["means"], n_steps=200)
    err = (res["mu"][0] - task["means"]).norm(dim=1)
    assert float(err.max()) < 0.3
    r0 = res["r"][0, :, 0]
    far = task["is_outlier"] & (torch.cdist(task["x"], task["means"]).min(1).values > 4.0)
    assert bool((r0[far] > 0.9).all())
    assert float(r0[~task["is_outlier"]].max()) < 0.5
    lse_fit = T.fit_prototypes("lse", task["x"], task["means"], n_steps=200, record_every=200)["mu_final"]
    assert float((lse_fit - task["means"]).norm(dim=1).mean()) > 2 * float(err.mean())
    # batched runs equal single runs
    xb = torch.stack([task["x"], task["x"] + 1.0])
    rb = F.fit_background_mixture(xb, task["means"], n_steps=50)
    r1 = F.fit_background_mixture(task["x"] + 1.0, task["means"], n_steps=50)
    assert torch.allclose(rb["mu"][1], r1["mu"][0], atol=1e-10)


def test_update_weights():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    mu = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    e = T.energies(x, mu)
    assert torch.allclose(F.update_weights("lse", x, mu)[0], torch.softmax(-e, 1))
    assert torch.allclose(F.update_weights("correntropy", x, mu)[0], torch.exp(-e))
    with pytest.raises(ValueError, match="mu"):
        F.update_weights("background", x, mu)
    with pytest.raises(ValueError, match="kind"):
        F.update_weights("sigmoid", x, mu)


def test_outlier_sweep_small():
    sw = F.outlier_sweep((0.0, 0.2), seeds=[0, 1], n_per_component=50, n_steps=150)
    assert sw["error"]["lse"].shape == (2, 2)
    assert np.isnan(sw["flag_outliers"][0]).all()
    assert (sw["error"]["lse"][1] > sw["error"]["background"][1]).all()
    assert np.allclose(sw["outlier_share"]["lse"][1], 0.2, atol=0.01)
    assert (sw["outlier_share"]["background"][1] < 0.1).all()
    with pytest.raises(ValueError, match="fractions"):
        F.outlier_sweep([], seeds=[0])
    with pytest.raises(ValueError, match="fractions"):
        F.outlier_sweep([-0.1], seeds=[0])


# ---------------------------------------------------------------- calibration and scale
def _ece_reference(p, y, nb=15):
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for k in range(nb):
        m = (conf > k / nb) & (conf <= (k + 1) / nb)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - (pred[m] == y[m]).mean())
    return total


def test_expected_calibration_error():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, size=200)
    got = F.expected_calibration_error(torch.as_tensor(p), torch.as_tensor(y))
    assert got.shape == (1,)
    assert abs(got[0] - _ece_reference(p, y)) < 1e-12
    sure = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    assert F.expected_calibration_error(sure, torch.tensor([0, 0, 1, 1]))[0] == pytest.approx(0.5)
    batched = F.expected_calibration_error(torch.stack([sure, sure]), torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))
    assert np.allclose(batched, [0.0, 1.0])
    with pytest.raises(ValueError, match="y"):
        F.expected_calibration_error(sure, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="y"):
        F.expected_calibration_error(sure, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        F.expected_calibration_error(sure, torch.tensor([0, 0, 1, 1]), n_bins=0)


@pytest.fixture(scope="module")
def splits():
    return F.stack_digit_splits([0, 1], dtype=torch.float64)


def test_stack_digit_splits(splits):
    assert splits["X_train"].shape[0] == 2 and splits["X_train"].shape[2] == 64
    assert splits["y_train"].shape == splits["X_train"].shape[:2]
    assert not torch.equal(splits["X_train"][0], splits["X_train"][1])
    with pytest.raises(ValueError, match="seeds"):
        F.stack_digit_splits([])


def test_train_scale_runs_start_and_growth(splits):
    h = F.train_scale_runs("prototype", splits, epochs=5, lr=0.1, record_at=(0, 5))
    assert h["scale"].shape == (2, 2) and np.allclose(h["scale"][0], 1.0)
    # step 0 is the PrototypeClassifier at its start: same logits, same loss
    m = F.PrototypeClassifier(splits["X_train"][0], splits["y_train"][0], 10)
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(m(splits["X_train"][0]), splits["y_train"][0])
    assert abs(h["train_loss"][0, 0] - float(ref)) < 1e-9
    assert (h["train_loss"][1] < h["train_loss"][0]).all()
    lin = F.train_scale_runs("linear", splits, epochs=30, lr=1.0, record_at=(0, 10, 30))
    assert (np.diff(lin["scale"], axis=0) > 0).all()  # ||W|| grows on separable digits
    assert (lin["test_acc"][-1] > 0.9).all()
    with pytest.raises(ValueError, match="kind"):
        F.train_scale_runs("mlp", splits)
    with pytest.raises(ValueError, match="data"):
        F.train_scale_runs("linear", {"X_train": splits["X_train"]})
    with pytest.raises(ValueError, match="record_at"):
        F.train_scale_runs("linear", splits, epochs=3, record_at=(0, 5))


def test_fit_embedding_mixture(splits):
    for norm in F.EMBEDDING_NORMS:
        h = F.fit_embedding_mixture(splits, norm, hidden=8, dim=4, n_steps=3, record_at=(0, 3))
        assert h["objective"].shape == (2, 2)
        assert (h["objective"] <= math.log(10) + 1e-9).all()
        assert ((h["entropy"] >= 0) & (h["entropy"] <= 1 + 1e-9)).all()
        assert ((h["nmi"] >= 0) & (h["nmi"] <= 1 + 1e-9)).all()
        assert (h["objective"][1] > h["objective"][0]).all()  # gradient ascent on L
    with pytest.raises(ValueError, match="norm"):
        F.fit_embedding_mixture(splits, "batchnorm")
    with pytest.raises(ValueError, match="record_at"):
        F.fit_embedding_mixture(splits, n_steps=2, record_at=(5,))
