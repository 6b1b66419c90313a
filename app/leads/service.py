"""Changing leads: every page, form and job that edits one comes here.

The Leads.csv import is the exception: it writes in bulk (``app.imports.leads``)
and queues no rescoring.

Every change goes through ``change_set`` so that it is audited, runs
workflow rules and reaches open pages, and each one queues the lead's
rescoring once it has committed (``app.scoring.queue``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import msgspec

from app import fields
from app.accounts.service import check_owner, create_account
from app.contacts.service import check_email, create_contact
from app.deals.service import create_deal
from app.deals.tables import Deal, Stage
from app.encryption.columns import encrypt_values
from app.errors import FieldError, NotFound
from app.events.service import ChangeSet, change_set
from app.imports.fields import limit
from app.leads.conversion import chosen_match, find_matches
from app.leads.tables import CLOSED_STATUSES, STATUSES, Lead, LeadActivity
from app.merge import Edit, MergeResult, merge_edit

logger = logging.getLogger(__name__)

# Fields the edit form changes, in the order the form shows them. A lead
# becomes "converted" only through ``convert_lead``.
EDITABLE = ("name", "email", "company", "source", "status", "owner")
EDITABLE_STATUSES = tuple(status for status in STATUSES if status != "converted")
MAX_LENGTHS = {
    "name": limit(Lead.name),
    "email": limit(Lead.email),
    "company": limit(Lead.company),
    "source": limit(Lead.source),
}
ACTIVITY_KINDS = ("call", "email", "meeting", "note", "form_submitted")
MAX_ANSWERS = 60
MAX_QUESTION_LENGTH = 120
MAX_ANSWER_LENGTH = 500


def lead_topics(lead_id: int) -> list[str]:
    """Return the streams a change of a lead goes to: page, list and board."""
    return [f"lead:{lead_id}", "leads", "lead-board"]


def parse_lead_field(name: str, raw: str | None) -> Any:
    if name == "name":
        return fields.text("name", raw, max_length=MAX_LENGTHS["name"])
    if name in ("company", "source"):
        return fields.text(name, raw, max_length=MAX_LENGTHS[name])
    if name == "email":
        return fields.text("email", raw, max_length=MAX_LENGTHS["email"]) or None
    if name == "status":
        return fields.choice("status", raw, EDITABLE_STATUSES)
    if name == "owner":
        return fields.reference("owner", raw)
    raise FieldError(name, raw, "is not an editable lead field")


def parse_answers(raw: Any) -> dict[str, str]:
    """Check custom answers: a mapping of question to answer, both text."""
    if not isinstance(raw, dict):
        raise FieldError("answers", raw, "must map each question to an answer")
    if len(raw) > MAX_ANSWERS:
        raise FieldError("answers", len(raw), f"has more than {MAX_ANSWERS} questions")
    answers = {}
    for question, answer in raw.items():
        name = fields.text("question", str(question), max_length=MAX_QUESTION_LENGTH)
        if not name:
            raise FieldError("question", question, "must not be empty")
        text = fields.text(
            f"answers.{name}",
            None if answer is None else str(answer),
            max_length=MAX_ANSWER_LENGTH,
        )
        if text:
            answers[name] = text
    return answers


def closed_at_for(status: str) -> dt.datetime | None:
    return dt.datetime.now(dt.UTC) if status in CLOSED_STATUSES else None


def queue_rescoring(changes: ChangeSet, lead_id: int) -> None:
    """Rescore the lead once the change set's transaction has committed."""
    from app.scoring.queue import enqueue_rescore

    async def rescore() -> None:
        await enqueue_rescore(lead_id)

    changes.after_commit.append(rescore)


