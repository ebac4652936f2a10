"""A model you can ship: ``job.export(path)`` writes one file; ``aiqc.load_predictor(path)``
predicts from it as ``job.predict`` does, in a fresh process with no database; a damaged,
altered or foreign file is refused before anything in it is unpickled."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.exceptions import AIQCError, DataWarning, IntegrityError, ValidationError, VersionWarning
from aiqc.orm import Job
from aiqc.states import JobState

import fns
from fns import unbind_database

pytestmark = pytest.mark.backends

MODULES = {"pytorch": "torch", "keras": "keras"}
SCRIPT = shutil.which("aiqc", path=str(Path(sys.executable).parent))


# --- user functions: a custom fn_predict travels with the export, by value ----------------------------
def torch_predict(model, samples_predict):
    import torch

    model.eval()
    with torch.no_grad():
        return model(samples_predict["features"]) * 1.0, None


def keras_predict(model, samples_predict):
    return model(samples_predict["features"], training=False), None


PREDICT = {"pytorch": torch_predict, "keras": keras_predict}


def branchy_build(features_shape, label_shape, **hp):
    """A model whose forward branches on its input's values: torch.export cannot capture it."""
    import torch

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(features_shape[0], label_shape[0])

        def forward(self, x):
            out = self.linear(x)
            return out if float(x.sum()) > 0 else out * 1.0

    return Branchy()


class Planted:
    """Unpickling it writes the marker file: proof that a pickle in the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


# --- trained jobs, exported once per library ----------------------------------------------------------
def _diabetes() -> pd.DataFrame:
    """diabetes.csv with text categories (sex), an ID column to exclude, and pass-through columns (s1..s6)."""
    df = datum.to_pandas("diabetes.csv")
    df["sex"] = np.where(df["sex"] > 0, "m", "f")
    df.insert(0, "patient", np.arange(len(df)))
    return df


def _train(folder: Path, library: str) -> dict:
    """A database with a multiclass job (iris, fold 1 of 2, aliased) and a regression job
    (diabetes: one-hot, scaled and pass-through features, a scaled label, a custom fn_predict),
    both exported."""
    build, train = fns.FUNCTIONS[library]
    path = folder / f"{library}.sqlite3"
    aiqc.setup(path)
    try:
        splitset = fns.reference_make(datum.to_pandas("iris.tsv"), size_validation=None, fold_count=2, random_state=0)
        queue = aiqc.Experiment.make(
            library=library, analysis_type="classification_multi", fn_build=build, fn_train=train, seed=0,
            hyperparameters={"neuron_count": [4], "batch_size": [16], "epoch_count": [2],
                             "analysis": ["classification_multi"]}, splitset_id=splitset.id)
        assert queue.run_jobs(progress=False).complete == 2
        classifier = next(j for j in queue.jobs if j.fold_index == 1)
        classifier.set_alias(f"{library}-iris")
        splitset = aiqc.Pipeline.Tabular.make(
            df_or_path=_diabetes(), label_column="progression", label_encoder=dict(sklearn_preprocess=StandardScaler()),
            feature_cols_excluded=["progression", "patient"],
            feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), columns=["sex"]),
                              dict(sklearn_preprocess=StandardScaler(), columns=["age", "bmi", "bp"])],
            size_test=0.2, size_validation=0.2, bin_count=4, random_state=0)
        queue = aiqc.Experiment.make(
            library=library, analysis_type="regression", fn_build=build, fn_train=train, fn_predict=PREDICT[library],
            seed=0, hyperparameters={"neuron_count": [8], "batch_size": [32], "epoch_count": [2],
                                     "analysis": ["regression"]}, splitset_id=splitset.id)
        assert queue.run_jobs(progress=False).complete == 1
        regressor = queue.jobs.get()
        exported = {"classification": classifier.export(folder / f"{library}-iris.aiqc"),
                    "regression": regressor.export(folder / f"{library}-diabetes.aiqc")}
        return {"path": path, "classification": classifier.id, "regression": regressor.id, "exported": exported}
    finally:
        unbind_database()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(library)``: that library's database and exported files, made once per module."""
    made: dict[str, dict] = {}
    folder = tmp_path_factory.mktemp("export")

    def get(library: str) -> dict:
        pytest.importorskip(MODULES[library])
        if library not in made:
            made[library] = _train(folder, library)
        return made[library]

    return get


