"""Saving a rule rejects placeholders that would not be filled and users or
teams that cannot receive an action, and names the action counted from 1.
The checks run through the service, the admin form and the API's problem
details. The form reads only each action kind's fields."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from litestar import Request

from app.api.problems import on_field_error
from app.auth.tables import User
from app.errors import FieldError
from app.workflows import service
from app.workflows.schema import decode_definition
from app.workflows.tables import WorkflowRule, WorkflowRuleVersion
from tests.browserless import Session
from tests.factories import make_team, make_user

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]

TAG = {"kind": "add_tag", "tag": "checked"}


@pytest_asyncio.fixture(loop_scope="session")
async def admin_session(server) -> AsyncIterator[Session]:
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)
    yield session
    await session.close()


def email(subject: str, body: str = "Hello") -> dict[str, Any]:
    return {
        "kind": "send_email",
        "recipient": "address",
        "to": "rules@example.com",
        "subject": subject,
        "body": body,
    }


# Trigger, actions, the rejected field's path, its value and a part of the reason.
REJECTED = [
    pytest.param(
        "created",
        [email("Hi {{ record.subject }}")],
        "actions.0.subject",
        "{{ record.subject }}",
        "double braces, which are not filled in; write {record.subject}",
        id="double-braces",
    ),
    pytest.param(
        "created",
        [email("{{ whatever }}")],
        "actions.0.subject",
        "{{ whatever }}",
        "double braces",
        id="double-braces-unknown",
    ),
    pytest.param(
        "created",
        [email("New ticket", "About {record.nope}")],
        "actions.0.body",
        "{record.nope}",
        "is not a ticket field",
        id="unknown-field",
    ),
    pytest.param(
        "created",
        [{"kind": "add_note", "body": "Call back about {record.subject"}],
        "actions.0.body",
        "Call back about {record.subject",
        "unbalanced '{'",
        id="unclosed-brace",
    ),
    pytest.param(
        "created",
        [{"kind": "create_task", "body": "Done }", "due_in_minutes": 5}],
        "actions.0.body",
        "Done }",
        "unbalanced '}'",
        id="lone-closing-brace",
    ),
    pytest.param(
        "created",
        [{"kind": "set_field", "field": "subject", "value": "{record.subject }"}],
        "actions.0.value",
        "{record.subject }",
        "is not a placeholder",
        id="space-in-placeholder",
    ),
    pytest.param(
        "created",
        [{"kind": "notify", "user_id": 1, "body": "Hi", "subject": "{details.metric}"}],
        "actions.0.subject",
        "{details.metric}",
        "is not a detail of the created trigger, which passes none",
        id="detail-of-other-trigger",
    ),
    pytest.param(
        "sla.warning",
        [TAG, {"kind": "add_note", "body": "{details.from}"}],
        "actions.1.body",
        "{details.from}",
        "which passes only metric",
        id="second-action",
    ),
    pytest.param(
        "created",
        [email("line\nbreak {record.subject}")],
        "actions.0.subject",
        "line\nbreak {record.subject}",
        "contains the control character '\\n'; a subject must be one line",
        id="subject-line-feed",
    ),
    pytest.param(
        "created",
        [TAG, {"kind": "notify", "user_id": 1, "body": "Hi", "subject": "A\r\nBcc: x"}],
        "actions.1.subject",
        "A\r\nBcc: x",
        "contains the control character '\\r'",
        id="notify-subject-carriage-return",
    ),
    pytest.param(
        "created",
        [email("tab\there")],
        "actions.0.subject",
        "tab\there",
        "contains the control character '\\t'",
        id="subject-tab",
    ),
]


async def rule_count(name: str) -> int:
    return await WorkflowRule.count().where(WorkflowRule.name == name)


async def delete_rules(name: str) -> None:
    await WorkflowRule.delete().where(WorkflowRule.name == name)


@pytest.mark.parametrize(("trigger", "actions", "field", "value", "reason"), REJECTED)
async def test_save_rejects_unfilled_placeholder(
    trigger: str, actions: list[dict[str, Any]], field: str, value: str, reason: str
) -> None:
    name = f"Placeholder {uuid.uuid4().hex[:10]}"
    definition = {"trigger": {"kind": trigger}, "actions": actions}

    with pytest.raises(FieldError) as raised:
        await service.save_rule(None, "ticket", name, definition, None)

    error = raised.value
    number = int(field.split(".")[1]) + 1
    assert error.field == field
    assert error.value == value
    assert reason in error.reason
    assert error.message.startswith(f"Action {number} {field.split('.')[2]} ")
    assert repr(value) in error.message
    assert await rule_count(name) == 0


async def test_valid_placeholders_saved() -> None:
    name = f"Placeholders {uuid.uuid4().hex[:10]}"
    definition = {
        "trigger": {"kind": "sla.breached"},
        "actions": [
            email("{details.metric} of {record.subject}", "Rule {rule.name}"),
            {"kind": "add_note", "body": "Due {details.due_at}, no braces left"},
        ],
    }
    try:
        rule_id = await service.save_rule(None, "ticket", name, definition, None)
        rule = await service.get_rule(rule_id)
        saved = decode_definition(rule["definition"])
        assert saved.actions[0].subject == "{details.metric} of {record.subject}"
        assert saved.actions[1].body == "Due {details.due_at}, no braces left"
    finally:
        await delete_rules(name)


async def test_rejected_edit_keeps_version() -> None:
    name = f"Edited {uuid.uuid4().hex[:10]}"
    good = {"trigger": {"kind": "created"}, "actions": [email("{record.subject}")]}
    bad = {"trigger": {"kind": "created"}, "actions": [email("{{record.subject}}")]}
    try:
        rule_id = await service.save_rule(None, "ticket", name, good, None)

        with pytest.raises(FieldError) as raised:
            await service.save_rule(rule_id, "ticket", name + " renamed", bad, None)

        assert raised.value.field == "actions.0.subject"
        rule = await service.get_rule(rule_id)
        assert rule["current_version"] == 1
        assert rule["name"] == name
        versions = await WorkflowRuleVersion.count().where(
            WorkflowRuleVersion.rule == rule_id
        )
        assert versions == 1
    finally:
        await delete_rules(name)


async def test_reference_error_counts_from_one() -> None:
    name = f"No user {uuid.uuid4().hex[:10]}"
    task = {"kind": "create_task", "body": "Call", "due_in_minutes": 5}
    definition = {
        "trigger": {"kind": "created"},
        "actions": [TAG, {**task, "user_id": 2_000_000_000}],
    }

    with pytest.raises(FieldError) as raised:
        await service.save_rule(None, "ticket", name, definition, None)

    assert raised.value.field == "actions.1.user_id"
    assert raised.value.message == "Action 2 user id 2000000000 is not a user."
    assert await rule_count(name) == 0


async def deactivated_user() -> int:
    user = await make_user("support_agent")
    await User.update({User.active: False}).where(User.id == user.id)
    return user.id


async def team_of_deactivated_user() -> int:
    team = await make_team()
    user = await make_user("support_agent", team=team)
    await User.update({User.active: False}).where(User.id == user.id)
    return team


async def read_only_user() -> int:
    user = await make_user("read_only")
    return user.id


MISSING_ID = 2_000_000_000


async def missing_id() -> int:
    return MISSING_ID


# The second action, the field holding the id, and the start of the reason.
UNKNOWN_RECIPIENTS = [
    pytest.param("notify", "user_id", missing_id, "is not a user", id="notify-user"),
    pytest.param(
        "notify", "user_id", deactivated_user, "is a deactivated user", id="inactive"
    ),
    pytest.param("notify", "team_id", missing_id, "is not a team", id="notify-team"),
    pytest.param(
        "notify",
        "team_id",
        team_of_deactivated_user,
        "is a team without active users",
        id="team-without-active-users",
    ),
    pytest.param("assign", "team_id", missing_id, "is not a team", id="assign-team"),
    pytest.param(
        "create_task", "user_id", deactivated_user, "is a deactivated", id="task-user"
    ),
    pytest.param(
        "create_task",
        "user_id",
        read_only_user,
        "is a user whose roles let them edit no ticket",
        id="task-user-cannot-edit",
    ),
]


@pytest.mark.parametrize(("kind", "field", "make_id", "reason"), UNKNOWN_RECIPIENTS)
async def test_save_rejects_unknown_recipient(
    kind: str, field: str, make_id: Callable[[], Awaitable[int]], reason: str
) -> None:
    name = f"Recipient {uuid.uuid4().hex[:10]}"
    value = await make_id()
    action: dict[str, Any] = {"kind": kind, field: value}
    if kind != "assign":
        action["body"] = "Look at {record.subject}"
    if kind == "create_task":
        action["due_in_minutes"] = 5
    definition = {"trigger": {"kind": "created"}, "actions": [TAG, action]}

    with pytest.raises(FieldError) as raised:
        await service.save_rule(None, "ticket", name, definition, None)

    error = raised.value
    assert error.field == f"actions.1.{field}"
    assert error.value == value
    assert error.reason.startswith(reason)
    label = field.replace("_", " ")
    assert error.message.startswith(f"Action 2 {label} {value} {reason}")
    assert await rule_count(name) == 0


async def test_save_accepts_active_recipients() -> None:
    name = f"Recipients {uuid.uuid4().hex[:10]}"
    team = await make_team()
    user = await make_user("support_agent", team=team)
    definition = {
        "trigger": {"kind": "created"},
        "actions": [
            {"kind": "notify", "user_id": user.id, "body": "Hi"},
            {"kind": "notify", "team_id": team, "body": "Hi"},
            {"kind": "assign", "team_id": team},
        ],
    }
    try:
        rule_id = await service.save_rule(None, "ticket", name, definition, None)
        assert (await service.get_rule(rule_id))["current_version"] == 1
    finally:
        await delete_rules(name)


def api_request(path: str) -> Request[Any, Any, Any]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "query_string": b"",
        "headers": [],
    }
    return Request(scope)  # type: ignore[arg-type]


async def test_problem_details_count_from_one() -> None:
    name = f"Problem {uuid.uuid4().hex[:10]}"
    definition = {
        "trigger": {"kind": "created"},
        "actions": [TAG, email("Hi {{ record.subject }}")],
    }
    with pytest.raises(FieldError) as raised:
        await service.save_rule(None, "ticket", name, definition, None)

    response = on_field_error(api_request("/api/v1/rules"), raised.value)

    body = response.content
    assert response.status_code == 422
    assert body["field"] == "actions.1.subject"
    assert body["value"] == "{{ record.subject }}"
    assert body["detail"].startswith("Action 2 subject '{{ record.subject }}' ")
    assert "Actions.1" not in body["detail"]


def form(name: str, **rows: str) -> dict[str, str]:
    """Return a ticket rule's form, with ``action__0__kind`` written as
    ``action.0.kind``."""
    return {
        "object_type": "ticket",
        "name": name,
        "trigger.kind": "created",
        "match": "all",
        **{key.replace("__", "."): value for key, value in rows.items()},
    }


def label_of(page: str, field: str) -> str:
    """Return the opening tag of the first action row's label for ``field``."""
    match = re.search(rf'<label[^>]*data-action-field="{field}"[^>]*>', page)
    assert match is not None, f"no label for {field}"
    return match.group(0)


