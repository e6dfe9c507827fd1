"""One living comment per pull request: create it on the first push, update it on every later one.

CI posts the resolved diff to the pull (or merge) request on each push. A new comment per
push buries the conversation, so the comment carries a hidden marker (an HTML comment,
invisible in the rendered text) on its first line, and each run looks for a comment that
*starts* with that marker: it updates the first such comment, or creates one when there is
none. Starting-with (not merely containing) keeps a reviewer's reply that quotes the
marker from being taken for ours.

A body longer than the platform accepts is cut at a line boundary with a note, rather than
refused by the API and lost: the job summary still has it whole.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from configctl.core.ports import CommentThread

__all__ = ["DEFAULT_MARKER", "CommentThread", "Outcome", "Posted", "compose", "upsert"]

DEFAULT_MARKER = "<!-- configctl-diff -->"


class Outcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True, kw_only=True)
class Posted:
    outcome: Outcome
    comment_id: int


def compose(body: str, marker: str, *, max_chars: int) -> str:
    """The comment's text: the marker line, then ``body``, cut to ``max_chars`` if need be."""
    text = f"{marker}\n{body.rstrip()}\n"
    if len(text) <= max_chars:
        return text
    note = "\n\n… (cut: the comment is longer than the platform accepts; the job summary and log have it whole)\n"
    keep = text[: max_chars - len(note)]
    cut = keep.rfind("\n")
    if cut > len(marker):
        keep = keep[:cut]
    return keep + note


def upsert(thread: CommentThread, body: str, *, marker: str = DEFAULT_MARKER) -> Posted:
    """Create the marked comment, or update the one already there (never a second one)."""
    text = compose(body, marker, max_chars=thread.max_body)
    for comment in thread.comments():
        if comment.body.lstrip().startswith(marker):
            if comment.body == text:
                return Posted(outcome=Outcome.UNCHANGED, comment_id=comment.id)
            thread.update(comment.id, text)
            return Posted(outcome=Outcome.UPDATED, comment_id=comment.id)
    created = thread.create(text)
    return Posted(outcome=Outcome.CREATED, comment_id=created.id)
