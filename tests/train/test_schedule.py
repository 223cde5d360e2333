from __future__ import annotations

import pytest

from ablate.spec import ScheduleSpec
from ablate.train._schedule import lr_lambda


def test_warmup_then_multistep_milestones_as_fractions():
    fn = lr_lambda(ScheduleSpec(name="multistep", warmup=10, milestones=(0.5, 0.75), gamma=0.5), 100)
    assert fn(0) == pytest.approx(0.1) and fn(9) == pytest.approx(1.0)
    assert fn(49) == 1.0 and fn(50) == 0.5 and fn(75) == 0.25


def test_cosine_decays_to_its_floor():
    fn = lr_lambda(ScheduleSpec(name="cosine", min_lr=0.1), 100)
    assert fn(0) == pytest.approx(1.0, abs=1e-3)
    assert fn(49) == pytest.approx(0.55, abs=1e-9)
    assert fn(99) == pytest.approx(0.1)


def test_constant():
    assert lr_lambda(ScheduleSpec(), 10)(5) == 1.0
