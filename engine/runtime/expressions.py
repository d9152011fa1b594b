"""A safe, allow-listed interpreter for the expressions and scripts in process diagrams.

SpiffWorkflow evaluates conditions and scripts with Python's eval/exec and full
builtins. Diagrams are edited in a browser by administrators, so this module
interprets a small subset of Python over the syntax tree instead: literals, names
from the task data, comparisons, boolean and bounded arithmetic, subscripts, a few
pure functions and plain-data methods, comprehensions, and in scripts assignments,
`if` and `for`. Nothing here calls eval, exec or compile, and no attribute of any
object is ever read except the allow-listed methods of dict, list, str and tuple.
"""

from __future__ import annotations

import ast
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import (
    BasePythonScriptEngineEnvironment,
)

from engine.runtime import case_data
from engine.runtime.bounds import (
    _DEADLINE,
    _SCOPING,
    _VIEWS,
    MAX_COMMAND_SECONDS,
    MAX_DATA_SIZE,
    ExpressionLimitExceeded,
    LoopScoping,
    UnsafeExpression,
    active_loop_scoping,
    check_data,
    cpu_seconds,
    dict_of,
    hash_checked,
    keys_of_pairs,
    loop_scoping,
    measured,
    set_of,
    sum_numbers,
    time_budget,
    where,
)

__all__ = ["MAX_COMMAND_SECONDS", "ExpressionLimitExceeded", "LoopScoping", "UnsafeExpression",
           "active_loop_scoping", "check", "check_data", "evaluate", "execute", "loop_scoping",
           "time_budget"]

MAX_SOURCE = 20_000  # characters of one expression or script
MAX_OPERATIONS = 200_000  # evaluation steps (nodes and loop iterations)
MAX_SECONDS = 1.0
MAX_LENGTH = 100_000  # elements of a collection or characters of a string
MAX_INT_BITS = 512
MAX_DEPTH = 60  # nesting of the syntax tree

Functions = Mapping[str, Callable[..., Any]]


def _len_range(*args: int) -> list[int]:
    bounded = range(*args)
    if len(bounded) > MAX_LENGTH:
        raise ExpressionLimitExceeded(f"range of {len(bounded):,} elements is too long")
    return list(bounded)


def _listed(fn: Callable[..., Iterable[Any]]) -> Callable[..., list[Any]]:
    def wrapper(*args: Any) -> list[Any]:
        return list(fn(*args))

    return wrapper


BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len, "min": min, "max": max, "sum": sum_numbers, "abs": abs, "round": round,
    "sorted": sorted, "any": any, "all": all, "str": str, "int": int, "float": float,
    "bool": bool, "list": list, "dict": dict_of, "set": set_of, "tuple": tuple,
    "range": _len_range, "enumerate": _listed(enumerate), "zip": _listed(zip),
    "reversed": _listed(reversed),
}

METHODS: dict[type, frozenset[str]] = {
    dict: frozenset({"get", "keys", "values", "items", "update", "pop", "setdefault"}),
    list: frozenset({"append", "extend", "index", "count", "pop", "insert", "remove"}),
    str: frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith",
                    "split", "join", "replace", "zfill", "isdigit", "count", "find"}),
    tuple: frozenset({"index", "count"}),
}
ALL_METHODS = frozenset().union(*METHODS.values())
PLAIN_SCALARS = (str, int, float, bool, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset)

_EXPRESSION_NODES: tuple[type, ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.Del, ast.List,
    ast.Tuple, ast.Set, ast.Dict, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not,
    ast.USub, ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv,
    ast.Mod, ast.Pow, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.IfExp, ast.Subscript, ast.Slice, ast.Call,
    ast.keyword, ast.Attribute, ast.JoinedStr, ast.FormattedValue, ast.ListComp,
    ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension,
)
_STATEMENT_NODES: tuple[type, ...] = (
    ast.Module, ast.Assign, ast.AugAssign, ast.If, ast.For, ast.Pass, ast.Expr, ast.Delete,
    ast.Break, ast.Continue,
)


