"""services.review_comment against a fake thread: which comment is ours, and cutting long bodies."""

from __future__ import annotations

from dataclasses import dataclass, field

from configctl.core.records import ReviewComment
from configctl.services.review_comment import DEFAULT_MARKER, Outcome, compose, upsert


@dataclass
class FakeThread:
    max_body: int = 65_536
    items: list[ReviewComment] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)

    def comments(self) -> list[ReviewComment]:
        return list(self.items)

    def create(self, body: str) -> ReviewComment:
        comment = ReviewComment(id=len(self.items) + 1, body=body)
        self.items.append(comment)
        return comment

    def update(self, comment_id: int, body: str) -> None:
        self.updates.append(comment_id)
        self.items = [ReviewComment(id=c.id, body=body) if c.id == comment_id else c for c in self.items]


def test_creates_then_updates_the_first_marked_comment() -> None:
    thread = FakeThread(items=[ReviewComment(id=1, body=f"> {DEFAULT_MARKER}\n> quoted")])
    assert upsert(thread, "one").outcome is Outcome.CREATED
    assert upsert(thread, "two").outcome is Outcome.UPDATED
    assert upsert(thread, "two").outcome is Outcome.UNCHANGED
    assert [c.body for c in thread.items] == [f"> {DEFAULT_MARKER}\n> quoted", f"{DEFAULT_MARKER}\ntwo\n"]
    assert thread.updates == [2]


def test_another_marker_is_another_comment() -> None:
    thread = FakeThread()
    upsert(thread, "root")
    upsert(thread, "sub", marker="<!-- configctl-diff:config -->")
    assert len(thread.items) == 2


def test_a_long_body_is_cut_at_a_line_within_the_limit() -> None:
    body = "".join(f"line {n}\n" for n in range(1000))
    text = compose(body, DEFAULT_MARKER, max_chars=500)
    assert len(text) <= 500
    assert text.startswith(DEFAULT_MARKER + "\nline 0\n")
    kept = text.split("\n\n… (cut")[0]
    assert kept.endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))  # whole lines only
    assert compose("short", DEFAULT_MARKER, max_chars=500) == f"{DEFAULT_MARKER}\nshort\n"
