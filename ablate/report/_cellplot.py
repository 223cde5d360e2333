"""One cell's divergence plot (feature msq and channel entropy per site over training), which the sweep
logs as an artifact of the cell's run.

    from ablate.report._cellplot import divergence_plot
    divergence_plot([(step, {"feat/g0.b0/msq": 1.2, "feat/g0.b0/entropy": 3.1, ...}), ...], "div.png")

The figure is drawn on its own Agg canvas, not through pyplot, so the caller's matplotlib backend
stays what it was.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _sites(trace: list[tuple[int, dict[str, float]]]) -> list[str]:
    """Probe sites in the order they first appear (shallow → deep)."""
    sites: list[str] = []
    for _, metrics in trace:
        for key in metrics:
            site = key.split("/")[1]
            if site not in sites:
                sites.append(site)
    return sites


def divergence_plot(trace: list[tuple[int, dict[str, float]]], path: str | Path, title: str = "") -> Path:
    """Two panels: msq (log scale) and channel entropy vs step, one line per probe site (deep = dark)."""
    sites = _sites(trace)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["viridis"]
    for i, site in enumerate(sites):
        colour = cmap(1.0 - i / max(len(sites) - 1, 1))
        for ax, stat in zip(axes, ("msq", "entropy")):
            pts = [(s, m[f"feat/{site}/{stat}"]) for s, m in trace if f"feat/{site}/{stat}" in m]
            if pts:
                ax.plot(*zip(*pts), color=colour, label=site, lw=1.4 if site == "final" else 1.0,
                        ls="--" if site == "final" else "-")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("feature magnitude: mean of x² (log)")
    axes[1].set_ylabel("channel entropy (nats)")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:  # a trace without entropy has nothing to name
        axes[1].legend(fontsize=7, ncol=2, title="site (shallow → deep)", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
