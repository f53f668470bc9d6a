"""iemlib.experiments.manifolds: the run lists, the archive format and the shipped archive itself
(it must be the current run set, and what the trainers produce), the probes and the live check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iemlib.attention import DeepRun, HeadRun, train_deep, train_head
from iemlib.experiments.manifolds import (
    CHECKPOINTS, CONFIG, DEEP_CONFIG, DEEP_VALUE_SCALE, FEATURES, SCHEDULES, TARGETS,
    archive_probes, compare_head_runs, deep_runs, head_runs, load_archive, manifolds_archive_path,
    probe_heads, save_archive, schedule_runs, time_deep_against_torch,
)


def test_run_lists():
    runs = head_runs()
    assert len(runs) == len(set(runs)) == 60
    assert HeadRun("sgd", 0.01, 42, value_lr=0.1) in runs and HeadRun("sgd", 0.01, 42) in runs
    assert sum(r.optimizer == "adam" for r in runs) == 15
    assert len(deep_runs()) == 10 and {r.value_lr_scale for r in deep_runs()} == {1.0, DEEP_VALUE_SCALE}


@pytest.fixture(scope="module")
def tiny():
    cfg = replace(CONFIG, seq_len=80, n_steps=4)
    runs = head_runs(seeds=(42,))
    heads = train_head(runs, cfg, checkpoint_steps=(0, 2, 4), probe_every=2, progress=False)
    deep = train_deep([DeepRun(42), DeepRun(42, 10.0)], replace(DEEP_CONFIG, seq_len=40, n_steps=3),
                      progress=False)
    return heads, deep


def test_archive_roundtrip(tiny, tmp_path):
    heads, deep = tiny
    probes = archive_probes(heads)
    assert set(probes) == {"schedules", "optimizers"}
    assert probes["schedules"].r2.shape == (len(SCHEDULES), 3, len(FEATURES), len(TARGETS))
    back = load_archive(save_archive(tmp_path / "a.npz", heads, probes, deep))
    assert back.heads.runs == heads.runs and back.heads.config == heads.config
    assert np.allclose(back.heads.loss, heads.loss, atol=1e-6)
    assert np.allclose(back.heads.checkpoints.W_V, heads.checkpoints.W_V, atol=1e-7)
    assert np.array_equal(back.probes["optimizers"].r2, probes["optimizers"].r2)
    assert back.deep.runs == deep.runs and back.deep.config == deep.config
    assert np.allclose(back.deep.params["W_v"], deep.params["W_v"], atol=1e-7)
    cmp = compare_head_runs(heads, back.heads)
    assert cmp.agree and cmp.max_curve < 1e-6
    back.heads.loss[0, 1] += 1e-3
    assert not compare_head_runs(heads, back.heads).agree


def test_probes_see_the_untrained_baseline(tiny):
    heads, _ = tiny
    pr = probe_heads(heads, schedule_runs(heads, "SGD (0.01, 0.01)"), steps=[0])
    assert pr.r2.shape == (1, 1, 3, 2) and np.isfinite(pr.r2).all()
    # every run of a seed starts from the same head: the step-0 probes agree
    other = probe_heads(heads, schedule_runs(heads, "corner (0.3, 0.3)"), steps=[0])
    assert np.array_equal(pr.r2, other.r2)
    with pytest.raises(ValueError, match="steps"):
        probe_heads(heads, steps=[3])
    with pytest.raises(ValueError, match="runs"):
        probe_heads(heads, runs=[999])
    with pytest.raises(ValueError, match="training"):
        probe_heads("heads")


def test_bad_archive_arguments(tmp_path, tiny):
    with pytest.raises(ValueError, match="path"):
        load_archive(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="heads"):
        save_archive(tmp_path / "x.npz", {"loss": 1}, {})
    with pytest.raises(ValueError, match="name"):
        schedule_runs(tiny[0], "no such schedule")


@pytest.fixture(scope="module")
def shipped():
    assert manifolds_archive_path().is_file(), "iemlib/data/manifolds_runs.npz is missing: run bench/ch11_runs.py"
    return load_archive()


def test_shipped_archive_is_the_current_run_set(shipped):
    h = shipped.heads
    assert h.runs == tuple(head_runs()) and h.config == replace(CONFIG, seeds=h.config.seeds)
    assert tuple(h.checkpoint_steps) == CHECKPOINTS and h.loss.shape == (60, CONFIG.n_steps)
    assert not h.diverged.any() and np.isfinite(h.heldout_loss).all()
    assert 1.85 < h.bayes_loss.mean() < 1.90 and h.device == "cpu"
    assert shipped.deep.runs == tuple(deep_runs()) and shipped.deep.config == DEEP_CONFIG
    assert shipped.deep.loss.shape == (10, DEEP_CONFIG.n_steps) and not shipped.deep.diverged.any()
    ps = shipped.probes["schedules"]
    assert ps.r2.shape == (25, len(CHECKPOINTS), 3, 2) and np.isfinite(ps.r2).all()


def test_shipped_archive_is_what_the_trainers_produce(shipped):
    """Behavioural fingerprints: retrain prefixes of archived runs and compare (a few seconds)."""
    live = train_head([HeadRun("sgd", 0.01, 1337, value_lr=0.1), HeadRun("adam", 0.01, 1337)],
                      replace(CONFIG, n_steps=5), progress=False)
    assert compare_head_runs(live, shipped.heads).agree
    d = train_deep([DeepRun(7777, DEEP_VALUE_SCALE)], DEEP_CONFIG, stop_after=3, progress=False)
    k = shipped.deep.runs.index(DeepRun(7777, DEEP_VALUE_SCALE))
    assert np.abs(d.loss[0] - shipped.deep.loss[k, :3]).max() < 1e-4


def test_deep_speed_comparison_computes_the_same_losses():
    sp = time_deep_against_torch(1, seeds=(3,))
    assert sp.n_runs == 1 and sp.n_steps == 1 and sp.max_loss_difference < 1e-5
    assert sp.seconds_batched > 0 and sp.seconds_reference > 0 and sp.speedup > 0
    with pytest.raises(ValueError, match="seeds"):
        time_deep_against_torch(1, seeds=())
