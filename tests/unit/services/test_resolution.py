"""services.resolution: the secret keys of a tree, read once validation has read the schemas."""

from __future__ import annotations

import json

from configctl.adapters import schemas
from configctl.core.model import FileEntry
from configctl.services import resolution


def _tree(app_schemas: dict[str, str]) -> dict[str, FileEntry]:
    files = {
        "configctl.yaml": FileEntry(data=b"environments: [prod]\n"),
        "global.yaml": FileEntry(data=b"a: 1\n"),
    }
    for app, schema in app_schemas.items():
        files[f"apps/{app}/app.yaml"] = FileEntry(
            data=b"description: d\nowners: [t]\nschema: schema.json\n"
        )
        files[f"apps/{app}/schema.json"] = FileEntry(data=schema.encode())
    return files


def test_secret_keys_however_the_mark_is_written_and_before_or_after_validation() -> None:
    marked = {
        "type": "object",
        "properties": {"db": {"$ref": "#/$defs/db"}, "token": {"type": "string", "writeOnly": True}},
        "$defs": {"db": {"type": "object", "properties": {"password": {"type": "string", "x-secret": True}}}},
    }
    plain = {"type": "object", "properties": {"a": {"type": "integer"}}}
    files = _tree(
        {
            "marked": json.dumps(marked),
            # the mark spelled with a JSON escape: no `x-secret` in the bytes
            "escaped": json.dumps({"type": "object", "properties": {"k": {"x\\u002dsecret": True}}}).replace(
                "\\\\u002d", "\\u002d"
            ),
            "plain": json.dumps(plain),
            "broken": "{not json",
        }
    )
    expected = {"marked": {"db.password", "token"}, "escaped": {"k"}, "plain": set()}  # broken: unknown
    tree = resolution.tree_mod.build(files)
    assert resolution.secret_keys(tree) == expected
    checked = resolution.Evaluator(file_schemas=schemas.file_schemas()).check(files)
    assert checked.tree.schemas_read == {"apps/marked/schema.json", "apps/escaped/schema.json", "apps/plain/schema.json"}
    assert resolution.secret_keys(checked.tree) == expected
    assert resolution.secret_keys(checked.tree, apps=["plain", "nope"]) == {"plain": set()}


def test_a_scoped_check_keeps_the_other_apps_pairs_for_the_next_commit() -> None:
    """A one-app commit evaluates its app only; the pairs of the apps it left out stay
    cached, so the next commit, to another app, resolves only the pair it changed."""
    from configctl.core import plan

    schema = json.dumps({"type": "object"})
    files = _tree({"web": schema, "api": schema})
    files["configctl.yaml"] = FileEntry(data=b"version: 1\nenvironments: [prod]\n")
    for app in ("web", "api"):
        files[f"apps/{app}/values.yaml"] = FileEntry(data=b"x: 1\n")
    evaluator = resolution.Evaluator(file_schemas=schemas.file_schemas())
    whole = evaluator.check(files)
    assert whole.report.valid
    web = evaluator.check(plan.scoped(files, {"web"}), partial=True)
    api = evaluator.check(plan.scoped(files, {"api"}), partial=True)
    # the very results of the whole check: nothing resolved again, checksums kept
    assert web.pairs[("web", "prod")] is whole.pairs[("web", "prod")]
    assert api.pairs[("api", "prod")] is whole.pairs[("api", "prod")]
    # a check of the whole tree again keeps what it holds only
    files.pop("apps/api/values.yaml")
    files.pop("apps/api/app.yaml")
    files.pop("apps/api/schema.json")
    evaluator.check(files)
    assert set(evaluator._pairs) == {("web", "prod")}
