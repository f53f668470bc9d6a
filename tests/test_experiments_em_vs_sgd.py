"""iemlib.experiments.em_vs_sgd: the presets and the control set, the archive format and the shipped archive itself,
the device-aware comparison of live runs with it, the summaries, and the speed comparison with the reference loop."""

from __future__ import annotations

from dataclasses import replace

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from iemlib.attention.trainer import Result, train
from iemlib.experiments.em_vs_sgd import (
    CPU_TOLERANCE,
    FREE_VALUES,
    GRID_ROUTING,
    GRID_VALUE,
    LEAST_SQUARES,
    PAPER,
    PUBLIC,
    RunComparison,
    SpeedComparison,
    Summary,
    archive_path,
    compare_runs,
    comparison_tolerance,
    control_runs,
    grid_config,
    grid_name,
    grid_runs,
    load_controls,
    load_result,
    save_result,
    steps_to_reach,
    summarize,
    time_against_reference,
)


def _tiny_controls(n_steps: int = 3) -> Result:
    return train([(replace(c, n_steps=n_steps, seeds=(42,)), s) for c, s in control_runs()],
                 progress=False, device="cpu", probe_every=1)


@pytest.fixture(scope="module")
def tiny() -> Result:
    return _tiny_controls()


def test_control_set():
    runs = control_runs()
    names = [c.name for c, _ in runs]
    assert len(set(names)) == len(names)
    n = sum(len(c.seeds) * len(s) for c, s in runs)
    assert n == 4 * 2 * 5 + 2 * 5 + (len(GRID_VALUE) * len(GRID_ROUTING) - 2) * 5 == 120
    cfg = dict(runs)
    # every grid cell is there, the two main rate vectors as the paper configuration's schedules
    for v in GRID_VALUE:
        for r in GRID_ROUTING:
            if (v, r) in ((0.01, 0.01), (0.1, 0.01)):
                assert grid_name(v, r) not in names
            else:
                g = next(c for c in cfg if c.name == grid_name(v, r))
                assert (g.lr_sgd_value, g.lr_sgd, cfg[g]) == (v, r, ("sgd",))
                assert replace(g, name=PAPER.name, lr_sgd=PAPER.lr_sgd, lr_sgd_value=None) == PAPER
    assert LEAST_SQUARES.value_map == "least_squares" and LEAST_SQUARES.match_effective_step
    assert FREE_VALUES.values == "free" and FREE_VALUES.match_effective_step


def test_grid_config_and_runs(tiny):
    g = grid_config(0.3, 0.03)
    assert (g.lr_sgd_value, g.lr_sgd, g.name) == (0.3, 0.03, "rates (0.3, 0.03)")
    assert grid_runs(tiny, 0.01, 0.01) == tiny.select(PAPER.name, "sgd")
    assert grid_runs(tiny, 0.1, 0.01) == tiny.select(PAPER.name, "em")
    assert grid_runs(tiny, 0.3, 0.3) == tiny.select("rates (0.3, 0.3)", "sgd")
    with pytest.raises(ValueError, match="value_step"):
        grid_config(0.0, 0.1)
    with pytest.raises(ValueError, match="routing_step"):
        grid_config(0.1, float("nan"))
    with pytest.raises(ValueError, match="no runs of grid cell"):
        grid_runs(tiny, 0.5, 0.5)


