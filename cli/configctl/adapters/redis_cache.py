r"""# Redis key layout

The reconciler warms Redis with the resolved configuration of every (app, env); the
client SDK reads it. This page is the contract between them. It is the same text as the
docstring of `configctl.adapters.redis_cache`.

All keys start with a prefix, `configctl` unless configured otherwise, so several
installations can share one Redis database. App and environment names are DNS
labels (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`), so they never contain `:`.

| Key | Type | Content |
|---|---|---|
| `<prefix>:snapshot:<app>:<env>` | string | The snapshot: one JSON object `{"app", "env", "version", "commit", "checksum", "values", "rollouts", "updated_at"}` (UTF-8, sorted keys, compact). **The only key a reader needs.** `rollouts` is the array of the pair's rollouts and flags in their JSON form, runtime state folded in (see `ROLLOUT_CONTRACT.md` and `configctl.core.rollouts`); `[]` when it has none, and absent in entries written before rollouts existed (read it as `[]`). The `checksum` covers values and rollouts (values alone when there are no rollouts). |
| `<prefix>:version:<app>:<env>` | string | The version of that snapshot, as a decimal integer. A cheap probe: an SDK can `GET` it to learn whether its copy is current before fetching the whole snapshot. |
| `<prefix>:checksum:<app>:<env>` | string | The checksum of that snapshot (as recorded in the store). Lets the reconciler compare Redis with PostgreSQL without reading every snapshot. |
| `<prefix>:index` | set | Members `"<app>:<env>"`: every (app, env) that has a snapshot. |
| `<prefix>:clients:<app>:<env>` | hash | Written by the client SDK, not the reconciler: field = instance id, value = one JSON report `{"instance", "version", "since", "state", "stale_since", "refused_version", "refused_reason", "seen", "ttl", "host", "pid"}` (no configuration values). The key has a TTL, renewed by each report (see "Client reports"). |

No key has a TTL: an entry stays until the reconciler replaces or deletes it, and the
reconciler's check refills whatever is lost (a Redis restart without persistence, an
eviction, a `FLUSHDB`).

## Guarantees

- **A reader never sees a mix.** The snapshot is one string written with one `SET`, so a
  `GET` returns one whole version. Only the snapshot key is authoritative; the version
  and checksum keys are hints and may be read from a different instant than the snapshot
  (an SDK that probes `version` then reads `snapshot` must use the version *inside* the
  snapshot).
- **Never backwards.** Every write goes through one Lua script that writes all four keys
  together, and only when the stored version is lower or absent, or the version is the
  same but the checksum differs (a damaged entry; the store is the authority on a
  version's content). A slow or deposed reconciler therefore cannot replace version 8
  with version 7.
- **Checked and repaired.** At start and on every interval the reconciler compares Redis
  with PostgreSQL: missing or stale entries are written, entries for an (app, env) the
  store no longer serves are deleted, index members without a snapshot are dropped. An
  entry that is *newer* than the store says is left alone and logged.
- **Degraded, not down.** If Redis is unreachable, commits still land in PostgreSQL; the
  next successful check brings Redis up to date.

## Client reports

Each running `ConfigClient` writes what it holds into `<prefix>:clients:<app>:<env>` (`HSET`
of its own field, then `EXPIRE` of the key to the report TTL, 90 s by default) when it adopts
or refuses a version and on every refresh; it deletes its field on `close()`. A field whose
`seen` + `ttl` has passed belongs to a client that died: readers ignore it and delete it.
`configctl status APP ENV --redis URL` reads this hash. The reconciler never reads or
repairs these keys (they are not snapshots), and their TTL is the one exception to "no key
has a TTL" above.

## Reading it

```console
$ redis-cli GET configctl:version:billing:prod
"12"
$ redis-cli GET configctl:snapshot:billing:prod
"{\"app\":\"billing\",\"checksum\":\"sha256:…\",\"commit\":\"3b18e5…\",\"env\":\"prod\",\"rollouts\":[],\"updated_at\":\"2025-03-14T09:26:54.120000Z\",\"values\":{…},\"version\":12}"
$ redis-cli SMEMBERS configctl:index
1) "billing:prod"
```

The snapshot holds configuration values, which may include secrets: protect Redis
accordingly (a password or ACL user, TLS with `rediss://`, no public bind).

## Client settings

The reconciler connects with `socket_timeout=2` s and **no automatic retries**
(`retry=Retry(NoBackoff(), 0)`): redis-py's default retries a timed-out command up to ten
times with backoff, so a stalled Redis would stall the reconcile loop for many times the
socket timeout. The loop has its own backoff and treats Redis as degraded instead.

Redis Cluster is not supported: the script touches keys in different hash slots.

## Without Redis (the embedded mode)

`SnapshotDir` keeps the same snapshots as files: `<dir>/<app>.<env>.json` holds exactly
the JSON of `<prefix>:snapshot:<app>:<env>`. Each file is replaced atomically (temporary
file in the same directory, `fsync`, rename, `fsync` of the directory), created with mode
0600, and written under an exclusive lock on `<dir>/.lock`, with the same never-backwards
rule and the same repair.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from configctl.core.cache import (
    CachedSnapshot,
    CacheKey,
    decode_snapshot,
    encode_snapshot,
    is_name,
    require_name,
)
from configctl.errors import CacheError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCache"]

log = logging.getLogger(__name__)

# One script writes all four keys, so they change together, and compares before writing,
# so two writers (a slow leader and its successor) cannot move an entry backwards: Redis
# runs a script atomically, there is no window between the read and the write.
#
# KEYS: snapshot, version, checksum, index
# ARGV: version, checksum, snapshot JSON, index member, allow_backwards ("1" or "0")
# Returns 1 if written, 0 if the stored entry is newer or the same.
_PUT_LUA = """
local new_version = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur_version = tonumber(redis.call('GET', KEYS[2]))
  local cur_checksum = redis.call('GET', KEYS[3])
  if cur_version == nil or not cur_checksum then
    -- the hint keys are gone (deleted by hand): read the snapshot itself
    local ok, doc = pcall(cjson.decode, redis.call('GET', KEYS[1]))
    if ok and type(doc) == 'table' then
      cur_version = tonumber(doc['version'])
      cur_checksum = doc['checksum']
    end
  end
  if cur_version ~= nil then
    if cur_version == new_version and cur_checksum == ARGV[2] then
      return 0
    end
    if cur_version > new_version and ARGV[5] ~= '1' then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""

