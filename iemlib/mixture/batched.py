"""Many starts at once: classical EM and implicit EM (gradient descent) batched over starts.

Chapter 4 compares the two fitters from the *same* starts on the *same* data, over several
cluster overlaps. Fitting each start with the estimators one by one would be too slow for the
book's time budget, so this module runs all starts together, as a leading batch dimension ``B``
of torch tensors (float64, full covariances). A batch of starts is a
:class:`~iemlib.mixture.MixtureParams` (weights (B, K), means (B, K, D), covariances
(B, K, D, D)), e.g. from :func:`~iemlib.mixture.batched_starts`; every fit below is one too (its
fitted parameters, with its diagnostics added), so a fit can start another run.

* :func:`batched_em` is :class:`~iemlib.mixture.GaussianMixtureEM` (scikit-learn's conventions:
  ``reg_covar`` on the diagonal, stop when the mean log-likelihood changes by less than ``tol``),
  every start at once.
* :func:`batched_gradient_descent` is :class:`~iemlib.mixture.ImplicitEM` with its default
  optimizer (standardized coordinates, plain gradient steps with step halving until the loss
  does not rise and a 1.2x growth after each accepted step, best-so-far return), every start
  at once; each of those three safeguards can be switched off, for the chapter's ablation.
* :func:`batched_preconditioned_ascent` is gradient ascent preconditioned as Xu & Jordan (1996)
  say, :func:`online_em` the stochastic EM of Cappe & Moulines (2009) and
  :func:`minibatch_gradient_descent` its gradient twin, on one stream of minibatches.
* Every fitter counts its cost per start: function evaluations (forward passes: distances and
  log-sum-exp over all points), gradient evaluations (backward passes); trial evaluations inside
  the step halving are counted.
* :func:`match_components` and :func:`compare_optima` decide whether two fits reached the same
  optimum (same log-likelihood within a tolerance *and* the same means after the best
  relabelling).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .._validation import as_numpy, check_int, check_positive
from ..runtime import single_threaded
from ._checks import check_batch, check_seed, check_X
from ._kernels import (
    as_tensor64,
    batched_torch_distances,
    batched_torch_m_step,
    covariance_from_raw,
    from_unconstrained,
    pack_raw,
    raw_loss_and_gradient,
    raw_to_tensors,
    to_unconstrained,
)
from .gaussian import MixtureParams

__all__ = [
    "EMFit",
    "AscentFit",
    "GradientDescentFit",
    "QuasiNewtonFit",
    "StreamFit",
    "MinibatchStream",
    "OptimaComparison",
    "batched_distances",
    "batched_log_likelihood",
    "batched_em",
    "batched_gradient_descent",
    "batched_lbfgs",
    "batched_preconditioned_ascent",
    "online_em",
    "minibatch_gradient_descent",
    "match_components",
    "compare_optima",
]

_PATIENCE = 5  # as ImplicitEM: consecutive iterations with |change of loss| < tol


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class _IterativeFit(MixtureParams):
    """Fitted parameters (``weights`` (B, K), ``means`` (B, K, D), ``covariances`` (B, K, D, D))
    and what every batched full-data fitter reports per start:

    log_likelihood : (B,) mean log-likelihood per sample of the returned parameters.
    history : (B, T + 1) the mean log-likelihood after t steps; NaN once a start has stopped.
    n_iter : (B,) steps taken.  converged : (B,) bool.
    """

    log_likelihood: np.ndarray
    history: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


@dataclass(frozen=True, eq=False)
class EMFit(_IterativeFit):
    """:func:`batched_em`'s result: the fields of every batched fit (fitted ``weights``, ``means``,
    ``covariances``; ``log_likelihood`` (B,) of those; ``history`` (B, T + 1), the mean log-likelihood
    after t M-steps, NaN once a start has stopped; ``n_iter`` (B,) the M-steps taken; ``converged``
    (B,)) and ``n_e_steps`` (B,): E-steps, i.e. function evaluations (each computes every distance
    and the log-likelihood), one more than ``n_iter`` (the last is for the final parameters)."""

    n_e_steps: np.ndarray


@dataclass(frozen=True, eq=False)
class AscentFit(_IterativeFit):
    """:func:`batched_preconditioned_ascent`'s result: the fields of :class:`EMFit` but
    ``n_e_steps``, and ``n_fun_evals``, ``n_grad_evals`` (B,): forward and backward passes."""

    n_fun_evals: np.ndarray
    n_grad_evals: np.ndarray


@dataclass(frozen=True, eq=False)
class GradientDescentFit(_IterativeFit):
    """:func:`batched_gradient_descent`'s result.

    Attributes
    ----------
    weights, means, covariances
        the returned parameters in data coordinates (best or last iterate).
    log_likelihood
        (B,) their mean log-likelihood per sample (NaN for a diverged start).
    last_log_likelihood
        (B,) that of the last iterate (what ``best_so_far=False`` returns).
    history
        (B, T + 1) the mean log-likelihood of the iterate at each iteration (NaN after a
        start stopped).
    fun_evals, grad_evals
        (B, T + 1) cumulative counts at each iteration (forward passes,
        backtracking trials included; backward passes).
    n_fun_evals, n_grad_evals, n_iter
        (B,) totals and iterations.
    converged, diverged
        (B,) bool; monotone : (B,) bool, the history never decreased.
    """

    last_log_likelihood: np.ndarray
    fun_evals: np.ndarray
    grad_evals: np.ndarray
    n_fun_evals: np.ndarray
    n_grad_evals: np.ndarray
    diverged: np.ndarray
    monotone: np.ndarray


@dataclass(frozen=True, eq=False)
class QuasiNewtonFit(_IterativeFit):
    """:func:`batched_lbfgs`'s result: the fields of :class:`EMFit` but ``n_e_steps`` (final
    ``weights``, ``means``, ``covariances`` in data coordinates and their ``log_likelihood`` (B,);
    ``history`` (B, T + 1), the mean log-likelihood of the start and of each L-BFGS iterate, NaN
    after a start stopped; ``n_iter`` (B,) L-BFGS iterations; ``converged`` (B,), scipy reported
    success: its relative-reduction or gradient test was met), and per start ``n_fun_evals``,
    ``n_grad_evals`` (B,), forward and backward passes (equal: scipy evaluates the loss and its
    gradient together, line-search trials included) and ``message`` (B,), scipy's reason for
    stopping."""

    n_fun_evals: np.ndarray
    n_grad_evals: np.ndarray
    message: np.ndarray


@dataclass(frozen=True, eq=False)
class StreamFit(MixtureParams):
    """:func:`online_em`'s and :func:`minibatch_gradient_descent`'s result: the final ``weights``,
    ``means``, ``covariances``; ``test_log_likelihood`` (B, n_evals + 1), the mean held-out
    log-likelihood per sample at the start and after evenly spaced minibatches; ``n_seen``
    (n_evals + 1,) the training points seen by then."""

    test_log_likelihood: np.ndarray
    n_seen: np.ndarray


@dataclass(frozen=True, eq=False)
class OptimaComparison:
    """:func:`compare_optima`'s result, per start.

    Attributes
    ----------
    same
        (B,) bool, the same optimum (log-likelihoods within ``ll_tol`` and matched means within
        ``mean_tol * scale``).
    gap
        (B,) ``ll_a - ll_b`` (positive: a is better).
    mean_diff
        (B,) the largest matched mean distance, in units of ``scale``.
    perm
        (B, K) the relabelling of b's components that matches a's (:func:`match_components`).
    """

    same: np.ndarray
    gap: np.ndarray
    mean_diff: np.ndarray
    perm: np.ndarray


# --------------------------------------------------------------------------- distances
def batched_distances(X: Any, mixtures: MixtureParams) -> np.ndarray:
    """Distances ``d_bij = -log(w_bj N(x_i | mu_bj, Sigma_bj))`` of every mixture of a batch.

    Parameters
    ----------
    X : (n, D) data.
    mixtures : :class:`~iemlib.mixture.MixtureParams` or a fit: weights (B, K), means (B, K, D),
        full covariances (B, K, D, D).

    Returns
    -------
    ndarray (B, n, K)
    """
    X = check_X(X)
    w, m, c = check_batch(X, mixtures, "mixtures")
    with torch.no_grad():
        Z, log_w = as_tensor64(X), torch.log(as_tensor64(w))
        return batched_torch_distances(Z, log_w, as_tensor64(m), as_tensor64(c)).numpy()


def batched_log_likelihood(X: Any, mixtures: MixtureParams) -> np.ndarray:
    """Mean log-likelihood per sample (the objective) of every mixture of a batch.

    Parameters
    ----------
    X, mixtures : as :func:`batched_distances`.

    Returns
    -------
    ndarray (B,)
    """
    d = batched_distances(X, mixtures)
    return np.asarray(torch.logsumexp(-as_tensor64(d), dim=2).mean(1).numpy())


# --------------------------------------------------------------------------- full-data fitters
def _check_run(X: Any, start: Any, max_iter: Any, tol: Any):
    """X, the start's (w, m, c), max_iter and tol of a full-data fitter, validated."""
    X = check_X(X)
    T = check_int(max_iter, "max_iter", minimum=1)
    return X, check_batch(X, start), T, check_positive(tol, "tol", allow_zero=True)


