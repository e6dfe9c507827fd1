"""Alembic environment of the version store.

configctl runs migrations programmatically (``SqlStore.upgrade``): the store opens the
connection, begins the transaction, takes the writer lock and hands the connection over in
``config.attributes["connection"]``; alembic then runs inside that transaction (it does not
commit an external one), so a migration and its ``alembic_version`` row land together.

For development, ``alembic -x url=sqlite:///x.db upgrade head`` (with ``script_location``
pointing here) works too: without a handed-over connection an engine is made from the
``url`` argument.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from configctl.adapters.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: later revisions use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    from configctl.adapters.store.engine import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no connection handed over and no -x url=... given")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
