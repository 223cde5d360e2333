"""``ablate dashboard``: an experiment's results as one self-contained HTML page.

    ablate dashboard --experiment quickstart
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ._options import state_dir_option, tracking_option


@click.command("dashboard")
@click.argument("spec", required=False, metavar="[SPEC]")
@click.option("--experiment", "-e", "experiments", multiple=True, metavar="NAME",
              help="MLflow experiment (the YAML's name); repeat to read several. Default: the spec's experiments.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: <state-dir>/dashboards/<experiment>-<spec>.html).")
@click.option("--static", is_flag=True, default=False,
              help="Plots as static SVG images and no JavaScript (the default is interactive plotly.js plots, "
                   "inline; without the plotly package the page is static anyway).")
@state_dir_option
@tracking_option
def command(spec: str | None, experiments: tuple[str, ...], output: Path | None, static: bool, state_dir: Path,
            tracking_uri: str | None) -> None:
    """Write the dashboard of an experiment: ablation table, paired differences, divergence plots.

    \b
        ablate dashboard --experiment quickstart
        ablate dashboard dashboards/divergence.yaml -e quickstart -o divergence.html
        ablate dashboard -e quickstart --static          # no JavaScript

    SPEC is a dashboard YAML (see dashboards/), or a name in ./dashboards; without it, the default
    norm-ablation dashboard. The page needs no network to view: styles and plotly.js inline (hover
    values, legend toggles, zoom), or with --static every plot an inline SVG.
    """
    from ablate.report import build_dashboard
    from ablate.track import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, None, state_dir)
    stats: dict[str, float] = {}
    t0 = time.perf_counter()
    budgets: list[Any] = []
    if len(experiments) == 1:  # a search's experiment: what each variant's study spent
        from ablate.tune import read_budgets, storage_url

        budgets = read_budgets(storage_url(uri, state_dir), experiments[0])
    out = build_dashboard(spec, list(experiments) or None, uri, output, state_dir=state_dir, stats=stats,
                          interactive=False if static else None, budgets=budgets)
    cells = int(stats.get("cells", 0))
    if cells == 0:
        click.echo(f"note: {', '.join(experiments) or 'the experiment'} has no cell runs yet; the page says so",
                   err=True)
    click.echo(f"wrote {out} ({stats.get('bytes', 0) / 1024:.0f} KiB, {cells} cells, "
               f"{time.perf_counter() - t0:.1f} s)")