def check(source: str, mode: str = "eval", allowed_functions: Iterable[str] = ()) -> None:
    """Refuse anything outside the subset; SyntaxError for what does not parse."""
    tree = _parse(source, mode)
    functions = set(BUILTINS) | set(allowed_functions)
    allowed = _EXPRESSION_NODES + (_STATEMENT_NODES if mode == "exec" else ())
    for node in ast.walk(tree):
        _check_node(node, allowed, functions)
    _check_depth(tree)


def _parse(source: str, mode: str) -> ast.AST:
    if len(source) > MAX_SOURCE:
        raise ExpressionLimitExceeded(f"the text is {len(source):,} characters; at most "
                                      f"{MAX_SOURCE:,} are accepted")
    if mode not in ("eval", "exec"):
        raise ValueError(f"unknown mode {mode!r}")
    return ast.parse(source.strip() if mode == "eval" else source, mode=mode)


def _where(node: ast.AST) -> dict[str, Any]:
    return where(node)


def _check_node(node: ast.AST, allowed: tuple[type, ...], functions: set[str]) -> None:
    if not isinstance(node, allowed):
        raise UnsafeExpression(f"{_describe(node)} is not allowed", **_where(node))
    if isinstance(node, ast.Name) and node.id.startswith("_"):
        raise UnsafeExpression(f"name {node.id!r} is not allowed (names starting with '_' "
                               "are reserved)", **_where(node))
    if isinstance(node, ast.Attribute):
        raise_for_attribute(node)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id.startswith("_"):
            raise UnsafeExpression(f"name {node.func.id!r} is not allowed (names starting "
                                   "with '_' are reserved)", **_where(node))
        if isinstance(node.func, ast.Name) and node.func.id not in functions:
            raise UnsafeExpression(f"call to {node.func.id!r} is not allowed: only these "
                                   f"functions are available: {', '.join(sorted(functions))}",
                                   **_where(node))
        if not isinstance(node.func, (ast.Name, ast.Attribute)):
            raise UnsafeExpression(f"calling {_describe(node.func)} is not allowed: only named "
                                   "functions and data methods may be called", **_where(node))
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise UnsafeExpression("unpacking arguments with * is not allowed",
                                       **_where(node))
        for kw in node.keywords:
            if kw.arg is None:
                raise UnsafeExpression("unpacking arguments with ** is not allowed",
                                       **_where(node))
    if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
        spec = node.format_spec
        if not (isinstance(spec, ast.JoinedStr)
                and all(isinstance(v, ast.Constant) for v in spec.values)):
            raise UnsafeExpression("computed format specifications are not allowed",
                                   **_where(node))
    if isinstance(node, ast.comprehension) and node.is_async:
        raise UnsafeExpression("async comprehensions are not allowed", **_where(node))
    if isinstance(node, ast.For) and node.orelse:
        raise UnsafeExpression("for ... else is not allowed", **_where(node))


def raise_for_attribute(node: ast.Attribute) -> None:
    """Attributes are only allowed as the method of a call, and only allow-listed names."""
    if node.attr.startswith("_"):
        raise UnsafeExpression(f"attribute access is not allowed: {node.attr}", **_where(node))
    if node.attr not in ALL_METHODS:
        raise UnsafeExpression(f"attribute access is not allowed: {node.attr}", **_where(node))


def _check_depth(tree: ast.AST) -> None:
    def depth(node: ast.AST, level: int) -> None:
        if level > MAX_DEPTH:
            raise ExpressionLimitExceeded("the expression is nested too deeply", **_where(node))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Attribute) and not (
                    isinstance(node, ast.Call) and node.func is child):
                raise UnsafeExpression(f"attribute access is not allowed: {child.attr}",
                                       **_where(child))
            depth(child, level + 1)

    depth(tree, 0)


def _describe(node: ast.AST) -> str:
    names = {
        ast.Lambda: "lambda", ast.FunctionDef: "def", ast.ClassDef: "class",
        ast.Import: "import", ast.ImportFrom: "import", ast.While: "while",
        ast.Global: "global", ast.Nonlocal: "nonlocal", ast.NamedExpr: "the := operator",
        ast.Yield: "yield", ast.YieldFrom: "yield", ast.Await: "await", ast.Try: "try",
        ast.With: "with", ast.Raise: "raise", ast.Assert: "assert", ast.Starred: "* unpacking",
        ast.MatMult: "the @ operator", ast.BitAnd: "bitwise operators",
        ast.BitOr: "bitwise operators", ast.BitXor: "bitwise operators",
        ast.LShift: "shift operators", ast.RShift: "shift operators",
        ast.Invert: "the ~ operator",
    }
    return names.get(type(node), type(node).__name__)


