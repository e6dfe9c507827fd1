"""Rollout state: the runtime state of each rollout or flag of a pair, and the rollouts of
the versions in service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import Clock, upsert

RolloutHeads = dict[tuple[str, str], tuple[int, str | None, tuple[dict[str, Any], ...]]]


def rollout_heads(s: Session) -> RolloutHeads:
    """(number, commit, rollouts) of every pair whose version in service has rollouts."""
    sub = (
        select(m.Version.app, m.Version.env, func.max(m.Version.number).label("number"))
        .group_by(m.Version.app, m.Version.env)
        .subquery()
    )
    q = (
        select(
            m.Version.app, m.Version.env, m.Version.number, m.Version.commit_sha, m.Version.rollouts
        )
        .join(
            sub,
            (m.Version.app == sub.c.app)
            & (m.Version.env == sub.c.env)
            & (m.Version.number == sub.c.number),
        )
        .where(m.Version.rollouts.is_not(None))
    )
    return {
        (app, env): (number, sha, tuple(rollouts))
        for app, env, number, sha, rollouts in s.execute(q)
        if rollouts
    }


def rollout_states(
    s: Session, app: str | None, env: str | None
) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    # Upserts bypass the session's identity map: read rows afresh.
    q = select(m.RolloutState).execution_options(populate_existing=True)
    if app is not None:
        q = q.where(m.RolloutState.app == app)
    if env is not None:
        q = q.where(m.RolloutState.env == env)
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in s.scalars(q.order_by(m.RolloutState.app, m.RolloutState.env, m.RolloutState.key)):
        out.setdefault((row.app, row.env), {})[row.key] = dict(row.state or {})
    return out


def set_rollout_state(
    s: Session, app: str, env: str, name: str, state: Mapping[str, Any], *, clock: Clock
) -> None:
    row = {"app": app, "env": env, "key": name, "state": dict(state), "updated_at": clock()}
    upsert(s, m.RolloutState, [row], keys=["app", "env", "key"])
