"""Opening a database someone else wrote: reading results never unpickles; a stored pickle
whose sha256 no longer matches is refused; pickles stored before digests still load."""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import aiqc
from aiqc.exceptions import ChartNotApplicableError, DataWarning, IntegrityError
from aiqc.orm.base import DIGEST_PREFIX, with_digest

from fns import unbind_database

pytestmark = pytest.mark.backends

SCRIPT = shutil.which("aiqc", path=str(Path(sys.executable).parent)) or shutil.which("aiqc")
READ_COMMANDS = (["list"], ["show", "queue", "1"], ["show", "job", "1"], ["best", "1"], ["report", "1", "r.html"])
#: (table, column) of every pickled blob
PICKLED = (("encoder", "fitted"), ("experiment", "functions"), ("experiment", "metric_functions"))


def wrong_share(y_true, y_pred, y_prob):
    """A custom metric, so that ``experiment.metric_functions`` holds a pickle too."""
    return float((y_true != y_pred).mean())


class Planted:
    """Unpickling it writes the marker file: proof that a stored pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A database file holding one finished PyTorch queue (reference splitset, custom metric), made once."""
    pytest.importorskip("torch")
    import fns
    from aiqc import datum

    path = tmp_path_factory.mktemp("trained") / "aiqc.sqlite3"
    aiqc.setup(path)
    try:
        splitset = fns.reference_make(datum.to_pandas("iris.tsv"))
        queue = aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
            fn_train=fns.torch_train, hyperparameters={"neuron_count": [4, 6], "batch_size": [16], "epoch_count": [2]},
            splitset_id=splitset.id, seed=0, metrics={"wrong_share": (wrong_share, "minimize")},
        )
        assert queue.run_jobs(progress=False).complete == 2
    finally:
        unbind_database()
    return path


@pytest.fixture
def copy(trained, tmp_path):
    """A fresh copy of the trained database in tmp_path (unbound afterwards)."""
    path = tmp_path / "copy.sqlite3"
    shutil.copy(trained, path)
    yield path
    unbind_database()


def _blobs(path: Path, table: str, column: str) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as connection:
        return [(i, bytes(b)) for i, b in connection.execute(f"SELECT id, {column} FROM {table}") if b is not None]


def _write(path: Path, table: str, column: str, rows: list[tuple[int, bytes]]) -> None:
    with sqlite3.connect(path) as connection:
        connection.executemany(f"UPDATE {table} SET {column} = ? WHERE id = ?", [(b, i) for i, b in rows])


def _plant(path: Path, marker: Path, digest: bool = True) -> None:
    """Replace every pickled blob with one that writes ``marker`` when unpickled (with a valid
    digest: a crafted database can write one)."""
    payload = pickle.dumps(Planted(marker))
    for table, column in PICKLED:
        _write(path, table, column, [(i, with_digest(payload) if digest else payload)
                                     for i, _ in _blobs(path, table, column)])


