"""Shared fixtures: every test gets its own temporary SQLite database; the storage contract
suite (tests/test_storage.py) also gets a throwaway PostgreSQL server (tests/pgserver.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A fresh database bound for this test; unbound afterwards."""
    import aiqc
    from fns import unbind_database

    monkeypatch.delenv("AIQC_DB", raising=False)
    path = aiqc.setup(tmp_path / "aiqc.sqlite3")
    yield path
    unbind_database()


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


# --- the storage contract suite: SQLite and a throwaway PostgreSQL server ----------------------
def _unavailable(reason: str) -> None:
    """Skip, or fail under CI (``CI=true``, as ``.ci/run`` sets), where the PostgreSQL half must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server for the whole session (tests/pgserver.py): ``host``, ``port``,
    ``user``, ``password``, ``url(dbname)``, ``admin_url``. Skipped (failed under CI) when the
    server binaries or psycopg are missing; stopped, and its directory removed, at the end."""
    import pgserver

    if not pgserver.psycopg_available():
        _unavailable(pgserver.MISSING_PSYCOPG)
    bin_dir = pgserver.find_bin_dir()
    if bin_dir is None:
        _unavailable(pgserver.MISSING_BINARIES)
    server = pgserver.PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """The URL of a fresh, empty database on :func:`postgres_server`, dropped afterwards."""
    name = f"aiqc_test_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The ``db`` argument of a fresh database of each back end (a SQLite path, a PostgreSQL
    URL), already opened by ``aiqc.setup``; unbound afterwards."""
    import aiqc
    from fns import unbind_database

    monkeypatch.delenv("AIQC_DB", raising=False)
    db = str(tmp_path / "aiqc.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    aiqc.setup(db)
    yield db
    unbind_database()


def _runs_slow_tests(config: pytest.Config) -> bool:
    """Whether this run includes the tests marked ``slow``: under CI (``CI=true``, as
    ``.ci/run`` sets), with ``AIQC_SLOW=1``, with a ``-m`` expression, or when tests are named
    on the command line. A plain ``python -m pytest`` leaves them out to stay within minutes."""
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("AIQC_SLOW") == "1":
        return True
    return bool(config.option.markexpr) or config.args_source is pytest.Config.ArgsSource.ARGS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the slow tests from a default local run (see :func:`_runs_slow_tests`)."""
    if _runs_slow_tests(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
        config.hook.pytest_deselected(items=slow)
        config.stash[_SLOW_LEFT_OUT] = len(slow)


_SLOW_LEFT_OUT = pytest.StashKey[int]()


def _storage_outcomes(terminalreporter: Any) -> dict[str, dict[str, int]]:
    """{"postgresql"|"sqlite": {"passed", "failed", "skipped": count}} over the storage suite's
    tests, one outcome per test (a failure in any phase is a failure)."""
    outcomes: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            when = getattr(report, "when", None)
            if "test_storage.py" not in nodeid or when is None:
                continue
            if report.failed:
                outcomes[nodeid] = "failed"
            elif report.skipped and outcomes.get(nodeid) != "failed":
                outcomes[nodeid] = "skipped"
            elif report.passed and when == "call" and nodeid not in outcomes:
                outcomes[nodeid] = "passed"
    counts = {backend: {"passed": 0, "failed": 0, "skipped": 0} for backend in ("postgresql", "sqlite")}
    for nodeid, outcome in outcomes.items():
        for backend in counts:
            if f"[{backend}" in nodeid:
                counts[backend][outcome] += 1
    return counts


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying how many storage contract tests ran on PostgreSQL (and on SQLite), and
    one saying how many slow tests a default run left out."""
    left_out = terminalreporter.config.stash.get(_SLOW_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} slow tests deselected: CI=true, AIQC_SLOW=1 or -m slow runs them")
    counts = _storage_outcomes(terminalreporter)
    if not any(sum(c.values()) for c in counts.values()):
        return
    pg, lite = counts["postgresql"], counts["sqlite"]
    terminalreporter.write_line(
        f"storage contract suite: {pg['passed']} PostgreSQL tests passed, {pg['failed']} failed, "
        f"{pg['skipped']} skipped (SQLite: {lite['passed']} passed, {lite['failed']} failed, "
        f"{lite['skipped']} skipped)")
