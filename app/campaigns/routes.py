"""Campaign pages, and the public unsubscribe page that campaign mail links to."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from app.access.guards import PUBLIC, permission
from app.auth.service import CurrentUser
from app.campaigns.preview import campaign_preview
from app.campaigns.segments import (
    SEGMENT_FIELDS,
    SEGMENT_OPERATORS,
    count_members,
    parse_segment,
    segment_conditions,
)
from app.campaigns.service import (
    EDITABLE_STATES,
    CampaignInput,
    campaign_stats,
    cancel_campaign,
    converted_leads,
    create_campaign,
    get_campaign,
    get_recipient,
    influence_totals,
    influenced_deals,
    list_campaigns,
    list_recipients,
    schedule_campaign,
    unsubscribe_recipient,
    update_campaign,
)
from app.campaigns.tables import AUDIENCES
from app.campaigns.templates import placeholder_list
from app.campaigns.tokens import read_token
from app.errors import FieldError, NotFound
from app.pagination import PageRequest, parse_sibling_pages, reject_unknown_query
from app.web.forms import RecordId
from app.web.pages import live_context
from app.workflows.schema import OPERATOR_LABELS

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
CAMPAIGNS_PER_PAGE = 25
# The minimum number of condition rows the form shows.
# NOTE: the form edits top-level conditions only. A segment with nested
# groups, which only the service accepts, loses them when saved here.
FORM_ROWS = 5
UNSUBSCRIBE_PATH = "/unsubscribe"
# The page numbers of the campaign page's three lists.
PAGE_PARAMS = ("recipients_page", "deals_page", "leads_page")
# The one-click POST of RFC 8058 comes from a mail provider, which has no
# CSRF token; the signed token in the path is the authorisation.
CSRF_EXEMPT_PATH = f"^{UNSUBSCRIBE_PATH}/"


def segment_from_form(form: FormMultiDict) -> dict[str, Any]:
    """Build a segment from the form's condition rows; blank rows are ignored."""
    fields = form.getall("condition_field", [])
    operators = form.getall("condition_op", [])
    values = form.getall("condition_value", [])
    items = []
    for index, name in enumerate(fields):
        name = str(name).strip()
        if not name:
            continue
        op = str(operators[index]) if index < len(operators) else "equals"
        value = str(values[index]) if index < len(values) else ""
        items.append({"type": "condition", "field": name, "op": op, "value": value})
    return {"type": "group", "match": str(form.get("match") or "all"), "items": items}


def input_from_form(form: FormMultiDict) -> CampaignInput:
    return CampaignInput(
        name=form.get("name"),
        audience=form.get("audience") or "contact",
        segment=segment_from_form(form),
        subject=form.get("subject"),
        body=form.get("body"),
        rate_per_minute=form.get("rate_per_minute"),
        influence_days=form.get("influence_days"),
    )


def typed_from_form(form: FormMultiDict) -> dict[str, Any]:
    segment = segment_from_form(form)
    return {
        "name": form.get("name", ""),
        "audience": form.get("audience", "contact"),
        "match": segment["match"],
        "conditions": segment["items"],
        "subject": form.get("subject", ""),
        "body": form.get("body", ""),
        "rate_per_minute": form.get("rate_per_minute", ""),
        "influence_days": form.get("influence_days", ""),
    }


def typed_from_campaign(campaign: dict[str, Any]) -> dict[str, Any]:
    group = parse_segment(campaign["segment"], campaign["audience"])
    return {
        "name": campaign["name"],
        "audience": campaign["audience"],
        "match": group.match,
        "conditions": [
            {"field": item.field, "op": item.op, "value": item.value or ""}
            for item in segment_conditions(group)
        ],
        "subject": campaign["subject"],
        "body": campaign["body"],
        "rate_per_minute": campaign["rate_per_minute"],
        "influence_days": campaign["influence_days"],
    }


def form_page(
    typed: dict[str, Any],
    error: FieldError | None,
    campaign: dict[str, Any] | None = None,
) -> Template:
    return Template(
        "campaigns/form.html",
        context={
            "typed": typed,
            "error": error,
            "campaign": campaign,
            "audiences": AUDIENCES,
            "segment_fields": SEGMENT_FIELDS,
            "operators": {op: OPERATOR_LABELS[op] for op in SEGMENT_OPERATORS},
            "rows": max(FORM_ROWS, len(typed["conditions"]) + 1),
            "placeholders": placeholder_list(),
            "section": "campaigns",
        },
        status_code=422 if error else 200,
    )


