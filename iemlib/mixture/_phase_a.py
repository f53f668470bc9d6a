"""Phase A of the redesign only (remove at merge): names that other helpers write.

``iemlib.objectives.lse`` / ``responsibilities`` (CORE) and ``iemlib.metrics.responsibility_entropy``
(CORE) may not be merged yet when this branch is tested; until they are, the legacy functions with the
same contract stand in. At merge, replace every ``from ._phase_a import ...`` by
``from ..objectives import lse, responsibilities`` and ``from ..metrics import responsibility_entropy``
and delete this module.
"""

from __future__ import annotations

try:
    from ..objectives import lse, responsibilities
except ImportError:  # pragma: no cover - CORE's objectives not merged yet
    from ..legacy.objectives import lse, responsibilities

try:
    from ..metrics import responsibility_entropy
except ImportError:  # pragma: no cover - CORE's metrics section not merged yet
    from ..legacy.prototypes import responsibility_entropy

__all__ = ["lse", "responsibilities", "responsibility_entropy"]
