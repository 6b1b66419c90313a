"""Admin pages for webhook endpoints and their delivery log."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.pagination import PageRequest, reject_unknown_query
from app.web.forms import RecordId
from app.webhooks.outbox import EVENT_TYPES
from app.webhooks.service import (
    EndpointInput,
    create_endpoint,
    get_endpoint,
    list_attempts,
    list_endpoints,
    list_messages,
    redeliver,
    rotate_secret,
    set_endpoint_enabled,
    update_endpoint,
)
from app.webhooks.settings import RETRY_DELAYS, disable_after, max_attempts

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
ENDPOINTS_PER_PAGE = 20
LOG_PER_PAGE = 25
NOTICES = {
    "saved": "Endpoint saved.",
    "enabled": "Endpoint enabled. Its pending messages are sent again.",
    "disabled": "Endpoint disabled. New events are not queued for it.",
    "redelivered": "The message is queued for redelivery with the same webhook-id.",
}
# Secrets must never be kept by a browser or proxy cache.
NO_STORE = {"cache-control": "no-store"}


def input_from_form(form: FormMultiDict) -> EndpointInput:
    return EndpointInput(
        url=str(form.get("url", "")),
        description=str(form.get("description", "")),
        event_types=tuple(str(value) for value in form.getall("event_types", [])),
        filters={
            "pipeline": form.get("filter_pipeline", ""),
            "team": form.get("filter_team", ""),
            "field": form.get("filter_field", ""),
            "value": form.get("filter_value", ""),
        },
    )


def typed_from_form(form: FormMultiDict) -> dict[str, Any]:
    return {
        "url": str(form.get("url", "")),
        "description": str(form.get("description", "")),
        "event_types": [str(value) for value in form.getall("event_types", [])],
        "filters": {
            "pipeline": form.get("filter_pipeline", ""),
            "team": form.get("filter_team", ""),
            "field": form.get("filter_field", ""),
            "value": form.get("filter_value", ""),
        },
    }


def form_page(
    endpoint: dict[str, Any] | None,
    typed: dict[str, Any],
    error: FieldError | None,
) -> Template:
    return Template(
        "admin/webhooks_new.html",
        context={
            "endpoint": endpoint,
            "typed": typed,
            "error": error,
            "event_types": EVENT_TYPES,
            "section": "admin",
        },
        status_code=422 if error else 200,
    )


async def endpoint_page(
    endpoint_id: int,
    *,
    page: str | None = None,
    message_page: str | None = None,
    secret: str | None = None,
    notice: str | None = None,
    error: FieldError | None = None,
    typed: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    path = f"/admin/webhooks/{endpoint_id}"
    endpoint = await get_endpoint(endpoint_id)
    attempts = PageRequest.parse(
        page,
        str(LOG_PER_PAGE),
        path=path,
        keep={"messages": message_page},
        anchor="attempts",
    )
    messages = PageRequest.parse(
        message_page,
        str(LOG_PER_PAGE),
        path=path,
        keep={"page": page},
        param="messages",
        anchor="messages",
    )
    return Template(
        "admin/webhooks_endpoint.html",
        context={
            "endpoint": endpoint,
            "typed": typed or endpoint,
            "attempts": await list_attempts(endpoint_id, attempts),
            "messages": await list_messages(endpoint_id, messages),
            "event_types": EVENT_TYPES,
            "secret": secret,
            "notice": notice,
            "error": error,
            "retry_delays": RETRY_DELAYS,
            "max_attempts": max_attempts(),
            "disable_after": disable_after(),
            "section": "admin",
        },
        status_code=422 if error else status_code,
        headers=NO_STORE,
    )


def loggable(value: Any) -> Any:
    """Return a submitted value for the log, without a URL's user and password."""
    if not isinstance(value, str) or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return "[unparsable URL]"
    if parts.username is None and parts.password is None:
        return value
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"[credentials]@{host}").geturl()


class WebhookAdminController(Controller):
    path = "/admin/webhooks"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def list_page(self, page: FromQuery[str | None] = None) -> Template:
        """List the endpoints with their state and pending messages."""
        paging = PageRequest.parse(
            page, str(ENDPOINTS_PER_PAGE), path="/admin/webhooks"
        )
        return Template(
            "admin/webhooks.html",
            context={"endpoints": await list_endpoints(paging), "section": "admin"},
        )

    @get("/new")
    async def new_page(self) -> Template:
        typed = {"url": "", "description": "", "event_types": [], "filters": {}}
        return form_page(None, typed, None)

    @post("/")
    async def create(self, request: UserRequest) -> Template:
        """Subscribe an endpoint and show its secret, this once."""
        form = await request.form()
        try:
            issued = await create_endpoint(input_from_form(form), request.user.id)
        except FieldError as error:
            logger.info(
                "webhook endpoint not created user_id=%s field=%s value=%r",
                request.user.id,
                error.field,
                loggable(error.value),
            )
            return form_page(None, typed_from_form(form), error)
        return await endpoint_page(issued.id, secret=issued.secret, status_code=201)

    @get("/{endpoint_id:int}")
    async def endpoint(
        self,
        endpoint_id: RecordId,
        page: FromQuery[str | None] = None,
        messages: FromQuery[str | None] = None,
        done: FromQuery[str | None] = None,
    ) -> Template:
        """Show an endpoint's settings, delivery log and messages."""
        return await endpoint_page(
            endpoint_id,
            page=page,
            message_page=messages,
            notice=NOTICES.get(done or ""),
        )

    @post("/{endpoint_id:int}")
    async def edit(
        self, request: UserRequest, endpoint_id: RecordId
    ) -> Template | Redirect:
        form = await request.form()
        try:
            await update_endpoint(endpoint_id, input_from_form(form), request.user.id)
        except FieldError as error:
            logger.info(
                "webhook endpoint not saved endpoint_id=%s user_id=%s field=%s "
                "value=%r",
                endpoint_id,
                request.user.id,
                error.field,
                loggable(error.value),
            )
            return await endpoint_page(
                endpoint_id, error=error, typed=typed_from_form(form)
            )
        return Redirect(f"/admin/webhooks/{endpoint_id}?done=saved")

    @post("/{endpoint_id:int}/enabled")
    async def switch(self, request: UserRequest, endpoint_id: RecordId) -> Redirect:
        form = await request.form()
        enabled = form.get("enabled") == "on"
        await set_endpoint_enabled(endpoint_id, enabled, request.user.id)
        done = "enabled" if enabled else "disabled"
        return Redirect(f"/admin/webhooks/{endpoint_id}?done={done}")

    @post("/{endpoint_id:int}/rotate")
    async def rotate(self, request: UserRequest, endpoint_id: RecordId) -> Template:
        """Replace the signing secret and show the new one, this once."""
        secret = await rotate_secret(endpoint_id, request.user.id)
        return await endpoint_page(endpoint_id, secret=secret)

    @post("/{endpoint_id:int}/messages/{message_id:int}/redeliver")
    async def redeliver_message(
        self, request: UserRequest, endpoint_id: RecordId, message_id: RecordId
    ) -> Redirect:
        await redeliver(endpoint_id, message_id, request.user.id)
        return Redirect(f"/admin/webhooks/{endpoint_id}?done=redelivered")
