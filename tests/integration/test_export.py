"""CSV exports of boards and lists: scopes, hidden fields, safe cells, audit
rows and streaming."""

from __future__ import annotations

import csv
import io
import tracemalloc
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from app.access.permissions import SYSTEM
from app.access.tables import Role
from app.accounts.tables import Account
from app.audit.tables import AuditLog
from app.boards import BoardFilter
from app.campaigns.tables import Campaign
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.exports.csvtext import cell
from app.exports.queries import ExportFilter, export_chunks
from app.exports.routes import stream_csv
from app.leads.tables import Lead
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    make_account,
    make_contact,
    make_deal,
    make_pipeline,
    make_role,
    make_team,
    make_user,
    shows_hidden_amount,
    unique,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


async def signed_in(server: Any, email: str) -> Session:
    session = Session(server.url)
    await session.sign_in(email)
    return session


def parse_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


async def test_rep_exports_only_their_team_deals(server) -> None:
    team_a, team_b = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team_a)
    colleague = await make_user("sales_rep", team=team_a)
    outsider = await make_user("sales_rep", team=team_b)
    pipeline = await make_pipeline()
    own = await make_deal(pipeline, owner=rep.id, team=team_a, name=unique("Own"))
    shared = await make_deal(
        pipeline, owner=colleague.id, team=team_a, name=unique("Team")
    )
    other = await make_deal(
        pipeline, owner=outsider.id, team=team_b, name=unique("Other")
    )
    session = await signed_in(server, rep.email)

    response = await session.get(f"/exports/deals.csv?pipeline={pipeline['id']}")
    filtered = await session.get(
        f"/exports/deals.csv?pipeline={pipeline['id']}&person={rep.id}"
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    ids = {int(row["id"]) for row in parse_csv(response.content)}
    assert ids == {own, shared}
    assert other not in ids
    assert {int(row["id"]) for row in parse_csv(filtered.content)} == {own}
    await session.close()


async def test_hidden_fields_are_left_out(server) -> None:
    agent = await make_user("support_agent")
    pipeline = await make_pipeline()
    await make_deal(pipeline, amount=HIDDEN_AMOUNT, name=unique("Hidden amount"))
    session = await signed_in(server, agent.email)

    response = await session.get(f"/exports/deals.csv?pipeline={pipeline['id']}")

    assert response.status_code == 200
    rows = parse_csv(response.content)
    assert len(rows) == 1
    assert "amount" not in rows[0]
    assert "name" in rows[0]
    assert not shows_hidden_amount(response.text)
    await session.close()


@pytest.mark.parametrize("field", ["account", "contact"])
async def test_hidden_deal_links_are_left_out(server, field: str) -> None:
    role = await make_role({"deal": {"read": "all"}}, {"deal": {field: "hidden"}})
    viewer = await make_user(role)
    marker = uuid.uuid4().hex[:10]
    account = await make_account(name=f"Account {marker}")
    contact = await make_contact(last_name=f"Contact{marker}")
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, account=account, contact=contact)
    session = await signed_in(server, viewer.email)

    response = await session.get(f"/exports/deals.csv?pipeline={pipeline['id']}")
    await session.close()

    assert response.status_code == 200
    (row,) = parse_csv(response.content)
    assert int(row["id"]) == deal
    names = {"account": f"Account {marker}", "contact": f"Ada Contact{marker}"}
    assert field not in row
    assert names[field] not in response.text
    shown = "contact" if field == "account" else "account"
    assert row[shown] == names[shown]


async def test_formula_cells_are_neutralised(server) -> None:
    admin = await make_user("admin")
    marker = unique("Formula").replace(" ", "")
    names = {
        "=": f'=HYPERLINK("http://x","{marker}")',
        "+": f"+1+1{marker}",
        "-": f"-2{marker}",
        "@": f"@SUM(A1){marker}",
        "tab": f"\tTab{marker}",
        "cr": f"\rCr{marker}",
        "plain": f"Plain {marker}",
    }
    for name in names.values():
        await Account.insert(Account(name=name, domain=f"{marker}.example"))
    session = await signed_in(server, admin.email)

    response = await session.get(f"/exports/accounts.csv?q={marker}")

    exported = {row["name"] for row in parse_csv(response.content)}
    expected = {
        ("'" + value if key != "plain" else value) for key, value in names.items()
    }
    assert exported == expected
    assert cell(-5) == "-5"
    assert cell("-5") == "'-5"
    await session.close()


