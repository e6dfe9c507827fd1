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
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configctl.core.cache import (
    CachedSnapshot,
    CacheKey,
    decode_snapshot,
    encode_snapshot,
    require_name,
)
from configctl.errors import CacheError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCache", "SnapshotDir"]

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
            if _is_name(app) and _is_name(env):
                entries.setdefault((app, env), _Entry()).indexed = True
            else:
                log.warning("Redis index %s holds a malformed member; ignored", self.index_key)
        for raw in keys:
            kind, _, rest = str(raw)[start:].partition(":")
            app, _, env = rest.partition(":")
            if kind not in _KINDS or not (_is_name(app) and _is_name(env)):
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


def _is_name(text: str) -> bool:
    try:
        require_name("name", text)
    except ValueError:
        return False
    return True


def _to_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- the embedded mode: a directory of snapshot files ------------------------------------


class SnapshotDir:
    """The snapshot cache of the embedded mode: one JSON file per (app, env).

    ``<path>/<app>.<env>.json`` holds exactly what Redis holds under
    ``<prefix>:snapshot:<app>:<env>`` (names are DNS labels, so the dot is unambiguous).
    Each file is replaced atomically -- written to a temporary file in the same
    directory, fsynced, renamed over the old one, then the directory fsynced -- so a
    reader (the SDK) sees the old or the new file, never a torn one, even after a crash
    or power loss (reliability-notes §2.3). The file is never unlinked before the rename.

    Mutations hold an exclusive ``flock`` on ``<path>/.lock`` so the compare-and-replace
    that keeps entries from moving backwards is atomic across processes too. Files are
    created with ``mode`` (0600 by default: snapshots may contain secrets).
    """

    _LOCK_NAME = ".lock"
    _TMP_PREFIX = ".tmp-"

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o600) -> None:
        self.path = Path(path)
        self.mode = mode

    def _file(self, app: str, env: str) -> Path:
        return self.path / f"{require_name('app', app)}.{require_name('env', env)}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _wrapped_os("lock"):
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path / self._LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _wrapped_os("lock"):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # -- the SnapshotCache port -----------------------------------------------------------

    def put(self, snapshot: CachedSnapshot) -> bool:
        return self._write_if_newer(snapshot, allow_backwards=False)

    def get(self, app: str, env: str) -> CachedSnapshot | None:
        file = self._file(app, env)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read the snapshot file of {app}/{env}") from exc
        try:
            snapshot = decode_snapshot(data)
        except ValueError as exc:
            raise CacheError(f"the snapshot file of {app}/{env} is malformed: {exc}") from exc
        if snapshot.key != (app, env):
            raise CacheError(f"the snapshot file of {app}/{env} names another app or env")
        return snapshot

    def versions(self) -> dict[CacheKey, int]:
        return {key: snap.version for key, snap in self._read_all().items() if snap is not None}

    def repair(
        self, expected: Mapping[CacheKey, CachedSnapshot], *, allow_backwards: bool = False
    ) -> int:
        for key, snapshot in expected.items():
            if key != snapshot.key:
                raise ValueError(f"repair: {key} maps to the snapshot of {snapshot.key}")
        repaired = 0
        with self._locked():
            self._remove_stale_temp_files()
            current = self._read_all()
            for key, snapshot in expected.items():
                if self._write_locked(snapshot, current.get(key), allow_backwards=allow_backwards):
                    repaired += 1
            for app, env in current.keys() - expected.keys():
                self._unlink(self._file(app, env))
                repaired += 1
        return repaired

    def ping(self) -> None:
        if not self.path.exists():
            # not created yet: usable if the parent lets us create it
            parent = self.path.parent
            if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
                return
            raise CacheError(f"snapshot directory {self.path} does not exist and cannot be created")
        if not self.path.is_dir() or not os.access(self.path, os.W_OK | os.X_OK):
            raise CacheError(f"snapshot directory {self.path} is not a writable directory")

    def delete(self, app: str, env: str) -> None:
        with self._locked():
            self._unlink(self._file(app, env))

    def close(self) -> None:
        """Nothing to release; present so both caches can be closed alike."""

    # -- internals ------------------------------------------------------------------------

    def _write_if_newer(self, snapshot: CachedSnapshot, *, allow_backwards: bool) -> bool:
        with self._locked():
            try:
                current = self.get(snapshot.app, snapshot.env)
            except CacheError:
                current = None  # unreadable or damaged: replace it
            return self._write_locked(snapshot, current, allow_backwards=allow_backwards)

    def _write_locked(
        self, snapshot: CachedSnapshot, current: CachedSnapshot | None, *, allow_backwards: bool
    ) -> bool:
        if current is not None:
            if current.version == snapshot.version and current.checksum == snapshot.checksum:
                return False
            if current.version > snapshot.version and not allow_backwards:
                log.warning(
                    "snapshot file of %s/%s holds version %d, newer than %d; left alone",
                    snapshot.app, snapshot.env, current.version, snapshot.version,
                )
                return False
        data = encode_snapshot(snapshot).encode("utf-8")
        with _wrapped_os("write"):
            atomic_write(self._file(snapshot.app, snapshot.env), data, mode=self.mode)
        return True

    def _read_all(self) -> dict[CacheKey, CachedSnapshot | None]:
        """Every snapshot file by (app, env); None for a damaged one (so repair rewrites it)."""
        found: dict[CacheKey, CachedSnapshot | None] = {}
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return found
        except OSError as exc:
            raise CacheError(f"cannot list snapshot directory {self.path}") from exc
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            app, _, env = name.removesuffix(".json").partition(".")
            if not (_is_name(app) and _is_name(env)):
                continue
            try:
                found[(app, env)] = self.get(app, env)
            except CacheError:
                found[(app, env)] = None
        return found

    def _remove_stale_temp_files(self) -> None:
        # Under the lock nobody is writing, so any temporary file is a crash's leftover.
        for name in os.listdir(self.path):
            if name.startswith(self._TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)

    def _unlink(self, file: Path) -> None:
        with _wrapped_os("delete"):
            try:
                file.unlink()
            except FileNotFoundError:
                return
            _fsync_dir(file.parent)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new bytes, never a mix.

    Temporary file in the same directory (``rename`` is only atomic within one file
    system), ``fsync`` it, ``os.replace`` it over the target, then ``fsync`` the directory
    so the rename itself survives a power loss.
    """
    fd, tmp = tempfile.mkstemp(prefix=SnapshotDir._TMP_PREFIX, suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _wrapped_os(operation: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise CacheError(f"snapshot directory {operation} failed: {exc.strerror or exc}") from exc
