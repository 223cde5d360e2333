"""The cell types: a component, the train/probes settings, and :class:`CellSpec`, one cell's identity.

    from ablate.spec import CellSpec, Component
    cell = CellSpec(norm=Component("token_ln"), rescale=False, backbone=Component("swinir-tiny"),
                    task=Component("sr-x2"), seed=0)
    print(cell.id, cell.flat_params()["train.optimizer.lr"])

The YAML rules of each train/probes field (choices, ranges, nullability) are its dataclass field
metadata, read by :func:`ablate.spec.build_dataclass`; docs/schema.md lists them. ``omit_default``
marks a field that enters a cell's config (and id) only when set away from its default.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ablate.errors import SpecError

from ._fields import build_dataclass

if TYPE_CHECKING:
    from ablate.norms import NormVariant


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


# Each field's YAML rules are its metadata (read by build_dataclass): choices, positive,
# non_negative, nullable (with kind, the type when the default is None), check.
@dataclass(frozen=True)
class OptimizerSpec:
    name: str = field(default="adam", metadata={"choices": ("adam", "adamw")})
    lr: float = field(default=2e-4, metadata={"positive": True})
    betas: tuple[float, float] = field(  # the IR recipe's betas
        default=(0.9, 0.99),
        metadata={"check": (lambda b: len(b) == 2 and all(0 <= v < 1 for v in b), "two numbers in [0, 1)")})
    weight_decay: float = field(default=0.0, metadata={"non_negative": True})


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = field(default="constant", metadata={"choices": ("constant", "multistep", "cosine")})
    warmup: int = field(default=0, metadata={"non_negative": True})  # linear warmup steps
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of train.steps (or step counts ≥ 1)
    gamma: float = 0.5  # multistep decay factor
    min_lr: float = 0.0  # cosine floor, as a fraction of the base lr


def _device(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or name.startswith("cuda:")


def _regularizer(value: Any, where: str) -> Component:
    """A ``train.regularizer`` value, checked by :mod:`ablate.regularizers` (a registered name, its
    declared params, converted: ``weight: 0`` and ``weight: 0.0`` are one cell)."""
    from ablate.regularizers import resolve_regularizer

    comp = value if isinstance(value, Component) else Component.parse(value, where)
    _, params = resolve_regularizer(value, where=where)
    return Component(comp.name, _freeze(params))


@dataclass(frozen=True)
class TrainSpec:
    steps: int = field(default=300, metadata={"positive": True})
    batch_size: int = field(default=4, metadata={"positive": True})
    patch_size: int = field(default=48, metadata={"positive": True})  # HR (ground-truth) patch side in pixels
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    loss: str = field(default="l1", metadata={"choices": ("l1", "charbonnier", "mse")})
    # EMA decay (0.999 in the paper's recipe); 0 turns EMA off
    ema: float = field(default=0.0, metadata={"non_negative": True, "check": (lambda v: v < 1, "a decay in [0, 1)")})
    grad_clip: float | None = field(  # max global grad norm; None = off
        default=None, metadata={"kind": float, "nullable": True,
                                "check": (lambda v: v is None or v > 0, "a positive max norm or null")})
    # autocast for the forward pass; fp16 adds a gradient scaler (part of the checkpoint), bf16 needs none
    amp: str = field(default="none", metadata={"choices": ("none", "bf16", "fp16")})
    # torch.compile the training step (falls back to eager, with one warning, where it fails). Not in the
    # cell id: the id names the experiment's math, and compiled kernels compute it within float rounding
    # (tests/train/test_compile_clean.py); the run records which path ran (ablate.kernel.* tags)
    compile: bool = field(default=False, metadata={"omit_default": True, "implementation": True})
    # TF32 for float32 matmuls and convolutions on CUDA (no effect on the CPU). Off by default: the
    # published baselines are fp32. In the id only when on (it changes the math's precision, as amp
    # does), so every existing cell keeps its id
    tf32: bool = field(default=False, metadata={"omit_default": True})
    eval_every: int = field(default=100, metadata={"positive": True})
    # 0: only at the end (and when a trial is paused)
    checkpoint_every: int = field(default=0, metadata={"non_negative": True})
    # divergence guard: probe msq above this stops the cell (status diverged)
    max_msq: float = field(default=1e12, metadata={"positive": True})
    lowprec_eval: bool = True  # evaluate the final model in float16 and bfloat16 too
    device: str = field(default="auto", metadata={"check": (_device, "auto, cpu, cuda or cuda:N")})
    # validation: centre crops of this HR side (0 = whole images)
    val_size: int = field(default=96, metadata={"non_negative": True})
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    # a penalty added to the loss ({name: feature_kl, weight: 1e-4}); "parse" reads the YAML value, and
    # "axes" names the parameters that are dotted axes too (train.regularizer.weight)
    regularizer: Component = field(default_factory=lambda: Component("none"),
                                   metadata={"parse": _regularizer, "axes": {"weight": float}})

    def to_config(self) -> dict[str, Any]:
        """The JSON-able fields; ``regularizer`` only when it is not ``none``, so that a config (and the cell
        id that hashes it) is the same as before regularizers existed unless the cell names one."""
        cfg = _plain(_config_of(self))
        del cfg["regularizer"]  # asdict spells the Component as name + params tuples; its YAML form instead:
        if self.regularizer.name != "none":
            cfg["regularizer"] = {"name": self.regularizer.name, **self.regularizer.kwargs}
        return cfg


@dataclass(frozen=True)
class ProbeSpec:
    every: int = field(default=50, metadata={"non_negative": True})  # probe steps; 0 turns probes off
    batch: int = field(default=2, metadata={"positive": True})  # images in the fixed probe batch
    patch_size: int = field(default=64, metadata={"positive": True})  # HR side of each probe image crop


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
            "train": self.train.to_config(),
            "probes": _plain(_config_of(self.probes)),
            "data": self.data.to_config(),
        }

    def identity_config(self) -> dict[str, Any]:
        """``to_config()`` less the fields that choose kernels, not math (``train.compile``): what the id hashes."""
        cfg = self.to_config()
        for f in fields(TrainSpec):
            if f.metadata.get("implementation"):
                cfg["train"].pop(f.name, None)
        return cfg

    @functools.cached_property  # frozen, so the hash never goes stale; expand() asks for it per cell
    def id(self) -> str:
        blob = json.dumps(self.identity_config(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def norm_label(self) -> str:
        """The norm variant's label (``token_ln``, ``global_ln+rescale``, ``i_ln``): the run name's first
        part and the ``ablate.norm`` tag. Checked against the registry's declarations: imports no torch."""
        from ablate.norms import check_norm

        return check_norm(self.norm.to_config(), self.rescale).name

    def norm_variant(self) -> NormVariant:
        """The norm variant a model of this cell is built with (imports the normalizer classes: torch)."""
        from ablate.norms import resolve_norm

        return resolve_norm(self.norm.to_config(), self.rescale)

    @property
    def pairing_key(self) -> str:
        """Cells equal in everything but the norm variant share this key (and their init and batches)."""
        cfg = self.identity_config()
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


def _config_of(spec: Any) -> dict[str, Any]:
    """``asdict(spec)`` less the fields marked ``omit_default`` that hold their default: a field added
    after cells were run enters a config (and so the cell id) only when set, so every existing cell
    keeps its id."""
    out = asdict(spec)
    for f in fields(spec):
        if f.metadata.get("omit_default") and out[f.name] == f.default:
            del out[f.name]
    return out


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
