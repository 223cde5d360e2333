"""`ablate plugins`: every registered component, and which distribution provides it.

    ablate plugins --kind norms
"""

from __future__ import annotations

import os
import warnings

import click

KINDS = ("norms", "backbones", "tasks", "datasets", "regularizers")
_COLUMNS = ("kind", "key", "source", "version", "description")


@click.command("plugins")
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="List only this kind of component (default: all of them).")
def command(kind: str | None) -> None:
    """List every component and the distribution (with version) that provides it.

    \b
        ablate plugins                        # norms, backbones, tasks, datasets and regularizers
        ablate plugins --kind norms           # the norm variants an experiment's grid can name
        ablate plugins --kind regularizers    # what train.regularizer can name

    One row per component: kind, key, source distribution ("ablate" for built-ins), version and the
    first paragraph of its docstring.

    Plugins are packages that declare an entry point in the group ``ablate.<kind>`` (see
    plugins/ablate-scalenorm). A plugin that fails to import is listed as a warning line with its
    error; it only fails an experiment that uses it. ABLATE_DISABLE_PLUGIN_AUTOLOAD=1 ignores plugins.
    """
    from ablate.registry import REGISTRIES

    rows: list[tuple[str, ...]] = []
    problems: list[str] = []
    for name in (kind,) if kind else KINDS:
        registry = REGISTRIES[name]
        with warnings.catch_warnings():
            # broken plugins are reported below, one clean line each
            warnings.simplefilter("ignore")
            try:
                entries, broken = registry.listing()  # plugins described from the cache when it holds them
            except Exception as err:  # a broken built-in module must not hide the other kinds
                problems.append(f"{name}: could not load the built-in {name}: {type(err).__name__}: {err}")
                continue
        for entry in entries:
            rows.append((name, entry.key, entry.source, entry.version or "-", entry.description))
        for key, dist, error in broken:
            problems.append(f"{name} {key!r} from {dist} is unavailable: {error}")

    _print_table(rows)
    plugins = sum(1 for row in rows if row[2] != "ablate")
    click.echo(f"\n{len(rows)} components, {plugins} from plugins")
    if os.environ.get("ABLATE_DISABLE_PLUGIN_AUTOLOAD", "").lower() in {"1", "true", "yes"}:
        click.echo("plugin autoload is disabled (ABLATE_DISABLE_PLUGIN_AUTOLOAD)")
    for line in problems:
        click.echo(f"warning: {' '.join(line.split())}", err=True)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    click.echo(fmt.format(*_COLUMNS))
    for row in rows:
        click.echo(fmt.format(*row))
