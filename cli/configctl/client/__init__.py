"""The configctl client SDK: an application's configuration, served from memory.

```python
from configctl.client import ConfigClient

client = ConfigClient("checkout", "production")   # settings from CONFIGCTL_* variables
timeout = client.get("database.timeout", default=5)
price = client.get("pricing.variant", context={"user_id": "u1"})   # rollouts evaluated
if client.is_enabled("new-checkout", {"user_id": "u1"}): ...
```

``ConfigClient`` (threads) and ``AsyncConfigClient`` (asyncio, on ``redis.asyncio``)
share one process-wide RabbitMQ connection and refresh thread. Redis and RabbitMQ need
the ``client`` extra (``pip install 'configctl[client]'``); the embedded mode (a
snapshot folder written by ``configctl apply``) needs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from configctl.client._core import ChangeEvent, ClientState, Details, Explanation, Provenance
from configctl.client._sync import ConfigClient
from configctl.client.settings import ClientSettings

if TYPE_CHECKING:
    from configctl.client._async import AsyncConfigClient

__all__ = [
    "AsyncConfigClient",
    "ChangeEvent",
    "ClientSettings",
    "ClientState",
    "ConfigClient",
    "Details",
    "Explanation",
    "Provenance",
]


def __getattr__(name: str) -> Any:
    # asyncio and redis.asyncio load only for programs that use the asyncio client
    if name == "AsyncConfigClient":
        from configctl.client._async import AsyncConfigClient

        return AsyncConfigClient
    raise AttributeError(name)
