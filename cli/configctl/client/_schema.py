"""The app's JSON schema as the client checks a new version against it.

Where the schema comes from, in order (the first that exists wins):

1. the ``schema=`` argument of the client: a mapping, or the path of a JSON/YAML file;
2. the config repository, when the client knows one (``repo=`` / ``CONFIGCTL_REPO``, or
   the embedded default's working directory): ``apps/<app>/app.yaml``'s ``schema`` file,
   re-read when it changes, so a commit that changes schema and values together is
   checked against the schema of that commit (the working tree ``configctl apply`` read);
3. none: a version is still checked for shape (a whole snapshot of this app and env, not
   older than the one served) but not against a schema.

Why not in the snapshot: the reconciler already validated every version against the
schema of its commit, so a snapshot checked against its *own* schema proves nothing; the
check that matters is against the schema the *application* was built and deployed for,
which is the one it is given or ships with. Messages name the failing path and keyword,
never the value (values may be secrets).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SchemaCheck", "schema_check"]

log = logging.getLogger("configctl.client")


class SchemaCheck:
    """Validates resolved values against one JSON schema (draft 2020-12)."""

    def __init__(self, schema: Mapping[str, Any], origin: str) -> None:
        import jsonschema

        self.origin = origin
        self.fingerprint = json.dumps(schema, sort_keys=True, default=str)
        self._validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    def problem(self, values: Mapping[str, Any]) -> str | None:
        """None if ``values`` conform, else one secret-free line naming the first failure."""
        error = next(iter(sorted(self._validator.iter_errors(values), key=lambda e: list(e.absolute_path))), None)
        if error is None:
            return None
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        count = sum(1 for _ in self._validator.iter_errors(values))
        more = f" (+{count - 1} more)" if count > 1 else ""
        return f"{path}: fails `{error.validator}` of the schema ({self.origin}){more}"


class _RepoSchema:
    """The schema named by ``apps/<app>/app.yaml``, re-read when either file changes."""

    def __init__(self, repo: Path, app: str) -> None:
        self.repo = repo
        self.app = app
        self._stamp: tuple[float, ...] | None = None
        self._check: SchemaCheck | None = None

    def _schema_file(self) -> Path | None:
        from configctl.core import parse

        manifest = self.repo / "apps" / self.app / "app.yaml"
        try:
            doc = parse.parse(str(manifest), manifest.read_bytes())
        except OSError:
            return None
        value = doc.value
        if not isinstance(value, dict) or not isinstance(value.get("schema"), str):
            return None
        return (manifest.parent / str(value["schema"])).resolve()

    def current(self) -> SchemaCheck | None:
        manifest = self.repo / "apps" / self.app / "app.yaml"
        try:
            stamp: tuple[float, ...] = (os.stat(manifest).st_mtime,)
        except OSError:
            return None
        file = self._schema_file()
        if file is None:
            return None
        try:
            stamp += (os.stat(file).st_mtime,)
        except OSError:
            return None
        if stamp != self._stamp:
            self._stamp = stamp
            self._check = _load_file(file)
        return self._check


def _load_file(file: Path) -> SchemaCheck | None:
    from configctl.core.validate import load_schema_value

    try:
        value = load_schema_value(str(file), file.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the schema %s: %s", file, type(exc).__name__)
        return None
    if not isinstance(value, dict):
        log.warning("the schema %s is not a JSON object; not used", file)
        return None
    return SchemaCheck(value, str(file))


class _Fixed:
    def __init__(self, check: SchemaCheck | None) -> None:
        self._check = check

    def current(self) -> SchemaCheck | None:
        return self._check


def schema_check(
    schema: Mapping[str, Any] | str | os.PathLike[str] | None,
    *,
    repo: Path | None,
    app: str,
) -> _Fixed | _RepoSchema:
    """The schema source of a client (see the module docstring for the order)."""
    if isinstance(schema, Mapping):
        return _Fixed(SchemaCheck(schema, "given schema"))
    if schema is not None:
        check = _load_file(Path(schema))
        if check is None:
            from configctl.errors import UsageError

            raise UsageError(f"the schema file {schema} cannot be read as a JSON schema")
        return _Fixed(check)
    if repo is not None and (repo / "apps" / app / "app.yaml").is_file():
        return _RepoSchema(repo, app)
    return _Fixed(None)
