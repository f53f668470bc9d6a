"""Chapter 8's experiment: EM-like vs SGD training of one attention head on the sticky chain.

What belongs to the experiment rather than to the trainer (``iemlib.attention.trainer``):

* the two readings of the paper, :data:`PAPER` (our reading of its words) and :data:`PUBLIC` (the
  authors' public implementation);
* the controls: the chain x bias 2 x 2, the least-squares and free readings of the M-step
  (chapter 8b), and the 4 x 4 learning-rate grid, listed by :func:`control_runs`;
* the archive of the control runs. They are 120 runs of 1000 steps on a 1999-position sequence:
  about 21 minutes on two CPU cores, more than the book's time budget allows a notebook. They are
  therefore trained by ``bench/ch08_controls.py`` and their scalar results and loss curves are
  stored in ``iemlib/data/em_vs_sgd_controls.npz``, which ships with the package (so it is there on
  Colab too). The notebooks do not take the file on trust: every time they run, they retrain a
  subset of the archived runs live and check with :func:`compare_runs` that the live and the
  archived numbers agree;
* the summaries the chapter prints: :func:`summarize` (Table 1's quantities per seed) and
  :func:`steps_to_reach`.

What the archive keeps of a :class:`~iemlib.attention.trainer.Result`: the run list and the
configurations, the training-loss curve of every run (float32), every final and held-out scalar,
the Bayes filter's scores, the mechanism probes, ``kappa`` and the divergence flags. It leaves out
what is large and only needed for the live runs' figures: predictive distributions, recorded
value vectors, weights, and the accuracy and entropy curves (empty arrays in the loaded result).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .._validation import as_numpy, check_int, check_positive
from ..attention.reference import ReferenceRun, run_reference
from ..attention.trainer import (
    SEEDS, BayesScores, Checkpoints, Config, FinalScores, HeldOutScores, Probes, Result, train,
)
from ..markov import bayes_filter_predictive, make_dataset, transition_mle
from ..metrics import kl_divergence
from ..runtime import single_threaded

__all__ = [
    "PAPER",
    "PUBLIC",
    "PAPER_NOBIAS",
    "PUBLIC_BIAS",
    "LEAST_SQUARES",
    "FREE_VALUES",
    "GRID_VALUE",
    "GRID_ROUTING",
    "grid_name",
    "grid_config",
    "grid_runs",
    "control_runs",
    "save_result",
    "load_result",
    "archive_path",
    "load_controls",
    "BUDGETS",
    "BUDGET_SETS",
    "budget_runs",
    "budget_archive_path",
    "load_budget",
    "BudgetSummary",
    "summarize_budgets",
    "CountFitMargin",
    "count_fit_margin",
    "CPU_TOLERANCE",
    "comparison_tolerance",
    "RunComparison",
    "compare_runs",
    "Summary",
    "summarize",
    "steps_to_reach",
    "SpeedComparison",
    "time_against_reference",
]

#: Our reading of the paper's words: the chain that reproduces 1.8833 nats, the bias ``b`` of
#: eq. 7, one E-like pass per step whose ``alpha, u`` serve both the M-like value update and
#: the small SGD step (§7.2's list). Learning rates and initialization: the public code's.
PAPER = Config(name="paper reading")
#: The authors' public implementation: diagonal inside the row normalization, no bias.
PUBLIC = Config(name="public code", include_diagonal_in_normalization=True, bias=False)

#: The two mixed cells of the chain x bias 2 x 2.
PAPER_NOBIAS = replace(PAPER, name="paper chain, no bias", bias=False)
PUBLIC_BIAS = replace(PUBLIC, name="public chain, bias", bias=True)
#: The least-squares and free readings of the M-step at the matched step 0.1 kappa (chapter 8b).
LEAST_SQUARES = replace(PAPER, name="least squares, matched", value_map="least_squares", match_effective_step=True)
FREE_VALUES = replace(PAPER, name="free values, matched", values="free", match_effective_step=True)

#: The value step eta_V (on W_V) and the routing step eta_R (on W_Q, W_K, W_O, b) of the grid.
GRID_VALUE: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
GRID_ROUTING: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)


def grid_name(value_step: float, routing_step: float) -> str:
    """Name of the grid cell with SGD rate vector ``(eta_V, eta_R)``, e.g. ``"rates (0.1, 0.03)"``."""
    return f"rates ({value_step:g}, {routing_step:g})"


def grid_config(value_step: float, routing_step: float) -> Config:
    """Plain SGD on the paper-reading configuration with ``eta_V`` on ``W_V`` and ``eta_R`` elsewhere.

    With the gradient map (eq. 31), the EM-like schedule with value step ``eta_V`` and routing
    step ``eta_R`` is this run, iterate for iterate; so one run per seed covers both schedules.

    Parameters
    ----------
    value_step, routing_step : positive rates.

    Returns
    -------
    Config
    """
    v = check_positive(value_step, "value_step")
    r = check_positive(routing_step, "routing_step")
    return replace(PAPER, name=grid_name(v, r), lr_sgd=r, lr_sgd_value=v)


def grid_runs(result: Result, value_step: float, routing_step: float) -> list[int]:
    """Indices of the runs of grid cell ``(eta_V, eta_R)`` in ``result``, in seed order.

    The cells ``(0.01, 0.01)`` and ``(0.1, 0.01)`` are the paper-reading configuration's SGD
    and EM-like runs (the same rate vectors), not separate grid runs.

    Parameters
    ----------
    result : a result holding the grid (the archive).
    value_step, routing_step : the cell.

    Returns
    -------
    list of int
    """
    v, r = float(value_step), float(routing_step)
    if (v, r) == (PAPER.lr_sgd, PAPER.lr_sgd):
        idx = result.select(PAPER.name, "sgd")
    elif (v, r) == (PAPER.lr_value, PAPER.lr_routing):
        idx = result.select(PAPER.name, "em")
    else:
        idx = result.select(grid_name(v, r), "sgd")
    if not idx:
        raise ValueError(f"no runs of grid cell ({v:g}, {r:g}) in the result")
    return idx


def control_runs() -> list[tuple[Config, tuple[str, ...]]]:
    """Every run the archive holds, as ``train``'s ``(Config, schedules)`` list.

    The two main configurations and the two mixed ones, both schedules; the matched least-squares
    and free readings (EM-like); every grid cell not already one of the main rate vectors (SGD).
    """
    both = ("em", "sgd")
    runs: list[tuple[Config, tuple[str, ...]]] = [
        (PAPER, both), (PUBLIC, both), (PAPER_NOBIAS, both), (PUBLIC_BIAS, both),
        (LEAST_SQUARES, ("em",)), (FREE_VALUES, ("em",)),
    ]
    main = {(PAPER.lr_sgd, PAPER.lr_sgd), (PAPER.lr_value, PAPER.lr_routing)}
    runs += [(grid_config(v, r), ("sgd",)) for v in GRID_VALUE for r in GRID_ROUTING if (v, r) not in main]
    return runs


# ------------------------------------------------------------------------------------------------
# the archive
# ------------------------------------------------------------------------------------------------
#: Config fields renamed since archives were written: old name -> new name (read back under the new).
_RENAMED_CONFIG_FIELDS: dict[str, str] = {}
_GROUPS = {"final": FinalScores, "heldout": HeldOutScores, "bayes": BayesScores, "probes": Probes}


def _config_to_json(c: Config) -> dict:
    d = dataclasses.asdict(c)
    d["seeds"] = list(d["seeds"])
    return d


def _config_from_json(d: dict) -> Config:
    d = {_RENAMED_CONFIG_FIELDS.get(k, k): v for k, v in d.items()}
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"archive: configuration fields {sorted(unknown)} are not Config fields")
    return Config(**{**d, "seeds": tuple(d["seeds"])})


def save_result(result: Result, path: str | Path) -> Path:
    """Write the archived part of ``result`` (see the module docstring) to ``path`` (``.npz``).

    Parameters
    ----------
    result : a :class:`~iemlib.attention.trainer.Result`.
    path : the file to write (its folder is created).

    Returns
    -------
    Path
    """
    if not isinstance(result, Result):
        raise ValueError(f"result must be an iemlib.attention.trainer.Result, got {type(result).__name__}")
    p = Path(path)
    meta = {
        "runs": [list(r) for r in result.runs],
        "configs": {k: _config_to_json(c) for k, c in result.configs.items()},
        "seconds": result.seconds, "device": result.device,
    }
    arrays = {
        "loss": result.loss.astype(np.float32),
        "value_steps": result.value_steps, "value_index": result.value_index,
        "diverged": result.diverged, "probe_steps": result.probe_steps, "kappa": result.kappa,
    }
    for group in _GROUPS:
        for f in dataclasses.fields(getattr(result, group)):
            if f.name != "probs":
                arrays[f"{group}.{f.name}"] = np.asarray(getattr(getattr(result, group), f.name))
    if result.checkpoints is not None:  # every field of the checkpoints (scalars per run and step)
        for f in dataclasses.fields(Checkpoints):
            arrays[f"checkpoints.{f.name}"] = np.asarray(getattr(result.checkpoints, f.name))
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(p, meta=np.array(json.dumps(meta)), **arrays)
    return p


def load_result(path: str | Path) -> Result:
    """Read an archive written by :func:`save_result` back into a :class:`~iemlib.attention.trainer.Result`.

    Parameters
    ----------
    path : the ``.npz`` file.

    Returns
    -------
    Result
        With empty accuracy and entropy curves, predictive distributions and value recordings, and
        no parameters (what the archive leaves out).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no archive at {p}")
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        groups: dict[str, dict[str, np.ndarray]] = {g: {} for g in (*_GROUPS, "checkpoints")}
        for k in z.files:
            if "." in k:
                g, name = k.split(".", 1)
                groups[g][name] = z[k].astype(np.float64) if z[k].dtype.kind == "f" else z[k]
        loss = z["loss"].astype(np.float64)
        value_steps, value_index = z["value_steps"], z["value_index"]
        diverged, probe_steps, kappa = z["diverged"], z["probe_steps"], z["kappa"]
    configs = {k: _config_from_json(d) for k, d in meta["configs"].items()}
    runs = [(str(c), int(s), str(sch)) for c, s, sch in meta["runs"]]
    R = len(runs)
    c0 = next(iter(configs.values()))
    no_probs = np.empty((R, 0, c0.n_states))
    return Result(
        runs=runs, configs=configs, loss=loss,
        acc=np.empty((R, 0)), entropy=np.empty((R, 0)), final=FinalScores(**groups["final"]),
        probs=no_probs, value_steps=value_steps,
        values=np.empty((R, 0, 0, c0.d_v)), value_index=value_index, diverged=diverged,
        params=None, seconds=float(meta["seconds"]), device=str(meta["device"]),
        heldout=HeldOutScores(**groups["heldout"], probs=no_probs), bayes=BayesScores(**groups["bayes"]),
        probe_steps=probe_steps, probes=Probes(**groups["probes"]), kappa=kappa,
        checkpoints=Checkpoints(**groups["checkpoints"]) if groups["checkpoints"] else None,
    )


