"""Chapter 11's study: Bayesian manifolds against the exact filter, realistic optimizers, depth.

What belongs to the study rather than to the concepts it uses (``iemlib.attention.probes``,
``iemlib.attention.optimizers``, ``iemlib.attention.deep``):

* the single-head runs (``SCHEDULES``, ``OPTIMIZER_SWEEP``, :func:`head_runs`): chapter 8's
  configuration (the paper reading) trained with Table 1's two schedules, the corners of chapter
  8's learning-rate grid, and SGD, SGD with momentum and Adam at swept rates, five seeds each,
  with the weights recorded at ``CHECKPOINTS``;
* the deep runs (``DEEP_CONFIG``, ``DEEP_VALUE_SCALE``): a scaled copy of the authors'
  ``--deep`` model, trained with AdamW and cosine decay as they do and with an EM-like variant;
* the archive of both, ``iemlib/data/manifolds_runs.npz``, written by ``bench/ch11_runs.py``
  (:func:`save_archive`, :func:`load_archive`), and the check of live runs against it
  (:func:`compare_head_runs`, the deep runs' loss curves);
* the probes of part 1 (:func:`probe_heads`).

The archived deep runs were trained while :func:`iemlib.attention.deep_forward` still formed the
attention weights explicitly in training; it now calls PyTorch's fused causal attention, which
computes the same function in another order of float32 operations: retrained, the first 10 steps
of two archived runs agree with the archive to 2.4e-7 nats (the chapter's check allows 1e-4).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import check_int, check_positive
from ..attention.optimizers import HeadRun, HeadTraining
from ..attention.probes import head_features, probe_targets, representation_dimension, ridge_probe
from ..attention.deep import DeepConfig, DeepRun
from ..attention.trainer import SEEDS, Config, RowParams
from ..markov import bayes_filter, make_dataset
from .em_vs_sgd import PAPER

__all__ = [
    "CONFIG",
    "CHECKPOINTS",
    "SCHEDULES",
    "OPTIMIZER_SWEEP",
    "head_runs",
    "DEEP_CONFIG",
    "DEEP_VALUE_SCALE",
    "deep_runs",
    "schedule_runs",
    "FEATURES",
    "TARGETS",
    "HeadProbes",
    "probe_heads",
    "archive_probes",
    "save_archive",
    "load_archive",
    "manifolds_archive_path",
    "Archive",
    "LiveCheck",
    "compare_head_runs",
    "DeepSpeed",
    "time_deep_against_torch",
]

#: The single heads' configuration: chapter 8's paper reading (1000 steps, N = 1999, seeds of Table 1).
CONFIG: Config = PAPER
#: Steps at which the single heads' weights are archived (0: the untrained head, the baseline).
CHECKPOINTS: tuple[int, ...] = (0, 10, 30, 100, 300, 1000)

#: Part 1: name -> SGD rate vector (value step on W_V, routing step on W_Q, W_K, W_O, b).
#: Table 1's schedules and the three other corners of chapter 8's grid.
SCHEDULES: dict[str, tuple[float, float]] = {
    "SGD (0.01, 0.01)": (0.01, 0.01),
    "EM-like (0.1, 0.01)": (0.1, 0.01),
    "corner (0.3, 0.01)": (0.3, 0.01),
    "corner (0.01, 0.3)": (0.01, 0.3),
    "corner (0.3, 0.3)": (0.3, 0.3),
}
#: Part 2: update rule -> swept rates (one rate on every weight). SGD's 0.01 and 0.3 are the
#: schedules above; with momentum 0.9 a rate moves like ten times that rate of SGD.
OPTIMIZER_SWEEP: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.1, 0.3),
    "momentum": (0.001, 0.01, 0.03),
    "adam": (0.001, 0.003, 0.01),
}


#: The authors' ``--deep`` model (d_model 64, 4 layers, 4 heads, FFN 256, T = 2000, AdamW 3e-4 with
#: cosine decay), scaled to fit two CPU cores: half the width (d_model 32, FFN 128), half the depth
#: (2 layers), the same 4 heads, a quarter of the sequence (T = 500) and 500 steps; the optimizer as
#: theirs. The chain is chapter 8's paper reading (theirs is the public code's).
DEEP_CONFIG: DeepConfig = DeepConfig(name="scaled deep", seq_len=500, d_model=32, n_layers=2, n_heads=4,
                                      d_ff=128, n_steps=500)
#: The EM-like variant's factor on every value projection's rate (chapter 8's 0.1 / 0.01).
DEEP_VALUE_SCALE: float = 10.0


def deep_runs(seeds: Sequence[int] = SEEDS) -> list[DeepRun]:
    """The deep runs: plain AdamW and the EM-like variant, each over ``seeds``."""
    return [DeepRun(int(s), v) for v in (1.0, DEEP_VALUE_SCALE) for s in seeds]


def head_runs(seeds: Sequence[int] = SEEDS) -> list[HeadRun]:
    """Every single-head run of the archive: ``SCHEDULES`` then ``OPTIMIZER_SWEEP``, each
    over ``seeds`` (a uniform rate that is already a schedule is listed once)."""
    runs: list[HeadRun] = []
    for v, r in SCHEDULES.values():
        runs += [HeadRun("sgd", r, int(s), value_lr=None if v == r else v) for s in seeds]
    for opt, rates in OPTIMIZER_SWEEP.items():
        for lr in rates:
            if opt == "sgd" and (lr, lr) in SCHEDULES.values():
                continue
            runs += [HeadRun(opt, lr, int(s)) for s in seeds]
    return runs


def schedule_runs(training: HeadTraining, name: str) -> list[int]:
    """Indices of the runs of schedule ``name`` (a key of ``SCHEDULES``), in seed order."""
    if name not in SCHEDULES:
        raise ValueError(f"name must be one of {list(SCHEDULES)}, got {name!r}")
    v, r = SCHEDULES[name]
    return training.select("sgd", r, v)


# ------------------------------------------------------------------------------------------------
# probes (part 1)
# ------------------------------------------------------------------------------------------------
#: What the probes read (HeadFeatures fields) and what they are asked for (ProbeTargets fields).
FEATURES: tuple[str, ...] = ("g", "values", "logits")
TARGETS: tuple[str, ...] = ("log_posterior", "entropy")


@dataclass(frozen=True, eq=False)
class HeadProbes:
    """Probes of single heads at their checkpoints (:func:`probe_heads`).

    Attributes
    ----------
    runs
        indices of the probed runs (into the training's runs).
    steps
        ``(K,)`` the checkpoints' steps.
    r2
        ``(len(runs), K, len(FEATURES), len(TARGETS))`` held-out R² of each ridge probe.
    r2_input
        ``(len(runs), len(TARGETS))`` R² of the same probe reading the raw input ``x_i``.
    pc_ratio
        ``(len(runs), K, 3)`` variance share of the first three principal components of
        ``g_i`` on the held-out sequence.
    n_components
        ``(len(runs), K)`` components needed for 90 % of ``g``'s variance.
    entropy_correlation
        ``(len(runs), K)`` ``|corr|`` of ``g``'s first component with the posterior entropy.
    attention_entropy
        ``(len(runs), K)`` the head's mean attention entropy on the held-out sequence.
    """

    runs: np.ndarray
    steps: np.ndarray
    r2: np.ndarray
    r2_input: np.ndarray
    pc_ratio: np.ndarray
    n_components: np.ndarray
    entropy_correlation: np.ndarray
    attention_entropy: np.ndarray

    def r2_of(self, feature: str, target: str) -> np.ndarray:
        """``(len(runs), K)`` the R² of one (feature, target) pair."""
        if feature not in FEATURES or target not in TARGETS:
            raise ValueError(f"feature must be in {FEATURES} and target in {TARGETS}")
        return self.r2[:, :, FEATURES.index(feature), TARGETS.index(target)]


def _sequences(config: Config, seed: int) -> tuple:
    P = config.transition_matrix()
    out = []
    for s in (seed, seed + config.heldout_offset):
        d = make_dataset(P, config.seq_len, config.d_x, s)
        out.append((d.x.numpy().astype(np.float64), probe_targets(bayes_filter(P, d.mu, d.x))))
    return tuple(out)


def probe_heads(training: HeadTraining, runs: Sequence[int] | None = None, *, ridge: float = 1e-3,
                steps: Sequence[int] | None = None) -> HeadProbes:
    """Ridge probes from each head's ``g_i``, values and logits to the filter's posterior.

    For every run and checkpoint: the head's representations on its training sequence and on
    the held-out one (:func:`iemlib.attention.head_features`); a ridge probe
    (:func:`iemlib.attention.ridge_probe`, which minimizes the penalized squared error) fitted on
    the training sequence and scored (R²) on the held-out one, for the centred log-posterior
    and the entropy; the principal-component dimension of ``g`` on the held-out sequence.

    Parameters
    ----------
    training : a :class:`~iemlib.attention.HeadTraining` with checkpoints (or the archive's).
    runs : which runs (default: all).
    ridge : the probes' penalty.
    steps : which checkpoints (default: all).

    Returns
    -------
    HeadProbes
    """
    if not isinstance(training, HeadTraining):
        raise ValueError(f"training must be a HeadTraining, got {type(training).__name__}")
    idx = list(range(len(training.runs))) if runs is None else [check_int(i, "runs", minimum=0) for i in runs]
    if any(i >= len(training.runs) for i in idx):
        raise ValueError(f"runs must index the training's {len(training.runs)} runs")
    ck = list(training.checkpoint_steps)
    st = ck if steps is None else list(steps)
    if not st or any(s not in ck for s in st):
        raise ValueError(f"steps must be checkpoints of the training, {ck}")
    kk = [ck.index(s) for s in st]
    check_positive(ridge, "ridge")
    R, K, cfg = len(idx), len(kk), training.config
    r2 = np.empty((R, K, len(FEATURES), len(TARGETS)))
    r2_in = np.empty((R, len(TARGETS)))
    pcr, ncomp = np.empty((R, K, 3)), np.empty((R, K), dtype=int)
    corr, aent = np.empty((R, K)), np.empty((R, K))
    cache: dict[int, tuple] = {}
    cp = training.checkpoints
    for a, i in enumerate(idx):
        seed = training.runs[i].random_state
        if seed not in cache:
            cache[seed] = _sequences(cfg, seed)
        (x_tr, t_tr), (x_ho, t_ho) = cache[seed]
        for c, tg in enumerate(TARGETS):
            r2_in[a, c] = ridge_probe(x_tr, getattr(t_tr, tg), x_ho, getattr(t_ho, tg), ridge=ridge).r2_test
        W = [w[i][kk] for w in cp]  # each (K, ...)
        f_tr, f_ho = head_features(x_tr, *W), head_features(x_ho, *W)
        for b in range(K):
            for fi, fe in enumerate(FEATURES):
                for c, tg in enumerate(TARGETS):
                    r2[a, b, fi, c] = ridge_probe(getattr(f_tr, fe)[b], getattr(t_tr, tg), getattr(f_ho, fe)[b],
                                                  getattr(t_ho, tg), ridge=ridge).r2_test
            dim = representation_dimension(f_ho.g[b], t_ho.entropy)
            pcr[a, b] = dim.explained_variance_ratio[:3]
            ncomp[a, b] = dim.n_components
            corr[a, b] = abs(dim.leading_correlation)
        aent[a] = f_ho.attention_entropy
    return HeadProbes(runs=np.array(idx), steps=np.array(st), r2=r2, r2_input=r2_in, pc_ratio=pcr,
                      n_components=ncomp, entropy_correlation=corr, attention_entropy=aent)


def archive_probes(training: HeadTraining) -> dict[str, HeadProbes]:
    """The probes the archive keeps: every checkpoint of the ``SCHEDULES`` runs
    (``"schedules"``), the last checkpoint of the other runs (``"optimizers"``)."""
    sched = [i for name in SCHEDULES for i in schedule_runs(training, name)]
    rest = [i for i in range(len(training.runs)) if i not in sched]
    out = {"schedules": probe_heads(training, sched)}
    if rest:
        out["optimizers"] = probe_heads(training, rest, steps=[int(training.checkpoint_steps[-1])])
    return out


# ------------------------------------------------------------------------------------------------
# the archive
# ------------------------------------------------------------------------------------------------
_HEAD_ARRAYS = ("loss", "final_loss", "heldout_loss", "bayes_loss", "bayes_heldout_loss", "checkpoint_steps",
                "probe_steps", "sign_agreement", "sign_agreement_centred", "dalpha", "dvalue", "score_cosine",
                "diverged")
_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b")


@dataclass(frozen=True, eq=False)
class Archive:
    """The archived runs of chapter 11 (:func:`load_archive`).

    Attributes
    ----------
    heads
        the single-head runs (a :class:`~iemlib.attention.HeadTraining`; loss curves float32).
    probes
        :func:`probe_heads` of the part-1 runs at every checkpoint and of the others at the
        last (a :class:`HeadProbes` per group, ``{"schedules": ..., "optimizers": ...}``).
    deep
        the deep runs (a :class:`~iemlib.attention.DeepTraining`), or ``None``.
    """

    heads: HeadTraining
    probes: dict[str, HeadProbes]
    deep: Any = None


def _config_json(c: Any) -> dict:
    d = dataclasses.asdict(c)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def save_archive(path: str | Path, heads: HeadTraining, probes: dict[str, HeadProbes], deep: Any = None) -> Path:
    """Write the single-head runs, their probes (and the deep runs) to ``path`` (``.npz``).

    Parameters
    ----------
    path : the file to write (its folder is created).
    heads : the single-head runs. probes : name -> :class:`HeadProbes`.
    deep : the deep runs, or ``None``.

    Returns
    -------
    Path
    """
    if not isinstance(heads, HeadTraining):
        raise ValueError(f"heads must be a HeadTraining, got {type(heads).__name__}")
    meta: dict[str, Any] = {
        "runs": [dataclasses.asdict(r) for r in heads.runs], "config": _config_json(heads.config),
        "seconds": heads.seconds, "device": heads.device,
    }
    arrays = {f"heads.{k}": np.asarray(getattr(heads, k)) for k in _HEAD_ARRAYS}
    arrays["heads.loss"] = heads.loss.astype(np.float32)
    for k in _PARAMS:
        arrays[f"heads.ckpt.{k}"] = getattr(heads.checkpoints, k).astype(np.float32)
    meta["probes"] = sorted(probes)
    for name, pr in probes.items():
        if not isinstance(pr, HeadProbes):
            raise ValueError(f"probes[{name!r}] must be a HeadProbes, got {type(pr).__name__}")
        for f in dataclasses.fields(HeadProbes):
            arrays[f"probes.{name}.{f.name}"] = np.asarray(getattr(pr, f.name))
    if deep is not None:
        from ..attention.deep import deep_to_arrays

        dmeta, darr = deep_to_arrays(deep)
        meta["deep"] = dmeta
        arrays.update({f"deep.{k}": v for k, v in darr.items()})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(p, meta=np.array(json.dumps(meta)), **arrays)
    return p


def load_archive(path: str | Path | None = None) -> Archive:
    """Read an archive written by :func:`save_archive` (default: the shipped one).

    Parameters
    ----------
    path : the ``.npz`` file, or ``None`` for :func:`manifolds_archive_path`.

    Returns
    -------
    Archive
    """
    p = manifolds_archive_path() if path is None else Path(path)
    if not p.is_file():
        raise ValueError(f"path: no archive at {p}")
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        a = {k: z[k] for k in z.files if k != "meta"}
    runs = tuple(HeadRun(**r) for r in meta["runs"])
    cfg = meta["config"]
    config = Config(**{**cfg, "seeds": tuple(cfg["seeds"])})
    h = {k: a[f"heads.{k}"] for k in _HEAD_ARRAYS}
    h = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in h.items()}
    ck = RowParams(*(a[f"heads.ckpt.{k}"].astype(np.float64) for k in _PARAMS))
    heads = HeadTraining(runs=runs, config=config, checkpoints=ck, seconds=float(meta["seconds"]),
                         device=str(meta["device"]), **h)
    probes = {name: HeadProbes(**{f.name: a[f"probes.{name}.{f.name}"] for f in dataclasses.fields(HeadProbes)})
              for name in meta.get("probes", [])}
    deep = None
    if "deep" in meta:
        from ..attention.deep import deep_from_arrays

        deep = deep_from_arrays(meta["deep"], {k[5:]: v for k, v in a.items() if k.startswith("deep.")})
    return Archive(heads=heads, probes=probes, deep=deep)


def manifolds_archive_path() -> Path:
    """Where the shipped archive lives: ``iemlib/data/manifolds_runs.npz``."""
    return Path(str(resources.files("iemlib") / "data" / "manifolds_runs.npz"))


# ------------------------------------------------------------------------------------------------
# live runs against the archive
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveCheck:
    """Live runs against archived ones (:func:`compare_head_runs`); differences in nats.

    Attributes
    ----------
    n_runs
        runs compared. n_steps : curve points compared (a prefix of the archived curves).
    max_curve
        largest absolute difference of any training-loss point.
    tol
        the tolerance. agree : ``max_curve <= tol``.
    """

    n_runs: int
    n_steps: int
    max_curve: float
    tol: float
    agree: bool


def compare_head_runs(live: HeadTraining, archived: HeadTraining, *, tol: float = 1e-4) -> LiveCheck:
    """Check live single-head runs against the archive: the largest difference of their
    training-loss curves over the steps the live runs made (a prefix of the archived runs).

    Parameters
    ----------
    live, archived : :class:`~iemlib.attention.HeadTraining` results; every live run must be in
        the archive, with the same configuration up to its step count.
    tol : the tolerance in nats (default: chapter 8's CPU tolerance).

    Returns
    -------
    LiveCheck
    """
    t = check_positive(tol, "tol")
    if replace(live.config, n_steps=archived.config.n_steps, seeds=archived.config.seeds) != archived.config:
        raise ValueError("live and archived configurations differ beyond their step counts and seeds")
    n = live.loss.shape[1]
    if n > archived.loss.shape[1]:
        raise ValueError("live runs are longer than the archived ones")
    worst = 0.0
    for i, r in enumerate(live.runs):
        if r not in archived.runs:
            raise ValueError(f"run {r} is not in the archive")
        j = archived.runs.index(r)
        worst = max(worst, float(np.abs(live.loss[i] - archived.loss[j, :n]).max()))
    return LiveCheck(n_runs=len(live.runs), n_steps=n, max_curve=worst, tol=t, agree=bool(worst <= t))


# ------------------------------------------------------------------------------------------------
# speed: the batched deep trainer against a plain nn.TransformerEncoder loop (bench/ch11_deep_speed.py)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepSpeed:
    """The batched deep trainer timed against a loop of ``nn.TransformerEncoder`` models
    (:func:`time_deep_against_torch`).

    Attributes
    ----------
    n_runs, n_steps
        the work (plain AdamW runs of ``DEEP_CONFIG``'s sizes, cosine over ``n_steps``).
    seconds_batched
        the batched trainer's training loop, the mean of a run before and after the reference.
    seconds_reference
        the reference loop's training steps.
    max_loss_difference
        largest ``|loss(batched) - loss(reference)|`` over every step and run (float32 rounding).
    device
        where both ran.
    """

    n_runs: int
    n_steps: int
    seconds_batched: float
    seconds_reference: float
    max_loss_difference: float
    device: str

    @property
    def speedup(self) -> float:
        """Reference time over batched time."""
        return self.seconds_reference / self.seconds_batched


def time_deep_against_torch(n_steps: int = 20, seeds: Sequence[int] = SEEDS, *, device: Any = None) -> DeepSpeed:
    """Train the same plain-AdamW deep runs with :func:`iemlib.attention.train_deep` (one batch) and
    with a Python loop over :class:`iemlib.attention.TorchReference` models (``torch.optim.AdamW``,
    ``CosineAnnealingLR``, ``clip_grad_norm_``), side by side: batched, reference, batched again, all
    on one thread on a CPU. Data, models and optimizers are made outside the timed loops on both
    sides.

    Parameters
    ----------
    n_steps : steps per run (the cosine schedule's length on both sides).
    seeds : the runs' seeds.
    device : :func:`iemlib.runtime.resolve_device`'s argument.

    Returns
    -------
    DeepSpeed
    """
    import contextlib
    import time

    import torch
    import torch.nn.functional as F

    from ..attention.deep import TorchReference, init_deep_params, train_deep
    from ..runtime import resolve_device, single_threaded

    n = check_int(n_steps, "n_steps", minimum=1)
    c = replace(DEEP_CONFIG, n_steps=n)
    runs = [DeepRun(int(s)) for s in seeds]
    if not runs:
        raise ValueError("seeds must not be empty")
    dev = resolve_device(device)
    P = c.transition_matrix()
    data = [make_dataset(P, c.seq_len, c.d_x, r.random_state) for r in runs]
    init = init_deep_params(c, [r.random_state for r in runs])
    ref = np.zeros((len(runs), n))

    def reference() -> float:
        # models, optimizers and schedules are built outside the timing, as train_deep's seconds
        # count its training loop only
        models = [TorchReference(c).load_run(init, i).to(dev) for i in range(len(runs))]
        opts = [torch.optim.AdamW(m.parameters(), lr=c.lr, weight_decay=c.weight_decay) for m in models]
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, n) for o in opts]
        xy = [(d.x[None].to(dev), d.y.to(dev)) for d in data]
        t0 = time.perf_counter()
        for i, (model, opt, sched) in enumerate(zip(models, opts, scheds)):
            x, y = xy[i]
            for step in range(n):
                opt.zero_grad()
                loss = F.cross_entropy(model(x)[0], y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip)
                opt.step()
                sched.step()
                ref[i, step] = loss.item()
        return time.perf_counter() - t0

    with single_threaded() if dev.type == "cpu" else contextlib.nullcontext():
        a = train_deep(runs, c, device=dev, progress=False)
        t_ref = reference()
        b = train_deep(runs, c, device=dev, progress=False)
    return DeepSpeed(n_runs=len(runs), n_steps=n, seconds_batched=0.5 * (a.seconds + b.seconds),
                     seconds_reference=t_ref, max_loss_difference=float(np.abs(a.loss - ref).max()),
                     device=str(dev))
