"""matrix.schema.json: a valid JSON Schema 2020-12 that the committed matrices pass, whose
keys and allowed values are the loader's own (one cannot drift from the other), and whose
errors the loader words with the file, line and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from harness import matrix, vulns
from harness.errors import MatrixError
from harness.matrix_schema import load_schema
from tests.conftest import ROOT

MINIMAL = 'ray: ["2.60.0"]\npython: ["3.11.2"]\n'


def test_a_valid_schema_that_the_committed_matrices_pass() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    for path in sorted(ROOT.glob("matrix*.yaml")):
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], (path, [e.message for e in errors])


def test_its_keys_and_values_are_the_loaders() -> None:
    props = load_schema()["properties"]
    assert tuple(props) == matrix.TOP_KEYS
    assert tuple(load_schema()["required"]) == matrix.REQUIRED_KEYS
    assert props["variants"]["items"]["enum"] == list(matrix.VARIANTS)
    assert props["cuda"]["enum"] == list(matrix.CUDA_VERSIONS)
    assert props["cuda"]["default"] == matrix.DEFAULT_CUDA
    assert props["prefix"]["default"] == matrix.DEFAULT_PREFIX
    assert props["source_date_epoch"]["default"] == matrix.DEFAULT_SOURCE_DATE_EPOCH
    assert props["source_date_epoch"]["maximum"] == matrix.MAX_EPOCH
    assert props["debian_mirror"]["default"] == matrix.DEFAULT_DEBIAN_MIRROR
    base = props["bases"]["additionalProperties"]["properties"]
    assert tuple(base) == matrix.BASE_KEYS
    assert base["debian"]["enum"] == list(matrix.DEBIAN_SUITES)
    assert [a for a in props["audit"]["enum"] if a is not False] == list(matrix.AUDIT_POLICIES)
    assert props["gpu_e2e"]["enum"] == list(matrix.GPU_E2E_POLICIES)
    assert props["layer_compression"]["enum"] == list(matrix.LAYER_COMPRESSIONS)
    assert tuple(props["targets"]["properties"]) == matrix.TARGETS
    assert tuple(props["grid"]["properties"]) == matrix.GRID_KEYS
    assert tuple(props["vulnerabilities"]["properties"]) == matrix.VULN_KEYS
    assert props["vulnerabilities"]["properties"]["fail_on"]["enum"] == list(vulns.FAIL_ON)
    platforms = props["platforms"]["anyOf"][1]["properties"]
    assert tuple(platforms) == matrix.PLATFORMS
    assert tuple(props["exclude"]["items"]["properties"]) == matrix.EXCLUDE_KEYS
    assert tuple(props["constraints"]["items"]["properties"]) == matrix.CONSTRAINT_KEYS
    assert props["notebook_packages"]["default"] == list(matrix.DEFAULT_NOTEBOOK_PACKAGES)
    assert props["ray_extras"]["default"] == list(matrix.DEFAULT_RAY_EXTRAS)


@pytest.mark.parametrize(
    ("text", "key", "line", "fragment"),
    [
        # caught by the schema: the loader's words, the key's line
        (MINIMAL + "\nvariants: [cpu, tpu]\n", "variants.1", 4, "unknown variant 'tpu'"),
        (MINIMAL + "vulnerabilities: {fail_on: severe}\n", "vulnerabilities.fail_on", 3,
         "'severe' is not one of critical, high, medium, low"),
        (MINIMAL + "grid:\n  falis: [python]\n", "grid.falis", 4,
         "did you mean 'fail'"),
        (MINIMAL + "exclude:\n  - {ray: '2.60.0', reason: 7}\n", "exclude.0", 4, "reason"),
        ('ray: ["2.60.0"]\npython: 3.11\n', "python.0", 2, "quoted string"),
        (MINIMAL + "targets: {kubeflow: [1]}\n", "targets.kubeflow", 3, "all, none"),
        (MINIMAL + "debian_snapshot: maybe\n", "debian_snapshot", 3, "true or false"),
        (MINIMAL + "version: 2\n", "version", 3, "only version: 1"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_key_and_its_line(
    write_matrix: Callable[[str], Path], text: str, key: str, line: int, fragment: str
) -> None:
    path = write_matrix(text)
    with pytest.raises(MatrixError) as info:
        matrix.load(path)
    assert (info.value.key, info.value.line) == (key, line), str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: {key}: ")


def test_the_editor_line_is_in_the_docs() -> None:
    line = "# yaml-language-server: $schema=matrix.schema.json"
    assert line in (ROOT / "docs" / "tutorial.md").read_text()
    assert line in (ROOT / "docs" / "reference" / "matrix-keys.md").read_text()


def test_a_text_that_passed_is_stamped_and_a_changed_one_is_checked_again(
    write_matrix: Callable[[str], Path],
) -> None:
    path = write_matrix(MINIMAL)
    stamps = path.parent / ".cache" / "matrix-schema"
    matrix.load(path)
    [stamp] = list(stamps.iterdir())
    path.write_text(MINIMAL + "variants: [cpu, tpu]\n")  # a new text: no stamp applies
    with pytest.raises(MatrixError, match="unknown variant 'tpu'"):
        matrix.load(path)
    assert list(stamps.iterdir()) == [stamp]  # a failing text is never stamped


@pytest.mark.parametrize(
    "key",
    ["exclude", "constraints", "bases", "grid", "targets", "platforms", "vulnerabilities",
     "registry"],
)  # fmt: skip
def test_a_key_left_empty_means_none_as_before(
    write_matrix: Callable[[str], Path], key: str
) -> None:
    """`exclude:` with nothing after it (YAML null) is the default, as it was before the
    schema; a key whose empty value was an error stays one."""
    m = matrix.load(write_matrix(MINIMAL + f"{key}:\n"))
    assert [c.id for c in m.cells] == ["ray2.60.0-py3.11.2-cpu"]
    assert matrix.load(write_matrix(MINIMAL + "grid:\n  only:\n  fail:\n")).grid.only == ()


@pytest.mark.parametrize("key", ["prefix", "audit", "gpu_e2e", "cuda", "notebook_packages"])
def test_a_key_whose_empty_value_was_an_error_stays_one(
    write_matrix: Callable[[str], Path], key: str
) -> None:
    with pytest.raises(MatrixError, match=f": {key}: "):
        matrix.load(write_matrix(MINIMAL + f"{key}:\n"))
