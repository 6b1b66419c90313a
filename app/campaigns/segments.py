"""Segments: saved filters over contacts or leads, evaluated with the workflow
operators of ``app.workflows.conditions``.

A segment is an ``app.workflows.schema.Group`` stored as JSON. Members are
read in batches by id and each is checked in Python, so a segment sees the
same operators and coercions as a workflow rule's conditions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from app.access.permissions import validation_error
from app.contacts.tables import Contact
from app.errors import FieldError, readable_path
from app.workflows.conditions import Facts, evaluate
from app.workflows.schema import MAX_ITEMS, MAX_NESTING, Condition, Group

# The fields a segment may test, per audience, with their labels.
SEGMENT_FIELDS: dict[str, dict[str, str]] = {
    "contact": {
        "first_name": "First name",
        "last_name": "Last name",
        "email": "Email",
        "title": "Title",
        "lifecycle_stage": "Lifecycle stage",
        "owner": "Owner (user id)",
        "account": "Account (id)",
        "account.name": "Account name",
        "account.industry": "Account industry",
        "account.country": "Account country",
        "created_at": "Created at",
    },
    "lead": {
        "name": "Name",
        "email": "Email",
        "company": "Company",
        "source": "Source",
        "status": "Status",
        "owner": "Owner (user id)",
        "score": "Score",
        "created_at": "Created at",
    },
}
# Operators about a change have no meaning for a saved list of people.
SEGMENT_OPERATORS = (
    "equals",
    "not_equals",
    "contains",
    "starts_with",
    "greater",
    "less",
    "in",
    "is_empty",
)
# The word error messages use for one condition of a segment.
SEGMENT_ITEMS = {"segment": "Segment rule"}
BATCH = 1000

CONTACT_MEMBERS = """
SELECT c.id, c.first_name, c.last_name, c.email, c.title, c.lifecycle_stage,
       c.owner, c.account, c.created_at,
       a.name AS "account.name", a.industry AS "account.industry",
       a.country AS "account.country"
FROM contact c LEFT JOIN account a ON a.id = c.account
WHERE c.id > {} AND c.email IS NOT NULL AND btrim(c.email) <> ''
ORDER BY c.id LIMIT {}
"""
LEAD_MEMBERS = """
SELECT l.id, l.name, l.email, l.company, l.source, l.status, l.owner, l.score,
       l.created_at
FROM lead l
WHERE l.id > {} AND l.email IS NOT NULL AND btrim(l.email) <> ''
ORDER BY l.id LIMIT {}
"""


def parse_segment(raw: Any, audience: str) -> Group:
    """Decode and check a segment.

    Raises FieldError naming ``segment.<path>`` for programs, counting from 0,
    and labelled for people from 1 ("Segment rule 2 operator").
    """
    try:
        group = decode_segment(raw)
        check_group(group, audience, "segment", 1)
    except FieldError as error:
        error.label = readable_path(error.field, SEGMENT_ITEMS)
        raise
    return group


def decode_segment(raw: Any) -> Group:
    if isinstance(raw, str | bytes):
        try:
            return msgspec.json.decode(raw, type=Group)
        except msgspec.ValidationError as error:
            raise validation_error("segment", msgspec.json.decode(raw), error) from None
        except msgspec.DecodeError:
            raise FieldError("segment", str(raw)[:40], "is not valid JSON") from None
    try:
        return msgspec.convert(raw, Group)
    except msgspec.ValidationError as error:
        raise validation_error("segment", raw, error) from None


def check_group(group: Group, audience: str, path: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise FieldError(path, None, f"nests groups more than {MAX_NESTING} deep")
    if len(group.items) > MAX_ITEMS:
        raise FieldError(
            f"{path}.items", len(group.items), f"has more than {MAX_ITEMS} conditions"
        )
    allowed = SEGMENT_FIELDS[audience]
    for index, item in enumerate(group.items):
        item_path = f"{path}.items.{index}"
        if isinstance(item, Group):
            check_group(item, audience, item_path, depth + 1)
            continue
        if item.field not in allowed:
            raise FieldError(
                f"{item_path}.field",
                item.field,
                f"is not a field of {audience}s: use one of {', '.join(allowed)}",
            )
        if item.op not in SEGMENT_OPERATORS:
            raise FieldError(
                f"{item_path}.op", item.op, "is about a change, not a saved segment"
            )
        if item.op not in ("is_empty", "equals", "not_equals") and item.value in (
            None,
            "",
            [],
        ):
            raise FieldError(f"{item_path}.value", item.value, "must not be empty")


def encode_segment(group: Group) -> str:
    return msgspec.json.encode(group).decode()


def segment_conditions(group: Group) -> list[Condition]:
    """Return the top-level conditions, which the form edits as rows."""
    return [item for item in group.items if isinstance(item, Condition)]


def matches(group: Group, record: dict[str, Any]) -> bool:
    selected, _ = evaluate(group, Facts(record=record))
    return selected


async def segment_members(audience: str, group: Group) -> AsyncIterator[dict[str, Any]]:
    """Yield the contacts or leads with an email address that the segment selects."""
    query = CONTACT_MEMBERS if audience == "contact" else LEAD_MEMBERS
    after = 0
    while True:
        rows = await Contact.raw(query, after, BATCH)
        if not rows:
            return
        for row in rows:
            if matches(group, row):
                yield row
        after = rows[-1]["id"]


async def count_members(audience: str, group: Group) -> int:
    count = 0
    async for _ in segment_members(audience, group):
        count += 1
    return count
