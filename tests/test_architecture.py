"""The house rules, checked: layers (import-linter), one vocabulary of analysis types and
states, type hints and docstrings."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aiqc
from aiqc.analysis import AnalysisType
from aiqc.states import JobState, TrialState

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "aiqc"
pytestmark = pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs a source checkout")


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts of ``cwd/pyproject.toml``, in a fresh process."""
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(cwd), "LANG": "C.UTF-8"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml'))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --- layers ------------------------------------------------------------------------------------
def test_import_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout), result.stdout


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "aiqc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _upward_allowances() -> dict[str, set[str]]:
    """importer -> imported, for the upward imports the layers contract lists."""
    import tomllib

    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    allowed: dict[str, set[str]] = {}
    for line in contract["ignore_imports"]:
        importer, imported = (part.strip() for part in line.split("->"))
        allowed.setdefault(importer, set()).add(imported)
    return allowed


def test_upward_imports_are_only_short_delegating_methods_of_orm_models():
    """Each allowed upward import sits in a method of an ORM model whose body is the import and
    one return: the public API delegates to a service and does nothing else."""
    allowed = _upward_allowances()
    assert allowed and all(importer.startswith("aiqc.orm.") for importer in allowed)
    seen = set()
    for importer, targets in allowed.items():
        path = REPO / (importer.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                imported = {node.module for node in ast.walk(method) if isinstance(node, ast.ImportFrom)}
                upward = imported & targets
                if not upward:
                    continue
                body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                assert len(body) == 2 and isinstance(body[-1], ast.Return), f"{importer}.{cls.name}.{method.name}"
                seen |= {(importer, t) for t in upward}
        module_level = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
        assert not module_level & targets, f"{importer} imports a service at module level"
    assert seen == {(i, t) for i, ts in allowed.items() for t in ts}, "an allowance in pyproject.toml is unused"


@pytest.mark.parametrize(("module", "line", "chain"), [
    ("metrics.py", "from aiqc import report", "aiqc.metrics -> aiqc.report"),       # pure code -> service
    ("orm/splitset.py", "from aiqc import results", "aiqc.orm.splitset -> aiqc.results"),  # ORM -> service
    ("training.py", "import aiqc.runner", "aiqc.training -> aiqc.runner"),          # service -> orchestration
    ("exceptions.py", "from aiqc import states", "aiqc.exceptions -> aiqc.states"),  # ground -> ground above
])
def test_an_upward_import_breaks_the_layers(package_copy, module, line, chain):
    path = package_copy / "aiqc" / module
    path.write_text(path.read_text() + f"\n\ndef _upward():\n    {line}\n")
    result = _lint_imports(package_copy, pythonpath=package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and chain in result.stdout, result.stdout


def test_a_module_outside_every_layer_breaks_the_contract(package_copy):
    (package_copy / "aiqc" / "newcomer.py").write_text('"""A module nobody placed in a layer."""\n')
    result = _lint_imports(package_copy, pythonpath=package_copy)
    assert result.returncode != 0 and "aiqc.newcomer" in result.stdout, result.stdout


def test_one_backend_never_imports_another(package_copy):
    path = package_copy / "aiqc" / "backends" / "keras.py"
    path.write_text(path.read_text() + "\n\ndef _other():\n    from aiqc.backends import pytorch\n")
    result = _lint_imports(package_copy, pythonpath=package_copy)
    assert result.returncode != 0 and "aiqc.backends.keras -> aiqc.backends.pytorch" in result.stdout


# --- one vocabulary --------------------------------------------------------------------------------
#: where the names may be spelled out: the registry, the enums, and YAML / CLI parsing
VOCABULARY_HOMES = {"analysis.py", "states.py", "spec.py", "cli.py"}


def _string_literals(path: Path):
    """(line, text) of every string constant that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _spelled_out(text: str) -> list[str]:
    """Analysis-type and state names used as values in ``text``: the whole string, a quoted
    name inside it, or (states) the upper-case word anywhere."""
    found = []
    for name in [a.value for a in AnalysisType]:
        if text.strip() == name or re.search(rf"['\"]{name}['\"]", text):
            found.append(name)
    for name in sorted({s.value for s in JobState} | {s.value for s in TrialState}):
        if re.search(rf"\b{name}\b", text):
            found.append(name)
    return found


def test_no_analysis_type_or_state_name_is_spelled_out_outside_its_home():
    offences = [f"{path.relative_to(REPO)}:{line}: {names} in {text[:60]!r}"
                for path in sorted(PACKAGE.rglob("*.py")) if path.name not in VOCABULARY_HOMES
                for line, text in _string_literals(path) if (names := _spelled_out(text))]
    assert offences == []


def test_the_vocabulary_check_sees_a_literal():
    assert _spelled_out("regression") == ["regression"]
    assert _spelled_out("expected 'classification_binary'") == ["classification_binary"]
    assert _spelled_out("job is COMPLETE") == ["COMPLETE"]
    assert _spelled_out("a regression job") == [] and _spelled_out("completed") == []


def test_states_know_which_are_finished_and_counts_are_keyed_by_the_enum():
    assert JobState.finished() == {JobState.COMPLETE, JobState.PRUNED, JobState.FAILED}
    assert [s for s in JobState if s.is_measured] == [JobState.COMPLETE, JobState.PRUNED]
    assert not JobState.QUEUED.is_finished and JobState.FAILED.is_finished
    assert TrialState.of_jobs({JobState.COMPLETE}) is TrialState.COMPLETE
    assert TrialState.of_jobs({JobState.COMPLETE, JobState.RUNNING}) is TrialState.RUNNING
    assert TrialState.of_jobs({JobState.COMPLETE, JobState.PRUNED}) is TrialState.PRUNED
    assert TrialState.of_jobs({JobState.FAILED, JobState.COMPLETE}) is TrialState.FAIL
    assert TrialState.of_jobs(set()) is TrialState.RUNNING
    assert str(JobState.COMPLETE) == "COMPLETE" and f"{AnalysisType.REGRESSION}" == "regression"


# --- exceptions ----------------------------------------------------------------------------------
def test_every_exception_lives_in_one_hierarchy():
    from aiqc import exceptions

    defined = []
    for info in pkgutil.walk_packages(aiqc.__path__, "aiqc."):
        if info.name.startswith("aiqc.datasets"):
            continue
        module = importlib.import_module(info.name)
        defined += [f"{info.name}.{name}" for name, obj in vars(module).items()
                    if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name]
    assert all(name.startswith("aiqc.exceptions.") for name in defined), defined
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.AIQCError)


# --- types and docstrings ----------------------------------------------------------------------
def _functions(tree: ast.AST):
    """Every function and method of a module, closures excepted."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef)):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield child


def _hinted(function: ast.FunctionDef) -> bool:
    arguments = function.args
    parameters = [a for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                  if a.arg not in ("self", "cls")]
    parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    returns = function.returns is not None or function.name == "__init__"
    return returns and all(p.annotation is not None for p in parameters)


def test_type_hints_on_at_least_95_percent_of_functions():
    """A function counts when every parameter (but self/cls) and its return are annotated."""
    functions = [(path, f) for path in sorted(PACKAGE.rglob("*.py")) for f in _functions(ast.parse(path.read_text()))]
    missing = [f"{path.relative_to(REPO)}:{f.lineno} {f.name}" for path, f in functions if not _hinted(f)]
    share = 1 - len(missing) / len(functions)
    assert share >= 0.95, f"{share:.1%} of {len(functions)} functions hinted; missing:\n" + "\n".join(missing)


def _public_objects():
    """(qualified name, object) of every public class, function and method defined in aiqc."""
    for info in pkgutil.walk_packages(aiqc.__path__, "aiqc."):
        if info.name.startswith("aiqc.datasets"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                yield f"{info.name}.{name}", obj
                for attribute, member in vars(obj).items():
                    if attribute.startswith("_") or attribute in ("Meta", "DoesNotExist"):
                        continue  # peewee's model configuration and generated exception
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{info.name}.{name}.{attribute}", getattr(obj, attribute, member)


def test_every_public_class_and_function_has_a_docstring():
    """Overrides inherit their base's docstring (``inspect.getdoc``)."""
    missing = [name for name, obj in _public_objects() if not (inspect.getdoc(obj) or "").strip()]
    assert missing == []