def archive_path() -> Path:
    """Where the shipped archive lives: ``iemlib/data/em_vs_sgd_controls.npz``."""
    return Path(str(resources.files("iemlib") / "data" / "em_vs_sgd_controls.npz"))


def load_controls() -> Result:
    """The archived control runs of chapter 8 (trained by ``bench/ch08_controls.py``)."""
    return load_result(archive_path())


# ------------------------------------------------------------------------------------------------
# the budget sweep: the same runs trained to 5000 steps, scored after 1000, 2000 and 5000
# ------------------------------------------------------------------------------------------------
#: The training budgets (numbers of updates) of the budget sweep.
BUDGETS: tuple[int, ...] = (1000, 2000, 5000)

#: The run sets of the budget sweep, each archived in its own file: the paper-reading chain's two
#: Table 1 schedules (``"paper"``), plain SGD with one rate 0.1 on that chain (``"paper_sgd01"``),
#: the public code's two schedules (``"public"``).
BUDGET_SETS: tuple[str, ...] = ("paper", "paper_sgd01", "public")


def budget_runs(run_set: str = "paper", n_steps: int | None = None) -> list[tuple[Config, tuple[str, ...]]]:
    """The runs of one set of the budget sweep, as ``train``'s ``(Config, schedules)`` list.

    Every configuration is the chapter's, with ``n_steps`` steps; ``train`` is called with the
    budgets up to ``n_steps`` as ``checkpoints``, so that one run gives every budget (the model
    after 1000 of its updates is the model a 1000-step run ends with).

    Parameters
    ----------
    run_set : ``"paper"`` (the paper reading, EM-like and SGD), ``"paper_sgd01"`` (the paper
        reading, SGD with one rate 0.1) or ``"public"`` (the public code, EM-like and SGD).
    n_steps : the longest budget trained (default ``max(BUDGETS)``).

    Returns
    -------
    list of ``(Config, schedules)``
    """
    n = max(BUDGETS) if n_steps is None else check_int(n_steps, "n_steps", minimum=1)
    sets = {
        "paper": [(PAPER, ("em", "sgd"))],
        "paper_sgd01": [(grid_config(0.1, 0.1), ("sgd",))],
        "public": [(PUBLIC, ("em", "sgd"))],
    }
    if run_set not in sets:
        raise ValueError(f"run_set must be one of {BUDGET_SETS}, got {run_set!r}")
    return [(replace(c, n_steps=n), sch) for c, sch in sets[run_set]]


