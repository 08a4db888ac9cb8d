"""Schema creation and upgrade on a real SQLite file."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from store.db import Database, SchemaError
from store.models import SCHEMA_VERSION


def _handoff_indexes(database: Database) -> set[str]:
    return {index["name"] for index in inspect(database.engine).get_indexes("handoff")}


def _set_version(database: Database, version: int) -> None:
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET version = :v"), {"v": version})


def test_an_older_database_gains_the_new_indexes_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_schema()
    with old.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_handoff_decided"))
        conn.execute(text("DROP INDEX ix_handoff_assigned"))
        conn.execute(
            text(
                "INSERT INTO lead (external_id, payload_hash, status, qualified, ready, hot,"
                " score, attributes, signals, created_at, updated_at) VALUES ('crm-1', 'h',"
                " 'nurture', 0, 0, 0, 0, '{}', '[]', '2026-11-23', '2026-11-23')"
            )
        )
    _set_version(old, 1)
    old.dispose()

    upgraded = Database(url)
    upgraded.create_schema()

    assert {"ix_handoff_decided", "ix_handoff_assigned"} <= _handoff_indexes(upgraded)
    with upgraded.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_info")).scalar() == SCHEMA_VERSION
        assert conn.execute(text("SELECT external_id FROM lead")).scalars().all() == ["crm-1"]
    upgraded.dispose()


def test_an_older_database_gains_the_columns_added_since(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_schema()
    with old.engine.begin() as conn:
        conn.execute(text("ALTER TABLE handoff DROP COLUMN late_seconds"))
    _set_version(old, 2)
    old.dispose()

    upgraded = Database(url)
    upgraded.create_schema()

    columns = {column["name"] for column in inspect(upgraded.engine).get_columns("handoff")}
    assert "late_seconds" in columns
    upgraded.dispose()


def test_a_database_from_a_newer_handoff_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    database = Database(url)
    database.create_schema()
    _set_version(database, SCHEMA_VERSION + 1)

    with pytest.raises(SchemaError) as refused:
        database.create_schema()

    assert str(refused.value) == (
        f"database schema version {SCHEMA_VERSION + 1}, this Handoff expects "
        f"{SCHEMA_VERSION}; use a matching release or a fresh DATABASE_URL"
    )
    database.dispose()


def test_every_sqlite_connection_is_durable_and_checks_foreign_keys(tmp_path):
    """WAL with synchronous=FULL: a commit (a lead answered 202) survives a power
    cut; foreign keys on, so no handoff can point at a lead that is not there."""
    database = Database(f"sqlite:///{tmp_path / 'handoff.db'}")
    database.create_schema()
    with database.engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys")
        }
        with pytest.raises(Exception, match="FOREIGN KEY"):
            conn.exec_driver_sql(
                "INSERT INTO sla_timer (handoff_id, kind, fraction, due_at, status, late)"
                " VALUES (999, 'remind', 0.5, '2026-11-23', 'pending', 0)"
            )
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
