"""The public web-to-lead form, which other sites embed in a frame or as
plain HTML. A submission whose email matches an unconverted lead is added
to that lead (``app.leads.intake``).

It needs no session and carries no CSRF token, because the page it is
posted from is on another site. Bots are kept out by a honeypot field that
people never see, and each client address may submit a limited number of
times per window. Administrators set its source, owner, fields, redirect
and the origins that may frame it (``app.leads.webform_settings``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import PUBLIC
from app.audit.context import current_client_address
from app.errors import FieldError
from app.leads.intake import submit_form
from app.leads.service import MAX_ANSWERS
from app.leads.webform_settings import FormSettings, form_owner, load_settings
from app.web.forms import FormData
from app.web.security import FORM_ACTIONS, FRAME_ANCESTORS

logger = logging.getLogger(__name__)

PATH = "/forms/lead"
# A regular expression of the path, for the CSRF middleware's exclusion list.
CSRF_EXEMPT_PATH = f"^{PATH}/?$"
# People never see this field, so a value in it means a bot filled it.
HONEYPOT = "website"
ANSWER_PREFIX = "answer."
STANDARD_FIELDS = ("name", "email", "company", "source")
RATE_LIMIT = int(os.environ.get("CRM_WEBFORM_RATE_LIMIT", "5"))
RATE_WINDOW = int(os.environ.get("CRM_WEBFORM_RATE_WINDOW", "600"))


def form_answers(data: dict[str, Any]) -> dict[str, Any]:
    answers = {
        name[len(ANSWER_PREFIX) :]: value
        for name, value in data.items()
        if name.startswith(ANSWER_PREFIX)
    }
    if len(answers) > MAX_ANSWERS:
        raise FieldError(
            "answers", len(answers), f"has more than {MAX_ANSWERS} questions"
        )
    return answers


async def over_rate_limit(request: Request[Any, Any, Any], address: str) -> bool:
    """Count this submission; True once the address passed ``RATE_LIMIT``."""
    settings = request.app.state.settings
    key = f"{settings.redis_prefix}webform:{address}"
    redis = request.app.state.redis
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, RATE_WINDOW)
    return int(count) > RATE_LIMIT


def allow_framing(request: Request[Any, Any, Any], settings: FormSettings) -> None:
    """Let the allowed origins frame this response, and the form redirect."""
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    if settings.allowed_origins:
        state[FRAME_ANCESTORS] = settings.frame_ancestors()
    redirect_origin = settings.redirect_origin()
    if redirect_origin:
        state[FORM_ACTIONS] = redirect_origin


def form_page(
    settings: FormSettings,
    values: dict[str, Any],
    error: FieldError | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Template:
    return Template(
        "leads/web_form.html",
        context={"values": values, "error": error, "settings": settings, **extra},
        status_code=status_code,
    )


def success(settings: FormSettings) -> Template | Redirect:
    if settings.redirect_url:
        return Redirect(settings.redirect_url, status_code=303)
    return Template("leads/web_form_thanks.html")


class WebFormController(Controller):
    path = PATH

    @get("/", exclude_from_auth=True, opt={"permission": PUBLIC})
    async def lead_form(
        self, request: Request[Any, Any, Any], source: FromQuery[str | None] = None
    ) -> Template:
        settings = await load_settings()
        allow_framing(request, settings)
        return form_page(settings, {"source": source or settings.source})

    @post("/", exclude_from_auth=True, opt={"permission": PUBLIC}, status_code=200)
    async def submit(
        self, request: Request[Any, Any, Any], data: FormData
    ) -> Template | Redirect:
        settings = await load_settings()
        allow_framing(request, settings)
        address = current_client_address() or (
            request.client.host if request.client else "unknown"
        )
        if await over_rate_limit(request, address):
            logger.warning("web form rate limit reached address=%s", address)
            return form_page(
                settings,
                data,
                status_code=429,
                limited=True,
                retry_minutes=max(1, RATE_WINDOW // 60),
            )
        if str(data.get(HONEYPOT) or "").strip():
            # The response looks like a success, so the bot learns nothing.
            logger.info("web form honeypot filled, nothing stored address=%s", address)
            return success(settings)
        values = {name: data.get(name) or "" for name in STANDARD_FIELDS}
        values["source"] = values["source"] or settings.source
        try:
            owner = await form_owner(settings)
            if owner is not None:
                values["owner"] = str(owner)
            submission = await submit_form(values, form_answers(data))
        except FieldError as error:
            logger.info(
                "web form rejected address=%s field=%s: %s", address, error.field, error
            )
            return form_page(settings, data, error, status_code=422)
        logger.info(
            "web form submission stored lead_id=%s new_lead=%s owner_id=%s address=%s",
            submission.lead_id,
            submission.created,
            values.get("owner"),
            address,
        )
        return success(settings)
