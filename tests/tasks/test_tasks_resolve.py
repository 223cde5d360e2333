"""Resolving task specs: aliases, parameters, registry entries and the errors users see."""

from __future__ import annotations

import pytest

from ablate.errors import SpecError
from ablate.registry import TASKS
from ablate.spec import Component
from ablate.tasks import SRTask, Task, TaskPreset, resolve_task

# Every built-in task under the name its label gives it: the aliases (sr-x2, dn-s25, …) and derain,
# which has none. Read from the registry, so a new task module is tested with no list to update.
LABELS = sorted({resolve_task(key).label for key in TASKS.keys() if TASKS.entry(key).source == "ablate"})


def test_every_builtin_task_resolves_to_a_registered_label() -> None:
    keys = TASKS.keys()
    assert len(LABELS) >= 13 and {"sr-x4", "dn-s50", "car-q10", "db-motion", "derain"} <= set(LABELS)
    for label in LABELS:
        assert label in keys
        assert resolve_task(label).label == label
    for family in ("sr", "dn", "car", "db", "derain"):
        assert issubclass(TASKS.get(family), Task)
        assert TASKS.entry(family).source == "ablate"
    assert isinstance(TASKS.get("sr-x2"), TaskPreset)
    assert TASKS.entry("sr-x2").description


def test_spec_forms_agree() -> None:
    a = resolve_task("sr-x3")
    b = resolve_task({"name": "sr", "scale": 3})
    c = resolve_task(Component.parse({"name": "sr", "scale": 3}, "task"))
    d = resolve_task(Component("sr-x3"))
    assert a == b == c == d
    assert isinstance(a, SRTask) and a.scale == 3 and a.crop_border == 3
    assert resolve_task(a) is a
    assert resolve_task({"name": "dn", "sigma": 25}).label == "dn-s25"
    assert resolve_task({"name": "dn", "sigma": 30}).label == "dn-s30"
    assert resolve_task({"name": "db-gauss", "sigma": 2}).label == "db-gauss(sigma=2)"
    assert resolve_task({"name": "sr-x2", "scale": 2}).scale == 2  # restating a fixed value is fine


def test_unknown_task_suggests_the_closest() -> None:
    with pytest.raises(SpecError, match=r"task: expected a registered task, got 'sr-x5' \(did you mean"):
        resolve_task("sr-x5")
    with pytest.raises(SpecError, match=r"task\.name: .*'dnoise'.*valid: .*dn-s25"):
        resolve_task({"name": "dnoise"})


def test_bad_parameters_name_the_key_and_the_accepted_values() -> None:
    with pytest.raises(SpecError, match=r"task\.scale: expected one of 2, 3, 4, got 5"):
        resolve_task({"name": "sr", "scale": 5})
    with pytest.raises(SpecError, match=r"task\.scael: expected a parameter of task 'sr' \(accepted: scale\)"
                                        r".*did you mean 'scale'"):
        resolve_task({"name": "sr", "scael": 2})
    with pytest.raises(SpecError, match=r"task\.sigma: expected a number in \[0, 255\], got 300"):
        resolve_task({"name": "dn", "sigma": 300})
    with pytest.raises(SpecError, match=r"task\.quality: expected an integer in \[10, 95\], got 5"):
        resolve_task({"name": "car", "quality": 5})
    with pytest.raises(SpecError, match=r"task\.quality: .*got True"):
        resolve_task({"name": "car", "quality": True})
    with pytest.raises(SpecError, match=r"task\.scale: expected 2 \(fixed by 'sr-x2'\), got 4"):
        resolve_task({"name": "sr-x2", "scale": 4})
    with pytest.raises(SpecError, match=r"task\.sigma: expected no sigma for kernel 'motion'"):
        resolve_task({"name": "db-motion", "sigma": 2.0})
    with pytest.raises(SpecError, match=r"task\.size: expected an odd kernel side, got 14"):
        resolve_task({"name": "db", "kernel": "motion", "size": 14})
    with pytest.raises(SpecError, match=r"^task: expected a task name or a mapping"):
        resolve_task(3)
    with pytest.raises(SpecError, match=r"exp\.yaml: cells\.task\.scale"):
        try:
            resolve_task({"name": "sr", "scale": 7}, where="cells.task")
        except SpecError as err:
            raise err.with_context(file="exp.yaml") from None


def test_direct_construction_validates_too() -> None:
    assert SRTask(scale=4).label == "sr-x4"
    with pytest.raises(SpecError, match=r"sr\.scale"):
        SRTask(scale=8)