async def test_export_is_audited_with_filter_and_count(server) -> None:
    admin = await make_user("admin")
    marker = unique("Audited").replace(" ", "")
    for number in range(3):
        await Contact.insert(
            Contact(
                first_name="Ada",
                last_name=f"{marker}{number}",
                email=f"{marker.lower()}{number}@example.org",
                phone="+44 20 7946 0000",
            )
        )
    session = await signed_in(server, admin.email)

    response = await session.get(f"/exports/contacts.csv?q={marker}")

    rows = parse_csv(response.content)
    assert len(rows) == 3
    assert rows[0]["phone"] == "'+44 20 7946 0000"
    assert "personal_notes" not in rows[0]
    audit = (
        await AuditLog.select()
        .where(AuditLog.actor_id == admin.id, AuditLog.action == "export")
        .output(load_json=True)
    )
    assert len(audit) == 1
    assert audit[0]["record_type"] == "contact"
    assert audit[0]["details"]["rows"] == 3
    assert audit[0]["details"]["format"] == "csv"
    assert audit[0]["details"]["filters"] == {"q": marker}
    await session.close()


async def test_export_needs_read_permission(server) -> None:
    rep = await make_user("sales_rep")
    session = await signed_in(server, rep.email)

    response = await session.get("/exports/tickets.csv")

    assert response.status_code == 403
    assert not await AuditLog.exists().where(
        AuditLog.actor_id == rep.id, AuditLog.action == "export"
    )
    await session.close()


async def test_bad_filter_names_field(server) -> None:
    admin = await make_user("admin")
    session = await signed_in(server, admin.email)

    response = await session.get("/exports/deals.csv?person=abc")

    assert response.status_code == 400
    assert "Person" in response.text
    assert "abc" in response.text
    await session.close()


async def test_large_export_streams_in_chunks(server) -> None:
    pipeline = await make_pipeline()
    total = 5000
    await Deal.raw(
        "INSERT INTO deal (name, pipeline, stage, amount) "
        "SELECT 'Bulk deal ' || n, {}, {}, n FROM generate_series(1, {}) AS n",
        pipeline["id"],
        pipeline["stages"][0],
        total,
    )
    export_filter = ExportFilter(board=BoardFilter(), pipeline_id=pipeline["id"])

    # Straight from the query: chunks of at most 1,000 rows.
    sizes = [len(chunk) async for chunk in export_chunks("deal", export_filter, SYSTEM)]
    assert sum(sizes) == total
    assert len(sizes) == 5
    assert max(sizes) == 1000

    # Through the CSV encoder, memory peaks at about one chunk: well below
    # what reading every row in one query takes.
    request = SimpleNamespace(user=SimpleNamespace(id=0, access=SYSTEM))

    async def peak_memory(chunk_rows: int) -> tuple[int, int, int]:
        size = pieces = 0
        tracemalloc.start()
        async for piece in stream_csv(
            "deal",
            export_filter,
            request,  # type: ignore[arg-type]
            chunk_rows,
        ):
            size += len(piece)
            pieces += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak, size, pieces

    streamed_peak, size, pieces = await peak_memory(1000)
    whole_peak, whole_size, _ = await peak_memory(total)
    assert pieces == 6  # the header, then five chunks
    assert size == whole_size > 300_000
    assert streamed_peak < whole_peak / 3, (streamed_peak, whole_peak)

    # Over HTTP the body arrives in several pieces.
    admin = await make_user("admin")
    session = await signed_in(server, admin.email)
    received = 0
    parts = 0
    async with session.http.stream(
        "GET", f"/exports/deals.csv?pipeline={pipeline['id']}"
    ) as response:
        assert response.status_code == 200
        async for part in response.aiter_raw():
            received += len(part)
            parts += 1
    assert parts > 1
    assert received == size
    await session.close()


async def test_pages_link_exports_with_filters(server) -> None:
    admin = await make_user("admin")
    team = await make_team()
    pipeline = await make_pipeline()
    session = await signed_in(server, admin.email)

    board = await session.get(f"/pipelines/{pipeline['id']}?team={team}")
    tickets = await session.get(f"/tickets?person={admin.id}")
    accounts = await session.get("/accounts?q=acme")
    contacts = await session.get("/contacts")

    deal_link = f'href="/exports/deals.csv?pipeline={pipeline["id"]}&amp;team={team}"'
    assert deal_link in board.text
    assert f'href="/exports/tickets.csv?person={admin.id}"' in tickets.text
    assert 'href="/exports/accounts.csv?q=acme"' in accounts.text
    assert 'href="/exports/contacts.csv"' in contacts.text
    await session.close()


async def make_lead(owner: int | None, **values: Any) -> int:
    rows = await Lead.insert(
        Lead(name=values.pop("name", unique("Lead")), owner=owner, **values)
    ).returning(Lead.id)
    return rows[0]["id"]


