"""The comments of one GitHub pull request, through the REST API with the job's token.

Pull-request comments are issue comments: ``GET/POST /repos/{repo}/issues/{n}/comments``
and ``PATCH /repos/{repo}/issues/comments/{id}``. The base URL comes from
``GITHUB_API_URL`` (set by Actions; GitHub Enterprise Server has its own), so a test can
point it at a local server. The token needs ``pull-requests: write``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from configctl.adapters import rest
from configctl.core.records import ReviewComment
from configctl.errors import ForgeError, UsageError

#: GitHub refuses a comment body longer than this many characters
MAX_BODY = 65_536
PER_PAGE = 100
_HINT = "the workflow job needs `permissions: pull-requests: write` and the token `github.token`"


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequestThread:
    api_url: str
    repository: str
    number: int
    token: str

    @property
    def max_body(self) -> int:
        return MAX_BODY

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "configctl",
        }

    def _url(self, path: str) -> str:
        return f"{self.api_url.rstrip('/')}/repos/{self.repository}/{path}"

    def comments(self) -> list[ReviewComment]:
        found: list[ReviewComment] = []
        page = 1
        while True:
            url = self._url(f"issues/{self.number}/comments?per_page={PER_PAGE}&page={page}")
            items = rest.request("GET", url, headers=self._headers(), hint=_HINT).body
            if not isinstance(items, list):
                raise ForgeError(f"GET {url}: expected a list of comments")
            found.extend(_comment(item, url) for item in items)
            if len(items) < PER_PAGE:
                return found
            page += 1

    def create(self, body: str) -> ReviewComment:
        url = self._url(f"issues/{self.number}/comments")
        answer = rest.request("POST", url, headers=self._headers(), payload={"body": body}, hint=_HINT)
        return _comment(answer.body, url)

    def update(self, comment_id: int, body: str) -> None:
        url = self._url(f"issues/comments/{comment_id}")
        rest.request("PATCH", url, headers=self._headers(), payload={"body": body}, hint=_HINT)


def _comment(item: object, url: str) -> ReviewComment:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise ForgeError(f"{url}: a comment without an id")
    body = item.get("body")
    return ReviewComment(id=item["id"], body=body if isinstance(body, str) else "")


def _number_from_event(env: Mapping[str, str]) -> int | None:
    """The pull request's number from the event payload Actions writes to GITHUB_EVENT_PATH."""
    path = env.get("GITHUB_EVENT_PATH", "")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("pull_request", "issue"):
        number = event.get(key, {}).get("number") if isinstance(event, dict) else None
        if isinstance(number, int):
            return number
    return None


def from_env(env: Mapping[str, str], *, number: int | None = None) -> PullRequestThread:
    """The pull request a GitHub Actions job runs for, from the variables Actions sets."""
    pr = number if number is not None else _number_from_event(env)
    if pr is None:
        raise UsageError(
            "no pull request number: GITHUB_EVENT_PATH holds no pull_request event",
            hint="run on `pull_request` events, or pass --pr N",
        )
    token = env.get("GITHUB_TOKEN", "").strip() or env.get("GH_TOKEN", "").strip()
    if not token:
        raise UsageError("GITHUB_TOKEN is not set (the token that may comment)", hint="set GITHUB_TOKEN: ${{ github.token }}")
    return PullRequestThread(
        api_url=env.get("GITHUB_API_URL", "").strip() or "https://api.github.com",
        repository=rest.require(env, "GITHUB_REPOSITORY", "owner/name of the repository"),
        number=pr,
        token=token,
    )
