"""Experiment.make(...).run_jobs(): one suite, run against both backends."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.analysis import AnalysisType
from aiqc.backends import Library
from aiqc.orm import HistoryEntry, Job, JobState, Metric, Prediction, TrainedModel, database_proxy

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

LIBRARIES = ["keras", "pytorch"]


@pytest.fixture(params=LIBRARIES)
def library(request):
    pytest.importorskip({"keras": "keras", "pytorch": "torch"}[request.param])
    return request.param


def _splitset(analysis: str, fold_count=None):
    if analysis == "classification_multi":
        return reference_make(datum.to_pandas("iris.tsv"), random_state=0,
                              **({"size_validation": None, "fold_count": fold_count} if fold_count else {}))
    if analysis == "classification_binary":
        df = datum.to_pandas("breast_cancer.csv")
        return aiqc.Pipeline.Tabular.make(
            df_or_path=df, label_column="diagnosis", label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
            feature_cols_excluded="diagnosis", feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
            size_test=0.2, size_validation=0.2, random_state=0)
    df = datum.to_pandas("diabetes.csv")
    return aiqc.Pipeline.Tabular.make(
        df_or_path=df, label_column="progression", label_encoder=dict(sklearn_preprocess=StandardScaler()),
        feature_cols_excluded="progression", feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.2, size_validation=0.2, bin_count=4, random_state=0)


def _make(library, analysis, splitset, **overrides):
    build, train = fns.FUNCTIONS[library]
    kwargs = dict(library=library, analysis_type=analysis, fn_build=build, fn_train=train,
                  hyperparameters={"neuron_count": [8], "batch_size": [16], "epoch_count": [2],
                                   "analysis": [analysis], "library": [library]},
                  repeat_count=1, splitset_id=splitset.id)
    kwargs.update(overrides)
    return aiqc.Experiment.make(**kwargs)


def test_reference_experiment_verbatim(db, library):
    """3 x 2 x 2 grid x repeat_count=2 = 24 jobs, all COMPLETE, metrics for every split."""
    splitset = reference_make(datum.to_pandas("iris.tsv"))
    fn_build, fn_train = fns.FUNCTIONS[library]
    hyperparameters = {
        "neuron_count": [12, 24, 36],
        "batch_size": [3, 5],
        "epoch_count": [1, 2],           # small epochs in tests
    }
    if library == "keras":
        def fn_build(features_shape, label_shape, **hp):  # noqa: F811 - the reference text, verbatim
            import keras
            m = keras.Sequential([
                keras.Input(shape=features_shape),
                keras.layers.Dense(hp['neuron_count'], activation='relu'),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(label_shape[0], activation='softmax'),
            ])
            return m

        def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):  # noqa: F811
            import keras
            model.compile(loss=loser, optimizer=optimizer, metrics=['accuracy'])
            model.fit(samples_train['features'], samples_train['labels'],
                      validation_data=(samples_evaluate['features'], samples_evaluate['labels']),
                      verbose=0, batch_size=hp['batch_size'], epochs=hp['epoch_count'],
                      callbacks=[keras.callbacks.History()])
            return model

    queue = aiqc.Experiment.make(
        library=library, analysis_type='classification_multi', fn_build=fn_build, fn_train=fn_train,
        fn_lose=None, fn_optimize=None, fn_predict=None, repeat_count=2, hyperparameters=hyperparameters,
        splitset_id=splitset.id, hide_test=False,
    )
    assert queue.job_count == 24
    summary = queue.run_jobs()
    assert (summary.complete, summary.failed, summary.queued) == (24, 0, 0)
    for job in queue.jobs:
        assert job.state is JobState.COMPLETE
        assert set(job.metrics()) == {"train", "validation", "test"}
        assert set(job.metrics()["test"]) == set(AnalysisType.CLASSIFICATION_MULTI.spec.metrics)
        history = job.history()
        assert len(history["loss"]) == job.hyperparameters["epoch_count"]
        assert len(history["val_loss"]) == job.hyperparameters["epoch_count"]
    seeds = [j.seed for j in queue.jobs]
    assert len(set(seeds)) == len(seeds)  # every repeat has its own recorded seed


@pytest.mark.parametrize("analysis", [a.value for a in AnalysisType])
def test_every_analysis_type_and_metrics_equal_sklearn(db, library, analysis):
    splitset = _splitset(analysis)
    queue = _make(library, analysis, splitset)
    summary = queue.run_jobs(progress=False)
    assert summary.complete == 1, Job.get().error
    job = queue.jobs.get()
    label_classes = splitset.label.unique_count
    for split in ("train", "validation", "test"):
        rows, predictions, probabilities = job.predictions(split)
        np.testing.assert_array_equal(rows, splitset.indices(split))
        stored = job.metrics()[split]
        encoded = splitset.label_to_numpy(split)
        if analysis == "regression":  # measured and stored in the label's original units
            y = splitset.label_to_numpy(split, encoded=False).ravel().astype(float)
            assert probabilities is None
            assert stored["rmse"] == pytest.approx(skm.mean_squared_error(y, predictions) ** 0.5)
            assert stored["r2"] == pytest.approx(skm.r2_score(y, predictions))
            assert stored["mse"] == pytest.approx(skm.mean_squared_error(y, predictions))
            assert stored["mae"] == pytest.approx(skm.mean_absolute_error(y, predictions))
            assert stored["explained_variance"] == pytest.approx(skm.explained_variance_score(y, predictions))
            continue
        y = encoded.argmax(axis=1) if encoded.shape[1] > 1 else encoded.ravel().astype(int)
        assert stored["accuracy"] == pytest.approx(skm.accuracy_score(y, predictions))
        assert stored["f1"] == pytest.approx(skm.f1_score(y, predictions, average="weighted", zero_division=0))
        assert stored["precision"] == pytest.approx(skm.precision_score(y, predictions, average="weighted", zero_division=0))
        assert stored["recall"] == pytest.approx(skm.recall_score(y, predictions, average="weighted", zero_division=0))
        if analysis == "classification_binary":
            assert probabilities.shape == (len(rows),) and ((0 <= probabilities) & (probabilities <= 1)).all()
            assert stored["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probabilities))
        else:
            assert probabilities.shape == (len(rows), label_classes)
            np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
            assert stored["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probabilities / probabilities.sum(1, keepdims=True), multi_class="ovr"))
        assert stored["log_loss"] == pytest.approx(skm.log_loss(y, probabilities if probabilities.ndim == 2 else
                                                                np.column_stack([1 - probabilities, probabilities]),
                                                                labels=list(range(label_classes))), rel=1e-4)
    model = job.get_model()
    backend = aiqc.backends.get_backend(library) if hasattr(aiqc, "backends") else __import__("aiqc.backends").backends.get_backend(library)
    again = backend.predict(model, splitset.features_to_numpy("test"), AnalysisType(analysis))
    # stored predictions are class indices, or regression values in the label's original units
    expected = AnalysisType(analysis).spec.in_original_units(again.predictions, splitset.label_encoder())
    np.testing.assert_allclose(expected, job.predictions("test")[1], rtol=1e-5, atol=1e-5)


def test_folds_make_one_job_per_fold_each_evaluated_on_its_fold(db, library):
    splitset = _splitset("classification_multi", fold_count=5)
    queue = _make(library, "classification_multi", splitset, repeat_count=2)
    assert queue.job_count == 1 * 2 * 5
    queue.run_jobs(progress=False)
    folds = {f.id: f for f in splitset.folds}
    seen = set()
    for job in queue.jobs:
        assert job.state is JobState.COMPLETE
        rows, _, _ = job.predictions("validation")
        np.testing.assert_array_equal(rows, folds[job.fold_id].indices_validation)
        train_rows, _, _ = job.predictions("train")
        np.testing.assert_array_equal(train_rows, folds[job.fold_id].indices_train)
        seen.add((job.repeat_index, job.fold_index))
    assert seen == {(r, f) for r in range(2) for f in range(5)}


def test_hide_test_never_evaluates_test(db, library):
    splitset = _splitset("classification_multi")
    queue = _make(library, "classification_multi", splitset, hide_test=True)
    queue.run_jobs(progress=False)
    job = queue.jobs.get()
    assert set(job.metrics()) == {"train", "validation"}
    assert not Prediction.select().where((Prediction.job == job) & (Prediction.split == "test")).exists()


def test_failures_are_recorded_and_the_queue_goes_on(db, library):
    splitset = _splitset("classification_multi")
    queue = _make(library, "classification_multi", splitset, fn_train=fns.train_raises,
                  hyperparameters={"neuron_count": [13, 8], "batch_size": [16], "epoch_count": [1],
                                   "analysis": ["classification_multi"], "library": [library]})
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed) == (1, 1)
    failed = queue.jobs.where(Job.state == JobState.FAILED).get()
    assert failed.hyperparameters["neuron_count"] == 13
    assert "RuntimeError: boom in fn_train" in failed.error and "Traceback" in failed.error
    assert not Metric.select().where(Metric.job == failed).exists()
    # calling again leaves COMPLETE jobs alone; retry_failed re-runs the failure
    again = queue.run_jobs(progress=False)
    assert (again.ran, again.complete, again.failed) == (0, 1, 1)
    retried = queue.run_jobs(progress=False, retry_failed=True)
    assert (retried.ran, retried.failed) == (1, 1) and Job.get_by_id(failed.id).attempts == 2


@pytest.mark.parametrize("fn_name, fn, message", [
    ("fn_build", fns.build_not_a_model, "fn_build: expected a {model} for library='{library}'; received builtins.str"),
    ("fn_train", fns.train_returns_nothing, "fn_train: expected the trained model as return value (a {model}); received None"),
])
def test_wrong_return_values_fail_the_job_with_a_message(db, library, fn_name, fn, message, monkeypatch):
    from aiqc.backends import Backend

    splitset = _splitset("classification_multi")
    with monkeypatch.context() as patch:  # make would refuse fn_build (tests/test_fail_fast.py); a job still checks
        patch.setattr(Backend, "installed", lambda self: False)
        queue = _make(library, "classification_multi", splitset, **{fn_name: fn})
    summary = queue.run_jobs(progress=False)
    assert summary.failed == 1
    model = {"keras": "keras.Model", "pytorch": "torch.nn.Module"}[library]
    assert message.format(model=model, library=library) in queue.jobs.get().error


def test_results_are_all_in_the_database(db, library):
    splitset = _splitset("classification_multi")
    queue = _make(library, "classification_multi", splitset)
    queue.run_jobs(progress=False)
    job = queue.jobs.get()
    assert Metric.select().where(Metric.job == job).count() == 3 * len(AnalysisType.CLASSIFICATION_MULTI.spec.metrics)
    assert HistoryEntry.select().where(HistoryEntry.job == job).count() >= 2 * 2
    assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
    assert job.seconds > 0 and job.finished_at >= job.started_at and job.attempts == 1
    experiment = queue.experiment
    assert "def " in experiment.sources["fn_build"] and experiment.library == library
    # library and analysis type are enum columns: members in Python, their values in SQL
    stored = aiqc.Experiment.get_by_id(experiment.id)
    assert stored.library is Library(library) and stored.analysis_type is AnalysisType.CLASSIFICATION_MULTI
    assert TrainedModel.get(TrainedModel.job == job).library is Library(library)
    row = database_proxy.obj.execute_sql("SELECT library, analysis_type FROM experiment WHERE id = ?",
                                         (experiment.id,)).fetchone()
    assert row == (library, "classification_multi")


def test_same_seed_reproduces_a_pytorch_job_exactly(db):
    pytest.importorskip("torch")
    splitset = _splitset("classification_multi")
    queue = _make("pytorch", "classification_multi", splitset, repeat_count=3)
    jobs = list(queue.jobs.order_by(Job.id))
    Job.update(seed=jobs[0].seed).where(Job.id == jobs[1].id).execute()
    queue.run_jobs(progress=False)
    first, twin, other = (Job.get_by_id(j.id) for j in jobs)
    np.testing.assert_array_equal(first.predictions("test")[2], twin.predictions("test")[2])
    assert first.history() == twin.history()
    assert not np.array_equal(first.predictions("test")[2], other.predictions("test")[2])


def test_ctrl_c_requeues_the_running_job_and_run_jobs_resumes(db, tmp_path):
    pytest.importorskip("torch")
    splitset = _splitset("classification_multi")
    queue = _make("pytorch", "classification_multi", splitset, fn_train=fns.train_interrupted_once,
                  hyperparameters={"neuron_count": [4, 8, 16], "batch_size": [16], "epoch_count": [1],
                                   "marker": [str(tmp_path / "interrupted")]})
    first = queue.run_jobs(progress=False)
    assert first.interrupted and (first.complete, first.queued, first.running) == (1, 2, 0)
    second = queue.run_jobs(progress=False)
    assert (second.complete, second.ran, second.failed) == (3, 2, 0)
    assert [j.attempts for j in queue.jobs.order_by(Job.id)] == [1, 2, 1]
