"""Many starts at once: classical EM and implicit EM (gradient descent) batched over starts.

Chapter 4 compares the two fitters from the *same* starts on the *same* data, over several
cluster overlaps. Fitting each start with the estimators of :mod:`iemlib.mixture` one by one
would be too slow for the book's time budget, so this module runs all starts together, as a
leading batch dimension ``B`` of torch tensors (float64, full covariances):

* :func:`batched_em` is :class:`iemlib.mixture.GaussianMixtureEM` (scikit-learn's
  conventions: ``reg_covar`` on the diagonal, stop when the mean log-likelihood changes by
  less than ``tol``), every start at once.
* :func:`batched_gradient_descent` is :class:`iemlib.mixture.ImplicitEM` with its default
  optimizer (standardized coordinates, plain gradient steps with step halving until the loss
  does not rise and a 1.2x growth after each accepted step, best-so-far return), every start
  at once; each of those three safeguards can be switched off, for the chapter's ablation.
* Both count their cost per start: function evaluations (forward passes: distances and
  log-sum-exp over all points), gradient evaluations (backward passes) for gradient descent,
  E-steps and M-steps for EM; trial evaluations inside the step halving are counted.
* :func:`match_components` and :func:`compare_optima` decide whether two fits reached the same
  optimum (same log-likelihood within a tolerance *and* the same means after the best
  relabelling); :func:`em_jacobian` and :func:`missing_information_fraction` give EM's
  linear rate at a fixed point (the largest eigenvalue of the EM map's Jacobian, which
  Dempster, Laird & Rubin (1977) identify with the largest fraction of missing information).

Shapes: ``X`` (n, D); weights (B, K); means (B, K, D); covariances (B, K, D, D).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from ._validation import as_float_array, check_int, check_positive
from .mixture import _check_X, random_start

__all__ = [
    "batched_starts",
    "batched_distances",
    "batched_log_likelihood",
    "batched_em",
    "batched_gradient_descent",
    "match_components",
    "compare_optima",
    "em_map",
    "em_jacobian",
    "missing_information_fraction",
    "linear_rate",
    "online_em",
    "minibatch_gradient_descent",
    "batched_preconditioned_ascent",
]

_LOG_2PI = math.log(2.0 * math.pi)
_PATIENCE = 5  # as ImplicitEM: consecutive iterations with |change of loss| < tol


# --------------------------------------------------------------------------- validation
def _check_batch(X: np.ndarray, weights: Any, means: Any, covariances: Any):
    """Validate a batch of full-covariance mixtures against X; return float64 numpy arrays."""
    n, D = X.shape
    m = np.asarray(as_float_array(means, "means", ndim=3), dtype=np.float64)
    if m.shape[2] != D:
        raise ValueError(f"means must have shape (B, K, {D}) (D = the features of X), got {m.shape}")
    B, K, _ = m.shape
    w = np.asarray(as_float_array(weights, "weights", ndim=2), dtype=np.float64)
    if w.shape != (B, K):
        raise ValueError(f"weights must have shape ({B}, {K}), got {w.shape}")
    if (w <= 0).any() or np.abs(w.sum(1) - 1.0).max() > 1e-8:
        raise ValueError("weights must be positive and each row must sum to 1")
    c = np.asarray(as_float_array(covariances, "covariances", ndim=4), dtype=np.float64)
    if c.shape != (B, K, D, D):
        raise ValueError(f"covariances must have shape ({B}, {K}, {D}, {D}), got {c.shape}")
    if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(c).max()))):
        raise ValueError("covariances must be symmetric matrices")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError("covariances must be positive definite")
    if n < K:
        raise ValueError(f"X must have at least K={K} samples, got {n}")
    return w, m, c


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)  # a copy: never writes into the caller's arrays


# --------------------------------------------------------------------------- starts, densities
def batched_starts(X: Any, n_components: int, n_starts: int, random_state: int = 0, spread: float | None = None) -> dict[str, np.ndarray]:
    """``n_starts`` starts of :func:`iemlib.mixture.random_start` (full covariances), seeds
    ``random_state, random_state + 1, ...``, stacked: ``weights`` (B, K), ``means`` (B, K, D),
    ``covariances`` (B, K, D, D)."""
    X = _check_X(X)
    K = check_int(n_components, "n_components", minimum=1)
    B = check_int(n_starts, "n_starts", minimum=1)
    seed = check_int(random_state, "random_state", minimum=0)
    starts = [random_start(X, K, "full", random_state=seed + b, spread=spread) for b in range(B)]
    cov = np.stack([np.linalg.inv(s["precisions_init"]) for s in starts])
    return {
        "weights": np.stack([s["weights_init"] for s in starts]),
        "means": np.stack([s["means_init"] for s in starts]),
        "covariances": 0.5 * (cov + np.swapaxes(cov, -1, -2)),
    }


def _distances(Z: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """d_bik = -(log w_bk + log N(z_i | mu_bk, Sigma_bk)), shape (B, n, K); differentiable."""
    D = Z.shape[1]
    eye = torch.eye(D, dtype=cov.dtype)
    finite = torch.isfinite(cov).all(-1).all(-1)
    Lc, info = torch.linalg.cholesky_ex(torch.where(finite[..., None, None], cov, eye))  # (B, K, D, D)
    bad = (info != 0) | ~finite  # a diverged start (not positive definite / not finite): NaN distances
    if bad.any():
        Lc = torch.where(bad[..., None, None], eye, Lc)
    diff = (Z[None, None, :, :] - mu[:, :, None, :]).transpose(-1, -2)  # (B, K, D, n)
    y = torch.linalg.solve_triangular(Lc, diff, upper=False)
    maha = (y**2).sum(-2)  # (B, K, n)
    logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(-1)  # (B, K)
    d = -(log_w[:, :, None] - 0.5 * (D * _LOG_2PI + logdet[..., None] + maha))
    if bad.any():
        d = torch.where(bad[..., None], torch.nan, d)
    return d.transpose(1, 2)


def batched_distances(X: Any, weights: Any, means: Any, covariances: Any) -> np.ndarray:
    """Distances ``d_bij = -log(w_bj N(x_i | mu_bj, Sigma_bj))`` for every start, (B, n, K)."""
    X = _check_X(X)
    w, m, c = _check_batch(X, weights, means, covariances)
    with torch.no_grad():
        return _distances(_t(X), torch.log(_t(w)), _t(m), _t(c)).numpy()


def batched_log_likelihood(X: Any, weights: Any, means: Any, covariances: Any) -> np.ndarray:
    """Mean log-likelihood per sample of every mixture in the batch, shape (B,)."""
    d = batched_distances(X, weights, means, covariances)
    return np.asarray(torch.logsumexp(-_t(d), dim=2).mean(1).numpy())


# --------------------------------------------------------------------------- classical EM
def _m_step(Z: torch.Tensor, r: torch.Tensor, reg: float):
    n, D = Z.shape
    nk = r.sum(1) + 10 * torch.finfo(torch.float64).eps  # (B, K)
    mu = torch.einsum("bnk,nd->bkd", r, Z) / nk[..., None]
    diff = Z[None, None] - mu[:, :, None, :]  # (B, K, n, D)
    cov = torch.einsum("bnk,bknd,bkne->bkde", r, diff, diff) / nk[..., None, None]
    cov = cov + reg * torch.eye(D, dtype=Z.dtype)
    w = nk / n
    return w / w.sum(1, keepdim=True), mu, cov


def _one_thread(fn):
    """Run ``fn`` with torch's intra-op pool at one thread (tiny tensors: threads only add
    contention), restoring the caller's setting afterwards."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@_one_thread
