"""Batches prepared ahead of the training step on background threads (CUDA only)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

# a prepared batch: (lq, gt, the event after which they are ready on the GPU, or None)
_Ready = tuple[Tensor, Tensor, Any]


class Prefetcher:
    """Prepares the next batches on background threads while the GPU trains.

    Batches are a pure function of the step, so preparing them ahead changes nothing. On the CPU the
    trial owns its cores and preparing batches would only steal them: depth 0 there, and a batch is
    ``sampler.batch(step)``. On CUDA a worker thread cuts the batch (``sampler.cut``: the draws and the
    crops, all the CPU must do), copies it from pinned memory and degrades it on the GPU
    (``CutBatch.finish``) on a stream of its own, so that neither the copy nor the degradation waits
    for, or holds up, the training step; the step's stream waits for the batch's event, not the host.
    A task without a batched degradation is degraded on the CPU by the workers instead (``batch``).
    """

    def __init__(self, sampler: Any, last: int, depth: int, device: torch.device) -> None:
        self.sampler, self.last, self.depth, self.device = sampler, last, depth, device
        cuda = device.type == "cuda"
        self.pin = cuda
        #: where each batch is degraded: the cell's GPU when the task can be (``sampler.batched``)
        self.degrade_on = device.type if cuda and sampler.batched else "cpu"
        self.stream = torch.cuda.Stream(device) if self.degrade_on == "cuda" else None
        self.pending: dict[int, Future[_Ready]] = {}
        self.pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="ablate-data") if depth else None

    def _make(self, step: int) -> _Ready:
        if self.stream is None:
            lq, gt = self.sampler.batch(step)
            return (lq.pin_memory(), gt.pin_memory(), None) if self.pin else (lq, gt, None)
        cut = self.sampler.cut(step).pin()
        with torch.cuda.stream(self.stream):
            lq, gt = cut.to(self.device).finish(self.sampler.task)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return lq, gt, ready

    def get(self, step: int) -> tuple[Tensor, Tensor]:
        if self.pool is None:
            lq, gt, ready = self._make(step)
        else:
            for ahead in range(step, min(step + self.depth, self.last) + 1):
                if ahead not in self.pending:
                    self.pending[ahead] = self.pool.submit(self._make, ahead)
            lq, gt, ready = self.pending.pop(step).result()
        if ready is not None:
            # the step's stream waits on the GPU for the batch; the batch's memory, allocated on the
            # worker's stream, is not reused before the step's stream is done with it
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(ready)
            lq.record_stream(stream)
            gt.record_stream(stream)
        return lq, gt

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
