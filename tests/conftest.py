"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run the small CPU models of the tests on one torch thread: a second intra-op thread buys little
    at this size and, on a busy 2-core machine, stalls on OpenMP barriers (measured on the backbone
    tests: 13 s on one thread vs 63 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
