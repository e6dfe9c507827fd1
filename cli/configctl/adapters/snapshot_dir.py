"""The embedded mode's snapshot cache: a directory of JSON files, one per (app, env).

`SnapshotDir` keeps the same snapshots as files: `<dir>/<app>.<env>.json` holds exactly
the JSON of `<prefix>:snapshot:<app>:<env>`. Each file is replaced atomically (temporary
file in the same directory, `fsync`, rename, `fsync` of the directory), created with mode
0600, and written under an exclusive lock on `<dir>/.lock`, with the same never-backwards
rule and the same repair.

It satisfies the same ``SnapshotCache`` port as ``RedisCache`` (``core.cache``), so the
reconciler and `configctl apply` write either one the same way, and the SDK reads it with
no server running.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from configctl.core.cache import (
    CachedSnapshot,
    CacheKey,
    decode_snapshot,
    encode_snapshot,
    is_name,
    require_name,
)
from configctl.errors import CacheError

__all__ = ["SnapshotDir", "atomic_write"]

log = logging.getLogger(__name__)


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
                    snapshot.app,
                    snapshot.env,
                    current.version,
                    snapshot.version,
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
            if not (is_name(app) and is_name(env)):
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
