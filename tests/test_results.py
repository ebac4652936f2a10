"""Results: queries, inference on raw rows, chart data, the HTML report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.exceptions import ChartNotApplicableError, ValidationError
from aiqc.orm import Job, database_proxy
from aiqc.plots import _data

import fns
from fns import reference_make

pytestmark = pytest.mark.backends


def _experiment(library, analysis, splitset, repeat_count=2, grid=None):
    build, train = fns.FUNCTIONS[library]
    grid = grid or {"neuron_count": [8, 16], "batch_size": [16], "epoch_count": [3]}
    queue = aiqc.Experiment.make(library=library, analysis_type=analysis, fn_build=build, fn_train=train,
                                 hyperparameters={**grid, "analysis": [analysis]}, repeat_count=repeat_count,
                                 splitset_id=splitset.id)
    queue.run_jobs(progress=False)
    return queue.id


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One database with a multiclass, a binary, a regression and a folded queue (PyTorch)."""
    pytest.importorskip("torch")
    from aiqc.orm.dataset import _read_frame

    path = tmp_path_factory.mktemp("results") / "results.sqlite3"
    aiqc.setup(path)
    iris = datum.to_pandas("iris.tsv")
    multi = _experiment("pytorch", "classification_multi", reference_make(iris, random_state=0))
    cancer = aiqc.Pipeline.Tabular.make(
        df_or_path=datum.to_pandas("breast_cancer.csv"), label_column="diagnosis",
        label_encoder=dict(sklearn_preprocess=OrdinalEncoder()), feature_cols_excluded="diagnosis",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.2, size_validation=0.2, random_state=0)
    binary = _experiment("pytorch", "classification_binary", cancer, repeat_count=1)
    diabetes = aiqc.Pipeline.Tabular.make(
        df_or_path=datum.to_pandas("diabetes.csv"), label_column="progression",
        label_encoder=dict(sklearn_preprocess=StandardScaler()), feature_cols_excluded="progression",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.2, size_validation=0.2, bin_count=4, random_state=0)
    regression = _experiment("pytorch", "regression", diabetes, repeat_count=1, grid={"neuron_count": [8], "batch_size": [16], "epoch_count": [5]})
    folded = _experiment("pytorch", "classification_multi",
                         reference_make(datum.to_pandas("iris_10x.tsv"), size_validation=None, fold_count=3, random_state=0),
                         repeat_count=1, grid={"neuron_count": [8, 16], "batch_size": [64], "epoch_count": [2]})
    database_proxy.obj.close()
    database_proxy.initialize(None)
    _read_frame.cache_clear()
    return {"path": path, "multi": multi, "binary": binary, "regression": regression, "folded": folded}


@pytest.fixture
def results(trained):
    aiqc.setup(trained["path"])
    yield {k: (aiqc.Queue.get_by_id(v) if k != "path" else v) for k, v in trained.items()}
    database_proxy.obj.close()
    database_proxy.initialize(None)


def test_metrics_to_pandas_one_row_per_job_and_split(results):
    queue = results["multi"]
    frame = queue.metrics_to_pandas()
    assert len(frame) == queue.job_count * 3 == 4 * 3
    assert {"job_id", "repeat", "fold", "split", "neuron_count", "batch_size", "epoch_count", "accuracy", "f1",
            "roc_auc", "log_loss", "state", "seconds"} <= set(frame.columns)
    job = Job.get_by_id(int(frame.loc[4, "job_id"]))
    row = frame.iloc[4]
    assert row["accuracy"] == pytest.approx(job.metrics()[row["split"]]["accuracy"])
    assert row["neuron_count"] == job.hyperparameters["neuron_count"]
    only = queue.metrics_to_pandas(selected_metrics=["f1"], sort_by="f1", ascending=True)
    assert "accuracy" not in only and only["f1"].is_monotonic_increasing
    with pytest.raises(ValidationError, match=r"selected_metrics: expected names among"):
        queue.metrics_to_pandas(selected_metrics=["r2"])


