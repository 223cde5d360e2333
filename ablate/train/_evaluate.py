"""Validation under the task's protocol: the model's PSNR/SSIM and the degraded input's own PSNR."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._cell import Cell


@torch.no_grad()
def evaluate(model: nn.Module, cell: Cell, device: torch.device, dtype: torch.dtype = torch.float32,
             ) -> tuple[float, float]:
    """Mean PSNR/SSIM over the validation pairs under the task's protocol."""
    from ablate.metrics import psnr, ssim

    was_training = model.training
    model.eval()
    ps, ss = [], []
    try:
        for lq, gt in cell.val:
            out = model(lq.unsqueeze(0).to(device=device, dtype=dtype)).float()
            # a low-precision overflow yields inf/NaN: count it as the garbage image it would save as
            out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1).cpu()[0]
            cb, y = cell.task.crop_border, cell.task.y_channel
            ps.append(psnr(out, gt, crop_border=cb, y_channel=y))
            ss.append(ssim(out, gt, crop_border=cb, y_channel=y))
    finally:
        model.train(was_training)
    return float(np.mean(ps)), float(np.mean(ss))


def reference_psnr(cell: Cell) -> float:
    """PSNR of the degraded input itself (bicubic upscaling for SR): the bar a model must clear."""
    from ablate.metrics import psnr

    cb, y = cell.task.crop_border, cell.task.y_channel
    return float(np.mean([psnr(cell.task.baseline(lq).clamp(0, 1), gt, crop_border=cb, y_channel=y)
                          for lq, gt in cell.val]))