# Action rows of the form, the rejected path and the start of the message.
FORM_REJECTED = [
    pytest.param(
        {
            "action.0.kind": "add_tag",
            "action.0.tag": "first",
            "action.1.kind": "send_email",
            "action.1.recipient": "address",
            "action.1.to": "rules@example.com",
            "action.1.subject": "Hi {{ record.subject }}",
            "action.1.body": "Hello",
        },
        "actions.1.subject",
        "Action 2 subject '{{ record.subject }}' uses double braces",
        id="placeholder",
    ),
    pytest.param(
        {
            "action.0.kind": "create_task",
            "action.0.body": "Call",
            "action.0.due_in_minutes": "soon",
        },
        "actions.0.due_in_minutes",
        "Action 1 due in minutes 'soon' is not a whole number.",
        id="whole-number",
    ),
    pytest.param(
        {
            "action.0.kind": "notify",
            "action.0.user_id": str(MISSING_ID),
            "action.0.body": "Hello",
        },
        "actions.0.user_id",
        f"Action 1 user id {MISSING_ID} is not a user.",
        id="missing-user",
    ),
]


@pytest.mark.parametrize(("rows", "field", "message"), FORM_REJECTED)
async def test_form_names_action_from_one(
    admin_session: Session, rows: dict[str, str], field: str, message: str
) -> None:
    name = f"Form {uuid.uuid4().hex[:10]}"
    try:
        response = await admin_session.post("/admin/workflows", form(name, **rows))

        assert response.status_code == 422
        page = html.unescape(response.text)
        assert f'data-field="{field}"' in page
        assert message in page
        assert "Actions." not in page
        assert await rule_count(name) == 0
    finally:
        await delete_rules(name)