def test_queries_work_from_a_new_process(results):
    """On the DB left behind: rows per job x split, and best_job agrees with a hand sort."""
    script = textwrap.dedent(f"""
        import json, aiqc
        aiqc.setup({str(results['path'])!r})
        queue = aiqc.Queue.get_by_id({results['multi'].id})
        frame = queue.metrics_to_pandas()
        validation = frame[frame.split == 'validation'].sort_values(['accuracy', 'job_id'], ascending=[False, True])
        print(json.dumps(dict(rows=len(frame), jobs=queue.job_count, best=queue.best_job().id,
                              by_hand=int(validation.iloc[0].job_id), columns=list(frame.columns))))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["rows"] == answer["jobs"] * 3
    assert answer["best"] == answer["by_hand"]
    assert "neuron_count" in answer["columns"]


def test_best_job_lower_is_better_for_losses(results):
    queue = results["multi"]
    frame = queue.metrics_to_pandas(["log_loss"])
    validation = frame[frame.split == "validation"]
    assert queue.best_job("log_loss").id == int(validation.sort_values(["log_loss", "job_id"]).iloc[0].job_id)
    assert queue.best_job("accuracy", split="test").id == int(
        frame.assign(acc=queue.metrics_to_pandas(["accuracy"])["accuracy"])
        .query("split == 'test'").sort_values(["acc", "job_id"], ascending=[False, True]).iloc[0].job_id)
    with pytest.raises(ValidationError, match=r"metric: expected one of .*received 'r2'"):
        queue.best_job("r2")
    with pytest.raises(ValidationError, match=r"split: expected one of the measured splits"):
        queue.best_job(split="holdout")
    assert results["regression"].best_job().metrics()["validation"]["r2"] == max(
        j.metrics()["validation"]["r2"] for j in results["regression"].jobs)


def test_metrics_aggregate_over_repeats_and_folds(results):
    queue = results["folded"]
    aggregate = queue.metrics_aggregate(["accuracy"])
    frame = queue.metrics_to_pandas(["accuracy"])
    assert len(aggregate) == 2 * 3  # combinations x splits
    assert set(aggregate["job_count"]) == {3}  # 3 folds x 1 repeat
    expected = frame.groupby(["hyperparamset", "split"])["accuracy"].agg(["mean", "std", "min", "max"])
    for _, row in aggregate.iterrows():
        want = expected.loc[(row["hyperparamset"], row["split"])]
        assert row["accuracy_mean"] == pytest.approx(want["mean"])
        assert row["accuracy_std"] == pytest.approx(want["std"])
        assert row["accuracy_max"] == pytest.approx(want["max"])
    assert sorted(frame["fold"].dropna().unique().tolist()) == [0, 1, 2]


def test_history_to_pandas(results):
    job = results["multi"].jobs.first()
    history = job.history_to_pandas()
    assert len(history) == 3 and {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns)
    assert history.index.name == "epoch"


def test_listings(results):
    queues = aiqc.list_queues()
    assert set(queues["queue_id"]) == {results[k].id for k in ("multi", "binary", "regression", "folded")}
    assert (queues["complete"] == queues["jobs"]).all()
    assert len(aiqc.list_experiments()) == 4 and len(aiqc.list_splitsets()) == 4
    assert set(aiqc.list_datasets()["rows"]) == {150, 569, 442, 1500}


def test_predict_raw_rows_gives_class_names_equal_to_stored_predictions(results):
    queue = results["multi"]
    job = queue.best_job()
    splitset = queue.experiment.splitset
    iris = datum.to_pandas("iris.tsv")
    rows, stored, probabilities = job.predictions("test")
    predicted = job.predict(iris.iloc[rows])
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    assert predicted["prediction"].tolist() == names[stored].tolist()
    np.testing.assert_allclose(predicted[[f"probability_{n}" for n in names]].to_numpy(), probabilities, rtol=1e-5)
    assert list(predicted.index) == list(iris.iloc[rows].index)
    without_label = job.predict(iris.drop(columns="species").iloc[:5])
    assert len(without_label) == 5 and splitset.label.column == "species"


def test_predict_binary_and_regression_decode_labels(results):
    binary = results["binary"].jobs.first()
    cancer = datum.to_pandas("breast_cancer.csv")
    rows, stored, _ = binary.predictions("test")
    out = binary.predict(cancer.iloc[rows])
    assert set(out["prediction"]) <= {"benign", "malignant"}
    assert out["prediction"].tolist() == np.array(["benign", "malignant"], dtype=object)[stored].tolist()

    regression = results["regression"].jobs.first()
    diabetes = datum.to_pandas("diabetes.csv")
    rows, stored, _ = regression.predictions("test")
    out = regression.predict(diabetes.iloc[rows])
    np.testing.assert_allclose(out["prediction"], stored, rtol=1e-5)  # both in the label's original units
    assert 25 < out["prediction"].mean() < 350  # back in the label's own units


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns="petal_width"), r"df: expected the feature columns .* missing \['petal_width'\]"),
    (lambda df: df.assign(extra=1), r"df: expected only the feature columns .* extra columns \['extra'\]"),
    (lambda df: df.assign(sepal_length="long"), r"df\['sepal_length'\]: expected dtype float64 as in the training data; received"),
    (lambda df: df.iloc[0:0], r"df: expected at least one row"),
    (lambda df: df.to_numpy(), r"df: expected a pandas DataFrame of raw rows"),
])
def test_predict_refuses_bad_rows(results, change, message):
    job = results["multi"].jobs.first()
    with pytest.raises(ValidationError, match=message):
        job.predict(change(datum.to_pandas("iris.tsv").head(10)))


def test_predict_refuses_unseen_categories(db):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=120), "color": rng.choice(["red", "blue"], 120), "y": rng.choice(["a", "b"], 120)})
    splitset = aiqc.Pipeline.Tabular.make(
        df_or_path=df, label_column="y", label_encoder=dict(sklearn_preprocess=OrdinalEncoder()), feature_cols_excluded="y",
        feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["color"])], size_validation=0.2)
    queue = aiqc.Queue.get_by_id(_experiment("pytorch", "classification_binary", splitset, repeat_count=1,
                                             grid={"neuron_count": [4], "batch_size": [32], "epoch_count": [1]}))
    job = queue.jobs.first()
    assert len(job.predict(df.head(3))) == 3
    with pytest.raises(ValidationError, match=r"df: expected values the stored encoders were fit on; .*green"):
        job.predict(df.head(3).assign(color="green"))


# --- chart data --------------------------------------------------------------------------
def test_confusion_matrix_cells_sum_to_the_split_rows(results):
    job = results["multi"].best_job()
    for split in ("train", "validation", "test"):
        data = _data.confusion_matrix_data(job, split)
        assert data["labels"] == ["setosa", "versicolor", "virginica"]
        assert np.sum(data["matrix"]) == len(job.predictions(split)[0])
        assert np.trace(data["matrix"]) / np.sum(data["matrix"]) == pytest.approx(job.metrics()[split]["accuracy"])
    figure = job.plot_confusion_matrix()
    assert len(figure.data) == 3 and figure.data[0].type == "heatmap"


def test_roc_points_in_unit_square_and_auc_equals_stored_metric(results):
    binary = results["binary"].jobs.first()
    data = _data.roc_curve_data(binary, "test")
    (curve,) = data["curves"]
    assert all(0 <= v <= 1 for v in curve["x"] + curve["y"])
    assert curve["area"] == pytest.approx(binary.metrics()["test"]["roc_auc"])
    multi = results["multi"].best_job()
    areas = [c["area"] for c in _data.roc_curve_data(multi, "test")["curves"]]
    assert len(areas) == 3 and np.mean(areas) == pytest.approx(multi.metrics()["test"]["roc_auc"])
    figure = multi.plot_roc_curve("test")
    assert len(figure.data) == 4  # three one-vs-rest curves and the diagonal


def test_precision_recall_data(results):
    job = results["binary"].jobs.first()
    (curve,) = _data.precision_recall_data(job, "validation")["curves"]
    assert all(0 <= v <= 1 for v in curve["x"] + curve["y"])
    rows, _, probabilities = job.predictions("validation")
    truth = job.queue.experiment.splitset.label_to_numpy("validation").ravel()
    assert curve["area"] == pytest.approx(skm.average_precision_score(truth, probabilities))
    assert job.plot_precision_recall("validation").data[0].type == "scatter"


def test_regression_chart_data_and_wrong_analysis_errors(results):
    job = results["regression"].jobs.first()
    data = _data.regression_data(job, "test")
    np.testing.assert_allclose(np.array(data["actual"]) - np.array(data["predicted"]), data["residuals"])
    assert skm.r2_score(data["actual"], data["predicted"]) == pytest.approx(job.metrics()["test"]["r2"])
    assert len(job.plot_regression().data) == 3
    classification = r"classification_multi or classification_binary"
    with pytest.raises(ChartNotApplicableError,
                       match=rf"job: a confusion matrix expects a job of type {classification}; job \d+ is regression"):
        job.plot_confusion_matrix()
    with pytest.raises(ChartNotApplicableError, match=rf"expects a job of type {classification}"):
        job.plot_roc_curve()
    with pytest.raises(ChartNotApplicableError, match=r"job: predicted vs actual expects a job of type regression"):
        results["multi"].jobs.first().plot_regression()


def test_learning_curve_data(results):
    job = results["multi"].jobs.first()
    data = _data.learning_curve_data(job)
    assert data["epochs"] == [1, 2, 3]
    assert set(data["panels"]) == {"loss", "accuracy"} and set(data["panels"]["loss"]) == {"loss", "val_loss"}
    assert len(job.plot_learning_curve().data) == 4


def test_queue_charts_data(results):
    queue = results["multi"]
    data = _data.performance_data(queue, "accuracy")
    assert len(data["job_ids"]) == queue.job_count and data["other_split"] == "validation"
    frame = queue.metrics_to_pandas(["accuracy"])
    first = data["job_ids"][0]
    assert data["train"][0] == pytest.approx(frame.query("job_id == @first and split == 'train'")["accuracy"].item())
    threshold = sorted(data["other"])[len(data["other"]) // 2]
    kept = _data.performance_data(queue, "accuracy", min_score=threshold)
    assert all(v >= threshold for v in kept["other"]) and len(kept["other"]) <= len(data["other"])
    assert len(queue.plot_performance(metric="f1").data) == 2
    with pytest.raises(ValidationError, match=r"metric: expected one of"):
        queue.plot_performance(metric="r2")
    hyper = _data.hyperparameter_data(queue, "accuracy")
    assert list(hyper["parameters"]) == ["neuron_count"]  # the only one that varies
    assert len(hyper["parameters"]["neuron_count"]["scores"]) == queue.job_count
    spread = _data.repeat_spread_data(queue, "accuracy")
    assert {k: len(v) for k, v in spread["combinations"].items()} == {0: 2, 1: 2}  # repeats per combination
    assert len(queue.plot_repeat_spread().data) == 2 and len(queue.plot_hyperparameters().data) == 1


# --- report --------------------------------------------------------------------------------
def test_report_is_one_self_contained_file(results, tmp_path):
    queue = results["multi"]
    path = queue.report(tmp_path / "report.html")
    text = path.read_text()
    assert "<script src" not in text and "plotly.js" in text.lower()  # plotly.js embedded, nothing fetched
    assert len(text) > 3_000_000
    assert text.count('class="plotly-graph-div"') == 7
    assert f"Best job: {queue.best_job().id}" in text
    regression = results["regression"].report(tmp_path / "regression.html").read_text()
    assert regression.count('class="plotly-graph-div"') == 5
    with pytest.raises(ValidationError, match=r"path: expected a file path ending in .html"):
        queue.report(tmp_path / "report.pdf")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", "--virtual-time-budget=20000"]


@pytest.mark.slow  # a headless browser: CI runs it
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(results, tmp_path):
    from PIL import Image

    path = results["multi"].report(tmp_path / "report.html")
    flags = [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert dom.count('class="main-svg"') >= 7  # plotly drew every chart
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=180, check=True)
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    assert image.size == (1280, 2400)
    assert max(histogram) / sum(histogram) < 0.97  # not blank: far from one single colour
    dark = sum(histogram[:128]) / sum(histogram)
    assert dark > 0.001  # text, axes and marks are drawn
