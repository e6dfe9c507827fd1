"""URL allow-list, branch check and credential redaction of the git adapter (configctl.adapters.git)."""

from __future__ import annotations

import pytest

from configctl.adapters.git.remote import check_branch, check_url
from configctl.adapters.git.runner import git_env, redact
from configctl.errors import UsageError


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/config.git",
        "https://user:token@git.example.com/acme/config.git",
        "ssh://git@github.com/acme/config.git",
        "ssh://git@github.com:2222/acme/config.git",
        "git@github.com:acme/config.git",
        "deploy@git.example.com:config",
        "file:///srv/git/config.git",
        "/srv/git/config.git",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        " https://github.com/acme/config.git",
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "https::github.com/x",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=x",
        "http://github.com/acme/config.git",
        "git://github.com/acme/config.git",
        "ftp://example.com/x",
        "relative/path",
        "./config",
        "ssh://-oProxyCommand=touch%20x/repo",
        "ssh://git@-oProxyCommand=x/repo",
        "-git@host:path",
        "git@-host:path",
        "https://github.com/acme/config.git\n--upload-pack=x",
        "https://",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(UsageError):
        check_url(url)


@pytest.mark.parametrize("branch", ["main", "release/1.2", "feature-x_y", "v1.0"])
def test_good_branches(branch: str) -> None:
    assert check_branch(branch) == branch


@pytest.mark.parametrize(
    "branch", ["", "-main", "--upload-pack=x", "a..b", "a b", "x.lock", "/main", "main/", "a//b", "a@{1}", "a~1", "a^"]
)
def test_bad_branches(branch: str) -> None:
    with pytest.raises(UsageError):
        check_branch(branch)


def test_redact() -> None:
    text = "fatal: unable to access 'https://bot:ghp_SECRET@github.com/acme/x.git/': 403"
    out = redact(text)
    assert "ghp_SECRET" not in out
    assert "bot" not in out
    assert "https://***@github.com/acme/x.git" in out


def test_env_never_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.delenv("GIT_SSH", raising=False)
    env = git_env()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ASKPASS"] == "/bin/true"
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh:file"
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]


def test_env_keeps_operator_ssh_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", "ssh -i /keys/deploy")
    assert git_env()["GIT_SSH_COMMAND"] == "ssh -i /keys/deploy"
