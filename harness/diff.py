"""What changed between two states of the images: two lock trees (`locks/` as committed
before and after a re-lock) or two `images.lock.json` (two pushes).

Per image (cell and role): Python packages added, removed and moved, Debian packages the
same (lock trees), the digest (pushes), and whether the Python micro or the Ray version
changed, which a patch rebuild must never do: the diff says so loudly, and `--patch` makes
it exit 1. Head and worker install one lock, so they are shown together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import debian_lock, lock
from harness.errors import HarnessError
from harness.matrix import ROLES

if TYPE_CHECKING:
    from harness.registry import Pushed

_HEADER = re.compile(r"^# kind: (\w+); python: ([0-9.]+);", re.M)
_CELL = re.compile(r"^ray[^/]*-py[0-9.]+-[a-z0-9]+(-arm64)?$")
LOCK_ROLES = {"runtime": ("head", "worker"), "notebook": ("notebook",)}


@dataclass(frozen=True)
class Image:
    """What one side knows of one image; packages are {} where that side has none."""

    python: str
    ray: str
    python_packages: Mapping[str, str] = field(default_factory=dict)
    debian_packages: Mapping[str, str] = field(default_factory=dict)
    digest: str = ""
    image_id: str = ""  # pushes: the tested image behind the digest
    layers: str = ""  # pushes: the layers' compression, where the lock records it


def load(path: Path) -> tuple[str, dict[tuple[str, str], Image]]:
    """One side: its kind ("locks" or "push") and its images by (cell, role)."""
    if path.is_dir():
        return "locks", _from_locks(path)
    if path.is_file():
        return "push", _from_images_lock(path)
    raise HarnessError(f"{path}: not found; give a lock tree (locks/) or an images.lock.json")


def _from_locks(root: Path) -> dict[tuple[str, str], Image]:
    out: dict[tuple[str, str], Image] = {}
    cells = sorted(p for p in root.iterdir() if p.is_dir() and _CELL.match(p.name))
    if not cells:
        raise HarnessError(f"{root}: no cell's locks in it (locks/<cell>/runtime.txt)")
    for cell in cells:
        for kind, roles in LOCK_ROLES.items():
            path = cell / f"{kind}.txt"
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            header = _HEADER.search(text)
            pins = {p.name: p.version for p in lock.parse(text)}
            python = header.group(2) if header else ""
            image = Image(python, pins.get("ray", ""), pins, _debian(root, cell.name, python))
            for role in roles:
                out[(cell.name, role)] = image
    return out


def _debian(root: Path, cell: str, python: str) -> dict[str, str]:
    """The Debian packages of the cell's base lock, when the tree has one."""
    arch = "-arm64" if cell.endswith("-arm64") else ""
    found = sorted((root / "bases").glob(f"debian-*-py{python}{arch}.txt"))
    if len(found) != 1:
        return {}
    return {d.name: d.version for d in debian_lock.read(found[0])[1]}


def _from_images_lock(path: Path) -> dict[tuple[str, str], Image]:
    from harness.registry import read_lock  # the one reader of images.lock.json

    return pushed_images(read_lock(path).images)


def pushed_images(entries: Iterable[Pushed]) -> dict[tuple[str, str], Image]:
    """What a push recorded of each image (images.lock.json): no package lists."""
    return {
        (e.cell, e.role): Image(e.python, e.ray, digest=e.digest, image_id=e.image_id,
                                layers=e.layers)
        for e in entries
    }  # fmt: skip


def moves(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """A line per package: `name a -> b`, `+name b`, `-name a`; [] when nothing moved."""
    out = [f"{n} {old[n]} -> {new[n]}" for n in sorted(old) if n in new and old[n] != new[n]]
    out += [f"+{n} {new[n]}" for n in sorted(set(new) - set(old))]
    out += [f"-{n} {old[n]}" for n in sorted(set(old) - set(new))]
    return out


@dataclass
class Diff:
    lines: list[str]
    identity_changed: list[str]  # images whose Python micro or Ray moved

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def diff(old: Mapping[tuple[str, str], Image], new: Mapping[tuple[str, str], Image]) -> Diff:
    lines: list[str] = []
    loud: list[str] = []
    unchanged: list[str] = []
    cells = sorted({c for c, _ in old} | {c for c, _ in new})
    for cell in cells:
        groups: dict[str, list[str]] = {}  # the same lines: one entry for several roles
        for role in ROLES:
            a, b = old.get((cell, role)), new.get((cell, role))
            if a is None and b is None:
                continue
            if a == b:
                unchanged.append(f"{cell}/{role}")
                continue
            said = "\n".join(_image_lines(cell, role, a, b, loud))
            groups.setdefault(said, []).append(role)
        for said, roles in groups.items():
            lines.append(f"{cell} ({', '.join(roles)}):")
            lines += [f"  {line}" for line in said.split("\n")]
    if unchanged:
        lines.append(f"unchanged: {len(unchanged)} image(s)")
    return Diff(lines or ["no image in either side"], loud)


def _image_lines(
    cell: str, role: str, a: Image | None, b: Image | None, loud: list[str]
) -> list[str]:
    if a is None:
        return [f"new image: Python {b.python}, Ray {b.ray}" if b else "new image"]
    if b is None:
        return ["gone"]
    body: list[str] = []
    if (a.python, a.ray) == (b.python, b.ray):
        body.append(f"Python micro and Ray unchanged ({b.python}, Ray {b.ray})")
    else:
        loud.append(f"{cell}/{role}")
        what = []
        if a.python != b.python:
            what.append(f"Python {a.python} -> {b.python}")
        if a.ray != b.ray:
            what.append(f"Ray {a.ray} -> {b.ray}")
        body.append(f"CHANGED: {', '.join(what)}: not a patch rebuild")
    if a.digest or b.digest:
        same = a.digest == b.digest
        body.append(
            f"digest {'unchanged' if same else 'moved'}: {a.digest[:19]} -> {b.digest[:19]}"
            + ("" if same else _why_moved(a, b))
        )
    for label, x, y in (
        ("Python", a.python_packages, b.python_packages),
        ("Debian", a.debian_packages, b.debian_packages),
    ):
        if not x and not y:
            continue
        moved = moves(x, y)
        body.append(f"{label} packages: " + ("; ".join(moved) if moved else "none moved"))
    return body


def _why_moved(a: Image, b: Image) -> str:
    """Whether a moved digest is another image or the same one uploaded differently."""
    if not (a.image_id and b.image_id):
        return ""
    if a.image_id != b.image_id:
        return f" (another image: {a.image_id[:19]} -> {b.image_id[:19]})"
    if a.layers and b.layers and a.layers != b.layers:
        return f" (the same image, {a.image_id[:19]}; its layers {a.layers} -> {b.layers})"
    return f" (the same image, {a.image_id[:19]})"


def run(old: Path, new: Path, patch: bool) -> tuple[str, int]:
    """The diff as text, and the exit code (1 with `patch` when a Python micro or Ray
    version changed)."""
    kind_a, a = load(old)
    kind_b, b = load(new)
    if kind_a != kind_b:
        raise HarnessError(
            f"{old} is a {kind_a} side and {new} a {kind_b} side: compare like with like"
        )
    d = diff(a, b)
    text = d.text()
    if d.identity_changed:
        text += (
            f"PYTHON MICRO OR RAY CHANGED in {len(d.identity_changed)} image(s): "
            f"{', '.join(d.identity_changed[:6])}\n"
        )
    return text, 1 if patch and d.identity_changed else 0
