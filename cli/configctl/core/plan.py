"""The apply planner: what one commit's resolved pairs do to the versions in service.

Pure: no I/O, no clock. Its inputs are what the writer (``services.apply``) read inside
its unit of work: the evaluated pairs (values and checksums, rollouts folded in), the
heads of the versions in service, the snapshots of the heads that change, pins,
quarantines and the secret keys of the apps that change. Its output, an
:class:`ApplyPlan`, says for each pair that differs whether it gets a version (with the
key changes and the keys its notification names), or why it is skipped, and whether its
quarantine is lifted. The writer executes the plan; a dry run prints it.

The rules:

- a pair changes when its checksum differs from the head's, or it vanished from the tree
  while its head holds values (:func:`changed_pairs`); pairs are planned sorted;
- a pinned pair is skipped (``pinned``): a rollback holds it until ``release``;
- a pair whose new checksum is the quarantined one is skipped (``quarantined``): the
  rolled-back values are not served again; any other change lifts the quarantine;
- key changes are redacted for the app's secret keys; the keys named include those whose
  rollouts changed.

Also here, because they are pure decisions too: which apps a commit touches
(:func:`changed_apps`, so work follows the change), the files of those apps
(:class:`FileIndex`, found without a walk over every path) and how a rejected tree is
described.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from configctl.core import diff as diff_mod
from configctl.core.gcpause import collection_paused
from configctl.core.model import FileEntry, Report
from configctl.core.records import (
    ChangeKind,
    CommitInfo,
    JsonObject,
    KeyChange,
    PairKey,
    QuarantineRecord,
    VersionHead,
    VersionRecord,
    checksum,
)

__all__ = [
    "ApplyPlan",
    "FileIndex",
    "PairPlan",
    "SkipReason",
    "changed_apps",
    "changed_keys",
    "changed_pairs",
    "differing_paths",
    "plan_apply",
    "rejection_details",
    "rejection_reason",
    "scoped",
]

EMPTY_CHECKSUM = checksum({})
MAX_REPORTED_ERRORS = 20


class SkipReason(enum.StrEnum):
    """Why a pair that differs gets no version."""

    PINNED = "pinned"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True, kw_only=True)
class PairPlan:
    """What happens to one (app, env) whose resolved values differ from its head."""

    app: str
    env: str
    previous: int | None
    """The number of the version in service, None for a new pair."""
    values: JsonObject
    checksum: str
    rollouts: tuple[JsonObject, ...]
    changes: tuple[KeyChange, ...]
    changed_keys: tuple[str, ...]
    added: int
    changed: int
    removed: int
    skipped: SkipReason | None = None
    lift_quarantine: bool = False
    """A newer commit changed a quarantined pair: the quarantine ends."""

    @property
    def pair(self) -> PairKey:
        return (self.app, self.env)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyPlan:
    pairs: tuple[PairPlan, ...]

    @property
    def writes(self) -> tuple[PairPlan, ...]:
        """The pairs that get a new version."""
        return tuple(p for p in self.pairs if p.skipped is None)


def changed_pairs(
    values: Mapping[PairKey, JsonObject],
    checksums: Mapping[PairKey, str],
    latest: Mapping[PairKey, VersionHead | VersionRecord],
    *,
    only: PairKey | None = None,
) -> list[PairKey]:
    """The pairs whose resolved checksum differs from the version in service, or that
    vanished while their version holds values; sorted, and just ``only`` when given."""
    out: list[PairKey] = []
    for pair in sorted(values.keys() | latest.keys()):
        if only is not None and pair != only:
            continue
        prev = latest.get(pair)
        if pair not in values:
            if prev is not None and prev.checksum != EMPTY_CHECKSUM:
                out.append(pair)
        elif prev is None or prev.checksum != checksums[pair]:
            out.append(pair)
    return out


def changed_keys(
    keys: Iterable[str],
    old: Sequence[JsonObject] | None,
    new: Sequence[JsonObject],
) -> tuple[str, ...]:
    """The value keys changed, plus the keys whose rollouts were added, changed or removed.

    A listener told "database.timeout changed" re-reads it; the value it gets for a given
    context may differ even when the base value did not.
    """
    before = {str(r.get("name")): r for r in old or ()}
    after = {str(r.get("name")): r for r in new}
    touched = set(keys)
    for name in before.keys() | after.keys():
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        for entry in (a, b):
            if entry is not None and isinstance(entry.get("key"), str):
                touched.add(str(entry["key"]))
    return tuple(sorted(touched))


def _changes(
    diffs: Sequence[diff_mod.KeyDiff],
) -> tuple[tuple[KeyChange, ...], dict[ChangeKind, int]]:
    """The key changes of one pair and how many there are of each kind, in one pass (a
    first apply of 1,000 apps goes through some 300,000 keys)."""
    counts = dict.fromkeys(ChangeKind, 0)
    out: list[KeyChange] = []
    for d in diffs:
        counts[d.change] += 1
        out.append(KeyChange(key=d.key, change=d.change, old=d.old, new=d.new))
    return tuple(out), counts


_Shared = dict[tuple[str, type, object], KeyChange]
"""Key changes already made in one plan, by (key, type of value, value)."""


def _first_changes(
    values: JsonObject, secrets: Collection[str], shared: _Shared
) -> tuple[tuple[KeyChange, ...], dict[ChangeKind, int]]:
    """:func:`_changes` of a diff against nothing, without the diff: every key is added
    (``diff.added_keys``), so there is nothing to compare and one kind to count.

    A key change is a frozen value, and pairs share most of theirs (a key set in
    ``global.yaml`` or an environment layer is the same added key in every pair it
    reaches): one object serves them all (``shared``). Only scalars that compare equal
    exactly when they are the same value are shared: the type is part of the look-up
    (``1``, ``1.0`` and ``True`` are equal in Python) and a float zero is not shared
    (``0.0 == -0.0``).
    """
    added = ChangeKind.ADDED
    out: list[KeyChange] = []
    for key, value, _secret in diff_mod.added_keys(values, secrets=secrets):
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None or (kind is float and value):
            change = shared.get((key, kind, value))
            if change is None:
                change = shared[(key, kind, value)] = KeyChange(key=key, change=added, new=value)
        else:
            change = KeyChange(key=key, change=added, new=value)
        out.append(change)
    counts = dict.fromkeys(ChangeKind, 0)
    counts[added] = len(out)
    return tuple(out), counts


@collection_paused()  # 300,000 kept key changes: see core.gcpause
def plan_apply(
    *,
    pairs: Sequence[PairKey],
    values: Mapping[PairKey, JsonObject],
    checksums: Mapping[PairKey, str],
    rollouts: Mapping[PairKey, tuple[JsonObject, ...]],
    latest: Mapping[PairKey, VersionHead | VersionRecord],
    previous: Mapping[PairKey, VersionRecord],
    pins: Collection[PairKey],
    quarantines: Mapping[PairKey, QuarantineRecord],
    secrets: Mapping[str, Collection[str]],
) -> ApplyPlan:
    """Plan ``pairs`` (from :func:`changed_pairs`); see the module docstring for the rules.

    ``previous`` holds the snapshot of each planned pair's head (the key changes are
    computed against it); ``quarantines`` those of the planned pairs.
    """
    planned: list[PairPlan] = []
    shared: _Shared = {}
    for pair in pairs:
        app, env = pair
        head = latest.get(pair)
        before = previous.get(pair)
        now_values = values.get(pair, {})
        digest = checksums.get(pair) or checksum(now_values)
        keys: Iterable[str]
        if before is None or not before.values:
            # A first version (or one after an empty snapshot): every key is added.
            changes, counts = _first_changes(now_values, secrets.get(app, ()), shared)
            keys = (c.key for c in changes)
        else:
            diffs = diff_mod.diff_values(before.values, now_values, secrets=secrets.get(app, ()))
            changes, counts = _changes(diffs)
            keys = (d.key for d in diffs)
        skipped: SkipReason | None = None
        lift = False
        if pair in pins:
            skipped = SkipReason.PINNED
        elif (quarantine := quarantines.get(pair)) is not None:
            if quarantine.checksum == digest:
                skipped = SkipReason.QUARANTINED
            else:
                lift = True
        pair_rollouts = rollouts.get(pair, ())
        planned.append(
            PairPlan(
                app=app,
                env=env,
                previous=head.number if head is not None else None,
                values=now_values,
                checksum=digest,
                rollouts=pair_rollouts,
                changes=changes,
                changed_keys=changed_keys(keys, before.rollouts if before else None, pair_rollouts),
                added=counts[ChangeKind.ADDED],
                changed=counts[ChangeKind.CHANGED],
                removed=counts[ChangeKind.REMOVED],
                skipped=skipped,
                lift_quarantine=lift,
            )
        )
    return ApplyPlan(pairs=tuple(planned))


# --------------------------------------------------------------------------- scope


def _values_file_app(path: str) -> str | None:
    """The app of ``apps/<app>/values.yaml`` or ``apps/<app>/envs/<env>.yaml``, else None."""
    parts = path.split("/")
    if parts[0] != "apps":
        return None
    if len(parts) == 3 and parts[2] == "values.yaml":
        return parts[1]
    if len(parts) == 4 and parts[2] == "envs" and parts[3].endswith(".yaml"):
        return parts[1]
    return None


def differing_paths(base: Mapping[str, FileEntry], head: Mapping[str, FileEntry]) -> list[str]:
    """The paths whose file differs between two snapshots: changed, added or gone."""
    # An incremental tree read keeps the entries of unchanged files: identity answers for
    # most, equality for the rest (a file read again); base's paths not in head are gone.
    changed = [path for path, after in head.items() if base.get(path) is not after]
    kept = len(head) - sum(1 for path in changed if path not in base)
    gone = [path for path in base if path not in head] if kept != len(base) else []
    return [path for path in chain(changed, gone) if base.get(path) != head.get(path)]


def changed_apps(
    base: Mapping[str, FileEntry],
    head: Mapping[str, FileEntry],
    *,
    paths: Iterable[str] | None = None,
) -> set[str] | None:
    """The apps whose values files are all that differs between two snapshots (``paths``:
    the :func:`differing_paths`, when the caller has them).

    None when anything else differs (``configctl.yaml``, ``global.yaml``, an environment
    layer, an ``app.yaml``, a schema, an app folder appearing or going, any other file):
    such a change may reach every app, so the whole tree is evaluated.
    """
    out: set[str] = set()
    for path in differing_paths(base, head) if paths is None else paths:
        app = _values_file_app(path)
        if app is None or f"apps/{app}/app.yaml" not in base or f"apps/{app}/app.yaml" not in head:
            return None
        out.add(app)
    return out


def scoped(
    files: Mapping[str, FileEntry], apps: Collection[str], index: FileIndex | None = None
) -> dict[str, FileEntry]:
    """The snapshot without the folders of apps outside ``apps`` (shared files all kept);
    ``index``: the :class:`FileIndex` of ``files``, when the caller keeps one (then this
    costs the files of ``apps``, not a walk over every path)."""
    return (index if index is not None else FileIndex.of(files)).scoped(files, apps)


def _app_folder(path: str) -> str | None:
    """The app of a path in ``apps/<app>/``, else None (a shared path)."""
    if not path.startswith("apps/"):
        return None
    end = path.find("/", 5)
    return path[5:end] if end > 5 else None


@dataclass(frozen=True, slots=True)
class FileIndex:
    """The paths of a snapshot by app folder (``apps/<app>/...``) and the rest, shared by
    every app: :meth:`scoped` then costs the files of the apps asked for, not a walk over
    every path (a one-app commit in a tree of 1,000 apps), and :meth:`moved` follows a
    commit at the cost of the paths it changed. An index answers for the very snapshot it
    was made for: pass the same mapping to :meth:`scoped`."""

    shared: frozenset[str]
    apps: Mapping[str, frozenset[str]]
    size: int
    """How many paths: a cheap check that an index still answers for a snapshot."""

    @classmethod
    def of(cls, paths: Iterable[str]) -> FileIndex:
        shared: set[str] = set()
        apps: dict[str, set[str]] = {}
        for path in paths:
            app = _app_folder(path)
            if app is None:
                shared.add(path)
            else:
                apps.setdefault(app, set()).add(path)
        size = len(shared) + sum(len(p) for p in apps.values())
        return cls(frozenset(shared), {app: frozenset(p) for app, p in apps.items()}, size)

    def scoped(self, files: Mapping[str, FileEntry], apps: Collection[str]) -> dict[str, FileEntry]:
        """The files of ``apps`` and the shared ones, of the snapshot this index was made for."""
        wanted = chain(self.shared, *(self.apps.get(app, ()) for app in apps))
        return {path: files[path] for path in wanted}

    def moved(self, paths: Iterable[str], files: Mapping[str, FileEntry]) -> FileIndex:
        """The index of ``files``, a snapshot that differs from this index's in ``paths``
        only (added, changed or gone: :func:`differing_paths`)."""
        shared, size = self.shared, self.size
        added: dict[str, set[str]] = {}
        removed: dict[str, set[str]] = {}
        for path in paths:
            app = _app_folder(path)
            present = path in files
            if app is None:
                shared = shared | {path} if present else shared - {path}
            else:
                (added if present else removed).setdefault(app, set()).add(path)
        apps: dict[str, frozenset[str]] | None = None  # copied once an app's paths change
        for app in added.keys() | removed.keys():
            before = self.apps.get(app, frozenset())
            now = (before | added.get(app, set())) - removed.get(app, set())
            if now == before:
                continue  # files changed in place: the common commit copies nothing
            if apps is None:
                apps = dict(self.apps)
            size += len(now) - len(before)
            if now:
                apps[app] = frozenset(now)
            else:
                apps.pop(app, None)
        size += len(shared) - len(self.shared)
        return FileIndex(shared, self.apps if apps is None else apps, size)


# --------------------------------------------------------------------------- rejection


def rejection_reason(report: Report) -> str:
    """The reason recorded with a rejected commit: its first errors, one per line."""
    lines = [
        f"{f.file}:{f.line}:{f.column}: [{f.rule}] {f.message}"
        for f in report.errors[:MAX_REPORTED_ERRORS]
    ]
    more = len(report.errors) - MAX_REPORTED_ERRORS
    if more > 0:
        lines.append(f"… and {more} more")
    return "\n".join(lines)


def first_line(message: str) -> str:
    """The first line of a commit message ("" for none)."""
    return message.splitlines()[0] if message else ""


def rejection_details(report: Report, commit: CommitInfo) -> JsonObject:
    """The audit details of a commit rejected for its tree."""
    return {
        "errors": len(report.errors),
        "first_error": rejection_reason(Report(errors=report.errors[:1])),
        "author": commit.author_email,
        "message": first_line(commit.message),
    }