@pytest.fixture
def cli(tmp_path):
    """Run the real `aiqc` console script in tmp_path; returns (exit code, stdout, stderr)."""
    if SCRIPT is None:
        pytest.skip("the aiqc console script is not installed")

    def run(database: Path, *args: str):
        env = {**os.environ, "AIQC_DB": str(database)}
        out = subprocess.run([SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        return out.returncode, out.stdout, out.stderr

    return run


# --- reading results unpickles nothing ---------------------------------------------------------------
def test_reading_commands_never_run_a_planted_pickle(copy, cli, tmp_path):
    marker = tmp_path / "marker"
    _plant(copy, marker)
    for args in READ_COMMANDS:
        code, out, err = cli(copy, *args)
        assert code == 0, (args, err)
        assert not marker.exists(), f"aiqc {' '.join(args)} unpickled a stored blob"
    assert "Confusion matrices" in (tmp_path / "r.html").read_text()
    aiqc.setup(copy)  # the plant is live: a trusting call runs it
    aiqc.Queue.get_by_id(1).experiment.load_functions()
    assert marker.read_text() == "ran"


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling fails the test (in this process)."""
    import cloudpickle

    import aiqc.orm.base as base

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled on a read-only path")

    for owner, name in ((pickle, "loads"), (pickle, "load"), (cloudpickle, "loads"), (base, "load_checked")):
        monkeypatch.setattr(owner, name, refuse)


def test_results_calls_and_every_chart_unpickle_nothing(copy, tmp_path, no_unpickling):
    from aiqc import cli, plots

    for args in [*READ_COMMANDS[:-1], ["report", "1", str(tmp_path / "r.html")]]:
        assert cli.main(["--db", str(copy), *args]) == 0, args
    aiqc.setup(copy)
    queue = aiqc.Queue.get_by_id(1)
    assert len(aiqc.list_queues()) == 1 and not queue.metrics_to_pandas().empty
    queue.metrics_aggregate()
    queue.best_params()
    job = queue.best_job()
    job.history_to_pandas()
    assert queue.experiment.splitset.class_names() == ["setosa", "versicolor", "virginica"]
    charts = [lambda: plots.plot_confusion_matrix(job), lambda: plots.plot_learning_curve(job),
              lambda: plots.plot_performance(queue), lambda: plots.plot_hyperparameters(queue),
              lambda: plots.plot_repeat_spread(queue)]
    charts += [lambda split=s: draw(job, split) for s in job.metrics()
               for draw in (plots.plot_roc_curve, plots.plot_precision_recall)]
    for draw in charts:
        try:
            draw()
        except ChartNotApplicableError:
            pass
    queue.report(tmp_path / "again.html")


def test_chart_truth_without_the_encoder_matches_the_encoded_label(copy):
    from aiqc.plots import _data

    aiqc.setup(copy)
    job = aiqc.Queue.get_by_id(1).best_job()
    encoded = job.queue.experiment.splitset.label_to_numpy("test", encoded=True)  # unpickles: the reference
    truth, _, _ = _data._truth(job, "test")
    assert truth.tolist() == encoded.argmax(axis=1).tolist()


# --- a stored pickle that no longer matches its digest is refused --------------------------------------
def _flip(blob: bytes) -> bytes:
    at = len(blob) - 5  # inside the payload
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]


def test_a_flipped_byte_is_refused(copy):
    from aiqc import datum

    _write(copy, "experiment", "functions", [(i, _flip(b)) for i, b in _blobs(copy, "experiment", "functions")])
    aiqc.setup(copy)
    experiment = aiqc.Experiment.get_by_id(1)
    with pytest.raises(IntegrityError, match=r"^experiment 1 field 'functions': .*corrupt or tampered"):
        experiment.load_functions()
    with pytest.raises(IntegrityError):
        aiqc.Job.get_by_id(1).predict(datum.to_pandas("iris.tsv").head(3))
    assert experiment.load_metric_functions()["wrong_share"] is not None  # its own digest still matches
    unbind_database()
    _write(copy, "encoder", "fitted", [(i, _flip(b)) for i, b in _blobs(copy, "encoder", "fitted")])
    aiqc.setup(copy)
    with pytest.raises(IntegrityError, match=r"^encoder \d+ field 'fitted': "):
        aiqc.Job.get_by_id(1).predict(datum.to_pandas("iris.tsv").head(3))


def test_a_replaced_payload_under_the_old_digest_does_not_run(copy, tmp_path):
    from aiqc import datum

    marker = tmp_path / "marker"
    payload = pickle.dumps(Planted(marker))
    for table, column in PICKLED:
        _write(copy, table, column, [(i, b[:b.index(b"\n") + 1] + payload) for i, b in _blobs(copy, table, column)])
    aiqc.setup(copy)
    with pytest.raises(IntegrityError):
        aiqc.Job.get_by_id(1).predict(datum.to_pandas("iris.tsv").head(3))
    with pytest.raises(IntegrityError):
        aiqc.Experiment.get_by_id(1).load_metric_functions()
    _write(copy, "experiment", "functions", [(1, b"aiqc-sha257:" + payload)])
    with pytest.raises(IntegrityError):  # a damaged header is no bare (legacy) pickle either
        aiqc.Experiment.get_by_id(1).load_functions()
    assert not marker.exists()


def test_every_pickle_is_stored_with_its_digest(trained):
    for table, column in PICKLED:
        blobs = _blobs(trained, table, column)
        assert blobs and all(b.startswith(DIGEST_PREFIX) for _, b in blobs), (table, column)
    with sqlite3.connect(trained) as connection:
        rows = connection.execute("SELECT side, categories FROM encoder").fetchall()
    assert ("label", '["setosa", "versicolor", "virginica"]') in rows


# --- files written before digests and recorded class names -------------------------------------------
def test_legacy_blobs_and_a_missing_categories_column_still_load(copy):
    from aiqc import datum

    for table, column in PICKLED:
        _write(copy, table, column, [(i, b[b.index(b"\n") + 1:]) for i, b in _blobs(copy, table, column)])
    with sqlite3.connect(copy) as connection:
        connection.execute("ALTER TABLE encoder DROP COLUMN categories")
    aiqc.setup(copy)  # adds the column back, empty
    job = aiqc.Job.get_by_id(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # a OneHotEncoder sorts: the sorted classes are exact
        assert job.queue.experiment.splitset.class_names() == ["setosa", "versicolor", "virginica"]
        frame = job.predict(datum.to_pandas("iris.tsv").head(3))
    assert set(frame["prediction"]) <= {"setosa", "versicolor", "virginica"}
    assert set(job.queue.experiment.load_functions()) >= {"fn_build", "fn_train"}
    assert "wrong_share" in job.queue.experiment.load_metric_functions()
