"""The data behind every chart, computed from stored records (no plotting here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aiqc.analysis import Analysis, AnalysisType, JobChart
from aiqc.exceptions import ChartNotApplicableError, ValidationError
from aiqc.states import JobState, TrialState

if TYPE_CHECKING:
    import pandas as pd

#: what each job chart is called in messages
CHART_NAMES = {JobChart.CONFUSION_MATRIX: "a confusion matrix", JobChart.ROC_CURVE: "a ROC / precision-recall curve",
               JobChart.PRECISION_RECALL: "a ROC / precision-recall curve",
               JobChart.PREDICTED_VS_ACTUAL: "predicted vs actual"}


def _analysis(job_or_queue: Any) -> Analysis:
    queue = getattr(job_or_queue, "queue", job_or_queue)
    return queue.experiment.analysis_type.spec


def _require(job: Any, chart: JobChart) -> Analysis:
    """The job's analysis, if ``chart`` applies to it; a ChartNotApplicableError otherwise."""
    analysis = _analysis(job)
    if chart not in analysis.charts:
        fits = [t.value for t in AnalysisType if chart in t.spec.charts]
        raise ChartNotApplicableError(f"job: {CHART_NAMES[chart]} expects a job of type {' or '.join(fits)}; "
                                      f"job {job.id} is {analysis.type}.")
    return analysis


