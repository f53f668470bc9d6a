"""Chapter 8's budget sweep: the run sets, the shipped archive (iemlib/data/em_vs_sgd_budget_paper.npz,
written by bench/ch08_budget.py) checked against the 1000-step control archive and against a live
retrained prefix, its summary, and the memorization margin (the count fit)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iemlib.attention.trainer import train
from iemlib.experiments.em_vs_sgd import (
    BUDGET_SETS,
    BUDGETS,
    CPU_TOLERANCE,
    PAPER,
    PUBLIC,
    budget_archive_path,
    budget_runs,
    compare_runs,
    count_fit_margin,
    grid_config,
    load_budget,
    load_controls,
    summarize_budgets,
)


def test_budget_runs():
    assert BUDGETS == (1000, 2000, 5000)
    (c, s), = budget_runs("paper")
    assert c == replace(PAPER, n_steps=5000) and s == ("em", "sgd")
    assert budget_runs("paper", 2000)[0][0].n_steps == 2000
    assert budget_runs("paper_sgd01")[0][0] == replace(grid_config(0.1, 0.1), n_steps=5000)
    assert budget_runs("public")[0][0] == replace(PUBLIC, n_steps=5000)
    assert set(BUDGET_SETS) == {"paper", "paper_sgd01", "public"}
    for bad in ("nope", ""):
        with pytest.raises(ValueError, match="run_set"):
            budget_runs(bad)
        with pytest.raises(ValueError, match="run_set"):
            budget_archive_path(bad)
    with pytest.raises(ValueError, match="n_steps"):
        budget_runs("paper", 0)


@pytest.fixture(scope="module")
def budget():
    assert budget_archive_path("paper").is_file(), "run bench/ch08_budget.py --set paper"
    return load_budget("paper")


@pytest.fixture(scope="module", params=BUDGET_SETS)
def any_budget(request):
    """Every shipped run set of the sweep (chapter 8 reads all three)."""
    assert budget_archive_path(request.param).is_file(), f"run bench/ch08_budget.py --set {request.param}"
    return request.param, load_budget(request.param)


def test_shipped_budget_archive_is_the_current_run_set(any_budget):
    run_set, budget = any_budget
    n = budget.loss.shape[1]
    (c, sched), = budget_runs(run_set, n)
    assert budget.configs == {c.name: c}
    assert sorted(budget.runs) == sorted((c.name, s, x) for s in c.seeds for x in sched)
    ck = budget.checkpoints
    assert ck is not None and n == max(BUDGETS)
    assert list(BUDGETS) == [int(b) for b in ck.steps]
    assert ck.loss.shape == (len(c.seeds) * len(sched), len(BUDGETS))
    assert not budget.diverged.any() and np.isfinite(ck.heldout_loss).all()
    if "em" in sched:
        em = budget.select(c.name, "em")
        assert np.isfinite(ck.kl_em_sgd[em]).all() and (ck.kl_em_sgd[em] > 0).all()
    assert np.array_equal(ck.loss[:, -1], budget.final.loss)
    # training lowers the loss at every budget on every run
    assert (np.diff(ck.loss, axis=1) < 0).all()


def test_budget_archive_agrees_with_the_control_archive(any_budget):
    """Its first 1000 steps are the control archive's runs of the same configuration (trained separately)."""
    _, budget = any_budget
    controls = load_controls()
    cmp = compare_runs(controls, budget, runs=[r for r in budget.runs])
    assert cmp.agree and cmp.n_prefix == len(budget.runs) and cmp.tol == CPU_TOLERANCE, cmp
    k = budget.checkpoints.at(1000)
    j = [controls.index(*r) for r in budget.runs]
    assert np.abs(budget.checkpoints.loss[:, k] - controls.final.loss[j]).max() <= CPU_TOLERANCE
    assert np.abs(budget.checkpoints.heldout_loss[:, k] - controls.heldout.loss[j]).max() <= CPU_TOLERANCE


