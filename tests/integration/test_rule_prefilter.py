"""The SQL prefilter of rule conditions against the Python evaluator.

Each case runs the condition both ways over the same rows in PostgreSQL:
every record that ``evaluate`` accepts must be a SQL candidate. Where the
prefilter translates a condition, its candidates must also equal the
accepted records on ASCII text, numbers and dates, so a translation that
filters nothing does not pass unnoticed.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
import pytest_asyncio

from app.tickets.service import create_ticket
from app.workflows import clock, planning
from app.workflows.conditions import Facts, Mismatch, compare, evaluate
from app.workflows.planning import get_plan, run_plan
from app.workflows.prefilter import MATCH_ALL, candidate_filter
from app.workflows.records import (
    RECORD_TYPES,
    RecordType,
    count_records,
    load_record,
    load_records_after,
    ticket_derived,
)
from app.workflows.schema import Condition, Group
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from app.workflows.timers import fire_due_timers
from tests.factories import make_deal, make_pipeline, token
from tests.integration.test_timer_planning import follow_up_rule
from tests.integration.test_workflow_schedule import scheduled_ticket_rule

pytestmark = pytest.mark.timeout(180)

ACCOUNT = RECORD_TYPES["account"]
DEAL = RECORD_TYPES["deal"]
TICKET = RECORD_TYPES["ticket"]

# Text values for the rows, with empty and whitespace values, text whose
# casefold() differs from PostgreSQL's lower(), LIKE wildcards and numbers
# written as text.
TEXTS: list[str | None] = [
    None,
    "",
    " ",
    "Straße",
    "STRASSE",
    "strasse",
    "İstanbul",
    "ISTANBUL",
    "istanbul",
    "\u0131stanbul",
    "100%",
    "100 percent",
    "a_b",
    "axb",
    "a\\b",
    " Padded ",
    "padded",
    "\tTabbed\x1c",
    "tabbed",
    "42",
    "0042",
    "42.0",
    "Kelvin",
    "\u212aelvin",
    "\u017ftreet",
    "street",
    "ﬁle",
    "file",
    "café",
    "CAFE",
    "x%y",
    "o'brien",
    "none",
    "\u00a0nbsp\u00a0",
]
EMPLOYEES = [None, 0, 5, 42, 100, 1000, -3]
REVENUES = [None, "0", "1.50", "1000.00", "12345.67", "-0.01", "42.00"]
STAMPS = [
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 6, 30, 8, 0, tzinfo=dt.UTC),
    dt.datetime(2024, 6, 30, 8, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
]
DATES = [None, dt.date(2024, 1, 1), dt.date(2024, 6, 30), dt.date(2023, 12, 31)]

TEXT_VALUES: list[Any] = [
    "ss",
    "SS",
    "straße",
    "Straße",
    "strasse",
    "i",
    "İ",
    "\u0131",
    "istanbul",
    "İstanbul",
    "%",
    "_",
    "100%",
    "a_b",
    "\\",
    "a\\b",
    "padded",
    " padded ",
    "PADDED",
    "tabbed",
    "42",
    "k",
    "kelvin",
    "s",
    "fi",
    "café",
    "é",
    "o'brien",
    "x",
    "none",
    "nbsp",
    " ",
    "100,percent",
    "42, 0042",
    5,
    True,
    ["strasse", "Padded "],
    ["İstanbul", "42"],
    ["", "x"],
]
NUMBER_VALUES: list[Any] = [
    "42",
    "42.0",
    " 42 ",
    "1,000",
    "0",
    "-3",
    "1e3",
    "1E+2",
    "abc",
    "NaN",
    "sNaN",
    "Infinity",
    "5,100",
    "1.5",
    "0042",
    "-0.01",
    "9" * 2000,
    "1e5000",
    42,
    1.5,
    True,
    ["42", "5"],
    ["42", "x"],
]
DATE_VALUES: list[Any] = [
    "2024-01-01",
    "2024-06-30T10:00:00+02:00",
    "2024-06-30T08:00:00",
    "2024-06-30",
    "20240101",
    "2024-W01-1",
    "not a date",
    "2024-13-01",
    "0001-01-01",
    "9999-12-31",
    "2024-01-01, 2024-06-30",
    ["2024-01-01", "2030-01-01"],
]
OPERATORS = [
    "equals",
    "not_equals",
    "contains",
    "starts_with",
    "greater",
    "less",
    "in",
    "is_empty",
    "changed",
    "changed_to",
]
# The facts besides the record: every condition on the actor, the trigger's
# details or the change holds for some records, so the prefilter must not
# drop those.
CHANGES = {"domain": ["old", "new"], "employees": [1, 2]}


def facts_of(record: dict[str, Any]) -> Facts:
    return Facts(
        record,
        changes=CHANGES,
        actor_teams=(1,),
        actor_roles=("admin",),
        details={"source": "web"},
    )


def accepts(group: Group, record: dict[str, Any]) -> bool:
    try:
        held, _ = evaluate(group, facts_of(record))
    except InvalidOperation:
        # "greater" and "less" with NaN raise in Decimal; nothing is accepted.
        return False
    return held


def one(field: str, op: str, value: Any) -> Group:
    return Group(items=[Condition(field=field, op=op, value=value)])


async def sql_candidates(
    record_type: RecordType, group: Group, ids: list[int]
) -> set[int]:
    where = candidate_filter(record_type, group)
    table = record_type.table._meta.tablename
    rows = await record_type.table.raw(
        f"SELECT id FROM {table} WHERE id = ANY({{}}) AND ({where.sql})",
        ids,
        *where.args,
    )
    return {row["id"] for row in rows}


@pytest_asyncio.fixture(loop_scope="session")
async def accounts() -> AsyncIterator[dict[int, dict[str, Any]]]:
    """Insert one account per text value, with numbers and times cycling,
    and return them as the evaluator reads them."""
    marker = token()
    ids = []
    for index, text in enumerate(TEXTS):
        revenue = REVENUES[index % len(REVENUES)]
        rows = await ACCOUNT.table.raw(
            "INSERT INTO account (name, domain, industry, country, employees, "
            "annual_revenue, created_at, updated_at) "
            "VALUES ({}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
            f"Prefilter {marker} {index}",
            text,
            text or "",
            TEXTS[(index * 7) % len(TEXTS)] or "",
            EMPLOYEES[index % len(EMPLOYEES)],
            Decimal(revenue) if revenue is not None else None,
            STAMPS[index % len(STAMPS)],
            STAMPS[(index + 2) % len(STAMPS)],
        )
        ids.append(rows[0]["id"])
    records = {}
    for account_id in ids:
        record = await load_record(ACCOUNT, account_id)
        assert record is not None
        records[account_id] = record
    yield records
    await ACCOUNT.table.raw("DELETE FROM account WHERE id = ANY({})", ids)


async def check_superset(
    record_type: RecordType, records: dict[int, dict[str, Any]], group: Group
) -> tuple[set[int], set[int]]:
    """Assert that the SQL candidates contain every accepted record; return
    both sets."""
    accepted = {
        record_id for record_id, record in records.items() if accepts(group, record)
    }
    candidates = await sql_candidates(record_type, group, list(records))
    missing = [records[record_id] for record_id in accepted - candidates]
    assert accepted <= candidates, f"{group} drops accepted records: {missing}"
    return accepted, candidates


def has_non_ascii(record: dict[str, Any], field: str) -> bool:
    value = record.get(field)
    return isinstance(value, str) and not value.isascii()


async def check_operators(
    record_type: RecordType,
    records: dict[int, dict[str, Any]],
    field: str,
    values: list[Any],
) -> int:
    """Check every operator with every value on ``field``; return how many
    of these conditions the prefilter translated.

    A translated condition on text may let through only text with a
    non-ASCII character that the evaluator rejects. On numbers and dates
    its candidates are exactly the accepted records.
    """
    translated = 0
    for op in OPERATORS:
        for value in values:
            group = one(field, op, value)
            accepted, candidates = await check_superset(record_type, records, group)
            if candidate_filter(record_type, group).matches_all:
                continue
            translated += 1
            wide = [
                records[record_id].get(field)
                for record_id in candidates - accepted
                if not has_non_ascii(records[record_id], field)
            ]
            assert wide == [], f"{group} lets through records it need not: {wide}"
    return translated


async def test_text_conditions_keep_accepted_records(
    accounts: dict[int, dict[str, Any]],
) -> None:
    domain = await check_operators(ACCOUNT, accounts, "domain", TEXT_VALUES)
    industry = await check_operators(ACCOUNT, accounts, "industry", TEXT_VALUES)

    assert domain > 50
    assert industry > 50


async def test_number_conditions_match_evaluator(
    accounts: dict[int, dict[str, Any]],
) -> None:
    for field in ("employees", "annual_revenue", "owner", "id"):
        translated = await check_operators(ACCOUNT, accounts, field, NUMBER_VALUES)
        assert translated > 20, field


async def test_timestamp_conditions_match_evaluator(
    accounts: dict[int, dict[str, Any]],
) -> None:
    translated = await check_operators(ACCOUNT, accounts, "created_at", DATE_VALUES)

    assert translated > 20


async def test_date_conditions_match_evaluator() -> None:
    pipeline = await make_pipeline()
    ids = [
        await make_deal(pipeline, name=f"Prefilter {token()}", close_date=day)
        for day in DATES
    ]
    records = {}
    for deal_id in ids:
        record = await load_record(DEAL, deal_id)
        assert record is not None
        records[deal_id] = record

    translated = await check_operators(DEAL, records, "close_date", DATE_VALUES)

    assert translated > 20


async def test_selective_text_condition_filters(
    accounts: dict[int, dict[str, Any]],
) -> None:
    cases = [
        ("contains", "padded"),
        ("starts_with", "100%"),
        ("contains", "a_b"),
        ("equals", "strasse"),
        ("in", "istanbul,42"),
        ("is_empty", None),
    ]
    for op, value in cases:
        group = one("domain", op, value)
        accepted, candidates = await check_superset(ACCOUNT, accounts, group)
        assert accepted, f"{group} accepts no record, so the case checks nothing"
        assert len(candidates) < len(accounts), f"{group} filters nothing"

    wildcard = await sql_candidates(
        ACCOUNT, one("domain", "contains", "a_b"), list(accounts)
    )
    domains = {accounts[record_id]["domain"] for record_id in wildcard}
    assert "a_b" in domains
    assert "axb" not in domains
    percent = await sql_candidates(
        ACCOUNT, one("domain", "contains", "%"), list(accounts)
    )
    percent_domains = {accounts[record_id]["domain"] for record_id in percent}
    assert "100 percent" not in percent_domains
    assert "x%y" in percent_domains


async def test_non_ascii_text_stays_candidate(
    accounts: dict[int, dict[str, Any]],
) -> None:
    ids = list(accounts)
    by_domain = {record["domain"]: record_id for record_id, record in accounts.items()}

    ss = await sql_candidates(ACCOUNT, one("domain", "contains", "ss"), ids)
    dotted = await sql_candidates(ACCOUNT, one("domain", "equals", "istanbul"), ids)
    kelvin = await sql_candidates(ACCOUNT, one("domain", "starts_with", "k"), ids)

    assert by_domain["Straße"] in ss
    assert by_domain["STRASSE"] in ss
    assert by_domain["İstanbul"] in dotted
    assert by_domain["ISTANBUL"] in dotted
    assert by_domain["\u0131stanbul"] in dotted
    assert by_domain["\u212aelvin"] in kelvin
    assert by_domain["Kelvin"] in kelvin


async def test_groups_keep_accepted_records(
    accounts: dict[int, dict[str, Any]],
) -> None:
    selective = Condition(field="domain", op="contains", value="padded")
    numbers = Condition(field="employees", op="greater", value="10")
    actor = Condition(field="actor.team", op="equals", value="1")
    detail = Condition(field="details.source", op="equals", value="web")
    changed = Condition(field="domain", op="changed")
    encrypted = Condition(field="city", op="equals", value="Berlin")
    groups = {
        "empty all": Group(),
        "empty any": Group(match="any"),
        "all with actor": Group(items=[selective, actor]),
        "all with detail": Group(items=[detail, numbers]),
        "any with changed": Group(match="any", items=[selective, changed]),
        "any translated": Group(match="any", items=[selective, numbers]),
        "any with encrypted": Group(match="any", items=[selective, encrypted]),
        "nested": Group(
            items=[
                Group(match="any", items=[selective, numbers]),
                Group(items=[actor, Group(match="any", items=[detail])]),
            ]
        ),
        "nested any of all": Group(
            match="any",
            items=[Group(items=[selective, actor]), Group(items=[numbers, changed])],
        ),
    }
    results = {}
    for name, group in groups.items():
        accepted, candidates = await check_superset(ACCOUNT, accounts, group)
        results[name] = (candidate_filter(ACCOUNT, group), accepted, candidates)

    assert results["empty all"][0] == MATCH_ALL
    assert results["empty any"][0] == MATCH_ALL
    assert results["any with changed"][0] == MATCH_ALL
    assert results["any with encrypted"][0] == MATCH_ALL
    assert not results["all with actor"][0].matches_all
    assert not results["all with detail"][0].matches_all
    assert not results["any translated"][0].matches_all
    assert not results["nested"][0].matches_all
    assert not results["nested any of all"][0].matches_all
    assert len(results["all with actor"][2]) < len(accounts)


async def test_random_text_keeps_accepted_values() -> None:
    """Random text and needles over an alphabet of case and whitespace
    traps, evaluated in PostgreSQL without a table."""
    alphabet = "aAsSkKiI _%\\\t\x1cßİ\u0131\u017fﬁé\u212a\u00a0\u0130\u0307"
    chooser = random.Random(20240630)
    texts = [
        "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 6)))
        for _ in range(400)
    ]
    for _ in range(150):
        needle = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 3)))
        for op in ("equals", "not_equals", "contains", "starts_with", "in"):
            condition = Condition(field="domain", op=op, value=needle)
            where = candidate_filter(ACCOUNT, Group(items=[condition]))
            rows = await ACCOUNT.table.raw(
                'SELECT n FROM unnest({}::text[]) WITH ORDINALITY AS v("domain", n) '
                f"WHERE {where.sql}",
                texts,
                *where.args,
            )
            candidates = {row["n"] - 1 for row in rows}
            for index, text in enumerate(texts):
                try:
                    held = compare(condition, Facts({"domain": text}))
                except Mismatch:
                    held = False
                assert not held or index in candidates, (
                    f"{op} {needle!r} drops {text!r}"
                )


def test_untranslatable_fields_match_all() -> None:
    cases = [
        (TICKET, "tags", "contains", "vip"),
        (TICKET, "attachments", "greater", "0"),
        (TICKET, "first_comment", "contains", "hello"),
        (TICKET, "description", "contains", "printer"),
        (ACCOUNT, "city", "equals", "Berlin"),
        (ACCOUNT, "phone", "starts_with", "+49"),
        (ACCOUNT, "actor.role", "equals", "admin"),
        (ACCOUNT, "details.source", "equals", "web"),
        (ACCOUNT, "domain", "changed_to", "x"),
        (ACCOUNT, "domain", "greater", "x"),
        (ACCOUNT, "employees", "contains", "4"),
        (ACCOUNT, "employees", "equals", "four"),
        (ACCOUNT, "domain", "equals", ""),
        (ACCOUNT, "domain", "contains", None),
        (ACCOUNT, "employees", "greater", "NaN"),
    ]
    for record_type, field, op, value in cases:
        group = one(field, op, value)
        assert candidate_filter(record_type, group) == MATCH_ALL, group


def test_needle_is_a_parameter() -> None:
    needle = "x'); DROP TABLE account; --"
    where = candidate_filter(ACCOUNT, one("domain", "contains", needle))

    assert needle not in where.sql
    assert "%x'); drop table account; --%" in where.args


async def test_derived_fields_are_declared() -> None:
    ticket_id = await create_ticket({"subject": f"Derived {token()}"}, None)
    derived = (await ticket_derived([ticket_id]))[ticket_id]

    assert set(derived) == set(TICKET.derived_fields)


async def test_reads_only_candidates() -> None:
    marker = token()
    matching = [
        await create_ticket({"subject": f"Read {marker} {n}"}, None) for n in range(3)
    ]
    other = await create_ticket({"subject": "Read elsewhere"}, None)
    where = candidate_filter(TICKET, one("subject", "contains", marker))
    # Earlier tests' tickets with non-ASCII text are candidates of every text
    # condition, so the reading starts at this test's first ticket.
    start = matching[0] - 1

    first = await load_records_after(TICKET, start, 2, where)
    rest = await load_records_after(TICKET, first[-1]["id"], 2, where)

    assert [record["id"] for record in first + rest] == matching
    assert other not in [record["id"] for record in first + rest]
    assert await count_records(TICKET, where) >= 3
    assert await count_records(TICKET, where) < await count_records(TICKET)


async def test_planning_drops_timers_of_ruled_out_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planning, "PLAN_BATCH", 2)
    marker = token()
    tickets = [
        await create_ticket({"subject": f"Plan {marker} {n}"}, None) for n in range(5)
    ]
    rule_id = await save_rule(
        None, "ticket", f"Plan {marker}", follow_up_rule(marker, 60), None
    )
    try:
        await set_enabled(rule_id, True, None)
        plan = await get_plan(rule_id)
        assert plan is not None
        first = await run_plan(rule_id, plan["generation"])
        armed = await WorkflowTimer.select(WorkflowTimer.record_id).where(
            WorkflowTimer.rule == rule_id
        )
        # Two records stop matching, one inside a full batch and the last.
        await WorkflowRule.raw(
            "UPDATE ticket SET subject = 'No longer matching' WHERE id = ANY({})",
            [tickets[1], tickets[4]],
        )
        await save_rule(
            rule_id, "ticket", f"Plan {marker}", follow_up_rule(marker, 90), None
        )
        again = await get_plan(rule_id)
        assert again is not None
        second = await run_plan(rule_id, again["generation"])
        left = await WorkflowTimer.select(WorkflowTimer.record_id).where(
            WorkflowTimer.rule == rule_id
        )

        # Earlier tests' tickets with non-ASCII text are candidates too, and
        # set no timer because their subjects lack the marker.
        assert first["done"] == first["total"]
        assert first["total"] >= 5
        assert sorted(row["record_id"] for row in armed) == tickets
        assert second["done"] == second["total"]
        assert second["total"] == first["total"] - 2
        assert sorted(row["record_id"] for row in left) == [
            tickets[0],
            tickets[2],
            tickets[3],
        ]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_scheduled_run_skips_ruled_out_records() -> None:
    marker = token()
    matching = [
        await create_ticket({"subject": f"Sweep {marker} {n}"}, None) for n in range(2)
    ]
    elsewhere = await create_ticket(
        {"subject": f"Sweep elsewhere {uuid.uuid4().hex}"}, None
    )
    weekday = (dt.datetime.now(dt.UTC).weekday() + 2) % 7
    rule_id = await scheduled_ticket_rule(
        marker, {"every": "weekly", "weekday": weekday, "hour": 6, "minute": 0}
    )
    try:
        [timer] = await WorkflowTimer.select().where(WorkflowTimer.rule == rule_id)
        clock.shift(timer["due_at"] - clock.now() + dt.timedelta(seconds=30))
        await fire_due_timers(limit=100_000)
        runs = await RuleRun.select(RuleRun.record_id, RuleRun.outcome).where(
            RuleRun.rule == rule_id
        )

        # Earlier tests' tickets with non-ASCII text are candidates, so they
        # may have runs whose conditions did not hold; an ASCII ticket
        # without the marker has none.
        done = [run["record_id"] for run in runs if run["outcome"] == "done"]
        assert sorted(done) == matching
        assert elsewhere not in [run["record_id"] for run in runs]
    finally:
        clock.reset()
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
