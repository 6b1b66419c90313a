"""The handlers of a rule's actions.

Actions that change the record or add comments write inside the open
``change_set`` transaction and merge their changes into the event of the
change that triggered the rule, so that event carries the final state.
The assign action also leaves the assignment service's own event. Emails,
notifications, webhooks and rescoring become ``SideEffect``s, written to
the outbox in the same transaction and delivered by a worker after commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from app.auth.tables import TeamMember, User
from app.comments.tables import Comment
from app.errors import FieldError
from app.events.service import ChangeSet
from app.merge import Edit, merge_edit
from app.sanitize import clean_rich_text
from app.workflows import placeholders
from app.workflows.clock import now
from app.workflows.records import RecordType, load_record
from app.workflows.schema import Action

if TYPE_CHECKING:
    from app.auth.service import CurrentUser

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 200


class ActionFailed(Exception):
    """An action could not run; the rule's other writes are rolled back."""


@dataclass(frozen=True)
class SideEffect:
    """A message for the outbox: its kind as a function name and arguments
    (app.webhooks.outbox.SIDE_EFFECT_KINDS), and the rule and record it is
    about, which the worker logs with each failed attempt."""

    function: str
    args: tuple[Any, ...]
    rule_id: int | None = None
    record_type: str | None = None
    record_id: int | None = None


@dataclass
class ActionContext:
    """The state one run of a rule shares between its actions.

    ``item`` is the pending event of ``changes`` that the record's changes
    merge into, made on the first change when the trigger brought none.
    ``trigger_kind`` is the rule's trigger, which decides the ``details``
    its placeholders may use.
    ``applied`` collects ``{"field": [before, after]}`` of this run, which
    is the change that rules at the next depth see.
    """

    rule_id: int
    rule_name: str
    record_type: RecordType
    record: dict[str, Any]
    changes: ChangeSet
    item: dict[str, Any] | None
    trigger_kind: str
    details: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, list[Any]] = field(default_factory=dict)
    side_effects: list[SideEffect] = field(default_factory=list)
    dry_run: bool = False

    @property
    def record_id(self) -> int:
        return int(self.record["id"])

    def add_side_effect(self, function: str, args: tuple[Any, ...]) -> None:
        self.side_effects.append(
            SideEffect(
                function, args, self.rule_id, self.record_type.name, self.record_id
            )
        )


def fill(
    template: str | None,
    context: ActionContext,
    field: str,
    hidden: Collection[str] = (),
    header: bool = False,
) -> str:
    """Fill the placeholders of an action's ``field`` (app.workflows.placeholders).

    ``hidden`` are the record fields the text's reader may not read (see
    ``hidden_from``), and ``header`` marks a text that becomes a mail header.
    Raises FieldError for a placeholder that would not be filled.
    """
    values = {
        "record": context.record,
        "details": context.details,
        "rule": {"name": context.rule_name},
    }
    return placeholders.render(
        field,
        template,
        context.record_type,
        context.trigger_kind,
        values,
        hidden,
        header,
    )


async def scoped_record(
    record_type: RecordType, record: dict[str, Any]
) -> dict[str, Any]:
    """Return the record with the ``owner_teams`` that scope checks need for
    a type without a team column (app.access.scopes.record_teams)."""
    from app.access.permissions import OBJECT_TYPES
    from app.access.scopes import owner_teams_sql

    kind = OBJECT_TYPES[record_type.name]
    if kind.team_field is not None or kind.owner_field is None:
        return record
    table = record_type.table._meta.tablename
    rows = await Comment.raw(
        f"SELECT {owner_teams_sql('r', kind.owner_field)} AS owner_teams "
        f"FROM {table} r WHERE r.id = {{}}",
        record["id"],
    )
    teams = list(rows[0]["owner_teams"] or ()) if rows else []
    return {**record, "owner_teams": teams}


def hidden_from(
    user: CurrentUser | None, record_type: RecordType, record: dict[str, Any]
) -> frozenset[str]:
    """Return the fields of ``record`` that ``user`` may not read, for the
    text a rule sends them. ``record`` is the record from ``scoped_record``.

    These are the fields their roles hide, as pages and the API leave them
    out (app.access.scopes.redact). Every field is hidden when the record is
    outside their read scope or the user is missing or inactive. A ticket's
    ``first_comment`` is a comment, so it also needs the right to read the
    ticket's comments. Encrypted fields follow the same rule.
    """
    from app.access.scopes import comment_permits, permits_record

    readable = record_type.readable
    if user is None:
        return frozenset(readable)
    kind = record_type.name
    if not permits_record(user.access, kind, "read", record):
        return frozenset(readable)
    hidden = set(user.access.hidden_fields(kind))
    if "first_comment" in readable and not comment_permits(
        user.access, "read", kind, record
    ):
        hidden.add("first_comment")
    return frozenset(hidden)


