"""The engine, schema creation and units of work.

SQLite is the embedded default (WAL, foreign keys on, writers queue on a busy
timeout); PostgreSQL is the scale-out store. Schema management is
`create_all` guarded by a version number in `schema_info`: an older database gains
the indexes added since (every change so far only added indexes, which create_all
leaves out for existing tables); one written by a newer Handoff is refused rather
than silently misread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, select

from store.models import SCHEMA_VERSION, SchemaInfo

SQLITE_BUSY_TIMEOUT_MS = 30_000


class SchemaError(RuntimeError):
    pass


def _create_missing_indexes(connection: Connection) -> None:
    for table in SQLModel.metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":
            url = str(parsed.set(drivername="postgresql+psycopg"))
        return create_engine(url, pool_pre_ping=True, **kwargs)

    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that writers can BEGIN IMMEDIATE:
        # a deferred transaction that later needs the write lock can fail at once
        # with "database is locked" instead of waiting its turn.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before it returns, so a lead answered 202 (or a DM
        # marked sent) survives a power cut, not just a crash; ~0.3 ms a commit here.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        busy_ms = options.get("sqlite_busy_ms", SQLITE_BUSY_TIMEOUT_MS)
        # The timeout is the connection's, and the connection goes back to the pool:
        # set it for this unit of work only when it differs from what the last one left.
        if conn.info.get("busy_ms", SQLITE_BUSY_TIMEOUT_MS) != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
            conn.info["busy_ms"] = busy_ms
        conn.exec_driver_sql(f"BEGIN {options.get('sqlite_begin', 'DEFERRED')}")

    return engine


class Database:
    """Owns the engine; hands out short-lived sessions, one per unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_bind = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.is_sqlite
            else self.engine
        )

    def create_schema(self) -> None:
        """Create missing tables, upgrade an older schema, refuse a newer one."""
        SQLModel.metadata.create_all(self.engine)
        with self.transaction() as session:
            info = session.exec(select(SchemaInfo)).first()
            if info is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
            elif info.version > SCHEMA_VERSION:
                raise SchemaError(
                    f"database schema version {info.version}, this Handoff expects "
                    f"{SCHEMA_VERSION}; use a matching release or a fresh DATABASE_URL"
                )
            elif info.version < SCHEMA_VERSION:
                _create_missing_indexes(session.connection())
                info.version = SCHEMA_VERSION

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (writes are possible but take the write lock late)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def transaction(self, *, busy_timeout: float | None = None) -> Iterator[Session]:
        """A write unit of work: commits on success, rolls back on error.

        `busy_timeout` (seconds) bounds the wait for a database another writer holds
        (SQLite's busy timeout, PostgreSQL's lock_timeout); past it the unit of work
        fails with OperationalError. Default: SQLite waits 30 s, PostgreSQL as configured.
        """
        bind = self._write_bind
        if busy_timeout is not None and self.is_sqlite:
            bind = bind.execution_options(sqlite_busy_ms=max(1, int(busy_timeout * 1000)))
        with Session(bind, expire_on_commit=False) as session, session.begin():
            if busy_timeout is not None and not self.is_sqlite:
                ms = max(1, int(busy_timeout * 1000))
                session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def dispose(self) -> None:
        self.engine.dispose()
