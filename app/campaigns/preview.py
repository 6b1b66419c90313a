"""A campaign rendered for one recipient before it is sent, as its page shows
it and as a test message sends it.

The recipient is the first member of the segment that the viewer may read,
and fields hidden from the viewer show as "(hidden)". With no such member,
the sample values that saving checks against stand in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from app.access.permissions import Access
from app.access.scopes import scope_sql
from app.campaigns.segments import BATCH, parse_segment, segment_members
from app.campaigns.sending import TEST_TOKEN, unsubscribe_url
from app.campaigns.tables import Campaign
from app.campaigns.templates import SAMPLE_CONTEXT, recipient_fields, render_message
from app.config import Settings
from app.errors import FieldError
from app.workflows.placeholders import HIDDEN
from app.workflows.schema import Group

logger = logging.getLogger(__name__)

# The fields of a contact or a lead that each recipient value comes from.
# A value is hidden when the viewer may not see one of its fields.
RECIPIENT_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "contact": {
        "name": ("first_name", "last_name"),
        "first_name": ("first_name",),
        "last_name": ("last_name",),
        "email": ("email",),
        "title": ("title",),
        "company": ("account",),
    },
    "lead": {
        "name": ("name",),
        "first_name": ("name",),
        "last_name": ("name",),
        "email": ("email",),
        "title": (),
        "company": ("company",),
    },
}


@dataclass(frozen=True)
class Preview:
    """The rendered subject and body, or the error that rendering raised.

    ``values`` are what the template read as ``recipient``, and ``sample``
    is True when they are the sample values rather than a member's.
    """

    values: dict[str, str]
    sample: bool
    subject: str = ""
    body: str = ""
    error: FieldError | None = None


def visible_values(
    access: Access, audience: str, values: dict[str, str]
) -> dict[str, str]:
    sources = RECIPIENT_SOURCES[audience]
    return {
        key: (
            HIDDEN
            if any(not access.can_see(audience, field) for field in sources[key])
            else value
        )
        for key, value in values.items()
    }


async def readable_ids(access: Access, audience: str, ids: list[int]) -> set[int]:
    """Return those of ``ids`` that are in the viewer's read scope."""
    args: list[object] = [ids]
    table = "contact" if audience == "contact" else "lead"
    rows = await Campaign.raw(
        f"SELECT x.id FROM {table} x WHERE x.id = ANY({{}}::integer[]) "
        f"AND {scope_sql(access, audience, 'x', args)}",
        *args,
    )
    return {int(row["id"]) for row in rows}


async def first_readable_member(
    access: Access, audience: str, group: Group
) -> dict[str, Any] | None:
    """Return the segment's first member that the viewer may read, or None."""
    scopes = access.scopes_for(audience, "read")
    if not scopes:
        return None
    batch: list[dict[str, Any]] = []
    async for member in segment_members(audience, group):
        if scopes == ("all",):
            return member
        batch.append(member)
        if len(batch) < BATCH:
            continue
        found = await first_of(access, audience, batch)
        if found is not None:
            return found
        batch = []
    return await first_of(access, audience, batch) if batch else None


async def first_of(
    access: Access, audience: str, members: list[dict[str, Any]]
) -> dict[str, Any] | None:
    readable = await readable_ids(access, audience, [row["id"] for row in members])
    return next((row for row in members if row["id"] in readable), None)


async def preview_values(
    access: Access, campaign: dict[str, Any]
) -> tuple[dict[str, str], bool]:
    """Return the recipient values a preview renders, and whether they are samples."""
    audience = campaign["audience"]
    group = parse_segment(campaign["segment"], audience)
    member = await first_readable_member(access, audience, group)
    if member is None:
        return dict(SAMPLE_CONTEXT["recipient"]), True
    values = recipient_fields(audience, member)
    return visible_values(access, audience, values), False


async def campaign_preview(
    access: Access, campaign: dict[str, Any], settings: Settings
) -> Preview:
    values, sample = await preview_values(access, campaign)
    link = unsubscribe_url(settings, TEST_TOKEN)
    try:
        subject, body = render_message(campaign, values, link)
    except FieldError as error:
        logger.info(
            "campaign preview not rendered campaign_id=%s user_id=%s error=%s",
            campaign["id"],
            access.user_id,
            error,
        )
        return Preview(values, sample, error=error)
    return Preview(values, sample, subject, body)
