"""Modern (continuous) Hopfield networks: where Theorem 1 applies to attention literally (chapter 5).

Ramsauer et al. (2021) store patterns ``x_1, ..., x_N`` (rows of ``X``, shape (N, D)) and define,
for a state ``xi`` (shape (D,)) and an inverse temperature ``beta > 0``, the **energy** (minimized)

    E(xi) = -(1/beta) log sum_j exp(beta x_j^T xi) + xi^T xi / 2 + (1/beta) log N + M^2 / 2,

with ``M`` the largest pattern norm. With similarities ``s_j = beta x_j^T xi`` (negative distances
``d_j = -s_j``), the first term is ``-(1/beta)`` times Theorem 1's objective, so
``dE/ds_j = -alpha_j / beta`` with ``alpha = softmax(s)``: the gradient with respect to each
similarity is minus a responsibility, exactly. The update rule

    xi_new = X^T softmax(beta X xi)

is one attention step with the state as the query and the patterns as keys and values, and equals
``xi - grad E(xi)``: a gradient step of size one, which never increases the energy (it is the
concave-convex procedure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import ArrayLike, as_float_array, as_numpy, as_tensor, check_int, check_positive, is_torch
from ..objectives import responsibilities

__all__ = ["hopfield_similarities", "hopfield_energy", "hopfield_update", "HopfieldRun", "hopfield_retrieve"]


def _check(xi: Any, X: Any, beta: Any) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """Validated state(s) and patterns as tensors (numpy -> float64), ``beta``, and whether either was a tensor."""
    X_ = as_float_array(X, "X", ndim=2)
    xi_ = as_float_array(xi, "xi", ndim=(1, 2))
    if xi_.shape[-1] != X_.shape[1]:
        raise ValueError(f"xi must have {X_.shape[1]} entries per state (the pattern dimension), "
                         f"got shape {tuple(xi_.shape)}")
    b = check_positive(beta, "beta")
    xt, Xt = as_tensor(xi_, "xi"), as_tensor(X_, "X")
    dev = xt.device if xt.device.type != "cpu" else Xt.device  # a numpy side joins the tensor's device
    return xt.to(dev), Xt.to(dev), b, is_torch(xi) or is_torch(X)


def _result(t: torch.Tensor, as_torch: bool) -> ArrayLike:
    return t if as_torch else t.numpy()


def hopfield_similarities(xi: ArrayLike, X: ArrayLike, beta: float = 1.0) -> ArrayLike:
    """Similarities ``s_j = beta x_j^T xi``.

    Parameters
    ----------
    xi : a state ``(D,)`` or a batch of states ``(B, D)``.
    X : ``(N, D)`` stored patterns (rows).
    beta : inverse temperature > 0.

    Returns
    -------
    ``(N,)`` or ``(B, N)`` (torch when an input is).
    """
    xt, Xt, b, as_torch = _check(xi, X, beta)
    return _result(b * (xt @ Xt.T), as_torch)


def hopfield_energy(xi: ArrayLike, X: ArrayLike, beta: float = 1.0) -> ArrayLike:
    """The energy ``E(xi)`` (minimized) of Ramsauer et al. (2021), eq. (2), of ``()`` or ``(B,)`` states.

    Torch inputs keep their graph (so ``dE/dxi`` and, through :func:`hopfield_similarities`,
    ``dE/ds`` can be taken by autograd).

    Parameters
    ----------
    xi, X, beta : as :func:`hopfield_similarities`.

    Returns
    -------
    The energies (torch when an input is).
    """
    xt, Xt, b, as_torch = _check(xi, X, beta)
    s = b * (xt @ Xt.T)
    M = float(torch.linalg.norm(Xt.detach(), dim=1).max())
    E = -torch.logsumexp(s, dim=-1) / b + 0.5 * (xt * xt).sum(-1) + math.log(Xt.shape[0]) / b + 0.5 * M * M
    return _result(E, as_torch)


def hopfield_update(xi: ArrayLike, X: ArrayLike, beta: float = 1.0) -> ArrayLike:
    """One update ``xi_new = X^T softmax(beta X xi)`` (an attention step, a unit gradient step on the energy).

    Parameters
    ----------
    xi, X, beta : as :func:`hopfield_similarities`.

    Returns
    -------
    The new state(s), ``xi``'s shape.
    """
    xt, Xt, b, as_torch = _check(xi, X, beta)
    return _result(torch.softmax(b * (xt @ Xt.T), dim=-1) @ Xt, as_torch)


@dataclass(frozen=True, eq=False)
class HopfieldRun:
    """A retrieval by :func:`hopfield_retrieve`.

    Attributes
    ----------
    beta
        the inverse temperature.
    states
        ``(n_steps+1, B, D)`` every state, the start first.
    energy
        ``(n_steps+1, B)`` their energies.
    """

    beta: float
    states: np.ndarray
    energy: np.ndarray

    def nearest_pattern(self, X: ArrayLike) -> np.ndarray:
        """Index of the stored pattern (a row of ``X``) nearest to each final state, shape (B,)."""
        Xn = as_numpy(X, "X", ndim=2)
        return np.linalg.norm(self.states[-1][:, None, :] - Xn[None], axis=-1).argmin(-1)

    def effective_patterns(self, X: ArrayLike) -> np.ndarray:
        """The effective number of stored patterns the next update would average, per final
        state, shape (B,): ``1 / sum_j p_j^2`` with ``p = softmax(beta X xi)`` the update's
        weights (the responsibilities of the patterns). 1 when one pattern takes all the weight,
        ``N`` when the weights are uniform (the global fixed point of Ramsauer et al.)."""
        Xn = as_numpy(X, "X", ndim=2)
        p = responsibilities(-hopfield_similarities(self.states[-1], Xn, self.beta), dim=-1)
        return 1.0 / (np.asarray(p) ** 2).sum(-1)


def hopfield_retrieve(xi0: ArrayLike, X: ArrayLike, beta: float = 1.0, n_steps: int = 3) -> HopfieldRun:
    """Iterate :func:`hopfield_update` ``n_steps`` times from the states ``xi0``, recording every state
    and its energy (float64).

    Parameters
    ----------
    xi0 : ``(B, D)`` or ``(D,)`` start states.
    X, beta : as :func:`hopfield_similarities`.
    n_steps : >= 0.

    Returns
    -------
    HopfieldRun
    """
    xt, Xt, b, _ = _check(xi0, X, beta)
    n = check_int(n_steps, "n_steps", minimum=0)
    xt, Xt = xt.to(torch.float64), Xt.to(torch.float64)
    if xt.ndim == 1:
        xt = xt[None]
    states, energy = [xt], [hopfield_energy(xt, Xt, b)]
    for _ in range(n):
        xt = hopfield_update(xt, Xt, b)
        states.append(xt)
        energy.append(hopfield_energy(xt, Xt, b))
    return HopfieldRun(b, torch.stack(states).cpu().numpy(), torch.stack(energy).cpu().numpy())