@pytest.fixture
def opened(trained, monkeypatch):
    """``opened(library)``: binds that library's database and returns what :func:`trained` made."""
    monkeypatch.delenv("AIQC_DB", raising=False)

    def open_(library: str) -> dict:
        made = trained(library)
        aiqc.setup(made["path"])
        return made

    yield open_
    unbind_database()


def _rows(kind: str) -> pd.DataFrame:
    """Raw rows to predict: every row, the label (and the ID) still in them."""
    return datum.to_pandas("iris.tsv") if kind == "classification" else _diabetes()


def _rezip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip ``source`` at ``target`` with some files' bytes replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))
    return target


def _manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


def _with_manifest(source: Path, target: Path, change) -> Path:
    manifest = _manifest(source)
    change(manifest)
    return _rezip(source, target, {"manifest.json": json.dumps(manifest).encode()})


# --- the acceptance: the same predictions in a fresh process, with no database ----------------------
CHILD = r"""
import json, os, sys
import pandas as pd
import aiqc
from aiqc.orm import database_proxy

spec = json.loads(sys.argv[1])
for item in spec["items"]:
    predictor = aiqc.load_predictor(item["file"])
    predictor.predict(pd.read_pickle(item["rows"])).to_pickle(item["out"])
print(json.dumps({"bound": database_proxy.obj is not None, "database_file": os.path.exists(spec["database"]),
                  "fns": "fns" in sys.modules, "job_ids": [aiqc.load_predictor(i["file"]).job_id for i in spec["items"]]}))
"""


@pytest.mark.parametrize("library", ["pytorch", pytest.param("keras", marks=pytest.mark.slow)])
def test_an_exported_predictor_in_a_fresh_process_equals_job_predict(opened, tmp_path, library):
    made = opened(library)
    items, expected = [], {}
    for kind in ("classification", "regression"):
        rows = _rows(kind)
        rows.to_pickle(tmp_path / f"{kind}.rows.pkl")
        expected[kind] = Job.get_by_id(made[kind]).predict(rows)
        items.append({"file": str(made["exported"][kind]), "rows": str(tmp_path / f"{kind}.rows.pkl"),
                      "out": str(tmp_path / f"{kind}.out.pkl")})
    database = tmp_path / "never" / "aiqc.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tests' own modules cannot be imported
    env["AIQC_DB"] = str(database)
    spec = json.dumps({"items": items, "database": str(database)})
    done = subprocess.run([sys.executable, "-c", CHILD, spec], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"bound": False, "database_file": False, "fns": False,
                      "job_ids": [made["classification"], made["regression"]]}
    assert not database.parent.exists()
    for kind, item in zip(("classification", "regression"), items):
        got = pd.read_pickle(item["out"])
        pd.testing.assert_frame_equal(got, expected[kind], check_exact=False, rtol=1e-6)
    assert set(expected["classification"]["prediction"]) <= {"setosa", "versicolor", "virginica"}
    assert 25 < expected["regression"]["prediction"].mean() < 350  # the label's own units


