"""Leadership as an exclusive ``flock`` on a file: one writer per machine (SQLite mode)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path

from configctl.adapters.leader import AcquireEpoch, default_identity
from configctl.errors import StoreError

__all__ = ["FileLeader"]

log = logging.getLogger(__name__)


class FileLeader:
    """Leadership = an exclusive ``flock`` on a file: one writer per machine (SQLite mode).

    The lock belongs to the open file description, so it is released when the process
    dies, however it dies. :meth:`check` also makes sure the lock file is still the one
    we locked: if someone deleted or replaced it, a rival could lock the new file while
    we hold the old one, so that counts as lost. ``flock`` is unreliable on network file
    systems; keep the lock file on a local disk next to the SQLite database.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, acquire_epoch: AcquireEpoch | None = None
    ) -> None:
        self.path = Path(path)
        self._acquire_epoch = acquire_epoch
        self._fd: int | None = None
        self._epoch: int | None = None
        self._mutex = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._fd is not None

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def try_acquire(self) -> bool:
        with self._mutex:
            if self._fd is not None:
                return self._check_locked()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(
                    f"cannot open leader lock file {self.path}: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
            try:
                # who holds it, for an operator looking at the file; not used for locking
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{default_identity()}\n".encode(), 0)
                epoch = self._acquire_epoch() if self._acquire_epoch is not None else None
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self._epoch = epoch
            log.info("leader lock file %s acquired (epoch %s)", self.path, epoch)
            return True

    def check(self) -> bool:
        with self._mutex:
            return self._check_locked()

    def _check_locked(self) -> bool:
        if self._fd is None:
            return False
        try:
            ours = os.fstat(self._fd)
            now = os.stat(self.path)
            same = (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino)
        except OSError:
            same = False
        if not same:
            log.warning("leader lock file %s was removed or replaced; leadership lost", self.path)
            self._close()
        return same

    def release(self) -> None:
        with self._mutex:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        self._epoch = None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