def budget_archive_path(run_set: str = "paper") -> Path:
    """Where a set of the budget sweep is archived: ``iemlib/data/em_vs_sgd_budget_<set>.npz``."""
    if run_set not in BUDGET_SETS:
        raise ValueError(f"run_set must be one of {BUDGET_SETS}, got {run_set!r}")
    return Path(str(resources.files("iemlib") / "data" / f"em_vs_sgd_budget_{run_set}.npz"))


def load_budget(run_set: str = "paper") -> Result:
    """The archived budget sweep of one run set (trained by ``bench/ch08_budget.py``)."""
    return load_result(budget_archive_path(run_set))


@dataclass(frozen=True, eq=False)
class BudgetSummary:
    """Both schedules of one configuration after each budget (:func:`summarize_budgets`); every array
    is ``(n_budgets, n_seeds)``.

    Attributes
    ----------
    budgets
        ``(n_budgets,)`` numbers of updates. seeds : ``(n_seeds,)``.
    loss_em, loss_sgd, heldout_loss_em, heldout_loss_sgd
        training and held-out loss (nats).
    kl_em_sgd, heldout_kl_em_sgd
        mean ``KL(EM || SGD)`` of the seed's two models on its training and held-out sequence.
    """

    budgets: np.ndarray
    seeds: np.ndarray
    loss_em: np.ndarray
    loss_sgd: np.ndarray
    heldout_loss_em: np.ndarray
    heldout_loss_sgd: np.ndarray
    kl_em_sgd: np.ndarray
    heldout_kl_em_sgd: np.ndarray


