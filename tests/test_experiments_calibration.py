"""Tests of iemlib.experiments.calibration: the cross-entropy scale runs (their start equals the
PrototypeClassifier's, ||W|| grows on separable digits, records by value) and confidence on noise of
growing amplitude; bad input raises ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from iemlib.classifiers import PrototypeClassifier, make_classifier, train_classifier
from iemlib.data import gaussian_noise_images, load_digits, stack_digit_splits
from iemlib.experiments import calibration as K
from iemlib.metrics import energy_score, expected_calibration_error, max_softmax


@pytest.fixture(scope="module")
def splits():
    return stack_digit_splits([0, 1], dtype=torch.float64)


def test_train_scale_runs_prototype_start_and_descent(splits):
    h = K.train_scale_runs("prototype", splits, epochs=5, lr=0.1, record_at=(0, 5))
    assert isinstance(h, K.ScaleRuns) and list(h.step) == [0, 5]
    assert h.scale.shape == (2, 2) and np.allclose(h.scale[0], 1.0)
    # step 0 is the PrototypeClassifier at its start: same logits, same loss, same held-out records
    m = PrototypeClassifier(splits.X_train[0], splits.y_train[0], 10)
    with torch.no_grad():
        z, zt = m(splits.X_train[0]), m(splits.X_test[0])
    assert abs(h.train_loss[0, 0] - float(nn.functional.cross_entropy(z, splits.y_train[0]))) < 1e-9
    assert abs(h.test_nll[0, 0] - float(nn.functional.cross_entropy(zt, splits.y_test[0]))) < 1e-9
    p = torch.softmax(zt, -1)
    assert abs(h.test_ece[0, 0] - expected_calibration_error(p, splits.y_test[0])) < 1e-9
    assert abs(h.test_conf[0, 0] - max_softmax(zt).mean()) < 1e-9
    assert abs(h.test_acc[0, 0] - float((zt.argmax(1) == splits.y_test[0]).double().mean())) < 1e-12
    assert abs(h.logit_spread[0, 0] - float(zt.std(-1).mean())) < 1e-9
    assert (h.train_loss[1] < h.train_loss[0]).all()
    # five full-batch steps of the batched trainer equal train_classifier on the same model
    m5 = PrototypeClassifier(splits.X_train[1], splits.y_train[1], 10)
    train_classifier(m5, splits.X_train[1], splits.y_train[1], epochs=5, lr=0.1, record=())
    assert abs(h.scale[1, 1] - float(torch.exp(2 * m5.log_a.detach()))) < 1e-9


def test_train_scale_runs_linear_grows(splits):
    lin = K.train_scale_runs("linear", splits, epochs=30, lr=1.0, record_at=(0, 10, 30))
    assert (np.diff(lin.scale, axis=0) > 0).all()  # ||W|| grows on separable digits
    assert (lin.test_acc[-1] > 0.9).all()
    assert (lin.train_loss[-1] < lin.train_loss[0]).all()
    again = K.train_scale_runs("linear", splits, epochs=30, lr=1.0, record_at=(0, 10, 30))
    assert np.array_equal(lin.scale, again.scale)
    other = K.train_scale_runs("linear", splits, epochs=30, lr=1.0, record_at=(0,), random_state=1)
    assert not np.array_equal(lin.scale[0], other.scale[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: K.train_scale_runs("mlp", s), "kind"),
        (lambda s: K.train_scale_runs("linear", {"X_train": s.X_train}), "data"),
        (lambda s: K.train_scale_runs("linear", load_digits()), "data"),
        (lambda s: K.train_scale_runs("linear", s, epochs=3, record_at=(0, 5)), "record_at"),
        (lambda s: K.train_scale_runs("linear", s, epochs=0), "epochs"),
        (lambda s: K.train_scale_runs("linear", s, lr=-1.0), "lr"),
    ],
)
def test_train_scale_runs_bad_input(splits, call, match):
    with pytest.raises(ValueError, match=match):
        call(splits)


def test_confidence_vs_noise_scale():
    split = load_digits(classes=range(3))
    model = PrototypeClassifier(split.X_train, split.y_train, 3)
    out = K.confidence_vs_noise_scale(model, [1.0, 10.0], n=20)
    assert isinstance(out, K.NoiseConfidence) and out.scale.tolist() == [1.0, 10.0]
    assert out.median_L[1] < out.median_L[0]  # far noise: L falls with the amplitude
    with torch.no_grad():
        z = model(gaussian_noise_images(20, 64, 10.0, 0))
    assert out.median_confidence[1] == np.median(max_softmax(z))
    assert out.median_L[1] == np.median(energy_score(z))
    lin = make_classifier("linear", n_classes=3)
    conf = K.confidence_vs_noise_scale(lin, [0.5, 4.0, 32.0], n=50).median_confidence
    assert conf[0] < conf[1] < conf[2]  # a linear model grows more confident as the input grows


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K.confidence_vs_noise_scale("model", [1.0]), "model"),
        (lambda: K.confidence_vs_noise_scale(make_classifier(), [1.0, -1.0]), "scales"),
        (lambda: K.confidence_vs_noise_scale(make_classifier(), [[1.0]]), "scales"),
        (lambda: K.confidence_vs_noise_scale(make_classifier(), [1.0], n=0), "n"),
    ],
)
def test_confidence_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_scale_runs_archive_round_trip_and_shipped_archive(tmp_path, splits):
    runs = K.train_scale_runs("linear", splits, epochs=20, lr=1.0, record_at=(0, 10, 20))
    back = K.load_scale_runs(K.save_scale_runs(runs, tmp_path / "r.npz"))
    for f in K.ScaleRuns.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, f), getattr(runs, f))
    shipped = K.load_scale_runs()
    assert tuple(shipped.step) == K.LINEAR_SCALE_RUN["record_at"] and shipped.scale.shape[1] == 5
    # past separation the norm keeps growing and the training loss keeps falling
    assert np.all(np.diff(shipped.scale[-4:], axis=0) > 0) and np.all(shipped.train_acc[-1] == 1.0)
    with pytest.raises(ValueError, match="^path "):
        K.load_scale_runs(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="^runs "):
        K.save_scale_runs({}, tmp_path / "x.npz")
