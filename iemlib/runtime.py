"""Where and how the library computes: one thread rule and one device rule.

* :func:`single_threaded` runs a block with torch's intra-op pool and the BLAS pools (numpy's,
  scikit-learn's) at one thread, and restores them afterwards. The book's tensors are small: on
  two cores a second thread costs more in synchronisation than it saves, and one thread keeps
  every reduction in one order, so that two executions print the same numbers. Library functions
  that loop over small tensors use it internally; a chapter never changes the thread count of its
  kernel.
* :func:`resolve_device` is the one rule for choosing a device: an explicit device wins; otherwise
  ``"cpu"``. A GPU is used only when asked for (``device="cuda"``, or ``"auto"``, which takes CUDA
  when it is available), so that the numbers a chapter prints do not depend on the machine it
  happens to run on.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits

__all__ = ["single_threaded", "resolve_device"]

_state = threading.local()  # how deep in single_threaded() blocks this thread is


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with one torch thread and one BLAS thread; restore both afterwards.

    Nested use costs nothing: an inner block finds the limits set and leaves them to the outer one
    (threadpoolctl's scan of the loaded libraries, about a millisecond, runs once per outermost block).
    """
    depth = getattr(_state, "depth", 0)
    if depth:
        _state.depth = depth + 1
        try:
            yield
        finally:
            _state.depth = depth
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    _state.depth = 1
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _state.depth = 0
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a computation runs on.

    ``None`` or ``"cpu"``: the CPU. ``"auto"``: CUDA when ``torch.cuda.is_available()``, else the
    CPU. Anything else is passed to :class:`torch.device` (``"cuda"``, ``"cuda:1"``, ...); a CUDA
    device that is not available raises ``ValueError``.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be None, 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but CUDA is not available")
    return dev
