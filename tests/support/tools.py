"""System tools a test needs (gpg, ssh-keygen, node, ...): a missing one fails the test.

Skipping would hide a whole area on a machine without the tool; ``.ci/run`` installs
them, and a developer sees at once what to install.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["gpg_installed", "python_tool", "require_tool", "ssh_keygen_installed"]


def require_tool(name: str, *, install: str) -> str:
    """The path of ``name`` on PATH; fails the test, naming ``install``, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {install} (.ci/run installs it)")
    return path


def python_tool(name: str) -> str:
    """A console script of the dev group: the one next to this interpreter, else on PATH;
    fails the test when it is missing."""
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: install the dev group (pip install -e . --group dev)")
    return path


@pytest.fixture
def gpg_installed() -> str:
    """gpg, for signed-commit tests (``gnupg``)."""
    return require_tool("gpg", install="apt-get install gnupg")


@pytest.fixture
def ssh_keygen_installed() -> str:
    """ssh-keygen, for SSH-signed commit tests (``openssh-client``)."""
    return require_tool("ssh-keygen", install="apt-get install openssh-client")
