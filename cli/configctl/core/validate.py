"""Validation of a whole tree: file schemas, app value schemas and cross-file rules.

The report lists every finding, sorted by file and line. A schema error on a resolved
value points at the file and line that *set* the value (from resolution provenance), not
at the schema or the app folder. Errors that several (app, env) pairs share (a bad value
in ``global.yaml`` breaks every app) are reported once, naming the pairs.

Speed: every resolved (app, env) is first checked with ``jsonschema-rs`` (one compiled
validator per distinct schema); only the pairs that fail are resolved again with
provenance and re-checked with ``jsonschema`` for its precise error fields. When
``jsonschema-rs`` is not installed the slow path does all the work, with the same result.

Messages never quote a value whose schema marks it ``x-secret: true`` (or ``writeOnly``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jsonschema
import referencing
import referencing.exceptions
from jsonschema.exceptions import ValidationError

from configctl.core import parse as parse_mod
from configctl.core import resolve as resolve_mod
from configctl.core import rollout_spec
from configctl.core import tree as tree_mod
from configctl.core.model import Finding, Report, Severity, SourceLocation
from configctl.core.parse import Document
from configctl.core.schema import is_secret
from configctl.core.tree import ConfigTree

try:
    import jsonschema_rs as _rs
except ImportError:  # pragma: no cover - the fast path is optional
    _rs = None  # type: ignore[assignment]

Path = tuple[str | int, ...]

REPO_SCHEMA_ID: Final = "https://configctl.dev/schemas/v1/configctl.schema.json"
APP_SCHEMA_ID: Final = "https://configctl.dev/schemas/v1/app.schema.json"

_SUBSCHEMA_KEYS: Final = frozenset(
    {
        "additionalProperties", "items", "contains", "not", "if", "then", "else",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems",
    }
)
_SUBSCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_KNOWN_KEYWORDS: Final = (
    _SUBSCHEMA_KEYS
    | _SUBSCHEMA_LISTS
    | _SUBSCHEMA_MAPS
    | frozenset(
        {
            "$schema", "$id", "$ref", "$dynamicRef", "$dynamicAnchor", "$anchor", "$comment", "$vocabulary",
            "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
            "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
            "maxProperties", "minProperties", "required", "dependentRequired", "dependencies", "format",
            "contentEncoding", "contentMediaType", "contentSchema", "title", "description", "default",
            "deprecated", "readOnly", "writeOnly", "examples",
        }
    )
)


@dataclass(slots=True, kw_only=True)
class CompiledSchema:
    """An app's value schema, checked and compiled once (the precise validator on demand).

    With a fast validator the schema document itself is needed only when a pair fails
    (the precise validator reports why): it is then read again (``reread``) rather than
    kept. A schema is some hundred mappings, a tree of 1,000 apps a hundred thousand, and
    every object kept makes each of the interpreter's full collections longer.
    """

    file: str
    fast: Any | None
    _schema: Any = None
    reread: Callable[[], Any] | None = None
    _python: jsonschema.protocols.Validator | None = None

    @property
    def schema(self) -> Any:
        if self._schema is None and self.reread is not None:
            self._schema = self.reread()
        return self._schema

    @property
    def python(self) -> jsonschema.protocols.Validator:
        if self._python is None:
            self._python = _python_validator(self.schema)
        return self._python


def _no_retrieve(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs class; the stubs miss the field


def _rs_retriever(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri} is not allowed; bundle the schema")


def _python_validator(schema: Any, registry: referencing.Registry[Any] | None = None) -> jsonschema.protocols.Validator:
    reg = registry if registry is not None else referencing.Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]
    return jsonschema.Draft202012Validator(schema, registry=reg, format_checker=jsonschema.FormatChecker())


def _has_unknown_keywords(schema: Any) -> bool:
    """Whether :func:`_walk_keywords` finds anything: the same walk without the paths
    (nearly every schema has no unknown keyword, and then no path is needed)."""
    stack: list[Any] = [schema]
    known = _KNOWN_KEYWORDS
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _SUBSCHEMA_KEYS:
                stack.append(value)
            elif key in _SUBSCHEMA_LISTS:
                if isinstance(value, list):
                    stack.extend(value)
            elif key in _SUBSCHEMA_MAPS:
                if isinstance(value, dict):
                    stack.extend(value.values())
            elif key not in known and not key.startswith("x-"):
                return True
    return False


def _walk_keywords(schema: Any) -> list[tuple[Path, str]]:
    """Unknown keywords (typos such as `maximun`) in a schema, with their paths."""
    if not _has_unknown_keywords(schema):
        return []
    out: list[tuple[Path, str]] = []
    stack: list[tuple[Path, Any]] = [((), schema)]
    known = _KNOWN_KEYWORDS
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key not in known and not key.startswith("x-"):
                out.append(((*path, key), key))
            if key in _SUBSCHEMA_KEYS:
                stack.append(((*path, key), value))
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                stack.extend(((*path, key, i), sub) for i, sub in enumerate(value))
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                stack.extend(((*path, key, name), sub) for name, sub in value.items())
    out.sort(key=lambda item: [str(p) for p in item[0]])
    return out


def _json_document(file: str, data: bytes) -> Document:
    """Parse a JSON schema file; locations only for the root (JSON has no marks here)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Document(
            file=file,
            value=None,
            findings=(Finding(file=file, line=1, column=1, rule="encoding", message=f"not UTF-8 at byte {exc.start}"),),
        )
    except json.JSONDecodeError as exc:
        return Document(
            file=file,
            value=None,
            findings=(Finding(file=file, line=exc.lineno, column=exc.colno, rule="json-syntax", message=exc.msg),),
        )
    return Document(file=file, value=value, locations={(): SourceLocation(file=file)})


