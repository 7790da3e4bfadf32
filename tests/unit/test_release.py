"""Push target, images lock and the CI job matrix (pure logic and CLI, no Docker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

from harness import matrix, registry
from harness.errors import HarnessError, MatrixError
from tests.unit.test_cli import harness

MINIMAL = 'version: 1\nray: ["2.60.0"]\npython: ["3.11.2"]\nvariants: [cpu]\n'


@pytest.mark.parametrize(
    "value",
    [
        "europe-west4-docker.pkg.dev/my-project/ray",
        "127.0.0.1:5000/raycompat",
        "registry.example.com/team/ray",
    ],
)
def test_registry_paths_accepted(value: str) -> None:
    assert matrix.registry_problem(value) is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("https://europe-west4-docker.pkg.dev/p/r", "no scheme"),
        ("user:secret@europe-west4-docker.pkg.dev/p/r", "credentials"),
        ("Europe-West4-docker.pkg.dev/P/R", "lower case"),
        ("europe-west4-docker.pkg.dev", "HOST[:PORT]/PATH"),
        ("", "registry path"),
    ],
)
def test_bad_registry_paths_refused(value: str, why: str) -> None:
    problem = matrix.registry_problem(value)
    assert problem and why in problem


def test_registry_key_in_matrix(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix(MINIMAL + "registry: europe-west4-docker.pkg.dev/p/ray\n"))
    assert m.registry == "europe-west4-docker.pkg.dev/p/ray"
    with pytest.raises(MatrixError, match=r"matrix.yaml:5: registry: .*credentials"):
        matrix.load(write_matrix(MINIMAL + "registry: me:pw@host.example/ray\n"))


def test_target_prefers_the_environment(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix(MINIMAL + "registry: europe-west4-docker.pkg.dev/p/ray\n"))
    assert registry.target(m, {}) == "europe-west4-docker.pkg.dev/p/ray"
    assert registry.target(m, {registry.ENV: "127.0.0.1:5000/x"}) == "127.0.0.1:5000/x"
    with pytest.raises(HarnessError, match="RAYCOMPAT_REGISTRY"):
        registry.target(m, {registry.ENV: "http://x/y"})
    with pytest.raises(HarnessError, match="no registry to push to"):
        registry.target(matrix.load(write_matrix(MINIMAL)), {})


def pushed(cell: str, role: str, digest: str) -> registry.Pushed:
    return registry.Pushed(
        cell,
        "2.60.0",
        "3.11.2",
        "cpu",
        role,
        f"r.example/ray/ray-{role}:t",
        digest,
        f"r.example/ray/ray-{role}@{digest}",
        "i",
    )


def test_images_lock_merges_cells_and_replaces_pushes(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.json"
    registry.write_lock(
        path, "r", [pushed("a", "head", "sha256:1"), pushed("b", "head", "sha256:2")]
    )
    registry.write_lock(path, "r", [pushed("a", "head", "sha256:3")])
    doc = registry.read_lock(path)
    assert [(e.cell, e.digest) for e in doc.images] == [("a", "sha256:3"), ("b", "sha256:2")]
    registry.write_lock(path, "other", [pushed("c", "head", "sha256:4")])  # new registry: fresh
    assert [e.cell for e in registry.read_lock(path).images] == ["c"]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ([], "no list of images"),
        ({"schema": 1, "registry": "r", "images": []}, "schema 1"),
        ({"schema": registry.LOCK_SCHEMA, "images": []}, "no registry"),
        ({"schema": registry.LOCK_SCHEMA, "registry": "r", "images": ["x"]}, "images[0]"),
        (
            {"schema": registry.LOCK_SCHEMA, "registry": "r", "images": [{"cell": "a"}]},
            "missing",
        ),
        (
            {
                "schema": registry.LOCK_SCHEMA,
                "registry": "r",
                "images": [{**asdict(pushed("a", "head", "sha256:1")), "digest": 5}],
            },
            "string",
        ),
        (
            {
                "schema": registry.LOCK_SCHEMA,
                "registry": "r",
                "images": [{**asdict(pushed("a", "head", "sha256:1")), "ref": "r/x:latest"}],
            },
            "sha256 digest",
        ),
    ],
)
def test_images_lock_of_the_wrong_shape_is_refused(tmp_path: Path, doc: object, why: str) -> None:
    path = tmp_path / "images.lock.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(HarnessError, match="not an images lock") as exc:
        registry.read_lock(path)
    assert why in str(exc.value)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(HarnessError, match="not an images lock"):
        registry.read_lock(path)


def test_bad_reports_are_clear(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no test report"):
        registry.load_reports([tmp_path / "missing.json"])
    a = tmp_path / "a.json"
    a.write_text("{")
    with pytest.raises(HarnessError, match="not a harness report"):
        registry.load_reports([a])


def test_github_job_matrix(tmp_path: Path) -> None:
    out = tmp_path / "github_output"
    r = harness(
        "matrix", "--github", "--only", "ray=2.60.0,variant=cpu", env={"GITHUB_OUTPUT": str(out)}
    )
    assert r.returncode == 0, r.stderr
    line = out.read_text().strip()
    assert line.startswith("cells=")
    include = json.loads(line[len("cells=") :])["include"]
    assert {c["cell"] for c in include} == {
        "ray2.60.0-py3.11.2-cpu",
        "ray2.60.0-py3.13.5-cpu",
        "ray2.60.0-py3.13.15-cpu",
    }
    assert all(c["only"].startswith("ray=2.60.0,python=") for c in include)


def test_push_without_registry_is_exit_2_before_docker(write_matrix: Callable[[str], Path]) -> None:
    path = write_matrix(MINIMAL)
    r = harness("push", "--matrix", str(path), env={registry.ENV: ""})
    assert r.returncode == 2
    assert "no registry to push to" in r.stderr and "Traceback" not in r.stderr


def test_manifests_without_images_lock_is_exit_2(tmp_path: Path) -> None:
    r = harness("manifests", "--build-dir", str(tmp_path))
    assert r.returncode == 2
    assert "no images lock; run `nox -s push` first" in r.stderr


def test_manifests_write_nothing_when_anything_is_invalid(tmp_path: Path) -> None:
    """One complete cell and one without its notebook image: nothing is written, exit 1."""
    lock = tmp_path / "images.lock.json"
    entries = [
        pushed("ray2.60.0-py3.11.2-cpu", role, "sha256:" + "a" * 64)
        for role in ("head", "worker", "notebook")
    ]
    entries.append(pushed("ray2.60.0-py3.13.5-cpu", "head", "sha256:" + "b" * 64))
    registry.write_lock(lock, "r.example/ray", entries)
    r = harness("manifests", "--build-dir", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert "no pushed worker, notebook image" in r.stderr and "nothing written" in r.stderr
    assert not (tmp_path / "deploy").exists()
