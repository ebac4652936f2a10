"""Opening, creating and removing the database that holds every aiqc record."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import peewee as pw

from aiqc import caches
from aiqc.config import resolve_db_path
from aiqc.exceptions import DatabaseError, ValidationError
from aiqc.orm import MODELS, SCHEMA_VERSION, SchemaInfo, database_proxy
from aiqc.orm.base import ensure_database, register_default_opener

logger = logging.getLogger(__name__)

#: SQLite settings: concurrent readers with one writer (WAL), wait instead of failing
#: when another process writes (busy_timeout, ms), and enforced foreign keys.
SQLITE_PRAGMAS = {
    "page_size": 32768,  # new files only: large pages store dataset parts ~2x faster
    "journal_mode": "wal",
    "busy_timeout": 60_000,
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -16 * 1024,  # KiB
}


def setup(db: str | os.PathLike | None = None) -> Path:
    """Open the aiqc database, creating the file and its tables if needed.

    ``db`` is a path to a SQLite file; without it, the ``AIQC_DB`` environment variable
    or ``aiqc.sqlite3`` in the user's data directory. Safe to call again: the same
    database stays open, another one replaces it. Returns the file's path.
    """
    if db is not None and not isinstance(db, (str, os.PathLike)):
        raise ValidationError.expected("db", "None or a path to a SQLite file", db)
    if isinstance(db, str) and "://" in db:
        raise ValidationError(
            f"db: expected a path to a SQLite file; received the URL {db!r}. "
            "PostgreSQL URLs are not supported yet."
        )
    path, is_default = resolve_db_path(db)
    if path.is_dir():
        raise ValidationError(f"db: expected a file path; received {str(path)!r}, which is a directory.")
    if is_default:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise ValidationError(
            f"db: expected a path inside an existing directory; received {str(path)!r}, "
            f"whose directory {str(path.parent)!r} does not exist."
        )
    path = path.resolve()
    current = database_proxy.obj
    if current is not None and Path(current.database) == path:
        return path
    if current is not None:
        current.close()
    database = pw.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, timeout=60)
    try:
        database.connect(reuse_if_open=True)
        database_proxy.initialize(database)
        _create_schema(database)
    except (pw.DatabaseError, sqlite3.DatabaseError) as error:
        database.close()
        database_proxy.initialize(None)
        raise DatabaseError(f"db: cannot open {str(path)!r} as an aiqc SQLite database: {error}") from error
    logger.info("aiqc database: %s", path)
    return path


def _create_schema(database: pw.Database) -> None:
    with database.atomic():
        database.create_tables(MODELS, safe=True)
        _add_missing_columns(database)
        row = SchemaInfo.get_or_none(SchemaInfo.key == "schema_version")
        if row is None:
            SchemaInfo.create(key="schema_version", value=str(SCHEMA_VERSION))
        elif int(row.value) > SCHEMA_VERSION:
            raise DatabaseError(
                f"the database has schema version {row.value}, newer than this aiqc's "
                f"{SCHEMA_VERSION}; upgrade aiqc to use it."
            )


def _add_missing_columns(database: pw.Database) -> None:
    """Additive migration: nullable columns added since a file was created get added to it."""
    from playhouse.migrate import SqliteMigrator, migrate

    migrator = SqliteMigrator(database)
    for model in MODELS:
        table = model._meta.table_name
        present = {c.name for c in database.get_columns(table)}
        missing = [f for f in model._meta.sorted_fields if f.column_name not in present]
        for field in missing:
            if not field.null:
                raise DatabaseError(f"table {table!r} lacks the required column {field.column_name!r}; "
                                    "this file needs a newer migration than this aiqc has.")
            migrate(migrator.add_column(table, field.column_name, field))
            logger.info("database: added column %s.%s", table, field.column_name)


def schema_version() -> int:
    """The schema version recorded in the open database (opening the default one if needed)."""
    ensure_setup()
    return int(SchemaInfo.get(SchemaInfo.key == "schema_version").value)


def ensure_setup() -> pw.Database:
    """The bound database, opening the default one on first use."""
    return ensure_database()


def current_path() -> Path | None:
    """Path of the open database, or None before :func:`setup`."""
    database = database_proxy.obj
    return None if database is None else Path(database.database)


def clear_caches() -> None:
    """Forget what this process cached from a database (read data, encoded samples, models)."""
    caches.clear()


def destroy_db(confirm: bool = False, db: str | os.PathLike | None = None) -> bool:
    """Delete the database file (the open one, or ``db``). Nothing happens unless
    ``confirm=True``. Returns whether a file was removed."""
    if confirm is not True:
        raise ValidationError(
            f"confirm: expected True to delete the database and every record in it; received {confirm!r}. "
            "Nothing was deleted."
        )
    path = current_path() if db is None else None
    if path is None:
        path = resolve_db_path(db)[0].resolve()
    if current_path() == path:
        database_proxy.obj.close()
        database_proxy.initialize(None)
    clear_caches()
    removed = False
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            candidate.unlink()
            removed = True
    logger.info("aiqc database removed: %s", path)
    return removed


register_default_opener(setup)
