"""A config repository as an in-memory tree: which file is which, and the cross-file rules.

Input is a snapshot ``{relative path: FileEntry}`` (from the working tree or straight from
git objects); output is a :class:`ConfigTree` holding the parsed documents by role plus
the findings of the tree-level rules:

* ``configctl.yaml`` exists; environments are declared there before any file uses them;
* every ``apps/<app>/`` folder has an ``app.yaml``;
* app and environment names are DNS labels, and no two differ only in case;
* config files are ``.yaml`` (not ``.yml``), are not symlinks, and are known by name;
* every values file is one mapping whose keys contain no dots.

Parsing is injected (``parse_file``) so callers can cache parses per git blob.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from configctl.core import parse as parse_mod
from configctl.core.model import FileEntry, Finding, Severity, SourceLocation
from configctl.core.parse import Document

REPO_FILE: Final = "configctl.yaml"
GLOBAL_FILE: Final = "global.yaml"
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
APP_FILES: Final = ("app.yaml", "values.yaml", "rollouts.yaml")

ParseFile = Callable[[str, bytes], Document]


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    name: str
    manifest: Document | None
    values: Document | None = None
    envs: Mapping[str, Document] = field(default_factory=dict)
    rollouts: Document | None = None
    schema_path: str | None = None
    """Repository-relative path of the app's value schema, if app.yaml names one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigTree:
    """The parsed repository. Documents with errors are kept; their findings are in ``findings``."""

    repo: Document | None
    environments: tuple[str, ...]
    global_layer: Document | None
    env_layers: Mapping[str, Document]
    apps: Mapping[str, App]
    files: Mapping[str, FileEntry]
    findings: tuple[Finding, ...]
    unreadable: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)
    """Files whose contents could not be read at all (YAML syntax, encoding, size bound, a
    values file that is not a mapping), by path, with the findings that say why. Such a
    file contributes nothing to any resolution, so a pair that needs it must not be
    resolved as if the layer were simply absent."""
    schemas_read: set[str] = field(default_factory=set, compare=False, repr=False)
    """The app value schemas validation read and compiled (so they can be read): what
    finds the secret keys need not read one again to know it marks nothing."""

    def layer_paths(self, app: str, env: str) -> tuple[str, ...]:
        """The files (app, env) depends on: ``configctl.yaml`` and its four layer paths."""
        return (
            REPO_FILE,
            GLOBAL_FILE,
            f"environments/{env}.yaml",
            f"apps/{app}/values.yaml",
            f"apps/{app}/envs/{env}.yaml",
        )

    def unreadable_for(self, app: str, env: str) -> tuple[Finding, ...]:
        """Why (app, env) cannot be resolved faithfully: the findings of its unreadable files."""
        return tuple(f for path in self.layer_paths(app, env) for f in self.unreadable.get(path, ()))

    def unreadable_layers(self) -> tuple[Finding, ...]:
        """The unreadable files any (app, env) of the tree depends on (for whole-tree commands)."""
        needed = {REPO_FILE, GLOBAL_FILE}
        for env in self.environments:
            needed.add(f"environments/{env}.yaml")
        for app in self.apps:
            needed.add(f"apps/{app}/values.yaml")
            needed.update(f"apps/{app}/envs/{env}.yaml" for env in self.environments)
        return tuple(f for path in sorted(needed) for f in self.unreadable.get(path, ()))

    def layers(self, app: str, env: str) -> list[tuple[str, Document]]:
        """The four layers of (app, env), earliest first, only those that exist."""
        out: list[tuple[str, Document]] = []
        if self.global_layer is not None:
            out.append(("global", self.global_layer))
        env_doc = self.env_layers.get(env)
        if env_doc is not None:
            out.append(("environment", env_doc))
        a = self.apps[app]
        if a.values is not None:
            out.append(("app", a.values))
        app_env = a.envs.get(env)
        if app_env is not None:
            out.append(("app-environment", app_env))
        return out

    def documents(self) -> Iterable[Document]:
        for doc in (self.repo, self.global_layer):
            if doc is not None:
                yield doc
        yield from self.env_layers.values()
        for a in self.apps.values():
            for doc in (a.manifest, a.values, a.rollouts):
                if doc is not None:
                    yield doc
            yield from a.envs.values()


