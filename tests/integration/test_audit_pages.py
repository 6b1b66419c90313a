"""The audit log through a real web server: sign-ins, the client address,
a record's history tab and the administrators' search page."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid

import pytest

from app.audit.tables import AuditLog
from tests.browserless import Session
from tests.factories import (
    PASSWORD,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
)

HTML = {"accept": "text/html"}


async def newest_rows(action: str, limit: int = 5) -> list[dict]:
    return (
        await AuditLog.select()
        .where(AuditLog.action == action)
        .order_by(AuditLog.id, ascending=False)
        .limit(limit)
        .output(load_json=True)
    )


def entry_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'id="audit-(\d+)"', html)]


async def test_sign_in_records_user_and_address(server) -> None:
    user = await make_user()
    session = Session(server.url)

    await session.sign_in(user.email)

    [row] = await newest_rows("sign_in", 1)
    assert row["actor_id"] == user.id
    assert row["record_type"] == "user"
    assert row["record_id"] == user.id
    assert row["client_address"] == "127.0.0.1"
    await session.close()


async def test_failed_sign_in_records_email_not_password(server) -> None:
    session = Session(server.url)
    await session.get("/login")
    tried = f"nobody-{uuid.uuid4().hex[:6]}@test.example"
    password = f"secret-{uuid.uuid4().hex}"

    response = await session.http.post(
        "/login",
        data={"email": tried, "password": password, "_csrf_token": session.csrf_token},
    )

    assert response.status_code == 401
    [row] = await newest_rows("sign_in_failed", 1)
    assert row["details"] == {"email": tried}
    assert row["actor_id"] is None
    assert row["client_address"] == "127.0.0.1"
    stored = await AuditLog.raw(
        "SELECT count(*) AS n FROM audit_log "
        "WHERE changes::text LIKE {} OR details::text LIKE {}",
        f"%{password}%",
        f"%{password}%",
    )
    assert stored[0]["n"] == 0
    await session.close()


async def test_forwarded_address_from_local_proxy(server) -> None:
    """uvicorn takes X-Forwarded-For from a trusted proxy, here loopback."""
    user = await make_user("support_lead")
    ticket_id = await make_ticket(status="new")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.http.post(
        f"/tickets/{ticket_id}",
        data={"status": "open", "base_status": "new"},
        headers={
            "x-csrftoken": session.csrf_token,
            "hx-request": "true",
            "x-forwarded-for": "198.51.100.23",
        },
    )

    assert response.status_code == 200, response.text
    row = (
        await AuditLog.select()
        .where((AuditLog.record_type == "ticket") & (AuditLog.record_id == ticket_id))
        .first()
    )
    assert row["client_address"] == "198.51.100.23"
    assert row["actor_id"] == user.id
    await session.close()


async def test_history_tab_shows_before_and_after(server) -> None:
    user = await make_user("admin", name="Hana History")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100", name="Harbour cranes")
    session = Session(server.url)
    await session.sign_in(user.email)

    saved = await session.post(
        f"/deals/{deal_id}",
        {"amount": "4,200", "base_amount": "100.00"},
    )
    page = await session.get(f"/deals/{deal_id}", headers=HTML)
    history = await session.get(f"/deals/{deal_id}/history")

    assert saved.status_code == 200
    assert f'hx-get="/deals/{deal_id}/history"' in page.text
    assert 'role="tab"' in page.text
    assert history.status_code == 200
    assert "Hana History" in history.text
    assert 'data-field="amount"' in history.text
    assert "100.00" in history.text
    assert "4200.00" in history.text
    assert "127.0.0.1" in history.text
    await session.close()


async def test_history_hides_fields_the_role_hides(server) -> None:
    """Support agents may read deals but not their amounts."""
    editor = await make_user("admin")
    agent = await make_user("support_agent")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100", name="Quiet amount")
    editing = Session(server.url)
    await editing.sign_in(editor.email)
    await editing.post(f"/deals/{deal_id}", {"amount": "999", "base_amount": "100.00"})
    await editing.post(
        f"/deals/{deal_id}", {"name": "Loud name", "base_name": "Quiet amount"}
    )
    await editing.close()
    viewing = Session(server.url)
    await viewing.sign_in(agent.email)

    history = await viewing.get(f"/deals/{deal_id}/history")

    assert history.status_code == 200
    assert 'data-field="name"' in history.text
    assert 'data-field="amount"' not in history.text
    assert "999" not in history.text
    assert len(entry_ids(history.text)) == 1
    await viewing.close()


async def test_history_outside_read_scope_is_not_found(server) -> None:
    """A sales rep reads only their team's deals, and this deal has no team."""
    rep = await make_user("sales_rep")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    session = Session(server.url)
    await session.sign_in(rep.email)

    history = await session.get(f"/deals/{deal_id}/history", headers=HTML)

    assert history.status_code == 404
    await session.close()


