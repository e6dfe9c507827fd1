"""The one way configctl runs git: a child process that cannot hang the caller or leave
orphans behind. The CLI's :class:`~configctl.adapters.git.source.GitSource`, the tree
reader, the remote operations and the signature checks all come through here.

Why not GitPython for these calls: its ``kill_after_timeout`` kills ``git`` but not
``git-remote-https``/``ssh``/``fetch-pack`` children (GitPython#895), some calls ignored
the timeout (#892, #1215), and each timed-out poll could leave an ``ssh git-upload-pack``
behind (reliability-notes §2.8); its long-lived ``cat-file`` helpers have no timeout at
all. Here every git command

- runs in its **own process group** (``process_group=0``) with a **hard timeout**;
  when it expires the whole group -- git and every helper it started -- gets SIGKILL and
  is reaped, and we wait until no member of the group is alive;
- never prompts: ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS``/``SSH_ASKPASS`` = ``/bin/true``,
  ``ssh -o BatchMode=yes`` unless the operator set ``GIT_SSH_COMMAND``; the C locale;
- gives up on a stalled HTTP transfer (``http.lowSpeedLimit``/``lowSpeedTime``);
- may only use the ``https``, ``ssh`` and ``file`` transports (``GIT_ALLOW_PROTOCOL``),
  so an ``ext::sh -c …`` URL (CVE-2022-24439) cannot run a command even if it got past
  :func:`configctl.adapters.git.remote.check_url`, which rejects it first;
- checks signatures (``%G?``) with configctl's keys only (:func:`use_signature_keys`),
  never the user's keyring.

:func:`abort_all` (the reconciler's SIGTERM) kills every call in flight and refuses new
ones until :func:`resume`. Arguments are fixed lists, never a shell. Error messages carry
git's last stderr lines with any ``user:password@`` removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from configctl.errors import GitError

__all__ = [
    "LOCAL_TIMEOUT",
    "NETWORK_TIMEOUT",
    "Done",
    "abort_all",
    "failure",
    "git_env",
    "group_members",
    "redact",
    "resume",
    "run",
    "run_git",
    "run_git_bytes",
    "use_signature_keys",
]

NETWORK_TIMEOUT = 120.0
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
)  # fmt: skip

_ALLOWED_PROTOCOLS = "https:ssh:file"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

#: How long to wait for the members of a killed process group to disappear.
_REAP_TIMEOUT = 5.0

_INFLIGHT: dict[int, subprocess.Popen[bytes]] = {}
"""Running git children by pid (= their process group id), for :func:`abort_all`. Plain
dict operations only (atomic under the GIL): :func:`abort_all` runs in a signal handler,
which interrupts the main thread wherever it is, so a lock could deadlock."""

_ABORTING = False


def abort_all() -> int:
    """SIGKILL every git child still running, with its whole process group (SIGTERM's
    path: a fetch from a remote that hangs must not hold up shutdown for ``--git-timeout``).

    The calls in flight return at once with a GitError; calls started afterwards fail at
    once too. Returns how many groups were killed.
    """
    global _ABORTING
    _ABORTING = True
    killed = 0
    for pid in list(_INFLIGHT):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            killed += 1
    return killed


def resume() -> None:
    """Allow git calls again after :func:`abort_all`: a reconciler that stopped and closed
    must not leave git unusable for the rest of the process (tests, an embedding program)."""
    global _ABORTING
    _ABORTING = False


_SIGNATURES: tuple[tuple[str, ...], dict[str, str]] | None = None


def use_signature_keys(
    *, gnupg_home: str | None = None, allowed_signers: str | None = None
) -> None:
    """Point every later git call at configctl's signature keys (see
    :mod:`configctl.adapters.signing`); until called, at none (an empty private keyring)."""
    global _SIGNATURES
    from configctl.adapters import signing

    checks = signing.verification(gnupg_home=gnupg_home, allowed_signers=allowed_signers)
    _SIGNATURES = (tuple(checks.config_args()), dict(checks.env))


def _signatures() -> tuple[tuple[str, ...], dict[str, str]]:
    if _SIGNATURES is None:
        use_signature_keys()
    return _SIGNATURES or ((), {})


def _aborting() -> bool:
    """Read at call time (a signal handler may have set it since the last look)."""
    return _ABORTING


def redact(text: str) -> str:
    """``text`` with the user-info part of every URL (``user:token@``) replaced by ``***@``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


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
            "LANGUAGE": "C",
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


