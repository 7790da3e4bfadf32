"""Where things live: all relative to the directory of the matrix file unless overridden."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

# The harness's checkout: its own Dockerfile and the files it copies in (images/), the
# matrix schema, the docs, all beside this package.
PROJECT = Path(__file__).resolve().parent.parent
OWN_IMAGES = PROJECT / "images"


def manifest_file(build: Path, cell_id: str, role: str) -> Path:
    """An image's build manifest under a build directory (the one `build` wrote, or the
    one beside a report that `push` reads)."""
    return build / "manifests" / cell_id / f"{role}.json"


def sbom_file(build: Path, cell_id: str, role: str) -> Path:
    """An image's SBOM under a build directory, as `build` writes it."""
    return build / "sbom" / cell_id / f"{role}.cdx.json"


@dataclass(frozen=True)
class Paths:
    root: Path  # directory of matrix.yaml
    build: Path  # reports, logs, build contexts
    locks: Path  # committed lock files, locks/<cell-id>/{runtime,notebook}.txt
    images: Path  # Dockerfile(s)
    wheelhouse: Path  # host wheel cache shared by all cells

    @classmethod
    def for_matrix(cls, matrix: Path, build: Path | None = None) -> Paths:
        root = matrix.resolve().parent
        wheelhouse = os.environ.get("HARNESS_WHEELHOUSE")
        if wheelhouse and any(
            p.exists() and not p.is_dir() for p in (Path(wheelhouse), *Path(wheelhouse).parents)
        ):
            raise HarnessError(
                f"HARNESS_WHEELHOUSE={wheelhouse}: not a directory (a file is in the way); "
                "name a directory for the wheel cache, or unset it for .cache/wheelhouse"
            )
        return cls(
            root=root,
            build=(build or root / "build").resolve(),
            locks=root / "locks",
            images=_images(root),
            wheelhouse=Path(wheelhouse) if wheelhouse else root / ".cache" / "wheelhouse",
        )

    @property
    def dockerfile(self) -> Path:
        return self.images / "Dockerfile"

    @property
    def state(self) -> Path:
        return self.build / "state.json"

    def logs(self, cell_id: str) -> Path:
        return self.build / "logs" / cell_id

    def manifest(self, cell_id: str, role: str) -> Path:
        return manifest_file(self.build, cell_id, role)

    def sbom(self, cell_id: str, role: str) -> Path:
        return sbom_file(self.build, cell_id, role)

    def context(self, cell_id: str) -> Path:
        return self.build / "context" / cell_id


def _images(root: Path) -> Path:
    """`images/` beside the matrix when the user keeps their own Dockerfile there, else the
    harness's own: a matrix kept in another directory builds with the project's images."""
    mine = root / "images"
    if (mine / "Dockerfile").is_file():
        return mine
    if (OWN_IMAGES / "Dockerfile").is_file():
        return OWN_IMAGES
    raise HarnessError(
        f"{mine}/Dockerfile: not found, and the harness's own images/ is missing "
        f"({OWN_IMAGES}); install the harness from its checkout (pip install -e .)"
    )
