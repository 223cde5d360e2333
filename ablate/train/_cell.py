"""A cell's components, built from its spec: device, model (paired init), data, validation and probe batches."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from ablate.errors import AblateError
from ablate.spec import CellSpec

from ._names import VAL_SEED

# The reference variant every cell's shared parameters are initialised from, so that cells that differ
# only in the norm start from identical weights wherever they have the same parameters.
_PAIRING_NORM = "token_ln"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AblateError(f"train.device: {name!r} was asked for but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Cell:
    """A resolved cell: components built from a CellSpec (model, task, data, probe batch…)."""

    def __init__(self, spec: CellSpec) -> None:
        from ablate.backbones import build_backbone
        from ablate.data import PairSampler, probe_batch, resolve_dataset, validation_pairs
        from ablate.norms import resolve_norm
        from ablate.tasks import resolve_task

        self.spec = spec
        tr = spec.train
        self.variant = spec.norm_variant()
        self.task = resolve_task(spec.task)
        self.dataset = resolve_dataset(spec.data)
        scale = self.task.scale
        if tr.patch_size % scale:
            raise AblateError(f"train.patch_size: expected a multiple of the task scale {scale}, "
                              f"got {tr.patch_size}")
        # Identical init for paired cells: build the reference-norm model under the seed, then the
        # cell's model under the same seed, and copy every parameter they share.
        seed_everything(spec.seed)
        self.model: nn.Module = build_backbone(spec.backbone, self.variant, scale)
        seed_everything(spec.seed)
        reference = build_backbone(spec.backbone, resolve_norm(_PAIRING_NORM), scale)
        _copy_shared(reference, self.model)
        del reference
        self.sampler = PairSampler(self.dataset, self.task, tr.patch_size, tr.batch_size, spec.seed)
        self.val = validation_pairs(self.dataset, self.task, tr.val_size, seed=VAL_SEED)
        p = spec.probes
        self.probe_lq = probe_batch(self.dataset, self.task, p.batch, p.patch_size - p.patch_size % scale,
                                    seed=4321) if p.every else None


def _copy_shared(src: nn.Module, dst: nn.Module) -> int:
    dst_state = dst.state_dict()
    shared = {k: v for k, v in src.state_dict().items() if k in dst_state and dst_state[k].shape == v.shape
              and not k.startswith("running_")}
    dst.load_state_dict(shared, strict=False)
    return len(shared)