def _until_stable(Z: torch.Tensor, w, m, c, max_iter: int, tol: float,
                  update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]):
    """The loop shared by batched EM and preconditioned ascent: ``update(w, m, c)`` of the running
    starts returns their mean log-likelihood and their next ``(w, m, c)``; a start stops
    when its log-likelihood changes by less than ``tol``. Returns the final (w, m, c) tensors, their
    log-likelihood, the history (B, T + 1) and n_iter, converged (numpy)."""
    w_, m_, c_ = as_tensor64(w), as_tensor64(m), as_tensor64(c)
    B = w_.shape[0]
    active = torch.ones(B, dtype=torch.bool)
    converged = torch.zeros(B, dtype=torch.bool)
    n_iter = torch.zeros(B, dtype=torch.long)
    lower = torch.full((B,), -math.inf, dtype=torch.float64)
    hist = []
    for _ in range(max_iter):  # only the starts still running are computed
        idx = active.nonzero().squeeze(1)
        ll_s, new = update(w_[idx], m_[idx], c_[idx])
        row = torch.full((B,), math.nan, dtype=torch.float64)
        row[idx] = ll_s
        hist.append(row)
        with torch.no_grad():
            w_[idx], m_[idx], c_[idx] = new
            n_iter[idx] += 1
            done = (ll_s - lower[idx]).abs() < tol
            lower[idx] = ll_s
            converged[idx[done]] = True
            active[idx[done]] = False
        if not active.any():
            break
    with torch.no_grad():
        ll = torch.logsumexp(-batched_torch_distances(Z, torch.log(w_), m_, c_), dim=2).mean(1)
    hist.append(ll)
    H = torch.stack(hist, 1).numpy()
    # after a start stops, its last entry (the final parameters) sits at column n_iter
    n_it = n_iter.numpy()
    out_hist = np.full_like(H, np.nan)
    for b in range(B):
        k = int(n_it[b])
        out_hist[b, :k] = H[b, :k]
        out_hist[b, k] = float(ll[b])
    return (w_, m_, c_), ll.numpy(), out_hist, n_it, converged.numpy()


