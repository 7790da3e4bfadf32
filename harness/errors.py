"""Errors the CLI turns into exit codes and one-line messages."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input or environment: the CLI prints the message and exits 2."""

    exit_code = 2


class MatrixError(HarnessError):
    """matrix.yaml is malformed or asks for something that cannot be built."""

    def __init__(self, path: str, key: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {key}: {message}")
        self.path = path
        self.key = key
        self.line = line


class EngineError(HarnessError):
    """The Docker engine is missing, unreachable or refused a request."""
