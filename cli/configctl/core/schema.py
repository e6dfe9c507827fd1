"""Helpers over an app's JSON Schema that are not validation: which keys are secret, and
local ``$ref`` inlining so a walk over ``properties`` sees what a ``$defs`` entry marks.

A key is secret when its schema says ``x-secret: true`` or ``writeOnly: true``; secret
values never appear in messages, diffs or history (see ``core.validate``, ``core.diff``).
Pure: no I/O, remote references are never fetched.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REF_DEPTH", "SchemaPath", "inline_local_refs", "is_secret", "secret_paths"]

SchemaPath = tuple[str | int, ...]
"""A path into a document: property names and array indexes."""

REF_DEPTH = 8
"""How many references deep a recursive schema is expanded by :func:`inline_local_refs`."""


def is_secret(schema: Any) -> bool:
    """Whether a (sub)schema marks its value secret (``x-secret`` or ``writeOnly``)."""
    return isinstance(schema, dict) and (
        schema.get("x-secret") is True or schema.get("writeOnly") is True
    )


def secret_paths(schema: Any) -> set[SchemaPath]:
    """Paths that an app schema marks secret (``x-secret: true`` or ``writeOnly: true``)."""
    out: set[SchemaPath] = set()

    def walk(node: Any, path: SchemaPath) -> None:
        if not isinstance(node, dict):
            return
        if is_secret(node) and path:
            out.add(path)
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, (*path, name))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key) or []:
                walk(sub, path)

    walk(schema, ())
    return out


def inline_local_refs(schema: Any, *, depth: int = REF_DEPTH) -> Any:
    """A copy of ``schema`` where each local ``$ref`` (``#/...``) sits next to its target.

    ``{"$ref": "#/$defs/db", ...siblings}`` becomes ``{"allOf": [<target>, {...siblings}]}``
    (in draft 2020-12 a reference and its siblings apply together), so a walk over
    ``properties`` and ``allOf`` sees what the target marks. Remote references are left
    alone (never fetched); recursive schemas are expanded ``depth`` references deep.
    """
    root = schema

    def target(ref: str) -> Any:
        node = root
        for raw in ref[1:].split("/")[1:] if ref != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def walk(node: Any, budget: int) -> Any:
        if isinstance(node, list):
            return [walk(item, budget) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value, budget) for key, value in node.items() if key != "$ref"}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and budget > 0:
            resolved = target(ref)
            if isinstance(resolved, dict):
                return {"allOf": [walk(resolved, budget - 1), out]}
        return out

    return walk(schema, depth)
