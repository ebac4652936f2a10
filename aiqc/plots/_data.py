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
    frame = metrics_to_pandas(queue, [metric])
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


def hyperparameter_data(queue: Any, metric: str | None = None, split: str = "validation") -> dict:
    """Per hyperparameter with more than one value: the metric of every job, by value."""
    from aiqc import metrics
    from aiqc.results import _hyperparameter_names, metrics_to_pandas

    analysis = _analysis(queue)
    metric = metric or metrics.default_metric(analysis)
    frame = metrics_to_pandas(queue, [metric])
    if split not in set(frame["split"]):
        raise ValidationError.expected("split", f"one of {sorted(set(frame['split']))!r}", split)
    frame = frame[frame["split"] == split]
    out = {}
    for name in _hyperparameter_names(queue):
        values = frame[name].map(str)
        if values.nunique() > 1:
            out[name] = {"values": values.tolist(), "scores": frame[metric].tolist()}
    return {"metric": metric, "split": split, "parameters": out}


def repeat_spread_data(queue: Any, metric: str | None = None, split: str = "validation") -> dict:
    """Per hyperparameter combination: the metric of each repeat and fold."""
    from aiqc import metrics
    from aiqc.results import metrics_to_pandas

    analysis = _analysis(queue)
    metric = metric or metrics.default_metric(analysis)
    frame = metrics_to_pandas(queue, [metric])
    if split not in set(frame["split"]):
        raise ValidationError.expected("split", f"one of {sorted(set(frame['split']))!r}", split)
    frame = frame[frame["split"] == split]
    groups = {int(k): g[metric].tolist() for k, g in frame.groupby("hyperparamset")}
    return {"metric": metric, "split": split, "combinations": groups}
