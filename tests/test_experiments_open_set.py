"""Tests of iemlib.experiments.open_set: chapter 10's open-set run (determinism, ranges, the reject
log-odds ranking as L does) and the scores of one model (AUROCs against scikit-learn, rejection
rates); bad input raises ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from iemlib.experiments import open_set as S
from iemlib.metrics import auroc, energy_score, max_softmax, reject_responsibility


@pytest.fixture(scope="module")
def run():
    return S.digit_open_set_run(3, mlp_epochs=20, proto_epochs=20)


def test_digit_open_set_run_is_deterministic_and_in_range(run):
    again = S.digit_open_set_run(3, mlp_epochs=20, proto_epochs=20)
    assert isinstance(run, S.OpenSetRun)
    assert run.auroc == again.auroc and run.fpr95 == again.fpr95 and run.accuracy == again.accuracy
    assert len(run.known) == 6 and list(run.known) == sorted(run.known)
    assert run.known == tuple(sorted(int(k) for k in np.random.default_rng(3).permutation(10)[:6]))
    assert set(run.auroc) == set(S.SCORES) == set(run.fpr95)
    for s in S.SCORES:
        assert list(run.auroc[s]) == list(S.OOD_SETS)
        assert all(0.0 <= v <= 1.0 for v in run.auroc[s].values())
        assert all(0.0 <= v <= 1.0 for v in run.fpr95[s].values())
    assert set(run.accuracy) == {"MLP", "prototype", "prototype + reject", "pixel Gaussian, per-class",
                                 "pixel Gaussian, per-class, no log-det"}
    assert all(0.5 < v <= 1.0 for v in run.accuracy.values())
    # a different model (trained with tau): the reject score need not rank as the plain prototype's L
    assert run.auroc["prototype L"] != run.auroc["reject component"]
    # uniform noise on the raw pixel range is far from every digit: distance scores separate it
    assert run.auroc["prototype L"]["uniform noise"] > 0.99
    assert run.auroc["pixel Gaussian, per-class"]["uniform noise"] > 0.99


def test_digit_open_set_run_other_sizes():
    r = S.digit_open_set_run(0, n_known=2, mlp_epochs=5, proto_epochs=5, tau=3.0)
    assert len(r.known) == 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.digit_open_set_run(-1), "random_state"),
        (lambda: S.digit_open_set_run(0, n_known=10), "n_known"),
        (lambda: S.digit_open_set_run(0, n_known=1), "n_known"),
        (lambda: S.digit_open_set_run(0, tau=np.nan), "tau"),
        (lambda: S.digit_open_set_run(0, mlp_epochs=0), "mlp_epochs"),
        (lambda: S.digit_open_set_run(0, proto_epochs=0), "proto_epochs"),
    ],
)
def test_benchmark_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_open_set_scores_far_inputs_and_ranking_equivalence():
    g = torch.Generator().manual_seed(0)
    d_in = torch.rand(60, 3, generator=g, dtype=torch.float64)  # close to some class
    d_far = 20.0 + torch.rand(40, 3, generator=g, dtype=torch.float64)  # far from every class
    d_mid = torch.full((30, 3), 0.5, dtype=torch.float64) + 0.01 * torch.rand(30, 3, generator=g, dtype=torch.float64)
    sets = {"in": d_in, "far": d_far, "mid": d_mid}
    sc = S.open_set_scores(sets, tau=5.0, d_train=d_in)
    assert isinstance(sc, S.OpenSetScores) and sc.positive == "in"
    assert set(sc.r0) == set(sets) and sc.r0["far"].shape == (40,)
    assert set(sc.auroc_L) == set(sc.auroc_max_softmax) == set(sc.auroc_r0) == {"far", "mid"}
    assert sc.auroc_L["far"] == 1.0 and sc.auroc_r0["far"] == 1.0  # L and r0 rank identically (no saturation here)
    assert sc.rejected == {"in": 0.0, "far": 1.0, "mid": 0.0} and sc.rejected_train == 0.0
    assert sc.auroc_max_softmax["mid"] == auroc(max_softmax(-d_in), max_softmax(-d_mid))
    assert sc.auroc_r0["mid"] == pytest.approx(sc.auroc_L["mid"])
    assert np.array_equal(sc.r0["mid"], reject_responsibility(d_mid, 5.0))
    # against scikit-learn
    L_in, L_mid = energy_score(-d_in), energy_score(-d_mid)
    ref = roc_auc_score(np.r_[np.ones(60), np.zeros(30)], np.r_[L_in, L_mid])
    assert sc.auroc_L["mid"] == pytest.approx(ref, abs=1e-12)
    no = S.open_set_scores(sets)  # no reject component: no r0, no rejection rates
    assert no.r0 == {} and no.auroc_r0 == {} and no.rejected == {} and no.rejected_train is None
    assert no.auroc_L["far"] == sc.auroc_L["far"]
    assert S.open_set_scores(sets, positive="far").auroc_L["in"] == 0.0
    assert S.open_set_scores({k: v.numpy() for k, v in sets.items()}, tau=5.0).auroc_L == sc.auroc_L


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.open_set_scores({}), "d_sets"),
        (lambda: S.open_set_scores([torch.zeros(3, 2)]), "d_sets"),
        (lambda: S.open_set_scores({"a": torch.zeros(3, 2), "b": torch.zeros(3, 4)}), "d_sets"),
        (lambda: S.open_set_scores({"a": torch.zeros(3, 2), "b": torch.full((3, 2), float("nan"))}), "d_sets"),
        (lambda: S.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, positive="c"), "positive"),
        (lambda: S.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, tau=float("inf")), "tau"),
        (lambda: S.open_set_scores({"a": torch.zeros(3, 2), "b": torch.ones(3, 2)}, d_train=torch.zeros(3)), "d_train"),
    ],
)
def test_open_set_scores_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_volume_ablation_and_reject_variants():
    r = S.digit_open_set_run(1, mlp_epochs=20, proto_epochs=20, more_taus=(30.0,), tau_quantile=0.05)
    assert set(r.ablation_auroc) == set(S.VOLUME_ABLATION.values()) == set(r.ablation_fpr95)
    for d in (*r.ablation_auroc.values(), *r.ablation_fpr95.values()):
        assert set(d) == set(S.OOD_SETS) and all(0.0 <= v <= 1.0 for v in d.values())
    assert 0.0 <= r.accuracy["pixel Gaussian, per-class, no log-det"] <= 1.0
    assert set(r.reject_variants) == {"d0 = 30", "d0 from training L (5% quantile)"}
    v = r.reject_variants["d0 from training L (5% quantile)"]
    assert np.isfinite(v["tau"]) and set(v["auroc"]) == set(S.OOD_SETS) and 0.0 <= v["accuracy"] <= 1.0
    # the main run is the same with or without the variants
    plain = S.digit_open_set_run(1, mlp_epochs=20, proto_epochs=20)
    assert plain.auroc == r.auroc and plain.reject_variants == {}
    with pytest.raises(ValueError, match="^tau_quantile "):
        S.digit_open_set_run(1, tau_quantile=1.5)
    with pytest.raises(ValueError, match="^more_taus "):
        S.digit_open_set_run(1, more_taus=(np.inf,))
