"""The reconciler's small HTTP server: probes, metrics, the git webhook, a read-only API.

Standard library only (``http.server.ThreadingHTTPServer``): the reconciler needs a
handful of endpoints, not a framework. The server knows nothing of the loop; it is given

- a :class:`StatusProvider` (leader or standby, store reachable, degraded dependencies),
- a Prometheus registry,
- the webhook secrets and an ``on_push(event)`` callback, which must only *signal* the
  loop (set an event) and return at once -- the request thread must not do the sync,
- optionally ``get_snapshot(app, env)`` for the read-only API.

Endpoints:

| Method, path | Answer |
|---|---|
| ``GET /livez`` | 200 while the loop makes progress (``alive``), else 503. For the liveness probe: a restart helps only then. |
| ``GET /readyz`` | 200 if the store is reachable, else 503. A standby is ready (it serves reads). Body: ``{"ready", "role", "store_reachable", "degraded"}``. |
| ``GET /healthz`` | 200 if alive and the store is reachable, else 503; body: the whole status, with ``"status": "ok" | "degraded" | "unavailable"`` (``degraded``: a dependency is down, or the branch head is rejected -- ``"head_rejected": {"commit", "reason"}``). For people and monitors. |
| ``GET /metrics`` | Prometheus text exposition of the given registry. |
| ``POST /hooks/git`` | GitHub / GitLab / Gitea push. 401 if the proof is missing or wrong (nothing is triggered), 400 if the payload is unreadable, 413 if larger than ``max_body``, 200 for other events (ping), 202 when the push was handed to ``on_push``. |
| ``GET /api/v1/snapshots/<app>/<env>`` | The cached snapshot as JSON, 404 if none (or if the API is off), 503 if the backend fails. |

The snapshot API returns configuration values, secrets in clear, and has no
authentication of its own: the reconciler passes ``get_snapshot`` only with
``--serve-snapshots`` (off by default); expose it only inside the cluster (a NetworkPolicy).

Each connection gets ``request_timeout`` seconds per socket operation, so a slow client
cannot hold a thread forever; request bodies are read only up to ``max_body`` bytes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from configctl.core.cache import NAME_RE
from configctl.errors import BackendError
from configctl_reconciler.webhook import (
    PushEvent,
    WebhookPayloadError,
    WebhookSecrets,
    parse_push,
    verify_request,
)

__all__ = ["HealthStatus", "ReconcilerHTTPServer", "StatusProvider"]

log = logging.getLogger(__name__)

_JSON = "application/json"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthStatus:
    """What the probes report, as the loop sees it right now."""

    role: str
    """``"leader"`` or ``"standby"``."""
    store_reachable: bool
    """The store answered its last check: the readiness condition."""
    degraded: tuple[str, ...] = ()
    """Dependencies that are down while we keep working without them (``redis``, ``rabbitmq``, ``git``)."""
    alive: bool = True
    """The loop is making progress (its heartbeat is fresh): the liveness condition."""
    head_rejected: Mapping[str, str] | None = None
    """``{"commit", "reason"}`` while the branch head is rejected: the last good configuration
    is served, but not what git says -- ``/healthz`` reports ``degraded``."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Extra JSON-safe facts for ``/healthz`` (last applied and attempted commit, ...)."""


class StatusProvider(Protocol):
    def status(self) -> HealthStatus: ...


GetSnapshot = Callable[[str, str], Mapping[str, Any] | None]
OnPush = Callable[[PushEvent], None]


