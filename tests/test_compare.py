"""Comparing queues: aiqc.compare_queues against a hand computation from each queue's
metrics_to_pandas, its chart, ``aiqc compare``, and the several-queue HTML report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

import aiqc
from aiqc import datum
from aiqc.cli import main as cli_main
from aiqc.compare import COLUMNS
from aiqc.exceptions import NotFoundError, ValidationError
from aiqc.orm import Queue, database_proxy
from aiqc.plots import _data
from aiqc.states import JobState

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

SCRIPT_NAME = "<script>alert(1)</script>"


def _queue(splitset: Any, epochs: int, analysis: str = "classification_multi", run: bool = True) -> Queue:
    """2 combinations x repeat 2 of a tiny PyTorch model: 4 jobs that score differently."""
    queue = aiqc.Experiment.make(library="pytorch", analysis_type=analysis, fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, splitset_id=splitset.id, repeat_count=2, seed=0,
                                 hyperparameters={"neuron_count": [3, 8], "batch_size": [16], "epoch_count": [epochs],
                                                  "analysis": [analysis]})
    if run:
        queue.run_jobs(progress=False)
    return queue


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One database: two run queues on one iris splitset (one named with a script tag), one
    made but not run, and one regression queue (not run) that measures other metrics."""
    pytest.importorskip("torch")
    from aiqc.orm.dataset import _read_frame

    path = tmp_path_factory.mktemp("compare") / "compare.sqlite3"
    aiqc.setup(path)
    iris = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    first = _queue(iris, epochs=1).describe(name="baseline")
    first.set_tags(["iris", "small"])
    second = _queue(iris, epochs=2).describe(name=SCRIPT_NAME)
    waiting = _queue(iris, epochs=1, run=False)
    diabetes = aiqc.Pipeline.Tabular.make(
        df_or_path=datum.to_pandas("diabetes.csv"), label_column="progression",
        label_encoder=dict(sklearn_preprocess=StandardScaler()), feature_cols_excluded="progression",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.2, size_validation=0.2, bin_count=4, random_state=0)
    regression = _queue(diabetes, epochs=1, analysis="regression", run=False)
    ids = {"path": path, "first": first.id, "second": second.id, "waiting": waiting.id, "regression": regression.id}
    database_proxy.obj.close()
    database_proxy.initialize(None)
    _read_frame.cache_clear()
    return ids


@pytest.fixture
def queues(trained: dict) -> dict:
    aiqc.setup(trained["path"])
    yield {k: (Queue.get_by_id(v) if k != "path" else v) for k, v in trained.items()}
    database_proxy.obj.close()
    database_proxy.initialize(None)


def _by_hand(queue: Queue, metric: str, split: str) -> dict:
    """The row compare_queues should give, computed from queue.metrics_to_pandas()."""
    frame = queue.metrics_to_pandas(states=[JobState.COMPLETE])
    scored = frame[frame["split"] == split].dropna(subset=[metric]).reset_index(drop=True)
    values = scored[metric]
    lower = queue.experiment.metric_set.lower_is_better(metric)
    row = dict(queue_id=queue.id, name=queue.name, tags=queue.tags, library="pytorch",
               analysis_type=queue.experiment.analysis_type.value, metric=metric, split=split,
               direction="minimize" if lower else "maximize", jobs=len(values))
    if not len(values):
        return {**row, "best": np.nan, "best_job_id": pd.NA, "mean": np.nan, "std": np.nan, "min": np.nan,
                "max": np.nan, "best_params_mean": np.nan}
    at = int(np.argmin(values.to_numpy()) if lower else np.argmax(values.to_numpy()))  # first of equals
    combination_means = [float(np.mean(group[metric].to_numpy())) for _, group in scored.groupby("hyperparamset")]
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else np.nan
    return {**row, "best": values[at], "best_job_id": int(scored["job_id"][at]), "mean": mean, "std": std,
            "min": min(values), "max": max(values),
            "best_params_mean": min(combination_means) if lower else max(combination_means)}


def _expected(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"queue_id": "int64", "jobs": "int64", "best_job_id": "Int64",
                                                      **{c: "float64" for c in ("best", "mean", "std", "min", "max",
                                                                                "best_params_mean")}})