@dataclass(frozen=True, slots=True)
class Done:
    """What a finished git call left: its exit code and both outputs, as bytes."""

    code: int
    out: bytes
    err: bytes


def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = NETWORK_TIMEOUT,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    config: Mapping[str, str] | None = None,
    signature_keys: bool = True,
) -> Done:
    """Run ``git <args>`` to its end, whatever its exit code; GitError only if git cannot
    run, times out (it and its helpers are killed) or was aborted.

    ``config`` becomes ``-c key=value`` before ``args`` and ``env`` is added to
    :func:`git_env`; both win over the signature keys. ``signature_keys=False`` leaves
    them out (a commit the user makes keeps their own signing setup).
    """
    what = args[0] if args else "git"
    if _aborting():
        raise GitError(f"git {what} not started: the reconciler is stopping")
    # Any git call may check a signature (`%G?` in a log format): never with the user's
    # keyring. The caller's own -c and environment come later and win.
    sig_config, sig_env = _signatures() if signature_keys else ((), {})
    argv = ["git", *_BASE_CONFIG, *sig_config]
    for key, value in (config or {}).items():
        argv += ["-c", f"{key}={value}"]
    argv += list(args)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=git_env({**sig_env, **(env or {})}),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so a timeout kills git *and* its helpers with one
            # killpg. Not start_new_session: in CPython 3.11 setsid() rules out vfork(), and
            # a fork() of the reconciler's big process costs ~3 ms more per git call --
            # on every webhook's path.
            process_group=0,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}", hint="install git") from exc
    _INFLIGHT[proc.pid] = proc
    try:
        if _aborting():  # stopped between the check above and the registration
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        where = f" in {os.fspath(cwd)}" if cwd is not None else ""
        raise GitError(
            f"git {what} timed out after {timeout:g} s{where}; it and its helpers were killed",
            hint="check that the git server is reachable; the next poll tries again",
        ) from exc
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        _INFLIGHT.pop(proc.pid, None)
    # A helper that outlived git (it should not) would be an orphan: end it now.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if _aborting():
        # wait (bounded) until every helper of the aborted call is gone: no orphans
        deadline = time.monotonic() + _REAP_TIMEOUT
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise GitError(f"git {what} aborted: the reconciler is stopping")
    return Done(proc.returncode, out, err)


def failure(args: Sequence[str], code: int, err: bytes | str) -> GitError:
    """The GitError of a git call that exited with ``code``: git's last stderr lines, redacted."""
    what = args[0] if args else "git"
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
    detail = redact(text).strip()
    tail = " | ".join(line.strip() for line in detail.splitlines()[-3:] if line.strip())
    return GitError(f"git {what} failed (exit {code}): {tail[:500] or 'no message'}")


def run_git_bytes(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = NETWORK_TIMEOUT,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> bytes:
    """``git <args>``'s stdout; GitError on failure or timeout (see :func:`run`)."""
    done = run(args, cwd=cwd, timeout=timeout, env=env, input=input)
    if done.code != 0:
        raise failure(args, done.code, done.err)
    return done.out


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = NETWORK_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> str:
    """:func:`run_git_bytes` decoded as UTF-8 (invalid bytes replaced)."""
    return run_git_bytes(args, cwd=cwd, timeout=timeout, env=env).decode("utf-8", "replace")
