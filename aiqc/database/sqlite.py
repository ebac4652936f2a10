"""SQLite, the default: one file, no server. WAL lets readers run beside the one writer;
claims and records take the write lock up front (``BEGIN IMMEDIATE``), so no two workers
claim the same job. Only processes on the machine that holds the file can share it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any, ContextManager, Iterator

import peewee as pw

from aiqc.database._base import Storage
from aiqc.database.url import DatabaseURL
from aiqc.exceptions import (DatabaseCorruptError, DatabaseError, DatabaseFullError, DatabaseGoneError,
                             DatabaseLockedError, DatabaseReadOnlyError)

#: KiB of page cache while a dataset's samples are written (:meth:`AIQCSqliteDatabase.bulk_writes`)
BULK_CACHE_KIB = 1024

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


class AIQCSqliteDatabase(Storage, pw.SqliteDatabase):
    """peewee's SQLite database as aiqc's storage. Its rollbacks never mask the error that
    caused them: when a statement or the COMMIT fails with SQLITE_FULL (or an I/O error),
    SQLite has rolled the transaction back already, and peewee's ROLLBACK would raise "cannot
    rollback - no transaction is active" in place of the disk-full error."""

    def rollback(self) -> None:
        """ROLLBACK, unless SQLite has no transaction open any more."""
        if _transaction_open(self):
            super().rollback()

    def savepoint(self, sid: str | None = None) -> _Savepoint:
        """A savepoint with the same guard (see :class:`_Savepoint`)."""
        return _Savepoint(self, sid)

    # --- Storage ---------------------------------------------------------------------------
    def write_transaction(self) -> ContextManager[Any]:
        """``BEGIN IMMEDIATE``: the one write lock, taken before the first read."""
        return self.atomic("IMMEDIATE")

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """The page cache cut to :data:`BULK_CACHE_KIB` while the block runs (pages beyond it spill
        to the WAL mid-transaction, as SQLite does), then restored: the cache would otherwise
        hold a copy of every page written until the connection closes."""
        (size,) = self.execute_sql("PRAGMA cache_size").fetchone()
        self.execute_sql(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self.execute_sql(f"PRAGMA cache_size = {int(size)}")

    def migrator(self) -> Any:
        """playhouse's SqliteMigrator."""
        from playhouse.migrate import SqliteMigrator

        return SqliteMigrator(self)

    def translate(self, error: BaseException) -> DatabaseError | None:
        """See :func:`translate_sqlite`."""
        return translate_sqlite(error, self.path, self.read_only, self)

    def remember_identity(self) -> None:
        """Record the file's (device, inode), compared by :meth:`check_alive`."""
        stat = self.path.stat()
        self.identity = (stat.st_dev, stat.st_ino)

    def check_alive(self) -> None:
        """Raise :class:`~aiqc.exceptions.DatabaseGoneError` when the file was deleted,
        replaced by another file (another inode) or truncated to nothing since it was opened:
        SQLite would go on writing to the old, unlinked file, and every result would be lost.

        Only ``os.stat``, never ``open``: closing any descriptor of the file would drop this
        process's POSIX locks on it, which SQLite's own connections rely on (another process
        could then take itself for the last connection and delete the WAL)."""
        identity = getattr(self, "identity", None)
        if identity is None:
            return
        path = self.path
        try:
            stat = os.stat(path)
        except FileNotFoundError as error:
            raise DatabaseGoneError(
                f"database {str(path)!r} was deleted while this process had it open: nothing written since can be "
                "read back; restore the file (or aiqc.setup a new one), then run_jobs() again.") from error
        except OSError as error:
            raise DatabaseGoneError(f"database {str(path)!r} can no longer be read ({error}); check the disk, "
                                    "then run_jobs() again.") from error
        if (stat.st_dev, stat.st_ino) != identity:
            raise DatabaseGoneError(
                f"database {str(path)!r} was replaced by another file while this process had it open: what it wrote "
                "since went to the old, deleted file; check which file you want, then run_jobs() again.")
        if stat.st_size == 0:
            raise DatabaseGoneError(
                f"database {str(path)!r} was truncated to 0 bytes while this process had it open: every record in "
                "it is gone; restore it from a backup, then run_jobs() again.")

    def index_names(self) -> set[tuple[str, str]]:
        """From ``sqlite_master``."""
        return set(self.execute_sql("SELECT tbl_name, name FROM sqlite_master WHERE type = 'index'").fetchall())

    def drop_all(self, models: list[type[pw.Model]]) -> bool:
        """Close and delete the file with its WAL and shared-memory files."""
        self.close()
        return remove_files(self.path)

    def vacuum(self, models: list[type[pw.Model]]) -> int:
        """``VACUUM`` (the whole file rewritten without its free pages), between two
        checkpoints that empty the WAL into the file; the bytes the file and its WAL shrank by."""
        self.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        before = self._bytes_on_disk()
        self.execute_sql("VACUUM")
        self.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(0, before - self._bytes_on_disk())

    def _bytes_on_disk(self) -> int:
        """The size of the file and its WAL."""
        return sum(Path(f"{self.path}{suffix}").stat().st_size for suffix in ("", "-wal")
                   if Path(f"{self.path}{suffix}").exists())


def remove_files(path: Path) -> bool:
    """Delete a SQLite file and its ``-wal``/``-shm`` companions; whether any existed."""
    removed = False
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            candidate.unlink()
            removed = True
    return removed


def open_sqlite(url: DatabaseURL, read_only: bool) -> AIQCSqliteDatabase:
    """An unconnected :class:`AIQCSqliteDatabase` on the file ``url`` names (already checked)."""
    path = url.path
    if read_only:
        pragmas = {k: v for k, v in SQLITE_PRAGMAS.items() if k not in ("page_size", "journal_mode")}
        database = AIQCSqliteDatabase(f"file:{path.as_posix()}?mode=ro", pragmas=pragmas, timeout=60, uri=True,
                                      returning_clause=True)
    else:
        database = AIQCSqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, timeout=60, returning_clause=True)
    database.url, database.path, database.read_only = url, path, read_only
    return database


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


