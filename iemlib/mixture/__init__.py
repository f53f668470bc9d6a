"""Gaussian mixtures: classical EM, EM done implicitly by gradient descent, many starts at once,
and EM's rate.

Written in the book's notation: the distance of point ``x_i`` to component ``j`` is
``d_ij = -log(w_j N(x_i | mu_j, Sigma_j))``; ``L_i = log sum_j exp(-d_ij)`` is the log-likelihood
(the objective, maximized); the loss is ``-(1/n) sum_i L_i`` (minimized); the responsibilities
``r_ij`` are the E-step posteriors and the gradient of the summed loss with respect to ``d_ij``.

Modules:

- ``iemlib.mixture.gaussian``: parameters (:class:`MixtureParams`), starts
  (:func:`random_start`, :func:`batched_starts`), densities and distances, the E- and M-steps,
  covariance conversions, :func:`distance_gradients`.
- ``iemlib.mixture.estimators``: :class:`GaussianMixtureEM` (classical EM, scikit-learn's
  conventions) and :class:`ImplicitEM` (gradient descent on the loss, no E-step).
- ``iemlib.mixture.batched``: every start at once: :func:`batched_em`,
  :func:`batched_gradient_descent`, :func:`batched_lbfgs`, :func:`batched_preconditioned_ascent`,
  :func:`online_em`,
  :func:`minibatch_gradient_descent`; :func:`compare_optima`.
- ``iemlib.mixture.rates``: :func:`em_map`, :func:`em_jacobian`,
  :func:`missing_information_fraction`, :func:`linear_rate`, and the Xu & Jordan bridge
  (:func:`preconditioned_mean_step`, :func:`preconditioned_em_step`).

The data sets (:func:`iemlib.data.make_gaussian_mixture`, :func:`iemlib.data.sample_gaussian_mixture`)
live in :mod:`iemlib.data`; the entropy of responsibilities in :mod:`iemlib.metrics`.
"""

from . import batched, estimators, gaussian, rates
from .batched import (
    AscentFit,
    EMFit,
    GradientDescentFit,
    MinibatchStream,
    OptimaComparison,
    QuasiNewtonFit,
    StreamFit,
    batched_distances,
    batched_em,
    batched_gradient_descent,
    batched_lbfgs,
    batched_log_likelihood,
    batched_preconditioned_ascent,
    compare_optima,
    match_components,
    minibatch_gradient_descent,
    online_em,
)
from .estimators import Capture, FitHistory, GaussianMixtureEM, GradientHistory, ImplicitEM
from .gaussian import (
    COVARIANCE_TYPES,
    MixtureParams,
    Start,
    batched_starts,
    check_mixture,
    component_distances,
    component_log_densities,
    covariances_from_precisions,
    distance_gradients,
    e_step,
    full_covariances,
    log_likelihood,
    m_step,
    precisions_from_covariances,
    random_start,
)
from .rates import (
    BridgeErrors,
    EMBridge,
    MeanBridge,
    MissingInformation,
    em_jacobian,
    em_map,
    linear_rate,
    missing_information_fraction,
    preconditioned_em_step,
    preconditioned_mean_step,
)

__all__ = [*estimators.__all__, *gaussian.__all__, *batched.__all__, *rates.__all__]
