"""The notes of one GitLab merge request, through the REST API (v4).

``GET/POST /projects/{id}/merge_requests/{iid}/notes`` and ``PUT .../notes/{note_id}``,
against ``CI_API_V4_URL`` (set in every GitLab job; a test points it at a local server).

The token: ``CONFIGCTL_GITLAB_TOKEN`` (or ``GITLAB_TOKEN``), a project or group access
token with the ``api`` scope, sent as ``PRIVATE-TOKEN``. Without one, ``CI_JOB_TOKEN`` is
tried as ``JOB-TOKEN``; GitLab does not (yet) let the job token write merge-request notes
(gitlab-org/gitlab#464591), so that fails with a hint saying which variable to set.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from configctl.adapters import rest
from configctl.core.records import ReviewComment
from configctl.errors import ForgeError, UsageError

#: GitLab's note length limit, in characters
MAX_BODY = 1_000_000
PER_PAGE = 100
_HINT = (
    "set the CI/CD variable CONFIGCTL_GITLAB_TOKEN to a project access token with the `api` "
    "scope (role Reporter or above): the job token cannot write merge-request notes"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeRequestThread:
    api_url: str
    project: str
    iid: int
    token_header: str
    token: str

    @property
    def max_body(self) -> int:
        return MAX_BODY

    def _headers(self) -> dict[str, str]:
        return {self.token_header: self.token, "User-Agent": "configctl"}

    def _url(self, path: str) -> str:
        project = urllib.parse.quote(self.project, safe="")
        return f"{self.api_url.rstrip('/')}/projects/{project}/merge_requests/{self.iid}/{path}"

    def comments(self) -> list[ReviewComment]:
        found: list[ReviewComment] = []
        page = 1
        while True:
            url = self._url(f"notes?sort=asc&order_by=created_at&per_page={PER_PAGE}&page={page}")
            items = rest.request("GET", url, headers=self._headers(), hint=_HINT).body
            if not isinstance(items, list):
                raise ForgeError(f"GET {url}: expected a list of notes")
            found.extend(_note(item, url) for item in items if not (isinstance(item, dict) and item.get("system")))
            if len(items) < PER_PAGE:
                return found
            page += 1

    def create(self, body: str) -> ReviewComment:
        url = self._url("notes")
        answer = rest.request("POST", url, headers=self._headers(), payload={"body": body}, hint=_HINT)
        return _note(answer.body, url)

    def update(self, comment_id: int, body: str) -> None:
        url = self._url(f"notes/{comment_id}")
        rest.request("PUT", url, headers=self._headers(), payload={"body": body}, hint=_HINT)


def _note(item: object, url: str) -> ReviewComment:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise ForgeError(f"{url}: a note without an id")
    body = item.get("body")
    return ReviewComment(id=item["id"], body=body if isinstance(body, str) else "")


def from_env(env: Mapping[str, str], *, iid: int | None = None) -> MergeRequestThread:
    """The merge request a GitLab job runs for, from the variables GitLab sets."""
    if iid is None:
        raw = env.get("CI_MERGE_REQUEST_IID", "").strip()
        if not raw.isdigit():
            raise UsageError(
                "CI_MERGE_REQUEST_IID is not set: not a merge-request pipeline",
                hint="run the job with `rules: - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"`, or pass --pr N",
            )
        iid = int(raw)
    private = env.get("CONFIGCTL_GITLAB_TOKEN", "").strip() or env.get("GITLAB_TOKEN", "").strip()
    if private:
        header, token = "PRIVATE-TOKEN", private
    else:
        header, token = "JOB-TOKEN", rest.require(env, "CI_JOB_TOKEN", "no CONFIGCTL_GITLAB_TOKEN either")
    return MergeRequestThread(
        api_url=rest.require(env, "CI_API_V4_URL", "the GitLab API base URL"),
        project=rest.require(env, "CI_PROJECT_ID", "the project's id"),
        iid=iid,
        token_header=header,
        token=token,
    )
