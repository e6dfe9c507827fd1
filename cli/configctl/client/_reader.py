"""The read API both clients share: ``get``, the typed getters, flags, explain, state.

Reads never do I/O and take no lock: each reads the one immutable view the client's core
serves (see ``_view``) and evaluates rollouts with the core evaluator's compiled pickers.
``get`` of a key without a rollout is one dict lookup in ``view.plain``; anything else
goes through ``ClientCore.value`` (a rollout's picker reads the clock only when a rule needs it).
``ConfigClient`` and ``AsyncConfigClient`` add loading and refreshing around it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from configctl.client._core import ChangeEvent, ClientCore, ClientState, Details, Explanation
from configctl.client._hub import Hub, hub
from configctl.client._schema import schema_check
from configctl.client.settings import ClientSettings

__all__ = ["Context", "Reader"]

log = logging.getLogger("configctl.client")

L = TypeVar("L", bound=Callable[..., Any])
Context = Mapping[str, object] | None

_MISSING: Any = object()


class Reader:
    """The read side of a client over a :class:`ClientCore` (set by the subclass)."""

    app: str
    env: str
    settings: ClientSettings
    _hub: Hub
    _core: ClientCore

    def _bind(
        self,
        app: str,
        env: str,
        settings: ClientSettings,
        *,
        schema: Mapping[str, Any] | str | os.PathLike[str] | None,
        clock: Callable[[], datetime] | None,
    ) -> None:
        """Make the core whose view the reads serve (called once by ``__init__``): the
        schema named in the repository when none is given, the process-wide hub."""
        self.settings = settings
        self._hub = hub()
        repo = Path(settings.repo) if settings.repo else (None if settings.redis else Path.cwd())
        self._core = ClientCore(
            app,
            env,
            settings,
            schema=schema_check(schema, repo=repo, app=app),
            hub=self._hub,
            clock=clock,
            repo=repo,
        )
        self.app, self.env = self._core.app, self._core.env

    def get(self, key: str, default: Any = None, context: Context = None) -> Any:
        """The value of a dotted key (a leaf or a whole section), evaluated for ``context``.

        Served from memory; never raises because a server is down. A key under a rollout
        is evaluated with the shared core evaluator (missing context: the base value); a
        section above one is a copy with the rollout applied.
        """
        view = self._core.view
        value = view.plain.get(key, _MISSING)
        if value is not _MISSING:
            return value
        return self._core.value(view, key, default, context)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in self._core.view.flat or key in self._core.view.rollout_keys
        )

    def get_str(self, key: str, default: str | None = None, context: Context = None) -> str | None:
        """A string value; ``default`` if missing; TypeError if the value is another type."""
        result: str | None = self._core.typed(key, str, default, context, "a string")
        return result

    def get_int(self, key: str, default: int | None = None, context: Context = None) -> int | None:
        """An integer value (a boolean is not one); TypeError on another type."""
        result: int | None = self._core.typed(key, int, default, context, "an integer")
        return result

    def get_float(
        self, key: str, default: float | None = None, context: Context = None
    ) -> float | None:
        """A number as float (integers convert); TypeError on another type."""
        result: float | None = self._core.typed(key, float, default, context, "a number")
        return result

    def get_bool(
        self, key: str, default: bool | None = None, context: Context = None
    ) -> bool | None:
        """A boolean value (no truthiness: "yes" is a string); TypeError on another type."""
        result: bool | None = self._core.typed(key, bool, default, context, "a boolean")
        return result

    def get_list(
        self, key: str, default: list[Any] | None = None, context: Context = None
    ) -> list[Any] | None:
        """A copy of a list value; TypeError on another type."""
        result: list[Any] | None = self._core.typed(key, list, default, context, "a list")
        return result

    def get_dict(
        self, key: str, default: dict[str, Any] | None = None, context: Context = None
    ) -> dict[str, Any] | None:
        """A copy of a mapping (a section); TypeError on another type."""
        result: dict[str, Any] | None = self._core.typed(key, dict, default, context, "a mapping")
        return result

    def get_all(self, context: Context = None) -> dict[str, Any]:
        """Every leaf as ``{dotted key: value}``, rollouts evaluated for ``context``."""
        return self._core.get_all(context)

    def is_enabled(self, flag: str, context: Context = None, *, default: bool = False) -> bool:
        """A feature flag for ``context`` (a boolean key serves as a flag too)."""
        return self._core.is_enabled(flag, context, default)

    def details(self, key: str, context: Context = None) -> Details:
        """The value with the evaluator's reason, rollout, rule, bucket and variant (what
        the OpenFeature provider reports); no provenance, so cheap on every call."""
        return self._core.details(key, context)

    def explain(self, key: str, context: Context = None) -> Explanation:
        """The value, the rollout rule that decided it, and the file and line that set it."""
        return self._core.explain(key, context)

    @property
    def version(self) -> int | None:
        """The version served (None before anything was loaded)."""
        return self._core.view.version or None

    @property
    def state(self) -> ClientState:
        """Fresh or stale (since when), the version served, a refusal if any."""
        return self._core.state()

    def on_change(self, listener: L) -> L:
        """Call ``listener(event)`` after each adopted version (usable as a decorator); a
        listener taking three arguments gets ``(changed_keys, old_version, new_version)``.

        Listeners run in registration order (on the refresh thread of a ``ConfigClient``,
        on the event loop of an ``AsyncConfigClient``, where a coroutine listener is
        awaited); one that raises is logged and does not stop the others.
        """
        self._core.add_listener(listener)
        return listener

    def remove_listener(self, listener: Callable[[ChangeEvent], Any]) -> None:
        """Stop calling ``listener``."""
        self._core.remove_listener(listener)

    def on_state_change(self, listener: Callable[[ClientState], object]) -> Callable[[ClientState], object]:
        """Call ``listener(state)`` when the client turns stale (a refresh failed or the source
        sent something unusable) and when it is fresh again; usable as a decorator."""
        self._core.add_state_listener(listener)
        return listener

    def remove_state_listener(self, listener: Callable[[ClientState], object]) -> None:
        """Stop calling a state listener."""
        self._core.remove_state_listener(listener)
