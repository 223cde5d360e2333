"""Tasks: a degradation (GT → LQ) plus the metric protocol that scores its restorations.

    import torch
    from ablate.tasks import resolve_task
    task = resolve_task("sr-x2")                       # or {name: sr, scale: 2}
    gt = task.mod_crop(torch.rand(3, 97, 101))         # (3, H, W) float32 in [0, 1] → (3, 96, 100)
    lq = task.degrade(gt, seed=0)                      # (3, H/2, W/2), deterministic in seed
    task.label, task.y_channel, task.crop_border       # "sr-x2", True, 2

Built-ins (registry key → parameters; aliases in brackets):

- ``sr``: scale 2/3/4, MATLAB bicubic downsampling [sr-x2, sr-x3, sr-x4]; Y channel, crop = scale.
- ``dn``: sigma (0..255), color AWGN [dn-s15, dn-s25, dn-s50]; RGB, crop 0.
- ``car``: quality (10..95), subsampling, Pillow JPEG [car-q10, car-q20, car-q30, car-q40]; Y, crop 0.
- ``db``: kernel gauss|motion, sigma, size, noise [db-gauss, db-motion]; RGB, crop 0.
- ``derain``: density, length, angle, intensity, synthetic streaks; Y, crop 0.

A built-in task is added in one place: ``@TASKS.register("key")`` on its class in a module of this
package, and its aliases (``TASKS.add("sr-x2", TaskPreset(...))``) in that module. Importing this
package imports no torch (``ablate validate`` resolves tasks without it): the task modules import it
inside the functions that degrade images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.lazy import lazy_exports
from ablate.registry import TASKS

from ._base import Task, TaskPreset, Window, resolve_task
from ._blur import DeblurTask, convolve, gaussian_kernel, motion_kernel, symmetric_pad
from ._jpeg import JPEGTask, jpeg_roundtrip
from ._noise import DenoiseTask
from ._rain import DerainTask
from ._sr import SRTask

if TYPE_CHECKING:
    from ._resize import imresize, resize_weights

__all__ = [
    "DeblurTask",
    "DenoiseTask",
    "DerainTask",
    "JPEGTask",
    "SRTask",
    "Task",
    "TaskPreset",
    "Window",
    "convolve",
    "gaussian_kernel",
    "imresize",
    "jpeg_roundtrip",
    "motion_kernel",
    "resize_weights",
    "resolve_task",
    "symmetric_pad",
]

# torch at module level: imported on first use
__getattr__, __dir__ = lazy_exports(__name__, {"imresize": "._resize", "resize_weights": "._resize"})
TASKS.declare_package(__name__)
