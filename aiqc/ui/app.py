"""The dashboard's routes: the HTML pages (:mod:`aiqc.ui.pages`) and the JSON API their script
fetches and polls.

    GET /                                  the queues (?tag=)
    GET /queue/{id}                        a queue: header, jobs table, charts
    GET /queue/{id}/report.html            the queue's HTML report, as a download
    GET /job/{id}                          a job (?split= for its ROC, PR and regression charts)
    GET /compare?queues=1,2&metric=&split= queues side by side
    GET /api/queues?tag=                   the queues' rows (polled every 2 s)
    GET /api/queue/{id}                    a queue's jobs per state, progress and version (polled)
    GET /api/queue/{id}/jobs?page=&per_page=&sort=&order=&split=&state=&q=   a page of its metrics table
    GET /api/queue/{id}/chart/{name}?metric=&split=
    GET /api/job/{id}/chart/{name}?split=
    GET /api/compare?queues=&metric=&split=, GET /api/compare/chart?...
    GET /static/plotly.min.js, /static/ui.js, /static/ui.css

Reads only, and unpickles nothing: every id in a path is an int (the route's convertor) that
reaches SQL through peewee's bound parameters; every query-string value is checked against an
allow-list (the frame's columns, the split names, the state names, number ranges) and a bad one
is a 400 with a JSON ``{"error": ...}`` (an HTML page for a page). A chart that does not apply
answers ``{"figure": null, "note": why}``.

The metrics table of a queue is built once per version of the queue (its jobs per state and
their last ``finished_at``) and kept in a small per-process cache, so paging, sorting and
filtering a 10,000-job queue do not query its jobs again.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import peewee as pw

from aiqc import caches
from aiqc.analysis import JobChart
from aiqc.data.split import SPLITS
from aiqc.exceptions import (AIQCError, ChartNotApplicableError, DatabaseError, MissingExtraError, NotFoundError,
                             ValidationError)
from aiqc.states import JobState
from aiqc.ui import pages

try:
    from starlette.applications import Starlette
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
except ImportError as error:  # the aiqc[ui] extra is not installed
    raise MissingExtraError("aiqc ui needs starlette, which is not installed; install it with: "
                            "pip install 'aiqc[ui]'") from error

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

#: how many rows a page of the jobs table may hold
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 50
#: the longest ``q`` (text searched among the hyperparameter values) accepted
MAX_QUERY = 200
#: queue versions whose metrics table stays cached in this process
CACHED_FRAMES = 8
#: the most traces a chart of one trace per combination (repeat spread) or per job (intermediate
#: values) draws: past a few hundred, building the figure and drawing it in a browser take seconds
MAX_TRACES = 500
STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # scripts only from this app (plotly.js and ui.js; no inline script); plotly.js sets inline styles
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; "
                                "style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
}


# --- the app ---------------------------------------------------------------------------------------
def build_app(db: Any, read_only: bool, allowed_hosts: tuple[str, ...] | None) -> Starlette:
    """Open the database (``aiqc.setup(db, read_only=read_only)``) and return the app over it
    (see :func:`aiqc.ui.make_app`)."""
    import aiqc
    from aiqc.database import current_url

    aiqc.setup(db, read_only=read_only)
    routes = [
        Route("/", page_queues), Route("/queue/{queue_id:int}", page_queue),
        Route("/queue/{queue_id:int}/report.html", queue_report), Route("/job/{job_id:int}", page_job),
        Route("/compare", page_compare),
        Route("/api/queues", api_queues), Route("/api/queue/{queue_id:int}", api_queue),
        Route("/api/queue/{queue_id:int}/jobs", api_jobs),
        Route("/api/queue/{queue_id:int}/chart/{name:str}", api_queue_chart),
        Route("/api/job/{job_id:int}/chart/{name:str}", api_job_chart),
        Route("/api/compare", api_compare), Route("/api/compare/chart", api_compare_chart),
        Route("/static/{name:str}", static),
    ]
    handlers = {NotFoundError: _error_response, ValidationError: _error_response, AIQCError: _error_response,
                HTTPException: _error_response, pw.PeeweeException: _database_fault, sqlite3.Error: _database_fault}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(Guard, allowed_hosts=allowed_hosts)])
    app.state.database = current_url().display
    app.state.read_only = read_only
    return app


class Guard:
    """ASGI middleware: answers 400 to a request whose Host header is not among
    ``allowed_hosts`` (None: any), so a web page elsewhere cannot read a local dashboard
    through DNS rebinding; adds :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Check the Host, then run the app with the headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        if self.allowed_hosts is not None and host_of(scope) not in self.allowed_hosts:
            response = Response("aiqc ui: this dashboard answers requests for this machine only (Host: "
                                f"{', '.join(self.allowed_hosts)}).\n", status_code=400, media_type="text/plain")
            await response(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)


