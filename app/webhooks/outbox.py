"""Writing outbox messages in the transaction of the change that causes them.

``record_outbox`` runs in ``ChangeSet.write`` after the events are
inserted. It adds a webhook message for every enabled endpoint that
subscribes to an event and whose filters match, and a message for every
side effect of workflow rules (notifications, mail, rule webhooks). So the
messages commit or roll back with the change, and a crash after commit
loses none of them: ``app.webhooks.delivery`` sends whatever is pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from app.encryption.columns import encrypted_columns
from app.events.tables import Event as EventRow
from realtime.messages import Event

if TYPE_CHECKING:
    from app.events.service import ChangeSet
    from app.workflows.actions import SideEffect

logger = logging.getLogger(__name__)

# The event kinds that endpoints may subscribe to.
EVENT_TYPES = (
    "deal.created",
    "deal.updated",
    "ticket.created",
    "ticket.updated",
    "ticket.sla",
    "account.created",
    "account.updated",
    "contact.created",
    "contact.updated",
    "comment.created",
)
# The event type of a workflow rule's "call a webhook" action.
RULE_WEBHOOK = "workflow.webhook"
WEBHOOK, NOTIFY, MAIL, RESCORE = "webhook", "notify", "mail", "rescore"
# Side effect function names (app.workflows.actions.SideEffect) to kinds.
SIDE_EFFECT_KINDS = {
    "workflow_webhook": WEBHOOK,
    "workflow_notify": NOTIFY,
    "send_mail": MAIL,
    "rescore": RESCORE,
}

INSERT_MESSAGE = """
INSERT INTO outbox_message
    (kind, endpoint, message_id, event_type, ordering_key, payload)
