"""``aiqc ui`` in a real browser: headless Chromium driven by selenium against the dashboard
served by ``aiqc ui`` in a subprocess, while another process runs a queue.

The queues page shows the progress moving, then the finished counts; a click into the queue
and then into a job draws its learning curve (SVG, a screenshot that is not blank); a queue
named ``<script>alert(1)</script>`` shows as that text and opens no alert; browsing every page
(sorting, filtering, paging, a job, a comparison) leaves the database file's hash and every
table's rows as they were. Skipped where selenium, chromium or chromedriver is missing
(``.ci/run`` installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

import aiqc  # noqa: E402
from aiqc.states import JobState  # noqa: E402

from fns import unbind_database  # noqa: E402
from pgserver import free_port  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCRIPT = shutil.which("aiqc", path=str(Path(sys.executable).parent))
TESTS = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.slow,  # a server, a worker process and a browser: CI runs them
    pytest.mark.backends,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="headless Chromium and chromedriver are not installed (.ci/run installs them)"),
]

NAME = "<script>alert(1)</script>"
#: the watched queue: 3 combinations x 2 repeats, each job sleeping SLEEP s, so a 2 s poll sees it move
JOBS, SLEEP = 6, 0.8
#: the jobs of the queue whose own page is watched while it runs (the last test)
LATER = 2
WAIT = 45  # the longest any one wait below may take, in seconds
COMPLETE = JobState.COMPLETE.value


def _fingerprint(path: Path) -> tuple[str, dict[str, int]]:
    """(sha256 of the database file and of its write-ahead log, rows per table): a reader
    never writes either file (the -shm file holds readers' marks, so it is left out)."""
    digest = hashlib.sha256(path.read_bytes())
    wal = Path(f"{path}-wal")
    if wal.exists():
        digest.update(wal.read_bytes())
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as reader:
        tables = [t for (t,) in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: reader.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    reader.close()
    return digest.hexdigest(), rows


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """The database file and the ids of its three queues, not run yet: ``watched`` (JOBS jobs of
    SLEEP s each), ``named`` (one job, named NAME) and ``later`` (LATER jobs of SLEEP s each)."""
    pytest.importorskip("torch")
    import fns
    from aiqc import datum

    path = tmp_path_factory.mktemp("ui_browser") / "aiqc.sqlite3"
    aiqc.setup(path)
    try:
        iris = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        watched = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, splitset_id=iris.id, repeat_count=2, seed=0, name="watched", tags=["live"],
            hyperparameters={"neuron_count": [4, 8, 12], "batch_size": [16], "epoch_count": [3], "sleep": [SLEEP]})
        named = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, splitset_id=iris.id, seed=0,
            hyperparameters={"neuron_count": [4], "batch_size": [16], "epoch_count": [2]})
        named.describe(name=NAME)
        later = aiqc.Experiment.make(  # run by the last test, with its page open
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, splitset_id=iris.id, seed=0, name="later",
            hyperparameters={"neuron_count": [4, 8], "batch_size": [16], "epoch_count": [3], "sleep": [SLEEP]})
        assert len(watched.jobs) == JOBS and len(later.jobs) == LATER
        ids = {"watched": watched.id, "named": named.id, "later": later.id}
    finally:
        unbind_database()
    return path, ids