def test_compare_equals_a_hand_computation(queues):
    first, second, waiting = queues["first"], queues["second"], queues["waiting"]
    compared = aiqc.compare_queues([first, second.id, waiting])
    metric, split = first.objective
    assert (metric, split) == ("accuracy", "validation")
    pd.testing.assert_frame_equal(compared, _expected([_by_hand(q, metric, split) for q in (first, second, waiting)]),
                                  check_exact=False, rtol=1e-12)
    assert compared["jobs"].tolist() == [4, 4, 0]
    assert compared["name"].tolist()[:2] == ["baseline", SCRIPT_NAME] and pd.isna(compared["name"][2])
    assert compared["tags"].tolist() == [["iris", "small"], [], []]
    # the same answers as each queue's own queries
    for row, queue in zip(compared.itertuples(), (first, second)):
        assert row.best_job_id == queue.best_job().id
        aggregate = queue.metrics_aggregate(["accuracy"]).query("split == 'validation'")
        assert row.best_params_mean == pytest.approx(aggregate["accuracy_mean"].max(), rel=1e-12)
    # order is the order given
    assert aiqc.compare_queues([second, first])["queue_id"].tolist() == [second.id, first.id]


def test_a_minimize_metric_picks_the_lowest_as_best(queues):
    first, second = queues["first"], queues["second"]
    compared = aiqc.compare_queues([first, second], metric="log_loss", split="train")
    assert set(compared["direction"]) == {"minimize"}
    pd.testing.assert_frame_equal(compared, _expected([_by_hand(q, "log_loss", "train") for q in (first, second)]),
                                  check_exact=False, rtol=1e-12)
    assert (compared["best"] == compared["min"]).all() and (compared["best"] < compared["max"]).all()
    best_jobs = [q.best_job(metric="log_loss", split="train").id for q in (first, second)]
    assert compared["best_job_id"].tolist() == best_jobs


def test_a_queue_with_no_complete_job_is_a_row_of_nan(queues):
    compared = aiqc.compare_queues([queues["waiting"].id])
    row = compared.iloc[0]
    assert row["jobs"] == 0 and pd.isna(row["best_job_id"])
    assert compared[["best", "mean", "std", "min", "max", "best_params_mean"]].isna().all(axis=None)


@pytest.mark.parametrize("make, error, message", [
    (lambda q: [q["first"], 999_999], NotFoundError, r"Queue id=999999 does not exist"),
    (lambda q: [q["first"], 999_998, 999_999], NotFoundError, r"Queue ids \[999998, 999999\] do not exist"),
    (lambda q: [q["first"], q["first"].id], ValidationError, r"queues: expected each queue once; received queue \d+"),
    (lambda q: [], ValidationError, r"queues: expected at least one Queue or queue id; received \[\]"),
    (lambda q: q["first"], ValidationError, r"queues: expected a list of Queue objects or queue ids"),
    (lambda q: [q["first"], "2"], ValidationError, r"queues\[1\]: expected a Queue or a queue id \(int\)"),
    (lambda q: [q["first"], True], ValidationError, r"queues\[1\]: expected a Queue or a queue id"),
])
def test_bad_queues_are_refused(queues, make, error, message):
    with pytest.raises(error, match=message):
        aiqc.compare_queues(make(queues))


def test_every_queue_must_measure_the_metric(queues):
    first, regression = queues["first"], queues["regression"]
    with pytest.raises(ValidationError, match=rf"metric: expected a metric every queue measures; queue {regression.id} "
                                              r"measures \['r2', 'mse'.*received 'accuracy'"):
        aiqc.compare_queues([first, regression])
    with pytest.raises(ValidationError, match=rf"queue {first.id} \(baseline\) measures \['accuracy'.*received 'r2'"):
        aiqc.compare_queues([regression, first])
    with pytest.raises(ValidationError, match=r"split: expected one of \['train', 'validation', 'test'\]; "
                                              r"received 'holdout'"):
        aiqc.compare_queues([first], split="holdout")
    with pytest.raises(ValidationError, match=r"metric: expected a metric name \(str\); received 3"):
        aiqc.compare_queues([first], metric=3)
    # different analysis types compare on a metric they share (regression queue: not run yet)
    assert aiqc.compare_queues([regression], metric="r2")["analysis_type"].tolist() == ["regression"]


