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


@pytest.mark.parametrize("text, kind, shown", [
    ("runs.db", "sqlite", "runs.db"),
    ("sqlite:///runs.db", "sqlite", "runs.db"),
    ("sqlite:////tmp/runs.db", "sqlite", "/tmp/runs.db"),
    ("postgresql://ann:p%40ss%3Aw0rd@db.example:6543/team", "postgresql", "postgresql://ann:***@db.example:6543/team"),
    ("postgres://ann@db.example/team?sslmode=require", "postgresql", "postgresql://ann@db.example:5432/team?sslmode=require"),
])
def test_db_urls_parse_and_show_without_their_password(text, kind, shown):
    from aiqc.database.url import parse

    url = parse(text)
    assert (url.kind, url.display, str(url)) == (kind, shown, shown)
    assert "p@ss:w0rd" not in repr(url) + url.display
    if url.password:
        assert url.password == "p@ss:w0rd" and parse(url.secret) == url  # the secret form round-trips


@pytest.mark.parametrize("text, match", [
    ("mysql://ann:hunter2@db/x", "unknown scheme 'mysql' \\(mysql://ann:\\*\\*\\*@db/x\\)"),
    ("postgresql://ann:hunter2@db:notaport/x", "numeric port"),
    ("postgresql://ann:hunter2@db:5432/", "naming one database"),
    ("sqlite://runs.db", "sqlite:///relative/path"),
])
def test_bad_db_urls_are_validation_errors_that_mask_the_password(db, row_counts, text, match):
    before = row_counts()
    with pytest.raises(ValidationError, match=match) as caught:
        aiqc.setup(text)
    assert "hunter2" not in str(caught.value) and str(caught.value).startswith("db: expected")
    assert aiqc.database.current_path() == db and row_counts() == before  # the open database stays open, untouched


def test_aiqc_db_may_be_a_url(monkeypatch):
    from aiqc.database.url import parse

    monkeypatch.setenv("AIQC_DB", "postgresql://ann:hunter2@db.example/team")
    assert parse(None).display == "postgresql://ann:***@db.example:5432/team"


def test_an_unreachable_server_is_one_line_naming_host_and_port_with_the_password_masked(db, row_counts, caplog):
    import socket

    from aiqc.exceptions import DatabaseUnreachableError

    pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DatabaseUnreachableError) as caught:
        aiqc.setup(f"postgresql://ann:hunter2@127.0.0.1:{port}/team")
    message = str(caught.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "postgresql://ann:***@" in message, message
    assert "hunter2" not in message + caplog.text and "hunter2" not in repr(caught.value.__cause__)
    assert database_proxy.obj is None or aiqc.database.current_path() == db


def test_a_missing_driver_names_the_extra(monkeypatch):
    import builtins

    from aiqc.exceptions import MissingExtraError

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ImportError("No module named 'psycopg'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(MissingExtraError, match=r"pip install 'aiqc\[postgres\]'") as caught:
        aiqc.setup("postgresql://ann:hunter2@127.0.0.1:1/team")
    assert "hunter2" not in str(caught.value)


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


def test_an_index_missing_from_an_older_database_is_added_on_its_next_writable_open(db):
    """A database created before the covering index of the metrics pivot: read-only it opens
    as it is (only slower), the next writable open adds the index, and the pivot of
    metrics_to_pandas then reads the index alone."""
    from aiqc import results

    covering = "metric_job_id_split_name_value"

    def indexes() -> set:
        return {index.name for index in database_proxy.obj.get_indexes("metric")}

    def reopen(read_only: bool = False) -> None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
        aiqc.setup(db, read_only=read_only)

    assert covering in indexes()
    database_proxy.obj.execute_sql(f'DROP INDEX "{covering}"')
    reopen(read_only=True)
    assert covering not in indexes()
    reopen()
    assert covering in indexes() and "metric_job_id_split_name" in indexes()
    sql, params = results._pivot_query(1, ["accuracy", "f1"], None).sql()
    plan = " ".join(str(row[-1]) for row in database_proxy.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
    assert f"USING COVERING INDEX {covering} (job_id=?)" in plan
    reopen()  # complete: nothing to add
    assert covering in indexes()
