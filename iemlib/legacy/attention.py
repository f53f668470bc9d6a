"""Single-head attention and its closed-form gradients, in the notation of Aggarwal, Dalal and
Misra (2025), "Gradient Dynamics of Attention" (§2–§3).

Notation (the paper's, with rows as positions):

* ``x`` has shape ``(T, d_x)`` (optionally with leading batch axes ``(..., T, d_x)``); row ``i`` is
  ``x_i``.
* ``q_i = W_Q x_i``, ``k_j = W_K x_j``, ``v_j = W_V x_j`` with ``W_Q, W_K`` of shape ``(d_k, d_x)`` and
  ``W_V`` of shape ``(d_v, d_x)``.
* ``s_ij = q_i^T k_j / sqrt(d_k)``; ``alpha_ij = softmax_j(s_ij)`` over the allowed positions
  (``j <= i`` when ``causal``); ``g_i = sum_j alpha_ij v_j``.
* logits ``l_i = W_O g_i + b`` with ``W_O`` of shape ``(C, d_v)`` and ``b`` of shape ``(C,)``;
  ``p_i = softmax(l_i)``.
* The **loss** (minimized) is the *summed* cross-entropy ``L = -sum_i log p_{i, y_i}`` (summed over
  batch axes too). Every gradient in this module differentiates this loss.

The closed forms (§3 of the paper), every one a gradient of the loss ``L``:

* ``u_i = dL/dg_i = W_O^T (p_i - e_{y_i})``
* ``dL/dv_j = sum_i alpha_ij u_i``                     (responsibility-weighted value gradient)
* ``dL/dalpha_ij = b_ij = u_i^T v_j``                    (compatibility)
* ``dL/ds_ij = alpha_ij (b_ij - E_{alpha_i}[b])``        (the "advantage law")
* ``dL/dq_i = sum_j dL/ds_ij k_j / sqrt(d_k)``, ``dL/dk_j = sum_i dL/ds_ij q_i / sqrt(d_k)``
* ``grad W_Q = sum_i dL/dq_i x_i^T``, ``grad W_K = sum_j dL/dk_j x_j^T``, ``grad W_V = U A X^T``,
  ``grad W_O = sum_i (p_i - e_{y_i}) g_i^T``, ``grad b = sum_i (p_i - e_{y_i})``.

Sign convention of the advantage. The paper's §3.4 defines ``A_ij = -(b_ij - E_{alpha_i}[b])`` so
that gradient descent on the loss moves the score ``s_ij`` by ``+eta alpha_ij A_ij``: a score
*rises* where ``b_ij`` is *below* the attention-weighted mean compatibility. Here
``"advantage"`` is that ``A`` and ``"B_centered"`` is ``b_ij - E_{alpha_i}[b]`` (the §8.1
"advantage matrix", which has the opposite sign).

Every public function accepts numpy arrays and torch tensors. When any argument is a torch tensor
the results are torch tensors; otherwise they are numpy arrays. :func:`attention_forward` and
:func:`attention_loss` keep the autograd graph; the closed forms never use autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, check_int, check_labels, check_positive, is_torch

__all__ = [
    "PARAM_NAMES",
    "attention_forward",
    "attention_loss",
    "closed_form_backward",
    "closed_form_gradients",
    "autograd_gradients",
    "max_relative_error",
    "init_params",
    "gradient_step",
    "ToyRun",
    "simulate_toy",
    "toy_summary",
]

#: The trainable parameters, in the order of :func:`closed_form_gradients`' signature.
PARAM_NAMES: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "b")


# ----------------------------------------------------------------------------------------------
# validation and conversion
# ----------------------------------------------------------------------------------------------
def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_matrix(W: Any, name: str, rows: int | None, cols: int, rows_name: str, cols_desc: str) -> ArrayLike:
    W = as_float_array(W, name, ndim=2, allow_sequence=False)
    if W.shape[1] != cols:
        raise ValueError(
            f"{name} must have shape ({rows_name}, {cols_desc}) with {cols_desc} = {cols}, got {tuple(W.shape)}"
        )
    if rows is not None and W.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, {cols}) ({rows_name} = {rows}), got {tuple(W.shape)}")
    return W


def _validate_forward(x: Any, W_Q: Any, W_K: Any, W_V: Any, causal: Any) -> tuple[ArrayLike, ...]:
    x = as_float_array(x, "x", min_ndim=2, allow_sequence=False)
    d_x = x.shape[-1]
    if x.shape[-2] == 0 or d_x == 0:
        raise ValueError(f"x must have shape (..., T, d_x) with T >= 1 and d_x >= 1, got {tuple(x.shape)}")
    W_Q = _check_matrix(W_Q, "W_Q", None, d_x, "d_k", "d_x")
    W_K = _check_matrix(W_K, "W_K", W_Q.shape[0], d_x, "d_k", "d_x")
    W_V = _check_matrix(W_V, "W_V", None, d_x, "d_v", "d_x")
    if W_Q.shape[0] == 0 or W_V.shape[0] == 0:
        raise ValueError("W_Q and W_V must have at least one row (d_k >= 1, d_v >= 1)")
    _check_bool(causal, "causal")
    return x, W_Q, W_K, W_V


def _validate_full(
    x: Any, y: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, b: Any, causal: Any
) -> tuple[Any, ...]:
    x, W_Q, W_K, W_V = _validate_forward(x, W_Q, W_K, W_V, causal)
    d_v = W_V.shape[0]
    W_O = as_float_array(W_O, "W_O", ndim=2, allow_sequence=False)
    if W_O.shape[1] != d_v:
        raise ValueError(
            f"W_O must have shape (C, d_v) with d_v = W_V.shape[0] = {d_v}, got {tuple(W_O.shape)}"
        )
    C = W_O.shape[0]
    b = as_float_array(b, "b", ndim=1, allow_sequence=False)
    if b.shape[0] != C:
        raise ValueError(f"b must have shape (C,) with C = W_O.shape[0] = {C}, got {tuple(b.shape)}")
    y = check_labels(y, "y", C, shape=tuple(x.shape[:-1]))
    return x, y, W_Q, W_K, W_V, W_O, b


def _to_torch(arrays: tuple[Any, ...], detach: bool) -> tuple[list[torch.Tensor], bool]:
    """Convert to torch tensors of one promoted floating dtype; report whether any was torch."""
    any_torch = any(is_torch(a) for a in arrays)
    ts = [a if is_torch(a) else torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = next((t.device for t in ts if is_torch(t) and t.device.type != "cpu"), ts[0].device)
    out = [t.to(dtype=dtype, device=device) for t in ts]
    if detach:
        out = [t.detach() for t in out]
    return out, any_torch


def _out(t: torch.Tensor, as_torch: bool) -> ArrayLike:
    return t if as_torch else t.detach().cpu().numpy()


def _labels_to_torch(y: Any, device: torch.device) -> torch.Tensor:
    return (y if is_torch(y) else torch.from_numpy(np.asarray(y))).to(device=device, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# forward pass
# ----------------------------------------------------------------------------------------------
def _forward_torch(x, W_Q, W_K, W_V, causal):
    d_k = W_Q.shape[0]
    q = x @ W_Q.T
    k = x @ W_K.T
    v = x @ W_V.T
    s = q @ k.transpose(-1, -2) / math.sqrt(d_k)
    if causal:
        T = x.shape[-2]
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        alpha = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
    else:
        alpha = torch.softmax(s, dim=-1)
    g = alpha @ v
    return q, k, v, s, alpha, g


def attention_forward(
    x: ArrayLike, W_Q: ArrayLike, W_K: ArrayLike, W_V: ArrayLike, causal: bool = True
) -> tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]:
    """Forward pass of one attention head (no output projection): ``(alpha, v, g, s)``.

    Parameters
    ----------
    x : array of shape ``(..., T, d_x)``
        Inputs, one row per position; leading axes are independent sequences (a batch).
    W_Q, W_K : arrays of shape ``(d_k, d_x)``
    W_V : array of shape ``(d_v, d_x)``
    causal : bool
        If True, position ``i`` attends to ``j <= i`` only (``alpha_ij = 0`` for ``j > i``).

    Returns
    -------
    alpha : ``(..., T, T)`` attention weights, rows sum to one (the responsibilities).
    v : ``(..., T, d_v)`` values ``v_j = W_V x_j``.
    g : ``(..., T, d_v)`` contexts ``g_i = sum_j alpha_ij v_j``.
    s : ``(..., T, T)`` raw scores ``q_i^T k_j / sqrt(d_k)``, *unmasked* (the mask acts in the softmax).

    Torch inputs keep their autograd graph (and device); numpy inputs give numpy outputs.
    """
    x, W_Q, W_K, W_V = _validate_forward(x, W_Q, W_K, W_V, causal)
    (x_, Wq, Wk, Wv), as_torch = _to_torch((x, W_Q, W_K, W_V), detach=False)
    _, _, v, s, alpha, g = _forward_torch(x_, Wq, Wk, Wv, bool(causal))
    return _out(alpha, as_torch), _out(v, as_torch), _out(g, as_torch), _out(s, as_torch)


def _logits_loss(g, W_O, b, y_t):
    logits = g @ W_O.T + b
    logp = torch.log_softmax(logits, dim=-1)
    loss = -logp.gather(-1, y_t.unsqueeze(-1)).sum()
    return logits, logp, loss


def attention_loss(
    x: ArrayLike,
    y: Any,
    W_Q: ArrayLike,
    W_K: ArrayLike,
    W_V: ArrayLike,
    W_O: ArrayLike,
    b: ArrayLike,
    causal: bool = True,
) -> ArrayLike | float:
    """The summed cross-entropy **loss** ``L = -sum_i log p_{i, y_i}`` (minimized).

    Returns a 0-d torch tensor (with its autograd graph) when any argument is a torch tensor,
    else a Python float. ``y`` holds integer targets of shape ``x.shape[:-1]`` in ``[0, C)``.
    """
    x, y, W_Q, W_K, W_V, W_O, b = _validate_full(x, y, W_Q, W_K, W_V, W_O, b, causal)
    (x_, Wq, Wk, Wv, Wo, b_), as_torch = _to_torch((x, W_Q, W_K, W_V, W_O, b), detach=False)
    *_, g = _forward_torch(x_, Wq, Wk, Wv, bool(causal))
    _, _, loss = _logits_loss(g, Wo, b_, _labels_to_torch(y, x_.device))
    return loss if as_torch else float(loss)


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------
def _sum_batch(t: torch.Tensor, keep: int) -> torch.Tensor:
    """Sum over all leading axes so that ``keep`` trailing axes remain."""
    if t.ndim > keep:
        return t.sum(dim=tuple(range(t.ndim - keep)))
    return t


def _closed_form_torch(x, y_t, Wq, Wk, Wv, Wo, b_, causal: bool, keep_all: bool) -> dict[str, torch.Tensor]:
    d_k = Wq.shape[0]
    C = Wo.shape[0]
    q, k, v, s, alpha, g = _forward_torch(x, Wq, Wk, Wv, causal)
    logits, logp, loss = _logits_loss(g, Wo, b_, y_t)
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
    grad_WQ = _sum_batch(dL_dq.transpose(-1, -2) @ x, 2)  # sum_i dL/dq_i x_i^T (eq. 29)
    grad_WK = _sum_batch(dL_dk.transpose(-1, -2) @ x, 2)  # sum_j dL/dk_j x_j^T (eq. 30)
    grad_WV = _sum_batch(u.transpose(-1, -2) @ alpha @ x, 2)  # U A X^T        (eq. 32)
    grad_WO = _sum_batch(delta.transpose(-1, -2) @ g, 2)  # sum_i (p_i - e_yi) g_i^T
    grad_b = _sum_batch(delta, 1)  # sum_i (p_i - e_yi)
    out = {"W_Q": grad_WQ, "W_K": grad_WK, "W_V": grad_WV, "W_O": grad_WO, "b": grad_b}
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


def closed_form_backward(
    x: ArrayLike,
    y: Any,
    W_Q: ArrayLike,
    W_K: ArrayLike,
    W_V: ArrayLike,
    W_O: ArrayLike,
    b: ArrayLike,
    causal: bool = True,
) -> dict[str, ArrayLike]:
    """Forward pass, the paper's closed-form backward pass and every intermediate, as one dict.

    Everything differentiates the summed cross-entropy **loss** ``L`` (minimized); no autograd.
    Keys (shapes for a single sequence; batch axes lead where ``x`` has them):

    * parameter gradients ``"W_Q", "W_K", "W_V", "W_O", "b"`` (as :func:`closed_form_gradients`);
    * forward: ``q, k (T, d_k)``, ``v (T, d_v)``, ``s (T, T)`` unmasked scores, ``alpha (T, T)``,
      ``g (T, d_v)``, ``logits, p (T, C)``, ``loss`` (0-d);
    * backward: ``delta = p - onehot(y) (T, C)``, ``u (T, d_v)`` rows ``u_i``, ``B (T, T)``
      compatibilities ``b_ij = u_i^T v_j``, ``E_B (T,)`` = ``E_{alpha_i}[b]``,
      ``B_centered = b_ij - E_{alpha_i}[b]`` (§8.1's advantage matrix), ``advantage`` =
      ``-B_centered`` (§3.4's ``A_ij``; descent raises ``s_ij`` where it is positive), both zero at
      masked positions, ``mask`` (allowed positions), ``dL_dalpha`` (= ``B``), ``dL_ds``,
      ``dL_dv``, ``dL_dq``, ``dL_dk``.
    """
    x, y, W_Q, W_K, W_V, W_O, b = _validate_full(x, y, W_Q, W_K, W_V, W_O, b, causal)
    (x_, Wq, Wk, Wv, Wo, b_), as_torch = _to_torch((x, W_Q, W_K, W_V, W_O, b), detach=True)
    with torch.no_grad():
        out = _closed_form_torch(x_, _labels_to_torch(y, x_.device), Wq, Wk, Wv, Wo, b_, bool(causal), True)
    res = {k: _out(t, as_torch) for k, t in out.items()}
    if not as_torch:
        res["loss"] = float(res["loss"])
    return res


def closed_form_gradients(
    x: ArrayLike,
    y: Any,
    W_Q: ArrayLike,
    W_K: ArrayLike,
    W_V: ArrayLike,
    W_O: ArrayLike,
    b: ArrayLike,
    causal: bool = True,
) -> dict[str, ArrayLike]:
    """Gradients of the summed cross-entropy **loss** (minimized) from the paper's closed forms.

    Returns ``{"W_Q", "W_K", "W_V", "W_O", "b"}``, each of its parameter's shape, computed from
    §3 of Aggarwal, Dalal and Misra (2025) without autograd (see the module docstring). ``x`` is
    ``(T, d_x)`` or ``(..., T, d_x)`` (losses summed over the batch axes too), ``y`` integer
    targets of shape ``x.shape[:-1]``, ``W_Q, W_K (d_k, d_x)``, ``W_V (d_v, d_x)``,
    ``W_O (C, d_v)``, ``b (C,)``. For the intermediates use :func:`closed_form_backward`.
    """
    x, y, W_Q, W_K, W_V, W_O, b = _validate_full(x, y, W_Q, W_K, W_V, W_O, b, causal)
    (x_, Wq, Wk, Wv, Wo, b_), as_torch = _to_torch((x, W_Q, W_K, W_V, W_O, b), detach=True)
    with torch.no_grad():
        out = _closed_form_torch(x_, _labels_to_torch(y, x_.device), Wq, Wk, Wv, Wo, b_, bool(causal), False)
    return {k: _out(out[k], as_torch) for k in PARAM_NAMES}


def autograd_gradients(
    x: ArrayLike,
    y: Any,
    W_Q: ArrayLike,
    W_K: ArrayLike,
    W_V: ArrayLike,
    W_O: ArrayLike,
    b: ArrayLike,
    causal: bool = True,
    *,
    intermediates: bool = False,
) -> dict[str, ArrayLike]:
    """The same gradients of the summed cross-entropy **loss**, by ``torch.autograd`` (the reference).

    With ``intermediates=True`` the dict also holds autograd's ``dL_dg`` (= ``u``), ``dL_dalpha``,
    ``dL_ds``, ``dL_dv``, ``dL_dq``, ``dL_dk`` for checking the per-position closed forms.
    """
    x, y, W_Q, W_K, W_V, W_O, b = _validate_full(x, y, W_Q, W_K, W_V, W_O, b, causal)
    (x_, Wq, Wk, Wv, Wo, b_), as_torch = _to_torch((x, W_Q, W_K, W_V, W_O, b), detach=True)
    params = [t.clone().requires_grad_(True) for t in (Wq, Wk, Wv, Wo, b_)]
    Wq, Wk, Wv, Wo, b_ = params
    with torch.enable_grad():
        q, k, v, s, alpha, g = _forward_torch(x_, Wq, Wk, Wv, causal)
        _, _, loss = _logits_loss(g, Wo, b_, _labels_to_torch(y, x_.device))
        inter = [g, alpha, s, v, q, k]
        grads = torch.autograd.grad(loss, params + inter)
    names = list(PARAM_NAMES) + (["dL_dg", "dL_dalpha", "dL_ds", "dL_dv", "dL_dq", "dL_dk"])
    res = dict(zip(names, grads))
    if not intermediates:
        res = {k: res[k] for k in PARAM_NAMES}
    return {k: _out(t.detach(), as_torch) for k, t in res.items()}


def max_relative_error(a: ArrayLike, b: ArrayLike) -> float:
    """``max|a - b| / max(max|b|, tiny)``: the error of ``a`` relative to the reference ``b``'s scale."""
    a_ = a.detach().cpu().numpy() if is_torch(a) else np.asarray(a)
    b_ = b.detach().cpu().numpy() if is_torch(b) else np.asarray(b)
    if a_.shape != b_.shape:
        raise ValueError(f"a and b must have the same shape, got {a_.shape} and {b_.shape}")
    scale = max(float(np.max(np.abs(b_))) if b_.size else 0.0, np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a_ - b_))) / scale if a_.size else 0.0


