from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ablate.errors import SpecError


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Component:
    """A pluggable YAML node: a registry name plus parameters, e.g. ``{name: sr, scale: 3}``."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, value: Any, where: str) -> Component:
        if isinstance(value, str) and value:
            return cls(value)
        if isinstance(value, Mapping):
            name = value.get("name")
            if not isinstance(name, str) or not name:
                raise SpecError(f"{where}.name", "a component name", name)
            return cls(name, _freeze({k: v for k, v in value.items() if k != "name"}))
        raise SpecError(where, "a name or a mapping with 'name'", value)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.params}

    def to_config(self) -> dict[str, Any] | str:
        return {"name": self.name, **self.kwargs} if self.params else self.name

    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "(" + ",".join(f"{k}={_thaw(v)}" for k, v in self.params) + ")"


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                                  for v in value):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adam"  # adam | adamw
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)  # the IR recipe's betas
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = "constant"  # constant | multistep | cosine
    warmup: int = 0  # linear warmup steps
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of train.steps (or step counts ≥ 1)
    gamma: float = 0.5  # multistep decay factor
    min_lr: float = 0.0  # cosine floor, as a fraction of the base lr


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 300
    batch_size: int = 4
    patch_size: int = 48  # HR (ground-truth) patch side in pixels
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    loss: str = "l1"  # l1 | charbonnier | mse
    ema: float = 0.0  # EMA decay (0.999 in the paper's recipe); 0 turns EMA off
    grad_clip: float | None = None  # max global grad norm; None = off
    amp: str = "none"  # none | bf16 (autocast for the forward pass)
    eval_every: int = 100
    checkpoint_every: int = 0  # 0: only at the end (and when a trial is paused)
    max_msq: float = 1e12  # divergence guard: probe msq above this stops the cell (status diverged)
    lowprec_eval: bool = True  # evaluate the final model in float16 and bfloat16 too
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_size: int = 96  # validation: centre crops of this HR side (0 = whole images)
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)


@dataclass(frozen=True)
class ProbeSpec:
    every: int = 50  # probe steps; 0 turns probes off
    batch: int = 2  # images in the fixed probe batch
    patch_size: int = 64  # HR side of each probe image crop


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines one cell's result (nothing that does not, e.g. concurrency)."""

    norm: Component
    rescale: bool | None
    backbone: Component
    task: Component
    seed: int
    train: TrainSpec = field(default_factory=TrainSpec)
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    data: Component = field(default_factory=lambda: Component("skimage"))

    def to_config(self) -> dict[str, Any]:
        """The canonical, JSON-able resolved config (the cell id hashes it)."""
        return {
            "norm": self.norm.to_config(),
            "rescale": self.rescale,
            "backbone": self.backbone.to_config(),
            "task": self.task.to_config(),
            "seed": self.seed,
            "train": _plain(asdict(self.train)),
            "probes": _plain(asdict(self.probes)),
            "data": self.data.to_config(),
        }

    @functools.cached_property  # frozen, so the hash never goes stale; expand() asks for it per cell
    def id(self) -> str:
        blob = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def pairing_key(self) -> str:
        """Cells equal in everything but the norm variant share this key (and their init and batches)."""
        cfg = self.to_config()
        cfg.pop("norm")
        cfg.pop("rescale")
        blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def flat_params(self) -> dict[str, Any]:
        """Flattened config for MLflow params: ``train.optimizer.lr`` → value."""
        return flatten(self.to_config())

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CellSpec:
        return cls(
            norm=Component.parse(cfg["norm"], "norm"),
            rescale=cfg.get("rescale"),
            backbone=Component.parse(cfg["backbone"], "backbone"),
            task=Component.parse(cfg["task"], "task"),
            seed=int(cfg.get("seed", 0)),
            train=build_dataclass(TrainSpec, cfg.get("train", {}), "train"),
            probes=build_dataclass(ProbeSpec, cfg.get("probes", {}), "probes"),
            data=Component.parse(cfg.get("data", "skimage"), "data"),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def build_dataclass(cls: Any, raw: Any, where: str) -> Any:
    """Build a (nested) spec dataclass from a mapping, checking keys and types; SpecError on error."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(where, f"a mapping of {cls.__name__} fields", raw)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in raw.items():
        if key not in known:
            from ablate.errors import did_you_mean

            raise SpecError(f"{where}.{key}", f"one of {', '.join(known)}", key,
                            hint=did_you_mean(str(key), known).strip(" ()") or None)
        default = getattr(defaults, key)
        path = f"{where}.{key}"
        if hasattr(default, "__dataclass_fields__"):
            kwargs[key] = build_dataclass(type(default), value, path)
        else:
            kwargs[key] = _coerce(value, default, path, cls, key)
    obj = cls(**kwargs)
    _validate(obj, where)
    return obj


def _coerce(value: Any, default: Any, path: str, cls: Any, key: str) -> Any:
    if key == "grad_clip":
        if value is None:
            return None
        default = 1.0
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(path, "true or false", value)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(path, "an integer", value)
        return value
    if isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads "2e-4" (no dot) as a string
            except ValueError:
                raise SpecError(path, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, "a number", value)
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SpecError(path, "a string", value)
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise SpecError(path, "a list of numbers", value)
        return tuple(float(v) for v in value)
    return value


_CHOICES = {
    ("OptimizerSpec", "name"): ("adam", "adamw"),
    ("ScheduleSpec", "name"): ("constant", "multistep", "cosine"),
    ("TrainSpec", "loss"): ("l1", "charbonnier", "mse"),
    ("TrainSpec", "amp"): ("none", "bf16"),
}
_POSITIVE = {("TrainSpec", "steps"), ("TrainSpec", "batch_size"), ("TrainSpec", "patch_size"),
             ("TrainSpec", "eval_every"), ("OptimizerSpec", "lr"), ("ProbeSpec", "batch"),
             ("ProbeSpec", "patch_size"), ("TrainSpec", "max_msq")}
_NON_NEGATIVE = {("ProbeSpec", "every"), ("TrainSpec", "checkpoint_every"), ("TrainSpec", "ema"),
                 ("ScheduleSpec", "warmup"), ("TrainSpec", "val_size"), ("OptimizerSpec", "weight_decay")}


def _validate(obj: Any, where: str) -> None:
    name = type(obj).__name__
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}"
        if (name, f.name) in _CHOICES and value not in _CHOICES[(name, f.name)]:
            raise SpecError(path, f"one of {', '.join(_CHOICES[(name, f.name)])}", value)
        if (name, f.name) in _POSITIVE and not value > 0:
            raise SpecError(path, "a positive number", value)
        if (name, f.name) in _NON_NEGATIVE and value < 0:
            raise SpecError(path, "a number ≥ 0", value)
    if name == "TrainSpec":
        if obj.ema >= 1:
            raise SpecError(f"{where}.ema", "a decay in [0, 1)", obj.ema)
        if obj.grad_clip is not None and obj.grad_clip <= 0:
            raise SpecError(f"{where}.grad_clip", "a positive max norm or null", obj.grad_clip)
        dev = obj.device
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            raise SpecError(f"{where}.device", "auto, cpu, cuda or cuda:N", dev)
    if name == "OptimizerSpec" and (len(obj.betas) != 2 or not all(0 <= b < 1 for b in obj.betas)):
        raise SpecError(f"{where}.betas", "two numbers in [0, 1)", list(obj.betas))
