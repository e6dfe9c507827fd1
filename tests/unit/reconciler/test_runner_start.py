"""Start-up helpers of the runner: what the start-up line shows, workdir and key checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from configctl.errors import UsageError
from configctl_reconciler import settings
from configctl_reconciler.runner import check_keys, check_workdir, describe, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/configctl", "postgresql+psycopg://app:***@db:5432/configctl"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("amqp://guest:guest@mq:5672/%2F", "amqp://guest:***@mq:5672/%2F"),
        ("postgresql://configctl@db/configctl", "postgresql://configctl@db/configctl"),
        ("sqlite:////var/lib/configctl.db", "sqlite:////var/lib/configctl.db"),
    ],
)
def test_passwords_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_describe_masks_every_url(tmp_path: Path) -> None:
    s = settings.from_env(
        {
            "CONFIGCTL_REPO": "https://bot:tok3n@git.example.com/config.git",
            "CONFIGCTL_DB": "postgresql://app:pw1@db/configctl",
            "CONFIGCTL_REDIS": "redis://:pw2@redis/0",
            "CONFIGCTL_AMQP": "amqp://u:pw3@mq/%2F",
        }
    )
    facts = describe(s, tmp_path)
    text = repr(facts)
    for secret in ("tok3n", "pw1", "pw2", "pw3"):
        assert secret not in text
    assert set(facts) >= {"repository", "branch", "path", "store", "cache", "broker"}


def test_workdir_must_be_a_writable_directory(tmp_path: Path) -> None:
    check_workdir(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir()
    assert list((tmp_path / "new" / "deeper").iterdir()) == []  # the probe is gone
    a_file = tmp_path / "file"
    a_file.write_text("")
    for bad in (a_file, a_file / "below"):
        with pytest.raises(UsageError, match=str(bad)):
            check_workdir(bad)


def test_missing_key_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--allowed-signers"):
        check_keys(settings.from_env({"CONFIGCTL_REPO": "a", "CONFIGCTL_ALLOWED_SIGNERS": str(tmp_path / "nope")}))
    with pytest.raises(UsageError, match="--gnupg-home"):
        check_keys(settings.from_env({"CONFIGCTL_REPO": "a", "CONFIGCTL_GNUPG_HOME": str(tmp_path / "nope")}))
    (tmp_path / "signers").write_text("")
    check_keys(settings.from_env({"CONFIGCTL_REPO": "a", "CONFIGCTL_ALLOWED_SIGNERS": str(tmp_path / "signers"), "CONFIGCTL_GNUPG_HOME": str(tmp_path)}))


def test_lease_without_the_kubernetes_client_exits_2_naming_the_extra(tmp_path: Path) -> None:
    """``--lease`` needs the ``lease`` extra; without it the command stops at start (exit 2)
    and says what to install, before any clone or store is touched."""
    import subprocess
    import sys

    hide = (
        "import sys; sys.modules['kubernetes'] = None; "  # as if the extra were not installed
        "sys.argv = ['configctl', *sys.argv[1:]]; "
        "from configctl.cli.main import main; main()"
    )
    workdir = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-c", hide, "reconcile", "--repo", str(tmp_path / "repo"), "--workdir", str(workdir),
         "--lease", "configctl", "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'configctl[lease]'" in done.stderr
    assert not (workdir / "clone").exists()
