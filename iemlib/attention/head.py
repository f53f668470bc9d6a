"""One attention head and its closed-form gradients, in the notation of Agarwal, Dalal and Misra
(2025), "Gradient Dynamics of Attention" (§2–§3).

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

The loss depends on the parameters only through the scores ``s``, the values ``v`` and the read-out
``W_O, b``: :func:`attention_loss` is written in those (the form in which chapter 3 checks the value
and score gradients); the head's loss at parameters ``W_Q, W_K, W_V, W_O, b`` is
``attention_loss(s, v, W_O, b, y, causal=causal)`` with ``s, v`` from :func:`attention_forward`.

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
``advantage`` is that ``A`` and ``B_centered`` is ``b_ij - E_{alpha_i}[b]`` (the §8.1
"advantage matrix", which has the opposite sign).

Every public function accepts numpy arrays and torch tensors. When any argument of
:func:`attention_forward`, :func:`closed_form_backward`, :func:`closed_form_gradients` or
:func:`autograd_gradients` is a torch tensor the results are torch tensors, otherwise numpy arrays;
:func:`attention_loss` and the value/score gradients always return torch tensors (the loss keeps its
autograd graph, so that it can be differentiated). The closed forms never use autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from .._validation import ArrayLike, as_float_array, check_int, check_labels, check_positive, is_torch
from ._checks import check_bool, validate_forward, validate_full
from ._kernels import closed_form_torch, forward_torch, softmax_scores, summed_cross_entropy

__all__ = [
    "PARAM_NAMES",
    "HeadParams",
    "Forward",
    "Backward",
    "HeadGradients",
    "attention_forward",
    "attention_loss",
    "attention_value_gradient",
    "attention_score_gradient",
    "closed_form_backward",
    "closed_form_gradients",
    "autograd_gradients",
    "init_params",
    "gradient_step",
]

#: The trainable parameters, in the order of :func:`closed_form_gradients`' signature.
PARAM_NAMES: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "b")


@dataclass(frozen=True, eq=False)
class HeadParams:
    """The five trainable parameters of one head, paper layout (or anything indexed by them:
    their gradients, their histories over training steps).

    Attributes
    ----------
    W_Q, W_K
        ``(d_k, d_x)``
    W_V
        ``(d_v, d_x)``
    W_O
        ``(C, d_v)``
    b
        ``(C,)``

    Notes
    -----
    Iterating gives the five in ``PARAM_NAMES`` order, so ``f(x, y, *params)`` passes them.
    """

    W_Q: Any
    W_K: Any
    W_V: Any
    W_O: Any
    b: Any

    def __iter__(self) -> Iterator[Any]:
        return iter((self.W_Q, self.W_K, self.W_V, self.W_O, self.b))


class Forward(NamedTuple):
    """:func:`attention_forward`'s outputs (a named tuple: ``alpha, v, g, s = attention_forward(...)``).

    Attributes
    ----------
    alpha
        ``(..., T, T)`` attention weights, rows sum to one (the responsibilities).
    v
        ``(..., T, d_v)`` values ``v_j = W_V x_j``.
    g
        ``(..., T, d_v)`` contexts ``g_i = sum_j alpha_ij v_j``.
    s
        ``(..., T, T)`` raw scores ``q_i^T k_j / sqrt(d_k)``, *unmasked* (the mask acts in the softmax).
    """

    alpha: ArrayLike
    v: ArrayLike
    g: ArrayLike
    s: ArrayLike


@dataclass(frozen=True, eq=False)
class Backward:
    """Forward pass, closed-form backward pass and every intermediate (:func:`closed_form_backward`).

    Everything differentiates the summed cross-entropy **loss** ``L`` (minimized). Shapes for a single
    sequence; batch axes lead where ``x`` has them.

    Attributes
    ----------
    W_Q, W_K, W_V, W_O, b
        parameter gradients (as :func:`closed_form_gradients`; also :attr:`grads`).
    q, k
        ``(T, d_k)``; v : ``(T, d_v)``; s : ``(T, T)`` unmasked scores; alpha : ``(T, T)``;
    g
        ``(T, d_v)``; logits, p : ``(T, C)``; loss : the summed loss (0-d; a float for numpy input).
    delta
        ``p - onehot(y)``, ``(T, C)``.
    u
        ``(T, d_v)``, rows ``u_i = dL/dg_i``.
    B
        ``(T, T)`` compatibilities ``b_ij = u_i^T v_j`` (= ``dL_dalpha``).
    E_B
        ``(T,)``, ``E_{alpha_i}[b]``.
    B_centered
        ``b_ij - E_{alpha_i}[b]`` (§8.1's advantage matrix), zero at masked positions.
    advantage
        ``-B_centered`` (§3.4's ``A_ij``; descent raises ``s_ij`` where it is positive).
    mask
        boolean ``(T, T)``, the allowed positions.
    dL_dalpha, dL_ds, dL_dv, dL_dq, dL_dk
        the gradients of the loss with respect to those.
    """

    W_Q: Any
    W_K: Any
    W_V: Any
    W_O: Any
    b: Any
    q: Any
    k: Any
    v: Any
    s: Any
    alpha: Any
    g: Any
    logits: Any
    p: Any
    loss: Any
    delta: Any
    u: Any
    B: Any
    E_B: Any
    B_centered: Any
    advantage: Any
    mask: Any
    dL_dalpha: Any
    dL_ds: Any
    dL_dv: Any
    dL_dq: Any
    dL_dk: Any

    @property
    def grads(self) -> HeadParams:
        """The five parameter gradients as :class:`HeadParams`."""
        return HeadParams(self.W_Q, self.W_K, self.W_V, self.W_O, self.b)


@dataclass(frozen=True, eq=False)
class HeadGradients:
    """Gradients of the summed cross-entropy **loss** by ``torch.autograd`` (:func:`autograd_gradients`).

    Attributes
    ----------
    W_Q, W_K, W_V, W_O, b
        the parameter gradients.
    dL_dg
        ``(T, d_v)`` (the closed form's ``u``); dL_dalpha : ``(T, T)`` (the closed form's ``B``);
    dL_ds
        ``(T, T)``; dL_dv : ``(T, d_v)``; dL_dq, dL_dk : ``(T, d_k)``.
    """

    W_Q: Any
    W_K: Any
    W_V: Any
    W_O: Any
    b: Any
    dL_dg: Any
    dL_dalpha: Any
    dL_ds: Any
    dL_dv: Any
    dL_dq: Any
    dL_dk: Any


# ----------------------------------------------------------------------------------------------
# validation and conversion
# ----------------------------------------------------------------------------------------------


def _promote(arrays: tuple[Any, ...], detach: bool) -> tuple[list[torch.Tensor], bool]:
    """Validated arrays as torch tensors of one promoted floating dtype, on the device of the first
    non-CPU tensor (numpy arrays keep their dtype); also whether any input was a tensor."""
    any_torch = any(is_torch(a) for a in arrays)
    ts = [a if is_torch(a) else torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = next((t.device for t in ts if t.device.type != "cpu"), ts[0].device)
    out = [t.to(dtype=dtype, device=device) for t in ts]
    if detach:
        out = [t.detach() for t in out]
    return out, any_torch


def _prepared(x, y, W_Q, W_K, W_V, W_O, b, causal) -> tuple[list[torch.Tensor], torch.Tensor, bool]:
    """Validated, detached tensors ``x, W_Q, W_K, W_V, W_O, b`` of one dtype and device, the labels
    as int64 on that device, and whether any input was a tensor."""
    x, y, W_Q, W_K, W_V, W_O, b = validate_full(x, y, W_Q, W_K, W_V, W_O, b, causal)
    ts, as_torch = _promote((x, W_Q, W_K, W_V, W_O, b), detach=True)
    return ts, _labels(y, ts[0].device), as_torch


def _out(t: torch.Tensor, as_torch: bool) -> ArrayLike:
    return t if as_torch else t.detach().cpu().numpy()


def _labels(y: Any, device: torch.device) -> torch.Tensor:
    return (y if is_torch(y) else torch.from_numpy(np.asarray(y))).to(device=device, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# forward pass and loss
# ----------------------------------------------------------------------------------------------


def attention_forward(
    x: ArrayLike, W_Q: ArrayLike, W_K: ArrayLike, W_V: ArrayLike, causal: bool = True
) -> Forward:
    """Forward pass of one attention head (no output projection).

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
    Forward
        ``(alpha, v, g, s)``, a named tuple. Torch inputs keep their autograd graph (and device);
        numpy inputs give numpy outputs.
    """
    x, W_Q, W_K, W_V = validate_forward(x, W_Q, W_K, W_V, causal)
    (x_, Wq, Wk, Wv), as_torch = _promote((x, W_Q, W_K, W_V), detach=False)
    _, _, v, s, alpha, g = forward_torch(x_, Wq, Wk, Wv, bool(causal))
    return Forward(_out(alpha, as_torch), _out(v, as_torch), _out(g, as_torch), _out(s, as_torch))


def _score_inputs(s: Any, v: Any, W_O: Any, b: Any, y: Any, causal: Any) -> tuple:
    s = as_float_array(s, "s", ndim=2)
    v = as_float_array(v, "v", ndim=2)
    W_O = as_float_array(W_O, "W_O", ndim=2)
    b = as_float_array(b, "b", ndim=1)
    T, Tk = s.shape
    if v.shape[0] != Tk:
        raise ValueError(f"v must have {Tk} rows (one value per key), got shape {tuple(v.shape)}")
    if W_O.shape[1] != v.shape[1]:
        raise ValueError(f"W_O must have {v.shape[1]} columns (the value dimension), got shape {tuple(W_O.shape)}")
    if b.shape[0] != W_O.shape[0]:
        raise ValueError(f"b must have {W_O.shape[0]} entries (one per class), got shape {tuple(b.shape)}")
    y = check_labels(y, "y", W_O.shape[0], shape=(T,))
    check_bool(causal, "causal")
    arrs = [torch.as_tensor(a) if not is_torch(a) else a for a in (s, v, W_O, b)]
    dt = arrs[0].dtype
    for a in arrs[1:]:
        dt = torch.promote_types(dt, a.dtype)  # mixed float32/float64 inputs compute in float64
    dev = next((a.device for a in arrs if a.device.type != "cpu"), arrs[0].device)
    arrs = [a.to(dtype=dt, device=dev) for a in arrs]
    return (*arrs, _labels(y, dev))


def attention_loss(s: ArrayLike, v: ArrayLike, W_O: ArrayLike, b: ArrayLike, y: Any, *,
                   causal: bool = False) -> torch.Tensor:
    """The summed cross-entropy **loss** (minimized) of one head, written from its scores and values.

    ``alpha_i = softmax(s_i)`` over the keys (``j <= i`` when ``causal``), ``g_i = sum_j alpha_ij v_j``,
    logits ``W_O g_i + b``, loss ``sum_i CE(logits_i, y_i)``. The head's loss at parameters
    ``W_Q, W_K, W_V, W_O, b`` is this function of ``s, v`` from :func:`attention_forward`.

    Parameters
    ----------
    s : ``(T, T_k)`` scores; v : ``(T_k, d_v)`` values; W_O : ``(C, d_v)``; b : ``(C,)``;
    y : ``(T,)`` integer labels in ``[0, C)``; causal : mask ``j > i``.

    Returns
    -------
    torch.Tensor
        A 0-d tensor, differentiable in ``s``, ``v``, ``W_O`` and ``b`` (numpy inputs too).
    """
    s, v, W_O, b, y = _score_inputs(s, v, W_O, b, y, causal)
    alpha = softmax_scores(s, bool(causal))
    logits = alpha @ v @ W_O.T + b
    return summed_cross_entropy(logits, y)


def _upstream(s, v, W_O, b, y, causal):
    alpha = softmax_scores(s, causal)
    p = torch.softmax(alpha @ v @ W_O.T + b, dim=-1)
    onehot = torch.nn.functional.one_hot(y, W_O.shape[0]).to(s.dtype)
    u = (p - onehot) @ W_O  # u_i = W_O^T (p_i - e_{y_i}), shape (T, d_v)
    return alpha, u


def attention_value_gradient(s: ArrayLike, v: ArrayLike, W_O: ArrayLike, b: ArrayLike, y: Any, *,
                             causal: bool = False) -> torch.Tensor:
    """Closed form ``dLoss/dv_j = sum_i alpha_ij u_i`` with ``u_i = W_O^T (p_i - e_{y_i})``.

    The gradient of :func:`attention_loss` (minimized) with respect to ``v`` (same arguments), shape
    of ``v``, a torch tensor; no autograd.
    """
    s, v, W_O, b, y = _score_inputs(s, v, W_O, b, y, causal)
    with torch.no_grad():
        alpha, u = _upstream(s, v, W_O, b, y, bool(causal))
        return alpha.T @ u


def attention_score_gradient(s: ArrayLike, v: ArrayLike, W_O: ArrayLike, b: ArrayLike, y: Any, *,
                             causal: bool = False) -> torch.Tensor:
    """Closed form ``dLoss/ds_ij = alpha_ij (b_ij - E_{alpha_i}[b])`` with ``b_ij = u_i . v_j``.

    The gradient of :func:`attention_loss` (minimized) with respect to ``s`` (same arguments), shape of
    ``s``, a torch tensor (zero at masked entries); no autograd.
    """
    s, v, W_O, b, y = _score_inputs(s, v, W_O, b, y, causal)
    with torch.no_grad():
        alpha, u = _upstream(s, v, W_O, b, y, bool(causal))
        B = u @ v.T
        return alpha * (B - (alpha * B).sum(dim=-1, keepdim=True))


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------


def closed_form_backward(x: ArrayLike, y: Any, W_Q: ArrayLike, W_K: ArrayLike, W_V: ArrayLike, W_O: ArrayLike,
                         b: ArrayLike, causal: bool = True) -> Backward:
    """Forward pass, the paper's closed-form backward pass and every intermediate.

    Parameters
    ----------
    x, y, W_Q, W_K, W_V, W_O, b, causal
        As :func:`closed_form_gradients`.

    Returns
    -------
    Backward
        Every quantity differentiates the summed cross-entropy **loss** ``L`` (minimized); no autograd.
        Torch tensors when any input is one, else numpy arrays (``loss`` a float).
    """
    ts, y_t, as_torch = _prepared(x, y, W_Q, W_K, W_V, W_O, b, causal)
    with torch.no_grad():
        out = closed_form_torch(ts[0], y_t, *ts[1:], bool(causal), True)
    res = {k: _out(t, as_torch) for k, t in out.items()}
    if not as_torch:
        res["loss"] = float(res["loss"])
    return Backward(**res)


def closed_form_gradients(x: ArrayLike, y: Any, W_Q: ArrayLike, W_K: ArrayLike, W_V: ArrayLike, W_O: ArrayLike,
                          b: ArrayLike, causal: bool = True) -> dict[str, ArrayLike]:
    """Gradients of the summed cross-entropy **loss** (minimized) from the paper's closed forms.

    Parameters
    ----------
    x : ``(T, d_x)`` or ``(..., T, d_x)`` (losses summed over the batch axes too)
    y : integer targets of shape ``x.shape[:-1]`` in ``[0, C)``
    W_Q, W_K : ``(d_k, d_x)``; W_V : ``(d_v, d_x)``; W_O : ``(C, d_v)``; b : ``(C,)``
    causal : position ``i`` attends to ``j <= i`` only.

    Returns
    -------
    dict
        ``{"W_Q", "W_K", "W_V", "W_O", "b"}``, each of its parameter's shape, computed from §3 of
        Agarwal, Dalal and Misra (2025) without autograd (a dict: this is the book's stable public
        API). For the intermediates use :func:`closed_form_backward`.
    """
    ts, y_t, as_torch = _prepared(x, y, W_Q, W_K, W_V, W_O, b, causal)
    with torch.no_grad():
        out = closed_form_torch(ts[0], y_t, *ts[1:], bool(causal), False)
    return {k: _out(out[k], as_torch) for k in PARAM_NAMES}


def autograd_gradients(x: ArrayLike, y: Any, W_Q: ArrayLike, W_K: ArrayLike, W_V: ArrayLike, W_O: ArrayLike,
                       b: ArrayLike, causal: bool = True) -> HeadGradients:
    """The same gradients of the summed cross-entropy **loss**, by ``torch.autograd`` (the reference).

    Parameters
    ----------
    x, y, W_Q, W_K, W_V, W_O, b, causal : as :func:`closed_form_gradients` (the loss is
        :func:`attention_loss` of the head's scores and values).

    Returns
    -------
    HeadGradients
        The parameter gradients and autograd's ``dL_dg`` (= the closed form's ``u``), ``dL_dalpha``,
        ``dL_ds``, ``dL_dv``, ``dL_dq``, ``dL_dk``, for checking the per-position closed forms.
    """
    (x_, *ws), y_t, as_torch = _prepared(x, y, W_Q, W_K, W_V, W_O, b, causal)
    params = [t.clone().requires_grad_(True) for t in ws]
    Wq, Wk, Wv, Wo, b_ = params
    with torch.enable_grad():
        q, k, v, s, alpha, g = forward_torch(x_, Wq, Wk, Wv, bool(causal))
        loss = summed_cross_entropy(g @ Wo.T + b_, y_t)
        grads = torch.autograd.grad(loss, params + [g, alpha, s, v, q, k])
    return HeadGradients(*(_out(t.detach(), as_torch) for t in grads))


# ----------------------------------------------------------------------------------------------
# training with the closed forms
# ----------------------------------------------------------------------------------------------
def init_params(
    d_x: int, d_k: int, d_v: int, n_classes: int, *, scale: float = 0.1, random_state: int = 0
) -> HeadParams:
    """Small Gaussian initialisation, paper layout.

    Parameters
    ----------
    d_x, d_k, d_v : dimensions of the inputs, queries/keys and values (each >= 1).
    n_classes : C >= 2.
    scale : standard deviation of every weight.
    random_state : seed of ``np.random.default_rng``; ``W_Q, W_K, W_V, W_O`` are drawn in that order.

    Returns
    -------
    HeadParams
        float64 numpy arrays with entries ``N(0, scale^2)``, ``b = 0``.
    """
    d_x = check_int(d_x, "d_x", minimum=1)
    d_k = check_int(d_k, "d_k", minimum=1)
    d_v = check_int(d_v, "d_v", minimum=1)
    C = check_int(n_classes, "n_classes", minimum=2)
    scale = check_positive(scale, "scale")
    rng = np.random.default_rng(check_int(random_state, "random_state", minimum=0))
    return HeadParams(
        W_Q=scale * rng.standard_normal((d_k, d_x)),
        W_K=scale * rng.standard_normal((d_k, d_x)),
        W_V=scale * rng.standard_normal((d_v, d_x)),
        W_O=scale * rng.standard_normal((C, d_v)),
        b=np.zeros(C),
    )


def gradient_step(
    params: HeadParams, x: ArrayLike, y: Any, lr: float, causal: bool = True
) -> tuple[HeadParams, Backward]:
    """One gradient-descent step on the summed cross-entropy **loss**, driven by the closed forms.

    Parameters
    ----------
    params : HeadParams
    x, y, causal : as :func:`closed_form_gradients`.
    lr : the step size (> 0).

    Returns
    -------
    (HeadParams, Backward)
        The new parameters ``params - lr * grad`` and :func:`closed_form_backward` at the *old* ones.
    """
    if not isinstance(params, HeadParams):
        raise ValueError(f"params must be a HeadParams, got {type(params).__name__}")
    lr = check_positive(lr, "lr")
    state = closed_form_backward(x, y, *params, causal=causal)
    new = HeadParams(*(p - lr * g for p, g in zip(params, state.grads)))
    return new, state