async def test_form_reads_only_kind_fields(admin_session: Session) -> None:
    name = f"Kind {uuid.uuid4().hex[:10]}"
    try:
        # Fields typed under another kind stay in the form but are not read.
        response = await admin_session.post(
            "/admin/workflows",
            form(
                name,
                action__0__kind="add_tag",
                action__0__tag="kept",
                action__0__subject="{{ left over }}",
                action__0__due_in_minutes="not a number",
            ),
        )

        assert response.status_code in (302, 303)
        rule = await WorkflowRule.select().where(WorkflowRule.name == name).first()
        assert rule is not None
        saved = decode_definition((await service.get_rule(rule["id"]))["definition"])
        assert saved.actions[0].kind == "add_tag"
        assert saved.actions[0].tag == "kept"
        assert saved.actions[0].subject is None
        assert saved.actions[0].due_in_minutes is None
    finally:
        await delete_rules(name)


async def test_show_fields_renders_kind_unsaved(admin_session: Session) -> None:
    name = f"Show {uuid.uuid4().hex[:10]}"
    try:
        row = await admin_session.get("/admin/workflows/rows/action?object_type=ticket")
        assert " hidden" not in label_of(row.text, "field")
        assert " hidden" in label_of(row.text, "tag")
        assert "show_fields" not in row.text
        new_page = await admin_session.get("/admin/workflows/new?object_type=ticket")
        assert '<noscript><button type="submit" name="show_fields"' in new_page.text

        response = await admin_session.post(
            "/admin/workflows",
            form(name, show_fields="yes", action__0__kind="add_tag"),
        )

        assert response.status_code == 200
        assert " hidden" not in label_of(response.text, "tag")
        assert " hidden" in label_of(response.text, "field")
        assert " hidden" in label_of(response.text, "subject")
        assert 'role="alert"' not in response.text
        assert await rule_count(name) == 0
    finally:
        await delete_rules(name)


