"""What a PostgreSQL writer remembers (``adapters.store.memory``, pure): it answers a read
only when it knows everything the read would give, and follows the writer's own writes."""

from __future__ import annotations

from datetime import UTC, datetime

from configctl.adapters.store.memory import WriterMemory
from configctl.adapters.store.pg_batch import WriterReads, next_generation
from configctl.core.ports import ReadAhead
from configctl.core.records import NewVersion, VersionHead, VersionRecord

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def head(app: str, env: str, n: int, reason: str = "commit") -> VersionHead:
    return VersionHead(app=app, env=env, number=n, checksum=f"{app}{env}{n}", commit_sha="a" * 40, reason=reason)


def record(h: VersionHead) -> VersionRecord:
    return VersionRecord(
        app=h.app, env=h.env, number=h.number, values={"n": h.number}, checksum=h.checksum,
        commit_sha=h.commit_sha, reason=h.reason, actor="t", created_at=T0,
    )  # fmt: skip


def reads(generation: str | None = "t:1", **heads: VersionHead) -> WriterReads:
    got = {(h.app, h.env): h for h in heads.values()}
    return WriterReads(
        statuses={"a" * 40: "applied"}, cursors={"last": "a" * 40}, heads=got,
        versions={pair: record(h) for pair, h in got.items()}, rollout_states={}, pins=[],
        quarantines={}, generation=generation,
    )  # fmt: skip


def test_no_generation_no_memory() -> None:
    assert WriterMemory.of(reads(None), None) is None


def test_answers_the_apps_it_knows_with_every_held_pair_and_misses_others() -> None:
    got = reads(web=head("web", "prod", 2), api=head("api", "prod", 5, reason="rollback"))
    memory = WriterMemory.of(got, ["web"])
    assert memory is not None
    answer = memory.answer(ReadAhead(commits=["b" * 40], cursors=["last"], apps=["web"]))
    assert answer is not None
    assert set(answer.reads.heads) == {("web", "prod"), ("api", "prod")}  # api: held by a rollback
    assert answer.reads.statuses == {"b" * 40: None}
    assert answer.absent == ("b" * 40,)
    assert answer.reads.versions[("web", "prod")].number == 2
    assert memory.answer(ReadAhead(apps=["search"])) is None  # an app it never read
    assert memory.answer(ReadAhead(apps=None)) is None  # every app: it read one
    assert memory.answer(ReadAhead(cursors=["other"], apps=["web"])) is None  # a cursor it never read


def test_a_snapshot_it_lacks_is_a_miss_unless_its_checksum_matches() -> None:
    got = reads(web=head("web", "prod", 2))
    memory = WriterMemory.of(got, ["web"])
    assert memory is not None
    memory.snapshots.clear()
    assert memory.answer(ReadAhead(apps=["web"])) is None
    same = memory.answer(ReadAhead(apps=["web"], checksums={("web", "prod"): "webprod2"}))
    assert same is not None
    assert same.reads.versions == {}


def test_reads_of_one_generation_add_up_and_of_another_replace() -> None:
    memory = WriterMemory.of(reads(web=head("web", "prod", 2)), ["web"])
    memory = WriterMemory.of(reads(api=head("api", "prod", 1)), ["api"], memory)
    assert memory is not None
    assert memory.apps == {"web", "api"}
    newer = WriterMemory.of(reads("t:2", api=head("api", "prod", 1)), ["api"], memory)
    assert newer is not None
    assert newer.apps == {"api"}
    assert ("web", "prod") not in newer.heads


def test_the_writers_own_writes_move_it_on() -> None:
    memory = WriterMemory.of(reads(web=head("web", "prod", 2, reason="rollback")), ["web"])
    assert memory is not None
    assert memory.held == {("web", "prod")}
    new = NewVersion(app="web", env="prod", values={"n": 3}, checksum="x", commit_sha="b" * 40, reason="commit", actor="t")
    memory = memory.after(next_generation("t:1"), versions=[(new, 3, T0)], commits={"b" * 40: "applied"}, cursors={"last": "b" * 40})
    assert memory.generation == "t:2"
    assert memory.held == set()
    answer = memory.answer(ReadAhead(commits=["b" * 40], cursors=["last"], apps=["web"]))
    assert answer is not None
    assert answer.reads.heads[("web", "prod")].number == 3
    assert answer.reads.versions[("web", "prod")].values == {"n": 3}
    assert answer.reads.statuses == {"b" * 40: "applied"}
    assert answer.absent == ()
    assert answer.reads.cursors == {"last": "b" * 40}
