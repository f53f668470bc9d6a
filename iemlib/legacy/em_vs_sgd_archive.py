"""Chapter 8's control runs: defined here, trained once by ``bench/ch08_controls.py``, shipped with iemlib.

The controls of chapter 8 and its companion 8b (the learning-rate grid, the chain x bias
2 x 2, the least-squares and free readings of the M-step) are 120 runs of 1000 steps on a
1999-position sequence: about 21 minutes on two CPU cores, more than the book's time budget
allows a notebook. They are therefore trained by a script, ``bench/ch08_controls.py``, and the
scalar results and loss curves are stored in ``iemlib/data/em_vs_sgd_controls.npz``, which
ships with the package (so it is there on Colab too). The notebooks do not take the file on
trust: every time they run, they retrain a subset of the archived runs live (chapter 8 all
twenty runs of its two main configurations, 8b one seed of each new reading) and check with
:func:`compare_runs` that the live and the archived numbers agree.

What the archive keeps of a :class:`~iemlib.em_vs_sgd.Result`: the run list and the
configurations, the training-loss curve of every run, every final and held-out scalar, the
Bayes filter's scores, the mechanism probes, ``kappa`` and the divergence flags. It leaves out
what is large and only needed for the live runs' figures: predictive distributions, recorded
value vectors, weights, and the accuracy and entropy curves (empty arrays in the loaded result).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ._validation import check_positive
from .em_vs_sgd import PAPER, PUBLIC, Config, Result

__all__ = [
    "GRID_VALUE",
    "GRID_ROUTING",
    "PAPER_NOBIAS",
    "PUBLIC_BIAS",
    "LEAST_SQUARES",
    "FREE_VALUES",
    "grid_name",
    "grid_config",
    "grid_runs",
    "control_runs",
    "save_result",
    "load_result",
    "archive_path",
    "load_controls",
    "compare_runs",
]

#: The value step eta_V (on W_V) and the routing step eta_R (on W_Q, W_K, W_O, b) of the grid.
GRID_VALUE: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
GRID_ROUTING: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)

#: The two mixed cells of the chain x bias 2 x 2.
PAPER_NOBIAS = replace(PAPER, name="paper chain, no bias", bias=False)
PUBLIC_BIAS = replace(PUBLIC, name="public chain, bias", bias=True)
#: The least-squares and free readings of the M-step at the matched step 0.1 kappa (chapter 8b).
LEAST_SQUARES = replace(PAPER, name="least squares, matched", value_map="least_squares", match_effective_step=True)
FREE_VALUES = replace(PAPER, name="free values, matched", values="free", match_effective_step=True)


def grid_name(value_step: float, routing_step: float) -> str:
    """Name of the grid cell with SGD rate vector ``(eta_V, eta_R)``."""
    return f"rates ({value_step:g}, {routing_step:g})"


def grid_config(value_step: float, routing_step: float) -> Config:
    """Plain SGD on the paper-reading configuration with ``eta_V`` on ``W_V`` and ``eta_R`` elsewhere.

    With the gradient map (eq. 31), the EM-like schedule with value step ``eta_V`` and routing
    step ``eta_R`` is this run, iterate for iterate; so one run per seed covers both schedules.
    """
    v = check_positive(value_step, "value_step")
    r = check_positive(routing_step, "routing_step")
    return replace(PAPER, name=grid_name(v, r), lr_sgd=r, lr_sgd_value=v)


def grid_runs(result: Result, value_step: float, routing_step: float) -> list[int]:
    """Indices of the runs of grid cell ``(eta_V, eta_R)`` in ``result``, in seed order.

    The cells ``(0.01, 0.01)`` and ``(0.1, 0.01)`` are the paper-reading configuration's SGD
    and EM-like runs (the same rate vectors), not separate grid runs.
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
    """Every run the archive holds, as ``train``'s ``(Config, schedules)`` list: the two main
    configurations and the two mixed ones, both schedules; the matched least-squares and free
    readings (EM-like); every grid cell not already one of the main rate vectors (SGD)."""
    both = ("em", "sgd")
    runs: list[tuple[Config, tuple[str, ...]]] = [
        (PAPER, both), (PUBLIC, both), (PAPER_NOBIAS, both), (PUBLIC_BIAS, both),
        (LEAST_SQUARES, ("em",)), (FREE_VALUES, ("em",)),
    ]
    main = {(PAPER.lr_sgd, PAPER.lr_sgd), (PAPER.lr_value, PAPER.lr_routing)}
    runs += [(grid_config(v, r), ("sgd",)) for v in GRID_VALUE for r in GRID_ROUTING if (v, r) not in main]
    return runs


