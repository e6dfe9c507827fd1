"""The inverse patch of a commit, limited to some keys: `configctl revert COMMIT --keys ...`.

For every values file the commit changed, each named key is put back to its value before
the commit (or removed, if the commit added it), applied to the file as it is at HEAD so
later, unrelated edits survive. The rewritten file is emitted with PyYAML: key order is
kept, comments of a rewritten file are not (said in the commit for the reviewer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from configctl.core import parse as parse_mod
from configctl.core.model import FileEntry
from configctl.errors import UsageError

_MISSING = object()


def _get(node: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(node: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is _MISSING:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that writes the ``!unset`` marker back as ``!unset``.

    Turning it into ``null`` would change the file's meaning: the key would be set to null
    instead of removed from the layers below.
    """


def _represent_unset(dumper: yaml.SafeDumper, _value: Any) -> yaml.ScalarNode:
    return dumper.represent_scalar(parse_mod.UNSET_TAG, "")


_Dumper.add_representer(type(parse_mod.UNSET), _represent_unset)


def revert_keys(
    *,
    before: Mapping[str, FileEntry],
    after: Mapping[str, FileEntry],
    head: Mapping[str, FileEntry],
    keys: Sequence[str],
    prefix: str = "",
) -> dict[str, bytes]:
    """``{repo path: new bytes}`` undoing ``keys`` of the commit ``before`` → ``after``."""
    p = prefix.rstrip("/") + "/" if prefix else ""
    patch: dict[str, bytes] = {}
    touched: set[str] = set()
    for path in sorted(before.keys() | after.keys()):
        if not path.startswith(p) or not path.endswith(".yaml"):
            continue
        old = before.get(path)
        new = after.get(path)
        if old is not None and new is not None and old.data == new.data:
            continue
        old_doc = parse_mod.parse(path, old.data).value if old else {}
        new_doc = parse_mod.parse(path, new.data).value if new else {}
        if not isinstance(old_doc, dict | type(None)) or not isinstance(new_doc, dict | type(None)):
            continue
        head_entry = head.get(path)
        current = parse_mod.parse(path, head_entry.data).value if head_entry else None
        current = _plain(current) if isinstance(current, dict) else {}
        changed = False
        for key in keys:
            parts = key.split(".")
            was = _get(old_doc or {}, parts)
            now = _get(new_doc or {}, parts)
            if was == now:
                continue
            _set(current, parts, _plain(was))
            changed = True
            touched.add(key)
        if changed:
            patch[path] = yaml.dump(current, Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode("utf-8")
    missing = [k for k in keys if k not in touched]
    if missing:
        raise UsageError(f"the commit did not change {', '.join(missing)} in any file")
    return patch
