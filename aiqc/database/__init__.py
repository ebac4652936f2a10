"""Opening, creating and removing the database that holds every aiqc record.

One string names the database (:mod:`aiqc.database.url`): a SQLite file (the default), or a
PostgreSQL server shared by a team and by workers on several machines. Each kind is a peewee
database with the small :class:`~aiqc.database._base.Storage` interface mixed in
(:mod:`aiqc.database.sqlite`, :mod:`aiqc.database.postgres`); the code above this package
never asks which kind it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import peewee as pw

from aiqc import caches
from aiqc.database._base import Storage
from aiqc.database.url import POSTGRESQL, SQLITE, DatabaseURL, parse
from aiqc.exceptions import DatabaseError, SchemaTooNewError, SchemaTooOldError, ValidationError
from aiqc.orm import MODELS, SCHEMA_VERSION, SchemaInfo, database_proxy
from aiqc.orm.base import ensure_database, register_default_opener

logger = logging.getLogger(__name__)


def _open_sqlite(url: DatabaseURL, read_only: bool) -> Storage:
    from aiqc.database.sqlite import check_location, open_sqlite

    check_location(url, read_only)
    return open_sqlite(url, read_only)


def _open_postgresql(url: DatabaseURL, read_only: bool) -> Storage:
    from aiqc.database.postgres import open_postgresql

    return open_postgresql(url, read_only)


#: how to open each kind of database: (url, read_only) -> an unconnected Storage
OPENERS: dict[str, Callable[[DatabaseURL, bool], Storage]] = {SQLITE: _open_sqlite, POSTGRESQL: _open_postgresql}


def setup(db: str | os.PathLike | None = None, read_only: bool = False) -> Path | str:
    """Open the aiqc database, creating its tables if needed.

    ``db`` is a path to a SQLite file, ``sqlite:///path``, or
    ``postgresql://user:password@host:port/dbname`` (``pip install 'aiqc[postgres]'``);
    without it, the ``AIQC_DB`` environment variable or ``aiqc.sqlite3`` in the user's data
    directory. Safe to call again: the same database stays open, another one replaces it.
    Returns the SQLite file's path, or the PostgreSQL URL with its password masked.

    ``read_only=True`` opens an existing database read-only (SQLite's ``mode=ro``; a
    read-only PostgreSQL session): every write raises
    :class:`~aiqc.exceptions.DatabaseReadOnlyError`. A fault raises a subclass of
    :class:`~aiqc.exceptions.DatabaseError`: read-only, full, locked, corrupt, unreachable
    (host:port named, password masked), or a schema too old or too new.
    """
    if not isinstance(read_only, bool):
        raise ValidationError.expected("read_only", "True or False", read_only)
    url = _resolved(parse(db))
    current = database_proxy.obj
    if isinstance(current, Storage) and current.url.secret == url.secret and current.read_only == read_only:
        return _shown(current.url)
    database = OPENERS[url.kind](url, read_only)
    with _opening(database):
        database.connect(reuse_if_open=True)  # unreachable: the database open until now stays open
    if current is not None:
        current.close()
    with _opening(database, unbind=True):
        database_proxy.initialize(database)
        _create_schema(database, read_only)
        database.remember_identity()
    logger.info("aiqc database: %s%s", url.display, " (read-only)" if read_only else "")
    return _shown(url)


def _resolved(url: DatabaseURL) -> DatabaseURL:
    """A SQLite URL with its path made absolute (the default location: its folder created)."""
    if not url.is_sqlite:
        return url
    return DatabaseURL(SQLITE, path=url.path.resolve(), is_default=url.is_default)


def _shown(url: DatabaseURL) -> Path | str:
    """What :func:`setup` returns: the SQLite file's path, or the masked URL."""
    return url.path if url.is_sqlite else url.display


@contextlib.contextmanager
def _opening(database: Storage, unbind: bool = False) -> Iterator[None]:
    """An error in the block closes ``database`` (and unbinds it) and leaves as the one-line
    :class:`~aiqc.exceptions.DatabaseError` it means; a server's driver error is not chained
    (its frames hold the connection's parameters)."""
    try:
        yield
    except BaseException as error:
        database.close()
        if unbind:
            database_proxy.initialize(None)
        fault = _fault_on_open(database, error)
        if fault is None or fault is error:
            raise
        if database.url.is_sqlite:
            raise fault from error
        raise fault from None


