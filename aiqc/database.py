"""Opening, creating and removing the database that holds every aiqc record."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import peewee as pw

from aiqc import caches
from aiqc.config import resolve_db_path
from aiqc.exceptions import (DatabaseCorruptError, DatabaseError, DatabaseFullError, DatabaseGoneError,
                             DatabaseLockedError, DatabaseReadOnlyError, SchemaTooNewError, SchemaTooOldError,
                             ValidationError)
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


def _transaction_open(database: pw.Database) -> bool:
    """Whether SQLite itself still has a transaction open on this thread's connection (it rolls
    one back on its own after SQLITE_FULL, SQLITE_IOERR or a failed COMMIT)."""
    connection = None if database.is_closed() else database.connection()
    return connection is not None and connection.in_transaction


class _Savepoint(pw._savepoint):
    """A savepoint whose rollback is skipped when SQLite already rolled the whole transaction
    back, so that "no such savepoint" never replaces the error that caused it."""

    def rollback(self, begin: bool = True) -> None:
        """Roll back to the savepoint, unless the transaction is gone already."""
        if _transaction_open(self.db):
            super().rollback(begin)


class AIQCSqliteDatabase(pw.SqliteDatabase):
    """peewee's SQLite database whose rollbacks never mask the error that caused them: when a
    statement or the COMMIT fails with SQLITE_FULL (or an I/O error), SQLite has rolled the
    transaction back already, and peewee's ROLLBACK would raise "cannot rollback - no
    transaction is active" in place of the disk-full error."""

    def rollback(self) -> None:
        """ROLLBACK, unless SQLite has no transaction open any more."""
        if _transaction_open(self):
            super().rollback()

    def savepoint(self, sid: str | None = None) -> _Savepoint:
        """A savepoint with the same guard (see :class:`_Savepoint`)."""
        return _Savepoint(self, sid)


#: (st_dev, st_ino) of each database file this process opened, by path: a worker compares
#: them between jobs to notice the file deleted or replaced under it
_identities: dict[str, tuple[int, int]] = {}


def setup(db: str | os.PathLike | None = None, read_only: bool = False) -> Path:
    """Open the aiqc database, creating the file and its tables if needed.

    ``db`` is a path to a SQLite file; without it, the ``AIQC_DB`` environment variable
    or ``aiqc.sqlite3`` in the user's data directory. Safe to call again: the same
    database stays open, another one replaces it. Returns the file's path.

    ``read_only=True`` opens an existing file read-only (SQLite's ``mode=ro``), to read
    results from a file this process may not write: every write raises
    :class:`~aiqc.exceptions.DatabaseReadOnlyError`. A fault of the file raises a subclass
    of :class:`~aiqc.exceptions.DatabaseError`: read-only, full, locked, corrupt, or a
    schema too old or too new.
    """
    if db is not None and not isinstance(db, (str, os.PathLike)):
        raise ValidationError.expected("db", "None or a path to a SQLite file", db)
    if not isinstance(read_only, bool):
        raise ValidationError.expected("read_only", "True or False", read_only)
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
    if read_only and not path.is_file():
        raise ValidationError(f"db: read_only=True needs an existing database file; {str(path)!r} does not exist.")
    path = path.resolve()
    current = database_proxy.obj
    if current is not None and _path_of(current) == path and getattr(current, "read_only", False) == read_only:
        return path
    if current is not None:
        current.close()
    if read_only:
        pragmas = {k: v for k, v in SQLITE_PRAGMAS.items() if k not in ("page_size", "journal_mode")}
        database = AIQCSqliteDatabase(f"file:{path.as_posix()}?mode=ro", pragmas=pragmas, timeout=60, uri=True)
    else:
        database = AIQCSqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, timeout=60)
    database.read_only = read_only
    database.path = path
    try:
        database.connect(reuse_if_open=True)
        database_proxy.initialize(database)
        _create_schema(database, read_only)
        stat = path.stat()
    except BaseException as error:
        database.close()
        database_proxy.initialize(None)
        fault = translate(error, path)
        if fault is not None and fault is not error:
            raise fault from error
        if isinstance(error, (pw.DatabaseError, sqlite3.DatabaseError)):
            raise DatabaseError(f"db: cannot open {str(path)!r} as an aiqc SQLite database: {error}") from error
        raise
    _identities[str(path)] = (stat.st_dev, stat.st_ino)
    logger.info("aiqc database: %s%s", path, " (read-only)" if read_only else "")
    return path


