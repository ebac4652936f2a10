"""PostgreSQL, for a team or a cluster: one server that every worker on every machine reaches
(``pip install 'aiqc[postgres]'``, through psycopg 3).

Claims take the next QUEUED row with ``FOR UPDATE SKIP LOCKED``: concurrent workers each get a
different job without waiting for one another. Workers extending a sampled search take turns
on a lock of the queue's row. Schema creation and migrations hold a transaction-level advisory
lock, so two processes opening a new database at once do not race. The password is never
shown: messages use :attr:`~aiqc.database.url.DatabaseURL.display`, and error texts from the
server or the driver are scrubbed of it.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator

import peewee as pw

from aiqc.database._base import Storage
from aiqc.database.url import DatabaseURL
from aiqc.exceptions import (DatabaseCorruptError, DatabaseError, DatabaseFullError, DatabaseLockedError,
                             DatabaseReadOnlyError, DatabaseUnreachableError, MissingExtraError)

INSTALL = "pip install 'aiqc[postgres]'"
CONNECT_TIMEOUT_SECONDS = 10
#: the advisory lock key held while tables are created or migrated ("aiqc" in ASCII)
SCHEMA_LOCK_KEY = 0x61697163

#: SQLSTATE classes and codes that are faults of the database, by what they mean
_READ_ONLY = {"25006", "42501"}  # read_only_sql_transaction, insufficient_privilege
_FULL = {"53100", "53200", "53400", "54000"}  # disk_full, out_of_memory, configuration_limit_exceeded, ...
_LOCKED = {"55P03", "40P01", "57014"}  # lock_not_available, deadlock_detected, query_canceled (a timeout)
_CORRUPT = {"XX001", "XX002"}  # data_corrupted, index_corrupted
_GONE_CLASSES = {"08", "57"}  # connection exceptions; operator intervention (server shut down)


class AIQCPostgresqlDatabase(Storage, pw.PostgresqlDatabase):
    """peewee's PostgreSQL database (psycopg 3) as aiqc's storage."""

    shared_across_hosts = True

    def _initialize_connection(self, connection: Any) -> None:
        """Opened with ``read_only=True``: the session refuses every write."""
        super()._initialize_connection(connection)
        if self.read_only:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    # --- Storage ---------------------------------------------------------------------------
    def write_transaction(self) -> ContextManager[Any]:
        """A plain transaction: the claim's ``FOR UPDATE SKIP LOCKED`` locks what it takes."""
        return self.atomic()

    def lock_rows(self, query: pw.ModelSelect) -> None:
        """``SELECT ... FOR UPDATE``: the rows stay locked until the transaction ends (a
        concurrent insert that references one of them waits, then fails once it is deleted)."""
        list(query.for_update().tuples())

    @contextlib.contextmanager
    def schema_lock(self) -> Iterator[None]:
        """A transaction holding ``pg_advisory_xact_lock``: one process creates or migrates at a time."""
        with self.atomic():
            self.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            yield

    def migrator(self) -> Any:
        """playhouse's PostgresqlMigrator."""
        from playhouse.migrate import PostgresqlMigrator

        return PostgresqlMigrator(self)

    def translate(self, error: BaseException) -> DatabaseError | None:
        """See :func:`translate_postgresql`."""
        return translate_postgresql(error, self.url)

    def index_names(self) -> set[tuple[str, str]]:
        """From ``pg_indexes``, in the current schema."""
        query = "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()"
        return set(self.execute_sql(query).fetchall())

    def vacuum(self, models: list[type[pw.Model]]) -> int:
        """``VACUUM`` of aiqc's tables (it cannot run in a transaction: the connection is in
        autocommit mode outside ``atomic()``): the room of deleted rows becomes reusable, and
        empty pages at the end of a table go back to the operating system. The bytes the
        tables, with their indexes and TOAST, shrank by: often little, as PostgreSQL keeps most
        freed room for its own reuse (``VACUUM FULL`` would return it, but locks each table,
        and every worker writing to it, while it rewrites it)."""
        present = set(self.get_tables())
        tables = [m._meta.table_name for m in models if m._meta.table_name in present]
        if not tables:
            return 0
        size = ("SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(quote_ident(t)))), 0) "
                "FROM unnest(%s::text[]) AS t")
        before = int(self.execute_sql(size, (tables,)).fetchone()[0])
        self.execute_sql("VACUUM " + ", ".join('"' + t.replace('"', '""') + '"' for t in tables))
        return max(0, before - int(self.execute_sql(size, (tables,)).fetchone()[0]))

    def drop_all(self, models: list[type[pw.Model]]) -> bool:
        """Drop aiqc's tables (the database itself, and anything else in it, stays)."""
        present = set(self.get_tables())
        mine = [m for m in models if m._meta.table_name in present]
        if mine:
            with self.bind_ctx(mine):
                self.drop_tables(mine, safe=True, cascade=True)
        self.close()
        return bool(mine)


