"""Query cost: result queries and ``Experiment.make`` issue a number of SQL statements that
does not grow with the number of queues, jobs or combinations (no N+1 loops), on SQLite and
PostgreSQL. Statements are counted at the database's cursor, so bulk ``executemany`` inserts
count once; no wall-clock time is asserted."""

from __future__ import annotations

from typing import Any, Callable

import peewee as pw
import pytest

import aiqc
from aiqc import datum
from aiqc.orm import Job, Metric, Queue, database_proxy
from aiqc.states import JobState

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

SPLITS = ("train", "validation", "test")


class _CountingCursor:
    """A DB-API cursor that records each ``execute`` / ``executemany`` before delegating."""

    def __init__(self, cursor: Any, log: list[str]) -> None:
        self._cursor, self._log = cursor, log

    def execute(self, sql: str, *args: Any) -> Any:
        self._log.append(sql)
        self._cursor.execute(sql, *args)
        return self

    def executemany(self, sql: str, *args: Any) -> Any:
        self._log.append(sql)
        self._cursor.executemany(sql, *args)
        return self

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def statements(storage: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], int]:
    """``count(fn)``: how many statements calling ``fn()`` sends to the bound database."""
    database = database_proxy.obj
    log: list[str] = []
    plain = database.cursor
    monkeypatch.setattr(database, "cursor", lambda *args, **kwargs: _CountingCursor(plain(*args, **kwargs), log))

    def count(fn: Callable[[], Any]) -> int:
        log.clear()
        fn()
        return len(log)

    return count


@pytest.fixture
def splitset(storage: str) -> Any:
    pytest.importorskip("torch")
    return reference_make(datum.to_pandas("iris.tsv"), random_state=0)


def _make(splitset: Any, combinations: int) -> Queue:
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                fn_train=fns.torch_train, splitset_id=splitset.id, seed=0,
                                hyperparameters={"neuron_count": list(range(1, combinations + 1)),
                                                 "batch_size": [4], "epoch_count": [1]})


def _finished_queue(splitset: Any, combinations: int) -> int:
    """A queue of ``combinations`` jobs, COMPLETE with synthetic metrics on every split (no
    training): the rows a run would leave, written in bulk. Returns its id."""
    queue = _make(splitset, combinations)
    names = queue.experiment.metric_set.names
    job_ids = [job.id for job in queue.jobs.order_by(Job.id)]
    rows = [dict(job=job_id, split=split, name=name, value=(job_id % 7 + position) / 20)
            for job_id in job_ids for split in SPLITS for position, name in enumerate(names)]
    for batch in pw.chunked(rows, 100):
        Metric.insert_many(batch).execute()
    Job.update(state=JobState.COMPLETE, seconds=1.0).where(Job.queue == queue).execute()
    return queue.id


def _queries(queue_id: int) -> dict[str, Callable[[], Any]]:
    """Each result query of a fresh Queue instance (nothing cached: its experiment is read too)."""
    return {
        "metrics_to_pandas": lambda: Queue.get_by_id(queue_id).metrics_to_pandas(),
        "selected_metrics": lambda: Queue.get_by_id(queue_id).metrics_to_pandas(["accuracy"], states=["COMPLETE"]),
        "metrics_aggregate": lambda: Queue.get_by_id(queue_id).metrics_aggregate(),
        "best_job": lambda: Queue.get_by_id(queue_id).best_job(),
        "best_params": lambda: Queue.get_by_id(queue_id).best_params(),
    }


def test_list_queues_statements_do_not_grow_with_queues(splitset, statements):
    _finished_queue(splitset, 2)
    one = statements(aiqc.list_queues)
    last = [_finished_queue(splitset, combinations) for combinations in (1, 3, 5, 8)][-1]
    _make(splitset, 2)  # a queue nothing ran: no best score yet
    frame = aiqc.list_queues()
    assert len(frame) == 6 and frame["best"].isna().tolist() == [False] * 5 + [True]
    assert frame["complete"].tolist() == [2, 1, 3, 5, 8, 0] and frame["queued"].tolist() == [0] * 5 + [2]
    scores = Queue.get_by_id(last).metrics_to_pandas(["accuracy"]).query("split == 'validation'")["accuracy"]
    assert frame.loc[4, "best"] == scores.max()
    assert statements(aiqc.list_queues) == one <= 3


def test_compare_queues_statements_do_not_grow_with_queues(splitset, statements):
    first, second, third = (_finished_queue(splitset, combinations) for combinations in (2, 5, 3))
    waiting = _make(splitset, 2).id  # nothing ran yet: a row of NaN
    one = statements(lambda: aiqc.compare_queues([first]))
    assert statements(lambda: aiqc.compare_queues([first, second, third, waiting])) == one == 2
    frame = aiqc.compare_queues([first, second, third, waiting])
    assert frame["jobs"].tolist() == [2, 5, 3, 0]


def test_result_queries_statements_do_not_grow_with_jobs(splitset, statements):
    few, many = _finished_queue(splitset, 2), _finished_queue(splitset, 40)
    assert len(Queue.get_by_id(many).metrics_to_pandas()) == 40 * len(SPLITS)
    costs = {name: statements(query) for name, query in _queries(few).items()}
    assert {name: statements(query) for name, query in _queries(many).items()} == costs
    assert costs["metrics_to_pandas"] <= 5 and costs["best_job"] <= 3


def test_make_statements_do_not_grow_with_combinations(storage, statements):
    pytest.importorskip("torch")
    folded = reference_make(datum.to_pandas("iris_10x.tsv"), size_validation=None, fold_count=5, random_state=0)
    _make(folded, 1)  # reads the splitset's data into the process's caches, as any earlier make would
    few = statements(lambda: _make(folded, 3))
    assert statements(lambda: _make(folded, 100)) == few  # 500 jobs: still one batch of inserts
    assert Queue.select().order_by(Queue.id.desc()).first().job_count == 100 * 5


def test_the_covering_index_of_the_metrics_pivot_is_added_to_a_database_without_it(storage):
    """A database created before the index (dropped here) gets it back on its next writable
    open, on either back end; a complete one is left as it is."""
    covering = "metric_job_id_split_name_value"

    def indexes() -> set:
        return {index.name for index in database_proxy.obj.get_indexes("metric")}

    def reopen() -> None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
        aiqc.setup(storage)

    assert covering in indexes()
    database_proxy.obj.execute_sql(f'DROP INDEX "{covering}"')
    assert covering not in indexes()
    reopen()
    assert covering in indexes() and "metric_job_id_split_name" in indexes()
    reopen()
    assert covering in indexes()
