"""What ablate adds for MLflow's UI: the experiment link and a cell's dataset input (pure functions)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ablate.track import experiment_page
from ablate.track._ui import cell_dataset


def test_experiment_page_opens_the_model_training_view_with_flat_runs() -> None:
    url = experiment_page("http://127.0.0.1:5000/", "12")
    base, fragment = url.split("#", 1)
    assert base == "http://127.0.0.1:5000/"
    path, query = fragment.split("?", 1)
    assert path == "/experiments/12/runs"
    # MLflow 3.17 takes the view from workflowType, and nests child runs unless sorted by something else
    assert parse_qs(query) == {"workflowType": ["machine_learning"], "orderByKey": ["metrics.`final/psnr`"],
                               "orderByAsc": ["false"]}
    assert " " not in url and "`" not in url


def test_skimage_is_a_code_dataset_named_by_its_registry_name() -> None:
    ds = cell_dataset({"data": "skimage", "norm": "token_ln"})
    assert ds is not None and ds["name"] == "skimage" and ds["source_type"] == "code"
    assert json.loads(ds["source"]) == {"tags": {"ablate.data": "skimage"}}
    assert len(ds["digest"]) == 8
    other = cell_dataset({"data.name": "skimage", "data.val": ["astronaut"]})
    assert other is not None and other["name"] == "skimage" and other["digest"] != ds["digest"]
    assert json.loads(other["source"])["tags"] == {"ablate.data": "skimage", "val": "['astronaut']"}
    assert cell_dataset({"data": "skimage", "seed": 1}) == ds  # same data, same dataset


def test_a_folder_dataset_is_named_by_its_absolute_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ds = cell_dataset({"data.name": "folder", "data.path": "images", "data.val_fraction": 0.1})
    assert ds is not None and ds["name"] == str(tmp_path / "images") and ds["source_type"] == "local"
    assert json.loads(ds["source"]) == {"uri": str(tmp_path / "images")}
    paired = cell_dataset({"data.name": "paired", "data.lq": "/d/lq", "data.gt": "/d/gt"})
    assert paired is not None and paired["name"] == "/d/gt"


def test_no_data_no_dataset() -> None:
    assert cell_dataset({"norm": "token_ln", "seed": 0}) is None
    assert cell_dataset({"data": ""}) is None
