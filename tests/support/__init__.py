"""Test helpers that more than one test module needs, each in one place.

``gitrepo``  real git repositories with a fixed identity and no user configuration;
``cli``      the installed `configctl` in a subprocess, against one repository and store;
``sql``      the store read back with plain SQL (SQLite and PostgreSQL) and its fixture;
``trees``    config trees written to disk (files, copies of the data trees, generated);
``waits``    waiting on a condition with a deadline, never a bare sleep;
``tools``    system tools a test needs: missing means failed, never skipped.
"""