async def role_hidden_fields(object_type: str) -> list[frozenset[str]]:
    """Return, for each role, the fields of ``object_type`` that it hides."""
    from app.access.service import decode_json
    from app.access.tables import Role

    hidden = []
    for row in await Role.select(Role.field_rules):
        rules = (decode_json(row["field_rules"]) or {}).get(object_type) or {}
        hidden.append(
            frozenset(name for name, rule in rules.items() if rule == "hidden")
        )
    return hidden


async def hidden_from_stored_text(
    context: ActionContext, target: str | None = None
) -> frozenset[str]:
    """Return the record fields that a text the rule stores may not show.

    A note is read later by everyone who may read the record's comments, and
    a value copied into ``target`` by everyone who may read that field, so
    the text cannot be rendered per reader. It shows no field that a role
    hides unless that role hides ``target`` too (a note has no target). It
    shows no encrypted field unless ``target`` is encrypted, so that no
    plain copy of an encrypted value is stored.
    """
    from app.webhooks.outbox import sensitive_fields

    kind = context.record_type.name
    encrypted = sensitive_fields(kind)
    hidden = set() if target in encrypted else set(encrypted)
    for role_hides in await role_hidden_fields(kind):
        if target not in role_hides:
            hidden |= role_hides
    return frozenset(hidden)


async def hidden_from_reader(
    user: CurrentUser | None, record_type: RecordType, record: dict[str, Any]
) -> frozenset[str]:
    """Return the fields of ``record``, as loaded, that ``user`` may not read
    (``hidden_from``)."""
    return hidden_from(user, record_type, await scoped_record(record_type, record))


def merge_into_event(context: ActionContext, applied: dict[str, list[Any]]) -> None:
    """Add a field change to the triggering event, keeping its first before."""
    if not applied:
        return
    if context.item is None:
        kind = context.record_type.name
        context.changes.add(
            f"{kind}.updated",
            kind,
            context.record_id,
            context.record_type.topics(context.record),
            {},
        )
        context.item = context.changes.pending[-1]
    event_changes = context.item["changes"]
    for name, (before, after) in applied.items():
        earlier = event_changes.get(name)
        if isinstance(earlier, list) and len(earlier) == 2:
            before = earlier[0]
        event_changes[name] = [before, after]
        first = context.applied.get(name, [before, after])[0]
        context.applied[name] = [first, after]


async def set_values(context: ActionContext, values: dict[str, Any]) -> str:
    record_type = context.record_type
    await record_type.check(context.record, values)
    stamp = dt.datetime.now(dt.UTC)
    also_set = {
        name: dict.fromkeys(columns, stamp)
        for name, columns in record_type.also_set.items()
    }
    edits = {
        name: Edit(base=context.record.get(name), new=value)
        for name, value in values.items()
    }
    result = await merge_edit(
        record_type.table, context.record_id, edits, context.changes, also_set
    )
    if result.conflicts:
        # The record is locked by merge_edit, so this means the value read
        # earlier in this transaction is stale: a bug, not a race.
        raise ActionFailed(f"conflict on {[c.field for c in result.conflicts]}")
    merge_into_event(context, result.applied)
    context.record.update(result.after)
    if not result.applied:
        return "unchanged"
    return ", ".join(f"{name} = {value[1]}" for name, value in result.applied.items())


async def set_field(action: Action, context: ActionContext) -> str:
    assert action.field is not None
    hidden = await hidden_from_stored_text(context, action.field)
    value = context.record_type.parse(
        action.field, fill(action.value, context, "value", hidden)
    )
    return await set_values(context, {action.field: value})


async def clear_field(action: Action, context: ActionContext) -> str:
    assert action.field is not None
    value = context.record_type.parse(action.field, None)
    return await set_values(context, {action.field: value})


async def move(action: Action, context: ActionContext) -> str:
    stage_field = context.record_type.stage_field
    assert stage_field is not None
    value = context.record_type.parse(stage_field, action.value)
    return await set_values(context, {stage_field: value})


async def assign(action: Action, context: ActionContext) -> str:
    """Assign the record round-robin within the action's team.

    The choice of assignee belongs to ``app.assignment.service.assign``.
    """
    from app.assignment.service import assign as assign_round_robin

    assert action.team_id is not None
    record_type = context.record_type
    watched = [
        name for name in (record_type.owner_field, record_type.team_field) if name
    ]
    before = {name: context.record.get(name) for name in watched}
    await assign_round_robin(
        record_type.name, context.record_id, action.team_id, context.changes.actor_id
    )
    reloaded = await load_record(record_type, context.record_id)
    if reloaded is None:
        raise ActionFailed("the record was deleted during assignment")
    applied = {
        name: [before[name], reloaded.get(name)]
        for name in watched
        if reloaded.get(name) != before[name]
    }
    merge_into_event(context, applied)
    context.record.update(reloaded)
    owner = reloaded.get(record_type.owner_field or "")
    return f"assigned to user {owner}" if owner is not None else "no one to assign"