@functools.cache
def _meta_validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)


def _meta_valid_fast(schema: Any) -> bool:
    """jsonschema-rs checks the metaschema ~100x faster; any doubt goes to the slow path."""
    try:
        return bool(_rs.meta.is_valid(schema))
    except Exception:  # noqa: BLE001 - the precise validator decides and reports
        return False


def load_schema_value(file: str, data: bytes) -> Any:
    """The schema document as a value, or None when it cannot be read."""
    doc = _json_document(file, data) if file.endswith(".json") else parse_mod.parse(file, data)
    return doc.value


def compile_schema(file: str, data: bytes, *, parse_file: Any = parse_mod.parse) -> tuple[CompiledSchema | None, list[Finding]]:
    """Read, check and compile an app's value schema (JSON, or YAML read strictly)."""
    doc = _json_document(file, data) if file.endswith(".json") else parse_file(file, data)
    findings = list(doc.findings)
    if doc.value is None or not doc.ok:
        return None, findings  # a schema with a duplicate key or a bad tag is not used half-read
    schema = doc.value
    if not isinstance(schema, dict):
        findings.append(Finding.at(doc.location(()), "schema-invalid", "a JSON Schema must be an object"))
        return None, findings
    declared = schema.get("$schema")
    if declared is not None and declared != "https://json-schema.org/draft/2020-12/schema":
        findings.append(
            Finding.at(
                doc.location(("$schema",)),
                "schema-draft",
                f"$schema {declared} is not draft 2020-12; configctl validates with draft 2020-12",
                severity=Severity.WARNING,
            )
        )
    meta_errors = [] if _meta_valid_fast(schema) else sorted(_meta_validator().iter_errors(schema), key=lambda e: list(e.absolute_path))
    for err in meta_errors:
        path = tuple(err.absolute_path)
        findings.append(
            Finding.at(doc.location(path), "schema-invalid", f"{_dotted(path) or 'schema'}: {_short(err.message)}")
        )
    if meta_errors:
        return None, findings
    for path, key in _walk_keywords(schema):
        findings.append(
            Finding.at(
                doc.location(path),
                "schema-unknown-keyword",
                f"unknown schema keyword `{key}` is ignored by validators",
                severity=Severity.WARNING,
                hint="custom annotations start with `x-`",
            )
        )
    fast = None
    if _rs is not None:
        try:
            fast = _rs.validator_for(schema, validate_formats=True, retriever=_rs_retriever)
        except Exception:  # noqa: BLE001 - the slow path reports the real problem below
            fast = None
    if fast is None:
        return CompiledSchema(file=file, fast=None, _schema=schema), findings
    return CompiledSchema(file=file, fast=fast, reread=functools.partial(load_schema_value, file, data)), findings


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _wants_string(err: ValidationError) -> bool:
    """Would the text of the value, as a string, have satisfied the failing keyword?"""
    if err.validator == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return "string" in types
    if err.validator == "enum":
        return any(isinstance(v, str) for v in err.validator_value)  # type: ignore[union-attr]  # enum holds a list
    if err.validator == "const":
        return isinstance(err.validator_value, str)
    return False


