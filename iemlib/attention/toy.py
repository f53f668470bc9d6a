"""The toy simulation of the attention paper's §7.1 (chapter 5): one small head trained by full-batch
gradient descent driven by the closed forms, every intermediate recorded, and its diagnostics as
numbers that can be reported over many seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_int, check_positive
from ..metrics import pearson
from ..runtime import single_threaded
from .diagnostics import displacement_step, pca
from ._checks import check_bool, validate_full
from ._kernels import closed_form_torch
from .head import PARAM_NAMES, HeadParams, init_params

__all__ = ["ToyRun", "simulate_toy", "ToySummary", "toy_summary"]


@dataclass(frozen=True, eq=False)
class ToyRun:
    """History of :func:`simulate_toy`.

    Arrays are float64 numpy, step axis first (``n_steps + 1`` entries: the initial state and one
    after every step; gradient-derived quantities are at the parameters of that entry). Every
    gradient is of the summed cross-entropy **loss** (minimized).

    Attributes
    ----------
    random_state, lr, init_scale, causal
        the run's settings.
    value_lr
        the step on ``W_V`` (equal to ``lr`` for plain gradient descent; larger for the §5.3
        EM-like schedule read as a rate vector, chapter 8).
    x
        ``(T, d_x)``; y : ``(T,)`` the sequence and its targets.
    params
        :class:`HeadParams` of histories ``(n_steps+1, *shape)``.
    loss
        ``(n_steps+1,)`` the summed loss.
    alpha, s, B, advantage, dL_ds
        ``(n_steps+1, T, T)`` (``advantage`` in §3.4's sign).
    v, u, dL_dv
        ``(n_steps+1, T, d_v)``.
    p
        ``(n_steps+1, T, C)``.
    grads
        :class:`HeadParams` of gradient histories ``(n_steps+1, *shape)``.
    """

    random_state: int
    lr: float
    init_scale: float
    causal: bool
    x: np.ndarray
    y: np.ndarray
    params: HeadParams
    loss: np.ndarray
    alpha: np.ndarray
    s: np.ndarray
    v: np.ndarray
    u: np.ndarray
    B: np.ndarray
    advantage: np.ndarray
    dL_ds: np.ndarray
    dL_dv: np.ndarray
    p: np.ndarray
    grads: HeadParams
    value_lr: float | None = None

    @property
    def n_steps(self) -> int:
        """The number of gradient steps (one less than the recorded states)."""
        return len(self.loss) - 1


_RECORDED = ("loss", "alpha", "s", "v", "u", "B", "advantage", "dL_ds", "dL_dv", "p")


def simulate_toy(
    *,
    random_state: int = 1,
    T: int = 5,
    d_x: int = 3,
    d_k: int = 2,
    d_v: int = 2,
    n_classes: int = 3,
    n_steps: int = 100,
    lr: float = 0.2,
    init_scale: float = 0.3,
    causal: bool = False,
    value_lr: float | None = None,
) -> ToyRun:
    """The toy simulation of the paper's §7.1, driven by the closed forms (no autograd).

    One sequence ``x_j ~ N(0, I_{d_x})``, random targets ``y_i`` uniform in ``{0, ..., C-1}``,
    parameters :func:`~iemlib.attention.init_params` (``N(0, init_scale^2)``, ``b = 0``), then
    ``n_steps`` steps of full-batch gradient descent with fixed ``lr`` on the summed cross-entropy
    **loss** (minimized).

    Parameters
    ----------
    random_state : seed of ``np.random.default_rng``: the data, then the initialisation's seed.
    T, d_x, d_k, d_v, n_classes : sizes of the problem.
    n_steps, lr : gradient steps and their size.
    init_scale : standard deviation of the initial weights.
    causal : causal attention (``j <= i``) or full.
    value_lr : float > 0, optional
        the step on ``W_V`` (default ``lr``). A larger one is the paper's §5.3 EM-like schedule
        with values ``v_j = W_V x_j``: its M-like value step is a gradient step on ``W_V`` with
        its own rate (chapter 8), taken here from the same forward pass as the other steps.

    Returns
    -------
    ToyRun
    """
    random_state = check_int(random_state, "random_state", minimum=0)
    T = check_int(T, "T", minimum=1)
    d_x = check_int(d_x, "d_x", minimum=1)
    C = check_int(n_classes, "n_classes", minimum=2)
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    lr = check_positive(lr, "lr")
    value_lr = lr if value_lr is None else check_positive(value_lr, "value_lr")
    steps = {k: value_lr if k == "W_V" else lr for k in PARAM_NAMES}
    init_scale = check_positive(init_scale, "init_scale")
    causal = check_bool(causal, "causal")
    rng = np.random.default_rng(random_state)
    x = rng.standard_normal((T, d_x))
    y = rng.integers(0, C, size=T)
    params = init_params(d_x, d_k, d_v, C, scale=init_scale, random_state=int(rng.integers(0, 2**31 - 1)))

    hist: dict[str, list] = {k: [] for k in _RECORDED}
    phist: dict[str, list] = {k: [] for k in PARAM_NAMES}
    ghist: dict[str, list] = {k: [] for k in PARAM_NAMES}
    # validated once here; the loop calls the closed forms directly on float64 tensors
    validate_full(x, y, *params, causal)
    x_t = torch.from_numpy(x)
    y_t = torch.from_numpy(y).long()
    p_t = dict(zip(PARAM_NAMES, (torch.from_numpy(p) for p in params)))
    with torch.no_grad(), single_threaded():  # tiny tensors: a second thread only spins
        for step in range(n_steps + 1):
            state = closed_form_torch(x_t, y_t, *(p_t[k] for k in PARAM_NAMES), causal, True)
            for k in _RECORDED:
                hist[k].append(state[k])
            for k in PARAM_NAMES:
                phist[k].append(p_t[k])
                ghist[k].append(state[k])
            if step < n_steps:
                p_t = {k: p_t[k] - steps[k] * state[k] for k in PARAM_NAMES}

    def stack(h: dict[str, list], k: str) -> np.ndarray:
        return np.asarray([t.numpy() for t in h[k]])

    return ToyRun(
        random_state=random_state, lr=lr, value_lr=value_lr, init_scale=init_scale, causal=causal, x=x, y=y,
        params=HeadParams(*(stack(phist, k) for k in PARAM_NAMES)),
        grads=HeadParams(*(stack(ghist, k) for k in PARAM_NAMES)),
        **{k: stack(hist, k) for k in _RECORDED},
    )


@dataclass(frozen=True)
class ToySummary:
    """The chapter-5 diagnostics of one :class:`ToyRun`, as numbers (:func:`toy_summary`).

    Every gradient is of the summed cross-entropy **loss** (minimized). When a loss is not finite
    only the first four fields are computed; the others are NaN.

    Attributes
    ----------
    loss_start, loss_end
        the first and last loss.
    monotone
        the loss fell at every step. finite : every loss is finite.
    entropy_end
        mean attention entropy at the end (nats).
    max_weight_end
        mean over queries of the largest final weight.
    usage_std_start, usage_std_end
        spread (std over ``j``) of the column usage ``sum_i alpha_ij``.
    columns_over_one, columns_under_half
        columns whose final usage exceeds 1 (one query's worth) or
        falls below 0.5.
    corr_usage_grad_median
        median over steps of the correlation across columns of usage and
        ``||dL/dv_j||``; corr_usage_grad_late : its mean from step ``late_from`` on.
    value_step_lowers_compat
        fraction of steps at which the value step lowers
        ``sum_ij alpha_ij b_ij`` to first order.
    alpha_rise_at_positive_A, alpha_rise_at_negative_A
        fraction of entries whose weight rises in
        one step, split by the sign of the advantage before it.
    score_sign_agreement
        fraction of entries where the realized score change has the sign of the
        free-score step.
    value_update_cos_median
        median cosine of realized and free value updates.
    score_grad_positive_fraction
        fraction of allowed entries with ``dL/ds_ij > 0``.
    score_grad_row_sum_max
        largest ``|sum_j dL/ds_ij|``.
    t90_alpha, t90_v, t90_v_direction
        :func:`~iemlib.attention.displacement_step` (90 %)
        of the attention weights, of the values, and of the value directions ``v_j / ||v_j||``.
    value_norm_max_end
        largest final value norm.
    value_norm_growth
        mean final over mean initial value norm.
    pca_pc1_ratio
        share of the variance of all value positions over training on their first
        principal component.
    """

    loss_start: float
    loss_end: float
    monotone: bool
    finite: bool
    entropy_end: float = float("nan")
    max_weight_end: float = float("nan")
    usage_std_start: float = float("nan")
    usage_std_end: float = float("nan")
    columns_over_one: float = float("nan")
    columns_under_half: float = float("nan")
    corr_usage_grad_median: float = float("nan")
    corr_usage_grad_late: float = float("nan")
    value_step_lowers_compat: float = float("nan")
    alpha_rise_at_positive_A: float = float("nan")
    alpha_rise_at_negative_A: float = float("nan")
    score_sign_agreement: float = float("nan")
    value_update_cos_median: float = float("nan")
    score_grad_positive_fraction: float = float("nan")
    score_grad_row_sum_max: float = float("nan")
    t90_alpha: float = float("nan")
    t90_v: float = float("nan")
    t90_v_direction: float = float("nan")
    value_norm_max_end: float = float("nan")
    value_norm_growth: float = float("nan")
    pca_pc1_ratio: float = float("nan")


def _usage_gradient_correlations(usage: np.ndarray, gnorm: np.ndarray) -> np.ndarray:
    corr = []
    for t in range(len(usage) - 1):
        try:
            corr.append(pearson(usage[t], gnorm[t]))
        except ValueError:  # a constant column usage or gradient size: no correlation defined
            corr.append(np.nan)
    return np.asarray(corr)


def toy_summary(run: ToyRun, *, late_from: int = 30) -> ToySummary:
    """The chapter-5 diagnostics of one :class:`ToyRun` (see :class:`ToySummary` for each number).

    Parameters
    ----------
    run : ToyRun with at least 2 steps.
    late_from : first step of ``corr_usage_grad_late``.

    Returns
    -------
    ToySummary
    """
    if not isinstance(run, ToyRun):
        raise ValueError(f"run must be a ToyRun, got {type(run).__name__}")
    n = run.n_steps
    if n < 2:
        raise ValueError(f"run must have at least 2 steps, got {n}")
    late_from = check_int(late_from, "late_from", minimum=0)
    finite = bool(np.all(np.isfinite(run.loss)))
    head = dict(loss_start=float(run.loss[0]), loss_end=float(run.loss[-1]),
                monotone=bool(np.all(np.diff(run.loss) < 0)), finite=finite)
    if not finite:
        return ToySummary(**head)
    usage = run.alpha.sum(-2)  # (n+1, T)
    ent = -(np.where(run.alpha > 0, run.alpha * np.log(np.where(run.alpha > 0, run.alpha, 1.0)), 0.0)).sum(-1)
    corr = _usage_gradient_correlations(usage, np.linalg.norm(run.dL_dv, axis=-1))
    dv_free = -run.lr * run.dL_dv[:-1]
    change = np.einsum("tij,tid,tjd->t", run.alpha[:-1], run.u[:-1], dv_free)
    dalpha = np.diff(run.alpha, axis=0)
    A_prev = run.advantage[:-1]
    ds_real, ds_free = np.diff(run.s, axis=0), -run.lr * run.dL_ds[:-1]
    dv_real = np.diff(run.v, axis=0)
    cos_v = (dv_real * dv_free).sum(-1) / (np.linalg.norm(dv_real, axis=-1) * np.linalg.norm(dv_free, axis=-1) + 1e-300)
    shape = run.alpha.shape[-2:]
    mask = ~np.triu(np.ones(shape, dtype=bool), 1) if run.causal else np.ones(shape, dtype=bool)
    direction = run.v / np.linalg.norm(run.v, axis=-1, keepdims=True)
    norm_start, norm_end = np.linalg.norm(run.v[0], axis=-1), np.linalg.norm(run.v[-1], axis=-1)
    return ToySummary(
        **head,
        entropy_end=float(ent[-1].mean()),
        max_weight_end=float(run.alpha[-1].max(-1).mean()),
        usage_std_start=float(usage[0].std()),
        usage_std_end=float(usage[-1].std()),
        columns_over_one=float((usage[-1] > 1).sum()),
        columns_under_half=float((usage[-1] < 0.5).sum()),
        corr_usage_grad_median=float(np.nanmedian(corr)),
        corr_usage_grad_late=float(np.nanmean(corr[late_from:])) if late_from < n else float("nan"),
        value_step_lowers_compat=float(np.mean(change < 0)),
        alpha_rise_at_positive_A=float(np.mean(dalpha[A_prev > 0] > 0)),
        alpha_rise_at_negative_A=float(np.mean(dalpha[A_prev < 0] > 0)),
        score_sign_agreement=float(np.mean(np.sign(ds_real) == np.sign(ds_free))),
        value_update_cos_median=float(np.median(cos_v)),
        score_grad_positive_fraction=float(np.mean(run.dL_ds[:, mask] > 0)),
        score_grad_row_sum_max=float(np.abs(run.dL_ds.sum(-1)).max()),
        t90_alpha=float(displacement_step(run.alpha)),
        t90_v=float(displacement_step(run.v)),
        t90_v_direction=float(displacement_step(direction)),
        value_norm_max_end=float(norm_end.max()),
        value_norm_growth=float(norm_end.mean() / norm_start.mean()),
        pca_pc1_ratio=float(pca(run.v.reshape(-1, run.v.shape[-1]), n_components=1).explained_variance_ratio[0]),
    )
