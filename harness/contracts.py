"""What each consumer of the images documents it needs, kept as data with its source, and
the pure judgements the structure checks make from what was measured in an image.

A cell's `targets:` (matrix.yaml) name its consumers: `kuberay` (the `kuberay-shell` check),
`kubeflow` (`kubeflow:contract`, a cluster check) and `vertex` (`vertex:contract`, below).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class VertexContract:
    """Google's list for a Ray on Vertex AI custom image not built on Google's own images."""

    source: str
    read: str  # when the list was read from the source
    ray: tuple[str, ...]  # the Ray versions Vertex AI runs
    python_minor: str
    packages: tuple[str, ...]  # exact pins, installed with the cell's runtime lock


VERTEX = VertexContract(
    source="Google Cloud documentation, Ray on Vertex AI, custom images (as quoted in issue #15)",
    read="2026-11-30",
    ray=("2.33.0", "2.9.3"),
    python_minor="3.10",
    packages=("python-json-logger==2.0.7",),
)


def vertex_problems(python: str, ray: str, installed: Sequence[str]) -> list[str]:
    """How an image with this Python micro, Ray version and `installed` distributions
    (pip freeze form) falls short of VERTEX ([] when it meets it)."""
    problems = []
    if ray not in VERTEX.ray:
        problems.append(f"Ray {ray} is not one Vertex AI runs ({', '.join(VERTEX.ray)})")
    minor = ".".join(python.split(".")[:2])
    if minor != VERTEX.python_minor:
        problems.append(f"Python {minor} is not {VERTEX.python_minor}")
    have = {_canonical(line.split("==", 1)[0]): line.split("==", 1)[-1] for line in installed}
    for pin in VERTEX.packages:
        name, version = pin.split("==", 1)
        got = have.get(_canonical(name))
        if got != version:
            problems.append(f"{pin} is {'missing' if got is None else f'at {got}'}")
    return problems


def vertex_detail(problems: Sequence[str]) -> str:
    """The check's detail: the reasons, and the list it was judged against."""
    wanted = (
        f"Ray {' or '.join(VERTEX.ray)}, Python {VERTEX.python_minor}, {', '.join(VERTEX.packages)}"
    )
    verdict = "; ".join(problems) if problems else "meets it"
    return f"{verdict} (Vertex AI's list: {wanted}; {VERTEX.source}, read {VERTEX.read})"


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def installed_of(facts: Mapping[str, object]) -> list[str]:
    """The pip-freeze lines a structure probe measured."""
    found = facts.get("pip_freeze")
    return [str(x) for x in found] if isinstance(found, list) else []
