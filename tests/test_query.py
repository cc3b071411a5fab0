"""The --where language, --sort and the column selection of `harness ls`, on plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from harness.runs.query import QueryError, parse_sort, parse_where, select, sort_records, unknown_names, varying


def rec(run_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": run_id,
        "status": "succeeded",
        "code": {"commit": "abc", "dirty": False},
        "params": {},
        "metrics": {},
    }
    base.update(fields)
    return base


RUNS = [
    rec("a", params={"model": "linear", "lr": 0.1, "opt": {"depth": 3}}, metrics={"rmse_test": 35.0}),
    rec("b", params={"model": "baseline", "lr": 0.1}, metrics={"rmse_test": 55.5, "f1-score": 0.5}),
    rec("c", status="failed", params={"model": "linear", "lr": 0.01, "oversample": True}, metrics={}),
    rec("d", code={"commit": "def", "dirty": True}, params={"model": "linear", "lr": 0.3}, metrics={"rmse_test": 39}),
]


def ids(where: str) -> list[str]:
    condition = parse_where(where)
    return [r["id"] for r in RUNS if condition(r)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("metrics.rmse_test < 40", ["a", "d"]),
        ('metrics.rmse_test < 40 and params.model == "linear"', ["a", "d"]),
        ('params.model == "baseline" or status == "failed"', ["b", "c"]),
        ("not dirty", ["a", "b", "c"]),
        ("dirty", ["d"]),
        ('commit == "def"', ["d"]),
        ("params.opt.depth >= 3", ["a"]),
        ("params.oversample == true", ["c"]),
        ("params.oversample", ["c"]),
        ("not params.oversample", ["a", "b", "d"]),  # missing is false, so `not` of it is true
        ('params.model in ["baseline", "other"]', ["b"]),
        ('params.model not in ("baseline",)', ["a", "c", "d"]),
        ("30 < metrics.rmse_test <= 39", ["a", "d"]),
        ('metrics["f1-score"] > 0.4', ["b"]),
        ("params.lr != 0.1", ["c", "d"]),
        ("metrics.rmse_test > -1", ["a", "b", "d"]),
        ('metrics.rmse_test < "40"', []),  # a number never compares with a string
        ("params.missing == null", []),  # a missing field is not null: it never matches
        ('(status == "failed" or dirty) and params.lr < 0.1', ["c"]),
    ],
)
def test_where_selects(where: str, expected: list[str]) -> None:
    assert ids(where) == expected


@pytest.mark.parametrize(
    ("where", "position", "what"),
    [
        ("metrics.rmse_test < ", 20, "not a valid expression"),  # just past the end: something is missing
        ('__import__("os").system("x")', 1, "a function call is not allowed"),
        ("metrics.rmse_test + 1 < 2", 1, "arithmetic is not allowed"),
        ("metrics.x[0] == 1", 11, "subscripts must be strings"),
        ("params.lr is None", 1, "the comparison Is is not supported"),
        ("params.model == [params.x]", 18, "lists may hold only constants"),
        ("lambda: 1", 1, "a lambda is not allowed"),
    ],
)
def test_bad_where_names_the_position(where: str, position: int, what: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_where(where)
    message = info.value.message
    assert what in message and f"at position {position}:" in message
    expression_line, caret_line = message.splitlines()[1:3]
    assert expression_line == f"  {where.strip()}"
    assert caret_line.index("^") == position + 1  # under the offending character
    assert info.value.hint and "metrics.rmse_test < 40" in info.value.hint


def test_where_never_evaluates_python() -> None:
    for text in ("().__class__", "open('x')", "[x for x in y]", "{'a': 1}", "a if b else c", "(x := 1)"):
        with pytest.raises(QueryError):
            parse_where(text)


def test_where_reports_the_names_it_reads() -> None:
    where = parse_where('metrics.rmse_test < 40 and params.model == "x" and not dirty')
    assert where.names == {("metrics", "rmse_test"), ("params", "model"), ("code", "dirty")}
    assert unknown_names(parse_where("metrics.rmse_tset < 40"), RUNS) == ["metrics.rmse_tset"]
    assert unknown_names(where, RUNS) == []


def test_sort_ascending_descending_and_missing_last() -> None:
    by_rmse = parse_sort("metrics.rmse_test")
    assert [r["id"] for r in sort_records(RUNS, by_rmse)] == ["a", "d", "b", "c"]
    assert [r["id"] for r in sort_records(RUNS, parse_sort("-metrics.rmse_test"))] == ["b", "d", "a", "c"]
    assert [r["id"] for r in sort_records(RUNS, parse_sort("params.model"))] == ["b", "a", "c", "d"]  # stable


@pytest.mark.parametrize("bad", ["", "-", "metrics.", "1 + 2", "true"])
def test_bad_sort_is_a_clear_error(bad: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_sort(bad)
    assert "--sort" in info.value.message and info.value.hint


def test_select_filters_sorts_and_limits() -> None:
    chosen = select(RUNS, parse_where('params.model == "linear"'), parse_sort("-params.lr"), limit=2)
    assert [r["id"] for r in chosen] == ["d", "a"]


def test_varying_keeps_only_columns_that_differ() -> None:
    changing, constant = varying(RUNS[:2], "params")
    assert changing == ["model", "opt.depth"]  # opt.depth is missing in b: that differs too
    assert constant == {"lr": 0.1}
    changing, constant = varying(RUNS, "metrics")
    assert changing == ["f1-score", "rmse_test"] and constant == {}