def batched_em(X: Any, start: MixtureParams, *, max_iter: int = 1000, tol: float = 1e-10,
               reg_covar: float = 1e-6) -> EMFit:
    """Classical EM from every start at once (what :class:`~iemlib.mixture.GaussianMixtureEM`
    does for one start, with the same stopping rule; the mean log-likelihood is maximized).

    Parameters
    ----------
    X : (n, D) data.
    start : :class:`~iemlib.mixture.MixtureParams` (or a fit): weights (B, K), means (B, K, D),
        full covariances (B, K, D, D). Not modified.
    max_iter, tol, reg_covar : as :class:`~iemlib.mixture.GaussianMixtureEM`.

    Returns
    -------
    EMFit
    """
    X, (w, m, c), T, tol = _check_run(X, start, max_iter, tol)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    Z = as_tensor64(X)

    def em_step(w_, m_, c_):
        with torch.no_grad():
            d = batched_torch_distances(Z, torch.log(w_), m_, c_)
            L = torch.logsumexp(-d, dim=2)
            r = torch.exp(-d - L[..., None])
            return L.mean(1), batched_torch_m_step(Z, r, reg)

    with single_threaded():
        (w_, m_, c_), ll, hist, n_it, conv = _until_stable(Z, w, m, c, T, tol, em_step)
    return EMFit(weights=w_.numpy(), means=m_.numpy(), covariances=0.5 * (c_.numpy() + np.swapaxes(c_.numpy(), -1, -2)),
                 log_likelihood=ll, history=hist, n_iter=n_it, converged=conv, n_e_steps=n_it + 1)


def batched_preconditioned_ascent(X: Any, start: MixtureParams, *, max_iter: int = 1000,
                                  tol: float = 1e-10) -> AscentFit:
    """Gradient ascent on the summed log-likelihood (the objective, maximized) preconditioned
    by the Xu & Jordan (1996) projection matrices, every start at once (see
    :func:`iemlib.mixture.preconditioned_em_step`): per iteration one forward pass (distances,
    the log-likelihood, and the responsibilities that give ``N_j``) and one backward pass
    (autograd's gradients in the raw weights, the means and the full covariances), then

        w <- w + (diag w - w w^T) g_w / n,  mu_j <- mu_j + Sigma_j g_mu_j / N_j,
        Sigma_j <- Sigma_j + (2 / N_j) Sigma_j g_Sigma_j Sigma_j.

    The weight and mean steps are EM's exactly; the covariance step lands on the scatter about
    the *current* means, so the iteration differs from EM by ``O(|mu_{t+1} - mu_t|^2)`` per
    step and has EM's fixed points.

    Parameters
    ----------
    X, start, max_iter, tol : as :func:`batched_em` (it stops as EM does).

    Returns
    -------
    AscentFit
    """
    X, (w, m, c), T, tol = _check_run(X, start, max_iter, tol)
    Z = as_tensor64(X)
    n = X.shape[0]

    def ascent_step(w_, m_, c_):
        wt, mt, ct = (v.clone().requires_grad_(True) for v in (w_, m_, c_))
        d = batched_torch_distances(Z, torch.log(wt), mt, 0.5 * (ct + ct.transpose(-1, -2)))
        L = torch.logsumexp(-d, dim=2)
        gw, gm, gc = torch.autograd.grad(L.sum(), (wt, mt, ct))
        with torch.no_grad():
            Nk = torch.softmax(-d, 2).sum(1)  # (A, K)
            wa, ma, ca = wt.detach(), mt.detach(), ct.detach()
            Pw = torch.diag_embed(wa) - wa[:, :, None] * wa[:, None, :]
            cn = ca + 2.0 * ca @ gc @ ca / Nk[..., None, None]
            new = (wa + torch.einsum("bkl,bl->bk", Pw, gw) / n,
                   ma + torch.einsum("bkde,bke->bkd", ca, gm) / Nk[..., None],
                   0.5 * (cn + cn.transpose(-1, -2)))
        return L.detach().mean(1), new

    with single_threaded():
        (w_, m_, c_), ll, hist, n_it, conv = _until_stable(Z, w, m, c, T, tol, ascent_step)
    return AscentFit(weights=w_.numpy(), means=m_.numpy(), covariances=c_.numpy(), log_likelihood=ll, history=hist,
                     n_iter=n_it, converged=conv, n_fun_evals=n_it + 1, n_grad_evals=n_it)


# --------------------------------------------------------------------------- implicit EM, batched
def _loss(Z: torch.Tensor, params: list[torch.Tensor], reg: float) -> torch.Tensor:
    """The loss ``-(1/n) sum_i L_i`` of every start (B,) at raw parameters (logits, means, Cholesky raw)."""
    lg, mu, th = params
    d = batched_torch_distances(Z, torch.log_softmax(lg, 1), mu, covariance_from_raw(th, reg))
    return -torch.logsumexp(-d, dim=2).mean(1)  # (B,)


