"""Post-processing of the OpenAPI schema so the tools people point at it accept it (openapi-spec-validator, client
generators): drf-spectacular's output is valid Python-side but trips them in two general ways, fixed here for every
operation at once rather than field by field."""

from __future__ import annotations

from typing import Any

FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


BLANK = {"type": "string", "maxLength": 0}


def blank_alternatives(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """A blank-allowed field (`allow_blank=True`) comes out as `oneOf: [<the field>, {maxLength: 0}]` with the
    field's default inside the first branch. Two things are wrong with that for validators: the default "" must
    satisfy that branch's own pattern (it does not), and "" may match both branches (a URL field without a
    pattern), which `oneOf` forbids. The meaning is "the field, or blank": `anyOf`, with the default beside it."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            branches = node.get("oneOf")
            if isinstance(branches, list) and BLANK in branches:
                node["anyOf"] = node.pop("oneOf")
                for branch in node["anyOf"]:
                    if isinstance(branch, dict) and "default" in branch:
                        node.setdefault("default", branch.pop("default"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result.get("components", {}))
    walk(result.get("paths", {}))
    return result


def json_request_bodies(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """DRF offers JSON, urlencoded and multipart for every body. Nested fields (objects, lists) only work as JSON,
    and a body documented in three encodings makes generators write broken clients (openapi-python-client 0.29
    loses an import for it), so a body that can be JSON is documented as JSON alone; the server still accepts forms
    (the browsable API posts them). Bodies that are only multipart (file uploads) are left as they are."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            content = (operation.get("requestBody") or {}).get("content") or {}
            if "application/json" in content:
                for media_type in FORM_MEDIA_TYPES:
                    content.pop(media_type, None)
    return result
