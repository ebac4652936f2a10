"""``queue.report(path)``: one self-contained HTML file (tables and every chart, plotly.js
embedded once) that opens offline. ``aiqc.write_report([q1, q2, ...], path)``: the same for
several queues, after a section that compares them. Every text from the database is escaped."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiqc.analysis import JobChart
from aiqc.exceptions import AIQCError, ChartNotApplicableError, ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f4f6f8; } .table { overflow-x: auto; } .chart { margin: 1rem 0; } .note { color: #666; font-size: 0.85rem; }
"""


def _table(frame: Any, max_rows: int = 30) -> str:
    shown = frame.head(max_rows)
    text = '<div class="table">' + shown.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0,
                                                 na_rep="") + "</div>"
    if len(frame) > max_rows:
        text += f'<p class="note">{max_rows} of {len(frame)} rows shown.</p>'
    return text


#: job chart -> (title, draw(best job, split)) for the report
JOB_CHARTS = {
    JobChart.CONFUSION_MATRIX: ("Confusion matrices", lambda plots, job, split: plots.plot_confusion_matrix(job)),
    JobChart.ROC_CURVE: ("ROC curve", lambda plots, job, split: plots.plot_roc_curve(job, split)),
    JobChart.PRECISION_RECALL: ("Precision-recall", lambda plots, job, split: plots.plot_precision_recall(job, split)),
    JobChart.PREDICTED_VS_ACTUAL: ("Predicted vs actual", lambda plots, job, split: plots.plot_regression(job, split)),
}


def figures(queue: Any) -> list[tuple[str, Any]]:
    """(title, figure) for every chart that applies to the queue and its best job."""
    from aiqc import plots

    analysis = queue.experiment.analysis_type.spec
    best = queue.best_job()
    splits = list(best.metrics())
    test_or_last = "test" if "test" in splits else splits[-1]
    evaluated = "validation" if "validation" in splits else test_or_last
    charts = [("Performance of every job", lambda: plots.plot_performance(queue)),
              ("Hyperparameters", lambda: plots.plot_hyperparameters(queue, split=evaluated)),
              ("Spread across repeats and folds", lambda: plots.plot_repeat_spread(queue, split=evaluated)),
              (f"Learning curve of the best job ({best.id})", lambda: plots.plot_learning_curve(best))]
    for chart in analysis.charts:
        title, draw = JOB_CHARTS[chart]
        charts.append((title, lambda draw=draw: draw(plots, best, test_or_last)))
    search = queue.experiment.search_settings
    if search is not None:
        if search.samples:
            charts += [("Optimisation history", lambda: plots.plot_optimization_history(queue)),
                       ("Hyperparameter importance", lambda: plots.plot_param_importance(queue)),
                       ("Slices", lambda: plots.plot_slice(queue))]
            numeric = _numeric_searched(queue)
            if len(numeric) >= 2:
                charts.append((f"Contour of {numeric[0]} and {numeric[1]}",
                               lambda: plots.plot_contour(queue, numeric[0], numeric[1])))
        charts.append(("Intermediate values (pruning)", lambda: plots.plot_intermediate_values(queue)))
    out = []
    for title, make in charts:
        try:
            out.append((title, make()))
        except ChartNotApplicableError as error:  # e.g. no history recorded: leave that chart out, say why
            logger.info("report: %s left out: %s", title, error)
    return out


def _numeric_searched(queue: Any) -> list[str]:
    from aiqc.search import Float, Int, loads_grid

    return [n for n, v in loads_grid(queue.experiment.hyperparameters).items() if isinstance(v, (Int, Float))]