def test_the_chart_has_one_box_per_queue_and_marks_the_best(queues):
    first, second, waiting = queues["first"], queues["second"], queues["waiting"]
    data = _data.compare_queues_data([first, second, waiting])
    assert [q["label"] for q in data["queues"]] == [f"{first.id}: baseline", f"{second.id}: {SCRIPT_NAME}",
                                                    f"queue {waiting.id}"]
    frame = first.metrics_to_pandas(["accuracy"], states=[JobState.COMPLETE]).query("split == 'validation'")
    assert data["queues"][0]["scores"] == frame["accuracy"].tolist()
    assert data["queues"][0]["job_ids"] == frame["job_id"].tolist()
    assert data["queues"][2] == {"queue_id": waiting.id, "label": f"queue {waiting.id}", "job_ids": [], "scores": [],
                                 "best": None, "best_job_id": None}
    figure = aiqc.plots.plot_compare_queues([first, second, waiting])
    assert [trace.type for trace in figure.data] == ["box"] * 3
    assert [trace.name for trace in figure.data] == [q["label"] for q in data["queues"]]
    compared = aiqc.compare_queues([first, second])
    assert [(a.y, a.text) for a in figure.layout.annotations] == [
        (row.best, f"best: job {row.best_job_id}") for row in compared.itertuples()]


def test_cli_compare_prints_the_table(queues, capsys):
    first, second = queues["first"], queues["second"]
    db = str(queues["path"])
    assert cli_main(["--db", db, "compare", str(first.id), str(second.id), "--metric", "log_loss"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["queue_id", "name", "tags"] and "best_params_mean" in lines[0]
    shown = dict(zip(lines[0].split(), lines[1].split()))  # the first row has a name and tags: one token each
    row = aiqc.compare_queues([first, second], metric="log_loss").iloc[0]
    assert shown["queue_id"] == str(first.id) and shown["name"] == "baseline" and shown["tags"] == "iris,small"
    assert shown["direction"] == "minimize" and int(shown["jobs"]) == 4
    assert float(shown["best"]) == pytest.approx(row["best"], abs=1e-6)
    assert shown["best_job_id"] == str(row["best_job_id"])
    assert "minimize" in lines[2]
    assert cli_main(["--db", db, "compare", str(first.id), "999999"]) == 2
    assert "Queue id=999999 does not exist" in capsys.readouterr().err


def test_report_of_several_queues_compares_them_first_and_escapes_names(queues, tmp_path, capsys, monkeypatch):
    first, second, waiting = queues["first"], queues["second"], queues["waiting"]
    path = aiqc.write_report([first, second.id, waiting], tmp_path / "compare.html")
    text = path.read_text()
    assert SCRIPT_NAME not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    comparison = text.index("<h2>Comparison on validation accuracy (maximize)</h2>")
    assert comparison < text.index(f"<h1>Queue {first.id}: baseline</h1>") < text.index(f"<h1>Queue {second.id}: ")
    assert f"<h1>Queue {waiting.id}</h1>" in text and f"no {JobState.COMPLETE} job yet" in text
    # nothing is written when the queues cannot be compared
    with pytest.raises(ValidationError, match="metric: expected a metric every queue measures"):
        aiqc.write_report([first, queues["regression"]], tmp_path / "refused.html")
    assert not (tmp_path / "refused.html").exists()
    # the CLI: several queues, then the path; one queue: the report as before, no comparison
    monkeypatch.chdir(tmp_path)
    assert cli_main(["--db", str(queues["path"]), "report", str(first.id), str(second.id), "two.html"]) == 0
    assert cli_main(["--db", str(queues["path"]), "report", str(first.id), "one.html"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "two.html"), str(tmp_path / "one.html")]
    two, one = (tmp_path / "two.html").read_text(), (tmp_path / "one.html").read_text()
    assert "<h2>Comparison on" in two and SCRIPT_NAME not in two
    assert "<h2>Comparison on" not in one and f"<h1>aiqc report: queue {first.id}</h1>" in one
    charts = one.count('class="plotly-graph-div"')
    assert charts >= 6 and two.count('class="plotly-graph-div"') == 1 + 2 * charts  # comparison, then each queue's
