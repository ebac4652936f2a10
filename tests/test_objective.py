"""One objective per queue, one seed per queue, and the user's own metrics as arguments."""

from __future__ import annotations

import pytest

import aiqc
from aiqc import datum
from aiqc.exceptions import ValidationError
from aiqc.orm import Hyperparamset, Job
from aiqc.search import Float, Search

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

GRID = {"neuron_count": [4, 8], "batch_size": [16], "epoch_count": [3]}


@pytest.fixture
def splitset(db):
    pytest.importorskip("torch")
    return reference_make(datum.to_pandas("iris.tsv"), random_state=0)


def _make(splitset, **changes):
    arguments = dict(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                     fn_train=fns.torch_train, hyperparameters=GRID, repeat_count=2, splitset_id=splitset.id)
    return aiqc.Experiment.make(**{**arguments, **changes})


def _hand_best(queue, metric, split, lower=False):
    frame = queue.metrics_to_pandas(states=["COMPLETE"])
    scores = frame[frame["split"] == split].sort_values([metric, "job_id"], ascending=[lower, True])
    return int(scores.iloc[0]["job_id"])


def test_the_default_objective_is_accuracy_on_validation(splitset):
    queue = _make(splitset)
    assert queue.objective == ("accuracy", "validation")
    queue.run_jobs(progress=False)
    assert queue.best_job().id == _hand_best(queue, "accuracy", "validation")


def test_make_metric_is_the_objective_everywhere(splitset, tmp_path):
    queue = _make(splitset, metric="log_loss")
    assert queue.objective == ("log_loss", "validation")
    queue.run_jobs(progress=False)
    best = queue.best_job()
    assert best.id == _hand_best(queue, "log_loss", "validation", lower=True)
    aggregate = queue.metrics_aggregate(["log_loss"], stats=("mean",))
    validation = aggregate[aggregate["split"] == "validation"].sort_values(["log_loss_mean", "hyperparamset"])
    expected = Hyperparamset.get((Hyperparamset.experiment == queue.experiment_id)
                                 & (Hyperparamset.index == int(validation.iloc[0]["hyperparamset"])))
    assert queue.best_params() == expected.hyperparameters
    text = queue.report(tmp_path / "r.html").read_text()
    assert f"Best job: {best.id} (by validation log_loss)" in text
    listing = aiqc.list_queues().set_index("queue_id").loc[queue.id]
    assert listing["objective"] == "validation log_loss"
    assert listing["best"] == pytest.approx(best.metrics()["validation"]["log_loss"])
    assert queue.best_job(metric="accuracy", split="test").id == _hand_best(queue, "accuracy", "test")


def test_a_search_metric_is_the_queue_objective(splitset):
    pytest.importorskip("optuna")
    queue = _make(splitset, hyperparameters={**GRID, "learning_rate": Float(1e-3, 1e-1, log=True)}, repeat_count=1,
                  search=Search("random", n_trials=3, metric="roc_auc", seed=1))
    assert queue.objective == ("roc_auc", "validation")
    queue.run_jobs(progress=False)
    assert queue.best_job().id == _hand_best(queue, "roc_auc", "validation")
    aggregate = queue.metrics_aggregate(["roc_auc"], stats=("mean",))
    validation = aggregate[aggregate["split"] == "validation"].sort_values(["roc_auc_mean", "hyperparamset"],
                                                                           ascending=[False, True])
    assert queue.best_params()["learning_rate"] == pytest.approx(validation.iloc[0]["learning_rate"])


def test_the_objective_split_is_test_without_validation(db):
    pytest.importorskip("torch")
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0, size_validation=None)
    queue = _make(splitset, repeat_count=1)
    assert queue.objective == ("accuracy", "test")


def test_one_seed_reproduces_every_job(splitset):
    first, second = _make(splitset, seed=7), _make(splitset, seed=7)
    assert first.experiment.seed == 7
    seeds = [[j.seed for j in q.jobs.order_by(Job.id)] for q in (first, second)]
    assert seeds[0] == seeds[1] and len(set(seeds[0])) == len(seeds[0])
    for queue in (first, second):
        queue.run_jobs(progress=False)
    metrics = [[j.metrics() for j in q.jobs.order_by(Job.id)] for q in (first, second)]
    assert metrics[0] == metrics[1]
    drawn = _make(splitset).experiment
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < 2**31 - 1
    assert aiqc.Experiment.get_by_id(drawn.id).seed == drawn.seed


def test_a_drawn_seed_is_stored_and_used_by_a_search(splitset):
    pytest.importorskip("optuna")
    queue = _make(splitset, hyperparameters={**GRID, "learning_rate": Float(1e-3, 1e-1, log=True)},
                  search=Search("random", n_trials=2))
    assert queue.experiment.seed is not None and queue.experiment.search_settings.seed == queue.experiment.seed