def _busy_timeout_ms(database: Any) -> str:
    """The busy timeout of this thread's connection, for a message ("60000 ms")."""
    try:
        return f"{database.execute_sql('PRAGMA busy_timeout').fetchone()[0]} ms"
    except Exception:  # noqa: BLE001 - only a detail of a message
        return "the busy timeout"


def translate_sqlite(error: BaseException, path: str | os.PathLike | None, read_only: bool = False,
                     database: Any = None) -> DatabaseError | None:
    """The :class:`~aiqc.exceptions.DatabaseError` subclass that says, in one line, what a peewee
    or sqlite3 error means for the SQLite file at ``path`` (read-only, full, locked, corrupt)
    and what to do; None when ``error`` is no such fault."""
    if not isinstance(error, (pw.PeeweeException, sqlite3.Error)):
        return None
    code, detail = _sqlite_code(error)
    if code is None:
        return None
    where = repr(str(path)) if path is not None else "the database"
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
        timeout = _busy_timeout_ms(database) if database is not None else "the busy timeout"
        return DatabaseLockedError(
            f"database {where} stayed locked by another connection for longer than {timeout} "
            f"({detail}); nothing was written; let the other process finish (or stop it), then try again.")
    if code in (_CORRUPT, _NOTADB):
        return DatabaseCorruptError(
            f"db: cannot open {where} as an aiqc SQLite database: it is not a SQLite database or is corrupt "
            f"({detail}); restore it from a backup, or choose another file (aiqc.setup, --db, AIQC_DB).")
    if code in (_IOERR, _CANTOPEN):
        return DatabaseError(f"database {where} cannot be read or written ({detail}): check that the disk and "
                             "the file are still there and readable, then try again.")
    return None


def check_location(url: DatabaseURL, read_only: bool) -> None:
    """Refuse a path that cannot be a database file, before anything is created: a folder, a
    file in a folder that does not exist (a typo should not create a new tree), or a missing
    file opened read-only."""
    from aiqc.exceptions import ValidationError

    path = url.path
    if path.is_dir():
        raise ValidationError(f"db: expected a file path; received {str(path)!r}, which is a directory.")
    if url.is_default:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise ValidationError(
            f"db: expected a path inside an existing directory; received {str(path)!r}, "
            f"whose directory {str(path.parent)!r} does not exist."
        )
    if read_only and not path.is_file():
        raise ValidationError(f"db: read_only=True needs an existing database file; {str(path)!r} does not exist.")


__all__ = ["AIQCSqliteDatabase", "SQLITE_PRAGMAS", "open_sqlite", "translate_sqlite", "check_location",
           "remove_files"]
