"""The git source: trees and commits of any revision, read from git objects; prepared reverts.

Invariants:

- **Objects only.** :meth:`GitSource.read_tree` lists a commit's tree (``git ls-tree``) and
  reads blobs (``git cat-file --batch``); it never checks out, never reads the work tree
  or the index, so what it returns is exactly what was committed. Symlinks are reported
  (``FileEntry(symlink=True)``), never followed; blobs above the parser's size bound are
  reported by size, not read. Like the filesystem adapter, folders whose name starts with a
  dot (``.github``, ``.configctl``) are skipped.
- **Work follows the size of a change.** Blob bytes are kept in a bounded in-process LRU by
  blob id, and :meth:`GitSource.read_tree_with_ids` hands out the blob ids so callers can
  cache parses per blob: reading the next commit costs one ``ls-tree`` plus the blobs that
  changed.
- **Nothing hangs.** Every git call goes through :mod:`configctl.adapters.git.runner` (a
  hard timeout, default 60 s, its own process group killed on timeout, no terminal
  prompt, the C locale); failures become :class:`GitError` (an unknown revision
  :class:`RevisionNotFound`) with the original exception chained.
- **The user's checkout is never touched.** :meth:`GitSource.prepare_revert` works in a
  temporary ``git worktree`` and removes it afterwards; only the new branch remains.

GitPython finds and validates the repository (``import git`` happens inside the functions
that need it, so importing this module stays cheap); bulk object reads run on the runner,
because GitPython's long-lived ``cat-file`` helpers have no timeout. The path rule, blob
cache and size bound are :mod:`configctl.adapters.git.trees`'.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import NoReturn

from configctl.adapters.git import revisions, runner
from configctl.adapters.git.revisions import EMPTY_TREE
from configctl.adapters.git.trees import (
    DEFAULT_BLOB_CACHE_BYTES,
    SUFFIXES,
    SYMLINK_MODE,
    BlobCache,
    Entry,
    cat_blobs,
    entry,
    list_tree,
    max_file_bytes,
)
from configctl.core.model import FileEntry
from configctl.core.records import CommitInfo
from configctl.errors import GitError, RevertConflict, RevisionNotFound, UsageError

__all__ = ["DEFAULT_TIMEOUT", "GitChangeLog", "GitSource"]

#: Seconds any single git command may run before it is killed.
DEFAULT_TIMEOUT = 60.0

_FALLBACK_IDENT = {
    "GIT_AUTHOR_NAME": "configctl",
    "GIT_AUTHOR_EMAIL": "configctl@localhost",
    "GIT_COMMITTER_NAME": "configctl",
    "GIT_COMMITTER_EMAIL": "configctl@localhost",
}


class GitSource:
    """Read-only access to one git repository (plus :meth:`prepare_revert`).

    ``config`` adds ``-c key=value`` to every git call and ``env`` extra environment
    variables (e.g. ``GNUPGHOME`` or ``gpg.ssh.allowedSignersFile`` for signature status).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES,
    ) -> None:
        import git

        try:
            repo = git.Repo(str(path))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise UsageError(f"{path}: not a git repository") from exc
        # A work tree's top, or the git dir of a bare repository (a reconciler mirror).
        self.path = Path(repo.working_tree_dir or repo.git_dir).resolve()
        self.git_dir = Path(repo.git_dir).resolve()
        self.bare = repo.bare
        repo.close()
        self.timeout = timeout
        # Signature checks (every `git log` with %G?) never use the user's own keyring or
        # git's ambient allowed-signers file: see configctl.adapters.signing.
        from configctl.adapters import signing

        self._checks = signing.from_environment()
        self._config = dict(config or {})
        self._env = dict(env or {})
        self.blobs = BlobCache(blob_cache_bytes)

    @classmethod
    def discover(
        cls,
        path: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[GitSource, str]:
        """The repository holding ``path``, and ``path``'s prefix inside it ('' at the top)."""
        import git

        try:
            repo = git.Repo(str(path), search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise UsageError(
                f"{path}: not inside a git repository", hint="run `git init` and commit the tree"
            ) from exc
        top = Path(repo.working_tree_dir or repo.git_dir).resolve()
        repo.close()
        prefix = Path(path).resolve().relative_to(top).as_posix()
        source = cls(top, timeout=timeout, config=config, env=env)
        return source, "" if prefix == "." else prefix

    def __repr__(self) -> str:
        return f"GitSource({str(self.path)!r})"

    # -- running git --------------------------------------------------------------------

    def _run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        cwd: Path | None = None,
        ok: tuple[int, ...] = (0,),
        extra_env: Mapping[str, str] | None = None,
    ) -> runner.Done:
        # Reading signatures uses configctl's keys only; making a commit (a prepared
        # revert) keeps the user's own signing setup (commit.gpgSign, their keyring).
        checks = args[0] != "commit"
        done = runner.run(
            args,
            cwd=cwd or self.path,
            timeout=self.timeout,
            input=input,
            config={**(self._checks.config if checks else {}), **self._config},
            env={**(self._checks.env if checks else {}), **self._env, **(extra_env or {})},
            signature_keys=False,
        )
        if done.code not in ok:
            lines = done.err.decode("utf-8", "replace").strip().splitlines()
            detail = lines[-1] if lines else f"exit status {done.code}"
            cause = runner.failure(args, done.code, done.err)
            raise GitError(f"git {args[0]} failed in {self.path}: {detail}") from cause
        return done

    def git_bytes(self, args: Sequence[str], input: bytes | None = None) -> bytes:
        """``git <args>``'s stdout in this repository (GitError on failure)."""
        return self._run(args, input=input).out

    def _text(self, args: Sequence[str], *, cwd: Path | None = None) -> str:
        return self._run(args, cwd=cwd).out.decode("utf-8", "replace")

    # -- revisions ----------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The full commit id ``rev`` names; :class:`RevisionNotFound` if it names none."""
        return revisions.rev_parse(self.path, rev, timeout=self.timeout)

    def head(self) -> str | None:
        """The commit HEAD points at, or None in a repository without commits."""
        try:
            return self.resolve("HEAD")
        except RevisionNotFound:
            return None

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether commit ``a`` is ``b`` or one of its ancestors."""
        return revisions.is_ancestor(
            self.path, self.resolve(a), self.resolve(b), timeout=self.timeout
        )

    # -- trees --------------------------------------------------------------------------

    def read_tree_with_ids(self, rev: str, prefix: str = "") -> dict[str, tuple[str, FileEntry]]:
        """``{path: (blob id, FileEntry)}`` of every config file in ``rev``'s tree.

        Paths are relative to the repository root; ``prefix`` (a folder) limits the
        listing to that folder without changing the paths.
        """
        found = list_tree(self.git_bytes, self.resolve(rev), prefix)
        limit = max_file_bytes()
        needed = sorted(
            {
                blob
                for mode, blob, size in found.values()
                if mode != SYMLINK_MODE and size <= limit and self.blobs.get(blob) is None
            }
        )
        fetched = self._cat_blobs(needed) if needed else {}
        out: dict[str, Entry] = {}
        for path, (mode, blob, size) in sorted(found.items()):
            data = fetched.get(blob)
            if data is None:
                data = self.blobs.get(blob)
            if data is None and mode != SYMLINK_MODE and size <= limit:
                data = self._cat_blobs([blob])[blob]  # evicted between listing and now
            out[path] = (blob, entry(mode, size, data or b""))
        return out

    def read_tree(self, rev: str, prefix: str = "") -> dict[str, FileEntry]:
        """``{path: FileEntry}`` of every config file in ``rev``'s tree (see above)."""
        return {path: entry for path, (_, entry) in self.read_tree_with_ids(rev, prefix).items()}

    def _cat_blobs(self, shas: Sequence[str]) -> dict[str, bytes]:
        """Blob contents by id (each within the size bound), in one ``git cat-file --batch``; cached."""
        return {sha: data for sha, (_, data) in cat_blobs(self.git_bytes, shas, self.blobs).items()}

    # -- commits ------------------------------------------------------------------------

    def _log(self, args: Sequence[str]) -> list[CommitInfo]:
        return revisions.parse_log(self._text([*revisions.LOG_ARGS, *args]))

    def commit_info(self, rev: str) -> CommitInfo:
        """One commit, with git's signature status letter (``%G?``) and signer.

        The status is reported, not judged: the verification policy lives with the caller.
        ``signer`` is the signer's name (``%GS``), or the key fingerprint (``%GF``).
        """
        sha = self.resolve(rev)
        commits = self._log(["-1", sha, "--"])
        if not commits:
            raise RevisionNotFound(f"revision {rev!r} does not name a commit in {self.path}")
        return commits[0]

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        """Commits after ``base`` up to and including ``head``, oldest first.

        First-parent order: a merged branch shows up as its merge commit, which is what
        the main branch actually went through. ``base=None`` means from the root commit.
        With ``prefix`` (the config folder, '' for the whole repository) only commits that
        change a config file (``*.yaml``, ``*.yml``, ``*.json`` outside dot folders) under it
        are listed: a commit to the README or to CI files is nothing to apply.
        """
        head_sha = self.resolve(head)
        spec = f"{self.resolve(base)}..{head_sha}" if base else head_sha
        return self._log(
            ["--first-parent", "--reverse", spec, "--", *self._config_pathspecs(prefix)]
        )

    @staticmethod
    def _config_pathspecs(prefix: str | None) -> list[str]:
        """Pathspecs of the config files under ``prefix`` (the files ``read_tree`` reads)."""
        if prefix is None:
            return []
        p = prefix.strip("/") + "/" if prefix.strip("/") else ""
        return [
            *(f":(glob){p}**/*{suffix}" for suffix in SUFFIXES),
            f":(glob,exclude){p}**/.*/**",
        ]

    def changes(
        self, head: str, *, prefix: str = "", limit: int = 200
    ) -> list[tuple[str, str | None, frozenset[str]]]:
        """``(commit, first parent, changed config paths)`` of the newest ``limit`` commits
        on ``head``'s first-parent line that change a config file under ``prefix``.

        Newest first, one git call; paths are relative to ``prefix``. A merge commit's
        changes are those against its first parent (what the branch went through).
        """
        head_sha = self.resolve(head)
        raw = self._run(
            [
                "log",
                "--first-parent",
                "--diff-merges=first-parent",
                "--name-only",
                "--no-color",
                "--format=%x00%H %P",
                f"-n{int(limit)}",
                head_sha,
                "--",
                *self._config_pathspecs(prefix),
            ]
        ).out.decode("utf-8", "surrogateescape")
        p = prefix.strip("/") + "/" if prefix.strip("/") else ""
        out: list[tuple[str, str | None, frozenset[str]]] = []
        for record in raw.split("\0"):
            lines = record.strip("\n").split("\n")
            if not lines or not lines[0].strip():
                continue
            ids = lines[0].split()
            paths = frozenset(line[len(p) :] for line in lines[1:] if line and line.startswith(p))
            out.append((ids[0], ids[1] if len(ids) > 1 else None, paths))
        return out

    # -- reverts ------------------------------------------------------------------------

    def prepare_revert(
        self,
        commit: str,
        *,
        branch: str,
        message: str,
        paths_patch: Mapping[str, bytes] | None = None,
    ) -> str:
        """Create ``branch`` at HEAD with one new commit, and return that commit's id.

        Without ``paths_patch`` the commit reverts ``commit`` entirely (``git revert``; a
        merge commit is reverted against its first parent). With it, the commit writes
        exactly those files (repository-relative paths -> bytes) and nothing else. The work
        happens in a temporary worktree that is removed afterwards: the user's checkout,
        index and current branch are untouched. On failure nothing is left behind (the
        branch is deleted again). Commit hooks do not run. A revert that conflicts with
        later changes raises :class:`RevertConflict` naming the files.
        """
        sha = self.resolve(commit)
        patch = {self._safe_path(p): data for p, data in (paths_patch or {}).items()}

        def work_in(work: Path, ident: Mapping[str, str]) -> None:
            if paths_patch is None:
                self._revert_in(work, sha, ident)
                body = f"{message}\n\nThis reverts commit {sha}."
                self._commit_in(work, body, ident, what=f"reverting {sha[:12]}")
            else:
                self._patch_in(work, patch, message, ident)

        return self._on_new_branch(branch, work_in)

    def prepare_path_revert(
        self, commits: Sequence[str], *, paths: Sequence[str], branch: str, message: str
    ) -> str:
        """Create ``branch`` at HEAD with one commit undoing ``commits`` (newest first) in
        ``paths`` only (repository-relative files), and return its id.

        Each commit's change to those files is reverse-applied with a three-way merge, so
        later, unrelated edits to the same files survive; whatever else the commits
        changed stays. Conflicts raise :class:`RevertConflict` naming the files, and leave
        nothing behind; so does a revert with nothing to undo (:class:`UsageError`).
        """
        shas = [self.resolve(c) for c in commits]
        safe = [self._safe_path(p) for p in paths]

        def work_in(work: Path, ident: Mapping[str, str]) -> None:
            for sha in shas:
                parents = self.commit_info(sha).parents
                base = parents[0] if parents else EMPTY_TREE
                diff = self._run(
                    ["diff", "--binary", "--full-index", base, sha, "--", *safe], cwd=work
                ).out
                if not diff.strip():
                    continue
                done = self._run(
                    ["apply", "--3way", "--index", "-R", "-"], cwd=work, input=diff, ok=(0, 1, 128)
                )
                if done.code != 0:
                    self._raise_conflict(work, sha, done.err)
            body = message + "\n\n" + "\n".join(f"This reverts commit {sha}." for sha in shas)
            self._commit_in(work, body, ident, what=f"reverting {', '.join(s[:12] for s in shas)}")

        return self._on_new_branch(branch, work_in)

    def delete_branch(self, branch: str, expected: str) -> None:
        """Delete ``branch`` if it still points at ``expected`` (undo of a prepared revert)."""
        self._run(["update-ref", "-d", f"refs/heads/{branch}", expected], ok=(0, 1, 128))

    def _on_new_branch(
        self, branch: str, work_in: Callable[[Path, Mapping[str, str]], None]
    ) -> str:
        """Run ``work_in`` in a temporary worktree on a new ``branch`` made at HEAD.

        The branch keeps the commit ``work_in`` made; on any failure it is deleted again
        and the worktree is always removed.
        """
        if self.bare:
            raise UsageError(f"{self.path} is a bare repository: prepare the revert in a clone")
        head = self.head()
        if head is None:
            raise UsageError(f"{self.path} has no commits to revert")
        self._check_branch_name(branch)
        ident = self._identity_env()
        tmp = Path(tempfile.mkdtemp(prefix="configctl-revert-"))
        work = tmp / "worktree"
        created = False
        try:
            self._run(["worktree", "add", "--quiet", "-b", branch, str(work), head])
            created = True
            work_in(work, ident)
            new = self._text(["rev-parse", "HEAD"], cwd=work).strip()
        except BaseException:
            self._remove_worktree(work)
            if created:
                self._run(["branch", "-D", "--", branch], ok=(0, 1))
            raise
        else:
            self._remove_worktree(work)
            return new
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _raise_conflict(self, work: Path, sha: str, stderr: bytes) -> NoReturn:
        """Name the files a revert of ``sha`` conflicts in (unmerged, or a failed hunk)."""
        unmerged = self._run(["diff", "--name-only", "--diff-filter=U"], cwd=work, ok=(0, 1, 128))
        files = sorted(
            {line for line in unmerged.out.decode("utf-8", "replace").splitlines() if line}
        )
        if not files:
            text = stderr.decode("utf-8", "replace")
            found = re.findall(
                r"(?:patch failed: |conflicts? in |with conflicts: )'?([^:'\n]+)", text
            )
            files = sorted({f.strip() for f in found if f.strip()})
        named = ", ".join(files) if files else "(git did not say which files)"
        raise RevertConflict(
            f"reverting {sha[:12]} conflicts with later changes in {named}; nothing was written",
            files=tuple(files),
            hint="resolve it by hand (git revert), or revert only some keys (configctl revert --keys)",
        )

    def _revert_in(self, work: Path, sha: str, ident: Mapping[str, str]) -> None:
        parents = self.commit_info(sha).parents
        args = ["revert", "--no-commit"]
        if len(parents) > 1:
            args += ["-m", "1"]
        done = self._run([*args, sha], cwd=work, extra_env=ident, ok=(0, 1, 128))
        if done.code != 0:
            self._raise_conflict(work, sha, done.err)

    def _patch_in(
        self, work: Path, patch: Mapping[str, bytes], message: str, ident: Mapping[str, str]
    ) -> None:
        for rel, data in patch.items():
            target = work / rel
            if target.is_symlink():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if patch:
            self._run(["add", "--", *patch], cwd=work)
        self._commit_in(work, message, ident, what="the patch")

    def _commit_in(self, work: Path, message: str, ident: Mapping[str, str], *, what: str) -> None:
        staged = self._run(["diff", "--cached", "--quiet"], cwd=work, ok=(0, 1))
        if staged.code == 0:
            raise UsageError(f"nothing to commit: HEAD already has the result of {what}")
        self._run(
            ["commit", "--quiet", "--no-verify", "--file", "-"],
            cwd=work,
            input=message.encode(),
            extra_env=ident,
        )

    def _remove_worktree(self, work: Path) -> None:
        if work.exists():
            self._run(["worktree", "remove", "--force", str(work)], ok=(0, 128))
        self._run(["worktree", "prune"], ok=(0, 128))

    def _check_branch_name(self, branch: str) -> None:
        done = self._run(["check-ref-format", "--branch", branch], ok=(0, 1, 128))
        if done.code != 0 or branch.startswith("-"):
            raise UsageError(f"{branch!r} is not a valid branch name")
        exists = self._run(
            ["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], ok=(0, 1, 128)
        )
        if exists.code == 0:
            raise UsageError(
                f"branch {branch!r} already exists", hint="pick another name with --branch"
            )

    @staticmethod
    def _safe_path(path: str) -> str:
        pure = PurePosixPath(path)
        if (
            not path
            or pure.is_absolute()
            or ".." in pure.parts
            or (pure.parts and pure.parts[0] == ".git")
            or "\\" in path
        ):
            raise UsageError(f"refusing to write {path!r}: not a plain repository-relative path")
        return pure.as_posix()

    def _identity_env(self) -> dict[str, str]:
        """git's own identity when one is configured, else ``configctl <configctl@localhost>``
        (a reconciler container has no user.name)."""
        author = self._run(["var", "GIT_AUTHOR_IDENT"], ok=(0, 128)).code == 0
        committer = self._run(["var", "GIT_COMMITTER_IDENT"], ok=(0, 128)).code == 0
        return {} if author and committer else dict(_FALLBACK_IDENT)


class GitChangeLog:
    """:class:`configctl.services.attribution.ChangeLog` over a :class:`GitSource`, for the
    config folder ``prefix`` ('' at the top): paths come back relative to it."""

    def __init__(self, source: GitSource, prefix: str = "", *, limit: int = 200) -> None:
        self.source = source
        self.prefix = prefix.strip("/")
        self.limit = limit

    def changes(self, head: str) -> list[tuple[str, str | None, frozenset[str]]]:
        return self.source.changes(head, prefix=self.prefix, limit=self.limit)

    def tree(self, sha: str) -> dict[str, FileEntry]:
        files = self.source.read_tree(sha, self.prefix)
        if not self.prefix:
            return files
        p = self.prefix + "/"
        return {path[len(p) :]: entry for path, entry in files.items() if path.startswith(p)}

    def commit_info(self, sha: str) -> CommitInfo:
        return self.source.commit_info(sha)
