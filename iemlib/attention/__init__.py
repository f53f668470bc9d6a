"""Attention as a conditional mixture: one head and its closed-form gradients, the §7.1 toy, the
§8.1 diagnostics, modern Hopfield networks, and chapter 8's batched trainer.

Modules:

- ``iemlib.attention.head``: forward pass, loss, the paper's closed-form backward pass, the
  autograd reference, initialisation and a gradient step (paper layout, ``q_i = W_Q x_i``);
- ``iemlib.attention.toy``: the toy simulation of §7.1 and its summary;
- ``iemlib.attention.diagnostics``: compatibility, advantage, usage, entropies, PCA and the
  two settling steps;
- ``iemlib.attention.hopfield``: where Theorem 1 applies to attention literally;
- ``iemlib.attention.trainer``: the batched EM-vs-SGD trainer (row layout, ``x @ W``);
- ``iemlib.attention.reference``: a plain per-seed loop to time the trainer against;
- ``iemlib.attention.probes``: linear probes of a head's representations against the exact Bayes
  filter, and their principal-component dimension;
- ``iemlib.attention.optimizers``: a batch of heads trained by SGD, momentum or Adam, with the
  probes of the first-order picture (advantage signs, two timescales);
- ``iemlib.attention.deep``: a batch of multi-head, multi-layer pre-norm transformers, their AdamW
  trainer and per-head diagnostics;
- ``iemlib.attention.baselines``: the best head with attention frozen uniform (chapter 8's reference line).

The experiment of chapter 8 (its configurations, controls and archive) is
:mod:`iemlib.experiments.em_vs_sgd`.
"""

from . import baselines, deep, diagnostics, head, hopfield, optimizers, probes, reference, toy, trainer
from .baselines import *  # noqa: F401,F403 (each module's __all__)
from .diagnostics import *  # noqa: F401,F403
from .head import *  # noqa: F401,F403
from .hopfield import *  # noqa: F401,F403
from .reference import *  # noqa: F401,F403
from .toy import *  # noqa: F401,F403
from .trainer import *  # noqa: F401,F403
from .probes import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .deep import *  # noqa: F401,F403

__all__ = [*head.__all__, *toy.__all__, *diagnostics.__all__, *hopfield.__all__, *trainer.__all__, *reference.__all__,
           *probes.__all__, *optimizers.__all__, *deep.__all__, *baselines.__all__]