def _finding(file: str, rule: str, message: str, *, hint: str | None = None, line: int = 1) -> Finding:
    return Finding(file=file, line=line, column=1, rule=rule, message=message, hint=hint)


def _is_yaml(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def _check_values(doc: Document) -> list[Finding]:
    """A values file is one mapping; keys hold no dots (dots join nested keys)."""
    if doc.value is None:
        return []
    if not isinstance(doc.value, dict):
        return [
            Finding.at(
                doc.location(()),
                "values-not-mapping",
                f"a values file must be a mapping of keys to values, not a {_kind(doc.value)}",
            )
        ]
    out: list[Finding] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), doc.value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            if "." not in "".join(node):  # no key of this mapping has a dot: only go deeper
                stack.extend(((*path, key), child) for key, child in node.items() if isinstance(child, dict))
                continue
            for key, child in node.items():
                child_path = (*path, key)
                if "." in key:
                    parts = key.split(".")
                    nested = ": {".join(parts) + ": …" + "}" * (len(parts) - 1)
                    out.append(
                        Finding.at(
                            doc.location(child_path),
                            "key-dot",
                            f"the key `{key}` contains a dot; dots join nested keys",
                            hint=f"nest it instead: {nested}",
                        )
                    )
                if isinstance(child, dict):
                    stack.append((child_path, child))
    return out


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _check_name(kind: str, name: str, file: str, *, line: int = 1) -> list[Finding]:
    if DNS_LABEL.match(name):
        return []
    return [
        _finding(
            file,
            "invalid-name",
            f"{kind} name `{name}` is not a DNS label (lowercase letters, digits and '-', at most 63 characters)",
            line=line,
        )
    ]


Memo = dict[int, tuple[Document, list[Finding]]]
"""Per-document findings by ``id(doc)``, holding the document so its id is not reused."""


def memoized(memo: Memo | None, doc: Document, check: Callable[[Document], list[Finding]]) -> list[Finding]:
    """``check(doc)``, computed once per document object when a memo is given."""
    if memo is None:
        return check(doc)
    hit = memo.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    found = check(doc)
    memo[id(doc)] = (doc, found)
    return found