async def campaign_page(
    request: UserRequest,
    campaign_id: int,
    raw_pages: dict[str, str | None],
    error: FieldError | None = None,
    test_queued: bool = False,
) -> Template:
    live = await live_context([f"campaign:{campaign_id}"], presence=False)
    campaign = await get_campaign(campaign_id)
    numbers = {name: raw_pages.get(name) for name in PAGE_PARAMS}
    pages = parse_sibling_pages(f"/campaigns/{campaign_id}", numbers)
    # Recipients are chosen when sending starts; until then, show how many
    # the segment selects now.
    members = None
    preview = None
    if campaign["state"] in EDITABLE_STATES:
        group = parse_segment(campaign["segment"], campaign["audience"])
        members = await count_members(campaign["audience"], group)
        preview = await campaign_preview(
            request.user.access, campaign, request.app.state.settings
        )
    return Template(
        "campaigns/detail.html",
        context={
            "campaign": campaign,
            "members": members,
            "preview": preview,
            "test_queued": test_queued,
            "viewer_email": request.user.email,
            "stats": await campaign_stats(campaign_id),
            "influence": await influence_totals(campaign_id),
            "recipients": await list_recipients(campaign_id, pages["recipients_page"]),
            "deals": await influenced_deals(campaign_id, pages["deals_page"]),
            "leads": await converted_leads(campaign_id, pages["leads_page"]),
            "access": request.user.access,
            "error": error,
            "section": "campaigns",
            **live,
        },
        status_code=422 if error else 200,
    )


class CampaignController(Controller):
    path = "/campaigns"

    @get("/", opt=permission("campaign", "read"), before_request=reject_unknown_query)
    async def campaign_list(
        self, request: UserRequest, page: FromQuery[str | None] = None
    ) -> Template:
        paging = PageRequest.parse(page, str(CAMPAIGNS_PER_PAGE), path="/campaigns")
        return Template(
            "campaigns/list.html",
            context={
                "campaigns": await list_campaigns(paging),
                "access": request.user.access,
                "section": "campaigns",
            },
        )

    @get("/new", opt=permission("campaign", "create"))
    async def new_campaign(self) -> Template:
        typed = {
            "name": "",
            "audience": "contact",
            "match": "all",
            "conditions": [],
            "subject": "",
            "body": "Hello {{ recipient.first_name }},\n\n",
            "rate_per_minute": "60",
            "influence_days": "30",
        }
        return form_page(typed, None)

    @post("/", opt=permission("campaign", "create"), status_code=200)
    async def create(self, request: UserRequest) -> Template | Redirect:
        form = await request.form()
        try:
            campaign_id = await create_campaign(input_from_form(form), request.user.id)
        except FieldError as error:
            return form_page(typed_from_form(form), error)
        return Redirect(f"/campaigns/{campaign_id}")

    @get("/{campaign_id:int}", opt=permission("campaign", "read"))
    async def detail(
        self,
        request: UserRequest,
        campaign_id: RecordId,
        recipients_page: FromQuery[str | None] = None,
        deals_page: FromQuery[str | None] = None,
        leads_page: FromQuery[str | None] = None,
        test: FromQuery[str | None] = None,
    ) -> Template:
        return await campaign_page(
            request,
            campaign_id,
            {
                "recipients_page": recipients_page,
                "deals_page": deals_page,
                "leads_page": leads_page,
            },
            test_queued=test == "queued",
        )

    @get("/{campaign_id:int}/form", opt=permission("campaign", "edit"))
    async def edit_form(self, campaign_id: RecordId) -> Template:
        campaign = await get_campaign(campaign_id)
        return form_page(typed_from_campaign(campaign), None, campaign)

    @post("/{campaign_id:int}", opt=permission("campaign", "edit"), status_code=200)
    async def update(
        self, request: UserRequest, campaign_id: RecordId
    ) -> Template | Redirect:
        form = await request.form()
        campaign = await get_campaign(campaign_id)
        try:
            await update_campaign(campaign_id, input_from_form(form), request.user.id)
        except FieldError as error:
            return form_page(typed_from_form(form), error, campaign)
        return Redirect(f"/campaigns/{campaign_id}")

    @post(
        "/{campaign_id:int}/schedule",
        opt=permission("campaign", "edit"),
        status_code=200,
    )
    async def schedule(
        self, request: UserRequest, campaign_id: RecordId
    ) -> Template | Redirect:
        form = await request.form()
        try:
            await schedule_campaign(campaign_id, form.get("send_at"), request.user.id)
        except FieldError as error:
            return await campaign_page(request, campaign_id, {}, error)
        # The worker's dispatcher checks for due campaigns every five seconds.
        return Redirect(f"/campaigns/{campaign_id}")

    @post(
        "/{campaign_id:int}/test", opt=permission("campaign", "edit"), status_code=200
    )
    async def send_test(
        self, request: UserRequest, campaign_id: RecordId
    ) -> Template | Redirect:
        """Queue the campaign rendered as its preview shows it, to the viewer."""
        campaign = await get_campaign(campaign_id)
        # Rendered now, so an error shows on the page instead of in the worker.
        preview = await campaign_preview(
            request.user.access, campaign, request.app.state.settings
        )
        if preview.error is not None:
            logger.info(
                "campaign test not queued campaign_id=%s user_id=%s error=%s",
                campaign_id,
                request.user.id,
                preview.error,
            )
            return await campaign_page(request, campaign_id, {}, preview.error)
        await request.app.state.arq.enqueue_job(
            "send_campaign_test", campaign_id, request.user.id, preview.values
        )
        logger.info(
            "campaign test queued campaign_id=%s user_id=%s",
            campaign_id,
            request.user.id,
        )
        return Redirect(f"/campaigns/{campaign_id}?test=queued")

    @post(
        "/{campaign_id:int}/cancel", opt=permission("campaign", "edit"), status_code=200
    )
    async def cancel(
        self, request: UserRequest, campaign_id: RecordId
    ) -> Template | Redirect:
        try:
            await cancel_campaign(campaign_id, request.user.id)
        except FieldError as error:
            return await campaign_page(request, campaign_id, {}, error)
        return Redirect(f"/campaigns/{campaign_id}")


