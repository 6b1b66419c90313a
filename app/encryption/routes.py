"""The admin page where administrators mark fields sensitive."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.auth.service import CurrentUser
from app.encryption.marking import list_fields, set_sensitive
from app.errors import FieldError
from app.web.forms import FormData

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
PATH = "/admin/sensitive-fields"


class SensitiveFieldAdminController(Controller):
    path = PATH
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/")
    async def sensitive_fields_page(self) -> Template:
        return Template("admin/sensitive_fields.html", context=await page_context())

    @get("/progress")
    async def sensitive_fields_progress(self) -> Template:
        """Render the field table alone, which the page reloads while a job runs."""
        return Template(
            "admin/_sensitive_fields_table.html", context=await page_context()
        )

    @post("/")
    async def change_sensitive_field(
        self, request: UserRequest, data: FormData
    ) -> Redirect | Template:
        field_name = str(data.get("field", ""))
        sensitive = data.get("sensitive") == "on"
        try:
            state = await set_sensitive(field_name, sensitive, request.user.id)
        except FieldError as error:
            logger.info(
                "sensitive field change rejected field=%s user_id=%s: %s",
                field_name,
                request.user.id,
                error,
            )
            context = await page_context(error)
            return Template(
                "admin/sensitive_fields.html", context=context, status_code=422
            )
        if state is not None:
            table, _, column = field_name.partition(".")
            job = await request.app.state.arq.enqueue_job(
                "sensitive_field_job", table, column
            )
            logger.info(
                "sensitive field job queued field=%s state=%s job_id=%s user_id=%s",
                field_name,
                state,
                job.job_id if job else None,
                request.user.id,
            )
        return Redirect(PATH)


async def page_context(error: FieldError | None = None) -> dict[str, Any]:
    fields = await list_fields()
    return {
        "fields": fields,
        "running": any(f.running for group in fields.values() for f in group),
        "error": error,
        "section": "admin",
    }
