"""The configctl error tree.

Exceptions stop a run; findings (problems in a config tree) are values, not exceptions,
and travel in a :class:`configctl.core.model.Report`. Exit codes are decided in one place,
``configctl.cli.exit_codes``, from the class of the error::

    ConfigctlError
    ├── UserError                 the input is wrong; retrying the same input cannot help
    │   ├── UsageError            a bad argument, an unknown app or environment, a missing path
    │   ├── ValidationFailed      the tree is invalid; carries the full report
    │   └── RevisionNotFound      a git revision that does not exist
    ├── BackendError              something outside us is unreachable or failed; retry may help
    │   ├── GitError
    │   ├── StoreError
    │   │   └── FencingError      a deposed leader tried to write
    │   ├── CacheError
    │   ├── BrokerError
    │   └── ForgeError            the GitHub or GitLab API refused or is unreachable
    └── ConflictError             a concurrent writer won (stale base, lost race)
        └── RevertConflict        a revert does not apply to what later commits made (exit 1)

Adapters wrap their library's exceptions into these types and chain the original, so no
psycopg, pika, git or redis exception type travels above ``configctl.adapters``. Messages
never contain configuration values (they may be secrets), only names, paths and locations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from configctl.core.model import Report


class ConfigctlError(Exception):
    """Base of every error configctl raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UserError(ConfigctlError):
    """The input is wrong: a bad tree, argument or revision."""


class UsageError(UserError):
    """A command was called with arguments that cannot work (exit code 2)."""


class ValidationFailed(UserError):
    """A service refused to act on an invalid tree; ``report`` lists every finding."""

    def __init__(self, message: str, *, report: Report, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class RevisionNotFound(UserError):
    """A git revision that does not resolve to a commit."""


class BackendError(ConfigctlError):
    """A backend (git, database, cache, broker) is unreachable or failed."""


class GitError(BackendError):
    """git failed or timed out."""


class StoreError(BackendError):
    """The version store (PostgreSQL or SQLite) failed or is unreachable."""


class FencingError(StoreError):
    """A write carried a stale leader epoch: another replica has taken over."""


class StoreMovedOn(StoreError):
    """A writer that answered its reads from what it remembered of the store found, under
    the writer lock, that another writer had written since: nothing was written. Run the
    unit of work again: the store has forgotten, and the next one reads under the lock."""


class CacheError(BackendError):
    """Redis (or the snapshot directory) failed or is unreachable."""


class BrokerError(BackendError):
    """RabbitMQ failed or is unreachable."""


class ForgeError(BackendError):
    """The GitHub or GitLab REST API refused a request or could not be reached."""


class ConflictError(ConfigctlError):
    """A concurrent writer changed what this operation was based on."""


class RevertConflict(ConflictError):
    """A revert conflicts with later changes; ``files`` are the conflicting paths.

    The input (the commit to undo) meets a history that moved on: a finding for the
    user (exit 1), never a backend failure (exit 3).
    """

    def __init__(self, message: str, *, files: tuple[str, ...], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.files = files