def _create_schema(database: pw.Database, read_only: bool = False) -> None:
    path = _path_of(database)
    with database.atomic():
        if SchemaInfo.table_exists():
            row = SchemaInfo.get_or_none(SchemaInfo.key == "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"db: {str(path)!r} has schema version {row.value}, newer than this aiqc's {SCHEMA_VERSION}: "
                    "it was written by a newer aiqc; upgrade aiqc (pip install -U aiqc) to open it."
                )
        if read_only:
            _check_columns(database)
            return
        database.create_tables(MODELS, safe=True)
        _add_missing_columns(database)
        if SchemaInfo.get_or_none(SchemaInfo.key == "schema_version") is None:
            SchemaInfo.create(key="schema_version", value=str(SCHEMA_VERSION))


def _check_columns(database: pw.Database) -> None:
    """Read-only: a table or column this aiqc needs is missing (it cannot be added)."""
    tables = set(database.get_tables())
    for model in MODELS:
        table = model._meta.table_name
        present = {c.name for c in database.get_columns(table)} if table in tables else set()
        missing = [f.column_name for f in model._meta.sorted_fields if f.column_name not in present]
        if missing:
            raise SchemaTooOldError(
                f"db: {str(_path_of(database))!r}, opened read-only, lacks table {table!r} or its column(s) "
                f"{missing}; open it writable once (aiqc.setup(path)) so that aiqc adds them."
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
                raise SchemaTooOldError(
                    f"db: {str(_path_of(database))!r}: table {table!r} lacks the required column "
                    f"{field.column_name!r}, which no migration of this aiqc adds (the file was written by an "
                    "older, incompatible aiqc); open it with the aiqc version that wrote it, or start a new database.")
            migrate(migrator.add_column(table, field.column_name, field))
            logger.info("database: added column %s.%s", table, field.column_name)


def _path_of(database: Any) -> Path | None:
    """The file of a database opened by :func:`setup` (None for any other)."""
    path = getattr(database, "path", None)
    return path if path is not None else (Path(database.database) if database is not None else None)


#: SQLite's primary result codes (``error.sqlite_errorcode & 0xFF``) that name a fault of the file
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
#: the same faults by message, for errors without a code (older Pythons, peewee's own wrappers)
_MESSAGES = {"database is locked": _BUSY, "database table is locked": _LOCKED,
             "attempt to write a readonly database": _READONLY, "disk i/o error": _IOERR,
             "database disk image is malformed": _CORRUPT, "database or disk is full": _FULL,
             "unable to open database file": _CANTOPEN, "file is not a database": _NOTADB}


def _sqlite_code(error: BaseException) -> tuple[int | None, str]:
    """SQLite's primary result code behind ``error`` (peewee wraps sqlite3's exception: it is
    in ``args[0]`` and the context), and its message."""
    seen: set[int] = set()
    candidates = [error]
    while candidates:
        candidate = candidates.pop(0)
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        if isinstance(candidate, sqlite3.Error):
            code = getattr(candidate, "sqlite_errorcode", None)
            if code is not None:
                return code & 0xFF, str(candidate)
        text = str(candidate).lower()
        for message, code in _MESSAGES.items():
            if message in text:
                return code, str(candidate)
        candidates += [a for a in getattr(candidate, "args", ()) if isinstance(a, BaseException)]
        candidates += [candidate.__cause__, candidate.__context__]
    return None, str(error)


def _busy_timeout_ms() -> str:
    """The busy timeout of this thread's connection, for a message ("60000 ms")."""
    try:
        return f"{database_proxy.obj.execute_sql('PRAGMA busy_timeout').fetchone()[0]} ms"
    except Exception:  # noqa: BLE001 - only a detail of a message
        return "the busy timeout"


def translate(error: BaseException, path: str | os.PathLike | None = None) -> DatabaseError | None:
    """The :class:`~aiqc.exceptions.DatabaseError` subclass that says, in one line, what a peewee
    or sqlite3 error means for the database file (read-only, full, locked, corrupt) and what to
    do; None when ``error`` is no such fault. An aiqc DatabaseError is returned as it is.
    ``path`` defaults to the open database's. Raise the result ``from error``."""
    if isinstance(error, DatabaseError):
        return error
    if not isinstance(error, (pw.PeeweeException, sqlite3.Error)):
        return None
    code, detail = _sqlite_code(error)
    if code is None:
        return None
    if path is None:
        path = _path_of(database_proxy.obj)
    where = repr(str(path)) if path is not None else "the database"
    read_only = getattr(database_proxy.obj, "read_only", False)
    if code == _CANTOPEN and path is not None and not (
            os.access(path, os.W_OK) and os.access(Path(path).parent, os.W_OK)):
        code = _READONLY
    if code == _READONLY:
        how = ("it was opened with read_only=True; open it with aiqc.setup(path) to write" if read_only else
               "make the file and its folder writable by this user (chmod u+w), or copy it somewhere writable")
        return DatabaseReadOnlyError(f"database {where} is read-only ({detail}): nothing was written; {how}.")
    if code == _FULL:
        return DatabaseFullError(
            f"database {where} is full ({detail}): the disk, or a size limit, has no room left, and the write was "
            "rolled back; free disk space, then try again (run_jobs() again finishes the jobs left undone).")
    if code in (_BUSY, _LOCKED):
        return DatabaseLockedError(
            f"database {where} stayed locked by another connection for longer than {_busy_timeout_ms()} "
            f"({detail}); nothing was written; let the other process finish (or stop it), then try again.")
    if code in (_CORRUPT, _NOTADB):
        return DatabaseCorruptError(
            f"db: cannot open {where} as an aiqc SQLite database: it is not a SQLite database or is corrupt "
            f"({detail}); restore it from a backup, or choose another file (aiqc.setup, --db, AIQC_DB).")
    if code in (_IOERR, _CANTOPEN):
        return DatabaseError(f"database {where} cannot be read or written ({detail}): check that the disk and "
                             "the file are still there and readable, then try again.")
    return None


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Context manager and decorator: a peewee or sqlite3 error that is a fault of the
    database file leaves as its :class:`~aiqc.exceptions.DatabaseError` subclass, raised
    ``from`` the original; any other error leaves unchanged."""
    try:
        yield
    except (pw.PeeweeException, sqlite3.Error) as error:
        fault = translate(error)
        if fault is None:
            raise
        raise fault from error


def check_file() -> None:
    """Raise :class:`~aiqc.exceptions.DatabaseGoneError` when the open database's file was
    deleted, replaced by another file (another inode) or truncated to nothing since
    :func:`setup` opened it: SQLite would go on writing to the old, unlinked file, and every
    result would be lost.

    Only ``os.stat``, never ``open``: closing any descriptor of the file would drop this
    process's POSIX locks on it, which SQLite's own connections rely on (another process
    could then take itself for the last connection and delete the WAL)."""
    database = database_proxy.obj
    path = _path_of(database)
    if database is None or path is None or str(path) not in _identities:
        return
    try:
        stat = os.stat(path)
    except FileNotFoundError as error:
        raise DatabaseGoneError(
            f"database {str(path)!r} was deleted while this process had it open: nothing written since can be "
            "read back; restore the file (or aiqc.setup a new one), then run_jobs() again.") from error
    except OSError as error:
        raise DatabaseGoneError(f"database {str(path)!r} can no longer be read ({error}); check the disk, "
                                "then run_jobs() again.") from error
    if (stat.st_dev, stat.st_ino) != _identities[str(path)]:
        raise DatabaseGoneError(
            f"database {str(path)!r} was replaced by another file while this process had it open: what it wrote "
            "since went to the old, deleted file; check which file you want, then run_jobs() again.")
    if stat.st_size == 0:
        raise DatabaseGoneError(
            f"database {str(path)!r} was truncated to 0 bytes while this process had it open: every record in it "
            "is gone; restore it from a backup, then run_jobs() again.")


def schema_version() -> int:
    """The schema version recorded in the open database (opening the default one if needed)."""
    ensure_setup()
    return int(SchemaInfo.get(SchemaInfo.key == "schema_version").value)


def ensure_setup() -> pw.Database:
    """The bound database, opening the default one on first use."""
    return ensure_database()


def current_path() -> Path | None:
    """Path of the open database, or None before :func:`setup`."""
    return _path_of(database_proxy.obj)


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
