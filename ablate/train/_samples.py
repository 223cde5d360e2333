from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


@torch.no_grad()
def save_samples(model: torch.nn.Module, cell: Any, device: torch.device, path: Path, n: int = 2) -> Path:
    """A PNG with one row per validation image: degraded input (upscaled) | restoration | ground truth."""
    was_training = model.training
    model.eval()
    rows = []
    try:
        for lq, gt in cell.val[:n]:
            out = model(lq.unsqueeze(0).to(device)).float().cpu()[0]
            out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
            base = cell.task.baseline(lq)
            gap = torch.ones(3, gt.shape[1], 4)
            rows.append(torch.cat([base, gap, out, gap, gt], dim=2))
    finally:
        model.train(was_training)
    width = max(r.shape[2] for r in rows)
    padded = [torch.nn.functional.pad(r, (0, width - r.shape[2]), value=1.0) for r in rows]
    sep = torch.ones(3, 4, width)
    grid = torch.cat([t for r in padded for t in (r, sep)][:-1], dim=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(grid)).save(path)
    return path