def summarize_budgets(result: Result, config: str) -> BudgetSummary:
    """Table 1's losses and KL after every checkpoint of ``result`` for one configuration.

    Parameters
    ----------
    result : trained with ``checkpoints`` (the budget archive), both schedules of ``config``.
    config : the configuration's name.

    Returns
    -------
    BudgetSummary
    """
    ck = result.checkpoints
    if ck is None:
        raise ValueError("result has no checkpoints (train with checkpoints=..., or load a budget archive)")
    em, sgd = result.select(config, "em"), result.select(config, "sgd")
    if not em or len(em) != len(sgd):
        raise ValueError(f"config {config!r} needs both schedules for every seed in the result")
    return BudgetSummary(
        budgets=ck.steps, seeds=np.array([result.runs[i][1] for i in em]),
        loss_em=ck.loss[em].T, loss_sgd=ck.loss[sgd].T,
        heldout_loss_em=ck.heldout_loss[em].T, heldout_loss_sgd=ck.heldout_loss[sgd].T,
        kl_em_sgd=ck.kl_em_sgd[em].T, heldout_kl_em_sgd=ck.heldout_kl_em_sgd[em].T,
    )


# ------------------------------------------------------------------------------------------------
# the memorization margin
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CountFitMargin:
    """How far below the true chain's Bayes filter a predictor gets that fits only the sampling of one
    sequence's transition counts (:func:`count_fit_margin`); arrays ``(n_seeds,)``, losses in nats.

    Attributes
    ----------
    seeds
        the data seeds.
    bayes_loss
        the exact Bayes filter of the true chain on the training sequence.
    count_fit_loss
        the same filter (same emission model) with the chain's maximum-likelihood estimate
        from that sequence's transition counts (:func:`iemlib.markov.transition_mle`).
    """

    seeds: np.ndarray
    bayes_loss: np.ndarray
    count_fit_loss: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        """``bayes_loss - count_fit_loss``: what fitting the counts' sampling alone gains."""
        return self.bayes_loss - self.count_fit_loss


