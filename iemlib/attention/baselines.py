"""What one causal head can reach with its attention frozen uniform: a reference line for chapter 8.

The head of chapter 8 has no residual path: its output is ``z_i = W_O g_i + b`` with
``g_i = sum_{j <= i} alpha_ij W_V x_j``, so everything it knows about position ``i`` passes through
the attention weights. Frozen uniform (``alpha_ij = 1/i`` over ``j <= i``), ``g_i = W_V m_i`` with
the prefix mean ``m_i = (x_1 + ... + x_i) / i``, and the logits are ``A m_i + b`` with ``A = W_O W_V``.
For ``d_v >= min(C, d_x)`` every ``C x d_x`` matrix ``A`` is such a product, so the best loss any
``(W_V, W_O, b)`` reaches with uniform attention is that of a multinomial logistic regression on the
prefix means: a convex problem, solved here to its minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import as_numpy, check_int, check_labels
from ..runtime import single_threaded

__all__ = ["prefix_means", "UniformAttentionFit", "fit_uniform_attention"]


def prefix_means(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """``m_i = (x_1 + ... + x_i) / i``: the output of uniform causal attention on values ``x``.

    Parameters
    ----------
    x : ``(N, d)`` inputs (or values), one row per position.

    Returns
    -------
    ``(N, d)`` float64.
    """
    x = as_numpy(x, "x", ndim=2)
    return np.cumsum(x, 0) / np.arange(1, x.shape[0] + 1)[:, None]


@dataclass(frozen=True, eq=False)
class UniformAttentionFit:
    """The best head with attention frozen uniform (:func:`fit_uniform_attention`).

    Attributes
    ----------
    loss
        its mean cross-entropy per position on the training sequence (nats): the minimum over
        ``(W_V, W_O, b)``, the minimized loss.
    heldout_loss
        the same weights on the held-out sequence (``nan`` when none was given).
    A, b
        ``(C, d_x)`` the product ``W_O W_V`` and ``(C,)`` the bias of the optimum.
    grad_norm
        the largest absolute gradient entry at the returned optimum, with respect to the weights
        on the standardized prefix means (a convergence check).
    """

    loss: float
    heldout_loss: float
    A: np.ndarray
    b: np.ndarray
    grad_norm: float


def _mean_ce(m: torch.Tensor, y: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(m @ A.T + b, y)


def fit_uniform_attention(x, y, n_classes: int, x_heldout=None, y_heldout=None, *,
                          max_iter: int = 500) -> UniformAttentionFit:
    """Minimize the mean cross-entropy **loss** of ``softmax(A m_i + b)`` over ``A`` and ``b``, ``m_i``
    the prefix means of ``x``: the best a causal head reaches with uniform attention.

    Solved in float64 by L-BFGS with a strong-Wolfe line search on standardized prefix means
    (the same model class, better conditioned; the problem is convex; without
    regularization its minimum is finite unless the classes are separable, which they are not on
    chapter 8's chain).

    Parameters
    ----------
    x : ``(N, d_x)`` the inputs of the training sequence; y : ``(N,)`` targets in ``0 .. n_classes-1``.
    n_classes : C.
    x_heldout, y_heldout : a held-out sequence scored with the fitted weights (optional).
    max_iter : L-BFGS iterations.

    Returns
    -------
    UniformAttentionFit
    """
    C = check_int(n_classes, "n_classes", minimum=2)
    m_raw = prefix_means(x)
    # the model class is invariant under affine maps of the features (the bias absorbs the shift):
    # fit on standardized prefix means, far better conditioned, and map the optimum back
    centre, scale = m_raw.mean(0), m_raw.std(0) + 1e-12
    m = torch.as_tensor((m_raw - centre) / scale)
    y = check_labels(y, "y", C, shape=(m.shape[0],))
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    A = torch.zeros(C, m.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([A, b], lr=1.0, max_iter=check_int(max_iter, "max_iter", minimum=1),
                            tolerance_grad=1e-12, tolerance_change=1e-15, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _mean_ce(m, yt, A, b)
        loss.backward()
        return loss

    with single_threaded():  # many tiny operations: one thread is faster than several
        opt.step(closure)
        loss = closure().detach()
    grad = max(float(A.grad.abs().max()), float(b.grad.abs().max()))
    with torch.no_grad():  # back to the raw prefix means: logits = A_raw m + b_raw
        A_raw = A / torch.as_tensor(scale)
        b_raw = b - A_raw @ torch.as_tensor(centre)
    A, b = A_raw, b_raw
    held = float("nan")
    if x_heldout is not None:
        mh = torch.as_tensor(prefix_means(x_heldout))
        yh = check_labels(y_heldout, "y_heldout", C, shape=(mh.shape[0],))
        with torch.no_grad():
            held = float(_mean_ce(mh, torch.as_tensor(np.asarray(yh), dtype=torch.long), A, b))
    return UniformAttentionFit(loss=float(loss), heldout_loss=held, A=A.numpy().copy(), b=b.numpy().copy(),
                               grad_norm=grad)
