from __future__ import annotations

import math
from collections.abc import Callable

from ablate.errors import SpecError
from ablate.spec import ScheduleSpec

# train.schedule.name values lr_lambda computes; the spec accepts exactly these (tests/train/test_spec_names_match_trainer.py)
SCHEDULES = ("constant", "multistep", "cosine")


def lr_lambda(schedule: ScheduleSpec, steps: int) -> Callable[[int], float]:
    """The multiplier of the base lr at optimizer step ``k`` (0-based): warmup, then the schedule.

    Multistep milestones below 1 are fractions of ``steps``; ≥ 1 are step counts.
    """
    if schedule.name not in SCHEDULES:  # a CellSpec built in code skips the YAML's validation
        raise SpecError("train.schedule.name", f"one of {', '.join(SCHEDULES)}", schedule.name)
    warmup = schedule.warmup
    milestones = sorted(int(m * steps) if m < 1 else int(m) for m in schedule.milestones)
    floor = schedule.min_lr

    def fn(k: int) -> float:
        step = k + 1
        if warmup and step <= warmup:
            return step / warmup
        if schedule.name == "multistep":
            return float(schedule.gamma ** sum(step > m for m in milestones))
        if schedule.name == "cosine":
            t = (step - warmup) / max(steps - warmup, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return fn
