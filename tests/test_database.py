"""aiqc.setup / destroy_db: where the database lives and how SQLite is configured."""

import sqlite3

import pytest

import aiqc
from aiqc.exceptions import DatabaseError, ValidationError
from aiqc.orm import SCHEMA_VERSION, Dataset, SchemaInfo, database_proxy


def test_setup_creates_tables_with_sqlite_settings(db):
    assert db.is_file()
    database = database_proxy.obj
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    tables = set(database.get_tables())
    assert {"dataset", "dataset_part", "label", "feature", "splitset", "fold", "encoder", "schema_info"} <= tables


def test_schema_version_is_recorded(db):
    from aiqc.database import schema_version

    assert schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(db).execute("SELECT value FROM schema_info WHERE key='schema_version'").fetchone()
    assert raw == (str(SCHEMA_VERSION),)


def test_setup_twice_is_harmless(db, iris):
    dataset = Dataset.Tabular.from_pandas(iris)
    assert aiqc.setup(db) == db
    assert aiqc.setup(str(db)) == db
    assert Dataset.select().count() == 1 and Dataset.get_by_id(dataset.id).row_count == 150


def test_env_var_chooses_the_file(tmp_path, monkeypatch, db):
    target = tmp_path / "from_env.sqlite3"
    monkeypatch.setenv("AIQC_DB", str(target))
    assert aiqc.setup() == target.resolve()
    assert target.is_file()


def test_default_location_is_user_data_dir(tmp_path, monkeypatch, db):
    from aiqc.config import resolve_db_path

    monkeypatch.delenv("AIQC_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path, is_default = resolve_db_path()
    assert is_default and path == tmp_path / "data" / "aiqc" / "aiqc.sqlite3"


def test_missing_directory_is_an_error(tmp_path, db):
    with pytest.raises(ValidationError, match=r"db: expected a path inside an existing directory"):
        aiqc.setup(tmp_path / "nope" / "x.sqlite3")
    assert not (tmp_path / "nope").exists()


def test_url_is_not_supported_yet(db):
    with pytest.raises(ValidationError, match="db: .*PostgreSQL"):
        aiqc.setup("postgresql://localhost/aiqc")


def test_newer_schema_is_refused(tmp_path, db):
    SchemaInfo.update(value=str(SCHEMA_VERSION + 1)).where(SchemaInfo.key == "schema_version").execute()
    database_proxy.obj.close()
    database_proxy.initialize(None)
    with pytest.raises(DatabaseError, match="newer"):
        aiqc.setup(db)


def test_not_a_database_file(tmp_path, db):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="cannot open"):
        aiqc.setup(bad)


def test_destroy_db_needs_confirm(db):
    with pytest.raises(ValidationError, match="confirm: expected True.*Nothing was deleted"):
        aiqc.destroy_db()
    assert db.is_file()
    assert aiqc.destroy_db(confirm=True) is True
    assert not db.exists()
    assert not db.with_name(db.name + "-wal").exists()
    aiqc.setup(db)  # can be created again
    assert db.is_file()


def test_a_recreated_database_does_not_see_cached_data(db, iris):
    first = Dataset.Tabular.from_pandas(iris)
    assert first.to_pandas().shape == (150, 5)
    aiqc.destroy_db(confirm=True)
    aiqc.setup(db)
    second = Dataset.Tabular.from_pandas(iris.head(10))
    assert second.id == first.id  # same path, same id: only a cleared cache tells them apart
    assert second.to_pandas().shape == (10, 5)
