"""A rule's definition as data: its trigger, condition groups and actions.

Definitions are msgspec structs stored as JSON in ``workflow_rule_version``.
``parse_definition`` decodes and checks one against its record type and
raises FieldError naming the path (``actions.0.field``, counted from 0) and
the value. Its message names the item counted from 1 ("Action 1 field").
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from app import errors, fields
from app.access.permissions import validation_error
from app.errors import FieldError
from app.workflows import placeholders
from app.workflows.records import RECORD_TYPES, RecordType

TriggerKind = Literal[
    "created",
    "updated",
    "field_changed",
    "stage_entered",
    "stage_left",
    "status_changed",
    "comment_received",
    "email.received",
    "time_after",
    "scheduled",
    "sla.warning",
    "sla.breached",
]
TRIGGER_LABELS: dict[str, str] = {
    "created": "Record created",
    "updated": "Record updated",
    "field_changed": "Field changed",
    "stage_entered": "Stage entered",
    "stage_left": "Stage left",
    "status_changed": "Ticket status changed",
    "comment_received": "Comment received",
    "email.received": "Email received",
    "time_after": "Time after a date",
    "scheduled": "On a schedule",
    "sla.warning": "SLA warning",
    "sla.breached": "SLA breached",
}
# Triggers that code outside the engine fires through ``engine.fire``.
FIRED_TRIGGERS = ("email.received", "sla.warning", "sla.breached")

Operator = Literal[
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
OPERATOR_LABELS: dict[str, str] = {
    "equals": "equals",
    "not_equals": "does not equal",
    "contains": "contains",
    "starts_with": "starts with",
    "greater": "is greater than",
    "less": "is less than",
    "in": "is one of",
    "is_empty": "is empty",
    "changed": "changed",
    "changed_to": "changed to",
}

ActionKind = Literal[
    "set_field",
    "clear_field",
    "move",
    "assign",
    "add_note",
    "notify",
    "send_email",
    "webhook",
    "create_task",
    "add_tag",
    "remove_tag",
    "rescore",
]
ACTION_LABELS: dict[str, str] = {
    "set_field": "Set a field",
    "clear_field": "Clear a field",
    "move": "Move stage or status",
    "assign": "Assign round-robin in a team",
    "add_note": "Add an internal note",
    "notify": "Notify a user or team",
    "send_email": "Send an email",
    "webhook": "Call a webhook",
    "create_task": "Create a follow-up task",
    "add_tag": "Add a tag",
    "remove_tag": "Remove a tag",
    "rescore": "Rescore",
}
# The fields of ``Action`` that each kind reads besides ``kind``. The rule
# form shows and reads only these.
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "set_field": ("field", "value"),
    "clear_field": ("field",),
    "move": ("value",),
    "assign": ("team_id",),
    "add_note": ("body",),
    "notify": ("user_id", "team_id", "body", "email", "subject"),
    "send_email": ("recipient", "to", "template_id", "subject", "body"),
    "webhook": ("endpoint_id", "url"),
    "create_task": ("user_id", "body", "due_in_minutes"),
    "add_tag": ("tag",),
    "remove_tag": ("tag",),
    "rescore": (),
}
# Actions that write to the record or its comments, inside the transaction.
FIELD_ACTIONS = (
    "set_field",
    "clear_field",
    "move",
    "assign",
    "add_note",
    "create_task",
    "add_tag",
    "remove_tag",
)
# Record types that have a score for the rescore action to recompute.
SCORED_TYPES = ("lead",)
# Fields about the user whose change triggered the rule.
ACTOR_FIELDS = ("actor.team", "actor.role")
MAX_DELAY_MINUTES = 366 * 24 * 60
MAX_TEXT = 5000
MAX_ITEMS = 50
MAX_NESTING = 4
# The words error messages use for one item of a definition's lists.
RULE_ITEMS = {"conditions": "Condition", "actions": "Action"}
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,59}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

Scalar = str | int | float | bool | None
Recipient = Literal["address", "requester", "owner"]


class Schedule(msgspec.Struct, forbid_unknown_fields=True):
    """When a scheduled rule runs, in UTC: every hour at ``minute``, every day
    at ``hour``:``minute``, or every week on ``weekday`` (0 is Monday)."""

    every: Literal["hourly", "daily", "weekly"] = "daily"
    minute: int = 0
    hour: int = 0
    weekday: int = 0


class Trigger(msgspec.Struct, forbid_unknown_fields=True):
    """The event that starts a rule.

    ``field``, ``from_value`` and ``to_value`` narrow ``field_changed``
    (empty means any value). ``stage`` narrows ``stage_entered`` and
    ``stage_left`` to one stage id (or ticket status), ``status`` narrows
    ``status_changed``. A ``time_after`` rule fires ``delay_minutes`` after
    the record's ``after`` date field, counted in the business hours of
    ``calendar_id`` when one is set.
    """

    kind: TriggerKind
    field: str | None = None
    from_value: str | None = None
    to_value: str | None = None
    stage: str | None = None
    status: str | None = None
    delay_minutes: int | None = None
    after: str | None = None
    calendar_id: int | None = None
    schedule: Schedule | None = None


class Condition(msgspec.Struct, tag="condition", forbid_unknown_fields=True):
    field: str
    op: Operator
    value: Scalar | list[str] = None


class Group(msgspec.Struct, tag="group", forbid_unknown_fields=True):
    """Conditions that must all hold (``all``) or of which one must (``any``)."""

    match: Literal["all", "any"] = "all"
    items: list[Condition | Group] = []


class Action(msgspec.Struct, forbid_unknown_fields=True):
    """One step of a rule. Which fields matter depends on ``kind``.

    - ``value``: the text a field is set to.
    - ``user_id``, ``team_id``: whom to notify or assign. A task goes to
      ``user_id``, or else to the record's assignee or owner.
    - ``to``: a fixed email address.
    - ``subject``, ``body``: the text of a note, task, email or
      notification, with ``{record.<field>}`` placeholders filled in.
    """

    kind: ActionKind
    field: str | None = None
    value: str | None = None
    user_id: int | None = None
    team_id: int | None = None
    to: str | None = None
    subject: str | None = None
    body: str | None = None
    # Rule webhooks go to an admin-defined endpoint (app.webhooks); ``url``
    # is kept only so that older definitions decode and get a clear error.
    endpoint_id: int | None = None
    url: str | None = None
    tag: str | None = None
    due_in_minutes: int | None = None
    email: bool = False
    # Whom send_email writes to: ``to`` ("address"), the record's requester
    # or contact ("requester"), or its assignee or owner ("owner").
    recipient: Recipient = "address"
    # A reply template (app.email.templates) that send_email renders as the
    # body, in place of ``body``.
    template_id: int | None = None


class RuleDefinition(msgspec.Struct, forbid_unknown_fields=True):
    trigger: Trigger
    conditions: Group = msgspec.field(default_factory=Group)
    actions: list[Action] = []


decoder = msgspec.json.Decoder(RuleDefinition)
encoder = msgspec.json.Encoder()


def decode_definition(data: bytes | str) -> RuleDefinition:
    """Decode a stored definition, which was checked when it was saved."""
    return decoder.decode(data)


def encode_definition(definition: RuleDefinition) -> str:
    return encoder.encode(definition).decode()


def parse_definition(object_type: str, raw: Any) -> RuleDefinition:
    """Build and check a definition from plain data (a decoded JSON object)."""
    record_type = RECORD_TYPES.get(object_type)
    if record_type is None:
        raise FieldError(
            "object_type",
            object_type,
            f"is not a workflow object type; use one of {', '.join(RECORD_TYPES)}",
        )
    try:
        try:
            definition = msgspec.convert(raw, RuleDefinition)
        except msgspec.ValidationError as error:
            raise validation_error("definition", raw, error) from None
        check_definition(record_type, definition)
    except FieldError as error:
        error.label = readable_path(error.field)
        raise
    return definition


def check_definition(record_type: RecordType, definition: RuleDefinition) -> None:
    from app.workflows.values import check_values

    check_trigger(record_type, definition.trigger)
    check_group(record_type, definition.conditions, "conditions", 0)
    check_values(record_type, definition)
    if not definition.actions:
        raise FieldError("actions", None, "must contain at least one action")
    if len(definition.actions) > MAX_ITEMS:
        raise FieldError("actions", len(definition.actions), f"exceed {MAX_ITEMS}")
    trigger_kind = definition.trigger.kind
    for index, action in enumerate(definition.actions):
        check_action(record_type, trigger_kind, action, f"actions.{index}")


def readable_path(path: str) -> str:
    """Return a definition path as a person reads it, counting from 1.

    ``actions.0.due_in_minutes`` becomes "Action 1 due in minutes", and
    ``conditions.items.1.items.0.op`` (msgspec's path) and ``conditions.1.0.op``
    (the checks' path) both become "Condition 2.1 operator".
    """
    return errors.readable_path(path.removeprefix("definition."), RULE_ITEMS)


def check_trigger(record_type: RecordType, trigger: Trigger) -> None:
    kind = trigger.kind
    if kind == "field_changed":
        require_field(record_type, trigger.field, "trigger.field", record_type.readable)
    if kind in ("stage_entered", "stage_left") and record_type.stage_field is None:
        raise FieldError(
            "trigger.kind", kind, f"needs {record_type.label.lower()} with stages"
        )
    if kind == "status_changed" and record_type.name != "ticket":
        raise FieldError("trigger.kind", kind, "applies to tickets only")
    if kind == "comment_received" and not record_type.has_comments:
        raise FieldError("trigger.kind", kind, "applies to deals and tickets only")
    if kind == "time_after":
        delay = trigger.delay_minutes
        if delay is None or not 0 <= delay <= MAX_DELAY_MINUTES:
            raise FieldError(
                "trigger.delay_minutes",
                delay,
                f"must be a number of minutes from 0 to {MAX_DELAY_MINUTES}",
            )
        after = trigger.after or "updated_at"
        if after not in record_type.date_fields:
            raise FieldError(
                "trigger.after",
                after,
                f"must be one of {', '.join(record_type.date_fields)}",
            )
    if kind == "scheduled":
        schedule = trigger.schedule
        if schedule is None:
            raise FieldError("trigger.schedule", None, "must be given for a schedule")
        check_range("trigger.schedule.minute", schedule.minute, 0, 59)
        check_range("trigger.schedule.hour", schedule.hour, 0, 23)
        check_range("trigger.schedule.weekday", schedule.weekday, 0, 6)


def check_range(path: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FieldError(path, value, f"must be from {low} to {high}")


def require_field(
    record_type: RecordType, name: str | None, path: str, allowed: tuple[str, ...]
) -> str:
    if not name or name not in allowed:
        raise FieldError(
            path,
            name,
            f"is not a {record_type.name} field; use one of {', '.join(allowed)}",
        )
    return name


def check_group(record_type: RecordType, group: Group, path: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise FieldError(path, None, f"nests groups deeper than {MAX_NESTING} levels")
    if len(group.items) > MAX_ITEMS:
        raise FieldError(path, len(group.items), f"has more than {MAX_ITEMS} items")
    for index, item in enumerate(group.items):
        item_path = f"{path}.{index}"
        if isinstance(item, Group):
            check_group(record_type, item, item_path, depth + 1)
            continue
        allowed = (*record_type.readable, *ACTOR_FIELDS)
        if not item.field.startswith("details."):
            require_field(record_type, item.field, f"{item_path}.field", allowed)
        if item.op in ("changed", "changed_to") and item.field in ACTOR_FIELDS:
            raise FieldError(f"{item_path}.op", item.op, "does not apply to the actor")


def check_action(
    record_type: RecordType, trigger_kind: str, action: Action, path: str
) -> None:
    kind = action.kind

    def check_text(
        name: str, value: str | None, required: bool, max_length: int = MAX_TEXT
    ) -> None:
        field_path = f"{path}.{name}"
        fields.text(field_path, value, required=required, max_length=max_length)
        placeholders.check(field_path, value, record_type, trigger_kind)

    if kind in ("set_field", "clear_field"):
        name = require_field(
            record_type, action.field, f"{path}.field", record_type.editable
        )
        raw = action.value if kind == "set_field" else None
        placeholders.check(f"{path}.value", raw, record_type, trigger_kind)
        try:
            record_type.parse(name, raw)
        except FieldError as error:
            raise FieldError(f"{path}.value", raw, error.reason) from None
    elif kind == "move":
        if record_type.stage_field is None:
            raise FieldError(f"{path}.kind", kind, "needs a record type with stages")
        try:
            record_type.parse(record_type.stage_field, action.value)
        except FieldError as error:
            raise FieldError(f"{path}.value", action.value, error.reason) from None
    elif kind == "assign":
        if record_type.team_field is None:
            raise FieldError(f"{path}.kind", kind, "needs a record type with teams")
        if action.team_id is None:
            raise FieldError(f"{path}.team_id", None, "must name a team")
    elif kind in ("add_note", "create_task"):
        if not record_type.has_comments:
            raise FieldError(f"{path}.kind", kind, "applies to deals and tickets only")
        check_text("body", action.body, required=True)
        if kind == "create_task":
            due = action.due_in_minutes
            if due is None or not 0 <= due <= MAX_DELAY_MINUTES:
                raise FieldError(
                    f"{path}.due_in_minutes",
                    due,
                    f"must be a number of minutes from 0 to {MAX_DELAY_MINUTES}",
                )
    elif kind == "notify":
        if (action.user_id is None) == (action.team_id is None):
            raise FieldError(
                f"{path}.user_id", None, "or a team must be chosen, not both"
            )
        check_text("body", action.body, required=True)
        check_text("subject", action.subject, required=False, max_length=200)
        placeholders.check_header(f"{path}.subject", action.subject)
    elif kind == "send_email":
        check_recipient(record_type, action, path)
        check_text("subject", action.subject, required=True, max_length=200)
        placeholders.check_header(f"{path}.subject", action.subject)
        if action.template_id is None:
            check_text("body", action.body, required=True)
        elif (action.body or "").strip():
            raise FieldError(
                f"{path}.body",
                action.body[:40] if action.body else action.body,
                "must be empty when a template is chosen",
            )
        elif action.template_id < 1:
            raise FieldError(
                f"{path}.template_id", action.template_id, "is not a template id"
            )
    elif kind == "webhook":
        if action.url is not None:
            raise FieldError(
                f"{path}.url",
                action.url,
                "is not accepted: rule webhooks go to an endpoint defined under "
                "Admin, Webhooks; set endpoint_id instead",
            )
        if action.endpoint_id is None or action.endpoint_id < 1:
            raise FieldError(
                f"{path}.endpoint_id",
                action.endpoint_id,
                "is required: the id of a webhook endpoint",
            )
    elif kind == "rescore":
        if not has_score(record_type.name):
            raise FieldError(
                f"{path}.kind",
                kind,
                f"applies to records with a score ({', '.join(SCORED_TYPES)}), "
                f"not to {record_type.name}s",
            )
    elif kind in ("add_tag", "remove_tag"):
        if not record_type.has_tags:
            raise FieldError(f"{path}.kind", kind, "applies to deals and tickets only")
        if not action.tag or not TAG.fullmatch(action.tag):
            raise FieldError(
                f"{path}.tag",
                action.tag,
                "must be 1 to 60 letters, digits, spaces or _.:- characters",
            )


def check_recipient(record_type: RecordType, action: Action, path: str) -> None:
    if action.recipient == "address":
        if not action.to or not EMAIL.fullmatch(action.to):
            raise FieldError(f"{path}.to", action.to, "is not an email address")
    elif action.recipient == "requester":
        if record_type.contact_field is None and record_type.email_field is None:
            raise FieldError(
                f"{path}.recipient",
                action.recipient,
                f"does not apply to {record_type.name}s, which have no requester "
                "or contact; choose owner or address",
            )
    elif record_type.owner_field is None:
        raise FieldError(
            f"{path}.recipient",
            action.recipient,
            f"does not apply to {record_type.name}s, which have no owner",
        )


def has_score(object_type: str) -> bool:
    """Return True for record types whose score the rescore action recomputes."""
    return object_type in SCORED_TYPES