async def create_lead(
    values: dict[str, Any],
    actor_id: int | None,
    answers: dict[str, Any] | None = None,
    activity: str | None = None,
    activity_detail: str = "",
) -> int:
    """Create a lead from submitted text; a name or an email is required.

    ``owner`` defaults to the actor. ``activity`` records an activity of
    that kind and ``activity_detail`` with the lead, as the web form does.
    Raises FieldError naming the field for an invalid value, before anything
    is written.
    """
    parsed = {
        name: parse_lead_field(name, values.get(name))
        for name in EDITABLE
        if name in values and (name != "status" or values.get(name))
    }
    if not (parsed.get("name") or parsed.get("email")):
        raise FieldError("name", values.get("name"), "or email must be given")
    parsed["email"] = check_email(parsed.get("email"))
    await check_owner(parsed)
    parsed["owner"] = parsed.get("owner") or actor_id
    status = parsed.get("status", "new")
    checked_answers = parse_answers(answers or {})

    async with change_set(actor_id) as changes:
        rows = await Lead.insert(
            Lead(
                **encrypt_values(Lead, parsed),
                answers=msgspec.json.encode(checked_answers).decode(),
                closed_at=closed_at_for(status),
            )
        ).returning(Lead.id)
        lead_id: int = rows[0]["id"]
        if activity is not None:
            await LeadActivity.insert(
                LeadActivity(
                    lead=lead_id, kind=activity, detail=activity_detail, actor=actor_id
                )
            )
        changes.add(
            "lead.created",
            "lead",
            lead_id,
            lead_topics(lead_id),
            {"status": [None, status], "source": [None, parsed.get("source", "")]},
        )
        queue_rescoring(changes, lead_id)

    logger.info("lead created lead_id=%s user_id=%s", lead_id, actor_id)
    return lead_id


async def checked_edits(edits: dict[str, Edit]) -> dict[str, Edit]:
    email = edits.get("email")
    if email is not None and email.new != email.base:
        edits = {**edits, "email": Edit(base=email.base, new=check_email(email.new))}
    await check_owner({name: edit.new for name, edit in edits.items()})
    return edits


