"""Exception classes. Each one carries a message that is printed as the CLI's one-line error."""

from __future__ import annotations

from pathlib import Path


class MathsynthError(Exception):
    """Base class: anything the CLI reports as a one-line error with a non-zero exit."""


class InputFileError(MathsynthError):
    """A user-supplied file is missing, unreadable, or malformed at a given line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(MathsynthError):
    """The effective configuration is invalid (bad YAML, unknown generator, bad value)."""


class OutputDirError(MathsynthError):
    """The output path cannot hold a dataset (a file, an unwritable or pseudo directory)."""


class DatasetConflictError(MathsynthError):
    """The output directory already holds a dataset built from a different configuration."""


class MissingDependencyError(MathsynthError):
    """An optional package a stage needs is not installed."""

    def __init__(self, stage: str, package: str, pip_name: str | None = None) -> None:
        super().__init__(
            f"{stage} needs the package '{package}': pip install {pip_name or package}"
        )


class ModelError(MathsynthError):
    """A model or tokenizer cannot be loaded, or does not fit the task (no chat template, a
    chat template that rewrites the text it renders, a tokenizer without offsets)."""
