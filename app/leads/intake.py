"""Web form submissions: a new lead, or another submission of an open lead.

A person who sends the form twice stays one lead. When the submitted email
matches an open lead's (compared in lower case, without surrounding spaces),
the submission is added to that lead: empty fields are filled, and nothing a
user set is overwritten. Every submission records a "form submitted"
activity that lists what was sent. Closed leads (converted or unqualified)
are left alone, so a returning customer, or a person that a user ruled out
before, becomes a new lead on the open board.

Two submissions with one email are serialised by a transaction-level
advisory lock on the address, so the second finds the lead that the
first created. Leads created by users, the API and imports take no such lock and
may share an email.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from app.contacts.service import check_email
from app.errors import FieldError
from app.events.service import change_set
from app.imports.fields import limit
from app.leads.service import (
    create_lead,
    parse_answers,
    parse_lead_field,
    record_activity,
    update_lead,
)
from app.leads.tables import CLOSED_STATUSES, Lead, LeadActivity
from app.merge import Edit

logger = logging.getLogger(__name__)

# Fields a later submission fills while the lead's value is empty.
FILLABLE = ("name", "company", "source", "owner")
# Fields that the activity's detail leaves out: the form's settings can set
# them, so they do not show what the person sent.
NOT_SHOWN = ("owner", "source")
# Prefixes the advisory lock's key, so that it differs from other email locks.
LOCK_PREFIX = "lead-form:"
MAX_DETAIL = limit(LeadActivity.detail)


@dataclass(frozen=True)
class Submission:
    lead_id: int
    created: bool


async def submit_form(
    values: dict[str, Any], answers: dict[str, Any] | None = None
) -> Submission:
    """Store a web form submission as a new lead or on the lead with its email.

    ``values`` contains the submitted text of ``name``, ``email``, ``company``,
    ``source`` and ``owner``. Raises FieldError naming the field for an
    invalid value, before anything is written.
    """
    email = check_email(parse_lead_field("email", values.get("email")))
    if not email:
        raise FieldError("email", values.get("email"), "must be given")
    submitted = {
        name: parse_lead_field(name, values.get(name))
        for name in FILLABLE
        if values.get(name)
    }
    checked_answers = parse_answers(answers or {})

    async with change_set(None):
        await Lead.raw(
            "SELECT pg_advisory_xact_lock(hashtext({}))", LOCK_PREFIX + email
        )
        lead = await open_lead_with_email(email)
        if lead is None:
            lead_id = await create_lead(
                {**values, "email": email},
                None,
                answers=checked_answers,
                activity="form_submitted",
                activity_detail=submission_detail(submitted, checked_answers),
            )
            return Submission(lead_id=lead_id, created=True)
        await add_submission(lead, submitted, checked_answers)
    return Submission(lead_id=lead["id"], created=False)


async def open_lead_with_email(email: str) -> dict[str, Any] | None:
    """Lock and return the oldest open lead with ``email``, or None.

    A lead is open unless its status is in CLOSED_STATUSES.

    The row lock makes a conversion's update of the lead wait until the
    submission is stored. ``email`` must be in lower case without surrounding spaces.
    """
    rows = await Lead.raw(
        "SELECT id FROM lead WHERE lower(btrim(email)) = {} "
        "AND status <> ALL({}) ORDER BY id LIMIT 1 FOR NO KEY UPDATE",
        email,
        list(CLOSED_STATUSES),
    )
    if not rows:
        return None
    # Read like merge_edit does, so the values compare equal as edit bases.
    return await Lead.select().where(Lead.id == rows[0]["id"]).first()


async def add_submission(
    lead: dict[str, Any], submitted: dict[str, Any], answers: dict[str, str]
) -> None:
    """Record a repeated submission on ``lead`` and fill its empty fields."""
    edits = {
        name: Edit(base=lead[name], new=value)
        for name, value in submitted.items()
        if lead[name] in (None, "")
    }
    stored = stored_answers(lead["answers"])
    new_answers = {
        question: answer
        for question, answer in answers.items()
        if not stored.get(question)
    }
    if new_answers:
        edits["answers"] = Edit(
            base=lead["answers"],
            new=msgspec.json.encode({**stored, **new_answers}).decode(),
        )
    if edits:
        # update_lead merges under the row lock, so a field that a user set
        # since this read is reported as a conflict and keeps their value.
        await update_lead(lead["id"], edits, None)
    await record_activity(
        lead["id"], "form_submitted", submission_detail(submitted, answers), None
    )
    logger.info(
        "web form submission added to lead lead_id=%s filled=%s new_answers=%s",
        lead["id"],
        sorted(name for name in edits if name != "answers"),
        len(new_answers),
    )


def stored_answers(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = msgspec.json.decode(raw or "{}")
    return dict(raw or {})


def submission_detail(values: dict[str, Any], answers: dict[str, str]) -> str:
    """List the submitted values and answers as ``name: value; ...``.

    Empty values and the fields in NOT_SHOWN are left out.

    NOTE: an activity's detail is at most ``MAX_DETAIL`` characters long, so
    a longer list is cut and ends with an ellipsis.
    """
    parts = [
        f"{name}: {value}"
        for name, value in values.items()
        if value and name not in NOT_SHOWN
    ]
    parts += [f"{question}: {answer}" for question, answer in answers.items()]
    text = "; ".join(parts)
    if len(text) > MAX_DETAIL:
        text = text[: MAX_DETAIL - 1] + "…"
    return text
