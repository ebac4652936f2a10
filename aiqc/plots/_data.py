"""The data behind every chart, computed from stored records (no plotting here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.exceptions import ValidationError


def _analysis(job_or_queue: Any) -> AnalysisType:
    queue = getattr(job_or_queue, "queue", job_or_queue)
    return AnalysisType.parse(queue.experiment.analysis_type)


def _require(job: Any, classification: bool, chart: str) -> None:
    analysis = _analysis(job)
    if analysis.is_classification != classification:
        wanted = "a classification" if classification else "a regression"
        raise ValidationError(f"job: {chart} expects {wanted} job; job {job.id} is {analysis.value}.")


def _truth(job: Any, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(true values, predictions, probabilities) of a split, true values from the encoded label."""
    from aiqc.training import true_classes

    rows, predictions, probabilities = job.predictions(split)
    splitset = job.queue.experiment.splitset
    labels = splitset.label_to_numpy(split, job.fold_index)
    if _analysis(job).is_classification:
        return true_classes(labels), predictions, probabilities
    return labels.reshape(-1), predictions.reshape(-1), None


def splits_of(job: Any) -> list[str]:
    return list(job.metrics())


def learning_curve_data(job: Any) -> dict:
    """Per epoch, each recorded name; pairs ``x`` / ``val_x`` share a panel."""
    history = job.history()
    if not history:
        raise ValidationError(f"job: expected a recorded per-epoch history; job {job.id} has none "
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
    from sklearn.metrics import confusion_matrix

    from aiqc.inference import class_names

    _require(job, True, "a confusion matrix")
    y, predictions, _ = _truth(job, split)
    names = class_names(job.queue.experiment.splitset)
    matrix = confusion_matrix(y, predictions, labels=list(range(len(names))))
    return {"split": split, "labels": [str(n) for n in names], "matrix": matrix.tolist(), "rows": int(matrix.sum())}


def _curves(job: Any, split: str, kind: str) -> dict:
    from sklearn import metrics as m

    from aiqc.inference import class_names

    _require(job, True, "a ROC / precision-recall curve")
    y, _, probabilities = _truth(job, split)
    if probabilities is None:
        raise ValidationError(f"job: expected stored probabilities; job {job.id} has none for {split!r}.")
    names = [str(n) for n in class_names(job.queue.experiment.splitset)]
    if _analysis(job) is AnalysisType.CLASSIFICATION_BINARY:
        targets = [(names[1], (y == 1).astype(int), probabilities.reshape(-1))]
    else:
        targets = [(names[k], (y == k).astype(int), probabilities[:, k]) for k in range(len(names))]
    curves = []
    for name, truth, score in targets:
        if truth.min() == truth.max():
            continue  # a class absent from the split has no curve
        if kind == "roc":
            fpr, tpr, _ = m.roc_curve(truth, score)
            curves.append({"name": name, "x": fpr.tolist(), "y": tpr.tolist(), "area": float(m.auc(fpr, tpr))})
        else:
            precision, recall, _ = m.precision_recall_curve(truth, score)
            curves.append({"name": name, "x": recall.tolist(), "y": precision.tolist(),
                           "area": float(m.average_precision_score(truth, score))})
    return {"split": split, "curves": curves}


def roc_curve_data(job: Any, split: str) -> dict:
    """One curve for binary, one-vs-rest curves for multiclass; ``area`` is the AUC."""
    return _curves(job, split, "roc")


def precision_recall_data(job: Any, split: str) -> dict:
    """``area`` is the average precision."""
    return _curves(job, split, "pr")


def regression_data(job: Any, split: str) -> dict:
    _require(job, False, "predicted vs actual")
    y, predictions, _ = _truth(job, split)
    return {"split": split, "actual": y.tolist(), "predicted": predictions.tolist(),
            "residuals": (y - predictions).tolist()}


def performance_data(queue: Any, metric: str | None, min_score: float | None = None,
                     max_score: float | None = None) -> dict:
    """Every COMPLETE job's train score against its validation (else test) score."""
    from aiqc import metrics
    from aiqc.results import metrics_to_pandas

    analysis = _analysis(queue)
    metric = metric or metrics.default_metric(analysis)
    if metric not in metrics.names(analysis):
        raise ValidationError.expected("metric", f"one of {list(metrics.names(analysis))!r}", metric)
    for name, bound in (("min_score", min_score), ("max_score", max_score)):
        if bound is not None and not isinstance(bound, (int, float)):
            raise ValidationError.expected(name, "None or a number", bound)
    frame = metrics_to_pandas(queue, [metric], states=["COMPLETE"])
    wide = frame.pivot_table(index="job_id", columns="split", values=metric, aggfunc="first")
    other = "validation" if "validation" in wide else "test"
    if "train" not in wide or other not in wide:
        raise ValidationError(f"queue: expected COMPLETE jobs measured on train and {other}; queue {queue.id} has none.")
    wide = wide.dropna(subset=["train", other])
    keep = np.ones(len(wide), dtype=bool)
    if min_score is not None:
        keep &= (wide[other] >= min_score).to_numpy()
    if max_score is not None:
        keep &= (wide[other] <= max_score).to_numpy()
    wide = wide[keep]
    params = frame.drop_duplicates("job_id").set_index("job_id")
    names = [c for c in frame.columns if c not in {"job_id", "hyperparamset", "repeat", "fold", "split", metric,
                                                   "state", "seconds"}]
    labels = [", ".join(f"{n}={params.at[j, n]}" for n in names) for j in wide.index]
    return {"metric": metric, "other_split": other, "job_ids": [int(j) for j in wide.index],
            "train": wide["train"].tolist(), "other": wide[other].tolist(), "labels": labels}


def _scores(queue: Any, metric: str | None, split: str) -> tuple[str, Any]:
    """(metric, rows of COMPLETE jobs on ``split``) with the metric and split checked."""
    from aiqc import metrics
    from aiqc.results import metrics_to_pandas

    analysis = _analysis(queue)
    metric = metric or metrics.default_metric(analysis)
    if metric not in metrics.names(analysis):
        raise ValidationError.expected("metric", f"one of {list(metrics.names(analysis))!r}", metric)
    frame = metrics_to_pandas(queue, [metric], states=["COMPLETE"])
    if split not in set(frame["split"]):
        raise ValidationError.expected("split", f"one of {sorted(set(frame['split']))!r}", split)
    return metric, frame[frame["split"] == split]


def hyperparameter_data(queue: Any, metric: str | None = None, split: str = "validation") -> dict:
    """Per hyperparameter with more than one value: the metric of every COMPLETE job, by value."""
    from aiqc.results import _hyperparameter_names

    metric, frame = _scores(queue, metric, split)
    out = {}
    for name in _hyperparameter_names(queue):
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
def _search_trials(queue: Any) -> tuple[Any, list[dict]]:
    from aiqc.search import Search, check_space, from_json, trial_records

    experiment = queue.experiment
    if not experiment.search:
        raise ValidationError(f"queue: expected a queue made with search=...; queue {queue.id} is a plain grid.")
    search = Search(**experiment.search)
    trials = trial_records(experiment, search)
    space = check_space({n: from_json(v) for n, v in experiment.hyperparameters.items()}, search)
    return search, space, trials


def optimization_history_data(queue: Any) -> dict:
    """Each trial's value, in trial order, and the best value so far."""
    search, _, trials = _search_trials(queue)
    numbers, values, best, states = [], [], [], []
    current = None
    for trial in trials:
        numbers.append(trial["number"])
        states.append(trial["state"])
        values.append(trial["value"])
        if trial["value"] is not None:
            better = (current is None or (trial["value"] < current if search.direction == "minimize"
                                          else trial["value"] > current))
            current = trial["value"] if better else current
        best.append(current)
    return {"metric": search.metric, "split": search.split, "direction": search.direction, "trials": numbers,
            "values": values, "best": best, "states": states}


def _complete_table(queue: Any):
    import pandas as pd

    search, space, trials = _search_trials(queue)
    rows = [{**{n: t["params"].get(n) for n in space}, "value": t["value"]}
            for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    return search, space, pd.DataFrame(rows, columns=[*space, "value"])


def importance_data(queue: Any, seed: int = 0) -> dict:
    """Random-forest importance of each searched hyperparameter for the trial value
    (impurity decrease, normalised to sum to 1), over the COMPLETE trials."""
    from sklearn.ensemble import RandomForestRegressor

    search, space, table = _complete_table(queue)
    varying = [n for n in space if table[n].nunique() > 1] if len(table) else []
    if len(table) < 2 or not varying:
        raise ValidationError(f"queue: expected at least 2 COMPLETE trials that differ; queue {queue.id} has {len(table)}.")
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
    if not numeric or len(table) < 3:
        raise ValidationError(f"x/y: expected two numeric hyperparameters and 3+ COMPLETE trials; received {x!r}, {y!r} "
                              f"with {len(table)} trial(s).")
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
        entry = series.setdefault(job_id, {"job_id": job_id, "trial": trial, "state": getattr(state, "value", state),
                                           "epochs": [], "values": []})
        entry["epochs"].append(epoch + 1)
        entry["values"].append(value)
    return {"name": search.prune_on, "pruner": search.pruner, "jobs": list(series.values())}
