"""A layer that cannot be read is never resolved around (issue 7, item 1).

Dropping a broken ``apps/<app>/envs/production.yaml`` and resolving the rest would show
production the values of the lower layers as if they were meant. `get` (every output,
``--explain`` included) and `ls` refuse with exit 1 naming file, line and cause and print
no values; `diff` names the file, leaves the pairs that need it out and says which side
is unreadable in its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.cli import configctl
from tests.support.gitrepo import GitRepo

BROKEN = {
    "yaml-syntax": (b"replicas: 9\ndatabase:\n  host: [unclosed\n", 4),
    "encoding": (b"replicas: 9\nname: caf\xe9\n", 2),
    "file-too-large": (b"replicas: 9\n" + b"# padding\n" * 110_000, 1),
}
LAYER = "apps/checkout/envs/production.yaml"


@pytest.fixture
def example(tmp_path: Path) -> GitRepo:
    return GitRepo.example(tmp_path / "config")


@pytest.mark.parametrize("cause", sorted(BROKEN))
@pytest.mark.parametrize(
    "args",
    [
        (),
        ("-o", "json"),
        ("-o", "env"),
        ("-o", "table"),
        ("database.host",),
        ("--explain",),
        ("--explain", "-o", "json"),
        ("--explain", "-o", "table"),
    ],
)
def test_get_refuses_a_pair_whose_layer_cannot_be_read(
    example: GitRepo, cause: str, args: tuple[str, ...]
) -> None:
    data, line = BROKEN[cause]
    (example.path / LAYER).write_bytes(data)
    result = configctl("get", "checkout", "production", *args, "--repo", example.path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert f"{LAYER}:{line}:" in result.stderr
    assert f"[{cause}]" in result.stderr
    # another environment of the same app does not need the file
    ok = configctl("get", "checkout", "staging", *args, "--repo", example.path)
    assert ok.returncode == 0, ok.stderr


def test_get_refuses_when_configctl_yaml_cannot_be_read(example: GitRepo) -> None:
    (example.path / "configctl.yaml").write_bytes(b"version: 1\nenvironments: [dev\n")
    result = configctl("get", "checkout", "production", "--repo", example.path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "configctl.yaml:" in result.stderr
    assert "[yaml-syntax]" in result.stderr


@pytest.mark.parametrize("fmt", ["table", "json"])
@pytest.mark.parametrize(
    "layer", [LAYER, "global.yaml", "environments/staging.yaml", "apps/search/values.yaml"]
)
def test_ls_refuses_a_tree_with_an_unreadable_layer(example: GitRepo, fmt: str, layer: str) -> None:
    (example.path / layer).write_bytes(BROKEN["yaml-syntax"][0])
    result = configctl("ls", "--repo", example.path, "-o", fmt)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert f"{layer}:4:" in result.stderr
    assert "[yaml-syntax]" in result.stderr


def test_a_list_as_values_file_is_unreadable_too(example: GitRepo) -> None:
    example.write(LAYER, "- replicas\n- 9\n")
    result = configctl("get", "checkout", "production", "--repo", example.path)
    assert result.returncode == 1
    assert "[values-not-mapping]" in result.stderr
    assert result.stdout == ""


def test_diff_names_an_unreadable_head_and_shows_no_key_change_from_it(example: GitRepo) -> None:
    (example.path / LAYER).write_bytes(BROKEN["yaml-syntax"][0])
    example.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")
    text = configctl("diff", "--repo", example.path)
    assert text.returncode == 1
    assert f"{LAYER}:4:" in text.stderr
    assert "[yaml-syntax]" in text.stderr
    assert "checkout/production" not in text.stdout
    assert "billing/production" in text.stdout  # pairs that do not need the file still show
    payload = json.loads(configctl("diff", "--repo", example.path, "-f", "json").stdout)
    assert payload["unreadable"]["base"] == []
    assert [(f["file"], f["line"], f["rule"]) for f in payload["unreadable"]["head"]] == [
        (LAYER, 4, "yaml-syntax")
    ]
    assert {"app": "checkout", "env": "production"} in payload["unreadable"]["pairs"]
    assert all(
        not (c["app"] == "checkout" and c["env"] == "production") for c in payload["changes"]
    )


def test_diff_says_when_the_base_side_is_unreadable(example: GitRepo) -> None:
    good = example.read(LAYER)
    base = example.head()
    (example.path / LAYER).write_bytes(BROKEN["encoding"][0])
    broken = example.commit("break production")
    example.write(LAYER, good)
    fixed = example.commit("fix production")
    result = configctl("diff", broken, fixed, "--repo", example.path, "--format", "json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert [f["rule"] for f in payload["unreadable"]["base"]] == ["encoding"]
    assert payload["unreadable"]["head"] == []
    assert payload["changes"] == []
    clean = configctl("diff", base, fixed, "--repo", example.path, "--format", "json")
    assert clean.returncode == 0
    assert json.loads(clean.stdout)["unreadable"] == {"base": [], "head": [], "pairs": []}
