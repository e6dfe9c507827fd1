"""revert_keys: the inverse patch of a commit, limited to some keys, applied to HEAD."""

from __future__ import annotations

import pytest

from configctl.core.model import FileEntry
from configctl.errors import UsageError
from configctl.services.revert import revert_keys


def files(**texts: str) -> dict[str, FileEntry]:
    return {
        path.replace("__", "/").replace("_yaml", ".yaml"): FileEntry(data=t.encode())
        for path, t in texts.items()
    }


def test_named_keys_go_back_and_later_edits_survive() -> None:
    before = files(apps__web__values_yaml="a: 1\nb: 1\n")
    after = files(apps__web__values_yaml="a: 2\nb: 2\nc: 1\n")
    head = files(apps__web__values_yaml="a: 2\nb: 2\nc: 1\nd: 9\n")
    patch = revert_keys(before=before, after=after, head=head, keys=["a", "c"])
    assert patch == {"apps/web/values.yaml": b"a: 1\nb: 2\nd: 9\n"}


def test_a_key_the_commit_did_not_change_is_a_usage_error() -> None:
    same = files(apps__web__values_yaml="a: 1\n")
    with pytest.raises(UsageError, match="did not change b"):
        revert_keys(
            before=same, after=files(apps__web__values_yaml="a: 2\n"), head=same, keys=["b"]
        )