@pytest.fixture(scope="module")
def server(database):
    """``aiqc ui --db PATH --port FREE`` in a subprocess; its base URL once it answers."""
    path, _ = database
    port = free_port()
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "aiqc.cli"]
    log = path.parent / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "AIQC_DB"}
    with open(log, "w") as out:
        process = subprocess.Popen([*command, "ui", "--db", str(path), "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/queues", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, f"aiqc ui exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"aiqc ui did not answer in {WAIT} s: {log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium through chromedriver (named, so Selenium Manager never goes online)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    patch = pytest.MonkeyPatch()
    patch.setenv("SE_AVOID_STATS", "true")  # Selenium Manager sends no usage statistics (there is no network)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    try:
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            browser.set_page_load_timeout(WAIT)
            yield browser
        finally:
            browser.quit()
    finally:
        patch.undo()


def _wait(driver, condition, what: str, timeout: float = WAIT):
    """``condition(driver)`` once it is truthy; an element the page's script replaced between
    finding and reading it (stale) is looked for again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda d: condition(d), message=f"waited {timeout} s for {what}")


def _click(driver, selector: str, what: str) -> str:
    """Click the first element ``selector`` matches (found again if the script redrew it); its text."""
    def clicked(d):
        element = _one(d, selector)
        text = element.text
        element.click()
        return text or True

    return _wait(driver, clicked, what)


def _one(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _all(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _path(driver) -> str:
    """The path of the page open (the queue page's script adds its table's state as a query)."""
    return urllib.parse.urlsplit(driver.current_url).path


def _polled(driver) -> int:
    return int(_one(driver, "#queues").get_attribute("data-polled") or 0)


def _progress(driver, queue_id: int) -> tuple[int, int]:
    bar = _one(driver, f'tr[data-queue-id="{queue_id}"] progress')
    return int(bar.get_attribute("data-done")), int(bar.get_attribute("data-total"))


def _charts_settled(driver) -> bool:
    return all(c.get_attribute("data-loaded") in ("figure", "note", "error") for c in _all(driver, "div.chart"))


def _table_loaded(driver) -> bool:
    table = _one(driver, "#jobs")
    return table.get_attribute("data-loading") is None and table.get_attribute("data-page") is not None


def _worker_log(path: Path, queue_ids: tuple[int, ...]) -> Path:
    return path.parent / f"worker-{'-'.join(map(str, queue_ids))}.log"


def _run_queues(path: Path, *queue_ids: int) -> subprocess.Popen:
    """A process running the queues ``queue_ids``, one after another, in the database ``path``
    (its output in :func:`_worker_log`)."""
    run = (f"import aiqc; aiqc.setup({str(path)!r}); "
           f"[aiqc.Queue.get_by_id(n).run_jobs(progress=False) for n in {queue_ids!r}]")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    env.pop("AIQC_DB", None)
    with open(_worker_log(path, queue_ids), "w") as out:
        return subprocess.Popen([sys.executable, "-c", run], stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def watched(database, server, driver):
    """The queues page open while another process runs the queues: the watched queue's
    (done, total) read after each poll until it finished; then the finished page's
    (done, total) and COMPLETE count, and the database's fingerprint once the worker exited."""
    path, ids = database
    queue_id = ids["watched"]
    driver.get(f"{server}/")
    _one(driver, f'tr[data-queue-id="{queue_id}"]')
    worker = _run_queues(path, queue_id, ids["named"])
    log = _worker_log(path, (queue_id, ids["named"]))
    seen = [_progress(driver, queue_id)]
    try:
        deadline = time.monotonic() + 2 * WAIT
        while seen[-1][0] < seen[-1][1]:
            assert time.monotonic() < deadline, f"the queue did not finish: seen {seen}; worker: {log.read_text()}"
            assert worker.poll() in (None, 0), f"the worker failed: {log.read_text()}"
            polls = _polled(driver)
            _wait(driver, lambda d: _polled(d) > polls, "the next poll of the queues page")
            seen.append(_progress(driver, queue_id))
        assert worker.wait(timeout=2 * WAIT) == 0, log.read_text()  # the writer is gone before the fingerprint
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=20)
    polls = _polled(driver)
    _wait(driver, lambda d: _polled(d) > polls, "a poll after the worker exited")
    row = f'tr[data-queue-id="{queue_id}"]'
    finished = {"progress": _progress(driver, queue_id),
                "complete": int(_one(driver, f'{row} td[data-state="{COMPLETE}"]').text)}
    return {"seen": seen, "finished": finished, "fingerprint": _fingerprint(path)}


def test_the_queues_page_shows_the_progress_moving_then_the_finished_counts(watched):
    seen = watched["seen"]
    assert {total for _, total in seen} == {JOBS}, seen
    moving = {done for done, total in seen if done < total}
    assert len(moving) >= 2, seen  # at least two different counts while it ran: the bar moved
    assert [done for done, _ in seen] == sorted(done for done, _ in seen), seen
    assert watched["finished"] == {"progress": (JOBS, JOBS), "complete": JOBS}


def test_a_click_into_the_queue_then_a_job_draws_its_learning_curve(database, server, driver, watched, tmp_path):
    from PIL import Image

    _, ids = database
    driver.get(f"{server}/")
    _one(driver, f'tr[data-queue-id="{ids["watched"]}"] a[href="/queue/{ids["watched"]}"]').click()
    _wait(driver, lambda d: _path(d) == f"/queue/{ids['watched']}", "the queue page")
    _wait(driver, lambda d: _all(d, "#jobs tr[data-job-id]"), "the jobs table")
    assert _one(driver, "#queue-progress").get_attribute("data-done") == str(JOBS)
    job_id = _click(driver, "#jobs tr[data-job-id] a", "a job's link")
    _wait(driver, lambda d: _path(d) == f"/job/{job_id}", "the job page")
    assert _one(driver, "#job").get_attribute("data-job-id") == job_id
    assert _one(driver, "#job-state").text == COMPLETE
    chart = _wait(driver, lambda d: (_one(d, "#chart-learning-curve").get_attribute("data-loaded") == "figure"
                                     and _one(d, "#chart-learning-curve")), "the learning curve")
    assert _all(driver, "#chart-learning-curve svg.main-svg")
    lines = [p.get_attribute("d") for p in _all(driver, "#chart-learning-curve .scatterlayer path.js-line")]
    assert lines and all(d and d.count("L") >= 2 for d in lines), lines  # a line through the 3 epochs
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", chart)
    shot = tmp_path / "job.png"
    assert driver.save_screenshot(str(shot))
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    assert image.size[0] >= 1000
    assert max(histogram) / sum(histogram) < 0.97  # not blank: far from one single colour
    assert sum(histogram[:128]) / sum(histogram) > 0.001  # text, axes and lines are drawn


def test_a_queue_named_with_markup_shows_the_markup_as_text(database, server, driver, watched):
    from selenium.common.exceptions import NoAlertPresentException

    _, ids = database
    driver.get(f"{server}/")
    row = f'tr[data-queue-id="{ids["named"]}"]'
    _wait(driver, lambda d: _polled(d) >= 1, "a poll of the queues page")  # the script rewrote the names
    assert _one(driver, f"{row} td.name").text == NAME
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert
    _one(driver, f'{row} a[href="/queue/{ids["named"]}"]').click()
    _wait(driver, lambda d: _path(d) == f"/queue/{ids['named']}", "the named queue's page")
    assert _one(driver, "h1").text == f"Queue {ids['named']}: {NAME}"
    assert NAME in driver.title
    _wait(driver, _charts_settled, "the named queue's charts")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert


def test_browsing_every_page_leaves_the_database_as_it_was(database, server, driver, watched):
    from selenium.webdriver.support.ui import Select

    path, ids = database
    queue_id = ids["watched"]
    driver.get(f"{server}/")
    _wait(driver, lambda d: _polled(d) >= 1, "a poll of the queues page")

    driver.get(f"{server}/queue/{queue_id}?per_page=5")  # a few rows a page, so there is a next one
    _wait(driver, _table_loaded, "the jobs table")
    total = _wait(driver, lambda d: int(_one(d, "#jobs").get_attribute("data-total")), "the table's row count")
    assert total >= JOBS
    _wait(driver, lambda d: _one(d, "#per-page").get_attribute("value") == "5", "5 rows a page in the menu")
    _click(driver, 'th[data-column="accuracy"]', "the accuracy column's header")
    _wait(driver, lambda d: "sorted-asc" in (_one(d, 'th[data-column="accuracy"]').get_attribute("class") or "")
          and _table_loaded(d), "the table sorted by accuracy")
    Select(_one(driver, "#state-filter")).select_by_value(COMPLETE)
    _wait(driver, lambda d: "state=" in d.current_url and _table_loaded(d), "the state filter")
    assert _wait(driver, lambda d: int(_one(d, "#jobs").get_attribute("data-total")), "the row count") == total
    _click(driver, "#next", "the next page button")
    _wait(driver, lambda d: _one(d, "#jobs").get_attribute("data-page") == "2" and _table_loaded(d), "page 2")
    assert "page 2 of" in _one(driver, "#page-info").text and not _one(driver, "#jobs-error").text
    _wait(driver, _charts_settled, "the queue's charts")
    assert {c.get_attribute("data-chart"): c.get_attribute("data-loaded") for c in _all(driver, "div.chart")}[
        "performance"] == "figure"
    assert "error" not in {c.get_attribute("data-loaded") for c in _all(driver, "div.chart")}

    _click(driver, "#jobs tr[data-job-id] a", "a job's link")
    _wait(driver, lambda d: _path(d).startswith("/job/") and _charts_settled(d), "a job page and its charts")
    assert "error" not in {c.get_attribute("data-loaded") for c in _all(driver, "div.chart")}

    driver.get(f"{server}/")
    for box in _all(driver, "input[name=queues]"):
        box.click()
    _one(driver, "#compare-button").click()
    _wait(driver, lambda d: _path(d) == "/compare" and _all(d, "#compare tr[data-queue-id]")
          and _charts_settled(d), "the compare page")
    assert len(_all(driver, "#compare tr[data-queue-id]")) == len(ids)  # every queue ticked
    assert _one(driver, "#chart-compare").get_attribute("data-loaded") == "figure"

    assert _fingerprint(path) == watched["fingerprint"]
    assert watched["fingerprint"][1]["job"] == JOBS + 1 + LATER and watched["fingerprint"][1]["metric"] > 0


def test_a_queue_page_follows_its_queue_live_best_job_table_and_charts(database, server, driver, watched):
    """Runs after the read-only test: it runs a queue. Its page, open before the first job ends,
    shows the best job, the table's rows and the performance chart appear without a reload."""
    path, ids = database
    queue_id = ids["later"]
    driver.get(f"{server}/queue/{queue_id}?state={COMPLETE}&split=validation")  # a row per COMPLETE job
    _wait(driver, lambda d: _table_loaded(d) and _charts_settled(d), "the queue page")
    assert _one(driver, "#best").text == "none yet" and _one(driver, "#jobs").get_attribute("data-total") == "0"
    assert _one(driver, "#chart-performance").get_attribute("data-loaded") == "note"  # no COMPLETE job yet
    driver.execute_script("window.aiqcPage = 1;")  # gone if the page reloads
    worker = _run_queues(path, queue_id)
    try:
        assert worker.wait(timeout=2 * WAIT) == 0, _worker_log(path, (queue_id,)).read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=20)
    _wait(driver, lambda d: _one(d, "#queue-progress").get_attribute("data-done") == str(LATER), "the progress bar")
    _wait(driver, lambda d: _all(d, "#best a#best-job"), "the best job")
    best = _one(driver, "#best-job").text
    assert best.isdigit() and _one(driver, "#best").get_attribute("data-job-id") == best
    _wait(driver, lambda d: _one(d, "#jobs").get_attribute("data-total") == str(LATER) and _table_loaded(d),
          "the COMPLETE jobs in the table")
    chart = "#chart-performance"
    _wait(driver, lambda d: _one(d, chart).get_attribute("data-loaded") == "figure", "the performance chart redrawn")
    assert _all(driver, f"{chart} svg.main-svg") and len(_all(driver, f"{chart} .scatterlayer .trace")) >= 1
    assert driver.execute_script("return window.aiqcPage;") == 1  # no reload: the page's script did it
