"""What a run found: checks, images and cells, as plain JSON-able records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Check:
    name: str
    status: str  # passed | failed | skipped
    detail: str = ""
    stage: str = "test"  # build | test
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, ok: bool, detail: str, stage: str = "test", **data: Any) -> Check:
        return cls(name, PASSED if ok else FAILED, detail, stage, dict(data))


@dataclass
class Image:
    role: str
    tag: str
    id: str
    size_bytes: int
    cached: bool = False
    build_seconds: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class CellResult:
    id: str
    ray: str
    python: str
    variant: str
    status: str = "pending"  # passed | failed | skipped | excluded | built
    detail: str = ""
    images: list[Image] = field(default_factory=list)
    build_checks: list[Check] = field(default_factory=list)
    test_checks: list[Check] = field(default_factory=list)
    tested_image_ids: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def checks(self) -> list[Check]:
        return [*self.build_checks, *self.test_checks]

    def settle(self) -> None:
        """Derive the status from the checks (excluded/skipped cells keep theirs)."""
        if self.status in ("excluded", "skipped"):
            return
        checks = self.checks
        if any(c.status == FAILED for c in checks) or (self.detail and not checks):
            self.status = FAILED
        elif self.test_checks:
            self.status = PASSED
        elif self.build_checks:
            self.status = "built"
        else:
            self.status = "pending"

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["checks"] = [asdict(c) for c in self.checks]
        del doc["build_checks"], doc["test_checks"]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CellResult:
        checks = [Check(**c) for c in doc.get("checks", [])]
        return cls(
            id=doc["id"],
            ray=doc["ray"],
            python=doc["python"],
            variant=doc["variant"],
            status=doc.get("status", "pending"),
            detail=doc.get("detail", ""),
            images=[Image(**i) for i in doc.get("images", [])],
            build_checks=[c for c in checks if c.stage == "build"],
            test_checks=[c for c in checks if c.stage != "build"],
            tested_image_ids=dict(doc.get("tested_image_ids", {})),
            timings=dict(doc.get("timings", {})),
        )
