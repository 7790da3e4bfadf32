"""Errors the CLI turns into exit codes and one-line messages."""

from __future__ import annotations

# Every exit code of the CLI: (code, the commands that use it, what it means). The
# reference page (docs/reference/exit-codes.md) is made from this table; --help points there.
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (0, "every command", "done: every selected cell passed; `verify`: every image verified; "
     "`sbom query`: the package was found; `diff --patch`: no Python micro or Ray moved"),
    (1, "build, test, verify-reproducible, grid, probe, push, manifests, verify, sbom query, "
     "diff --patch", "a build or check failed, or a cell was not verified (a check that "
     "proves parity was skipped or never ran); the gate refused a cell; a manifest was "
     "invalid (nothing written); an image did not verify; no pushed image holds the "
     "package; a patch moved a Python micro or Ray version; `grid`: the harness called a "
     "pair compatible that Ray refuses"),
    (2, "every command", "bad input or environment: a bad matrix file, flag, environment "
     "variable, report or lock; a stale lock; no engine; another run holds the build "
     "directory. One line on stderr names the file, key or flag and what to do; no "
     "traceback, nothing half-written"),
    (3, "grid", "a pair of cells got no verdict"),
    (130, "every command", "interrupted (Ctrl-C): what the run created is removed first"),
    (143, "every command", "terminated (SIGTERM): what the run created is removed first"),
)  # fmt: skip


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