def _config_to_json(c: Config) -> dict:
    d = dataclasses.asdict(c)
    d["seeds"] = list(d["seeds"])
    return d


def _config_from_json(d: dict) -> Config:
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"archive: configuration fields {sorted(unknown)} are not Config fields")
    return Config(**{**d, "seeds": tuple(d["seeds"])})


def save_result(result: Result, path: str | Path) -> Path:
    """Write the archived part of ``result`` (see the module docstring) to ``path`` (``.npz``)."""
    if not isinstance(result, Result):
        raise ValueError(f"result must be an em_vs_sgd.Result, got {type(result).__name__}")
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
    for group in ("final", "heldout", "bayes", "probes"):
        for k, v in getattr(result, group).items():
            if k != "probs":
                arrays[f"{group}.{k}"] = np.asarray(v)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(p, meta=np.array(json.dumps(meta)), **arrays)
    return p


def load_result(path: str | Path) -> Result:
    """Read an archive written by :func:`save_result` back into a :class:`Result`."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no archive at {p}")
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        groups: dict[str, dict[str, np.ndarray]] = {"final": {}, "heldout": {}, "bayes": {}, "probes": {}}
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
    return Result(
        runs=runs, configs=configs, loss=loss,
        acc=np.empty((R, 0)), entropy=np.empty((R, 0)), final=groups["final"],
        probs=np.empty((R, 0, c0.n_states)), value_steps=value_steps,
        values=np.empty((R, 0, 0, c0.d_v)), value_index=value_index, diverged=diverged,
        params={}, seconds=float(meta["seconds"]), device=str(meta["device"]),
        heldout=groups["heldout"], bayes=groups["bayes"], probe_steps=probe_steps,
        probes=groups["probes"], kappa=kappa,
    )


def archive_path() -> Path:
    """Where the shipped archive lives: ``iemlib/data/em_vs_sgd_controls.npz``."""
    return Path(str(resources.files("iemlib") / "data" / "em_vs_sgd_controls.npz"))


def load_controls() -> Result:
    """The archived control runs of chapter 8 (trained by ``bench/ch08_controls.py``)."""
    return load_result(archive_path())


def compare_runs(live: Result, archived: Result, runs: Sequence[tuple[str, int, str]] | None = None,
                 *, tol: float = 1e-4) -> dict[str, float | int | bool]:
    """Check live runs against the archive: the largest absolute difference, over the runs both
    hold (or ``runs``), of the training-loss curve, the final training loss and the held-out loss.

    A live configuration may differ from the archived one in the seeds it lists, and in ``n_steps``
    (fewer steps):
    the live run is then a prefix of the archived one, and only the first ``n_steps`` points of
    the curve are compared (``max_final`` and ``max_heldout`` cover the full-length runs only,
    ``nan`` when there are none). Returns ``n_runs``, ``n_prefix`` (how many were compared as
    prefixes), ``max_curve``, ``max_final``, ``max_heldout`` and ``agree`` (every difference
    ``<= tol`` nats). Float32 runs on another machine or BLAS differ in the last bits, and those
    differences grow a little over 1000 steps, hence the tolerance. Raises ``ValueError`` when no
    run is shared or a run's configuration differs otherwise.
    """
    t = check_positive(tol, "tol")
    shared = [r for r in live.runs if r in set(archived.runs)] if runs is None else list(runs)
    if not shared:
        raise ValueError("live and archived results share no run")
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
    curve, final, held = 0.0, [], []
    for r in shared:
        i, j = live.runs.index(r), archived.runs.index(r)
        n = live.loss.shape[1]
        curve = max(curve, float(np.abs(live.loss[i] - archived.loss[j, :n]).max(initial=0.0)))
        if r[0] not in prefix:
            final.append(abs(live.final["loss"][i] - archived.final["loss"][j]))
            held.append(abs(live.heldout["loss"][i] - archived.heldout["loss"][j]))
    out = {
        "n_runs": len(shared), "n_prefix": sum(r[0] in prefix for r in shared), "max_curve": curve,
        "max_final": float(np.max(final)) if final else float("nan"),
        "max_heldout": float(np.nanmax(held, initial=0.0)) if held else float("nan"),
    }
    worst = max([out["max_curve"]] + [v for v in (out["max_final"], out["max_heldout"]) if np.isfinite(v)])
    out["agree"] = bool(worst <= t and all(np.isfinite(v) for v in final))
    return out