class _Break(Exception):  # noqa: N818 - control flow, not an error
    pass


class _Continue(Exception):  # noqa: N818 - control flow, not an error
    pass


class _Interpreter:
    """Evaluates one checked syntax tree against a scope of names."""

    def __init__(self, scope: dict[str, Any], readonly: Mapping[str, Any],
                 functions: Functions) -> None:
        self.scope = scope
        self.readonly = readonly
        self.functions = {**BUILTINS, **functions}
        self.steps = 0
        own = cpu_seconds() + MAX_SECONDS
        outer = _DEADLINE.get()
        if outer is not None and outer[0] < own:
            self.deadline, self.too_long = outer
        else:
            self.deadline, self.too_long = own, f"took more than {MAX_SECONDS} s"

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Evaluations nested in a function call (a policy's rule) share this deadline."""
        token = _DEADLINE.set((self.deadline, self.too_long))
        try:
            yield
        finally:
            _DEADLINE.reset(token)

    def tick(self, node: ast.AST) -> None:
        self.steps += 1
        if self.steps > MAX_OPERATIONS:
            raise ExpressionLimitExceeded(f"more than {MAX_OPERATIONS:,} steps", **_where(node))
        if self.steps % 1000 == 0:
            self.check_time(node)

    def check_time(self, node: ast.AST) -> None:
        """Refuse to go on past the deadline (checked around every call, too)."""
        if cpu_seconds() > self.deadline:
            raise ExpressionLimitExceeded(self.too_long, **_where(node))

    # Expressions ----------------------------------------------------------------------

    def eval(self, node: ast.AST) -> Any:
        self.tick(node)
        handler = getattr(self, f"_e_{type(node).__name__}", None)
        if handler is None:
            raise UnsafeExpression(f"{_describe(node)} is not allowed", **_where(node))
        return handler(node)

    def _e_Expression(self, node: ast.Expression) -> Any:
        return self.eval(node.body)

    def _e_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, PLAIN_SCALARS):
            raise UnsafeExpression("only text, numbers, booleans and None are allowed",
                                   **_where(node))
        return node.value

    def _e_Name(self, node: ast.Name) -> Any:
        name = node.id
        if name.startswith("_"):
            raise UnsafeExpression(f"name {name!r} is not allowed", **_where(node))
        if name in self.scope:
            return self.scope[name]
        if name in self.readonly:
            return self.readonly[name]
        if name in self.functions:
            raise UnsafeExpression(f"{name!r} is a function; call it", **_where(node))
        raise NameError(f"name '{name}' is not defined")

    def _e_List(self, node: ast.List) -> list[Any]:
        return _bounded([self.eval(e) for e in node.elts], node)

    def _e_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(_bounded([self.eval(e) for e in node.elts], node))

    def _e_Set(self, node: ast.Set) -> set[Any]:
        values = [self.eval(e) for e in node.elts]
        hash_checked(values, node)
        return set(values)

    def _e_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        pairs: list[tuple[Any, Any]] = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise UnsafeExpression("** unpacking is not allowed", **_where(node))
            pairs.append((self.eval(key), self.eval(value)))
        hash_checked([k for k, _ in pairs], node)
        return dict(pairs)

    def _e_BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for operand in node.values:
            value = self.eval(operand)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _e_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        _require_number(operand, node)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        raise UnsafeExpression(f"{_describe(node.op)} is not allowed", **_where(node))

    def _e_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        return _binary(node.op, left, right, node)

    def _e_Compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator)
            if isinstance(left, _CONTAINERS) or isinstance(right, _CONTAINERS):
                measured(node, left, right)  # comparing walks both
            if not _compare(op, left, right, node):
                return False
            left = right
        return True

    def _e_IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _e_Subscript(self, node: ast.Subscript) -> Any:
        container = self.eval(node.value)
        _require_data(container, node)
        key = self._slice(node.slice)
        return container[key]

    def _slice(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Slice):
            parts = [self.eval(p) if p is not None else None
                     for p in (node.lower, node.upper, node.step)]
            for part in parts:
                if part is not None and not isinstance(part, int):
                    raise UnsafeExpression("slice bounds must be integers", **_where(node))
            return slice(*parts)
        return self.eval(node)

    def _e_Call(self, node: ast.Call) -> Any:
        args = [self.eval(a) for a in node.args]
        kwargs = {kw.arg: self.eval(kw.value) for kw in node.keywords if kw.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise UnsafeExpression("** unpacking is not allowed", **_where(node))
        # Arguments are bounded data, and the deadline holds across every call: a call
        # into a function or a builtin cannot be interrupted, so it must be short.
        measured(node, *args, *kwargs.values())
        self.check_time(node)
        if isinstance(node.func, ast.Name):
            function = self.functions.get(node.func.id)
            if function is None:
                raise UnsafeExpression(f"call to {node.func.id!r} is not allowed",
                                       **_where(node))
            if node.func.id in ("str", "int", "float") and args:
                _require_plain(args[0], node)
            result = function(*args, **kwargs)
            self.check_time(node)
            return _checked_result(result, node)
        if isinstance(node.func, ast.Attribute):
            receiver = self.eval(node.func.value)
            result = self._method(receiver, node.func.attr, args, kwargs, node)
            self.check_time(node)
            return result
        raise UnsafeExpression("only named functions and data methods may be called",
                               **_where(node))

    def _method(self, receiver: Any, name: str, args: list[Any], kwargs: dict[str, Any],
                node: ast.AST) -> Any:
        allowed = METHODS.get(type(receiver))
        if allowed is None or name not in allowed:
            raise UnsafeExpression(f"attribute access is not allowed: {name} on "
                                   f"{type(receiver).__name__}", **_where(node))
        if isinstance(receiver, str):
            _check_str_method(receiver, name, args)
        if isinstance(receiver, dict) and name == "update" and args:
            keys = list(args[0]) if isinstance(args[0], dict) else keys_of_pairs(args[0])
            hash_checked([*receiver, *keys], node)
        if isinstance(receiver, list) and name in ("extend", "insert", "append"):
            added = len(args[0]) if name == "extend" and hasattr(args[0], "__len__") else 1
            if len(receiver) + added > MAX_LENGTH:
                raise ExpressionLimitExceeded("the list would grow too long", **_where(node))
        return _checked_result(getattr(receiver, name)(*args, **kwargs), node)

    def _e_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append(self._formatted(value))
            else:
                raise UnsafeExpression("unexpected part of an f-string", **_where(node))
        return _bounded("".join(parts), node)

    def _formatted(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        _require_plain(value, node)
        measured(node, value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion in (ord("s"), ord("a")):
            value = str(value)
        spec = ""
        if node.format_spec is not None:
            spec = self._e_JoinedStr(node.format_spec)  # type: ignore[arg-type]
            if any(ch.isdigit() for ch in spec) and max(
                    (int(n) for n in _numbers(spec)), default=0) > 1000:
                raise ExpressionLimitExceeded("format width too large", **_where(node))
        return format(value, spec)

    def _e_ListComp(self, node: ast.ListComp) -> list[Any]:
        return self._comprehend(node.generators, lambda: self.eval(node.elt), node)

    def _e_GeneratorExp(self, node: ast.GeneratorExp) -> list[Any]:
        return self._comprehend(node.generators, lambda: self.eval(node.elt), node)

    def _e_SetComp(self, node: ast.SetComp) -> set[Any]:
        values = self._comprehend(node.generators, lambda: self.eval(node.elt), node)
        hash_checked(values, node)
        return set(values)

    def _e_DictComp(self, node: ast.DictComp) -> dict[Any, Any]:
        pairs = self._comprehend(node.generators,
                                 lambda: (self.eval(node.key), self.eval(node.value)), node)
        hash_checked([k for k, _ in pairs], node)
        return dict(pairs)

    def _comprehend(self, generators: list[ast.comprehension], element: Callable[[], Any],
                    node: ast.AST) -> list[Any]:
        results: list[Any] = []
        saved = dict(self.scope)

        def loop(level: int) -> None:
            if level == len(generators):
                results.append(element())
                if len(results) > MAX_LENGTH:
                    raise ExpressionLimitExceeded("comprehension result too long",
                                                  **_where(node))
                return
            generator = generators[level]
            for value in _iterable(self.eval(generator.iter), node):
                self.tick(node)
                self._assign(generator.target, value)
                if all(self.eval(condition) for condition in generator.ifs):
                    loop(level + 1)

        try:
            loop(0)
        finally:
            # Comprehension variables do not leak into the task data.
            self.scope.clear()
            self.scope.update(saved)
        return results

    # Statements -----------------------------------------------------------------------

    def run(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.tick(statement)
            handler = getattr(self, f"_s_{type(statement).__name__}", None)
            if handler is None:
                raise UnsafeExpression(f"{_describe(statement)} is not allowed",
                                       **_where(statement))
            handler(statement)

    def _s_Expr(self, node: ast.Expr) -> None:
        self.eval(node.value)

    def _s_Pass(self, node: ast.Pass) -> None:
        return None

    def _s_Break(self, node: ast.Break) -> None:
        raise _Break

    def _s_Continue(self, node: ast.Continue) -> None:
        raise _Continue

    def _s_Assign(self, node: ast.Assign) -> None:
        value = self.eval(node.value)
        for target in node.targets:
            self._assign(target, value)

    def _s_AugAssign(self, node: ast.AugAssign) -> None:
        load: ast.expr
        if isinstance(node.target, ast.Name):
            load = ast.Name(id=node.target.id, ctx=ast.Load())
        elif isinstance(node.target, ast.Subscript):
            load = ast.Subscript(value=node.target.value, slice=node.target.slice,
                                 ctx=ast.Load())
        else:
            raise UnsafeExpression("augmented assignment target not allowed", **_where(node))
        ast.copy_location(load, node)
        value = _binary(node.op, self.eval(load), self.eval(node.value), node)
        self._assign(node.target, value)

    def _s_If(self, node: ast.If) -> None:
        self.run(node.body if self.eval(node.test) else node.orelse)

    def _s_For(self, node: ast.For) -> None:
        scoping = _SCOPING.get()
        before = set(self.scope) if scoping is None or scoping.enabled else None
        for value in _iterable(self.eval(node.iter), node):
            self.tick(node)
            self._assign(node.target, value)
            try:
                self.run(node.body)
            except _Break:
                break
            except _Continue:
                continue
        if before is not None:
            local = [name for name in self.scope if name not in before]
            for name in local:
                del self.scope[name]
            if local and scoping is not None:
                scoping.dropped = True

    def _s_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                _check_name(target)
                self.scope.pop(target.id, None)
            elif isinstance(target, ast.Subscript):
                container = self.eval(target.value)
                _require_data(container, node)
                del container[self._slice(target.slice)]
            else:
                raise UnsafeExpression("only names and items can be deleted", **_where(node))

    def _assign(self, target: ast.AST, value: Any) -> None:
        if isinstance(target, ast.Name):
            _check_name(target)
            self.scope[target.id] = value
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value)
            if not isinstance(container, (dict, list)):
                raise UnsafeExpression("only dict and list items can be assigned",
                                       **_where(target))
            container[self._slice(target.slice)] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(_iterable(value, target))
            if len(values) != len(target.elts):
                raise ValueError(f"expected {len(target.elts)} values to unpack, "
                                 f"got {len(values)}")
            for element, item in zip(target.elts, values, strict=True):
                self._assign(element, item)
        else:
            raise UnsafeExpression("assignment target not allowed", **_where(target))


def _check_name(node: ast.Name) -> None:
    if node.id.startswith("_"):
        raise UnsafeExpression(f"name {node.id!r} is not allowed (names starting with '_' "
                               "are reserved)", **_where(node))


def _numbers(text: str) -> list[str]:
    found, current = [], ""
    for ch in text:
        if ch.isdigit():
            current += ch
        elif current:
            found.append(current)
            current = ""
    return found + ([current] if current else [])


def _require_number(value: Any, node: ast.AST) -> None:
    if not isinstance(value, (int, float)):
        raise TypeError(f"a number is needed, not {type(value).__name__}")


def _require_plain(value: Any, node: ast.AST) -> None:
    if not isinstance(value, (*PLAIN_SCALARS, list, dict, tuple, set)):
        raise UnsafeExpression(f"values of type {type(value).__name__} cannot be converted "
                               "or formatted here", **_where(node))


def _require_data(value: Any, node: ast.AST) -> None:
    if not isinstance(value, (dict, list, tuple, str)):
        raise UnsafeExpression(f"cannot index a value of type {type(value).__name__}",
                               **_where(node))


def _iterable(value: Any, node: ast.AST) -> Iterable[Any]:
    if isinstance(value, (list, tuple, str, set, frozenset)):
        return list(value)
    if isinstance(value, (dict, *_VIEWS)):
        return list(value)
    raise UnsafeExpression(f"cannot loop over a value of type {type(value).__name__}",
                           **_where(node))


def _bounded(value: Any, node: ast.AST) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_LENGTH:
        raise ExpressionLimitExceeded(f"result of {len(value):,} elements is too long",
                                      **_where(node))
    return value


def _checked_result(value: Any, node: ast.AST) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) \
            and value.bit_length() > MAX_INT_BITS:
        raise ExpressionLimitExceeded("integer result too large", **_where(node))
    return _bounded(value, node)


def _check_str_method(receiver: str, name: str, args: list[Any]) -> None:
    if name == "zfill" and args and isinstance(args[0], int) and args[0] > MAX_LENGTH:
        raise ExpressionLimitExceeded("zfill width too large")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) \
            and isinstance(args[1], str):
        count = receiver.count(args[0]) if args[0] else len(receiver) + 1
        if len(receiver) + count * (len(args[1]) - len(args[0])) > MAX_LENGTH:
            raise ExpressionLimitExceeded("replace result too long")
    if name == "join" and args:
        parts = list(args[0]) if isinstance(args[0], (list, tuple)) else None
        if parts is None or not all(isinstance(p, str) for p in parts):
            raise TypeError("join needs a list of strings")
        if sum(map(len, parts)) + len(receiver) * max(len(parts) - 1, 0) > MAX_LENGTH:
            raise ExpressionLimitExceeded("join result too long")


def _binary(op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
    for value in (left, right):
        if not isinstance(value, (*PLAIN_SCALARS, list, tuple, dict, set)):
            raise UnsafeExpression(f"operators on {type(value).__name__} values are not "
                                   "allowed", **_where(node))
    if isinstance(op, ast.Pow):
        _require_number(left, node)
        _require_number(right, node)
        if isinstance(left, int) and isinstance(right, int):
            if right > 10_000 or (abs(left) > 1 and right * max(left.bit_length(), 1)
                                  > MAX_INT_BITS):
                raise ExpressionLimitExceeded("power too large", **_where(node))
        elif abs(right) > 1000:
            raise ExpressionLimitExceeded("power too large", **_where(node))
        return _checked_result(left ** right, node)
    if isinstance(op, ast.Mult):
        sequence = next((v for v in (left, right) if isinstance(v, (str, list, tuple))), None)
        if sequence is not None:
            times = right if sequence is left else left
            if not isinstance(times, int) or isinstance(times, bool):
                raise TypeError("a sequence can only be repeated an integer number of times")
            if len(sequence) * max(times, 0) > MAX_LENGTH:
                raise ExpressionLimitExceeded("repetition result too long", **_where(node))
            if not isinstance(sequence, str) and times > 1 and \
                    measured(node, sequence) * times > MAX_DATA_SIZE:
                raise ExpressionLimitExceeded(
                    f"repetition result too large: at most {MAX_DATA_SIZE:,} characters and "
                    "entries (a value repeated counts each time)", **_where(node))
        elif isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise ExpressionLimitExceeded("integer result too large", **_where(node))
    if isinstance(op, ast.Add) and isinstance(left, (str, list, tuple)) and \
            hasattr(right, "__len__") and len(left) + len(right) > MAX_LENGTH:
        raise ExpressionLimitExceeded("result too long", **_where(node))
    if isinstance(op, ast.Add) and isinstance(left, (list, tuple)):
        measured(node, left, right)
    if isinstance(op, ast.Mod) and isinstance(left, str):
        raise UnsafeExpression("%-formatting is not allowed; use an f-string", **_where(node))
    operators: dict[type, Callable[[Any, Any], Any]] = {
        ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    }
    function = operators.get(type(op))
    if function is None:
        raise UnsafeExpression(f"{_describe(op)} is not allowed", **_where(node))
    result = function(left, right)
    if isinstance(result, float) and math.isinf(result) and not (
            isinstance(left, float) and math.isinf(left)):
        raise OverflowError("numeric result too large")
    return _checked_result(result, node)


def _compare(op: ast.cmpop, left: Any, right: Any, node: ast.AST) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.Lt):
        return bool(left < right)
    if isinstance(op, ast.LtE):
        return bool(left <= right)
    if isinstance(op, ast.Gt):
        return bool(left > right)
    if isinstance(op, ast.GtE):
        return bool(left >= right)
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, (list, tuple, dict, set, frozenset, str)):
            raise TypeError(f"'in' needs a collection, not {type(right).__name__}")
        found = left in right
        return found if isinstance(op, ast.In) else not found
    if isinstance(op, ast.Is):
        return left is right
    if isinstance(op, ast.IsNot):
        return left is not right
    raise UnsafeExpression("comparison not allowed", **_where(node))