def _plain_hint(doc: Document | None, path: Path, err: ValidationError) -> str | None:
    """Say what a plain scalar was read as; suggest quotes only where a string would do."""
    if doc is None:
        return None
    scalar = doc.plain.get(path)
    if scalar is None or not _wants_string(err):
        return None
    return f"`{scalar.text}` was read as {scalar.read_as}; if you meant the text, quote it: \"{scalar.text}\""


def _file_schema_findings(doc: Document, validator: jsonschema.protocols.Validator) -> list[Finding]:
    out: list[Finding] = []
    if doc.value is None:
        return out
    for err in validator.iter_errors(doc.value):
        out.extend(_document_error(doc, err))
    return out


def _document_error(doc: Document, err: ValidationError) -> list[Finding]:
    path = tuple(err.absolute_path)
    if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
        known = set((err.schema or {}).get("properties", {})) if isinstance(err.schema, dict) else set()
        out = []
        for extra in err.instance:
            if extra in known:
                continue
            import difflib

            close = difflib.get_close_matches(str(extra), sorted(known), n=1)
            out.append(
                Finding.at(
                    doc.location((*path, extra)),
                    "unknown-key",
                    f"unknown key `{_dotted((*path, extra))}`",
                    hint=f"did you mean `{close[0]}`?" if close else None,
                )
            )
        return out
    where = _dotted(path)
    return [
        Finding.at(
            doc.location(path),
            "schema",
            f"{where + ': ' if where else ''}{_short(err.message)}",
            hint=_plain_hint(doc, path, err),
        )
    ]


@dataclass(slots=True)
class _Grouped:
    finding: Finding
    pairs: list[str]


@dataclass(slots=True)
class PairResult:
    """The cached evaluation of one (app, env): reused while its inputs are the same objects."""

    docs: tuple[Document, ...]
    schema_key: str | None
    values: dict[str, Any]
    findings: list[Finding]
    checksum: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    report: Report
    values: Mapping[tuple[str, str], dict[str, Any]]
    """Resolved values of every (app, env)."""
    pairs: Mapping[tuple[str, str], PairResult]


def validate_tree(
    tree: ConfigTree,
    *,
    file_schemas: Mapping[str, Any],
    parse_file: Any = parse_mod.parse,
    schema_cache: dict[str, tuple[CompiledSchema | None, list[Finding]]] | None = None,
) -> Report:
    """Every finding of a tree: parse, tree rules, file schemas, resolved app schemas."""
    return evaluate(tree, file_schemas=file_schemas, parse_file=parse_file, schema_cache=schema_cache).report


