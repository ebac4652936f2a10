"""Which database to open: a SQLite file or a PostgreSQL server, named by one string.

``aiqc.setup(db=...)``, ``--db`` and ``AIQC_DB`` accept:

- a path to a SQLite file (``experiments.sqlite3``, ``~/aiqc/runs.db``);
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling);
- ``postgresql://user:password@host:port/dbname`` (``postgres://`` too), with optional
  ``?sslmode=require`` style parameters handed to the driver.

A :class:`DatabaseURL` knows how to show itself without its password (:attr:`DatabaseURL.display`),
and every message, log line and CLI output uses that form.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from aiqc.config import ENV_DB, default_db_path
from aiqc.exceptions import ValidationError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
#: the URL schemes accepted for each kind of database
SCHEMES = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "postgres": POSTGRESQL,
           "postgresql+psycopg": POSTGRESQL, "postgresql+psycopg2": POSTGRESQL}
MASK = "***"
EXPECTED = ("None, a path to a SQLite file, sqlite:///path, or postgresql://user:password@host:port/dbname")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``db`` argument: the kind of database and how to reach it."""

    kind: str  # SQLITE or POSTGRESQL
    path: Path | None = None  # SQLite: the file
    is_default: bool = False  # SQLite: the per-user default location
    host: str = "localhost"
    port: int = 5432
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    dbname: str | None = None
    options: tuple[tuple[str, str], ...] = ()  # ?key=value parameters for the driver

    @property
    def is_sqlite(self) -> bool:
        """Whether this names a SQLite file."""
        return self.kind == SQLITE

    @property
    def address(self) -> str:
        """``host:port`` of a server (a SQLite file's path)."""
        return str(self.path) if self.is_sqlite else f"{self.host}:{self.port}"

    def render(self, password: str | None) -> str:
        """The URL with ``password`` in the password's place (SQLite: the file's path)."""
        if self.is_sqlite:
            return str(self.path)
        from urllib.parse import quote, urlencode

        credentials = ""
        if self.user is not None:
            credentials = quote(self.user, safe="") + (f":{password}" if password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?{urlencode(self.options)}" if self.options else ""
        return f"postgresql://{credentials}{host}:{self.port}/{quote(self.dbname or '', safe='')}{query}"

    @property
    def display(self) -> str:
        """What to show a person: the file's path, or the URL with the password as ``***``."""
        return self.render(None if self.password is None else MASK)

    @property
    def secret(self) -> str:
        """The full URL, password included: for a driver or a worker's environment, never for output."""
        if self.password is None:
            return self.render(None)
        from urllib.parse import quote

        return self.render(quote(self.password, safe=""))

    def scrub(self, text: str) -> str:
        """``text`` with this URL's password (plain or URL-quoted) replaced by ``***``."""
        if not self.password:
            return text
        from urllib.parse import quote

        for secret in {self.password, quote(self.password, safe="")}:
            text = text.replace(secret, MASK)
        return text

    def __str__(self) -> str:
        return self.display


def parse(db: str | os.PathLike | DatabaseURL | None) -> DatabaseURL:
    """The database ``db`` names; without it, ``AIQC_DB``; without that, ``aiqc.sqlite3`` in
    the user's data directory. Raises :class:`~aiqc.exceptions.ValidationError` for anything
    else (the password masked in the message)."""
    if isinstance(db, DatabaseURL):
        return db
    if db is not None and not isinstance(db, (str, os.PathLike)):
        raise ValidationError.expected("db", EXPECTED, db)
    if db is None:
        db = os.environ.get(ENV_DB) or None
        if db is None:
            return DatabaseURL(SQLITE, path=default_db_path(), is_default=True)
    text = os.fspath(db)
    if isinstance(text, bytes):
        raise ValidationError.expected("db", EXPECTED, db)
    match = _SCHEME.match(text)
    if match is None:
        return DatabaseURL(SQLITE, path=Path(text).expanduser())
    scheme = match.group(1).lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise ValidationError(f"db: expected {EXPECTED}; received a URL with the unknown scheme {scheme!r} "
                              f"({mask(text)}).")
    if kind == SQLITE:
        path = text[match.end():]
        if not path.startswith("/") or path == "/":
            raise ValidationError(f"db: expected sqlite:///relative/path or sqlite:////absolute/path; received {text!r}.")
        return DatabaseURL(SQLITE, path=Path(unquote(path[1:])).expanduser())
    return _parse_postgresql(text)


def _parse_postgresql(text: str) -> DatabaseURL:
    parts = urlsplit(text)
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValidationError(f"db: expected postgresql://user:password@host:port/dbname with a numeric port; "
                              f"received {mask(text)}.") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ValidationError(f"db: expected postgresql://user:password@host:port/dbname, naming one database; "
                              f"received {mask(text)}.")
    return DatabaseURL(POSTGRESQL, host=parts.hostname or "localhost", port=port,
                       user=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password is not None else None,
                       dbname=dbname, options=tuple(parse_qsl(parts.query)))


def mask(text: str) -> str:
    """Any ``scheme://user:password@`` in ``text`` with the password masked (for messages
    that quote a URL as someone typed it)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", rf"\g<1>{MASK}@", text)
