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

What is read lives in :mod:`aiqc.ui.queries`, which knows nothing of the web: there, the
metrics table of a queue is built once per version of the queue (its jobs per state and their
last ``finished_at``) and kept in a small per-process cache, so paging, sorting and filtering a
10,000-job queue do not query its jobs again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Callable

import peewee as pw

from aiqc.data.split import SPLITS
from aiqc.exceptions import AIQCError, DatabaseError, MissingExtraError, NotFoundError, ValidationError
from aiqc.states import JobState
from aiqc.ui import pages, queries

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

logger = logging.getLogger(__name__)

#: how many rows a page of the jobs table may hold
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 50
#: the longest ``q`` (text searched among the hyperparameter values) accepted
MAX_QUERY = 200
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


def _figure_response(name: str, draw: Callable[[], Any]) -> Response:
    """``{"chart": name, "note": null, "figure": {...}}``, or the note of a chart that does not apply."""
    try:
        figure = draw()
    except queries.NOT_DRAWN as error:
        return _json({"chart": name, "figure": None, "note": str(error)})
    body = json.dumps({"chart": name, "note": None})[:-1] + ', "figure": ' + figure.to_json() + "}"
    return Response(body, media_type="application/json")


# --- pages ---------------------------------------------------------------------------------------
def page_queues(request: Request) -> Response:
    """``/``: every queue (``?tag=``: those with that tag)."""
    tag = request.query_params.get("tag", "").strip()
    rows = queries.queue_rows(tag or None)
    return _html(request, "Queues", pages.queues_page(rows, queries.states(), tag), page="queues")


def page_queue(request: Request) -> Response:
    """``/queue/{id}``: the header; the jobs table and the charts are fetched by the script."""
    queue = queries.get_queue(request.path_params["queue_id"])
    summary = queries.queue_summary(queue)
    charts = [{"name": name, "title": queries.QUEUE_CHARTS[name][0], "src": f"/api/queue/{queue.id}/chart/{name}"}
              for name in queries.queue_chart_names(queue)]
    title = f"Queue {queue.id}" + (f": {summary['name']}" if summary["name"] else "")
    return _html(request, title, pages.queue_page(summary, charts, queries.states(), list(SPLITS)), page="queue",
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
                  for name, (title, chart, _) in queries.JOB_CHARTS.items() if chart is None or chart in applicable]
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
              for row in queries.queue_rows()]
    table = chart = direction = None
    metrics: list[str] = []
    if ids:
        compared = comparison(ids, metric, split)
        metric, split, direction = compared.metric, compared.split, compared.direction
        metrics = list(compared.queues[0].experiment.metric_set.names)
        table = queries.records(compared.frame)
        query = pages.query_url("/api/compare/chart", queues=",".join(map(str, ids)), metric=metric, split=split)
        chart = {"name": "compare", "title": "Every job's score, per queue", "src": query}
    body = pages.compare_page(queues, table, chart, metrics, metric, split, list(SPLITS), direction)
    return _html(request, "Compare queues", body, page="compare", plotly=chart is not None)


