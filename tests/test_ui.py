"""``aiqc ui``: every page and endpoint of the dashboard, in process (Starlette's TestClient) over a
copy of one small database: a finished PyTorch queue, a queue with a FAILED job (and markup in its
name, tag, description and error), a sampled search, a regression queue and a queue not run yet.
Paging, sorting and filtering against ``metrics_to_pandas``; escaping; read-only browsing (the
file's hash and every table's rows unchanged, nothing unpickled); the CLI."""

from __future__ import annotations

import hashlib
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
try:
    with warnings.catch_warnings():  # newer starlette prefers httpx2 and warns about httpx, which works
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient
except (ImportError, RuntimeError):  # neither httpx nor httpx2 installed
    pytest.skip("starlette's TestClient needs httpx", allow_module_level=True)

import aiqc
from aiqc.states import JobState

from fns import unbind_database
from pgserver import free_port

pytestmark = [pytest.mark.backends,
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:DeprecationWarning")]

NAME = "<script>alert(1)</script>"
TAG = "<b>"
DESCRIPTION = "says <i>hi</i> & goes"
ERROR = "<img src=x onerror=alert(1)>"
RAW = (NAME, TAG, ERROR, "<i>hi</i>")
ESCAPED_NAME = "&lt;script&gt;alert(1)&lt;/script&gt;"


def train_raises_markup(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """fns.torch_train, but a job with neuron_count 13 fails with markup in its error."""
    import fns

    if hp["neuron_count"] == 13:
        raise RuntimeError(ERROR)
    return fns.torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the database file, the ids of its queues and jobs), made once."""
    pytest.importorskip("torch")
    import fns
    from aiqc import datum
    from aiqc.orm import Job, database_proxy

    path = tmp_path_factory.mktemp("ui") / "aiqc.sqlite3"
    aiqc.setup(path)
    try:
        iris = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        finished = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, hyperparameters={"neuron_count": [4, 8], "batch_size": [16], "epoch_count": [2]},
            repeat_count=2, splitset_id=iris.id, seed=0, name="finished", tags=["baseline"])
        assert finished.run_jobs(progress=False).complete == 4
        failing = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=train_raises_markup, hyperparameters={"neuron_count": [13, 4], "batch_size": [16],
                                                           "epoch_count": [1]},
            splitset_id=iris.id, seed=0)
        with pytest.warns(RuntimeWarning):
            assert failing.run_jobs(progress=False).failed == 1
        failing.describe(name=NAME, description=DESCRIPTION)
        failing.add_tags(TAG)
        ids = {"finished": finished.id, "failing": failing.id}
        if _has("optuna"):
            from aiqc.search import Float, Int, Search

            search = aiqc.Experiment.make(
                library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                fn_train=fns.torch_train, splitset_id=iris.id,
                hyperparameters={"neuron_count": Int(2, 8), "learning_rate": Float(1e-3, 0.1, log=True),
                                 "batch_size": [16], "epoch_count": [2]},
                search=Search("random", n_trials=3, seed=0, pruner="median", n_startup_trials=1, n_warmup_epochs=0))
            search.run_jobs(progress=False)
            ids["search"] = search.id
        diabetes = aiqc.Pipeline.Tabular.make(df_or_path=datum.to_pandas("diabetes.csv"), label_column="progression",
                                              feature_cols_excluded="progression", bin_count=3, size_validation=0.1)
        regression = aiqc.Experiment.make(
            library="pytorch", analysis_type="regression", fn_build=fns.torch_build, fn_train=fns.torch_train,
            hyperparameters={"neuron_count": [4], "batch_size": [32], "epoch_count": [2]}, splitset_id=diabetes.id)
        assert regression.run_jobs(progress=False).complete == 1
        waiting = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, hyperparameters={"neuron_count": [4, 8], "batch_size": [16], "epoch_count": [1]},
            splitset_id=iris.id, name="waiting")
        ids.update(regression=regression.id, waiting=waiting.id)
        jobs = {name: [j for (j,) in Job.select(Job.id).where(Job.queue == queue_id).order_by(Job.id).tuples()]
                for name, queue_id in list(ids.items())}
        ids["failed_job"] = Job.get((Job.queue == failing.id) & (Job.state == JobState.FAILED)).id
        ids["job"] = jobs["finished"][0]
        ids["regression_job"] = jobs["regression"][0]
        ids["waiting_jobs"] = jobs["waiting"]
        database_proxy.obj.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file we copy
    finally:
        unbind_database()
    return path, ids


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture
def copy(built, tmp_path, monkeypatch):
    """A fresh copy of the database file (unbound afterwards)."""
    monkeypatch.delenv("AIQC_DB", raising=False)
    path = tmp_path / "ui.sqlite3"
    shutil.copy(built[0], path)
    yield path
    unbind_database()


@pytest.fixture
def client(copy):
    """A TestClient of the app over the copy, opened read-only."""
    from aiqc.ui import make_app

    with TestClient(make_app(copy)) as test_client:
        yield test_client


def _queue_charts(ids: dict) -> list[str]:
    from aiqc.ui.queries import QUEUE_CHARTS

    urls = []
    for name in ("finished", "failing", "search", "regression", "waiting"):
        if name in ids:
            urls += [f"/api/queue/{ids[name]}/chart/{chart}" for chart in QUEUE_CHARTS]
    return urls


def _every_url(ids: dict) -> list[str]:
    """Every page and endpoint of the dashboard over the built database."""
    from aiqc.ui.queries import JOB_CHARTS

    queues = [ids[n] for n in ("finished", "failing", "search", "regression", "waiting") if n in ids]
    jobs = [ids["job"], ids["failed_job"], ids["regression_job"], ids["waiting_jobs"][0]]
    urls = ["/", "/?tag=%3Cb%3E", "/api/queues", "/api/queues?tag=baseline", "/compare",
            f"/compare?queues={ids['finished']},{ids['failing']}",
            f"/compare?queues={ids['finished']}&queues={ids['failing']}&metric=f1&split=test",
            f"/api/compare?queues={ids['finished']},{ids['failing']}",
            f"/api/compare/chart?queues={ids['finished']},{ids['failing']}",
            "/static/ui.js", "/static/ui.css", "/static/plotly.min.js"]
    for queue in queues:
        urls += [f"/queue/{queue}", f"/api/queue/{queue}", f"/api/queue/{queue}/jobs",
                 f"/api/queue/{queue}/jobs?sort=seconds&order=desc&page=1&per_page=2"]
    urls += [f"/queue/{q}/report.html" for q in (ids["finished"], ids["failing"], ids["regression"])]
    urls += _queue_charts(ids)
    for job in jobs:
        urls += [f"/job/{job}", f"/job/{job}?split=validation"]
        urls += [f"/api/job/{job}/chart/{name}" for name in JOB_CHARTS]
    return urls


# --- every page and endpoint ----------------------------------------------------------------------
def test_every_page_and_endpoint_answers(client, built):
    _, ids = built
    for url in _every_url(ids):
        response = client.get(url)
        assert response.status_code == 200, (url, response.text[:300])
        if url.startswith("/api/"):
            assert response.headers["content-type"].startswith("application/json"), url
            response.json()
    page = client.get(f"/queue/{ids['finished']}").text
    assert 'id="jobs"' in page and 'data-api="/api/queue/' in page and 'id="chart-performance"' in page
    assert '<script src="/static/plotly.min.js' in page and "cdn" not in page.lower()
    bundle = client.get("/static/plotly.min.js")
    assert "plotly.js v" in bundle.text[:500] and bundle.headers["content-type"].startswith("text/javascript")


def test_the_queue_page_names_its_best_job_or_none_yet(client, built):
    _, ids = built
    finished = aiqc.Queue.get_by_id(ids["finished"])
    best = finished.best_job().id
    page = client.get(f"/queue/{ids['finished']}").text
    assert f'<span id="best" data-job-id="{best}"><a id="best-job" href="/job/{best}">{best}</a>' in page
    assert client.get(f"/api/queue/{ids['finished']}").json()["best"]["job_id"] == best  # what the script polls
    assert '<span id="best" data-job-id="">none yet</span>' in client.get(f"/queue/{ids['waiting']}").text
    assert client.get(f"/api/queue/{ids['waiting']}").json()["best"] is None


def _chart(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, (url, response.text[:300])
    body = response.json()
    assert (body["figure"] is None) != (body["note"] is None), body
    return body


def test_charts_are_drawn_where_they_apply_and_noted_where_not(client, built):
    _, ids = built
    finished, regression = ids["finished"], ids["regression_job"]
    for name in ("performance", "hyperparameters", "repeat-spread"):
        figure = _chart(client, f"/api/queue/{finished}/chart/{name}")["figure"]
        assert figure["data"] and f"queue {finished}" in figure["layout"]["title"]["text"]
    assert "search" in _chart(client, f"/api/queue/{finished}/chart/optimization-history")["note"]
    for name in ("learning-curve", "confusion-matrix", "roc-curve", "precision-recall"):
        assert _chart(client, f"/api/job/{ids['job']}/chart/{name}")["figure"]["data"], name
    assert "regression" in _chart(client, f"/api/job/{ids['job']}/chart/predicted-vs-actual")["note"]
    assert _chart(client, f"/api/job/{regression}/chart/predicted-vs-actual?split=validation")["figure"]["data"]
    assert "classification" in _chart(client, f"/api/job/{regression}/chart/confusion-matrix")["note"]
    waiting = ids["waiting"]
    assert _chart(client, f"/api/queue/{waiting}/chart/performance")["note"]  # nothing measured yet
    job_page = client.get(f"/job/{ids['job']}").text
    assert 'id="chart-learning-curve"' in job_page and 'id="chart-confusion-matrix"' in job_page
    assert 'id="chart-predicted-vs-actual"' not in job_page
    assert 'id="chart-predicted-vs-actual"' in client.get(f"/job/{regression}").text
    assert 'id="charts-note"' in client.get(f"/job/{ids['failed_job']}").text


def test_a_chart_of_a_trace_per_combination_or_job_is_left_out_past_its_cap(client, built, monkeypatch):
    from aiqc.ui import queries

    _, ids = built
    monkeypatch.setattr(queries, "MAX_TRACES", 1)
    note = _chart(client, f"/api/queue/{ids['finished']}/chart/repeat-spread")["note"]
    assert note.startswith(f"left out: queue {ids['finished']} has 2 hyperparameter combinations")
    assert _chart(client, f"/api/queue/{ids['finished']}/chart/performance")["figure"]  # one trace: drawn
    if "search" in ids:
        assert "3 jobs" in _chart(client, f"/api/queue/{ids['search']}/chart/intermediate-values")["note"]


def test_a_search_queue_shows_its_search_charts(client, built):
    _, ids = built
    if "search" not in ids:
        pytest.skip("optuna is not installed")
    page = client.get(f"/queue/{ids['search']}").text
    for name in ("optimization-history", "param-importance", "slice", "contour", "intermediate-values"):
        assert f'id="chart-{name}"' in page, name
    for name in ("optimization-history", "slice", "intermediate-values"):
        assert _chart(client, f"/api/queue/{ids['search']}/chart/{name}")["figure"]["data"], name
    _chart(client, f"/api/queue/{ids['search']}/chart/param-importance")  # a figure, or why not


def test_the_report_downloads_as_an_attachment(client, built, copy):
    _, ids = built
    response = client.get(f"/queue/{ids['failing']}/report.html")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="aiqc-queue-{ids["failing"]}.html"'
    assert response.text.startswith("<!DOCTYPE html>") and "Best job" in response.text
    assert not any(p.suffix == ".html" for p in copy.parent.iterdir())  # written to a temporary folder
    waiting = client.get(f"/queue/{ids['waiting']}/report.html")
    assert waiting.status_code == 409 and f"no {JobState.COMPLETE} job" in waiting.text


def test_unknown_ids_and_paths_are_404(client, built):
    _, ids = built
    for url in ["/queue/999", "/job/999", "/queue/999/report.html", "/compare?queues=999",
                f"/compare?queues={ids['finished']},999", "/queue/abc", "/nowhere"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html") and 'id="error-message"' in response.text
    assert "Queue id=999 does not exist." in client.get("/queue/999").text
    for url in ["/api/queue/999", "/api/queue/999/jobs", "/api/queue/999/chart/performance",
                "/api/job/999/chart/learning-curve", f"/api/queue/{ids['finished']}/chart/nope",
                f"/api/job/{ids['job']}/chart/nope", "/api/compare?queues=999"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"], url
    assert client.get("/api/job/999/chart/learning-curve").json() == {"error": "Job id=999 does not exist."}
    assert client.post("/api/queues").status_code == 405  # nothing but GET


@pytest.mark.parametrize("query, message", [
    ("sort=nope", r"sort: expected one of \['job_id'"),
    ("sort=accuracy&order=up", r"order: expected one of \['asc', 'desc'\]; received 'up'"),
    ("state=DONE", r"state: expected one of \['QUEUED', 'RUNNING', 'COMPLETE', 'PRUNED', 'FAILED'\]; received 'DONE'"),
    ("split=holdout", r"split: expected one of \['train', 'validation', 'test'\]; received 'holdout'"),
    ("page=0", r"page: expected a whole number of at least 1; received '0'"),
    ("page=abc", r"page: expected a whole number of at least 1; received 'abc'"),
    ("page=-1", r"page: expected a whole number"),
    ("page=7", r"page: expected a page between 1 and 1 \(12 rows, 50 a page\); received 7"),
    ("per_page=0", r"per_page: expected a whole number between 1 and 500"),
    ("per_page=501", r"per_page: expected a whole number between 1 and 500; received '501'"),
    ("q=" + "x" * 201, r"q: expected at most 200 characters; received '201 characters'"),
])
def test_bad_query_values_are_400_with_a_message(client, built, query, message):
    _, ids = built
    response = client.get(f"/api/queue/{ids['finished']}/jobs?{query}")
    assert response.status_code == 400
    assert re.search(message, response.json()["error"]), response.json()


def test_bad_chart_and_compare_values_are_400(client, built):
    _, ids = built
    finished, failing, regression = ids["finished"], ids["failing"], ids["regression"]
    cases = {f"/api/queue/{finished}/chart/performance?metric=r2": "metric: expected one of",
             f"/api/queue/{finished}/chart/hyperparameters?split=holdout": "split: expected one of",
             f"/api/job/{ids['job']}/chart/roc-curve?split=all": "split: expected one of",
             "/api/compare?queues=1,x": "queues: expected queue ids separated by commas",
             "/api/compare": "queues: expected queue ids",
             f"/api/compare?queues={finished}&metric=nope": "metric: expected one of queue",
             f"/api/compare?queues={finished},{finished}": "each queue once",
             f"/api/compare?queues={finished},{regression}": "metric: expected a metric every queue measures",
             "/api/queues?tag=a,b": "tag: expected a tag"}
    for url, message in cases.items():
        response = client.get(url)
        assert response.status_code == 400, url
        assert message in response.json()["error"], (url, response.json())
    page = client.get(f"/compare?queues={failing},{regression}")
    assert page.status_code == 400 and "metric: expected a metric every queue measures" in page.text
    assert client.get(f"/job/{ids['job']}?split=nope").status_code == 400


def test_a_database_fault_is_a_503_that_says_what_happened(client, built, monkeypatch):
    import peewee

    from aiqc.ui import queries

    def locked(*args, **kwargs):
        raise peewee.OperationalError("database is locked")

    monkeypatch.setattr(queries, "queue_rows", locked)
    response = client.get("/api/queues")
    assert response.status_code == 503 and "stayed locked by another connection" in response.json()["error"]
    page = client.get("/")
    assert page.status_code == 503 and "stayed locked" in page.text and 'id="error-message"' in page.text


# --- the jobs table: paging, sorting and filters on the server ------------------------------------
def _all_rows(client, queue_id: int, **query) -> list[dict]:
    body = client.get(f"/api/queue/{queue_id}/jobs", params={"per_page": 500, **query}).json()
    assert body["pages"] == 1
    return body["rows"]


def _keys(rows) -> list[tuple]:
    return [(row["job_id"], row["split"]) for row in rows]


def test_pages_are_the_frame_cut_in_order(client, built):
    _, ids = built
    frame = aiqc.Queue.get_by_id(ids["finished"]).metrics_to_pandas()
    rows = _all_rows(client, ids["finished"])
    assert _keys(rows) == list(zip(frame["job_id"], frame["split"])) and len(rows) == 12
    assert rows[0]["accuracy"] == pytest.approx(frame["accuracy"][0]) and rows[0]["fold"] is None
    pages = [client.get(f"/api/queue/{ids['finished']}/jobs", params={"page": p, "per_page": 5}).json()
             for p in (1, 2, 3)]
    assert [(p["page"], p["pages"], p["total"], len(p["rows"])) for p in pages] == [(1, 3, 12, 5), (2, 3, 12, 5),
                                                                                     (3, 3, 12, 2)]
    assert [r for p in pages for r in p["rows"]] == rows
    assert pages[0]["columns"] == list(frame.columns) and "accuracy" in pages[0]["metrics"]
    assert pages[0]["hyperparameters"] == ["neuron_count", "batch_size", "epoch_count"]


@pytest.mark.parametrize("column", ["accuracy", "log_loss", "neuron_count", "seconds", "split", "job_id"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorting_matches_metrics_to_pandas(client, built, column, order):
    _, ids = built
    expected = aiqc.Queue.get_by_id(ids["finished"]).metrics_to_pandas(sort_by=column, ascending=order == "asc",
                                                                       states=[JobState.COMPLETE])
    rows = _all_rows(client, ids["finished"], sort=column, order=order, state=JobState.COMPLETE.value)
    assert _keys(rows) == list(zip(expected["job_id"], expected["split"]))
    first = client.get(f"/api/queue/{ids['finished']}/jobs", params={"sort": column, "order": order, "per_page": 3})
    assert _keys(first.json()["rows"]) == _keys(rows[:3])


def test_split_state_and_text_filters(client, built):
    _, ids = built
    validation = _all_rows(client, ids["finished"], split="validation")
    assert len(validation) == 4 and {r["split"] for r in validation} == {"validation"}
    thirteen = _all_rows(client, ids["finished"], q="NEURON_COUNT=8")
    assert len(thirteen) == 6 and {r["neuron_count"] for r in thirteen} == {8}
    assert _all_rows(client, ids["finished"], q="no such value") == []
    both = _all_rows(client, ids["finished"], q="neuron_count=8", split="test", sort="accuracy", order="desc")
    assert len(both) == 2 and both[0]["accuracy"] >= both[1]["accuracy"]
    failed = _all_rows(client, ids["failing"], state=JobState.FAILED.value)
    assert len(failed) == 1 and failed[0]["job_id"] == ids["failed_job"] and failed[0]["split"] is None
    assert failed[0]["accuracy"] is None and failed[0]["neuron_count"] == 13
    everything = _all_rows(client, ids["failing"])
    assert len(everything) == 4 and [r["state"] for r in everything].count(JobState.COMPLETE.value) == 3
    assert len(_all_rows(client, ids["failing"], state=JobState.COMPLETE.value)) == 3
    waiting = _all_rows(client, ids["waiting"])
    assert [r["job_id"] for r in waiting] == ids["waiting_jobs"]
    assert {r["state"] for r in waiting} == {JobState.QUEUED.value}
    assert _all_rows(client, ids["waiting"], split="train") == []


def test_the_table_is_built_once_per_queue_version(copy, built, monkeypatch):
    from aiqc.orm import Job
    from aiqc.ui import make_app, queries

    _, ids = built
    builds = []
    real = queries.build_frame
    monkeypatch.setattr(queries, "build_frame", lambda queue: builds.append(queue.id) or real(queue))
    with TestClient(make_app(copy, read_only=False)) as client:
        url = f"/api/queue/{ids['finished']}/jobs"
        version = client.get(url).json()["version"]
        for query in ({"page": 2, "per_page": 5}, {"sort": "f1", "order": "desc"}, {"q": "4", "split": "test"}):
            assert client.get(url, params=query).status_code == 200
        _chart(client, f"/api/queue/{ids['finished']}/chart/hyperparameters")  # its default split from the table
        assert builds == [ids["finished"]]
        Job.update(state=JobState.FAILED).where(Job.id == ids["job"]).execute()  # a new version of the queue
        again = client.get(url, params={"state": JobState.FAILED.value}).json()
        assert builds == [ids["finished"]] * 2 and again["version"] != version
        assert again["counts"][JobState.FAILED.value] == 1


# --- live progress -----------------------------------------------------------------------------
def test_the_polled_endpoints_follow_a_running_queue(client, built, copy):
    _, ids = built
    waiting, first = ids["waiting"], ids["waiting_jobs"][0]

    def row() -> dict:
        return next(q for q in client.get("/api/queues").json()["queues"] if q["queue_id"] == waiting)

    before, summary = row(), client.get(f"/api/queue/{waiting}").json()
    assert (before["done"], before["total"], before["counts"][JobState.QUEUED.value]) == (0, 2, 2)
    with sqlite3.connect(copy) as writer:  # a worker elsewhere, while the read-only app serves
        writer.execute("UPDATE job SET state = ?, finished_at = '2030-01-01 00:00:00' WHERE id = ?",
                       (JobState.FAILED.value, first))
    after = row()
    assert (after["done"], after["total"], after["counts"][JobState.FAILED.value]) == (1, 2, 1)
    moved = client.get(f"/api/queue/{waiting}").json()
    assert moved["version"] != summary["version"] and (moved["done"], moved["total"]) == (1, 2)
    assert [r["job_id"] for r in _all_rows(client, waiting, state=JobState.FAILED.value)] == [first]
    page = client.get("/").text
    assert f'data-queue-id="{waiting}"' in page and 'data-done="1" data-total="2"' in page


# --- escaping --------------------------------------------------------------------------------------
def test_names_tags_descriptions_and_errors_are_escaped_everywhere(client, built):
    _, ids = built
    pages = {url: client.get(url) for url in _every_url(ids)
             if not url.startswith(("/api/", "/static/")) and not url.endswith("report.html")}
    pages["404"] = client.get("/queue/999")
    for url, response in pages.items():
        html = response.text
        for raw in RAW:
            assert raw not in html, (url, raw)
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
        assert scripts and all(body == "" and re.fullmatch(r' src="/static/[a-z.]+\?v=[^"]+" defer', attributes)
                               for attributes, body in scripts), (url, scripts)  # no inline script, no data in one
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert ESCAPED_NAME in pages["/"].text and "&lt;b&gt;" in pages["/"].text
    queue_page = pages[f"/queue/{ids['failing']}"].text
    assert f"<h1>Queue {ids['failing']}: {ESCAPED_NAME}</h1>" in queue_page
    assert "says &lt;i&gt;hi&lt;/i&gt; &amp; goes" in queue_page and 'href="/?tag=%3Cb%3E"' in queue_page
    failed = pages[f"/job/{ids['failed_job']}"].text
    assert "RuntimeError: &lt;img src=x onerror=alert(1)&gt;" in failed and '<pre id="error">Traceback' in failed
    assert ESCAPED_NAME in pages[f"/compare?queues={ids['finished']},{ids['failing']}"].text
    report = client.get(f"/queue/{ids['failing']}/report.html").text
    assert NAME not in report and ERROR not in report
    listed = client.get("/api/queues")  # JSON carries the text as it is, for the script's textContent
    assert listed.headers["content-type"] == "application/json" and NAME in [q["name"] for q in
                                                                             listed.json()["queues"]]


def test_the_script_writes_text_never_html():
    source = (Path(aiqc.__file__).parent / "ui" / "static" / "ui.js").read_text()
    assert "innerHTML" not in source and "outerHTML" not in source and "insertAdjacentHTML" not in source
    assert "document.write" not in source and "eval(" not in source


# --- read-only --------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as reader:
        tables = [t for (t,) in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: reader.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def _refuse_unpickling(monkeypatch) -> None:
    """From now on, any unpickling fails the test (in this process, the app's threads included)."""
    import cloudpickle

    import aiqc.orm.base as base

    def refuse(*args, **kwargs):
        raise AssertionError("the dashboard unpickled something")

    for owner, name in ((pickle, "loads"), (pickle, "load"), (cloudpickle, "loads"), (base, "load_checked")):
        monkeypatch.setattr(owner, name, refuse)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling fails the test."""
    _refuse_unpickling(monkeypatch)


def test_browsing_every_page_leaves_the_file_as_it_was(copy, built, no_unpickling):
    from aiqc.exceptions import DatabaseReadOnlyError
    from aiqc.orm import database_proxy
    from aiqc.ui import make_app

    _, ids = built
    digest, rows = _sha256(copy), _table_rows(copy)
    assert rows["job"] > 10 and rows["metric"] > 100
    with TestClient(make_app(copy)) as client:
        for url in _every_url(ids):
            assert client.get(url).status_code == 200, url
        assert database_proxy.obj.read_only is True and aiqc.database.current_path() == copy.resolve()
        with pytest.raises(DatabaseReadOnlyError):
            with aiqc.database.translated():
                aiqc.Queue.get_by_id(ids["finished"]).describe(name="renamed")
    unbind_database()
    assert _sha256(copy) == digest and _table_rows(copy) == rows


# --- the app's settings ----------------------------------------------------------------------------
def test_a_local_app_answers_only_requests_for_this_machine(copy):
    from aiqc.ui import LOCAL_HOST_NAMES, make_app

    with TestClient(make_app(copy, allowed_hosts=LOCAL_HOST_NAMES), base_url="http://127.0.0.1:8050") as client:
        assert client.get("/").status_code == 200
        for host in ("localhost:8050", "[::1]:8050", "LOCALHOST"):
            assert client.get("/api/queues", headers={"host": host}).status_code == 200, host
        refused = client.get("/", headers={"host": "attacker.example:8050"})
        assert refused.status_code == 400 and "this machine only" in refused.text


def test_make_app_checks_its_arguments_and_names_the_extra(copy, tmp_path, monkeypatch):
    import importlib.util

    from aiqc.exceptions import MissingExtraError, ValidationError
    from aiqc.ui import make_app

    with pytest.raises(ValidationError, match=r"read_only: expected True or False; received 'yes'"):
        make_app(copy, read_only="yes")
    with pytest.raises(ValidationError, match=r"read_only=True needs an existing database file"):
        make_app(tmp_path / "missing.sqlite3")
    assert not (tmp_path / "missing.sqlite3").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "starlette" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'aiqc\[ui\]'"):
        make_app(copy)


def test_import_aiqc_imports_no_web_framework():
    code = ("import sys, aiqc, aiqc.cli, aiqc.ui, aiqc.ui.queries; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# --- the CLI ------------------------------------------------------------------------------------------
def test_the_cli_lists_ui(capsys):
    from aiqc import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    assert re.search(r"^\s+ui\s+a live, read-only dashboard", capsys.readouterr().out, flags=re.M)
    with pytest.raises(SystemExit):
        cli.main(["ui", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--host" in help_text and "--port" in help_text and "no authentication" in help_text


def test_cli_ui_serves_this_machine_by_default(copy, monkeypatch, capsys, caplog):
    import uvicorn

    from aiqc import cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    assert cli.main(["ui", "--db", str(copy), "--port", "8123"]) == 0
    (app, options), = calls
    assert options["host"] == "127.0.0.1" and options["port"] == 8123
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/" in out and str(copy.resolve()) in out and "read-only" in out
    assert not [r for r in caplog.records if "no authentication" in r.getMessage()]
    with TestClient(app, base_url="http://127.0.0.1:8123") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_cli_ui_on_another_host_warns_on_stderr(copy):
    code = ("import sys, uvicorn; uvicorn.run = lambda app, **o: print('served', o['host'], o['port']); "
            "from aiqc.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "--db", str(copy), "ui", "--host", "0.0.0.0", "--port", "8124"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "WARNING aiqc ui: --host 0.0.0.0 lets other machines reach the dashboard, which has no authentication" \
        in out.stderr
    assert "http://0.0.0.0:8124/" in out.stdout and "served 0.0.0.0 8124" in out.stdout


def test_cli_ui_refuses_a_bad_port_or_a_missing_database(tmp_path, capsys):
    from aiqc import cli

    assert cli.main(["ui", "--db", str(tmp_path / "none.sqlite3")]) == 2
    assert "read_only=True needs an existing database file" in capsys.readouterr().err
    assert cli.main(["ui", "--db", str(tmp_path / "none.sqlite3"), "--port", "70000"]) == 2
    assert "port: expected a port number between 1 and 65535; received 70000" in capsys.readouterr().err


def test_aiqc_ui_serves_over_http(copy, built):
    _, ids = built
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "aiqc.cli", "--db", str(copy), "ui", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert f"http://127.0.0.1:{port}/" in server.stdout.readline()
        deadline, body = time.monotonic() + 60, None
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queue/{ids['finished']}", timeout=10) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert body is not None and '"done": 4' in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/queue/{ids['finished']}", timeout=10) as response:
            assert 'id="jobs"' in response.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- PostgreSQL -------------------------------------------------------------------------------------
def _pg_fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Each aiqc table of the PostgreSQL database: (rows, md5 of its rows in a fixed order)."""
    import psycopg

    with psycopg.connect(url) as connection:
        tables = [t for (t,) in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
        return {t: connection.execute(
            f'SELECT COUNT(*), md5(COALESCE(string_agg(r::text, \'|\' ORDER BY r::text), \'\')) FROM "{t}" r'
        ).fetchone() for t in tables}


def test_the_dashboard_browses_a_postgresql_database_read_only(postgres_url, monkeypatch):
    """The same pages over PostgreSQL: every one answers, and every table's rows are as they were."""
    pytest.importorskip("torch")
    import fns
    from aiqc import datum
    from aiqc.exceptions import DatabaseReadOnlyError
    from aiqc.orm import Job, database_proxy
    from aiqc.ui import make_app
    from aiqc.ui.queries import JOB_CHARTS, QUEUE_CHARTS

    monkeypatch.delenv("AIQC_DB", raising=False)
    aiqc.setup(postgres_url)
    try:
        iris = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        queues = []
        for name in ("first", NAME):
            queue = aiqc.Experiment.make(
                library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                fn_train=fns.torch_train, hyperparameters={"neuron_count": [4, 8], "batch_size": [16],
                                                           "epoch_count": [2]},
                splitset_id=iris.id, seed=0, name=name, tags=["pg"])
            assert queue.run_jobs(progress=False).complete == 2
            queues.append(queue.id)
        job = Job.select(Job.id).where(Job.queue == queues[0]).order_by(Job.id).first().id
    finally:
        unbind_database()
    before = _pg_fingerprint(postgres_url)
    assert before["job"][0] == 4 and before["metric"][0] > 50
    urls = ["/", "/api/queues", "/api/queues?tag=pg", f"/compare?queues={queues[0]},{queues[1]}",
            f"/api/compare?queues={queues[0]},{queues[1]}", f"/api/compare/chart?queues={queues[0]},{queues[1]}",
            f"/job/{job}", *[f"/api/job/{job}/chart/{name}" for name in JOB_CHARTS]]
    for queue in queues:
        urls += [f"/queue/{queue}", f"/api/queue/{queue}", f"/queue/{queue}/report.html",
                 f"/api/queue/{queue}/jobs?sort=accuracy&order=desc&split=validation&state=COMPLETE&q=neuron",
                 *[f"/api/queue/{queue}/chart/{name}" for name in QUEUE_CHARTS]]
    _refuse_unpickling(monkeypatch)  # the queues ran (their functions unpickled); the dashboard unpickles nothing
    try:
        with TestClient(make_app(postgres_url)) as client:
            for url in urls:
                response = client.get(url)
                assert response.status_code == 200, (url, response.text[:300])
            rows = client.get(f"/api/queue/{queues[0]}/jobs?split=validation").json()["rows"]
            assert sorted(r["job_id"] for r in rows) == [job, job + 1]
            assert ESCAPED_NAME in client.get("/").text and NAME not in client.get(f"/queue/{queues[1]}").text
            assert database_proxy.obj.read_only is True
            with pytest.raises(DatabaseReadOnlyError):
                with aiqc.database.translated():
                    aiqc.Queue.get_by_id(queues[0]).describe(name="renamed")
    finally:
        unbind_database()
    assert _pg_fingerprint(postgres_url) == before
