"""Make ``docs/images/ui.png``, the README's picture of the dashboard (``aiqc ui``).

    python docs/_make_ui_screenshot.py [--out docs/images/ui.png] [--height 1500]

Builds a demo database in a temporary folder (the iris grid of ``python -m aiqc.demo``, 2 x 2
combinations x 2 repeats, trained for a few epochs), starts ``aiqc ui`` over it on a free port,
opens the queue page in headless Chromium (selenium with Debian's ``chromium`` and
``chromium-driver``), waits until its jobs table and every chart are drawn, and saves a
1280-pixel-wide screenshot. Needs ``aiqc[pytorch,ui]`` and selenium; nothing goes online.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDTH = 1280
logger = logging.getLogger("make_ui_screenshot")


def build(path: Path) -> int:
    """The demo's data and grid, a few epochs, in the database ``path``; the queue's id."""
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import aiqc
    from aiqc import datum, demo

    aiqc.setup(path)
    splitset = aiqc.Pipeline.Tabular.make(
        df_or_path=datum.to_pandas("iris.tsv"), label_column="species",
        label_encoder=dict(sklearn_preprocess=OneHotEncoder()), feature_cols_excluded="species",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.22, size_validation=0.12, fold_count=None, bin_count=None, random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=demo.fn_build, fn_train=demo.fn_train,
        repeat_count=2, hyperparameters={"neuron_count": [12, 24], "batch_size": [8], "epoch_count": [8, 16]},
        splitset_id=splitset.id, seed=0, name="iris demo", tags=["demo", "iris"],
        description="the grid of python -m aiqc.demo, a few epochs")
    queue.run_jobs(progress=False)
    from aiqc.orm import database_proxy

    database_proxy.obj.close()  # the server opens the file on its own, read-only
    return queue.id


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"aiqc ui did not answer at {url}") from None
            time.sleep(0.2)


def shoot(base: str, queue_id: int, out: Path, height: int) -> None:
    """Open the queue page (its validation rows, best first), wait for its charts, save the screenshot."""
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager stays offline: the paths are given
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},{height}",
                 "--hide-scrollbars", "--no-first-run", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
        driver.get(f"{base}/queue/{queue_id}?sort=accuracy&order=desc&split=validation")

        def ready(d) -> bool:
            charts = d.find_elements(By.CSS_SELECTOR, "div.chart")
            return (bool(d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job-id]"))
                    and all(c.get_attribute("data-loaded") in ("figure", "note", "error") for c in charts))

        WebDriverWait(driver, 60, poll_frequency=0.2).until(ready, message="the queue page's table and charts")
        time.sleep(0.5)  # plotly's last relayout
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"could not save {out}")
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    """Build the demo database, serve it, save the screenshot; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images" / "ui.png")
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="aiqc-ui-shot-") as folder:
        path = Path(folder) / "demo.sqlite3"
        queue_id = build(path)
        port = _free_port()
        script = shutil.which("aiqc", path=str(Path(sys.executable).parent))
        command = [script] if script else [sys.executable, "-m", "aiqc.cli"]
        env = {k: v for k, v in os.environ.items() if k != "AIQC_DB"}
        server = subprocess.Popen([*command, "ui", "--db", str(path), "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(f"{base}/api/queues", server)
            shoot(base, queue_id, args.out, args.height)
        finally:
            server.terminate()
            server.wait(timeout=30)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
