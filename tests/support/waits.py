"""Waiting on a condition: poll with a deadline, fail with what was awaited.

A test synchronises on an observable event (a row, a flag, a message), never on a sleep
of a guessed length. ``wait_until`` returns as soon as the condition holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> None:
    """Return once ``condition()`` is truthy; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {what or condition!r}"
            )
        time.sleep(interval)
