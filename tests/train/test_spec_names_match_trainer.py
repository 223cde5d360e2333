"""``train.loss``, ``train.optimizer.name`` and ``train.schedule.name``: the spec accepts exactly the names
the trainer builds, and any other name is a one-line error, never a silent default.

    .venv/bin/python -m pytest tests/train/test_spec_names_match_trainer.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ablate.errors import SpecError
from ablate.spec import CellSpec, load_experiment
from ablate.spec._types import OptimizerSpec, ScheduleSpec, TrainSpec
from ablate.train._schedule import SCHEDULES, lr_lambda
from ablate.train._state import OPTIMIZERS, TrainState
from ablate.train._trainer import LOSSES, _loss_fn


def _choices(cls: type, name: str) -> set[str]:
    return set(next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"])


def test_the_spec_accepts_exactly_what_the_trainer_builds() -> None:
    assert _choices(TrainSpec, "loss") == set(LOSSES)
    assert _choices(OptimizerSpec, "name") == set(OPTIMIZERS)
    assert _choices(ScheduleSpec, "name") == set(SCHEDULES)


def test_each_loss_is_what_its_name_says() -> None:
    pred, gt = torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0])
    assert float(_loss_fn("l1")(pred, gt)) == pytest.approx(1.5)
    assert float(_loss_fn("mse")(pred, gt)) == pytest.approx(2.5)
    assert float(_loss_fn("charbonnier")(pred, gt)) == pytest.approx(1.5, abs=1e-5)


def test_an_unknown_name_is_an_error_at_validation(tmp_path: Path) -> None:
    for train, path in (("{loss: huber}", "train.loss"), ("{optimizer: {name: sgd}}", "train.optimizer.name")):
        spec = tmp_path / "bad.yaml"
        spec.write_text(f"name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntrain: {train}\n")
        with pytest.raises(SpecError, match=rf"bad.yaml: {path}: expected one of .*, got '(huber|sgd)'"):
            load_experiment(spec)


def test_an_unknown_name_that_skipped_validation_is_an_error_at_runtime() -> None:
    cell = CellSpec.from_config({"norm": "token_ln", "backbone": "swinir-tiny", "task": "sr-x2"})
    with pytest.raises(SpecError, match=r"train\.loss: expected one of l1, charbonnier, mse, got 'huber'"):
        _loss_fn("huber")
    sgd = dataclasses.replace(cell, train=dataclasses.replace(cell.train, optimizer=OptimizerSpec(name="sgd")))
    with pytest.raises(SpecError, match=r"train\.optimizer\.name: expected one of adam, adamw, got 'sgd'"):
        TrainState.build(torch.nn.Linear(2, 2), sgd, torch.device("cpu"))
    with pytest.raises(SpecError, match=r"train\.schedule\.name: expected one of constant, multistep, cosine, "
                                        r"got 'linear'"):
        lr_lambda(ScheduleSpec(name="linear"), 10)
