"""What a run found: checks, images and cells, as plain JSON-able records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any


class Word(str, enum.Enum):
    """A str enum that reads, prints and serialises as its value ("passed", not
    "Status.PASSED"), so reports, logs and comparisons with plain strings all agree."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)  # f"{status!r}" in messages reads 'failed'

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    __hash__ = str.__hash__  # a member and its plain string are one dict key


class Status(Word):
    """The one vocabulary of outcomes: checks, cells, grid verdicts and the gate."""

    PASSED = "passed"
    FAILED = "failed"  # the image (or the pair) is wrong
    SKIPPED = "skipped"  # did not run here; the detail says why
    ERROR = "error"  # the harness could not decide; blocks a push like a failure
    WARNING = "warning"  # a finding the matrix's policy reports without failing the cell


class CellStatus(Word):
    """Where a cell stands: an outcome, or not (yet) one."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    # tested, nothing failed, but a check that proves the cell's purpose did not pass
    # (skipped, or never ran): not a pass, and the gate refuses it like a failure
    NOT_VERIFIED = "not verified"
    EXCLUDED = "excluded"  # named by the matrix, or left out by --only: not built
    BUILT = "built"  # built and checked, not tested
    PENDING = "pending"


PASSED, FAILED, SKIPPED, ERROR, WARNING = (
    Status.PASSED,
    Status.FAILED,
    Status.SKIPPED,
    Status.ERROR,
    Status.WARNING,
)
CHECK_STATUSES = tuple(Status)
CELL_STATUSES = tuple(CellStatus)

# The platform whose images run natively on the test host; any other runs under QEMU.
NATIVE_PLATFORM = "linux/amd64"

# The checks that prove what a cell is for: its cluster starts from the images, the
# notebook client and every node agree on Python micro, Ray version and commit (over Ray
# Client and as a real driver, with Ray's own patch-level check), the notebook runs against
# the cluster, and a job through the Jobs API (KubeRay's RayJob, Vertex AI) runs on every
# node with the cell's versions. A cell passes only when each of these ran and passed.
REQUIRED_CHECKS = (
    "cluster:ready",
    "client:parity",
    "driver:parity",
    "notebook:execute",
    "jobs:submit",
)
# Under QEMU a joining node cannot start (verify.EMULATED_DRIVER_SKIP says why, measured):
# there the driver's parity is what jobs:submit proves (its driver runs in the head, a task
# pinned to every node), which stays required.
WAIVED_WHEN_EMULATED = {"driver:parity": "jobs:submit"}


@dataclass
class Check:
    name: str
    status: Status
    detail: str = ""
    stage: str = "test"  # build | test
    data: dict[str, Any] = field(default_factory=dict)
    image_id: str = ""  # structure checks: the image they ran on (the gate compares it)

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # a plain "passed" is read as the enum

    def redacted(self, secret: str | None) -> Check:
        """This check with `secret` masked in its detail and data."""
        if not secret:
            return self
        return Check(
            self.name,
            self.status,
            redact(self.detail, secret),
            self.stage,
            redact(self.data, secret),
            self.image_id,
        )

    @classmethod
    def of(cls, name: str, ok: bool, detail: str, stage: str = "test", **data: Any) -> Check:
        return cls(name, PASSED if ok else FAILED, detail, stage, dict(data))


REDACTED = "<redacted>"


def redact(value: Any, secret: str | None) -> Any:
    """`value` (text, or lists and dicts of it, as check data holds) with every occurrence
    of `secret` replaced by REDACTED; unchanged when there is no secret."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED)
    if isinstance(value, dict):
        return {redact(k, secret): redact(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret) for v in value]
    return value


@dataclass
class Image:
    role: str
    tag: str
    id: str
    size_bytes: int
    cached: bool = False
    build_seconds: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    checked_with: str = ""  # image_checks.fingerprint() of its structure checks


