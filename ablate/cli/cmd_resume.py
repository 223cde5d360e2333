"""`ablate resume`: continue an interrupted sweep."""

from __future__ import annotations

import click

from ._options import cluster_options, load, state_dir_option, storage_options, tracking_option, yes_option
from .cmd_run import max_retries_option, sweep_command


@click.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@storage_options
@yes_option
@max_retries_option
@click.option("--no-dashboard", "dashboard", flag_value=False, default=True,
              help="Do not build the dashboard at the end.")
def command(**kwargs: object) -> None:
    """Continue an experiment: finished cells are kept, interrupted ones resume from their checkpoint.

    \b
        ablate resume experiments/quickstart.yaml

    The same as `ablate run FILE` without --force; it exists so the intent reads clearly. Cells left
    running by a driver that is gone (`ablate status` shows them stale) are recorded as killed first.
    A file with a `search:` section continues its search (the same as `ablate search FILE`).
    """
    dashboard = bool(kwargs.pop("dashboard"))
    if load(str(kwargs["file"])).search is not None:  # a search file: its studies continue
        from . import cmd_search

        click.get_current_context().invoke(cmd_search.command, **kwargs)
        return
    sweep_command(force=False, dashboard=dashboard, **kwargs)  # type: ignore[arg-type]
