"""configctl as an OpenFeature provider (``pip install 'configctl[openfeature]'``).

```python
from openfeature import api
from configctl.openfeature import ConfigctlProvider

api.set_provider_and_wait(ConfigctlProvider("checkout", "production"))
flags = api.get_client()
flags.get_boolean_value("new-checkout", False, EvaluationContext("u1", {"country": "DE"}))
```

Every resolution reads the same in-memory snapshot and runs the same core evaluator as
:class:`configctl.client.ConfigClient` (the provider wraps one): a boolean flag, a key
under a rollout or a plain key, by its dotted name. Mapping to OpenFeature:

- the evaluation context's ``targeting_key`` becomes the ``user_id`` attribute (the
  default stickiness) unless the attributes already carry one, and ``targetingKey``;
- reasons: a plain key is ``STATIC``; a rollout gives the evaluator's reason
  (``TARGETING_MATCH`` for users, rules and canary, ``SPLIT`` for a percentage,
  ``DEFAULT`` when the unit is not selected or context is missing, ``DISABLED``);
- a name that is neither a flag nor a key: ``FLAG_NOT_FOUND``; a value of another type
  than asked (an integer asked as a string, a flag asked as a number):
  ``TYPE_MISMATCH``; both return the caller's default with reason ``ERROR``;
- variant: the evaluator's (``on``/``off`` for a rollout); flag metadata: ``version``
  (the configuration version served) and ``rollout`` (its name, when one decided);
- a ``PROVIDER_CONFIGURATION_CHANGED`` event, with the changed keys, each time the
  client adopts a new version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import FlagNotFoundError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from configctl.client import ChangeEvent, ClientState, ConfigClient, Details

__all__ = ["ConfigctlProvider"]

log = logging.getLogger("configctl.openfeature")

T = TypeVar("T")

_REASONS = {
    "static": Reason.STATIC,
    "targeting_match": Reason.TARGETING_MATCH,
    "split": Reason.SPLIT,
    "default": Reason.DEFAULT,
    "disabled": Reason.DISABLED,
    "error": Reason.ERROR,
}


class ConfigctlProvider(AbstractProvider):
    """An OpenFeature provider serving one (app, env) of configctl.

    Pass a running :class:`ConfigClient` (the provider leaves it open on shutdown), or the
    app and env and any ``ConfigClient`` keyword arguments (the provider creates the
    client on ``initialize`` and closes it on ``shutdown``).
    """

    def __init__(self, app: str | None = None, env: str | None = None, *, client: ConfigClient | None = None, **client_args: Any) -> None:
        if client is None and (app is None or env is None):
            raise TypeError("ConfigctlProvider needs app and env, or client=")
        self._client = client
        self._owned = client is None
        self._app, self._env = (client.app, client.env) if client is not None else (app, env)
        self._client_args = client_args
        self._listener_added = False

    @property
    def client(self) -> ConfigClient:
        if self._client is None:
            self._start()
        assert self._client is not None  # noqa: S101 - _start sets it
        return self._client

    def get_metadata(self) -> Metadata:
        return Metadata(name=f"configctl ({self._app}/{self._env})")

    def initialize(self, evaluation_context: EvaluationContext) -> None:  # noqa: ARG002 - one client serves every context
        self._start()

    def _start(self) -> None:
        if self._client is None:
            self._client = ConfigClient(str(self._app), str(self._env), **self._client_args)
        if not self._listener_added:
            self._client.on_change(self._changed)
            self._client.on_state_change(self._state)
            self._listener_added = True

    def shutdown(self) -> None:
        client = self._client
        if client is None:
            return
        client.remove_listener(self._changed)
        client.remove_state_listener(self._state)
        self._listener_added = False
        if self._owned:
            client.close()
            self._client = None

    def _changed(self, event: ChangeEvent) -> None:
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=list(event.changed_keys),
                message=f"configctl {event.app}/{event.env} version {event.new_version}",
                metadata={"version": event.new_version},
            )
        )

    def _state(self, state: ClientState) -> None:
        # STALE while the client serves a version it could not confirm (a source down or
        # unusable); READY again once a refresh succeeds. Evaluation goes on either way.
        version: dict[str, bool | int | float | str] = {"version": state.version} if state.version is not None else {}
        if state.fresh:
            self.emit_provider_ready(ProviderEventDetails(message=f"configctl {self._app}/{self._env} is fresh again", metadata=version))
        else:
            self.emit_provider_stale(
                ProviderEventDetails(message=f"configctl {self._app}/{self._env} is stale: {state.error}", metadata=version)
            )

    # -- resolution -------------------------------------------------------------------------------

    def resolve_boolean_details(self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean", lambda v: v if isinstance(v, bool) else _MISMATCH)

    def resolve_string_details(self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string", lambda v: v if isinstance(v, str) else _MISMATCH)

    def resolve_integer_details(self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[int]:
        return self._resolve(
            flag_key, default_value, evaluation_context, "integer",
            lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _MISMATCH,
        )  # fmt: skip

    def resolve_float_details(self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[float]:
        return self._resolve(
            flag_key, default_value, evaluation_context, "float",
            lambda v: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else _MISMATCH,
        )  # fmt: skip

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Mapping[str, Any] | Sequence[Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Any]:
        return self._resolve(
            flag_key, default_value, evaluation_context, "object",
            lambda v: v if isinstance(v, dict | list) else _MISMATCH,
        )  # fmt: skip

    def _resolve(self, key: str, default: T, ctx: EvaluationContext | None, kind: str, convert: Any) -> FlagResolutionDetails[T]:  # noqa: ARG002 - binds T; the SDK itself returns the default on an error
        details: Details = self.client.details(key, _context(ctx))
        if details.kind == "missing":
            raise FlagNotFoundError(f"no flag or key `{key}` in configctl {self._app}/{self._env}")
        value = convert(details.value)
        if value is _MISMATCH:
            raise TypeMismatchError(f"`{key}` is {_type_name(details.value)}, not {kind}")
        metadata: dict[str, bool | int | float | str] = {}
        if details.version is not None:
            metadata["version"] = details.version
        if details.rollout is not None:
            metadata["rollout"] = details.rollout
        if details.rule is not None:
            metadata["rule"] = details.rule
        if details.bucket is not None:
            metadata["bucket"] = details.bucket
        return FlagResolutionDetails(
            value=value,
            reason=_REASONS.get(details.reason, Reason.UNKNOWN),
            variant=details.variant,
            flag_metadata=metadata,
        )


_MISMATCH: Any = object()


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _context(ctx: EvaluationContext | None) -> dict[str, object]:
    """OpenFeature's context as configctl's: the targeting key is ``user_id`` by default."""
    if ctx is None:
        return {}
    out: dict[str, object] = dict(ctx.attributes)
    if ctx.targeting_key is not None:
        out.setdefault("user_id", ctx.targeting_key)
        out.setdefault("targetingKey", ctx.targeting_key)
    return out