async def test_history_shows_personal_details_to_admins(server) -> None:
    """Other users see who changed a record and when, but only administrators
    and the editor themself see the editor's email and client address."""
    admin = await make_user("admin", name="Ada Auditor")
    team = await make_team()
    manager = await make_user("sales_manager", team=team)
    agent = await make_user("support_agent")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, team=team, name="Private edits")
    editing = Session(server.url)
    await editing.sign_in(admin.email)
    await editing.post(
        f"/deals/{deal_id}", {"name": "Renamed edits", "base_name": "Private edits"}
    )
    own = Session(server.url)
    await own.sign_in(manager.email)
    await own.post(
        f"/deals/{deal_id}", {"name": "Managed edits", "base_name": "Renamed edits"}
    )

    by_admin = await editing.get(f"/deals/{deal_id}/history")
    by_manager = await own.get(f"/deals/{deal_id}/history")
    viewing = Session(server.url)
    await viewing.sign_in(agent.email)
    by_agent = await viewing.get(f"/deals/{deal_id}/history")

    for response in (by_admin, by_manager, by_agent):
        assert response.status_code == 200
        assert "Ada Auditor" in response.text
        assert len(entry_ids(response.text)) == 2
        assert "<time datetime=" in response.text
    assert admin.email in by_admin.text
    assert manager.email in by_admin.text
    assert "127.0.0.1" in by_admin.text
    # The manager sees their own row's details, not the administrator's.
    assert manager.email in by_manager.text
    assert admin.email not in by_manager.text
    assert by_manager.text.count("127.0.0.1") == 1
    assert admin.email not in by_agent.text
    assert manager.email not in by_agent.text
    assert "127.0.0.1" not in by_agent.text
    assert "no client address" not in by_agent.text
    for session in (editing, own, viewing):
        await session.close()


async def test_admin_search_still_shows_personal_details(server) -> None:
    admin = await make_user("admin")
    ticket_id = await make_ticket(status="new")
    session = Session(server.url)
    await session.sign_in(admin.email)
    await session.post(
        f"/tickets/{ticket_id}", {"status": "open", "base_status": "new"}
    )

    page = await session.get(
        f"/admin/audit?record_type=ticket&record_id={ticket_id}", headers=HTML
    )

    assert page.status_code == 200
    assert admin.email in page.text
    assert "127.0.0.1" in page.text
    await session.close()


@pytest.mark.parametrize("path", ["tickets", "accounts", "contacts"])
async def test_history_of_each_record_page(server, path: str) -> None:
    from tests.integration.test_audit import make_account, make_contact

    user = await make_user("support_lead")
    factory = {
        "tickets": make_ticket,
        "accounts": make_account,
        "contacts": make_contact,
    }[path]
    record_id = await factory()
    session = Session(server.url)
    await session.sign_in(user.email)

    page = await session.get(f"/{path}/{record_id}", headers=HTML)
    history = await session.get(f"/{path}/{record_id}/history")
    missing = await session.get(f"/{path}/2147483000/history", headers=HTML)

    assert page.status_code == 200
    assert f'hx-get="/{path}/{record_id}/history"' in page.text
    assert history.status_code == 200
    assert "No changes recorded yet." in history.text
    assert missing.status_code == 404
    await session.close()


async def test_history_pages_by_cursor(server) -> None:
    user = await make_user("support_lead")
    ticket_id = await make_ticket(status="new")
    session = Session(server.url)
    await session.sign_in(user.email)
    statuses = ["new", "open", "pending"] * 8 + ["new"]
    for before, after in itertools.pairwise(statuses):
        response = await session.post(
            f"/tickets/{ticket_id}", {"status": after, "base_status": before}
        )
        assert response.status_code == 200

    first = await session.get(f"/tickets/{ticket_id}/history")
    cursor = re.search(r'\?before=(\d+)"', first.text)
    assert cursor, first.text
    second = await session.get(f"/tickets/{ticket_id}/history?before={cursor[1]}")
    invalid = await session.get(f"/tickets/{ticket_id}/history?before=x", headers=HTML)

    first_ids, second_ids = entry_ids(first.text), entry_ids(second.text)
    assert len(first_ids) == 20
    assert len(second_ids) == 4
    assert first_ids == sorted(first_ids, reverse=True)
    assert max(second_ids) < min(first_ids)
    assert "Older changes" not in second.text
    assert "<ol" not in second.text
    assert invalid.status_code == 400
    assert "Before &#39;x&#39; must be a whole number" in invalid.text
    await session.close()


