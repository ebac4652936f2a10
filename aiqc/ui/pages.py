"""The dashboard's HTML: one small layout and a function per page, from plain data (dicts and
lists that :mod:`aiqc.ui.app` reads). Every text that comes from the database (names, tags,
descriptions, hyperparameter values, versions, error texts, tracebacks) goes through
:func:`text`, which escapes it for HTML text and attribute values alike. No data is put inside
a ``<script>``: the pages' script (``static/ui.js``) reads ids and URLs from ``data-``
attributes and fetches everything else as JSON, which it writes with ``textContent``.

Stable hooks for scripts and browser tests: ``#queues`` (rows ``tr[data-queue-id]``, cells
``td[data-state]``, ``progress[data-done][data-total]``), ``#queue-summary``, ``#jobs`` (rows
``tr[data-job-id]``), ``#state-filter``, ``#split-filter``, ``#q``, ``#per-page``, ``#prev``,
``#next``, ``#page-info``, ``#job``, ``#error``, ``#metrics``, ``#compare``, and every chart in a
``div.chart`` with ``id="chart-NAME"``, ``data-chart`` and ``data-src`` (``data-loaded`` becomes
``figure``, ``note`` or ``error`` once fetched).
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable
from urllib.parse import urlencode

from aiqc.report import STYLE as REPORT_STYLE

#: the dashboard's style: the report's table style, plus navigation, progress bars and notes
STYLE = REPORT_STYLE + """
body { margin: 0 auto; padding: 0 1.5rem 2rem; }
nav { padding: 0.8rem 0; border-bottom: 1px solid #ddd; font-size: 0.95rem; }
nav a { margin-right: 1rem; text-decoration: none; } nav .brand { font-weight: bold; color: #222; }
footer { margin-top: 3rem; color: #666; font-size: 0.8rem; border-top: 1px solid #eee; padding-top: 0.5rem; }
a { color: #1a5fb4; }
td.text, th.text, td.name, td.tags { text-align: left; }
th[data-column] { cursor: pointer; user-select: none; white-space: nowrap; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
progress { width: 8rem; vertical-align: middle; }
.tag { display: inline-block; background: #eef2f6; border-radius: 3px; padding: 0 0.3rem; margin: 0 0.15rem 0.1rem 0;
       font-size: 0.8rem; text-decoration: none; color: #333; }
.controls { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: center; margin: 0.8rem 0; font-size: 0.9rem; }
.error { color: #a51d2d; } pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; font-size: 0.9rem; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; }
.chart { height: 460px; margin: 0.5rem 0 1.5rem; } .chart.note, .chart.error { height: auto; }
.states span { margin-right: 0.8rem; } .objective { color: #666; font-size: 0.8rem; }
"""

#: rows a page of the jobs table may hold
PER_PAGE_CHOICES = (25, 50, 100, 200, 500)


def text(value: Any) -> str:
    """``value`` as text safe inside HTML text and quoted attribute values (None: empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A score as a person reads it: ``digits`` decimals; empty for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return text(value)


def query_url(path: str, **query: Any) -> str:
    """``path`` with the non-empty ``query`` values URL-encoded (escape the result for an attribute)."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept, doseq=True) if kept else "")


def layout(title: str, body: str, *, page: str, database: str, read_only: bool, plotly: bool = False,
           assets: str = "") -> str:
    """The whole document: navigation, ``body``, a footer naming the database. ``plotly``:
    load plotly.js (pages with charts). ``assets``: a version stamp for the static files' URLs."""
    scripts = (f'<script src="/static/plotly.min.js?v={text(assets)}" defer></script>' if plotly else "") + \
        f'<script src="/static/ui.js?v={text(assets)}" defer></script>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">"
            f"<title>{text(title)} · aiqc</title>"
            f"<link rel=\"stylesheet\" href=\"/static/ui.css?v={text(assets)}\">{scripts}</head>"
            f"<body data-page=\"{text(page)}\">"
            "<nav><a class=\"brand\" href=\"/\">aiqc</a><a href=\"/\">Queues</a><a href=\"/compare\">Compare</a></nav>"
            f"<main>{body}</main>"
            f"<footer id=\"database\">database {text(database)}{' (read-only)' if read_only else ''}</footer>"
            "</body></html>\n")


def _tags(tags: Iterable[str]) -> str:
    return "".join(f'<a class="tag" href="{text(query_url("/", tag=tag))}">{text(tag)}</a>' for tag in tags)


def _progress(done: int, total: int, element_id: str | None = None) -> str:
    ident = f' id="{text(element_id)}"' if element_id else ""
    return (f'<progress{ident} data-done="{int(done)}" data-total="{int(total)}" value="{int(done)}" '
            f'max="{max(int(total), 1)}"></progress> <span class="progress-text">{int(done)} / {int(total)}</span>')


def _chart(name: str, src: str) -> str:
    return (f'<div class="chart" id="chart-{text(name)}" data-chart="{text(name)}" data-src="{text(src)}" '
            'data-loaded="pending"></div>')


def _chart_sections(charts: list[dict]) -> str:
    """One section per chart: ``{"name", "title", "src"}``."""
    return "".join(f"<section class=\"chart-section\"><h2>{text(chart['title'])}</h2>"
                   f"{_chart(chart['name'], chart['src'])}</section>" for chart in charts)


# --- pages ---------------------------------------------------------------------------------------
def queues_page(rows: list[dict], states: list[str], tag: str = "") -> str:
    """The queues: one row each (``aiqc.ui.app.queue_rows``), polled by the script."""
    head = "".join(f'<th data-state="{text(s)}">{text(s.lower())}</th>' for s in states)
    body = "".join(_queue_row(row, states) for row in rows)
    api = query_url("/api/queues", tag=tag)
    empty = "" if rows else (f'<p class="note" id="queues-empty">no queues tagged {text(tag)}</p>' if tag
                             else '<p class="note" id="queues-empty">no queues yet</p>')
    clear = ' <a href="/">all queues</a>' if tag else ""
    return (
        "<h1>Queues</h1>"
        '<form id="tag-filter" class="controls" method="get" action="/">'
        f'<label>tag <input name="tag" value="{text(tag)}" placeholder="e.g. baseline"></label>'
        f'<button type="submit">Filter</button>{clear}</form>'
        '<form id="compare-form" method="get" action="/compare">'
        f'<div class="table"><table id="queues" data-api="{text(api)}"><thead><tr><th></th><th>queue</th>'
        '<th class="text">name</th><th class="text">tags</th><th>library</th><th>analysis type</th>'
        f'{head}<th>progress</th><th>best</th></tr></thead><tbody>{body}</tbody></table></div>{empty}'
        '<p><button id="compare-button" type="submit">Compare the selected queues</button></p></form>'
    )


def _queue_row(row: dict, states: list[str]) -> str:
    queue_id = int(row["queue_id"])
    counts = "".join(f'<td class="count" data-state="{text(s)}">{int(row["counts"].get(s, 0))}</td>' for s in states)
    return (
        f'<tr data-queue-id="{queue_id}">'
        f'<td><input type="checkbox" name="queues" value="{queue_id}" aria-label="select queue {queue_id}"></td>'
        f'<td><a href="/queue/{queue_id}">{queue_id}</a></td>'
        f'<td class="name">{text(row["name"])}</td><td class="tags">{_tags(row["tags"])}</td>'
        f'<td>{text(row["library"])}</td><td>{text(row["analysis_type"])}</td>{counts}'
        f'<td class="progress-cell">{_progress(row["done"], row["total"])}</td>'
        f'<td class="best"><span class="value">{number(row["best"])}</span> '
        f'<span class="objective">{text(row["objective"])}</span></td></tr>'
    )


def queue_page(summary: dict, charts: list[dict], states: list[str], splits: list[str]) -> str:
    """A queue: its header (``aiqc.ui.app.queue_summary``), the jobs table the script pages
    through ``/api/queue/ID/jobs``, and its charts."""
    queue_id = int(summary["queue_id"])
    name = summary["name"]
    counts = "".join(f'<span data-state="{text(s)}">{text(s.lower())} '
                     f'<strong class="n">{int(summary["counts"].get(s, 0))}</strong></span>' for s in states)
    facts = [("library", text(summary["library"])), ("analysis type", text(summary["analysis_type"])),
             ("objective", text(f"{summary['objective_split']} {summary['objective_metric']} "
                                f"({summary['direction']})")),
             ("splitset", text(summary["splitset_id"])), ("repeats", text(summary["repeat_count"]))]
    if summary.get("search"):
        facts.append(("search", text(summary["search"])))
    best = summary.get("best")
    shown = (f'<a id="best-job" href="/job/{int(best["job_id"])}">{int(best["job_id"])}</a> ({number(best["value"])})'
             if best else "none yet")
    facts.append(("best job", f'<span id="best" data-job-id="{int(best["job_id"]) if best else ""}">{shown}</span>'))
    if summary.get("output_dir"):
        facts.append(("output", text(summary["output_dir"])))
    facts.append(("report", f'<a id="report-link" href="/queue/{queue_id}/report.html">download the HTML report</a>'))
    state_options = "".join(f'<option value="{text(s)}">{text(s.lower())}</option>' for s in states)
    split_options = "".join(f'<option value="{text(s)}">{text(s)}</option>' for s in splits)
    per_page = "".join(f'<option value="{n}"{" selected" if n == 50 else ""}>{n}</option>' for n in PER_PAGE_CHOICES)
    description = f'<p id="description">{text(summary["description"])}</p>' if summary.get("description") else ""
    return (
        f'<h1>Queue {queue_id}{": " + text(name) if name else ""}</h1>{description}'
        f'<p class="tags" id="tags">{_tags(summary["tags"])}</p>'
        f'<div id="queue-summary" data-queue-id="{queue_id}" data-api="/api/queue/{queue_id}" '
        f'data-version="{text(summary["version"])}">'
        f'<p class="states">{counts}</p><p>{_progress(summary["done"], summary["total"], "queue-progress")}</p></div>'
        f'<dl class="facts">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)}</dl>'
        "<h2>Jobs</h2>"
        '<div class="controls">'
        f'<label>state <select id="state-filter"><option value="">any</option>{state_options}</select></label>'
        f'<label>split <select id="split-filter"><option value="">any</option>{split_options}</select></label>'
        '<label>hyperparameters contain <input id="q" type="search" maxlength="200" '
        'placeholder="e.g. neuron_count=8"></label>'
        f'<label>rows <select id="per-page">{per_page}</select></label>'
        '<button id="prev" type="button">previous</button><span id="page-info"></span>'
        '<button id="next" type="button">next</button></div>'
        '<p id="jobs-error" class="error"></p>'
        f'<div class="table"><table id="jobs" data-api="/api/queue/{queue_id}/jobs"><thead></thead><tbody></tbody>'
        "</table></div>"
        f"{_chart_sections(charts)}"
    )


def job_page(job: dict, charts: list[dict], splits: list[str], chart_split: str | None) -> str:
    """A job: its facts, hyperparameters, metrics per split, error traceback and charts."""
    job_id, queue_id = int(job["job_id"]), int(job["queue_id"])
    queue = f'<a id="queue-link" href="/queue/{queue_id}">{queue_id}</a>' + (
        f" ({text(job['queue_name'])})" if job.get("queue_name") else "")
    facts = [("state", f'<span id="job-state">{text(job["state"])}</span>'), ("queue", queue),
             ("library", text(job["library"])), ("analysis type", text(job["analysis_type"])),
             ("seed", text(job["seed"])), ("repeat", text(job["repeat"])),
             ("fold", text("" if job["fold"] is None else job["fold"])),
             ("seconds", number(job["seconds"], 2)), ("attempts", text(job["attempts"])),
             ("worker", text(job["worker"])), ("started", text(job["started_at"])),
             ("finished", text(job["finished_at"]))]
    if job["aliases"]:
        facts.append(("aliases", text(", ".join(job["aliases"]))))
    hyperparameters = "".join(f'<tr><th class="text">{text(k)}</th><td class="text">{text(v)}</td></tr>'
                              for k, v in job["hyperparameters"].items())
    parts = [f"<h1>Job {job_id}</h1>",
             f'<dl class="facts" id="job" data-job-id="{job_id}">'
             + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
             "<h2>Hyperparameters</h2>",
             f'<div class="table"><table id="hyperparameters"><tbody>{hyperparameters}</tbody></table></div>']
    parts += ["<h2>Metrics per split</h2>", _metrics_table(job["metrics"])]
    if job.get("error"):
        parts += ["<h2>Error</h2>", f'<pre id="error">{text(job["error"])}</pre>']
    parts.append(f'<p><a id="report-link" href="/queue/{queue_id}/report.html">Download the queue\'s report</a></p>')
    if charts:
        if len(splits) > 1 and chart_split is not None:
            links = " · ".join(f"<strong>{text(s)}</strong>" if s == chart_split else
                               f'<a href="{text(query_url(f"/job/{job_id}", split=s))}">{text(s)}</a>' for s in splits)
            parts.append(f'<p class="controls" id="chart-splits">split of the ROC, precision-recall and predicted-vs-actual '
                         f"charts: {links}</p>")
        parts.append(_chart_sections(charts))
    elif job.get("charts_note"):
        parts.append(f'<p class="note" id="charts-note">{text(job["charts_note"])}</p>')
    if job.get("versions"):
        rows = "".join(f'<tr><th class="text">{text(k)}</th><td class="text">{text(v)}</td></tr>'
                       for k, v in job["versions"].items())
        parts += ["<h2>Versions</h2>", f'<div class="table"><table id="versions"><tbody>{rows}</tbody></table></div>']
    return "".join(parts)


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    if not metrics:
        return '<p class="note" id="metrics">no metrics recorded</p>'
    names = list(dict.fromkeys(name for values in metrics.values() for name in values))
    head = "".join(f"<th>{text(n)}</th>" for n in names)
    rows = "".join(f'<tr data-split="{text(split)}"><th class="text">{text(split)}</th>'
                   + "".join(f"<td>{number(values.get(n))}</td>" for n in names) + "</tr>"
                   for split, values in metrics.items())
    return (f'<div class="table"><table id="metrics"><thead><tr><th class="text">split</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def compare_page(queues: list[dict], table: list[dict] | None, chart: dict | None, metrics: list[str],
                 metric: str | None, split: str | None, splits: list[str], direction: str | None) -> str:
    """Queues side by side on one metric: the picker of queues, metric and split, then the
    :func:`aiqc.compare_queues` table and the comparison chart (when queues were picked)."""
    chosen = {int(q["queue_id"]) for q in queues if q.get("chosen")}
    boxes = "".join(
        f'<label class="tag"><input type="checkbox" name="queues" value="{int(q["queue_id"])}"'
        f'{" checked" if int(q["queue_id"]) in chosen else ""}> {int(q["queue_id"])}'
        f'{": " + text(q["name"]) if q.get("name") else ""}</label> ' for q in queues)
    metric_options = "".join(f'<option value="{text(m)}"{" selected" if m == metric else ""}>{text(m)}</option>'
                             for m in metrics)
    split_options = "".join(f'<option value="{text(s)}"{" selected" if s == split else ""}>{text(s)}</option>'
                            for s in splits)
    parts = ["<h1>Compare queues</h1>",
             '<form id="compare-form" method="get" action="/compare">'
             f'<p id="queue-choices">{boxes or "no queues yet"}</p><div class="controls">'
             + (f'<label>metric <select id="metric" name="metric"><option value="">objective</option>'
                f"{metric_options}</select></label>" if metrics else "")
             + f'<label>split <select id="split" name="split"><option value="">objective</option>{split_options}'
             '</select></label><button type="submit">Compare</button></div></form>']
    if table is None:
        parts.append('<p class="note">Pick two or more queues.</p>')
        return "".join(parts)
    columns = ["queue_id", "name", "tags", "library", "analysis_type", "jobs", "best", "best_job_id", "mean", "std",
               "min", "max", "best_params_mean"]
    head = "".join(f'<th class="{"text" if c in ("name", "tags") else ""}">{text(c)}</th>' for c in columns)
    rows = "".join(_compare_row(row, columns) for row in table)
    parts += [f"<h2>On {text(split)} {text(metric)} ({text(direction)})</h2>",
              f'<div class="table"><table id="compare"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
              "</div>"]
    if chart is not None:
        parts.append(_chart_sections([chart]))
    return "".join(parts)


def _compare_row(row: dict, columns: list[str]) -> str:
    cells = []
    for column in columns:
        value = row.get(column)
        if column == "queue_id":
            cells.append(f'<td><a href="/queue/{int(value)}">{int(value)}</a></td>')
        elif column == "best_job_id":
            cells.append(f'<td><a href="/job/{int(value)}">{int(value)}</a></td>' if value is not None else "<td></td>")
        elif column == "tags":
            cells.append(f'<td class="tags">{_tags(value or [])}</td>')
        elif column == "name":
            cells.append(f'<td class="name">{text(value)}</td>')
        else:
            cells.append(f"<td>{number(value)}</td>")
    return f'<tr data-queue-id="{int(row["queue_id"])}">{"".join(cells)}</tr>'


def error_page(status: int, message: str) -> str:
    """The body of an error page: the status and the message, escaped."""
    titles = {400: "Bad request", 404: "Not found", 409: "Not available", 503: "Database unavailable"}
    return (f'<h1 id="error-status" data-status="{int(status)}">{int(status)} {text(titles.get(status, "Error"))}</h1>'
            f'<p id="error-message" class="error">{text(message)}</p><p><a href="/">back to the queues</a></p>')