async def update_lead(
    lead_id: int,
    edits: dict[str, Edit],
    actor_id: int | None,
    expected_version: int | None = None,
) -> MergeResult:
    """Apply an edit to a lead, merging it with changes made since its base.

    Fields that someone else changed meanwhile are left as they are and
    returned in ``conflicts``; the rest apply in the same transaction.
    """
    edits = await checked_edits(edits)
    async with change_set(actor_id) as changes:
        status = edits.get("status")
        also_set = {}
        if status is not None:
            also_set["status"] = {"closed_at": closed_at_for(status.new)}
        result = await merge_edit(
            Lead, lead_id, edits, changes, also_set, expected_version=expected_version
        )
        if result.before["status"] == "converted" and "status" in result.applied:
            raise FieldError(
                "status",
                status.new if status else None,
                "cannot change once the lead is converted",
            )
        if result.applied:
            changes.add(
                "lead.updated", "lead", lead_id, lead_topics(lead_id), result.applied
            )
            queue_rescoring(changes, lead_id)

    logger.info(
        "lead updated lead_id=%s user_id=%s fields=%s conflicts=%s",
        lead_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def record_activity(
    lead_id: int, kind: str, detail: str, actor_id: int | None
) -> int:
    """Record an activity on a lead, such as a call; returns its id."""
    kind = fields.choice("kind", kind, ACTIVITY_KINDS)
    detail = fields.text("detail", detail, max_length=limit(LeadActivity.detail))
    if not await Lead.exists().where(Lead.id == lead_id):
        raise NotFound("lead", lead_id)
    async with change_set(actor_id) as changes:
        rows = await LeadActivity.insert(
            LeadActivity(lead=lead_id, kind=kind, detail=detail, actor=actor_id)
        ).returning(LeadActivity.id)
        activity_id: int = rows[0]["id"]
        changes.add(
            "lead.activity_added",
            "lead",
            lead_id,
            lead_topics(lead_id),
            {"activity": [None, kind]},
        )
        queue_rescoring(changes, lead_id)
    logger.info(
        "lead activity recorded lead_id=%s activity_id=%s kind=%s user_id=%s",
        lead_id,
        activity_id,
        kind,
        actor_id,
    )
    return activity_id


def split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().rpartition(" ")
    return (first, last) if first else ("", last)


class AlreadyConverted(FieldError):
    """A lead converted before; the message names what it became."""

    def __init__(self, lead: dict[str, Any]) -> None:
        super().__init__("status", lead["status"], "is already converted")
        self.lead_id = lead["id"]
        self.links = [
            f"{kind} {lead[f'converted_{kind}']}"
            for kind in ("contact", "account", "deal")
            if lead[f"converted_{kind}"] is not None
        ]

    @property
    def message(self) -> str:
        became = f" (to {', '.join(self.links)})" if self.links else ""
        return f"Lead {self.lead_id} is already converted{became}."


async def convert_lead(
    lead_id: int, values: dict[str, Any], actor_id: int | None
) -> dict[str, int | None]:
    """Turn a lead into a contact, an account (when it names a company) and a
    deal, in one transaction; returns their ids.

    ``values`` names the deal's ``stage``, whose pipeline the deal goes in,
    and may give its ``deal_name`` and ``amount``. ``contact`` and
    ``account`` may name an existing record that matches the lead
    (``app.leads.conversion.find_matches``) to use instead of a new one;
    empty or "new" creates one. The lead stays, with status "converted" and
    links to what it became. Raises FieldError naming the field for an
    invalid value, or for a lead converted before. Nothing is written then.
    """
    async with change_set(actor_id) as changes:
        lead = (
            await Lead.select()
            .where(Lead.id == lead_id)
            .lock_rows("NO KEY UPDATE")
            .first()
        )
        if lead is None:
            raise NotFound("lead", lead_id)
        if lead["status"] == "converted":
            raise AlreadyConverted(lead)
        matches = await find_matches(lead)
        reused_contact = chosen_match(
            "contact", values.get("contact"), matches.contacts
        )
        account_id = chosen_match("account", values.get("account"), matches.accounts)
        if account_id is None and reused_contact is not None:
            # A reused contact brings its account, so the deal and the
            # contact do not end up on two accounts of one company.
            account_id = next(
                (
                    row["account"]
                    for row in matches.contacts
                    if row["id"] == reused_contact
                ),
                None,
            )

        if account_id is None and lead["company"]:
            account_id = await create_account(
                {"name": lead["company"], "owner": str(lead["owner"] or "")}, actor_id
            )
        if reused_contact is not None:
            contact_id = reused_contact
        else:
            first, last = split_name(
                lead["name"] or (lead["email"] or "").split("@")[0]
            )
            contact_id = await create_contact(
                {
                    "first_name": first,
                    "last_name": last,
                    "email": lead["email"] or "",
                    "account": str(account_id or ""),
                    "owner": str(lead["owner"] or ""),
                    "lifecycle_stage": "customer",
                },
                actor_id,
            )
        deal_name = fields.text(
            "deal_name", values.get("deal_name"), max_length=limit(Deal.name)
        ) or (lead["company"] or lead["name"] or lead["email"] or f"Lead {lead_id}")
        stage_id = fields.reference("stage", values.get("stage"))
        if stage_id is None:
            raise FieldError("stage", values.get("stage"), "must be chosen")
        stage = await Stage.select(Stage.pipeline).where(Stage.id == stage_id).first()
        if stage is None:
            raise FieldError("stage", stage_id, "does not exist")
        deal_id = await create_deal(
            {
                "pipeline": str(stage["pipeline"]),
                "stage": str(stage_id),
                "name": deal_name,
                "amount": str(values.get("amount") or ""),
                "owner": str(lead["owner"] or ""),
            },
            actor_id,
        )
        await Deal.update({Deal.account: account_id, Deal.contact: contact_id}).where(
            Deal.id == deal_id
        )
        now = dt.datetime.now(dt.UTC)
        links = {
            "converted_contact": contact_id,
            "converted_account": account_id,
            "converted_deal": deal_id,
        }
        await Lead.update(
            {
                Lead.status: "converted",
                Lead.closed_at: now,
                Lead.converted_at: now,
                Lead.converted_contact: contact_id,
                Lead.converted_account: account_id,
                Lead.converted_deal: deal_id,
                Lead.version: lead["version"] + 1,
                Lead.updated_at: now,
            }
        ).where(Lead.id == lead_id)
        changes.add(
            "lead.converted",
            "lead",
            lead_id,
            lead_topics(lead_id),
            {
                "status": [lead["status"], "converted"],
                **{name: [None, value] for name, value in links.items()},
            },
        )
        queue_rescoring(changes, lead_id)

    logger.info(
        "lead converted lead_id=%s contact_id=%s account_id=%s deal_id=%s "
        "reused_contact=%s user_id=%s",
        lead_id,
        contact_id,
        account_id,
        deal_id,
        reused_contact is not None,
        actor_id,
    )
    return {"contact": contact_id, "account": account_id, "deal": deal_id}
