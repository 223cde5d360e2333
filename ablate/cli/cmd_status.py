"""`ablate status`: where each cell of an experiment stands."""

from __future__ import annotations

import math
from pathlib import Path

import click

from ._options import load, state_dir_option, tracking_option


def _fmt(value: object, spec: str) -> str:
    if isinstance(value, (int, float)) and not math.isnan(float(value)):
        return format(float(value), spec)
    return ""


@click.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
def command(file: str, state_dir: Path, tracking_uri: str | None) -> None:
    """Print each cell's status and headline metrics (from MLflow), including cells not run yet.

    \b
        ablate status experiments/quickstart.yaml

    A cell whose sweep's driver is gone (killed, its host lost) shows as `stale (driver gone since
    <time>)` rather than running; the next `ablate run` or `ablate resume` records it as killed and
    continues it from its checkpoint.
    """
    from ablate.report import table
    from ablate.spec import expand
    from ablate.track import RunStore, latest_per_cell, resolve_tracking_uri

    spec = load(file)
    cells = expand(spec)
    uri = resolve_tracking_uri(tracking_uri, spec.tracking.uri if spec.tracking else None, state_dir)
    # a reader, not the Tracker: a SQLite store is read directly (no MLflow import, nothing created)
    runs = {r["cell"]: r for r in latest_per_cell(RunStore(uri).runs(spec.name))}
    rows = []
    counts: dict[str, int] = {}
    for c in cells:
        r = runs.get(c.id)
        # "driver gone since …": a running cell of a dead sweep; the next run or resume records it as killed
        stale = r["stale"] if r else ""
        status = "stale" if stale else r["status"] if r else "pending"
        counts[status] = counts.get(status, 0) + 1
        m = r["metrics"] if r else {}
        rows.append({
            "cell": c.id, "norm": c.norm_label(),
            "backbone": c.backbone.label(), "task": c.task.label(), "seed": str(c.seed),
            "status": f"stale ({stale})" if stale else status,
            "psnr": _fmt(m.get("final/psnr", m.get("val/psnr")), ".2f"),
            "ssim": _fmt(m.get("final/ssim", m.get("val/ssim")), ".4f"),
            "max msq": _fmt(m.get("final/max_msq"), ".3g"),
            "psnr fp16": _fmt(m.get("final/psnr_fp16"), ".2f"),
            "reason": (r or {}).get("reason", "")[:60],
        })
    click.echo(table(rows, list(rows[0])) if rows else "no cells")
    click.echo(f"{spec.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"  ({uri})")
