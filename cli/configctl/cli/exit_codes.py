"""Exit codes, decided here and nowhere else.

====  ======================================================================
0     success, nothing to report
1     findings: an invalid tree, a layer that cannot be read, `diff --exit-code` saw changes,
      a key not set
2     usage: bad arguments, an unknown app or environment, a missing path or one that is not a
      directory or not permitted, a folder that is not a configctl repository, a bad --db URL
3     a backend (git, database, Redis, RabbitMQ) is unreachable or failed
70    internal error (a bug): traceback only with --debug
130   interrupted (Ctrl-C)
====  ======================================================================
"""

from __future__ import annotations

import enum

from configctl import errors


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    USAGE = 2
    BACKEND = 3
    INTERNAL = 70
    INTERRUPTED = 130


def for_error(exc: errors.ConfigctlError) -> ExitCode:
    if isinstance(exc, errors.UsageError | errors.RevisionNotFound):
        return ExitCode.USAGE
    if isinstance(exc, errors.UserError | errors.ConflictError):
        return ExitCode.FINDINGS
    if isinstance(exc, errors.BackendError):
        return ExitCode.BACKEND
    return ExitCode.INTERNAL
