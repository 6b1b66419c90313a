"""The public web-to-lead form, which other sites embed in a frame or as
plain HTML. A submission whose email matches an unconverted lead is added
to that lead (``app.leads.intake``).

It needs no session and carries no CSRF token, because the page it is
posted from is on another site. Bots are kept out by a honeypot field that
people never see, and each client address may submit a limited number of
times per window. Administrators set its sources, owner, fields, questions,
redirect and the origins that may frame it (``app.leads.webform_settings``).
A submission that names another source or question, or repeats a field,
gets 400 and stores nothing, since it was not sent from this form as set up.
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
from app.leads.webform_settings import (
    MAX_SOURCE_LENGTH,
    FormSettings,
    form_owner,
    load_settings,
)
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


def form_source(settings: FormSettings, raw: str) -> str:
    """Return the submitted source, or the form's label when none was sent.

    Raises FieldError for a source that the settings do not name.
    """
    source = raw.strip() or settings.source
    if source not in settings.accepted_sources:
        raise FieldError(
            "source",
            source[:MAX_SOURCE_LENGTH],
            "is not a source of this form; an administrator can add it to the "
            "form's other sources",
        )
    return source


def form_answers(settings: FormSettings, data: dict[str, Any]) -> dict[str, Any]:
    """Return the answers, keyed by question; raises FieldError for an
    ``answer.`` field whose question the form does not ask."""
    answers = {}
    for name, value in data.items():
        if not name.startswith(ANSWER_PREFIX):
            continue
        question = name[len(ANSWER_PREFIX) :]
        if question not in settings.questions:
            raise FieldError(
                name,
                question[:MAX_SOURCE_LENGTH],
                "is not one of this form's questions",
                label="Question",
            )
        answers[question] = value
    return answers


def check_single_values(data: dict[str, Any]) -> None:
    """Raise FieldError for a field sent more than once, which arrives as a list."""
    for name, value in data.items():
        if isinstance(value, list):
            raise FieldError(name, None, "is sent more than once, but takes one value")


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
    """Render the form, keeping what the visitor typed.

    The form keeps a source only if it accepts it, and drops repeated
    fields, so that sending the form again sends this form as set up.
    """
    typed = {name: value for name, value in values.items() if isinstance(value, str)}
    if typed.get("source", "").strip() not in settings.accepted_sources:
        typed["source"] = settings.source
    return Template(
        "leads/web_form.html",
        context={"values": typed, "error": error, "settings": settings, **extra},
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
        try:
            chosen = form_source(settings, source or "")
        except FieldError as error:
            logger.info("web form shown with an unknown source source=%r", source)
            return form_page(settings, {}, error, status_code=400)
        return form_page(settings, {"source": chosen})

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
        try:
            check_single_values(data)
            values = {name: data.get(name) or "" for name in STANDARD_FIELDS}
            values["source"] = form_source(settings, values["source"])
            answers = form_answers(settings, data)
        except FieldError as error:
            logger.info(
                "web form rejected: not this form's fields address=%s field=%s",
                address,
                error.field,
            )
            return form_page(settings, data, error, status_code=400)
        try:
            owner = await form_owner(settings)
            if owner is not None:
                values["owner"] = str(owner)
            submission = await submit_form(values, answers)
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
