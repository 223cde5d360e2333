from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ablate.errors import AblateError
from ablate.train import CHECKPOINT_FILE, load_checkpoint, save_checkpoint


def test_a_checkpoint_round_trips_through_its_directory_or_its_file(tmp_path: Path):
    state = {"step": 3, "weights": torch.arange(4.0), "history": [{"step": 3, "train/loss": 0.5}]}
    assert save_checkpoint(tmp_path / "cell", state) == tmp_path / "cell"
    assert sorted(p.name for p in (tmp_path / "cell").iterdir()) == [CHECKPOINT_FILE]  # no temporary left
    for where in (tmp_path / "cell", tmp_path / "cell" / CHECKPOINT_FILE):
        loaded = load_checkpoint(where)
        assert loaded["step"] == 3 and loaded["history"] == state["history"]
        assert torch.equal(loaded["weights"], state["weights"])


def test_a_missing_checkpoint_says_what_is_missing(tmp_path: Path):
    with pytest.raises(AblateError, match=f"no {CHECKPOINT_FILE} in"):
        load_checkpoint(tmp_path)


def test_a_truncated_checkpoint_is_unreadable(tmp_path: Path):
    save_checkpoint(tmp_path, {"weights": torch.zeros(1000)})
    file = tmp_path / CHECKPOINT_FILE
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(AblateError, match=r"checkpoint .*state\.pt is unreadable: RuntimeError") as err:
        load_checkpoint(tmp_path)
    assert "\n" not in str(err.value)  # the CLI prints it on one line


def test_an_empty_checkpoint_is_unreadable(tmp_path: Path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    with pytest.raises(AblateError, match="is unreadable: EOFError"):
        load_checkpoint(tmp_path)


class _Payload:
    """What a tampered checkpoint would carry: unpickling it would run ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_names_code_is_refused_not_run(tmp_path: Path):
    marker = tmp_path / "ran"
    torch.save({"step": 1, "payload": _Payload(marker)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(AblateError, match="is unreadable: UnpicklingError: .*system") as err:
        load_checkpoint(tmp_path)
    assert "only tensors and plain Python values" in str(err.value)
    assert not marker.exists()


def test_a_checkpoint_that_is_not_a_dict_is_unreadable(tmp_path: Path):
    torch.save([1, 2], tmp_path / CHECKPOINT_FILE)
    with pytest.raises(AblateError, match="expected a dict, got list"):
        load_checkpoint(tmp_path)
