"""The user's functions: signature checks before anything is stored, serialisation so
another process can run them, and their source text for people to read."""

from __future__ import annotations

import inspect
import sys
import textwrap
from typing import Any, Callable

from aiqc.exceptions import ValidationError

#: name -> (positional parameters it receives, whether it also receives **hp, required)
SIGNATURES = {
    "fn_build": (("features_shape", "label_shape"), True, True),
    "fn_train": (("model", "loser", "optimizer", "samples_train", "samples_evaluate"), True, True),
    "fn_lose": ((), True, False),
    "fn_optimize": (("model",), True, False),
    "fn_predict": (("model", "samples_predict"), False, False),
}


def _parameters(fn: Callable) -> tuple[list[inspect.Parameter], bool, set[str]]:
    """(positional parameters, has **kwargs, keyword-acceptable names)."""
    signature = inspect.signature(fn)
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_keyword = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    names = {p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return positional, var_keyword, names


def optimize_takes_model(fn: Callable) -> bool:
    """``fn_optimize(model, **hp)`` or, for optimizers that need no model, ``fn_optimize(**hp)``."""
    positional, _, _ = _parameters(fn)
    return bool(positional) and (positional[0].name == "model" or positional[0].default is positional[0].empty)


def check_function(name: str, fn: Any, hyperparameter_names: list[str]) -> None:
    """Raise if ``fn`` cannot be called the way aiqc will call it."""
    expected_positional, gets_hp, required = SIGNATURES[name]
    shape = f"{name}({', '.join(expected_positional + (('**hp',) if gets_hp else ()))})"
    if fn is None:
        if required:
            raise ValidationError.expected(name, f"a function {shape}", fn)
        return
    if not callable(fn):
        raise ValidationError.expected(name, f"a function {shape}", fn)
    try:
        positional, var_keyword, names = _parameters(fn)
    except (TypeError, ValueError) as error:
        raise ValidationError.expected(name, f"a function {shape} with an inspectable signature", fn) from error
    accepts = len(positional) >= len(expected_positional) or any(
        p.kind == p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
    if name == "fn_optimize":  # fn_optimize(model, **hp) or fn_optimize(**hp)
        accepts = len([p for p in positional if p.default is p.empty]) <= 1
    required_extra = [p.name for p in positional[len(expected_positional):] if p.default is p.empty]
    if not accepts or (required_extra and not set(required_extra) <= set(hyperparameter_names)):
        received = f"{getattr(fn, '__name__', 'function')}{inspect.signature(fn)}"
        raise ValidationError(f"{name}: expected a function {shape}; received {received}.")
    clash = [h for h in hyperparameter_names if h in expected_positional]
    if gets_hp and clash:
        raise ValidationError(
            f"hyperparameters: expected names other than {name}'s own parameters {list(expected_positional)!r}; "
            f"received {clash!r}."
        )
    if gets_hp and not var_keyword:
        unknown = [h for h in hyperparameter_names if h not in names]
        if unknown:
            raise ValidationError(
                f"hyperparameters: expected names that {name} accepts (it has no **hp); received "
                f"{unknown!r}, which {name}{inspect.signature(fn)} cannot take."
            )


def source_text(fn: Any) -> str | None:
    """The function's source, dedented; None when it has none (or is None)."""
    if fn is None:
        return None
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None


def dumps(functions: dict[str, Any]) -> bytes:
    """Serialise by value, so a worker started from another terminal (that cannot import
    the user's notebook or script) can still run them."""
    import cloudpickle

    modules = {getattr(fn, "__module__", None) for fn in functions.values() if fn is not None}
    registered = []
    for module_name in modules:
        module = sys.modules.get(module_name or "")
        if module is None or module_name == "__main__" or _is_installed(module):
            continue
        cloudpickle.register_pickle_by_value(module)
        registered.append(module)
    try:
        return cloudpickle.dumps(functions)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _is_installed(module: Any) -> bool:
    """Modules of installed packages (and aiqc itself) are pickled by reference."""
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path or module.__name__.split(".")[0] == "aiqc"
