"""Run git as a child process that cannot hang the reconciler or leave orphans behind.

Why not GitPython for the network calls: its ``kill_after_timeout`` kills ``git`` but not
``git-remote-https``/``ssh``/``fetch-pack`` children (GitPython#895), some calls ignored
the timeout (#892, #1215), and each timed-out poll could leave an ``ssh git-upload-pack``
behind (reliability-notes §2.8). Here every git command

- runs in its **own process group** (``process_group=0``) with a **hard timeout**;
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from configctl.adapters.git import LOG_FIELDS, commit_from_fields
from configctl.core.records import CommitInfo
from configctl.errors import GitError, RevisionNotFound, UsageError

__all__ = [
    "DEFAULT_TIMEOUT",
    "abort_all",
    "check_branch",
    "check_url",
    "clone",
    "fetch",
    "first_parents",
    "group_members",
    "is_ancestor",
    "log_range",
    "origin_url",
    "parse_raw",
    "redact",
    "remove_stale_locks",
    "resume",
    "rev_parse",
    "run_git",
    "run_git_bytes",
    "use_signature_keys",
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
    code, out, err = _run_git(args, cwd=cwd, timeout=timeout, env=env)
    if code != 0:
        raise _failed(args, code, err)
    return out


def _failed(args: Sequence[str], code: int, err: str) -> GitError:
    what = args[0] if args else "git"
    detail = redact(err).strip()
    tail = " | ".join(line.strip() for line in detail.splitlines()[-3:] if line.strip())
    return GitError(f"git {what} failed (exit {code}): {tail[:500] or 'no message'}")


def run_git_bytes(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input: bytes | None = None,
) -> bytes:
    """:func:`run_git` with bytes in (on stdin) and out (binary output: blobs)."""
    code, out, err = _run_git_raw(args, cwd=cwd, timeout=timeout, env=None, input=input)
    if code != 0:
        raise _failed(args, code, err.decode("utf-8", "replace"))
    return out


def _run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    timeout: float,
    env: Mapping[str, str] | None,
) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``git <args>``; GitError only if it cannot run or times out."""
    code, out, err = _run_git_raw(args, cwd=cwd, timeout=timeout, env=env, input=None)
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _run_git_raw(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    timeout: float,
    env: Mapping[str, str] | None,
    input: bytes | None,
) -> tuple[int, bytes, bytes]:
    what = args[0] if args else "git"
    if _aborting():
        raise GitError(f"git {what} not started: the reconciler is stopping")
    # Any git call may check a signature (`%G?` in a log format): never with the user's
    # keyring. The caller's own -c and environment come later and win.
    sig_config, sig_env = _signatures()
    argv = ["git", *_BASE_CONFIG, *sig_config, *args]
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
        raise GitError(f"cannot run git: {exc.strerror or exc}") from exc
    _INFLIGHT[proc.pid] = proc
    try:
        if _aborting():  # stopped between the check above and the registration
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise GitError(
            f"git {what} timed out after {timeout:g} s; it and its helpers were killed",
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
    return proc.returncode, out, err


def is_ancestor(repo: str | os.PathLike[str], ancestor: str, descendant: str, *, timeout: float = LOCAL_TIMEOUT) -> bool:
    """Whether commit ``ancestor`` is an ancestor of (or equal to) ``descendant``.

    False when ``ancestor`` is not in the repository at all (a rewritten history whose
    old commits were never fetched here). Any *other* failure raises GitError: a git that
    cannot answer must not be mistaken for a force push, which would skip commits.
    """
    for rev in (ancestor, descendant):
        if not rev or rev.startswith("-") or any(ord(ch) < 32 for ch in rev):
            raise RevisionNotFound(f"not a revision: {rev!r}")
    code, _, err = _run_git(
        ["merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant], cwd=repo, timeout=timeout, env=None
    )
    if code in (0, 1):
        return code == 0
    if not _has_commit(repo, ancestor, timeout=timeout):
        return False
    raise _failed(["merge-base"], code, err)


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

    The clone is made next to ``dest`` under a temporary name and renamed into place when
    complete, so ``dest`` either does not exist or is a whole clone -- even if this
    process is killed half-way (a half-made clone would otherwise be taken for a good one
    at the next start and fail every fetch). Leftovers of such a kill are removed first.
    """
    check_url(url)
    check_branch(branch)
    target = Path(dest)
    if target.exists():
        raise UsageError(f"clone target {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        _remove_tree(leftover)
    partial = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        run_git(
            ["clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch,
             "--", url, str(partial)],
            timeout=timeout,
        )
        os.rename(partial, target)
    except BaseException:
        _remove_tree(partial)
        raise
    return rev_parse(target, "HEAD")


def origin_url(repo: str | os.PathLike[str], *, timeout: float = LOCAL_TIMEOUT) -> str | None:
    """The URL of ``origin`` in ``repo``, or None if it has none (or is no repository)."""
    code, out, _ = _run_git(["config", "--get", "remote.origin.url"], cwd=repo, timeout=timeout, env=None)
    return out.strip() if code == 0 and out.strip() else None


def fetch(repo: str | os.PathLike[str], branch: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Fetch ``branch`` from ``origin`` into ``refs/remotes/origin/<branch>``; return its head.

    The working tree is not touched; the caller reads the returned commit. A ref lock
    left behind by a git that was killed mid-update (older than ``timeout``, so no live
    fetch of ours can own it) is removed first; otherwise every later fetch would fail.
    """
    check_branch(branch)
    remove_stale_locks(repo, older_than=timeout)
    run_git(
        ["fetch", "--quiet", "--prune", "--no-tags", "--", "origin",
         f"+refs/heads/{branch}:refs/remotes/origin/{branch}"],
        cwd=repo,
        timeout=timeout,
    )
    return _read_loose_ref(repo, f"refs/remotes/origin/{branch}") or rev_parse(repo, f"refs/remotes/origin/{branch}")


def _read_loose_ref(repo: str | os.PathLike[str], ref: str) -> str | None:
    """The commit id in a loose ref file, or None (packed, symbolic, absent: ask git).

    A loose ref takes precedence over ``packed-refs`` in git itself, and a fetch that
    moves a ref writes it loose, so reading the file saves a ``rev-parse`` process per
    poll -- on the path every webhook takes.
    """
    root = Path(repo)
    gitdir = root / ".git" if (root / ".git").is_dir() else root
    try:
        text = (gitdir / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _OBJECT_ID.fullmatch(text) else None


_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

_LOG_FIELDS = LOG_FIELDS


Change = tuple[str, str, str, str]
"""One line of a raw diff: (path, new mode, new blob id, status letter)."""


def parse_raw(fields: list[str]) -> list[Change]:
    """The ``-z --raw`` diff lines in ``fields`` (``:old new oldid newid S``, path, ...)."""
    changes: list[Change] = []
    i = 0
    while i + 1 < len(fields):
        meta, path = fields[i].lstrip("\n"), fields[i + 1]
        i += 2
        parts = meta[1:].split(" ") if meta.startswith(":") else []
        if len(parts) != 5:
            raise GitError("git printed a raw diff line that cannot be read")
        _, new_mode, _, new_blob, status = parts
        changes.append((path, new_mode, new_blob, status))
    return changes


def log_range(
    repo: str | os.PathLike[str],
    base: str | None,
    head: str,
    *,
    timeout: float = LOCAL_TIMEOUT,
    on_changes: Callable[[str, str, list[Change]], None] | None = None,
) -> list[CommitInfo] | None:
    """The commits after ``base`` up to ``head``, oldest first, first parents only, in one
    ``git log`` process; ``base=None`` lists ``head`` alone.

    Returns None when ``base`` is not in the repository (history rewritten before this
    clone ever saw it). Fields as in :meth:`configctl.adapters.git.GitSource.commit_info`.
    With ``on_changes``, the same process also reports each single-parent commit's raw
    diff, ``on_changes(sha, parent, changes)`` (the tree reader then needs no diff of its
    own); merges are left out -- older gits print no diff for them.
    """
    for rev in (base, head):
        if rev is not None and not _OBJECT_ID.fullmatch(rev):
            raise RevisionNotFound(f"not a full commit id: {rev!r}")
    spec = ["-1", head] if base is None else ["--first-parent", "--reverse", f"{base}..{head}"]
    raw = ["--raw", "--no-renames", "--no-abbrev"] if on_changes is not None and base is not None else []
    code, out, err = _run_git(
        ["log", "-z", "--no-color", "--no-show-signature", "--format=" + "%x1f".join(_LOG_FIELDS), *raw, *spec, "--"],
        cwd=repo, timeout=timeout, env=None,
    )  # fmt: skip
    if code != 0:
        if base is not None and not _has_commit(repo, base, timeout=timeout):
            return None
        raise _failed(["log"], code, err)
    tokens = out.split("\0")
    commits: list[CommitInfo] = []
    diffs: list[list[str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.lstrip("\n").startswith(":") and diffs:
            diffs[-1] += tokens[i : i + 2]  # the diff line and its path
            i += 2
            continue
        i += 1
        if not token.strip():
            continue
        commits.append(_commit_record(token))
        diffs.append([])
    if on_changes is not None and raw:
        for info, fields in zip(commits, diffs, strict=True):
            if len(info.parents) == 1:
                on_changes(info.sha, info.parents[0], parse_raw(fields))
    return commits


def first_parents(
    repo: str | os.PathLike[str], head: str, limit: int, *, timeout: float = LOCAL_TIMEOUT
) -> list[CommitInfo]:
    """``head`` and its first-parent ancestors, newest first, at most ``limit`` of them."""
    if not _OBJECT_ID.fullmatch(head):
        raise RevisionNotFound(f"not a full commit id: {head!r}")
    out = run_git(
        ["log", "-z", "--no-color", "--no-show-signature", "--first-parent", f"--max-count={int(limit)}",
         "--format=" + "%x1f".join(_LOG_FIELDS), head, "--"],
        cwd=repo, timeout=timeout,
    )  # fmt: skip
    return [_commit_record(token) for token in out.split("\0") if token.strip()]


def _commit_record(record: str) -> CommitInfo:
    parts = record.split("\x1f", len(_LOG_FIELDS) - 1)
    if len(parts) != len(_LOG_FIELDS) or not _OBJECT_ID.fullmatch(parts[0].strip()):
        raise GitError("git log printed a record that cannot be read")
    return commit_from_fields(parts)


def _has_commit(repo: str | os.PathLike[str], rev: str, *, timeout: float) -> bool:
    code, _, err = _run_git(["cat-file", "-e", "--end-of-options", f"{rev}^{{commit}}"], cwd=repo, timeout=timeout, env=None)
    if code != 0 and "not a git repository" in err.lower():
        raise _failed(["cat-file"], code, err)
    return code == 0


def remove_stale_locks(repo: str | os.PathLike[str], *, older_than: float) -> list[Path]:
    """Delete ``*.lock`` files a fetch takes (refs, packed-refs, shallow, FETCH_HEAD) that
    are older than ``older_than`` seconds; return what was removed."""
    root = Path(repo)
    gitdir = root / ".git" if (root / ".git").is_dir() else root
    candidates = [gitdir / "packed-refs.lock", gitdir / "shallow.lock", gitdir / "FETCH_HEAD.lock"]
    refs = gitdir / "refs"
    if refs.is_dir():
        candidates += list(refs.rglob("*.lock"))
    removed: list[Path] = []
    now = time.time()
    for lock in candidates:
        try:
            if now - lock.stat().st_mtime > older_than:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:
            continue
    return removed


def _remove_tree(path: Path) -> None:
    import shutil

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
