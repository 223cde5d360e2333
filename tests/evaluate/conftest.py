"""Fixtures: small real images, and cells trained in this process into a real MLflow store.

    def test_x(trained):                  # a session's store: 3 tiny cells trained (no Ray), checkpoints kept
        spec, state, uri = trained.spec, trained.state, trained.uri

The cells are trained by the real trial engine and logged through the real Tracker the way a sweep
logs them (run names, tags, summary metrics, the ``checkpoint/state.pt`` artifact), so ``ablate eval``
meets what ``ablate run`` leaves behind — minus Ray, which costs more than the training here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

TINY = {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1], "num_heads": 2, "window_size": 4}


def _template_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("ablate-mlflow") if cache is not None else tmp_path_factory.getbasetemp() / "ablate-mlflow"


@pytest.fixture(scope="session")
def empty_state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``empty_state(name)`` → a new state folder holding an empty MLflow SQLite store."""
    from ablate.testing.synthetic import prepared_store

    template = _template_dir(request, tmp_path_factory)

    def make(name: str) -> Path:
        state = tmp_path_factory.mktemp(name) / "state"
        prepared_store(state, template)
        return state

    return make


def crops(folder: Path, names: tuple[str, ...] = ("astronaut", "rocket", "coffee"), h: int = 48, w: int = 61,
          ) -> list[Path]:
    """Crops of scikit-image pictures written as PNGs (``w`` odd by default: the ×2 mod-crop is exercised)."""
    from ablate.data import load_skimage

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        img = load_skimage(name)
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2 + 7 * i
        path = folder / f"{i:02d}_{name}.png"
        Image.fromarray(np.ascontiguousarray(img[top:top + h, left:left + w])).save(path)
        out.append(path)
    return out


def spec_text(root: Path, name: str, extra: str = "") -> str:
    """A 3-cell experiment on small crops: token_ln, global_ln, and token_ln with EMA; validation on the
    whole images of ``test/`` (val_size 0), so the trainer's final/psnr is measured on the test set."""
    return f"""\
name: {name}
grid:
  norm: [token_ln, global_ln]
include:
  - {{norm: token_ln, train.ema: 0.9}}
backbone: {TINY}
task: sr-x2
data: {{name: folder, path: {root / 'train'}, val_path: {root / 'test'}}}
train: {{steps: 4, batch_size: 2, patch_size: 16, val_size: 0, eval_every: 4, optimizer: {{lr: 1.0e-3}}}}
probes: {{every: 0}}
eval:
  sets:
    small: {{name: folder, path: {root / 'test'}}}
  precisions: [fp32, fp16]
{extra}"""


def train_into_store(spec: Any, state: Path, *, artifacts: bool = True) -> dict[str, str]:
    """Train every cell of ``spec`` in this process and log it as ``ablate run`` does; ``{cell id: run id}``."""
    from ablate.evaluate import checkpoint_dir
    from ablate.spec import expand, plan_rows
    from ablate.track import Tracker, cell_run_identity
    from ablate.train import CHECKPOINT_FILE, run_cell

    tracker = Tracker(None, state)
    cells = expand(spec)
    parent = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(cells))
    runs = {}
    for cell in cells:
        ckpt = checkpoint_dir(state, spec.name, cell.id)
        result = run_cell(cell, None, checkpoint_dir=ckpt)
        name, tags = cell_run_identity(cell, cell.norm_label())
        run_id = tracker.start_cell(parent, cell.id, name, cell.flat_params(), tags)
        if artifacts:
            tracker.log_artifact(run_id, ckpt / CHECKPOINT_FILE, "checkpoint")
        tracker.end_cell(run_id, result.status, result.reason, result.summary)
        runs[cell.id] = run_id
    tracker.end_sweep(parent, "finished")
    return runs


@dataclass
class Trained:
    root: Path  # train/ and test/ image folders, spec.yaml
    state: Path
    uri: str
    spec: Any
    runs: dict[str, str]  # cell id -> run id

    def copy(self, dst: Path) -> Trained:
        """An independent copy of the state folder (tests that write to the store take one)."""
        from ablate.track import default_tracking_uri

        shutil.copytree(self.state, dst)
        return Trained(self.root, dst, default_tracking_uri(dst), self.spec, dict(self.runs))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, empty_state: Callable[[str], Path]) -> Trained:
    from ablate.spec import load_experiment
    from ablate.track import default_tracking_uri

    root = tmp_path_factory.mktemp("eval-data")
    crops(root / "train", ("astronaut", "rocket", "immunohistochemistry", "retina"), h=40, w=40)
    crops(root / "test")
    (root / "spec.yaml").write_text(spec_text(root, "evaltiny"))
    spec = load_experiment(root / "spec.yaml")
    state = empty_state("trained")
    runs = train_into_store(spec, state)
    return Trained(root, state, default_tracking_uri(state), spec, runs)
