"""Run git as a child process that cannot hang the reconciler or leave orphans behind.

Why not GitPython for the network calls: its ``kill_after_timeout`` kills ``git`` but not
``git-remote-https``/``ssh``/``fetch-pack`` children (GitPython#895), some calls ignored
the timeout (#892, #1215), and each timed-out poll could leave an ``ssh git-upload-pack``
behind (reliability-notes §2.8). Here every git command

- runs in its **own process group** (``start_new_session=True``) with a **hard timeout**;
  when it expires the whole group -- git and every helper it started -- gets SIGKILL and
  is reaped, and we wait until no member of the group is alive;
- never prompts: ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS``/``SSH_ASKPASS`` = ``/bin/true``,
  ``ssh -o BatchMode=yes`` unless the operator set ``GIT_SSH_COMMAND``;
- gives up on a stalled HTTP transfer (``http.lowSpeedLimit``/``lowSpeedTime``);
- may only use the ``https``, ``ssh`` and ``file`` transports (``GIT_ALLOW_PROTOCOL``),
  so an ``ext::sh -c …`` URL (CVE-2022-24439) cannot run a command even if it got past
  :func:`check_url`, which rejects it first.

Arguments are fixed lists, never a shell; user input (URL, branch, revision) is checked
and placed after ``--`` or ``--end-of-options`` so it can never be read as an option.
Error messages carry git's last stderr lines with any ``user:password@`` removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from configctl.errors import GitError, RevisionNotFound, UsageError

__all__ = [
    "DEFAULT_TIMEOUT",
    "check_branch",
    "check_url",
    "clone",
    "fetch",
    "group_members",
    "redact",
    "rev_parse",
    "run_git",
]

DEFAULT_TIMEOUT = 120.0
"""Seconds a network git command may take in total (clone, fetch) before it is killed."""

LOCAL_TIMEOUT = 30.0
"""Seconds for a local git command (rev-parse, log)."""

# A transfer slower than 1 KiB/s for 30 s is treated as dead. Together with the hard
# timeout this bounds a fetch from a server that accepts the connection and then stalls.
_BASE_CONFIG = (
    "-c", "http.lowSpeedLimit=1024",
    "-c", "http.lowSpeedTime=30",
    "-c", "protocol.ext.allow=never",
    "-c", "core.askPass=/bin/true",
)

_ALLOWED_PROTOCOLS = "https:ssh:file"

# user@host:path (scp-like ssh); the host part may not contain "/" and the whole thing may
# not contain "::" (transport helper syntax) -- checked separately.
_SCP_LIKE = re.compile(r"^(?!-)[A-Za-z0-9._-]+@(?!-)[A-Za-z0-9.-]+:[^\s]+$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)(?!/)(?!.*/$)[A-Za-z0-9._/-]{1,200}$")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

#: How long to wait for the members of a killed process group to disappear.
_REAP_TIMEOUT = 5.0


def redact(text: str) -> str:
    """``text`` with the user-info part of every URL (``user:token@``) replaced by ``***@``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def check_url(url: str) -> str:
    """Return ``url`` if it is an allowed repository location, else raise UsageError.

    Allowed: ``https://``, ``ssh://``, scp-like ``git@host:path``, ``file://`` and
    absolute local paths. Refused: anything starting with ``-`` (would be read as an
    option), transport-helper syntax (``ext::…``, ``fd::…``), cleartext ``http://`` and
    ``git://``, relative paths, and control characters.
    """
    if not url or url != url.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UsageError("repository URL is empty or contains whitespace or control characters")
    if url.startswith("-"):
        raise UsageError("repository URL must not start with '-'")
    if "::" in url:
        raise UsageError(
            "repository URL uses a git transport helper ('<transport>::'), which is not allowed"
        )
    lowered = url.lower()
    if lowered.startswith(("https://", "ssh://", "file://")):
        rest = url.split("://", 1)[1]
        if not rest:
            raise UsageError("repository URL has no host or path")
        host = rest.split("/", 1)[0].rpartition("@")[2]
        if host.startswith("-"):
            # ssh would read "-oProxyCommand=..." as an option (CVE-2017-1000117)
            raise UsageError("repository URL host must not start with '-'")
        return url
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UsageError(
            f"repository URL scheme {scheme!r} is not allowed",
            hint="use https://, ssh://, git@host:path, file:// or an absolute path",
        )
    if url.startswith("/"):
        return url
    if _SCP_LIKE.match(url):
        return url
    raise UsageError(
        "repository URL is not an allowed form",
        hint="use https://, ssh://, git@host:path, file:// or an absolute path",
    )