def count_fit_margin(config: Config, seeds: Sequence[int] | None = None) -> CountFitMargin:
    """The memorization margin of ``config``'s training sequences.

    A model whose training loss lies between ``count_fit_loss`` and ``bayes_loss`` may have learnt
    no more than the transition frequencies of its one sequence; one below ``count_fit_loss`` has
    fitted more of that sequence than its transition counts (its noise).

    Parameters
    ----------
    config : the chain, sequence length and input dimension.
    seeds : the data seeds (default ``config.seeds``).

    Returns
    -------
    CountFitMargin
    """
    P = config.transition_matrix()
    seeds = tuple(config.seeds if seeds is None else seeds)
    bayes, fit = [], []
    for seed in seeds:
        d = make_dataset(P, config.seq_len, config.d_x, int(seed))
        y = d.y.numpy()
        states = np.concatenate([d.y_prev.numpy()[:1], y])
        for Q, out in ((P, bayes), (transition_mle(states, config.n_states), fit)):
            pred = bayes_filter_predictive(Q, d.mu, d.x)
            out.append(-np.log(pred[np.arange(len(y)), y]).mean())
    return CountFitMargin(seeds=np.array(seeds), bayes_loss=np.array(bayes), count_fit_loss=np.array(fit))


# ------------------------------------------------------------------------------------------------
# live runs against the archive
# ------------------------------------------------------------------------------------------------
#: Tolerance (nats) of a CPU-trained float32 run against the CPU-trained archive: the check chapter 8
#: has always made. The trainer reproduces the archive exactly on the machine that wrote it; another
#: CPU, BLAS or batch composition can differ in the last float32 bits of a loss (measured: 0.0 on an
#: x86 server with torch 2.11, 4.8e-7 when the runs are grouped differently over worker threads).
CPU_TOLERANCE: float = 1e-4

_FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def comparison_tolerance(live_device: str, archived_device: str, *, n_steps: int, n_positions: int,
                         n_classes: int) -> float:
    """The tolerance (nats) at which :func:`compare_runs` checks float32 loss curves.

    Both trained on a CPU: :data:`CPU_TOLERANCE` (1e-4), as before the device rule.

    Otherwise (a GPU on either side) the two computations reduce the same float32 numbers in
    different orders, and the tolerance is derived from that:

    * a float32 sum of ``n`` terms taken in two orders differs, with rounding errors of random
      sign, by about ``sqrt(n) u`` relative to its size, ``u = 2^-24`` the unit roundoff; the
      longest reductions of a training step (softmax denominators, the gradient sums over queries
      and keys, the mean loss) run over the ``N = n_positions`` positions, so one step's update and
      one loss value differ by a relative ``sqrt(N) u``;
    * the runs are stable (a step's difference is carried forward, neither damped nor amplified
      much), so over ``n_steps`` steps the independent per-step differences add up like a random
      walk, to ``sqrt(n_steps) sqrt(N) u`` relative;
    * the loss is of the order of its start, ``log C`` nats (``C = n_classes``), and we allow four
      standard deviations of that walk:

      ``tol = 4 sqrt(n_steps * N) u log C``, and never less than :data:`CPU_TOLERANCE`.

    For chapter 8's runs (1000 steps, N = 1999, C = 8) that is 7.0e-4 nats; for chapter 8b's
    100-step prefixes 2.2e-4. Float32 matrix products on CUDA are kept in full precision while
    training (no TF32, whose 10-bit mantissa the bound does not cover).

    The bound assumes no damping of a step's difference; measured, the runs damp them. On an NVIDIA
    H200 (torch 2.11, CUDA 13) chapter 8's twenty main runs differed from the CPU-trained archive by
    at most 7.2e-7 nats (a few float32 ulps of the loss), at step 0 as at step 999; chapter 8b's
    prefixes by 7.2e-7; so the derived tolerance holds with a margin of about 1000.

    Parameters
    ----------
    live_device, archived_device : where each side was trained (``Result.device``).
    n_steps : the compared steps; n_positions : N; n_classes : C.

    Returns
    -------
    float
    """
    n, N, C = (check_int(v, k, minimum=m) for v, k, m in
               ((n_steps, "n_steps", 0), (n_positions, "n_positions", 1), (n_classes, "n_classes", 2)))
    if str(live_device).split(":")[0] == "cpu" and str(archived_device).split(":")[0] == "cpu":
        return CPU_TOLERANCE
    return max(CPU_TOLERANCE, 4.0 * math.sqrt(n * N) * _FLOAT32_UNIT_ROUNDOFF * math.log(C))


