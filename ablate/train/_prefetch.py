"""Batches prepared ahead of the training step on background threads (CUDA only)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from torch import Tensor


class Prefetcher:
    """Prepares the next batches on background threads while the GPU trains.

    Batches are a pure function of the step, so preparing them ahead changes nothing. On the CPU the
    trial owns its cores and preparing batches would only steal them: depth 0 there.
    """

    def __init__(self, sampler: Any, last: int, depth: int, pin: bool) -> None:
        self.sampler, self.last, self.depth, self.pin = sampler, last, depth, pin
        self.pending: dict[int, Future[tuple[Tensor, Tensor]]] = {}
        self.pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="ablate-data") if depth else None

    def _make(self, step: int) -> tuple[Tensor, Tensor]:
        lq, gt = self.sampler.batch(step)
        return (lq.pin_memory(), gt.pin_memory()) if self.pin else (lq, gt)

    def get(self, step: int) -> tuple[Tensor, Tensor]:
        if self.pool is None:
            return self._make(step)
        for ahead in range(step, min(step + self.depth, self.last) + 1):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(self._make, ahead)
        return self.pending.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
