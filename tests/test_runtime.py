"""iemlib.runtime: the one thread rule and the one device rule."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from iemlib.runtime import resolve_device, single_threaded


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_single_threaded_sets_and_restores_both_pools():
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
            assert _blas_threads() <= {1}
            with single_threaded():  # nested: still one thread, and the outer block restores
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_single_threaded_restores_after_an_error():
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            with single_threaded():
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with single_threaded():  # the depth counter was reset: a fresh block sets the limits again
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_resolve_device():
    assert resolve_device() == torch.device("cpu") == resolve_device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