@dataclass(frozen=True)
class RunComparison:
    """Live runs against archived ones (:func:`compare_runs`); differences in nats.

    Attributes
    ----------
    n_runs
        runs compared. n_prefix : how many of them were compared as prefixes (a live run
        shorter than the archived one).
    max_curve
        largest absolute difference of any training-loss point.
    max_final, max_heldout
        of the final training loss and the held-out loss, over the full-length
        runs (``nan`` when there are none).
    tol
        the tolerance applied (:func:`comparison_tolerance` unless given).
    live_device, archived_device
        where each side was trained.
    agree
        every difference ``<= tol`` and every final loss finite.
    """

    n_runs: int
    n_prefix: int
    max_curve: float
    max_final: float
    max_heldout: float
    tol: float
    live_device: str
    archived_device: str
    agree: bool

    @property
    def worst(self) -> float:
        """The largest of the finite differences."""
        return max([self.max_curve] + [v for v in (self.max_final, self.max_heldout) if np.isfinite(v)])


def _prefix_configs(live: Result, archived: Result, shared: list[tuple[str, int, str]]) -> set[str]:
    """Configurations whose live runs are shorter prefixes of the archived ones; raise on any other difference."""
    prefix = set()
    for name in {r[0] for r in shared}:
        # runs are matched by (name, seed, schedule): which seeds a configuration lists does not matter
        a, b = replace(live.configs[name], seeds=archived.configs[name].seeds), archived.configs[name]
        if a == b:
            continue
        if a.n_steps < b.n_steps and replace(b, n_steps=a.n_steps) == a:
            prefix.add(name)
        else:
            raise ValueError(f"configuration {name!r} differs between the live run and the archive")
    return prefix


def compare_runs(live: Result, archived: Result, runs: Sequence[tuple[str, int, str]] | None = None,
                 *, tol: float | None = None) -> RunComparison:
    """Check live runs against the archive: the largest absolute difference, over the runs both
    hold (or ``runs``), of the training-loss curve, the final training loss and the held-out loss.

    A live configuration may differ from the archived one in the seeds it lists, and in ``n_steps``
    (fewer steps): the live run is then a prefix of the archived one, and only the first
    ``n_steps`` points of the curve are compared.

    The check is device-aware: runs trained on the CPU are held to :data:`CPU_TOLERANCE` against
    the CPU-trained archive; runs trained on CUDA to the float32 tolerance of
    :func:`comparison_tolerance` (derived there), for the number of steps compared.

    Parameters
    ----------
    live, archived : results of :func:`~iemlib.attention.train` / :func:`load_result`.
    runs : the ``(config, seed, schedule)`` runs to compare (default: every run both hold).
    tol : the tolerance in nats; ``None`` derives it from the devices.

    Returns
    -------
    RunComparison

    Raises
    ------
    ValueError
        When no run is shared, or a run's configuration differs otherwise.
    """
    shared = [r for r in live.runs if r in set(archived.runs)] if runs is None else list(runs)
    if not shared:
        raise ValueError("live and archived results share no run")
    prefix = _prefix_configs(live, archived, shared)
    curve, final, held = 0.0, [], []
    n = live.loss.shape[1]
    for r in shared:
        i, j = live.runs.index(r), archived.runs.index(r)
        curve = max(curve, float(np.abs(live.loss[i] - archived.loss[j, :n]).max(initial=0.0)))
        if r[0] not in prefix:
            final.append(abs(live.final.loss[i] - archived.final.loss[j]))
            held.append(abs(live.heldout.loss[i] - archived.heldout.loss[j]))
    c0 = live.configs[shared[0][0]]
    t = (comparison_tolerance(live.device, archived.device, n_steps=n, n_positions=c0.seq_len - 1,
                              n_classes=c0.n_states) if tol is None else check_positive(tol, "tol"))
    max_final = float(np.max(final)) if final else float("nan")
    max_held = float(np.nanmax(held, initial=0.0)) if held else float("nan")
    worst = max([curve] + [v for v in (max_final, max_held) if np.isfinite(v)])
    return RunComparison(
        n_runs=len(shared), n_prefix=sum(r[0] in prefix for r in shared), max_curve=curve,
        max_final=max_final, max_heldout=max_held, tol=t, live_device=live.device,
        archived_device=archived.device, agree=bool(worst <= t and all(np.isfinite(v) for v in final)),
    )


