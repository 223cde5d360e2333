"""Python code for a driver subprocess whose Ray Tune callback waits before it takes each trial result.

A trial runs at most one result ahead of its driver, so a tiny cell takes a few seconds of wall time and
no more CPU, on a fast machine as on a slow one: a test that kills the driver (or polls its progress)
finds the sweep where it means to.

    subprocess.Popen([sys.executable, "-c", paced("from ablate.cli import main\\nmain()\\n"), "run", ...])
"""

from __future__ import annotations

_PACE = """\
import time
from ablate.tune._callback import SweepCallback
_take = SweepCallback.on_trial_result
def _paced(self, *args, **kwargs):
    time.sleep({pace_s})
    return _take(self, *args, **kwargs)
SweepCallback.on_trial_result = _paced
"""


def paced(code: str, pace_s: float = 0.3) -> str:
    """``code``, run after the driver's callback is made to wait ``pace_s`` seconds per trial result."""
    return _PACE.format(pace_s=pace_s) + code