def _prepared(source: str, mode: str, functions: Functions) -> ast.AST:
    tree = _parse(source, mode)
    allowed = _EXPRESSION_NODES + (_STATEMENT_NODES if mode == "exec" else ())
    names = set(BUILTINS) | set(functions)
    for node in ast.walk(tree):
        _check_node(node, allowed, names)
    _check_depth(tree)
    return tree


def evaluate(expression: str, names: Mapping[str, Any],
             functions: Functions | None = None) -> Any:
    """Evaluate an expression over the given names (task data)."""
    tree = _prepared(expression, "eval", functions or {})
    interpreter = _Interpreter({}, names, functions or {})
    try:
        with interpreter.running():
            result = interpreter.eval(tree)
    except RecursionError as exc:
        raise ExpressionLimitExceeded("the expression is nested too deeply") from exc
    check_data({"the result": result})
    return result


def execute(script: str, names: dict[str, Any], functions: Functions | None = None,
            readonly: Mapping[str, Any] | None = None) -> None:
    """Run a script; names it assigns land in `names`."""
    tree = _prepared(script, "exec", functions or {})
    assert isinstance(tree, ast.Module)  # noqa: S101 - guaranteed by mode="exec"
    interpreter = _Interpreter(names, readonly or {}, functions or {})
    try:
        with interpreter.running():
            interpreter.run(tree.body)
    except (_Break, _Continue) as exc:
        raise UnsafeExpression("break/continue outside a loop") from exc
    except RecursionError as exc:
        raise ExpressionLimitExceeded("the script is nested too deeply") from exc
    check_data(names)  # before SpiffWorkflow copies it, and long before it is stored


