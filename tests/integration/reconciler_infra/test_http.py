"""The reconciler's HTTP endpoints over a real socket on 127.0.0.1 (port chosen by the OS)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from configctl.errors import CacheError
from configctl_reconciler.http import HealthStatus, ReconcilerHTTPServer
from configctl_reconciler.metrics import ReconcilerMetrics
from configctl_reconciler.webhook import PushEvent, WebhookSecrets

pytestmark = pytest.mark.integration

SECRET = "hook-secret"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
PUSH = json.dumps({"ref": "refs/heads/main", "after": SHA}).encode()


@dataclass
class Status:
    current: HealthStatus = field(
        default_factory=lambda: HealthStatus(role="leader", store_reachable=True, degraded=(), detail={"last_applied_commit": SHA})
    )
    broken: bool = False

    def status(self) -> HealthStatus:
        if self.broken:
            raise RuntimeError("status provider crashed")
        return self.current


@dataclass
class World:
    server: ReconcilerHTTPServer
    status: Status
    pushes: list[PushEvent]
    metrics: ReconcilerMetrics
    snapshots: dict[tuple[str, str], Mapping[str, Any]]

    def request(self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        host, port = self.server.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture
def world() -> Iterator[World]:
    status = Status()
    pushes: list[PushEvent] = []
    metrics = ReconcilerMetrics(process_metrics=False)
    snapshots: dict[tuple[str, str], Mapping[str, Any]] = {("billing", "prod"): {"app": "billing", "env": "prod", "version": 3, "values": {"a": 1}}}

    def get_snapshot(app: str, env: str) -> Mapping[str, Any] | None:
        if app == "broken":
            raise CacheError("Redis read failed")
        return snapshots.get((app, env))

    server = ReconcilerHTTPServer(
        "127.0.0.1",
        0,
        status=status,
        render_metrics=metrics.render,
        webhook_secrets=WebhookSecrets.shared(SECRET),
        on_push=pushes.append,
        get_snapshot=get_snapshot,
        max_body=64 * 1024,
    )
    server.start()
    try:
        yield World(server, status, pushes, metrics, snapshots)
    finally:
        server.stop()


def gh_headers(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": "sha256=" + digest, "Content-Type": "application/json"}


def test_binds_loopback_on_a_free_port(world: World) -> None:
    host, port = world.server.address
    assert host == "127.0.0.1"
    assert port > 0


def test_probes_when_healthy(world: World) -> None:
    code, _, body = world.request("GET", "/livez")
    assert code == 200
    code, headers, body = world.request("GET", "/readyz")
    assert code == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"ready": True, "role": "leader", "store_reachable": True, "degraded": []}
    code, _, body = world.request("GET", "/healthz")
    assert code == 200
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["detail"] == {"last_applied_commit": SHA}


def test_degraded_standby_is_still_ready(world: World) -> None:
    world.status.current = HealthStatus(role="standby", store_reachable=True, degraded=("redis", "rabbitmq"))
    code, _, body = world.request("GET", "/readyz")
    assert code == 200
    assert json.loads(body) == {"ready": True, "role": "standby", "store_reachable": True, "degraded": ["rabbitmq", "redis"]}
    code, _, body = world.request("GET", "/healthz")
    assert code == 200
    assert json.loads(body)["status"] == "degraded"


def test_store_unreachable_is_not_ready_but_alive(world: World) -> None:
    world.status.current = HealthStatus(role="standby", store_reachable=False, degraded=("postgresql",))
    assert world.request("GET", "/readyz")[0] == 503
    assert world.request("GET", "/livez")[0] == 200
    code, _, body = world.request("GET", "/healthz")
    assert code == 503
    assert json.loads(body)["status"] == "unavailable"


def test_stuck_loop_is_not_alive(world: World) -> None:
    world.status.current = HealthStatus(role="leader", store_reachable=True, alive=False)
    assert world.request("GET", "/livez")[0] == 503


def test_broken_status_provider_gives_503(world: World) -> None:
    world.status.broken = True
    assert world.request("GET", "/readyz")[0] == 503
    assert world.request("GET", "/healthz")[0] == 503
    assert world.request("GET", "/livez")[0] == 503


def test_metrics(world: World) -> None:
    world.metrics.set_leader(True)
    world.metrics.commit_applied()
    code, headers, body = world.request("GET", "/metrics")
    assert code == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "configctl_leader 1.0" in text
    assert "configctl_commits_applied_total 1.0" in text
    assert "configctl_seconds_since_last_sync" in text


def test_github_push_is_accepted(world: World) -> None:
    code, _, body = world.request("POST", "/hooks/git", PUSH, gh_headers(PUSH))
    assert code == 202
    assert json.loads(body)["after"] == SHA
    assert world.pushes == [PushEvent(provider="github", ref="refs/heads/main", after=SHA)]


def test_gitlab_and_gitea_pushes(world: World) -> None:
    code, _, _ = world.request("POST", "/hooks/git", PUSH, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})
    assert code == 202
    sig = hmac.new(SECRET.encode(), PUSH, hashlib.sha256).hexdigest()
    code, _, _ = world.request("POST", "/hooks/git", PUSH, {"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": sig})
    assert code == 202
    assert [p.provider for p in world.pushes] == ["gitlab", "gitea"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Event": "push"},
        gh_headers(PUSH, secret="wrong"),
        gh_headers(PUSH + b" "),
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"},
        {"X-Gitea-Event": "push", "X-Gitea-Signature": "00" * 32},
        {},
    ],
)
def test_bad_signature_is_401_and_triggers_nothing(world: World, headers: dict[str, str]) -> None:
    code, _, _ = world.request("POST", "/hooks/git", PUSH, headers)
    assert code == 401
    assert world.pushes == []


def test_bad_payload_is_400(world: World) -> None:
    body = b'{"ref": "refs/heads/main"}'
    code, _, _ = world.request("POST", "/hooks/git", body, gh_headers(body))
    assert code == 400
    assert world.pushes == []


def test_ping_is_ignored(world: World) -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    code, _, resp = world.request("POST", "/hooks/git", body, gh_headers(body, event="ping"))
    assert code == 200
    assert json.loads(resp) == {"status": "ignored"}
    assert world.pushes == []


def test_oversized_body_is_413(world: World) -> None:
    body = b"x" * (64 * 1024 + 1)
    code, _, _ = world.request("POST", "/hooks/git", body, gh_headers(body))
    assert code == 413
    assert world.pushes == []


def test_missing_content_length_is_411(world: World) -> None:
    host, port = world.server.address
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nConnection: close\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 411")


def test_snapshot_api(world: World) -> None:
    code, _, body = world.request("GET", "/api/v1/snapshots/billing/prod")
    assert code == 200
    assert json.loads(body)["version"] == 3
    assert world.request("GET", "/api/v1/snapshots/billing/dev")[0] == 404
    assert world.request("GET", "/api/v1/snapshots/Billing/prod")[0] == 404
    assert world.request("GET", "/api/v1/snapshots/billing/../etc")[0] == 404
    assert world.request("GET", "/api/v1/snapshots/billing")[0] == 404
    code, _, body = world.request("GET", "/api/v1/snapshots/broken/prod")
    assert code == 503
    assert json.loads(body) == {"error": "backend unavailable"}


def test_unknown_paths_and_methods(world: World) -> None:
    assert world.request("GET", "/nope")[0] == 404
    assert world.request("GET", "/hooks/git")[0] == 405
    assert world.request("POST", "/metrics", b"")[0] == 404
    assert world.request("DELETE", "/api/v1/snapshots/billing/prod")[0] == 405


def test_server_header_hides_python_version(world: World) -> None:
    _, headers, _ = world.request("GET", "/livez")
    assert "python" not in headers.get("server", "").lower()


def test_slow_client_does_not_block_others(world: World) -> None:
    host, port = world.server.address
    with socket.create_connection((host, port), timeout=5) as slow:
        slow.sendall(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\n")  # and never finishes
        assert world.request("GET", "/livez")[0] == 200