VALUES ({}, {}, {}, {}, {}, {})
RETURNING id
"""


@dataclass(frozen=True)
class Subscription:
    id: int
    event_types: tuple[str, ...]
    filters: dict[str, Any]


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def encode(value: Any) -> str:
    return msgspec.json.encode(value, enc_hook=str).decode()


async def insert_message(
    kind: str,
    payload: str,
    *,
    endpoint: int | None = None,
    event_type: str = "",
    ordering_key: str | None = None,
) -> int:
    """Insert one pending message in the open transaction; return its row id."""
    rows = await EventRow.raw(
        INSERT_MESSAGE,
        kind,
        endpoint,
        new_message_id(),
        event_type,
        ordering_key,
        payload,
    )
    return int(rows[0]["id"])


async def enabled_subscriptions(kinds: set[str]) -> list[Subscription]:
    rows = await EventRow.raw(
        "SELECT id, event_types, filters::text AS filters FROM webhook_endpoint "
        "WHERE enabled AND event_types && {}::varchar[] ORDER BY id",
        sorted(kinds),
    )
    return [
        Subscription(
            row["id"],
            tuple(row["event_types"]),
            msgspec.json.decode(row["filters"] or "{}"),
        )
        for row in rows
    ]


def sensitive_fields(record_type: str) -> set[str]:
    """Return the encrypted fields of a record type, which webhooks never carry."""
    from app.workflows.records import RECORD_TYPES

    kind = RECORD_TYPES.get(record_type)
    return set(encrypted_columns(kind.table)) if kind is not None else set()


async def record_of(event: Event) -> tuple[str, dict[str, Any] | None]:
    """Return the record type and readable, unencrypted fields of the event's
    record.

    A comment is matched against the deal or ticket it belongs to, so a
    pipeline or team filter applies to comments too.
    """
    from app.workflows.records import RECORD_TYPES, load_record

    record_type, record_id = event.record_type, event.record_id
    if record_type == "comment":
        for parent in ("deal", "ticket"):
            parent_id = event.changes.get(parent)
            if isinstance(parent_id, int):
                record_type, record_id = parent, parent_id
                break
    kind = RECORD_TYPES.get(record_type)
    if kind is None:
        return record_type, None
    record = await load_record(kind, record_id)
    if record is None:
        return record_type, None
    hidden = sensitive_fields(record_type)
    return record_type, {
        name: record.get(name) for name in kind.readable if name not in hidden
    }


def filters_match(filters: dict[str, Any], record_type: str, record: Any) -> bool:
    """Return True when every filter holds for the record.

    A filter on a field the record does not have (a pipeline on a ticket)
    does not hold, so such events are not sent.
    """
    if not filters:
        return True
    if record is None:
        return False
    pipeline = filters.get("pipeline")
    if pipeline is not None and (
        record_type != "deal" or record.get("pipeline") != pipeline
    ):
        return False
    team = filters.get("team")
    if team is not None and record.get("team") != team:
        return False
    field = filters.get("field")
    if field:
        if field not in record:
            return False
        value = record[field]
        if ("" if value is None else str(value)) != str(filters.get("value", "")):
            return False
    return True


def event_body(event: Event, record: dict[str, Any] | None) -> str:
    """Return the JSON body of an event's webhook message.

    The fields follow the Standard Webhooks payload shape: ``type``,
    ``timestamp`` and ``data``.
    """
    hidden = sensitive_fields(event.record_type)
    data: dict[str, Any] = {
        "event_id": event.id,
        "record_type": event.record_type,
        "record_id": event.record_id,
        "actor_id": event.actor_id,
        "changes": {
            name: change for name, change in event.changes.items() if name not in hidden
        },
    }
    if record is not None and event.record_type != "comment":
        data["record"] = record
    return encode(
        {
            "type": event.kind,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "data": data,
        }
    )


async def record_event_messages(events: list[Event]) -> int:
    """Insert the webhook messages of ``events``; return how many."""
    kinds = {event.kind for event in events if event.kind in EVENT_TYPES}
    if not kinds:
        return 0
    subscriptions = await enabled_subscriptions(kinds)
    if not subscriptions:
        return 0
    written = 0
    for event in events:
        matching = [s for s in subscriptions if event.kind in s.event_types]
        if not matching:
            continue
        record_type, record = await record_of(event)
        body = event_body(event, record)
        for subscription in matching:
            if not filters_match(subscription.filters, record_type, record):
                continue
            await insert_message(
                WEBHOOK,
                body,
                endpoint=subscription.id,
                event_type=event.kind,
                ordering_key=(
                    f"{subscription.id}:{event.record_type}:{event.record_id}"
                ),
            )
            written += 1
    return written


async def record_side_effect(effect: SideEffect) -> None:
    """Insert the message of one workflow side effect.

    The payload of a message other than a webhook also names the rule and
    the record it is about (``rule_id``, ``record_type``, ``record_id``),
    for the worker's logs. A webhook's payload is the body sent, which
    names them in ``data``.
    """
    kind = SIDE_EFFECT_KINDS.get(effect.function)
    if kind is None:
        raise ValueError(f"no outbox kind for side effect {effect.function!r}")
    if kind == WEBHOOK:
        endpoint_id, body = effect.args
        # The same key as the endpoint's event messages for the record, so a
        # rule's call and the record's events arrive in the order written.
        await insert_message(
            WEBHOOK,
            body,
            endpoint=endpoint_id,
            event_type=RULE_WEBHOOK,
            ordering_key=f"{endpoint_id}:{effect.record_type}:{effect.record_id}",
        )
        return
    payload: dict[str, Any] = {
        "rule_id": effect.rule_id,
        "record_type": effect.record_type,
        "record_id": effect.record_id,
    }
    if kind == NOTIFY:
        user_ids, message, link = effect.args
        payload.update({"user_ids": user_ids, "message": message, "link": link})
    elif kind == MAIL:
        to, subject, text = effect.args
        payload.update({"to": to, "subject": subject, "text": text})
    else:
        record_type, record_id = effect.args
        payload.update({"record_type": record_type, "record_id": record_id})
    await insert_message(kind, encode(payload))


async def record_outbox(changes: ChangeSet, events: list[Event]) -> int:
    """Insert the messages of newly written ``events`` and of the change set's
    side effects, inside its open transaction; return how many."""
    written = await record_event_messages(events)
    effects = list(changes.side_effects)
    changes.side_effects.clear()
    for effect in effects:
        await record_side_effect(effect)
        written += 1
    if written:
        logger.debug(
            "outbox messages written count=%d event_ids=%s",
            written,
            [event.id for event in events],
        )
    return written
