"""Validating against anchorpay's OpenRPC document (imported explicitly): the vendored OpenRPC
meta-schema (tests/cases/openrpc), a method's params as one by-name object schema, and the
document's own schemas (results) with its `#/components` references resolved."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

CASES = Path(__file__).resolve().parents[1] / "cases"
META = CASES / "openrpc" / "open-rpc-meta-schema-1.14.9.json"
JSON_SCHEMA_META = CASES / "openrpc" / "json-schema-tools-meta-schema-1.8.0.json"


@functools.cache
def meta_validator() -> Draft7Validator:
    """The OpenRPC meta-schema, with the JSON Schema meta-schema it refers to."""
    json_schema = Resource.from_contents(
        json.loads(JSON_SCHEMA_META.read_text()), default_specification=DRAFT7
    )
    registry: Registry[Any] = Registry().with_resources(
        [
            ("https://meta.json-schema.tools", json_schema),
            ("https://meta.json-schema.tools/", json_schema),
        ]
    )
    return Draft7Validator(json.loads(META.read_text()), registry=registry)


def method(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in document["methods"] if m["name"] == name]
    return dict(found)


def params_validator(document: dict[str, Any], name: str) -> Draft7Validator:
    """The by-name params of `name` as one object schema (unknown keys allowed, as the
    decoder ignores them)."""
    params = method(document, name)["params"]
    schema = {
        "type": "object",
        "properties": {p["name"]: p["schema"] for p in params},
        "required": [p["name"] for p in params if p.get("required")],
    }
    return Draft7Validator(schema)


def document_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft7Validator:
    """`schema` (e.g. a result's) with the document's `#/components/...` references."""
    return Draft7Validator({**schema, "components": document["components"]})