def write_report(queues: Any, path: str | Path) -> Path:
    """Write an HTML report to ``path`` (.html); returns the absolute path.

    ``queues`` is a Queue (or its id): its tables and charts. Or a list of Queue objects or
    ids: with two or more, a comparison first (:func:`aiqc.compare_queues` on the first
    queue's objective, and :func:`aiqc.plots.plot_compare_queues`), then each queue's section;
    a queue with no COMPLETE job yet gets a note in place of its section. Everything is
    checked and computed before the file is written."""
    import plotly.offline

    from aiqc.compare import resolve_queues

    path = _checked_path(path)
    if isinstance(queues, (list, tuple)):
        resolved = resolve_queues(queues)
    elif _is_queue_or_id(queues):
        resolved = resolve_queues([queues], parameter="queue")
    else:
        raise ValidationError.expected("queues", "a Queue, a queue id, or a list of them", queues)
    counts = {queue.id: queue.state_counts() for queue in resolved}
    if len(resolved) == 1:
        queue = resolved[0]
        if counts[queue.id][JobState.COMPLETE] == 0:
            raise AIQCError(f"queue {queue.id} has no {JobState.COMPLETE} job to report on yet; "
                            "run queue.run_jobs() first.")
        title = f"aiqc queue {queue.id}"
        parts = _queue_parts(queue, counts[queue.id], f"aiqc report: queue {queue.id}")
    else:
        if not any(c[JobState.COMPLETE] for c in counts.values()):
            raise AIQCError(f"queues {', '.join(str(q.id) for q in resolved)} have no {JobState.COMPLETE} job to "
                            "report on yet; run queue.run_jobs() first.")
        ids = ", ".join(str(q.id) for q in resolved)
        title = f"aiqc queues {ids}"
        parts = [f"<h1>aiqc report: queues {ids}</h1>", *_comparison_parts(resolved)]
        for queue in resolved:
            heading = f"Queue {queue.id}" + (f": {queue.name}" if queue.name else "")
            if counts[queue.id][JobState.COMPLETE]:
                parts += _queue_parts(queue, counts[queue.id], heading)
            else:
                parts += [f"<h1>{html.escape(heading)}</h1>",
                          f'<p class="note">no {JobState.COMPLETE} job yet: '
                          + html.escape(_state_summary(counts[queue.id])) + "</p>"]
    document = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>"
        + "\n".join(parts) + "</body></html>"
    )
    path.write_text(document, encoding="utf-8")
    return path.resolve()


def _is_queue_or_id(value: Any) -> bool:
    import numbers

    from aiqc.orm import Queue

    return isinstance(value, Queue) or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def _checked_path(path: Any) -> Path:
    """``path`` as a Path to an .html file in an existing folder; a ValidationError otherwise."""
    if not isinstance(path, str) and not hasattr(path, "__fspath__"):
        raise ValidationError.expected("path", "a file path ending in .html", path)
    path = Path(path).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValidationError.expected("path", "a file path ending in .html", str(path))
    if not path.parent.is_dir():
        raise ValidationError(f"path: expected a file in an existing directory; received {str(path)!r}.")
    return path


def _state_summary(counts: dict) -> str:
    return f"{sum(counts.values())} jobs: " + ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items() if n)


def _figure_html(figure: Any) -> str:
    return '<div class="chart">' + figure.to_html(full_html=False, include_plotlyjs=False,
                                                 default_height=460) + "</div>"


def _comparison_parts(queues: list[Any]) -> list[str]:
    """The comparison section: the table of :func:`aiqc.compare_queues` and its chart."""
    from aiqc import plots
    from aiqc.compare import comparison

    compared = comparison(queues)
    shown = compared.frame.drop(columns=["metric", "split", "direction"])
    shown["tags"] = [", ".join(tags) for tags in shown["tags"]]
    return [f"<h2>Comparison on {html.escape(compared.split)} {html.escape(compared.metric)} "
            f"({html.escape(compared.direction)})</h2>",
            _table(shown, max_rows=len(shown)),
            _figure_html(plots.plot_compare_queues(queues, compared.metric, compared.split))]


def _queue_parts(queue: Any, counts: dict, heading: str) -> list[str]:
    """One queue's section (it has a COMPLETE job): the best job, the metrics per combination,
    every chart that applies and every job's metrics, under ``heading``."""
    experiment = queue.experiment
    best = queue.best_job()
    metric, split = queue.objective
    parts = [
        f"<h1>{html.escape(heading)}</h1>",
        f"<p>{html.escape(experiment.library.value)} · {html.escape(experiment.analysis_type.value)} · splitset "
        f"{experiment.splitset_id} · " + html.escape(_state_summary(counts)) + "</p>",
        f"<h2>Best job: {best.id} (by {html.escape(split)} {html.escape(metric)})</h2>",
        "<p>" + html.escape(", ".join(f"{k}={v}" for k, v in best.hyperparameters.items())) + "</p>",
        _table(_best_metrics(best)),
        "<h2>Metrics per hyperparameter combination (mean over repeats and folds)</h2>",
        _table(queue.metrics_aggregate(stats=("mean", "std"))),
    ]
    for title, figure in figures(queue):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(_figure_html(figure))
    parts += ["<h2>Every job and split</h2>", _table(queue.metrics_to_pandas(), max_rows=200)]
    return parts


def _best_metrics(job: Any) -> "pd.DataFrame":
    import pandas as pd

    metrics = job.metrics()
    return pd.DataFrame([{"split": split, **values} for split, values in metrics.items()])
