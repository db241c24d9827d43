"""The where-expression parser and its SQL compiler, executed against real tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from rc2_platform.errors import ExpressionError, ExpressionSyntaxError
from rc2_platform.registry.expressions import (
    Between,
    BinaryOp,
    Identifier,
    InList,
    Literal,
    RangeLiteral,
    TrueExpression,
    parse_where,
    to_sql,
)

_MD = sa.MetaData()
VISITS = sa.Table(
    "visit",
    _MD,
    sa.Column("visit", sa.BigInteger, primary_key=True),
    sa.Column("band", sa.String(8)),
    sa.Column("tract", sa.Integer),
    sa.Column("exposure_time", sa.Float),
    sa.Column("begin_nsec", sa.BigInteger),
)
ROWS: list[dict[str, Any]] = [
    {
        "visit": v,
        "band": "gri"[v % 3],
        "tract": 9615 if v < 8 else 9697,
        "exposure_time": 30.0 + v,
        "begin_nsec": v * 10**15,
    }
    for v in range(1, 13)
]
COLUMNS = {
    "visit": VISITS.c.visit,
    "band": VISITS.c.band,
    "tract": VISITS.c.tract,
    "visit.exposure_time": VISITS.c.exposure_time,
    "visit.begin_nsec": VISITS.c.begin_nsec,
}


def resolve(name: str) -> sa.ColumnElement[Any]:
    try:
        return COLUMNS[name]
    except KeyError:
        raise ExpressionError(f"no column named {name!r}") from None


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.Engine]:
    eng = sa.create_engine("sqlite://")
    _MD.create_all(eng)
    with eng.begin() as conn:
        conn.execute(VISITS.insert(), ROWS)
    yield eng
    eng.dispose()


def select_visits(engine: sa.Engine, where: str, bind: dict[str, Any] | None = None) -> list[int]:
    clause = to_sql(parse_where(where), resolve, bind or {})
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(VISITS.c.visit).where(clause)).scalars())


def python_filter(pred: Any) -> list[int]:
    return sorted(r["visit"] for r in ROWS if pred(r))


CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("", {}, lambda r: True),
    (
        "tract = 9615 AND band IN ('g', 'r') AND visit > :v",
        {"v": 2},
        lambda r: r["tract"] == 9615 and r["band"] in "gr" and r["visit"] > 2,
    ),
    ("NOT (band = 'g' OR band = 'r')", {}, lambda r: r["band"] == "i"),
    (
        "visit <> 3 and visit != 4 and visit >= 2 and visit <= 6",
        {},
        lambda r: r["visit"] in (2, 5, 6),
    ),
    ("visit IN (1..4)", {}, lambda r: 1 <= r["visit"] <= 4),
    ("visit IN (1..11:5, 12)", {}, lambda r: r["visit"] in (1, 6, 11, 12)),
    ("visit NOT IN (1..10)", {}, lambda r: r["visit"] > 10),
    ("visit IN (:visits)", {"visits": [2, 3, 99]}, lambda r: r["visit"] in (2, 3)),
    ("visit IN :visits", {"visits": (5,)}, lambda r: r["visit"] == 5),
    ("visit NOT IN :visits", {"visits": {1, 2}}, lambda r: r["visit"] > 2),
    ("visit IN :visits", {"visits": []}, lambda r: False),
    ("visit BETWEEN 3 AND 5", {}, lambda r: 3 <= r["visit"] <= 5),
    ("visit NOT BETWEEN 3 AND 10", {}, lambda r: r["visit"] < 3 or r["visit"] > 10),
    ("visit.exposure_time * 2 - 60 > 10 + -2", {}, lambda r: r["exposure_time"] * 2 - 60 > 8),
    ("visit % 4 = 0", {}, lambda r: r["visit"] % 4 == 0),
    ("-visit < -10", {}, lambda r: r["visit"] > 10),
    ("visit.exposure_time > 35.5", {}, lambda r: r["exposure_time"] > 35.5),
    ("TRUE and visit = 1", {}, lambda r: r["visit"] == 1),
    ("visit.begin_nsec >= :t", {"t": 5 * 10**15}, lambda r: r["visit"] >= 5),
]


@pytest.mark.parametrize(("where", "bind", "pred"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_expression_selects_the_same_rows_as_python(
    engine: sa.Engine, where: str, bind: dict[str, Any], pred: Any
) -> None:
    assert select_visits(engine, where, bind) == python_filter(pred)


@pytest.mark.parametrize("where", [c[0] for c in CASES if c[0]])
def test_rendered_text_parses_back_to_the_same_tree(where: str) -> None:
    expr = parse_where(where)
    assert parse_where(str(expr)) == expr


def test_tree_shape_precedence_and_keywords_case_insensitive() -> None:
    expr = parse_where("a = 1 or b = 2 AnD c in (1..3) and d between 1 and 2")
    assert isinstance(expr, BinaryOp) and expr.op == "OR"
    rhs = expr.rhs
    assert isinstance(rhs, BinaryOp) and rhs.op == "AND"
    assert isinstance(rhs.rhs, Between)
    assert isinstance(rhs.lhs, BinaryOp) and isinstance(rhs.lhs.rhs, InList)
    assert rhs.lhs.rhs.items == (RangeLiteral(1, 3),)


def test_identifiers_and_binds_are_collected() -> None:
    expr = parse_where("visit.exposure_time > :t AND band IN (:b1, 'r') AND NOT (tract = :t)")
    assert expr.identifiers() == {"visit.exposure_time", "band", "tract"}
    assert expr.bind_names() == {"t", "b1"}


def test_empty_and_blank_mean_true() -> None:
    for text in ("", "   \n\t"):
        expr = parse_where(text)
        assert isinstance(expr, TrueExpression) and expr.is_true
        assert expr.identifiers() == set()


def test_string_with_doubled_quote_and_identifier_prefixed_by_keyword() -> None:
    expr = parse_where("android = 'it''s' AND notes = 1 AND inside = 2")
    assert isinstance(expr, BinaryOp)
    assert expr.identifiers() == {"android", "notes", "inside"}
    assert Literal("it's") in list(expr.walk())


def test_time_literal_becomes_tai_nanoseconds(engine: sa.Engine) -> None:
    expr = parse_where("visit.begin_nsec < T'1970-02-27T00:00:00'")
    assert select_visits(engine, str(expr)) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("where", "column", "expected"),
    [
        ("tract = ", 9, "end of expression"),
        ("(visit = 1", 11, "expected ')'"),
        ("visit IN ()", 11, "unexpected ')'"),
        ("visit = 1 AND AND band = 'g'", 15, "unexpected 'AND'"),
        ("visit === 1", 8, "unexpected"),
        ("band = 'g", 8, "unterminated string"),
        ("visit = 1 AND 5", 15, "not a condition"),
        ("visit + 1", 1, "not a condition"),
        ("visit IN (5..1:0)", 11, "step"),
    ],
)
def test_malformed_expression_points_at_the_offending_token(
    where: str, column: int, expected: str
) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_where(where)
    message = str(info.value)
    assert repr(where) in message
    assert f"column {column}" in message
    assert expected in message
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") - 4 == column - 1


def test_unknown_identifier_error_names_it_and_its_position() -> None:
    with pytest.raises(ExpressionError) as info:
        to_sql(parse_where("band = 'g' AND bnd = 'r'"), resolve, {})
    message = str(info.value)
    assert "bnd" in message and "column 16" in message and "no column named" in message


def test_unknown_identifier_from_keyerror_resolver() -> None:
    with pytest.raises(ExpressionError, match="unknown identifier 'detector'.*column 1"):
        to_sql(parse_where("detector = 1"), COLUMNS.__getitem__, {})


def test_missing_bind_and_list_bind_outside_in() -> None:
    with pytest.raises(ExpressionError, match=r"no value given for bind parameter :v.*column 9"):
        to_sql(parse_where("visit > :v"), resolve, {"w": 1})
    with pytest.raises(ExpressionError, match=r":v holds a list"):
        to_sql(parse_where("visit > :v"), resolve, {"v": [1, 2]})


@pytest.mark.parametrize("where", ["visit = 'abc'", "band IN ('g', 3)", "band BETWEEN 1 AND 2"])
def test_comparing_numbers_with_strings_is_an_error(where: str) -> None:
    with pytest.raises(ExpressionError, match="cannot compare"):
        to_sql(parse_where(where), resolve, {})


def test_range_outside_in_is_rejected() -> None:
    with pytest.raises(ExpressionSyntaxError):
        parse_where("visit = 1..3")


# --- SQL injection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "band = 'g'; DROP TABLE visit; --'",
        "band = 'g' OR 1=1 --",
        "band; drop = 1",
        "band = 'g' /* comment */",
        'band = "g"',
        "band = 'g'\x00 OR 1=1",
    ],
)
def test_injection_attempts_are_syntax_errors(engine: sa.Engine, where: str) -> None:
    with pytest.raises(ExpressionSyntaxError):
        parse_where(where)
    assert sa.inspect(engine).has_table("visit")


@pytest.mark.parametrize(
    ("where", "bind"),
    [
        ("band = 'g''; DROP TABLE visit; --'", {}),
        ("band = 'x'' OR ''1''=''1'", {}),
        ("band = :b", {"b": "g'; DROP TABLE visit; --"}),
        ("band IN :b", {"b": ["g' OR 1=1 --", 'r"); DROP TABLE visit']}),
    ],
)
def test_hostile_strings_are_bound_parameters_not_sql(
    engine: sa.Engine, where: str, bind: dict[str, Any]
) -> None:
    clause = to_sql(parse_where(where), resolve, bind)
    stmt = sa.select(VISITS.c.visit).where(clause)
    sql = str(stmt.compile(dialect=sqlite.dialect()))
    assert "DROP" not in sql.upper().replace("DROP_", "")
    assert "'" not in sql and "1=1" not in sql
    assert select_visits(engine, where, bind) == []
    assert sa.inspect(engine).has_table("visit")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(VISITS)).scalar() == len(ROWS)


def test_compiled_sql_contains_no_literal_values() -> None:
    clause = to_sql(
        parse_where("tract = 9615 AND band IN ('zz', 'yy') AND visit.exposure_time > 12.75"),
        resolve,
        {},
    )
    sql = str(sa.select(VISITS.c.visit).where(clause).compile(dialect=sqlite.dialect()))
    for text in ("9615", "zz", "yy", "12.75"):
        assert text not in sql


def test_identifier_is_only_resolved_never_pasted() -> None:
    seen: list[str] = []

    def recording(name: str) -> sa.ColumnElement[Any]:
        seen.append(name)
        return VISITS.c.band

    clause = to_sql(parse_where("weird_name = 'g'"), recording, {})
    sql = str(sa.select(VISITS.c.visit).where(clause).compile(dialect=sqlite.dialect()))
    assert seen == ["weird_name"] and "weird_name" not in sql


def test_identifier_node_keeps_dotted_name() -> None:
    expr = parse_where("visit.exposure_time > 1")
    assert isinstance(expr, BinaryOp) and expr.lhs == Identifier("visit.exposure_time")


# --- every backend ---------------------------------------------------------------------

BACKEND_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("tract = 9615 AND band IN ('g', 'r') AND visit > :v", {"v": 2}, CASES[1][2]),
    ("visit IN (1..11:5, 12)", {}, CASES[5][2]),
    (
        "visit % 4 = 0 OR visit IN :vs",
        {"vs": [1]},
        lambda r: r["visit"] % 4 == 0 or r["visit"] == 1,
    ),
    ("visit.begin_nsec >= :t", {"t": 5 * 10**15}, CASES[-1][2]),
    ("band = :b", {"b": "g'; DROP TABLE visit; --"}, lambda r: False),
]


def test_expressions_run_on_every_backend(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        _MD.create_all(engine)
        with engine.begin() as conn:
            conn.execute(VISITS.insert(), ROWS)
        for where, bind, pred in BACKEND_CASES:
            assert select_visits(engine, where, bind) == python_filter(pred), where
        assert sa.inspect(engine).has_table("visit")
    finally:
        engine.dispose()
