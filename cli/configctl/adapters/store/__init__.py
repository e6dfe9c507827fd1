"""The version store: SQLAlchemy 2 over PostgreSQL (psycopg 3) or SQLite, one schema for both.

``store`` holds :class:`SqlStore` and its unit of work, ``models`` the tables, ``engine``
the engine factory (SQLite pragmas, the ``BEGIN IMMEDIATE`` hook, URL normalisation) and
``migrations`` the alembic scripts, shipped inside the package so an installed wheel can
migrate. Importing this package loads SQLAlchemy: import it only where the store is used.
"""

from configctl.adapters.store.engine import default_sqlite_url, make_engine, normalize_url
from configctl.adapters.store.store import SqlStore, UnitOfWork

__all__ = ["SqlStore", "UnitOfWork", "default_sqlite_url", "make_engine", "normalize_url"]
