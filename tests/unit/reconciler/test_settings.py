"""Reconciler settings: flag > environment > default, written once."""

from __future__ import annotations

import pytest

from configctl.errors import UsageError
from configctl_reconciler import settings


def test_defaults_and_env() -> None:
    s = settings.from_env({
        "CONFIGCTL_REPO_URL": "file:///r.git", "CONFIGCTL_INTERVAL": "5", "CONFIGCTL_REQUIRE_SIGNED": "true",
        "CONFIGCTL_ALLOWED_SIGNERS": "/etc/configctl/allowed_signers",
    })  # fmt: skip
    assert s.repo == "file:///r.git"
    assert s.interval == 5.0
    assert s.require_signed is True
    assert s.branch == "main"


def test_flags_win_over_env() -> None:
    s = settings.from_env({"CONFIGCTL_REPO_URL": "a", "CONFIGCTL_BRANCH": "dev"}, repo="b", branch=None)
    assert (s.repo, s.branch) == ("b", "dev")


def test_repo_is_required() -> None:
    with pytest.raises(UsageError):
        settings.from_env({})


def test_secret_not_in_repr() -> None:
    s = settings.from_env({"CONFIGCTL_REPO_URL": "a", "CONFIGCTL_WEBHOOK_SECRET": "topsecret"})
    assert "topsecret" not in repr(s)


def test_require_signed_needs_the_allowed_keys() -> None:
    """Without an allow-list every commit would be rejected: refuse to start instead."""
    with pytest.raises(UsageError, match="allowed keys"):
        settings.from_env({"CONFIGCTL_REPO_URL": "a", "CONFIGCTL_REQUIRE_SIGNED": "1"})
    for extra in ({"CONFIGCTL_GNUPG_HOME": "/keys"}, {"CONFIGCTL_ALLOWED_FINGERPRINTS": "ABCD, EF01"}):
        s = settings.from_env({"CONFIGCTL_REPO_URL": "a", "CONFIGCTL_REQUIRE_SIGNED": "1", **extra})
        assert s.require_signed


@pytest.mark.parametrize(("var", "value"), [("CONFIGCTL_INTERVAL", "0"), ("CONFIGCTL_GIT_TIMEOUT", "-1"), ("CONFIGCTL_LOG_FORMAT", "xml")])
def test_bad_values_are_usage_errors(var: str, value: str) -> None:
    with pytest.raises(UsageError):
        settings.from_env({"CONFIGCTL_REPO_URL": "a", var: value})


def test_repo_reads_the_name_every_command_uses_and_the_old_one_with_a_warning() -> None:
    assert settings.from_env({"CONFIGCTL_REPO": "new"}).repo == "new"
    assert settings.deprecations({"CONFIGCTL_REPO": "new"}) == []
    old = {"CONFIGCTL_REPO_URL": "old"}
    assert settings.from_env(old).repo == "old"
    assert settings.deprecations(old) == [
        "CONFIGCTL_REPO_URL is deprecated; use CONFIGCTL_REPO (the name every configctl command reads)"
    ]
    assert settings.from_env({"CONFIGCTL_REPO_URL": "old", "CONFIGCTL_REPO": "new"}).repo == "new"


def test_snapshot_api_is_off_unless_asked_for() -> None:
    assert settings.from_env({"CONFIGCTL_REPO": "a"}).serve_snapshots is False
    assert settings.from_env({"CONFIGCTL_REPO": "a", "CONFIGCTL_SERVE_SNAPSHOTS": "true"}).serve_snapshots is True


def test_the_hint_names_every_variable_of_the_signature_options() -> None:
    with pytest.raises(UsageError) as caught:
        settings.from_env({"CONFIGCTL_REPO": "a", "CONFIGCTL_REQUIRE_SIGNED": "1"})
    hint = caught.value.hint or ""
    for name in ("CONFIGCTL_ALLOWED_SIGNERS", "CONFIGCTL_GNUPG_HOME", "CONFIGCTL_ALLOWED_FINGERPRINTS"):
        assert name in hint


def test_one_set_of_variable_names_for_the_cli_the_sdk_and_the_reconciler() -> None:
    """A setting that several entry points read has one CONFIGCTL_* name, and every
    reconciler setting is also the `configctl reconcile` option's environment variable."""
    from typer.main import get_command

    from configctl.adapters import signing
    from configctl.cli.app import app
    from configctl.client import settings as client_settings

    shared = {name: var for name, (var, _) in client_settings._ENV.items() if name in settings.ENV}
    assert set(shared) >= {"repo", "redis", "redis_prefix", "amqp", "exchange", "snapshot_dir"}
    assert all(settings.ENV[name][0] == var for name, var in shared.items()), shared
    assert settings.ENV["gnupg_home"][0] == signing.GNUPG_HOME_VAR
    assert settings.ENV["allowed_signers"][0] == signing.ALLOWED_SIGNERS_VAR
    command = get_command(app).commands["reconcile"]  # type: ignore[attr-defined]  # a click Group
    options = {param.name: param.envvar for param in command.params}
    assert {name: var for name, (var, _) in settings.ENV.items()} == {name: options[name] for name in settings.ENV}
