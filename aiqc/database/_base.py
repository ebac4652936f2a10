"""The storage seam: what aiqc needs of a database beyond what peewee offers.

Each kind of database (:mod:`aiqc.database.sqlite`, :mod:`aiqc.database.postgres`) is a
peewee database class with :class:`Storage` mixed in; everything above this package talks to
the bound database through this small interface, never through ``if sqlite``.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import peewee as pw

from aiqc.database.url import DatabaseURL
from aiqc.exceptions import DatabaseError


class Storage:
    """Mixed into a peewee ``Database``: transactions for claims, locks, migrations and faults."""

    url: DatabaseURL
    read_only: bool = False
    #: whether processes on other machines can share this database (a SQLite file: no)
    shared_across_hosts: bool = False

    @property
    def cache_key(self) -> str:
        """What this process's caches key on: the database, without its password."""
        return self.url.display

    def write_transaction(self) -> ContextManager[Any]:
        """A transaction for a claim or a record, holding the write lock it needs from the start."""
        raise NotImplementedError

    def schema_lock(self) -> ContextManager[Any]:
        """Held while tables are created or migrated (two processes opening a new database at once)."""
        return contextlib.nullcontext()

    def migrator(self) -> Any:
        """playhouse's schema migrator for this kind of database."""
        raise NotImplementedError

    def translate(self, error: BaseException) -> DatabaseError | None:
        """The :class:`~aiqc.exceptions.DatabaseError` subclass ``error`` means for this
        database, in one line with what to do; None when it is no fault of the database."""
        return None

    def check_alive(self) -> None:
        """Raise a :class:`~aiqc.exceptions.DatabaseError` when the database is gone from under
        this process (a SQLite file deleted or replaced); between jobs and in the heartbeat."""

    def remember_identity(self) -> None:
        """Record what :meth:`check_alive` compares against, right after opening."""

    def index_names(self) -> set[tuple[str, str]]:
        """``(table, index name)`` of every index of the database's tables, from its catalog."""
        raise NotImplementedError

    def drop_all(self, models: list[type[pw.Model]]) -> bool:
        """Delete the database's records and tables; returns whether anything was removed."""
        raise NotImplementedError

    def lock_rows(self, query: pw.ModelSelect) -> None:
        """Inside a :meth:`write_transaction`: wait for, then hold until it ends, locks on the
        rows ``query`` selects (a delete checks who uses a record, then deletes it: no other
        writer may add a user in between). No-op where the write transaction already excludes
        every other writer."""

    def bulk_writes(self) -> ContextManager[Any]:
        """Around writes of many large blobs (the samples of an image dataset): hold few of the
        written pages in memory, so storing data costs little more memory than the data itself.
        No-op where the database keeps no page cache in this process."""
        return contextlib.nullcontext()

    def vacuum(self, models: list[type[pw.Model]]) -> int | None:
        """Give back the room of deleted rows (of ``models``' tables, where the database can
        vacuum some tables only); outside any transaction. The bytes its files shrank by, or
        None where that cannot be measured."""
        raise NotImplementedError