def _truth(job: Any, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(true values, predictions, probabilities) of a split, in the units they were measured
    and stored in: class indices (each raw label's position among the class names recorded with
    the label encoder, in the order of the model's outputs), or (regression) the raw label's
    original values beside the stored original-unit predictions. Nothing is unpickled: the
    fitted encoders are not used."""
    rows, predictions, probabilities = job.predictions(split)
    splitset = job.queue.experiment.splitset
    analysis = _analysis(job)
    fold = job.fold_index
    labels = splitset.label_to_numpy(split, fold, encoded=False)
    if not analysis.original_units and splitset.encoders_for(fold, side="label"):
        labels = _class_positions(labels.reshape(-1), splitset.class_names(fold), job)
    return analysis.truth(labels), analysis.prediction_values(predictions, len(rows)), probabilities


def _class_positions(values: np.ndarray, names: list, job: Any) -> np.ndarray:
    """Each raw label value's position among the class ``names``; an error naming the values not among them."""
    import pandas as pd

    positions = pd.Index(names, dtype=object).get_indexer(pd.Index(values, dtype=object))
    if (positions < 0).any():
        unknown = sorted({str(v) for v in values[positions < 0]})[:5]
        raise ValidationError(f"job: expected labels among the recorded classes {names!r}; job {job.id}'s splitset "
                              f"holds {unknown!r}.")
    return positions.astype(np.int64)


def splits_of(job: Any) -> list[str]:
    """The splits a job was measured on, in order."""
    return list(job.metrics())


def learning_curve_data(job: Any) -> dict:
    """Per epoch, each recorded name; pairs ``x`` / ``val_x`` share a panel."""
    history = job.history()
    if not history:
        raise ChartNotApplicableError(f"job: expected a recorded per-epoch history; job {job.id} has none "
                              "(PyTorch: train with aiqc.torch_fit or call aiqc.record_epoch).")
    bases = []
    for name in history:
        base = name[4:] if name.startswith("val_") else name
        if base not in bases:
            bases.append(base)
    panels = {base: {k: history[k] for k in (base, f"val_{base}") if k in history} for base in bases}
    epochs = max(len(v) for v in history.values())
    return {"epochs": list(range(1, epochs + 1)), "panels": panels}


def confusion_matrix_data(job: Any, split: str) -> dict:
    """Counts of (actual class, predicted class) on ``split``, with the class names."""
    from sklearn.metrics import confusion_matrix

    _require(job, JobChart.CONFUSION_MATRIX)
    y, predictions, _ = _truth(job, split)
    names = job.queue.experiment.splitset.class_names()
    matrix = confusion_matrix(y, predictions, labels=list(range(len(names))))
    return {"split": split, "labels": [str(n) for n in names], "matrix": matrix.tolist(), "rows": int(matrix.sum())}


def _curves(job: Any, split: str, chart: JobChart) -> dict:
    from sklearn import metrics as m

    analysis = _require(job, chart)
    y, _, probabilities = _truth(job, split)
    if probabilities is None:
        raise ChartNotApplicableError(f"job: expected stored probabilities; job {job.id} has none for {split!r}.")
    experiment = job.queue.experiment
    names = [str(n) for n in experiment.splitset.class_names()]
    positive = experiment.positive_index() if analysis.has_positive_class else None
    curves = []
    for k, score in analysis.class_scores(probabilities, positive):
        name, truth = names[k], (y == k).astype(int)
        if truth.min() == truth.max():
            continue  # a class absent from the split has no curve
        if chart is JobChart.ROC_CURVE:
            fpr, tpr, _ = m.roc_curve(truth, score)
            curves.append({"name": name, "x": fpr.tolist(), "y": tpr.tolist(), "area": float(m.auc(fpr, tpr))})
        else:
            precision, recall, _ = m.precision_recall_curve(truth, score)
            curves.append({"name": name, "x": recall.tolist(), "y": precision.tolist(),
                           "area": float(m.average_precision_score(truth, score))})
    return {"split": split, "curves": curves}


def roc_curve_data(job: Any, split: str) -> dict:
    """One curve for binary (the positive class's), one-vs-rest curves for multiclass; ``area``
    is the AUC."""
    return _curves(job, split, JobChart.ROC_CURVE)


def precision_recall_data(job: Any, split: str) -> dict:
    """As :func:`roc_curve_data`; ``area`` is the average precision (binary: the stored
    ``average_precision``)."""
    return _curves(job, split, JobChart.PRECISION_RECALL)


def regression_data(job: Any, split: str) -> dict:
    """Actual values, predictions and residuals of ``split``, in the label's original units."""
    _require(job, JobChart.PREDICTED_VS_ACTUAL)
    y, predictions, _ = _truth(job, split)
    y, predictions = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(predictions, dtype=np.float64).reshape(-1)
    return {"split": split, "label": str(job.queue.experiment.splitset.label.column), "actual": y.tolist(),
            "predicted": predictions.tolist(), "residuals": (y - predictions).tolist()}


def performance_data(queue: Any, metric: str | None, min_score: float | None = None,
                     max_score: float | None = None) -> dict:
    """Every COMPLETE job's train score against its validation (else test) score."""
    from aiqc.results import hyperparameter_columns, metrics_to_pandas

    metric = queue.experiment.metric_set.check(metric)
    for name, bound in (("min_score", min_score), ("max_score", max_score)):
        if bound is not None and not isinstance(bound, (int, float)):
            raise ValidationError.expected(name, "None or a number", bound)
    frame = metrics_to_pandas(queue, [metric], states=[JobState.COMPLETE])
    wide = frame.pivot_table(index="job_id", columns="split", values=metric, aggfunc="first")
    other = "validation" if "validation" in wide else "test"
    if "train" not in wide or other not in wide:
        raise ChartNotApplicableError(f"queue: expected {JobState.COMPLETE} jobs measured on train and {other}; "
                                      f"queue {queue.id} has none.")
    wide = wide.dropna(subset=["train", other])
    keep = np.ones(len(wide), dtype=bool)
    if min_score is not None:
        keep &= (wide[other] >= min_score).to_numpy()
    if max_score is not None:
        keep &= (wide[other] <= max_score).to_numpy()
    wide = wide[keep]
    params = frame.drop_duplicates("job_id").set_index("job_id")
    names = hyperparameter_columns(frame, [metric])
    shown = params.loc[wide.index, names]  # whole columns at once: a cell lookup per job took seconds at 10k jobs
    columns = [[f"{name}={value}" for value in shown[name].tolist()] for name in names]
    labels = [", ".join(parts) for parts in zip(*columns)] if names else [""] * len(wide)
    return {"metric": metric, "other_split": other, "job_ids": [int(j) for j in wide.index],
            "train": wide["train"].tolist(), "other": wide[other].tolist(), "labels": labels}


def _scores(queue: Any, metric: str | None, split: str) -> tuple[str, Any]:
    """(metric, rows of COMPLETE jobs on ``split``) with the metric and split checked."""
    from aiqc.results import metrics_to_pandas

    metric = queue.experiment.metric_set.check(metric)
    frame = metrics_to_pandas(queue, [metric], states=[JobState.COMPLETE])
    if split not in set(frame["split"]):
        raise ValidationError.expected("split", f"one of {sorted(set(frame['split']))!r}", split)
    return metric, frame[frame["split"] == split]


def hyperparameter_data(queue: Any, metric: str | None = None, split: str = "validation") -> dict:
    """Per hyperparameter with more than one value: the metric of every COMPLETE job, by value."""
    from aiqc.results import hyperparameter_columns

    metric, frame = _scores(queue, metric, split)
    out = {}
    for name in hyperparameter_columns(frame, [metric]):
        values = frame[name].map(str)
        if values.nunique() > 1:
            out[name] = {"values": values.tolist(), "scores": frame[metric].tolist()}
    return {"metric": metric, "split": split, "parameters": out}


def repeat_spread_data(queue: Any, metric: str | None = None, split: str = "validation") -> dict:
    """Per hyperparameter combination: the metric of each COMPLETE repeat and fold."""
    metric, frame = _scores(queue, metric, split)
    groups = {int(k): g[metric].tolist() for k, g in frame.groupby("hyperparamset")}
    return {"metric": metric, "split": split, "combinations": groups}


# --- searches -------------------------------------------------------------------------------
def _search_trials(queue: Any) -> tuple[Any, dict, list]:
    from aiqc.sampling import search_space, trial_records

    experiment = queue.experiment
    search = experiment.search_settings
    if search is None:
        raise ChartNotApplicableError(f"queue: expected a queue made with search=...; queue {queue.id} is a plain grid.")
    return search, search_space(experiment), trial_records(experiment, search)


def optimization_history_data(queue: Any) -> dict:
    """Each trial's value, in trial order, and the best value so far."""
    search, _, trials = _search_trials(queue)
    numbers, values, best, states = [], [], [], []
    current = None
    for trial in trials:
        numbers.append(trial.number)
        states.append(trial.state.value)
        values.append(trial.value)
        if trial.value is not None:
            better = (current is None or (trial.value < current if search.direction == "minimize"
                                          else trial.value > current))
            current = trial.value if better else current
        best.append(current)
    return {"metric": search.metric, "split": search.split, "direction": search.direction, "trials": numbers,
            "values": values, "best": best, "states": states}


def _complete_table(queue: Any) -> tuple[Any, dict, "pd.DataFrame"]:
    import pandas as pd

    search, space, trials = _search_trials(queue)
    rows = [{**{n: t.params.get(n) for n in space}, "value": t.value}
            for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    return search, space, pd.DataFrame(rows, columns=[*space, "value"])


def importance_data(queue: Any, seed: int = 0) -> dict:
    """Random-forest importance of each searched hyperparameter for the trial value
    (impurity decrease, normalised to sum to 1), over the COMPLETE trials."""
    from sklearn.ensemble import RandomForestRegressor

    search, space, table = _complete_table(queue)
    varying = [n for n in space if table[n].nunique() > 1] if len(table) else []
    if len(table) < 2 or not varying:
        raise ChartNotApplicableError(f"queue: expected at least 2 {TrialState.COMPLETE} trials that differ; "
                                      f"queue {queue.id} has {len(table)}.")
    features = table[varying].apply(lambda c: c if c.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
                                    else c.astype(str).astype("category").cat.codes).astype(float)
    forest = RandomForestRegressor(n_estimators=64, random_state=seed).fit(features.to_numpy(), table["value"].to_numpy())
    importances = forest.feature_importances_
    total = importances.sum() or 1.0
    ranked = sorted(zip(varying, importances / total), key=lambda p: -p[1])
    return {"metric": search.metric, "parameters": [p for p, _ in ranked], "importances": [float(v) for _, v in ranked]}


def slice_data(queue: Any) -> dict:
    """Per searched hyperparameter: its value and the trial value of every COMPLETE trial."""
    search, space, table = _complete_table(queue)
    return {"metric": search.metric, "parameters": {n: {"values": table[n].tolist(), "scores": table["value"].tolist()}
                                                    for n in space}}


def contour_data(queue: Any, x: str, y: str, resolution: int = 30) -> dict:
    """The trial value over two numeric hyperparameters, interpolated on a grid from the
    COMPLETE trials (plus the trials themselves)."""
    from scipy.interpolate import griddata

    search, space, table = _complete_table(queue)
    for name in (x, y):
        if name not in space:
            raise ValidationError.expected("x/y", f"searched hyperparameters among {list(space)!r}", name)
    numeric = all(table[n].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all() for n in (x, y))
    if not numeric:
        raise ValidationError(f"x/y: expected two numeric hyperparameters; received {x!r}, {y!r}.")
    if len(table) < 3:
        raise ChartNotApplicableError(f"x/y: expected 3+ {TrialState.COMPLETE} trials; queue {queue.id} has "
                                      f"{len(table)}.")
    points = table[[x, y]].to_numpy(dtype=float)
    log = {n: getattr(space[n], "log", False) for n in (x, y)}
    axes = []
    for column, name in enumerate((x, y)):
        low, high = points[:, column].min(), points[:, column].max()
        axes.append(np.geomspace(low, high, resolution) if log[name] and low > 0 else np.linspace(low, high, resolution))
    grid_x, grid_y = np.meshgrid(*axes)
    transform = [np.log10 if log[n] else (lambda v: v) for n in (x, y)]
    z = griddata(np.column_stack([transform[0](points[:, 0]), transform[1](points[:, 1])]), table["value"].to_numpy(),
                 (transform[0](grid_x), transform[1](grid_y)), method="linear")
    return {"metric": search.metric, "x": x, "y": y, "x_axis": axes[0].tolist(), "y_axis": axes[1].tolist(),
            "z": [[None if v != v else float(v) for v in row] for row in z], "points": points.tolist(),
            "values": table["value"].tolist(), "log": log}


def intermediate_data(queue: Any) -> dict:
    """Per job: its reported value per epoch, its state, and the epoch where it stopped."""
    from aiqc.orm import IntermediateValue, Job

    search, _, _ = _search_trials(queue)
    series: dict[int, dict] = {}
    rows = (IntermediateValue.select(IntermediateValue.job, IntermediateValue.epoch, IntermediateValue.value, Job.state,
                                     Job.hyperparamset)
            .join(Job).where(Job.queue == queue).order_by(IntermediateValue.job, IntermediateValue.epoch).tuples())
    for job_id, epoch, value, state, trial in rows:
        entry = series.setdefault(job_id, {"job_id": job_id, "trial": trial, "state": JobState(state).value,
                                           "epochs": [], "values": []})
        entry["epochs"].append(epoch + 1)
        entry["values"].append(value)
    return {"name": search.prune_on, "pruner": search.pruner, "jobs": list(series.values())}


# --- several queues -----------------------------------------------------------------------------
def compare_queues_data(queues: list[Any], metric: str | None = None, split: str | None = None) -> dict:
    """Per queue, in the order given: its label (``'3: name'``), the ``metric`` on ``split`` of
    each of its COMPLETE jobs (job id order) and its best (see :func:`aiqc.compare_queues`)."""
    from aiqc.compare import comparison, queue_label

    compared = comparison(queues, metric, split)
    rows = compared.frame.set_index("queue_id")
    out = []
    for queue in compared.queues:
        row = rows.loc[queue.id]
        scored = row["jobs"] > 0
        out.append({"queue_id": queue.id, "label": queue_label(queue), **compared.scores[queue.id],
                    "best": float(row["best"]) if scored else None,
                    "best_job_id": int(row["best_job_id"]) if scored else None})
    return {"metric": compared.metric, "split": compared.split, "direction": compared.direction, "queues": out}