BAD = {
    "unknown objective": (dict(metric="auc"), r"metric: expected one of \['accuracy', .*\] for classification_multi; received 'auc'"),
    "objective of another type": (dict(metric="r2"), r"metric: expected one of .*received 'r2'"),
    "objective against the search": (
        dict(metric="f1", hyperparameters={**GRID, "learning_rate": Float(1e-3, 1e-1)},
             search=Search("random", n_trials=2, metric="roc_auc")),
        r"metric: expected None or the search's metric 'roc_auc' \(one objective and one seed per queue\); received 'f1'"),
    "seed against the search": (
        dict(seed=3, hyperparameters={**GRID, "learning_rate": Float(1e-3, 1e-1)}, search=Search("random", n_trials=2, seed=4)),
        r"seed: expected None or the search's seed 4"),
    "negative seed": (dict(seed=-1), r"seed: expected None or an integer in \[0, 2\*\*31 - 2\]; received -1"),
    "text seed": (dict(seed="7"), r"seed: expected None or an integer .*received '7'"),
    "metrics not a dict": (dict(metrics=[len]), r"metrics: expected None or a dict"),
    "metric not a function": (dict(metrics={"cost": 3}), r"metrics\['cost'\]: expected a function fn\(y_true, y_pred, y_prob\)"),
    "metric of the wrong shape": (dict(metrics={"cost": lambda y_true: 0.0}),
                                  r"metrics\['cost'\]: expected a function fn\(y_true, y_pred, y_prob\) -> float; received"),
    "metric named as a built-in": (dict(metrics={"accuracy": lambda t, p, q: 0.0}),
                                   r"metrics\['accuracy'\]: expected a name other than the built-in metrics"),
    "metric direction": (dict(metrics={"cost": (lambda t, p, q: 0.0, "lower")}),
                         r"metrics\['cost'\] direction: expected 'maximize' or 'minimize'; received 'lower'"),
    "positive class of a multiclass label": (dict(positive_class="setosa"), r"positive_class: expected None for analysis_type"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_objective_seed_or_metrics_are_refused_before_any_write(splitset, row_counts, case):
    changes, message = BAD[case]
    if "search" in changes:
        pytest.importorskip("optuna")
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        _make(splitset, **changes)
    assert row_counts() == before


def test_a_custom_metric_can_be_the_objective(splitset):
    queue = _make(splitset, metrics={"cost": (lambda y_true, y_pred, y_prob: float((y_true != y_pred).sum()), "minimize")},
                  metric="cost")
    assert queue.objective == ("cost", "validation")
    assert queue.experiment.metric_set.names[-1] == "cost" and queue.experiment.metric_set.lower_is_better("cost")
    assert "cost" in queue.experiment.sources["metrics.cost"]


def _misclassified(y_true, y_pred, y_prob):
    return float((y_true != y_pred).mean())


def test_a_custom_metric_drives_a_search_and_is_recorded(splitset):
    pytest.importorskip("optuna")
    queue = _make(splitset, hyperparameters={**GRID, "learning_rate": Float(1e-3, 1e-1, log=True)}, repeat_count=1,
                  metrics={"misclassified": (_misclassified, "minimize")},
                  search=Search("random", n_trials=3, metric="misclassified", seed=2))
    assert queue.objective == ("misclassified", "validation")
    assert queue.experiment.search_settings.direction == "minimize"
    queue.run_jobs(progress=False)
    frame = queue.metrics_to_pandas()
    assert "misclassified" in frame.columns and frame["misclassified"].notna().all()
    # the custom metric is 1 - accuracy on every split of every job
    assert (frame["misclassified"] - (1 - frame["accuracy"])).abs().max() < 1e-12
    assert queue.best_job().id == _hand_best(queue, "misclassified", "validation", lower=True)


def test_yaml_metrics_objective_and_seed_round_trip(db, tmp_path):
    pytest.importorskip("torch")
    import shutil

    import yaml

    examples = fns.__file__.replace("tests/fns.py", "examples")
    shutil.copy(f"{examples}/models.py", tmp_path / "models.py")
    (tmp_path / "scores.py").write_text(
        "def misclassified(y_true, y_pred, y_prob):\n    return float((y_true != y_pred).mean())\n")
    spec = yaml.safe_load(open(f"{examples}/iris.yaml"))
    spec["experiment"].update(metrics={"misclassified": {"fn": "scores:misclassified", "direction": "minimize"}},
                              metric="misclassified", seed=3, hyperparameters={"neuron_count": [4], "batch_size": 8,
                                                                               "epoch_count": 2})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    queue = aiqc.Experiment.from_config(tmp_path / "spec.yaml")
    experiment = queue.experiment
    assert queue.objective == ("misclassified", "validation") and experiment.seed == 3
    assert experiment.metric_directions == {"misclassified": "minimize"}
    assert experiment.hyperparameters["batch_size"] == [8]  # one value is one fixed value
    queue.run_jobs(progress=False)
    assert "misclassified" in queue.metrics_to_pandas().columns
    assert queue.plot_performance("misclassified").layout.title.text.endswith("misclassified")  # charts take it too

    exported = queue.to_config(tmp_path / "again.yaml")
    again = yaml.safe_load(exported.read_text())["experiment"]
    assert again["metric"] == "misclassified" and again["seed"] == 3
    assert again["metrics"] == {"misclassified": {"fn": "again_models:misclassified", "direction": "minimize"}}
    rebuilt = aiqc.Experiment.from_config(exported)
    assert rebuilt.objective == queue.objective and rebuilt.experiment.seed == 3
    assert [j.seed for j in rebuilt.jobs] == [j.seed for j in queue.jobs]