def _fault_on_open(database: Storage, error: BaseException) -> BaseException | None:
    """What an error while opening means: a DatabaseError subclass in one line, or None."""
    if isinstance(error, DatabaseError):
        return error
    if database.url.is_sqlite:
        fault = database.translate(error)
        if fault is None and isinstance(error, pw.DatabaseError):
            return DatabaseError(f"db: cannot open {str(database.url.path)!r} as an aiqc SQLite database: {error}")
        return fault
    from aiqc.database.postgres import translate_postgresql

    return translate_postgresql(error, database.url, opening=True)


def _create_schema(database: Storage, read_only: bool = False) -> None:
    """Check the schema version; create missing tables and indexes and add missing columns.
    A database whose schema is complete gets no DDL at all: on PostgreSQL even ``CREATE ...
    IF NOT EXISTS`` locks tables, and a worker opening the database would deadlock with
    workers already writing jobs. Read-only, a missing index is no fault (queries are only
    slower): the next writable open adds it."""
    if read_only:
        _check_version(database)
        _check_columns(database)
        return
    if _check_version(database) and not _missing(database) and not _missing_indexes(database):
        return
    with database.schema_lock(), database.atomic():
        _check_version(database)  # another process may have created or upgraded it meanwhile
        indexes = _missing_indexes(database)
        database.create_tables(MODELS, safe=True)  # missing tables; missing indexes (CREATE INDEX IF NOT EXISTS)
        _add_missing_columns(database)
        for table, index in indexes:
            logger.info("database: added index %s on %s", index, table)
        if SchemaInfo.get_or_none(SchemaInfo.key == "schema_version") is None:
            SchemaInfo.create(key="schema_version", value=str(SCHEMA_VERSION))


def _check_version(database: Storage) -> bool:
    """Raise :class:`~aiqc.exceptions.SchemaTooNewError` for a database written by a newer
    aiqc; whether a schema version is recorded at all."""
    if not SchemaInfo.table_exists():
        return False
    row = SchemaInfo.get_or_none(SchemaInfo.key == "schema_version")
    if row is not None and int(row.value) > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"db: {database.url.display!r} has schema version {row.value}, newer than this aiqc's {SCHEMA_VERSION}: "
            "it was written by a newer aiqc; upgrade aiqc (pip install -U aiqc) to open it."
        )
    return row is not None


def _missing(database: Storage) -> dict[str, list[str]]:
    """``{table: [missing columns]}`` for every table that lacks something this aiqc needs
    (a missing table: every column)."""
    tables = set(database.get_tables())
    missing = {}
    for model in MODELS:
        table = model._meta.table_name
        present = {c.name for c in database.get_columns(table)} if table in tables else set()
        columns = [f.column_name for f in model._meta.sorted_fields if f.column_name not in present]
        if columns:
            missing[table] = columns
    return missing


def _missing_indexes(database: Storage) -> list[tuple[str, str]]:
    """``(table, index name)`` of each index a model declares (its own indexes, and those of
    its indexed fields) that is missing from its existing table, e.g. one added to the models
    since the database was created (two catalog queries)."""
    present = database.index_names()
    tables = set(database.get_tables())
    return [(model._meta.table_name, index._name) for model in MODELS if model._meta.table_name in tables
            for index in model._meta.fields_to_index()
            if (model._meta.table_name, index._name) not in present]


def _check_columns(database: Storage) -> None:
    """Read-only: a table or column this aiqc needs is missing (it cannot be added)."""
    for table, missing in _missing(database).items():
        raise SchemaTooOldError(
            f"db: {database.url.display!r}, opened read-only, lacks table {table!r} or its column(s) "
            f"{missing}; open it writable once (aiqc.setup(db)) so that aiqc adds them."
        )


def _add_missing_columns(database: Storage) -> None:
    """Additive migration: nullable columns added since a database was created get added to it."""
    from playhouse.migrate import migrate

    migrator = database.migrator()
    for model in MODELS:
        table = model._meta.table_name
        present = {c.name for c in database.get_columns(table)}
        missing = [f for f in model._meta.sorted_fields if f.column_name not in present]
        for field in missing:
            if not field.null:
                raise SchemaTooOldError(
                    f"db: {database.url.display!r}: table {table!r} lacks the required column "
                    f"{field.column_name!r}, which no migration of this aiqc adds (it was written by an "
                    "older, incompatible aiqc); open it with the aiqc version that wrote it, or start a new database.")
            migrate(migrator.add_column(table, field.column_name, field))
            logger.info("database: added column %s.%s", table, field.column_name)


def _storage() -> Storage | None:
    """The bound database, when :func:`setup` opened it."""
    database = database_proxy.obj
    return database if isinstance(database, Storage) else None


