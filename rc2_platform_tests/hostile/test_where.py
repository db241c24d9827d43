"""Hostile where-expressions and bind values: a result or a one-line error, never a crash.

Integers beyond 64 bits, chains of hundreds of OR / NOT terms, deep arithmetic, floats
that overflow, values the database cannot compute; and (property) any text built from
the language's tokens and junk either fails to parse or runs as a query.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rc2_platform.butler import Butler
from rc2_platform.errors import Rc2Error
from rc2_platform_tests.hostile.conftest import (
    RUN,
    expect_clean,
    expect_cli_clean,
    expect_cli_refusal,
    expect_refusal,
    tally,
)

#: Expressions that must be refused (exit 1, one line).
REFUSED = [
    "detector = 99999999999999999999999",
    "detector = -99999999999999999999999",
    "detector = " + "9" * 5000,
    "detector IN (1..99999999999999999999)",
    "detector IN (1..10:0)",
    "detector = 1.5e400",
    " OR ".join(["detector = 1"] * 501),
    " AND ".join(["detector != 1"] * 600),
    "1" + " + 1" * 500 + " = detector",
    "- " * 300 + "detector = 1",
    "detector = 'x\x00y'",
    "visit > T'not a time'",
    "band > 1",
    "nosuch = 1",
    "detector = :missing",
    "visit = 1; DROP TABLE dataset",
    "detector IN ()",
    "(" * 200 + "detector = 1" + ")" * 199,
    "band = 'unterminated",
    "\x1b[2J detector = 1",
]
#: Expressions that must give a clean answer: a result, or a one-line error.
ANSWERED = [
    " OR ".join(["detector = 1"] * 500),
    " OR ".join(f"visit = {i}" for i in range(300)),
    "NOT " * 5000 + "detector = 1",
    "NOT " * 5001 + "detector = 1",
    "(" * 500 + "detector = 1" + ")" * 500,
    "detector = -9223372036854775808",
    "detector = 9223372036854775807",
    "detector / 0 = 1",
    "detector * 9223372036854775807 * 4 > 0",
    "band * 3 = 'g'",
    "band + 1 = 2",
    "band = '\x1b]0;pwned\x07'",
    "detector IN (0..9223372036854775807:1000000000000000000)",
    "visit.exposure_time > 1e300",
]
BINDS = ["99999999999999999999", "-99999999999999999999", "9" * 5000, "1.0e999", "nan", "\x00"]


def _ids(values: list[str]) -> list[str]:
    return [repr(v)[:40] for v in values]


@pytest.mark.parametrize("where", REFUSED, ids=_ids(REFUSED))
def test_hostile_where_expressions_are_refused(butler: Butler, where: str) -> None:
    result = expect_cli_refusal(["query-data-ids", butler.root, "detector", "--where", where])
    assert len(result.output) < 2000 and "\x1b" not in result.output
    expect_refusal(butler, lambda: butler.query_datasets("summary", where=where))


@pytest.mark.parametrize("where", ANSWERED, ids=_ids(ANSWERED))
def test_long_chains_and_odd_values_give_a_clean_answer(butler: Butler, where: str) -> None:
    expect_cli_clean(["query-datasets", butler.root, "summary", "-c", RUN, "--where", where])
    expect_clean(butler, lambda: butler.query_data_ids(["visit", "detector"], where=where))


@pytest.mark.parametrize("value", BINDS, ids=_ids(BINDS))
def test_hostile_bind_values(butler: Butler, value: str) -> None:
    expect_cli_clean(
        ["query-data-ids", butler.root, "detector", "--where", "detector = :v", "--bind",
         f"v={value}"]
    )  # fmt: skip


API_BINDS = [2**64, -(2**64), 10**5000, object(), {"a": 1}, b"x"]


@pytest.mark.parametrize(
    "value", API_BINDS, ids=["2**64", "-2**64", "10**5000", "object", "dict", "bytes"]
)
def test_hostile_bind_values_through_the_api(butler: Butler, value: object) -> None:
    expect_refusal(
        butler,
        lambda: butler.query_data_ids(["detector"], where="detector = :v", bind={"v": value}),
    )
    expect_refusal(
        butler,
        lambda: butler.query_data_ids(
            ["detector"], where="detector IN (:v)", bind={"v": [1, value]}
        ),
    )


_TOKENS = st.sampled_from(
    ["detector", "visit", "band", "instrument", "physical_filter", "exposure", "day_obs",
     "visit.exposure_time", "nosuch", "tract", "=", "!=", "<", ">", "<=", ">=", "+", "-", "*",
     "/", "%", "AND", "OR", "NOT", "IN", "BETWEEN", "(", ")", ",", "..", ":", ":v", ":nosuch",
     "1", "0", "-1", "2", "99999999999999999999", "9223372036854775808", "1.5", "1e400", "'g'",
     "'x''y'", "'", "T'2020-01-01T00:00:00'", "T'bad'", "TRUE", "FALSE", "\x00", "\x1b"]
)  # fmt: skip
_EXPRESSIONS = st.lists(_TOKENS | st.text(max_size=3), max_size=25).map(" ".join)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=_EXPRESSIONS)
def test_any_text_is_a_parse_error_or_a_query_that_runs(butler: Butler, where: str) -> None:
    try:
        rows = butler.query_data_ids(["visit", "detector"], where=where, bind={"v": 1})
    except Rc2Error as exc:
        assert str(exc).strip()
        return
    except Exception:
        tally("traceback")
        raise
    assert isinstance(rows, list)
