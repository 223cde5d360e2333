from __future__ import annotations

import math
from collections.abc import Callable

from ablate.spec import ScheduleSpec


def lr_lambda(schedule: ScheduleSpec, steps: int) -> Callable[[int], float]:
    """The multiplier of the base lr at optimizer step ``k`` (0-based): warmup, then the schedule.

    Multistep milestones below 1 are fractions of ``steps``; ≥ 1 are step counts.
    """
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
