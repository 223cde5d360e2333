"""``ablate validate``: check experiment files without running anything.

    ablate validate experiments/quickstart.yaml
"""

from __future__ import annotations

import click

from ablate.errors import AblateError


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--no-data-check", "check_data", flag_value=False, default=True,
              help="Check the dataset's name only, not its folders (a spec written for another machine).")
def command(files: tuple[str, ...], check_data: bool) -> None:
    """Check experiment YAML files: schema, names, parameters, grid; runs nothing.

    \b
        ablate validate experiments/quickstart.yaml
        ablate validate experiments/*.yaml        # several files: one line each

    Prints "ok: N cells, NAME" per valid file. An invalid file prints one line naming the file,
    the key path, what was expected and what was found; the exit status is then 2.
    """
    from ablate.spec import expand, load_experiment

    if len(files) == 1:  # one file: errors go through the CLI group's one-line handler
        spec = load_experiment(files[0], check_data=check_data)
        n = len(expand(spec))
        click.echo(f"ok: {n} cell{'s' if n != 1 else ''}, {spec.name}")
        return
    failed = False
    for file in files:
        try:
            spec = load_experiment(file, check_data=check_data)
            n = len(expand(spec))
        except AblateError as err:
            click.echo(f"error: {err}", err=True)
            failed = True
            continue
        click.echo(f"ok: {n} cell{'s' if n != 1 else ''}, {spec.name} ({file})")
    if failed:
        raise SystemExit(2)