@pytest.mark.parametrize("run_set", BUDGET_SETS)
def test_budget_archive_is_what_the_trainer_produces(run_set):
    """A behavioural fingerprint: a live 30-step prefix of one seed's runs."""
    (c, sched), = budget_runs(run_set, 30)
    live = train([(replace(c, seeds=(2024,)), sched)], progress=False, device="cpu", probe_every=0)
    cmp = compare_runs(live, load_budget(run_set))
    assert cmp.n_runs == len(sched) and cmp.n_prefix == len(sched) and cmp.agree, cmp


def test_matched_value_step_sgd_overfits_with_the_budget():
    """The chapter's reading of the 'paper_sgd01' set: SGD with one rate 0.1 trains lower than the
    EM-like schedule at every budget, and its held-out loss rises after 1000 steps."""
    b, s = load_budget("paper"), load_budget("paper_sgd01")
    em = b.select(PAPER.name, "em")
    s1 = s.select(grid_config(0.1, 0.1).name, "sgd")
    assert [b.runs[i][1] for i in em] == [s.runs[i][1] for i in s1]
    assert (s.checkpoints.loss[s1] < b.checkpoints.loss[em]).all()
    ho = s.checkpoints.heldout_loss[s1]
    assert (ho[:, -1] > ho[:, 0]).all()


def test_summarize_budgets(budget):
    B = summarize_budgets(budget, PAPER.name)
    n = len(budget.checkpoints.steps)
    assert B.loss_em.shape == B.heldout_kl_em_sgd.shape == (n, 5)
    assert B.seeds.tolist() == list(PAPER.seeds)
    k = budget.checkpoints.at(1000)
    i = budget.index(PAPER.name, 42, "sgd")
    assert B.loss_sgd[k, 0] == budget.checkpoints.loss[i, k]
    with pytest.raises(ValueError, match="both schedules"):
        summarize_budgets(budget, "nope")
    with pytest.raises(ValueError, match="checkpoints"):
        summarize_budgets(load_controls(), PAPER.name)


def test_count_fit_margin():
    """The count fit (maximum-likelihood chain through the same filter) beats the true chain's filter on
    its own training sequence, by about (free parameters) / (2 N) nats."""
    cfg = replace(PAPER, seq_len=400)
    m = count_fit_margin(cfg, seeds=(42, 2024))
    assert m.seeds.tolist() == [42, 2024]
    assert (m.margin > 0).all() and (m.margin < 0.2).all()
    assert np.allclose(m.margin, m.bayes_loss - m.count_fit_loss)
    full = count_fit_margin(PAPER, seeds=(42,))
    assert 0.005 < float(full.margin[0]) < 0.03  # 56 free parameters, 1999 positions: about 0.014


def test_committed_authors_script_run_matches_the_public_runs():
    """iemlib/data/authors_script_run.json (the authors' script, run once in full) against the control
    archive's public-code runs: every seed's loss curve and final scores, to float32 rounding."""
    import json
    from importlib import resources

    run = json.loads((resources.files("iemlib") / "data" / "authors_script_run.json").read_text())
    out = run["output"]
    assert run["commit"].startswith("670c6d6") and out["n_steps"] == PUBLIC.n_steps
    assert sorted(out["seeds"]) == sorted(PUBLIC.seeds)
    controls = load_controls()
    for rec in out["per_seed"]:
        for sched in ("sgd", "em"):
            i = controls.index(PUBLIC.name, rec["seed"], sched)
            curve = np.array(rec[f"losses_{sched}_full"])
            assert curve.shape == (PUBLIC.n_steps,)
            assert np.abs(curve - controls.loss[i]).max() <= CPU_TOLERANCE
            assert abs(rec[sched]["loss"] - controls.final.loss[i]) <= CPU_TOLERANCE
            assert abs(rec[sched]["accuracy"] - controls.final.acc[i]) <= CPU_TOLERANCE
    for sched in ("sgd", "em"):  # the script's printed means are ours
        mine = controls.final.loss[controls.select(PUBLIC.name, sched)]
        assert abs(out[sched]["loss_mean"] - mine.mean()) <= CPU_TOLERANCE