def unsubscribe_page(
    recipient: dict[str, Any] | None, token: str, done: bool, status_code: int = 200
) -> Template:
    return Template(
        "campaigns/unsubscribe.html",
        context={"recipient": recipient, "token": token, "done": done},
        status_code=status_code,
    )


async def recipient_of(request: Request[Any, Any, Any], token: str) -> int | None:
    recipient_id = read_token(request.app.state.settings.secret_key, token)
    if recipient_id is None:
        logger.info("unsubscribe token invalid token=%s", token[:24])
    return recipient_id


class UnsubscribeController(Controller):
    """GET shows a confirmation; POST unsubscribes (also RFC 8058's one-click)."""

    path = UNSUBSCRIBE_PATH

    @get("/{token:str}", exclude_from_auth=True, opt={"permission": PUBLIC})
    async def confirm(
        self, request: Request[Any, Any, Any], token: FromPath[str]
    ) -> Template:
        recipient_id = await recipient_of(request, token)
        if recipient_id is None:
            return unsubscribe_page(None, token, False, 404)
        try:
            recipient = await get_recipient(recipient_id)
        except NotFound:
            return unsubscribe_page(None, token, False, 404)
        return unsubscribe_page(
            recipient, token, recipient["unsubscribed_at"] is not None
        )

    @post(
        "/{token:str}",
        exclude_from_auth=True,
        opt={"permission": PUBLIC},
        status_code=200,
    )
    async def unsubscribe(
        self, request: Request[Any, Any, Any], token: FromPath[str]
    ) -> Template:
        recipient_id = await recipient_of(request, token)
        if recipient_id is None:
            return unsubscribe_page(None, token, False, 404)
        try:
            recipient = await unsubscribe_recipient(recipient_id)
        except NotFound:
            return unsubscribe_page(None, token, False, 404)
        return unsubscribe_page(recipient, token, True)