async def test_number_error_keeps_typed_rows(admin_session: Session) -> None:
    name = f"Typed {uuid.uuid4().hex[:10]}"
    try:
        response = await admin_session.post(
            "/admin/workflows",
            form(
                name,
                condition__0__field="subject",
                condition__0__op="contains",
                condition__0__value="TYPED CONDITION",
                action__0__kind="create_task",
                action__0__body="MY TASK TEXT",
                action__0__due_in_minutes="abc",
                action__1__kind="notify",
                action__1__user_id="8",
                action__1__body="SECOND BODY",
            ),
        )

        assert response.status_code == 422
        page = html.unescape(response.text)
        assert "Action 1 due in minutes 'abc' is not a whole number." in page
        assert 'name="action.0.kind"' in page
        assert 'name="action.1.kind"' in page
        assert "MY TASK TEXT" in page
        assert "SECOND BODY" in page
        assert 'name="action.0.due_in_minutes" inputmode="numeric" value="abc"' in page
        assert 'name="action.1.user_id" inputmode="numeric" value="8"' in page
        assert 'value="TYPED CONDITION"' in page
        assert f'value="{name}"' in page
        assert await rule_count(name) == 0
    finally:
        await delete_rules(name)


async def test_trigger_number_error_reads_naturally(admin_session: Session) -> None:
    name = f"Delay {uuid.uuid4().hex[:10]}"
    rows = form(name, action__0__kind="add_tag", action__0__tag="typed")
    rows.update({"trigger.kind": "time_after", "trigger.delay_minutes": "1h"})
    try:
        response = await admin_session.post("/admin/workflows", rows)

        assert response.status_code == 422
        page = html.unescape(response.text)
        assert 'data-field="trigger.delay_minutes"' in page
        assert "Trigger delay minutes '1h' is not a whole number." in page
        assert "Trigger.delay" not in page
        assert 'name="trigger.delay_minutes" inputmode="numeric" value="1h"' in page
        assert '<option value="time_after" selected>' in page
        assert 'name="action.0.tag" value="typed"' in page
        assert await rule_count(name) == 0
    finally:
        await delete_rules(name)


async def test_add_and_remove_row_unsaved(admin_session: Session) -> None:
    name = f"Add row {uuid.uuid4().hex[:10]}"
    rows = form(name, action__0__kind="add_tag", action__0__tag="kept")
    try:
        for add, expected in (
            ("action", 'name="action.1.kind"'),
            ("condition", 'name="condition.0.field"'),
            ("group", 'name="group.0.match"'),
        ):
            response = await admin_session.post(
                "/admin/workflows", {**rows, "add_row": add}
            )

            assert response.status_code == 200
            assert expected in response.text
            assert 'name="action.0.tag" value="kept"' in response.text
            assert 'role="alert"' not in response.text

        removed = {
            **rows,
            "group.0.match": "any",
            "condition.1.field": "subject",
            "condition.1.group": "0",
            "action.1.kind": "add_note",
            "remove_row": "group:0",
        }
        response = await admin_session.post("/admin/workflows", removed)
        assert response.status_code == 200
        assert 'name="group.0.match"' not in response.text
        assert 'name="condition.1.field"' not in response.text
        assert 'name="action.1.kind"' in response.text

        response = await admin_session.post(
            "/admin/workflows", {**removed, "remove_row": "action:1"}
        )
        assert response.status_code == 200
        assert 'name="action.1.kind"' not in response.text
        assert 'name="action.0.tag" value="kept"' in response.text
        assert await rule_count(name) == 0
    finally:
        await delete_rules(name)