def _col(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(A,) -> broadcastable against p (A, ...)."""
    return v.view(-1, *([1] * (p.ndim - 1)))


class _DescentState:
    """The running state of :func:`batched_gradient_descent` (one row per start)."""

    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        B = params[0].shape[0]
        self.params = params
        self.best = [p.clone() for p in params]
        self.step = torch.full((B,), lr, dtype=torch.float64)
        self.prev = torch.full((B,), math.inf, dtype=torch.float64)
        self.best_loss = torch.full((B,), math.inf, dtype=torch.float64)
        self.quiet = torch.zeros(B, dtype=torch.long)
        self.n_iter, self.nfe, self.nge = (torch.zeros(B, dtype=torch.long) for _ in range(3))
        self.active = torch.ones(B, dtype=torch.bool)
        self.converged, self.diverged = torch.zeros(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
        self.hist: list[torch.Tensor] = []
        self.fe_hist: list[torch.Tensor] = []
        self.ge_hist: list[torch.Tensor] = []

    def observe(self, idx: torch.Tensor, sub: list[torch.Tensor], ls: torch.Tensor, tol: float) -> torch.Tensor:
        """Record the losses ``ls`` of the running starts ``idx`` at parameters ``sub``; keep the
        best; stop the converged and diverged ones. Returns the mask of ``idx`` that go on."""
        B = self.active.shape[0]
        loss = torch.full((B,), math.nan, dtype=torch.float64)
        loss[idx] = ls
        self.hist.append(-loss)
        self.fe_hist.append(self.nfe.clone())
        self.ge_hist.append(self.nge.clone())
        fin = torch.isfinite(ls)
        better = fin & (ls < self.best_loss[idx])
        bi = idx[better]
        self.best_loss[bi] = ls[better]
        for bp, q in zip(self.best, sub):
            bp[bi] = q.detach()[better]
        q_s = torch.where((self.prev[idx] - ls).abs() < tol, self.quiet[idx] + 1, torch.zeros_like(idx))
        self.quiet[idx] = q_s
        done = q_s >= _PATIENCE
        self.converged[idx[done]] = True
        self.diverged[idx[~fin]] = True
        keep = ~done & fin
        self.active[idx[~keep]] = False
        return keep


def _backtrack(Z: torch.Tensor, reg: float, x0: list[torch.Tensor], g: list[torch.Tensor], base: torch.Tensor,
               st: torch.Tensor, nfe: torch.Tensor, ii: torch.Tensor) -> list[torch.Tensor]:
    """Halve each start's step ``st`` (in place) until its loss does not exceed ``base`` (or the
    step is below 1e-12), counting every trial in ``nfe[ii]``; returns the accepted points."""
    trial = [q.clone() for q in x0]
    srch = torch.ones(len(ii), dtype=torch.bool)
    while True:
        si = srch.nonzero().squeeze(1)
        cand = [q[si] - _col(st[si], q[si]) * gq[si] for q, gq in zip(x0, g)]
        for tr, cq in zip(trial, cand):
            tr[si] = cq
        try:
            tl = _loss(Z, cand, reg)
        except RuntimeError:  # pragma: no cover - the parametrisation keeps Sigma positive definite
            tl = torch.full((len(si),), math.inf, dtype=torch.float64)
        nfe[ii[si]] += 1
        accept = (tl <= base[si]) | (st[si] < 1e-12)
        srch[si[accept]] = False
        if not srch.any():
            return trial
        st[srch] *= 0.5


def _descend(Z: torch.Tensor, s: _DescentState, T: int, tol: float, shift: float, reg: float, lr: float,
             backtracking: bool) -> None:
    """The iterations of :func:`batched_gradient_descent` (only the starts still running are computed)."""
    for t in range(T + 1):
        idx = s.active.nonzero().squeeze(1)
        sub = [p[idx].clone().requires_grad_(True) for p in s.params]
        loss_s = _loss(Z, sub, reg)
        s.nfe[idx] += 1
        ls = loss_s.detach() + shift
        keep = s.observe(idx, sub, ls, tol)
        if t == T or not keep.any():
            break
        s.prev[idx] = ls
        ii = idx[keep]
        loss_s[keep].sum().backward()
        s.nge[ii] += 1
        s.n_iter[ii] += 1
        g = [q.grad.detach()[keep] for q in sub]
        x0 = [q.detach()[keep] for q in sub]
        with torch.no_grad():
            if backtracking:
                st = s.step[ii].clone()
                trial = _backtrack(Z, reg, x0, g, loss_s.detach()[keep], st, s.nfe, ii)
                for p, tr in zip(s.params, trial):
                    p[ii] = tr
                s.step[ii] = 1.2 * st
            else:
                for p, q, gq in zip(s.params, x0, g):
                    p[ii] = q - lr * gq


def batched_gradient_descent(
    X: Any,
    start: MixtureParams,
    *,
    lr: float = 0.3,
    max_iter: int = 3000,
    tol: float = 1e-10,
    reg_covar: float = 1e-6,
    standardize: bool = True,
    backtracking: bool = True,
    best_so_far: bool = True,
) -> GradientDescentFit:
    """Gradient descent on the loss ``-(1/n) sum_i log sum_j exp(-d_ij)`` (minimized) from every
    start at once: :class:`~iemlib.mixture.ImplicitEM` (``optimizer="gd"``) batched.

    Parameters
    ----------
    X : (n, D) data.
    start : :class:`~iemlib.mixture.MixtureParams` (or a fit), full covariances. Not modified.
    lr, max_iter, tol, reg_covar : as :class:`~iemlib.mixture.ImplicitEM`.
    standardize : optimize in coordinates centred and divided by the data's global standard
        deviation (ImplicitEM's default).
    backtracking : halve the step until the loss does not rise, grow it by 1.2 after each accepted
        step (otherwise a fixed step ``lr``, ImplicitEM's ``optimizer="sgd"``).
    best_so_far : return the parameters of the smallest loss seen (otherwise the last iterate).

    A start stops once its loss has changed by less than ``tol`` in 5 consecutive iterations, or
    diverged (a non-finite loss).

    Returns
    -------
    GradientDescentFit
    """
    X, (w, m, c), T, tol = _check_run(X, start, max_iter, tol)
    lr = check_positive(lr, "lr")
    reg_covar = check_positive(reg_covar, "reg_covar", allow_zero=True)
    n, D = X.shape
    center = X.mean(0) if standardize else np.zeros(D)
    scale = (float(X.std()) or 1.0) if standardize else 1.0
    Z = as_tensor64((X - center) / scale)
    shift = D * math.log(scale)
    reg = reg_covar / scale**2
    s = _DescentState(to_unconstrained(w, m, c, center, scale, reg), lr)
    with single_threaded():
        _descend(Z, s, T, tol, shift, reg, lr, backtracking)
        return _descent_result(X, s, s.best if best_so_far else s.params, center, scale, reg)


def _lbfgs_one(Z: np.ndarray, x0: np.ndarray, K: int, reg: float, T: int, tol: float, gtol: float, m_hist: int,
               hist_row: np.ndarray, shift: float, out: tuple[list, list, list, list]) -> list[torch.Tensor]:
    """One start of :func:`batched_lbfgs`: fills ``hist_row`` and appends to ``out`` (n_iter,
    evaluations, success, message); returns the final raw parameters."""
    import scipy.optimize

    seen: dict[bytes, float] = {}  # the loss at every evaluated point, to record the iterates

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = raw_loss_and_gradient(Z, x, K, reg)
        seen[x.tobytes()] = f
        return f, g

    path = [raw_loss_and_gradient(Z, x0, K, reg)[0]]  # bookkeeping, not counted
    res = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B",
        callback=lambda xk: path.append(seen.get(xk.tobytes(), math.nan)),
        options=dict(maxiter=T, ftol=tol, gtol=gtol, maxcor=m_hist, maxls=50))
    hist_row[: len(path)] = -(np.asarray(path) + shift)
    for lst, v in zip(out, (res.nit, res.nfev, bool(res.success), str(res.message))):
        lst.append(v)
    return raw_to_tensors(res.x, K, Z.shape[1])


def batched_lbfgs(X: Any, start: MixtureParams, *, max_iter: int = 3000, tol: float = 1e-10,
                  gtol: float = 1e-8, history_size: int = 10, reg_covar: float = 1e-6) -> QuasiNewtonFit:
    """L-BFGS on the loss ``-(1/n) sum_i log sum_j exp(-d_ij)`` (minimized) in
    :class:`~iemlib.mixture.ImplicitEM`'s own parametrisation, from every start in turn.

    The parameters are those of :func:`batched_gradient_descent` (standardized coordinates,
    weight logits, means, the lower triangle of the Cholesky factor of ``Sigma - reg I`` with its
    diagonal as logs); the loss and its gradient are computed in closed form
    (``raw_loss_and_gradient`` of the package's private kernels, checked against autograd and
    finite differences in the tests) and handed to ``scipy.optimize.minimize(method="L-BFGS-B")`` without bounds, i.e. the
    limited-memory quasi-Newton method with a Wolfe line search (Nocedal & Wright 2006, ch. 7).
    The starts are independent runs, one after the other.

    Parameters
    ----------
    X : (n, D) data.
    start : :class:`~iemlib.mixture.MixtureParams` (or a fit), full covariances. Not modified.
    max_iter : the most L-BFGS iterations per start.
    tol : scipy's ``ftol``: stop once an iteration lowers the loss by less than ``tol`` times
        ``max(|loss|, 1)`` (the loss in standardized coordinates).
    gtol : scipy's ``gtol``: stop once every gradient entry is at most ``gtol`` in size.
    history_size : scipy's ``maxcor``, the number of curvature pairs kept.
    reg_covar : as :class:`~iemlib.mixture.ImplicitEM`.

    Returns
    -------
    QuasiNewtonFit
    """
    X, (w, m, c), T, tol = _check_run(X, start, max_iter, tol)
    gtol = check_positive(gtol, "gtol", allow_zero=True)
    m_hist = check_int(history_size, "history_size", minimum=1)
    reg_covar = check_positive(reg_covar, "reg_covar", allow_zero=True)
    n, D = X.shape
    B, K = w.shape
    center, scale = X.mean(0), float(X.std()) or 1.0
    Z, shift, reg = (X - center) / scale, D * math.log(scale), reg_covar / scale**2
    raw = to_unconstrained(w, m, c, center, scale, reg)
    hist = np.full((B, T + 1), np.nan)
    finals, n_it, n_fe, conv, msg = [], [], [], [], []
    with single_threaded():
        for b in range(B):
            finals.append(_lbfgs_one(Z, pack_raw([p[b] for p in raw]), K, reg, T, tol, gtol, m_hist,
                                     hist[b], shift, (n_it, n_fe, conv, msg)))
    wf, mf, cf = from_unconstrained([torch.stack(p) for p in zip(*finals)], center, scale, reg)
    ll = batched_log_likelihood(X, MixtureParams(wf, mf, cf))
    n_fe_arr = np.asarray(n_fe)
    hist = hist[:, : max(n_it) + 1]
    return QuasiNewtonFit(weights=wf, means=mf, covariances=cf, log_likelihood=ll, history=hist,
                          n_iter=np.asarray(n_it), converged=np.asarray(conv), n_fun_evals=n_fe_arr,
                          n_grad_evals=n_fe_arr.copy(), message=np.asarray(msg))


def _descent_result(X: np.ndarray, s: _DescentState, final: list[torch.Tensor], center: np.ndarray, scale: float,
                    reg: float) -> GradientDescentFit:
    wf, mf, cf = from_unconstrained(final, center, scale, reg)
    H = torch.stack(s.hist, 1).numpy()
    with np.errstate(invalid="ignore"):
        mono = np.array([bool(np.all(np.diff(h[np.isfinite(h)]) >= 0)) for h in H])
    ok = np.isfinite(mf).all(axis=(1, 2)) & np.isfinite(cf).all(axis=(1, 2, 3))
    ll = np.full(len(wf), np.nan)
    if ok.any():
        try:
            ll[ok] = batched_log_likelihood(X, MixtureParams(wf[ok], mf[ok], cf[ok]))
        except ValueError:  # a diverged start left an unusable mixture
            pass
    n_iter = s.n_iter.numpy()
    return GradientDescentFit(
        weights=wf, means=mf, covariances=cf, log_likelihood=ll, history=H, n_iter=n_iter,
        converged=s.converged.numpy(), last_log_likelihood=np.array([H[b, int(k)] for b, k in enumerate(n_iter)]),
        fun_evals=torch.stack(s.fe_hist, 1).numpy(), grad_evals=torch.stack(s.ge_hist, 1).numpy(),
        n_fun_evals=s.nfe.numpy(), n_grad_evals=s.nge.numpy(), diverged=s.diverged.numpy(), monotone=mono,
    )


# --------------------------------------------------------------------------- stochastic versions
def _per_row(value: Any, B: int, name: str, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    v = np.asarray(value, dtype=np.float64) if not isinstance(value, bool) else None
    if v is None or v.ndim > 1 or (v.ndim == 1 and v.shape[0] != B) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a finite number or an array of shape ({B},), got {value!r}")
    if (lo is not None and (v <= lo).any()) or (hi is not None and (v > hi).any()):
        raise ValueError(f"{name} must lie in ({lo}, {hi}], got {value!r}")
    return torch.tensor(np.broadcast_to(v, (B,)).copy(), dtype=torch.float64)


@dataclass(frozen=True)
class MinibatchStream:
    """The stream of minibatches :func:`online_em` and :func:`minibatch_gradient_descent` share:
    ``n_epochs`` random permutations of the training points (seed ``random_state``), each cut into
    minibatches of ``batch_size`` (a last incomplete one dropped); the held-out log-likelihood is
    evaluated at the start and ``n_evals`` times, after evenly spaced minibatches. The same stream
    feeds every start, and both fitters see the same minibatches in the same order."""

    batch_size: int = 50
    n_epochs: int = 1
    n_evals: int = 20
    random_state: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "n_epochs", "n_evals"):
            check_int(getattr(self, name), name, minimum=1)
        check_seed(self.random_state)

    def batches(self, n: int) -> list[np.ndarray]:
        """The minibatches (index arrays) over ``n`` training points."""
        bs = self.batch_size
        if bs > n:
            raise ValueError(f"batch_size must be at most the number of training points {n}, got {bs}")
        rng = np.random.default_rng(self.random_state)
        batches = []
        for _ in range(self.n_epochs):
            perm = rng.permutation(n)
            batches += [perm[i : i + bs] for i in range(0, n - bs + 1, bs)]
        return batches

    def eval_points(self, n_batches: int) -> set[int]:
        """After how many minibatches the held-out log-likelihood is evaluated."""
        ne = self.n_evals
        return {int(round(k * n_batches / ne)) for k in range(1, ne + 1)}


@dataclass(frozen=True)
class _StreamRun:
    """Validated inputs of a stochastic fitter: data, the start (numpy), the minibatches, the evaluation points."""

    X_train: np.ndarray
    X_test: np.ndarray
    w: np.ndarray
    m: np.ndarray
    c: np.ndarray
    batches: list
    evals: set


def _stream_run(X_train: Any, X_test: Any, start: Any, stream: Any) -> _StreamRun:
    Xtr = check_X(X_train, "X_train")
    Xte = check_X(X_test, "X_test", n_features=Xtr.shape[1])
    w, m, c = check_batch(Xtr, start)
    if not isinstance(stream, MinibatchStream):
        raise ValueError(f"stream must be a MinibatchStream, got {type(stream).__name__}")
    batches = stream.batches(len(Xtr))
    return _StreamRun(Xtr, Xte, w, m, c, batches, stream.eval_points(len(batches)))


def _run_stream(s: _StreamRun, step: Callable[[int, np.ndarray], None], test_ll: Callable[[], torch.Tensor]):
    """Feed the minibatches to ``step(t, idx)``; evaluate ``test_ll()`` at the start and at the
    evaluation points. Returns (test log-likelihood (B, n_evals + 1), points seen (n_evals + 1,))."""
    hist, seen = [test_ll()], [0]
    for t, idx in enumerate(s.batches):
        step(t, idx)
        if t + 1 in s.evals:
            hist.append(test_ll())
            seen.append((t + 1) * len(idx))
    return torch.stack(hist, 1).numpy(), np.array(seen)


def online_em(X_train: Any, X_test: Any, start: MixtureParams, *, stream: MinibatchStream = MinibatchStream(),
              step_exponent: Any = 0.6, reg_covar: float = 1e-6) -> StreamFit:
    """Online (stochastic) EM of Cappe & Moulines (2009) for every start at once, on one
    stream of minibatches (the same for every start): it increases the held-out log-likelihood.

    The sufficient statistics ``s = (E r_j, E r_j x, E r_j x x^T)`` start at the values of the
    starting parameters and follow the stochastic-approximation recursion
    ``s <- s + gamma_t (s_hat(batch; theta) - s)`` with ``gamma_t = (t + 2)^(-alpha)``
    (``alpha = step_exponent``), ``t`` = 0, 1, ...
    minibatches; after each, the parameters are the M-step of ``s`` (``reg_covar`` on the
    covariances' diagonal). Each minibatch costs one E-step on ``stream.batch_size`` points.

    Parameters
    ----------
    X_train : (n, D) training data; X_test : (m, D) held-out data.
    start : :class:`~iemlib.mixture.MixtureParams` (or a fit), full covariances.
    stream : :class:`MinibatchStream`, the minibatches and the evaluation points.
    step_exponent : float in (0.5, 1], or one per start (B,).
    reg_covar : float >= 0.

    Returns
    -------
    StreamFit
    """
    s = _stream_run(X_train, X_test, start, stream)
    B, K, D = s.m.shape
    alpha = _per_row(step_exponent, B, "step_exponent", lo=0.5, hi=1.0)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    Ztr, Zte = as_tensor64(s.X_train), as_tensor64(s.X_test)
    w_, m_, c_ = as_tensor64(s.w), as_tensor64(s.m), as_tensor64(s.c)
    st = {"w": w_, "m": m_, "c": c_, "s0": w_.clone(), "s1": w_[..., None] * m_,
          "s2": w_[..., None, None] * (c_ + m_[..., :, None] * m_[..., None, :])}
    eye = torch.eye(D, dtype=torch.float64)

    def test_ll() -> torch.Tensor:
        return torch.logsumexp(-batched_torch_distances(Zte, torch.log(st["w"]), st["m"], st["c"]), 2).mean(1)

    def step(t: int, idx: np.ndarray) -> None:
        xb = Ztr[idx]
        with torch.no_grad():
            r = torch.softmax(-batched_torch_distances(xb, torch.log(st["w"]), st["m"], st["c"]), 2)  # (B, b, K)
            h0 = r.mean(1)
            h1 = torch.einsum("bnk,nd->bkd", r, xb) / len(idx)
            h2 = torch.einsum("bnk,nd,ne->bkde", r, xb, xb) / len(idx)
            g = (t + 2.0) ** (-alpha)
            s0 = st["s0"] = st["s0"] + g[:, None] * (h0 - st["s0"])
            s1 = st["s1"] = st["s1"] + g[:, None, None] * (h1 - st["s1"])
            s2 = st["s2"] = st["s2"] + g[:, None, None, None] * (h2 - st["s2"])
            st["w"] = s0 / s0.sum(1, keepdim=True)
            m = st["m"] = s1 / s0[..., None]
            c = s2 / s0[..., None, None] - m[..., :, None] * m[..., None, :] + reg * eye
            st["c"] = 0.5 * (c + c.transpose(-1, -2))

    with single_threaded():
        hist, seen = _run_stream(s, step, test_ll)
    return StreamFit(weights=st["w"].numpy(), means=st["m"].numpy(), covariances=st["c"].numpy(),
                     test_log_likelihood=hist, n_seen=seen)


def minibatch_gradient_descent(X_train: Any, X_test: Any, start: MixtureParams, *,
                               stream: MinibatchStream = MinibatchStream(), lr: Any = 0.1, optimizer: str = "sgd",
                               reg_covar: float = 1e-6) -> StreamFit:
    """Minibatch gradient descent on the loss ``-(1/b) sum_{i in batch} L_i`` (minimized) for every
    start at once, in :class:`~iemlib.mixture.ImplicitEM`'s parametrisation and standardized
    coordinates (centre and scale of ``X_train``), on a :class:`MinibatchStream` (the same stream as
    :func:`online_em`'s gives the same minibatches in the same order).

    Each minibatch costs one function and one gradient evaluation on ``stream.batch_size`` points.

    Parameters
    ----------
    X_train, X_test, start, stream, reg_covar : as :func:`online_em`.
    lr : float > 0, or one per start (B,), so that one call can sweep step sizes.
    optimizer : {"sgd", "adam"}
        ``"sgd"``: a fixed step ``lr``; ``"adam"``: Adam with step ``lr``, torch's defaults
        otherwise, written out so that it is batched.

    Returns
    -------
    StreamFit
    """
    s = _stream_run(X_train, X_test, start, stream)
    lr_ = _per_row(lr, s.m.shape[0], "lr", lo=0.0)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    reg_covar = check_positive(reg_covar, "reg_covar", allow_zero=True)
    center, scale = s.X_train.mean(0), float(s.X_train.std()) or 1.0
    Ztr, Zte = as_tensor64((s.X_train - center) / scale), as_tensor64((s.X_test - center) / scale)
    shift = s.m.shape[2] * math.log(scale)
    reg = reg_covar / scale**2
    params = [p.requires_grad_(True) for p in to_unconstrained(s.w, s.m, s.c, center, scale, reg)]
    mom = [torch.zeros_like(p) for p in params]
    vel = [torch.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8

    def test_ll() -> torch.Tensor:
        with torch.no_grad():
            return -_loss(Zte, params, reg) - shift

    def step(t: int, idx: np.ndarray) -> None:
        for p in params:
            p.grad = None
        _loss(Ztr[idx], params, reg).sum().backward()
        with torch.no_grad():
            for k, p in enumerate(params):
                g = p.grad
                col = _col(lr_, p)
                if optimizer == "sgd":
                    p -= col * g
                else:
                    mom[k] = b1 * mom[k] + (1 - b1) * g
                    vel[k] = b2 * vel[k] + (1 - b2) * g * g
                    mh = mom[k] / (1 - b1 ** (t + 1))
                    vh = vel[k] / (1 - b2 ** (t + 1))
                    p -= col * mh / (vh.sqrt() + eps)

    with single_threaded():
        hist, seen = _run_stream(s, step, test_ll)
        wf, mf, cf = from_unconstrained(params, center, scale, reg)
    return StreamFit(weights=wf, means=mf, covariances=cf, test_log_likelihood=hist, n_seen=seen)


# --------------------------------------------------------------------------- comparing optima
def match_components(means_a: Any, means_b: Any) -> np.ndarray:
    """The relabelling of b's components that best matches a's means: the smallest largest
    distance ``max_k |mu_a[k] - mu_b[perm[k]]|``, by trying every permutation.

    Parameters
    ----------
    means_a, means_b : (K, D), K <= 7.

    Returns
    -------
    perm : ndarray (K,) of int, ``means_b[perm[k]]`` matches ``means_a[k]``.
    """
    a = as_numpy(means_a, "means_a", ndim=2)
    b = as_numpy(means_b, "means_b", ndim=2)
    if a.shape != b.shape:
        raise ValueError(f"means_b must have the shape of means_a {a.shape}, got {b.shape}")
    K = a.shape[0]
    if K > 7:
        raise ValueError(f"means_a must have at most 7 components (rows) for an exhaustive match, got {K}")
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    best, best_cost = None, math.inf
    for perm in itertools.permutations(range(K)):
        cost = dist[np.arange(K), perm].max()
        if cost < best_cost:
            best, best_cost = perm, cost
    return np.asarray(best)


def compare_optima(fit_a: Any, fit_b: Any, scale: float, *, ll_tol: float = 1e-5,
                   mean_tol: float = 0.05) -> OptimaComparison:
    """Per start, whether two batched fits reached the same optimum.

    Parameters
    ----------
    fit_a, fit_b : fits (or anything with ``means`` (B, K, D) and ``log_likelihood`` (B,)), e.g.
        :class:`EMFit` and :class:`GradientDescentFit`; ``dataclasses.replace(fit, means=...,
        log_likelihood=...)`` compares transformed fits.
    scale : the unit of the mean distances (e.g. the data's standard deviation).
    ll_tol, mean_tol : "same" means both: the mean log-likelihoods per sample differ by at most
        ``ll_tol`` nats, and after the best relabelling (:func:`match_components`) every mean of b
        lies within ``mean_tol * scale`` of a's.

    Returns
    -------
    OptimaComparison
    """
    s = check_positive(scale, "scale")
    lt = check_positive(ll_tol, "ll_tol")
    mt = check_positive(mean_tol, "mean_tol")
    for name, f in (("fit_a", fit_a), ("fit_b", fit_b)):
        if not (hasattr(f, "means") and hasattr(f, "log_likelihood")):
            raise ValueError(f"{name} must be a fit with means and log_likelihood, got {type(f).__name__}")
    ma = as_numpy(fit_a.means, "fit_a.means", ndim=3)
    mb = as_numpy(fit_b.means, "fit_b.means", ndim=3)
    if ma.shape != mb.shape:
        raise ValueError(f"fit_b.means must have the shape of fit_a.means {ma.shape}, got {mb.shape}")
    la = np.asarray(fit_a.log_likelihood, dtype=np.float64)
    lb = np.asarray(fit_b.log_likelihood, dtype=np.float64)
    if la.shape != (ma.shape[0],) or lb.shape != (ma.shape[0],):
        raise ValueError(f"log_likelihood must have shape ({ma.shape[0]},) in both fits")
    perms = np.stack([match_components(a, b) for a, b in zip(ma, mb)])
    md = np.array([np.linalg.norm(a - b[p], axis=1).max() for a, b, p in zip(ma, mb, perms)]) / s
    gap = la - lb
    same = np.isfinite(gap) & (np.abs(gap) <= lt) & (md <= mt)
    return OptimaComparison(same=same, gap=gap, mean_diff=md, perm=perms)
