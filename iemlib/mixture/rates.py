"""How fast EM converges, and how its step relates to a gradient step.

* :func:`em_map` is one EM iteration of a full-covariance mixture, the map whose fixed points EM
  finds; :func:`em_jacobian` its Jacobian by autograd, whose spectral radius at a fixed point is
  EM's linear rate; :func:`missing_information_fraction` the same rate read as the largest fraction
  of missing information (Dempster, Laird & Rubin 1977); :func:`linear_rate` measures the rate of
  an observed sequence of log-likelihoods.
* :func:`preconditioned_mean_step` and :func:`preconditioned_em_step` are the Xu & Jordan (1996)
  bridge: one gradient-ascent step on the summed log-likelihood, preconditioned by the projection
  matrices (``Sigma_j / N_j`` for the means), is the EM update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_positive
from ._checks import check_batch, check_params, check_X
from ..objectives import lse
from ._kernels import as_tensor64, batched_torch_distances, batched_torch_m_step, torch_distances
from .gaussian import MixtureParams, e_step, m_step

__all__ = [
    "MissingInformation",
    "MeanBridge",
    "EMBridge",
    "BridgeErrors",
    "em_map",
    "em_jacobian",
    "missing_information_fraction",
    "linear_rate",
    "preconditioned_mean_step",
    "preconditioned_em_step",
]


@dataclass(frozen=True, eq=False)
class MissingInformation:
    """:func:`missing_information_fraction`'s result.

    Attributes
    ----------
    eigenvalues
        ndarray, sorted descending (real parts), of ``I - I_c^{-1} I_o``.
    largest
        float, the largest (EM's linear rate at a fixed point).
    observed
        ndarray (p, p), ``I_o``; complete : ndarray (p, p), ``I_c``.
    """

    eigenvalues: np.ndarray
    largest: float
    observed: np.ndarray
    complete: np.ndarray


@dataclass(frozen=True, eq=False)
class MeanBridge:
    """:func:`preconditioned_mean_step`'s result: ``gradient`` (K, D) of the summed log-likelihood in
    the means; ``step`` (K, D), the preconditioned ascent step; ``em_means`` (K, D), EM's means;
    ``max_abs_diff`` (float), the largest ``|step - em_means|``."""

    gradient: np.ndarray
    step: np.ndarray
    em_means: np.ndarray
    max_abs_diff: float


@dataclass(frozen=True, eq=False)
class BridgeErrors:
    """Largest absolute differences between the preconditioned step and EM's update, per parameter:
    ``weights``, ``means``, ``covariances`` (the covariance step at the current means) and
    ``covariances_q`` (with the covariance gradient of Q at the new means)."""

    weights: float
    means: float
    covariances: float
    covariances_q: float


@dataclass(frozen=True, eq=False)
class EMBridge:
    """:func:`preconditioned_em_step`'s result.

    Attributes
    ----------
    gradients
        MixtureParams, autograd's gradients of the summed log-likelihood in the raw weights,
        the means and the covariances (each of its parameter's shape).
    step
        MixtureParams, the preconditioned step, covariance gradient at the current means.
    step_q
        MixtureParams, the same with the covariance gradient of Q at the new means.
    em
        MixtureParams, EM's update (:func:`~iemlib.mixture.m_step` with ``reg_covar=0``).
    max_abs_diff
        BridgeErrors
    """

    gradients: MixtureParams
    step: MixtureParams
    step_q: MixtureParams
    em: MixtureParams
    max_abs_diff: BridgeErrors


# --------------------------------------------------------------------------- EM's rate
def _pack(w: torch.Tensor, m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """theta = (means, lower triangles of the covariances, first K - 1 weights)."""
    K, D = m.shape
    il = torch.tril_indices(D, D)
    return torch.cat([m.reshape(-1), c[:, il[0], il[1]].reshape(-1), w[:-1]])


def _unpack(theta: torch.Tensor, K: int, D: int):
    il = torch.tril_indices(D, D)
    nm, nc = K * D, K * (D * (D + 1) // 2)
    m = theta[:nm].reshape(K, D)
    low = theta[nm : nm + nc].reshape(K, -1)
    c = torch.zeros(K, D, D, dtype=theta.dtype)
    c = c.index_put((torch.arange(K)[:, None], il[0][None], il[1][None]), low)
    c = c + torch.tril(c, -1).transpose(-1, -2)
    w = torch.cat([theta[nm + nc :], 1.0 - theta[nm + nc :].sum()[None]])
    return w, m, c


def _single(X: Any, weights: Any, means: Any, covariances: Any):
    """One full-covariance mixture, validated: X, w (K,), m (K, D), c (K, D, D) as float64 numpy."""
    X = check_X(X)
    one = MixtureParams(np.asarray(weights)[None], np.asarray(means)[None], np.asarray(covariances)[None])
    w, m, c = check_batch(X, one, "the mixture")
    return X, w[0], m[0], c[0]


def _distances_at(Z: torch.Tensor, w: torch.Tensor, m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Distances (1, n, K) of one mixture given as tensors."""
    return batched_torch_distances(Z, torch.log(w)[None], m[None], c[None])


def em_map(X: Any, weights: Any, means: Any, covariances: Any, reg_covar: float = 0.0):
    """One EM iteration (E-step then M-step) of a single full-covariance mixture: the map whose
    fixed points EM finds.

    Parameters
    ----------
    X : (n, D) data.
    weights : (K,); means : (K, D); covariances : (K, D, D).
    reg_covar : float >= 0, added to the new covariances' diagonal (0: the plain EM map).

    Returns
    -------
    weights (K,), means (K, D), covariances (K, D, D).
    """
    X, w, m, c = _single(X, weights, means, covariances)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    Z = as_tensor64(X)
    with torch.no_grad():
        r = torch.softmax(-_distances_at(Z, as_tensor64(w), as_tensor64(m), as_tensor64(c)), 2)
        wn, mn, cn = batched_torch_m_step(Z, r, reg)
    return wn[0].numpy(), mn[0].numpy(), cn[0].numpy()


def em_jacobian(X: Any, weights: Any, means: Any, covariances: Any) -> np.ndarray:
    """Jacobian of the EM map (``reg_covar = 0``) at the given parameters, by autograd, in the
    coordinates theta = (means, covariances' lower triangles, first K - 1 weights): a (p, p)
    matrix with p = K D + K D (D + 1) / 2 + K - 1. At a fixed point its spectral radius is EM's
    linear rate: ``|theta_t - theta*|`` shrinks by about that factor per iteration.

    Parameters
    ----------
    X, weights, means, covariances : as :func:`em_map`.

    Returns
    -------
    ndarray (p, p)
    """
    X, w, m, c = _single(X, weights, means, covariances)
    Z = as_tensor64(X)
    K, D = m.shape

    def f(theta: torch.Tensor) -> torch.Tensor:
        w_, m_, c_ = _unpack(theta, K, D)
        r = torch.softmax(-_distances_at(Z, w_, m_, c_), 2)
        wn, mn, cn = batched_torch_m_step(Z, r, 0.0)
        return _pack(wn[0], mn[0], cn[0])

    theta0 = _pack(as_tensor64(w), as_tensor64(m), as_tensor64(c))
    return torch.func.jacrev(f)(theta0).detach().numpy()


def missing_information_fraction(X: Any, weights: Any, means: Any, covariances: Any) -> MissingInformation:
    """The fraction of missing information at a fixed point of EM (Dempster, Laird & Rubin
    1977): eigenvalues of ``I - I_c^{-1} I_o``, with ``I_o`` the observed information
    (minus the Hessian of the summed log-likelihood, the objective) and ``I_c`` the complete-data
    information (minus the Hessian of EM's Q function, the responsibilities held at the given
    parameters), both by autograd in :func:`em_jacobian`'s coordinates.

    At a fixed point the eigenvalues equal those of :func:`em_jacobian`, and the largest is EM's
    rate.

    Parameters
    ----------
    X, weights, means, covariances : as :func:`em_map`.

    Returns
    -------
    MissingInformation
    """
    X, w, m, c = _single(X, weights, means, covariances)
    Z = as_tensor64(X)
    K, D = m.shape
    theta0 = _pack(as_tensor64(w), as_tensor64(m), as_tensor64(c))
    with torch.no_grad():
        r0 = torch.softmax(-_distances_at(Z, as_tensor64(w), as_tensor64(m), as_tensor64(c)), 2)

    def loglik(theta: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(-_distances_at(Z, *_unpack(theta, K, D)), 2).sum()

    def q(theta: torch.Tensor) -> torch.Tensor:
        return -(r0 * _distances_at(Z, *_unpack(theta, K, D))).sum()

    Io = -torch.autograd.functional.hessian(loglik, theta0, vectorize=True).numpy()
    Ic = -torch.autograd.functional.hessian(q, theta0, vectorize=True).numpy()
    ev = np.linalg.eigvals(np.eye(len(theta0)) - np.linalg.solve(Ic, Io))
    ev = np.sort(ev.real)[::-1]
    return MissingInformation(eigenvalues=ev, largest=float(ev[0]), observed=Io, complete=Ic)


def linear_rate(gaps: Any, lo: float = 1e-11, hi: float = 1e-5, steps: Any = None) -> float:
    """The per-step contraction factor of a linearly converging sequence, fitted to the
    log-likelihood gaps ``l* - l_t`` (or to the increments ``l_{t+1} - l_t``, which shrink at
    the same rate and need no ``l*``) that lie in ``[lo, hi]``.

    The gaps shrink like ``rho^(2t)`` when the parameters' error shrinks like ``rho^t`` (the
    gap is quadratic in the error), so this returns ``rho = exp(slope / 2)`` of a least-squares
    line through ``log gap`` against ``steps`` (default 0, 1, 2, ...; pass cumulative
    evaluation counts to get a rate per evaluation).

    Parameters
    ----------
    gaps : 1-D array of gaps or increments (NaN entries are skipped).
    lo, hi : float > 0, the window of gaps that enter the fit.
    steps : 1-D array of the shape of ``gaps``, optional.

    Returns
    -------
    float, rho; NaN when fewer than 3 gaps lie in the window.
    """
    if not isinstance(gaps, (np.ndarray, list, tuple)):
        raise ValueError(f"gaps must be a 1-D array of log-likelihood gaps, got {type(gaps).__name__}")
    g = np.asarray(gaps, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"gaps must be a non-empty 1-D array (NaN allowed for missing steps), got shape {g.shape}")
    lo = check_positive(lo, "lo")
    hi = check_positive(hi, "hi")
    t = np.arange(len(g), dtype=np.float64) if steps is None else np.asarray(steps, dtype=np.float64)
    if t.shape != g.shape:
        raise ValueError(f"steps must have the shape of gaps {g.shape}, got {t.shape}")
    sel = np.isfinite(g) & np.isfinite(t) & (g >= lo) & (g <= hi)
    if sel.sum() < 3:
        return float("nan")
    slope = np.polyfit(t[sel], np.log(g[sel]), 1)[0]
    return float(np.exp(slope / 2.0))


# --------------------------------------------------------------------------- the Xu & Jordan bridge
def _mean_step(m: np.ndarray, c: np.ndarray, g: np.ndarray, Nk: np.ndarray, covariance_type: str) -> np.ndarray:
    """``mu_j + Sigma_j g_j / N_j`` for the covariance type's shapes."""
    if covariance_type == "spherical":
        pre = c[:, None] * g
    elif covariance_type == "diag":
        pre = c * g
    else:
        pre = np.einsum("kde,ke->kd", c, g)
    return m + pre / Nk[:, None]


def preconditioned_mean_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> MeanBridge:
    """The Xu & Jordan (1996) bridge between gradient ascent and EM for the means.

    Computes ``g_j``, the gradient of the summed log-likelihood ``sum_i L_i`` (the objective,
    maximized) with respect to ``mu_j`` by autograd, and takes one ascent step of size 1
    preconditioned by ``Sigma_j / N_j`` with ``N_j = sum_i r_ij``:

        mu_j + (Sigma_j / N_j) g_j = mu_j + (1/N_j) sum_i r_ij (x_i - mu_j) = sum_i r_ij x_i / N_j,

    the EM mean update.

    Parameters
    ----------
    X, weights, means, covariances, covariance_type : as :func:`~iemlib.mixture.component_distances`.

    Returns
    -------
    MeanBridge
        ``em_means`` from :func:`~iemlib.mixture.m_step` on the E-step responsibilities.
    """
    X, w, m, c, ct = check_params(X, weights, means, covariances, covariance_type)
    mt = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    d = torch_distances(as_tensor64(X), torch.log(as_tensor64(w)), mt, as_tensor64(c), ct)
    (g,) = torch.autograd.grad(lse(d).sum(), mt)
    g = g.numpy()
    resp, _ = e_step(X, w, m, c, ct)
    step = _mean_step(m, c, g, resp.sum(0), ct)
    em_means = m_step(X, resp, ct, reg_covar=0.0)[1]
    return MeanBridge(gradient=g, step=step, em_means=em_means, max_abs_diff=float(np.abs(step - em_means).max()))


def _bridge_gradients(X: np.ndarray, w: np.ndarray, m: np.ndarray, c: np.ndarray, ct: str,
                      resp: np.ndarray | None = None) -> list[np.ndarray]:
    """Autograd's gradients in (raw weights, means, covariances as free matrices) of the summed
    log-likelihood, or with ``resp`` of EM's Q function ``-sum_ij r_ij d_ij``."""
    wt, mt, cvt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (w, m, c))
    d = torch_distances(as_tensor64(X), torch.log(wt), mt, cvt, ct, free_covariance=True)
    obj = torch.logsumexp(-d, 1).sum() if resp is None else -(torch.tensor(resp) * d).sum()
    return [g.numpy() for g in torch.autograd.grad(obj, (wt, mt, cvt))]


def _covariance_step(c: np.ndarray, G: np.ndarray, Nk: np.ndarray, ct: str, D: int) -> np.ndarray:
    """``Sigma_j + (2 / N_j) Sigma_j G_j Sigma_j`` for the covariance type's shapes (D features)."""
    if ct == "spherical":
        return c + 2.0 * c**2 * G / (D * Nk)
    if ct == "diag":
        return c + 2.0 * c**2 * G / Nk[:, None]
    out = c + 2.0 * np.einsum("kde,kef,kfg->kdg", c, G, c) / Nk[:, None, None]
    return 0.5 * (out + np.swapaxes(out, 1, 2))


def preconditioned_em_step(
    X: Any, weights: Any, means: Any, covariances: Any, covariance_type: str = "full"
) -> EMBridge:
    """The Xu & Jordan (1996) bridge for every parameter: EM's update as a gradient-ascent
    step of size 1 on the summed log-likelihood ``l = sum_i L_i`` (the objective, maximized),
    preconditioned by the projection matrices (with ``N_j = sum_i r_ij``, ``n`` points)

    * weights:  ``P_w = (diag(w) - w w^T) / n``, so ``w + P_w dl/dw = N / n``;
    * means:    ``P_mu_j = Sigma_j / N_j``, so ``mu_j + P_mu_j dl/dmu_j = sum_i r_ij x_i / N_j``;
    * covariances: ``P_Sigma_j = (2 / N_j) Sigma_j (x) Sigma_j``, i.e.
      ``Sigma_j + (2 / N_j) Sigma_j (dl/dSigma_j) Sigma_j = S_j(mu_j)`` with
      ``S_j(m) = sum_i r_ij (x_i - m)(x_i - m)^T / N_j``; for diagonal covariances the same with
      every matrix diagonal, for spherical ones ``s_j + (2 s_j^2 / (D N_j)) dl/ds_j``.

    The gradients are autograd's (raw weights, no simplex constraint; full ``Sigma_j`` as a
    free matrix). The covariance step is taken at the *current* means, so it lands on
    ``S_j(mu_j^(t))``; EM's M-step uses the *updated* means, ``S_j(mu_j^(t+1)) =
    S_j(mu_j^(t)) - (mu_j^(t+1) - mu_j^(t))(mu_j^(t+1) - mu_j^(t))^T`` (diagonal / trace / D
    of it for the other types). Taking the covariance gradient at the updated means with the
    responsibilities held (the gradient of EM's Q function) gives EM's covariance exactly;
    both are returned.

    Parameters and checks: those of :func:`preconditioned_mean_step`.

    Returns
    -------
    EMBridge
    """
    X, w, m, c, ct = check_params(X, weights, means, covariances, covariance_type)
    n, D = X.shape
    resp, _ = e_step(X, w, m, c, ct)
    Nk = resp.sum(0)
    gw, gm, gc = _bridge_gradients(X, w, m, c, ct)
    w_new = w + (np.diag(w) - np.outer(w, w)) @ gw / n
    m_new = _mean_step(m, c, gm, Nk, ct)
    c_new = _covariance_step(c, gc, Nk, ct, D)
    gq = _bridge_gradients(X, w, m_new, c, ct, resp)[2]  # gradient of Q(theta | theta_t) in Sigma, at the new means
    c_q = _covariance_step(c, gq, Nk, ct, D)
    em_w, em_m, em_c = m_step(X, resp, ct, reg_covar=0.0)
    errors = BridgeErrors(
        weights=float(np.abs(w_new - em_w).max()),
        means=float(np.abs(m_new - em_m).max()),
        covariances=float(np.abs(c_new - em_c).max()),
        covariances_q=float(np.abs(c_q - em_c).max()),
    )
    return EMBridge(gradients=MixtureParams(gw, gm, gc), step=MixtureParams(w_new, m_new, c_new),
                    step_q=MixtureParams(w_new, m_new, c_q), em=MixtureParams(em_w, em_m, em_c), max_abs_diff=errors)
