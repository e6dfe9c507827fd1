"""Verify that a commit is signed by an allowed key (``--require-signed``).

Trust is an allow-list, never "git said the signature is fine":

- ``git verify-commit`` exits 0 for a good signature by a key that is merely present in
  the verifier's keyring without being trusted (``%G?`` = ``U``), so any key that ends
  up in the keyring would pass (reliability-notes §0.5, §5.5). We never look at an exit
  code; we ask ``git log`` for the signature status and fingerprints and decide here.
- A commit is accepted only if ``%G?`` is ``G`` (good signature, valid key) **and**, for
  GPG, when an allow-list of fingerprints is given, the signing key (``%GF``) or its
  primary key (``%GP``) is in it. A dedicated ``GNUPGHOME`` holds only the allowed keys:
  every key imported there counts as valid (gpg runs with ``--trust-model always``, see
  :mod:`configctl.adapters.signing`), no ownertrust step needed; the fingerprint list, if
  given, narrows it further.
- For SSH signatures the allowed-signers file *is* the allow-list: git reports ``G`` only
  for a key listed there for the committer's principal, ``U`` otherwise; an unconfigured
  or empty file degrades to ``U`` or an error, which we reject (never "fails open").
  ``allowed_fingerprints`` may list ``SHA256:…`` SSH fingerprints to narrow it further.
- A signature of a kind with nothing configured for it is rejected: an SSH signature
  without our allowed-signers file, a GPG one with neither a dedicated ``GNUPGHOME`` nor
  GPG fingerprints (the process's default keyring must never decide).

The status letters (git-log ``%G?``): G good, B bad, U good but untrusted/unknown
validity, X good but expired signature, Y good but expired key, R good but revoked key,
E cannot be checked (missing key), N no signature.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from configctl.adapters import signing
from configctl.adapters.git.runner import LOCAL_TIMEOUT, run_git
from configctl.errors import GitError, UsageError

__all__ = ["SignatureVerdict", "normalize_fingerprint", "verify_commit"]

_REASONS = {
    "G": "good signature",
    "B": "bad signature (the commit was changed after signing)",
    "U": "signature by a key that is not trusted or not in the allowed signers",
    "X": "good signature that has expired",
    "Y": "good signature made by an expired key",
    "R": "good signature made by a revoked key",
    "E": "signature cannot be checked (the key is not in the verification keyring)",
    "N": "commit is not signed",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureVerdict:
    """The decision about one commit's signature, with what it was based on."""

    ok: bool
    status: str
    """git's ``%G?`` letter (see the module docstring), or ``"?"`` if git could not say."""
    fingerprint: str | None
    """The signing key's fingerprint (``%GF``), if any."""
    signer: str | None
    """The signer as git reports it (``%GS``: a user id, or the SSH principal)."""
    reason: str
    """Why it was accepted or rejected, for the audit log and the status page."""


def normalize_fingerprint(fingerprint: str) -> str:
    """Compare form of a fingerprint: GPG hex upper-cased without spaces; SSH kept as is."""
    text = fingerprint.strip()
    if text.upper().startswith("SHA256:"):
        return "SHA256:" + text[len("SHA256:") :]
    return text.replace(" ", "").upper()


def verify_commit(
    repo_path: str | os.PathLike[str],
    sha: str,
    *,
    allowed_signers_file: str | os.PathLike[str] | None = None,
    gnupg_home: str | os.PathLike[str] | None = None,
    allowed_fingerprints: Iterable[str] = (),
    timeout: float = LOCAL_TIMEOUT,
) -> SignatureVerdict:
    """Decide whether commit ``sha`` in ``repo_path`` is signed by an allowed key.

    Raises GitError only if git itself cannot be run, UsageError if a given key file or
    GnuPG home does not exist; every signature problem is a rejecting verdict.
    """
    allowed = {normalize_fingerprint(f) for f in allowed_fingerprints if f.strip()}
    # A key file that is not there is a configuration error, not a verdict on the commit:
    # rejecting would record the commit as rejected and, once the path is fixed, never
    # apply it. The reconciler checks at start (exit 2); here it retries with backoff.
    if allowed_signers_file is not None and not Path(allowed_signers_file).is_file():
        raise UsageError(
            f"allowed signers file {allowed_signers_file} does not exist or is not a file"
        )
    if gnupg_home is not None and not Path(gnupg_home).is_dir():
        raise UsageError(f"GnuPG home {gnupg_home} does not exist or is not a directory")
    # Only configctl's keys, never the user's keyring or git configuration; a key in
    # configctl's GnuPG home is allowed without an ownertrust step (trust model "always").
    checks = signing.verification(gnupg_home=gnupg_home, allowed_signers=allowed_signers_file)
    args: list[str] = ["-c", "log.showSignature=false", *checks.config_args()]
    env: dict[str, str] = dict(checks.env)
    args += [
        "log",
        "-1",
        "--no-walk",
        "--format=%G?%x00%GF%x00%GP%x00%GS",
        "--end-of-options",
        f"{sha}^{{commit}}",
        "--",
    ]
    try:
        out = run_git(args, cwd=repo_path, timeout=timeout, env=env)
    except GitError as exc:
        if "timed out" in exc.message or "cannot run git" in exc.message:
            raise
        # e.g. "gpg.ssh.allowedSignersFile needs to be configured and exist" for an SSH
        # signature without an allowed-signers file: not verifiable, so not allowed.
        return _reject("?", None, None, f"signature could not be checked: {exc.message}")
    line = out.rstrip("\n").split("\n")[-1] if out.strip() else ""
    parts = line.split("\x00")
    if len(parts) != 4 or len(parts[0]) != 1:
        return _reject("?", None, None, "git did not report a signature status")
    status = parts[0]
    fingerprint, primary, signer = (p.strip() or None for p in parts[1:])
    if status != "G":
        return _reject(
            status, fingerprint, signer, _REASONS.get(status, f"signature status {status}")
        )
    candidates = {normalize_fingerprint(f) for f in (fingerprint, primary) if f}
    if fingerprint is not None and fingerprint.upper().startswith("SHA256:"):
        # SSH signature: "G" already means "listed in the allowed signers file" -- but only
        # if that file is ours, not one from some ambient git configuration.
        if allowed_signers_file is None:
            return _reject(
                status,
                fingerprint,
                signer,
                "SSH signature, but no allowed signers file is configured",
            )
        ssh_allowed = {f for f in allowed if f.startswith("SHA256:")}
        if ssh_allowed and not candidates & ssh_allowed:
            return _reject(
                status,
                fingerprint,
                signer,
                "signed by an SSH key that is not in the allowed fingerprints",
            )
    else:
        gpg_allowed = {f for f in allowed if not f.startswith("SHA256:")}
        if gpg_allowed:
            if not candidates & gpg_allowed:
                return _reject(
                    status,
                    fingerprint,
                    signer,
                    "signed by a key that is not in the allowed fingerprints",
                )
        elif gnupg_home is None:
            # Neither a dedicated keyring nor a fingerprint list: the process's default
            # keyring would decide, and any key that ever landed there would pass.
            return _reject(
                status,
                fingerprint,
                signer,
                "GPG signature, but neither a dedicated keyring nor allowed fingerprints are configured",
            )
    return SignatureVerdict(
        ok=True, status=status, fingerprint=fingerprint, signer=signer, reason=_REASONS["G"]
    )


def _reject(
    status: str, fingerprint: str | None, signer: str | None, reason: str
) -> SignatureVerdict:
    return SignatureVerdict(
        ok=False, status=status, fingerprint=fingerprint, signer=signer, reason=reason
    )
