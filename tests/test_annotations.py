"""Living with a database for months: names, descriptions and tags on queues and splitsets,
aliases of jobs, the versions recorded with each job and encoder, data stored once."""

from __future__ import annotations

import threading
import warnings

import pandas as pd
import pytest

import aiqc
from aiqc import datum
from aiqc.cli import main as cli_main
from aiqc.exceptions import DataReusedNotice, NotFoundError, ValidationError, VersionWarning
from aiqc.orm import Dataset, Encoder, Job, JobAlias
from fns import reference_make, torch_build, torch_train

HP = {"neuron_count": [4], "epoch_count": [1], "batch_size": [16]}


def _queue(splitset, **kwargs):
    kwargs.setdefault("hyperparameters", HP)
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=torch_build,
                                fn_train=torch_train, splitset_id=splitset.id, **kwargs)


@pytest.fixture
def splitset(db, iris):
    return reference_make(iris, random_state=0)


# --- names, descriptions, tags -------------------------------------------------------------------
def test_tags_set_at_make_filter_the_listing(splitset):
    churn = _queue(splitset, name="churn mlp", description="first try", tags=["churn", "baseline"])
    other = _queue(splitset, tags="fraud")
    plain = _queue(splitset)
    assert (churn.name, churn.description, churn.tags) == ("churn mlp", "first try", ["churn", "baseline"])
    assert plain.tags == [] and plain.name is None

    listing = aiqc.list_queues()
    assert listing["queue_id"].tolist() == [churn.id, other.id, plain.id]
    assert listing["name"].fillna("").tolist() == ["churn mlp", "", ""]
    assert listing["tags"].tolist() == [["churn", "baseline"], ["fraud"], []]
    assert aiqc.list_queues(tag="churn")["queue_id"].tolist() == [churn.id]
    assert aiqc.list_queues(tag=["churn", "baseline"])["queue_id"].tolist() == [churn.id]
    assert aiqc.list_queues(tag=["churn", "fraud"]).empty  # every tag must be there
    assert aiqc.list_queues(tag="nobody").empty


def test_the_tag_filter_scores_only_the_queues_it_keeps(splitset):
    untagged = _queue(splitset)
    tagged = _queue(splitset, tags=["kept"])
    for queue in (untagged, tagged):
        queue.run_jobs(progress=False)
    listing = aiqc.list_queues(tag="kept")
    assert listing["queue_id"].tolist() == [tagged.id]
    best = tagged.best_job().metrics()["validation"]["accuracy"]
    assert listing["best"].tolist() == [best]


def test_tags_and_names_change_later(splitset):
    queue = _queue(splitset, tags=["a"])
    assert queue.add_tags("b", "a", "c") == ["a", "b", "c"]
    assert queue.remove_tags("a", "not-there") == ["b", "c"]
    assert queue.set_tags(["z"]) == ["z"]
    queue.describe(name="renamed", description="longer text")
    fresh = aiqc.Queue.get_by_id(queue.id)
    assert (fresh.name, fresh.description, fresh.tags) == ("renamed", "longer text", ["z"])
    fresh.describe(description=None)  # None clears; the name is kept
    assert (aiqc.Queue.get_by_id(queue.id).name, aiqc.Queue.get_by_id(queue.id).description) == ("renamed", None)
    assert queue.set_tags(None) == [] and aiqc.Queue.get_by_id(queue.id).tags == []


def test_splitsets_carry_tags_too(db, iris):
    tagged = reference_make(iris, tags=["iris", "v1"], name="iris split")
    untagged = reference_make(iris)
    assert aiqc.list_splitsets(tag="v1")[["splitset_id", "name"]].values.tolist() == [[tagged.id, "iris split"]]
    untagged.add_tags("v2")
    assert aiqc.list_splitsets()["tags"].tolist() == [["iris", "v1"], ["v2"]]
    made = aiqc.Splitset.make(tagged.label, tagged.feature, tags=["low-level"])
    assert aiqc.Splitset.get_by_id(made.id).tags == ["low-level"]


