"""Fields a stage requires: every way into the stage checks them, the board
requests the missing ones, the admin page sets them and the audit log
records each change."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.keys import create_key
from app.audit.tables import AuditLog
from app.contacts.tables import Contact
from app.deals.service import (
    MissingFields,
    create_deal,
    move_deal,
    update_deal,
)
from app.deals.tables import Deal, Stage
from app.events.tables import Event
from app.imports.report import RowError
from app.imports.service import run_import
from app.merge import Edit
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user, unique
from tests.live_frames import next_event

pytestmark = pytest.mark.timeout(90)

STAGES = ("Prospecting", "Proposal", "Negotiation", "Won", "Lost")


async def ruled_pipeline() -> dict[str, Any]:
    """A pipeline whose Proposal needs amount and close date, and whose
    Negotiation needs a contact."""
    pipeline = await make_pipeline(STAGES)
    await require(pipeline["stages"][1], ["amount", "close_date"])
    await require(pipeline["stages"][2], ["contact"])
    return pipeline


async def require(stage_id: int, names: list[str]) -> None:
    await Stage.update({Stage.required_fields: names}).where(Stage.id == stage_id)


async def stored(deal_id: int) -> dict[str, Any]:
    row = await Deal.select().where(Deal.id == deal_id).first()
    assert row is not None
    return row


async def deal_events(deal_id: int) -> list[dict[str, Any]]:
    rows = (
        await Event.select(Event.kind, Event.changes)
        .where((Event.record_type == "deal") & (Event.record_id == deal_id))
        .order_by(Event.id)
    )
    return [{**row, "changes": json.loads(row["changes"])} for row in rows]


async def make_contact() -> int:
    rows = await Contact.insert(
        Contact(first_name="Ada", last_name=unique("Lovelace"))
    ).returning(Contact.id)
    return rows[0]["id"]


# The deal service: every writer goes through it.


async def test_move_into_stage_names_each_missing_field() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    await Deal.update({Deal.amount: None}).where(Deal.id == deal_id)
    before = await stored(deal_id)
    first, proposal = pipeline["stages"][:2]

    with pytest.raises(MissingFields) as refused:
        await move_deal(deal_id, proposal, first, user.id)

    assert refused.value.missing == ["amount", "close_date"]
    assert refused.value.stage_name == "Proposal"
    assert refused.value.message == (
        "Stage 'Proposal' needs amount and close date before a deal can enter it."
    )
    assert await stored(deal_id) == before
    assert await deal_events(deal_id) == []


async def test_move_with_the_fields_is_one_change() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    await Deal.update({Deal.amount: None}).where(Deal.id == deal_id)
    first, proposal = pipeline["stages"][:2]

    await move_deal(
        deal_id,
        proposal,
        first,
        user.id,
        {
            "amount": Edit(None, Decimal("1200.00")),
            "close_date": Edit(None, dt.date(2027, 3, 1)),
        },
    )

    row = await stored(deal_id)
    assert (row["stage"], row["amount"], row["close_date"]) == (
        proposal,
        Decimal("1200.00"),
        dt.date(2027, 3, 1),
    )
    assert row["version"] == 2
    events = await deal_events(deal_id)
    assert len(events) == 1
    assert set(events[0]["changes"]) == {"stage", "amount", "close_date"}


async def test_conflict_on_a_filled_field_writes_nothing() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    await Deal.update({Deal.amount: Decimal(50)}).where(Deal.id == deal_id)
    first, proposal = pipeline["stages"][:2]

    with pytest.raises(Exception, match="changed meanwhile: amount"):
        await move_deal(
            deal_id,
            proposal,
            first,
            user.id,
            {
                "amount": Edit(None, Decimal(900)),
                "close_date": Edit(None, dt.date(2027, 3, 1)),
            },
        )

    row = await stored(deal_id)
    assert (row["stage"], row["amount"], row["close_date"]) == (
        first,
        Decimal(50),
        None,
    )


async def test_edit_that_fills_fields_and_moves_passes() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="10")
    first, proposal = pipeline["stages"][:2]

    with pytest.raises(MissingFields, match="close date"):
        await update_deal(deal_id, {"stage": Edit(first, proposal)}, user.id)
    result = await update_deal(
        deal_id,
        {
            "stage": Edit(first, proposal),
            "close_date": Edit(None, dt.date(2027, 1, 31)),
        },
        user.id,
    )

    assert set(result.applied) == {"stage", "close_date"}
    assert (await stored(deal_id))["stage"] == proposal


async def test_leaving_or_staying_needs_no_fields() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, stage_index=1, close_date=dt.date(2027, 1, 1))
    proposal, won = pipeline["stages"][1], pipeline["stages"][3]

    # Rules apply on entry only: a deal already in the stage can change.
    await update_deal(deal_id, {"close_date": Edit(dt.date(2027, 1, 1), None)}, None)
    await move_deal(deal_id, won, proposal, user.id)

    assert (await stored(deal_id))["stage"] == won


async def test_new_deal_in_ruled_stage_rejected() -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    name = unique("Refused")

    with pytest.raises(MissingFields, match="close date"):
        await create_deal(
            {
                "pipeline": str(pipeline["id"]),
                "stage": str(pipeline["stages"][1]),
                "name": name,
                "amount": "100",
            },
            user.id,
        )

    assert not await Deal.exists().where(Deal.name == name)


DEALS_HEADER = (
    "Deal ID,Deal Name,Deal Stage,Pipeline,Amount,Close Date,Create Date,"
    "Deal Owner,Deal Type,Closed Lost Reason,Associated Company Domain,"
    "Associated Contact Email"
)


def deals_file(folder: Path, lines: list[str]) -> Path:
    """Write a HubSpot deals file with ``lines`` under its header."""
    folder.mkdir()
    path = folder / "deals.csv"
    path.write_text("\n".join([DEALS_HEADER, *lines]) + "\n")
    return path


async def test_import_rejects_rows_entering_stage(tmp_path: Path) -> None:
    pipeline_name = unique("Imported")
    marker = uuid.uuid4().hex[:8].upper()

    def line(key: str, stage: str, amount: str = "100") -> str:
        return (
            f"RULES-{marker}-{key},Deal {key},{stage},{pipeline_name},{amount},"
            "2025-03-01,2024-12-01,,New Business,,,"
        )

    first = deals_file(
        tmp_path / "first", [line("A", "Qualified to Buy"), line("B", "Contract Sent")]
    )
    await run_import("hubspot", [first])
    rows = await Stage.raw(
        "SELECT s.id FROM stage s JOIN pipeline p ON p.id = s.pipeline "
        "WHERE p.name = {} AND s.name = 'Contract Sent'",
        pipeline_name,
    )
    await require(rows[0]["id"], ["contact"])

    second = deals_file(
        tmp_path / "second",
        [
            line("A", "Contract Sent"),
            line("B", "Contract Sent", amount="250"),
            line("C", "Contract Sent"),
        ],
    )
    report = await run_import("hubspot", [second])

    reason = "needs contact before a deal can enter it"
    assert report.errors == [
        RowError("deals.csv", 2, "Deal Stage", "Contract Sent", reason),
        RowError("deals.csv", 4, "Deal Stage", "Contract Sent", reason),
    ]
    stored_rows = await Deal.raw(
        "SELECT d.external_key, d.amount, s.name FROM deal d "
        "JOIN stage s ON s.id = d.stage WHERE d.external_key LIKE {} "
        "ORDER BY d.external_key",
        f"hubspot:RULES-{marker}-%",
    )
    assert [(row["name"], str(row["amount"])) for row in stored_rows] == [
        ("Qualified to Buy", "100.00"),
        ("Contract Sent", "250.00"),
    ]


# The board: the move request and the form that requests the fields.


async def test_board_move_requests_missing_fields(server) -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    await Deal.update({Deal.amount: None}).where(Deal.id == deal_id)
    first, proposal = pipeline["stages"][:2]
    session = Session(server.url)
    await session.sign_in(user.email)
    watcher = Session(server.url)
    await watcher.sign_in(user.email)
    socket = await watcher.live(f"topic=pipeline:{pipeline['id']}")

    asked = await session.post(
        f"/deals/{deal_id}/stage", {"stage": proposal, "from_stage": first}
    )

    assert asked.status_code == 422
    assert 'id="stage-entry" hx-swap-oob="true"' in asked.text
    assert "Proposal needs amount and close date" in asked.text
    assert 'name="amount"' in asked.text
    assert 'name="close_date"' in asked.text
    assert 'name="contact"' not in asked.text
    assert f'name="from_stage" value="{first}"' in asked.text

    saved = await session.post(
        f"/deals/{deal_id}/stage",
        {
            "stage": proposal,
            "from_stage": first,
            "amount": "1,500",
            "base_amount": "",
            "close_date": "2027-04-30",
            "base_close_date": "",
        },
    )

    assert saved.status_code == 204
    frame = await next_event(socket)
    assert f"afterbegin:#stage-{proposal}-cards" in frame
    assert "1,500" in frame
    row = await stored(deal_id)
    assert (row["stage"], row["amount"]) == (proposal, Decimal("1500.00"))
    assert len(await deal_events(deal_id)) == 1
    await socket.close()
    await session.close()
    await watcher.close()


async def test_invalid_value_in_the_form_names_it(server) -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    await Deal.update({Deal.amount: None}).where(Deal.id == deal_id)
    first, proposal = pipeline["stages"][:2]
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}/stage",
        {
            "stage": proposal,
            "from_stage": first,
            "amount": "lots",
            "base_amount": "",
            "close_date": "2027-04-30",
            "base_close_date": "",
        },
    )

    assert response.status_code == 422
    assert "Amount &#39;lots&#39; is not an amount" in response.text
    assert 'value="lots"' in response.text
    assert 'value="2027-04-30"' in response.text
    assert (await stored(deal_id))["stage"] == first
    await session.close()


async def test_entry_form_after_concurrent_move(server) -> None:
    user = await make_user(name=unique("Mover"))
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="0")
    first, proposal, won = (pipeline["stages"][i] for i in (0, 1, 3))
    await move_deal(deal_id, won, first, user.id)
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}/stage",
        {
            "stage": proposal,
            "from_stage": first,
            "amount": "10",
            "base_amount": "0.00",
            "close_date": "2027-04-30",
            "base_close_date": "",
        },
    )

    assert response.status_code == 409
    assert f"afterbegin:#stage-{won}-cards" in response.text
    assert '<div id="stage-entry" hx-swap-oob="true"></div>' in response.text
    assert (await stored(deal_id))["stage"] == won
    await session.close()


async def test_contact_choices_search_within_scope(server) -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline)
    contact_id = await make_contact()
    row = await Contact.select(Contact.last_name).where(Contact.id == contact_id)
    last_name = row[0]["last_name"]
    session = Session(server.url)
    await session.sign_in(user.email)
    first, negotiation = pipeline["stages"][0], pipeline["stages"][2]

    asked = await session.post(
        f"/deals/{deal_id}/stage", {"stage": negotiation, "from_stage": first}
    )
    found = await session.get(
        f"/deals/{deal_id}/entry-choices/contact",
        params={"search": last_name},
        headers={"hx-request": "true"},
    )
    unknown = await session.get(
        f"/deals/{deal_id}/entry-choices/stage", headers={"hx-request": "true"}
    )
    saved = await session.post(
        f"/deals/{deal_id}/stage",
        {
            "stage": negotiation,
            "from_stage": first,
            "contact": str(contact_id),
            "base_contact": "",
        },
    )

    assert asked.status_code == 422
    assert f'hx-get="/deals/{deal_id}/entry-choices/contact"' in asked.text
    assert found.status_code == 200
    assert f'<option value="{contact_id}">Ada {last_name}</option>' in found.text
    assert unknown.status_code == 400
    assert saved.status_code == 204
    assert (await stored(deal_id))["contact"] == contact_id
    await session.close()


async def test_edit_form_refusal_names_stage_and_fields(server) -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, amount="10")
    first, proposal = pipeline["stages"][:2]
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}",
        {"stage": str(proposal), "base_stage": str(first), "name": "Renamed"},
    )

    assert response.status_code == 422
    assert (
        "Stage &#39;Proposal&#39; needs close date before a deal can enter it."
        in response.text
    )
    row = await stored(deal_id)
    assert row["stage"] == first
    assert row["name"] != "Renamed"
    await session.close()


# The API, workflow rules and the admin page.


async def test_api_problem_names_missing_fields(server) -> None:
    user = await make_user()
    pipeline = await ruled_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    issued = await create_key(user.id, unique("Key"), {"deal": "write"}, None)

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
        response = await api.patch(
            f"/api/v1/deals/{deal_id}",
            json={"stage": pipeline["stages"][2]},
            headers={"authorization": f"Bearer {issued.token}", "if-match": '"1"'},
        )

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["field"] == "stage"
    assert body["value"] == "Negotiation"
    assert body["missing_fields"] == ["contact"]
    assert "needs contact" in body["detail"]
    assert (await stored(deal_id))["version"] == 1


async def test_workflow_move_missing_fields_fails_the_run(rules) -> None:
    pipeline = await ruled_pipeline()
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None,
        "deal",
        f"Rule {marker}",
        {
            "trigger": {"kind": "updated"},
            "conditions": {
                "type": "group",
                "match": "all",
                "items": [
                    {
                        "type": "condition",
                        "field": "name",
                        "op": "contains",
                        "value": marker,
                    }
                ],
            },
            "actions": [{"kind": "move", "value": str(pipeline["stages"][2])}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    deal_id = await make_deal(pipeline)
    before = await stored(deal_id)

    await update_deal(deal_id, {"name": Edit(before["name"], f"Deal {marker}")}, None)

    row = await stored(deal_id)
    assert row["name"] == f"Deal {marker}"
    assert row["stage"] == pipeline["stages"][0]
    runs = await RuleRun.select().where(RuleRun.rule == rule_id)
    assert [run["outcome"] for run in runs] == ["failed"]
    assert "'Negotiation' needs contact" in runs[0]["error"]


async def test_admin_sets_rules_and_they_are_audited(server) -> None:
    admin = await make_user("admin")
    pipeline = await make_pipeline(STAGES)
    proposal = pipeline["stages"][1]
    session = Session(server.url)
    await session.sign_in(admin.email)

    # Other tests' pipelines may fill several pages, so every page is read.
    first = await session.get("/admin/pipelines/", headers={"accept": "text/html"})
    pages = re.search(r"page 1 of ([\d,]+)<", first.text)
    count = int(pages.group(1).replace(",", "")) if pages else 1
    listed = [first] + [
        await session.get(
            f"/admin/pipelines/?page={number}", headers={"accept": "text/html"}
        )
        for number in range(2, count + 1)
    ]
    page = await session.get(
        f"/admin/pipelines/{pipeline['id']}", headers={"accept": "text/html"}
    )
    shown = [str(stage) for stage in pipeline["stages"]]
    saved = await session.http.post(
        f"/admin/pipelines/{pipeline['id']}",
        data={
            "stage": shown,
            f"required.{proposal}": ["close_date", "amount"],
            "_csrf_token": session.csrf_token,
        },
    )

    assert all(response.status_code == 200 for response in listed)
    link = f'href="/admin/pipelines/{pipeline["id"]}"'
    assert any(link in response.text for response in listed)
    assert page.status_code == 200
    assert f'name="required.{proposal}" value="contact"' in page.text
    assert saved.status_code in (302, 303)
    row = await Stage.select(Stage.required_fields).where(Stage.id == proposal)
    assert row[0]["required_fields"] == ["amount", "close_date"]
    audit = (
        await AuditLog.select()
        .where((AuditLog.record_type == "stage") & (AuditLog.record_id == proposal))
        .order_by(AuditLog.id)
    )
    assert len(audit) == 1
    assert audit[0]["actor_id"] == admin.id
    changes = audit[0]["changes"]
    if isinstance(changes, str):
        changes = json.loads(changes)
    assert changes == {"required_fields": [[], ["amount", "close_date"]]}

    # Saving the same boxes again changes nothing and logs nothing.
    await session.http.post(
        f"/admin/pipelines/{pipeline['id']}",
        data={
            "stage": shown,
            f"required.{proposal}": ["amount", "close_date"],
            "_csrf_token": session.csrf_token,
        },
    )
    assert (
        await AuditLog.count().where(
            (AuditLog.record_type == "stage") & (AuditLog.record_id == proposal)
        )
        == 1
    )
    await session.close()


async def test_admin_form_rejects_unknown_field_and_stage(server) -> None:
    admin = await make_user("admin")
    pipeline = await make_pipeline(STAGES)
    other = await make_pipeline(STAGES)
    proposal = pipeline["stages"][1]
    session = Session(server.url)
    await session.sign_in(admin.email)

    unknown_field = await session.http.post(
        f"/admin/pipelines/{pipeline['id']}",
        data={
            "stage": str(proposal),
            f"required.{proposal}": "name",
            "_csrf_token": session.csrf_token,
        },
    )
    foreign_stage = await session.http.post(
        f"/admin/pipelines/{pipeline['id']}",
        data={
            "stage": str(other["stages"][1]),
            f"required.{other['stages'][1]}": "amount",
            "_csrf_token": session.csrf_token,
        },
    )

    assert unknown_field.status_code == 422
    assert re.search(r"Required field &#39;name&#39; is not one of", unknown_field.text)
    assert foreign_stage.status_code == 422
    assert "is not a stage of this pipeline" in foreign_stage.text
    rows = await Stage.select(Stage.required_fields).where(
        Stage.id.is_in([proposal, other["stages"][1]])
    )
    assert all(row["required_fields"] == [] for row in rows)
    await session.close()


async def test_admin_pages_are_for_admins_only(server) -> None:
    rep = await make_user("sales_rep")
    pipeline = await make_pipeline(STAGES)
    session = Session(server.url)
    await session.sign_in(rep.email)

    page = await session.get(
        f"/admin/pipelines/{pipeline['id']}", headers={"accept": "text/html"}
    )
    post = await session.post(
        f"/admin/pipelines/{pipeline['id']}",
        {
            "stage": str(pipeline["stages"][1]),
            f"required.{pipeline['stages'][1]}": "amount",
        },
        htmx=False,
    )

    assert page.status_code == 403
    assert post.status_code == 403
    rows = await Stage.select(Stage.required_fields).where(
        Stage.id == pipeline["stages"][1]
    )
    assert rows[0]["required_fields"] == []
    await session.close()
