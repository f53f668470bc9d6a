"""How results are scored: one implementation of each score the book reports.

Sections: entropies of responsibilities; divergences and correlations; classification,
calibration and out-of-distribution scores with their bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# Entropies of responsibilities
# ------------------------------------------------------------------------------------------------

# (prototypes section: responsibility_entropy)


# ------------------------------------------------------------------------------------------------
# Divergences and correlations
# ------------------------------------------------------------------------------------------------

# (attention section: kl_divergence, pearson)


# ------------------------------------------------------------------------------------------------
# Classification, calibration and out-of-distribution scores
# ------------------------------------------------------------------------------------------------

# (classifiers section: auroc, fpr_at_tpr, expected_calibration_error, bootstrap intervals,
#  max_softmax, energy_score, ..., reject scores, multilabel_scores)
