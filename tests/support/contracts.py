"""Validating what churnwatch emits against its published JSON Schemas (docs/schemas/) and
OpenAPI documents (docs/openapi/), with the jsonschema library."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``docs/schemas/<name>.schema.json`` (formats checked)."""
    schema = json.loads((DOCS / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, instance: Any) -> list[str]:
    """Why ``instance`` does not match schema ``name`` (empty when it does)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator(name).iter_errors(instance)]


def assert_valid(name: str, instance: Any) -> None:
    found = errors(name, instance)
    assert not found, f"not a valid {name}: {found[:5]} in {str(instance)[:300]}"


def assert_problem(status: int, content_type: str, body: Any) -> None:
    """An RFC 9457 problem body of the given status, valid against the published schema."""
    assert content_type == "application/problem+json", content_type
    assert_valid("problem", body)
    assert body["status"] == status and body["detail"] and body["title"], body


def assert_valid_component(document: dict[str, Any], component: str, instance: Any) -> None:
    """``instance`` matches the schema ``component`` of an OpenAPI ``document``."""
    schema = {**document["components"]["schemas"][component],
              "components": document["components"]}
    found = [e.message for e in Draft202012Validator(schema).iter_errors(instance)]
    assert not found, f"not a valid {component}: {found[:5]}"
