"""The torch kernels of :mod:`iemlib.mixture` (package-private): the distances of
:mod:`~iemlib.mixture.gaussian` for one mixture or a batch, the batched M-step, and implicit EM's
unconstrained parametrisation, shared by the estimators, the batched sweeps and the rates.

Every formula keeps the order of floating-point operations of iemlib 0.1.0's modules, so that the
book's printed numbers stay bit for bit the same.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

LOG_2PI = math.log(2.0 * math.pi)


def diagonal_terms(diff: Any, cov: Any, covariance_type: str, log: Any) -> tuple[Any, Any]:
    """Mahalanobis terms and log-determinants of spherical or diagonal covariances; numpy arrays
    or torch tensors (``log`` is ``np.log`` or ``torch.log``). ``diff`` is (n, K, D)."""
    D = diff.shape[-1]
    if covariance_type == "spherical":
        return (diff**2).sum(-1) / cov[None, :], D * log(cov)
    return (diff**2 / cov[None]).sum(-1), log(cov).sum(-1)


def as_tensor64(a: Any) -> torch.Tensor:
    """A float64 tensor copy of an array (never writes into the caller's arrays)."""
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def torch_distances(
    X: torch.Tensor, log_w: torch.Tensor, means: torch.Tensor, cov: torch.Tensor, covariance_type: str,
    *, free_covariance: bool = False,
) -> torch.Tensor:
    """d_ij = -(log w_j + log N(x_i | mu_j, Sigma_j)) for one mixture, (n, K); differentiable in
    every input. Full covariances by Cholesky, or with ``free_covariance`` by solve and slogdet
    (no Cholesky), so that autograd returns the textbook gradient in every entry of ``Sigma``."""
    D = X.shape[1]
    diff = X[:, None, :] - means[None, :, :]
    if covariance_type != "full":
        maha, logdet = diagonal_terms(diff, cov, covariance_type, torch.log)
    elif free_covariance:
        sol = torch.linalg.solve(cov[None], diff[..., None])[..., 0]  # Sigma_j^{-1}(x_i - mu_j)
        maha = (diff * sol).sum(-1)
        logdet = torch.linalg.slogdet(cov)[1]
    else:
        Lc = torch.linalg.cholesky(cov)
        y = torch.linalg.solve_triangular(Lc[None], diff[..., None], upper=False)[..., 0]
        maha = (y**2).sum(-1)
        logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=1, dim2=2)).sum(-1)
    return -(log_w[None, :] - 0.5 * (D * LOG_2PI + logdet[None, :] + maha))


