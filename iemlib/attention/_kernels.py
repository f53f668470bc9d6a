"""The torch computations of one attention head on validated tensors (package-private: shared by
``head`` and ``toy``): the masked softmax of the scores, the forward pass, the summed cross-entropy and
the paper's closed-form backward pass (§3). No validation here; the public functions of ``head`` check
their input first."""

from __future__ import annotations

import math

import torch


def softmax_scores(s: torch.Tensor, causal: bool) -> torch.Tensor:
    """``alpha = softmax(s)`` over the last axis, over ``j <= i`` only when ``causal``."""
    if causal:
        allowed = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
        return torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.softmax(s, dim=-1)



def forward_torch(x, W_Q, W_K, W_V, causal):
    d_k = W_Q.shape[0]
    q = x @ W_Q.T
    k = x @ W_K.T
    v = x @ W_V.T
    s = q @ k.transpose(-1, -2) / math.sqrt(d_k)
    alpha = softmax_scores(s, causal)
    g = alpha @ v
    return q, k, v, s, alpha, g



def summed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-sum log softmax(logits)[y]`` over every position (batch axes flattened)."""
    C = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, C), y.reshape(-1), reduction="sum")



def sum_batch(t: torch.Tensor, keep: int) -> torch.Tensor:
    """Sum over all leading axes so that ``keep`` trailing axes remain."""
    if t.ndim > keep:
        return t.sum(dim=tuple(range(t.ndim - keep)))
    return t



def closed_form_torch(x, y_t, Wq, Wk, Wv, Wo, b_, causal: bool, keep_all: bool) -> dict[str, torch.Tensor]:
    """The closed forms on validated tensors (private; a name -> tensor table for :class:`Backward`)."""
    d_k = Wq.shape[0]
    C = Wo.shape[0]
    q, k, v, s, alpha, g = forward_torch(x, Wq, Wk, Wv, causal)
    logits = g @ Wo.T + b_
    logp = torch.log_softmax(logits, dim=-1)
    loss = -logp.gather(-1, y_t.unsqueeze(-1)).sum()
    p = logp.exp()
    delta = p - torch.nn.functional.one_hot(y_t, C).to(p.dtype)  # dL/dl_i = p_i - e_{y_i}
    u = delta @ Wo  # rows u_i = W_O^T (p_i - e_{y_i})           (eq. 10)
    B = u @ v.transpose(-1, -2)  # b_ij = u_i^T v_j                   (eq. 11)
    EB = (alpha * B).sum(-1, keepdim=True)  # E_{alpha_i}[b]          (eq. 12)
    B_centered = B - EB
    dL_ds = alpha * B_centered  # the advantage law                    (eq. 23)
    dL_dv = alpha.transpose(-1, -2) @ u  # sum_i alpha_ij u_i          (eq. 16)
    dL_dq = dL_ds @ k / math.sqrt(d_k)  # eq. 25
    dL_dk = dL_ds.transpose(-1, -2) @ q / math.sqrt(d_k)  # eq. 27
    # parameter gradients, summed over positions and batch axes
    out = {
        "W_Q": sum_batch(dL_dq.transpose(-1, -2) @ x, 2),  # sum_i dL/dq_i x_i^T (eq. 29)
        "W_K": sum_batch(dL_dk.transpose(-1, -2) @ x, 2),  # sum_j dL/dk_j x_j^T (eq. 30)
        "W_V": sum_batch(u.transpose(-1, -2) @ alpha @ x, 2),  # U A X^T        (eq. 32)
        "W_O": sum_batch(delta.transpose(-1, -2) @ g, 2),  # sum_i (p_i - e_yi) g_i^T
        "b": sum_batch(delta, 1),  # sum_i (p_i - e_yi)
    }
    if keep_all:
        mask = torch.ones_like(alpha, dtype=torch.bool)
        if causal:
            mask = mask & torch.ones(alpha.shape[-2:], dtype=torch.bool, device=alpha.device).tril()
        out.update(
            q=q, k=k, v=v, s=s, alpha=alpha, g=g, logits=logits, p=p, loss=loss,
            delta=delta, u=u, B=B, E_B=EB.squeeze(-1),
            B_centered=B_centered.masked_fill(~mask, 0.0),
            advantage=(-B_centered).masked_fill(~mask, 0.0),
            mask=mask,
            dL_dalpha=B, dL_ds=dL_ds, dL_dv=dL_dv, dL_dq=dL_dq, dL_dk=dL_dk,
        )
    return out
