"""Built-in charts. Every public function returns a ``plotly.graph_objects.Figure``
drawn from the data computed in :mod:`aiqc.plots._data` (which tests check directly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiqc.plots import _data
from aiqc.states import JobState

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["plot_learning_curve", "plot_confusion_matrix", "plot_roc_curve", "plot_precision_recall",
           "plot_regression", "plot_performance", "plot_hyperparameters", "plot_repeat_spread"]

TEMPLATE = "plotly_white"


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _subplots(rows: int, cols: int, titles: list[str], **kwargs: Any) -> go.Figure:
    from plotly.subplots import make_subplots

    return make_subplots(rows=rows, cols=cols, subplot_titles=titles, **kwargs)


def plot_learning_curve(job: Any) -> go.Figure:
    """Loss and each recorded metric per epoch, train against validation."""
    data = _data.learning_curve_data(job)
    panels = data["panels"]
    figure = _subplots(1, len(panels), list(panels), horizontal_spacing=0.08)
    for column, (base, series) in enumerate(panels.items(), start=1):
        for name, values in series.items():
            figure.add_trace(_go().Scatter(x=data["epochs"][:len(values)], y=values, mode="lines", name=name,
                                           legendgroup=name, line=dict(dash="dot" if name.startswith("val_") else "solid")),
                             row=1, col=column)
        figure.update_xaxes(title_text="epoch", row=1, col=column)
    figure.update_layout(title=f"Learning curve: job {job.id}", template=TEMPLATE)
    return figure


def plot_confusion_matrix(job: Any, splits: list[str] | None = None) -> go.Figure:
    """One heatmap per split (rows: actual class, columns: predicted class)."""
    splits = splits or _data.splits_of(job)
    matrices = [_data.confusion_matrix_data(job, s) for s in splits]
    figure = _subplots(1, len(matrices), [f"{m['split']} ({m['rows']} rows)" for m in matrices], horizontal_spacing=0.1)
    for column, matrix in enumerate(matrices, start=1):
        figure.add_trace(_go().Heatmap(z=matrix["matrix"], x=matrix["labels"], y=matrix["labels"], text=matrix["matrix"],
                                       texttemplate="%{text}", colorscale="Blues", showscale=False),
                         row=1, col=column)
        figure.update_xaxes(title_text="predicted", row=1, col=column)
        figure.update_yaxes(title_text="actual", autorange="reversed", row=1, col=column)
    figure.update_layout(title=f"Confusion matrix: job {job.id}", template=TEMPLATE)
    return figure


def _curve_figure(job: Any, data: dict, title: str, x_title: str, y_title: str, area: str,
                  diagonal: bool) -> go.Figure:
    figure = _go().Figure()
    for curve in data["curves"]:
        figure.add_trace(_go().Scatter(x=curve["x"], y=curve["y"], mode="lines",
                                       name=f"{curve['name']} ({area} {curve['area']:.3f})"))
    if diagonal:
        figure.add_trace(_go().Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dash", color="grey")))
    figure.update_layout(title=f"{title}: job {job.id}, {data['split']} split", xaxis_title=x_title, yaxis_title=y_title,
                         xaxis_range=[0, 1], yaxis_range=[0, 1.02], template=TEMPLATE)
    return figure


def plot_roc_curve(job: Any, split: str = "test") -> go.Figure:
    """ROC curve (binary) or one-vs-rest curves (multiclass), with each AUC."""
    return _curve_figure(job, _data.roc_curve_data(job, split), "ROC curve", "false positive rate",
                         "true positive rate", "AUC", diagonal=True)


def plot_precision_recall(job: Any, split: str = "test") -> go.Figure:
    """Precision against recall, with each average precision."""
    return _curve_figure(job, _data.precision_recall_data(job, split), "Precision-recall", "recall", "precision",
                         "AP", diagonal=False)


def plot_regression(job: Any, split: str = "test") -> go.Figure:
    """Predicted against actual, and residuals against predicted, in the label's original units."""
    data = _data.regression_data(job, split)
    figure = _subplots(1, 2, ["predicted vs actual", "residuals"])
    low, high = min(data["actual"] + data["predicted"]), max(data["actual"] + data["predicted"])
    figure.add_trace(_go().Scatter(x=data["actual"], y=data["predicted"], mode="markers", name="rows"), row=1, col=1)
    figure.add_trace(_go().Scatter(x=[low, high], y=[low, high], mode="lines", name="ideal",
                                   line=dict(dash="dash", color="grey")), row=1, col=1)
    figure.add_trace(_go().Scatter(x=data["predicted"], y=data["residuals"], mode="markers", name="residuals"), row=1, col=2)
    label = data["label"]  # both panels are in the label's original units
    figure.update_xaxes(title_text=f"actual {label}", row=1, col=1)
    figure.update_yaxes(title_text=f"predicted {label}", row=1, col=1)
    figure.update_xaxes(title_text=f"predicted {label}", row=1, col=2)
    figure.update_yaxes(title_text="actual - predicted", row=1, col=2)
    figure.update_layout(title=f"Regression: job {job.id}, {data['split']} split", template=TEMPLATE)
    return figure


