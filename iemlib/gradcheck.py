"""Numerical checks of gradient identities, three ways.

A gradient identity says that the gradient of some scalar function ``f`` at ``x`` equals a
closed form ``g(x)``. :func:`check_gradient_identity` compares, at one point ``x``:

1. **autograd** (``torch.autograd.grad`` of ``f`` in the dtype of ``x``) against the closed form
   (evaluated in the same dtype), element by element, over *every* coordinate;
2. both of them against a **reference** gradient, when one is given (e.g. the closed form in
   extended precision, :func:`theorem1_reference`), so that the error of each computation, not
   just their disagreement, is measured;
3. **central finite differences**, which need two evaluations of ``f`` per probe, so they are
   not taken on every coordinate of a large ``x``: on a random subset of ``n_coords``
   coordinates (one probe per coordinate) and along ``n_directions`` random unit directions
   (a directional derivative, which tests all coordinates at once, in aggregate). Finite
   differences are always evaluated in float64 at the same point (a float32 ``x`` is exactly
   representable in float64); their own truncation and rounding error is of order 1e-8 to
   1e-10, far above float64's machine epsilon, so they check the *formula*, while (1) and (2)
   check the *arithmetic*.

Errors are reported in units of the machine epsilon of the dtype of ``x`` (absolute error
divided by eps; natural for gradients of order one such as responsibilities) and in ulps (the
absolute error divided by the spacing of floating-point numbers at the reference value).

The module also holds the closed forms of the related identities that chapter 3 checks (the
gradients of a log-determinant and of a Gaussian log-density with respect to the covariance;
the attention gradients live in :mod:`iemlib.attention`), Fisher's identity, the
volume-corrected identity of the implicit-EM paper's 2026 revision (its section 3.4;
:func:`volume_corrected_gradient`, also reachable as ``iemlib.identities``), and
:func:`max_relative_error`, the error measure of chapter 5's closed-form attention gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ._validation import ArrayLike, as_float_array, as_numpy, check_int, check_positive, is_torch, to_numpy
from .objectives import lse, lse_gradient

__all__ = [
    "IdentityCheck",
    "check_gradient_identity",
    "check_theorem1",
    "theorem1_reference",
    "errors_in_eps",
    "errors_in_ulps",
    "logdet_gradient",
    "gaussian_logpdf",
    "gaussian_logpdf_cov_gradient",
    "fisher_identity",
    "volume_corrected_objective",
    "volume_corrected_gradient",
    "max_relative_error",
]

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _np_dtype(dtype: Any) -> type:
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return _DTYPES[dtype]
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


def _error_inputs(a: ArrayLike, b: ArrayLike, name_b: str, dtype: Any) -> tuple[type, np.ndarray, np.ndarray]:
    t = _np_dtype(dtype)
    a_ = as_float_array(to_numpy(a), "a", allow_empty=True)
    b_ = as_float_array(to_numpy(b), name_b, allow_empty=True)
    if a_.shape != b_.shape:
        raise ValueError(f"{name_b} must have the same shape as a {a_.shape}, got {b_.shape}")
    return t, a_, b_


def errors_in_eps(a: ArrayLike, b: ArrayLike, dtype: Any) -> np.ndarray:
    """``|a - b| / eps(dtype)`` elementwise (computed in extended precision): the absolute error in
    units of the machine epsilon of ``dtype``.

    Parameters
    ----------
    a, b : arrays or tensors of the same shape; dtype : float32 or float64 (numpy or torch)

    Returns
    -------
    float64 numpy array of the shape of ``a``.
    """
    t, a_, b_ = _error_inputs(a, b, "b", dtype)
    wide = np.longdouble
    return (np.abs(a_.astype(wide) - b_.astype(wide)) / wide(np.finfo(t).eps)).astype(np.float64)


def errors_in_ulps(a: ArrayLike, reference: ArrayLike, dtype: Any) -> np.ndarray:
    """``|a - reference| / ulp(reference)`` elementwise, where ``ulp`` is the spacing of ``dtype``
    numbers at ``|reference|`` (``reference`` rounded to ``dtype`` first).

    Ulps measure *relative* error: for tiny (or subnormal) reference values an absolute error far
    below eps can still be many ulps. Use :func:`errors_in_eps` for the absolute view.

    Parameters
    ----------
    a : array or tensor
    reference : array or tensor of the shape of ``a``
    dtype : float32 or float64 (numpy or torch), whose spacing is the unit

    Returns
    -------
    float64 numpy array, one error per element of ``a``.
    """
    t, a_, r_ = _error_inputs(a, reference, "reference", dtype)
    with np.errstate(over="ignore"):
        mag = np.abs(r_).astype(t)
    ulp = np.spacing(mag).astype(np.longdouble)
    return (np.abs(a_.astype(np.longdouble) - r_.astype(np.longdouble)) / ulp).astype(np.float64)


def _peak(a: np.ndarray) -> float:
    return float(a.max(initial=0.0))


@dataclass(frozen=True)
class IdentityCheck:
    """The outcome of :func:`check_gradient_identity`. Per-element arrays are float64 numpy,
    flattened, ready for histograms; scalar summaries are properties.

    Attributes
    ----------
    name
        the label; dtype : "float32" or "float64"; numel : the number of coordinates; eps : the
    dtype's machine epsilon.
    autograd_vs_closed_eps, autograd_vs_closed_ulps : ``|autograd - closed form|`` per coordinate, in eps
    and in ulps of the closed form.
    autograd_vs_reference_eps, closed_vs_reference_eps : ``|autograd - reference|`` and
    ``|closed form - reference|`` in eps (empty without a reference).
    fd_coords, fd_coord_abs_error : the coordinates probed by finite differences, ``|FD - closed form|`` there.
    fd_direction_abs_error : ``|directional FD - <closed form, v>|`` along each random unit direction v.
    fd_step : the finite-difference step; method_note : one sentence saying how the check was done.
    Properties: ``max_abs_error``, ``max_error_eps``, ``max_error_ulps``, ``max_autograd_ref_eps``,
    ``max_closed_ref_eps``, ``fd_max_abs_error``; ``summary()`` gives them as one table row.
    """

    name: str
    dtype: str
    numel: int
    eps: float
    #: ``|autograd - closed form|`` / eps, every coordinate
    autograd_vs_closed_eps: np.ndarray
    #: ``|autograd - closed form|`` in ulps of the closed form, every coordinate
    autograd_vs_closed_ulps: np.ndarray
    #: ``|autograd - reference|`` / eps and ``|closed - reference|`` / eps (empty when no reference)
    autograd_vs_reference_eps: np.ndarray
    closed_vs_reference_eps: np.ndarray
    #: the coordinates probed by finite differences and ``|FD - closed form|`` there (absolute)
    fd_coords: np.ndarray
    fd_coord_abs_error: np.ndarray
    #: ``|directional FD - <closed form, v>|`` along each random unit direction v (absolute)
    fd_direction_abs_error: np.ndarray
    fd_step: float
    method_note: str = field(default="", repr=False)

    max_abs_error = property(lambda self: float(self.autograd_vs_closed_eps.max(initial=0.0) * self.eps),
                             doc="Largest ``|autograd - closed form|`` over all coordinates (absolute).")
    max_error_eps = property(lambda self: _peak(self.autograd_vs_closed_eps),
                             doc="Largest ``|autograd - closed form|`` in units of eps of the dtype.")
    max_error_ulps = property(lambda self: _peak(self.autograd_vs_closed_ulps),
                              doc="Largest ``|autograd - closed form|`` in ulps of the closed form.")
    max_autograd_ref_eps = property(lambda self: _peak(self.autograd_vs_reference_eps),
                                    doc="Largest ``|autograd - reference|`` in units of eps (0 without a reference).")
    max_closed_ref_eps = property(lambda self: _peak(self.closed_vs_reference_eps),
                                  doc="Largest ``|closed form - reference|`` in units of eps (0 without a reference).")
    fd_max_abs_error = property(lambda self: max(_peak(self.fd_coord_abs_error), _peak(self.fd_direction_abs_error)),
                                doc="Largest finite-difference discrepancy, coordinates and directions together (absolute).")

    def summary(self) -> dict[str, Any]:
        """The scalar results as a flat dict (one table row)."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "numel": self.numel,
            "max |auto-closed| (eps)": self.max_error_eps,
            "max |auto-closed| (ulps)": self.max_error_ulps,
            "max |auto-ref| (eps)": self.max_autograd_ref_eps,
            "max |closed-ref| (eps)": self.max_closed_ref_eps,
            "max |FD-closed| (abs)": self.fd_max_abs_error,
            "FD probes": f"{self.fd_coords.size} coords + {self.fd_direction_abs_error.size} directions",
        }


