"""Messy, imbalanced data end to end: refused NaN, an imputer pipeline, metrics for the rare
class equal to scikit-learn's, a search ranked by roc_auc, a custom metric, predict on a dict."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import StandardScaler

import aiqc
from aiqc.exceptions import ValidationError
from aiqc.search import Float, Search

from test_messy_data import _make, messy_frame

pytestmark = pytest.mark.backends


def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(),
                         nn.Linear(hp["neuron_count"], 1), nn.Sigmoid())


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=32)


def missed_churners(y_true, y_pred, y_prob):
    """Share of the churners the model did not flag."""
    churners = y_true == 1
    return float((y_pred[churners] == 0).mean()) if churners.any() else float("nan")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    aiqc.setup(tmp_path_factory.mktemp("messy") / "aiqc.sqlite3")
    df = messy_frame(rows=500, seed=3)
    from aiqc.orm import MODELS

    before = {m.__name__: m.select().count() for m in MODELS}
    with pytest.raises(ValidationError, match=r"NaN in \d+ training .*SimpleImputer\(\), StandardScaler\(\)"):
        _make(df, feature_encoders=[dict(sklearn_preprocess=StandardScaler(), columns=["age", "income"])],
              feature_cols_excluded=["churn", "id", "signup", "city"])
    assert {m.__name__: m.select().count() for m in MODELS} == before  # nothing written
    splitset = _make(df)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_binary", fn_build=fn_build, fn_train=fn_train,
        hyperparameters={"neuron_count": [4, 8], "epoch_count": 4, "learning_rate": Float(1e-3, 0.1, log=True)},
        splitset_id=splitset.id, search=Search("random", n_trials=3, metric="roc_auc", seed=0),
        positive_class="yes", metrics={"missed_churners": (missed_churners, "minimize")},
    )
    summary = queue.run_jobs(progress=False)
    assert summary.complete == 3, summary
    yield df, splitset, queue
    from aiqc.database import clear_caches
    from aiqc.orm import database_proxy

    database_proxy.obj.close()
    database_proxy.initialize(None)
    clear_caches()


def test_the_search_metric_ranks_the_queue(searched):
    _, _, queue = searched
    assert queue.objective == ("roc_auc", "validation")
    frame = queue.metrics_to_pandas()
    validation = frame[frame["split"] == "validation"].sort_values(["roc_auc", "job_id"], ascending=[False, True])
    assert queue.best_job().id == int(validation.iloc[0]["job_id"])
    assert queue.best_params()["learning_rate"] == pytest.approx(validation.iloc[0]["learning_rate"])


def test_rare_class_metrics_equal_sklearn_on_stored_predictions(searched):
    _, splitset, queue = searched
    job = queue.best_job()
    yes = splitset.class_names().index("yes")
    for split in ("train", "validation", "test"):
        _, predictions, probabilities = job.predictions(split)
        truth = splitset.label_to_numpy(split).ravel().astype(int)
        stored = job.metrics()[split]
        assert stored["f1_positive"] == pytest.approx(skm.f1_score(truth, predictions, pos_label=yes, zero_division=0))
        assert stored["recall_positive"] == pytest.approx(
            skm.recall_score(truth, predictions, pos_label=yes, zero_division=0))
        assert stored["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, predictions))
        assert stored["average_precision"] == pytest.approx(skm.average_precision_score(truth == yes, probabilities))
        assert stored["mcc"] == pytest.approx(skm.matthews_corrcoef(truth, predictions))
        assert stored["missed_churners"] == pytest.approx(missed_churners(truth, predictions, probabilities))


def test_predict_takes_a_raw_dict_with_a_missing_value(searched):
    df, _, queue = searched
    row = df.iloc[0].to_dict() | {"age": None}
    out = queue.best_job().predict(row)
    assert list(out.columns) == ["prediction", "probability_no", "probability_yes"]
    assert out["prediction"].iloc[0] in ("yes", "no")
    assert np.isclose(out[["probability_no", "probability_yes"]].sum(axis=1), 1).all()
