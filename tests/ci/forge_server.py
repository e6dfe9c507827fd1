"""A local HTTP server that plays the comment APIs of GitHub and GitLab, for CI tests.

GitHub (REST, ``GITHUB_API_URL`` points at ``http://127.0.0.1:PORT``):
``GET/POST /repos/{owner}/{repo}/issues/{n}/comments`` and
``PATCH /repos/{owner}/{repo}/issues/comments/{id}``, with ``Authorization: Bearer``.

GitLab (v4, ``CI_API_V4_URL`` is ``http://127.0.0.1:PORT/api/v4``):
``GET/POST /api/v4/projects/{id}/merge_requests/{iid}/notes`` and ``PUT .../notes/{id}``,
with ``PRIVATE-TOKEN``; a ``JOB-TOKEN`` gets 403 as on gitlab.com today.

Both paginate with ``per_page``/``page`` like the real APIs. Every request is recorded
(method, path, auth header) so a test can check what was sent; comment bodies live in
``threads`` keyed by ``("github", "owner/repo", n)`` or ``("gitlab", project, iid)``.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GITHUB_TOKEN = "ghs_test_token"
GITLAB_TOKEN = "glpat-test-token"

_GH_LIST = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_GH_EDIT = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")
_GL_LIST = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes$")
_GL_EDIT = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)$")


@dataclass
class Forge:
    url: str = ""
    threads: dict[tuple[str, str, int], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def thread(self, platform: str, name: str, number: int) -> list[dict[str, Any]]:
        return self.threads.setdefault((platform, name, number), [])

    def add(self, platform: str, name: str, number: int, body: str, **extra: Any) -> int:
        with self.lock:
            self.next_id += 1
            self.thread(platform, name, number).append({"id": self.next_id, "body": body, **extra})
            return self.next_id


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    per_page = int(query.get("per_page", ["30"])[0])
    page = int(query.get("page", ["1"])[0])
    return items[(page - 1) * per_page : page * per_page]


def _handler(forge: Forge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            assert isinstance(payload, dict)
            return payload

        def _route(self, method: str) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
            with forge.lock:
                forge.requests.append((method, self.path))
            if path.startswith("/repos/"):
                if self.headers.get("Authorization") != f"Bearer {GITHUB_TOKEN}":
                    self._send(401, {"message": "Bad credentials"})
                    return
                self._github(method, path, query)
            elif path.startswith("/api/v4/"):
                if self.headers.get("JOB-TOKEN") is not None:
                    self._send(403, {"message": "403 Forbidden"})
                    return
                if self.headers.get("PRIVATE-TOKEN") != GITLAB_TOKEN:
                    self._send(401, {"message": "401 Unauthorized"})
                    return
                self._gitlab(method, path, query)
            else:
                self._send(404, {"message": "Not Found"})

        def _github(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if (m := _GH_LIST.match(path)) is not None:
                items = forge.thread("github", m[1], int(m[2]))
                if method == "GET":
                    self._send(200, _page(items, query))
                    return
                if method == "POST":
                    new_id = forge.add("github", m[1], int(m[2]), self._body()["body"])
                    self._send(201, {"id": new_id, "body": items[-1]["body"]})
                    return
            if (m := _GH_EDIT.match(path)) is not None and method == "PATCH":
                for (platform, name, _), items in forge.threads.items():
                    for item in items:
                        if platform == "github" and name == m[1] and item["id"] == int(m[2]):
                            item["body"] = self._body()["body"]
                            self._send(200, item)
                            return
            self._send(404, {"message": "Not Found"})

        def _gitlab(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if (m := _GL_LIST.match(path)) is not None:
                project = urllib.parse.unquote(m[1])
                items = forge.thread("gitlab", project, int(m[2]))
                if method == "GET":
                    self._send(200, _page(items, query))
                    return
                if method == "POST":
                    new_id = forge.add("gitlab", project, int(m[2]), self._body()["body"], system=False)
                    self._send(201, items[-1] | {"id": new_id})
                    return
            if (m := _GL_EDIT.match(path)) is not None and method == "PUT":
                for item in forge.thread("gitlab", urllib.parse.unquote(m[1]), int(m[2])):
                    if item["id"] == int(m[3]):
                        item["body"] = self._body()["body"]
                        self._send(200, item)
                        return
            self._send(404, {"message": "404 Not found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@contextmanager
def running() -> Iterator[Forge]:
    """A Forge served on 127.0.0.1 at a free port until the block ends."""
    forge = Forge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(forge))
    forge.url = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for the loop's next poll: 0.5 s by default, a tenth of that here
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield forge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
