"""The harness's KubeRay schemas against KubeRay's real CRDs, and `manifests --crd`.

The CRDs are KubeRay's own files (v1.5.1, v1.7.0), kept outside the project as test data:
$RAYCOMPAT_KUBERAY_CRDS, or `../shared/kuberay-crds` beside the checkout. Without them
these tests are reported skipped, with that reason; `.ci/run` sets RAYCOMPAT_REQUIRE=crds,
so there a skip fails.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import crds, k8s, matrix
from harness.errors import HarnessError
from tests.conftest import ROOT

pytestmark = pytest.mark.crds
CRD_DIR = Path(os.environ.get("RAYCOMPAT_KUBERAY_CRDS") or ROOT.parent / "shared" / "kuberay-crds")
CELLS = matrix.load(ROOT / "matrix.yaml").cells
IMAGES = {r: f"example.com/raycompat/ray-{r}@sha256:{'a' * 64}" for r in matrix.ROLES}


@functools.cache
def crds_of(version: str) -> dict[str, crds.Crd]:
    folder = CRD_DIR / version
    if not folder.is_dir():
        pytest.skip(f"KubeRay's {version} CRDs are not at {folder} (set RAYCOMPAT_KUBERAY_CRDS)")
    return crds.load(crds.files_in([folder]))


def rendered(cell: matrix.Cell) -> list[dict[str, Any]]:
    return [
        k8s.raycluster(cell, IMAGES, namespace="ray"),
        k8s.rayjob(cell, IMAGES, namespace="ray"),
        *k8s.rayservice(cell, IMAGES, namespace="ray"),
    ]


def listed(line: str, reasons: dict[str, str]) -> bool:
    """Whether a difference line ("spec.x: ...") is one the schema lists with a reason."""
    return line.split(":", 1)[0] in reasons


@pytest.mark.parametrize("kind", sorted(k8s.SCHEMAS))
def test_each_schema_agrees_with_every_named_crd_or_says_why(kind: str) -> None:
    """Fields, required keys and enums: a difference is allowed only where the schema
    lists it with a reason (`x-crd-differences`), or where the named versions disagree
    among themselves on a field (one that only some of them have is refused: the others
    would prune it)."""
    ours = k8s._schema(kind)
    reasons = k8s._asset(k8s.SCHEMAS[kind])["x-crd-differences"]
    assert all(isinstance(why, str) and len(why) > 20 for why in reasons.values()), reasons
    per_version = {
        v: crds.differences(ours, crds_of(v)[kind].openapi) for v in k8s.KUBERAY_VERSIONS
    }
    everywhere = set.intersection(*(set(d) for d in per_version.values()))
    unexplained = {
        v: [
            line
            for line in diffs
            if not listed(line, reasons)
            and not (line.endswith("only the CRD's (ours refuses it)") and line not in everywhere)
        ]
        for v, diffs in per_version.items()
    }
    assert unexplained == {v: [] for v in k8s.KUBERAY_VERSIONS}
    # and every listed reason still stands for a difference (no stale excuses)
    seen = {line.split(":", 1)[0] for diffs in per_version.values() for line in diffs}
    assert set(reasons) <= seen, set(reasons) - seen


@pytest.mark.parametrize("version", k8s.KUBERAY_VERSIONS)
def test_every_rendered_object_is_valid_against_the_real_crd(version: str) -> None:
    """Nothing the harness renders is refused or pruned by an API server with that CRD."""
    found = crds_of(version)
    assert set(found) == set(k8s.SCHEMAS)
    for cell in CELLS:
        for obj in rendered(cell):
            if obj["kind"] in found:
                assert crds.validate(obj, found[obj["kind"]]) == [], (cell.id, obj["kind"])


@pytest.mark.parametrize("version", k8s.KUBERAY_VERSIONS)
def test_the_three_former_disagreements(version: str) -> None:
    """RayJob.spec.schedule and scaleStrategy.multihostReplicasToDelete are in neither
    CRD (ours refused them too late: now both refuse); SidecarMode is accepted by both."""
    found = crds_of(version)
    job = k8s.rayjob(CELLS[0], IMAGES)
    job["spec"]["schedule"] = "0 * * * *"
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["scaleStrategy"] = {"multihostReplicasToDelete": ["a"]}
    theirs = crds.validate(job, found["RayJob"])
    assert any("schedule" in p and "prunes it" in p for p in theirs), theirs
    assert any("multihostReplicasToDelete" in p for p in theirs), theirs
    ours = k8s.validate(job)
    assert any("schedule" in p for p in ours) and any("multihostReplicas" in p for p in ours)
    sidecar = k8s.rayjob(CELLS[0], IMAGES)
    sidecar["spec"]["submissionMode"] = "SidecarMode"
    assert crds.validate(sidecar, found["RayJob"]) == []
    assert [p for p in k8s.validate(sidecar) if "submissionMode" in p] == []


def test_a_crd_from_kubectl_as_a_list_is_read(tmp_path: Path) -> None:
    """`kubectl get crd A B -o yaml` writes one `List` holding every CRD."""
    docs = [yaml.load(p.read_text(), yaml.CSafeLoader) for p in crds.files_in([CRD_DIR / "v1.5.1"])]
    if not docs:
        pytest.skip(f"no CRDs at {CRD_DIR / 'v1.5.1'}")
    listing = tmp_path / "crds.yaml"
    listing.write_text(yaml.dump({"kind": "List", "items": docs}, Dumper=yaml.CSafeDumper))
    assert set(crds.load([listing])) == set(k8s.SCHEMAS)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("a: [", "not YAML"),
        ("kind: ConfigMap\napiVersion: v1\n", "no ray.io CustomResourceDefinition"),
        ("", "no ray.io CustomResourceDefinition"),
        (
            "kind: CustomResourceDefinition\nspec:\n  group: ray.io\n  names: {kind: RayJob}\n"
            "  versions: [{name: v1alpha1}]\n",
            "the RayJob CRD has no v1 version",
        ),
    ],
)
def test_a_file_that_is_not_a_kuberay_crd_is_refused_naming_it(
    tmp_path: Path, text: str, expect: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as info:
        crds.load([path])
    assert str(path) in str(info.value) and expect in str(info.value)
    with pytest.raises(HarnessError, match="cannot be read"):
        crds.load([tmp_path / "absent.yaml"])


def test_the_translation_refuses_unknown_fields_and_keeps_kubernetes_types() -> None:
    openapi = {
        "type": "object",
        "properties": {
            "port": {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            "maybe": {"type": "string", "nullable": True},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    crd = crds.Crd("X", Path("x.yaml"), openapi)
    ok = {
        "metadata": {"name": "n"},
        "port": "8080",
        "maybe": None,
        "open": {"a": 1},
        "map": {"k": "v"},
    }
    assert crds.validate(ok, crd) == []
    assert crds.validate({**ok, "port": 80}, crd) == []
    bad = crds.validate({**ok, "extra": 1, "map": {"k": 1}}, crd)
    assert any("'extra' was unexpected" in p and "prunes it" in p for p in bad), bad
    assert any("map/k" in p for p in bad), bad


def _images_lock(build: Path) -> Path:
    """An images lock of the default cell as `push` writes it (no engine, no registry)."""
    from harness import registry

    images = []
    for n, role in enumerate(matrix.ROLES, start=4):
        digest = "sha256:" + str(n) * 64
        tag, ref = f"r/ray-{role}:2.60.0-py3.11.2-cpu", f"r/ray-{role}@{digest}"
        cell = ("ray2.60.0-py3.11.2-cpu", "2.60.0", "3.11.2", "cpu")
        images.append(registry.Pushed(*cell, role, tag, digest, ref, "i"))
    registry.write_lock(build / "images.lock.json", "r", images)
    return build / "images.lock.json"


def manifests(build: Path, *crd_files: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "harness", "manifests", "--build-dir", str(build)]
    args += ["--images-lock", str(_images_lock(build)), "--only", "ray=2.60.0,python=3.11.2"]
    for f in crd_files:
        args += ["--crd", str(f)]
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("version", k8s.KUBERAY_VERSIONS)
def test_manifests_validates_against_the_crds_it_is_given(tmp_path: Path, version: str) -> None:
    crds_of(version)  # skips, with the reason, without them
    r = manifests(tmp_path, *crds.files_in([CRD_DIR / version]))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "checked against the CRDs given: RayCluster" in r.stderr
    assert (tmp_path / "deploy" / "ray2.60.0-py3.11.2-cpu" / "rayjob.yaml").is_file()


def test_manifests_refuses_what_a_users_crd_would_prune(tmp_path: Path) -> None:
    """A cluster whose RayJob CRD lacks a field the harness renders (an older KubeRay):
    exit 1 naming the field, and nothing written."""
    crds_of("v1.5.1")
    doc = yaml.load((CRD_DIR / "v1.5.1" / "ray.io_rayjobs.yaml").read_text(), yaml.CSafeLoader)
    [v1] = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
    del v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["entrypoint"]
    older = tmp_path / "older-rayjobs.yaml"
    older.write_text(yaml.dump(doc, Dumper=yaml.CSafeDumper))
    r = manifests(tmp_path, older)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "'entrypoint' was unexpected" in r.stderr and "older-rayjobs.yaml" in r.stderr
    assert "no CRD given for RayCluster, RayService" not in r.stderr  # nothing rendered
    assert not (tmp_path / "deploy").exists()


def test_manifests_with_a_bad_crd_file_exits_2_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.yaml"
    bad.write_text("kind: ConfigMap\n")
    r = manifests(tmp_path, bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: --crd {bad}: no ray.io")