async def add_comment_row(context: ActionContext, body: str) -> int:
    """Insert an internal comment by the rule and no user, inside the open
    transaction."""
    parent = context.record_type.name
    text = clean_rich_text(html.escape(body))
    rows = await Comment.raw(
        f"INSERT INTO comment (body, author, internal, rule, rule_name, {parent}) "
        "VALUES ({}, NULL, true, {}, {}, {}) RETURNING id",
        text,
        context.rule_id,
        context.rule_name,
        context.record_id,
    )
    comment_id = int(rows[0]["id"])
    # "rule" marks comments that a rule wrote, which do not count as received.
    context.changes.add(
        "comment.created",
        "comment",
        comment_id,
        [f"{parent}:{context.record_id}"],
        {parent: context.record_id, "rule": context.rule_id},
    )
    return comment_id


async def add_note(action: Action, context: ActionContext) -> str:
    hidden = await hidden_from_stored_text(context)
    comment_id = await add_comment_row(
        context, fill(action.body, context, "body", hidden)
    )
    return f"note {comment_id} added"


async def create_task(action: Action, context: ActionContext) -> str:
    """Create a task on the record for the action's user, or else for the
    record's assignee or owner, due ``due_in_minutes`` from now."""
    from app.access.scopes import permits_record
    from app.auth.service import load_user
    from app.tasks.service import MAX_TITLE
    from app.tasks.service import create_task as create_task_row

    due_at = now() + dt.timedelta(minutes=action.due_in_minutes or 0)
    assignee = action.user_id
    if assignee is None:
        assignee = context.record.get(context.record_type.owner_field or "")
    # The title shows in the record's task list to everyone who reads it.
    hidden = await hidden_from_stored_text(context)
    if assignee is not None:
        # A task's title names its record, and ticking it needs the right to
        # edit the record, so it goes only to someone who may edit it.
        user = await load_user(int(assignee))
        kind = context.record_type.name
        if user is None or not permits_record(
            user.access, kind, "edit", context.record
        ):
            raise ActionFailed(
                f"user {assignee} may not edit {kind} {context.record_id}, "
                "so no task was created for them"
            )
        hidden |= await hidden_from_reader(user, context.record_type, context.record)
    body = fill(action.body, context, "body", hidden)
    title = " ".join(body.split())[:MAX_TITLE]
    task_id = await create_task_row(
        context.record_type.name,
        context.record_id,
        title,
        assignee,
        due_at,
        context.changes.actor_id,
        context.rule_id,
    )
    return (
        f"task {task_id} for user {assignee} due {due_at.isoformat(timespec='minutes')}"
    )


async def change_tag(action: Action, context: ActionContext) -> str:
    assert action.tag is not None
    table = context.record_type.table._meta.tablename
    before = list(context.record.get("tags") or [])
    if action.kind == "add_tag":
        after = before if action.tag in before else [*before, action.tag]
    else:
        after = [tag for tag in before if tag != action.tag]
    if after == before:
        return "unchanged"
    await Comment.raw(
        f"UPDATE {table} SET tags = {{}}, version = version + 1, "
        "updated_at = now() WHERE id = {}",
        after,
        context.record_id,
    )
    merge_into_event(context, {"tags": [before, after]})
    context.record["tags"] = after
    return f"tags = {', '.join(after) or 'none'}"


async def recipients(action: Action) -> list[dict[str, Any]]:
    """Return the active users a notification goes to (id, email)."""
    if action.user_id is not None:
        query = User.select(User.id, User.email).where(
            (User.id == action.user_id) & (User.active == True)  # noqa: E712
        )
    else:
        members = TeamMember.select(TeamMember.user).where(
            TeamMember.team == action.team_id
        )
        query = (
            User.select(User.id, User.email)
            .where(
                ((User.team == action.team_id) | User.id.is_in(members))
                & (User.active == True)  # noqa: E712
            )
            .order_by(User.id)
            .limit(MAX_RECIPIENTS)
        )
    return list(await query)


