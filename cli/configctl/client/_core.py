"""The state and rules shared by :class:`ConfigClient` and :class:`AsyncConfigClient`.

:class:`ClientCore` holds the served :class:`View`, the adoption rules and the read API;
it does no network I/O, so the sync and the asyncio client only differ in how they fetch.

Adoption rules (one place):

- a snapshot must decode, name this app and env, and not be older than the one served;
- the same version with the same checksum changes nothing (it only proves freshness);
- it must pass the app's schema (:mod:`configctl.client._schema`) and its rollouts must
  load; otherwise it is *refused*: the last good version stays in service, the refusal is
  kept (and reported), and the same refused version is not re-checked on every refresh;
- only then does the watermark move, listeners run (each in its own ``try``: one that
  raises is logged and the others still run), and the last-known-good file is written.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from configctl.client._hub import Hub
from configctl.client._schema import SchemaCheck
from configctl.client._view import EMPTY_VIEW, View, changed_keys, leaves
from configctl.client.settings import ClientSettings
from configctl.core.cache import CachedSnapshot, decode_snapshot, encode_snapshot, require_name
from configctl.core.clients import ClientReport

__all__ = ["ChangeEvent", "ClientCore", "ClientState", "Details", "Explanation", "Provenance"]

log = logging.getLogger("configctl.client")

T = TypeVar("T")

_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeEvent:
    """What ``on_change`` listeners receive: which keys changed between which versions."""

    app: str
    env: str
    old_version: int | None
    """The version served before (None: the client had nothing)."""
    new_version: int
    changed_keys: tuple[str, ...]
    """Dotted leaf keys added, changed or removed, sorted."""
    rollouts_changed: bool = False
    """The rollouts (or their runtime state) changed: values under a context may differ."""

    @property
    def version(self) -> int:
        """The notification schema's name for ``new_version``."""
        return self.new_version

    @property
    def previous_version(self) -> int | None:
        """The notification schema's name for ``old_version``."""
        return self.old_version


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientState:
    """How current the served configuration is."""

    version: int | None
    """The version served (None: nothing loaded yet; ``get`` returns defaults)."""
    commit: str | None
    source: str | None
    """Where it came from: ``redis``, ``snapshot_dir`` or ``last_known_good``."""
    fresh: bool
    """The source answered the last refresh (and the served version is its newest good one)."""
    stale_since: datetime | None
    """Since when the source has not answered (None while fresh)."""
    since: datetime | None
    """When the served version was adopted."""
    last_refresh: datetime | None
    """When the source last answered."""
    refused_version: int | None
    """The newest version refused (failed the app's schema), if any."""
    refused_reason: str | None
    error: str | None
    """The last refresh's error, one secret-free line (None when it succeeded)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """The layer, file and line that set a key (from the config repository)."""

    layer: str
    file: str
    line: int
    overrides: tuple[str, ...] = ()
    """``file:line`` of the layers it overrode, nearest first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why ``get(key, context=...)`` returns what it returns."""

    key: str
    value: object
    found: bool
    """The key exists in the served version (or a rollout supplies it)."""
    base_value: object
    """The value without rollouts."""
    version: int | None
    commit: str | None
    reason: str
    """The evaluator's reason: ``static``, ``targeting_match``, ``split``, ``default``,
    ``disabled`` or ``error``; ``static`` for a key without a rollout."""
    rollout: str | None = None
    rule: str | None = None
    bucket: int | None = None
    variant: str | None = None
    source: Provenance | None = None
    """Where the base value was written; None when the client knows no repository."""
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Details:
    """One evaluation with its reason, cheap enough for every flag check (no provenance).

    ``kind`` says what ``key`` named: ``flag`` (a feature flag), ``rollout`` (a key under a
    rollout), ``value`` (a plain key) or ``missing``.
    """

    key: str
    value: object
    kind: str
    reason: str
    """``static``, ``targeting_match``, ``split``, ``default``, ``disabled`` or ``error``."""
    version: int | None
    rollout: str | None = None
    rule: str | None = None
    bucket: int | None = None
    variant: str | None = None


class ClientCore:
    """Served view, state and listeners of one (app, env) client."""

    def __init__(
        self,
        app: str,
        env: str,
        settings: ClientSettings,
        *,
        schema: Any,
        hub: Hub,
        clock: Callable[[], datetime] | None = None,
        repo: Path | None = None,
    ) -> None:
        self.app = require_name("app", app)
        self.repo = repo
        self.env = require_name("env", env)
        self.settings = settings
        self.instance_id = settings.resolved_instance_id()
        self.hub = hub
        self.clock = clock or _utcnow
        # rollouts read "now" as epoch seconds on the hot path: time.time() is several
        # times cheaper than datetime.now(UTC); a given clock (tests) is used as is
        self.now: Callable[[], datetime | float] = clock or time.time
        self.view: View = EMPTY_VIEW
        self.source: str | None = None
        self.lock = threading.RLock()
        self._listener_lock = threading.Lock()
        self.listeners: list[Callable[[ChangeEvent], Any]] = []
        self.state_listeners: list[Callable[[ClientState], object]] = []
        self.since: datetime | None = None
        self.fresh = False
        self.stale_since: datetime | None = self.clock()
        self.last_refresh: datetime | None = None
        self.error: str | None = None
        self.refused: tuple[int, str, str] | None = None  # version, checksum, reason
        self.schema = schema
        self._provenance: dict[str, Any] = {}

    # -- reads ------------------------------------------------------------------------------------

    @property
    def watermark(self) -> int:
        return self.view.version

    def value(
        self, view: View, key: str, default: Any, context: Mapping[str, object] | None
    ) -> Any:
        """Any key for ``context``: as is, through its rollout's picker, or (a section above
        a rollout key) a copy with the rollouts applied; the base value on an evaluation error."""
        value = view.plain.get(key, _MISSING)
        if value is not _MISSING:
            return value
        pick = view.pickers.get(key)
        base = view.flat.get(key, default)
        if pick is not None:
            try:
                return pick(context, base, self.now, self.instance_id)
            except Exception:
                log.exception("rollout evaluation of %s failed; serving the base value", key)
                return base
        if isinstance(base, list):
            return copy.deepcopy(base)  # the served list stays as it is
        if not isinstance(base, Mapping):
            return base
        section: dict[str, Any] = copy.deepcopy(dict(base))
        prefix = key + "."
        for rollout_key in view.rollout_keys:
            if rollout_key.startswith(prefix):
                _put(
                    section,
                    rollout_key[len(prefix) :].split("."),
                    self.value(view, rollout_key, _MISSING, context),
                )
        return section

    def evaluate(
        self, view: View, key: str, default: Any, context: Mapping[str, object] | None
    ) -> tuple[Any, Any]:
        """(value, evaluation) of a key that has a rollout; the base value on any error."""
        base = view.flat.get(key, default)
        try:
            ev = view.rollouts.evaluate(
                key, base, context, now=self.now(), instance_id=self.instance_id
            )
        except Exception:
            log.exception("rollout evaluation of %s failed; serving the base value", key)
            return base, None
        if str(ev.reason) == "error":
            return base, ev
        return ev.value, ev

    def get_all(self, context: Mapping[str, object] | None) -> dict[str, Any]:
        view = self.view
        if view.snapshot is None:
            return {}
        out = leaves(view.snapshot.values)
        for key in view.rollout_keys:
            out[key] = self.value(view, key, out.get(key), context)
        return out

    def is_enabled(self, flag: str, context: Mapping[str, object] | None, default: bool) -> bool:
        view = self.view
        check = view.flag_checks.get(flag)
        if check is not None:
            try:
                return check(context, self.now, self.instance_id)
            except Exception:
                log.exception("flag evaluation of %s failed; serving the default", flag)
                return default
        value = self.value(view, flag, default, context)
        return value if isinstance(value, bool) else default

    def typed(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any,
        context: Mapping[str, object] | None,
        label: str,
    ) -> Any:
        value = self.value(self.view, key, _MISSING, context)
        if value is _MISSING or value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and kind is not bool and (kind is int or kind is float):
            raise TypeError(f"{self.app}/{self.env} `{key}` is a boolean, not {label}")
        if not isinstance(value, kind):
            raise TypeError(f"{self.app}/{self.env} `{key}` is {type(value).__name__}, not {label}")
        if isinstance(value, list):
            return list(value)
        if isinstance(value, dict):
            return dict(value)
        return value

    def state(self) -> ClientState:
        with self.lock:
            snap = self.view.snapshot
            # fresh: the source answered the last refresh *and* something is served
            fresh = self.fresh and snap is not None
            return ClientState(
                version=snap.version if snap else None,
                commit=snap.commit if snap else None,
                source=self.source,
                fresh=fresh,
                stale_since=None if fresh else self.stale_since,
                since=self.since,
                last_refresh=self.last_refresh,
                refused_version=self.refused[0] if self.refused else None,
                refused_reason=self.refused[2] if self.refused else None,
                error=self.error,
            )

    def report(self) -> ClientReport:
        state = self.state()
        import os
        import socket

        return ClientReport(
            instance=self.instance_id,
            version=state.version,
            since=state.since,
            state="fresh" if state.fresh else "stale",
            stale_since=state.stale_since,
            refused_version=state.refused_version,
            refused_reason=state.refused_reason,
            seen=self.clock(),
            ttl=self.settings.report_ttl,
            host=socket.gethostname(),
            pid=os.getpid(),
        )

    # -- freshness --------------------------------------------------------------------------------

    def mark_fresh(self) -> None:
        with self.lock:
            changed = not self.fresh
            self.fresh = True
            self.stale_since = None
            self.error = None
            self.last_refresh = self.clock()
        if changed:
            self._state_changed()

    def mark_stale(self, error: str) -> None:
        with self.lock:
            changed = self.fresh
            if self.fresh or self.stale_since is None:
                self.stale_since = self.clock()
            if self.error != error:
                log.warning(
                    "configctl client %s/%s: refresh failed (%s); serving version %s",
                    self.app,
                    self.env,
                    error,
                    self.view.version or "none",
                )
            self.fresh = False
            self.error = error
        if changed:
            self._state_changed()

    def take(self, text: str | bytes | None) -> CachedSnapshot | None:
        """The snapshot in a source's answer, marking the client fresh; None (stale when the
        answer is unusable, fresh when the source has nothing yet) otherwise."""
        if text is None:
            self.mark_fresh()
            return None
        parsed = self.parse(text)
        if isinstance(parsed, str):
            self.mark_stale(parsed)
            return None
        self.mark_fresh()
        return parsed

    def add_state_listener(self, listener: Callable[[ClientState], object]) -> None:
        """Call ``listener(state)`` when the client turns stale or fresh again."""
        with self.lock:
            self.state_listeners.append(listener)

    def remove_state_listener(self, listener: Callable[[ClientState], object]) -> None:
        with self.lock:
            self.state_listeners = [fn for fn in self.state_listeners if fn is not listener]

    def _state_changed(self) -> None:
        state = self.state()
        for listener in list(self.state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("configctl client %s/%s: a state listener raised", self.app, self.env)

    # -- adoption ---------------------------------------------------------------------------------

    def parse(self, text: str | bytes) -> CachedSnapshot | str:
        """The snapshot, or why it cannot be used."""
        try:
            snapshot = self.hub.memo(("parse", text), lambda: decode_snapshot(text))
        except ValueError as exc:
            return f"malformed snapshot: {exc}"
        if snapshot.key != (self.app, self.env):
            return "the snapshot names another app or env"
        return snapshot

    def consider(self, snapshot: CachedSnapshot, source: str) -> tuple[ChangeEvent | None, bool]:
        """Adopt ``snapshot`` if the rules allow; (event if adopted, report needed)."""
        with self.lock:
            current = self.view.snapshot
            if current is not None and snapshot.version < current.version:
                return None, False
            if (
                current is not None
                and snapshot.version == current.version
                and snapshot.checksum == current.checksum
            ):
                return None, False
            if self.refused is not None and self.refused[:2] == (
                snapshot.version,
                snapshot.checksum,
            ):
                return None, False
            problem = self._problem(snapshot)
            view: View | None = None
            if problem is None:
                try:
                    view = self.hub.memo(
                        ("view", self.app, self.env, snapshot.version, snapshot.checksum),
                        lambda: View.of(snapshot),
                    )
                except Exception as exc:  # noqa: BLE001 - a damaged rollout must not stop adoption: it is refused
                    problem = (
                        f"its rollouts cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}"
                    )
            if problem is not None or view is None:
                reason = problem or "unusable"
                self.refused = (snapshot.version, snapshot.checksum, reason)
                log.error(
                    "configctl client %s/%s refused version %d (%s); still serving version %s",
                    self.app,
                    self.env,
                    snapshot.version,
                    reason,
                    self.view.version or "none",
                )
                return None, True
            old = self.view
            self.view = view
            self.source = source
            self.since = self.clock()
            if self.refused is not None and self.refused[0] < snapshot.version:
                # a newer good version supersedes the refusal: state and status show only
                # a refusal that still holds the client back
                log.info(
                    "configctl client %s/%s: version %d adopted after refusing %d",
                    self.app,
                    self.env,
                    snapshot.version,
                    self.refused[0],
                )
                self.refused = None
            event = ChangeEvent(
                app=self.app,
                env=self.env,
                old_version=old.snapshot.version if old.snapshot else None,
                new_version=snapshot.version,
                changed_keys=self.hub.memo(
                    ("diff", old.snapshot.checksum if old.snapshot else None, snapshot.checksum),
                    lambda: changed_keys(
                        old.snapshot.values if old.snapshot else None, snapshot.values
                    ),
                ),
                rollouts_changed=old.raw_rollouts != view.raw_rollouts,
            )
        return event, True

    def _problem(self, snapshot: CachedSnapshot) -> str | None:
        check: SchemaCheck | None = self.schema.current()
        if check is None:
            return None
        key = (check.fingerprint, f"{self.app}:{self.env}", snapshot.version, snapshot.checksum)
        return self.hub.validated(key, lambda: check.problem(snapshot.values))

    def add_listener(self, listener: Callable[..., Any]) -> None:
        """Register ``listener(event)``, or ``listener(changed_keys, old_version, new_version)``
        when it takes three positional arguments (both shapes are common)."""
        with self.lock:
            self.listeners.append(_adapt(listener))

    def remove_listener(self, listener: Callable[..., Any]) -> None:
        with self.lock:
            self.listeners = [
                fn
                for fn in self.listeners
                if fn is not listener and getattr(fn, "__wrapped__", None) is not listener
            ]

    def fire(self, event: ChangeEvent) -> None:
        """Call every listener; one that raises is logged and the others still run."""
        with self._listener_lock:
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception(
                        "configctl client %s/%s: an on_change listener raised", self.app, self.env
                    )

    # -- last known good --------------------------------------------------------------------------

    def lkg_path(self) -> Path:
        return self.settings.lkg_file(self.app, self.env)

    def write_lkg(self) -> None:
        """Keep a copy of the served version for a start while every server is down."""
        from configctl.adapters.snapshot_dir import atomic_write

        snapshot = self.view.snapshot
        if snapshot is None or self.source == "last_known_good":
            return
        path = self.lkg_path()
        if not self.hub.lkg_needed(str(path), snapshot.version, snapshot.checksum):
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, encode_snapshot(snapshot).encode())
        except Exception as exc:  # a read-only disk must not stop the client  # noqa: BLE001 - a read-only or full disk must not stop the client
            log.warning(
                "configctl client: cannot write the last-known-good file %s: %s",
                path,
                type(exc).__name__,
            )

    def read_lkg(self) -> CachedSnapshot | None:
        path = self.lkg_path()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning(
                "configctl client: cannot read the last-known-good file %s: %s",
                path,
                type(exc).__name__,
            )
            return None
        parsed = self.parse(data)
        if isinstance(parsed, str):
            log.warning(
                "configctl client: the last-known-good file %s is unusable: %s", path, parsed
            )
            return None
        return parsed

    def details(self, key: str, context: Mapping[str, object] | None) -> Details:
        view = self.view
        version = view.version or None
        try:
            if key in view.rollouts.flags:
                ev = view.rollouts.evaluate_flag(
                    key, context, now=self.now(), instance_id=self.instance_id
                )
                kind = "flag"
            elif key in view.rollout_keys:
                ev = view.rollouts.evaluate(
                    key, view.flat.get(key), context, now=self.now(), instance_id=self.instance_id
                )
                kind = "rollout"
            elif key in view.flat:
                return Details(
                    key=key, value=view.flat[key], kind="value", reason="static", version=version
                )
            else:
                return Details(key=key, value=None, kind="missing", reason="error", version=version)
        except Exception as exc:  # noqa: BLE001 - a failing evaluation is an ERROR result, never a crash
            log.warning("evaluation of %s failed: %s", key, type(exc).__name__)
            return Details(
                key=key, value=view.flat.get(key), kind="rollout", reason="error", version=version
            )
        return Details(
            key=key, value=ev.value, kind=kind, reason=str(ev.reason), version=version,
            rollout=ev.rollout, rule=ev.rule, bucket=ev.bucket, variant=ev.variant,
        )  # fmt: skip

    # -- explain ----------------------------------------------------------------------------------

    def explain(self, key: str, context: Mapping[str, object] | None) -> Explanation:
        view = self.view
        snap = view.snapshot
        base = view.flat.get(key, _MISSING)
        found = base is not _MISSING
        value: Any = None if base is _MISSING else base
        reason, rollout, rule, bucket, variant = "static", None, None, None, None
        if key in view.rollout_keys:
            value, ev = self.evaluate(view, key, None if base is _MISSING else base, context)
            found = found or value is not None
            if ev is not None:
                reason, rollout, rule, bucket, variant = (
                    str(ev.reason),
                    ev.rollout,
                    ev.rule,
                    ev.bucket,
                    ev.variant,
                )
        elif not found:
            reason = "default"
        source, note = self._source_of(key, snap)
        return Explanation(
            key=key,
            value=value,
            found=found,
            base_value=None if base is _MISSING else base,
            version=snap.version if snap else None,
            commit=snap.commit if snap else None,
            reason=reason,
            rollout=rollout,
            rule=rule,
            bucket=bucket,
            variant=variant,
            source=source,
            note=note,
        )

    def _source_of(
        self, key: str, snap: CachedSnapshot | None
    ) -> tuple[Provenance | None, str | None]:
        """Provenance from the repository at the served commit (or its working tree)."""
        repo = self.repo
        if repo is None or not (repo / "configctl.yaml").is_file():
            return None, "provenance needs the config repository (repo= or CONFIGCTL_REPO)"
        commit = snap.commit if snap else None
        try:
            resolution = self._resolution(repo, commit)
        except Exception as exc:  # noqa: BLE001 - explain is best effort: any git or parse failure becomes a note
            return None, f"provenance unavailable: {type(exc).__name__}"
        if resolution is None:
            return None, f"{self.app}/{self.env} cannot be resolved from the repository"
        path = tuple(key.split("."))
        settings = resolution.provenance.get(path)
        if not settings:
            winner = resolution.winner(path)
            settings = (winner,) if winner is not None else ()
        if not settings:
            return None, "no layer sets this key"
        last = settings[-1]
        return (
            Provenance(
                layer=last.layer,
                file=last.location.file,
                line=last.location.line,
                overrides=tuple(
                    f"{s.location.file}:{s.location.line}" for s in reversed(settings[:-1])
                ),
            ),
            None,
        )

    def _resolution(self, repo: Path, commit: str | None) -> Any:
        memo = commit or "working-tree"
        if memo in self._provenance:
            return self._provenance[memo]
        from configctl.adapters import schemas
        from configctl.services import resolution as resolution_service

        files: Any = None
        if commit:
            with contextlib.suppress(Exception):
                from configctl.adapters.git import GitSource

                git, prefix = GitSource.discover(repo)
                raw = git.read_tree(commit)
                p = prefix.rstrip("/") + "/" if prefix else ""
                files = {k[len(p) :]: v for k, v in raw.items() if k.startswith(p)} if p else raw
        if files is None:
            from configctl.adapters import filesystem

            files = filesystem.read_tree(repo)
        checked = resolution_service.check(files, file_schemas=schemas.file_schemas())
        try:
            resolution = resolution_service.resolve_pair(checked.tree, self.app, self.env)
        except Exception:  # noqa: BLE001 - an unresolvable tree has no provenance
            resolution = None
        self._provenance = {memo: resolution}
        return resolution


def _adapt(listener: Callable[..., Any]) -> Callable[[ChangeEvent], Any]:
    import functools
    import inspect

    try:
        params = [
            p for p in inspect.signature(listener).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]  # fmt: skip
    except (TypeError, ValueError):  # a builtin without a signature: call it with the event
        return listener
    if len(params) < 3:
        return listener

    @functools.wraps(listener)
    def three(event: ChangeEvent) -> Any:
        return listener(event.changed_keys, event.old_version, event.new_version)

    return three


def _put(tree: dict[str, Any], path: list[str], value: object) -> None:
    """Set ``tree[path[0]]...[path[-1]] = value`` (the sections exist: the base has the key),
    or remove the leaf when ``value`` is missing."""
    node: Any = tree
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        if value is _MISSING:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value


def _utcnow() -> datetime:
    return datetime.now(UTC)


def keys_of(events: Sequence[ChangeEvent]) -> set[str]:
    return {k for e in events for k in e.changed_keys}
