"""The project's own gates, run with the suite so CI enforces them: ruff, mypy --strict and
the import-linter contracts (the dependency rule of STYLE.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.tools import python_tool

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["ruff", "check", "."], id="ruff"),
        pytest.param(["mypy"], id="mypy"),
        pytest.param(["lint-imports"], id="import-linter"),
    ],
)
def test_gate(command: list[str]) -> None:
    result = subprocess.run([python_tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
