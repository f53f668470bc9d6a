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

# (prototypes section: responsibility_entropy)


# ------------------------------------------------------------------------------------------------
# Divergences and correlations
# ------------------------------------------------------------------------------------------------

# (attention section: kl_divergence, pearson)

from ._validation import as_numpy, check_positive  # noqa: E402  (this section's helpers)


def kl_divergence(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over positions of ``KL(p_i || q_i) = sum_c p_ic log(p_ic / q_ic)``, in nats.

    Parameters
    ----------
    p, q : arrays or tensors of one shape ``(..., C)``
        Distributions over the last axis (rows summing to one), e.g. a reference predictor and a model.
    eps : float
        Floor on the probabilities inside the logarithms (``0 log 0 = 0``, no infinite divergence).

    Returns
    -------
    float
        The divergence averaged over every leading index (float64 arithmetic).
    """
    p_ = as_numpy(p, "p", min_ndim=1)
    q_ = as_numpy(q, "q", min_ndim=1)
    if p_.shape != q_.shape:
        raise ValueError(f"q must have the same shape as p {p_.shape}, got {q_.shape}")
    e = check_positive(eps, "eps")
    kl = (p_ * (np.log(np.maximum(p_, e)) - np.log(np.maximum(q_, e)))).sum(-1)
    return float(kl.mean())


def pearson(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Pearson correlation of two equally shaped arrays (flattened).

    Parameters
    ----------
    a, b : arrays or tensors of one shape, at least two entries, neither constant.

    Returns
    -------
    float
        The correlation in ``[-1, 1]`` (float64 arithmetic).
    """
    a_ = as_numpy(a, "a")
    b_ = as_numpy(b, "b")
    if a_.shape != b_.shape:
        raise ValueError(f"b must have the same shape as a {a_.shape}, got {b_.shape}")
    a_, b_ = a_.ravel(), b_.ravel()
    if a_.size < 2:
        raise ValueError("a and b must hold at least two entries")
    a_, b_ = a_ - a_.mean(), b_ - b_.mean()
    na, nb = np.sqrt((a_**2).sum()), np.sqrt((b_**2).sum())
    if na == 0 or nb == 0:
        raise ValueError("a and b must not be constant (zero variance)")
    return float((a_ * b_).sum() / (na * nb))


# ------------------------------------------------------------------------------------------------
# Classification, calibration and out-of-distribution scores
# ------------------------------------------------------------------------------------------------

# (classifiers section: auroc, fpr_at_tpr, expected_calibration_error, bootstrap intervals,
#  max_softmax, energy_score, ..., reject scores, multilabel_scores)
