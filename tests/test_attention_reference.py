"""iemlib.attention.reference: the per-seed reference loop computes what the batched trainer computes, draws
the public script's numbers without touching torch's global generator, and validates its input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from iemlib.attention.reference import ReferenceRun, _data, _init, _transition_matrix, run_reference
from iemlib.attention.trainer import init_row_params, train
from iemlib.experiments.em_vs_sgd import PUBLIC
from iemlib.markov import make_dataset


def test_data_and_initialization_are_the_trainers():
    P = PUBLIC.transition_matrix()
    np.testing.assert_allclose(_transition_matrix().numpy(), P, rtol=1e-6)
    x, y = _data(42)
    d = make_dataset(P, 2000, 20, 42)
    assert torch.equal(y, d.y) and torch.allclose(x, d.x, atol=1e-6)
    for a, b in zip(_init(42), list(init_row_params(42))[:4]):
        assert torch.equal(a.detach(), b)


def test_reference_losses_match_the_trainer_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    ref = run_reference(2024, n_steps=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(ref, ReferenceRun) and ref.seed == 2024 and ref.em_losses.shape == (3,)
    res = train(replace(PUBLIC, n_steps=3, seeds=(2024,)), device="cpu", progress=False, probe_every=0)
    for s in ("em", "sgd"):
        i = res.index(PUBLIC.name, 2024, s)
        np.testing.assert_allclose(res.loss[i], getattr(ref, s + "_losses"), atol=1e-5)
        assert getattr(ref, s + "_loss") == pytest.approx(res.final.loss[i], abs=1e-5)
        assert getattr(ref, s + "_acc") == pytest.approx(res.final.acc[i], abs=1e-3)
        assert getattr(ref, s + "_entropy") == pytest.approx(res.final.entropy[i], abs=1e-4)
    assert ref.em_losses[0] == ref.sgd_losses[0]  # the same start
    assert ref.em_losses[-1] < ref.em_losses[0]


def test_bad_input():
    with pytest.raises(ValueError, match="seed"):
        run_reference(-1, 2)
    with pytest.raises(ValueError, match="n_steps"):
        run_reference(1, 0)