def evaluate(
    tree: ConfigTree,
    *,
    file_schemas: Mapping[str, Any],
    parse_file: Any = parse_mod.parse,
    schema_cache: dict[str, tuple[CompiledSchema | None, list[Finding]]] | None = None,
    pair_cache: dict[tuple[str, str], PairResult] | None = None,
    memo: tree_mod.Memo | None = None,
    partial: bool = False,
) -> Evaluation:
    """Validate a tree and resolve every (app, env).

    ``file_schemas`` maps the ``$id`` of each file-kind schema to the schema itself (the
    adapter loads them from the package). A long-running caller passes ``schema_cache``
    (compiled app schemas by content hash) and ``pair_cache`` (per-pair results, reused
    while the pair's layer documents are the very same objects, as a per-blob parse cache
    returns them): then the work of a commit follows the size of its change. The cache
    then holds the pairs of this tree only, unless the tree is ``partial`` (some apps of a
    snapshot, the others unchanged: their pairs stay, for the next commit that changes one).
    """
    findings: list[Finding] = list(tree.findings)
    broken_files = {f.file for f in tree.findings if f.severity is Severity.ERROR}

    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]
    registry = registry.with_resources(
        # Data shipped beside the schemas (rollout-vectors.json) is not a schema resource.
        (sid, referencing.Resource.from_contents(s))
        for sid, s in file_schemas.items()
        if isinstance(s, dict) and "$schema" in s
    )
    repo_schema = file_schemas.get(REPO_SCHEMA_ID)
    app_schema = file_schemas.get(APP_SCHEMA_ID)
    if tree.repo is not None and repo_schema is not None:
        repo_validator = _python_validator(repo_schema, registry)
        findings.extend(tree_mod.memoized(memo, tree.repo, lambda d: _file_schema_findings(d, repo_validator)))
    if app_schema is not None:
        app_validator = _python_validator(app_schema, registry)

        def manifest_findings(doc: Document) -> list[Finding]:
            out = []
            if doc.value is None and doc.empty:
                out.append(Finding.at(doc.location(()), "schema", "app.yaml is empty; it needs `description` and `owners`"))
            return out + _file_schema_findings(doc, app_validator)

        for app in tree.apps.values():
            if app.manifest is not None:
                findings.extend(tree_mod.memoized(memo, app.manifest, manifest_findings))

    rollouts_schema = file_schemas.get(rollout_spec.ROLLOUTS_SCHEMA_ID)
    rollouts_validator = _python_validator(rollouts_schema, registry) if rollouts_schema is not None else None

    cache = schema_cache if schema_cache is not None else {}
    pcache = pair_cache if pair_cache is not None else {}
    grouped: dict[tuple[str, int, int, str, str], _Grouped] = {}
    all_values: dict[tuple[str, str], dict[str, Any]] = {}
    live: dict[tuple[str, str], PairResult] = {}
    for app in tree.apps.values():
        compiled: CompiledSchema | None = None
        key: str | None = None
        if app.schema_path is not None and app.schema_path in tree.files:
            data = tree.files[app.schema_path].data
            key = hashlib.sha256(app.schema_path.encode() + b"\0" + data).hexdigest()
            if key not in cache:
                cache[key] = compile_schema(app.schema_path, data, parse_file=parse_file)
            compiled, schema_findings = cache[key]
            findings.extend(schema_findings)
            if compiled is not None:
                tree.schemas_read.add(app.schema_path)
        for env in tree.environments:
            layers = tree.layers(app.name, env)
            docs = tuple(doc for _, doc in layers)
            cached = pcache.get((app.name, env))
            if (
                cached is not None
                and cached.schema_key == key
                and len(cached.docs) == len(docs)
                and all(a is b for a, b in zip(cached.docs, docs, strict=True))
            ):
                result = cached
            else:
                values = resolve_mod.merge(docs)
                pair_findings: list[Finding] = []
                if any(doc.has_unset for doc in docs):
                    pair_findings.extend(resolve_mod.resolve(layers).findings)
                layers_ok = all(doc.ok and doc.file not in broken_files for doc in docs)
                if compiled is not None and not (compiled.fast is not None and _fast_valid(compiled.fast, values)):
                    found = _resolved_errors(app.name, env, layers, compiled)
                    if not layers_ok:
                        # A layer that failed to parse is missing values: "required" would only
                        # echo that failure in another file. Its own errors come first.
                        found = [f for f in found if f.rule != "required"]
                    pair_findings.extend(found)
                result = PairResult(docs=docs, schema_key=key, values=values, findings=pair_findings)
            live[(app.name, env)] = result
            all_values[(app.name, env)] = result.values
            for finding in result.findings:
                if finding.file in broken_files:
                    continue  # the file's own errors come first; this one may be their echo
                gkey = (finding.file, finding.line, finding.column, finding.rule, finding.message)
                group = grouped.get(gkey)
                if group is None:
                    grouped[gkey] = _Grouped(finding=finding, pairs=[f"{app.name}/{env}"])
                else:
                    group.pairs.append(f"{app.name}/{env}")
        if app.rollouts is not None and app.rollouts.ok and app.rollouts.file not in broken_files:
            findings.extend(_rollout_findings(app, tree, live, compiled, rollouts_validator))
    if pair_cache is not None:
        if not partial:
            pair_cache.clear()
        pair_cache.update(live)
    for group in grouped.values():
        f = group.finding
        if len(group.pairs) == 1:
            where = f"app {group.pairs[0].split('/')[0]} in environment {group.pairs[0].split('/')[1]}"
        else:
            shown = ", ".join(group.pairs[:5]) + (", …" if len(group.pairs) > 5 else "")
            where = f"{len(group.pairs)} app/environment pairs: {shown}"
        findings.append(
            Finding(
                file=f.file,
                line=f.line,
                column=f.column,
                rule=f.rule,
                message=f"{f.message} (for {where})",
                severity=f.severity,
                hint=f.hint,
            )
        )
    return Evaluation(report=Report.of(findings), values=all_values, pairs=live)


