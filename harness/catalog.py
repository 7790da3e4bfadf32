"""The image catalog: what was pushed, for the people who run the images.

From `images.lock.json` (what `push` recorded), the SBOMs `push` kept by digest (key
packages) and the test reports (which checks passed, and when), one static HTML page and
one Markdown page: a row per pushed tag with its digest, platforms, Python micro, Ray
version and key packages; the compatibility of every notebook with every cluster; and the
lines a user copies (the RayCluster image, the `ray.init` address, the Kubeflow image).

The compatibility table applies the rule the grid proves on real clusters (`harness
grid`): a notebook and a cluster may talk when their Python micro and Ray version are
equal. The HTML page needs nothing from the network: its style and its filter box are
inline, and every value from the files is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import sbom
from harness.files import write_atomic
from harness.matrix import ROLES
from harness.registry import ImagesLock, Pushed
from harness.results import CellResult

KEY_PACKAGES = ("ray", "cpython", "numpy", "pyarrow", "grpcio", "protobuf", "jupyterlab",
                "nvidia-cuda-runtime-cu12", "libssl3")  # fmt: skip
RAY_CLIENT_PORT = 10001


@dataclass
class Row:
    image: Pushed
    packages: dict[str, str] = field(default_factory=dict)  # name -> version, from the SBOM
    passed: list[str] = field(default_factory=list)  # the checks that passed
    tested: str = ""  # when the report that tested it was written


def _packages(build: Path, digest: str) -> dict[str, str]:
    found = {}
    for c in sbom.pushed_components(build, digest) or []:
        name = str(c.get("name", ""))
        if name.lower() in KEY_PACKAGES:
            found[name.lower()] = str(c.get("version", ""))
    return found


def rows(lock: ImagesLock, build: Path, results: Mapping[str, tuple[CellResult, str]]) -> list[Row]:
    """One row per pushed image, with its SBOM's key packages and its cell's checks."""
    out = []
    order = {role: i for i, role in enumerate(ROLES)}
    for image in sorted(lock.images, key=lambda e: (e.cell, order.get(e.role, len(order)))):
        row = Row(image, _packages(build, image.digest))
        found = results.get(image.cell)
        if found is not None:
            result, when = found
            row.tested = when
            for c in result.checks:
                if c.status != "passed":
                    continue
                if c.name.startswith("image:") and not c.name.startswith(f"image:{image.role}:"):
                    continue  # another role's structure check
                row.passed.append(c.name)
        out.append(row)
    return out


def _cells(lock: ImagesLock) -> dict[str, dict[str, Pushed]]:
    by: dict[str, dict[str, Pushed]] = {}
    for e in lock.images:
        by.setdefault(e.cell, {})[e.role] = e
    return dict(sorted(by.items()))


def grid(lock: ImagesLock) -> tuple[list[str], list[str], dict[tuple[str, str], bool]]:
    """Notebook cells, cluster cells, and whether each pair may talk (same micro and Ray)."""
    cells = _cells(lock)
    notebooks = [c for c, roles in cells.items() if "notebook" in roles]
    clusters = [c for c, roles in cells.items() if "head" in roles]
    ok = {}
    for nb in notebooks:
        n = cells[nb]["notebook"]
        for cl in clusters:
            h = cells[cl]["head"]
            ok[(nb, cl)] = (n.python, n.ray) == (h.python, h.ray)
    return notebooks, clusters, ok


def usage(lock: ImagesLock) -> list[tuple[str, list[str]]]:
    """Per cell: the lines a user copies."""
    out = []
    for cell, roles in _cells(lock).items():
        lines = []
        if "head" in roles:
            lines.append(f"RayCluster headGroupSpec image: {roles['head'].ref}")
        if "worker" in roles:
            lines.append(f"RayCluster workerGroupSpecs image: {roles['worker'].ref}")
        if "notebook" in roles:
            lines.append(f"Kubeflow notebook image: {roles['notebook'].ref}")
        some = next(iter(roles.values()))
        lines.append(
            f'ray.init("ray://<head service>:{RAY_CLIENT_PORT}")  # from that notebook image '
            f"only: Python {some.python}, Ray {some.ray}"
        )
        out.append((cell, lines))
    return out


# Who pulls zstd layers (docs/explanation/gate.md, "Layer compression")
ZSTD_NOTE = (
    "Images with zstd layers are pulled only by containerd 1.5 or later (the nodes of every "
    "supported Kubernetes release) and Docker 23 or later; Docker 20.10 and older refuse them."
)


def _platforms(e: Pushed) -> str:
    where = ", ".join(f"{p.platform} ({p.proven})" for p in e.platforms) or "linux/amd64"
    return where + (f"; {e.layers} layers" if e.layers else "")


def _zstd(lock: ImagesLock) -> bool:
    return any(e.layers == "zstd" for e in lock.images)


def _key_packages(r: Row) -> str:
    return ", ".join(f"{n} {v}" for n, v in sorted(r.packages.items()) if n != "cpython")


def markdown(lock: ImagesLock, table: Sequence[Row]) -> str:
    def cell(text: object) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = [
        "# Ray image catalog",
        "",
        f"Registry `{cell(lock.registry)}`, updated {cell(lock.updated)}. Deploy by digest.",
        "",
        "| tag | digest | platforms | Python | Ray | key packages | checks passed | tested | "
        "pushed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        e = r.image
        lines.append(
            f"| `{cell(e.tag)}` | `{cell(e.digest)}` | {cell(_platforms(e))} | {cell(e.python)} "
            f"| {cell(e.ray)} | {cell(_key_packages(r)) or '–'} | {len(r.passed)} | "
            f"{cell(r.tested) or '–'} | {cell(e.pushed_at) or '–'} |"
        )
    if _zstd(lock):
        lines += ["", ZSTD_NOTE]
    notebooks, clusters, ok = grid(lock)
    lines += [
        "",
        "## Which notebook goes with which cluster",
        "",
        "Same Python micro and Ray version: ✅ may talk; ❌ Ray refuses a driver (Ray Client "
        "only warns, then fails later).",
        "",
        "| notebook \\ cluster | " + " | ".join(cell(c) for c in clusters) + " |",
        "|---|" + "---|" * len(clusters),
    ]
    for nb in notebooks:
        marks = " | ".join("✅" if ok[(nb, cl)] else "❌" for cl in clusters)
        lines.append(f"| {cell(nb)} | {marks} |")
    lines += ["", "## Copy and paste", ""]
    for cell_id, use in usage(lock):
        lines += [f"### {cell(cell_id)}", "", "```", *use, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: .4em .6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.ok { background: #2e7d32; color: white; text-align: center; }
td.no { background: #c62828; color: white; text-align: center; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #f4f4f4; padding: .6em; overflow-x: auto; }
details summary { cursor: pointer; }
"""

