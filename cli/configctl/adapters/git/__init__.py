"""The git adapter: everything configctl asks of git, in one package.

- :mod:`~configctl.adapters.git.runner` -- the one way git is run (a hard timeout, its own
  process group killed on timeout, no prompts, configctl's signature keys only);
- :mod:`~configctl.adapters.git.revisions` -- the one revision check, ``rev-parse``,
  ancestry and ``git log`` records;
- :mod:`~configctl.adapters.git.trees` -- the one tree reader rule set (path rule, blob
  cache, size bound), whole-tree and incremental;
- :mod:`~configctl.adapters.git.remote` -- clone and fetch, URL and branch checks;
- :mod:`~configctl.adapters.git.signatures` -- the ``--require-signed`` verdict;
- :mod:`~configctl.adapters.git.source` -- :class:`GitSource`, the git source port the CLI
  and the reconciler read commits and trees through, and :class:`GitChangeLog`.

GitPython stays for finding and inspecting repositories (``import git`` inside the code
that needs it); bulk object reads run on the runner.
"""

from configctl.adapters.git.source import DEFAULT_TIMEOUT, GitChangeLog, GitSource

__all__ = ["DEFAULT_TIMEOUT", "GitChangeLog", "GitSource"]
