"""Chapter 9's outlier experiment: three losses against a growing share of outliers.

For every outlier fraction and data seed, :func:`iemlib.data.make_clusters_with_outliers` draws
three clusters plus uniform outliers, and three learners start from the true means:
``"lse"`` (the log-sum-exp loss: every point is assigned, outliers pull the means), ``"correntropy"``
(no partition function: far points are ignored, and so is the competition) and ``"background"``
(the log-sum-exp loss with a uniform background component, Banfield and Raftery 1993: the
normalization is kept and far points are assigned to the background).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_int, check_positive
from ..data import make_clusters_with_outliers
from ..prototypes import fit_prototypes, memberships

__all__ = ["OUTLIER_METHODS", "OutlierExample", "OutlierSweep", "outlier_sweep"]

#: The three learners compared, in the order the chapter prints them.
OUTLIER_METHODS: tuple[str, ...] = ("lse", "correntropy", "background")


@dataclass(frozen=True)
class OutlierExample:
    """The fits of one data set (the first seed at one fraction).

    Fields: ``x`` (N, D), ``is_outlier`` (N,) bool, ``means`` (K, D) the true means, ``fitted``:
    method name -> (K, D) fitted means (numpy arrays).
    """

    x: np.ndarray
    is_outlier: np.ndarray
    means: np.ndarray
    fitted: dict[str, np.ndarray]


@dataclass(frozen=True)
class OutlierSweep:
    """The result of :func:`outlier_sweep`: arrays of shape (F, S), fractions by seeds.

    Attributes
    ----------
    fractions
        (F,); seeds : (S,).
    error
        method -> (F, S), the mean distance of the fitted means from the true ones.
    outlier_share
        method -> (F, S), the outliers' share of the total update weight (for
        ``"lse"`` simply their share of the points).
    flag_outliers, flag_inliers
        (F, S), the fractions of outliers and of inliers the background
        claims (responsibility above one half); ``flag_outliers`` is NaN without outliers.
    bg_weight
        (F, S), the background's fitted weight.
    examples
        one :class:`OutlierExample` per fraction (the first seed).
    """

    fractions: np.ndarray
    seeds: np.ndarray
    error: dict[str, np.ndarray]
    outlier_share: dict[str, np.ndarray]
    flag_outliers: np.ndarray
    flag_inliers: np.ndarray
    bg_weight: np.ndarray
    examples: tuple[OutlierExample, ...]


def outlier_sweep(
    fractions: Any = (0.0, 0.05, 0.1, 0.2, 0.3),
    seeds: Any = range(5),
    *,
    n_per_component: int = 150,
    box: float = 12.0,
    lr: float = 0.5,
    n_steps: int = 400,
) -> OutlierSweep:
    """Fit the three methods of :data:`OUTLIER_METHODS` from the true means, for every outlier
    fraction and data seed (the seeds of a fraction as one batch of runs of :func:`iemlib.prototypes.fit_prototypes`).

    The update weight of point ``i`` in mean ``j``'s step is its responsibility for ``"lse"`` (Theorem 1),
    ``exp(-e_ij)`` for ``"correntropy"`` (both are the methods' :func:`iemlib.prototypes.memberships`), and the
    responsibility of Gaussian ``j`` in the mixture with a background for ``"background"``.

    Parameters
    ----------
    fractions : outlier fractions in [0, 1)
    seeds : data seeds (``random_state`` of :func:`iemlib.data.make_clusters_with_outliers`)
    n_per_component, box : the data (cluster size, half-width of the outliers' box)
    lr, n_steps : gradient descent

    Returns
    -------
    OutlierSweep
    """
    fr = [float(check_positive(f, "fractions", allow_zero=True)) for f in np.atleast_1d(np.asarray(fractions, dtype=float))]
    seeds = [check_int(s_, "seeds", minimum=0) for s_ in seeds]
    if not fr or not seeds:
        raise ValueError("fractions and seeds must not be empty")
    F, S = len(fr), len(seeds)
    error = {m: np.zeros((F, S)) for m in OUTLIER_METHODS}
    share = {m: np.zeros((F, S)) for m in OUTLIER_METHODS}
    flag_out, flag_in, bg_weight = np.full((F, S), np.nan), np.zeros((F, S)), np.zeros((F, S))
    examples = []
    for a, f in enumerate(fr):
        tasks = [make_clusters_with_outliers(n_per_component, f, box, random_state=s_) for s_ in seeds]
        xb = torch.stack([t[0] for t in tasks])
        out_mask = torch.stack([t[1] for t in tasks])  # (S, N)
        m = tasks[0][2]
        mu0 = m[None].expand(S, -1, -1).contiguous()
        fits = {k: fit_prototypes(xb, mu0, objective=k, lr=lr, n_steps=n_steps, record_every=n_steps) for k in ("lse", "correntropy")}
        fits["background"] = fit_prototypes(xb, mu0, background=True, lr=lr, n_steps=n_steps, record_every=n_steps,
                                            record_responsibilities=True)
        r_bg = torch.as_tensor(fits["background"].responsibilities[-1])  # (S, N, K + 1), background first
        for k in OUTLIER_METHODS:
            mu = torch.as_tensor(fits[k].final_means)
            error[k][a] = (mu - m[None]).norm(dim=-1).mean(-1).numpy()
            w = (r_bg[..., 1:] if k == "background" else memberships(k, xb, mu)).sum(-1)  # (S, N)
            share[k][a] = ((w * out_mask).sum(1) / w.sum(1)).numpy()
        claimed = r_bg[..., 0] > 0.5
        if out_mask.any():
            flag_out[a] = ((claimed & out_mask).sum(1) / out_mask.sum(1).clamp_min(1)).numpy()
        flag_in[a] = ((claimed & ~out_mask).sum(1) / (~out_mask).sum(1)).numpy()
        bg_weight[a] = fits["background"].weights[-1][:, 0]
        examples.append(OutlierExample(tasks[0][0].numpy(), tasks[0][1].numpy(), m.numpy(),
                                       {k: fits[k].final_means[0] for k in OUTLIER_METHODS}))
    return OutlierSweep(np.asarray(fr), np.asarray(seeds), error, share, flag_out, flag_in, bg_weight, tuple(examples))
