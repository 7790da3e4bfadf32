"""Where a cell's Ray cluster runs: plain containers (default) or Kubernetes (kind)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol


class Cluster(Protocol):
    """What verify.py needs from a backend: one probe and one set of checks for both."""

    cell_id: str
    head: str
    notebook: str
    worker_names: list[str]
    jupyter_token: str
    head_host: str  # how the notebook reaches the head (network alias or Service name)

    def __enter__(self) -> Cluster: ...

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def node_containers(self) -> list[str]: ...

    def published_ports(self) -> dict[str, list[str]]: ...

    def dead_nodes(self) -> dict[str, str]: ...

    def save_logs(self) -> dict[str, str]: ...

    def exec(
        self,
        container: str,
        command: list[str],
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]: ...

    def probe(
        self, container: str, args: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> dict[str, Any]: ...

    def put_file(self, container: str, path: str, content: str) -> None: ...