class ReconcilerHTTPServer:
    """Serves the endpoints in the module docstring on a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        status: StatusProvider,
        render_metrics: Callable[[], tuple[bytes, str]],
        webhook_secrets: WebhookSecrets,
        on_push: OnPush,
        get_snapshot: GetSnapshot | None = None,
        max_body: int = 1 << 20,
        request_timeout: float = 10.0,
    ) -> None:
        handler = _make_handler(
            status=status,
            render_metrics=render_metrics,
            secrets=webhook_secrets,
            on_push=on_push,
            get_snapshot=get_snapshot,
            max_body=max_body,
            request_timeout=request_timeout,
        )
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="configctl-http", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ReconcilerHTTPServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _make_handler(
    *,
    status: StatusProvider,
    render_metrics: Callable[[], tuple[bytes, str]],
    secrets: WebhookSecrets,
    on_push: OnPush,
    get_snapshot: GetSnapshot | None,
    max_body: int,
    request_timeout: float,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "configctl"
        sys_version = ""  # do not advertise the Python version
        protocol_version = "HTTP/1.1"
        timeout = request_timeout

        # -- plumbing -------------------------------------------------------------------

        def log_message(self, format: str, *args: Any) -> None:
            # the stdlib writes every request to stderr; route it to our logger instead
            if log.isEnabledFor(logging.DEBUG):
                log.debug("http %s %s", self.client_address[0], format % args)

        def _send(self, code: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, doc: Any, extra: Mapping[str, str] | None = None) -> None:
            body = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
            self._send(code, body, _JSON, extra)

        def _status(self) -> HealthStatus | None:
            try:
                return status.status()
            except Exception:
                log.exception("status provider failed")
                return None

        # -- GET --------------------------------------------------------------------------

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._livez()
            elif path == "/readyz":
                self._readyz()
            elif path == "/healthz":
                self._healthz()
            elif path == "/metrics":
                body, content_type = render_metrics()
                self._send(HTTPStatus.OK, body, content_type)
            elif path.startswith("/api/v1/snapshots/"):
                self._snapshot(path[len("/api/v1/snapshots/") :])
            elif path == "/hooks/git":
                self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"}, {"Allow": "POST"})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _livez(self) -> None:
            st = self._status()
            alive = st is not None and st.alive
            self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": alive})

        def _readyz(self) -> None:
            st = self._status()
            if st is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"ready": False, "error": "status unavailable"})
                return
            self._json(
                HTTPStatus.OK if st.store_reachable else HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "ready": st.store_reachable,
                    "role": st.role,
                    "store_reachable": st.store_reachable,
                    "degraded": sorted(st.degraded),
                },
            )

        def _healthz(self) -> None:
            st = self._status()
            if st is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "error": "status unavailable"})
                return
            healthy = st.alive and st.store_reachable
            overall = (
                "unavailable"
                if not healthy
                else ("degraded" if st.degraded or st.head_rejected else "ok")
            )
            self._json(
                HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "status": overall,
                    "role": st.role,
                    "alive": st.alive,
                    "store_reachable": st.store_reachable,
                    "degraded": sorted(st.degraded),
                    "head_rejected": dict(st.head_rejected) if st.head_rejected else None,
                    "detail": dict(st.detail),
                },
            )

        def _snapshot(self, rest: str) -> None:
            parts = rest.split("/")
            if get_snapshot is None or len(parts) != 2 or not all(NAME_RE.fullmatch(p) for p in parts):
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            app, env = parts
            try:
                doc = get_snapshot(app, env)
            except BackendError as exc:
                log.warning("snapshot API: %s", exc.message)
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "backend unavailable"})
                return
            except Exception:
                log.exception("snapshot API failed for %s/%s", app, env)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
                return
            if doc is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no snapshot for {app}/{env}"})
            else:
                self._json(HTTPStatus.OK, dict(doc))

        # -- POST -------------------------------------------------------------------------

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/hooks/git":
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            body = self._read_body()
            if body is None:
                return
            headers = dict(self.headers.items())
            if verify_request(headers, body, secrets) is None:
                # Before any parsing: an unauthenticated request triggers nothing.
                log.info("webhook from %s refused: missing or wrong signature", self.client_address[0])
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "invalid signature"})
                return
            try:
                event = parse_push(headers, body)
            except WebhookPayloadError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            if event is None:
                self._json(HTTPStatus.OK, {"status": "ignored"})
                return
            try:
                on_push(event)
            except Exception:
                log.exception("webhook handler failed")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
                return
            self._json(HTTPStatus.ACCEPTED, {"status": "accepted", "ref": event.ref, "after": event.after})

        def _read_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
                self.close_connection = True
                return None
            raw = self.headers.get("Content-Length")
            try:
                length = int(raw) if raw is not None else -1
            except ValueError:
                length = -1
            if length < 0:
                self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
                self.close_connection = True
                return None
            if length > max_body:
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "payload too large"})
                self.close_connection = True  # the unread body must not be parsed as a request
                return None
            return self.rfile.read(length)

        def do_PUT(self) -> None:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

        do_DELETE = do_PUT
        do_PATCH = do_PUT

    return Handler
