"""Experiment specs as YAML: load, override (Hydra style), validate, build, export.

    data:        {datum: iris.tsv | path: file.csv, label_column, feature_cols_excluded,
                  label_encoder: {class: sklearn.preprocessing.OneHotEncoder, params: {}},
                  feature_encoders: [{class: ..., params: {}, dtypes: [float64] | columns: [...]}],
                  (any encoder may be a pipeline of steps instead of one class:
                   {steps: [{class: sklearn.impute.SimpleImputer, params: {strategy: median}},
                            {class: sklearn.preprocessing.StandardScaler}], columns: [...]}),
                  size_test, size_validation, fold_count, bin_count, random_state}
    experiment:  {library, analysis_type, fn_build: module:function, fn_train: module:function,
                  fn_lose, fn_optimize, fn_predict, repeat_count, hide_test,
                  hyperparameters: {name: [values] | {int: [low, high], log: true} | {float: [...]}
                                    | {categorical: [...]}},
                  search: null | {strategy, n_trials, metric, split, direction, seed, pruner, ...}}
    run:         {workers: 1}
    db:          null (AIQC_DB or the default) | path
    output_dir:  null (outputs/DATE/TIME) | path

Overrides: ``key=value`` changes an existing key, ``+key=value`` adds one, ``~key`` removes
one; in a sweep (``-m``) ``experiment.hyperparameters.NAME=a,b`` becomes that list.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aiqc.exceptions import ValidationError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from aiqc.orm import Queue

SECTIONS = {
    "data": {"datum", "path", "label_column", "feature_cols_excluded", "label_encoder", "feature_encoders",
             "size_test", "size_validation", "fold_count", "bin_count", "random_state", "name", "description",
             "parse_dates"},
    "experiment": {"library", "analysis_type", "fn_build", "fn_train", "fn_lose", "fn_optimize", "fn_predict",
                   "repeat_count", "hide_test", "hyperparameters", "search", "name", "description",
                   "metrics", "metric", "seed"},
    "run": {"workers", "threads"},
}
TOP = {"data", "experiment", "run", "db", "output_dir"}
FUNCTIONS = ("fn_build", "fn_train", "fn_lose", "fn_optimize", "fn_predict")


# --- loading and overriding -------------------------------------------------------------------
def load(path: str | Path, overrides: list[str] | None = None, multirun: bool = False) -> DictConfig:
    """The spec at ``path`` with ``overrides`` applied, as an OmegaConf DictConfig."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"config: expected an existing YAML file; received {str(path)!r} (no such file).")
    try:
        config = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError) as error:
        raise ValidationError(f"config: expected valid YAML in {str(path)!r}; {error}") from error
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
    for section, keys in SECTIONS.items():
        body = spec.get(section) or {}
        if not isinstance(body, dict):
            raise ValidationError.expected(section, "a mapping", body)
        for key in body:
            if key not in keys:
                raise ValidationError(f"{section}.{key}: expected a key among {sorted(keys)!r}; received unknown {key!r}.")
    required = {"data.label_column": "the name of one column", "experiment.library": "'keras' or 'pytorch'",
                "experiment.analysis_type": "an analysis type", "experiment.fn_build": "'module:function'",
                "experiment.fn_train": "'module:function'"}
    for key, expected in required.items():
        section, name = key.split(".")
        if spec[section].get(name) is None:
            raise ValidationError(f"{key}: expected {expected}; received nothing (the key is missing or null).")
    data = spec["data"]
    if ("datum" in data) == ("path" in data):
        raise ValidationError(f"data: expected exactly one of 'datum' (a bundled file) or 'path'; received "
                              f"{'both' if 'datum' in data else 'neither'}.")


def resolve_function(reference: Any, key: str, base: Path | None) -> Any:
    """``module:function`` -> the function; the config's folder and the working directory are searched."""
    if reference is None:
        return None
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise ValidationError.expected(key, "'module:function', e.g. 'models:fn_build'", reference)
    module_name, name = reference.split(":")
    for folder in (base, Path.cwd()):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValidationError(f"{key}: expected an importable module {module_name!r}; received {reference!r} ({error}).") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise ValidationError(f"{key}: expected a function {name!r} in module {module_name!r}; received {reference!r}.")
    return function


