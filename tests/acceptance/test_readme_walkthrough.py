"""The README's local walk-through, run as written (issue 7, item 9).

The code blocks are read from README.md itself, so the test and the text cannot drift
apart. The quick start's `configctl` commands run against a copy of ``configs-example``
(which leaves ``configs-example/.configctl/`` behind, as it does for a reader); then the
"Run it locally" block copies that folder into a new git repository and commits it, and
the commit must hold configuration only: the store file stays out because the example
carries its own ``.gitignore``. The reconciler line runs with ``--once`` against this
run's own database, Redis prefix, exchange and a free port (the shared servers' defaults
would collide with other runs).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.servers import free_port, libpq_url
from tests.support.cli import configctl_argv
from tests.support.gitrepo import EXAMPLE, git_env

README = Path(__file__).resolve().parents[2] / "README.md"


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def _commands(block: str) -> list[str]:
    """One entry per shell command line, continuations joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _configctl() -> str:
    return " ".join(configctl_argv())


def _sh(command: str, cwd: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_readme_quick_start_then_local_walkthrough_commits_no_store_file(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = _bash_blocks(text)
    checkout = tmp_path / "checkout"
    shutil.copytree(EXAMPLE, checkout / "configs-example")
    _sh("git init -q -b main && git add -A && git commit -qm example", checkout)

    # the quick start's configctl commands, as written (the venv is this one)
    quick = blocks[0]
    steps = [s.strip() for s in quick.split("&&") if s.strip().startswith(".venv/bin/configctl")]
    assert [s.split()[1] for s in steps] == ["validate", "apply", "get"]
    for step in steps:
        done = _sh(step.replace(".venv/bin/configctl", _configctl(), 1), checkout)
        assert done.returncode == 0, (step, done.stderr)
    assert (checkout / "configs-example/.configctl/configctl.db").is_file()
    assert _sh("git status --porcelain", checkout).stdout == ""  # the store is ignored here too

    # "Run it locally": copy and commit, exactly as written but under tmp_path
    local = next(b for b in blocks if "configctl reconcile --repo /tmp/config" in b)
    target = tmp_path / "config"
    workdir = tmp_path / "reconciler"
    lines = [c.replace("/tmp/config", str(target)).replace("/tmp/reconciler", str(workdir)) for c in _commands(local)]
    setup = [c for c in lines if c.startswith("cp ")]
    assert len(setup) == 1
    done = _sh(setup[0], checkout)
    assert done.returncode == 0, done.stderr
    tracked = _sh(f"git -C {shlex.quote(str(target))} ls-files", checkout).stdout.split()
    assert ".gitignore" in tracked
    assert not [p for p in tracked if ".configctl" in p or p.endswith(".db")], tracked
    assert "configctl.yaml" in tracked
    assert _sh(f"git -C {shlex.quote(str(target))} status --porcelain", checkout).stdout == ""


@pytest.mark.integration
def test_readme_local_reconciler_line_applies_the_copy(
    tmp_path: Path, pg_db_url: str, redis_url: str, redis_prefix: str, amqp_url: str, amqp_exchange: str
) -> None:
    text = README.read_text(encoding="utf-8")
    local = next(b for b in _bash_blocks(text) if "configctl reconcile --repo /tmp/config" in b)
    target, workdir = tmp_path / "config", tmp_path / "reconciler"
    lines = [c.replace("/tmp/config", str(target)).replace("/tmp/reconciler", str(workdir)) for c in _commands(local)]
    shutil.copytree(EXAMPLE, tmp_path / "configs-example")
    assert _sh(next(c for c in lines if c.startswith("cp ")), tmp_path).returncode == 0
    argv = shlex.split(next(c for c in lines if c.startswith("configctl reconcile")))
    swaps = {
        "--db": libpq_url(pg_db_url),
        "--redis": redis_url,
        "--amqp": amqp_url,
        "--http-port": str(free_port()),
    }
    for i, arg in enumerate(argv[:-1]):
        if arg in swaps:
            argv[i + 1] = swaps[arg]
    argv = [_configctl(), *argv[1:], "--redis-prefix", redis_prefix, "--exchange", amqp_exchange, "--once"]
    done = subprocess.run(argv, env=git_env(), capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
