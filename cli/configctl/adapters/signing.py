"""Where git looks for the keys when it checks a signature: never the user's own keyring.

Any git call that prints ``%G?`` (``git log`` in ``status``, ``apply``, the reconciler) or
runs ``verify-commit`` starts ``gpg`` or ``ssh-keygen``. Left alone, gpg uses
``~/.gnupg`` -- and creates it (``pubring.kbx``, ``trustdb.gpg``) on a machine that never
had one -- and its verdict then depends on whatever keys the user happens to hold; git's
``gpg.ssh.allowedSignersFile`` likewise comes from the user's git configuration. So every
such git call gets, from :func:`verification`:

- ``GNUPGHOME``: configctl's GnuPG home when one is configured (``--gnupg-home``,
  ``CONFIGCTL_GNUPG_HOME``), else a private, empty, per-process temporary home (removed at
  exit): a GPG signature is then reported as "cannot be checked" (``E``), which is true;
- ``gpg.ssh.allowedSignersFile``: configctl's file (``--allowed-signers``,
  ``CONFIGCTL_ALLOWED_SIGNERS``), else ``/dev/null`` (an SSH signature is then ``U``);
- with a configctl GnuPG home, ``gpg.program`` (and ``gpg.openpgp.program``, which wins
  over it in git) set to a two-line wrapper that runs gpg with ``--trust-model always``.

Why ``--trust-model always``: configctl's GnuPG home *is* the allow-list -- it holds the
keys that may sign and nothing else (``--help`` says so). With gpg's default web-of-trust
model a key imported there is only "valid" after a separate ownertrust step
(``--import-ownertrust`` or ``--edit-key trust``); without it git reports ``U`` and every
commit is rejected, a step operators forget and that adds nothing when the keyring holds
only allowed keys. The alternative, writing ownertrust into the operator's trustdb at
start, would modify a home that is often mounted read-only (a Kubernetes Secret) and
would miss keys imported later. An expired, revoked or bad signature is still reported as
such (``X``/``Y``/``R``/``B``): the trust model only decides whether a present key counts.
"""

from __future__ import annotations

import atexit
import functools
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Verification", "empty_gnupg_home", "from_environment", "verification"]

GNUPG_HOME_VAR = "CONFIGCTL_GNUPG_HOME"
ALLOWED_SIGNERS_VAR = "CONFIGCTL_ALLOWED_SIGNERS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """``git -c`` settings and environment variables for a git call that may check signatures."""

    config: Mapping[str, str]
    env: Mapping[str, str]

    def config_args(self) -> list[str]:
        """The settings as ``-c key=value`` arguments (placed before the git subcommand)."""
        args: list[str] = []
        for key, value in self.config.items():
            args += ["-c", f"{key}={value}"]
        return args


@functools.cache
def _private_dir() -> Path:
    """A 0700 temporary folder of this process, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="configctl-gpg-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def empty_gnupg_home() -> str:
    """A private GnuPG home with no keys: gpg can run, and knows no signer."""
    home = _private_dir() / "empty-home"
    home.mkdir(mode=0o700, exist_ok=True)
    return str(home)


@functools.cache
def _trusting_gpg() -> str:
    """A wrapper that runs gpg with ``--trust-model always`` (see the module docstring)."""
    gpg = shutil.which("gpg") or "gpg"
    script = _private_dir() / "gpg-trust-always"
    script.write_text(
        f'#!/bin/sh\nexec {shlex.quote(gpg)} --trust-model always "$@"\n', encoding="utf-8"
    )
    script.chmod(stat.S_IRWXU)
    return str(script)


def verification(
    *,
    gnupg_home: str | os.PathLike[str] | None = None,
    allowed_signers: str | os.PathLike[str] | None = None,
) -> Verification:
    """The signature-checking environment for configctl's keys (or for no keys at all)."""
    signers = os.path.abspath(allowed_signers) if allowed_signers else os.devnull
    config = {"gpg.ssh.allowedSignersFile": signers}
    if gnupg_home:
        wrapper = _trusting_gpg()
        config |= {"gpg.program": wrapper, "gpg.openpgp.program": wrapper}
        env = {"GNUPGHOME": os.path.abspath(gnupg_home)}
    else:
        env = {"GNUPGHOME": empty_gnupg_home()}
    return Verification(config=config, env=env)


def from_environment(environ: Mapping[str, str] | None = None) -> Verification:
    """:func:`verification` from ``CONFIGCTL_GNUPG_HOME`` / ``CONFIGCTL_ALLOWED_SIGNERS``:
    what the CLI uses, so ``status`` reports signatures as the reconciler checks them."""
    environ = os.environ if environ is None else environ
    home = environ.get(GNUPG_HOME_VAR) or None
    signers = environ.get(ALLOWED_SIGNERS_VAR) or None
    # A path that is not there is ignored here (the reconciler refuses to start with it):
    # gpg would create a missing home, and a read-only command must not.
    return verification(
        gnupg_home=home if home and Path(home).is_dir() else None,
        allowed_signers=signers if signers and Path(signers).is_file() else None,
    )