def _default_step(fx: float) -> float:
    # balance truncation (~h^2) against rounding (~eps|f|/h) for a float64 central difference
    return float((3.0 * np.finfo(np.float64).eps * max(1.0, abs(fx))) ** (1.0 / 3.0))


def _check_identity_args(f, closed_form, x, n_coords, n_directions, seed, fd_step, name):
    if not callable(f):
        raise ValueError(f"f must be callable, got {type(f).__name__}")
    if not callable(closed_form):
        raise ValueError(f"closed_form must be callable, got {type(closed_form).__name__}")
    x = as_float_array(x, "x", allow_sequence=False)
    if not is_torch(x):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype not in _DTYPES:
        raise ValueError(f"x must be float32 or float64, got {x.dtype}")
    n_coords = check_int(n_coords, "n_coords", minimum=0)
    n_directions = check_int(n_directions, "n_directions", minimum=0)
    seed = check_int(seed, "random_state", minimum=0)
    if fd_step is not None:
        fd_step = check_positive(fd_step, "fd_step")
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {name!r}")
    return x, n_coords, n_directions, seed, fd_step


def _finite_difference_errors(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, c64: np.ndarray, fd_step: float | None,
    n_coords: int, n_directions: int, seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``|FD - closed form|`` on ``n_coords`` random coordinates and along ``n_directions`` random unit
    directions, central differences in float64; returns (coords, their errors, direction errors, step)."""
    x64 = x.to(torch.float64)
    flat = x64.reshape(-1)
    with torch.no_grad():
        fx = float(f(x64))
    h = fd_step if fd_step is not None else _default_step(fx)
    rng = np.random.default_rng(seed)
    n = flat.numel()
    coords = np.sort(rng.choice(n, size=min(n_coords, n), replace=False)) if n_coords else np.zeros(0, dtype=np.int64)
    coord_err = np.empty(coords.size)
    with torch.no_grad():
        for m, k in enumerate(coords):
            e = torch.zeros_like(flat)
            xk = float(flat[k])
            hk = (xk + h) - xk  # the step actually taken (exactly representable)
            e[k] = hk
            fp = float(f((flat + e).reshape(x.shape)))
            fm = float(f((flat - e).reshape(x.shape)))
            coord_err[m] = abs((fp - fm) / (2 * hk) - c64[k])
        dir_err = np.empty(n_directions)
        for m in range(n_directions):
            v = rng.standard_normal(n)
            v /= np.linalg.norm(v)
            vt = torch.from_numpy(v)
            fp = float(f((flat + h * vt).reshape(x.shape)))
            fm = float(f((flat - h * vt).reshape(x.shape)))
            dir_err[m] = abs((fp - fm) / (2 * h) - float(np.dot(c64, v)))
    return coords, coord_err, dir_err, h


def check_gradient_identity(
    f: Callable[[torch.Tensor], torch.Tensor],
    closed_form: Callable[[torch.Tensor], ArrayLike],
    x: ArrayLike,
    *,
    reference: ArrayLike | None = None,
    n_coords: int = 32,
    n_directions: int = 8,
    fd_step: float | None = None,
    random_state: int = 0,
    name: str = "",
) -> IdentityCheck:
    """Check that the gradient of the scalar ``f`` at ``x`` equals ``closed_form(x)``, three ways.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar tensor (the function differentiated: say in
        ``name`` whether it is an objective ``L`` or a loss).
    closed_form : callable
        Maps a (detached) tensor shaped like ``x`` to the claimed gradient, same shape.
    x : torch tensor or numpy array, float32 or float64, finite, non-empty
        The point. Numpy input is converted to a tensor of the same dtype.
    reference : array, optional
        A more accurate gradient at ``x`` (e.g. :func:`theorem1_reference`), same shape.
    n_coords, n_directions : int >= 0
        Number of random coordinates (without replacement, capped at ``x.numel()``) and of random
        unit directions probed by central finite differences.
    fd_step : float > 0, optional
        Finite-difference step; by default ``(3 eps64 max(1, |f(x)|))^(1/3)``.
    random_state : int >= 0
        Seeds the choice of coordinates and directions.
    name : str
        A label for the check (kept in the result).

    Returns
    -------
    IdentityCheck
    """
    x, n_coords, n_directions, seed, fd_step = _check_identity_args(f, closed_form, x, n_coords, n_directions, random_state, fd_step, name)
    t = _DTYPES[x.dtype]
    eps = float(np.finfo(t).eps)
    x = x.detach()

    # 1. autograd vs closed form, every coordinate, in the working dtype
    xa = x.clone().requires_grad_(True)
    out = f(xa)
    if not is_torch(out) or out.numel() != 1:
        raise ValueError("f must return a scalar tensor")
    (g_auto,) = torch.autograd.grad(out.reshape(()), xa)
    g_closed = closed_form(x.clone())
    g_closed = g_closed.detach() if is_torch(g_closed) else torch.as_tensor(np.asarray(g_closed))
    if tuple(g_closed.shape) != tuple(x.shape):
        raise ValueError(f"closed_form must return the shape of x {tuple(x.shape)}, got {tuple(g_closed.shape)}")
    a_np, c_np = to_numpy(g_auto).ravel(), to_numpy(g_closed).astype(t).ravel()
    ac_eps = errors_in_eps(a_np, c_np, t)
    ac_ulps = errors_in_ulps(a_np, c_np, t)

    # 2. against a reference
    if reference is not None:
        ref = as_float_array(to_numpy(reference) if is_torch(reference) else reference, "reference", allow_sequence=False)
        ref = np.asarray(ref)
        if ref.shape != tuple(x.shape):
            raise ValueError(f"reference must have the shape of x {tuple(x.shape)}, got {ref.shape}")
        ref = ref.ravel()
        ar_eps, cr_eps = errors_in_eps(a_np, ref, t), errors_in_eps(c_np, ref, t)
    else:
        ar_eps = cr_eps = np.zeros(0)

    # 3. central finite differences in float64 at the same point
    coords, coord_err, dir_err, h = _finite_difference_errors(f, x, c_np.astype(np.float64), fd_step, n_coords, n_directions, seed)
    n = x.numel()

    note = (
        f"autograd vs closed form on all {n} coordinates in {np.dtype(t).name}; central finite differences "
        f"in float64 (step {h:.3g}) on {coords.size} random coordinates and along {n_directions} random unit directions"
    )
    return IdentityCheck(name, np.dtype(t).name, n, eps, ac_eps, ac_ulps, ar_eps, cr_eps, coords.astype(np.int64), coord_err,
                         dir_err, float(h), method_note=note)


def theorem1_reference(d: ArrayLike) -> np.ndarray:
    """``-r_j`` (the gradient of ``L = lse(d)``, the maximized objective) computed in numpy's
    ``longdouble`` (80-bit extended precision on x86: eps about 1.1e-19) along the last axis,
    from the same floating-point ``d``.

    Parameters
    ----------
    d : array or tensor, at least 1-D

    Returns
    -------
    numpy longdouble array of the shape of ``d``.
    """
    d = as_float_array(to_numpy(d) if is_torch(d) else d, "d", min_ndim=1)
    dl = np.asarray(d).astype(np.longdouble)
    with np.errstate(over="ignore"):
        e = np.exp(-(dl - dl.min(axis=-1, keepdims=True)))
    return -(e / e.sum(axis=-1, keepdims=True))


def check_theorem1(d: ArrayLike, **kwargs: Any) -> IdentityCheck:
    """Theorem 1 at ``d``: autograd of ``L = lse(d)`` (the maximized objective) against the closed
    form ``-r_j`` and the extended-precision reference :func:`theorem1_reference`.

    Parameters
    ----------
    d : 1-D float32 or float64 array or tensor
    **kwargs : passed to :func:`check_gradient_identity` (``n_coords``, ``n_directions``,
        ``random_state``, ...)

    Returns
    -------
    IdentityCheck
    """
    d = as_float_array(d, "d", ndim=1, allow_sequence=False)
    kwargs.setdefault("name", "Theorem 1: dL/dd = -r (L maximized)")
    return check_gradient_identity(lse, lse_gradient, d, reference=theorem1_reference(d), **kwargs)


# --------------------------------------------------------------------------- related identities
def _check_spd(Sigma: Any, name: str = "Sigma", *, symmetric: bool = True) -> ArrayLike:
    Sigma = as_float_array(Sigma, name, ndim=2)
    if Sigma.shape[0] != Sigma.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(Sigma.shape)}")
    S = to_numpy(Sigma).astype(np.float64)
    if symmetric and not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(S).max())):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh((S + S.T) / 2).min() <= 0:
        raise ValueError(f"{name} must be positive definite")
    return Sigma


def logdet_gradient(Sigma: ArrayLike) -> ArrayLike:
    """Closed form ``d log det(Sigma) / d Sigma = Sigma^{-T}`` (``= Sigma^{-1}`` for symmetric
    ``Sigma``), each entry of ``Sigma`` treated as a free variable.

    Parameters
    ----------
    Sigma : (k, k) symmetric positive definite

    Returns
    -------
    The kind of ``Sigma``, (k, k).
    """
    Sigma = _check_spd(Sigma)
    if is_torch(Sigma):
        return torch.linalg.inv(Sigma.detach()).T
    return np.linalg.inv(Sigma).T


def _check_gauss(x: Any, mu: Any, Sigma: Any, *, symmetric: bool = True):
    Sigma = _check_spd(Sigma, symmetric=symmetric)
    k = Sigma.shape[0]
    x = as_float_array(x, "x", ndim=1)
    mu = as_float_array(mu, "mu", ndim=1)
    if x.shape[0] != k:
        raise ValueError(f"x must have {k} entries to match Sigma, got shape {tuple(x.shape)}")
    if mu.shape[0] != k:
        raise ValueError(f"mu must have {k} entries to match Sigma, got shape {tuple(mu.shape)}")
    return x, mu, Sigma


def gaussian_logpdf(x: ArrayLike, mu: ArrayLike, Sigma: ArrayLike) -> ArrayLike:
    """``log N(x | mu, Sigma) = -(k log 2pi + log det Sigma + (x-mu)^T Sigma^{-1} (x-mu)) / 2``,
    an objective (maximized). Torch input keeps its graph (Sigma's entries as free variables).

    Parameters
    ----------
    x, mu : (k,); Sigma : (k, k) square with a positive-definite symmetric part (exact symmetry is
        not required, so that finite differences may perturb one entry at a time)

    Returns
    -------
    A scalar of the kind of ``Sigma``.
    """
    x, mu, Sigma = _check_gauss(x, mu, Sigma, symmetric=False)
    k = Sigma.shape[0]
    if is_torch(Sigma):
        x_t = (x if is_torch(x) else torch.as_tensor(np.asarray(x))).to(Sigma.dtype)
        mu_t = (mu if is_torch(mu) else torch.as_tensor(np.asarray(mu))).to(Sigma.dtype)
        delta = x_t - mu_t
        quad = delta @ torch.linalg.solve(Sigma, delta)
        return -0.5 * (k * np.log(2 * np.pi) + torch.logdet(Sigma) + quad)
    delta = np.asarray(x) - np.asarray(mu)
    _, logdet = np.linalg.slogdet(Sigma)
    return -0.5 * (k * np.log(2 * np.pi) + logdet + delta @ np.linalg.solve(Sigma, delta))


def gaussian_logpdf_cov_gradient(x: ArrayLike, mu: ArrayLike, Sigma: ArrayLike) -> ArrayLike:
    """Closed form of ``d log N(x | mu, Sigma) / d Sigma`` (the objective, maximized), entries free:
    ``(Sigma^{-T} delta delta^T Sigma^{-T} - Sigma^{-T}) / 2`` with ``delta = x - mu``. The
    ``-Sigma^{-1}/2`` part is the volume (log-determinant) term; the other part is the data term.

    Parameters
    ----------
    x, mu : (k,); Sigma : (k, k) symmetric positive definite

    Returns
    -------
    (k, k), the kind and dtype of ``Sigma``.
    """
    x, mu, Sigma = _check_gauss(x, mu, Sigma)
    S = to_numpy(Sigma).astype(np.float64)
    delta = (to_numpy(x) - to_numpy(mu)).astype(np.float64)
    P = np.linalg.inv(S).T
    pd = P @ delta
    g = 0.5 * (np.outer(pd, pd) - P)
    if is_torch(Sigma):
        return torch.as_tensor(g, dtype=Sigma.dtype)
    return g.astype(np.asarray(Sigma).dtype)


def fisher_identity(log_joint: Callable[[torch.Tensor], torch.Tensor], theta: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of Fisher's identity at ``theta``, by autograd.

    ``log_joint(theta)`` returns the K complete-data log-likelihoods ``log p(x, z = j | theta)``
    (a tensor of shape (K,)). The left side is the score of the marginal,
    ``grad_theta log sum_j p(x, z = j | theta)``; the right side is the posterior expectation of the
    complete-data score, ``sum_j p(z = j | x, theta) grad_theta log p(x, z = j | theta)``. They are
    equal for every model (a sanity check of the algebra, not evidence). Theorem 1 is the case
    ``log p(x, z = j) = -d_j`` with ``theta = d``. Returns ``(left, right)``, float64 numpy arrays
    of the shape of ``theta``.
    """
    if not callable(log_joint):
        raise ValueError(f"log_joint must be callable, got {type(log_joint).__name__}")
    th = as_float_array(theta, "theta")
    th = (th.detach() if is_torch(th) else torch.as_tensor(np.asarray(th))).to(torch.float64)
    th = th.clone().requires_grad_(True)
    lj = log_joint(th)
    if not is_torch(lj) or lj.ndim != 1 or lj.numel() == 0:
        raise ValueError("log_joint(theta) must return a non-empty 1-D tensor of complete-data log-likelihoods")
    (left,) = torch.autograd.grad(torch.logsumexp(lj, 0), th, retain_graph=True)
    post = torch.softmax(lj.detach(), 0)
    right = torch.zeros_like(th)
    for j in range(lj.numel()):
        (gj,) = torch.autograd.grad(lj[j], th, retain_graph=True, allow_unused=True)
        if gj is not None:
            right = right + post[j] * gj
    return left.numpy(), right.numpy()


def _check_volume_args(W: Any, b: Any, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the arguments of the volume-corrected identity; float64 numpy copies."""
    W_ = as_numpy(W, "W", ndim=3)
    K, D, D2 = W_.shape
    if D != D2:
        raise ValueError(f"W must have shape (K, D, D) with square W_j, got {W_.shape}")
    b_ = as_numpy(b, "b", ndim=2)
    if b_.shape != (K, D):
        raise ValueError(f"b must have shape (K, D) = {(K, D)} to match W, got {b_.shape}")
    x_ = as_numpy(x, "x", ndim=1)
    if x_.shape != (D,):
        raise ValueError(f"x must have shape (D,) = {(D,)} to match W, got {x_.shape}")
    sign, _ = np.linalg.slogdet(W_)
    if (sign == 0).any() or (np.linalg.cond(W_) > 1e12).any():
        bad = int(np.flatnonzero((sign == 0) | (np.linalg.cond(W_) > 1e12))[0])
        raise ValueError(f"W[{bad}] must be invertible (well conditioned): log|det W_j| needs it")
    return W_, b_, x_


def volume_corrected_objective(W: ArrayLike, b: ArrayLike, x: ArrayLike) -> ArrayLike:
    """The objective (maximized) ``L = log sum_j exp(log|det W_j| - ||W_j x + b_j||^2 / 2)``.

    With ``Sigma_j^{-1} = W_j^T W_j`` and ``mu_j = -W_j^{-1} b_j`` it is the log-likelihood of ``x``
    under an equal-weight mixture of full Gaussians ``N(mu_j, Sigma_j)``, up to the constant
    ``-D log(2 pi) / 2 - log K``: ``log|det W_j| = -log det(Sigma_j) / 2`` is the volume term and
    ``d_j = ||W_j x + b_j||^2 / 2 - log|det W_j|`` the distance (energy) of component ``j``. Torch
    input keeps its graph, so autograd can differentiate it.

    Parameters
    ----------
    W : (K, D, D) invertible matrices; b : (K, D); x : (D,)

    Returns
    -------
    A scalar of the kind of ``W`` (a 0-d tensor or a float).
    """
    _check_volume_args(W, b, x)
    if is_torch(W):
        b_t = b if is_torch(b) else torch.as_tensor(np.asarray(b), dtype=W.dtype)
        x_t = x if is_torch(x) else torch.as_tensor(np.asarray(x), dtype=W.dtype)
        z = W @ x_t + b_t
        d = 0.5 * (z**2).sum(-1) - torch.linalg.slogdet(W)[1]
        return torch.logsumexp(-d, 0)
    W_, b_, x_ = (np.asarray(a, dtype=np.float64) for a in (W, b, x))
    z = W_ @ x_ + b_
    d = 0.5 * (z**2).sum(-1) - np.linalg.slogdet(W_)[1]
    return float(lse(d))


def volume_corrected_gradient(W: ArrayLike, b: ArrayLike, x: ArrayLike) -> ArrayLike:
    """Closed form of ``dL/dW_j = r_j (W_j^{-T} - z_j x^T)`` for the objective (maximized)
    :func:`volume_corrected_objective`, ``L = log sum_j exp(log|det W_j| - ||W_j x + b_j||^2 / 2)``.

    Here ``z_j = W_j x + b_j`` and ``r_j = exp(-d_j) / sum_k exp(-d_k)`` are the responsibilities
    of the terms, with ``d_j = ||z_j||^2 / 2 - log|det W_j|``. It is Theorem 1 (``dL/dd_j = -r_j``)
    times ``dd_j/dW_j = z_j x^T - W_j^{-T}``: the data term pulls, the volume term ``W_j^{-T}``
    pushes back (the volume-corrected identity of the implicit-EM paper's 2026 revision, its
    section 3.4). The gradient with respect to ``b_j`` would be ``-r_j z_j``.

    Parameters
    ----------
    W : (K, D, D) invertible matrices (numpy or torch); b : (K, D); x : (D,)

    Returns
    -------
    (K, D, D), the kind and dtype of ``W``. Computed in float64.

    Raises
    ------
    ValueError
        If a shape does not match, an input is not finite, or some ``W_j`` is singular.
    """
    W_, b_, x_ = _check_volume_args(W, b, x)
    z = W_ @ x_ + b_  # (K, D)
    d = 0.5 * (z**2).sum(-1) - np.linalg.slogdet(W_)[1]
    r = lse_gradient(d) * -1.0  # dL/dd_j = -r_j  (Theorem 1)
    g = r[:, None, None] * (np.linalg.inv(W_).transpose(0, 2, 1) - z[:, :, None] * x_[None, None, :])
    if is_torch(W):
        return torch.as_tensor(g, dtype=W.dtype)
    return g.astype(np.asarray(W).dtype)


def max_relative_error(a: ArrayLike, b: ArrayLike) -> float:
    """``max|a - b| / max(max|b|, tiny)``: the error of ``a`` relative to the scale of the reference ``b``.

    Parameters
    ----------
    a, b : arrays or tensors of the same shape (``b`` the reference)

    Returns
    -------
    float; 0.0 for empty inputs.
    """
    a_ = to_numpy(a)
    b_ = to_numpy(b)
    if a_.shape != b_.shape:
        raise ValueError(f"a and b must have the same shape, got {a_.shape} and {b_.shape}")
    scale = max(float(np.max(np.abs(b_))) if b_.size else 0.0, np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a_ - b_))) / scale if a_.size else 0.0
