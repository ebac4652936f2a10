"""Deleting queues, splitsets and datasets (aiqc/deletion.py, ``queue.delete()``,
``aiqc rm``): exactly the rows that depend on the record go, what others still use stays,
a record in use is refused before any write, and ``aiqc db vacuum`` gives the room back."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pandas as pd
import peewee as pw
import pytest

import aiqc
from aiqc import cli, datum, deletion
from aiqc.database import vacuum
from aiqc.exceptions import DatabaseReadOnlyError, InUseError, NotFoundError, ValidationError
from aiqc.orm import MODELS, Dataset, Job, JobAlias, JobState, Queue, SchemaInfo, Splitset

import fns
from fns import reference_make

SPLITS = 3  # train, validation, test: each job is measured on each
HISTORY = 4  # loss, accuracy, val_loss, val_accuracy: one row per name and epoch


def _counts() -> dict[str, int]:
    """{table: rows} of every aiqc table but the schema version."""
    return {model.__name__: model.select().count() for model in MODELS if model is not SchemaInfo}


def _difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """{table: rows that went}, tables that lost none left out."""
    return {table: before[table] - after[table] for table in before if before[table] != after[table]}


def _queue(splitset: Splitset, neurons: list[int], run: bool = True, name: str | None = None) -> Queue:
    """A PyTorch queue on ``splitset``: one job per neuron count (per fold), 1 epoch each."""
    pytest.importorskip("torch")
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
        hyperparameters={"neuron_count": neurons, "batch_size": [32], "epoch_count": [1]}, splitset_id=splitset.id,
        name=name)
    if run:
        summary = queue.run_jobs(progress=False)
        assert summary.failed == 0, [j.error for j in queue.jobs]
    return queue


# --- the queue: its own rows, nobody else's -------------------------------------------------------
@pytest.mark.backends
def test_deleting_one_of_two_queues_on_a_splitset_takes_only_its_rows(storage):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    doomed, kept = _queue(splitset, [4, 5], name="doomed"), _queue(splitset, [4], name="kept")
    doomed.best_job().set_alias("doomed-prod")
    kept.best_job().set_alias("kept-prod")
    metrics = len(doomed.experiment.metric_set.names)
    kept_frame = kept.metrics_to_pandas()
    before = _counts()

    planned = deletion.plan("queue", doomed.id)
    assert _counts() == before  # planning reads only
    deleted = doomed.delete()

    expected = {"Experiment": 1, "Hyperparamset": 2, "Queue": 1, "Job": 2, "JobAlias": 1,
                "Metric": 2 * SPLITS * metrics, "HistoryEntry": 2 * HISTORY, "Prediction": 2 * SPLITS,
                "TrainedModel": 2}
    assert dict(deleted.counts) == expected == dict(planned.counts)
    assert _difference(before, _counts()) == expected
    assert (deleted.kind, deleted.id, deleted.total) == ("queue", doomed.id, sum(expected.values()))
    assert str(deleted) == (f"queue {doomed.id}: 1 experiment, 2 hyperparamsets, 1 queue, 2 jobs, 1 alias, "
                            f"{2 * SPLITS * metrics} metrics, 8 history entries, 6 predictions, 2 trained models")
    assert repr(deleted) == f"Deleted({deleted})"
    with pytest.raises(NotFoundError, match="doomed-prod"):
        Job.get_by_alias("doomed-prod")
    with pytest.raises(NotFoundError):
        Queue.get_by_id(doomed.id)
    # the other queue, its splitset and dataset are untouched and still read back
    assert Job.get_by_alias("kept-prod").queue_id == kept.id
    pd.testing.assert_frame_equal(Queue.get_by_id(kept.id).metrics_to_pandas(), kept_frame)
    assert Splitset.get_by_id(splitset.id).samples("test")["features"].shape[0] == splitset.count_test


@pytest.mark.backends
def test_last_queue_then_splitset_then_dataset_empties_every_table(storage):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0, size_validation=None, fold_count=2)
    queue = _queue(splitset, [4])
    dataset = splitset.label.dataset
    metrics = len(queue.experiment.metric_set.names)

    assert dict(queue.delete().counts) == {
        "Experiment": 1, "Hyperparamset": 1, "Queue": 1, "Job": 2, "Metric": 2 * SPLITS * metrics,
        "HistoryEntry": 2 * HISTORY, "Prediction": 2 * SPLITS, "TrainedModel": 2}
    # label + feature encoder, fit on the train split and on each fold's training rows
    assert dict(splitset.delete().counts) == {"Label": 1, "Feature": 1, "Splitset": 1, "Fold": 2, "Encoder": 6}
    assert dict(dataset.delete().counts) == {"Dataset": 1, "DatasetPart": 1}
    assert set(_counts().values()) == {0}
    assert SchemaInfo.select().count() == 1  # the database itself stays
    reclaimed = vacuum()
    assert isinstance(reclaimed, int) and reclaimed >= 0


@pytest.mark.backends
def test_a_splitset_or_dataset_in_use_is_refused_naming_its_queues(db, row_counts):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    first, second = _queue(splitset, [4], run=False, name="baseline"), _queue(splitset, [5], run=False)
    dataset = splitset.label.dataset
    before = row_counts()

    with pytest.raises(InUseError) as refused:
        splitset.delete()
    message = str(refused.value)
    assert f"queue {first.id} 'baseline'" in message and f"queue {second.id}" in message
    assert "nothing was deleted" in message and isinstance(refused.value, ValueError)
    with pytest.raises(InUseError, match=f"dataset {dataset.id} is used by queue {first.id} 'baseline', queue"):
        dataset.delete()
    assert row_counts() == before

    planned = deletion.plan("splitset", splitset.id)
    assert planned.used_by == ((first.id, "baseline"), (second.id, None))
    assert isinstance(planned.refusal(), InUseError)
    # what the refused plan counts: the splitset's own rows, never the experiments its queues run
    assert dict(planned.counts) == {"Label": 1, "Feature": 1, "Splitset": 1, "Encoder": 2}


def test_a_label_and_feature_shared_by_another_splitset_stay(db, row_counts, iris):
    dataset = aiqc.Dataset.Tabular.from_pandas(iris)
    label, feature = dataset.make_label("species"), dataset.make_feature(exclude_columns=["species"])
    first, second = Splitset.make(label, feature, random_state=0), Splitset.make(label, feature, random_state=1)

    planned = deletion.plan("splitset", first.id)
    assert f"label {label.id} (splitset(s) {second.id} use it too)" in planned.kept
    assert dict(first.delete().counts) == {"Splitset": 1}
    assert dict(second.delete().counts) == {"Label": 1, "Feature": 1, "Splitset": 1}
    assert dict(dataset.delete().counts) == {"Dataset": 1, "DatasetPart": 1}
    assert set(row_counts().values()) == {0, 1} and row_counts()["SchemaInfo"] == 1


@pytest.mark.backends
def test_running_jobs_are_refused_unless_forced(db, row_counts):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = _queue(splitset, [4, 5, 6], run=False)
    running = sorted(j.id for j in queue.jobs)[:2]
    Job.update(state=JobState.RUNNING).where(Job.id.in_(running)).execute()
    before = row_counts()

    with pytest.raises(ValidationError) as refused:
        queue.delete()
    assert f"jobs {running[0]}, {running[1]} are {JobState.RUNNING}" in str(refused.value)
    assert "force=True" in str(refused.value)
    assert row_counts() == before
    assert dict(queue.delete(force=True).counts) == {"Experiment": 1, "Hyperparamset": 3, "Queue": 1, "Job": 3}
    with pytest.raises(ValidationError, match="force: expected False for a splitset"):
        deletion.delete("splitset", splitset.id, force=True)


def test_a_read_only_database_refuses_delete_and_vacuum(db, row_counts, iris):
    dataset = aiqc.Dataset.Tabular.from_pandas(iris)
    before = row_counts()
    aiqc.setup(db, read_only=True)
    assert dict(deletion.plan("dataset", dataset.id).counts) == {"Dataset": 1, "DatasetPart": 1}  # reading works
    with pytest.raises(DatabaseReadOnlyError, match="read-only"):
        dataset.delete()
    with pytest.raises(DatabaseReadOnlyError, match="read_only=True"):
        vacuum()
    aiqc.setup(db)
    assert row_counts() == before


def test_unknown_ids_and_bad_arguments(db, iris):
    for kind in deletion.KINDS:
        with pytest.raises(NotFoundError):
            deletion.delete(kind, 999)
        with pytest.raises(NotFoundError):
            deletion.plan(kind, 999)
    with pytest.raises(ValidationError, match="kind: expected one of \\['queue', 'splitset', 'dataset'\\]"):
        deletion.delete("job", 1)
    with pytest.raises(ValidationError, match="id: expected the integer id of a dataset; received '1'"):
        deletion.delete("dataset", "1")
    dataset = aiqc.Dataset.Tabular.from_pandas(iris)
    with pytest.raises(ValidationError, match="force: expected True or False"):
        deletion.delete("dataset", dataset.id, force="yes")
    assert Dataset.select().count() == 1


# --- peewee's Model.delete() stays what peewee and aiqc expect on the class ------------------------
def test_delete_on_the_class_is_peewees_query_and_on_a_record_aiqcs(db, iris):
    for model in (Queue, Splitset, Dataset, JobAlias):
        assert isinstance(model.delete(), pw.ModelDelete)
    assert Queue.delete().where(Queue.id == -1).execute() == 0
    assert "DELETE FROM" in Splitset.delete().where(Splitset.id == 1).sql()[0]

    dataset = aiqc.Dataset.Tabular.from_pandas(iris)
    assert inspect.ismethod(dataset.delete) and dataset.delete.__self__ is dataset
    assert "InUseError" in (Dataset.__dict__["delete"].__doc__ or "")
    part = dataset.parts.get()
    assert part.delete_instance() == 1  # peewee's own path: type(self).delete().where(...)
    assert Dataset.delete_by_id(dataset.id) == 1
    assert Dataset.select().count() == 0


# --- caches ---------------------------------------------------------------------------------------
def test_a_new_splitset_made_after_a_delete_reads_its_own_data(db, iris):
    old = reference_make(iris, random_state=0)
    old_dataset = old.label.dataset_id
    assert old.features_to_pandas("train").shape[0] == old.count_train  # read: now cached in this process
    old.label.dataset.delete()

    other = iris.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other[["sepal_length", "sepal_width", "petal_length", "petal_width"]] *= 10
    new = reference_make(other, random_state=0)
    assert new.label.dataset_id == old_dataset  # SQLite gave the deleted id to the new dataset
    pd.testing.assert_frame_equal(new.label.dataset.to_pandas(), other)
    rows = new.indices("test")
    np.testing.assert_allclose(new.features_to_pandas("test").to_numpy(), other.iloc[rows, :4].to_numpy())


# --- the command line -----------------------------------------------------------------------------
def _cli(capsys, monkeypatch, argv: list[str], answer: str | None = None) -> tuple[int, str, str]:
    """``aiqc ARGV`` in this process, ``answer`` on stdin (a pipe); (status, stdout, stderr)."""
    if answer is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.backends
def test_rm_shows_the_plan_asks_and_deletes_only_on_yes(db, row_counts, capsys, monkeypatch):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = _queue(splitset, [4], name="baseline")
    before = row_counts()

    for answer in ("n\n", "", "whatever\n"):  # no, the end of input, anything else
        code, out, _ = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "queue", str(queue.id)], answer)
        assert code == 1 and "Delete? [y/N]" in out and out.rstrip().endswith("nothing was deleted"), out
        assert f"queue {queue.id} 'baseline': would delete 1 experiment, 1 hyperparamset, 1 queue, 1 job" in out
        assert row_counts() == before

    code, _, err = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "splitset", str(splitset.id)], "y\n")
    assert code == 2 and err.count("\n") == 1 and f"used by queue {queue.id} 'baseline'" in err, err
    assert row_counts() == before

    code, out, _ = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "queue", str(queue.id)], "y\n")
    assert code == 0 and f"deleted queue {queue.id}: 1 experiment" in out, out
    assert row_counts()["Queue"] == 0 and row_counts()["Dataset"] == 1

    code, out, _ = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "dataset", str(splitset.label.dataset_id),
                                              "--yes"])
    assert code == 0 and "Delete?" not in out and "1 dataset part" in out, out
    assert set(row_counts().values()) == {0, 1}


def test_rm_of_an_unknown_id_and_db_vacuum_gives_the_room_back(db, capsys, monkeypatch):
    code, _, err = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "splitset", "7", "--yes"])
    assert code == 2 and "Splitset id=7 does not exist" in err, err

    rows = np.random.default_rng(0).random((20_000, 5))
    dataset = aiqc.Dataset.Tabular.from_pandas(pd.DataFrame(rows, columns=list("abcde")))
    assert dataset.stored_bytes > 500_000
    code, out, _ = _cli(capsys, monkeypatch, ["--db", str(db), "rm", "dataset", str(dataset.id)], "yes\n")
    assert code == 0, out

    size = db.stat().st_size + db.with_name(db.name + "-wal").stat().st_size
    code, out, _ = _cli(capsys, monkeypatch, ["--db", str(db), "db", "vacuum"])
    reclaimed = int(out.split(", ")[-1].split(" bytes")[0].replace(",", ""))
    assert code == 0 and out.startswith(f"{db}: vacuumed, ") and reclaimed > 500_000, out
    wal = db.with_name(db.name + "-wal")
    assert db.stat().st_size + (wal.stat().st_size if wal.exists() else 0) <= size - 500_000


def test_an_id_deleted_elsewhere_and_given_again_never_reads_a_stale_cache(db, iris):
    """Another process deletes the newest splitset and dataset (this one's caches are not
    cleared); SQLite gives their ids to the next ones, whose data and encodings are read anew."""
    from aiqc import training
    from aiqc.database import current_path
    from aiqc.orm.base import database_key

    first = reference_make(iris, random_state=0)
    first.label.dataset.to_pandas()
    training.encoded_scope(database_key(), first.id, first.created_at, None)
    with pw.SqliteDatabase(str(current_path()), pragmas={"foreign_keys": 1}) as other_process:
        other_process.execute_sql("DELETE FROM dataset WHERE id = ?", (first.label.dataset_id,))  # cascades
    doubled = iris.assign(sepal_length=iris["sepal_length"] * 2)
    second = reference_make(doubled, random_state=1)
    assert (second.label.dataset_id, second.id) == (first.label.dataset_id, first.id)  # the same ids again
    pd.testing.assert_frame_equal(Splitset.get_by_id(second.id).label.dataset.to_pandas(), doubled)
    scope = training.encoded_scope(database_key(), second.id, Splitset.get_by_id(second.id).created_at, None)
    np.testing.assert_array_equal(scope["train"][0], Splitset.get_by_id(second.id).indices("train"))
    np.testing.assert_allclose(scope["train"][1], Splitset.get_by_id(second.id).features_to_numpy("train"))