def _rollout_findings(
    app: tree_mod.App,
    tree: ConfigTree,
    live: Mapping[tuple[str, str], PairResult],
    compiled: CompiledSchema | None,
    validator: jsonschema.protocols.Validator | None,
) -> list[Finding]:
    """The checks of ``apps/<app>/rollouts.yaml`` (see :mod:`configctl.core.rollout_spec`)."""
    doc = app.rollouts
    if doc is None:
        return []
    schema_findings = _file_schema_findings(doc, validator) if validator is not None else []
    value_errors: rollout_spec.ValueErrors | None = None
    if compiled is not None:
        checked_schema = compiled

        def value_errors(values: Mapping[str, Any]) -> list[tuple[Path, str]]:
            if checked_schema.fast is not None and _fast_valid(checked_schema.fast, values):
                return []
            return [
                (
                    tuple(err.absolute_path),
                    f"`{_dotted(tuple(err.absolute_path)) or '(root)'}`: "
                    + ("value does not match the schema (secret value hidden)" if is_secret(err.schema) else _short(err.message)),
                )
                for err in checked_schema.python.iter_errors(values)
            ]

    return rollout_spec.check(
        doc,
        environments=tree.environments,
        schema_findings=schema_findings,
        values={env: live[(app.name, env)].values for env in tree.environments if (app.name, env) in live},
        value_errors=value_errors,
    )


def _fast_valid(fast: Any, values: Any) -> bool:
    """jsonschema-rs says valid; any doubt (an exception) defers to the precise validator."""
    try:
        return bool(fast.is_valid(values))
    except Exception:  # noqa: BLE001 - the precise validator decides and reports
        return False


def _default_location(app: str, layers: list[tuple[str, Document]]) -> SourceLocation:
    for name, doc in reversed(layers):
        if name in ("app-environment", "app"):
            return SourceLocation(file=doc.file)
    return SourceLocation(file=f"apps/{app}/app.yaml")


def _resolved_errors(
    app: str, env: str, layers: list[tuple[str, Document]], compiled: CompiledSchema
) -> list[Finding]:
    resolution = resolve_mod.resolve(layers)
    docs_by_file = {doc.file: doc for _, doc in layers}
    out: list[Finding] = []
    try:
        errors = list(compiled.python.iter_errors(resolution.values))
    except referencing.exceptions.Unresolvable as exc:
        return [
            Finding(
                file=compiled.file,
                line=1,
                column=1,
                rule="schema-unresolvable-ref",
                message=f"cannot resolve $ref {exc.ref}: remote references are not fetched; bundle them into the schema",
            )
        ]

    def locate(path: Path) -> tuple[SourceLocation, Document | None]:
        winner = resolution.winner(tuple(p for p in path))
        if winner is None:
            # A mapping-valued path: the last layer that writes it (or its nearest ancestor).
            for i in range(len(path), 0, -1):
                for _, layer_doc in reversed(layers):
                    if path[:i] in layer_doc.locations:
                        return layer_doc.location(path), layer_doc
            return _default_location(app, layers), None
        doc = docs_by_file.get(winner.location.file)
        if doc is None:
            return winner.location, None
        return doc.location(path), doc

    for err in errors:
        path = tuple(err.absolute_path)
        secret = is_secret(err.schema)
        if err.validator == "required" and isinstance(err.instance, dict):
            required: list[str] = list(err.validator_value)  # type: ignore[arg-type]  # `required` holds a list
            for name in required:
                if name in err.instance:
                    continue
                missing = (*path, name)
                loc = locate(path)[0] if path else _default_location(app, layers)
                out.append(
                    Finding.at(
                        loc,
                        "required",
                        f"`{_dotted(missing)}` is required but no layer sets it",
                        hint=f"set it in apps/{app}/values.yaml or apps/{app}/envs/{env}.yaml",
                    )
                )
            continue
        if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {})) if isinstance(err.schema, dict) else set()
            patterns = list(err.schema.get("patternProperties", {})) if isinstance(err.schema, dict) else []
            import difflib
            import re

            for extra in err.instance:
                if extra in known or any(re.search(p, extra) for p in patterns):
                    continue
                loc, _ = locate((*path, extra))
                close = difflib.get_close_matches(str(extra), sorted(known), n=1)
                out.append(
                    Finding.at(
                        loc,
                        "unknown-key",
                        f"`{_dotted((*path, extra))}` is not allowed by the app schema",
                        hint=f"did you mean `{_dotted((*path, close[0]))}`?" if close else None,
                    )
                )
            continue
        loc, doc = locate(path)
        message = "value does not match the schema (secret value hidden)" if secret else _short(err.message)
        out.append(
            Finding.at(
                loc,
                "schema",
                f"`{_dotted(path)}`: {message}" if path else message,
                hint=None if secret else _plain_hint(doc, path, err),
            )
        )
    return out