@dataclass
class CellResult:
    id: str
    ray: str
    python: str
    variant: str
    status: CellStatus = CellStatus.PENDING
    platform: str = NATIVE_PLATFORM  # the images' platform; any other: run under QEMU
    detail: str = ""
    images: list[Image] = field(default_factory=list)
    build_checks: list[Check] = field(default_factory=list)
    test_checks: list[Check] = field(default_factory=list)
    tested_image_ids: dict[str, str] = field(default_factory=dict)
    tested_on: str = ""  # the backend the test checks ran on ("containers", "kind")
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def checks(self) -> list[Check]:
        return [*self.build_checks, *self.test_checks]

    @property
    def emulated(self) -> bool:
        return self.platform != NATIVE_PLATFORM

    def unproven(self) -> list[str]:
        """The required checks (REQUIRED_CHECKS) that did not pass, each with its status
        ("driver:parity skipped", "jobs:submit missing"); [] when every one passed."""
        by_name = {c.name: c for c in self.test_checks}
        out = []
        for name in REQUIRED_CHECKS:
            if self.emulated and name in WAIVED_WHEN_EMULATED:
                continue
            check = by_name.get(name)
            if check is None:
                out.append(f"{name} missing")
            elif check.status != PASSED:
                out.append(f"{name} {check.status}")
        return out

    def settle(self) -> None:
        """Derive the status from the checks (excluded/skipped cells keep theirs): failed
        when a check failed or erred; passed only when every required check passed, else
        not verified, whatever else passed."""
        if self.status in (CellStatus.EXCLUDED, CellStatus.SKIPPED):
            return
        checks = self.checks
        if any(c.status in (FAILED, ERROR) for c in checks) or (self.detail and not checks):
            self.status = CellStatus.FAILED
        elif self.test_checks:
            self.status = CellStatus.NOT_VERIFIED if self.unproven() else CellStatus.PASSED
        elif self.build_checks:
            self.status = CellStatus.BUILT
        else:
            self.status = CellStatus.PENDING

    def to_json(self) -> dict[str, Any]:
        """The cell as report.json holds it: a new dict per cell, check and image, sharing
        the values inside them (dataclasses.asdict deep-copied every check's data, a fifth
        of a no-op build's time; the report only serialises them)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _CHECK_LISTS}
        doc["images"] = [_shallow(i) for i in self.images]
        doc["checks"] = [_shallow(c) for c in self.checks]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CellResult:
        """Read one cell back; ValueError naming the field when it is not what `to_json`
        writes (a hand-edited or foreign report)."""
        _shape(doc)
        checks = [Check(**{**c, "status": Status(c["status"])}) for c in doc.get("checks", [])]
        return cls(
            id=doc["id"],
            ray=doc["ray"],
            python=doc["python"],
            variant=doc["variant"],
            platform=doc.get("platform", NATIVE_PLATFORM),
            status=CellStatus(doc.get("status", "pending")),
            detail=doc.get("detail", ""),
            images=[Image(**i) for i in doc.get("images", [])],
            build_checks=[c for c in checks if c.stage == "build"],
            test_checks=[c for c in checks if c.stage != "build"],
            tested_image_ids=dict(doc.get("tested_image_ids", {})),
            tested_on=doc.get("tested_on", ""),
            timings=dict(doc.get("timings", {})),
        )


_CHECK_LISTS = ("build_checks", "test_checks")  # written as one list, "checks"


def _shallow(item: Check | Image) -> dict[str, Any]:
    return {f.name: getattr(item, f.name) for f in fields(item)}


_CHECK_FIELDS = {"name": str, "status": str, "detail": str, "stage": str, "data": dict}
_IMAGE_FIELDS = {"role": str, "tag": str, "id": str, "size_bytes": int}


def _fields(doc: object, types: dict[str, type], where: str, required: tuple[str, ...]) -> None:
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is {type(doc).__name__}, not an object")
    for key in required:
        if key not in doc:
            raise ValueError(f"{where} has no {key!r}")
    for key, kind in types.items():
        if key in doc and not isinstance(doc[key], kind):
            raise ValueError(f"{where}.{key} is {type(doc[key]).__name__}, not {kind.__name__}")


def _shape(doc: object) -> None:
    """Raise ValueError unless `doc` has the shape CellResult.to_json writes."""
    _fields(
        doc,
        {
            "id": str,
            "ray": str,
            "python": str,
            "variant": str,
            "platform": str,
            "status": str,
            "detail": str,
            "tested_on": str,
        },
        "cell",
        ("id", "ray", "python", "variant"),
    )
    assert isinstance(doc, dict)
    where = f"cell {doc['id']!r}"
    if doc.get("status", "pending") not in CELL_STATUSES:
        raise ValueError(f"{where}: unknown status {doc.get('status')!r}")
    for key in ("checks", "images"):
        if not isinstance(doc.get(key, []), list):
            raise ValueError(f"{where}.{key} is not a list")
    for i, c in enumerate(doc.get("checks", [])):
        _fields(c, {**_CHECK_FIELDS, "image_id": str}, f"{where}.checks[{i}]", ("name", "status"))
        if c["status"] not in CHECK_STATUSES:
            raise ValueError(f"{where}.checks[{i}]: unknown status {c['status']!r}")
        unknown = set(c) - {*_CHECK_FIELDS, "image_id"}
        if unknown:
            raise ValueError(f"{where}.checks[{i}]: unknown field(s) {sorted(unknown)}")
    for i, image in enumerate(doc.get("images", [])):
        _fields(image, _IMAGE_FIELDS, f"{where}.images[{i}]", tuple(_IMAGE_FIELDS))
    for key in ("tested_image_ids", "timings"):
        value = doc.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where}.{key} is not an object")
    if not all(isinstance(v, str) for v in doc.get("tested_image_ids", {}).values()):
        raise ValueError(f"{where}.tested_image_ids has a value that is not an image id")