def test_save_load_round_trip(tiny, tmp_path):
    p = save_result(tiny, tmp_path / "a.npz")
    back = load_result(p)
    assert back.runs == tiny.runs and back.configs == tiny.configs
    np.testing.assert_array_equal(back.loss, tiny.loss)
    for group in ("final", "heldout", "bayes", "probes"):
        for f in dataclasses.fields(getattr(tiny, group)):
            if f.name != "probs":
                np.testing.assert_array_equal(getattr(getattr(back, group), f.name), getattr(getattr(tiny, group), f.name))
    assert back.heldout.probs.shape == (len(tiny.runs), 0, 8) and back.params is None
    for k in ("diverged", "kappa", "probe_steps", "value_steps", "value_index"):
        np.testing.assert_array_equal(getattr(back, k), getattr(tiny, k))
    np.testing.assert_array_equal(back.memorizing(), tiny.memorizing())
    # summaries of a loaded result: everything but the KL terms, which need the distributions
    s_live, s_back = summarize(tiny, PAPER.name), summarize(back, PAPER.name)
    assert isinstance(s_back, Summary)
    assert np.isnan(s_back.kl_em_sgd).all() and np.isnan(s_back.heldout_kl_em_sgd).all()
    assert np.all(s_live.kl_em_sgd >= 0) and np.all(s_live.heldout_kl_em_sgd >= 0)
    for k in ("loss_em", "loss_sgd", "heldout_loss_em", "bayes_train_loss", "em_steps_to_sgd_final", "seeds"):
        np.testing.assert_array_equal(getattr(s_back, k), getattr(s_live, k))


def test_compare_runs_detects_differences(tiny, tmp_path):
    back = load_result(save_result(tiny, tmp_path / "a.npz"))
    ok = compare_runs(tiny, back)
    assert isinstance(ok, RunComparison)
    assert ok.agree and ok.n_runs == len(tiny.runs) and ok.max_curve == 0.0 and ok.tol == CPU_TOLERANCE
    k = tiny.index("rates (0.03, 0.1)", 42, "sgd")
    back.loss[k, 2] += 1e-3
    bad = compare_runs(tiny, back)
    assert not bad.agree and bad.max_curve == pytest.approx(1e-3, rel=1e-3) and bad.worst == bad.max_curve
    assert compare_runs(tiny, back, tol=2e-3).agree  # an explicit tolerance wins
    assert compare_runs(tiny, back, runs=[tiny.runs[0]]).agree  # only the runs asked for
    back.heldout.loss[0] += 1.0
    assert compare_runs(tiny, back, runs=[tiny.runs[0]]).max_heldout == pytest.approx(1.0)
    other = train(replace(PUBLIC, name="another", n_steps=2, seeds=(42,)), progress=False, device="cpu")
    with pytest.raises(ValueError, match="share no run"):
        compare_runs(other, back)
    changed = train(replace(PAPER, lr_sgd=0.02, n_steps=3, seeds=(42,)), progress=False, device="cpu")
    with pytest.raises(ValueError, match="differs"):
        compare_runs(changed, back)
    with pytest.raises(ValueError, match="tol"):
        compare_runs(tiny, back, tol=-1.0)