# ------------------------------------------------------------------------------------------------
# summaries
# ------------------------------------------------------------------------------------------------
def steps_to_reach(curve: np.ndarray, level: float) -> int | None:
    """First step (0-based) at which ``curve <= level``.

    Parameters
    ----------
    curve : ``(n,)`` a loss curve; level : the level to reach.

    Returns
    -------
    int or None
        ``None`` if the curve never reaches the level.
    """
    c = as_numpy(curve, "curve", ndim=1)
    hit = np.nonzero(c <= level)[0]
    return int(hit[0]) if hit.size else None


@dataclass(frozen=True, eq=False)
class Summary:
    """Table 1's quantities for one configuration, one entry per seed (:func:`summarize`).

    Attributes
    ----------
    seeds
        the seeds.
    loss_em, loss_sgd, acc_em, acc_sgd, entropy_em, entropy_sgd
        final training scores per schedule.
    kl_em_sgd
        mean ``KL(EM || SGD)`` of the final predictive distributions (NaN for a result read
        from an archive, which keeps none).
    em_steps_to_sgd_final
        steps the EM-like run takes to reach its seed's final SGD loss (NaN: never).
    min_entropy
        the chain's entropy rate.
    heldout_loss_em, heldout_loss_sgd, heldout_acc_em, heldout_acc_sgd, heldout_entropy_em,
    heldout_entropy_sgd, heldout_kl_em_sgd : the same on the held-out sequence.
    bayes_train_loss, bayes_train_acc, bayes_heldout_loss, bayes_heldout_acc : the Bayes filter's.
    """

    seeds: np.ndarray
    loss_em: np.ndarray
    loss_sgd: np.ndarray
    acc_em: np.ndarray
    acc_sgd: np.ndarray
    entropy_em: np.ndarray
    entropy_sgd: np.ndarray
    kl_em_sgd: np.ndarray
    em_steps_to_sgd_final: np.ndarray
    min_entropy: np.ndarray
    heldout_loss_em: np.ndarray
    heldout_loss_sgd: np.ndarray
    heldout_acc_em: np.ndarray
    heldout_acc_sgd: np.ndarray
    heldout_entropy_em: np.ndarray
    heldout_entropy_sgd: np.ndarray
    heldout_kl_em_sgd: np.ndarray
    bayes_train_loss: np.ndarray
    bayes_train_acc: np.ndarray
    bayes_heldout_loss: np.ndarray
    bayes_heldout_acc: np.ndarray


def _pairwise_kl(probs: np.ndarray, em: list[int], sgd: list[int]) -> np.ndarray:
    """``KL(p_em || p_sgd)`` per seed, NaN when the distributions are absent or not finite."""
    if probs.ndim != 3 or probs.shape[1] == 0 or not np.isfinite(probs[em + sgd]).all():
        return np.full(len(em), np.nan)
    return np.array([kl_divergence(probs[i], probs[j]) for i, j in zip(em, sgd)])


def summarize(result: Result, config: str) -> Summary:
    """Per-seed Table 1 quantities for one configuration.

    Parameters
    ----------
    result : holds both schedules of every seed of ``config``.
    config : the configuration's name.

    Returns
    -------
    Summary
    """
    em, sgd = result.select(config, "em"), result.select(config, "sgd")
    if not em or not sgd or len(em) != len(sgd):
        raise ValueError(f"config {config!r} needs both schedules for every seed in the result")
    f, h, bayes = result.final, result.heldout, result.bayes
    reach = [steps_to_reach(result.loss[i], f.loss[j]) for i, j in zip(em, sgd)]
    return Summary(
        seeds=np.array([result.runs[i][1] for i in em]),
        loss_em=f.loss[em], loss_sgd=f.loss[sgd], acc_em=f.acc[em], acc_sgd=f.acc[sgd],
        entropy_em=f.entropy[em], entropy_sgd=f.entropy[sgd],
        kl_em_sgd=_pairwise_kl(result.probs, em, sgd),
        em_steps_to_sgd_final=np.array([np.nan if r is None else r for r in reach], dtype=float),
        min_entropy=np.full(len(em), result.configs[config].min_entropy()),
        heldout_loss_em=h.loss[em], heldout_loss_sgd=h.loss[sgd],
        heldout_acc_em=h.acc[em], heldout_acc_sgd=h.acc[sgd],
        heldout_entropy_em=h.entropy[em], heldout_entropy_sgd=h.entropy[sgd],
        heldout_kl_em_sgd=_pairwise_kl(h.probs, em, sgd),
        bayes_train_loss=bayes.train_loss[em], bayes_train_acc=bayes.train_acc[em],
        bayes_heldout_loss=bayes.heldout_loss[em], bayes_heldout_acc=bayes.heldout_acc[em],
    )