def queue_report(request: Request) -> Response:
    """``/queue/{id}/report.html``: :meth:`~aiqc.orm.Queue.report` written to a temporary
    folder (never beside the database) and sent as a download."""
    queue = queries.get_queue(request.path_params["queue_id"])
    with tempfile.TemporaryDirectory(prefix="aiqc-ui-") as folder:
        path = queue.report(os.path.join(folder, f"aiqc-queue-{queue.id}.html"))
        content = Path(path).read_bytes()
    return Response(content, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="aiqc-queue-{queue.id}.html"'})


# --- the JSON API ----------------------------------------------------------------------------------
def api_queues(request: Request) -> Response:
    """``/api/queues?tag=``: :func:`~aiqc.ui.queries.queue_rows`."""
    tag = request.query_params.get("tag", "").strip()
    return _json({"queues": queries.queue_rows(tag or None)})


def api_queue(request: Request) -> Response:
    """``/api/queue/{id}``: :func:`~aiqc.ui.queries.queue_summary`."""
    return _json(queries.queue_summary(queries.get_queue(request.path_params["queue_id"])))


def api_jobs(request: Request) -> Response:
    """``/api/queue/{id}/jobs``: one page of the queue's jobs table, filtered (``state``,
    ``split``, ``q``: text among the hyperparameter values, ``name=value``) and sorted
    (``sort``: a column, ``order``: asc or desc) on the server."""
    queue = queries.get_queue(request.path_params["queue_id"])
    page = _integer(request, "page", 1, 1)
    per_page = _integer(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    order = _choice(request, "order", ("asc", "desc")) or "asc"
    state = _choice(request, "state", queries.states())
    split = _choice(request, "split", SPLITS)
    q = request.query_params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise ValidationError.expected("q", f"at most {MAX_QUERY} characters", f"{len(q)} characters")
    entry, counts, version = queries.jobs_frame(queue)
    sort = _choice(request, "sort", list(entry.frame.columns))
    frame = entry.rows(state=state, split=split, text=q, sort=sort, ascending=order == "asc")
    total = len(frame)
    pages_count = max(1, math.ceil(total / per_page))
    if page > pages_count:
        raise ValidationError.expected("page", f"a page between 1 and {pages_count} ({total} rows, {per_page} a page)",
                                       page)
    shown = frame.iloc[(page - 1) * per_page: page * per_page]
    return _json({"queue_id": queue.id, "columns": list(entry.frame.columns), "metrics": entry.metrics,
                  "hyperparameters": entry.hyperparameters, "rows": queries.records(shown), "total": total,
                  "page": page, "per_page": per_page, "pages": pages_count, "sort": sort, "order": order,
                  "state": state, "split": split, "q": q, "counts": counts, "version": queries.version_text(version)})


def api_queue_chart(request: Request) -> Response:
    """``/api/queue/{id}/chart/{name}?metric=&split=``: one of :data:`~aiqc.ui.queries.QUEUE_CHARTS` as plotly JSON."""
    name = request.path_params["name"]
    if name not in queries.QUEUE_CHARTS:
        raise NotFoundError(f"chart: no queue chart named {name!r}; the charts are {list(queries.QUEUE_CHARTS)!r}.")
    queue = queries.get_queue(request.path_params["queue_id"])
    metric = _choice(request, "metric", list(queue.experiment.metric_set.names))
    split = _choice(request, "split", SPLITS)
    if split is None:
        entry, _, _ = queries.jobs_frame(queue)
        split = queries.evaluated_split(queries.measured_splits(entry), queue.experiment.objective[1])
    too_many = queries.too_many_traces(queue, name)
    if too_many:
        return _json({"chart": name, "figure": None, "note": too_many})
    draw = queries.QUEUE_CHARTS[name][1]
    return _figure_response(name, lambda: draw(queue, metric, split))


def api_job_chart(request: Request) -> Response:
    """``/api/job/{id}/chart/{name}?split=``: one of :data:`~aiqc.ui.queries.JOB_CHARTS` as plotly JSON."""
    from aiqc.orm import Job

    name = request.path_params["name"]
    if name not in queries.JOB_CHARTS:
        raise NotFoundError(f"chart: no job chart named {name!r}; the charts are {list(queries.JOB_CHARTS)!r}.")
    job = Job.get_by_id(request.path_params["job_id"])
    split = _choice(request, "split", SPLITS)
    if split is None and name in ("roc-curve", "precision-recall", "predicted-vs-actual"):
        splits = [s for s in SPLITS if s in job.metrics()]
        split = "test" if "test" in splits or not splits else splits[-1]
    draw = queries.JOB_CHARTS[name][2]
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
                  "rows": queries.records(compared.frame)})


def api_compare_chart(request: Request) -> Response:
    """``/api/compare/chart?queues=1,2&metric=&split=``: :func:`aiqc.plots.plot_compare_queues`."""
    ids, metric, split = _compare_args(request)
    if not ids:
        raise ValidationError.expected("queues", "queue ids separated by commas, e.g. 1,2", "none")
    from aiqc.plots import plot_compare_queues

    return _figure_response("compare", lambda: plot_compare_queues(ids, metric, split))


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