def open_postgresql(url: DatabaseURL, read_only: bool) -> AIQCPostgresqlDatabase:
    """An unconnected :class:`AIQCPostgresqlDatabase` on the server ``url`` names; raises
    :class:`~aiqc.exceptions.MissingExtraError` without psycopg."""
    try:
        import psycopg  # noqa: F401 - the driver peewee will use
    except ImportError as error:
        raise MissingExtraError(
            f"db: a PostgreSQL database ({url.display}) needs the psycopg driver; install it with: {INSTALL}"
        ) from error
    options = dict(url.options)
    options.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    options.setdefault("application_name", "aiqc")
    database = AIQCPostgresqlDatabase(url.dbname, user=url.user, password=url.password, host=url.host,
                                      port=url.port, prefer_psycopg3=True, autorollback=False, **options)
    database.url, database.path, database.read_only = url, None, read_only
    return database


def _sqlstate(error: BaseException) -> tuple[str | None, BaseException]:
    """The SQLSTATE behind ``error`` (peewee wraps psycopg's exception: it is the cause), and
    the psycopg exception that carries it."""
    seen: set[int] = set()
    candidates: list[BaseException | None] = [error]
    while candidates:
        candidate = candidates.pop(0)
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        state = getattr(candidate, "sqlstate", None)
        if state:
            return state, candidate
        if type(candidate).__module__.startswith("psycopg") and isinstance(candidate, Exception):
            return None, candidate
        candidates += [a for a in getattr(candidate, "args", ()) if isinstance(a, BaseException)]
        candidates += [candidate.__cause__, candidate.__context__]
    return None, error


def _one_line(error: BaseException, url: DatabaseURL) -> str:
    """The driver's message in one line, with the password scrubbed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    for prefix in ("connection failed: ",):
        text = text.removeprefix(prefix)
    return url.scrub(text)


def translate_postgresql(error: BaseException, url: DatabaseURL, opening: bool = False) -> DatabaseError | None:
    """The :class:`~aiqc.exceptions.DatabaseError` subclass a psycopg (or peewee-wrapped) error
    means, in one line naming the server and what to do; None when it is no fault of the
    database (a bug, a constraint the caller broke). ``opening``: the error came from
    connecting, so anything the driver raised means the server cannot be reached."""
    if isinstance(error, DatabaseError):
        return error
    state, source = _sqlstate(error)
    from_driver = type(source).__module__.startswith("psycopg")
    if not (from_driver or isinstance(error, pw.PeeweeException)):
        return None
    detail = _one_line(source, url)
    where = f"PostgreSQL database {url.dbname!r} at {url.address}"
    if state in _READ_ONLY:
        return DatabaseReadOnlyError(
            f"{where} refused a write ({detail}): nothing was written; it was opened read-only, or user "
            f"{url.user!r} lacks the privilege; connect as a user who may write.")
    if state in _FULL:
        return DatabaseFullError(f"{where} is out of room ({detail}); the write was rolled back; free space on the "
                                 "server, then try again (run_jobs() again finishes the jobs left undone).")
    if state in _LOCKED:
        return DatabaseLockedError(f"{where}: a lock was not granted ({detail}); nothing was written; "
                                   "try again once the other connection finishes.")
    if state in _CORRUPT:
        return DatabaseCorruptError(f"{where} reports damaged data ({detail}); ask its administrator to restore it.")
    if (state is None and from_driver and (opening or _is_operational(source))) or (state or "")[:2] in _GONE_CLASSES \
            or (opening and state in {"28P01", "28000", "3D000"}):
        verb = "cannot connect to" if opening else "lost the connection to"
        return DatabaseUnreachableError(
            f"db: {verb} {where} ({url.display}): {detail}; check that the server runs and accepts connections "
            "from this machine, and the URL's host, port, user and password.")
    return None


def _is_operational(error: BaseException) -> bool:
    """Whether a psycopg error without SQLSTATE is about the connection (not the query)."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