# ------------------------------------------------------------------------------------------------
# speed: the batched trainer against the per-seed reference loop (the appendix, bench/em_vs_sgd_speed.py)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpeedComparison:
    """The batched trainer timed against a per-seed loop on the same work (:func:`time_against_reference`).

    Attributes
    ----------
    n_seeds, n_steps
        the work: ``n_seeds`` seeds x 2 schedules x ``n_steps`` steps of :data:`PUBLIC`.
    threads
        the thread count of both sides (one torch and one BLAS thread each).
    seconds_trainer
        wall time of the trainer, the mean of the runs before and after the reference.
    seconds_reference
        wall time of the reference loop.
    max_loss_difference
        largest ``|loss(trainer) - loss(reference)|`` over every step, seed and
        schedule (float32 rounding: the two compute the same iterates).
    trainer
        the trainer's :class:`~iemlib.attention.trainer.Result` (of its first timing).
    reference
        the reference's runs, one per seed.
    """

    n_seeds: int
    n_steps: int
    threads: int
    seconds_trainer: float
    seconds_reference: float
    max_loss_difference: float
    trainer: Result
    reference: tuple[ReferenceRun, ...]

    @property
    def ratio(self) -> float:
        """Trainer time over reference time (below one: the trainer is faster)."""
        return self.seconds_trainer / self.seconds_reference

    @property
    def speedup(self) -> float:
        """Reference time over trainer time."""
        return self.seconds_reference / self.seconds_trainer

    def ms_per_run_step(self, side: str) -> float:
        """Milliseconds per run-step of ``side`` (``"trainer"`` or ``"reference"``)."""
        if side not in ("trainer", "reference"):
            raise ValueError(f"side must be 'trainer' or 'reference', got {side!r}")
        sec = self.seconds_trainer if side == "trainer" else self.seconds_reference
        return 1e3 * sec / (2 * self.n_seeds * self.n_steps)


def time_against_reference(n_steps: int = 5, n_seeds: int = 1, *,
                           reference: Callable[[int, int], ReferenceRun] = run_reference) -> SpeedComparison:
    """Time the batched trainer against the per-seed reference loop, both on one thread.

    Same work on the same machine, back to back: the trainer (closed forms, batched, on one worker
    thread), the reference, the trainer again; both sides run inside
    :func:`iemlib.runtime.single_threaded`, so the ratio compares the algorithms, not how many
    cores each side happened to use. With ``n_steps`` below 1000 both sides do that fraction of the
    work (fixed costs, such as drawing the data and the trainer's Bayes filter, weigh more). The
    defaults take a few seconds on two cores (a reference step, one dense 1999 x 1999 attention
    forward and backward pass on one thread, takes about 0.2 s); ``bench/em_vs_sgd_speed.py`` runs
    the full work (1000 steps, five seeds).

    Parameters
    ----------
    n_steps : steps of each schedule.
    n_seeds : the first ``n_seeds`` of the five seeds.
    reference : ``reference(seed, n_steps) -> ReferenceRun``; default :func:`iemlib.attention.run_reference`
        (the bench can pass a wrapper around the authors' own script).

    Returns
    -------
    SpeedComparison
    """
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    n_seeds = check_int(n_seeds, "n_seeds", minimum=1)
    if n_seeds > len(SEEDS):
        raise ValueError(f"n_seeds must be at most {len(SEEDS)}, got {n_seeds}")
    cfg = replace(PUBLIC, n_steps=n_steps, seeds=SEEDS[:n_seeds])

    def ours() -> tuple[float, Result]:
        t0 = time.perf_counter()
        res = train(cfg, device="cpu", progress=False, probe_every=0, n_workers=1)
        return time.perf_counter() - t0, res

    with single_threaded():
        t1, res = ours()
        t0 = time.perf_counter()
        ref = tuple(reference(s, n_steps) for s in cfg.seeds)
        t_ref = time.perf_counter() - t0
        t2, _ = ours()
    diff = max(float(np.max(np.abs(res.loss[res.index(PUBLIC.name, r.seed, s)] - getattr(r, s + "_losses"))))
               for r in ref for s in ("em", "sgd"))
    return SpeedComparison(n_seeds=n_seeds, n_steps=n_steps, threads=1, seconds_trainer=0.5 * (t1 + t2),
                           seconds_reference=t_ref, max_loss_difference=diff, trainer=res, reference=ref)
