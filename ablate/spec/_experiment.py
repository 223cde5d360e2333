"""The experiment types: what a validated YAML file is (:class:`ExperimentSpec` and its sections).

    from ablate.spec import load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
    print(spec.name, spec.hash, spec.axes, spec.resources.max_concurrent)

The YAML schema these types hold is documented in docs/schema.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from ._types import Component, ProbeSpec, TrainSpec

# Metrics a trial reports at every evaluation, hence the ones a search (and ASHA) can steer by.
SEARCH_METRICS = ("val/psnr", "val/ssim", "train/loss")
SEARCH_TYPES = ("loguniform", "uniform", "int", "choice")
SCHEDULERS = ("asha", "hyperband", "none")
# float32 is the plain metric (eval/<set>/psnr); each other precision adds eval/<set>/psnr_<name>
EVAL_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ResourceSpec:
    """What each trial asks the Ray scheduler for; not part of any cell's identity."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many trials as the resources allow
    # times a cell whose worker died is retried from its last checkpoint; in the spec's config (and hash)
    # only when set away from its default, so specs written before it keep their hash
    max_retries: int = field(default=3, metadata={"omit_default": True})


@dataclass(frozen=True)
class TrackingSpec:
    uri: str | None = None  # None: the embedded SQLite store (or MLFLOW_TRACKING_URI)


@dataclass(frozen=True)
class SearchParam:
    """One dimension of an Optuna search space: ``train.optimizer.lr: {type: loguniform, ...}``."""

    key: str  # an axis name: a dotted train./probes. field or a core axis (choice only)
    type: str  # loguniform | uniform | int | choice
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()  # choice: plain values (Optuna's categorical choices must be scalars)
    # conditional: sampled only in trials where every (axis, value) holds (a grid axis of the trial's
    # variant, or an earlier search dimension); omitted from the hash when empty, so old specs keep theirs
    when: tuple[tuple[str, Any], ...] = field(default=(), metadata={"omit_default": True})


@dataclass(frozen=True)
class SearchSpec:
    metric: str = "val/psnr"
    mode: str = "max"  # max | min
    num_samples: int = 10
    scheduler: str = "none"  # asha | hyperband | none
    # axis -> dimension, in file order; a plain dict (ablate.tune iterates it), so not in the hash
    space: dict[str, SearchParam] = field(default_factory=dict, hash=False)
    # the early-stopping rungs: the first at grace_period steps (None: train.eval_every), each next one
    # reduction_factor times further; the fields below are in the hash only when set away from their
    # defaults, so specs written before them keep their hash
    grace_period: int | None = field(default=None, metadata={"omit_default": True})
    reduction_factor: int = field(default=2, metadata={"omit_default": True})
    # the seeds the confirm experiment crosses each variant's best configuration with; None: 1, 2, 3, or
    # the first three the search's own seeds leave free (see fresh_seeds)
    confirm_seeds: tuple[int, ...] | None = field(default=None, metadata={"omit_default": True})

    def fresh_seeds(self, search_seeds: set[int]) -> tuple[int, ...]:
        """The confirm experiment's seeds: ``confirm_seeds``, else the first three not in ``search_seeds``."""
        if self.confirm_seeds is not None:
            return self.confirm_seeds
        free = (s for s in range(1, 1 + len(search_seeds) + 3) if s not in search_seeds)
        return tuple(next(free) for _ in range(3))


@dataclass(frozen=True)
class EvalSpec:
    """What ``ablate eval`` scores every finished cell on: whole images of named test sets."""

    # set name -> a dataset component whose validation images are the test images, in file order
    sets: tuple[tuple[str, Component], ...] = (("skimage", Component("skimage")),)
    precisions: tuple[str, ...] = ("fp32", "fp16")
    self_ensemble: bool = False  # average the 8 flips/rotations (the papers' "+" rows)
    tile: int | None = None  # LQ tile side; None: whole images, tiled only when they do not fit
    tile_overlap: int = 32  # LQ pixels shared by neighbouring tiles, blended


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment: the axes and base configs; :func:`ablate.spec.expand` makes the cells.

    Axis values are normalized: components are :class:`Component`, dotted axes hold the coerced
    field value (``float`` for ``train.optimizer.lr``, a sub-spec for ``train.optimizer``).
    """

    name: str
    description: str = ""
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (axis, values) in file order
    fixed: tuple[tuple[str, Any], ...] = ()  # top-level norm/rescale/backbone/task/seed
    include: tuple[tuple[tuple[str, Any], ...], ...] = ()
    exclude: tuple[tuple[tuple[str, Any], ...], ...] = ()
    train: TrainSpec = field(default_factory=TrainSpec)
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    data: Component = field(default_factory=lambda: Component("skimage"))
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    search: SearchSpec | None = None
    eval: EvalSpec | None = None  # None: the file has no eval section (ablate eval uses EvalSpec())
    file: str | None = field(default=None, compare=False)
    source_text: str = field(default="", compare=False, repr=False)

    @property
    def axes(self) -> tuple[str, ...]:
        """Every axis the file varies or pins per cell: grid axes, then include/exclude-only ones."""
        names = [axis for axis, _ in self.grid]
        for entry in (*self.include, *self.exclude):
            names += [axis for axis, _ in entry if axis not in names]
        return tuple(names)

    def to_config(self) -> dict[str, Any]:
        """The canonical, JSON-able spec (what :attr:`hash` hashes; file and text excluded)."""
        return {
            "name": self.name,
            "description": self.description,
            "grid": {axis: [jsonable(v) for v in values] for axis, values in self.grid},
            "fixed": {axis: jsonable(v) for axis, v in self.fixed},
            "include": [{axis: jsonable(v) for axis, v in entry} for entry in self.include],
            "exclude": [{axis: jsonable(v) for axis, v in entry} for entry in self.exclude],
            "train": jsonable(self.train),
            "probes": jsonable(self.probes),
            "data": jsonable(self.data),
            "resources": jsonable(self.resources),
            "tracking": jsonable(self.tracking),
            "search": jsonable(self.search),
            # only when given: files written before the section existed keep their hash
            **({"eval": jsonable(self.eval)} if self.eval is not None else {}),
        }

    @property
    def hash(self) -> str:
        """Short hash of the canonical resolved spec (insensitive to key order and formatting)."""
        blob = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def jsonable(value: Any) -> Any:
    """Plain JSON-able data: components as their YAML config, spec dataclasses as mappings."""
    if isinstance(value, (Component, TrainSpec)):  # TrainSpec leaves out a `none` regularizer
        return value.to_config()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)
                if not (f.metadata.get("omit_default") and getattr(value, f.name) == f.default)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
