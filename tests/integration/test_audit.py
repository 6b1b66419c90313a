"""The audit log against the real database: what each change records, the
transaction it shares with the change, the append-only guards and the chain."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.accounts.service import update_account
from app.accounts.tables import Account
from app.audit.context import client_address
from app.audit.queries import record_history
from app.audit.service import (
    DELETE,
    REDACTED,
    record,
    record_export,
    snapshot,
)
from app.audit.tables import AuditLog
from app.audit.verify import verify_chain
from app.auth.tables import Team, User
from app.comments.service import add_comment
from app.contacts.service import update_contact
from app.contacts.tables import Contact
from app.deals.service import create_deal, move_deal, update_deal
from app.errors import FieldError
from app.events.service import change_set
from app.merge import Edit
from app.tickets.service import update_ticket
from tests.conftest import TEST_DATABASE, database_url
from tests.factories import make_deal, make_pipeline, make_ticket, make_user

ADDRESS = "203.0.113.7"


@pytest.fixture
def request_address():
    """Act as if a request from ``ADDRESS`` were being served."""
    token = client_address.set(ADDRESS)
    yield ADDRESS
    client_address.reset(token)


async def audit_rows(record_type: str, record_id: int) -> list[dict[str, Any]]:
    rows = (
        await AuditLog.select()
        .where(
            (AuditLog.record_type == record_type) & (AuditLog.record_id == record_id)
        )
        .order_by(AuditLog.id)
        .output(load_json=True)
    )
    return rows


async def last_row(record_type: str, record_id: int) -> dict[str, Any]:
    rows = await audit_rows(record_type, record_id)
    assert rows, f"no audit row for {record_type} {record_id}"
    return rows[-1]


async def make_account(**values: Any) -> int:
    rows = await Account.insert(
        Account(name=values.pop("name", f"Account {uuid.uuid4().hex[:8]}"), **values)
    ).returning(Account.id)
    return rows[0]["id"]


async def make_contact(**values: Any) -> int:
    values.setdefault("first_name", "Ada")
    values.setdefault("last_name", uuid.uuid4().hex[:8])
    rows = await Contact.insert(Contact(**values)).returning(Contact.id)
    return rows[0]["id"]


async def test_deal_update_records_fields(request_address) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="1000")

    await update_deal(
        deal_id, {"amount": Edit(Decimal("1000.00"), Decimal("2500.00"))}, user.id
    )

    row = await last_row("deal", deal_id)
    assert row["action"] == "update"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    assert row["changes"] == {"amount": ["1000.00", "2500.00"]}


async def test_deal_move_records_stage(request_address) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    first, second = pipeline["stages"][:2]
    deal_id = await make_deal(pipeline)

    await move_deal(deal_id, second, first, user.id)

    row = await last_row("deal", deal_id)
    assert row["action"] == "update"
    assert row["changes"] == {"stage": [first, second]}
    assert row["client_address"] == ADDRESS


async def test_deal_create_records_every_field(request_address) -> None:
    user = await make_user()
    pipeline = await make_pipeline()

    deal_id = await create_deal(
        {
            "pipeline": str(pipeline["id"]),
            "stage": str(pipeline["stages"][0]),
            "name": "Fleet renewal",
            "amount": "12,000",
            "close_date": "2027-01-31",
        },
        user.id,
    )

    row = await last_row("deal", deal_id)
    assert row["action"] == "create"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    changes = row["changes"]
    assert changes["name"] == [None, "Fleet renewal"]
    assert changes["amount"] == [None, "12000.00"]
    assert changes["close_date"] == [None, "2027-01-31"]
    assert changes["stage"] == [None, pipeline["stages"][0]]
    assert changes["owner"] == [None, user.id]
    assert "version" not in changes
    assert "id" not in changes


async def test_ticket_update_records_fields(request_address) -> None:
    user = await make_user()
    ticket_id = await make_ticket(status="new")

    await update_ticket(
        ticket_id,
        {"status": Edit("new", "open"), "priority": Edit("medium", "urgent")},
        user.id,
    )

    row = await last_row("ticket", ticket_id)
    assert row["action"] == "update"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    assert row["changes"] == {
        "status": ["new", "open"],
        "priority": ["medium", "urgent"],
    }


async def test_account_update_records_fields(request_address) -> None:
    user = await make_user()
    account_id = await make_account(city="Lyon")

    await update_account(account_id, {"city": Edit("Lyon", "Paris")}, user.id)

    row = await last_row("account", account_id)
    assert row["action"] == "update"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    assert row["changes"] == {"city": ["Lyon", "Paris"]}


async def test_contact_update_records_fields(request_address) -> None:
    user = await make_user()
    contact_id = await make_contact(title="Buyer")

    await update_contact(
        contact_id, {"title": Edit("Buyer", "Head of buying")}, user.id
    )

    row = await last_row("contact", contact_id)
    assert row["action"] == "update"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    assert row["changes"] == {"title": ["Buyer", "Head of buying"]}


async def test_comment_create_records_body(request_address) -> None:
    user = await make_user()
    ticket_id = await make_ticket()

    comment_id = await add_comment("ticket", ticket_id, "Called the customer", user.id)

    row = await last_row("comment", comment_id)
    assert row["action"] == "create"
    assert row["actor_id"] == user.id
    assert row["client_address"] == ADDRESS
    assert row["changes"]["ticket"] == [None, ticket_id]
    assert row["changes"]["author"] == [None, user.id]
    assert "Called the customer" in row["changes"]["body"][1]


async def test_user_role_change_is_its_own_action(request_address) -> None:
    admin = await make_user("admin")
    user = await make_user("sales_rep")

    async with change_set(admin.id) as changes:
        await User.update({User.role: "sales_manager"}).where(User.id == user.id)
        changes.add(
            "user.updated",
            "user",
            user.id,
            [f"user:{user.id}"],
            {"role": ["sales_rep", "sales_manager"]},
        )

    row = await last_row("user", user.id)
    assert row["action"] == "role_change"
    assert row["actor_id"] == admin.id
    assert row["client_address"] == ADDRESS
    assert row["changes"] == {"role": ["sales_rep", "sales_manager"]}


async def test_user_roles_change_is_a_role_change(request_address) -> None:
    admin = await make_user("admin")
    user = await make_user("sales_rep")

    async with change_set(admin.id) as changes:
        changes.add(
            "user.updated", "user", user.id, [], {"roles": [["sales_rep"], ["admin"]]}
        )

    row = await last_row("user", user.id)
    assert row["action"] == "role_change"
    assert row["changes"] == {"roles": [["sales_rep"], ["admin"]]}


async def test_user_create_redacts_password_hash(request_address) -> None:
    admin = await make_user("admin")
    other = await make_user()

    async with change_set(admin.id) as changes:
        changes.add("user.created", "user", other.id, [f"user:{other.id}"])

    row = await last_row("user", other.id)
    assert row["action"] == "create"
    assert row["changes"]["email"] == [None, other.email]
    assert row["changes"]["password_hash"] == [None, REDACTED]
    assert "argon2" not in json.dumps(row["changes"])


async def test_team_create_and_delete_record_values(request_address) -> None:
    admin = await make_user("admin")
    name = f"Team {uuid.uuid4().hex[:8]}"

    async with change_set(admin.id) as changes:
        rows = await Team.insert(Team(name=name, region="EMEA")).returning(Team.id)
        team_id = rows[0]["id"]
        changes.add("team.created", "team", team_id, [f"team:{team_id}"])

    async with change_set(admin.id) as changes:
        stored = await Team.select().where(Team.id == team_id).first()
        await Team.delete().where(Team.id == team_id)
        changes.add(
            "team.deleted",
            "team",
            team_id,
            [f"team:{team_id}"],
            snapshot(stored, DELETE),
        )

    created, deleted = await audit_rows("team", team_id)
    assert created["action"] == "create"
    assert created["changes"]["name"] == [None, name]
    assert created["changes"]["region"] == [None, "EMEA"]
    assert deleted["action"] == "delete"
    assert deleted["actor_id"] == admin.id
    assert deleted["client_address"] == ADDRESS
    assert deleted["changes"]["name"] == [name, None]
    assert deleted["changes"]["region"] == ["EMEA", None]


async def test_role_events_are_audited(request_address) -> None:
    admin = await make_user("admin")

    async with change_set(admin.id) as changes:
        changes.add(
            "role.updated",
            "role",
            987_654,
            ["roles"],
            {"permissions": [["deal.read"], ["deal.read", "deal.write"]]},
        )

    row = await last_row("role", 987_654)
    assert row["action"] == "update"
    assert row["changes"] == {
        "permissions": [["deal.read"], ["deal.read", "deal.write"]]
    }


async def test_other_verbs_become_the_action(request_address) -> None:
    admin = await make_user("admin")
    user = await make_user()

    async with change_set(admin.id) as changes:
        changes.add("user.deactivated", "user", user.id, [], {"active": [True, False]})

    row = await last_row("user", user.id)
    assert row["action"] == "deactivated"
    assert row["changes"] == {"active": [True, False]}
    assert row["actor_id"] == admin.id


async def test_events_of_other_types_are_not_audited() -> None:
    before = await AuditLog.count()

    async with change_set() as changes:
        changes.add("board.reload", "pipeline", 1, ["pipeline:1"])

    assert await AuditLog.count() == before


async def test_audit_row_commits_with_change() -> None:
    user = await make_user()
    ticket_id = await make_ticket(status="new")
    before = len(await audit_rows("ticket", ticket_id))

    with pytest.raises(RuntimeError):
        async with change_set(user.id) as changes:
            changes.add(
                "ticket.updated", "ticket", ticket_id, ["tickets"], {"status": [1, 2]}
            )
            await changes.write()
            assert len(await audit_rows("ticket", ticket_id)) == before + 1
            raise RuntimeError("abort after the audit row was written")

    assert len(await audit_rows("ticket", ticket_id)) == before


async def test_failed_change_leaves_no_audit_row() -> None:
    user = await make_user()
    contact_id = await make_contact(first_name="Ada", last_name="")
    before = len(await audit_rows("contact", contact_id))

    # Clearing the only name part fails inside the transaction.
    with pytest.raises(FieldError):
        await update_contact(contact_id, {"first_name": Edit("Ada", "")}, user.id)

    assert len(await audit_rows("contact", contact_id)) == before


async def owner_connection() -> asyncpg.Connection:
    return await asyncpg.connect(database_url(TEST_DATABASE))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'export' WHERE id = {id}",
        "DELETE FROM audit_log WHERE id = {id}",
        "TRUNCATE audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_audit_rows_cannot_change(statement: str) -> None:
    audit_id = await record("sign_in_failed", details={"email": "x@test.example"})
    connection = await owner_connection()
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute(statement.format(id=audit_id))
    finally:
        await connection.close()

    stored = await AuditLog.select(AuditLog.action).where(AuditLog.id == audit_id)
    assert stored == [{"action": "sign_in_failed"}]


async def test_non_owner_role_cannot_lift_guards() -> None:
    """The grants in docs/security-audit.md leave the application role
    able to append and read, but not to change rows or drop the trigger."""
    role = f"crm_app_{uuid.uuid4().hex[:8]}"
    connection = await owner_connection()
    await connection.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        await connection.execute(
            f"GRANT SELECT, INSERT ON audit_log TO {role}; "
            f"GRANT USAGE ON SEQUENCE audit_log_id_seq TO {role}"
        )
        await connection.execute(f"SET ROLE {role}")
        await connection.execute(
            "INSERT INTO audit_log (created_at, action, changes, details, "
            "prev_hash, hash) VALUES (now(), 'export', '{}', '{}', '', '')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("UPDATE audit_log SET action = 'x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM audit_log")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    finally:
        await connection.execute("RESET ROLE")
        # The insert above is not part of the chain, so remove it as the
        # owner with the trigger off, then drop the role.
        await connection.execute(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only; "
            "DELETE FROM audit_log WHERE hash = ''; "
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"
        )
        await connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await connection.close()


async def test_concurrent_writers_keep_chain_intact() -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_ids = [await make_deal(pipeline, amount="100") for _ in range(8)]
    before = await AuditLog.count()

    async def edit(deal_id: int, step: int) -> None:
        await update_deal(
            deal_id,
            {"amount": Edit(Decimal(100 + step), Decimal(101 + step))},
            user.id,
        )

    async def sign_ins() -> None:
        for _ in range(5):
            await record("sign_in", actor_id=user.id)

    async def edits(deal_id: int) -> None:
        for step in range(5):
            await edit(deal_id, step)

    await asyncio.gather(*(edits(deal_id) for deal_id in deal_ids), sign_ins())

    assert await AuditLog.count() == before + len(deal_ids) * 5 + 5
    result = await verify_chain(batch_size=7)
    assert result.problem is None
    assert result.rows == await AuditLog.count()


async def test_record_export_stores_count_and_filters(request_address) -> None:
    user = await make_user()

    audit_id = await record_export(
        user.id, "contact", 1234, file_format="csv", filters={"q": "acme"}
    )

    row = await AuditLog.select().where(AuditLog.id == audit_id).output(load_json=True)
    assert row[0]["action"] == "export"
    assert row[0]["actor_id"] == user.id
    assert row[0]["client_address"] == ADDRESS
    assert row[0]["record_type"] == "contact"
    assert row[0]["details"] == {
        "format": "csv",
        "rows": 1234,
        "filters": {"q": "acme"},
    }


@pytest.mark.parametrize(
    ("record_type", "row_count", "file_format", "field"),
    [
        ("", 1, "csv", "record_type"),
        ("deal", -1, "csv", "row_count"),
        ("deal", 1, " ", "file_format"),
    ],
)
async def test_record_export_rejects_bad_input(
    record_type: str, row_count: int, file_format: str, field: str
) -> None:
    user = await make_user()
    before = await AuditLog.count()

    with pytest.raises(FieldError) as raised:
        await record_export(user.id, record_type, row_count, file_format=file_format)

    assert raised.value.field == field
    assert await AuditLog.count() == before


async def test_record_rejects_unknown_action() -> None:
    with pytest.raises(FieldError) as raised:
        await record("signed_in")

    assert raised.value.field == "action"
    assert raised.value.value == "signed_in"


async def test_history_hides_fields_and_pages() -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="0", name="Before")
    for step in range(25):
        await update_deal(
            deal_id, {"amount": Edit(Decimal(step), Decimal(step + 1))}, user.id
        )
    await update_deal(deal_id, {"name": Edit("Before", "After")}, user.id)

    first = await record_history("deal", deal_id, hidden_fields=frozenset())
    second = await record_history(
        "deal", deal_id, hidden_fields=frozenset(), before=first.next_before
    )
    hiding = await record_history("deal", deal_id, hidden_fields={"amount"})

    assert len(first.rows) == 20
    assert first.rows[0]["changes"][0].field == "name"
    assert first.rows[0]["changes"][0].before == "Before"
    assert first.rows[0]["changes"][0].after == "After"
    assert first.rows[0]["actor_name"] == user.name
    assert first.next_before == first.rows[-1]["id"]
    assert len(second.rows) == 6
    assert second.next_before is None
    assert second.rows[-1]["changes"][0].after == "1"
    # Updates of the hidden field alone are left out entirely.
    assert [row["changes"][0].field for row in hiding.rows] == ["name"]
    assert hiding.next_before is None


async def test_history_names_references() -> None:
    user = await make_user()
    pipeline = await make_pipeline(("Qualify", "Propose"))
    first, second = pipeline["stages"]
    deal_id = await make_deal(pipeline)

    await move_deal(deal_id, second, first, user.id)

    page = await record_history("deal", deal_id, hidden_fields=())
    change = page.rows[0]["changes"][0]
    assert change.before_label == "Qualify"
    assert change.after_label == "Propose"
