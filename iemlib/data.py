"""Every data set the book uses: synthetic ones, drawn from a seed, and scikit-learn's bundled
digits (no download). The sticky Markov chain of the attention paper has its own module,
:mod:`iemlib.markov`, because its exact Bayes filter belongs with it.

Sections: Gaussian mixtures with full covariances; isotropic clusters, outliers and multi-label
tasks; the digits and images derived from them.
"""

from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# Gaussian mixtures with full covariances (chapters 2 and 4)
# ------------------------------------------------------------------------------------------------

# (mixture section: sample_gaussian_mixture, make_gaussian_mixture)


# ------------------------------------------------------------------------------------------------
# Isotropic clusters, outliers, multi-label tasks (chapters 1, 3, 7, 9)
# ------------------------------------------------------------------------------------------------

# (prototypes section: make_clusters, make_clusters_with_outliers)


# ------------------------------------------------------------------------------------------------
# Digits, and images derived from them (chapters 6, 9, 10)
# ------------------------------------------------------------------------------------------------

# (classifiers section: load_digits, digit splits, out-of-distribution images, noisy labels,
#  the multi-label task)
