"""The active definition: held in the database, swapped in live.

Every process judges with the version the database calls active. At start the
file is compared with it: an empty database takes the file as its first version
(numbered with the file's own `version`); a file that differs changes nothing until
both owners approve it (`handoff definition propose`), and the log says so. Each
sweep asks the database which version is active (one indexed row) and, when that
changed, parses the new one and swaps it in, so every process follows an approval
within one sweep interval without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy.exc import IntegrityError

from bot import clock
from bot.definition import Definition, DefinitionError, parse_definition, yaml_problem
from store import governance as store
from store.db import Database
from store.models import DefinitionState, DefinitionVersion

logger = logging.getLogger(__name__)

BOOTSTRAP, APPROVED, FORCED = "bootstrap", "approved", "forced"


def parse_text(text: str, *, source: str) -> Definition:
    """A definition from its YAML text, or DefinitionError listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError([yaml_problem(exc)]) from None
    return parse_definition(data, source=source)


def stored(row: DefinitionVersion) -> Definition:
    """A stored version, numbered as the database numbers it."""
    definition = parse_text(row.yaml_text, source=f"version {row.number or f'#{row.id}'}")
    if row.number is None:
        return definition
    return dataclasses.replace(definition, version=row.number)


def file_text(definition: Definition) -> str | None:
    """The definition's YAML: its file's text, or its parsed data written out."""
    try:
        return Path(definition.source).read_text(encoding="utf-8")
    except OSError:
        if definition.data is None:
            return None
        return yaml.safe_dump(definition.data, sort_keys=False, allow_unicode=True)


def differs_warning(file: Definition, number: int) -> str:
    return (
        f"{Path(file.source).name} differs from the active version {number}; "
        "propose it with: handoff definition propose"
    )


class ActiveDefinition:
    """The definition this process judges with, and the version it is."""

    def __init__(self, db: Database, row_id: int, definition: Definition) -> None:
        self.db = db
        self._key = (row_id, definition.version)
        self._current = definition
        self._by_number: dict[int, Definition] = {definition.version: definition}
        self._listeners: list[Callable[[Definition, Definition], None]] = []
        self._lock = threading.Lock()

    @property
    def current(self) -> Definition:
        return self._current

    def text(self) -> str:
        """The active version's YAML as it was approved (comments and all)."""
        with self.db.session() as session:
            row = store.get(session, self._key[0])
        if row is not None:
            return row.yaml_text
        return file_text(self._current) or ""

    def on_switch(self, listener: Callable[[Definition, Definition], None]) -> None:
        """Call `listener(old, new)` after each switch (the digest's schedule)."""
        self._listeners.append(listener)

    def refresh(self) -> bool:
        """Swap in the active version if another one became active; True when it did."""
        with self.db.session() as session:
            key = store.active_key(session)
            if key is None or key == self._key:
                return False
            row = store.get(session, key[0])
        assert row is not None
        new = stored(row)
        with self._lock:
            if self._key == key:
                return False
            old, self._current, self._key = self._current, new, key
            self._by_number[new.version] = new
        logger.info("now judging with definition version %s (was %s)", new.version, old.version)
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:
                logger.exception("after the switch to definition version %s", new.version)
        return True

    def at_version(self, number: int | None) -> Definition:
        """The definition numbered `number` (a handoff's), else the current one."""
        if number is None:
            return self._current
        known = self._by_number.get(number)
        if known is not None:
            return known
        with self.db.session() as session:
            row = store.by_number(session, number)
        if row is None:
            return self._current
        definition = stored(row)
        self._by_number[number] = definition
        return definition


def establish(db: Database, file: Definition, *, report: bool = True) -> ActiveDefinition:
    """The active version, stored from the file when the database has none yet.

    `report` (the app): log the first version stored at INFO, and a file that differs
    from the active version at WARNING; a CLI command says what it has to say itself."""
    for _ in range(3):
        with db.session() as session:
            row = store.active(session)
        if row is not None:
            break
        text = file_text(file)
        if text is None:
            raise DefinitionError([f"{file.source}: cannot read the definition to store it"])
        try:
            with db.transaction() as session:
                row = store.add(
                    session,
                    DefinitionVersion(
                        number=file.version,
                        fingerprint=file.fingerprint,
                        yaml_text=text,
                        state=DefinitionState.ACTIVE,
                        created_at=clock.now(),
                        proposed_by="file",
                        note=f"{Path(file.source).name} on an empty database",
                        activated_how=BOOTSTRAP,
                        activated_at=clock.now(),
                        activated_by="file",
                    ),
                )
            logger.log(
                logging.INFO if report else logging.DEBUG,
                "definition version %s stored from %s",
                file.version,
                file.source,
            )
            break
        except IntegrityError:  # another process stored it first: read theirs
            row = None
    if row is None:
        raise RuntimeError("could not establish the active definition")
    definition = stored(row)
    if report and row.fingerprint != file.fingerprint:
        logger.warning(differs_warning(file, definition.version))
    return ActiveDefinition(db, row.id, definition)  # type: ignore[arg-type]


def log_lines(db: Database) -> list[str]:
    """`handoff definition log`: every version, then the proposals still open."""
    with db.session() as session:
        rows = store.versions(session)
        pending = store.open_proposals(session)
    lines = [f"{'version':<8} {'active since (UTC)':<17}  {'how':<9}  {'by':<40}  note"]
    for row in rows:
        when = row.activated_at.strftime("%Y-%m-%d %H:%M") if row.activated_at else "—"
        mark = "  (active)" if row.state == DefinitionState.ACTIVE else ""
        note = row.why if row.activated_how == FORCED else row.note
        proposal = f"#{row.id} by {row.proposed_by}" if row.activated_how != BOOTSTRAP else ""
        detail = "; ".join(part for part in (proposal, note or "") if part)
        lines.append(
            f"{row.number!s:<8} {when:<17}  {row.activated_how or '—':<9}  "
            f"{row.activated_by or '—':<40}  {detail}{mark}"
        )
    for row in pending:
        approved = [r for r in ("marketing", "sales") if getattr(row, f"{r}_approved_by")]
        waiting = ", ".join(approved) + " approved" if approved else "no approval yet"
        lines.append(f"open proposal #{row.id} by {row.proposed_by}: {waiting}")
    return lines
