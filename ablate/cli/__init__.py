"""The ``ablate`` command line.

    ablate run experiments/quickstart.yaml

Each command lives in its own module ``ablate/cli/cmd_<name>.py`` exposing ``command`` (a click
command); they are discovered here, so adding a command touches no shared file. Errors caused by
user input (:class:`ablate.errors.AblateError`) print as one line, never a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import click

from ablate import __version__
from ablate.errors import AblateError


class _Group(click.Group):
    """Discovers ``cmd_*`` modules lazily and turns AblateError into a one-line message."""

    def _modules(self) -> dict[str, str]:
        names = {}
        for info in pkgutil.iter_modules(__path__):
            if info.name.startswith("cmd_"):
                names[info.name[4:].replace("_", "-")] = f"{__name__}.{info.name}"
        return names

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._modules())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self._modules().get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(module).command  # type: ignore[no-any-return]

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AblateError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ablate")
def main() -> None:
    """ablate: normalization ablations for image-restoration transformers.

    \b
        ablate run experiments/quickstart.yaml     # the quickstart sweep (CPU, minutes)
        ablate plugins --kind norms                # every norm variant and where it comes from
        ablate ui                                  # open the results in the MLflow UI
    """
