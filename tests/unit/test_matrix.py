"""matrix.yaml loading, validation, expansion, selection and tags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import matrix
from harness.errors import MatrixError
from tests.conftest import ROOT

MINIMAL = 'ray: ["2.60.0"]\npython: ["3.11.2"]\n'


def test_default_matrix_has_the_walking_skeleton_cell() -> None:
    m = matrix.load(ROOT / "matrix.yaml")
    ids = [c.id for c in m.cells]
    assert "ray2.60.0-py3.11.2-cpu" in ids
    cell = m.cell("ray2.60.0-py3.11.2-cpu")
    assert cell.base == matrix.BaseSpec("debian", "bookworm")


def test_tags_one_repository_per_role(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix(MINIMAL + "prefix: europe-docker.pkg.dev/p/r\n"))
    assert m.cells[0].tags(m.prefix) == {
        "head": "europe-docker.pkg.dev/p/r/ray-head:2.60.0-py3.11.2-cpu",
        "worker": "europe-docker.pkg.dev/p/r/ray-worker:2.60.0-py3.11.2-cpu",
        "notebook": "europe-docker.pkg.dev/p/r/ray-notebook:2.60.0-py3.11.2-cpu",
    }


def test_gpu_cells_carry_cuda_in_tags(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix(MINIMAL + 'variants: [cpu, gpu]\ncuda: "12.6"\n'))
    by_variant: dict[str, matrix.Cell] = {c.variant: c for c in m.cells}
    assert by_variant["gpu"].cuda == "12.6" and by_variant["cpu"].cuda is None
    assert by_variant["gpu"].id == "ray2.60.0-py3.11.2-cu126"
    assert by_variant["gpu"].tag("p", "worker") == "p/ray-worker:2.60.0-py3.11.2-cu126"
    chosen, _ = matrix.select(m, ["variant=gpu"])
    assert [c.id for c in chosen] == ["ray2.60.0-py3.11.2-cu126"]


def test_product_and_excludes(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(
        write_matrix(
            'ray: ["2.60.0", "2.51.2"]\npython: ["3.9.2", "3.11.2"]\n'
            'exclude:\n  - {ray: "2.60.0", python: "3.9.*", reason: "no cp39 wheels"}\n'
        )
    )
    assert sorted(c.id for c in m.cells) == [
        "ray2.51.2-py3.11.2-cpu",
        "ray2.51.2-py3.9.2-cpu",
        "ray2.60.0-py3.11.2-cpu",
    ]
    assert [(e.cell.id, e.reason) for e in m.excluded] == [
        ("ray2.60.0-py3.9.2-cpu", "no cp39 wheels")
    ]
    assert m.cell("ray2.51.2-py3.9.2-cpu").base.ref == "bullseye"


def test_registry_base_override(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(
        write_matrix(
            'ray: ["2.60.0"]\npython: ["3.11.9"]\n'
            'bases:\n  "3.11.9": {image: "python:3.11.9-slim-bookworm"}\n'
        )
    )
    assert m.cells[0].base == matrix.BaseSpec("image", "python:3.11.9-slim-bookworm")


def test_select_with_globs(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix('ray: ["2.60.0", "2.51.2"]\npython: ["3.11.2", "3.13.5"]\n'))
    chosen, left = matrix.select(m, ["ray=2.60.0,python=3.11.*"])
    assert [c.id for c in chosen] == ["ray2.60.0-py3.11.2-cpu"]
    assert len(left) == 3
    chosen, _ = matrix.select(m, ["python=3.13.5", "ray=2.51.2,python=3.11.2"])
    assert {c.id for c in chosen} == {
        "ray2.60.0-py3.13.5-cpu",
        "ray2.51.2-py3.13.5-cpu",
        "ray2.51.2-py3.11.2-cpu",
    }


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("pyhton=3.11.2", "did you mean 'python'"),
        ("ray", "must be KEY=GLOB"),
        ("ray=9.9.9", "selects no cell"),
    ],
)
def test_bad_selectors(write_matrix: Callable[[str], Path], selector: str, fragment: str) -> None:
    m = matrix.load(write_matrix(MINIMAL))
    with pytest.raises(MatrixError, match=fragment):
        matrix.select(m, [selector])


# A catalogue of bad matrix files: each must name the key, give the line where known,
# and say what to do.
BAD = [
    ("malformed", 'ray: ["2.60.0"\npython: ["3.11.2"]\n', "(yaml)", "malformed YAML"),
    ("unknown key", MINIMAL + "varaints: [cpu]\n", "varaints", "did you mean 'variants'"),
    ("minor only python", 'ray: ["2.60.0"]\npython: ["3.11"]\n', "python.0", "exact Python"),
    ("minor only ray", 'ray: ["2.60"]\npython: ["3.11.2"]\n', "ray.0", "exact Ray"),
    ("unquoted float", 'ray: ["2.60.0"]\npython: [3.10]\n', "python.0", "quoted string"),
    ("prerelease", 'ray: ["2.60.0rc1"]\npython: ["3.11.2"]\n', "ray.0", "exact Ray"),
    ("garbage version", 'ray: ["latest"]\npython: ["3.11.2"]\n', "ray.0", "not a version"),
    ("no provider", 'ray: ["2.60.0"]\npython: ["3.11.9"]\n', "python", "no base provider"),
    ("duplicate", 'ray: ["2.60.0", "2.60.0"]\npython: ["3.11.2"]\n', "ray.1", "listed twice"),
    ("unknown variant", MINIMAL + "variants: [cpu, tpu]\n", "variants.1", "unknown variant"),
    ("unknown cuda", MINIMAL + 'variants: [gpu]\ncuda: "11.8"\n', "cuda", "unknown CUDA version"),
    ("cuda not string", MINIMAL + "variants: [gpu]\ncuda: 12.8\n", "cuda", "quoted string"),
    ("missing ray", 'python: ["3.11.2"]\n', "ray", "is required"),
    ("empty list", 'ray: []\npython: ["3.11.2"]\n', "ray", 'non-empty list, e.g. ["2.60.0"]'),
    ("empty extras", MINIMAL + "ray_extras: []\n", "ray_extras", "e.g. [default, serve]"),
    (
        "all excluded",
        MINIMAL + "exclude:\n  - {ray: '*', reason: nope}\n",
        "exclude",
        "matrix is empty",
    ),
    ("exclude no reason", MINIMAL + "exclude:\n  - {ray: '2.60.0'}\n", "exclude.0", "reason"),
    (
        "wrong suite",
        MINIMAL + "bases:\n  '3.11.2': {debian: trixie}\n",
        "bases.3.11.2.debian",
        "ships Python 3.13.5",
    ),
    (
        "wrong forky micro",
        MINIMAL + "bases:\n  '3.11.2': {debian: forky}\n",
        "bases.3.11.2.debian",
        "ships Python 3.13.15 and 3.14.8",
    ),
    (
        "bad base key",
        MINIMAL + "bases:\n  '3.11.2': {debain: bookworm}\n",
        "bases.3.11.2.debain",
        "did you mean 'debian'",
    ),
    ("bad prefix", MINIMAL + "prefix: Local/Ray\n", "prefix", "lower-case"),
    ("not a mapping", "- ray\n- python\n", "(top)", "must be a mapping"),
    # hostile or mistaken YAML
    (
        "billion laughs",
        MINIMAL
        + "grid:\n  only: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"x{i}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(9)
        ),
        "(yaml)",
        "expands to more than",
    ),
    ("deep nesting", MINIMAL + "grid: " + "[" * 5000 + "]" * 5000 + "\n", "(yaml)", "nested"),
    ("duplicate key", 'ray: ["2.60.0"]\npython: ["3.11.2"]\nray: ["2.51.2"]\n', "ray", "twice"),
    # values that reach other tools
    (
        "notebook option",
        MINIMAL + 'notebook_packages: ["--extra-index-url http://evil.example/simple"]\n',
        "notebook_packages.0",
        "installer option",
    ),
    (
        "notebook marker",
        MINIMAL + "notebook_packages: [\"jupyterlab; os_name == 'x' or junk\"]\n",
        "notebook_packages.0",
        "not a requirement",
    ),
    (
        "notebook url",
        MINIMAL + 'notebook_packages: ["x @ https://evil.example/x.whl"]\n',
        "notebook_packages.0",
        "URL or an environment marker",
    ),
    (
        "runtime option",
        MINIMAL + 'runtime_packages: ["--index-url http://evil.example/simple"]\n',
        "runtime_packages.0",
        "installer option",
    ),
    (
        "runtime ray",
        MINIMAL + 'runtime_packages: ["ray[tune]==2.9"]\n',
        "runtime_packages.0",
        "ray_extras",
    ),
    (
        "extras no default",
        MINIMAL + "ray_extras: [serve]\n",
        "ray_extras",
        "must include 'default'",
    ),
    (
        "extras bad name",
        MINIMAL + 'ray_extras: [default, "se rve"]\n',
        "ray_extras.1",
        "extra's name",
    ),
    ("prefix space", MINIMAL + 'prefix: "local host/ray"\n', "prefix", "not an image repository"),
    ("prefix scheme", MINIMAL + 'prefix: "https://r.example/ray"\n', "prefix", "no scheme"),
    ("prefix creds", MINIMAL + 'prefix: "me:pw@r.example/ray"\n', "prefix", "credentials"),
    ("prefix empty segment", MINIMAL + 'prefix: "r.example//ray"\n', "prefix", "empty segments"),
    (
        "bad base image",
        MINIMAL + "bases:\n  '3.11.2': {image: 'python:3.11 slim'}\n",
        "bases.3.11.2.image",
        "not an image reference",
    ),
    (
        "unknown suite",
        MINIMAL + "bases:\n  '3.11.2': {debian: bokworm}\n",
        "bases.3.11.2.debian",
        "did you mean 'bookworm'",
    ),
    # rules that silently do nothing
    (
        "exclude matches nothing",
        MINIMAL + "exclude:\n  - {ray: '2.50.*', reason: old}\n",
        "exclude.0",
        "matches no cell",
    ),
    (
        "exclude list value",
        MINIMAL + "exclude:\n  - {python: ['3.11.2'], reason: x}\n",
        "exclude.0.python",
        "one quoted string",
    ),
    # numbers out of range, values YAML misreads
    (
        "epoch too large",
        MINIMAL + "source_date_epoch: 99999999999999999\n",
        "source_date_epoch",
        "at most the end of year 9999",
    ),
    ("bad gpu_e2e", MINIMAL + "gpu_e2e: maybe\n", "gpu_e2e", "optional, required"),
    (
        "bad layer_compression",
        MINIMAL + "layer_compression: zst\n",
        "layer_compression",
        "not one of gzip, zstd (did you mean 'zstd'?)",
    ),
    # constraints
    ("constraints not a list", MINIMAL + "constraints: {a: b}\n", "constraints", "must be a list"),
    (
        "constraint without reason",
        MINIMAL + "constraints: [{requirement: 'protobuf<7'}]\n",
        "constraints.0",
        "needs a `reason:`",
    ),
    (
        "constraint requirement",
        MINIMAL + "constraints: [{requirement: '--index-url x', reason: r}]\n",
        "constraints.0.requirement",
        "installer option",
    ),
    (
        "constraint matches nothing",
        MINIMAL + "constraints: [{ray: '2.51.*', requirement: 'protobuf<7', reason: r}]\n",
        "constraints.0",
        "matches no cell",
    ),
    # targets
    ("targets not a mapping", MINIMAL + "targets: [vertex]\n", "targets", "must map a target"),
    ("unknown target", MINIMAL + "targets: {sagemaker: all}\n", "targets.sagemaker", "allowed"),
    ("target typo", MINIMAL + "targets: {vertexai: all}\n", "targets.vertexai", "'vertex'"),
    ("target value", MINIMAL + "targets: {vertex: yes}\n", "targets.vertex", "all, none"),
    (
        "target selector",
        MINIMAL + "targets: {vertex: [pyton=3.10.*]}\n",
        "targets.vertex.0",
        "is not a cell selector",
    ),
    # platforms
    (
        "unknown platform",
        MINIMAL + "platforms: [linux/amd64, linux/arm]\n",
        "platforms.linux/arm",
        "'linux/arm64'",
    ),
    (
        "platforms not a list",
        MINIMAL + "platforms: linux/arm64\n",
        "platforms",
        "must list platforms",
    ),
    ("platforms empty", MINIMAL + "platforms: []\n", "platforms", "must list platforms"),
    ("no amd64", MINIMAL + "platforms: [linux/arm64]\n", "platforms", "keep linux/amd64: all"),
    (
        "amd64 narrowed",
        MINIMAL + "platforms: {linux/amd64: [ray=2.60.0], linux/arm64: all}\n",
        "platforms.linux/amd64",
        "keep linux/amd64: all",
    ),
    (
        "platform value",
        MINIMAL + "platforms: {linux/amd64: all, linux/arm64: yes}\n",
        "platforms.linux/arm64",
        "all, none",
    ),
    (
        "platform selector",
        MINIMAL + "platforms: {linux/amd64: all, linux/arm64: [platform=linux/arm64]}\n",
        "platforms.linux/arm64.0",
        "is not a cell selector",
    ),
    (
        "arm64 on a registry base",
        MINIMAL
        + 'bases: {"3.11.2": {image: "python:3.11.2-slim"}}\n'
        + "platforms: [linux/amd64, linux/arm64]\n",
        "platforms.linux/arm64",
        "only Debian bases",
    ),
]


@pytest.mark.parametrize(("name", "text", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_matrix_files(
    write_matrix: Callable[[str], Path], name: str, text: str, key: str, fragment: str
) -> None:
    path = write_matrix(text)
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert f": {key}:" in message, message
    assert fragment in message, message


def test_line_numbers_point_at_the_key(write_matrix: Callable[[str], Path]) -> None:
    path = write_matrix('# comment\nray: ["2.60.0"]\npython:\n  - "3.11.2"\n  - "3.11"\n')
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    assert info.value.line == 5


def test_empty_and_missing_files(tmp_path: Path, write_matrix: Callable[[str], Path]) -> None:
    with pytest.raises(MatrixError, match="is empty"):
        matrix.load(write_matrix(""))
    with pytest.raises(MatrixError, match="not found"):
        matrix.load(tmp_path / "nope.yaml")


micro = st.sampled_from(sorted({d.micro for d in matrix.DEBIAN_PYTHONS}))
ray_version = st.tuples(st.integers(0, 9), st.integers(0, 99), st.integers(0, 9)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}"
)


@settings(max_examples=60, deadline=None)
@given(
    rays=st.lists(ray_version, min_size=1, max_size=4, unique=True),
    pythons=st.lists(micro, min_size=1, max_size=3, unique=True),
)
def test_every_valid_product_expands_to_all_cells(
    tmp_path_factory: pytest.TempPathFactory, rays: list[str], pythons: list[str]
) -> None:
    path = tmp_path_factory.mktemp("m") / "matrix.yaml"
    path.write_text(f"ray: {rays!r}\npython: {pythons!r}\n".replace("'", '"'))
    m = matrix.load(path)
    assert len(m.cells) == len(rays) * len(pythons)
    assert len({c.id for c in m.cells}) == len(m.cells)
    for c in m.cells:
        assert matrix.debian_offer(c.base.ref, c.python) is not None


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_loader_never_crashes_on_arbitrary_text(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("m") / "matrix.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        m = matrix.load(path)
    except MatrixError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert m.cells


@settings(max_examples=200, deadline=None)
@given(version=st.text(alphabet="0123456789.rcab+-post", min_size=1, max_size=12))
def test_only_exact_micro_versions_are_accepted(
    tmp_path_factory: pytest.TempPathFactory, version: str
) -> None:
    path = tmp_path_factory.mktemp("m") / "matrix.yaml"
    path.write_text(f'ray: ["{version}"]\npython: ["3.11.2"]\n')
    try:
        m = matrix.load(path)
    except MatrixError:
        return
    parts = m.cells[0].ray.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


@pytest.mark.parametrize(("key", "example"), [("ray", "2.60.0"), ("python", "3.11.2")])
@pytest.mark.parametrize("bad", ["2.60.0; rm -rf /", "2.60"])
def test_a_bad_version_s_message_gives_an_example_of_its_own_kind(
    write_matrix: Callable[[str], Path], key: str, example: str, bad: str
) -> None:
    other = {"ray": 'python: ["3.11.2"]', "python": 'ray: ["2.60.0"]'}[key]
    with pytest.raises(MatrixError, match=rf"like {example}|e\.g\. {example}"):
        matrix.load(write_matrix(f'{key}: ["{bad}"]\n{other}\n'))


def test_forky_extra_interpreters_are_offered(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix('ray: ["2.60.0"]\npython: ["3.13.15", "3.13.5"]\n'))
    bases = {c.python: c.base for c in m.cells}
    assert bases == {
        "3.13.15": matrix.BaseSpec("debian", "forky"),
        "3.13.5": matrix.BaseSpec("debian", "trixie"),
    }
    assert matrix.debian_offer("forky", "3.13.15") == matrix.DebianPython(
        "forky", "3.13.15", "python3.13"
    )


def test_frozen_mirror_comes_from_the_environment(write_matrix: Callable[[str], Path]) -> None:
    path = write_matrix('version: 1\nray: ["2.60.0"]\npython: ["3.11.2"]\n')
    assert matrix.load(path, env={}).debian_snapshot is False
    assert matrix.load(path, env={matrix.SNAPSHOT_ENV: "1"}).debian_snapshot is True
    with pytest.raises(MatrixError, match=r"HARNESS_DEBIAN_SNAPSHOT: .*'maybe' is not"):
        matrix.load(path, env={matrix.SNAPSHOT_ENV: "maybe"})


def test_the_committed_matrix_keeps_apt_checks() -> None:
    assert matrix.load(ROOT / "matrix.yaml", env={}).debian_snapshot is False


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_bytes(MINIMAL.encode() + b"prefix: \xff\xfe\n")
    with pytest.raises(MatrixError, match=r"is not UTF-8 text \(byte 43\)"):
        matrix.load(path)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(MINIMAL + "#" * (2 << 20))
    with pytest.raises(MatrixError, match="a matrix is at most"):
        matrix.load(path)


def test_unquoted_off_means_off(write_matrix: Callable[[str], Path]) -> None:
    assert matrix.load(write_matrix(MINIMAL + "audit: off\n")).audit == "off"


def test_plain_requirements_with_versions_and_extras_are_accepted(
    write_matrix: Callable[[str], Path],
) -> None:
    text = MINIMAL + 'notebook_packages: ["jupyterlab>=4,<5", "ipywidgets[extra]==8.1.5"]\n'
    assert matrix.load(write_matrix(text)).notebook_packages[0] == "jupyterlab>=4,<5"


def test_targets_default_to_kuberay_and_kubeflow_and_select_cells(
    write_matrix: Callable[[str], Path],
) -> None:
    m = matrix.load(write_matrix(MINIMAL))
    assert m.cells[0].targets == ("kuberay", "kubeflow")
    two = 'ray: ["2.60.0", "2.33.0"]\npython: ["3.11.2"]\n'
    m = matrix.load(write_matrix(two + 'targets: {kuberay: all, vertex: ["ray=2.33.*"]}\n'))
    by_ray = {c.ray: c.targets for c in m.cells}
    # a key absent from `targets:` is none: naming targets names all of them
    assert by_ray == {"2.60.0": ("kuberay",), "2.33.0": ("kuberay", "vertex")}
    m = matrix.load(write_matrix(MINIMAL + "targets: {kuberay: none, kubeflow: all}\n"))
    assert m.cells[0].targets == ("kubeflow",)
    assert matrix.load(ROOT / "matrix.yaml").cells[0].targets == ("kuberay", "kubeflow")


def test_constraints_reach_the_matching_cells_locks(write_matrix: Callable[[str], Path]) -> None:
    from harness import lock

    text = 'ray: ["2.60.0", "2.51.2"]\npython: ["3.11.2"]\n' + (
        "constraints:\n  - {ray: '2.51.*', requirement: 'protobuf<7', reason: Serve breaks}\n"
    )
    m = matrix.load(write_matrix(text))
    by_ray = {c.ray: c for c in m.cells}
    assert by_ray["2.51.2"].constraints == ("protobuf<7",)
    assert by_ray["2.60.0"].constraints == ()
    for kind in lock.KINDS:
        assert "protobuf<7" in lock.requirements(by_ray["2.51.2"], m, kind)
        assert "protobuf<7" not in lock.requirements(by_ray["2.60.0"], m, kind)


def test_platforms_default_is_amd64_with_todays_ids(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix(MINIMAL))
    (cell,) = m.cells
    assert (cell.platform, cell.native, cell.arch) == ("linux/amd64", True, "amd64")
    assert cell.id == "ray2.60.0-py3.11.2-cpu" and cell.tag_suffix == cell.index_suffix


def test_arm64_is_a_cell_of_its_own_under_one_registry_tag(
    write_matrix: Callable[[str], Path],
) -> None:
    m = matrix.load(
        write_matrix(
            'ray: ["2.60.0"]\npython: ["3.11.2", "3.13.5"]\n'
            'platforms: {linux/amd64: all, linux/arm64: ["python=3.11.*"]}\n'
        )
    )
    assert [c.id for c in m.cells] == [
        "ray2.60.0-py3.11.2-cpu",
        "ray2.60.0-py3.11.2-cpu-arm64",
        "ray2.60.0-py3.13.5-cpu",
    ]
    arm = m.cell("ray2.60.0-py3.11.2-cpu-arm64")
    assert (arm.machine, arm.native) == ("aarch64", False)
    assert arm.tag("p", "head") == "p/ray-head:2.60.0-py3.11.2-cpu-arm64"
    assert arm.index_suffix == "2.60.0-py3.11.2-cpu" == m.cells[0].index_suffix
    chosen, _ = matrix.select(m, ["platform=linux/arm64"])
    assert chosen == [arm]
    both, _ = matrix.select(m, ["python=3.11.2"])
    assert len(both) == 2


def test_the_arm64_example_matrix_is_the_default_cell_plus_arm64() -> None:
    default = matrix.load(ROOT / "matrix.yaml").cell("ray2.60.0-py3.11.2-cpu")
    m = matrix.load(ROOT / "matrix-arm64.yaml")
    assert [c.platform for c in m.cells] == ["linux/amd64", "linux/arm64"]
    assert m.cells[0] == default  # same cell: same lock, same images


@pytest.mark.parametrize(
    ("mirror", "expect"),
    [
        ("http://deb.example.org/debian main contrib", "without white space"),
        ('"http://x/debian\\nQUIT"', "without white space"),
        ("'[trusted=yes] http://evil.example/debian'", "http(s):// or file:/ URL"),
        ("http://user:secret@mirror.example/debian", "must not carry credentials"),
        ("http://mirror.example/debian#x", "without a query or a fragment"),
        ("http://mirror.example/debian?a=1", "without a query or a fragment"),
        ("http:///debian", "no host"),
        ("ftp://mirror.example/debian", "http(s):// or file:/ URL"),
        ("http://mirror.example/de[b]ian", "option brackets"),
        ("42", "http(s):// or file:/ URL"),
    ],
)
def test_debian_mirror_is_one_apt_uri(
    write_matrix: Callable[[str], Path], mirror: str, expect: str
) -> None:
    """debian_mirror goes into apt's sources as it is: anything apt would read as more than
    one URI (options, a second token, a comment) or credentials is refused by name."""
    path = write_matrix(MINIMAL + f"debian_mirror: {mirror}\n")
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    assert info.value.key == "debian_mirror" and expect in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "mirror",
    [
        "http://deb.debian.org/debian",
        "https://snapshot.debian.org/archive/debian/20261201T000000Z",
        "file:/srv/mirror/debian",
        "http://[::1]:3142/debian",
    ],
)
def test_debian_mirror_urls_apt_reads(write_matrix: Callable[[str], Path], mirror: str) -> None:
    path = write_matrix(MINIMAL + f"debian_mirror: {mirror}\n")
    assert matrix.load(path).debian_mirror == mirror


def test_a_matrix_elsewhere_builds_with_the_harness_images(tmp_path: Path) -> None:
    """A matrix kept outside the checkout uses the project's images/ (it had a traceback);
    an images/ with a Dockerfile beside the matrix is the user's own and wins."""
    from harness.paths import OWN_IMAGES, Paths

    (tmp_path / "matrix.yaml").write_text(MINIMAL)
    assert Paths.for_matrix(tmp_path / "matrix.yaml").dockerfile == OWN_IMAGES / "Dockerfile"
    (tmp_path / "images").mkdir()  # empty: not the user's own
    assert Paths.for_matrix(tmp_path / "matrix.yaml").images == OWN_IMAGES
    (tmp_path / "images" / "Dockerfile").write_text("FROM scratch\n")
    assert Paths.for_matrix(tmp_path / "matrix.yaml").images == tmp_path / "images"