async def test_lead_export_follows_scope_and_filters(server) -> None:
    team_a, team_b = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team_a)
    colleague = await make_user("sales_rep", team=team_a)
    outsider = await make_user("sales_rep", team=team_b)
    source = unique("Fair").replace(" ", "")
    own = await make_lead(rep.id, status="working", source=source)
    shared = await make_lead(colleague.id, status="new", source=source)
    other = await make_lead(outsider.id, status="working", source=source)
    session = await signed_in(server, rep.email)

    response = await session.get(f"/exports/leads.csv?source={source}")
    working = await session.get(f"/exports/leads.csv?source={source}&status=working")
    invalid = await session.get("/exports/leads.csv?status=asleep")
    board = await session.get("/exports/lead-board.csv")
    await session.close()

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "leads-" in response.headers["content-disposition"]
    rows = parse_csv(response.content)
    assert {int(row["id"]) for row in rows} == {own, shared}
    assert list(rows[0]) == [
        "id",
        "name",
        "email",
        "company",
        "source",
        "status",
        "score",
        "owner",
        "created_at",
        "updated_at",
    ]
    assert {int(row["id"]) for row in parse_csv(working.content)} == {own}
    assert invalid.status_code in (400, 422)
    assert "asleep" in invalid.text
    assert board.status_code == 200
    assert "lead-board-" in board.headers["content-disposition"]
    board_ids = {int(row["id"]) for row in parse_csv(board.content)}
    assert {own, shared} <= board_ids
    assert other not in board_ids
    audit = (
        await AuditLog.select()
        .where(AuditLog.actor_id == rep.id, AuditLog.action == "export")
        .order_by(AuditLog.id)
        .output(load_json=True)
    )
    assert [row["record_type"] for row in audit] == ["lead", "lead", "lead"]
    assert audit[0]["details"]["filters"] == {"source": source}
    assert audit[0]["details"]["rows"] == 2
    assert audit[1]["details"]["filters"] == {"source": source, "status": "working"}
    assert audit[2]["details"]["filters"] == {"view": "board"}


async def test_lead_exports_hide_fields_and_formulas(server) -> None:
    role = Role(
        name=f"lead_blind_{uuid.uuid4().hex[:6]}",
        label="Lead blind",
        permissions={"lead": {"read": "all"}},
        field_rules={"lead": {"email": "hidden", "score": "hidden"}},
    )
    await role.save()
    viewer = await make_user(role.name)
    marker = uuid.uuid4().hex[:10]
    formula = f'=HYPERLINK("http://x","{marker}")'
    lead_id = await make_lead(
        None,
        name=formula,
        email=f"{marker}@secret.example",
        company=f"-{marker}",
        source=marker,
        score=97,
    )
    session = await signed_in(server, viewer.email)

    listed = await session.get(f"/exports/leads.csv?source={marker}")
    board = await session.get("/exports/lead-board.csv")
    await session.close()

    assert listed.status_code == 200
    assert board.status_code == 200
    (row,) = parse_csv(listed.content)
    (card,) = [item for item in parse_csv(board.content) if item["id"] == str(lead_id)]
    for exported in (row, card):
        assert "email" not in exported
        assert "score" not in exported
        assert exported["name"] == "'" + formula
        assert exported["company"] == f"'-{marker}"
    assert f"{marker}@secret" not in listed.text
    assert f"{marker}@secret" not in board.text
    assert list(card) == ["id", "status", "name", "company", "owner", "updated_at"]


async def test_campaign_export_needs_campaign_read(server) -> None:
    admin = await make_user("admin")
    agent = await make_user("support_agent")
    marker = uuid.uuid4().hex[:10]
    name = f"@SUM(A1) {marker}"
    rows = await Campaign.insert(
        Campaign(
            name=name,
            subject=f"+Spring {marker}",
            body="Hello",
            created_by=admin.id,
        )
    ).returning(Campaign.id)
    campaign_id = rows[0]["id"]
    session = await signed_in(server, admin.email)
    other = await signed_in(server, agent.email)

    response = await session.get("/exports/campaigns.csv")
    denied = await other.get("/exports/campaigns.csv")
    await session.close()
    await other.close()

    assert response.status_code == 200
    assert "campaigns-" in response.headers["content-disposition"]
    (row,) = [
        item for item in parse_csv(response.content) if item["id"] == str(campaign_id)
    ]
    assert row["name"] == "'" + name
    assert row["subject"] == f"'+Spring {marker}"
    assert row["state"] == "draft"
    assert row["sent"] == "0"
    assert row["created_by"] == admin.name
    assert denied.status_code == 403
    assert not await AuditLog.exists().where(
        AuditLog.actor_id == agent.id, AuditLog.action == "export"
    )
    audit = (
        await AuditLog.select()
        .where(AuditLog.actor_id == admin.id, AuditLog.action == "export")
        .output(load_json=True)
    )
    assert [entry["record_type"] for entry in audit] == ["campaign"]


async def test_lead_and_campaign_pages_link_exports(server) -> None:
    admin = await make_user("admin")
    session = await signed_in(server, admin.email)

    leads = await session.get(f"/leads?status=working&source=Web&owner={admin.id}")
    unfiltered = await session.get("/leads")
    board = await session.get("/leads/board")
    campaigns = await session.get("/campaigns")
    await session.close()

    link = (
        f'href="/exports/leads.csv?status=working&amp;source=Web&amp;owner={admin.id}"'
    )
    assert link in leads.text
    assert 'href="/exports/leads.csv"' in unfiltered.text
    assert 'href="/exports/lead-board.csv"' in board.text
    assert 'href="/exports/campaigns.csv"' in campaigns.text