def host_of(scope: dict) -> str:
    """The host a request names in its Host header, without the port or IPv6 brackets, lower case."""
    host = next((value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"host"), "")
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _error_response(request: Request, error: Exception) -> Response:
    """A 400 (bad value), 404 (no such record or page), 409 (not available yet) or 503 (the
    database) as JSON ``{"error": message}`` under /api/, else as an HTML page."""
    if isinstance(error, HTTPException):
        status, message = error.status_code, error.detail or "not found"
        if status == 404:
            message = f"no page at {request.url.path!r}"
    elif isinstance(error, NotFoundError):
        status, message = 404, str(error)
    elif isinstance(error, ValidationError):
        status, message = 400, str(error)
    elif isinstance(error, DatabaseError):
        status, message = 503, str(error)
    else:
        status, message = 409, str(error)
    if _wants_json(request):
        return _json({"error": message}, status)
    return _html(request, f"{status}", pages.error_page(status, message), status=status)


async def _database_fault(request: Request, error: Exception) -> Response:
    """A driver error that is a fault of the database (locked, gone, unreadable) as a 503 that
    says so in one line; any other is re-raised (a 500)."""
    from aiqc.database import translate

    fault = translate(error)
    if fault is None:
        raise error
    return await _error_response(request, fault)


def _html(request: Request, title: str, body: str, *, page: str = "error", plotly: bool = False,
          status: int = 200) -> HTMLResponse:
    import aiqc

    state = request.app.state
    document = pages.layout(title, body, page=page, database=state.database, read_only=state.read_only,
                            plotly=plotly, assets=_assets_version(aiqc.__version__))
    return HTMLResponse(document, status_code=status)


def _assets_version(version: str) -> str:
    import plotly

    return f"{version}-{plotly.__version__}"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(_jsonable(payload), allow_nan=False, default=str), status_code=status,
                    media_type="application/json")