@pytest.mark.parametrize("bad, message", [
    (3, "tags: expected None, a string or a list of strings; received 3"),
    ([""], "expected a tag: a non-empty string of at most 100 characters"),
    (["a,b"], "without a comma"),
    ([" padded"], "leading or trailing spaces"),
    (["ok", 7], "tags[1]: expected a tag: a non-empty string; received 7"),
    ({"a": 1}, "tags: expected None, a string or a list of strings"),
])
def test_a_bad_tag_is_refused_before_anything_is_written(splitset, row_counts, bad, message):
    before = row_counts()
    with pytest.raises(ValidationError) as raised:
        _queue(splitset, tags=bad)
    assert message in str(raised.value)
    with pytest.raises(ValidationError):
        reference_make(datum.to_pandas("iris.tsv"), tags=bad)
    assert row_counts() == before
    queue = _queue(splitset, tags=["kept"])
    with pytest.raises(ValidationError):
        queue.set_tags(bad)
    with pytest.raises(ValidationError):
        queue.add_tags(*(bad if isinstance(bad, list) else [bad]))
    assert aiqc.Queue.get_by_id(queue.id).tags == ["kept"]
    with pytest.raises(ValidationError, match="tag: expected None, a string or a list of strings; received 3"):
        aiqc.list_queues(tag=3)


def test_a_name_that_is_not_text_is_refused(splitset, row_counts):
    before = row_counts()
    with pytest.raises(ValidationError, match="name: expected None or a string; received 5"):
        _queue(splitset, name=5)
    assert row_counts() == before
    queue = _queue(splitset, name="kept")
    with pytest.raises(ValidationError, match="description: expected None or a string"):
        queue.describe(description=["x"])
    assert aiqc.Queue.get_by_id(queue.id).name == "kept"


def test_yaml_specs_carry_names_and_tags_both_ways(db, tmp_path):
    spec = {
        "data": {"datum": "iris.tsv", "label_column": "species", "feature_cols_excluded": ["species"],
                 "label_encoder": {"class": "sklearn.preprocessing.OneHotEncoder"},
                 "feature_encoders": [{"class": "sklearn.preprocessing.StandardScaler", "dtypes": ["float64"]}],
                 "size_validation": 0.12, "random_state": 1, "tags": ["iris"], "name": "iris split"},
        "experiment": {"library": "pytorch", "analysis_type": "classification_multi",
                       "fn_build": "fns:torch_build", "fn_train": "fns:torch_train",
                       "hyperparameters": {k: v for k, v in HP.items()},
                       "name": "from yaml", "description": "a spec", "tags": ["yaml", "iris"]},
    }
    import yaml
    from pathlib import Path

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    shutil_copy(Path(__file__).with_name("fns.py"), tmp_path / "fns.py")
    queue = aiqc.Experiment.from_config(path)
    assert (queue.name, queue.description, queue.tags) == ("from yaml", "a spec", ["yaml", "iris"])
    assert queue.experiment.splitset.tags == ["iris"]
    exported = yaml.safe_load(queue.to_config(tmp_path / "out.yaml").read_text())
    assert exported["experiment"]["tags"] == ["yaml", "iris"] and exported["experiment"]["name"] == "from yaml"
    assert exported["data"]["tags"] == ["iris"] and exported["data"]["name"] == "iris split"


def shutil_copy(source, target):
    target.write_text(source.read_text())


