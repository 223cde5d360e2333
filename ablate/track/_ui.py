"""What ablate adds so that MLflow's UI shows a sweep as a model-training ablation.

    from ablate.track._ui import cell_dataset, experiment_page
    experiment_page("http://127.0.0.1:5000", "1")   # the experiment's runs, model-training view, cells flat
    cell_dataset({"data.name": "folder", "data.path": "/data/DIV2K_HR"})
    # {"name": "/data/DIV2K_HR", "digest": "…", "source_type": "local", "source": '{"uri": "/data/DIV2K_HR"}'}

How MLflow 3.17's UI picks what to show (read from its bundle, ``mlflow/server/js/build/static/js``):

- **GenAI or model training.** The experiment tag ``mlflow.experimentKind`` names the kind
  (``custom_model_development`` is model training), but 3.17 ships with workflow-based navigation
  switched on, and then the kind comes from the *workflow type* instead: the URL's
  ``?workflowType=`` (``genai`` or ``machine_learning``), else the sidebar switch remembered in the
  browser's localStorage, else ``genai`` — the Overview/Traces page with "Token usage". So ablate
  sets the tag (UIs that read it, and the kind selector, show model training) and links to
  experiments with ``workflowType=machine_learning``.
- **Cells under collapsed parents.** The runs table nests child runs under their parent, collapsed,
  whenever it is sorted by start time (the default; a search filter alone does not change that).
  Which parents are expanded lives only in the browser (it is even left out of shared views). Sorted
  by anything else the table is flat: ablate's link sorts by ``final/psnr``, best first (runs
  without it, the sweeps and cells that did not finish, come last).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ._names import Tag

MODEL_TRAINING = "custom_model_development"  # MLflow's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT
DATASET_CONTEXT = "training"
_PAGE_QUERY = {"workflowType": "machine_learning", "orderByKey": "metrics.`final/psnr`", "orderByAsc": "false"}
_MAX_DATASET_NAME = 500  # mlflow.utils.validation.MAX_DATASET_NAME_SIZE
_PATH_PARAMS = ("path", "gt", "lq")  # the folder that names a folder dataset (folder: path; paired: gt)


def experiment_page(base_url: str, experiment_id: str) -> str:
    """The experiment's runs page: model-training view, every run in one flat list by final PSNR."""
    query = urlencode(_PAGE_QUERY, quote_via=quote)
    return f"{base_url.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs?{query}"


def _data_config(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``data`` section of a cell's flattened params: ``data: skimage`` or ``data.name``, ``data.path``…"""
    nested = {key[len("data."):]: value for key, value in params.items() if key.startswith("data.")}
    if nested:
        return nested
    if params.get("data") not in (None, ""):
        return {"name": params["data"]}
    return None


def cell_dataset(params: Mapping[str, Any]) -> dict[str, str] | None:
    """The MLflow dataset (name, digest, source type, source) a cell trains on, from its flattened params.

    A folder dataset is named by its folder (made absolute) with a ``local`` source, as MLflow's
    ``LocalArtifactDatasetSource`` writes it; any other (``skimage``, a plugin's) by its registry
    name with a ``code`` source listing its parameters. The digest hashes the data configuration, so
    cells on the same data share one dataset. None when the params have no ``data``.
    """
    cfg = _data_config(params)
    if cfg is None:
        return None
    canonical = json.dumps({str(k): str(v) for k, v in cfg.items()}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    folder = next((str(cfg[k]) for k in _PATH_PARAMS if cfg.get(k) not in (None, "")), None)
    if folder is not None:
        where = os.path.abspath(os.path.expanduser(folder))
        return {"name": where[-_MAX_DATASET_NAME:], "digest": digest, "source_type": "local",
                "source": json.dumps({"uri": where})}
    name = str(cfg.get("name", "data"))
    tags = {Tag.DATA: name, **{str(k): str(v) for k, v in cfg.items() if k != "name"}}
    return {"name": name[:_MAX_DATASET_NAME], "digest": digest, "source_type": "code",
            "source": json.dumps({"tags": tags})}
