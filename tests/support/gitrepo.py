"""Build real git repositories with several commits in a temporary directory.

Acceptance tests drive ``configctl`` against these. Identity, dates and configuration
come from the environment of each ``git`` call (:func:`git_env`), never from the user's
global git configuration, which is neither read nor written: ``GIT_CONFIG_GLOBAL`` and
``GIT_CONFIG_SYSTEM`` point at ``/dev/null``. The same environment is what the tests give
``configctl`` itself, so a revert commit it prepares has a known author too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "configs-example"

DEFAULT_AUTHOR = ("Ada Operator", "ada@example.invalid")


def git_env(
    author: tuple[str, str] = DEFAULT_AUTHOR,
    *,
    committer: tuple[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An environment for git (and configctl) with a fixed identity and no user config."""
    committer = committer or author
    env = dict(os.environ if base is None else base)
    for name in list(env):
        if name.startswith(("GIT_", "CONFIGCTL_")):
            del env[name]
    env.update(
        {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": committer[0],
            "GIT_COMMITTER_EMAIL": committer[1],
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_SYSTEM": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "NO_COLOR": "1",
            "LC_ALL": "C.UTF-8",
        }
    )
    return env


@dataclass
class GitRepo:
    """A git work tree at ``path`` (branch ``main``) and the helpers to change and commit it."""

    path: Path

    @classmethod
    def init(cls, path: Path, *, from_tree: Path | None = None) -> GitRepo:
        path.mkdir(parents=True, exist_ok=True)
        if from_tree is not None:
            shutil.copytree(from_tree, path, dirs_exist_ok=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", "main")
        # the default store lives in the repository; git must not see it
        (path / ".gitignore").write_text(".configctl/\n", encoding="utf-8")
        return repo

    @classmethod
    def example(cls, path: Path) -> GitRepo:
        """A copy of ``configs-example/`` with one commit."""
        repo = cls.init(path, from_tree=EXAMPLE)
        repo.commit("initial configuration")
        return repo

    def git(self, *args: str, author: tuple[str, str] = DEFAULT_AUTHOR) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=git_env(author),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    # -- the work tree --------------------------------------------------------------------

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text(encoding="utf-8")

    def replace(self, rel: str, old: str, new: str) -> None:
        """Replace exactly one occurrence of ``old`` in ``rel`` (a test typo fails loudly)."""
        text = self.read(rel)
        if text.count(old) != 1:
            raise AssertionError(f"{rel}: expected one {old!r}, found {text.count(old)}")
        self.write(rel, text.replace(old, new))

    def remove(self, rel: str) -> None:
        target = self.path / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    # -- history --------------------------------------------------------------------------

    def commit(self, message: str, *, author: tuple[str, str] = DEFAULT_AUTHOR) -> str:
        """Stage everything and commit; returns the new commit's full SHA."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.head()

    def head(self) -> str:
        return self.rev("HEAD")

    def rev(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()

    def show(self, rev: str, rel: str) -> str:
        return self.git("show", f"{rev}:{rel}")

    def branches(self) -> list[str]:
        out = self.git("for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return sorted(line for line in out.splitlines() if line)

    def current_branch(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD").strip()

    def status(self) -> str:
        return self.git("status", "--porcelain", "--untracked-files=all")

    def parents(self, rev: str) -> list[str]:
        return self.git("rev-list", "--parents", "-n", "1", rev).split()[1:]