def _encoder(entry: Any, key: str) -> dict:
    """``{class: module.Name, params: {...}}`` or ``{steps: [{class: ..., params: {...}}, ...]}``
    (a ``make_pipeline`` of the steps; a step may have steps too), with ``dtypes`` or ``columns``
    -> the ``dict(sklearn_preprocess=..., ...)`` that ``Pipeline.Tabular.make`` takes."""
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
        path = step["class"]
        module_name, _, name = str(path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValidationError(f"{where}.class: expected an importable class such as "
                                  f"'sklearn.preprocessing.StandardScaler'; received {path!r}.") from error
        params = step.get("params") or {}
        if not isinstance(params, dict):
            raise ValidationError.expected(f"{where}.params", "a mapping of parameter: value", params)
        try:
            return cls(**params)
        except TypeError as error:
            raise ValidationError(f"{where}.params: {error}") from error

    transformer = build(entry, key, {"dtypes", "columns"})
    out = {"sklearn_preprocess": transformer}
    for field in ("dtypes", "columns"):
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


def build(spec: dict, base: Path | None = None) -> Queue:
    """Store the pipeline and the experiment of a spec in one transaction; return the Queue.
    Any error leaves the database as it was."""
    from aiqc import datum
    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment
    from aiqc.pipeline import Pipeline

    check_structure(spec)
    data, experiment = dict(spec["data"]), dict(spec["experiment"])
    source = datum.get_path(data.pop("datum")) if "datum" in data else data.pop("path")
    if "datum" not in spec["data"] and base is not None and not Path(source).is_absolute():
        source = str((base / source).resolve()) if (base / source).exists() else source
    if data.get("label_encoder") is not None:
        data["label_encoder"] = _encoder(data["label_encoder"], "data.label_encoder")
    if data.get("feature_encoders") is not None:
        if not isinstance(data["feature_encoders"], list):
            raise ValidationError.expected("data.feature_encoders", "a list of encoders", data["feature_encoders"])
        data["feature_encoders"] = [_encoder(e, f"data.feature_encoders[{i}]") for i, e in enumerate(data["feature_encoders"])]
    functions = {k: resolve_function(experiment.pop(k, None), f"experiment.{k}", base) for k in FUNCTIONS}
    if experiment.get("metrics") is not None:
        experiment["metrics"] = _custom_metrics(experiment["metrics"], base)
    hyperparameters = experiment.pop("hyperparameters", None)
    if hyperparameters is not None:
        if not isinstance(hyperparameters, dict):
            raise ValidationError.expected("experiment.hyperparameters", "a mapping of name: values", hyperparameters)
        hyperparameters = {k: _distribution(v, f"experiment.hyperparameters.{k}") for k, v in hyperparameters.items()}
    with ensure_setup().atomic():
        splitset = _prefixed("data", Pipeline.Tabular.make, df_or_path=source, **data)
        return _prefixed("experiment", Experiment.make, splitset_id=splitset.id, hyperparameters=hyperparameters,
                         **functions, **experiment)


def _custom_metrics(entries: Any, base: Path | None) -> dict:
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
            out[name] = (resolve_function(entry["fn"], f"{key}.fn", base), entry.get("direction", "maximize"))
        else:
            out[name] = resolve_function(entry, key, base)
    return out


def from_config(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Build the queue of a YAML spec (as ``aiqc run`` does, without running it): load it,
    apply ``overrides``, open its ``db`` if it names one, and store pipeline and experiment."""
    from aiqc.database import setup

    resolved = to_dict(load(path, overrides))
    check_structure(resolved)
    if resolved.get("db"):
        setup(resolved["db"])
    return build(resolved, base=Path(path).resolve().parent)


# --- export -----------------------------------------------------------------------------------
def export(queue: Any, path: str | Path) -> Path:
    """Write a YAML spec that reproduces ``queue`` (same data, splits, encoders, grid, seeds
    of the split), with the user's functions saved from their stored source to
    ``<name>_models.py`` beside it and, for DataFrame data, the data as parquet."""
    import yaml

    from aiqc.search import to_json

    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValidationError.expected("path", "a file path ending in .yaml", str(path))
    if not path.parent.is_dir():
        raise ValidationError(f"path: expected a file in an existing directory; received {str(path)!r}.")
    experiment = queue.experiment
    splitset = experiment.splitset
    dataset = splitset.label.dataset
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
                 "parse_dates": [c for c, d in dataset.dtypes.items() if d.startswith("datetime64")] or None},
        "experiment": {"library": experiment.library.value, "analysis_type": experiment.analysis_type.value,
                       **{k: (f"{module_name}:{_function_name(sources[k], k)}" if sources.get(k) else None)
                          for k in FUNCTIONS},
                       "repeat_count": experiment.repeat_count, "hide_test": experiment.hide_test,
                       "hyperparameters": {k: _distribution_to_yaml(to_json(v)) for k, v in experiment.hyperparameters.items()},
                       "search": experiment.search,
                       "metrics": {name: {"fn": f"{module_name}:{_function_name(metric_sources[name], name)}",
                                          "direction": direction}
                                   for name, direction in (experiment.metric_directions or {}).items()} or None,
                       "metric": experiment.objective_metric, "seed": experiment.seed},
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
