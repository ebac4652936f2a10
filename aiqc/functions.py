"""The user's functions: signature checks before anything is stored, serialisation so
another process can run them, and their source text for people to read."""

from __future__ import annotations

import ast
import difflib
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
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


#: the user functions that receive ``**hp`` (fn_predict does not)
READS_HP = ("fn_build", "fn_train", "fn_lose", "fn_optimize")

#: exceptions whose ``except`` makes the ``hp['key']`` reads of its ``try`` body optional
_LOOKUP_ERRORS = {"KeyError", "LookupError", "Exception", "BaseException"}


@dataclass
class _Reads:
    """What one function reads of its hyperparameters."""

    variable: str | None = None  # the name of its **kwargs parameter
    parameters: set[str] = field(default_factory=set)  # named parameters without a default
    subscripts: set[str] = field(default_factory=set)  # hp['key'], hp.pop('key')
    optional: set[str] = field(default_factory=set)  # hp.get('key'), guarded reads, parameters with a default


def hyperparameter_reads(fn: Callable, skip: int = 0) -> tuple[set[str], set[str]]:
    """(required, optional): the hyperparameter names ``fn`` reads directly.

    Required: ``hp['key']`` and ``hp.pop('key')``, where ``hp`` is the function's ``**kwargs``
    parameter (whatever it is called), and named parameters without a default (keyword-only
    ones, and positional ones after the first ``skip``, which aiqc fills itself). Optional:
    ``hp.get('key', ...)``, ``hp.setdefault``, ``hp.pop('key', default)``, reads of a key that
    is also tested (``'key' in hp``), assigned, read with ``get``, or read inside a ``try``
    that catches KeyError; and parameters with a default. Source that cannot be read or
    parsed (builtins, lambdas typed in a REPL, functions made with ``exec``) adds nothing, nor
    does a function that rebinds or updates ``hp``: only the signature is used then.
    """
    reads = _reads(fn, skip)
    return reads.parameters | reads.subscripts, reads.optional - reads.parameters - reads.subscripts


def check_grid_keys(functions: dict[str, Any], grid_names: list[str]) -> None:
    """Raise if a user function requires a hyperparameter that is not in the grid, naming the
    closest grid key. Functions whose source cannot be read are checked by signature only."""
    for name, fn in functions.items():
        if name not in READS_HP or fn is None or not callable(fn):
            continue
        skip = len(SIGNATURES[name][0])
        if name == "fn_optimize" and not optimize_takes_model(fn):
            skip = 0
        reads = _reads(fn, skip)
        missing = [(key, f"takes the parameter {key!r} (it has no default)") for key in sorted(reads.parameters)]
        missing += [(key, f"reads {reads.variable}[{key!r}]") for key in sorted(reads.subscripts - reads.parameters)]
        for key, how in missing:
            if key in grid_names:
                continue
            close = difflib.get_close_matches(key, grid_names, n=1, cutoff=0.7)
            hint = (f" (did you mean {close[0]!r}?)" if close else
                    f". Add {key!r} to hyperparameters, or give it a default"
                    + (f" with {reads.variable}.get({key!r}, default)" if how.startswith("reads") else ""))
            raise ValidationError(f"hyperparameters: {name} {how}, which is not in the grid; received keys "
                                  f"{list(grid_names)!r}{hint}.")


def _reads(fn: Callable, skip: int) -> _Reads:
    """The signature's named parameters, then the source's reads of its **kwargs."""
    reads = _Reads()
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return reads
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][skip:]
    named = [p for p in positional if p.kind == p.POSITIONAL_OR_KEYWORD]  # **hp cannot fill positional-only ones
    for parameter in named + [p for p in parameters if p.kind == p.KEYWORD_ONLY]:
        (reads.parameters if parameter.default is parameter.empty else reads.optional).add(parameter.name)
    reads.variable = next((p.name for p in parameters if p.kind == p.VAR_KEYWORD), None)
    node = _function_node(fn, reads.variable) if reads.variable else None
    if node is not None:
        visitor = _HpVisitor(reads.variable)
        for statement in (node.body if isinstance(node.body, list) else [node.body]):
            visitor.visit(statement)
        if not visitor.rebound:
            reads.subscripts = visitor.subscripts - visitor.guarded
            reads.optional |= visitor.guarded
    return reads


def _function_node(fn: Callable, variable: str) -> ast.AST | None:
    """The parsed ``def`` or ``lambda`` of ``fn``; None when its source cannot be read or
    parsed, when it is a wrapper (its source would be the wrapped function's), or when the
    source holds several lambdas with the same **kwargs name."""
    if hasattr(fn, "__wrapped__") or not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    name = fn.__name__
    kinds = (ast.Lambda,) if name == "<lambda>" else (ast.FunctionDef, ast.AsyncFunctionDef)
    found = [n for n in ast.walk(tree) if isinstance(n, kinds) and (name == "<lambda>" or n.name == name)]
    found = [n for n in found if n.args.kwarg is not None and n.args.kwarg.arg == variable]
    if name == "<lambda>" and len(found) != 1:
        return None
    return found[0] if found else None


