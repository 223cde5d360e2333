"""The Task base class, task presets (``sr-x2`` …) and :func:`resolve_task`.

    from ablate.tasks import resolve_task
    task = resolve_task({"name": "sr", "scale": 3})      # or "sr-x3"
    lq = task.degrade(task.mod_crop(gt), seed=0)           # gt: (3, H, W) float32 in [0, 1]

A task is a degradation plus its metric protocol (which channel PSNR/SSIM use, how many border
pixels they ignore). Third-party tasks subclass :class:`Task`, declare ``PARAMS`` (name →
:class:`ablate.params.Param`) and implement ``_degrade``; they register through the ``ablate.tasks``
entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ablate.errors import SpecError
from ablate.params import Param, check_params, split_spec
from ablate.registry import TASKS

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor


@dataclass(frozen=True)
class Window:
    """One training patch as :meth:`Task.degrade` sees it when a sampler degrades it one by one: the
    GT region ``region`` (rh, rw) around the patch is degraded with ``seed``, and the patch is the
    ``size``×``size`` window at ``at`` (dy, dx) of that region (GT pixels, multiples of the scale)."""

    seed: int
    region: tuple[int, int]
    at: tuple[int, int]
    size: int


class Task:
    """A degradation (GT → LQ) and the metric protocol used to score its restorations.

    Subclasses set ``name`` (the registry key), ``PARAMS``, ``y_channel`` and ``description`` and
    implement :meth:`_degrade`. SR-like tasks override :attr:`scale` and :meth:`baseline`.
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    y_channel: ClassVar[bool] = False  # PSNR/SSIM on the BT.601 Y channel (else on RGB)
    description: ClassVar[str] = ""
    # parameters already spelled out by the label's base (the rest are appended when not default)
    _label_keys: ClassVar[tuple[str, ...]] = ()
    #: :meth:`degrade_windows` degrades a batch of training patches as batched torch ops, so it runs
    #: where its tensors are (the cell's GPU); without it a sampler degrades patch by patch on the CPU
    batched: ClassVar[bool] = False

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        self._where = self.name if _where is None else _where
        self.params: dict[str, Any] = check_params(f"task {self.name!r}", self.PARAMS, params, self._where)

    # metric protocol ------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        """The model's upscaling factor (1 unless the task changes the resolution)."""
        return 1

    @property
    def crop_border(self) -> int:
        """Border pixels (GT resolution) the metrics ignore."""
        return 0

    @property
    def context(self) -> int:
        """HR pixels on each side a patch needs so that degrading the patch alone equals cropping the
        degraded full image (away from the image border). A multiple of :attr:`scale`."""
        return 0

    @property
    def label(self) -> str:
        """A short unique name for tables and plots: ``sr-x2``, ``dn-s25``, ``db-gauss(sigma=2)``."""
        extras = {k: v for k, v in self.params.items()
                  if k not in self._label_keys and v != self.PARAMS[k].default}
        base = self._label_base()
        if not extras:
            return base
        return base + "(" + ",".join(f"{k}={_fmt(v)}" for k, v in extras.items()) + ")"

    def _label_base(self) -> str:
        return self.name

    # degradation ----------------------------------------------------------------------------
    def mod_crop(self, gt: Tensor) -> Tensor:
        """Crop H and W (from the bottom/right) down to multiples of :attr:`scale`."""
        s = self.scale
        h, w = gt.shape[-2], gt.shape[-1]
        return gt[..., : h - h % s, : w - w % s]

    def degrade(self, gt: Tensor, seed: int) -> Tensor:
        """LQ (3, H/scale, W/scale) float32 from GT (3, H, W) float in [0, 1]; a pure function of
        (gt, seed). H and W must be multiples of :attr:`scale` (see :meth:`mod_crop`)."""
        import torch

        if not isinstance(gt, torch.Tensor) or gt.dim() != 3 or gt.shape[0] != 3:
            shape = tuple(gt.shape) if isinstance(gt, torch.Tensor) else type(gt).__name__
            raise ValueError(f"{self.label}.degrade expects a (3, H, W) tensor, got {shape}")
        s = self.scale
        if gt.shape[1] % s or gt.shape[2] % s:
            raise ValueError(f"{self.label}.degrade: H×W {gt.shape[1]}×{gt.shape[2]} is not a multiple of "
                             f"the scale {s}; mod_crop(gt) first")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{self.label}.degrade: seed must be an integer ≥ 0, got {seed!r}")
        lq = self._degrade(gt.float(), int(seed))
        return lq.to(torch.float32).contiguous()

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        raise NotImplementedError

    # batched degradation (training patches) ---------------------------------------------------
    def draw(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        """The random parts of :meth:`degrade` for each training window (noise, blur kernels), drawn on
        the CPU exactly as ``degrade(region, seed)`` draws them and cut to the window; arrays with a
        leading batch axis, which :meth:`degrade_windows` receives as tensors. A deterministic
        degradation draws nothing."""
        return {}

    def degrade_windows(self, gt: Tensor, context: int, draws: Mapping[str, Tensor]) -> Tensor:
        """LQ (B, 3, size/scale, size/scale) float32 of a batch of training windows (only when
        :attr:`batched`). ``gt`` (B, 3, size + 2·context, size + 2·context) float32 holds each window
        with ``context`` pixels around it (a multiple of the scale, at least :attr:`context`),
        mirrored where the image ends; ``draws`` is :meth:`draw` of the windows, on ``gt``'s device.

        Equals cropping ``degrade(region, seed)`` to each window within 1/255 per pixel (the same
        torch operations, batched; float rounding may differ, so 8-bit rounding may land one step
        apart): tests/data/test_device_batches.py."""
        raise NotImplementedError(f"{self.label} has no batched degradation")

    def baseline(self, lq: Tensor) -> Tensor:
        """The no-learning restoration, the floor a model must beat: the LQ itself at scale 1."""
        return lq

    # description ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Plain values only (JSON/YAML/MLflow-safe)."""
        return {
            "task": self.name,
            "label": self.label,
            "params": dict(self.params),
            "scale": self.scale,
            "y_channel": self.y_channel,
            "crop_border": self.crop_border,
            "degradation": self.description,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.params == self.params  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.params.items()))))


