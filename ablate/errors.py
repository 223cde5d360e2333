"""User-facing errors: each renders as one line that names where, what was expected and what was got."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AblateError(Exception):
    """An error caused by user input; the CLI prints ``str(err)`` on one line, never a traceback."""


class RegistryError(AblateError, KeyError):
    """Unknown or duplicate registry key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SpecError(AblateError, ValueError):
    """A configuration value is invalid.

    ``SpecError("train.steps", "a positive integer", -3, file="exp.yaml")`` renders as
    ``exp.yaml: train.steps: expected a positive integer, got -3``.
    """

    def __init__(self, path: str, expected: str, got: object = None, *, file: str | None = None,
                 hint: str | None = None) -> None:
        self.path = path
        self.expected = expected
        self.got = got
        self.file = file
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        key = f"{self.path}: " if self.path else ""
        got = "" if self.got is None else f", got {self.got!r}"
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}expected {self.expected}{got}{hint}"

    def with_context(self, *, file: str | None = None, prefix: str | None = None) -> SpecError:
        """Return a copy located in ``file`` and/or under the key path ``prefix``."""
        path = self.path
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        return SpecError(path, self.expected, self.got, file=file or self.file, hint=self.hint)


class DataError(AblateError, OSError):
    """A data path is missing, empty, unreadable or unmatched."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid choice to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or an empty string."""
    match = closest(name, choices)
    return f" (did you mean {match!r}?)" if match else ""
