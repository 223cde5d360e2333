"""Feature-divergence probes: per-site feature magnitude and channel entropy.

    from ablate.probes import Probe
    probe = Probe(model, lq_batch)          # a fixed probe batch
    trace = probe.measure()                 # {"g0.b0": {"msq": …, "maxabs": …, "entropy": …, "top1": …}, …}

Hooks are attached only while measuring (eval mode, no grad), so training steps pay nothing.
"""

from __future__ import annotations

from ._probe import STATS, Probe, beta_alignment, feature_stats

__all__ = ["STATS", "Probe", "beta_alignment", "feature_stats"]
