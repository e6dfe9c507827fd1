"""The read use cases (`status`, `history`, `show`, `audit`) against small in-memory fakes
of their ports: what each reports, without a store, a repository or a subprocess."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from configctl.core.model import FileEntry
from configctl.core.records import (
    AuditRecord,
    CommitInfo,
    CommitRecord,
    HistoryEntry,
    PinRecord,
    VersionEntry,
    VersionHead,
    VersionRecord,
    checksum,
)
from configctl.errors import GitError, UsageError
from configctl.services import audit as audit_service
from configctl.services import history as history_service
from configctl.services import status as status_service

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TREE = {
    "configctl.yaml": FileEntry(data=b"version: 1\nenvironments: [dev]\n", size=32),
    "apps/web/values.yaml": FileEntry(data=b"replicas: 2\n", size=12),
}
WEB = {"replicas": 2}


def commit(sha: str, message: str = "change") -> CommitInfo:
    return CommitInfo(
        sha=sha, parents=(), author_name="Ada", author_email="ada@example.invalid", authored_at=NOW,
        committer_name="Ada", committer_email="ada@example.invalid", committed_at=NOW, message=message,
    )  # fmt: skip


def version(app: str, env: str, number: int, values: Mapping[str, object]) -> VersionRecord:
    return VersionRecord(
        app=app, env=env, number=number, values=dict(values), checksum=checksum(values),
        commit_sha="a" * 40, reason="commit", actor="ada", created_at=NOW,
    )  # fmt: skip


@dataclass
class FakeStore:
    """StatusReader, VersionReader and AuditReader in memory."""

    versions_of: dict[tuple[str, str], list[VersionRecord]] = field(default_factory=dict)
    state: dict[str, object] = field(default_factory=dict)
    rejected: list[CommitRecord] = field(default_factory=list)
    pinned: list[PinRecord] = field(default_factory=list)
    quarantined: dict[tuple[str, str], Mapping[str, object]] = field(default_factory=dict)
    audit_rows: list[AuditRecord] = field(default_factory=list)
    audit_calls: list[dict[str, object]] = field(default_factory=list)

    def latest_heads(self) -> Mapping[tuple[str, str], VersionHead]:
        return {
            pair: VersionHead(
                app=v[-1].app,
                env=v[-1].env,
                number=v[-1].number,
                checksum=v[-1].checksum,
                commit_sha=v[-1].commit_sha,
            )
            for pair, v in self.versions_of.items()
        }

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        found = [
            v for v in self.versions_of.get((app, env), []) if number is None or v.number == number
        ]
        return found[-1] if found else None

    def list_versions(self, app: str, env: str, limit: int | None = None) -> list[VersionEntry]:
        return []

    def key_history(self, app: str, env: str, key: str) -> list[HistoryEntry]:
        fields = {
            "commit_sha": None,
            "author_name": None,
            "author_email": None,
            "actor": "ada",
            "reason": "commit",
            "created_at": NOW,
        }
        return [
            HistoryEntry(
                app=app, env=env, key=key, version=n, change="changed", old=n - 1, new=n, **fields
            )
            for n in (3, 2, 1)
        ]

    def sync_state(self, name: str) -> object:
        return self.state.get(name)

    def quarantines(self) -> Mapping[tuple[str, str], Mapping[str, object]]:
        return dict(self.quarantined)

    def commits(self, status: str | None = None, limit: int | None = None) -> list[CommitRecord]:
        return list(self.rejected)

    def pins(self) -> list[PinRecord]:
        return list(self.pinned)

    def audit(
        self,
        app: str | None = None,
        env: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        self.audit_calls.append(
            {"app": app, "env": env, "actor": actor, "since": since, "limit": limit}
        )
        return list(self.audit_rows)


@dataclass
class FakeGit:
    """GitReader over a linear history ``commits`` (oldest first), every one with ``tree``."""

    commits: list[CommitInfo]
    tree: dict[str, FileEntry] = field(default_factory=lambda: dict(TREE))
    rewritten: bool = False

    def head(self) -> str | None:
        return self.commits[-1].sha if self.commits else None

    def is_ancestor(self, a: str, b: str) -> bool:
        return not self.rewritten

    def commit_info(self, rev: str) -> CommitInfo:
        return next(c for c in self.commits if c.sha == rev)

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        shas = [c.sha for c in self.commits]
        start = shas.index(base) + 1 if base in shas else 0
        return self.commits[start : shas.index(head) + 1]

    def read_tree(self, rev: str, prefix: str = "") -> Mapping[str, FileEntry]:
        return self.tree


def opener(git: FakeGit, prefix: str = "") -> status_service.GitOpener:
    return lambda: (git, prefix)


def no_repository() -> tuple[FakeGit, str]:
    raise GitError("not a git repository")


def test_status_in_sync_when_the_store_serves_head() -> None:
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, WEB)]},
        state={"last_applied_commit": "c1"},
    )
    report = status_service.status(store, opener(FakeGit([commit("c1")])))
    assert (report.head, report.pending, report.drift, report.in_sync) == ("c1", (), (), True)
    assert report.drift_known


def test_status_pending_commits_and_drift_reason_pending() -> None:
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, {"replicas": 1})]},
        state={"last_applied_commit": "c1"},
    )
    report = status_service.status(
        store, opener(FakeGit([commit("c1"), commit("c2"), commit("c3")]))
    )
    assert [c.sha for c in report.pending] == ["c2", "c3"]
    assert [(d.app, d.env, d.reason, d.keys) for d in report.drift] == [
        ("web", "dev", "pending", ("replicas",))
    ]
    assert not report.in_sync


def test_status_a_rejected_head_blocks_and_names_the_reason() -> None:
    rejected = CommitRecord(
        info=commit("c2"), status="rejected", reason="invalid\nmore", recorded_at=NOW
    )
    old = CommitRecord(info=commit("c0"), status="rejected", reason="superseded", recorded_at=NOW)
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, {"replicas": 1})]},
        state={"last_applied_commit": "c1"},
        rejected=[rejected, old],
    )
    report = status_service.status(
        store, opener(FakeGit([commit("c0"), commit("c1"), commit("c2")]))
    )
    assert [c.info.sha for c in report.rejected] == ["c2"]  # c0 was superseded by c1
    assert report.drift[0].reason == "rejected"


def test_status_force_push_lists_head_only() -> None:
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, {"replicas": 1})]},
        state={"last_applied_commit": "gone"},
    )
    report = status_service.status(
        store, opener(FakeGit([commit("c1"), commit("c2")], rewritten=True))
    )
    assert report.history_rewritten
    assert [c.sha for c in report.pending] == ["c2"]
    assert report.drift[0].reason == "force-push"


def test_status_without_git_reports_drift_unknown_and_every_rejection() -> None:
    rejected = CommitRecord(info=commit("c9"), status="rejected", reason="bad", recorded_at=NOW)
    pin = PinRecord(app="web", env="dev", version=1, reason="incident", actor="ada", created_at=NOW)
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, WEB)]},
        rejected=[rejected],
        pinned=[pin],
    )
    report = status_service.status(store, no_repository)
    assert report.head is None
    assert not report.drift_known
    assert [c.info.sha for c in report.rejected] == ["c9"]
    assert [(p.served_version, p.drift_keys) for p in report.pins] == [(1, None)]


def test_status_pins_and_quarantines_name_their_reason() -> None:
    pin = PinRecord(app="web", env="dev", version=1, reason="incident", actor="ada", created_at=NOW)
    store = FakeStore(
        versions_of={
            ("web", "dev"): [version("web", "dev", 1, {"replicas": 9})],
            ("api", "dev"): [version("api", "dev", 1, {"x": 1})],
        },
        state={"last_applied_commit": "c1"},
        quarantined={("api", "dev"): {"commit": "c0", "checksum": "x", "version": 1}},
        pinned=[pin],
    )
    report = status_service.status(store, opener(FakeGit([commit("c1")])))
    assert {(d.app, d.reason) for d in report.drift} == {("web", "pinned"), ("api", "quarantined")}
    assert [(p.served_version, p.drift_keys) for p in report.pins] == [(1, ("replicas",))]


def test_status_strips_the_config_folder_prefix() -> None:
    git = FakeGit([commit("c1")], tree={f"config/{path}": entry for path, entry in TREE.items()})
    store = FakeStore(
        versions_of={("web", "dev"): [version("web", "dev", 1, WEB)]},
        state={"last_applied_commit": "c1"},
    )
    assert status_service.status(store, opener(git, "config")).in_sync


def test_show_and_history() -> None:
    store = FakeStore(
        versions_of={
            ("web", "dev"): [
                version("web", "dev", 1, WEB),
                version("web", "dev", 2, {"replicas": 3}),
            ]
        }
    )
    assert history_service.version(store, "web", "dev").number == 2
    assert history_service.version(store, "web", "dev", 1).values == WEB
    with pytest.raises(UsageError, match="web/dev has no version 7 in the store"):
        history_service.version(store, "web", "dev", 7)
    with pytest.raises(UsageError, match="web/prod has no version in the store"):
        history_service.version(store, "web", "prod")
    assert [
        e.version for e in history_service.key_history(store, "web", "dev", "replicas", limit=2)
    ] == [3, 2]
    assert len(history_service.key_history(store, "web", "dev", "replicas")) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T10:00:00+01:00", datetime(2026, 11, 1, 9, 0, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert audit_service.parse_since(text, now=NOW) == expected


def test_parse_since_refuses_anything_else() -> None:
    with pytest.raises(UsageError, match="--since 'yesterday'"):
        audit_service.parse_since("yesterday", now=NOW)


def test_audit_passes_every_filter() -> None:
    store = FakeStore()
    audit_service.audit(store, app="web", env="dev", actor="ada", since=NOW, limit=5)
    assert store.audit_calls == [
        {"app": "web", "env": "dev", "actor": "ada", "since": NOW, "limit": 5}
    ]
