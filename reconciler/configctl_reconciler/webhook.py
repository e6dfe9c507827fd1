"""Push webhooks from GitHub, GitLab and Gitea/Forgejo: verification and parsing (pure).

A webhook only makes the reconciler fetch *now* instead of at the next poll; what it
applies always comes from git itself, never from the request body. Still, an
unauthenticated hook would let anyone make us hammer the git server, so each provider's
proof is checked before anything is parsed:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- GitLab: ``X-Gitlab-Token: <the secret token>`` (a shared token, no HMAC);
- Gitea / Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature: <hex HMAC-SHA256 of the body>``.

Comparisons use :func:`hmac.compare_digest` (constant time). An empty secret verifies
nothing: HMAC with an empty key is computable by anyone, so a hook without a configured
secret is always refused.

Gitea also sends GitHub-style headers (``X-GitHub-Event``, sometimes
``X-Hub-Signature-256``) for compatibility, so providers are recognised Gitea/Forgejo
first, then GitLab, then GitHub.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PushEvent",
    "WebhookPayloadError",
    "WebhookSecrets",
    "detect_provider",
    "parse_push",
    "verify_gitea",
    "verify_github",
    "verify_gitlab",
    "verify_request",
]

GITHUB = "github"
GITLAB = "gitlab"
GITEA = "gitea"


class WebhookPayloadError(ValueError):
    """The (authenticated) request is not a push event we can read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PushEvent:
    """A verified push: which provider, which ref, and the commit it now points at."""

    provider: str
    ref: str
    after: str

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/<branch>``, else None (a tag push)."""
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSecrets:
    """The secret configured per provider; None means that provider is not accepted."""

    github: str | None = None
    gitlab: str | None = None
    gitea: str | None = None

    @classmethod
    def shared(cls, secret: str | None) -> WebhookSecrets:
        """One secret for every provider (``--webhook-secret``)."""
        return cls(github=secret, gitlab=secret, gitea=secret)

    def __repr__(self) -> str:  # never print secrets, not even in a traceback's locals
        configured = [n for n in (GITHUB, GITLAB, GITEA) if getattr(self, n)]
        return f"WebhookSecrets(configured={configured})"


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _hmac_hex(secret: str | bytes, body: bytes) -> str:
    return hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_github(secret: str | bytes | None, body: bytes, header: str | None) -> bool:
    """True iff ``header`` is ``sha256=<HMAC-SHA256(secret, body)>``."""
    if not secret or not header:
        return False
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        return False
    return hmac.compare_digest(digest.lower().encode("ascii", "replace"), _hmac_hex(secret, body).encode("ascii"))


def verify_gitlab(token: str | bytes | None, header: str | None) -> bool:
    """True iff ``header`` equals the configured token."""
    if not token or header is None:
        return False
    return hmac.compare_digest(_key(header), _key(token))


def verify_gitea(secret: str | bytes | None, body: bytes, header: str | None) -> bool:
    """True iff ``header`` is the hex HMAC-SHA256 of ``body`` (a ``sha256=`` prefix is tolerated)."""
    if not secret or not header:
        return False
    digest = header.strip()
    if digest.lower().startswith("sha256="):
        digest = digest[len("sha256=") :]
    return hmac.compare_digest(digest.lower().encode("ascii", "replace"), _hmac_hex(secret, body).encode("ascii"))


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def detect_provider(headers: Mapping[str, str]) -> str | None:
    """Which provider sent the request, from its event headers; None if unknown."""
    h = _lower(headers)
    if any(k in h for k in ("x-gitea-event", "x-forgejo-event", "x-gitea-signature", "x-forgejo-signature")):
        return GITEA
    if "x-gitlab-event" in h or "x-gitlab-token" in h:
        return GITLAB
    if "x-github-event" in h or "x-hub-signature-256" in h:
        return GITHUB
    return None


def verify_request(headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets) -> str | None:
    """The provider if the request carries a valid proof for it, else None."""
    h = _lower(headers)
    provider = detect_provider(h)
    if provider == GITEA:
        signature = h.get("x-gitea-signature") or h.get("x-forgejo-signature")
        return GITEA if verify_gitea(secrets.gitea, body, signature) else None
    if provider == GITLAB:
        return GITLAB if verify_gitlab(secrets.gitlab, h.get("x-gitlab-token")) else None
    if provider == GITHUB:
        return GITHUB if verify_github(secrets.github, body, h.get("x-hub-signature-256")) else None
    return None


def _event_name(provider: str, h: Mapping[str, str]) -> str:
    if provider == GITEA:
        return (h.get("x-gitea-event") or h.get("x-forgejo-event") or h.get("x-github-event") or "").strip().lower()
    if provider == GITLAB:
        return h.get("x-gitlab-event", "").strip().lower()
    return h.get("x-github-event", "").strip().lower()


def parse_push(headers: Mapping[str, str], body: bytes) -> PushEvent | None:
    """Read a push event; None for another event (ping, issues, ...).

    Raises :class:`WebhookPayloadError` if the provider is unknown or a push payload is
    malformed. Call only after :func:`verify_request` accepted the request.
    """
    h = _lower(headers)
    provider = detect_provider(h)
    if provider is None:
        raise WebhookPayloadError("not a GitHub, GitLab or Gitea webhook")
    event = _event_name(provider, h)
    if event not in ("push", "push hook"):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError("push payload is not JSON") from exc
    if not isinstance(doc, dict):
        raise WebhookPayloadError("push payload is not a JSON object")
    ref, after = doc.get("ref"), doc.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise WebhookPayloadError("push payload has no 'ref'")
    if not isinstance(after, str) or len(after) not in (40, 64) or not all(c in "0123456789abcdef" for c in after):
        raise WebhookPayloadError("push payload has no commit id in 'after'")
    return PushEvent(provider=provider, ref=ref, after=after)
