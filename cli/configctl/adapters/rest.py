"""JSON over HTTPS with the standard library, for the few REST calls CI makes (comments).

A CI job posts one comment per run, so urllib is enough: no client library to install in
the job, nothing imported until a comment is posted. Invariants:

- only ``http``/``https`` URLs are called, and redirects are refused, because urllib would
  follow a redirect with the ``Authorization`` header to wherever it points;
- every failure is a :class:`~configctl.errors.ForgeError` naming the method, the URL and
  the API's own message; the token never appears in it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from configctl.errors import ForgeError

#: seconds for one request: the APIs answer in well under a second when they are healthy
TIMEOUT = 30.0

#: JSON as it arrives: the caller checks the shape it needs
JSONValue = object


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: JSONValue


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would replay the Authorization header to the new URL."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:  # noqa: ARG002 - urllib calls it with the redirect details; every redirect is refused
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _api_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        for field in ("message", "error", "error_description"):
            if field in data:
                return str(data[field])
    return str(data)[:200]


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    payload: Mapping[str, object] | None = None,
    hint: str | None = None,
) -> Response:
    """Send one request; the decoded JSON answer, or ForgeError for anything but 2xx."""
    if not url.startswith(("https://", "http://")):
        raise ForgeError(f"{method} {url}: not an http(s) URL")
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked above
    for name, value in headers.items():
        req.add_header(name, value)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as answer:
            raw = answer.read()
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        raise ForgeError(
            f"{method} {url}: HTTP {exc.code}: {_api_message(exc.read())}", hint=hint
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ForgeError(f"{method} {url}: unreachable: {exc}") from exc
    try:
        body: JSONValue = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise ForgeError(f"{method} {url}: the answer is not JSON") from exc
    return Response(status=status, body=body)


def require(env: Mapping[str, str], name: str, why: str) -> str:
    """An environment variable the CI platform sets, or a usage error saying which is missing."""
    from configctl.errors import UsageError

    value = env.get(name, "").strip()
    if not value:
        raise UsageError(f"{name} is not set ({why})")
    return value
