"""How results are scored: one implementation of each score the book reports.

Sections: entropies of responsibilities; divergences and correlations; classification,
calibration and out-of-distribution scores with their bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# Entropies of responsibilities
# ------------------------------------------------------------------------------------------------
from typing import Any  # noqa: E402  (imports of this section kept in it, so that the sections merge cleanly)

from ._validation import as_numpy  # noqa: E402


def responsibility_entropy(r: Any) -> float | np.ndarray:
    """Mean over points of the entropy ``H_i = -sum_j r_ij log r_ij`` of the responsibilities (nats).

    ``log K`` when every point is shared evenly, 0 when every point has one owner (``0 log 0 = 0``).

    Parameters
    ----------
    r : array or tensor (N, K), or (..., N, K) for a batch of responsibility matrices
        Non-negative rows that sum to one (within 1e-6); computed in float64.

    Returns
    -------
    float for (N, K) input; a float64 array of shape ``r.shape[:-2]`` for batched input.
    """
    r = as_numpy(r, "r", min_ndim=2)
    if r.min() < 0 or not np.allclose(r.sum(-1), 1.0, atol=1e-6):
        raise ValueError("r must hold non-negative rows that sum to one")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    h = -t.sum(-1).mean(-1)
    return float(h) if r.ndim == 2 else h


# ------------------------------------------------------------------------------------------------
# Divergences and correlations
# ------------------------------------------------------------------------------------------------

# (attention section: kl_divergence, pearson)


# ------------------------------------------------------------------------------------------------
# Classification, calibration and out-of-distribution scores
# ------------------------------------------------------------------------------------------------

# (classifiers section: auroc, fpr_at_tpr, expected_calibration_error, bootstrap intervals,
#  max_softmax, energy_score, ..., reject scores, multilabel_scores)