def batched_em(
    X: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-10,
    reg_covar: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Classical EM from every start at once (what :class:`~iemlib.mixture.GaussianMixtureEM`
    does for one start, with the same stopping rule).

    Returns a dict of numpy arrays: final ``weights``, ``means``, ``covariances``;
    ``log_likelihood`` (B,) of the final parameters; ``history`` (B, T + 1) the mean
    log-likelihood after t M-steps (NaN once a start has stopped); ``n_iter`` (B,) the M-steps
    taken; ``n_e_steps`` (B,) E-steps (function evaluations: each computes every distance
    and the log-likelihood; one more than ``n_iter``, for the final parameters);
    ``converged`` (B,) bool.
    """
    X = _check_X(X)
    w, m, c = _check_batch(X, weights, means, covariances)
    T = check_int(max_iter, "max_iter", minimum=1)
    tol = check_positive(tol, "tol", allow_zero=True)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    Z = _t(X)
    B = w.shape[0]
    w_, m_, c_ = _t(w), _t(m), _t(c)
    active = torch.ones(B, dtype=torch.bool)
    converged = torch.zeros(B, dtype=torch.bool)
    n_iter = torch.zeros(B, dtype=torch.long)
    lower = torch.full((B,), -math.inf, dtype=torch.float64)
    hist = []
    with torch.no_grad():
        for _ in range(T):  # only the starts still running are computed
            idx = active.nonzero().squeeze(1)
            d = _distances(Z, torch.log(w_[idx]), m_[idx], c_[idx])
            L = torch.logsumexp(-d, dim=2)
            ll_s = L.mean(1)
            row = torch.full((B,), math.nan, dtype=torch.float64)
            row[idx] = ll_s
            hist.append(row)
            r = torch.exp(-d - L[..., None])
            w_[idx], m_[idx], c_[idx] = _m_step(Z, r, reg)
            n_iter[idx] += 1
            done = (ll_s - lower[idx]).abs() < tol
            lower[idx] = ll_s
            converged[idx[done]] = True
            active[idx[done]] = False
            if not active.any():
                break
        d = _distances(Z, torch.log(w_), m_, c_)
        ll = torch.logsumexp(-d, dim=2).mean(1)
        hist.append(ll)
    H = torch.stack(hist, 1).numpy()
    # after a start stops, its last entry (the final parameters) sits at column n_iter
    n_it = n_iter.numpy()
    out_hist = np.full_like(H, np.nan)
    for b in range(B):
        k = int(n_it[b])
        out_hist[b, :k] = H[b, :k]
        out_hist[b, k] = float(ll[b])
    return {
        "weights": w_.numpy(),
        "means": m_.numpy(),
        "covariances": 0.5 * (c_.numpy() + np.swapaxes(c_.numpy(), -1, -2)),
        "log_likelihood": ll.numpy(),
        "history": out_hist,
        "n_iter": n_it,
        "n_e_steps": n_it + 1,
        "converged": converged.numpy(),
    }


# --------------------------------------------------------------------------- implicit EM
def _to_unconstrained(w, m, c, center, scale, reg):
    """ImplicitEM's parametrisation, batched: logits, standardized means, Cholesky raw."""
    D = m.shape[-1]
    cs = c / scale**2
    shifted = cs - reg * np.eye(D)
    try:
        C = np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        C = np.linalg.cholesky(cs)
    raw = np.tril(C, -1) + np.log(np.diagonal(C, axis1=-2, axis2=-1))[..., None] * np.eye(D)
    return [_t(np.log(w)), _t((m - center) / scale), _t(raw)]


def _cov(theta: torch.Tensor, reg: float) -> torch.Tensor:
    D = theta.shape[-1]
    C = torch.tril(theta, -1) + torch.diag_embed(torch.exp(torch.diagonal(theta, dim1=-2, dim2=-1)))
    return C @ C.transpose(-1, -2) + reg * torch.eye(D, dtype=theta.dtype)


def _loss(Z: torch.Tensor, params: list[torch.Tensor], reg: float) -> torch.Tensor:
    lg, mu, th = params
    d = _distances(Z, torch.log_softmax(lg, 1), mu, _cov(th, reg))
    return -torch.logsumexp(-d, dim=2).mean(1)  # (B,)


@_one_thread
def batched_gradient_descent(
    X: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    *,
    lr: float = 0.3,
    max_iter: int = 3000,
    tol: float = 1e-10,
    reg_covar: float = 1e-6,
    standardize: bool = True,
    backtracking: bool = True,
    best_so_far: bool = True,
) -> dict[str, np.ndarray]:
    """Gradient descent on the loss ``-(1/n) sum_i log sum_j exp(-d_ij)`` from every start at
    once: :class:`~iemlib.mixture.ImplicitEM` (``optimizer="gd"``) batched.

    ``standardize``: optimize in coordinates centred and divided by the data's global standard
    deviation (ImplicitEM's default); ``backtracking``: halve the step until the loss does not
    rise, grow it by 1.2 after each accepted step (otherwise a fixed step ``lr``, ImplicitEM's
    ``optimizer="sgd"``); ``best_so_far``: return the parameters of the smallest loss seen
    (otherwise the last iterate). Stops a start once its loss has changed by less than ``tol``
    in 5 consecutive iterations, or diverged (a non-finite loss).

    Returns numpy arrays: final ``weights``, ``means``, ``covariances`` (data coordinates),
    ``log_likelihood`` (B,) of those; ``last_log_likelihood`` (B,) that of the last iterate
    (what ``best_so_far=False`` returns); ``history`` (B, T + 1) the mean log-likelihood of the
    iterate at each iteration (NaN after a start stopped); ``fun_evals`` and ``grad_evals``
    (B, T + 1), cumulative counts at each iteration (forward passes, backtracking trials
    included; backward passes); ``n_fun_evals``, ``n_grad_evals``, ``n_iter``, ``converged``,
    ``monotone`` (the returned history never decreased), ``diverged`` (B,).
    """
    X = _check_X(X)
    w, m, c = _check_batch(X, weights, means, covariances)
    lr = check_positive(lr, "lr")
    T = check_int(max_iter, "max_iter", minimum=1)
    tol = check_positive(tol, "tol", allow_zero=True)
    reg_covar = check_positive(reg_covar, "reg_covar", allow_zero=True)
    n, D = X.shape
    B = w.shape[0]
    center = X.mean(0) if standardize else np.zeros(D)
    scale = (float(X.std()) or 1.0) if standardize else 1.0
    Z = _t((X - center) / scale)
    shift = D * math.log(scale)
    reg = reg_covar / scale**2
    params = _to_unconstrained(w, m, c, center, scale, reg)
    step = torch.full((B,), lr, dtype=torch.float64)
    prev = torch.full((B,), math.inf, dtype=torch.float64)
    quiet = torch.zeros(B, dtype=torch.long)
    active = torch.ones(B, dtype=torch.bool)
    converged = torch.zeros(B, dtype=torch.bool)
    diverged = torch.zeros(B, dtype=torch.bool)
    best_loss = torch.full((B,), math.inf, dtype=torch.float64)
    best = [p.clone() for p in params]
    n_iter = torch.zeros(B, dtype=torch.long)
    nfe = torch.zeros(B, dtype=torch.long)
    nge = torch.zeros(B, dtype=torch.long)
    hist, fe_hist, ge_hist = [], [], []

    def col(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # (A,) -> broadcastable to p
        return v.view(-1, *([1] * (p.ndim - 1)))

    # Only the starts still running are computed (the batch shrinks as starts stop).
    for t in range(T + 1):
        idx = active.nonzero().squeeze(1)
        sub = [p[idx].clone().requires_grad_(True) for p in params]
        loss_s = _loss(Z, sub, reg)
        nfe[idx] += 1
        ls = loss_s.detach() + shift
        loss = torch.full((B,), math.nan, dtype=torch.float64)
        loss[idx] = ls
        hist.append(-loss)
        fe_hist.append(nfe.clone())
        ge_hist.append(nge.clone())
        fin = torch.isfinite(ls)
        better = fin & (ls < best_loss[idx])
        bi = idx[better]
        best_loss[bi] = ls[better]
        for bp, q in zip(best, sub):
            bp[bi] = q.detach()[better]
        q_s = torch.where((prev[idx] - ls).abs() < tol, quiet[idx] + 1, torch.zeros_like(idx))
        quiet[idx] = q_s
        done = q_s >= _PATIENCE
        converged[idx[done]] = True
        diverged[idx[~fin]] = True
        keep = ~done & fin
        active[idx[~keep]] = False
        if t == T or not keep.any():
            break
        prev[idx] = ls
        ii = idx[keep]
        loss_s[keep].sum().backward()
        nge[ii] += 1
        n_iter[ii] += 1
        g = [q.grad.detach()[keep] for q in sub]
        x0 = [q.detach()[keep] for q in sub]
        with torch.no_grad():
            if backtracking:
                base = loss_s.detach()[keep]
                st = step[ii].clone()
                trial = [q.clone() for q in x0]
                srch = torch.ones(len(ii), dtype=torch.bool)
                while True:
                    si = srch.nonzero().squeeze(1)
                    cand = [q[si] - col(st[si], q[si]) * gq[si] for q, gq in zip(x0, g)]
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
                        break
                    st[srch] *= 0.5
                for p, tr in zip(params, trial):
                    p[ii] = tr
                step[ii] = 1.2 * st
            else:
                for p, q, gq in zip(params, x0, g):
                    p[ii] = q - lr * gq

    final = best if best_so_far else params
    with torch.no_grad():
        lg, mu, th = final
        wf = torch.softmax(lg, 1).numpy()
        mf = mu.numpy() * scale + center
        cf = _cov(th, reg).numpy() * scale**2
    cf = 0.5 * (cf + np.swapaxes(cf, -1, -2))
    H = torch.stack(hist, 1).numpy()
    with np.errstate(invalid="ignore"):
        mono = np.array([bool(np.all(np.diff(h[np.isfinite(h)]) >= 0)) for h in H])
    ok = np.isfinite(mf).all(axis=(1, 2)) & np.isfinite(cf).all(axis=(1, 2, 3))
    ll = np.full(B, np.nan)
    if ok.any():
        try:
            ll[ok] = batched_log_likelihood(X, wf[ok], mf[ok], cf[ok])
        except ValueError:  # a diverged start left an unusable mixture
            pass
    last = np.array([H[b, int(k)] for b, k in enumerate(n_iter.numpy())])
    return {
        "weights": wf,
        "means": mf,
        "covariances": cf,
        "log_likelihood": ll,
        "last_log_likelihood": last,
        "history": H,
        "fun_evals": torch.stack(fe_hist, 1).numpy(),
        "grad_evals": torch.stack(ge_hist, 1).numpy(),
        "n_fun_evals": nfe.numpy(),
        "n_grad_evals": nge.numpy(),
        "n_iter": n_iter.numpy(),
        "converged": converged.numpy(),
        "diverged": diverged.numpy(),
        "monotone": mono,
    }


# --------------------------------------------------------------------------- comparing optima
def match_components(means_a: Any, means_b: Any) -> np.ndarray:
    """The relabelling ``perm`` of b's components that best matches a's means (smallest
    largest distance ``max_k |mu_a[k] - mu_b[perm[k]]|``), by trying every permutation
    (K <= 7). Shapes (K, D) -> (K,) integer array."""
    a = np.asarray(as_float_array(means_a, "means_a", ndim=2), dtype=np.float64)
    b = np.asarray(as_float_array(means_b, "means_b", ndim=2), dtype=np.float64)
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


def compare_optima(
    fit_a: dict[str, np.ndarray],
    fit_b: dict[str, np.ndarray],
    scale: float,
    *,
    ll_tol: float = 1e-5,
    mean_tol: float = 0.05,
) -> dict[str, np.ndarray]:
    """Per start, whether two batched fits (dicts with ``means`` (B, K, D) and
    ``log_likelihood`` (B,)) reached the same optimum.

    "Same" means both: the mean log-likelihoods per sample differ by at most ``ll_tol`` nats,
    and after the best relabelling (:func:`match_components`) every mean of b lies within
    ``mean_tol * scale`` of a's (``scale``: e.g. the data's standard deviation). Returns
    ``same`` (B,) bool, ``gap`` (B,) = ll_a - ll_b (positive: a is better), ``mean_diff`` (B,)
    the largest matched mean distance in units of ``scale``, ``perm`` (B, K).
    """
    s = check_positive(scale, "scale")
    lt = check_positive(ll_tol, "ll_tol")
    mt = check_positive(mean_tol, "mean_tol")
    ma = np.asarray(as_float_array(fit_a["means"], "fit_a['means']", ndim=3), dtype=np.float64)
    mb = np.asarray(as_float_array(fit_b["means"], "fit_b['means']", ndim=3), dtype=np.float64)
    if ma.shape != mb.shape:
        raise ValueError(f"fit_b['means'] must have the shape of fit_a['means'] {ma.shape}, got {mb.shape}")
    la = np.asarray(fit_a["log_likelihood"], dtype=np.float64)
    lb = np.asarray(fit_b["log_likelihood"], dtype=np.float64)
    if la.shape != (ma.shape[0],) or lb.shape != (ma.shape[0],):
        raise ValueError(f"log_likelihood must have shape ({ma.shape[0]},) in both fits")
    perms = np.stack([match_components(a, b) for a, b in zip(ma, mb)])
    md = np.array([np.linalg.norm(a - b[p], axis=1).max() for a, b, p in zip(ma, mb, perms)]) / s
    gap = la - lb
    same = np.isfinite(gap) & (np.abs(gap) <= lt) & (md <= mt)
    return {"same": same, "gap": gap, "mean_diff": md, "perm": perms}


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
    X = _check_X(X)
    w, m, c = _check_batch(X, np.asarray(weights)[None], np.asarray(means)[None], np.asarray(covariances)[None])
    return X, w[0], m[0], c[0]


def em_map(X: Any, weights: Any, means: Any, covariances: Any, reg_covar: float = 0.0):
    """One EM iteration (E-step then M-step) of a single full-covariance mixture; returns
    ``(weights, means, covariances)``. The map whose fixed points EM finds."""
    X, w, m, c = _single(X, weights, means, covariances)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    Z = _t(X)
    with torch.no_grad():
        d = _distances(Z, torch.log(_t(w))[None], _t(m)[None], _t(c)[None])
        r = torch.softmax(-d, 2)
        wn, mn, cn = _m_step(Z, r, reg)
    return wn[0].numpy(), mn[0].numpy(), cn[0].numpy()


def em_jacobian(X: Any, weights: Any, means: Any, covariances: Any) -> np.ndarray:
    """Jacobian of the EM map (``reg_covar = 0``) at the given parameters, by autograd, in the
    coordinates theta = (means, covariances' lower triangles, first K - 1 weights): a (p, p)
    matrix with p = K D + K D (D + 1) / 2 + K - 1. At a fixed point its spectral radius is EM's
    linear rate: ``|theta_t - theta*|`` shrinks by about that factor per iteration."""
    X, w, m, c = _single(X, weights, means, covariances)
    Z = _t(X)
    K, D = m.shape

    def f(theta: torch.Tensor) -> torch.Tensor:
        w_, m_, c_ = _unpack(theta, K, D)
        d = _distances(Z, torch.log(w_)[None], m_[None], c_[None])
        r = torch.softmax(-d, 2)
        wn, mn, cn = _m_step(Z, r, 0.0)
        return _pack(wn[0], mn[0], cn[0])

    theta0 = _pack(_t(w), _t(m), _t(c))
    return torch.func.jacrev(f)(theta0).detach().numpy()


def missing_information_fraction(X: Any, weights: Any, means: Any, covariances: Any) -> dict[str, np.ndarray]:
    """The fraction of missing information at a fixed point of EM (Dempster, Laird & Rubin
    1977): eigenvalues of ``I - I_c^{-1} I_o``, with ``I_o`` the observed information
    (minus the Hessian of the summed log-likelihood) and ``I_c`` the complete-data information
    (minus the Hessian of EM's Q function, the responsibilities held at the given
    parameters), both by autograd in :func:`em_jacobian`'s coordinates.

    Returns ``{"eigenvalues": sorted descending (real parts), "largest": float,
    "observed": I_o, "complete": I_c}``. At a fixed point the eigenvalues equal those of
    :func:`em_jacobian`, and the largest is EM's rate.
    """
    X, w, m, c = _single(X, weights, means, covariances)
    Z = _t(X)
    K, D = m.shape
    theta0 = _pack(_t(w), _t(m), _t(c))
    with torch.no_grad():
        r0 = torch.softmax(-_distances(Z, torch.log(_t(w))[None], _t(m)[None], _t(c)[None]), 2)

    def loglik(theta: torch.Tensor) -> torch.Tensor:
        w_, m_, c_ = _unpack(theta, K, D)
        return torch.logsumexp(-_distances(Z, torch.log(w_)[None], m_[None], c_[None]), 2).sum()

    def q(theta: torch.Tensor) -> torch.Tensor:
        w_, m_, c_ = _unpack(theta, K, D)
        return -(r0 * _distances(Z, torch.log(w_)[None], m_[None], c_[None])).sum()

    Io = -torch.autograd.functional.hessian(loglik, theta0, vectorize=True).numpy()
    Ic = -torch.autograd.functional.hessian(q, theta0, vectorize=True).numpy()
    ev = np.linalg.eigvals(np.eye(len(theta0)) - np.linalg.solve(Ic, Io))
    ev = np.sort(ev.real)[::-1]
    return {"eigenvalues": ev, "largest": float(ev[0]), "observed": Io, "complete": Ic}


def linear_rate(gaps: Any, lo: float = 1e-11, hi: float = 1e-5, steps: Any = None) -> float:
    """The per-step contraction factor of a linearly converging sequence, fitted to the
    log-likelihood gaps ``l* - l_t`` (or to the increments ``l_{t+1} - l_t``, which shrink at
    the same rate and need no ``l*``) that lie in ``[lo, hi]``.

    The gaps shrink like ``rho^(2t)`` when the parameters' error shrinks like ``rho^t`` (the
    gap is quadratic in the error), so this returns ``rho = exp(slope / 2)`` of a least-squares
    line through ``log gap`` against ``steps`` (default 0, 1, 2, ...; pass cumulative
    evaluation counts to get a rate per evaluation). NaN entries are skipped; NaN is returned
    when fewer than 3 gaps lie in the window."""
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


# --------------------------------------------------------------------------- stochastic versions
def _per_row(value: Any, B: int, name: str, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    v = np.asarray(value, dtype=np.float64) if not isinstance(value, bool) else None
    if v is None or v.ndim > 1 or (v.ndim == 1 and v.shape[0] != B) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a finite number or an array of shape ({B},), got {value!r}")
    if (lo is not None and (v <= lo).any()) or (hi is not None and (v > hi).any()):
        raise ValueError(f"{name} must lie in ({lo}, {hi}], got {value!r}")
    return torch.tensor(np.broadcast_to(v, (B,)).copy(), dtype=torch.float64)


def _stream(n: int, batch_size: Any, n_epochs: Any, random_state: Any) -> list[np.ndarray]:
    bs = check_int(batch_size, "batch_size", minimum=1)
    ne = check_int(n_epochs, "n_epochs", minimum=1)
    seed = check_int(random_state, "random_state", minimum=0)
    if bs > n:
        raise ValueError(f"batch_size must be at most the number of training points {n}, got {bs}")
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(ne):
        perm = rng.permutation(n)
        batches += [perm[i : i + bs] for i in range(0, n - bs + 1, bs)]
    return batches


def _eval_points(n_batches: int, n_evals: Any) -> set[int]:
    ne = check_int(n_evals, "n_evals", minimum=1)
    return {int(round(k * n_batches / ne)) for k in range(1, ne + 1)}


@_one_thread
def online_em(
    X_train: Any,
    X_test: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    *,
    batch_size: int = 50,
    n_epochs: int = 1,
    step_exponent: Any = 0.6,
    reg_covar: float = 1e-6,
    n_evals: int = 20,
    random_state: int = 0,
) -> dict[str, np.ndarray]:
    """Online (stochastic) EM of Cappe & Moulines (2009) for every start at once, on one
    stream of minibatches (the same for every start).

    The sufficient statistics ``s = (E r_j, E r_j x, E r_j x x^T)`` start at the values of the
    starting parameters and follow the stochastic-approximation recursion
    ``s <- s + gamma_t (s_hat(batch; theta) - s)`` with ``gamma_t = (t + 2)^(-alpha)``
    (``alpha = step_exponent`` in (0.5, 1], a number or one per start), ``t`` = 0, 1, ...
    minibatches; after each, the parameters are the M-step of ``s`` (``reg_covar`` on the
    covariances' diagonal). Each minibatch costs one E-step on ``batch_size`` points.

    Returns ``test_log_likelihood`` (B, n_evals + 1): mean held-out log-likelihood per sample
    at the start and after evenly spaced minibatches; ``n_seen`` (n_evals + 1,) the training
    points seen by then; final ``weights``, ``means``, ``covariances``.
    """
    Xtr = _check_X(X_train, "X_train")
    Xte = _check_X(X_test, "X_test", n_features=Xtr.shape[1])
    w, m, c = _check_batch(Xtr, weights, means, covariances)
    B, K, D = m.shape
    alpha = _per_row(step_exponent, B, "step_exponent", lo=0.5, hi=1.0)
    reg = check_positive(reg_covar, "reg_covar", allow_zero=True)
    batches = _stream(len(Xtr), batch_size, n_epochs, random_state)
    evals = _eval_points(len(batches), n_evals)
    Ztr, Zte = _t(Xtr), _t(Xte)
    w_, m_, c_ = _t(w), _t(m), _t(c)
    s0 = w_.clone()
    s1 = w_[..., None] * m_
    s2 = w_[..., None, None] * (c_ + m_[..., :, None] * m_[..., None, :])
    eye = torch.eye(D, dtype=torch.float64)

    def test_ll() -> torch.Tensor:
        return torch.logsumexp(-_distances(Zte, torch.log(w_), m_, c_), 2).mean(1)

    hist, seen = [test_ll()], [0]
    with torch.no_grad():
        for t, idx in enumerate(batches):
            xb = Ztr[idx]
            r = torch.softmax(-_distances(xb, torch.log(w_), m_, c_), 2)  # (B, b, K)
            h0 = r.mean(1)
            h1 = torch.einsum("bnk,nd->bkd", r, xb) / len(idx)
            h2 = torch.einsum("bnk,nd,ne->bkde", r, xb, xb) / len(idx)
            g = (t + 2.0) ** (-alpha)
            s0 = s0 + g[:, None] * (h0 - s0)
            s1 = s1 + g[:, None, None] * (h1 - s1)
            s2 = s2 + g[:, None, None, None] * (h2 - s2)
            w_ = s0 / s0.sum(1, keepdim=True)
            m_ = s1 / s0[..., None]
            c_ = s2 / s0[..., None, None] - m_[..., :, None] * m_[..., None, :] + reg * eye
            c_ = 0.5 * (c_ + c_.transpose(-1, -2))
            if t + 1 in evals:
                hist.append(test_ll())
                seen.append((t + 1) * len(idx))
    return {
        "test_log_likelihood": torch.stack(hist, 1).numpy(),
        "n_seen": np.array(seen),
        "weights": w_.numpy(),
        "means": m_.numpy(),
        "covariances": c_.numpy(),
    }


@_one_thread
def minibatch_gradient_descent(
    X_train: Any,
    X_test: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    *,
    batch_size: int = 50,
    n_epochs: int = 1,
    lr: Any = 0.1,
    optimizer: str = "sgd",
    reg_covar: float = 1e-6,
    n_evals: int = 20,
    random_state: int = 0,
) -> dict[str, np.ndarray]:
    """Minibatch gradient descent on the loss ``-(1/b) sum_{i in batch} L_i`` for every start
    at once, in :class:`~iemlib.mixture.ImplicitEM`'s parametrisation and standardized
    coordinates (centre and scale of ``X_train``), on the stream of :func:`online_em` (same
    ``batch_size``, ``n_epochs``, ``random_state``: the same minibatches in the same order).

    ``optimizer="sgd"``: a fixed step ``lr`` (a number or one per start, so that one call can
    sweep step sizes); ``"adam"``: Adam with step ``lr`` (one per start), torch's defaults
    otherwise, written out so that it is batched. Each minibatch costs one function and one
    gradient evaluation on ``batch_size`` points. Returns what :func:`online_em` returns.
    """
    Xtr = _check_X(X_train, "X_train")
    Xte = _check_X(X_test, "X_test", n_features=Xtr.shape[1])
    w, m, c = _check_batch(Xtr, weights, means, covariances)
    B, K, D = m.shape
    lr_ = _per_row(lr, B, "lr", lo=0.0)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    reg_covar = check_positive(reg_covar, "reg_covar", allow_zero=True)
    batches = _stream(len(Xtr), batch_size, n_epochs, random_state)
    evals = _eval_points(len(batches), n_evals)
    center, scale = Xtr.mean(0), float(Xtr.std()) or 1.0
    Ztr, Zte = _t((Xtr - center) / scale), _t((Xte - center) / scale)
    shift = D * math.log(scale)
    reg = reg_covar / scale**2
    params = [p.requires_grad_(True) for p in _to_unconstrained(w, m, c, center, scale, reg)]
    mom = [torch.zeros_like(p) for p in params]
    vel = [torch.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8

    def test_ll() -> torch.Tensor:
        with torch.no_grad():
            return -_loss(Zte, params, reg) - shift

    hist, seen = [test_ll()], [0]
    for t, idx in enumerate(batches):
        for p in params:
            p.grad = None
        _loss(Ztr[idx], params, reg).sum().backward()
        with torch.no_grad():
            for k, p in enumerate(params):
                g = p.grad
                col = lr_.view(-1, *([1] * (p.ndim - 1)))
                if optimizer == "sgd":
                    p -= col * g
                else:
                    mom[k] = b1 * mom[k] + (1 - b1) * g
                    vel[k] = b2 * vel[k] + (1 - b2) * g * g
                    mh = mom[k] / (1 - b1 ** (t + 1))
                    vh = vel[k] / (1 - b2 ** (t + 1))
                    p -= col * mh / (vh.sqrt() + eps)
        if t + 1 in evals:
            hist.append(test_ll())
            seen.append((t + 1) * len(idx))
    with torch.no_grad():
        lg, mu, th = params
        wf = torch.softmax(lg, 1).numpy()
        mf = mu.numpy() * scale + center
        cf = _cov(th, reg).numpy() * scale**2
    return {
        "test_log_likelihood": torch.stack(hist, 1).numpy(),
        "n_seen": np.array(seen),
        "weights": wf,
        "means": mf,
        "covariances": 0.5 * (cf + np.swapaxes(cf, -1, -2)),
    }


@_one_thread
def batched_preconditioned_ascent(
    X: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> dict[str, np.ndarray]:
    """Gradient ascent on the summed log-likelihood (the objective, maximized) preconditioned
    by the Xu & Jordan (1996) projection matrices, every start at once (see
    :func:`iemlib.mixture.preconditioned_em_step`): per iteration one forward pass (distances,
    the log-likelihood, and the responsibilities that give ``N_j``) and one backward pass
    (autograd's gradients in the raw weights, the means and the full covariances), then

        w <- w + (diag w - w w^T) g_w / n,  mu_j <- mu_j + Sigma_j g_mu_j / N_j,
        Sigma_j <- Sigma_j + (2 / N_j) Sigma_j g_Sigma_j Sigma_j.

    The weight and mean steps are EM's exactly; the covariance step lands on the scatter about
    the *current* means, so the iteration differs from EM by ``O(|mu_{t+1} - mu_t|^2)`` per
    step and has EM's fixed points. Stops as :func:`batched_em`. Returns what
    :func:`batched_em` returns, with ``n_fun_evals`` and ``n_grad_evals`` (B,) in place of
    ``n_e_steps``.
    """
    X = _check_X(X)
    w, m, c = _check_batch(X, weights, means, covariances)
    T = check_int(max_iter, "max_iter", minimum=1)
    tol = check_positive(tol, "tol", allow_zero=True)
    Z = _t(X)
    n = X.shape[0]
    B = w.shape[0]
    w_, m_, c_ = _t(w), _t(m), _t(c)
    active = torch.ones(B, dtype=torch.bool)
    converged = torch.zeros(B, dtype=torch.bool)
    n_iter = torch.zeros(B, dtype=torch.long)
    lower = torch.full((B,), -math.inf, dtype=torch.float64)
    hist = []
    for _ in range(T):
        idx = active.nonzero().squeeze(1)
        wt = w_[idx].clone().requires_grad_(True)
        mt = m_[idx].clone().requires_grad_(True)
        ct = c_[idx].clone().requires_grad_(True)
        d = _distances(Z, torch.log(wt), mt, 0.5 * (ct + ct.transpose(-1, -2)))
        L = torch.logsumexp(-d, dim=2)
        ll_s = L.detach().mean(1)
        row = torch.full((B,), math.nan, dtype=torch.float64)
        row[idx] = ll_s
        hist.append(row)
        gw, gm, gc = torch.autograd.grad(L.sum(), (wt, mt, ct))
        with torch.no_grad():
            Nk = torch.softmax(-d, 2).sum(1)  # (A, K)
            wa, ma, ca = wt.detach(), mt.detach(), ct.detach()
            Pw = torch.diag_embed(wa) - wa[:, :, None] * wa[:, None, :]
            w_[idx] = wa + torch.einsum("bkl,bl->bk", Pw, gw) / n
            m_[idx] = ma + torch.einsum("bkde,bke->bkd", ca, gm) / Nk[..., None]
            cn = ca + 2.0 * ca @ gc @ ca / Nk[..., None, None]
            c_[idx] = 0.5 * (cn + cn.transpose(-1, -2))
            n_iter[idx] += 1
            done = (ll_s - lower[idx]).abs() < tol
            lower[idx] = ll_s
            converged[idx[done]] = True
            active[idx[done]] = False
        if not active.any():
            break
    with torch.no_grad():
        ll = torch.logsumexp(-_distances(Z, torch.log(w_), m_, c_), dim=2).mean(1)
    hist.append(ll)
    H = torch.stack(hist, 1).numpy()
    n_it = n_iter.numpy()
    out_hist = np.full_like(H, np.nan)
    for b in range(B):
        k = int(n_it[b])
        out_hist[b, :k] = H[b, :k]
        out_hist[b, k] = float(ll[b])
    return {
        "weights": w_.numpy(),
        "means": m_.numpy(),
        "covariances": c_.numpy(),
        "log_likelihood": ll.numpy(),
        "history": out_hist,
        "n_iter": n_it,
        "n_fun_evals": n_it + 1,
        "n_grad_evals": n_it,
        "converged": converged.numpy(),
    }