async def test_admin_page_is_for_admins_only(server) -> None:
    user = await make_user("sales_manager")
    admin = await make_user("admin")
    session, admin_session = Session(server.url), Session(server.url)
    await session.sign_in(user.email)
    await admin_session.sign_in(admin.email)

    response = await session.get("/admin/audit", headers=HTML)
    own_page = await session.get("/pipelines", headers=HTML, follow_redirects=True)
    admin_page = await admin_session.get("/admin/audit", headers=HTML)

    assert response.status_code == 403
    assert 'href="/admin/audit"' not in own_page.text
    assert admin_page.status_code == 200
    assert 'href="/admin/audit" aria-current="page"' in admin_page.text
    await session.close()
    await admin_session.close()


async def test_admin_search_filters(server) -> None:
    admin = await make_user("admin")
    editor = await make_user("admin")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100", name="Search target")
    session = Session(server.url)
    await session.sign_in(editor.email)
    tag = uuid.uuid4().hex[:8]
    await session.post(
        f"/deals/{deal_id}", {"name": f"Renamed {tag}", "base_name": "Search target"}
    )
    await session.close()
    admin_session = Session(server.url)
    await admin_session.sign_in(admin.email)
    today = dt.datetime.now(dt.UTC).date()

    by_actor = await admin_session.get(f"/admin/audit?actor={editor.email}")
    by_record = await admin_session.get(
        f"/admin/audit?record_type=deal&record_id={deal_id}&action=update"
    )
    by_text = await admin_session.get(f"/admin/audit?q={tag}")
    in_range = await admin_session.get(
        f"/admin/audit?q={tag}&since={today}&until={today}"
    )
    before_range = await admin_session.get(
        f"/admin/audit?q={tag}&until={today - dt.timedelta(days=1)}"
    )

    assert by_actor.status_code == 200
    assert 'data-action="sign_in"' in by_actor.text
    assert 'data-action="update"' in by_actor.text
    assert f"Renamed {tag}" in by_record.text
    assert 'data-action="sign_in"' not in by_record.text
    assert len(entry_ids(by_text.text)) == 1
    assert f'href="/deals/{deal_id}"' in by_text.text
    assert len(entry_ids(in_range.text)) == 1
    assert entry_ids(before_range.text) == []
    await admin_session.close()


async def test_admin_search_finds_failed_sign_ins_by_email(server) -> None:
    admin = await make_user("admin")
    target = await make_user()
    session = Session(server.url)
    await session.get("/login")
    await session.http.post(
        "/login",
        data={
            "email": target.email,
            "password": PASSWORD + "wrong",
            "_csrf_token": session.csrf_token,
        },
    )
    await session.close()
    admin_session = Session(server.url)
    await admin_session.sign_in(admin.email)

    response = await admin_session.get(
        f"/admin/audit?actor={target.email.upper()}&action=sign_in_failed"
    )

    assert response.status_code == 200
    assert len(entry_ids(response.text)) == 1
    assert target.email in response.text
    await admin_session.close()


async def test_admin_search_pages_by_cursor(server) -> None:
    admin = await make_user("admin")
    session = Session(server.url)
    for _ in range(3):
        await session.sign_in(admin.email)

    first = await session.get(f"/admin/audit?actor={admin.id}&action=sign_in")
    assert len(entry_ids(first.text)) == 3

    # 55 sign-ins make two pages of 50 and 5.
    from app.audit.service import record

    for _ in range(52):
        await record("sign_in", actor_id=admin.id)
    page_one = await session.get(f"/admin/audit?actor={admin.id}&action=sign_in")
    cursor = re.search(r"before=(\d+)", page_one.text)
    assert cursor, page_one.text
    page_two = await session.get(
        f"/admin/audit?actor={admin.id}&action=sign_in&before={cursor[1]}"
    )

    first_ids, second_ids = entry_ids(page_one.text), entry_ids(page_two.text)
    assert len(first_ids) == 50
    assert len(second_ids) == 5
    assert max(second_ids) < min(first_ids)
    assert "Older entries" not in page_two.text
    await session.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("action=Rename!", "Action &#39;Rename!&#39; is not an action name"),
        ("record_type=invoice", "Record type &#39;invoice&#39; must be one of"),
        ("record_id=-3", "Record id &#39;-3&#39; must be a whole number"),
        ("since=yesterday", "Since &#39;yesterday&#39; is not a date"),
        ("since=2026-12-05&until=2026-12-04", "Until &#39;2026-12-04&#39; must be"),
        ("before=0", "Before &#39;0&#39; must be a whole number"),
    ],
)
async def test_admin_search_rejects_bad_filters(
    server, query: str, message: str
) -> None:
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)

    response = await session.get(f"/admin/audit?{query}", headers=HTML)

    assert response.status_code == 400
    assert message in response.text
    assert entry_ids(response.text) == []
    await session.close()
