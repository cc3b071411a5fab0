"""Selecting and ordering runs for `harness ls`: a small, safe filter language, sort keys, and the flat columns
of the runs table.

The filter is Python expression syntax parsed with :mod:`ast` and evaluated by walking the tree; nothing is
ever passed to ``eval``. Allowed: comparisons (``== != < <= > >= in``, ``not in``, chains like ``1 < x < 2``),
``and``/``or``/``not``, parentheses, constants (numbers, strings, ``true``/``false``/``null`` or their Python
spellings, lists of constants for ``in``), and dotted names over the record (``metrics.rmse_test``,
``params.model.depth``, ``code.branch``, ``metrics["f1-score"]`` for keys that are not identifiers).
Shorthands, for a bare name: ``dirty`` (``code.dirty``), ``commit`` (``code.commit``), ``data``
(``data.snapshot``), ``sweep`` (``sweep.id``: ``sweep == "5e1f0a2c"`` selects a sweep's runs); with a field after
it a name is the record's own (``sweep.index``, ``data.files``). A name a run lacks is missing, and a
comparison with a missing value or between values of unlike types (a string and a number) is false, as in SQL.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.flatten import flat

MISSING: Any = object()
ALIASES = {
    "dirty": ("code", "dirty"),
    "commit": ("code", "commit"),
    "data": ("data", "snapshot"),
    "sweep": ("sweep", "id"),
}
_LITERALS = {"true": True, "false": False, "null": None, "none": None}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_NODE_NAMES = {
    "Call": "a function call",
    "BinOp": "arithmetic",
    "Lambda": "a lambda",
    "Dict": "a dict",
    "IfExp": "an if-expression",
    "NamedExpr": "an assignment",
}
MAX_DEPTH = 100  # levels of the parsed expression: each not, and/or, comparison, name part or list is one
WHERE_EXAMPLES = (
    'metrics.rmse_test < 40 and params.model == "linear_regression"\n'
    '  status == "failed" or dirty\n'
    '  params.model in ["baseline", "linear_regression"] and not params.oversample'
)


class QueryError(UsageError):
    """A --where or --sort the language does not accept; the message shows the expression and the position."""


Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Where:
    """A parsed --where expression: call it on a record; ``names`` are the dotted paths it reads."""

    text: str
    test: Callable[[dict[str, Any]], Any]
    names: frozenset[Path_]

    def __call__(self, record: dict[str, Any]) -> bool:
        return _truth(self.test(record))


def parse_where(text: str) -> Where:
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        # Python reports offset 0 for "ended too early": point past the end then.
        col = exc.offset - 1 if exc.offset else len(text)
        raise _error(text, col, f"not a valid expression ({exc.msg})") from None
    except RecursionError:  # the parser's own limit, far beyond MAX_DEPTH (`not` x 3000)
        raise _error(text, 0, f"nested more than {MAX_DEPTH} levels deep") from None
    _check_depth(text, tree)
    names: set[Path_] = set()
    _check(text, tree, names)
    return Where(text, _compile(tree), frozenset(names))


def _check_depth(text: str, tree: ast.expr) -> None:
    """Refuse an expression nested deeper than MAX_DEPTH before anything recurses over it (checking, compiling
    and evaluating all do): `not not ... x` or `a.b.c...` a thousand deep is no query, and would be a traceback."""
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _error(text, getattr(node, "col_offset", 0), f"nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))


def _error(text: str, col: int, what: str) -> QueryError:
    col = max(0, min(col, len(text)))
    return QueryError(
        f"--where: {what} at position {col + 1}:\n  {text}\n  {' ' * col}^",
        f"examples:\n  {WHERE_EXAMPLES}",
    )


def _check(text: str, node: ast.expr, names: set[Path_]) -> None:
    """Accept only the node types the evaluator knows; collect the dotted names."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(text, value, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(text, node.operand, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _error(text, node.col_offset, f"the comparison {type(op).__name__} is not supported")
        for part in (node.left, *node.comparators):
            _check(text, part, names)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise _error(text, node.col_offset, f"the constant {node.value!r} is not supported")
    elif isinstance(node, ast.List | ast.Tuple):
        for element in node.elts:
            if not isinstance(element, ast.Constant | ast.UnaryOp):
                raise _error(text, element.col_offset, "lists may hold only constants")
            _check(text, element, names)
    elif isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
        path = _path(text, node)
        if path is not None:
            names.add(path)
    else:
        what = _NODE_NAMES.get(type(node).__name__, type(node).__name__)
        raise _error(text, node.col_offset, f"{what} is not allowed (only comparisons, and/or/not, names, constants)")


def _path(text: str, node: ast.expr, bare: bool = True) -> Path_ | None:
    """The dotted path of a name (None for the literals true/false/null). A shorthand stands for its field only
    as a bare name: ``sweep`` is sweep.id, ``sweep.index`` the record's sweep.index."""
    if isinstance(node, ast.Name):
        if node.id.lower() in _LITERALS:
            return None
        return ALIASES.get(node.id, (node.id,)) if bare else (node.id,)
    if isinstance(node, ast.Attribute):
        base = _path(text, node.value, bare=False)
        if base is None:
            raise _error(text, node.col_offset, "a literal has no fields")
        return (*base, node.attr)
    if isinstance(node, ast.Subscript):
        key = node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise _error(text, key.col_offset, 'subscripts must be strings, like metrics["f1-score"]')
        base = _path(text, node.value, bare=False)
        if base is None:
            raise _error(text, node.col_offset, "a literal has no fields")
        return (*base, key.value)
    raise _error(text, node.col_offset, "expected a name like metrics.rmse_test")


