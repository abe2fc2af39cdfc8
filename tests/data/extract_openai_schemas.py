#!/usr/bin/env python3
"""Write `openai-schemas.json`: the OpenAPI component schemas the simulator's tests validate.

    python tests/data/extract_openai_schemas.py SPEC.yaml [COMMIT] [DATE]

SPEC.yaml is OpenAI's published specification (github.com/openai/openai-openapi, `openapi.yaml`;
MIT licence). Each schema named in `SCHEMAS` is written with every `$ref` resolved in place,
the spec's OpenAPI 3.0 `nullable: true` turned into JSON Schema (`anyOf` with null), and the
fields the live API sends as null though the spec types them otherwise (`NULLABLE`: the
`*_at` timestamps and file ids of a Batch, its `errors` and `usage`; a File's
`status_details` and `expires_at`; the spec's own Batch example shows `"failed_at": null`,
and the API reference's batch-create example `"model": null`) made nullable too.
Descriptions and examples are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMAS = (
    "Batch",
    "ListBatchesResponse",
    "OpenAIFile",
    "ListFilesResponse",
    "DeleteFileResponse",
    "ErrorResponse",
    "ImagesResponse",
    "ImageGenStreamEvent",
    "ImageEditStreamEvent",
)
NULLABLE = {
    "Batch": (
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "model",
        "output_file_id",
        "error_file_id",
        "errors",
        "usage",
    ),
    "OpenAIFile": ("status_details", "expires_at"),
}
DROPPED = {"description", "example", "examples", "x-oaiMeta", "x-oaiTypeLabel", "title"}
OUT = Path(__file__).resolve().parent / "openai-schemas.json"


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` that also accepts null."""
    return {"anyOf": [schema, {"type": "null"}]}


def resolve(node: Any, components: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """`node` with `$ref`s inlined, `nullable` translated, documentation dropped."""
    if isinstance(node, list):
        return [resolve(item, components, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            msg = f"recursive schema {name}"
            raise ValueError(msg)
        return resolve(components[name], components, (*seen, name))
    out = {k: resolve(v, components, seen) for k, v in node.items() if k not in DROPPED}
    if isinstance(node.get("properties"), dict):  # property names are data, never dropped
        props = node["properties"].items()
        out["properties"] = {k: resolve(v, components, seen) for k, v in props}
    if out.pop("nullable", False):
        return nullable(out)
    return out


def main(spec: Path, commit: str, date: str) -> None:
    components = yaml.safe_load(spec.read_text(encoding="utf-8"))["components"]["schemas"]
    for name, fields in NULLABLE.items():  # before resolving: lists inline these schemas
        properties = components[name]["properties"]
        for field in fields:
            properties[field] = {"anyOf": [properties[field], {"type": "null"}]}
    schemas = {name: resolve(components[name], components, (name,)) for name in SCHEMAS}
    document = {
        "source": "https://github.com/openai/openai-openapi, openapi.yaml"
        + (f" at commit {commit}" if commit else ""),
        "date": date,
        "license": "MIT, Copyright OpenAI (the specification's licence)",
        "made_by": "tests/data/extract_openai_schemas.py",
        "nullable_added": {k: list(v) for k, v in NULLABLE.items()},
        "schemas": schemas,
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    commit, date = [*sys.argv[2:4], "", ""][:2]
    main(Path(sys.argv[1]), commit, date)