def plot_performance(queue: Any, metric: str | None = None, min_score: float | None = None,
                     max_score: float | None = None) -> go.Figure:
    """Every job's train score against its validation score: overfitting shows as
    points far from the diagonal."""
    import numpy as np

    data = _data.performance_data(queue, metric, min_score, max_score)
    figure = _go().Figure()
    # numpy arrays: plotly checks a list item by item, a second at 10,000 jobs
    text = np.array([f"job {j}<br>{label}" for j, label in zip(data["job_ids"], data["labels"])], dtype=str)
    figure.add_trace(_go().Scatter(x=np.asarray(data["other"], dtype=float), y=np.asarray(data["train"], dtype=float),
                                   mode="markers", name="jobs", text=text,
                                   hovertemplate="%{text}<br>" + data["other_split"] + "=%{x:.4f}<br>train=%{y:.4f}"))
    values = data["train"] + data["other"]
    if values:
        low, high = min(values), max(values)
        figure.add_trace(_go().Scatter(x=[low, high], y=[low, high], mode="lines", name="train = " + data["other_split"],
                                       line=dict(dash="dash", color="grey")))
    figure.update_layout(title=f"Performance: queue {queue.id}, {data['metric']}", template=TEMPLATE,
                         xaxis_title=f"{data['other_split']} {data['metric']}", yaxis_title=f"train {data['metric']}")
    return figure


def plot_hyperparameters(queue: Any, metric: str | None = None, split: str = "validation") -> go.Figure:
    """For each hyperparameter that varies: the metric of every job, by value (box + points)."""
    import numpy as np

    data = _data.hyperparameter_data(queue, metric, split)
    parameters = data["parameters"] or {"(no varying hyperparameter)": {"values": [], "scores": []}}
    figure = _subplots(1, len(parameters), list(parameters), horizontal_spacing=0.06)
    for column, (name, series) in enumerate(parameters.items(), start=1):  # arrays, not lists: see plot_performance
        values, scores = np.asarray(series["values"], dtype=str), np.asarray(series["scores"], dtype=float)
        figure.add_trace(_go().Box(x=values, y=scores, name=name, boxpoints="all", jitter=0.4), row=1, col=column)
    figure.update_layout(title=f"Hyperparameters vs {data['split']} {data['metric']}: queue {queue.id}",
                         template=TEMPLATE, showlegend=False)
    return figure


def plot_repeat_spread(queue: Any, metric: str | None = None, split: str = "validation") -> go.Figure:
    """Spread of the metric across repeats and folds, per hyperparameter combination."""
    data = _data.repeat_spread_data(queue, metric, split)
    figure = _go().Figure()
    for index, scores in data["combinations"].items():
        figure.add_trace(_go().Box(y=scores, name=f"#{index}", boxpoints="all"))
    figure.update_layout(title=f"Spread across repeats and folds: queue {queue.id}", template=TEMPLATE,
                         xaxis_title="hyperparameter combination", yaxis_title=f"{data['split']} {data['metric']}",
                         showlegend=False)
    return figure


# --- searches -------------------------------------------------------------------------------
__all__ += ["plot_optimization_history", "plot_param_importance", "plot_contour", "plot_slice",
            "plot_intermediate_values"]


def plot_optimization_history(queue: Any) -> go.Figure:
    """Each trial's value and the best so far."""
    data = _data.optimization_history_data(queue)
    figure = _go().Figure()
    figure.add_trace(_go().Scatter(x=data["trials"], y=data["values"], mode="markers", name="trial",
                                   text=data["states"]))
    figure.add_trace(_go().Scatter(x=data["trials"], y=data["best"], mode="lines", name="best so far",
                                   line=dict(shape="hv")))
    figure.update_layout(title=f"Optimisation history: queue {queue.id} ({data['direction']} {data['split']} "
                               f"{data['metric']})", xaxis_title="trial", yaxis_title=data["metric"], template=TEMPLATE)
    return figure


