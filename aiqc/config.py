"""Where the database lives.

Resolution order: the ``db`` argument of :func:`aiqc.setup`, then the ``AIQC_DB``
environment variable, then ``aiqc.sqlite3`` in the user's data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DB = "AIQC_DB"
DEFAULT_FILENAME = "aiqc.sqlite3"


def default_db_path() -> Path:
    """``aiqc.sqlite3`` inside the platform's per-user data directory."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("aiqc", appauthor=False)) / DEFAULT_FILENAME


def resolve_db_path(db: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Return the SQLite path to open and whether it is the default location.

    The default location's directory is created on demand; an explicit path must point
    into an existing directory (a typo should not silently create a new tree).
    """
    if db is None:
        db = os.environ.get(ENV_DB) or None
    if db is None:
        return default_db_path(), True
    return Path(os.fspath(db)).expanduser(), False
