"""iemlib: the library behind *Implicit EM, executable*.

The book's one result: for ``L = log sum_j exp(-d_j)`` (an objective, maximized),
``dL/dd_j = -r_j`` with ``r_j = exp(-d_j) / sum_k exp(-d_k)``. Every chapter imports its
computations from here. One concept per module:

==========================  =====================================================================
``objectives``              every objective of the taxonomy, written in distances, with its gradient
``gradcheck``               autograd against closed form against finite differences, errors in ulps
``distances``               prototype, Mahalanobis and affine-absolute distances
``prototypes``              the one prototype learner (:func:`iemlib.prototypes.fit_prototypes`) and what it needs
``mixture``                 Gaussian mixtures: classical EM, implicit EM, batched sweeps, rates
``attention``               one attention head: closed forms, the batched trainer, diagnostics, Hopfield
``classifiers``             the digit classifiers and their training
``monitor``                 responsibilities read off a backward pass; specialization, degeneration
``metrics``                 entropies, divergences, AUROC, calibration, out-of-distribution scores
``data``                    every data set the book uses (synthetic, or scikit-learn's digits)
``markov``                  the sticky Markov chain of the attention paper and its Bayes filter
``experiments``             what belongs to one chapter's study (configurations, sweeps, archives)
``runtime``                 the one thread rule and the one device rule
``book``                    the pages' tables, figures, explorer and exercise checkers
==========================  =====================================================================

The names below are the public face: what chapters call often.
"""

import sys as _sys

from . import attention, distances, gradcheck, markov, metrics, mixture, objectives, prototypes
from .mixture import GaussianMixtureEM, ImplicitEM
from .objectives import cross_entropy, cross_entropy_gradient, lse, lse_gradient, responsibilities
from .prototypes import PrototypeFit, fit_prototypes
from .runtime import resolve_device, single_threaded

#: The closed forms of the identities (Theorem 1's relatives, the volume-corrected identity) live in
#: ``gradcheck``; ``iemlib.identities`` is the same module under the name the papers' identities go by
#: (``iemlib.identities.volume_corrected_gradient``; ``import iemlib.identities`` works too).
identities = gradcheck
_sys.modules[__name__ + ".identities"] = gradcheck

__version__ = "0.2.0"
__all__ = ["lse", "responsibilities", "lse_gradient", "cross_entropy", "cross_entropy_gradient",
           "GaussianMixtureEM", "ImplicitEM", "fit_prototypes", "PrototypeFit", "single_threaded", "resolve_device",
           "attention", "distances", "gradcheck", "identities", "markov", "metrics", "mixture", "objectives", "prototypes",
           "__version__"]
