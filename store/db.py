"""The engine, schema creation and units of work.

SQLite is the embedded default (WAL, foreign keys on, writers queue on a busy
timeout); PostgreSQL is the scale-out store. Schema management is
`create_all` guarded by a version number in `schema_info`: an older database gains
the tables, indexes and columns added since (create_all leaves the last two out
for existing tables; a column added to an existing table must be nullable, so
old rows read as "not set"); one written by a newer Handoff is refused rather
than silently misread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, select

from store.models import SCHEMA_VERSION, Heartbeat, SchemaInfo

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_CHECK_SECONDS = 5.0
HEARTBEAT_BUSY_SECONDS = 0.5


class SchemaError(RuntimeError):
    pass


def _create_missing_indexes(connection: Connection) -> None:
    for table in SQLModel.metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)


def _add_missing_columns(connection: Connection) -> None:
    inspector = inspect(connection)
    preparer = connection.dialect.identifier_preparer
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise SchemaError(f"cannot add NOT NULL column {table.name}.{column.name}")
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(
                text(
                    f"ALTER TABLE {preparer.quote(table.name)} "
                    f"ADD COLUMN {preparer.quote(column.name)} {kind}"
                )
            )


# The databases Handoff runs on, each with the one driver it is tested with.
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
URL_EXAMPLES = "sqlite:///handoff.db or postgresql://user:password@host/dbname"
POSTGRES_EXTRA = "pip install -e '.[postgres]'"


def _engine_url(url: str) -> URL:
    """The URL with its driver named (raises ArgumentError / ValueError when malformed)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in DRIVERS and "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+{DRIVERS[backend]}")
    return parsed


def url_problem(url: str) -> str | None:
    """Why a DATABASE_URL cannot work, found without connecting; None when it can."""
    try:
        parsed = _engine_url(url)
    except (ArgumentError, ValueError):
        return f"not a database URL; expected one like {URL_EXAMPLES}"
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in DRIVERS:
        return f"{backend} is not supported; expected a URL like {URL_EXAMPLES}"
    if driver != DRIVERS[backend]:
        hint = f" (psycopg: {POSTGRES_EXTRA})" if backend == "postgresql" else ""
        return f"the {driver} driver is not supported; use {backend}://...{hint}"
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        if backend == "postgresql":
            return f"PostgreSQL needs the psycopg driver, which is not installed: {POSTGRES_EXTRA}"
        return f"cannot load the {driver} driver: {exc}"
    return None


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = _engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, **kwargs)

    engine = create_engine(
        parsed,
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

    def __init__(
        self, url: str, *, write_check_seconds: float = WRITE_CHECK_SECONDS, **engine_kwargs: Any
    ) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_bind = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.is_sqlite
            else self.engine
        )
        self.write_check_seconds = write_check_seconds
        self._write_check_lock = threading.Lock()
        self._write_checking = False
        self._write_checked: tuple[float, bool] = (-write_check_seconds, True)

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
                _add_missing_columns(session.connection())
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

    def health_problem(self) -> str | None:
        """What `/healthz` reports: None when the database answers and takes writes."""
        if not self.ping():
            return "database unavailable"
        if not self.can_write():
            return "database refuses writes"
        return None

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def can_write(self) -> bool:
        """Whether a commit reaches the database (a full disk, a read-only file or
        server still answer reads).

        Rewrites the heartbeat row at most every `write_check_seconds`; calls in between,
        or while a check is under way, get the last answer without waiting, so a storm
        of health checks costs one small write and never piles up on the write lock.
        """
        with self._write_check_lock:
            checked_at, ok = self._write_checked
            if self._write_checking or time.monotonic() - checked_at < self.write_check_seconds:
                return ok
            self._write_checking = True
        error: Exception | None = None
        try:
            error = self._write_heartbeat()
        finally:
            with self._write_check_lock:
                self._write_checked = (time.monotonic(), error is None)
                self._write_checking = False
        if error is None and not ok:
            logger.info("the database takes writes again")
        elif error is not None and ok:  # once per outage, not once per health check
            logger.warning("the database refuses writes: /healthz answers 503", exc_info=error)
        return error is None

    def _write_heartbeat(self) -> Exception | None:
        """Commit a change to the heartbeat row; the error if that failed.

        Another writer holding the lock is not a failure (writes are happening), and
        the check never waits for it more than a moment: a health check must answer.
        """
        try:
            with self.transaction(busy_timeout=HEARTBEAT_BUSY_SECONDS) as session:
                beat = update(Heartbeat).where(Heartbeat.id == 1).values(beat=Heartbeat.beat + 1)
                if session.execute(beat).rowcount == 0:  # the first check on this database
                    session.add(Heartbeat(id=1))
        except IntegrityError:  # another process's first check wrote the row: it takes writes
            return None
        except OperationalError as exc:
            return None if _busy(exc) else exc
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot write"
            return exc
        return None

    def dispose(self) -> None:
        self.engine.dispose()


def _busy(exc: OperationalError) -> bool:
    """The database is locked by another writer (SQLite's busy timeout, PostgreSQL's
    lock_timeout), as opposed to refusing the write itself."""
    return "database is locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "55P03"
