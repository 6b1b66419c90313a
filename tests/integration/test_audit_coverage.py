"""Audit rows for API keys, webhook endpoints, workflow rules and imports,
with secrets recorded as changed but never stored."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from app.api.keys import create_key, revoke_key
from app.api.tables import ApiKey
from app.audit.service import REDACTED
from app.audit.tables import AuditLog
from app.email.templates import delete_template, save_template
from app.imports.jobs import create_job
from app.imports.tables import ImportJob
from app.webhooks.service import EndpointInput, create_endpoint, rotate_secret
from app.workflows.service import save_rule, set_enabled
from tests.browserless import Session
from tests.factories import make_user, unique
from tests.servers import web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A rule that no other test's ticket matches, since rules run on every ticket.
RULE = {
    "trigger": {"kind": "created"},
    "conditions": {
        "type": "group",
        "match": "all",
        "items": [
            {
                "type": "condition",
                "field": "subject",
                "op": "contains",
                "value": "audit-coverage-never-matches",
            }
        ],
    },
    "actions": [{"kind": "set_field", "field": "priority", "value": "high"}],
}


async def audit_rows(record_type: str, record_id: int) -> list[dict[str, Any]]:
    rows = (
        await AuditLog.select(
            AuditLog.action, AuditLog.actor_id, AuditLog.changes, AuditLog.details
        )
        .where(
            (AuditLog.record_type == record_type) & (AuditLog.record_id == record_id)
        )
        .order_by(AuditLog.id)
    )
    for row in rows:
        for name in ("changes", "details"):
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
    return rows


async def test_api_key_create_and_revoke_audited() -> None:
    user = await make_user()
    issued = await create_key(user.id, unique("Key"), {"deal": "read"}, None)
    stored = await ApiKey.raw(
        "SELECT secret_hash FROM api_key WHERE id = {}", issued.id
    )
    secret_hash = stored[0]["secret_hash"]

    assert await revoke_key(issued.id, user.id, user.id)

    rows = await audit_rows("api_key", issued.id)
    assert [row["action"] for row in rows] == ["create", "revoked"]
    assert [row["actor_id"] for row in rows] == [user.id, user.id]
    created = rows[0]["changes"]
    assert created["secret_hash"] == [None, REDACTED]
    assert created["user"] == [None, user.id]
    text = json.dumps(rows)
    assert secret_hash not in text
    assert issued.token not in text
    assert issued.token.rsplit("_", 1)[1] not in text


async def test_webhook_secret_never_in_audit() -> None:
    user = await make_user()
    issued = await create_endpoint(
        EndpointInput(
            url="http://127.0.0.1:9/hook",
            description=unique("Receiver"),
            event_types=("ticket.created",),
        ),
        user.id,
        allow_private=True,
    )
    new_secret = await rotate_secret(issued.id, user.id)

    rows = await audit_rows("webhook_endpoint", issued.id)
    assert [row["action"] for row in rows] == ["create", "secret_rotated"]
    created = rows[0]["changes"]
    assert created["url"] == [None, "http://127.0.0.1:9/hook"]
    assert created["secret"] == [None, REDACTED]
    assert rows[1]["changes"] == {"secret": [REDACTED, REDACTED]}
    text = json.dumps(rows)
    for secret in (issued.secret, new_secret):
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
    assert "enc1:" not in text


async def test_workflow_rule_changes_audited() -> None:
    user = await make_user()
    name = unique("Rule")
    rule_id = await save_rule(None, "ticket", name, RULE, user.id)
    await set_enabled(rule_id, True, user.id)
    await save_rule(rule_id, "ticket", name + " v2", RULE, user.id)

    rows = await audit_rows("workflow_rule", rule_id)
    await set_enabled(rule_id, False, user.id)

    assert [row["action"] for row in rows] == ["create", "update", "update"]
    assert rows[0]["changes"]["name"] == [None, name]
    assert rows[0]["changes"]["version"] == [None, 1]
    assert rows[0]["changes"]["definition"][1]["trigger"]["kind"] == "created"
    assert rows[1]["changes"] == {"enabled": [False, True], "version": [1, 2]}
    assert rows[2]["changes"]["name"] == [name, name + " v2"]
    assert rows[2]["changes"]["version"] == [2, 3]


async def test_rejected_rows_download_is_export() -> None:
    user = await make_user(role="admin")
    job_id = await create_job("tickets", ["tickets.csv"], user.id, state="draft")
    await ImportJob.update(
        {ImportJob.state: "done", ImportJob.finished_at: dt.datetime.now(dt.UTC)}
    ).where(ImportJob.id == job_id)

    with web_server() as server:
        session = Session(server.url)
        await session.sign_in(user.email)
        response = await session.get(f"/import/{job_id}/rejected.csv")
        await session.close()

    assert response.status_code == 200, response.text
    rows = await audit_rows("import_job", job_id)
    assert [row["action"] for row in rows] == ["create", "export"]
    assert rows[0]["changes"]["source"] == [None, "tickets"]
    export = rows[1]
    assert export["actor_id"] == user.id
    assert export["details"]["format"] == "csv"
    assert export["details"]["rows"] == 0
    assert export["details"]["filters"] == {"rows": "rejected"}


async def test_reply_template_edits_audited() -> None:
    user = await make_user(role="admin")
    name = unique("Greeting")
    template_id = await save_template(None, name, "Hello there", user.id)
    await save_template(template_id, name, "Hello again", user.id)
    await delete_template(template_id, user.id)

    rows = await audit_rows("reply_template", template_id)
    assert [row["action"] for row in rows] == ["create", "update", "delete"]
    assert rows[0]["changes"]["name"] == [None, name]
    assert rows[1]["changes"] == {"body": ["Hello there", "Hello again"]}
    assert rows[2]["changes"]["name"] == [name, None]
    assert rows[2]["changes"]["body"] == ["Hello again", None]
