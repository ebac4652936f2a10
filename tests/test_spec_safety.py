"""A YAML spec names code; aiqc checks every name before it imports, instantiates or calls anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import aiqc
from aiqc.exceptions import ValidationError

pytest.importorskip("omegaconf")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = shutil.which("aiqc", path=str(Path(sys.executable).parent)) or shutil.which("aiqc")

SIDE = '''"""Beside the spec: code that would leave a marker file if aiqc called the wrong thing."""
from subprocess import check_call  # noqa: F401  (a function of another module, re-exported)

MARKER = {marker!r}


def touch(*args, **kwargs):
    open(MARKER, "w").close()


class NotATransformer:
    def __init__(self, *args, **kwargs):
        open(MARKER, "w").close()

    def fit(self, X, y=None):
        return self
'''

SCALER = '''"""A transformer of the user's own."""
from sklearn.preprocessing import StandardScaler


class Scaler(StandardScaler):
    pass
'''


def _spec(folder: Path, marker: Path | None = None, **sections) -> Path:
    """examples/iris.yaml, small, written to ``folder`` with models.py (and side.py) beside it;
    ``sections`` update its sections (``allow_modules=[...]`` sets the top-level key)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "models.py", folder / "models.py")
    if marker is not None:
        (folder / "side.py").write_text(SIDE.format(marker=str(marker)))
    spec = yaml.safe_load((EXAMPLES / "iris.yaml").read_text())
    spec["experiment"]["hyperparameters"] = {"neuron_count": [4], "batch_size": [16], "epoch_count": [2]}
    for section, value in sections.items():
        if isinstance(value, dict):
            spec[section].update(value)
        else:
            spec[section] = value
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An importable module NOT beside the spec, which leaves the marker when imported."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "elsewhere_mod.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w').close()\n" + SCALER)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _popen(marker: Path) -> dict:
    return {"class": "subprocess.Popen", "params": {"args": ["touch", str(marker)]}}


REFUSED = {
    "subprocess.Popen": (lambda m: {"data": {"label_encoder": _popen(m)}},
                         r"data.label_encoder.class: expected a class from sklearn.*'subprocess.Popen'.*"
                         r"module 'subprocess' is neither beside the spec nor allowed.*allow_modules: \[subprocess\]"),
    "os.system": (lambda m: {"data": {"label_encoder": {"class": "os.system", "params": {"command": f"touch {m}"}}}},
                  r"data.label_encoder.class: .*module 'os' is neither beside the spec nor allowed.*--allow-module os"),
    "a function of sklearn": (lambda m: {"data": {"label_encoder": {"class": "sklearn.preprocessing.scale"}}},
                              r"data.label_encoder.class: expected a class .*'sklearn.preprocessing.scale', a function"),
    "a function beside the spec": (lambda m: {"data": {"label_encoder": {"class": "side.touch"}}},
                                   r"data.label_encoder.class: expected a class .*'side.touch', a function"),
    "a class that is no transformer": (
        lambda m: {"data": {"label_encoder": {"class": "side.NotATransformer", "params": {"x": 1}}}},
        r"data.label_encoder.class: expected a scikit-learn-style transformer class .*'side.NotATransformer', "
        r"which has no transform"),
    "an opted-in module's class that is no transformer": (
        lambda m: {"data": {"label_encoder": _popen(m)}, "allow_modules": ["subprocess"]},
        r"data.label_encoder.class: expected a scikit-learn-style transformer class .*'subprocess.Popen'"),
    "a step of a pipeline": (
        lambda m: {"data": {"feature_encoders": [{"steps": [{"class": "sklearn.impute.SimpleImputer"}, _popen(m)],
                                                  "dtypes": ["float64"]}]}},
        r"data.feature_encoders\[0\].steps\[1\].class: .*module 'subprocess' is neither"),
    "an unknown module": (lambda m: {"data": {"label_encoder": {"class": "elsewhere_mod.Scaler"}}},
                          r"data.label_encoder.class: .*module 'elsewhere_mod' is neither beside the spec nor allowed"),
    "os:system as a function": (lambda m: {"experiment": {"fn_build": "os:system"}},
                                r"experiment.fn_build: expected an importable module 'os' beside the spec .*"
                                r"allow_modules=\['os'\] to Experiment.from_config"),
    "a builtin of an opted-in module": (lambda m: {"experiment": {"fn_build": "os:system"}, "allow_modules": ["os"]},
                                        r"experiment.fn_build: expected a function 'system' .*a builtin_function"),
    "a class as a function": (lambda m: {"experiment": {"fn_train": "side:NotATransformer"}},
                              r"experiment.fn_train: expected a function 'NotATransformer' .*a type"),
    "another module's function re-exported beside the spec": (
        lambda m: {"experiment": {"fn_build": "side:check_call"}},
        r"experiment.fn_build: expected a function defined beside the spec .*module 'subprocess' is neither"),
    "a metric from subprocess": (lambda m: {"experiment": {"metrics": {"m": "subprocess:call"}}},
                                 r"experiment.metrics.m: .*module 'subprocess' is neither"),
    "an unknown module's function": (lambda m: {"experiment": {"fn_build": "elsewhere_mod:f"}},
                                     r"experiment.fn_build: .*module 'elsewhere_mod' is neither"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_spec_naming_unsafe_code_is_refused_before_anything_runs(db, row_counts, tmp_path, elsewhere, case):
    make, message = REFUSED[case]
    marker = tmp_path / "marker"
    path = _spec(tmp_path / "spec", marker, **make(marker))
    before, path_before = row_counts(), list(sys.path)
    with pytest.raises(ValidationError, match=message):
        aiqc.Experiment.from_config(path)
    assert not marker.exists()
    assert row_counts() == before
    assert sys.path == path_before
    assert "elsewhere_mod" not in sys.modules


def test_bad_allow_modules_is_refused(db, row_counts, tmp_path):
    before = row_counts()
    with pytest.raises(ValidationError, match=r"allow_modules: expected a list of module names.*received 'os'"):
        aiqc.Experiment.from_config(_spec(tmp_path / "spec", allow_modules="os"))
    with pytest.raises(ValidationError, match=r"allow_modules: expected a list of module names.*received \['os; rm'\]"):
        aiqc.Experiment.from_config(_spec(tmp_path / "spec"), allow_modules=["os; rm"])
    assert row_counts() == before


def test_opted_in_and_own_modules_work_and_sys_path_is_restored(db, tmp_path, elsewhere):
    pytest.importorskip("torch")
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "own_encoders.py").write_text(SCALER)
    scaled = {"feature_encoders": [{"class": "own_encoders.Scaler", "dtypes": ["float64"]}]}
    before = list(sys.path)
    queue = aiqc.Experiment.from_config(_spec(tmp_path / "spec", data=scaled))  # beside the spec: no opt-in
    assert type(queue.experiment.splitset.encoders_for(side="feature")[0].fitted).__name__ == "Scaler"
    assert sys.path == before and str(tmp_path / "spec") not in sys.path

    other = {"feature_encoders": [{"class": "elsewhere_mod.Scaler", "dtypes": ["float64"]}]}
    path = _spec(tmp_path / "spec", data=other)
    with pytest.raises(ValidationError, match="allow_modules"):
        aiqc.Experiment.from_config(path)
    assert not (tmp_path / "marker").exists()
    queue = aiqc.Experiment.from_config(path, allow_modules=["elsewhere_mod"])  # opted in from Python
    assert (tmp_path / "marker").exists()  # its import ran, as any opted-in module's does
    assert queue.experiment.splitset.encoders_for(side="feature")[0].class_path.startswith("elsewhere_mod")
    queue = aiqc.Experiment.from_config(_spec(tmp_path / "spec", data=other, allow_modules=["elsewhere_mod"]))
    assert queue.job_count == 1 and sys.path == before


def test_a_stale_module_of_the_same_name_is_never_used(tmp_path):
    from aiqc.spec import resolve_function

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "twin_models.py").write_text(f"def fn_build(*args, **hp):\n    return {name!r}\n")
    try:
        assert resolve_function("twin_models:fn_build", "experiment.fn_build", tmp_path / "a")() == "a"
        assert resolve_function("twin_models:fn_build", "experiment.fn_build", tmp_path / "b")() == "b"
    finally:
        sys.modules.pop("twin_models", None)
    (tmp_path / "a" / "yaml.py").write_text("def fn_build(*args, **hp):\n    return 'shadow'\n")  # installed name
    with pytest.raises(ValidationError, match=r"experiment.fn_build: expected a module beside the spec with a name "
                                              r"of its own; .*the installed module 'yaml'"):
        resolve_function("yaml:fn_build", "experiment.fn_build", tmp_path / "a")
    assert sys.modules["yaml"] is yaml


def test_report_and_to_config_refuse_a_path_that_is_no_path(db, row_counts, tmp_path):
    pytest.importorskip("torch")
    queue = aiqc.Experiment.from_config(_spec(tmp_path / "spec"))
    before = row_counts()
    for bad in (None, 3, ["r.html"]):
        with pytest.raises(ValidationError, match=r"path: expected a file path ending in \.html; received"):
            queue.report(bad)
        with pytest.raises(ValidationError, match=r"path: expected a file path ending in \.yaml; received"):
            queue.to_config(bad)
    with pytest.raises(ValidationError, match=r"config: expected the path of a YAML file; received None"):
        aiqc.Experiment.from_config(None)
    assert row_counts() == before


# --- through the command line --------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path):
    """Run `aiqc ARGS...` in tmp_path/cwd with its own database; (exit code, stdout, stderr)."""
    if SCRIPT is None:
        pytest.skip("the aiqc console script is not installed")
    pytest.importorskip("torch")
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(*args: str, pythonpath: Path | None = None):
        env = {**os.environ, "AIQC_DB": str(tmp_path / "cli.sqlite3")}
        if pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        out = subprocess.run([SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        return out.returncode, out.stdout, out.stderr

    return run


def test_a_yaml_syntax_error_is_one_line_with_its_position(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  datum: iris.tsv\n  label_column: [species\nexperiment: {}\n")
    code, out, err = cli("run", str(path))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("aiqc: error: config: expected valid YAML in ")
    assert "broken.yaml" in err and "line 4, column 11" in err and "Traceback" not in err


@pytest.mark.slow  # worker processes: CI runs it
def test_the_cli_refuses_then_opts_in_and_runs_with_two_workers(cli, tmp_path, elsewhere):
    marker = tmp_path / "marker"
    data = {"feature_encoders": [{"class": "elsewhere_mod.Scaler", "dtypes": ["float64"]}]}
    path = _spec(tmp_path / "spec", run={"workers": 2}, data=data)
    code, out, err = cli("run", str(path), pythonpath=elsewhere)
    assert code == 2 and err.count("\n") == 1
    assert "data.feature_encoders[0].class: " in err and "--allow-module elsewhere_mod" in err
    assert not marker.exists() and not (tmp_path / "cli.sqlite3").exists()  # nothing ran, nothing written

    code, out, err = cli("run", str(path), "experiment.hyperparameters.neuron_count=[4,8]",
                         "--allow-module", "elsewhere_mod", "--output-dir", "out", pythonpath=elsewhere)
    assert code == 0, err
    assert "queue 1: 2 complete, 0 pruned, 0 failed" in out
    assert (tmp_path / "cwd" / "out" / "report.html").exists()
