"""Shared fixtures: every test gets its own temporary SQLite database."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A fresh database bound for this test; unbound afterwards."""
    import aiqc
    from aiqc.database import clear_caches
    from aiqc.orm import database_proxy

    monkeypatch.delenv("AIQC_DB", raising=False)
    path = aiqc.setup(tmp_path / "aiqc.sqlite3")
    yield path
    if database_proxy.obj is not None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
    clear_caches()


@pytest.fixture
def row_counts(db):
    """Callable returning {table: row count} for every aiqc table."""
    from aiqc.orm import MODELS

    def counts() -> dict[str, int]:
        return {model.__name__: model.select().count() for model in MODELS}

    return counts


@pytest.fixture
def iris():
    from aiqc import datum

    return datum.to_pandas("iris.tsv")