def lookup(record: dict[str, Any], path: Path_) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _compile(node: ast.expr) -> Callable[[dict[str, Any]], Any]:
    """Turn a checked tree into nested closures, so 10,000 records cost one tree walk, not 10,000."""
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda r: all(_truth(p(r)) for p in parts)
        return lambda r: any(_truth(p(r)) for p in parts)
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda r: -operand(r)
        return lambda r: not _truth(operand(r))
    if isinstance(node, ast.Compare):
        first = _compile(node.left)
        steps = [(type(op), _compile(c)) for op, c in zip(node.ops, node.comparators, strict=True)]

        def compare(r: dict[str, Any]) -> bool:
            left = first(r)
            for op, comparator in steps:
                right = comparator(r)
                if not _compare(op, left, right):
                    return False
                left = right
            return True

        return compare
    if isinstance(node, ast.Constant):
        constant = node.value
        return lambda r: constant
    if isinstance(node, ast.List | ast.Tuple):
        elements = [_compile(e) for e in node.elts]
        return lambda r: [e(r) for e in elements]
    if isinstance(node, ast.Name) and node.id.lower() in _LITERALS:
        literal = _LITERALS[node.id.lower()]
        return lambda r: literal
    path = _path("", node) or ()
    return lambda r: lookup(r, path)


def _truth(value: Any) -> bool:
    return value is not MISSING and bool(value)


def _compare(op: type, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return False
    if op in (ast.In, ast.NotIn):
        if not isinstance(right, list | str | dict):
            return False
        if isinstance(right, str) and not isinstance(left, str):
            return False
    elif op not in (ast.Eq, ast.NotEq) and _kind(left) != _kind(right):
        return False
    try:
        return _COMPARE[op](left, right)
    except TypeError:
        return False


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def unknown_names(where: Where, records: Iterable[dict[str, Any]]) -> list[str]:
    """Names in the expression that no record has: almost always a typo, so `ls` says so instead of listing none."""
    missing = set(where.names)
    for record in records:
        missing = {p for p in missing if lookup(record, p) is MISSING}
        if not missing:
            return []
    return sorted(".".join(p) for p in missing)


def suggest(name: str, records: list[dict[str, Any]]) -> list[str]:
    known = {f"{group}.{key}" for r in records for group in ("params", "metrics") for key in flat(r.get(group) or {})}
    known |= {"status", "name", "id", "dirty", "commit", "exit_code", "started_at", "sweep", "sweep.index"}
    return difflib.get_close_matches(name, sorted(known), n=3)


# -- sorting --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    path: Path_
    descending: bool

    @property
    def name(self) -> str:
        return ("-" if self.descending else "") + ".".join(self.path)


def parse_sort(text: str) -> SortKey:
    raw = text.strip()
    descending = raw.startswith("-")
    body = raw.lstrip("-+").strip()
    if not body:
        raise QueryError(
            f"--sort {text!r}: expected a field", "for example --sort metrics.rmse_test or --sort -started_at"
        )
    try:
        node = ast.parse(body, mode="eval").body
        path = _path(body, node)
    except (SyntaxError, QueryError, RecursionError):
        raise QueryError(
            f"--sort {text!r}: expected a dotted field name", "for example --sort metrics.rmse_test (- for descending)"
        ) from None
    if path is None:
        raise QueryError(f"--sort {text!r}: expected a field, not a literal", "for example --sort metrics.rmse_test")
    return SortKey(path, descending)


def sort_records(records: list[dict[str, Any]], key: SortKey) -> list[dict[str, Any]]:
    """Stable sort by one field; runs without it come last in either direction."""
    present = [r for r in records if lookup(r, key.path) not in (MISSING, None)]
    absent = [r for r in records if lookup(r, key.path) in (MISSING, None)]

    def order(record: dict[str, Any]) -> tuple[int, Any]:
        value = lookup(record, key.path)
        kind = _kind(value)
        rank = {"bool": 0, "number": 1, "str": 2}.get(kind, 3)
        return (rank, value if rank < 3 else repr(value))

    return sorted(present, key=order, reverse=key.descending) + absent


# -- columns --------------------------------------------------------------------------------------------------


def select(
    records: list[dict[str, Any]],
    where: Where | None = None,
    sort: SortKey | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Filter, order (default: as given, newest first) and cut the list of records."""
    chosen = [r for r in records if where(r)] if where is not None else list(records)
    if sort is not None:
        chosen = sort_records(chosen, sort)
    return chosen[:limit] if limit is not None else chosen


def varying(records: list[dict[str, Any]], group: str) -> tuple[list[str], dict[str, Any]]:
    """The flattened keys of ``group`` (params or metrics) whose values differ across records, and the constant
    ones with their single value. Linear in the number of keys: a run with 300,000 metrics must not cost minutes."""
    values: dict[str, set[str]] = {}
    seen_in: dict[str, int] = {}  # how many records have the key
    flats = [flat(r.get(group) or {}) for r in records]
    for f in flats:
        for key, value in f.items():
            values.setdefault(key, set()).add(repr(value))
            seen_in[key] = seen_in.get(key, 0) + 1
    changing: list[str] = []
    constant: dict[str, Any] = {}
    for key in sorted(values):
        if len(values[key]) > 1 or seen_in[key] < len(flats):
            changing.append(key)
        else:
            constant[key] = flats[0][key]
    return changing, constant