def test_the_manifest_describes_the_job_and_its_files(opened):
    made = opened("pytorch")
    job = Job.get_by_id(made["classification"])
    path = made["exported"]["classification"]
    assert path.is_absolute() and path.is_file()
    manifest = _manifest(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        digests = {n: hashlib.sha256(archive.read(n)).hexdigest() for n in names - {"manifest.json"}}
    assert names == {"manifest.json", "model.pt2", "encoders.pkl"}
    assert manifest["files"] == digests
    assert (manifest["format"], manifest["format_version"]) == ("aiqc-predictor", 1)
    assert manifest["job"] == {"id": job.id, "queue_id": job.queue_id, "experiment_id": job.queue.experiment_id,
                               "repeat": 0, "fold": 1, "seed": job.seed, "hyperparameters": job.hyperparameters,
                               "aliases": ["pytorch-iris"]}
    assert (manifest["library"], manifest["analysis_type"]) == ("pytorch", "classification_multi")
    assert manifest["label"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert manifest["features"]["dtypes"] == {c: "float64" for c in manifest["features"]["columns"]}
    assert manifest["input_shapes"] == {"features": [4], "label": [3]}
    assert manifest["metrics"] == job.metrics()
    assert manifest["versions"]["recorded"] == job.versions
    exported = manifest["versions"]["exported"]
    assert {"python", "aiqc", "numpy", "pandas", "scikit-learn", "torch"} <= set(exported)
    assert set(manifest["versions"]["compared"]) >= {"python", "aiqc", "scikit-learn", "numpy", "torch"}

    predictor = aiqc.load_predictor(path)
    assert predictor.job_id == job.id and predictor.classes == ["setosa", "versicolor", "virginica"]
    assert predictor.metrics == job.metrics() and predictor.versions == manifest["versions"]
    assert repr(predictor) == (f"<Predictor job {job.id}: pytorch classification_multi, 4 feature columns -> "
                               "'species' (3 classes)>")
    regression = _manifest(made["exported"]["regression"])
    assert regression["fn_predict"] == "fn_predict.pkl" and "fn_predict.pkl" in regression["files"]
    assert regression["features"]["passthrough"] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert [e["columns"] for e in regression["features"]["encoders"]] == [["sex"], ["age", "bmi", "bp"]]
    assert regression["features"]["excluded"] == ["progression", "patient"]


def test_its_unzipped_folder_loads_too(opened, tmp_path):
    made = opened("pytorch")
    with zipfile.ZipFile(made["exported"]["regression"]) as archive:
        archive.extractall(tmp_path / "unzipped")
    rows = _diabetes().head(20)
    got = aiqc.load_predictor(tmp_path / "unzipped").predict(rows)
    pd.testing.assert_frame_equal(got, Job.get_by_id(made["regression"]).predict(rows), check_exact=False, rtol=1e-6)


def test_unseen_categories_warn_at_the_callers_line_and_bad_rows_fail_alike(opened):
    made = opened("pytorch")
    job = Job.get_by_id(made["regression"])
    predictor = aiqc.load_predictor(made["exported"]["regression"])
    rows = _diabetes().head(3).assign(sex=["m", "x", "f"])
    for predict in (predictor.predict, job.predict):
        with pytest.warns(DataWarning, match=r"column 'sex' holds categories the encoder never saw") as caught:
            predict(rows)
        assert [Path(w.filename).name for w in caught if w.category is DataWarning] == [Path(__file__).name]
    for predict in (predictor.predict, job.predict):
        with pytest.raises(ValidationError, match=r"received a DataFrame missing \['bmi'\]"):
            predict(rows.drop(columns="bmi"))


# --- the CLI -------------------------------------------------------------------------------------------
def test_cli_exports_a_job_by_alias_and_predicts_a_csv_without_a_database(opened, tmp_path, capsys):
    from aiqc.cli import main

    made = opened("pytorch")
    target = tmp_path / "churn.aiqc"
    assert main(["--db", str(made["path"]), "export", "pytorch-iris", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert main(["--db", str(made["path"]), "export", str(made["regression"]), str(tmp_path / "by-id.aiqc")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "by-id.aiqc")
    assert main(["--db", str(made["path"]), "export", "no-such-alias", str(tmp_path / "x.aiqc")]) == 2
    assert "alias: expected an alias of a job; received 'no-such-alias'" in capsys.readouterr().err
    assert not (tmp_path / "x.aiqc").exists()

    rows = datum.to_pandas("iris.tsv").sample(25, random_state=0)
    rows.to_csv(tmp_path / "input.csv", index=False)
    expected = Job.get_by_id(made["classification"]).predict(pd.read_csv(tmp_path / "input.csv"))
    database = tmp_path / "never.sqlite3"
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "aiqc.cli"]
    env = {**os.environ, "AIQC_DB": str(database)}
    done = subprocess.run([*command, "predict", str(target), "input.csv"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_csv(io.StringIO(done.stdout))  # float32 probabilities come back as float64
    pd.testing.assert_frame_equal(got, expected, check_exact=False, check_dtype=False, rtol=1e-6)
    assert not database.exists()

    assert main(["predict", str(tmp_path / "input.csv"), str(tmp_path / "input.csv")]) == 2
    assert "which is not a zip file" in capsys.readouterr().err
    assert main(["predict", str(target), str(tmp_path / "missing.csv")]) == 2
    assert "INPUT.csv: expected a readable CSV file" in capsys.readouterr().err


# --- refused exports leave nothing behind ----------------------------------------------------------------
def test_exporting_a_job_that_is_not_complete_writes_nothing(db, iris, tmp_path):
    splitset = fns.reference_make(iris)
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, splitset_id=splitset.id,
                                 hyperparameters={"neuron_count": [4], "batch_size": [16], "epoch_count": [1]})
    job = queue.jobs.get()
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ValidationError, match=rf"job: expected a {JobState.COMPLETE} job to export; job {job.id} "
                                              rf"is {JobState.QUEUED}\. Nothing was written\."):
        job.export(folder / "model.aiqc")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(("path", "message"), [
    ("folder", r"path: expected a file to write the predictor to; received .*, an existing folder"),
    ("missing/model.aiqc", r"path: expected a file in an existing folder; received .*missing/model\.aiqc"),
    (3, r"path: expected a file path to write the predictor to, e\.g\. 'churn\.aiqc'; received 3\."),
])
def test_a_bad_path_is_refused_before_writing(opened, tmp_path, path, message):
    made = opened("pytorch")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValidationError, match=message):
        Job.get_by_id(made["classification"]).export(tmp_path / path if isinstance(path, str) else path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_file_that_predicts_differently_is_removed_and_an_earlier_one_kept(opened, tmp_path, monkeypatch):
    from aiqc.backends.pytorch import TorchBackend

    made = opened("pytorch")
    target = tmp_path / "model.aiqc"
    target.write_bytes(b"an earlier export")
    load = TorchBackend.load_exported

    def skewed(self, blob):
        model = load(self, blob)
        program = model.program
        object.__setattr__(model, "program", lambda x: program(x) * 2.0)
        return model

    monkeypatch.setattr(TorchBackend, "load_exported", skewed)
    with pytest.raises(AIQCError, match=r"loaded back, predicts 8 training rows differently from job\.predict"):
        Job.get_by_id(made["classification"]).export(target)
    assert target.read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.aiqc"]


def test_a_model_torch_export_cannot_capture_is_refused_before_writing(db, iris, tmp_path):
    pytest.importorskip("torch")
    splitset = fns.reference_make(iris)
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=branchy_build,
                                 fn_train=fns.torch_train, splitset_id=splitset.id,
                                 hyperparameters={"batch_size": [16], "epoch_count": [1]})
    assert queue.run_jobs(progress=False).complete == 1
    job = queue.jobs.get()
    assert len(job.predict(iris.head(3))) == 3  # it predicts; it cannot be captured
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ValidationError, match=r"job: expected a model torch\.export can capture .* capturing it failed: .*\(job "
                                              rf"{job.id}\)\. Nothing was written\."):
        job.export(folder / "branchy.aiqc")
    assert list(folder.iterdir()) == []


# --- refused files -------------------------------------------------------------------------------------------
def test_a_truncated_file_is_refused(trained, tmp_path):
    source = trained("pytorch")["exported"]["classification"]
    blob = source.read_bytes()
    for cut in (len(blob) - 40, len(blob) // 2):
        damaged = tmp_path / f"cut-{cut}.aiqc"
        damaged.write_bytes(blob[:cut])
        with pytest.raises(IntegrityError, match=rf"path: '{re.escape(str(damaged))}' is a damaged zip file \(truncated"):
            aiqc.load_predictor(damaged)


def test_a_flipped_byte_inside_a_file_is_refused(trained, tmp_path):
    source = trained("pytorch")["exported"]["classification"]
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("encoders.pkl")
    blob = bytearray(source.read_bytes())
    name_length, extra_length = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length  # the file's compressed bytes
    blob[start + info.compress_size // 2] ^= 0xFF
    damaged = tmp_path / "flipped.aiqc"
    damaged.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match=r"its file 'encoders\.pkl' is damaged"):
        aiqc.load_predictor(damaged)


def test_a_replaced_file_is_refused_before_anything_is_unpickled(trained, tmp_path):
    source = trained("pytorch")["exported"]["classification"]
    marker = tmp_path / "marker"
    tampered = _rezip(source, tmp_path / "tampered.aiqc", {"encoders.pkl": pickle.dumps(Planted(marker))})
    with pytest.raises(IntegrityError, match=r"its file 'encoders\.pkl' does not match the sha256 recorded in its "
                                             r"manifest\.json: the predictor is corrupt or was altered"):
        aiqc.load_predictor(tampered)
    unlisted = _with_manifest(source, tmp_path / "unlisted.aiqc", lambda m: m["files"].pop("encoders.pkl"))
    with pytest.raises(IntegrityError, match=r"lists no sha256 for \['encoders\.pkl'\]"):
        aiqc.load_predictor(unlisted)
    schemaless = _with_manifest(source, tmp_path / "schemaless.aiqc", lambda m: m["features"].pop("dtypes"))
    with pytest.raises(IntegrityError, match=r"its manifest\.json lacks \['features\.dtypes'\]"):
        aiqc.load_predictor(schemaless)
    missing = tmp_path / "missing.aiqc"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(missing, "w") as new:
        for name in old.namelist():
            if name != "model.pt2":
                new.writestr(name, old.read(name))
    with pytest.raises(IntegrityError, match=r"expected the file 'model\.pt2' its manifest lists; it is missing"):
        aiqc.load_predictor(missing)
    assert not marker.exists()


def test_what_is_not_an_exported_predictor_is_refused(trained, tmp_path):
    source = trained("pytorch")["exported"]["classification"]
    (tmp_path / "notes.txt").write_text("not a predictor")
    (tmp_path / "empty").mkdir()
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    foreign = _with_manifest(source, tmp_path / "foreign.aiqc", lambda m: m.update(format="something-else"))
    cases = [
        (tmp_path / "notes.txt", r"received '.*notes\.txt', which is not a zip file"),
        (tmp_path / "nothing.aiqc", r"received '.*nothing\.aiqc', which does not exist"),
        (tmp_path / "empty", r"received '.*empty', a folder without a manifest\.json"),
        (tmp_path / "other.zip", r"received '.*other\.zip', a zip without a manifest\.json"),
        (foreign, r"its manifest\.json of format 'aiqc-predictor'\); received '.*foreign\.aiqc', whose manifest"),
        (None, r"the path of an exported predictor .*; received None\."),
    ]
    for path, message in cases:
        with pytest.raises(ValidationError, match=rf"^path: expected .*{message}"):
            aiqc.load_predictor(path)


def test_a_newer_format_version_is_refused(trained, tmp_path):
    source = trained("pytorch")["exported"]["classification"]
    newer = _with_manifest(source, tmp_path / "newer.aiqc", lambda m: m.update(format_version=99, aiqc_version="9.0"))
    with pytest.raises(ValidationError, match=r"expected an exported predictor of format version 2 or older, .*; "
                                              r"received '.*newer\.aiqc', of format version 99, written by aiqc 9\.0\. "
                                              r"Upgrade aiqc to load it\."):
        aiqc.load_predictor(newer)


def test_other_versions_warn_and_still_predict(trained, tmp_path):
    made = trained("pytorch")
    source = made["exported"]["classification"]

    def older(manifest):
        manifest["versions"]["exported"].update({"scikit-learn": "0.0.1", "python": "2.7.18"})

    edited = _with_manifest(source, tmp_path / "older.aiqc", older)
    with pytest.warns(VersionWarning) as caught:
        predictor = aiqc.load_predictor(edited)
    [warned] = [w for w in caught if w.category is VersionWarning]
    message = str(warned.message)
    assert "scikit-learn 0.0.1 (now " in message and "python 2.7.18 (now " in message and "numpy" not in message
    assert Path(warned.filename).name == Path(__file__).name
    rows = datum.to_pandas("iris.tsv").head(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VersionWarning)  # the untouched file does not warn
        pd.testing.assert_frame_equal(predictor.predict(rows), aiqc.load_predictor(source).predict(rows))