class _HpVisitor(ast.NodeVisitor):
    """Collects the constant keys a function body reads of its **kwargs ``hp``."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        self.subscripts: set[str] = set()  # hp['key'] read, or hp.pop('key')
        self.guarded: set[str] = set()  # read with get / setdefault / a default, tested with `in`, assigned
        self.rebound = False  # hp assigned, updated or shadowed: its keys are anyone's guess
        self._tolerant = 0  # inside a try that catches KeyError

    def _is_hp(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == self.variable

    @staticmethod
    def _key(node: ast.AST) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802 (ast's naming)
        if node.id == self.variable and not isinstance(node.ctx, ast.Load):
            self.rebound = True

    def visit_arg(self, node: ast.arg) -> None:  # a nested function or lambda with its own hp
        if node.arg == self.variable:
            self.rebound = True

    def visit_Subscript(self, node: ast.Subscript) -> None:  # noqa: N802
        key = self._key(node.slice) if self._is_hp(node.value) else None
        if key is not None:
            if isinstance(node.ctx, ast.Load) and not self._tolerant:
                self.subscripts.add(key)
            else:
                self.guarded.add(key)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:  # noqa: N802
        function = node.func
        if isinstance(function, ast.Attribute) and self._is_hp(function.value):
            key = self._key(node.args[0]) if node.args else None
            if function.attr in ("get", "setdefault") and key is not None:
                self.guarded.add(key)
            elif function.attr == "pop" and key is not None:
                (self.guarded if len(node.args) > 1 or self._tolerant else self.subscripts).add(key)
            elif function.attr in ("update", "clear", "popitem", "__setitem__", "__delitem__"):
                self.rebound = True
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:  # noqa: N802
        operands = [node.left, *node.comparators]
        for left, operator, right in zip(operands, node.ops, operands[1:]):
            container = right.func.value if (isinstance(right, ast.Call) and isinstance(right.func, ast.Attribute)
                                             and right.func.attr == "keys") else right
            if isinstance(operator, (ast.In, ast.NotIn)) and self._is_hp(container) and self._key(left) is not None:
                self.guarded.add(self._key(left))
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:  # noqa: N802
        catches = any(_catches_lookup(handler.type) for handler in node.handlers)
        self._tolerant += catches
        for statement in node.body:
            self.visit(statement)
        self._tolerant -= catches
        for statement in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(statement)

    visit_TryStar = visit_Try  # noqa: N815


def _catches_lookup(handler: ast.AST | None) -> bool:
    """Whether an ``except`` clause catches KeyError (bare, KeyError, LookupError, Exception...)."""
    if handler is None:
        return True
    if isinstance(handler, ast.Tuple):
        return any(_catches_lookup(element) for element in handler.elts)
    name = handler.attr if isinstance(handler, ast.Attribute) else getattr(handler, "id", None)
    return name in _LOOKUP_ERRORS


def source_text(fn: Any) -> str | None:
    """The function's source, dedented; None when it has none (or is None)."""
    if fn is None:
        return None
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None


def user_objects(value: Any) -> list[Any]:
    """The classes and functions of the user's own modules that ``value`` refers to (its
    class, a Pipeline step's class, a FunctionTransformer's function, ...), in the order
    pickling meets them, ``__main__``'s (a script's, a notebook's) included; those of installed
    packages, of aiqc and of the standard library are left out."""
    import inspect
    import pickle

    import cloudpickle

    found: dict[int, Any] = {}

    def is_users(candidate: Any) -> bool:
        name = getattr(candidate, "__module__", None) or ""
        module = sys.modules.get(name)
        if name == "__main__":
            return module is not None
        return (module is not None and getattr(module, "__file__", None) is not None
                and name.split(".")[0] not in sys.stdlib_module_names and not _is_installed(module))

    class Scanner(cloudpickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            for candidate in (obj, type(obj)):
                if (inspect.isclass(candidate) or inspect.isfunction(candidate)) and id(candidate) not in found \
                        and is_users(candidate):
                    found[id(candidate)] = candidate
            return super().reducer_override(obj)

    class Discard:
        def write(self, data: bytes) -> int:
            return len(data)

    Scanner(Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return list(found.values())


def dumps_by_value(value: Any) -> bytes:
    """cloudpickle ``value`` with the user's own modules (those :func:`user_objects` finds)
    pickled by value, so a process that cannot import them (a worker in another directory,
    another machine) can still load it; installed packages stay by reference."""
    import pickle

    import cloudpickle

    registered = []
    already = cloudpickle.list_registry_pickle_by_value()  # the user's own registrations stay
    for module in {sys.modules[o.__module__] for o in user_objects(value)}:
        if module.__name__ in already or module.__name__ == "__main__":  # __main__: by value anyway
            continue
        cloudpickle.register_pickle_by_value(module)
        registered.append(module)
    try:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def dumps(functions: dict[str, Any]) -> bytes:
    """Serialise the user's functions by value, so a worker started from another terminal
    (that cannot import the user's notebook or script) can still run them."""
    return dumps_by_value(functions)


def _is_installed(module: Any) -> bool:
    """Modules of installed packages (and aiqc itself) are pickled by reference."""
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path or module.__name__.split(".")[0] == "aiqc"