def translate(error: BaseException, path: str | os.PathLike | None = None) -> DatabaseError | None:
    """The :class:`~aiqc.exceptions.DatabaseError` subclass that says, in one line, what a
    peewee or driver error means for the open database (read-only, full, locked, corrupt,
    unreachable) and what to do; None when ``error`` is no such fault. An aiqc DatabaseError
    is returned as it is. ``path``: a SQLite file to name instead of the open one's. Raise
    the result ``from error``."""
    if isinstance(error, DatabaseError):
        return error
    storage = _storage()
    if path is not None or storage is None or storage.url.is_sqlite:
        from aiqc.database.sqlite import translate_sqlite

        where = path if path is not None else (storage.path if storage is not None else None)
        return translate_sqlite(error, where, bool(storage and storage.read_only), storage)
    return storage.translate(error)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Context manager and decorator: a peewee or driver error that is a fault of the database
    leaves as its :class:`~aiqc.exceptions.DatabaseError` subclass, raised ``from`` the
    original; any other error leaves unchanged."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as error:
        fault = translate(error)
        if fault is None:
            raise
        raise fault from error


def check_file() -> None:
    """Raise :class:`~aiqc.exceptions.DatabaseGoneError` when the open SQLite file was deleted,
    replaced by another file or truncated since :func:`setup` opened it (see
    :meth:`~aiqc.database.sqlite.AIQCSqliteDatabase.check_alive`); nothing for a server."""
    storage = _storage()
    if storage is not None:
        storage.check_alive()


def write_transaction() -> Any:
    """A transaction on the open database that holds the write lock a claim or a record needs
    (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: row locks taken by the statements)."""
    return ensure_setup().write_transaction()


def vacuum() -> int | None:
    """Give the room of deleted rows back (after deleting queues, splitsets or datasets):
    SQLite rewrites the file without its free pages, which needs free disk space about the
    file's size and waits for other writers; PostgreSQL vacuums aiqc's tables. Returns the
    bytes the database shrank by (None where that cannot be measured). Not inside a
    transaction."""
    database = ensure_setup()
    if database.in_transaction():
        raise ValidationError("vacuum: expected no open transaction (VACUUM cannot run inside one); "
                              "received a call inside one. Call it after the transaction ends.")
    if getattr(database, "read_only", False):
        from aiqc.exceptions import DatabaseReadOnlyError

        raise DatabaseReadOnlyError(f"database {database.url.display!r} was opened with read_only=True and vacuum "
                                    "writes: nothing was changed; open it with aiqc.setup(db) to vacuum it.")
    with translated():
        reclaimed = database.vacuum(MODELS)
    logger.info("database vacuumed: %s bytes reclaimed", reclaimed)
    return reclaimed


def schema_version() -> int:
    """The schema version recorded in the open database (opening the default one if needed)."""
    ensure_setup()
    return int(SchemaInfo.get(SchemaInfo.key == "schema_version").value)


def ensure_setup() -> pw.Database:
    """The bound database, opening the default one on first use."""
    return ensure_database()


def current_url() -> DatabaseURL | None:
    """The open database's :class:`~aiqc.database.url.DatabaseURL`, or None before :func:`setup`."""
    storage = _storage()
    return None if storage is None else storage.url


def current_path() -> Path | None:
    """Path of the open SQLite file; None before :func:`setup` or for a server."""
    url = current_url()
    return url.path if url is not None and url.is_sqlite else None


def clear_caches() -> None:
    """Forget what this process cached from a database (read data, encoded samples, models)."""
    caches.clear()


def destroy_db(confirm: bool = False, db: str | os.PathLike | None = None) -> bool:
    """Delete the database (the open one, or ``db``): a SQLite file with its WAL, or aiqc's
    tables on a PostgreSQL server. Nothing happens unless ``confirm=True``. Returns whether
    anything was removed."""
    if confirm is not True:
        raise ValidationError(
            f"confirm: expected True to delete the database and every record in it; received {confirm!r}. "
            "Nothing was deleted."
        )
    current = _storage()
    url = current.url if db is None and current is not None else _resolved(parse(db))
    if current is not None and current.url.secret == url.secret:
        database_proxy.initialize(None)
        target = current
    elif url.is_sqlite:
        from aiqc.database.sqlite import remove_files

        clear_caches()
        removed = remove_files(url.path)
        logger.info("aiqc database removed: %s", url.display)
        return removed
    else:
        target = OPENERS[url.kind](url, False)
    clear_caches()
    removed = target.drop_all(MODELS)
    logger.info("aiqc database removed: %s", url.display)
    return removed


register_default_opener(setup)
