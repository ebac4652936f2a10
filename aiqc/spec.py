"""Experiment specs as YAML: load, override (Hydra style), validate, build, export.

    data:        {datum: iris.tsv | path: file.csv, label_column, feature_cols_excluded,
                  label_encoder: {class: sklearn.preprocessing.OneHotEncoder, params: {}},
                  feature_encoders: [{class: ..., params: {}, dtypes: [float64] | columns: [...]}],
                  (any encoder may be a pipeline of steps instead of one class:
                   {steps: [{class: sklearn.impute.SimpleImputer, params: {strategy: median}},
                            {class: sklearn.preprocessing.StandardScaler}], columns: [...]}),
                  size_test, size_validation, fold_count, bin_count, random_state, name, description,
                  tags: [...]}
                 images:    {modality: image, datum: digits | folder: images/ | path: images/,
                             labels: labels.csv, file_column, resize: [h, w], color_mode: L | RGB | RGBA,
                             label_column, label_encoder, feature_encoders: [{class: ..., params: {}}],
                             size_test, ... (as for tables; encoders apply to every channel)}
                 sequences: {modality: sequence, datum: signals.parquet | path: long.csv, sequence_column,
                             order_column, feature_columns: [...], padding: pre | post,
                             truncating: pre | post, length, pad_value, label_column, ...}
    experiment:  {library, analysis_type, fn_build: module:function, fn_train: module:function, name,
                  description, tags: [churn, baseline],
                  fn_lose, fn_optimize, fn_predict, repeat_count, hide_test,
                  hyperparameters: {name: [values] | {int: [low, high], log: true} | {float: [...]}
                                    | {categorical: [...]}},
                  search: null | {strategy, n_trials, metric, split, direction, seed, pruner, ...}}
    run:         {workers: 1}
    db:          null (AIQC_DB or the default) | path
    output_dir:  null (outputs/DATE/TIME) | path
    allow_modules: [category_encoders, ...]   (modules the spec may name besides the defaults)

Overrides: ``key=value`` changes an existing key, ``+key=value`` adds one, ``~key`` removes
one; in a sweep (``-m``) ``experiment.hyperparameters.NAME=a,b`` becomes that list.

A spec runs the code it names, so the names are checked before anything is imported: a
``class:`` must come from ``sklearn.*`` or a module beside the spec, a ``module:function`` from
a module beside the spec, anything else only when opted in (``allow_modules`` in the spec,
``aiqc run --allow-module M``, ``Experiment.from_config(..., allow_modules=[M])``). A class must
be a transformer (``fit`` and ``transform``) before it is instantiated; a function must be a
plain function. The spec's folder is on ``sys.path`` only while its references are resolved.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from aiqc.exceptions import ValidationError

if TYPE_CHECKING:
    from types import ModuleType

    from omegaconf import DictConfig

    from aiqc.orm import Queue

SECTIONS = {
    "data": {"datum", "path", "label_column", "feature_cols_excluded", "label_encoder", "feature_encoders",
             "size_test", "size_validation", "fold_count", "bin_count", "random_state", "name", "description",
             "parse_dates", "tags", "modality"},
    "experiment": {"library", "analysis_type", "fn_build", "fn_train", "fn_lose", "fn_optimize", "fn_predict",
                   "repeat_count", "hide_test", "hyperparameters", "search", "name", "description", "tags",
                   "metrics", "metric", "seed", "max_jobs"},
    "run": {"workers", "threads"},
}
TOP = {"data", "experiment", "run", "db", "output_dir", "allow_modules"}


@dataclass(frozen=True)
class DataKind:
    """What a ``data:`` section of one modality holds and which ``Pipeline`` maker stores it."""

    keys: frozenset[str]  # every key it may hold
    sources: tuple[str, ...]  # exactly one of them names the data
    shown: str  # those, as an error names them
    maker: str  # the Pipeline attribute whose make(source, **rest) stores it
    encoder_keys: tuple[str, ...]  # what a feature encoder entry holds beside class/params/steps


_ARRAY_KEYS = {"datum", "path", "label_column", "label_encoder", "feature_encoders", "size_test", "size_validation",
               "fold_count", "bin_count", "random_state", "name", "description", "tags", "modality"}
#: ``data.modality`` (absent: tabular) -> what its section holds; the one place that knows them
DATA_KINDS = {
    "tabular": DataKind(frozenset(SECTIONS["data"]), ("datum", "path"), "'datum' (a bundled file) or 'path'",
                        "Tabular", ("dtypes", "columns")),
    "image": DataKind(frozenset(_ARRAY_KEYS | {"folder", "labels", "file_column", "resize", "color_mode"}),
                      ("datum", "folder", "path"), "'datum' (a bundled set), 'folder' or 'path'", "Image", ()),
    "sequence": DataKind(frozenset(_ARRAY_KEYS | {"sequence_column", "order_column", "feature_columns", "padding",
                                                  "truncating", "length", "pad_value"}),
                         ("datum", "path"), "'datum' (a bundled file) or 'path'", "Sequence", ()),
}
#: data keys naming files, read relative to the spec's folder
DATA_PATHS = ("path", "folder", "labels")


def data_kind(data: dict) -> DataKind:
    """The :class:`DataKind` of a ``data:`` section, by its ``modality`` (absent: tabular)."""
    modality = data.get("modality", "tabular")
    if not isinstance(modality, str) or modality not in DATA_KINDS:
        raise ValidationError.expected("data.modality", f"one of {list(DATA_KINDS)!r} (absent: tabular)", modality)
    return DATA_KINDS[modality]


FUNCTIONS = ("fn_build", "fn_train", "fn_lose", "fn_optimize", "fn_predict")
#: module prefixes a ``class:`` may name without an opt-in (modules beside the spec always may)
CLASS_MODULES = ("sklearn",)
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


# --- loading and overriding -------------------------------------------------------------------
def load(path: str | Path, overrides: list[str] | None = None, multirun: bool = False) -> DictConfig:
    """The spec at ``path`` with ``overrides`` applied, as an OmegaConf DictConfig."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(path, str) and not hasattr(path, "__fspath__"):
        raise ValidationError.expected("config", "the path of a YAML file", path)
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"config: expected an existing YAML file; received {str(path)!r} (no such file).")
    try:
        config = OmegaConf.load(path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
        problem = " ".join(str(problem).split())
        context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and start is not None and start is not mark:
            where += f" ({' '.join(str(context).split())} at line {start.line + 1}, column {start.column + 1})"
        raise ValidationError(f"config: expected valid YAML in {str(path)!r}; {problem}{where}.") from error
    except (OmegaConfBaseException, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        raise ValidationError(f"config: expected valid YAML in {str(path)!r}; {message}") from error
    if not isinstance(config, dict) and not OmegaConf.is_dict(config):
        raise ValidationError(f"config: expected a mapping at the top of {str(path)!r}.")
    for override in overrides or []:
        apply_override(config, override, multirun)
    return config


def apply_override(config: Any, override: str, multirun: bool = False) -> None:
    """Apply one override to ``config`` in place: ``key=value`` changes an existing key,
    ``+key=value`` adds one, ``~key`` removes one; in a sweep, ``a,b`` becomes a list."""
    from omegaconf import OmegaConf

    if not isinstance(override, str) or not override.strip():
        raise ValidationError.expected("override", "key=value, +key=value or ~key", override)
    if override.startswith("~"):
        key = override[1:].split("=", 1)[0]
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING:
            raise ValidationError(f"override {override!r}: expected an existing key to remove; {key!r} is not in the config.")
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(config, parent) if parent else config
        del node[leaf]
        return
    adding = override.startswith("+")
    body = override[1:] if adding else override
    if "=" not in body:
        raise ValidationError(f"override {override!r}: expected key=value (or +key=value, ~key).")
    key, raw = body.split("=", 1)
    exists = OmegaConf.select(config, key, default=_MISSING) is not _MISSING
    if adding and exists:
        raise ValidationError(f"override {override!r}: {key!r} already exists; drop the '+' to change it.")
    if not adding and not exists:
        raise ValidationError(f"override {override!r}: expected an existing key; {key!r} is not in the config "
                              f"(use +{key}=... to add it).")
    value = _parse_value(raw)
    if multirun and "," in raw and not raw.strip().startswith("["):
        if not key.startswith("experiment.hyperparameters."):
            raise ValidationError(f"override {override!r}: a sweep (-m) can only vary experiment.hyperparameters.*, "
                                  "which become one queue.")
        value = [_parse_value(part) for part in raw.split(",")]
    OmegaConf.update(config, key, value, merge=False, force_add=True)


class _Missing:
    pass


_MISSING = _Missing()


def _parse_value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def flatten(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf: what ``aiqc run CONFIG --help`` prints."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(config, resolve=False) if not isinstance(config, dict) else config
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not (prefix.startswith("experiment.hyperparameters")):
            rows += flatten(value, path + ".")
        else:
            rows.append((path, value))
    return rows


# --- validation and building ------------------------------------------------------------------
def to_dict(config: Any) -> dict:
    """The config as plain dicts and lists, interpolations resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)


def check_structure(spec: dict) -> None:
    """Raise ValidationError unless the spec has known sections and keys, the required keys,
    and exactly one of ``data.datum`` / ``data.path``."""
    unknown = sorted(set(spec) - TOP)
    if unknown:
        raise ValidationError(f"{unknown[0]}: expected top-level keys among {sorted(TOP)!r}; received unknown {unknown!r}.")
    for section in ("data", "experiment"):
        if not isinstance(spec.get(section), dict):
            raise ValidationError.expected(section, "a mapping", spec.get(section))
    kind = data_kind(spec["data"])
    for section, keys in {**SECTIONS, "data": kind.keys}.items():
        body = spec.get(section) or {}
        if not isinstance(body, dict):
            raise ValidationError.expected(section, "a mapping", body)
        for key in body:
            if key not in keys:
                raise ValidationError(f"{section}.{key}: expected a key among {sorted(keys)!r}"
                                      f"{_modality_hint(kind, key) if section == 'data' else ''}; received unknown "
                                      f"{key!r}.")
    required = {"data.label_column": "the name of one column", "experiment.library": "'keras' or 'pytorch'",
                "experiment.analysis_type": "an analysis type", "experiment.fn_build": "'module:function'",
                "experiment.fn_train": "'module:function'"}
    for key, expected in required.items():
        section, name = key.split(".")
        if spec[section].get(name) is None:
            raise ValidationError(f"{key}: expected {expected}; received nothing (the key is missing or null).")
    named = [k for k in kind.sources if k in spec["data"]]
    if len(named) != 1:
        received = "neither" if not named else "both" if len(kind.sources) == 2 else " and ".join(map(repr, named))
        raise ValidationError(f"data: expected exactly one of {kind.shown}; received {received}.")
    allow_list(spec.get("allow_modules"))


def _modality_hint(kind: DataKind, key: str) -> str:
    """`` (modality 'sequence'; 'resize' is a key of modality 'image')``: which modality a data section
    is, and which one an unknown key of it belongs to, if any."""
    modality = next(m for m, k in DATA_KINDS.items() if k is kind)
    owners = [m for m, k in DATA_KINDS.items() if key in k.keys]
    return f" (modality {modality!r}" + (f"; {key!r} is a key of modality {owners[0]!r})" if owners else ")")


# --- references to code: checked before anything is imported --------------------------------
def allow_list(value: Any, param: str = "allow_modules") -> tuple[str, ...]:
    """``None`` or a list of module names (``category_encoders``, ``my.pkg``) -> a tuple of them."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) and _MODULE_NAME.match(v) for v in value):
        raise ValidationError.expected(param, "a list of module names, e.g. [category_encoders]", value)
    return tuple(value)


@contextlib.contextmanager
def spec_folder_on_path(base: Path | None) -> Iterator[None]:
    """``sys.path`` with the spec's folder first, only inside the block; restored afterwards."""
    saved = list(sys.path)
    if base is not None:
        sys.path.insert(0, str(base))
        importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved


def _beside(module_name: str, base: Path | None) -> Path | None:
    """The file or folder of ``module_name`` in the spec's folder, found on disk (nothing is
    imported); None when there is none, or when the name is a standard-library module's."""
    top = module_name.split(".")[0]
    if base is None or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return None
    target = base.joinpath(*module_name.split("."))
    for candidate in (target.with_name(target.name + ".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return target if target.is_dir() else None


def _allowed(module_name: str, base: Path | None, prefixes: tuple[str, ...]) -> bool:
    return _beside(module_name, base) is not None or \
        any(module_name == p or module_name.startswith(p + ".") for p in prefixes)


def _refusal(key: str, expected: str, received: str, module_name: str) -> ValidationError:
    top = module_name.split(".")[0]
    return ValidationError(
        f"{key}: expected {expected}; received {received!r}, and module {module_name!r} is neither beside the spec nor "
        f"allowed. A spec runs the code it names: to trust {top!r}, add 'allow_modules: [{top}]' to the spec, pass "
        f"'--allow-module {top}' to aiqc run, or allow_modules=[{top!r}] to Experiment.from_config.")


def _forget_other_copy(module_name: str, base: Path, key: str) -> None:
    """When ``sys.modules`` holds a module of this name from another folder (another spec's
    ``models.py``), drop it so that the one beside this spec is imported, never the stale one.
    An installed module of that name (imported or not) is an error: the spec's file would shadow it."""
    from importlib.machinery import PathFinder

    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    if cached is not None:
        file, folders = getattr(cached, "__file__", None), list(getattr(cached, "__path__", None) or [])
    else:  # where `import top` would find it without the spec's folder (path entries only: nothing runs)
        found = PathFinder.find_spec(top, [p for p in sys.path if p and Path(p).resolve() != base.resolve()])
        if found is None:
            return
        file, folders = found.origin if found.has_location else None, list(found.submodule_search_locations or [])
    here = (base / top).resolve()
    locations = ([Path(file).resolve()] if file else []) + [Path(p).resolve() for p in folders]
    if any(p in (here, here.with_name(top + ".py"), here / "__init__.py") for p in locations):
        return  # the one beside the spec
    prefixes = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    if not locations or any(prefix in p.parents for p in locations for prefix in prefixes):
        raise ValidationError(f"{key}: expected a module beside the spec with a name of its own; received "
                              f"{str(_beside(module_name, base))!r}, which has the name of the installed module "
                              f"{top!r} (rename the file).")
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _import_allowed(module_name: str, base: Path | None, key: str) -> ModuleType:
    """Import an allowed module, the spec's folder on ``sys.path`` only meanwhile."""
    if base is not None and _beside(module_name, base) is not None:
        _forget_other_copy(module_name, base, key)
    with spec_folder_on_path(base):
        return importlib.import_module(module_name)


def resolve_function(reference: Any, key: str, base: Path | None, allow_modules: tuple[str, ...] = ()) -> Any:
    """``module:function`` -> the function, from a module beside the spec (``base``) or in
    ``allow_modules``; the module name is checked before it is imported, and the result must be a
    plain function (not a class or a builtin) defined in such a module."""
    if reference is None:
        return None
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise ValidationError.expected(key, "'module:function', e.g. 'models:fn_build'", reference)
    module_name, name = reference.split(":")
    if not _MODULE_NAME.match(module_name) or not name.isidentifier():
        raise ValidationError.expected(key, "'module:function', e.g. 'models:fn_build'", reference)
    expected = f"an importable module {module_name!r} beside the spec or in allow_modules"
    if not _allowed(module_name, base, allow_modules):
        raise _refusal(key, expected, reference, module_name)
    try:
        module = _import_allowed(module_name, base, key)
    except ImportError as error:
        raise ValidationError(f"{key}: expected an importable module {module_name!r}; received {reference!r} ({error}).") from error
    function = getattr(module, name, None)
    if function is None:
        raise ValidationError(f"{key}: expected a function {name!r} in module {module_name!r}; received {reference!r}.")
    if not inspect.isfunction(function):
        raise ValidationError(f"{key}: expected a function {name!r} in module {module_name!r} (a plain Python function, "
                              f"def ...); received {reference!r}, a {type(function).__name__}.")
    origin = getattr(function, "__module__", None) or ""
    if origin != module_name and not (_MODULE_NAME.match(origin) and _allowed(origin, base, allow_modules)):
        raise _refusal(key, "a function defined beside the spec or in allow_modules", f"{reference} (from {origin})",
                       origin or "?")
    return function


def _transformer_class(path: Any, where: str, base: Path | None, allow_modules: tuple[str, ...]) -> type:
    """``module.Name`` -> the class, checked as a scikit-learn-style transformer (``fit`` and
    ``transform``) before anything instantiates it; ``sklearn.*``, modules beside the spec and
    ``allow_modules`` only, checked before the module is imported."""
    example = "'sklearn.preprocessing.StandardScaler'"
    module_name, _, name = path.rpartition(".") if isinstance(path, str) else ("", "", "")
    if not _MODULE_NAME.match(module_name) or not name.isidentifier():
        raise ValidationError.expected(f"{where}.class", f"an importable class such as {example}", path)
    prefixes = CLASS_MODULES + allow_modules
    expected = "a class from sklearn.*, from a module beside the spec or from allow_modules"
    if not _allowed(module_name, base, prefixes):
        raise _refusal(f"{where}.class", expected, path, module_name)
    try:
        cls = getattr(_import_allowed(module_name, base, f"{where}.class"), name)
    except (ImportError, AttributeError) as error:
        raise ValidationError(f"{where}.class: expected an importable class such as {example}; "
                              f"received {path!r}.") from error
    if not inspect.isclass(cls):
        raise ValidationError(f"{where}.class: expected a class (a transformer such as {example}); received {path!r}, "
                              f"a {type(cls).__name__}.")
    origin = getattr(cls, "__module__", None) or ""
    if not (_MODULE_NAME.match(origin) and _allowed(origin, base, prefixes)):
        raise _refusal(f"{where}.class", expected, f"{path} (from {origin})", origin or "?")
    missing = [m for m in ("fit", "transform") if not callable(getattr(cls, m, None))]
    if missing:
        raise ValidationError(f"{where}.class: expected a scikit-learn-style transformer class (with fit and transform); "
                              f"received {path!r}, which has no {' or '.join(missing)}.")
    return cls


def _encoder(entry: Any, key: str, base: Path | None = None, allow_modules: tuple[str, ...] = (),
             fields: tuple[str, ...] = ("dtypes", "columns")) -> dict:
    """``{class: module.Name, params: {...}}`` or ``{steps: [{class: ..., params: {...}}, ...]}``
    (a ``make_pipeline`` of the steps; a step may have steps too), with ``dtypes`` or ``columns``
    -> the ``dict(sklearn_preprocess=..., ...)`` that ``Pipeline.Tabular.make`` takes. Classes come
    from ``sklearn.*``, modules beside the spec (``base``) or ``allow_modules``. ``fields``: the
    keys the entry may hold beside its class (none for an image's or a sequence's encoders,
    which apply to every channel)."""
    shape = "{class: sklearn.preprocessing.Name, params: {...}} or {steps: [{class: ..., params: {...}}, ...]}"

    def build(step: Any, where: str, allowed: set[str]) -> Any:
        if not isinstance(step, dict) or ("class" in step) == ("steps" in step):
            raise ValidationError.expected(where, shape, step)
        mode = {"steps"} if "steps" in step else {"class", "params"}
        unknown = sorted(set(step) - (allowed | mode))
        if unknown:
            raise ValidationError(f"{where}.{unknown[0]}: expected keys among {sorted(allowed | mode)!r}; "
                                  f"received unknown {unknown!r}.")
        if "steps" in step:
            steps = step["steps"]
            if not isinstance(steps, list) or not steps:
                raise ValidationError.expected(f"{where}.steps", "a non-empty list of {class: ..., params: {...}}", steps)
            from sklearn.pipeline import make_pipeline

            return make_pipeline(*[build(s, f"{where}.steps[{i}]", set()) for i, s in enumerate(steps)])
        params = step.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ValidationError.expected(f"{where}.params", "a mapping of parameter: value", params)
        cls = _transformer_class(step["class"], where, base, allow_modules)
        try:
            return cls(**params)
        except TypeError as error:
            raise ValidationError(f"{where}.params: {error}") from error

    transformer = build(entry, key, set(fields))
    out = {"sklearn_preprocess": transformer}
    for field in fields:
        if entry.get(field) is not None:
            out[field] = entry[field]
    return out


def _distribution(value: Any, key: str) -> Any:
    from aiqc.search import Categorical, Float, Int

    if isinstance(value, list) or value is None or isinstance(value, (str, int, float, bool)):
        return value  # a list of values, or one fixed value
    if isinstance(value, dict) and len({"int", "float", "categorical"} & set(value)) == 1:
        try:
            if "categorical" in value:
                return Categorical(value["categorical"])
            kind = "int" if "int" in value else "float"
            low, high = value[kind]
            options = {k: v for k, v in value.items() if k != kind}
            return (Int if kind == "int" else Float)(low, high, **options)
        except ValidationError as error:
            raise ValidationError(f"{key}: {error}") from error
        except (TypeError, ValueError) as error:
            raise ValidationError.expected(key, "{int: [low, high]} or {float: [low, high]} with optional log/step",
                                           value) from error
    raise ValidationError.expected(key, "a value, a list of values, {int|float: [low, high], log: true} or {categorical: [...]}",
                                   value)


def _prefixed(section: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except ValidationError as error:
        message = str(error)
        raise ValidationError(message if message.startswith(section + ".") else f"{section}.{message}") from error


def prepare(spec: dict, base: Path | None = None, allow_modules: Any = None) -> dict:
    """Check a spec and resolve its references (encoder classes, functions, distributions)
    without touching the database: the keyword arguments :func:`store` takes. ``base`` is the
    spec's folder; ``allow_modules`` adds to the spec's own ``allow_modules``."""
    from aiqc import datum

    check_structure(spec)
    allow = allow_list(spec.get("allow_modules")) + allow_list(allow_modules)
    data, experiment = dict(spec["data"]), dict(spec["experiment"])
    kind = data_kind(data)
    data.pop("modality", None)
    for key in DATA_PATHS:  # relative to the spec's folder, where a file or folder is there
        value = data.get(key)
        if isinstance(value, str) and base is not None and not Path(value).is_absolute() and (base / value).exists():
            data[key] = str((base / value).resolve())
    named = next(k for k in kind.sources if k in data)
    source = datum.get_path(data.pop(named)) if named == "datum" else data.pop(named)
    if data.get("label_encoder") is not None:
        data["label_encoder"] = _encoder(data["label_encoder"], "data.label_encoder", base, allow)
    if data.get("feature_encoders") is not None:
        if not isinstance(data["feature_encoders"], list):
            raise ValidationError.expected("data.feature_encoders", "a list of encoders", data["feature_encoders"])
        data["feature_encoders"] = [_encoder(e, f"data.feature_encoders[{i}]", base, allow, kind.encoder_keys)
                                    for i, e in enumerate(data["feature_encoders"])]
    functions = {k: resolve_function(experiment.pop(k, None), f"experiment.{k}", base, allow) for k in FUNCTIONS}
    if experiment.get("metrics") is not None:
        experiment["metrics"] = _custom_metrics(experiment["metrics"], base, allow)
    hyperparameters = experiment.pop("hyperparameters", None)
    if hyperparameters is not None:
        if not isinstance(hyperparameters, dict):
            raise ValidationError.expected("experiment.hyperparameters", "a mapping of name: values", hyperparameters)
        hyperparameters = {k: _distribution(v, f"experiment.hyperparameters.{k}") for k, v in hyperparameters.items()}
    return {"source": source, "maker": kind.maker, "data": data, "functions": functions, "experiment": experiment,
            "hyperparameters": hyperparameters}


def store(prepared: dict) -> Queue:
    """Store what :func:`prepare` returned, pipeline and experiment, in one transaction; return
    the Queue. Any error leaves the database as it was."""
    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment
    from aiqc.pipeline import Pipeline

    maker = getattr(Pipeline, prepared.get("maker", DATA_KINDS["tabular"].maker)).make
    with ensure_setup().atomic():
        splitset = _prefixed("data", maker, prepared["source"], **prepared["data"])
        return _prefixed("experiment", Experiment.make, splitset_id=splitset.id,
                         hyperparameters=prepared["hyperparameters"], **prepared["functions"], **prepared["experiment"])


def build(spec: dict, base: Path | None = None, allow_modules: Any = None) -> Queue:
    """Store the pipeline and the experiment of a spec in one transaction; return the Queue.
    Every reference is checked and resolved first; any error leaves the database as it was."""
    return store(prepare(spec, base, allow_modules))


def _custom_metrics(entries: Any, base: Path | None, allow_modules: tuple[str, ...] = ()) -> dict:
    """``{name: module:function}`` or ``{name: {fn: module:function, direction: minimize}}`` ->
    what ``Experiment.make(metrics=...)`` takes."""
    if not isinstance(entries, dict):
        raise ValidationError.expected("experiment.metrics", "a mapping of name: 'module:function'", entries)
    out = {}
    for name, entry in entries.items():
        key = f"experiment.metrics.{name}"
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"fn", "direction"})
            if unknown or "fn" not in entry:
                raise ValidationError.expected(key, "'module:function' or {fn: 'module:function', direction: "
                                                    "maximize | minimize}", entry)
            out[name] = (resolve_function(entry["fn"], f"{key}.fn", base, allow_modules),
                         entry.get("direction", "maximize"))
        else:
            out[name] = resolve_function(entry, key, base, allow_modules)
    return out


def from_config(path: str | Path, overrides: list[str] | None = None, allow_modules: Any = None) -> Any:
    """Build the queue of a YAML spec (as ``aiqc run`` does, without running it): load it,
    apply ``overrides``, check and resolve its references (modules beyond ``sklearn.*`` and the
    spec's folder need ``allow_modules``), open its ``db`` if it names one, and store pipeline and
    experiment."""
    from aiqc.database import setup

    allow = allow_list(allow_modules)
    resolved = to_dict(load(path, overrides))
    prepared = prepare(resolved, Path(path).resolve().parent, allow)
    if resolved.get("db"):
        setup(resolved["db"])
    return store(prepared)


# --- export -----------------------------------------------------------------------------------
def export(queue: Any, path: str | Path) -> Path:
    """Write a YAML spec that reproduces ``queue`` (same data, splits, encoders, grid, seeds
    of the split), with the user's functions saved from their stored source to
    ``<name>_models.py`` beside it and, for DataFrame data, the data as parquet. A queue of
    images or sequences is refused before anything is written: write its ``data:`` section by
    hand (``modality: image`` or ``sequence``, see the module's docstring)."""
    import yaml

    from aiqc.search import to_json

    if not isinstance(path, str) and not hasattr(path, "__fspath__"):
        raise ValidationError.expected("path", "a file path ending in .yaml", path)
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValidationError.expected("path", "a file path ending in .yaml", str(path))
    if not path.parent.is_dir():
        raise ValidationError(f"path: expected a file in an existing directory; received {str(path)!r}.")
    experiment = queue.experiment
    splitset = experiment.splitset
    dataset = splitset.label.dataset
    if dataset.is_array:
        raise ValidationError(
            f"queue: expected a queue of a table's splitset to export as a spec; queue {queue.id} holds "
            f"{dataset.modality}s (dataset {dataset.id}). Write its data section by hand (data: {{modality: "
            f"{dataset.modality}, ...}}, see aiqc.spec), or export a job with job.export(path). Nothing was written.")
    if dataset.source != "pandas.DataFrame" and Path(dataset.source).is_file():
        data_source = {"path": str(Path(dataset.source).resolve())}
    else:
        parquet = path.with_name(f"{path.stem}_data.parquet")
        dataset.to_pandas().to_parquet(parquet, index=False)
        data_source = {"path": parquet.name}
    encoders = splitset.encoders_for()
    label = [e for e in encoders if e.side == "label"]
    features = [e for e in encoders if e.side == "feature"]

    def encoder(record: Any) -> dict:
        import inspect

        from sklearn.pipeline import Pipeline

        def describe(fitted: Any, where: str) -> dict:
            # a Pipeline -> {steps: [...]}; else {class, params}. A parameter YAML cannot hold
            # (an object, a list) is an error unless it is the default, never silently dropped.
            if isinstance(fitted, Pipeline):
                odd = [name for name, step in fitted.steps if isinstance(step, str) or step is None]
                if odd:
                    raise ValidationError(f"queue: expected encoder steps that are transformers to export; {where} "
                                          f"has 'passthrough'/None steps {odd!r}.")
                return {"steps": [describe(step, f"{where} step {name!r}") for name, step in fitted.steps]}
            defaults = {n: p.default for n, p in inspect.signature(type(fitted).__init__).parameters.items()}
            params, dropped = {}, []
            for name, value in fitted.get_params(deep=False).items():
                value = value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value
                if isinstance(value, (str, int, float, bool, type(None))):
                    params[name] = value
                    continue
                try:
                    default = name in defaults and (defaults[name] is value or bool(defaults[name] == value))
                except (TypeError, ValueError):
                    default = False
                if not default:
                    dropped.append(name)
            if dropped:
                raise ValidationError(
                    f"queue: expected encoder parameters that a YAML spec can hold (numbers, text, booleans, null) "
                    f"to export; {where} ({type(fitted).__name__}) has {dropped!r} = "
                    f"{[fitted.get_params(deep=False)[d] for d in dropped]!r}.")
            return {"class": f"{type(fitted).__module__.split('._')[0]}.{type(fitted).__name__}", "params": params}

        entry = describe(record.fitted, f"the {record.side} encoder {record.position}")
        if record.dtypes is not None:
            entry["dtypes"] = record.dtypes
        if record.columns_requested is not None:
            entry["columns"] = record.columns_requested
        return entry

    module_name = f"{path.stem}_models"
    sources = experiment.sources or {}
    missing = [k for k in ("fn_build", "fn_train") if not sources.get(k)]
    if missing:
        raise ValidationError(f"queue: expected stored source text of {missing!r} to export; queue {queue.id} has none.")
    header = '"""Functions of queue %d, exported by aiqc from their stored source."""\n\n' % queue.id
    metric_sources = {k.split(".", 1)[1]: v for k, v in sources.items() if k.startswith("metrics.") and v}
    missing_metrics = sorted(set(experiment.metric_directions or {}) - set(metric_sources))
    if missing_metrics:
        raise ValidationError(f"queue: expected stored source text of the metrics {missing_metrics!r} to export; "
                              f"queue {queue.id} has none.")
    path.with_name(module_name + ".py").write_text(
        header + "\n\n".join([sources[k] for k in FUNCTIONS if sources.get(k)] + list(metric_sources.values())))
    spec = {
        "db": None,
        "output_dir": None,
        "data": {**data_source, "label_column": splitset.label.column,
                 "feature_cols_excluded": splitset.feature.columns_excluded,
                 "label_encoder": encoder(label[0]) if label else None,
                 "feature_encoders": [encoder(e) for e in features] or None,
                 "size_test": splitset.size_test, "size_validation": splitset.size_validation,
                 "fold_count": splitset.fold_count, "bin_count": splitset.bin_count,
                 "random_state": splitset.random_state,
                 "parse_dates": [c for c, d in dataset.dtypes.items() if d.startswith("datetime64")] or None,
                 "name": splitset.name, "description": splitset.description, "tags": splitset.tags or None},
        "experiment": {"library": experiment.library.value, "analysis_type": experiment.analysis_type.value,
                       **{k: (f"{module_name}:{_function_name(sources[k], k)}" if sources.get(k) else None)
                          for k in FUNCTIONS},
                       "repeat_count": experiment.repeat_count, "hide_test": experiment.hide_test,
                       "hyperparameters": {k: _distribution_to_yaml(to_json(v)) for k, v in experiment.hyperparameters.items()},
                       "search": experiment.search,
                       "metrics": {name: {"fn": f"{module_name}:{_function_name(metric_sources[name], name)}",
                                          "direction": direction}
                                   for name, direction in (experiment.metric_directions or {}).items()} or None,
                       "metric": experiment.objective_metric, "seed": experiment.seed,
                       "name": experiment.name, "description": experiment.description,
                       "tags": experiment.tags or None},
        "run": {"workers": 1},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _function_name(source: str, default: str) -> str:
    import re

    match = re.search(r"^def\s+([A-Za-z_]\w*)\s*\(", source, flags=re.MULTILINE)
    return match.group(1) if match else default


def _distribution_to_yaml(value: Any) -> Any:
    from aiqc.search import MARK

    if isinstance(value, dict) and MARK in value:
        kind = value[MARK]
        if kind == "categorical":
            return {"categorical": value["choices"]}
        out = {kind: [value["low"], value["high"]], "log": value["log"]}
        if kind == "int" and value.get("step", 1) != 1:
            out["step"] = value["step"]
        return out
    return value
