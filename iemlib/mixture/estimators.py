"""Two scikit-learn-style estimators of one Gaussian mixture: classical EM and implicit EM.

* :class:`GaussianMixtureEM` is classical EM, following scikit-learn's ``GaussianMixture``
  conventions (``reg_covar`` added to the covariances in the M-step, stopping when the change
  of the lower bound is below ``tol``, covariance shapes per type), so that from the same start
  both give the same parameters to about 1e-8 or better.
* :class:`ImplicitEM` has the same API but never runs an E-step: it minimizes the loss
  ``-(1/n) sum_i log sum_j exp(-d_ij)`` by a gradient method (torch, float64) in an
  unconstrained parametrisation.

Both start from :func:`~iemlib.mixture.random_start` unless ``means_init``, ``weights_init``,
``precisions_init`` are given, and record their path in ``history_`` (a frozen dataclass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_int, check_positive
from ..runtime import single_threaded
from ._checks import check_covariance_type, check_covariances, check_means, check_weights, check_X
from ..metrics import responsibility_entropy
from ..objectives import lse
from ._kernels import covariance_from_raw, from_unconstrained, to_unconstrained, torch_distances
from .gaussian import (
    MixtureParams,
    component_distances,
    covariances_from_precisions,
    e_step,
    m_step,
    precisions_from_covariances,
    random_start,
)

__all__ = ["GaussianMixtureEM", "ImplicitEM", "FitHistory", "GradientHistory", "Capture"]

_OPTIMIZERS = ("gd", "sgd", "adam")


@dataclass(frozen=True, eq=False)
class FitHistory:
    """The path of a fit, indexed by steps t = 0..T (row t: the parameters after t steps).

    Attributes
    ----------
    log_likelihood
        ndarray (T + 1,)
        Mean log-likelihood per sample of the parameters after t steps (for EM: non-decreasing).
    means
        ndarray (T + 1, K, D)
    weights
        ndarray (T + 1, K)
    resp_entropy
        ndarray (T + 1,)
        Mean entropy of the responsibilities, nats (:func:`iemlib.metrics.responsibility_entropy`).
    """

    log_likelihood: np.ndarray
    means: np.ndarray
    weights: np.ndarray
    resp_entropy: np.ndarray


@dataclass(frozen=True, eq=False)
class Capture(MixtureParams):
    """What :class:`ImplicitEM` captured at one iteration: the parameters there (``weights``,
    ``means``, ``covariances`` in data coordinates) and ``grad_d`` (n, K), autograd's gradient of the
    summed loss ``-sum_i L_i`` with respect to every distance ``d_ij`` (Theorem 1: ``r_ij``)."""

    grad_d: np.ndarray


@dataclass(frozen=True, eq=False)
class GradientHistory(FitHistory):
    """:class:`FitHistory` of :class:`ImplicitEM`, one row per iteration (t = 0 is the start), and:

    Attributes
    ----------
    loss
        ndarray (T + 1,)
        The loss ``-(1/n) sum_i L_i`` (minimized); ``log_likelihood`` is ``-loss``.
    n_fun_evals, n_grad_evals
        ndarray (T + 1,) of int
        Cumulative counts of loss evaluations (trial steps included) and backward passes.
    captured
        dict[int, Capture]
        Iteration -> :class:`Capture`, for the iterations in ``capture_at``.
    """

    loss: np.ndarray
    n_fun_evals: np.ndarray
    n_grad_evals: np.ndarray
    captured: dict[int, Capture]


class _MixtureEstimator:
    """Shared parameters, validation, initialisation and prediction of the two estimators."""

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        means_init: Any = None,
        weights_init: Any = None,
        precisions_init: Any = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.means_init = means_init
        self.weights_init = weights_init
        self.precisions_init = precisions_init

    # -- helpers
    def _validate(self, X: Any) -> np.ndarray:
        self._K = check_int(self.n_components, "n_components", minimum=1)
        self._ct = check_covariance_type(self.covariance_type)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_positive(self.tol, "tol", allow_zero=True)
        check_positive(self.reg_covar, "reg_covar", allow_zero=True)
        if self.random_state is not None:
            check_int(self.random_state, "random_state", minimum=0)
        X = check_X(X)
        if X.shape[0] < self._K:
            raise ValueError(f"X must have at least n_components={self._K} samples, got {X.shape[0]}")
        return X

    def _initial_parameters(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K, D, ct = self._K, X.shape[1], self._ct
        start = random_start(X, K, ct, random_state=0 if self.random_state is None else self.random_state)
        means = start.means_init if self.means_init is None else check_means(self.means_init, K, D, "means_init")
        weights = (start.weights_init if self.weights_init is None
                   else check_weights(self.weights_init, K, "weights_init"))
        if self.precisions_init is None:
            prec = start.precisions_init
        else:
            prec = check_covariances(self.precisions_init, ct, K, D, "precisions_init")
        return weights.copy(), means.copy(), covariances_from_precisions(prec, ct)

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def _set_params(self, weights: np.ndarray, means: np.ndarray, cov: np.ndarray) -> None:
        self.weights_, self.means_, self.covariances_ = weights, means, cov
        self.precisions_ = precisions_from_covariances(cov, self._ct)

    # -- public API
    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior responsibilities ``r_ij`` of the fitted mixture, shape (n, K)."""
        self._check_fitted()
        X = check_X(X, n_features=self.means_.shape[1])
        return e_step(X, self.weights_, self.means_, self.covariances_, self._ct)[0]

    def predict(self, X: Any) -> np.ndarray:
        """The component with the largest responsibility for each point."""
        return np.argmax(self.predict_proba(X), axis=1)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood ``L_i`` of each point under the fitted mixture (the objective, per point)."""
        self._check_fitted()
        X = check_X(X, n_features=self.means_.shape[1])
        return lse(component_distances(X, self.weights_, self.means_, self.covariances_, self._ct))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample of ``X`` under the fitted mixture."""
        return float(np.mean(self.score_samples(X)))

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)``, then ``predict(X)``."""
        return self.fit(X).predict(X)


class GaussianMixtureEM(_MixtureEstimator):
    """Classical EM for a Gaussian mixture, scikit-learn-style (numpy, float64).

    Parameters
    ----------
    n_components, covariance_type, max_iter, tol, reg_covar, random_state
        As ``sklearn.mixture.GaussianMixture`` (defaults 1, ``"full"`` (or ``"spherical"``,
        ``"diag"``), 100, 1e-3, 1e-6, None).
    means_init, weights_init, precisions_init
        The start, as ``sklearn.mixture.GaussianMixture``; without them the start is
        :func:`~iemlib.mixture.random_start` (random data points as means, the data covariance,
        uniform weights), not k-means.

    Notes
    -----
    Each iteration runs an E-step (responsibilities of the distances
    ``d_ij = -log(w_j N(x_i|mu_j, Sigma_j))`` via ``iemlib.responsibilities``) and an M-step
    (:func:`~iemlib.mixture.m_step`); it stops when the mean log-likelihood (the objective,
    maximized) changes by less than ``tol``.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_
        the fitted parameters.
    converged_
        bool.
    n_iter_
        int, the number of E/M iterations run.
    n_e_steps_, n_m_steps_
        int, the E-steps (each one evaluation of every distance and of the
        log-likelihood, like a loss evaluation) and M-steps run, the cost counters.
    lower_bound_
        float, as scikit-learn: the mean log-likelihood computed by the last E-step
        (i.e. of the parameters *before* the last M-step).
    history_
        :class:`FitHistory`, indexed by M-steps taken t = 0..n_iter_.
    """

    def fit(self, X: Any, y: Any = None) -> "GaussianMixtureEM":
        """Run EM on ``X`` (n, D); returns the fitted estimator."""
        X = self._validate(X)
        ct, tol = self._ct, float(self.tol)
        w, m, c = self._initial_parameters(X)
        lls, ents, means, weights = [], [], [m.copy()], [w.copy()]
        lower_bound = -np.inf
        self.converged_ = False
        n_iter = 0
        for n_iter in range(1, int(self.max_iter) + 1):
            prev = lower_bound
            resp, lower_bound = e_step(X, w, m, c, ct)
            lls.append(lower_bound)
            ents.append(responsibility_entropy(resp))
            w, m, c = m_step(X, resp, ct, self.reg_covar)
            means.append(m.copy())
            weights.append(w.copy())
            if abs(lower_bound - prev) < tol:
                self.converged_ = True
                break
        resp, ll = e_step(X, w, m, c, ct)
        lls.append(ll)
        ents.append(responsibility_entropy(resp))
        self._set_params(w, m, c)
        self.n_iter_ = n_iter
        self.n_e_steps_ = n_iter + 1  # E-steps (function evaluations), the last for the final parameters
        self.n_m_steps_ = n_iter
        self.lower_bound_ = float(lower_bound)
        self.history_ = FitHistory(np.array(lls), np.stack(means), np.stack(weights), np.array(ents))
        return self


class ImplicitEM(_MixtureEstimator):
    """The same mixture fitted with no E-step: gradient descent on the *loss*
    ``-(1/n) sum_i log sum_j exp(-d_ij)`` (minimized; torch, float64).

    Parameters
    ----------
    n_components : int
    max_iter : int, default 3000
    tol : float, default 1e-10
        It stops once the loss has changed by less than ``tol`` in 5 consecutive iterations.
    lr : float, default 0.3
        The initial (``"gd"``) or fixed step; about 0.05 suits Adam.
    optimizer : {"gd", "sgd", "adam"}, default "gd"
        ``"gd"``: plain gradient descent ``p <- p - lr * grad`` with a monotone adaptive step (the
        step is halved until the loss does not rise and grows by 1.2 after each accepted step, so
        that like EM the log-likelihood never decreases); ``"sgd"``: the same with a fixed step;
        ``"adam"``: Adam.
    capture_at : sequence of int
        Iterations at which to store the autograd gradient of the summed loss with respect to every
        ``d_ij`` with the parameters it was taken at (``history_.captured``).
    **params
        ``covariance_type``, ``reg_covar``, ``random_state``, ``means_init``, ``weights_init``,
        ``precisions_init``: as :class:`GaussianMixtureEM`.

    Unconstrained parameters: means as they are; weights as softmax logits; variances as
    ``exp(theta) + reg_covar`` (spherical, diag) or, for full, ``Sigma = C C^T + reg_covar I``
    with ``C`` lower-triangular and its diagonal ``exp(theta)``. Optimization runs in
    standardized coordinates (data centred and divided by one global scale, which keeps the
    spherical family spherical) so that the default learning rate does not depend on the units;
    results are reported in data coordinates. The returned parameters are those of the smallest
    loss seen.

    Attributes
    ----------
    As :class:`GaussianMixtureEM`; ``lower_bound_`` is the mean log-likelihood of the returned
    parameters; ``history_`` is a :class:`GradientHistory` (t = 0 is the start). Cost counters:
    ``n_fun_evals_``, the loss evaluations over all points (one per iteration, plus every trial
    step of the step halving); ``n_grad_evals_``, the backward passes.
    """

    _PATIENCE = 5  # consecutive iterations with |change of loss| < tol before stopping

    def __init__(self, n_components: int = 1, *, max_iter: int = 3000, tol: float = 1e-10, lr: float = 0.3,
                 optimizer: str = "gd", capture_at: Any = (), **params: Any) -> None:
        super().__init__(n_components, max_iter=max_iter, tol=tol, **params)
        self.lr = lr
        self.optimizer = optimizer
        self.capture_at = capture_at

    def fit(self, X: Any, y: Any = None) -> "ImplicitEM":
        """Minimize the loss on ``X`` (n, D) (small tensors: one thread, see :func:`iemlib.runtime.single_threaded`)."""
        with single_threaded():
            return self._fit(X)

    def _distances(self, Z: torch.Tensor, params: list[torch.Tensor], reg: float) -> torch.Tensor:
        logits, mu, theta = params
        return torch_distances(Z, torch.log_softmax(logits, 0), mu, covariance_from_raw(theta, reg, self._ct), self._ct)

    def _fit(self, X: Any) -> "ImplicitEM":
        X = self._validate(X)
        lr = check_positive(self.lr, "lr")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be 'gd', 'adam' or 'sgd', got {self.optimizer!r}")
        capture = {check_int(t, "capture_at", minimum=0) for t in self.capture_at}
        n, D = X.shape
        center = X.mean(0)
        scale = float(X.std()) or 1.0
        Z = torch.tensor((X - center) / scale, dtype=torch.float64)
        shift = D * math.log(scale)  # log-likelihood in X = log-likelihood in Z - D log(scale)
        reg = float(self.reg_covar) / scale**2
        raw = to_unconstrained(*self._initial_parameters(X), center, scale, reg, self._ct)
        params = [p.requires_grad_(True) for p in raw]
        opt = (torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD)(params, lr=lr)
        step = lr  # current step of the monotone "gd" optimizer
        rec: dict[str, list] = {k: [] for k in ("loss", "means", "weights", "resp_entropy", "n_fun_evals",
                                                "n_grad_evals")}
        captured: dict[int, Capture] = {}
        n_fun = n_grad = quiet = t = 0
        prev, best = math.inf, (math.inf, None)
        self.converged_ = False
        for t in range(0, int(self.max_iter) + 1):
            opt.zero_grad()
            d = self._distances(Z, params, reg)
            if t in capture:
                d.retain_grad()
            L = torch.logsumexp(-d, dim=1)  # = iemlib.lse(d), without re-validating each step
            loss_t = -L.mean()
            loss = float(loss_t.detach()) + shift
            n_fun += 1
            self._record(rec, params, d, L, loss, center, scale, n_fun, n_grad)
            if loss < best[0]:
                best = (loss, [p.detach().clone() for p in params])
            if t in capture:
                loss_t.backward()
                n_grad += 1
                w, m, c = from_unconstrained(params, center, scale, reg, self._ct)
                captured[t] = Capture(w, m, c, grad_d=(d.grad * n).detach().numpy().copy())  # of the summed loss
            quiet = quiet + 1 if abs(prev - loss) < float(self.tol) else 0
            if quiet >= self._PATIENCE:
                self.converged_ = True
                break
            if t == int(self.max_iter):
                break
            prev = loss
            if t not in capture:
                loss_t.backward()
                n_grad += 1
            if self.optimizer == "gd":
                step, trials = self._monotone_step(Z, params, reg, step, loss - shift)
                n_fun += trials
            else:
                opt.step()
        self._set_params(*from_unconstrained(best[1], center, scale, reg, self._ct))
        self.n_iter_ = t
        self.lower_bound_ = float(-best[0])
        self.n_fun_evals_ = n_fun
        self.n_grad_evals_ = n_grad
        loss = np.array(rec["loss"])
        self.history_ = GradientHistory(
            log_likelihood=np.array([-v for v in rec["loss"]]), means=np.stack(rec["means"]),
            weights=np.stack(rec["weights"]), resp_entropy=np.array(rec["resp_entropy"]), loss=loss,
            n_fun_evals=np.array(rec["n_fun_evals"]), n_grad_evals=np.array(rec["n_grad_evals"]), captured=captured,
        )
        return self

    @staticmethod
    def _record(rec: dict[str, list], params: list[torch.Tensor], d: torch.Tensor, L: torch.Tensor, loss: float,
                center: np.ndarray, scale: float, n_fun: int, n_grad: int) -> None:
        """Append iteration t's loss, means, weights, responsibility entropy and counters to ``rec``."""
        logits, mu, _ = params
        with torch.no_grad():
            r = torch.softmax(-d, 1)
            rec["resp_entropy"].append(float(-(r * (-d - L[:, None])).sum(1).mean()))
            rec["weights"].append(torch.softmax(logits, 0).numpy().copy())
            rec["means"].append(mu.detach().numpy() * scale + center)
        rec["loss"].append(loss)
        rec["n_fun_evals"].append(n_fun)
        rec["n_grad_evals"].append(n_grad)

    def _monotone_step(self, Z: torch.Tensor, params: list[torch.Tensor], reg: float, step: float,
                       base: float) -> tuple[float, int]:
        """One step of the monotone "gd" optimizer: halve ``step`` until the loss (in standardized
        coordinates) is at most ``base``, take it, grow it by 1.2. Returns (next step, trial evaluations)."""
        trials = 0
        while True:
            trial = [(p - step * p.grad).detach() for p in params]
            trials += 1
            try:
                with torch.no_grad():
                    ok = float(-torch.logsumexp(-self._distances(Z, trial, reg), dim=1).mean()) <= base
            except RuntimeError:  # e.g. a covariance that is not positive definite
                ok = False
            if ok or step < 1e-12:
                break
            step *= 0.5
        with torch.no_grad():
            for p, q in zip(params, trial):
                p.copy_(q)
        return step * 1.2, trials