async def notify(action: Action, context: ActionContext) -> str:
    from app.auth.service import load_user

    users = await recipients(action)
    if not users:
        raise ActionFailed(
            f"no active user to notify user_id={action.user_id} "
            f"team_id={action.team_id}"
        )
    link = f"/{context.record_type.name}s/{context.record_id}"
    if context.record_type.name == "deal":
        link = f"/deals/{context.record_id}"
    # Each user reads the text with only the fields they may read, so users
    # whose roles hide the same fields share one rendering and one message.
    readers: dict[frozenset[str], list[dict[str, Any]]] = {}
    record = await scoped_record(context.record_type, context.record)
    for user in users:
        reader = await load_user(int(user["id"]))
        hidden = hidden_from(reader, context.record_type, record)
        readers.setdefault(hidden, []).append(user)
    for hidden, members in readers.items():
        message = fill(action.body, context, "body", hidden)
        member_ids = [member["id"] for member in members]
        context.add_side_effect("workflow_notify", (member_ids, message, link))
        if not action.email:
            continue
        subject = fill(action.subject, context, "subject", hidden, header=True)
        subject = subject or placeholders.header_text(context.rule_name)
        for member in members:
            context.add_side_effect("send_mail", (member["email"], subject, message))
    user_ids = [user["id"] for user in users]
    return f"notify users {user_ids}" + (" by email too" if action.email else "")


async def send_email(action: Action, context: ActionContext) -> str:
    """Queue an email to the action's recipient, with the action's text or a
    reply template rendered for the record as its body."""
    from app.auth.service import load_user
    from app.email.outbound import tagged_subject
    from app.workflows.mail import (
        HiddenFor,
        RecipientMissing,
        recipient_address,
        template_body,
    )

    try:
        address = await recipient_address(action, context.record_type, context.record)
    except RecipientMissing as error:
        raise ActionFailed(str(error)) from None
    # The owner reads only the fields their roles let them read, in the
    # action's text and in a template's values alike. An address outside the
    # users (fixed or the requester) gets every field.
    hidden: frozenset[str] = frozenset()
    hidden_for: HiddenFor | None = None
    if action.recipient == "owner":
        owner_id = context.record.get(context.record_type.owner_field or "")
        owner = await load_user(int(owner_id)) if owner_id is not None else None
        hidden_for = functools.partial(hidden_from_reader, owner)
        hidden = await hidden_for(context.record_type, context.record)
    subject = fill(action.subject, context, "subject", hidden, header=True)
    if context.record_type.name == "ticket":
        # Mail sent by a rule is not stored as one of the ticket's messages,
        # so the tag is what threads the customer's reply onto the ticket.
        subject = tagged_subject(context.record_id, subject)
    if action.template_id is not None:
        body = await template_body(
            action.template_id, context.record_type, context.record, hidden_for
        )
    else:
        body = fill(action.body, context, "body", hidden)
    context.add_side_effect("send_mail", (address, subject, body))
    template = f" from template {action.template_id}" if action.template_id else ""
    return f"email to {address}{template}"


def webhook_payload(context: ActionContext) -> str:
    from app.webhooks.outbox import sensitive_fields

    # Encrypted fields stay out, as they do from event messages.
    hidden = sensitive_fields(context.record_type.name)
    record = {
        name: context.record.get(name)
        for name in context.record_type.readable
        if name in context.record and name not in hidden
    }
    # The Standard Webhooks payload shape, as for event messages.
    payload = {
        "type": "workflow.webhook",
        "timestamp": now().isoformat(),
        "data": {
            "rule": {"id": context.rule_id, "name": context.rule_name},
            "record_type": context.record_type.name,
            "record_id": context.record_id,
            "record": record,
            "changes": {
                name: change
                for name, change in context.applied.items()
                if name not in hidden
            },
            "details": context.details,
        },
    }
    return msgspec.json.encode(payload, enc_hook=str).decode()


async def webhook(action: Action, context: ActionContext) -> str:
    """Send the record to an admin-defined endpoint, signed with its secret."""
    from app.webhooks.tables import WebhookEndpoint

    endpoint = (
        await WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.url)
        .where(WebhookEndpoint.id == action.endpoint_id)
        .first()
    )
    if endpoint is None:
        raise ActionFailed(f"webhook endpoint {action.endpoint_id} not found")
    body = webhook_payload(context)
    context.add_side_effect("workflow_webhook", (endpoint["id"], body))
    return f"POST {endpoint['url']}"


async def rescore(action: Action, context: ActionContext) -> str:
    context.add_side_effect("rescore", (context.record_type.name, context.record_id))
    return "rescoring queued"


HANDLERS = {
    "set_field": set_field,
    "clear_field": clear_field,
    "move": move,
    "assign": assign,
    "add_note": add_note,
    "create_task": create_task,
    "add_tag": change_tag,
    "remove_tag": change_tag,
    "notify": notify,
    "send_email": send_email,
    "webhook": webhook,
    "rescore": rescore,
}


async def run_action(action: Action, context: ActionContext) -> str:
    """Run one action and describe what it did; raises ActionFailed or
    FieldError when it cannot."""
    handler = HANDLERS[action.kind]
    try:
        return await handler(action, context)
    except FieldError as error:
        raise ActionFailed(f"{action.kind}: {error.message}") from error
