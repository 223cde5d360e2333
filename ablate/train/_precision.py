"""A cell's float precision: ``train.amp`` (autocast dtype) and ``train.tf32`` (float32 matmuls as TF32).

    with tf32_mode(spec.train.tf32):       # the training step's forward and backward
        ...
    precision_name("none", tf32=True, device=torch.device("cuda"))   # "tf32"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def tf32_mode(on: bool) -> Iterator[None]:
    """Float32 matmuls (cuBLAS) and convolutions (cuDNN) on CUDA in TF32 when ``on``, in full float32
    when not; the process's settings are restored on exit. Both are set either way: cuDNN's own default
    is TF32 on, which would make an fp32 cell's convolutions TF32. The flags only concern CUDA: on the
    CPU nothing changes."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = cuda.allow_tf32, cudnn.allow_tf32
    cuda.allow_tf32 = cudnn.allow_tf32 = on
    try:
        yield
    finally:
        cuda.allow_tf32, cudnn.allow_tf32 = before


def precision_name(amp: str, tf32: bool, device: torch.device) -> str:
    """What a cell's training step computes in: ``fp32``, ``tf32``, ``bf16`` or ``fp16`` (autocast's
    dtype), with ``+tf32`` when autocast leaves float32 matmuls that run as TF32. TF32 only where it
    takes effect (CUDA)."""
    on = tf32 and device.type == "cuda"
    if amp == "none":
        return "tf32" if on else "fp32"
    return f"{amp}+tf32" if on else amp