def _jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python's (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- query-string values: allow-lists ----------------------------------------------------------
def _integer(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise ValidationError.expected(name, f"a whole number {bounds}", raw)
    return int(raw)


def _choice(request: Request, name: str, allowed: list[str] | tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise ValidationError.expected(name, f"one of {list(allowed)!r}", raw)
    return raw


def _states() -> list[str]:
    return [state.value for state in JobState]


# --- reads -------------------------------------------------------------------------------------
def _get_queue(queue_id: int) -> Any:
    from aiqc.orm import Experiment, Queue

    queue = Queue.select(Queue, Experiment).join(Experiment).where(Queue.id == queue_id).first()
    if queue is None:
        raise NotFoundError(f"Queue id={queue_id!r} does not exist.")
    return queue


def state_counts(queue_id: int) -> tuple[dict[str, int], tuple]:
    """(``{state name: jobs}`` with every state, the queue's version) in one query: the
    version is the jobs per state and the last ``finished_at`` of each; it changes whenever a
    job is added, removed, claimed, finished or queued again."""
    import peewee as pw

    from aiqc.orm import Job

    rows = (Job.select(Job.state, pw.fn.COUNT(Job.id), pw.fn.MAX(Job.finished_at))
            .where(Job.queue == queue_id).group_by(Job.state).tuples())
    counts = dict.fromkeys(_states(), 0)
    version = []
    for state, count, finished in rows:
        name = JobState(state).value
        counts[name] = int(count)
        version.append((name, int(count), str(finished)))
    return counts, tuple(sorted(version))


def _version_text(version: tuple) -> str:
    return hashlib.sha1(repr(version).encode()).hexdigest()[:16]


def _progress(counts: dict[str, int], expected: int) -> tuple[int, int]:
    """(finished jobs, total jobs): a sampled search's total is the jobs it will have."""
    done = sum(counts[state.value] for state in JobState.finished())
    return done, max(sum(counts.values()), expected)


def _expected(queue: Any, counts: dict[str, int]) -> int:
    search = queue.experiment.search_settings
    return queue.expected_job_count if search is not None and search.samples else sum(counts.values())


def queue_rows(tag: str | None = None) -> list[dict]:
    """One dict per queue (``aiqc.list_queues``): id, name, tags, library, analysis type, jobs
    per state, finished and total jobs, best score on its objective and the objective."""
    from aiqc.orm import Experiment, Queue
    from aiqc.results import list_queues
    from aiqc.tags import check_tag

    if tag:
        check_tag(tag, "tag")
    frame = list_queues()  # filtered below: list_queues(tag=...) scores only the tagged queues' objectives
    if tag:
        frame = frame[[tag in tags for tags in frame["tags"]]]
    searching = {q.id: q for q in Queue.select(Queue, Experiment).join(Experiment)
                 .where(Experiment.search.is_null(False))}
    rows = []
    for record in frame.to_dict("records"):
        queue_id = int(record["queue_id"])
        counts = {state: int(record[state.lower()]) for state in _states()}
        queue = searching.get(queue_id)
        expected = _expected(queue, counts) if queue is not None else 0
        done, total = _progress(counts, expected)
        best = record["best"]
        rows.append({"queue_id": queue_id, "name": record["name"] if isinstance(record["name"], str) else None,
                     "tags": list(record["tags"]), "library": record["library"],
                     "analysis_type": record["analysis_type"], "counts": counts, "done": done, "total": total,
                     "best": None if best is None or best != best else float(best), "objective": record["objective"]})
    return rows


def queue_summary(queue: Any) -> dict:
    """A queue's header: names, objective, search, jobs per state, progress, version and best job."""
    from aiqc.orm import Metric

    experiment = queue.experiment
    counts, version = state_counts(queue.id)
    done, total = _progress(counts, _expected(queue, counts))
    metric, split = experiment.objective
    search = experiment.search_settings
    best = None
    if counts[JobState.COMPLETE.value]:
        try:
            job = queue.best_job()
        except ValidationError:  # the objective is undefined on every job
            job = None
        if job is not None:
            row = Metric.get_or_none((Metric.job == job.id) & (Metric.split == split) & (Metric.name == metric))
            best = {"job_id": job.id, "value": None if row is None else row.value}
    return {"queue_id": queue.id, "name": experiment.name, "description": experiment.description,
            "tags": list(experiment.tags or []), "library": experiment.library.value,
            "analysis_type": experiment.analysis_type.value, "splitset_id": experiment.splitset_id,
            "repeat_count": experiment.repeat_count, "objective_metric": metric, "objective_split": split,
            "direction": experiment.metric_set.direction(metric), "output_dir": queue.output_dir,
            "search": None if search is None else _search_text(search), "counts": counts, "done": done,
            "total": total, "version": _version_text(version), "best": best}


def _search_text(search: Any) -> str:
    parts = [search.strategy]
    if search.samples:
        parts.append(f"{search.n_trials} trials")
    if search.pruner:
        parts.append(f"pruner {search.pruner}")
    return ", ".join(parts) + f" ({search.direction} {search.split} {search.metric})"


# --- the jobs table, cached per queue version -----------------------------------------------------
@dataclasses.dataclass
class JobsFrame:
    """A queue's jobs table: :meth:`~aiqc.orm.Queue.metrics_to_pandas`'s rows (one per
    measured job x split), then one row per job without metrics (queued, running, failed),
    in job id order; the metric and hyperparameter column names."""

    frame: "pd.DataFrame"
    metrics: list[str]
    hyperparameters: list[str]
    _haystack: "pd.Series | None" = None

    def haystack(self) -> "pd.Series":
        """Per row, ``name=value`` of each hyperparameter, lower case (what ``q`` is looked for in)."""
        if self._haystack is None:
            import pandas as pd

            text = pd.Series([""] * len(self.frame), index=self.frame.index, dtype=object)
            for name in self.hyperparameters:
                text = text + f"{name}=" + self.frame[name].map(str) + " "
            self._haystack = text.str.lower()
        return self._haystack


class FrameCache:
    """The :class:`JobsFrame` of the last :data:`CACHED_FRAMES` (database, queue, version)
    keys read by this process; registered with :mod:`aiqc.caches`, so ``clear_caches()``
    empties it."""

    def __init__(self, size: int = CACHED_FRAMES) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple, JobsFrame] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], JobsFrame]) -> JobsFrame:
        """The entry of ``key``, built (once, under a lock) when missing."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            entry = build()
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return entry

    def cache_clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


FRAMES = caches.register(FrameCache())


def jobs_frame(queue: Any) -> tuple[JobsFrame, dict[str, int], tuple]:
    """(the queue's :class:`JobsFrame`, its jobs per state, its version), cached per version."""
    from aiqc.database import ensure_setup

    counts, version = state_counts(queue.id)
    key = (ensure_setup().cache_key, queue.id, version)
    return FRAMES.get(key, lambda: _build_frame(queue)), counts, version


def _build_frame(queue: Any) -> JobsFrame:
    import pandas as pd

    measured = queue.metrics_to_pandas()
    metric_names = list(queue.experiment.metric_set.names)
    columns = list(measured.columns)
    pending = _unmeasured(queue, columns, metric_names)
    if len(pending) and len(measured):  # a job measured, then queued again: its metrics rows show it
        pending = pending[~pending["job_id"].isin(measured["job_id"])]
    if len(pending):
        for name in pending.columns:
            if name not in columns:
                columns.insert(columns.index(metric_names[0]) if metric_names else len(columns), name)
        frame = pending.reindex(columns=columns) if measured.empty else pd.concat(
            [measured.reindex(columns=columns), pending.reindex(columns=columns)], ignore_index=True)
        frame = frame.sort_values("job_id", kind="stable").reset_index(drop=True)
    else:
        frame = measured
    fixed = {"job_id", "hyperparamset", "repeat", "fold", "split", "state", "seconds", *metric_names}
    return JobsFrame(frame, [m for m in metric_names if m in frame.columns], [c for c in columns if c not in fixed])


def _unmeasured(queue: Any, columns: list[str], metric_names: list[str]) -> "pd.DataFrame":
    """One row per job of the queue without metrics (queued, running, failed): its ids, repeat,
    fold, hyperparameters, state and seconds, no split and no metrics."""
    import numpy as np
    import pandas as pd
    import peewee as pw

    from aiqc.orm import Fold, Hyperparamset, Job

    measured = [state for state in JobState if state.is_measured]
    query = (Job.select(Job.id, Hyperparamset.index, Hyperparamset.hyperparameters, Job.repeat_index, Fold.fold_index,
                        Job.state, Job.seconds)
             .join(Hyperparamset).switch(Job).join(Fold, pw.JOIN.LEFT_OUTER)
             .where((Job.queue == queue.id) & Job.state.not_in(measured)).order_by(Job.id).tuples())
    rows = list(query)
    if not rows:
        return pd.DataFrame(columns=columns)
    names = list(dict.fromkeys(n for row in rows for n in (row[2] or {})))
    data = {"job_id": np.array([r[0] for r in rows], dtype=np.int64),
            "hyperparamset": np.array([r[1] for r in rows], dtype=np.int64),
            "repeat": np.array([r[3] for r in rows], dtype=np.int64),
            "fold": pd.array([r[4] for r in rows], dtype="Int64"), "split": [None] * len(rows),
            **{name: [(r[2] or {}).get(name) for r in rows] for name in names},
            **{name: np.full(len(rows), np.nan) for name in metric_names},
            "state": [JobState(r[5]).value for r in rows],
            "seconds": np.array([np.nan if r[6] is None else r[6] for r in rows], dtype=np.float64)}
    return pd.DataFrame(data)


def _records(frame: "pd.DataFrame") -> list[dict]:
    shown = frame.astype(object)
    return shown.where(frame.notna(), None).to_dict("records")


def _sorted(frame: "pd.DataFrame", column: str, ascending: bool) -> "pd.DataFrame":
    """``frame`` sorted by ``column`` as ``metrics_to_pandas(sort_by=...)`` sorts (stable,
    missing values last); a column of mixed types by its values' text."""
    try:
        return frame.sort_values(column, ascending=ascending, kind="stable")
    except TypeError:
        return frame.sort_values(column, ascending=ascending, kind="stable",
                                 key=lambda values: values.map(lambda v: None if v is None else str(v)))


# --- charts ----------------------------------------------------------------------------------------
def _plots() -> Any:
    from aiqc import plots

    return plots


def _numeric_searched(queue: Any) -> list[str]:
    from aiqc.search import Float, Int, loads_grid

    return [n for n, v in loads_grid(queue.experiment.hyperparameters).items() if isinstance(v, (Int, Float))]


def _contour(queue: Any) -> Any:
    numeric = _numeric_searched(queue)
    if len(numeric) < 2:
        raise ChartNotApplicableError(f"queue: a contour expects two numeric searched hyperparameters; "
                                      f"queue {queue.id} searches {len(numeric)}.")
    return _plots().plot_contour(queue, numeric[0], numeric[1])


#: a queue's charts: name -> (title, draw(queue, metric, split))
QUEUE_CHARTS: dict[str, tuple[str, Callable[[Any, str | None, str], Any]]] = {
    "performance": ("Performance of every job", lambda q, metric, split: _plots().plot_performance(q, metric)),
    "hyperparameters": ("Hyperparameters", lambda q, metric, split: _plots().plot_hyperparameters(q, metric, split)),
    "repeat-spread": ("Spread across repeats and folds",
                      lambda q, metric, split: _plots().plot_repeat_spread(q, metric, split)),
    "optimization-history": ("Optimisation history", lambda q, metric, split: _plots().plot_optimization_history(q)),
    "param-importance": ("Hyperparameter importance", lambda q, metric, split: _plots().plot_param_importance(q)),
    "slice": ("Slices", lambda q, metric, split: _plots().plot_slice(q)),
    "contour": ("Contour of two searched hyperparameters", lambda q, metric, split: _contour(q)),
    "intermediate-values": ("Intermediate values (pruning)",
                            lambda q, metric, split: _plots().plot_intermediate_values(q)),
}

#: a job's charts: name -> (title, the analysis chart it is (None: every job), draw(job, split))
JOB_CHARTS: dict[str, tuple[str, JobChart | None, Callable[[Any, str], Any]]] = {
    "learning-curve": ("Learning curve", None, lambda job, split: _plots().plot_learning_curve(job)),
    "confusion-matrix": ("Confusion matrices", JobChart.CONFUSION_MATRIX,
                         lambda job, split: _plots().plot_confusion_matrix(job)),
    "roc-curve": ("ROC curve", JobChart.ROC_CURVE, lambda job, split: _plots().plot_roc_curve(job, split)),
    "precision-recall": ("Precision-recall", JobChart.PRECISION_RECALL,
                         lambda job, split: _plots().plot_precision_recall(job, split)),
    "predicted-vs-actual": ("Predicted vs actual", JobChart.PREDICTED_VS_ACTUAL,
                   lambda job, split: _plots().plot_regression(job, split)),
}

#: what a chart that cannot be drawn from this data raises: its message becomes the chart's note
NOT_DRAWN = (ChartNotApplicableError, ValidationError, MissingExtraError)


def queue_chart_names(queue: Any) -> list[str]:
    """The charts a queue's page shows: performance, hyperparameters and repeat spread; with a
    sampled search its history, importance, slices (and contour); with any search the
    intermediate values."""
    names = ["performance", "hyperparameters", "repeat-spread"]
    search = queue.experiment.search_settings
    if search is not None:
        if search.samples:
            names += ["optimization-history", "param-importance", "slice"]
            if len(_numeric_searched(queue)) >= 2:
                names.append("contour")
        names.append("intermediate-values")
    return names


def _figure_response(name: str, draw: Callable[[], Any]) -> Response:
    """``{"chart": name, "note": null, "figure": {...}}``, or the note of a chart that does not apply."""
    try:
        figure = draw()
    except NOT_DRAWN as error:
        return _json({"chart": name, "figure": None, "note": str(error)})
    body = json.dumps({"chart": name, "note": None})[:-1] + ', "figure": ' + figure.to_json() + "}"
    return Response(body, media_type="application/json")


def _evaluated_split(splits: list[str], objective_split: str) -> str:
    """The split a queue's charts show by default: the objective's, else validation, else test."""
    for split in (objective_split, "validation", "test"):
        if split in splits:
            return split
    return splits[0] if splits else objective_split


def _measured_splits(entry: JobsFrame) -> list[str]:
    present = set(entry.frame["split"].dropna()) if len(entry.frame) else set()
    return [s for s in SPLITS if s in present]


# --- pages ---------------------------------------------------------------------------------------
def page_queues(request: Request) -> Response:
    """``/``: every queue (``?tag=``: those with that tag)."""
    tag = request.query_params.get("tag", "").strip()
    rows = queue_rows(tag or None)
    return _html(request, "Queues", pages.queues_page(rows, _states(), tag), page="queues")


def page_queue(request: Request) -> Response:
    """``/queue/{id}``: the header; the jobs table and the charts are fetched by the script."""
    queue = _get_queue(request.path_params["queue_id"])
    summary = queue_summary(queue)
    charts = [{"name": name, "title": QUEUE_CHARTS[name][0], "src": f"/api/queue/{queue.id}/chart/{name}"}
              for name in queue_chart_names(queue)]
    title = f"Queue {queue.id}" + (f": {summary['name']}" if summary["name"] else "")
    return _html(request, title, pages.queue_page(summary, charts, _states(), list(SPLITS)), page="queue",
                 plotly=True)


def page_job(request: Request) -> Response:
    """``/job/{id}``: facts, hyperparameters, metrics, traceback and charts (``?split=``)."""
    from aiqc.orm import Job

    job = Job.get_by_id(request.path_params["job_id"])
    split = _choice(request, "split", SPLITS)
    experiment = job.queue.experiment
    metrics = job.metrics()
    splits = [s for s in SPLITS if s in metrics]
    chart_split = split or ("test" if "test" in splits else (splits[-1] if splits else None))
    state = JobState(job.state)
    info = {"job_id": job.id, "queue_id": job.queue_id, "queue_name": experiment.name, "state": state.value,
            "library": experiment.library.value, "analysis_type": experiment.analysis_type.value, "seed": job.seed,
            "repeat": job.repeat_index, "fold": job.fold_index, "seconds": job.seconds, "attempts": job.attempts,
            "worker": job.worker, "started_at": job.started_at, "finished_at": job.finished_at,
            "aliases": job.aliases, "hyperparameters": job.hyperparameters, "metrics": metrics,
            "error": job.error, "versions": job.versions or {}}
    charts = []
    if state.is_measured:
        applicable = experiment.analysis_type.spec.charts
        query = f"?split={chart_split}" if chart_split else ""
        charts = [{"name": name, "title": title, "src": f"/api/job/{job.id}/chart/{name}{query}"}
                  for name, (title, chart, _) in JOB_CHARTS.items() if chart is None or chart in applicable]
    else:
        info["charts_note"] = f"no charts: the job is {state.value.lower()}, with no metrics or predictions."
    return _html(request, f"Job {job.id}", pages.job_page(info, charts, splits, chart_split), page="job",
                 plotly=bool(charts))


def _compare_args(request: Request) -> tuple[list[int], str | None, str | None]:
    """The queue ids (``queues=1,2`` or ``queues=1&queues=2``), metric (among the first queue's
    metrics) and split (among the split names) of a comparison."""
    from aiqc.orm import Experiment, Queue

    ids = []
    for given in request.query_params.getlist("queues"):
        for part in given.split(","):
            part = part.strip()
            if not part:
                continue
            if not re.fullmatch(r"\d{1,18}", part):
                raise ValidationError.expected("queues", "queue ids separated by commas, e.g. 1,2", given)
            ids.append(int(part))
    split = _choice(request, "split", SPLITS)
    metric = request.query_params.get("metric") or None
    if metric is not None:
        if not ids:
            raise ValidationError.expected("queues", "the queues to compare on metric", "none")
        first = Queue.select(Queue, Experiment).join(Experiment).where(Queue.id == ids[0]).first()
        if first is None:
            raise NotFoundError(f"Queue id={ids[0]!r} does not exist.")
        names = list(first.experiment.metric_set.names)
        if metric not in names:
            raise ValidationError.expected("metric", f"one of queue {ids[0]}'s metrics {names!r}", metric)
    return ids, metric, split


def page_compare(request: Request) -> Response:
    """``/compare?queues=1,2&metric=&split=``: the table of :func:`aiqc.compare_queues` and
    its chart; without queues, the picker alone."""
    from aiqc.compare import comparison

    ids, metric, split = _compare_args(request)
    queues = [{"queue_id": row["queue_id"], "name": row["name"], "chosen": row["queue_id"] in ids}
              for row in queue_rows()]
    table = chart = direction = None
    metrics: list[str] = []
    if ids:
        compared = comparison(ids, metric, split)
        metric, split, direction = compared.metric, compared.split, compared.direction
        metrics = list(compared.queues[0].experiment.metric_set.names)
        table = _records(compared.frame)
        query = pages.query_url("/api/compare/chart", queues=",".join(map(str, ids)), metric=metric, split=split)
        chart = {"name": "compare", "title": "Every job's score, per queue", "src": query}
    body = pages.compare_page(queues, table, chart, metrics, metric, split, list(SPLITS), direction)
    return _html(request, "Compare queues", body, page="compare", plotly=chart is not None)


def queue_report(request: Request) -> Response:
    """``/queue/{id}/report.html``: :meth:`~aiqc.orm.Queue.report` written to a temporary
    folder (never beside the database) and sent as a download."""
    queue = _get_queue(request.path_params["queue_id"])
    with tempfile.TemporaryDirectory(prefix="aiqc-ui-") as folder:
        path = queue.report(os.path.join(folder, f"aiqc-queue-{queue.id}.html"))
        content = Path(path).read_bytes()
    return Response(content, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="aiqc-queue-{queue.id}.html"'})


# --- the JSON API ----------------------------------------------------------------------------------
def api_queues(request: Request) -> Response:
    """``/api/queues?tag=``: :func:`queue_rows`."""
    tag = request.query_params.get("tag", "").strip()
    return _json({"queues": queue_rows(tag or None)})


def api_queue(request: Request) -> Response:
    """``/api/queue/{id}``: :func:`queue_summary`."""
    return _json(queue_summary(_get_queue(request.path_params["queue_id"])))


def api_jobs(request: Request) -> Response:
    """``/api/queue/{id}/jobs``: one page of the queue's jobs table, filtered (``state``,
    ``split``, ``q``: text among the hyperparameter values, ``name=value``) and sorted
    (``sort``: a column, ``order``: asc or desc) on the server."""
    queue = _get_queue(request.path_params["queue_id"])
    page = _integer(request, "page", 1, 1)
    per_page = _integer(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    order = _choice(request, "order", ("asc", "desc")) or "asc"
    state = _choice(request, "state", _states())
    split = _choice(request, "split", SPLITS)
    q = request.query_params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise ValidationError.expected("q", f"at most {MAX_QUERY} characters", f"{len(q)} characters")
    entry, counts, version = jobs_frame(queue)
    frame = entry.frame
    sort = _choice(request, "sort", list(frame.columns))
    if len(frame):
        keep = None
        if state is not None:
            keep = frame["state"] == state
        if split is not None:
            keep = (frame["split"] == split) if keep is None else keep & (frame["split"] == split)
        if q:
            found = entry.haystack().str.contains(q.lower(), regex=False)
            keep = found if keep is None else keep & found
        if keep is not None:
            frame = frame[keep.to_numpy(dtype=bool)]
        if sort is not None:
            frame = _sorted(frame, sort, order == "asc")
    total = len(frame)
    pages_count = max(1, math.ceil(total / per_page))
    if page > pages_count:
        raise ValidationError.expected("page", f"a page between 1 and {pages_count} ({total} rows, {per_page} a page)",
                                       page)
    shown = frame.iloc[(page - 1) * per_page: page * per_page]
    return _json({"queue_id": queue.id, "columns": list(entry.frame.columns), "metrics": entry.metrics,
                  "hyperparameters": entry.hyperparameters, "rows": _records(shown), "total": total,
                  "page": page, "per_page": per_page, "pages": pages_count, "sort": sort, "order": order,
                  "state": state, "split": split, "q": q, "counts": counts, "version": _version_text(version)})


def api_queue_chart(request: Request) -> Response:
    """``/api/queue/{id}/chart/{name}?metric=&split=``: one of :data:`QUEUE_CHARTS` as plotly JSON."""
    name = request.path_params["name"]
    if name not in QUEUE_CHARTS:
        raise NotFoundError(f"chart: no queue chart named {name!r}; the charts are {list(QUEUE_CHARTS)!r}.")
    queue = _get_queue(request.path_params["queue_id"])
    metric = _choice(request, "metric", list(queue.experiment.metric_set.names))
    split = _choice(request, "split", SPLITS)
    if split is None:
        entry, _, _ = jobs_frame(queue)
        split = _evaluated_split(_measured_splits(entry), queue.experiment.objective[1])
    too_many = _too_many_traces(queue, name)
    if too_many:
        return _json({"chart": name, "figure": None, "note": too_many})
    draw = QUEUE_CHARTS[name][1]
    return _figure_response(name, lambda: draw(queue, metric, split))


def _too_many_traces(queue: Any, name: str) -> str | None:
    """Why a chart of one trace per combination or per job is left out (over :data:`MAX_TRACES`); None to draw it."""
    from aiqc.orm import Hyperparamset, Job

    if name == "repeat-spread":
        count = Hyperparamset.select().where(Hyperparamset.experiment == queue.experiment_id).count()
        what, trace = "hyperparameter combinations", "a box per combination"
    elif name == "intermediate-values":
        count = Job.select().where(Job.queue == queue.id).count()
        what, trace = "jobs", "a line per job"
    else:
        return None
    if count <= MAX_TRACES:
        return None
    return (f"left out: queue {queue.id} has {count:,} {what}, and this chart draws {trace} (at most {MAX_TRACES}); "
            "the jobs table above sorts and filters them all.")


def api_job_chart(request: Request) -> Response:
    """``/api/job/{id}/chart/{name}?split=``: one of :data:`JOB_CHARTS` as plotly JSON."""
    from aiqc.orm import Job

    name = request.path_params["name"]
    if name not in JOB_CHARTS:
        raise NotFoundError(f"chart: no job chart named {name!r}; the charts are {list(JOB_CHARTS)!r}.")
    job = Job.get_by_id(request.path_params["job_id"])
    split = _choice(request, "split", SPLITS)
    if split is None and name in ("roc-curve", "precision-recall", "predicted-vs-actual"):
        splits = [s for s in SPLITS if s in job.metrics()]
        split = "test" if "test" in splits or not splits else splits[-1]
    draw = JOB_CHARTS[name][2]
    state = JobState(job.state)
    if name != "learning-curve" and not state.is_measured:
        return _json({"chart": name, "figure": None,
                      "note": f"job {job.id} is {state.value}: it has no metrics or predictions to chart."})
    return _figure_response(name, lambda: draw(job, split))


def api_compare(request: Request) -> Response:
    """``/api/compare?queues=1,2&metric=&split=``: the rows of :func:`aiqc.compare_queues`."""
    from aiqc.compare import comparison

    ids, metric, split = _compare_args(request)
    if not ids:
        raise ValidationError.expected("queues", "queue ids separated by commas, e.g. 1,2", "none")
    compared = comparison(ids, metric, split)
    return _json({"metric": compared.metric, "split": compared.split, "direction": compared.direction,
                  "rows": _records(compared.frame)})


def api_compare_chart(request: Request) -> Response:
    """``/api/compare/chart?queues=1,2&metric=&split=``: :func:`aiqc.plots.plot_compare_queues`."""
    ids, metric, split = _compare_args(request)
    if not ids:
        raise ValidationError.expected("queues", "queue ids separated by commas, e.g. 1,2", "none")
    return _figure_response("compare", lambda: _plots().plot_compare_queues(ids, metric, split))


# --- static files --------------------------------------------------------------------------------
_STATIC_TYPES = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8",
                 "plotly.min.js": "text/javascript; charset=utf-8"}
_static_cache: dict[str, bytes] = {}


def _static_bytes(name: str) -> bytes:
    if name not in _static_cache:
        if name == "plotly.min.js":
            import plotly.offline

            _static_cache[name] = plotly.offline.get_plotlyjs().encode("utf-8")
        elif name == "ui.css":
            _static_cache[name] = pages.STYLE.encode("utf-8")
        else:
            _static_cache[name] = (STATIC / name).read_bytes()
    return _static_cache[name]


def static(request: Request) -> Response:
    """``/static/{name}``: plotly.js (from the installed plotly package: no CDN), ui.js and ui.css."""
    name = request.path_params["name"]
    if name not in _STATIC_TYPES:
        raise NotFoundError(f"no static file named {name!r}.")
    return Response(_static_bytes(name), media_type=_STATIC_TYPES[name],
                    headers={"Cache-Control": "public, max-age=86400"})