class SafeEnvironment(BasePythonScriptEngineEnvironment):
    """SpiffWorkflow's script environment, on the safe interpreter."""

    def __init__(self, functions: Functions | None = None) -> None:
        super().__init__({})
        from engine.runtime.recorded import (
            wrap,  # answers are recorded in (and replayed from) events
        )

        self.functions = wrap(functions or {})

    def evaluate(self, expression: str, context: dict[str, Any],
                 external_context: Mapping[str, Any] | None = None) -> Any:
        names = {**(external_context or {}), **context}
        return evaluate(expression, names, self.functions)

    def execute(self, script: str, context: dict[str, Any],
                external_context: Mapping[str, Any] | None = None) -> bool:
        clash = set(self.functions).intersection(context)
        if clash:
            raise ValueError("task data would overwrite a predefined function; rename "
                             f"these fields: {', '.join(sorted(clash))}")
        execute(script, context, self.functions, external_context or {})
        return True


class SafeScriptEngine(case_data.KnowsRunningTask, PythonScriptEngine):
    """SpiffWorkflow's script engine with the safe environment and a static check."""

    def __init__(self, functions: Functions | None = None) -> None:
        super().__init__(environment=SafeEnvironment(functions))
        self.functions = dict(functions or {})

    def validate(self, expression: str) -> None:
        ast.parse(expression)
        check(expression, "eval", self.functions)