def batched_torch_distances(Z: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """d_bik = -(log w_bk + log N(z_i | mu_bk, Sigma_bk)) for a batch of full-covariance mixtures,
    (B, n, K); differentiable. A start whose covariance is not finite or not positive definite
    (a diverged start) gets NaN distances instead of an error."""
    D = Z.shape[1]
    eye = torch.eye(D, dtype=cov.dtype)
    finite = torch.isfinite(cov).all(-1).all(-1)
    Lc, info = torch.linalg.cholesky_ex(torch.where(finite[..., None, None], cov, eye))  # (B, K, D, D)
    bad = (info != 0) | ~finite
    if bad.any():
        Lc = torch.where(bad[..., None, None], eye, Lc)
    diff = (Z[None, None, :, :] - mu[:, :, None, :]).transpose(-1, -2)  # (B, K, D, n)
    y = torch.linalg.solve_triangular(Lc, diff, upper=False)
    maha = (y**2).sum(-2)  # (B, K, n)
    logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(-1)  # (B, K)
    d = -(log_w[:, :, None] - 0.5 * (D * LOG_2PI + logdet[..., None] + maha))
    if bad.any():
        d = torch.where(bad[..., None], torch.nan, d)
    return d.transpose(1, 2)


def batched_torch_m_step(Z: torch.Tensor, r: torch.Tensor, reg: float):
    """The M-step of :func:`~iemlib.mixture.m_step` (full covariances) for a batch: responsibilities (B, n, K)."""
    n, D = Z.shape
    nk = r.sum(1) + 10 * torch.finfo(torch.float64).eps  # (B, K)
    mu = torch.einsum("bnk,nd->bkd", r, Z) / nk[..., None]
    diff = Z[None, None] - mu[:, :, None, :]  # (B, K, n, D)
    cov = torch.einsum("bnk,bknd,bkne->bkde", r, diff, diff) / nk[..., None, None]
    cov = cov + reg * torch.eye(D, dtype=Z.dtype)
    w = nk / n
    return w / w.sum(1, keepdim=True), mu, cov


# --------------------------------------------------------------------------- the gradient-descent parametrisation
def to_unconstrained(w: np.ndarray, m: np.ndarray, c: np.ndarray, center: np.ndarray, scale: float, reg: float,
                     covariance_type: str = "full") -> list[torch.Tensor]:
    """Implicit EM's unconstrained parameters in standardized coordinates (one mixture or a batch):
    weight logits ``log w``; means ``(m - center) / scale``; variances ``log(v - reg)`` (spherical,
    diag) or, for full, the Cholesky factor ``C`` of ``Sigma - reg I`` with its diagonal as logs."""
    cs = c / scale**2
    if covariance_type == "full":
        D = m.shape[-1]
        shifted = cs - reg * np.eye(D)
        try:
            C = np.linalg.cholesky(shifted)
        except np.linalg.LinAlgError:
            C = np.linalg.cholesky(cs)
        raw = np.tril(C, -1) + np.log(np.diagonal(C, axis1=-2, axis2=-1))[..., None] * np.eye(D)
    else:
        raw = np.log(np.where(cs - reg > 0, cs - reg, cs))
    return [as_tensor64(np.log(w)), as_tensor64((m - center) / scale), as_tensor64(raw)]


def covariance_from_raw(theta: torch.Tensor, reg: float, covariance_type: str = "full") -> torch.Tensor:
    """The covariances of :func:`to_unconstrained`'s raw parameters: ``C C^T + reg I`` (full) or
    ``exp(theta) + reg``."""
    if covariance_type == "full":
        D = theta.shape[-1]
        C = torch.tril(theta, -1) + torch.diag_embed(torch.exp(torch.diagonal(theta, dim1=-2, dim2=-1)))
        return C @ C.transpose(-1, -2) + reg * torch.eye(D, dtype=theta.dtype)
    return torch.exp(theta) + reg


def from_unconstrained(params: list[torch.Tensor], center: np.ndarray, scale: float, reg: float,
                       covariance_type: str = "full") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy ``(weights, means, covariances)`` in data coordinates of :func:`to_unconstrained`'s parameters."""
    logits, mu, theta = params
    with torch.no_grad():
        w = torch.softmax(logits, -1).numpy().copy()
        m = mu.numpy() * scale + center
        c = covariance_from_raw(theta, reg, covariance_type).numpy() * scale**2
    if covariance_type == "full":
        c = 0.5 * (c + np.swapaxes(c, -1, -2))
    return w, m, c


def raw_loss_and_gradient(Z: np.ndarray, flat: np.ndarray, K: int, reg: float) -> tuple[float, np.ndarray]:
    """The loss ``-(1/n) sum_i log sum_j exp(-d_ij)`` (minimized) of a full-covariance mixture at
    :func:`to_unconstrained`'s raw parameters packed by :func:`pack_raw`, and its gradient in
    closed form (numpy, no autograd), for the quasi-Newton fitter.

    With ``r_ij`` the responsibilities, ``N_j = sum_i r_ij``, ``s_ij = Sigma_j^{-1}(z_i - mu_j)``:
    d(loss)/d logit_j = w_j - N_j / n; d(loss)/d mu_j = -(1/n) sum_i r_ij s_ij;
    d(loss)/d Sigma_j = G_j = (1/2n)(N_j Sigma_j^{-1} - sum_i r_ij s_ij s_ij^T), and through
    ``Sigma = C C^T + reg I`` the gradient in ``C`` is ``2 G C``, times ``C_kk`` on the diagonal
    (stored as logs). A non-finite loss is returned as ``inf`` with a zero gradient."""
    n, D = Z.shape
    lg, mu, C, rows, cols = unpack_raw(flat, K, D)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cov = C @ np.swapaxes(C, -1, -2) + reg * np.eye(D)
        try:
            prec = np.linalg.inv(cov)
            logdet = np.linalg.slogdet(cov)[1]
        except np.linalg.LinAlgError:
            return math.inf, np.zeros_like(flat)
        log_w = lg - np.logaddexp.reduce(lg)
        diff = Z[:, None, :] - mu[None]  # (n, K, D)
        sol = (diff.transpose(1, 0, 2) @ prec).transpose(1, 0, 2)  # Sigma_j^{-1}(z_i - mu_j)
        d = -(log_w[None] - 0.5 * (D * LOG_2PI + logdet[None] + (diff * sol).sum(-1)))
        L = np.logaddexp.reduce(-d, axis=1)
        loss = float(-L.mean())
        if not math.isfinite(loss):
            return math.inf, np.zeros_like(flat)
        r = np.exp(-d - L[:, None])
        N = r.sum(0)
        g_lg = np.exp(log_w) - N / n
        rs = (r[..., None] * sol).transpose(1, 2, 0)  # (K, D, n)
        g_mu = -rs.sum(-1) / n
        G = 0.5 * (N[:, None, None] * prec - rs @ sol.transpose(1, 0, 2)) / n
        gC = 2.0 * G @ C
    gC[:, np.arange(D), np.arange(D)] *= C[:, np.arange(D), np.arange(D)]
    return loss, np.concatenate([g_lg, g_mu.ravel(), gC[:, rows, cols].ravel()])


def pack_raw(params: list[torch.Tensor]) -> np.ndarray:
    """One flat vector of :func:`to_unconstrained`'s full-covariance raw parameters: the logits
    (K,), the means (K * D), and the lower triangle of each raw Cholesky factor, row by row
    (its diagonal as logs); the upper triangle, which the parametrisation ignores, is left out."""
    lg, mu, theta = (p.detach().numpy() for p in params)
    rows, cols = np.tril_indices(mu.shape[-1])
    return np.concatenate([lg.ravel(), mu.ravel(), theta[..., rows, cols].ravel()])


def unpack_raw(flat: np.ndarray, K: int, D: int):
    """The inverse of :func:`pack_raw`: logits (K,), means (K, D), the Cholesky factors ``C``
    (K, D, D) with their diagonal exponentiated, and the lower-triangle indices."""
    rows, cols = np.tril_indices(D)
    lg, mu, tri = flat[:K], flat[K : K + K * D].reshape(K, D), flat[K + K * D :].reshape(K, -1)
    C = np.zeros((K, D, D))
    C[:, rows, cols] = tri
    diag = np.arange(D)
    with np.errstate(over="ignore"):
        C[:, diag, diag] = np.exp(C[:, diag, diag])
    return lg, mu, C, rows, cols


def raw_to_tensors(flat: np.ndarray, K: int, D: int) -> list[torch.Tensor]:
    """:func:`pack_raw`'s vector back to :func:`to_unconstrained`'s list of tensors."""
    rows, cols = np.tril_indices(D)
    theta = np.zeros((K, D, D))
    theta[:, rows, cols] = flat[K + K * D :].reshape(K, -1)
    return [as_tensor64(flat[:K]), as_tensor64(flat[K : K + K * D].reshape(K, D)), as_tensor64(theta)]