def check_branch(branch: str) -> str:
    """Return ``branch`` if it is a plain branch name we are willing to pass to git."""
    if not _BRANCH.match(branch):
        raise UsageError(f"not an acceptable branch name: {branch!r}")
    return branch


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every git child: inherited, then made non-interactive."""
    env = dict(os.environ)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/true",
            "SSH_ASKPASS": "/bin/true",
            "SSH_ASKPASS_REQUIRE": "never",
            "GCM_INTERACTIVE": "never",
            "GIT_ALLOW_PROTOCOL": _ALLOWED_PROTOCOLS,
            "GIT_PROTOCOL_FROM_USER": "0",
            "LC_ALL": "C",
        }
    )
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=15"
    if extra:
        env.update(extra)
    return env


def group_members(pgid: int) -> list[int]:
    """PIDs of live (not zombie) processes in process group ``pgid``, from ``/proc``.

    Empty where ``/proc`` does not exist. Used to prove a killed group is gone.
    """
    members: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..." -- comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group led by ``proc``, reap ``proc``, wait for the rest to die."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=_REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # Something outside the group still holds our pipes open; stop reading them.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait(timeout=_REAP_TIMEOUT)
    # Helpers whose parent (git) died are re-parented to init; they got the SIGKILL
    # too, but die asynchronously. Wait until the group is really empty.
    deadline = time.monotonic() + _REAP_TIMEOUT
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``git <args>`` and return its stdout; GitError on failure or timeout.

    ``env`` entries are added to :func:`git_env`. The process group is killed after a
    timeout and, defensively, after every run, so no helper outlives the call.
    """
    what = args[0] if args else "git"
    argv = ["git", *_BASE_CONFIG, *args]
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=git_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise GitError(
            f"git {what} timed out after {timeout:g} s; it and its helpers were killed",
            hint="check that the git server is reachable; the next poll tries again",
        ) from exc
    except BaseException:
        _kill_group(proc)
        raise
    # A helper that outlived git (it should not) would be an orphan: end it now.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        detail = redact(err.decode("utf-8", "replace")).strip()
        tail = " | ".join(line.strip() for line in detail.splitlines()[-3:] if line.strip())
        raise GitError(f"git {what} failed (exit {proc.returncode}): {tail[:500] or 'no message'}")
    return out.decode("utf-8", "replace")


def rev_parse(repo: str | os.PathLike[str], rev: str, *, timeout: float = LOCAL_TIMEOUT) -> str:
    """The full commit id ``rev`` names in ``repo``; RevisionNotFound if it names none."""
    if not rev or rev.startswith("-") or any(ord(ch) < 32 for ch in rev):
        raise RevisionNotFound(f"not a revision: {rev!r}")
    try:
        out = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
            cwd=repo,
            timeout=timeout,
        )
    except GitError as exc:
        if "timed out" in exc.message:
            raise
        raise RevisionNotFound(f"revision {rev!r} does not name a commit") from exc
    return out.strip()


def clone(
    url: str, dest: str | os.PathLike[str], branch: str, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Clone ``branch`` of ``url`` into ``dest`` (which must not exist); return its head.

    A clone that fails or times out leaves no half-made ``dest`` behind.
    """
    check_url(url)
    check_branch(branch)
    target = Path(dest)
    if target.exists():
        raise UsageError(f"clone target {target} already exists")
    try:
        run_git(
            ["clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch,
             "--", url, str(target)],
            timeout=timeout,
        )
    except BaseException:
        _remove_tree(target)
        raise
    return rev_parse(target, "HEAD")


def fetch(repo: str | os.PathLike[str], branch: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Fetch ``branch`` from ``origin`` into ``refs/remotes/origin/<branch>``; return its head.

    The working tree is not touched; the caller reads the returned commit.
    """
    check_branch(branch)
    run_git(
        ["fetch", "--quiet", "--prune", "--no-tags", "--", "origin",
         f"+refs/heads/{branch}:refs/remotes/origin/{branch}"],
        cwd=repo,
        timeout=timeout,
    )
    return rev_parse(repo, f"refs/remotes/origin/{branch}")


def _remove_tree(path: Path) -> None:
    import shutil

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
