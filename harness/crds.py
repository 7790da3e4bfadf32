"""KubeRay's CustomResourceDefinitions: the schemas a real API server applies to RayCluster,
RayJob and RayService objects, read from CRD files (KubeRay's release YAML, or
`kubectl get crd rayclusters.ray.io -o yaml` from a user's own cluster).

An API server validates a custom object against its CRD's structural OpenAPI v3 schema and
prunes every field the schema does not list (none of KubeRay's CRDs preserves unknown
fields). So a rendered object is checked here against the CRD's schema turned into JSON
Schema with unknown fields refused: what would be pruned is reported, not lost in silence.
CEL rules (`x-kubernetes-validations`) are not evaluated: they need an API server.

The translation is written here rather than taken from a library because none of the
maintained validators (kubernetes-validate, kubeconform) reads a CRD file offline from
Python; the OpenAPI keywords a structural schema may use are few (Kubernetes' "structural
schema" rules) and each is mapped below.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.errors import HarnessError

if TYPE_CHECKING:
    import jsonschema

GROUP = "ray.io"
# libyaml's safe loader where PyYAML has it: a KubeRay CRD is ~1 MB (4 s in pure Python)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
VERSION = "v1"
# JSON Schema keywords a structural schema shares with JSON Schema, kept as they are
_KEPT = (
    "type",
    "required",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
)


@dataclass(frozen=True)
class Crd:
    """One kind's `ray.io/v1` schema from a CRD file."""

    kind: str
    path: Path
    openapi: dict[str, Any]  # spec.versions[name=v1].schema.openAPIV3Schema, as written

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        """The schema as JSON Schema 2020-12, unknown fields refused (pruned by a server)."""
        doc = json_schema(self.openapi)
        # ObjectMeta and the type's own apiVersion and kind are the API server's (a CRD may
        # list them, as KubeRay's do, or not, as policy-controller's does)
        props = doc.setdefault("properties", {})
        props["metadata"] = {"type": "object"}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return doc

    @functools.cached_property
    def validator(self) -> jsonschema.Draft202012Validator:
        import jsonschema  # ~1 s to import: only when a CRD is used

        return jsonschema.Draft202012Validator(self.schema)


def json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema node as JSON Schema: `nullable` admits null,
    `x-kubernetes-int-or-string` an integer or a string, and an object admits only the
    fields it lists unless it preserves unknown fields (what an API server would prune)."""
    out: dict[str, Any] = {k: node[k] for k in _KEPT if k in node}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node and key not in out:
            out[key] = [json_schema(n) for n in node[key]]
    if isinstance(node.get("not"), Mapping):
        out["not"] = json_schema(node["not"])
    if "properties" in node:
        out["properties"] = {k: json_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), Mapping):
        out["items"] = json_schema(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = json_schema(extra)
    elif extra is not None:
        out["additionalProperties"] = bool(extra)
    elif node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _v1_schema(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    for version in (doc.get("spec") or {}).get("versions") or []:
        if isinstance(version, Mapping) and version.get("name") == VERSION:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            return dict(schema) if isinstance(schema, Mapping) else None
    return None


def load(paths: Sequence[Path]) -> dict[str, Crd]:
    """The `ray.io/v1` CRDs in `paths` (a file may hold several documents, or a `List` as
    `kubectl get crd -o yaml` writes it), by kind; HarnessError naming the file when one
    cannot be read or holds no KubeRay CRD."""
    found: dict[str, Crd] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d]
        except OSError as exc:
            raise HarnessError(f"--crd {path}: cannot be read ({exc.strerror})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise HarnessError(f"--crd {path}: not YAML: {str(exc).splitlines()[0]}") from None
        docs = [i for d in docs for i in (d.get("items") or [] if _is_list(d) else [d])]
        mine = 0
        for doc in docs:
            if not isinstance(doc, Mapping) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc.get("spec") or {}
            kind = (spec.get("names") or {}).get("kind")
            if spec.get("group") != GROUP or not isinstance(kind, str):
                continue
            schema = _v1_schema(doc)
            if schema is None:
                raise HarnessError(
                    f"--crd {path}: the {kind} CRD has no {VERSION} version with a schema; "
                    f"the harness renders {GROUP}/{VERSION} objects"
                )
            found[kind] = Crd(kind, path, schema)
            mine += 1
        if not mine:
            raise HarnessError(
                f"--crd {path}: no {GROUP} CustomResourceDefinition in it; give KubeRay's CRD "
                "files, e.g. from `kubectl get crd rayclusters.ray.io rayjobs.ray.io "
                "rayservices.ray.io -o yaml`"
            )
    return found


def _is_list(doc: object) -> bool:
    return isinstance(doc, Mapping) and doc.get("kind") == "List"


def validate(obj: Mapping[str, Any], crd: Crd) -> list[str]:
    """What an API server with `crd` would refuse or prune in `obj` ([] when nothing)."""
    where = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '?')}"
    out = []
    for e in sorted(crd.validator.iter_errors(obj), key=str):
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        message = e.message
        if e.validator == "additionalProperties":
            message += " (an API server with this CRD prunes it)"
        out.append(f"{where}: {path}: {message} [{crd.path.name}]")
    return out


def differences(ours: Mapping[str, Any], crd: Mapping[str, Any], path: str = "") -> list[str]:
    """Where the harness's own schema of a kind (`ours`, JSON Schema) and a CRD's OpenAPI
    schema disagree on fields, required keys or enums, one line each ("spec.schedule: only
    ours"). Below a node that ours leaves open (no `properties`, e.g. a pod template that
    kubernetes-validate checks as core/v1) nothing is compared."""
    out: list[str] = []
    where = path or "(root)"
    if "properties" in ours:
        theirs = crd.get("properties")
        if not isinstance(theirs, Mapping):
            return [f"{where}: ours lists fields, the CRD none"]
        for name in sorted(set(ours["properties"]) - set(theirs)):
            out.append(f"{_join(path, name)}: only ours (an API server prunes or refuses it)")
        for name in sorted(set(theirs) - set(ours["properties"])):
            out.append(f"{_join(path, name)}: only the CRD's (ours refuses it)")
        for name in sorted(set(ours["properties"]) & set(theirs)):
            out += differences(ours["properties"][name], theirs[name], _join(path, name))
        if set(ours.get("required") or ()) != set(crd.get("required") or ()):
            out.append(
                f"{where}: required {sorted(ours.get('required') or [])} in ours, "
                f"{sorted(crd.get('required') or [])} in the CRD"
            )
    if "enum" in ours or "enum" in crd:
        mine, theirs_enum = _enum(ours), _enum(crd)
        if mine != theirs_enum:
            out.append(f"{where}: enum {mine} in ours, {theirs_enum} in the CRD")
    if isinstance(ours.get("items"), Mapping) and isinstance(crd.get("items"), Mapping):
        out += differences(ours["items"], crd["items"], f"{path}[]")
    return out


def _enum(node: Mapping[str, Any]) -> list[str] | None:
    values = node.get("enum")
    return sorted(str(v) for v in values) if isinstance(values, list) else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def files_in(folders: Iterable[Path]) -> list[Path]:
    """Every CRD file (`*.yaml`) in `folders`, sorted."""
    return sorted(p for folder in folders for p in folder.glob("*.yaml"))
