"""The `aiqc` console script, run for real in subprocesses, and YAML specs."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import aiqc
from aiqc.exceptions import ValidationError

pytestmark = pytest.mark.backends

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = shutil.which("aiqc", path=str(Path(sys.executable).parent)) or shutil.which("aiqc")
FAST = ["experiment.hyperparameters.epoch_count=[2]"]


@pytest.fixture(scope="module")
def populated_db(tmp_path_factory):
    """A database holding one finished `aiqc run`, made once and copied by the tests that need one."""
    if SCRIPT is None:
        pytest.skip("the aiqc console script is not installed")
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("populated")
    env = {**os.environ, "AIQC_DB": str(folder / "cli.sqlite3")}
    subprocess.run([SCRIPT, "run", str(EXAMPLES / "iris.yaml"), *FAST, "--output-dir", "first"], cwd=folder, env=env,
                   check=True, capture_output=True, timeout=300)
    return folder / "cli.sqlite3"


@pytest.fixture
def cli(tmp_path):
    """Run `aiqc --db tmp.sqlite3 ARGS...` in tmp_path; returns (exit code, stdout, stderr)."""
    if SCRIPT is None:
        pytest.skip("the aiqc console script is not installed")
    pytest.importorskip("torch")
    pytest.importorskip("omegaconf")
    database = tmp_path / "cli.sqlite3"

    def run(*args: str, check_db: bool = True):
        env = {**os.environ, "AIQC_DB": str(database)}
        out = subprocess.run([SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        return out.returncode, out.stdout, out.stderr

    run.database = database
    run.tmp = tmp_path
    return run


def _counts(database: Path) -> dict[str, int]:
    if not database.exists():
        return {}
    with sqlite3.connect(database) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: connection.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_run_with_an_override_writes_the_queue_and_the_output_directory(cli):
    code, out, err = cli("run", str(EXAMPLES / "iris.yaml"), *FAST, "experiment.repeat_count=2",
                         "--output-dir", "out")
    assert code == 0, err
    assert "queue 1: 4 complete, 0 pruned, 0 failed" in out
    output = cli.tmp / "out"
    assert sorted(p.name for p in output.iterdir()) == ["config.yaml", "metrics.csv", "report.html", "run.log"]
    resolved = yaml.safe_load((output / "config.yaml").read_text())
    expected = yaml.safe_load((EXAMPLES / "iris.yaml").read_text())
    expected["experiment"]["hyperparameters"]["epoch_count"] = [2]
    expected["experiment"]["repeat_count"] = 2
    assert resolved == expected  # the file plus the overrides, nothing else
    aiqc.setup(cli.database)
    queue = aiqc.Queue.get_by_id(1)
    assert queue.job_count == 4 and queue.output_dir == str(output)
    assert queue.experiment.repeat_count == 2
    assert len((output / "metrics.csv").read_text().splitlines()) == 1 + 4 * 3
    assert "queue 1" in (output / "run.log").read_text()


def test_multirun_sweep_becomes_one_queue(cli):
    code, out, err = cli("run", str(EXAMPLES / "iris.yaml"), "-m", "experiment.hyperparameters.batch_size=4,16",
                         *FAST, "--output-dir", "sweep")
    assert code == 0, err
    aiqc.setup(cli.database)
    queue = aiqc.Queue.get_by_id(1)
    combinations = sorted((h.hyperparameters["neuron_count"], h.hyperparameters["batch_size"])
                          for h in queue.experiment.hyperparamsets)
    assert combinations == [(12, 4), (12, 16), (24, 4), (24, 16)]
    assert aiqc.list_queues().shape[0] == 1


@pytest.mark.parametrize("args, message", [
    (["data.size_tset=0.3"], "expected an existing key; 'data.size_tset' is not in the config"),
    (["+data.size_tset=0.3"], "data.size_tset: expected a key among"),
    (["experiment.fn_build=models:nope"], "experiment.fn_build: expected a function 'nope' in module 'models'"),
    (["experiment.fn_train=no_such_module:fn"], "experiment.fn_train: expected an importable module 'no_such_module'"),
    (["data.size_test=1.5"], "data.size_test: expected a fraction between 0 and 1"),
    (["experiment.library=sklearn"], "experiment.library: expected one of 'keras', 'pytorch'"),
    (["~data.label_column"], "data.label_column: expected the name of one column"),
    (["-m", "data.size_test=0.2,0.3"], "a sweep (-m) can only vary experiment.hyperparameters"),
    (["experiment.hyperparameters.neuron_count={int: [5, 1]}"], "experiment.hyperparameters.neuron_count: Int: expected low < high"),
])
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(cli, populated_db, args, message):
    shutil.copy(populated_db, cli.database)
    before = _counts(cli.database)
    assert before["job"] == 2
    code, out, err = cli("run", str(EXAMPLES / "iris.yaml"), *args)
    assert code == 2
    assert message in err and err.startswith("aiqc: error: ") and "Traceback" not in err
    assert _counts(cli.database) == before


def test_missing_config_file(cli):
    code, _, err = cli("run", "nope.yaml")
    assert code == 2 and "config: expected an existing YAML file; received 'nope.yaml'" in err
    assert _counts(cli.database) in ({}, {t: 0 for t in _counts(cli.database)} | {"schema_info": 1})


def test_run_help_lists_the_config_keys(cli):
    code, out, _ = cli("run", str(EXAMPLES / "iris.yaml"), "--help", "experiment.repeat_count=3")
    assert code == 0
    assert "data.label_column = 'species'" in out and "experiment.repeat_count = 3" in out
    assert "experiment.hyperparameters.neuron_count = [12, 24]" in out


def test_inspection_commands(cli, populated_db):
    shutil.copy(populated_db, cli.database)
    code, out, _ = cli("list")
    assert code == 0 and "classification_multi" in out and "complete" in out
    code, out, _ = cli("show", "queue", "1")
    assert code == 0 and "output " in out and "accuracy" in out and "first" in out
    code, out, _ = cli("show", "job", "1")
    assert code == 0 and "COMPLETE" in out and "validation accuracy=" in out
    code, out, _ = cli("best", "1", "--metric", "f1")
    assert code == 0 and out.startswith("job ")
    code, out, _ = cli("report", "1", "r.html")
    assert code == 0 and (cli.tmp / "r.html").stat().st_size > 100_000
    code, out, _ = cli("db", "path")
    assert code == 0 and out.strip() == str(cli.database.resolve())
    code, _, err = cli("show", "job", "99")
    assert code == 2 and "Job id=99 does not exist" in err


def test_notebook_queue_exported_to_yaml_runs_the_same_jobs(cli, db):
    import fns
    from fns import reference_make

    splitset = reference_make(aiqc.datum.to_pandas("iris.tsv"), random_state=11)
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, repeat_count=2, splitset_id=splitset.id,
                                 hyperparameters={"neuron_count": [4, 8], "batch_size": [16], "epoch_count": [1]})
    path = queue.to_config(cli.tmp / "exported.yaml")
    assert (cli.tmp / "exported_models.py").exists()
    code, out, err = cli("run", str(path), "--output-dir", "exported")
    assert code == 0, err
    aiqc.setup(cli.database)
    again = aiqc.Queue.get_by_id(1)
    assert [h.hyperparameters for h in again.experiment.hyperparamsets] == [
        {"neuron_count": 4, "batch_size": 16, "epoch_count": 1}, {"neuron_count": 8, "batch_size": 16, "epoch_count": 1}]
    assert again.job_count == 4 and again.state_counts()["COMPLETE"] == 4
    other = again.experiment.splitset
    assert other.random_state == 11
    import numpy as np

    indices = {s: other.indices(s).tolist() for s in ("train", "validation", "test")}
    aiqc.setup(db)
    for split, rows in indices.items():
        assert np.array_equal(splitset.indices(split), rows)  # same seed, same splits


def test_from_config_builds_the_queue_in_python(db, monkeypatch):
    pytest.importorskip("omegaconf")
    pytest.importorskip("torch")
    queue = aiqc.Experiment.from_config(EXAMPLES / "iris.yaml", overrides=["experiment.repeat_count=3"])
    assert queue.job_count == 2 * 3 and queue.state_counts()["QUEUED"] == 6
    with pytest.raises(ValidationError, match=r"override 'nope=1': expected an existing key"):
        aiqc.Experiment.from_config(EXAMPLES / "iris.yaml", overrides=["nope=1"])
