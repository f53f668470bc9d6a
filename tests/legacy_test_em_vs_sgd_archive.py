"""Tests of iemlib.legacy.em_vs_sgd_archive: the control set, the archive format, and the shipped archive itself."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iemlib.legacy.em_vs_sgd import PAPER, PUBLIC, Result, summarize, train
from iemlib.legacy.em_vs_sgd_archive import (
    FREE_VALUES,
    GRID_ROUTING,
    GRID_VALUE,
    LEAST_SQUARES,
    archive_path,
    compare_runs,
    control_runs,
    grid_config,
    grid_name,
    grid_runs,
    load_controls,
    load_result,
    save_result,
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
        src = {k: v for k, v in getattr(tiny, group).items() if k != "probs"}
        assert set(getattr(back, group)) == set(src)
        for k, v in src.items():
            np.testing.assert_array_equal(getattr(back, group)[k], v)
    for k in ("diverged", "kappa", "probe_steps", "value_steps", "value_index"):
        np.testing.assert_array_equal(getattr(back, k), getattr(tiny, k))
    np.testing.assert_array_equal(back.memorizing(), tiny.memorizing())
    # summaries of a loaded result: everything but the KL terms, which need the distributions
    s_live, s_back = summarize(tiny, PAPER.name), summarize(back, PAPER.name)
    assert np.isnan(s_back["kl_em_sgd"]).all() and np.isnan(s_back["heldout_kl_em_sgd"]).all()
    for k in ("loss_em", "loss_sgd", "heldout_loss_em", "bayes_train_loss", "em_steps_to_sgd_final"):
        np.testing.assert_array_equal(s_back[k], s_live[k])


def test_compare_runs_detects_differences(tiny, tmp_path):
    back = load_result(save_result(tiny, tmp_path / "a.npz"))
    ok = compare_runs(tiny, back)
    assert ok["agree"] and ok["n_runs"] == len(tiny.runs) and ok["max_curve"] == 0.0
    k = tiny.index("rates (0.03, 0.1)", 42, "sgd")
    back.loss[k, 2] += 1e-3
    bad = compare_runs(tiny, back)
    assert not bad["agree"] and bad["max_curve"] == pytest.approx(1e-3, rel=1e-3)
    assert compare_runs(tiny, back, runs=[tiny.runs[0]])["agree"]  # only the runs asked for
    back.heldout["loss"][0] += 1.0
    assert compare_runs(tiny, back, runs=[tiny.runs[0]])["max_heldout"] == pytest.approx(1.0)
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
    assert np.isfinite(shipped.loss[ok]).all() and np.isfinite(shipped.final["loss"][ok]).all()
    free = [shipped.index(FREE_VALUES.name, s, "em") for s in FREE_VALUES.seeds]
    assert np.isnan(shipped.heldout["loss"][free]).all()
    scored = [k for k in range(len(shipped.runs)) if k not in free and ok[k]]
    assert np.isfinite(shipped.heldout["loss"][scored]).all()
    # the Bayes filter's numbers are recomputed from the data, so they must be what the filter gives
    assert 1.85 < shipped.bayes["train_loss"].mean() < 1.90


def test_shipped_archive_is_what_the_trainer_produces(shipped):
    """A behavioural fingerprint: retrain one archived run in full and compare (about 7 s)."""
    cfg = grid_config(0.03, 0.1)
    live = train(replace(cfg, seeds=(1337,)), schedules=("sgd",), progress=False, device="cpu")
    cmp = compare_runs(live, shipped)
    assert cmp["n_runs"] == 1 and cmp["agree"], cmp


def test_compare_runs_prefix(tiny, tmp_path):
    """A shorter live run of an archived configuration is compared as a prefix of its curve."""
    back = load_result(save_result(tiny, tmp_path / "a.npz"))
    name = LEAST_SQUARES.name
    short = train([(replace(back.configs[name], n_steps=2), ("em",))], progress=False, device="cpu")
    cmp = compare_runs(short, back)
    assert cmp["agree"] and cmp["n_prefix"] == 1 and cmp["max_curve"] == 0.0 and np.isnan(cmp["max_final"])
    k = back.index(name, 42, "em")
    back.loss[k, 1] += 1e-3
    assert not compare_runs(short, back)["agree"]
    back.loss[k, 1] -= 1e-3
    back.loss[k, 2] += 1.0  # beyond the prefix: not compared
    assert compare_runs(short, back)["agree"]
    longer = train([(replace(back.configs[name], n_steps=4), ("em",))], progress=False, device="cpu")
    with pytest.raises(ValueError, match="differs"):
        compare_runs(longer, back)
