"""`import aiqc` is cheap: no TensorFlow, no torch (and no pandas or scikit-learn)."""

import json
import subprocess
import sys

HEAVY = ["tensorflow", "keras", "torch", "pandas", "sklearn"]


def _loaded_after(code: str) -> list[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_aiqc_loads_no_heavy_library():
    assert _loaded_after("import aiqc") == []


def test_setup_loads_no_deep_learning_library(tmp_path):
    loaded = _loaded_after(f"import aiqc; aiqc.setup({str(tmp_path / 'x.db')!r}); aiqc.Pipeline")
    assert not {"tensorflow", "keras", "torch"} & set(loaded)


def test_public_names_resolve():
    import aiqc

    for name in aiqc.__all__:
        assert getattr(aiqc, name) is not None
    assert aiqc.Pipeline.Tabular.make is not None
    assert issubclass(aiqc.exceptions.ValidationError, ValueError)
