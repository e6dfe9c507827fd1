"""Rollout definitions several tests share (their JSON form)."""

from __future__ import annotations

from typing import Any

__all__ = ["RAMP"]

RAMP: dict[str, Any] = {
    "name": "ramp",
    "key": "limit",
    "value": 100,
    "schedule": {
        "steps": [
            {"at": "2026-12-01T09:00:00Z", "percentage": 1000},
            {"at": "2026-12-01T12:00:00Z", "percentage": 5000},
        ]
    },
}
"""A 10 % then 50 % schedule on ``limit`` (1 December 2026, 09:00 and 12:00 UTC)."""
