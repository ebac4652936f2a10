"""The docs notebooks run, top to bottom, on a fresh database."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOTEBOOKS = sorted(p.name for p in DOCS.glob("*.ipynb"))

pytestmark = [pytest.mark.backends, pytest.mark.slow]


def test_there_are_notebooks_for_each_flow():
    assert set(NOTEBOOKS) == {"keras_multiclass.ipynb", "pytorch_binary.ipynb", "regression_bins.ipynb",
                              "folds_aggregate.ipynb", "search_pruning.ipynb", "messy_data.ipynb",
                              "images_pytorch_cnn.ipynb", "sequences_keras_gru.ipynb"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    library = "keras" if "keras" in name else "torch"
    pytest.importorskip(library)
    if "search" in name:
        pytest.importorskip("optuna")
    monkeypatch.setenv("AIQC_DB", str(tmp_path / "docs.sqlite3"))
    monkeypatch.setenv("AIQC_DOCS_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(DOCS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    texts = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                    for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Training Models" in texts  # the progress bar ran
    assert any("application/vnd.plotly.v1+json" in o.get("data", {})
               for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))  # charts drawn
