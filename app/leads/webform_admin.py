"""The admin page that sets up the web-to-lead form and shows how to embed it."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.leads.webform import HONEYPOT, PATH
from app.leads.webform_settings import (
    OPTIONAL_FIELDS,
    FormSettings,
    load_settings,
    save_settings,
)
from app.people import people_choices
from app.web.forms import FormData

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
ADMIN_PATH = "/admin/web-form"


class WebFormAdminController(Controller):
    path = ADMIN_PATH
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/")
    async def settings_page(
        self, request: UserRequest, saved: FromQuery[str | None] = None
    ) -> Template:
        settings = await load_settings()
        return Template(
            "leads/admin_web_form.html",
            context=await page_context(request, settings, None, None, bool(saved)),
        )

    @post("/")
    async def save(self, request: UserRequest, data: FormData) -> Template | Redirect:
        try:
            await save_settings(data, request.user.id)
        except FieldError as error:
            logger.info(
                "web form settings rejected user_id=%s field=%s value=%r",
                request.user.id,
                error.field,
                error.value,
            )
            return Template(
                "leads/admin_web_form.html",
                context=await page_context(
                    request, await load_settings(), data, error, False
                ),
                status_code=422,
            )
        return Redirect(f"{ADMIN_PATH}?saved=1")


async def page_context(
    request: UserRequest,
    settings: FormSettings,
    typed: dict[str, Any] | None,
    error: FieldError | None,
    saved: bool,
) -> dict[str, Any]:
    public_url = request.app.state.settings.public_url.rstrip("/")
    return {
        "settings": settings,
        "typed": typed,
        "error": error,
        "saved": saved,
        "optional_fields": OPTIONAL_FIELDS,
        "form_url": f"{public_url}{PATH}",
        "honeypot": HONEYPOT,
        **await people_choices(keep=[settings.default_owner]),
    }
