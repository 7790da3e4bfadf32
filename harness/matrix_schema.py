"""The structure of matrix.yaml, checked against matrix.schema.json (JSON Schema 2020-12).

The schema says what a key holds (types, enums, required and unknown keys); harness.matrix
checks the rules between keys after it (exact versions, a base that ships the micro,
selectors that match a cell). An error is worded as every other matrix error: the key's
dotted path and one sentence that says what to do. The schema carries that sentence as
`x-message` (a string, or one per JSON Schema keyword), with `{value!r}` for the value
found and `{hint}` for the nearest allowed value; jsonschema's own text is used where it
has none. Editors read the same file (`# yaml-language-server: $schema=...`).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.files import write_atomic
from harness.paths import PROJECT

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SCHEMA = PROJECT / "matrix.schema.json"


@functools.cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return schema


def _hint(value: object, allowed: Iterable[object]) -> str:
    words = [str(a) for a in allowed if isinstance(a, str)]
    near = difflib.get_close_matches(str(value), words, n=1)
    return f"did you mean {near[0]!r}?" if near else f"known: {', '.join(words)}"


def _message(schema: Mapping[str, Any], validator: str, value: object, fallback: str) -> str:
    found = schema.get("x-message")
    text = found.get(validator) if isinstance(found, dict) else found
    if not isinstance(text, str):
        return fallback
    hint = _hint(value, schema.get("enum", ()))
    return text.replace("{value!r}", repr(value)).replace("{hint}", hint)


def _deepest(error: ValidationError) -> ValidationError:
    """For anyOf/oneOf: the branch that got deeper than the value's own type or value (a
    mapping with one bad entry) when the harness has words for it there, else the
    alternative itself (whose own words say what the key may hold)."""
    deeper = [e for e in error.context or () if e.relative_path]
    if error.validator not in ("anyOf", "oneOf") or not deeper:
        return error
    found = _deepest(max(deeper, key=lambda e: len(e.relative_path)))
    worded = isinstance(found.schema, dict) and "x-message" in found.schema
    return found if worded or found.validator in ("additionalProperties", "required") else error


def _explain(error: ValidationError) -> tuple[list[str], str]:
    """The dotted path of the key at fault and the harness's sentence for it."""
    error = _deepest(error)
    path = [str(p) for p in error.absolute_path]
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    kind = str(error.validator)
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties") or {})
        key = next(str(k) for k in value if k not in allowed)
        near = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"allowed: {', '.join(allowed)}"
        return [*path, key], f"unknown key {key!r}; {hint}"
    if kind == "required" and isinstance(value, dict):
        missing = next(k for k in schema.get("required", ()) if k not in value)
        found = (schema.get("x-message") or {}).get("required")
        if isinstance(found, dict):  # a rule's own field: the rule is at fault
            return path, str(found.get(missing, error.message))
        return [*path, missing], str(found or error.message)
    types = schema.get("type")
    if (
        kind == "type"
        and isinstance(value, (int, float))
        and isinstance(types, list)
        and {"array", "string"} <= set(types)
    ):  # `python: 3.11`: a list of one number
        return [*path, "0"], _message(schema.get("items") or {}, "type", value, error.message)
    if schema.get("x-at-parent"):
        return path[:-1], _message(schema, kind, value, error.message)
    return path, _message(schema, kind, value, error.message)


def problem(
    data: object, line_of: Callable[[str], int | None], text: str = "", cache: Path | None = None
) -> tuple[str, str, int | None] | None:
    """The first structural problem of `data` in the file's order (key, sentence, line), or
    None. With `cache`, a text that passed this schema before is not validated again: a
    stamp named by the sha256 of the schema and the text says it passed. (Importing
    jsonschema costs about a second here, most of it a grammar one of its format checkers
    builds at import; a no-op build should not pay it for a file it already checked.)"""
    stamp = None
    if cache is not None and text:
        key = hashlib.sha256(SCHEMA.read_bytes() + b"\0" + text.encode()).hexdigest()
        stamp = cache / f"{key}.passed"
        if stamp.is_file():
            return None
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    found = []
    for error in validator.iter_errors(data):
        path, message = _explain(error)
        key = ".".join(path) or "(top)"
        # a missing key has no line of its own: a rule's field, its rule's; a top key, none
        schema = error.schema if isinstance(error.schema, dict) else {}
        line = None if key in schema.get("required", ()) else line_of(key)
        # what is wrong with a key before what is missing (a misspelt key is both)
        order = (
            error.validator == "required",
            line if line is not None else 1 << 30,
            len(path),
            error.validator != "type",
        )
        found.append((order, key, message, line))
    if found:
        _, key, message, line = min(found, key=lambda f: f[0])
        return key, message, line
    if stamp is not None:
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(stamp, "")
        except OSError:
            pass  # a read-only checkout: validated every time, nothing else changes
    return None
