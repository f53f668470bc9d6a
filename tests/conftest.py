"""Shared pytest configuration: float64 by default, deterministic hypothesis profile."""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "book",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "book"))
torch.set_num_threads(1)