def build(
    files: Mapping[str, FileEntry],
    *,
    parse_file: ParseFile = parse_mod.parse,
    memo: Memo | None = None,
) -> ConfigTree:
    """Classify and parse a snapshot, and apply the tree-level rules.

    A long-running caller passes ``memo`` (with a parse function that returns the same
    Document for the same bytes): per-file checks then run once per file version.
    """
    findings: list[Finding] = []
    unreadable: dict[str, tuple[Finding, ...]] = {}

    for path in sorted(p for p, e in files.items() if e.symlink):
        findings.append(
            _finding(
                path.rstrip("/"),
                "symlink",
                "symlinks are not allowed in a config repository",
                hint="replace the link with the file itself",
            )
        )
    files = {p: e for p, e in files.items() if not e.symlink}

    def load(path: str) -> Document | None:
        entry = files[path]
        if entry.size > parse_mod.MAX_FILE_BYTES:
            too_large = _finding(
                path,
                "file-too-large",
                f"the file is {entry.size} bytes; the limit is {parse_mod.MAX_FILE_BYTES}",
            )
            findings.append(too_large)
            unreadable[path] = (too_large,)
            return None
        doc = parse_file(path, entry.data)
        findings.extend(doc.findings)
        if doc.value is None and not doc.ok:
            unreadable[path] = tuple(f for f in doc.findings if f.severity is Severity.ERROR)
        return doc

    def load_values(path: str) -> Document | None:
        """A values layer: read, then checked to be one mapping (anything else is unreadable)."""
        doc = load(path)
        if doc is not None:
            found = memoized(memo, doc, _check_values)
            findings.extend(found)
            if doc.value is not None and not isinstance(doc.value, dict):
                unreadable[path] = tuple(f for f in found if f.rule == "values-not-mapping")
        return doc

    # Case collisions first: they break checkouts on macOS and Windows. Two app folders
    # that differ in case are one finding; files are compared only within one folder name.
    app_dirs: dict[str, str] = {}
    colliding: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "apps":
            first = app_dirs.setdefault(parts[1].casefold(), parts[1])
            if first != parts[1] and parts[1] not in colliding:
                colliding.add(parts[1])
                findings.append(
                    _finding(
                        f"apps/{parts[1]}",
                        "case-collision",
                        f"app folders `apps/{first}` and `apps/{parts[1]}` differ only in case",
                    )
                )
    by_fold: dict[str, str] = {}
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) > 1 and parts[0] not in ("apps", "environments"):
            continue
        if parts[0] == "apps" and len(parts) >= 3 and parts[1] in colliding:
            continue
        folded = path.casefold()
        other = by_fold.get(folded)
        if other is not None:
            findings.append(_finding(path, "case-collision", f"`{path}` and `{other}` differ only in case"))
        else:
            by_fold[folded] = path

    # Near misses of the layout are ignored by resolution: say so rather than stay silent.
    known_roots = (REPO_FILE, GLOBAL_FILE)
    warned_dirs: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")
        if not _is_yaml(path):
            continue
        if len(parts) == 1:
            close = difflib.get_close_matches(path, known_roots, n=1, cutoff=0.75)
            if close and path not in (*known_roots, "global.yml", "configctl.yml"):
                findings.append(
                    Finding(
                        file=path, line=1, column=1, rule="unknown-file",
                        message=f"`{path}` is not part of the layout and is ignored",
                        severity=Severity.WARNING, hint=f"did you mean `{close[0]}`?",
                    )
                )
        elif parts[0] not in ("apps", "environments") and parts[0] not in warned_dirs:
            close = difflib.get_close_matches(parts[0], ("apps", "environments"), n=1, cutoff=0.75)
            if close:
                warned_dirs.add(parts[0])
                findings.append(
                    Finding(
                        file=path, line=1, column=1, rule="unknown-file",
                        message=f"folder `{parts[0]}/` is not part of the layout and is ignored",
                        severity=Severity.WARNING, hint=f"did you mean `{close[0]}/`?",
                    )
                )

    repo_doc: Document | None = None
    environments: list[str] = []
    if REPO_FILE not in files:
        alt = "configctl.yml" if "configctl.yml" in files else None
        findings.append(
            _finding(
                REPO_FILE,
                "missing-repo-file",
                "configctl.yaml is missing: this is not a configctl repository",
                hint="rename configctl.yml to configctl.yaml" if alt else "run `configctl init` to create one",
            )
        )
    else:
        repo_doc = load(REPO_FILE)
        if repo_doc is not None and isinstance(repo_doc.value, dict):
            raw = repo_doc.value.get("environments")
            if isinstance(raw, list):
                seen: set[str] = set()
                for i, env in enumerate(raw):
                    if isinstance(env, str):
                        loc = repo_doc.location(("environments", i))
                        if env.casefold() in seen:
                            findings.append(Finding.at(loc, "duplicate-environment", f"environment `{env}` is declared twice"))
                            continue
                        seen.add(env.casefold())
                        if not DNS_LABEL.match(env):
                            findings.append(
                                Finding.at(
                                    loc,
                                    "invalid-name",
                                    f"environment name `{env}` is not a DNS label (lowercase letters, digits and '-', at most 63 characters)",
                                )
                            )
                            continue
                        environments.append(env)
    declared = set(environments)

    def check_env_use(env: str, path: str) -> bool:
        if env in declared:
            return True
        close = difflib.get_close_matches(env, sorted(declared), n=1)
        findings.append(
            _finding(
                path,
                "undeclared-environment",
                f"environment `{env}` is not declared in configctl.yaml",
                hint=f"did you mean `{close[0]}`?" if close else "add it to `environments:` in configctl.yaml",
            )
        )
        return False

    def load_env_layer(env: str, path: str) -> Document | None:
        """An environment-specific values file: a valid, declared name, then one mapping."""
        bad_name = _check_name("environment", env, path)
        if bad_name:
            findings.extend(bad_name)
            return None
        if not check_env_use(env, path):
            return None
        return load_values(path)

    global_doc: Document | None = None
    env_layers: dict[str, Document] = {}
    app_paths: dict[str, dict[str, str]] = {}
    for path in sorted(files):
        parts = path.split("/")
        if path == "global.yml":
            findings.append(_finding(path, "yml-extension", "config files end in .yaml", hint="rename it to global.yaml"))
            continue
        if path == GLOBAL_FILE:
            global_doc = load_values(path)
            continue
        if parts[0] == "environments":
            if not _is_yaml(path):
                continue
            if len(parts) != 2:
                findings.append(_finding(path, "unknown-file", "environment layers live directly in environments/<env>.yaml"))
                continue
            if path.endswith(".yml"):
                findings.append(_finding(path, "yml-extension", "config files end in .yaml", hint=f"rename it to {path[:-4]}.yaml"))
                continue
            env = parts[1][: -len(".yaml")]
            doc = load_env_layer(env, path)
            if doc is not None:
                env_layers[env] = doc
            continue
        if parts[0] == "apps" and len(parts) >= 3:
            app_paths.setdefault(parts[1], {})[path] = "/".join(parts[2:])

    apps: dict[str, App] = {}
    for name in sorted(app_paths):
        members = app_paths[name]
        base = f"apps/{name}"
        name_problems = _check_name("app", name, f"{base}/app.yaml" if f"{base}/app.yaml" in files else sorted(members)[0])
        if name_problems:
            findings.extend(name_problems)
            continue
        manifest_path = f"{base}/app.yaml"
        manifest: Document | None = None
        schema_path: str | None = None
        if manifest_path not in files:
            findings.append(
                _finding(
                    manifest_path,
                    "missing-app-manifest",
                    f"app folder `{base}` has no app.yaml",
                    hint="every app folder needs an app.yaml with `description` and `owners`",
                )
            )
        else:
            manifest = load(manifest_path)
            if manifest is not None and isinstance(manifest.value, dict):
                raw_schema = manifest.value.get("schema")
                if isinstance(raw_schema, str):
                    schema_path = _join(base, raw_schema)
                    if schema_path is None:
                        findings.append(
                            Finding.at(
                                manifest.location(("schema",)),
                                "schema-outside-repo",
                                f"schema path `{raw_schema}` leaves the repository",
                            )
                        )
                    elif schema_path not in files:
                        findings.append(
                            Finding.at(
                                manifest.location(("schema",)),
                                "schema-not-found",
                                f"schema file `{raw_schema}` does not exist (looked for {schema_path})",
                            )
                        )
        values: Document | None = None
        rollouts: Document | None = None
        envs: dict[str, Document] = {}
        for path, rel in sorted(members.items()):
            if rel == "app.yaml" or path == schema_path or not _is_yaml(path):
                continue
            if rel.endswith(".yml"):
                findings.append(_finding(path, "yml-extension", "config files end in .yaml", hint=f"rename it to {path[:-4]}.yaml"))
                continue
            if rel == "values.yaml":
                values = load_values(path)
            elif rel == "rollouts.yaml":
                rollouts = load(path)
            elif rel.startswith("envs/") and rel.count("/") == 1:
                env = rel[len("envs/") : -len(".yaml")]
                doc = load_env_layer(env, path)
                if doc is not None:
                    envs[env] = doc
            else:
                close = difflib.get_close_matches(rel, [*APP_FILES, "envs/<env>.yaml"], n=1, cutoff=0.6)
                findings.append(
                    _finding(
                        path,
                        "unknown-file",
                        f"unknown file `{rel}` in app `{name}`",
                        hint=f"did you mean `{close[0]}`?" if close else "an app folder holds app.yaml, values.yaml, envs/<env>.yaml and rollouts.yaml",
                    )
                )
        apps[name] = App(
            name=name,
            manifest=manifest,
            values=values,
            envs=envs,
            rollouts=rollouts,
            schema_path=schema_path,
        )
    return ConfigTree(
        repo=repo_doc,
        environments=tuple(environments),
        global_layer=global_doc,
        env_layers=env_layers,
        apps=apps,
        files=files,
        findings=tuple(findings),
        unreadable=unreadable,
    )


def _join(base: str, rel: str) -> str | None:
    """Join a relative path onto a folder; None when it would leave the repository."""
    if rel.startswith("/"):
        return None
    parts = base.split("/")
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) if parts else None


def empty_location(file: str) -> SourceLocation:
    return SourceLocation(file=file)


__all__ = ["App", "ConfigTree", "Severity", "build"]
