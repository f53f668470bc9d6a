"""Chapter 10's open-set experiments: which score tells the known digits from everything else.

* :func:`digit_open_set_run`: one random split of the ten digits into known and unknown ones; an MLP,
  a prototype classifier and a prototype classifier with a reject component trained on the known
  digits, class Gaussians fitted on the MLP's hidden features and on the pixels; every score of
  :data:`SCORES` on every set of :data:`OOD_SETS` (:func:`iemlib.data.digit_ood_sets`), as AUROC
  and FPR at 95 % TPR.
* :func:`open_set_scores`: the scores of one trained model from its known-class distances on
  several input sets: max-softmax, the objective ``L``, and with a reject component its
  responsibility and rejection rates.

Scores follow :mod:`iemlib.metrics`: higher means "more like the training distribution", the
in-distribution set is the positive class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .._validation import as_float_array, as_tensor, check_int, to_numpy
from ..classifiers import PrototypeClassifier, RejectOption, make_classifier, train_classifier
from ..data import digit_ood_sets
from ..metrics import (
    auroc,
    energy_score,
    fit_class_gaussians,
    fpr_at_tpr,
    mahalanobis_score,
    max_softmax,
    odin_score,
    reject_log_odds,
    reject_responsibility,
    temperature_softmax_score,
)
from ..runtime import single_threaded

__all__ = ["OOD_SETS", "SCORES", "VOLUME_ABLATION", "OpenSetRun", "digit_open_set_run", "OpenSetScores", "open_set_scores"]

#: The out-of-distribution sets of :func:`iemlib.data.digit_ood_sets`, in table order.
OOD_SETS: tuple[str, ...] = (
    "unknown digits",
    "pixel-marginal noise",
    "matched Gaussian noise",
    "occluded",
    "blurred",
    "shuffled pixels",
    "uniform noise",
)

#: The scores of :func:`digit_open_set_run`: name -> (model, what is scored).
SCORES: dict[str, tuple[str, str]] = {
    "max-softmax": ("MLP", "max_j softmax(z)_j (Hendrycks & Gimpel 2017)"),
    "ODIN, T = 1000": ("MLP", "max_j softmax(z / 1000)_j, no input perturbation (Liang et al. 2018)"),
    "ODIN, T = 1000, eps = 0.05": ("MLP", "the same after ODIN's input perturbation of size 0.05"),
    "energy": ("MLP", "log sum_j exp(z_j) (Liu et al. 2020)"),
    "Mahalanobis, shared": ("MLP hidden layer", "-min_k squared Mahalanobis distance, tied covariance (Lee et al. 2018)"),
    "Gaussian, per-class": ("MLP hidden layer", "the same with one covariance per class and its log-determinant"),
    "prototype max-softmax": ("prototype", "max_j softmax(-d)_j"),
    "prototype L": ("prototype", "L = log sum_j exp(-d_j), the book's threshold score"),
    "reject component": ("prototype + reject, d0 = 10", "d0 + L = log((1 - r_0) / r_0)"),
    "pixel Gaussian, shared": ("class Gaussians on pixels", "-min_k squared Mahalanobis distance, tied covariance"),
    "pixel Gaussian, per-class": ("class Gaussians on pixels", "the same with one covariance per class and its log-determinant"),
}


#: The per-class Gaussian scores of :data:`SCORES` that :func:`digit_open_set_run` also computes without
#: their volume term ``log det Sigma_k`` (the ablation): score -> the name of the ablated score.
VOLUME_ABLATION: dict[str, str] = {
    "Gaussian, per-class": "Gaussian, per-class, no log-det",
    "pixel Gaussian, per-class": "pixel Gaussian, per-class, no log-det",
}


@dataclass(frozen=True)
class OpenSetRun:
    """One run of :func:`digit_open_set_run`.

    Attributes
    ----------
    known
        tuple of int: the known digits (the rest are unknown).
    accuracy
        dict model -> held-out known-class accuracy, for ``"MLP"``, ``"prototype"``,
        ``"prototype + reject"`` (its known classes) and ``"pixel Gaussian, per-class"``.
    auroc
        dict score -> dict set -> AUROC, for every score of :data:`SCORES` and set of :data:`OOD_SETS`.
    fpr95
        dict score -> dict set -> false-positive rate at 95 % true-positive rate.
    ablation_auroc, ablation_fpr95
        the same for the scores of :data:`VOLUME_ABLATION` (per-class Gaussians without ``log det``);
        ``accuracy`` then also holds ``"pixel Gaussian, per-class, no log-det"``.
    reject_variants
        dict label -> dict with ``tau``, ``accuracy``, ``auroc`` and ``fpr95`` (set -> value) of a
        reject component trained at another distance (``more_taus``, ``tau_quantile``).
    """

    known: tuple[int, ...]
    accuracy: dict[str, float]
    auroc: dict[str, dict[str, float]]
    fpr95: dict[str, dict[str, float]]
    ablation_auroc: dict[str, dict[str, float]] = field(default_factory=dict)
    ablation_fpr95: dict[str, dict[str, float]] = field(default_factory=dict)
    reject_variants: dict[str, dict[str, Any]] = field(default_factory=dict)


def digit_open_set_run(random_state: int, n_known: int = 6, mlp_epochs: int = 200, proto_epochs: int = 200,
                       tau: float = 10.0, more_taus: Sequence[float] = (),
                       tau_quantile: float | None = None) -> OpenSetRun:
    """One run of chapter 10's open-set table: a random split of the ten digits, every score of :data:`SCORES`.

    ``random_state`` draws the ``n_known`` known digits (the rest are unknown), the train/test split,
    the noise and corruptions (:func:`iemlib.data.digit_ood_sets`) and the network's initialization.
    Trained on the known digits' training images by full-batch gradient descent on the mean
    cross-entropy loss (:func:`iemlib.classifiers.train_classifier`): an MLP (one hidden ReLU layer of
    64 units, step 0.5, ``mlp_epochs``), a :class:`~iemlib.classifiers.PrototypeClassifier` (step 0.1,
    ``proto_epochs``) and the same with a :class:`~iemlib.classifiers.RejectOption` at distance
    ``tau``; fitted in closed form: class Gaussians on the MLP's hidden features and on the pixels
    (shrinkage 0.1). In-distribution (the positive class) is the held-out known digits.

    Parameters
    ----------
    random_state : int >= 0.
    n_known : int in 2..9, the number of known digits.
    mlp_epochs, proto_epochs : int >= 1.
    tau : finite float, the reject component's distance.
    more_taus : further distances; a reject component is trained at each (``reject_variants``).
    tau_quantile : float in (0, 1), optional: one more reject component, at the distance chosen on the
        training images alone: ``tau = -q``, ``q`` the ``tau_quantile`` quantile of ``L`` of the trained
        prototype classifier (without reject) on its training images, so that the threshold
        ``L < -tau`` of that classifier would reject that share of them.

    Returns
    -------
    OpenSetRun
    """
    random_state = check_int(random_state, "random_state", minimum=0)
    K = check_int(n_known, "n_known", minimum=2)
    if K > 9:
        raise ValueError(f"n_known must leave at least one unknown digit (2..9), got {n_known}")
    tau = float(as_float_array(tau, "tau", ndim=0))
    mlp_epochs = check_int(mlp_epochs, "mlp_epochs", minimum=1)
    proto_epochs = check_int(proto_epochs, "proto_epochs", minimum=1)
    taus = [float(as_float_array(t, "more_taus", ndim=0)) for t in more_taus]
    if tau_quantile is not None and not 0.0 < float(tau_quantile) < 1.0:
        raise ValueError(f"tau_quantile must lie in (0, 1), got {tau_quantile!r}")
    with single_threaded():  # small matrices: one thread is several times cheaper than a pool on two cores
        run = _open_set_run(random_state, K, mlp_epochs, proto_epochs, tau)
        if taus or tau_quantile is not None:
            run.reject_variants.update(_reject_variants(random_state, K, proto_epochs, taus, tau_quantile))
        return run


def _reject_variants(seed: int, K: int, proto_epochs: int, taus: list[float],
                     quantile: float | None) -> dict[str, dict[str, Any]]:
    """Reject components at further distances on the split of ``seed`` (see :func:`digit_open_set_run`)."""
    data = digit_ood_sets(sorted(int(k) for k in np.random.default_rng(seed).permutation(10)[:K]), random_state=seed)
    X, y, sets = data.X_train, data.y_train, data.sets
    labelled = [(f"d0 = {t:g}", t) for t in taus]
    if quantile is not None:
        proto = PrototypeClassifier(X, y, K, expanded=True)
        train_classifier(proto, X, y, epochs=proto_epochs, lr=0.1, record=())
        with torch.no_grad():
            L_train = energy_score(to_numpy(proto(X), np.float64))
        labelled.append((f"d0 from training L ({quantile:.0%} quantile)", -float(np.quantile(L_train, quantile))))
    out = {}
    for label, t in labelled:
        rbase = PrototypeClassifier(X, y, K, expanded=True)
        train_classifier(RejectOption(rbase, t), X, y, epochs=proto_epochs, lr=0.1, record=())
        with torch.no_grad():
            sc = {k: reject_log_odds(-to_numpy(rbase(x), np.float64), t) for k, x in sets.items()}
            acc = float((rbase(sets["held-out known"]).argmax(1) == data.y_test).double().mean())
        s_in = sc["held-out known"]
        out[label] = {"tau": t, "accuracy": acc, "auroc": {k: auroc(s_in, sc[k]) for k in OOD_SETS},
                      "fpr95": {k: fpr_at_tpr(s_in, sc[k]) for k in OOD_SETS}}
    return out


def _open_set_run(seed: int, K: int, mlp_epochs: int, proto_epochs: int, tau: float) -> OpenSetRun:
    known = sorted(int(k) for k in np.random.default_rng(seed).permutation(10)[:K])
    data = digit_ood_sets(known, random_state=seed)
    X, y, sets = data.X_train, data.y_train, data.sets
    mlp = make_classifier("mlp", n_classes=K, hidden=64, random_state=seed)
    train_classifier(mlp, X, y, epochs=mlp_epochs, lr=0.5, record=())
    proto = PrototypeClassifier(X, y, K, expanded=True)
    train_classifier(proto, X, y, epochs=proto_epochs, lr=0.1, record=())
    rbase = PrototypeClassifier(X, y, K, expanded=True)
    train_classifier(RejectOption(rbase, tau), X, y, epochs=proto_epochs, lr=0.1, record=())

    def hidden(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(mlp[0](x))

    with torch.no_grad():
        g_h = {sh: fit_class_gaussians(hidden(X), y, K, shared=sh) for sh in (True, False)}
    g_p = {sh: fit_class_gaussians(X, y, K, shared=sh) for sh in (True, False)}
    scores: dict[str, dict[str, np.ndarray]] = {s: {} for s in SCORES}
    ablated: dict[str, dict[str, np.ndarray]] = {s: {} for s in VOLUME_ABLATION.values()}
    for name, x in sets.items():
        with torch.no_grad():  # scored in float64 numpy
            z, zp, zr, h = (to_numpy(t, np.float64) for t in (mlp(x), proto(x), rbase(x), hidden(x)))
        scores["max-softmax"][name] = max_softmax(z)
        scores["ODIN, T = 1000"][name] = temperature_softmax_score(z, 1000.0)
        scores["ODIN, T = 1000, eps = 0.05"][name] = odin_score(mlp, x, 1000.0, 0.05)
        scores["energy"][name] = energy_score(z)
        scores["Mahalanobis, shared"][name] = mahalanobis_score(h, g_h[True])
        scores["Gaussian, per-class"][name] = mahalanobis_score(h, g_h[False])
        scores["prototype max-softmax"][name] = max_softmax(zp)
        scores["prototype L"][name] = energy_score(zp)
        scores["reject component"][name] = reject_log_odds(-zr, tau)
        scores["pixel Gaussian, shared"][name] = mahalanobis_score(x, g_p[True])
        scores["pixel Gaussian, per-class"][name] = mahalanobis_score(x, g_p[False])
        ablated[VOLUME_ABLATION["Gaussian, per-class"]][name] = mahalanobis_score(h, g_h[False], volume=False)
        ablated[VOLUME_ABLATION["pixel Gaussian, per-class"]][name] = mahalanobis_score(x, g_p[False], volume=False)
    x_in, y_te = sets["held-out known"], data.y_test.numpy()

    def acc(z: torch.Tensor) -> float:
        return float((z.argmax(1).numpy() == y_te).mean())

    qda = -g_p[False].energies(x_in)
    qda_flat = -g_p[False].energies(x_in, volume=False)
    with torch.no_grad():
        accuracy = {"MLP": acc(mlp(x_in)), "prototype": acc(proto(x_in)), "prototype + reject": acc(rbase(x_in)),
                    "pixel Gaussian, per-class": float((qda.argmax(1) == y_te).mean()),
                    "pixel Gaussian, per-class, no log-det": float((qda_flat.argmax(1) == y_te).mean())}
    s_in = {s: v["held-out known"] for s, v in scores.items()}
    a_in = {s: v["held-out known"] for s, v in ablated.items()}
    return OpenSetRun(
        known=tuple(known),
        accuracy=accuracy,
        auroc={s: {k: auroc(s_in[s], scores[s][k]) for k in OOD_SETS} for s in SCORES},
        fpr95={s: {k: fpr_at_tpr(s_in[s], scores[s][k]) for k in OOD_SETS} for s in SCORES},
        ablation_auroc={s: {k: auroc(a_in[s], ablated[s][k]) for k in OOD_SETS} for s in ablated},
        ablation_fpr95={s: {k: fpr_at_tpr(a_in[s], ablated[s][k]) for k in OOD_SETS} for s in ablated},
    )


@dataclass(frozen=True, eq=False)
class OpenSetScores:
    """Open-set scores of one trained model (:func:`open_set_scores`).

    Attributes
    ----------
    positive
        the name of the in-distribution set.
    auroc_max_softmax
        dict set -> AUROC of separating ``positive`` from that set by max-softmax
        (every set but ``positive``).
    auroc_L
        the same for the objective ``L = log sum_j exp(-d_j)``.
    auroc_r0
        the same for ``1 - r_0``, the reject component's complement (empty without ``tau``).
    rejected
        dict set -> share of the set rejected at the built-in threshold ``r_0 > 1/2``
        (every set; empty without ``tau``).
    rejected_train
        the same on the training inputs (None without ``tau`` or ``d_train``).
    r0
        dict set -> (N,) reject responsibilities (empty without ``tau``).
    """

    positive: str
    auroc_max_softmax: dict[str, float]
    auroc_L: dict[str, float]
    auroc_r0: dict[str, float]
    rejected: dict[str, float]
    rejected_train: float | None
    r0: dict[str, np.ndarray]


def open_set_scores(d_sets: dict[str, Any], tau: float | None = None, positive: str | None = None,
                    d_train: Any = None) -> OpenSetScores:
    """Open-set scores of one trained model, from its known-class distances on several input sets.

    Parameters
    ----------
    d_sets : dict name -> (N, K) distances ``d = -z`` of the known classes on each input set; the
        first set (or ``positive``) is the in-distribution one.
    tau : distance of a reject component (:func:`iemlib.metrics.reject_responsibility`), or None.
    positive : name of the in-distribution set (default: the first key of ``d_sets``).
    d_train : (N, K) distances on the training inputs, for the training rejection rate (optional).

    Returns
    -------
    OpenSetScores: AUROCs of max-softmax, of ``L`` and (with ``tau``) of ``1 - r_0``, and the
    rejection rates at ``r_0 > 1/2``.
    """
    if not isinstance(d_sets, dict) or not d_sets:
        raise ValueError("d_sets must be a non-empty dict of name -> (N, K) distances")
    ds = {k: as_tensor(v, f"d_sets[{k!r}]", ndim=2).detach() for k, v in d_sets.items()}
    widths = {v.shape[1] for v in ds.values()}
    if len(widths) != 1:
        raise ValueError(f"d_sets must all have the same number of classes, got {sorted(widths)}")
    pos = next(iter(ds)) if positive is None else positive
    if pos not in ds:
        raise ValueError(f"positive must name a key of d_sets {list(ds)}, got {positive!r}")
    dt = None if d_train is None else as_tensor(d_train, "d_train", ndim=2).detach()
    ms = {k: max_softmax(-v) for k, v in ds.items()}
    L = {k: energy_score(-v) for k, v in ds.items()}
    others = [k for k in ds if k != pos]
    r0: dict[str, np.ndarray] = {}
    rejected: dict[str, float] = {}
    auroc_r0: dict[str, float] = {}
    rejected_train = None
    if tau is not None:
        r0 = {k: reject_responsibility(v, tau) for k, v in ds.items()}
        if dt is not None:
            rejected_train = float((reject_responsibility(dt, tau) > 0.5).mean())
        rejected = {k: float((r0[k] > 0.5).mean()) for k in ds}
        auroc_r0 = {k: auroc(1 - r0[pos], 1 - r0[k]) for k in others}
    return OpenSetScores(
        positive=pos,
        auroc_max_softmax={k: auroc(ms[pos], ms[k]) for k in others},
        auroc_L={k: auroc(L[pos], L[k]) for k in others},
        auroc_r0=auroc_r0,
        rejected=rejected,
        rejected_train=rejected_train,
        r0=r0,
    )
