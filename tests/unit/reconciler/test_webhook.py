"""Webhook verification and parsing (pure functions, no server)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from configctl_reconciler.webhook import (
    PushEvent,
    WebhookPayloadError,
    WebhookSecrets,
    detect_provider,
    parse_push,
    verify_gitea,
    verify_github,
    verify_gitlab,
    verify_request,
)

SECRET = "s3cret-hook"
SHA = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
BODY = json.dumps({"ref": "refs/heads/main", "after": SHA, "before": "0" * 40}).encode()


def sig(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- GitHub -----------------------------------------------------------------------------


def test_github_valid_signature() -> None:
    assert verify_github(SECRET, BODY, "sha256=" + sig(BODY))


def test_github_uppercase_hex_is_accepted() -> None:
    assert verify_github(SECRET, BODY, "sha256=" + sig(BODY).upper())


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        sig(BODY),  # no scheme
        "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),  # old, weaker scheme
        "sha256=" + sig(BODY, "other-secret"),
        "sha256=" + sig(BODY + b" "),
        "sha256=ünïcode",
    ],
)
def test_github_rejects(header: str | None) -> None:
    assert not verify_github(SECRET, BODY, header)


def test_github_body_tampering_is_detected() -> None:
    header = "sha256=" + sig(BODY)
    tampered = BODY.replace(b"main", b"evil")
    assert not verify_github(SECRET, tampered, header)


@pytest.mark.parametrize("secret", [None, "", b""])
def test_empty_secret_verifies_nothing(secret: str | bytes | None) -> None:
    # HMAC with an empty key is computable by anyone
    empty_sig = hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    assert not verify_github(secret, BODY, "sha256=" + empty_sig)
    assert not verify_gitea(secret, BODY, empty_sig)
    assert not verify_gitlab(secret, "")


def test_secret_as_bytes() -> None:
    assert verify_github(SECRET.encode(), BODY, "sha256=" + sig(BODY))


# -- GitLab -----------------------------------------------------------------------------


def test_gitlab_token() -> None:
    assert verify_gitlab(SECRET, SECRET)
    assert not verify_gitlab(SECRET, SECRET + "x")
    assert not verify_gitlab(SECRET, SECRET[:-1])
    assert not verify_gitlab(SECRET, None)


# -- Gitea ------------------------------------------------------------------------------


def test_gitea_signature() -> None:
    assert verify_gitea(SECRET, BODY, sig(BODY))
    assert verify_gitea(SECRET, BODY, "sha256=" + sig(BODY))
    assert not verify_gitea(SECRET, BODY, sig(BODY, "nope"))
    assert not verify_gitea(SECRET, BODY, None)


# -- provider detection and verify_request -------------------------------------------------


def test_detect_provider() -> None:
    assert detect_provider({"X-GitHub-Event": "push"}) == "github"
    assert detect_provider({"X-Gitlab-Event": "Push Hook"}) == "gitlab"
    # Gitea also sends GitHub-style headers for compatibility: Gitea wins
    assert detect_provider({"X-GitHub-Event": "push", "X-Gitea-Event": "push"}) == "gitea"
    assert detect_provider({"x-forgejo-event": "push"}) == "gitea"
    assert detect_provider({"Content-Type": "application/json"}) is None


def test_verify_request_per_provider() -> None:
    secrets = WebhookSecrets.shared(SECRET)
    gh = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig(BODY)}
    gl = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    gt = {"X-Gitea-Event": "push", "X-Gitea-Signature": sig(BODY), "X-GitHub-Event": "push"}
    assert verify_request(gh, BODY, secrets) == "github"
    assert verify_request(gl, BODY, secrets) == "gitlab"
    assert verify_request(gt, BODY, secrets) == "gitea"
    # headers are case-insensitive
    assert verify_request({k.lower(): v for k, v in gh.items()}, BODY, secrets) == "github"


def test_verify_request_refuses_unconfigured_provider() -> None:
    only_github = WebhookSecrets(github=SECRET)
    gl = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    assert verify_request(gl, BODY, only_github) is None


def test_verify_request_gitea_needs_gitea_signature() -> None:
    # A Gitea request carrying only a GitHub-style signature is judged as Gitea: refused
    secrets = WebhookSecrets.shared(SECRET)
    headers = {"X-Gitea-Event": "push", "X-Hub-Signature-256": "sha256=" + sig(BODY)}
    assert verify_request(headers, BODY, secrets) is None


def test_verify_request_unknown_provider() -> None:
    assert verify_request({}, BODY, WebhookSecrets.shared(SECRET)) is None


def test_secrets_repr_hides_values() -> None:
    text = repr(WebhookSecrets(github=SECRET, gitlab=None, gitea="x"))
    assert SECRET not in text
    assert "github" in text


# -- parse_push ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "provider"),
    [
        ({"X-GitHub-Event": "push"}, "github"),
        ({"X-Gitlab-Event": "Push Hook"}, "gitlab"),
        ({"X-Gitea-Event": "push", "X-GitHub-Event": "push"}, "gitea"),
    ],
)
def test_parse_push(headers: dict[str, str], provider: str) -> None:
    event = parse_push(headers, BODY)
    assert event == PushEvent(provider=provider, ref="refs/heads/main", after=SHA)
    assert event is not None
    assert event.branch == "main"


def test_parse_push_tag_has_no_branch() -> None:
    body = json.dumps({"ref": "refs/tags/v1", "after": SHA}).encode()
    event = parse_push({"X-GitHub-Event": "push"}, body)
    assert event is not None
    assert event.branch is None


def test_parse_non_push_event_is_ignored() -> None:
    assert parse_push({"X-GitHub-Event": "ping"}, b'{"zen": "x"}') is None
    assert parse_push({"X-Gitlab-Event": "Merge Request Hook"}, b"{}") is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        json.dumps({"ref": "main", "after": SHA}).encode(),
        json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode(),
        json.dumps({"ref": "refs/heads/main", "after": SHA.upper()}).encode(),
        json.dumps({"ref": "refs/heads/main"}).encode(),
        b"\xff\xfe",
    ],
)
def test_parse_push_rejects_malformed(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        parse_push({"X-GitHub-Event": "push"}, body)


def test_parse_push_unknown_provider() -> None:
    with pytest.raises(WebhookPayloadError):
        parse_push({}, BODY)


def test_sha256_object_ids_are_accepted() -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 64}).encode()
    event = parse_push({"X-GitHub-Event": "push"}, body)
    assert event is not None
    assert event.after == "a" * 64
