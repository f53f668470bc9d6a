"""iemlib.attention.toy: the §7.1 toy simulation and its summary (chapter 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iemlib.attention import (
    HeadParams,
    ToyRun,
    ToySummary,
    attention_forward,
    closed_form_backward,
    init_params,
    simulate_toy,
    toy_summary,
)


def test_simulation_is_deterministic_and_shaped():
    r1 = simulate_toy(n_steps=10)
    r2 = simulate_toy(n_steps=10)
    assert np.array_equal(r1.loss, r2.loss) and np.array_equal(r1.alpha, r2.alpha)
    assert r1.n_steps == 10 and r1.alpha.shape == (11, 5, 5) and r1.v.shape == (11, 5, 2)
    assert isinstance(r1.params, HeadParams) and r1.params.W_V.shape == (11, 2, 3)
    assert r1.grads.W_O.shape == (11, 3, 2) and r1.p.shape == (11, 5, 3)
    assert r1.random_state == 1 and r1.causal is False
    # the recorded values are W_V x_j at each step
    assert np.allclose(r1.v[7], r1.x @ r1.params.W_V[7].T)


def test_data_and_initialisation_come_from_one_generator():
    r = simulate_toy(random_state=4, n_steps=1, init_scale=0.5)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    P = init_params(3, 2, 2, 3, scale=0.5, random_state=int(rng.integers(0, 2**31 - 1)))
    assert np.array_equal(r.x, x) and np.array_equal(r.y, y)
    for k in ("W_Q", "W_K", "W_V", "W_O", "b"):
        assert np.array_equal(getattr(r.params, k)[0], getattr(P, k))


def test_every_step_is_the_closed_form_gradient_step():
    r = simulate_toy(random_state=2, n_steps=4, causal=True)
    for t in range(4):
        P = HeadParams(*(getattr(r.params, k)[t] for k in ("W_Q", "W_K", "W_V", "W_O", "b")))
        st_ = closed_form_backward(r.x, r.y, *P, causal=True)
        assert st_.loss == pytest.approx(r.loss[t], rel=1e-14)
        assert np.allclose(st_.alpha, r.alpha[t]) and np.allclose(st_.advantage, r.advantage[t])
        for k in ("W_Q", "W_K", "W_V", "W_O", "b"):
            assert np.allclose(getattr(r.grads, k)[t], getattr(st_, k))
            assert np.allclose(getattr(r.params, k)[t + 1], getattr(r.params, k)[t] - r.lr * getattr(st_, k))
        assert np.allclose(attention_forward(r.x, P.W_Q, P.W_K, P.W_V, causal=True).alpha, r.alpha[t])


def test_default_toy_run_reduces_loss_monotonically():
    r = simulate_toy()
    assert r.loss[0] == pytest.approx(5 * math.log(3), abs=0.1)
    assert np.all(np.diff(r.loss) < 0)
    assert r.loss[-1] < 0.5


def test_toy_summary_numbers_match_the_run():
    run = simulate_toy(random_state=1, n_steps=100)
    s = toy_summary(run)
    assert isinstance(s, ToySummary)
    assert s.loss_start == run.loss[0] and s.loss_end == run.loss[-1]
    assert s.monotone is bool(np.all(np.diff(run.loss) < 0)) and s.finite is True
    usage = run.alpha[-1].sum(0)
    assert s.columns_over_one == float((usage > 1).sum()) and s.columns_under_half == float((usage < 0.5).sum())
    assert s.usage_std_end == pytest.approx(usage.std())
    assert s.value_step_lowers_compat == 1.0  # an identity: -lr sum_j ||ubar_j||^2 < 0
    assert s.score_grad_row_sum_max < 1e-12  # the advantage law sums to zero over keys
    assert 0.0 < s.score_grad_positive_fraction < 1.0  # either sign
    disp = np.linalg.norm((run.alpha - run.alpha[0]).reshape(101, -1), axis=1)
    t = int(s.t90_alpha)
    assert disp[t] >= 0.9 * disp[-1] and (t == 0 or disp[t - 1] < 0.9 * disp[-1])
    norms = np.linalg.norm(run.v, axis=-1)
    assert s.value_norm_growth == pytest.approx(norms[-1].mean() / norms[0].mean())
    assert 0.0 < s.pca_pc1_ratio <= 1.0
    assert -1.0 <= s.corr_usage_grad_median <= 1.0


def test_toy_summary_of_a_diverged_run_keeps_the_first_numbers():
    run = simulate_toy(random_state=0, n_steps=40, lr=200.0, init_scale=3.0)
    s = toy_summary(run)
    if not s.finite:
        assert math.isnan(s.entropy_end) and math.isnan(s.pca_pc1_ratio)
        assert s.monotone is False


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), causal=st.booleans(), scale=st.sampled_from([0.1, 0.3, 1.0]))
def test_toy_invariants_property(seed, causal, scale):
    r = simulate_toy(random_state=seed, n_steps=6, causal=causal, init_scale=scale, lr=0.05)
    assert np.allclose(r.alpha.sum(-1), 1.0)
    assert np.allclose(r.dL_ds.sum(-1), 0.0, atol=1e-12)
    assert np.all(np.diff(r.loss) < 1e-12)  # small steps descend
    if causal:
        assert np.all(r.alpha[:, ~np.tril(np.ones((5, 5), dtype=bool))] == 0)


def test_bad_input():
    with pytest.raises(ValueError, match="init_scale"):
        simulate_toy(init_scale=0.0)
    with pytest.raises(ValueError, match="random_state"):
        simulate_toy(random_state=-1)
    with pytest.raises(ValueError, match="causal"):
        simulate_toy(causal=None)
    with pytest.raises(ValueError, match="n_classes"):
        simulate_toy(n_classes=1)
    with pytest.raises(ValueError, match="ToyRun"):
        toy_summary("not a run")
    with pytest.raises(ValueError, match="at least 2 steps"):
        toy_summary(simulate_toy(n_steps=1))
    with pytest.raises(ValueError, match="late_from"):
        toy_summary(simulate_toy(n_steps=3), late_from=-1)
    assert isinstance(simulate_toy(n_steps=0), ToyRun)


def test_value_lr_is_a_rate_vector():
    """value_lr moves W_V by its own rate and every other weight by lr, from the same forward pass;
    value_lr = lr is plain gradient descent, bit for bit."""
    plain = simulate_toy(random_state=3, n_steps=3)
    same = simulate_toy(random_state=3, n_steps=3, value_lr=0.2)
    assert np.array_equal(plain.loss, same.loss) and plain.value_lr == 0.2
    em = simulate_toy(random_state=3, n_steps=1, value_lr=1.0)
    for name in ("W_Q", "W_K", "W_V", "W_O", "b"):
        step = getattr(em.params, name)[0] - getattr(em.params, name)[1]
        rate = 1.0 if name == "W_V" else 0.2
        np.testing.assert_allclose(step, rate * getattr(em.grads, name)[0], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="value_lr"):
        simulate_toy(value_lr=0.0)
    with pytest.raises(ValueError, match="value_lr"):
        simulate_toy(value_lr=float("nan"))