def test_bad_archive_arguments(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_result(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="result"):
        save_result({"loss": 1}, tmp_path / "x.npz")


@pytest.fixture(scope="module")
def shipped() -> Result:
    assert archive_path().is_file(), "iemlib/data/em_vs_sgd_controls.npz is missing: run bench/ch08_controls.py"
    return load_controls()


def test_shipped_archive_is_the_current_control_set(shipped):
    runs = control_runs()
    expected = [(c.name, s, sch) for c, scheds in runs for s in c.seeds for sch in scheds]
    assert sorted(shipped.runs) == sorted(expected)
    for c, _ in runs:  # a configuration changed in code without retraining the archive fails here
        assert shipped.configs[c.name] == c, c.name
    assert shipped.loss.shape == (120, PAPER.n_steps)
    ok = ~shipped.diverged
    assert np.isfinite(shipped.loss[ok]).all() and np.isfinite(shipped.final.loss[ok]).all()
    free = [shipped.index(FREE_VALUES.name, s, "em") for s in FREE_VALUES.seeds]
    assert np.isnan(shipped.heldout.loss[free]).all()
    scored = [k for k in range(len(shipped.runs)) if k not in free and ok[k]]
    assert np.isfinite(shipped.heldout.loss[scored]).all()
    # the Bayes filter's numbers are recomputed from the data, so they must be what the filter gives
    assert 1.85 < shipped.bayes.train_loss.mean() < 1.90
    assert shipped.device == "cpu" and shipped.probes.dalpha.shape == (120, 100)


def test_shipped_archive_is_what_the_trainer_produces(shipped):
    """A behavioural fingerprint: retrain one archived run in full and compare (about 7 s)."""
    cfg = grid_config(0.03, 0.1)
    live = train(replace(cfg, seeds=(1337,)), schedules=("sgd",), progress=False, device="cpu")
    cmp = compare_runs(live, shipped)
    assert cmp.n_runs == 1 and cmp.agree and cmp.tol == CPU_TOLERANCE, cmp


def test_compare_runs_prefix(tiny, tmp_path):
    """A shorter live run of an archived configuration is compared as a prefix of its curve."""
    back = load_result(save_result(tiny, tmp_path / "a.npz"))
    name = LEAST_SQUARES.name
    short = train([(replace(back.configs[name], n_steps=2), ("em",))], progress=False, device="cpu")
    cmp = compare_runs(short, back)
    assert cmp.agree and cmp.n_prefix == 1 and cmp.max_curve == 0.0 and np.isnan(cmp.max_final)
    k = back.index(name, 42, "em")
    back.loss[k, 1] += 1e-3
    assert not compare_runs(short, back).agree
    back.loss[k, 1] -= 1e-3
    back.loss[k, 2] += 1.0  # beyond the prefix: not compared
    assert compare_runs(short, back).agree
    longer = train([(replace(back.configs[name], n_steps=4), ("em",))], progress=False, device="cpu")
    with pytest.raises(ValueError, match="differs"):
        compare_runs(longer, back)


def test_presets():
    assert round(PAPER.min_entropy(), 4) == 1.8833 and round(PUBLIC.min_entropy(), 4) == 1.8292
    assert PUBLIC.bias is False and PAPER.bias is True
    assert PUBLIC.include_diagonal_in_normalization and not PAPER.include_diagonal_in_normalization


def test_comparison_tolerance_follows_the_devices():
    kw = dict(n_steps=1000, n_positions=1999, n_classes=8)
    assert comparison_tolerance("cpu", "cpu", **kw) == CPU_TOLERANCE == 1e-4
    cuda = comparison_tolerance("cuda:0", "cpu", **kw)
    assert cuda == pytest.approx(4 * math.sqrt(1000 * 1999) * 2.0**-24 * math.log(8))
    assert cuda == pytest.approx(7.0e-4, rel=0.01)  # as the docstring states
    assert comparison_tolerance("cuda", "cpu", n_steps=100, n_positions=1999, n_classes=8) == pytest.approx(2.2e-4, rel=0.02)
    assert comparison_tolerance("cpu", "cuda:1", **kw) == cuda  # a GPU on either side
    # it grows like sqrt(steps x positions) and never falls below the CPU tolerance
    assert comparison_tolerance("cuda", "cpu", n_steps=4000, n_positions=1999, n_classes=8) == pytest.approx(2 * cuda)
    assert comparison_tolerance("cuda", "cpu", n_steps=1, n_positions=10, n_classes=8) == CPU_TOLERANCE
    with pytest.raises(ValueError, match="n_classes"):
        comparison_tolerance("cuda", "cpu", n_steps=1, n_positions=10, n_classes=1)


def test_compare_runs_applies_the_device_tolerance(tiny, tmp_path):
    """A live result trained on CUDA (relabelled here: nothing in CI has a GPU) is held to the float32
    device tolerance, a CPU one to the CPU tolerance; the tolerance is reported."""
    back = load_result(save_result(tiny, tmp_path / "a.npz"))
    k = tiny.index(PAPER.name, 42, "em")
    back.loss[k, 1] += 1.5e-4  # above the CPU tolerance
    assert not compare_runs(tiny, back).agree
    as_cuda = dataclasses.replace(tiny, device="cuda:0")
    cmp = compare_runs(as_cuda, back)
    assert cmp.live_device == "cuda:0" and cmp.archived_device == "cpu"
    assert cmp.tol == comparison_tolerance("cuda:0", "cpu", n_steps=3, n_positions=1999, n_classes=8)
    assert cmp.tol == CPU_TOLERANCE and not cmp.agree  # 3 steps: the derived bound is below its floor
    long = dataclasses.replace(as_cuda, loss=np.repeat(as_cuda.loss, 400, axis=1)[:, :1000])
    long_back = dataclasses.replace(back, loss=np.repeat(back.loss, 400, axis=1)[:, :1000],
                                    configs={n: dataclasses.replace(c, n_steps=1000) for n, c in back.configs.items()})
    long = dataclasses.replace(long, configs={n: dataclasses.replace(c, n_steps=1000) for n, c in long.configs.items()})
    cmp = compare_runs(long, long_back)  # 1000 steps on CUDA: 7.0e-4
    assert cmp.tol == pytest.approx(7.0e-4, rel=0.01) and cmp.agree
    assert not compare_runs(dataclasses.replace(long, device="cpu"), long_back).agree


def test_old_config_field_names_are_read(tmp_path, tiny, monkeypatch):
    """Archives keep their configurations' field names; a renamed field is read under its new name."""
    import iemlib.experiments.em_vs_sgd as ev

    p = save_result(tiny, tmp_path / "a.npz")
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    for d in meta["configs"].values():
        d["old_heldout_offset"] = d.pop("heldout_offset")
    np.savez_compressed(p, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match="old_heldout_offset"):
        load_result(p)
    monkeypatch.setitem(ev._RENAMED_CONFIG_FIELDS, "old_heldout_offset", "heldout_offset")
    assert load_result(p).configs == tiny.configs


def test_summarize_and_steps_to_reach(tiny):
    s = summarize(tiny, PAPER.name)
    em, sgd = tiny.select(PAPER.name, "em"), tiny.select(PAPER.name, "sgd")
    np.testing.assert_array_equal(s.loss_em, tiny.final.loss[em])
    np.testing.assert_array_equal(s.heldout_acc_sgd, tiny.heldout.acc[sgd])
    assert s.min_entropy[0] == PAPER.min_entropy() and list(s.seeds) == [42]
    assert steps_to_reach(np.array([3.0, 2.0, 1.0, 0.5]), 1.0) == 2
    assert steps_to_reach(np.array([3.0, 2.0]), 1.0) is None
    with pytest.raises(ValueError, match="curve"):
        steps_to_reach(np.array([[1.0]]), 1.0)
    with pytest.raises(ValueError, match="both schedules"):
        summarize(tiny, LEAST_SQUARES.name)


def test_time_against_reference_small():
    threads = torch.get_num_threads()
    sp = time_against_reference(n_steps=2, n_seeds=1)
    assert isinstance(sp, SpeedComparison) and sp.threads == 1 and torch.get_num_threads() == threads
    assert sp.seconds_trainer > 0 and sp.seconds_reference > 0
    assert sp.ratio == pytest.approx(sp.seconds_trainer / sp.seconds_reference) and sp.speedup == pytest.approx(1 / sp.ratio)
    assert sp.max_loss_difference < 1e-5  # the same iterates, float32 rounding apart
    assert sp.ms_per_run_step("trainer") == pytest.approx(1e3 * sp.seconds_trainer / 4)
    assert len(sp.reference) == 1 and sp.reference[0].seed == 42 and sp.trainer.loss.shape == (2, 2)
    with pytest.raises(ValueError, match="side"):
        sp.ms_per_run_step("ours")
    with pytest.raises(ValueError, match="n_seeds"):
        time_against_reference(n_steps=1, n_seeds=6)