FILTER = """
const box = document.getElementById("filter");
const rows = Array.from(document.querySelectorAll("#images tbody tr"));
function apply() {
  const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let shown = 0;
  for (const row of rows) {
    const text = row.textContent.toLowerCase();
    const keep = words.every((w) => text.includes(w));
    row.hidden = !keep;
    if (keep) shown += 1;
  }
  document.getElementById("shown").textContent = String(shown);
}
box.addEventListener("input", apply);
box.value = decodeURIComponent(location.hash.slice(1));  // a link can carry a filter
apply();
"""


def page(lock: ImagesLock, table: Sequence[Row]) -> str:
    esc = html.escape
    body = []
    for r in table:
        e = r.image
        checks = "".join(f"<li>{esc(n)}</li>" for n in r.passed)
        body.append(
            f'<tr data-tag="{esc(e.tag)}"><td><code>{esc(e.tag)}</code>'
            + (f"<br><small>{esc(e.dated_tag)}</small>" if e.dated_tag else "")
            + f"</td><td><code>{esc(e.digest)}</code></td><td>{esc(_platforms(e))}</td>"
            f"<td>{esc(e.python)}</td><td>{esc(e.ray)}</td><td>{esc(_key_packages(r)) or '–'}"
            f"</td><td><details><summary>{len(r.passed)} passed</summary><ul>{checks}</ul>"
            f"</details></td><td>{esc(r.tested) or '–'}</td><td>{esc(e.pushed_at) or '–'}</td>"
            "</tr>"
        )
    notebooks, clusters, ok = grid(lock)
    head = "".join(f"<th>{esc(c)}</th>" for c in clusters)
    grid_rows = "".join(
        f"<tr><th>{esc(nb)}</th>"
        + "".join(
            '<td class="ok">may talk</td>' if ok[(nb, cl)] else '<td class="no">refused</td>'
            for cl in clusters
        )
        + "</tr>"
        for nb in notebooks
    )
    use = "".join(
        f"<h3>{esc(cell_id)}</h3><pre>{esc(chr(10).join(lines))}</pre>"
        for cell_id, lines in usage(lock)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ray image catalog</title><style>{STYLE}</style></head><body>
<h1>Ray image catalog</h1>
<p>Registry <code>{esc(lock.registry)}</code>, updated {esc(lock.updated)}. Deploy by digest.</p>
<p><label>Filter <input id="filter" type="search" placeholder="e.g. 3.11.2 notebook"></label>
<span id="shown">{len(table)}</span> of {len(table)} images</p>
<table id="images"><thead><tr><th>tag</th><th>digest</th><th>platforms</th><th>Python</th>
<th>Ray</th><th>key packages</th><th>checks</th><th>tested</th><th>pushed</th></tr></thead>
<tbody>{"".join(body)}</tbody></table>{f"<p>{esc(ZSTD_NOTE)}</p>" if _zstd(lock) else ""}
<h2>Which notebook goes with which cluster</h2>
<p>Rows: notebook image; columns: cluster (head and worker). Green: same Python micro and
Ray version, the pair may talk. Red: Ray refuses a driver (Ray Client only warns).</p>
<table id="grid"><tr><th>notebook \\ cluster</th>{head}</tr>{grid_rows}</table>
<h2>Copy and paste</h2>{use}
<script>{FILTER}</script>
</body></html>
"""


def write(out: Path, lock: ImagesLock, table: Sequence[Row]) -> tuple[Path, Path]:
    """index.html and catalog.md in `out`, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / "index.html", out / "catalog.md"
    text_html, text_md = page(lock, table), markdown(lock, table)
    write_atomic(html_path, text_html)
    write_atomic(md_path, text_md)
    return html_path, md_path