@dataclass(frozen=True)
class TaskPreset:
    """A short alias for a task with fixed parameters, e.g. ``sr-x2`` = ``{name: sr, scale: 2}``."""

    task: str
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _task_class(name: str, where: str) -> type[Task] | TaskPreset:
    obj = TASKS.lookup(name, where).obj
    if isinstance(obj, TaskPreset) or (isinstance(obj, type) and issubclass(obj, Task)):
        return obj
    raise SpecError(where, "a Task subclass or TaskPreset registered under this key", name)


def resolve_task(spec: Any, *, where: str = "task") -> Task:
    """``"sr-x2"``, ``{name: dn, sigma: 30}`` or a ``Component`` → a validated :class:`Task`.

    Raises :class:`SpecError` naming the key path for an unknown task (with did-you-mean) or a
    bad parameter (listing the accepted ones). A :class:`Task` instance is returned unchanged.
    """
    if isinstance(spec, Task):
        return spec
    name, params = split_spec(spec, where, "task")
    name_path = f"{where}.name" if not isinstance(spec, str) else where
    obj = _task_class(name, name_path)
    if isinstance(obj, TaskPreset):
        for key, value in params.items():
            if key in obj.params and value != obj.params[key]:
                fixed = obj.params[key]
                raise SpecError(f"{where}.{key}", f"{fixed!r} (fixed by {name!r})", value,
                                hint=f"use {{name: {obj.task}, {key}: {value}}}")
        base = _task_class(obj.task, name_path)
        if isinstance(base, TaskPreset):
            raise SpecError(name_path, "a preset of a task class, not of another preset", name)
        params = {**obj.params, **params}
        cls = base
    else:
        cls = obj
    return cls(_where=where, **params)