def plot_param_importance(queue: Any) -> go.Figure:
    """How much each searched hyperparameter explains the trial value (random forest)."""
    data = _data.importance_data(queue)
    figure = _go().Figure(_go().Bar(x=data["importances"][::-1], y=data["parameters"][::-1], orientation="h"))
    figure.update_layout(title=f"Hyperparameter importance for {data['metric']}: queue {queue.id}",
                         xaxis_title="importance", template=TEMPLATE)
    return figure


def plot_contour(queue: Any, x: str, y: str) -> go.Figure:
    """The trial value over two hyperparameters (interpolated), with the trials as points."""
    data = _data.contour_data(queue, x, y)
    figure = _go().Figure()
    figure.add_trace(_go().Contour(x=data["x_axis"], y=data["y_axis"], z=data["z"], colorbar=dict(title=data["metric"]),
                                   connectgaps=False))
    points = list(zip(*data["points"]))
    figure.add_trace(_go().Scatter(x=points[0], y=points[1], mode="markers", name="trials",
                                   marker=dict(color="black", size=6)))
    figure.update_layout(title=f"{data['metric']} over {x} and {y}: queue {queue.id}", xaxis_title=x, yaxis_title=y,
                         template=TEMPLATE)
    figure.update_xaxes(type="log" if data["log"][x] else "linear")
    figure.update_yaxes(type="log" if data["log"][y] else "linear")
    return figure


def plot_slice(queue: Any) -> go.Figure:
    """The trial value against each searched hyperparameter."""
    data = _data.slice_data(queue)
    names = list(data["parameters"]) or ["(nothing searched)"]
    figure = _subplots(1, len(names), names, horizontal_spacing=0.06)
    for column, name in enumerate(data["parameters"], start=1):
        series = data["parameters"][name]
        figure.add_trace(_go().Scatter(x=series["values"], y=series["scores"], mode="markers", name=name),
                         row=1, col=column)
    figure.update_layout(title=f"Slices of {data['metric']}: queue {queue.id}", template=TEMPLATE, showlegend=False)
    return figure


def plot_intermediate_values(queue: Any) -> go.Figure:
    """Per job, the value the pruner watched at each epoch; pruned jobs end early (dashed)."""
    data = _data.intermediate_data(queue)
    figure = _go().Figure()
    for job in data["jobs"]:
        pruned = job["state"] == JobState.PRUNED
        figure.add_trace(_go().Scatter(x=job["epochs"], y=job["values"], mode="lines+markers" if pruned else "lines",
                                       name=f"job {job['job_id']} ({job['state'].lower()})",
                                       line=dict(dash="dash" if pruned else "solid")))
    figure.update_layout(title=f"Intermediate {data['name']} per epoch: queue {queue.id}"
                               + (f" (pruner: {data['pruner']})" if data["pruner"] else ""),
                         xaxis_title="epoch", yaxis_title=data["name"], template=TEMPLATE)
    return figure


# --- several queues -----------------------------------------------------------------------------
__all__ += ["plot_compare_queues"]


def plot_compare_queues(queues: list[Any], metric: str | None = None, split: str | None = None) -> go.Figure:
    """One box (with every point) per queue of its COMPLETE jobs' ``metric`` on ``split``, its
    best job marked; both default to the first queue's objective (see :func:`aiqc.compare_queues`)."""
    data = _data.compare_queues_data(queues, metric, split)
    figure = _go().Figure()
    labels = [entry["label"] for entry in data["queues"]]
    for entry in data["queues"]:
        figure.add_trace(_go().Box(x=[entry["label"]] * len(entry["scores"]), y=entry["scores"], name=entry["label"],
                                   boxpoints="all", jitter=0.4, pointpos=0, text=[f"job {j}" for j in entry["job_ids"]],
                                   hovertemplate="%{text}<br>%{y:.4f}<extra>%{x}</extra>"))
        if entry["best"] is not None:
            figure.add_annotation(x=entry["label"], y=entry["best"], text=f"best: job {entry['best_job_id']}",
                                  showarrow=True, arrowhead=2, ax=40, ay=-30)
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=labels, title_text="queue")
    figure.update_layout(title=f"Queues compared on {data['split']} {data['metric']} ({data['direction']})",
                         yaxis_title=f"{data['split']} {data['metric']}", template=TEMPLATE, showlegend=False)
    return figure