# KEYS: snapshot, version, checksum, index; ARGV: index member
_DELETE_LUA = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
"""

_KINDS = ("snapshot", "version", "checksum")


@dataclass(slots=True)
class _Entry:
    """What Redis holds for one (app, env), gathered by one scan."""

    has_snapshot: bool = False
    version: int | None = None
    checksum: str | None = None
    has_meta: bool = False
    indexed: bool = False


def _glob_escape(text: str) -> str:
    """Escape ``text`` for a SCAN MATCH pattern (the prefix is user input)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@contextlib.contextmanager
def _wrapped(operation: str) -> Iterator[None]:
    """Turn redis-py and socket errors into CacheError; the URL never appears."""
    import redis.exceptions

    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        raise CacheError(
            f"Redis {operation} failed: {type(exc).__name__}",
            hint="check that Redis is reachable; configctl keeps serving from the store and "
            "repairs Redis when it is back",
        ) from exc


class RedisCache:
    """The Redis snapshot cache (see the module docstring for the key layout).

    One instance is safe to share between threads (redis-py's connection pool is).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "configctl",
        socket_timeout: float = 2.0,
        client_name: str = "configctl",
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError("Redis prefix must be non-empty and contain no whitespace")
        self.prefix = prefix
        # Retry(NoBackoff(), 0): one attempt per command. redis-py's default
        # (ExponentialWithJitterBackoff, 10 retries) hides a stalled server behind many
        # socket timeouts (reliability-notes §5.2: a 2 s CLIENT PAUSE never surfaced with
        # the default); the reconcile loop has its own backoff and a "degraded" state.
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
            client_name=client_name,
        )
        self._put_script = self._client.register_script(_PUT_LUA)
        self._delete_script = self._client.register_script(_DELETE_LUA)

    # -- keys ---------------------------------------------------------------------------

    def _key(self, kind: str, app: str, env: str) -> str:
        return f"{self.prefix}:{kind}:{require_name('app', app)}:{require_name('env', env)}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:index"

    def _keys(self, app: str, env: str) -> list[str]:
        return [*(self._key(kind, app, env) for kind in _KINDS), self.index_key]

    # -- the SnapshotCache port -----------------------------------------------------------

    def put(self, snapshot: CachedSnapshot) -> bool:
        return self._write(snapshot, allow_backwards=False)

    def get(self, app: str, env: str) -> CachedSnapshot | None:
        key = self._key("snapshot", app, env)
        with _wrapped("read"):
            text: Any = self._client.get(key)
        if text is None:
            return None
        try:
            snapshot = decode_snapshot(str(text))
        except ValueError as exc:
            raise CacheError(f"the Redis snapshot of {app}/{env} is malformed: {exc}") from exc
        if snapshot.key != (app, env):
            raise CacheError(f"the Redis snapshot under {app}/{env} names another app or env")
        return snapshot

    def versions(self) -> dict[CacheKey, int]:
        return {
            key: entry.version
            for key, entry in self._scan().items()
            if entry.has_snapshot and entry.version is not None
        }

    def repair(
        self, expected: Mapping[CacheKey, CachedSnapshot], *, allow_backwards: bool = False
    ) -> int:
        """Make Redis hold exactly ``expected``; return the number of entries changed.

        ``allow_backwards=True`` is for an operator who knows the store was reset (versions
        restarted); the reconciler never passes it.
        """
        for key, snapshot in expected.items():
            if key != snapshot.key:
                raise ValueError(f"repair: {key} maps to the snapshot of {snapshot.key}")
        current = self._scan()
        repaired = 0
        for key, snapshot in expected.items():
            entry = current.get(key)
            if (
                entry is not None
                and entry.has_snapshot
                and entry.indexed
                and entry.version == snapshot.version
                and entry.checksum == snapshot.checksum
            ):
                continue
            if (
                entry is not None
                and entry.has_snapshot
                and entry.version is not None
                and entry.version > snapshot.version
                and not allow_backwards
            ):
                log.warning(
                    "Redis holds %s/%s version %d, newer than the store's %d; left alone",
                    key[0], key[1], entry.version, snapshot.version,
                )
                continue
            if (
                entry is not None
                and entry.has_snapshot
                and entry.version == snapshot.version
                and entry.checksum == snapshot.checksum
            ):
                # the snapshot is right but the index lost its member: re-add it alone
                with _wrapped("repair"):
                    self._client.sadd(self.index_key, f"{key[0]}:{key[1]}")
                repaired += 1
                continue
            if self._write(snapshot, allow_backwards=allow_backwards):
                repaired += 1
        for key in current.keys() - expected.keys():
            self._delete(*key)
            repaired += 1
        return repaired

    def ping(self) -> None:
        with _wrapped("ping"):
            self._client.ping()

    # -- extra --------------------------------------------------------------------------

    def delete(self, app: str, env: str) -> None:
        """Remove every key of (app, env)."""
        self._delete(app, env)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    # -- internals ------------------------------------------------------------------------

    def _write(self, snapshot: CachedSnapshot, *, allow_backwards: bool) -> bool:
        payload = encode_snapshot(snapshot)
        with _wrapped("write"):
            written: Any = self._put_script(
                keys=self._keys(snapshot.app, snapshot.env),
                args=[
                    snapshot.version,
                    snapshot.checksum,
                    payload,
                    f"{snapshot.app}:{snapshot.env}",
                    "1" if allow_backwards else "0",
                ],
            )
        return bool(int(written))

    def _delete(self, app: str, env: str) -> None:
        with _wrapped("delete"):
            self._delete_script(keys=self._keys(app, env), args=[f"{app}:{env}"])

    def _scan(self) -> dict[CacheKey, _Entry]:
        """Everything under the prefix, by (app, env): one SCAN, one pipeline, few GETs."""
        entries: dict[CacheKey, _Entry] = {}
        start = len(self.prefix) + 1
        with _wrapped("scan"):
            members: Any = self._client.smembers(self.index_key)
            keys = list(self._client.scan_iter(match=_glob_escape(self.prefix) + ":*", count=500))
        for member in members:
            app, _, env = str(member).partition(":")
            if is_name(app) and is_name(env):
                entries.setdefault((app, env), _Entry()).indexed = True
            else:
                log.warning("Redis index %s holds a malformed member; ignored", self.index_key)
        for raw in keys:
            kind, _, rest = str(raw)[start:].partition(":")
            app, _, env = rest.partition(":")
            if kind not in _KINDS or not (is_name(app) and is_name(env)):
                continue  # the index itself, or a key that is not ours to judge
            entry = entries.setdefault((app, env), _Entry())
            if kind == "snapshot":
                entry.has_snapshot = True
            else:
                entry.has_meta = True
        ordered = sorted(entries)
        with _wrapped("scan"):
            pipe = self._client.pipeline(transaction=False)
            for app, env in ordered:
                pipe.mget(self._key("version", app, env), self._key("checksum", app, env))
            hints: list[Any] = pipe.execute()
        for (app, env), (version, checksum) in zip(ordered, hints, strict=True):
            entry = entries[(app, env)]
            entry.version = _to_int(version)
            entry.checksum = None if checksum is None else str(checksum)
            if entry.has_snapshot and (entry.version is None or entry.checksum is None):
                # hints lost: read the snapshot itself (rare, so one GET each is fine)
                try:
                    found = self.get(app, env)
                except CacheError:
                    found = None
                entry.version = found.version if found else None
                entry.checksum = found.checksum if found else None
        return entries


def _to_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
