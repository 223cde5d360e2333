"""YAML experiment files → a frozen, validated :class:`ExperimentSpec`, checked up front.

    from ablate.spec import load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
    print(spec.name, spec.hash, [axis for axis, _ in spec.grid])

The schema — every section and key, its type, default and meaning, and how grid, include and
exclude make the cells — is documented in docs/schema.md.
"""

from __future__ import annotations

import os
from typing import Any

from ablate.errors import DataError, SpecError

from ._expand import expand
from ._experiment import ExperimentSpec
from ._parse import Parser
from ._yaml import read_yaml


def load_experiment(path: str | os.PathLike[str], *, check_data: bool = True) -> ExperimentSpec:
    """Read, parse and validate an experiment YAML file; :class:`SpecError` on any problem.

    ``check_data=False`` checks only the dataset's name, not its folders: a spec written for a
    cluster's storage can be validated on a laptop.
    """
    file = os.fspath(path)
    raw, text = read_yaml(file)
    return parse_experiment(raw, file=file, source_text=text, check_data=check_data)


def parse_experiment(mapping: Any, *, file: str | None = None, source_text: str | None = None,
                     check_data: bool = True) -> ExperimentSpec:
    """Validate a parsed YAML mapping into an :class:`ExperimentSpec` (and expand it once, as a check).

    Every registry name and parameter is resolved here, so a typo fails now, not in a trial.
    """
    try:
        spec = Parser(file, check_data).parse(mapping, source_text)
        expand(spec)  # norm × rescale combinations, exclude matches, dotted overrides per cell
    except SpecError as err:
        raise (err.with_context(file=file) if file and not err.file else err) from None
    except DataError as err:  # e.g. a data folder that does not exist: say which file asked for it
        raise (DataError(f"{file}: {err}") if file and not str(err).startswith(f"{file}:") else err) from None
    return spec
