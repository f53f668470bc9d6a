"""Tests of the digits section of iemlib.data: the bundled digits split and standardized, the
closed-world split, stacked splits, the out-of-distribution images, noisy labels and the
multi-label task. Values checked against scikit-learn's raw digits; bad input raises ValueError
naming the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iemlib import data as D


def _raw():
    from sklearn.datasets import load_digits

    b = load_digits()
    return b.data.astype(np.float64), b.target


@pytest.fixture(scope="module")
def digits():
    return D.load_digits()


# ---------------------------------------------------------------------------------------- load_digits
def test_digits_shapes_dtypes_and_standardization(digits):
    assert isinstance(digits, D.DigitSplit)
    assert digits.X_train.shape == (1257, 64) and digits.X_test.shape == (540, 64)
    assert digits.X_train.dtype == torch.float64 and digits.y_train.dtype == torch.int64
    assert digits.classes == tuple(range(10))
    assert torch.isfinite(digits.X_train).all() and torch.isfinite(digits.X_test).all()
    assert torch.allclose(digits.X_train.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    std = digits.X_train.std(0, unbiased=False)
    constant = std < 1e-12
    assert constant.any()  # some corner pixels are always 0 on the training set
    assert torch.allclose(std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64))
    assert sorted(torch.unique(digits.y_train).tolist()) == list(range(10))
    # the statistics returned standardize the raw pixels exactly as the split was
    assert np.all(digits.std > 0) and digits.mean.shape == (64,)
    back = digits.X_train.numpy() * digits.std + digits.mean  # the raw pixels: integers 0..16
    assert np.allclose(back, np.round(back), atol=1e-9) and back.min() > -1e-9 and back.max() < 16 + 1e-9


def test_digits_deterministic_and_seeded():
    a = D.load_digits(random_state=3, dtype=torch.float32)
    b = D.load_digits(random_state=3, dtype=torch.float32)
    c = D.load_digits(random_state=4, dtype=torch.float32)
    assert a.X_train.dtype == torch.float32
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("X_train", "X_test", "y_train", "y_test"))
    assert not torch.equal(a.y_train, c.y_train)


def test_digits_classes_reindexed_in_given_order():
    _, target = _raw()
    s = D.load_digits(classes=[3, 1], test_size=0.25)
    y = torch.cat([s.y_train, s.y_test])
    assert s.classes == (3, 1)
    assert sorted(torch.unique(y).tolist()) == [0, 1]
    assert int((y == 0).sum()) == int((target == 3).sum())
    assert int((y == 1).sum()) == int((target == 1).sum())
    s5 = D.load_digits(classes=range(5))
    assert sorted(torch.unique(s5.y_train).tolist()) == [0, 1, 2, 3, 4]
    assert s5.X_train.shape[0] + s5.X_test.shape[0] == int((target < 5).sum())


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
        ({"classes": "12"}, "classes"),
        ({"random_state": -1}, "random_state"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_digits_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        D.load_digits(**kwargs)


def test_load_digits_open_set_standardizes_unknowns_with_known_statistics():
    _, target = _raw()
    raw, _ = _raw()
    data = D.load_digits_open_set(known=range(5), random_state=0)
    known = D.load_digits(classes=range(5), random_state=0)
    assert isinstance(data, D.OpenSetDigits) and isinstance(data, D.DigitSplit)
    assert torch.equal(data.X_train, known.X_train) and torch.equal(data.y_test, known.y_test)
    other = target >= 5
    assert data.X_unknown.shape == (int(other.sum()), 64)
    assert set(data.digit_unknown.tolist()) == {5, 6, 7, 8, 9}
    assert np.allclose(data.X_unknown.numpy(), (raw[other] - known.mean) / known.std, atol=1e-12)
    assert data.X_noise.shape == known.X_test.shape
    # the noise is uniform on the raw range [0, 16]
    raw_noise = data.X_noise.numpy() * known.std + known.mean
    assert raw_noise.min() >= -1e-9 and raw_noise.max() <= 16 + 1e-9
    assert float(known.X_train.mean(0).abs().max()) < 1e-10
    with pytest.raises(ValueError, match="classes"):
        D.load_digits_open_set(known=[3])


def test_stack_digit_splits():
    s = D.stack_digit_splits([0, 1], dtype=torch.float64)
    assert s.X_train.shape == (2, 1257, 64) and s.y_train.shape == (2, 1257) and s.mean.shape == (2, 64)
    one = D.load_digits(random_state=1, dtype=torch.float64)
    assert torch.equal(s.X_train[1], one.X_train) and torch.equal(s.y_test[1], one.y_test)
    assert not torch.equal(s.X_train[0], s.X_train[1])
    assert D.stack_digit_splits([0]).X_train.dtype == torch.float32  # the default of chapter 9
    for bad in ([], [-1], "01"):
        with pytest.raises(ValueError, match="seeds"):
            D.stack_digit_splits(bad)


# ---------------------------------------------------------------------------- out-of-distribution images
def test_gaussian_noise_images():
    a = D.gaussian_noise_images(10, 64, 2.0, random_state=3)
    assert a.shape == (10, 64) and a.dtype == torch.float64
    assert torch.equal(a, D.gaussian_noise_images(10, 64, 2.0, random_state=3))
    # the same draw rescaled: the amplitude multiplies every entry
    assert torch.allclose(D.gaussian_noise_images(10, 64, 6.0, random_state=3), 3 * a)
    big = D.gaussian_noise_images(20000, 3, 1.5, random_state=0)
    assert abs(float(big.std()) - 1.5) < 0.03


def test_pixel_marginal_noise_draws_each_pixel_from_its_own_values():
    X = _raw()[0][:300]
    N = D.pixel_marginal_noise(X, 2000, random_state=0)
    assert N.shape == (2000, 64)
    for p in (0, 20, 36):
        assert set(np.unique(N[:, p])) <= set(np.unique(X[:, p]))
    assert np.allclose(N.mean(0), X.mean(0), atol=0.6)
    assert np.array_equal(N, D.pixel_marginal_noise(torch.as_tensor(X), 2000, random_state=0))


def test_matched_gaussian_noise_matches_norms_and_moments():
    X = _raw()[0]
    N = D.matched_gaussian_noise(X, 3000, random_state=0)
    mu = X.mean(0)
    ref = np.linalg.norm(X - mu, axis=1)
    got = np.linalg.norm(N - mu, axis=1)
    assert abs(np.median(got) - np.median(ref)) < 0.03 * np.median(ref)
    assert np.allclose(N.mean(0), mu, atol=0.5)
    raw = D.matched_gaussian_noise(X, 20000, random_state=1, match_norm=False)
    assert np.allclose(raw.std(0), X.std(0), atol=0.15)


def test_corruptions():
    X = _raw()[0][:50]
    occ = D.occlude(X, 4, random_state=0)
    changed = (occ != X).reshape(-1, 8, 8)
    assert ((occ == 0) | (occ == X)).all()
    assert (changed.sum((1, 2)) <= 16).all()
    assert np.array_equal(X, _raw()[0][:50])  # the input is not modified
    delta = np.zeros((1, 64))
    delta[0, 27] = 9.0
    b = D.blur(delta, 3).reshape(8, 8)
    assert np.allclose(b[2:5, 2:5], 1.0) and math.isclose(b.sum(), 9.0)
    assert np.allclose(D.blur(X, 1), X)
    sh = D.shuffle_pixels(X, random_state=0)
    assert np.allclose(np.sort(sh, 1), np.sort(X, 1))
    assert not np.allclose(sh, X)


@given(st.integers(1, 8), st.integers(0, 1000))
def test_occlude_sets_exactly_one_square(size, seed):
    X = np.full((3, 64), 5.0)
    occ = D.occlude(X, size, random_state=seed).reshape(-1, 8, 8)
    for img in occ:
        rows, cols = np.nonzero(img == 0)
        assert len(rows) == size * size
        assert rows.max() - rows.min() == size - 1 and cols.max() - cols.min() == size - 1


def test_digit_ood_sets_shapes_and_standardization():
    _, target = _raw()
    data = D.digit_ood_sets([0, 1, 2, 3, 4, 5], random_state=0)
    assert list(data.sets) == ["held-out known", "unknown digits", "pixel-marginal noise", "matched Gaussian noise",
                               "occluded", "blurred", "shuffled pixels", "uniform noise"]
    n = len(data.y_test)
    for k, v in data.sets.items():
        assert v.dtype == torch.float64 and v.shape[1] == 64
        if k != "unknown digits":
            assert v.shape[0] == n
    assert data.sets["unknown digits"].shape[0] == int(np.isin(target, [6, 7, 8, 9]).sum())
    assert data.known == (0, 1, 2, 3, 4, 5)
    assert torch.allclose(data.X_train.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(data.sets["held-out known"], D.load_digits(classes=range(6)).X_test, atol=1e-12)
    assert not torch.allclose(data.sets["shuffled pixels"], data.sets["held-out known"])
    with pytest.raises(ValueError, match="classes"):
        D.digit_ood_sets([0, 0, 1])


# ---------------------------------------------------------------------------- noisy labels
def test_symmetric_noise_matrix():
    T = D.symmetric_noise_matrix(4, 0.3)
    assert T.dtype == torch.float64
    assert torch.allclose(T.sum(1), torch.ones(4, dtype=torch.float64))
    assert math.isclose(float(T[0, 0]), 0.7) and math.isclose(float(T[0, 1]), 0.1)
    assert torch.equal(D.symmetric_noise_matrix(3, 0.0), torch.eye(3, dtype=torch.float64))


def test_sample_noisy_labels_matches_noise_matrix_and_is_seeded():
    K, rho, M = 5, 0.3, 40000
    y = torch.full((M,), 2)
    y_noisy = D.sample_noisy_labels(y, K, rho, random_state=3)
    assert y_noisy.shape == y.shape and y_noisy.dtype == torch.long
    assert torch.equal(y_noisy, D.sample_noisy_labels(y, K, rho, random_state=3))
    freq = torch.bincount(y_noisy, minlength=K).double() / M
    assert float((freq - D.symmetric_noise_matrix(K, rho)[2]).abs().max()) < 4 / math.sqrt(M)
    assert torch.equal(D.sample_noisy_labels(y, K, 0.0, random_state=0), y)  # rho = 0 keeps every label
    labels = np.arange(K).repeat(100)
    flipped = D.sample_noisy_labels(labels, K, 1.0, random_state=1)
    assert not torch.any(flipped == torch.as_tensor(labels))  # rho = 1 changes every label


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: D.sample_noisy_labels([0, 1], 3, 1.5), "rho"),
        (lambda: D.sample_noisy_labels([0, 3], 3, 0.1), "y"),
        (lambda: D.sample_noisy_labels([0.0, 1.0], 3, 0.1), "y"),
        (lambda: D.sample_noisy_labels([0, 1], 1, 0.1), "n_classes"),
        (lambda: D.sample_noisy_labels([0, 1], 3, float("nan")), "rho"),
        (lambda: D.sample_noisy_labels([0, 1], 3, 0.1, random_state=-1), "random_state"),
        (lambda: D.symmetric_noise_matrix(1, 0.1), "n_classes"),
        (lambda: D.symmetric_noise_matrix(3, 1.5), "rho"),
    ],
)
def test_noisy_labels_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------- multi-label task
def test_multilabel_task():
    X, T = D.make_multilabel_task(n=200, random_state=1)
    assert X.shape == (200, 5) and T.shape == (200, 4) and X.dtype == T.dtype == torch.float64
    assert set(T.unique().tolist()) <= {0.0, 1.0}
    X2, T2 = D.make_multilabel_task(n=200, random_state=1)
    assert torch.equal(X, X2) and torch.equal(T, T2)
    # labels are linear thresholds: a linear model separates each label exactly
    counts = T.sum(1)
    assert counts.min() >= 0 and counts.max() <= 4 and len(torch.unique(counts)) > 2


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: D.make_multilabel_task(n=0), "n"),
        (lambda: D.make_multilabel_task(random_state=-1), "random_state"),
        (lambda: D.gaussian_noise_images(scale=0.0), "scale"),
        (lambda: D.gaussian_noise_images(n=0), "n"),
        (lambda: D.occlude(np.ones((2, 10))), "x_raw"),
        (lambda: D.occlude(np.ones((2, 64)), size=9), "size"),
        (lambda: D.occlude(np.full((2, 64), np.nan)), "x_raw"),
        (lambda: D.blur(np.ones((2, 64)), width=2), "width"),
        (lambda: D.pixel_marginal_noise(np.ones((2, 64)), 0), "n"),
        (lambda: D.pixel_marginal_noise(np.ones(64), 3), "x_ref"),
        (lambda: D.matched_gaussian_noise(np.ones((2, 64)), 3, match_norm=1), "match_norm"),
        (lambda: D.shuffle_pixels(np.ones((2, 64)), random_state=-1), "random_state"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
