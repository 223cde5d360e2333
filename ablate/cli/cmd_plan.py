"""``ablate plan``: the cells an experiment would run, without running them.

    ablate plan experiments/quickstart.yaml
"""

from __future__ import annotations

import json

import click


@click.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one aligned row per cell; json: name, spec hash and each cell's full config.")
def command(file: str, fmt: str) -> None:
    """List the cells of an experiment (id, norm, rescale, backbone, task, seed, other axes).

    \b
        ablate plan experiments/quickstart.yaml
        ablate plan experiments/quickstart.yaml --format json | python -m json.tool

    Runs nothing: the file is validated and the grid expanded. Columns beyond the fixed ones are the
    train./probes. fields (and data) whose values differ between cells. The id is the cell's stable
    identity: the Ray trial name and the MLflow tag ``ablate.cell``.
    """
    from ablate.report import table
    from ablate.spec import expand, load_experiment, plan_rows

    spec = load_experiment(file)
    cells = expand(spec)
    rows = plan_rows(cells)
    if fmt == "json":
        out = {
            "name": spec.name,
            "hash": spec.hash,
            "file": file,
            "cells": [{**row, "config": cell.to_config()} for row, cell in zip(rows, cells)],
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    click.echo(table(rows))
    n = len(cells)
    click.echo(f"{n} cell{'s' if n != 1 else ''} ({spec.name}, spec {spec.hash})")
