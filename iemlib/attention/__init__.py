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
- ``iemlib.attention.reference``: a plain per-seed loop to time the trainer against.

The experiment of chapter 8 (its configurations, controls and archive) is
:mod:`iemlib.experiments.em_vs_sgd`.
"""

from .diagnostics import (
    PCA,
    advantage,
    attention_entropy,
    column_usage,
    compatibility,
    decay_step,
    displacement_step,
    pca,
    value_norms,
)
from .head import (
    PARAM_NAMES,
    Backward,
    Forward,
    HeadGradients,
    HeadParams,
    attention_forward,
    attention_loss,
    attention_score_gradient,
    attention_value_gradient,
    autograd_gradients,
    closed_form_backward,
    closed_form_gradients,
    gradient_step,
    init_params,
)
from .hopfield import HopfieldRun, hopfield_energy, hopfield_retrieve, hopfield_similarities, hopfield_update
from .reference import ReferenceRun, run_reference
from .toy import ToyRun, ToySummary, simulate_toy, toy_summary
from .trainer import (
    AttentionPass,
    BayesScores,
    Config,
    FinalScores,
    HeldOutScores,
    Probes,
    Result,
    RowParams,
    attention_pass,
    effective_step_scale,
    gradient_value_map,
    init_row_params,
    least_squares_value_map,
    train,
)

__all__ = [
    # head
    "PARAM_NAMES", "HeadParams", "Forward", "Backward", "HeadGradients", "attention_forward", "attention_loss",
    "attention_value_gradient", "attention_score_gradient", "closed_form_backward", "closed_form_gradients",
    "autograd_gradients", "init_params", "gradient_step",
    # toy
    "ToyRun", "simulate_toy", "ToySummary", "toy_summary",
    # diagnostics
    "compatibility", "advantage", "column_usage", "value_norms", "attention_entropy", "PCA", "pca",
    "displacement_step", "decay_step",
    # hopfield
    "hopfield_similarities", "hopfield_energy", "hopfield_update", "HopfieldRun", "hopfield_retrieve",
    # trainer
    "Config", "RowParams", "init_row_params", "AttentionPass", "attention_pass", "gradient_value_map",
    "least_squares_value_map", "effective_step_scale", "Result", "FinalScores", "HeldOutScores",
    "BayesScores", "Probes", "train",
    # reference
    "ReferenceRun", "run_reference",
]
