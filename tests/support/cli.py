"""`configctl` for the tests: a one-shot subprocess runner, ``run_in_process`` (the console
script's ``main()`` in this process, milliseconds instead of a second), a ``Cli`` bound to
one repository and one store (``make_cli``; in-process unless ``in_subprocess``), plus the
fixtures built on them.

Commands run with the environment of ``gitrepo.git_env`` (fixed identity, no user git
configuration) and ``CONFIGCTL_ACTOR`` set, so audit rows and revert commits are known.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.gitrepo import GitRepo, git_env
from tests.support.sql import Backend

__all__ = [
    "ACTOR",
    "Cli",
    "cli",
    "configctl",
    "configctl_argv",
    "example",
    "make_cli",
    "run_in_process",
    "show",
    "written",
]

ACTOR = "test-operator"


def configctl_argv() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m configctl``."""
    script = Path(sys.executable).parent / "configctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "configctl"]


def configctl(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `configctl ARGS` once (no colour, no --debug); a traceback fails the test."""
    result = subprocess.run(
        [*configctl_argv(), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "CONFIGCTL_DEBUG": "", **(env or {})},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_in_process(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`configctl ARGS` as the console script runs it, in this process.

    The process-wide state a command reads or leaves behind is set up as a new process
    would see it and put back afterwards: ``sys.argv``, the whole environment (``env``
    replaces it, as ``subprocess.run(env=...)`` does), stdout and stderr, and what reads
    the environment once: the cached Rich consoles (NO_COLOR, FORCE_COLOR, the width) and
    the terminal settings Typer's error panels take at import (GITHUB_ACTIONS, FORCE_COLOR,
    TERMINAL_WIDTH), read again under ``env`` and again after it.
    """
    from configctl.cli import context
    from configctl.cli.main import main

    def environment(values: Mapping[str, str]) -> None:
        os.environ.clear()
        os.environ.update(values)
        context.stdout.cache_clear()
        context.stderr.cache_clear()
        if "typer.rich_utils" in sys.modules:
            importlib.reload(sys.modules["typer.rich_utils"])

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_env = sys.argv, dict(os.environ)
    code: int = 0
    sys.argv = ["configctl", *args]
    environment(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                # what the interpreter does with sys.exit()'s argument
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    err.write(f"{exc.code}\n")
                    code = 1
    finally:
        sys.argv = saved_argv
        environment(saved_env)
    return subprocess.CompletedProcess(["configctl", *args], code, out.getvalue(), err.getvalue())


@dataclass
class Cli:
    """`configctl` against one repository and one store, in this process or in a subprocess."""

    repo: GitRepo
    db: str
    env: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    """Everything every command printed, for the secret checks."""
    in_subprocess: bool = False
    """Run each command as its own process (the installed console script)."""

    def run(
        self, *args: str, rc: int | None = 0, db: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [*args, "--repo", str(self.repo.path)]
        if db:
            argv += ["--db", self.db]
        if self.in_subprocess:
            done = subprocess.run(
                [*configctl_argv(), *argv],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        else:
            done = run_in_process(argv, self.env)
        self.outputs.append(done.stdout + done.stderr)
        if rc is not None:
            assert done.returncode == rc, (
                f"`configctl {' '.join(args)}` exited {done.returncode}, expected {rc}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def json(self, *args: str, rc: int | None = 0, db: bool = True) -> Any:
        fmt = ["--format", "json"] if args[0] == "diff" else ["--output", "json"]
        return json.loads(self.run(*args, *fmt, rc=rc, db=db).stdout)

    def apply(self, *args: str, rc: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = self.json("apply", *args, rc=rc)
        return out

    def many(self, commands: list[tuple[str, ...]], *, db: bool = True) -> None:
        """Run read-only commands (each must exit 0); their output is kept."""
        for args in commands:
            self.run(*args, db=db)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [*configctl_argv(), *args, "--repo", str(self.repo.path), "--db", self.db]
        return subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def make_cli(repo: GitRepo, backend: Backend) -> Cli:
    env = git_env()
    env["CONFIGCTL_ACTOR"] = ACTOR
    cli = Cli(repo=repo, db=backend.cli_url, env=env)
    if backend.name == "postgresql":
        cli.run("db", "upgrade")  # a shared server is migrated by an operator, never implicitly
    return cli


@pytest.fixture
def example(tmp_path: Path) -> GitRepo:
    """A copy of ``configs-example/`` with one commit."""
    return GitRepo.example(tmp_path / "config")


@pytest.fixture
def cli(example: GitRepo, backend: Backend) -> Cli:
    """`configctl` on ``example`` and a fresh store (``backend`` from ``tests.support.sql``)."""
    return make_cli(example, backend)


def written(result: dict[str, Any]) -> set[tuple[str, str]]:
    """The pairs an `apply -o json` wrote a version of."""
    return {(v["app"], v["env"]) for v in result["versions"] if v["version"] is not None}


def show(cli: Cli, app: str, env: str, version: int | None = None) -> dict[str, Any]:
    """`configctl show APP ENV [--version N] -o json`."""
    args = ["show", app, env] + (["--version", str(version)] if version is not None else [])
    out: dict[str, Any] = cli.json(*args)
    return out