# ----------------------------------------------------------------------------------------------
# training with the closed forms
# ----------------------------------------------------------------------------------------------
def init_params(
    d_x: int, d_k: int, d_v: int, n_classes: int, *, scale: float = 0.1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Small Gaussian initialisation (float64 numpy): entries ``N(0, scale^2)``, ``b = 0``."""
    d_x = check_int(d_x, "d_x", minimum=1)
    d_k = check_int(d_k, "d_k", minimum=1)
    d_v = check_int(d_v, "d_v", minimum=1)
    C = check_int(n_classes, "n_classes", minimum=2)
    scale = check_positive(scale, "scale")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    return {
        "W_Q": scale * rng.standard_normal((d_k, d_x)),
        "W_K": scale * rng.standard_normal((d_k, d_x)),
        "W_V": scale * rng.standard_normal((d_v, d_x)),
        "W_O": scale * rng.standard_normal((C, d_v)),
        "b": np.zeros(C),
    }


def _check_params(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with keys {PARAM_NAMES}, got {type(params).__name__}")
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise ValueError(f"params must hold keys {PARAM_NAMES}; missing {missing}")
    return params


def gradient_step(
    params: dict[str, ArrayLike], x: ArrayLike, y: Any, lr: float, causal: bool = True
) -> tuple[dict[str, ArrayLike], dict[str, ArrayLike]]:
    """One gradient-descent step on the summed cross-entropy **loss**, driven by the closed forms.

    Returns ``(new_params, state)`` where ``new_params[name] = params[name] - lr * grad`` and
    ``state`` is :func:`closed_form_backward` at the *old* parameters (loss, alpha, u, B, ...).
    """
    params = _check_params(params)
    lr = check_positive(lr, "lr")
    state = closed_form_backward(x, y, *(params[k] for k in PARAM_NAMES), causal=causal)
    new = {k: params[k] - lr * state[k] for k in PARAM_NAMES}
    return new, state


@dataclass
class ToyRun:
    """History of :func:`simulate_toy`. Arrays are float64 numpy, step axis first (``n_steps + 1``
    entries: the initial state and one after every step; gradient-derived quantities are at
    the parameters of that entry)."""

    seed: int
    lr: float
    init_scale: float
    causal: bool
    x: np.ndarray  # (T, d_x)
    y: np.ndarray  # (T,)
    params: dict[str, np.ndarray]  # name -> (n_steps+1, *shape)
    loss: np.ndarray  # (n_steps+1,)  summed cross-entropy loss
    alpha: np.ndarray  # (n_steps+1, T, T)
    s: np.ndarray  # (n_steps+1, T, T)
    v: np.ndarray  # (n_steps+1, T, d_v)
    u: np.ndarray  # (n_steps+1, T, d_v)
    B: np.ndarray  # (n_steps+1, T, T)
    advantage: np.ndarray  # (n_steps+1, T, T)   A_ij = -(b_ij - E[b]) (§3.4 sign)
    dL_ds: np.ndarray  # (n_steps+1, T, T)
    dL_dv: np.ndarray  # (n_steps+1, T, d_v)
    p: np.ndarray  # (n_steps+1, T, C)
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_steps+1, *shape)

    @property
    def n_steps(self) -> int:
        return len(self.loss) - 1


def simulate_toy(
    *,
    seed: int = 1,
    T: int = 5,
    d_x: int = 3,
    d_k: int = 2,
    d_v: int = 2,
    n_classes: int = 3,
    n_steps: int = 100,
    lr: float = 0.2,
    init_scale: float = 0.3,
    causal: bool = False,
) -> ToyRun:
    """The toy simulation of the paper's §7.1, driven by the closed forms (no autograd).

    One sequence ``x_j ~ N(0, I_{d_x})``, random targets ``y_i`` uniform in ``{0, ..., C-1}``,
    parameters :func:`init_params` (``N(0, init_scale^2)``, ``b = 0``), then ``n_steps`` steps of
    full-batch gradient descent with fixed ``lr`` on the summed cross-entropy loss. Data and
    initialisation both come from ``np.random.default_rng(seed)`` (data first).
    """
    seed = check_int(seed, "seed", minimum=0)
    T = check_int(T, "T", minimum=1)
    d_x = check_int(d_x, "d_x", minimum=1)
    C = check_int(n_classes, "n_classes", minimum=2)
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    lr = check_positive(lr, "lr")
    init_scale = check_positive(init_scale, "init_scale")
    causal = _check_bool(causal, "causal")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, d_x))
    y = rng.integers(0, C, size=T)
    params = init_params(d_x, d_k, d_v, C, scale=init_scale, seed=int(rng.integers(0, 2**31 - 1)))

    keys = ("loss", "alpha", "s", "v", "u", "B", "advantage", "dL_ds", "dL_dv", "p")
    hist: dict[str, list] = {k: [] for k in keys}
    phist: dict[str, list] = {k: [] for k in PARAM_NAMES}
    ghist: dict[str, list] = {k: [] for k in PARAM_NAMES}
    # validated once here; the loop calls the closed forms directly on float64 tensors
    _validate_full(x, y, *(params[k] for k in PARAM_NAMES), causal)
    x_t = torch.from_numpy(x)
    y_t = torch.from_numpy(y).long()
    p_t = {k: torch.from_numpy(params[k]) for k in PARAM_NAMES}
    with torch.no_grad():
        for step in range(n_steps + 1):
            state = _closed_form_torch(x_t, y_t, *(p_t[k] for k in PARAM_NAMES), causal, True)
            for k in keys:
                hist[k].append(state[k])
            for k in PARAM_NAMES:
                phist[k].append(p_t[k])
                ghist[k].append(state[k])
            if step < n_steps:
                p_t = {k: p_t[k] - lr * state[k] for k in PARAM_NAMES}
    hist = {k: [t.numpy() for t in v] for k, v in hist.items()}
    phist = {k: [t.numpy() for t in v] for k, v in phist.items()}
    ghist = {k: [t.numpy() for t in v] for k, v in ghist.items()}
    arr = {k: np.asarray(v) for k, v in hist.items()}
    return ToyRun(
        seed=seed, lr=lr, init_scale=init_scale, causal=causal, x=x, y=y,
        params={k: np.asarray(v) for k, v in phist.items()},
        grads={k: np.asarray(v) for k, v in ghist.items()},
        **arr,
    )


def toy_summary(run: ToyRun, *, late_from: int = 30) -> dict[str, float]:
    """The chapter-5 diagnostics of one :class:`ToyRun`, as numbers (so that they can be reported
    over many seeds). Every gradient is of the summed cross-entropy loss.

    Keys: ``loss_start``, ``loss_end``, ``monotone`` (1.0 if the loss fell at every step),
    ``finite`` (1.0 if every loss is finite), ``entropy_end`` (mean attention entropy, nats),
    ``max_weight_end`` (mean over queries of the largest weight), ``usage_std_start`` / ``_end``,
    ``columns_over_one`` (columns whose final usage exceeds 1, one query's worth),
    ``columns_under_half``, ``corr_usage_grad_median`` (median over steps of the correlation across
    columns of usage and ``||dL/dv_j||``) and ``corr_usage_grad_late`` (its mean from step
    ``late_from`` on), ``value_step_lowers_compat`` (fraction of steps at which the value step lowers
    ``sum_ij alpha_ij b_ij`` to first order), ``alpha_rise_at_positive_A`` / ``_negative_A`` (fraction
    of entries whose weight rises in one step, split by the sign of the advantage before it),
    ``score_sign_agreement`` (fraction of entries where the realized score change has the sign of the
    free-score step), ``value_update_cos_median`` (median cosine of realized and free value updates),
    ``score_grad_positive_fraction`` (fraction of allowed entries with ``dL/ds_ij > 0``),
    ``score_grad_row_sum_max`` (largest ``|sum_j dL/ds_ij|``), ``t90_alpha``, ``t90_v`` and
    ``t90_v_direction`` (steps to reach 90 % of the final change of the attention weights, of the
    values, and of the value directions ``v_j / ||v_j||``), ``value_norm_max_end``,
    ``value_norm_growth`` (mean final over mean initial value norm) and ``pca_pc1_ratio`` (share of
    the variance of all value positions over training on their first principal component).
    """
    from . import diagnostics as dg  # local import: diagnostics does not depend on this module

    if not isinstance(run, ToyRun):
        raise ValueError(f"run must be a ToyRun, got {type(run).__name__}")
    n = run.n_steps
    if n < 2:
        raise ValueError(f"run must have at least 2 steps, got {n}")
    late_from = check_int(late_from, "late_from", minimum=0)
    finite = bool(np.all(np.isfinite(run.loss)))
    out: dict[str, float] = {
        "loss_start": float(run.loss[0]),
        "loss_end": float(run.loss[-1]),
        "monotone": float(np.all(np.diff(run.loss) < 0)),
        "finite": float(finite),
    }
    if not finite:
        return out
    usage = run.alpha.sum(-2)  # (n+1, T)
    ent = -(np.where(run.alpha > 0, run.alpha * np.log(np.where(run.alpha > 0, run.alpha, 1.0)), 0.0)).sum(-1)
    gnorm = np.linalg.norm(run.dL_dv, axis=-1)
    corr = []
    for t in range(n):
        try:
            corr.append(dg.pearson(usage[t], gnorm[t]))
        except ValueError:  # a constant column usage or gradient size: no correlation defined
            corr.append(np.nan)
    corr = np.asarray(corr)
    dv_free = -run.lr * run.dL_dv[:-1]
    change = np.einsum("tij,tid,tjd->t", run.alpha[:-1], run.u[:-1], dv_free)
    dalpha = np.diff(run.alpha, axis=0)
    A_prev = run.advantage[:-1]
    ds_real, ds_free = np.diff(run.s, axis=0), -run.lr * run.dL_ds[:-1]
    dv_real = np.diff(run.v, axis=0)
    cos_v = (dv_real * dv_free).sum(-1) / (np.linalg.norm(dv_real, axis=-1) * np.linalg.norm(dv_free, axis=-1) + 1e-300)
    mask = ~np.triu(np.ones(run.alpha.shape[-2:], dtype=bool), 1) if run.causal else np.ones(run.alpha.shape[-2:], dtype=bool)
    direction = run.v / np.linalg.norm(run.v, axis=-1, keepdims=True)
    out.update(
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
        t90_alpha=float(dg.settling_step(run.alpha)),
        t90_v=float(dg.settling_step(run.v)),
        t90_v_direction=float(dg.settling_step(direction)),
        value_norm_max_end=float(np.linalg.norm(run.v[-1], axis=-1).max()),
        value_norm_growth=float(np.linalg.norm(run.v[-1], axis=-1).mean() / np.linalg.norm(run.v[0], axis=-1).mean()),
        pca_pc1_ratio=float(dg.pca(run.v.reshape(-1, run.v.shape[-1]), n_components=1)[2][0]),
    )
    return out