def test_the_command_line_lists_by_tag_and_tags(splitset, capsys):
    churn = _queue(splitset, name="churn", tags=["churn"])
    _queue(splitset, tags=["fraud"])
    database = str(aiqc.database.current_path())
    assert cli_main(["--db", database, "list", "--tag", "churn"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].split()[:3] == [str(churn.id), "churn", "churn"]
    assert cli_main(["--db", database, "tag", "queue", str(churn.id), "prod", "--remove", "churn"]) == 0
    assert f"queue {churn.id} tags: prod" in capsys.readouterr().out
    assert aiqc.Queue.get_by_id(churn.id).tags == ["prod"]
    assert cli_main(["--db", database, "list", "--tag", "churn"]) == 0
    assert capsys.readouterr().out.strip() == "no queues tagged churn"
    assert cli_main(["--db", database, "show", "queue", str(churn.id)]) == 0
    assert "name churn  tags prod" in capsys.readouterr().out


# --- aliases ------------------------------------------------------------------------------------
@pytest.fixture
def two_jobs(splitset):
    queue = _queue(splitset, hyperparameters={**HP, "neuron_count": [4, 5]})
    queue.run_jobs(progress=False)
    return list(queue.jobs.order_by(Job.id))


def test_an_alias_finds_its_job_and_moves(two_jobs):
    first, second = two_jobs
    assert first.set_alias("churn-prod") is None
    assert Job.get_by_alias("churn-prod").id == first.id and first.aliases == ["churn-prod"]
    assert first.set_alias("churn-prod") is None  # already there: nothing moves
    moved_from = second.set_alias("churn-prod")
    assert moved_from.id == first.id
    assert Job.get_by_alias("churn-prod").id == second.id
    assert first.aliases == [] and second.aliases == ["churn-prod"]
    assert JobAlias.select().count() == 1
    second.set_alias("churn-v2")
    assert second.aliases == ["churn-prod", "churn-v2"]
    second.remove_alias("churn-v2")
    with pytest.raises(NotFoundError, match=r"alias: expected an alias of a job; received 'churn-v2'"):
        Job.get_by_alias("churn-v2")
    with pytest.raises(ValidationError, match="alias: expected one of job"):
        first.remove_alias("churn-prod")  # it points at the second job


def test_readers_always_see_exactly_one_job_while_an_alias_moves(two_jobs):
    import peewee as pw

    first, second = two_jobs
    first.set_alias("live")
    database = aiqc.database.current_path()
    seen, stop = [], threading.Event()

    def read() -> None:
        reader = pw.SqliteDatabase(str(database), timeout=30)
        while not stop.is_set():
            seen.append(reader.execute_sql("SELECT job_id FROM job_alias WHERE name = 'live'").fetchall())
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(40):
            second.set_alias("live")
            first.set_alias("live")
    finally:
        stop.set()
        thread.join()
    assert seen and all(len(rows) == 1 and rows[0][0] in (first.id, second.id) for rows in seen)


def test_a_bad_alias_changes_nothing(two_jobs, splitset, row_counts):
    first, _ = two_jobs
    first.set_alias("kept")
    before = row_counts()
    for bad in ["", "12", "-dash-first", "has space", "a" * 101, 7, None]:
        with pytest.raises(ValidationError, match="alias: expected an alias such as 'churn-prod'"):
            first.set_alias(bad)
    queued = _queue(splitset)
    after_make = row_counts()
    job = queued.jobs.get()
    with pytest.raises(ValidationError, match=r"alias: expected a COMPLETE job to point 'kept' at; job \d+ is QUEUED"):
        job.set_alias("kept")
    assert row_counts() == after_make and Job.get_by_alias("kept").id == first.id
    assert {k: v for k, v in before.items() if k not in ("Experiment", "Hyperparamset", "Queue", "Job")} == \
        {k: v for k, v in after_make.items() if k not in ("Experiment", "Hyperparamset", "Queue", "Job")}


def test_the_command_line_sets_shows_and_removes_aliases(two_jobs, capsys):
    first, second = two_jobs
    database = str(aiqc.database.current_path())
    assert cli_main(["--db", database, "alias", "prod", str(first.id)]) == 0
    assert capsys.readouterr().out.strip() == f"alias 'prod' -> job {first.id}"
    assert cli_main(["--db", database, "alias", "prod", str(second.id)]) == 0
    assert capsys.readouterr().out.strip() == f"alias 'prod' -> job {second.id} (moved from job {first.id})"
    assert cli_main(["--db", database, "show", "job", str(second.id)]) == 0
    shown = capsys.readouterr().out
    assert "aliases prod" in shown and "versions python " in shown and "scikit-learn " in shown
    assert cli_main(["--db", database, "alias", "prod", "--remove"]) == 0
    assert cli_main(["--db", database, "alias", "prod"]) == 2
    assert "aiqc: error: alias: expected an alias of a job; received 'prod'" in capsys.readouterr().err


# --- versions -----------------------------------------------------------------------------------
def test_every_job_and_encoder_records_its_versions(two_jobs):
    import platform

    import sklearn
    import torch

    versions = Job.get_by_id(two_jobs[0].id).versions
    assert versions["python"] == platform.python_version()
    assert versions["scikit-learn"] == sklearn.__version__ and versions["torch"] == torch.__version__
    assert versions["aiqc"] == aiqc.__version__
    encoder = Encoder.select().first()
    assert encoder.versions == {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                                "numpy": __import__("numpy").__version__}


def test_an_encoder_fit_under_another_scikit_learn_warns_when_loaded(splitset):
    Encoder.update(versions={"scikit-learn": "0.24.2", "numpy": __import__("numpy").__version__}).execute()
    aiqc.database.clear_caches()
    encoder = Encoder.get_by_id(Encoder.select().first().id)
    with pytest.warns(VersionWarning, match=r"encoder \d+ \(splitset \d+\) was fit under scikit-learn 0.24.2 \(now "):
        encoder.fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error", VersionWarning)
        Encoder.update(versions=None).execute()  # an encoder stored before versions were recorded: no warning
        Encoder.get_by_id(encoder.id).fitted


# --- data stored once ---------------------------------------------------------------------------
def test_the_same_data_given_twice_is_stored_once(db, iris, row_counts):
    first = reference_make(iris)
    parts = row_counts()["DatasetPart"]
    with pytest.warns(DataReusedNotice, match=rf"already stored as dataset {first.label.dataset_id} with the same "
                                              r"content \(sha256 [0-9a-f]{12}\.\.\.\) and schema; reusing it"):
        second = reference_make(datum.get_path("iris.tsv"))  # the same rows, from the file this time
    assert second.label.dataset_id == first.label.dataset_id and second.id != first.id
    assert Dataset.select().count() == 1 and row_counts()["DatasetPart"] == parts
    assert aiqc.list_datasets()["dataset_id"].tolist() == [first.label.dataset_id]
    pd.testing.assert_frame_equal(second.label.dataset.to_pandas(), iris)


def test_different_data_or_schema_is_stored_again(db, iris):
    reference_make(iris)
    changed = iris.copy()
    changed.loc[7, "sepal_width"] += 0.1
    as_float32 = iris.astype({"sepal_length": "float32"})
    renamed = iris.rename(columns={"petal_width": "petal_w"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataReusedNotice)
        for frame in (changed, as_float32, iris.iloc[:-1]):
            reference_make(frame)
        reference_make(renamed, feature_encoders=None)
    assert Dataset.select().count() == 5


def test_aiqc_run_twice_reuses_the_data_and_says_so(db, tmp_path, capsys):
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    database = str(aiqc.database.current_path())
    args = ["--db", database, "run", str(examples / "iris.yaml"), "experiment.hyperparameters.epoch_count=[1]",
            "experiment.hyperparameters.neuron_count=[4]"]
    assert cli_main([*args, "--output-dir", str(tmp_path / "one")]) == 0
    assert "reusing" not in capsys.readouterr().out
    assert cli_main([*args, "--output-dir", str(tmp_path / "two")]) == 0
    assert "note: dataset: the data given" in capsys.readouterr().out
    aiqc.setup(database)
    assert Dataset.select().count() == 1 and aiqc.Splitset.select().count() == 2
