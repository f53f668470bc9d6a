"""iemlib: the library behind *Implicit EM, executable*.

The book's one result: for ``L = log sum_j exp(-d_j)``, ``dL/dd_j = -r_j`` with
``r_j = exp(-d_j) / sum_k exp(-d_k)``. Every chapter imports its computations from here.

Modules, one concept each:

- ``objectives``: log-sum-exp, responsibilities, cross-entropy, sigmoid and correntropy losses
  written in distances, with closed-form gradients.
- ``identities``: checking a gradient identity by autograd, closed form and finite differences.
- ``conditions``: Theorem 1's three conditions re-examined (other kernels, no normalization,
  evolution strategies, the unshifted formula in floating point).
- ``distances``: affine-absolute and Mahalanobis distances.
- ``prototypes``: plain gradient descent on a log-sum-exp objective over prototypes (chapter 1).
- ``mixture``: Gaussian-mixture data, classical EM (``GaussianMixtureEM``) and its
  gradient-descent twin (``ImplicitEM``).
- ``attention``, ``diagnostics``: single-head attention, its closed-form gradients, §8.1 diagnostics.
- ``hopfield``: modern Hopfield retrieval, where Theorem 1 applies to attention literally.
- ``classification``: digits data and classifiers (constrained regime).
- ``taxonomy``, ``failure_modes``: softmax vs sigmoids vs correntropy; the limits of §6.
- ``open_directions``, ``open_set``, ``label_noise``: the open directions of §7.3 (chapter 10):
  gradient diagnostics, soft targets, the reject component, the standard out-of-distribution
  scores with their metrics, and fixed noisy labels against label smoothing.
- ``markov``, ``em_vs_sgd``, ``em_vs_sgd_archive``: the sticky Markov chain, the EM-vs-SGD reproduction, and
  chapter 8's archived control runs (``iemlib/data/``, written by ``bench/ch08_controls.py``).
- ``plotting``, ``widgets``, ``exercises``: the book's style, explorers and exercise checkers.
"""

from .legacy.objectives import lse, lse_gradient, responsibilities

__version__ = "0.2.0"
__all__ = ["lse", "lse_gradient", "responsibilities", "__version__"]
