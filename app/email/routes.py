"""Email routes: the inbound endpoint, ticket replies, attachments, reply templates."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import FromQuery
from litestar.response import File, Template
from litestar.types import ASGIApp, Receive, Scope, Send

from app.access.guards import ADMIN, admin_only, permission
from app.access.permissions import SYSTEM, Access
from app.access.scopes import comment_permits
from app.api.auth import ApiKeyMiddleware, bearer_token
from app.api.common import SECURITY_SCHEME, problem_responses
from app.api.problems import EXCEPTION_HANDLERS, problem
from app.auth.service import CurrentUser
from app.email.attachments import content_path, get_attachment
from app.email.inbound import MessageTooLarge, receive_message
from app.email.outbound import reply_context, send_reply
from app.email.queries import MESSAGES_PAGE, ticket_messages
from app.email.settings import EmailSettings
from app.email.templates import (
    delete_template,
    get_template,
    list_templates,
    render_template,
    save_template,
    template_choices,
)
from app.errors import FieldError, NotFound
from app.fields import reference
from app.pagination import PageRequest, reject_unknown_query
from app.web.forms import FormData, RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
MESSAGE_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")
# The same middleware exemptions as the JSON API: a bearer token, no session.
BYPASS_PAGE_MIDDLEWARE = {
    "exclude_from_auth": True,
    "skip_session": True,
    "exclude_from_csrf": True,
}


def email_settings(request: Request[Any, Any, Any]) -> EmailSettings:
    """Return the email settings, read once per process and kept in app state."""
    state = request.app.state
    settings = getattr(state, "email_settings", None)
    if settings is None:
        settings = EmailSettings.from_env()
        state.email_settings = settings
    return settings


class InboundSender(CurrentUser, frozen=True):
    """The caller of the inbound endpoint that sent INBOUND_EMAIL_TOKEN."""


INBOUND_SENDER = InboundSender(
    id=0, email="", name="Inbound mail", role="system", access=SYSTEM
)


class InboundAuthMiddleware:
    """Accept INBOUND_EMAIL_TOKEN as the bearer token, else an API key.

    An API key needs write scope on tickets, and its user the right to
    create tickets, as the route declares.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.api_keys = ApiKeyMiddleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = bearer_token(scope) if scope["type"] == "http" else None
        configured = scope["litestar_app"].state.get("email_settings")
        if configured is None:
            configured = EmailSettings.from_env()
            scope["litestar_app"].state.email_settings = configured
        inbound = configured.inbound_token
        if token and inbound and hmac.compare_digest(token.encode(), inbound.encode()):
            scope["user"] = INBOUND_SENDER
            scope["auth"] = None
            await self.app(scope, receive, send)
            return
        await self.api_keys(scope, receive, send)


@dataclass
class InboundEmailOperation(Operation):
    """The inbound route's operation, with the raw message as its request body.

    The handler streams the body itself rather than taking a ``data``
    argument, so Litestar cannot see the body to document it.
    """

    def __post_init__(self) -> None:
        message = OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                description="One RFC 5322 message, headers and body, as sent.",
            )
        )
        self.request_body = RequestBody(
            content={"message/rfc822": message},
            description=(
                "The raw message. application/octet-stream and text/plain are "
                "read the same way."
            ),
            required=True,
        )


# Neither a path nor a query parameter nor a JSON body, so no 400. The
# route's own status is 201, for a new ticket.
INBOUND_RESPONSES = {
    200: ResponseSpec(
        data_container=dict[str, Any],
        description="The message was threaded onto a ticket, or was a bounce, "
        "a duplicate or ignored",
    ),
    **{
        status: spec
        for status, spec in problem_responses(413, 415, 422).items()
        if status != 400
    },
}


class InboundEmailController(Controller):
    path = "/"

    @post(
        "/email",
        opt=permission("ticket", "create"),
        # The handler counts the bytes itself, against EMAIL_MAX_MESSAGE_BYTES.
        request_max_body_size=None,
        operation_id="receive_inbound_email",
        operation_class=InboundEmailOperation,
        responses=INBOUND_RESPONSES,
        summary="Receive one email message",
        description=(
            "201 when the message opened a ticket, 200 otherwise (a reply "
            "threaded onto a ticket, a bounce, a duplicate or an ignored "
            "message). Authenticate with an API key that may create tickets, "
            "or with INBOUND_EMAIL_TOKEN as the bearer token."
        ),
        tags=["inbound"],
    )
    async def inbound_email(self, request: UserRequest) -> Response[Any]:
        """Receive one raw RFC 5322 message (Content-Type: message/rfc822)."""
        settings = email_settings(request)
        content_type = request.headers.get("content-type", "").partition(";")[0]
        if content_type.strip().lower() not in MESSAGE_TYPES:
            return problem(
                request,
                415,
                f"Content-Type {content_type or '(none)'!r} is not supported; "
                "send the raw message as message/rfc822.",
                field="content-type",
                value=content_type,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_message_bytes:
                error = MessageTooLarge(size, settings.max_message_bytes)
                logger.info(
                    "inbound email rejected user_id=%s: %s", request.user.id, error
                )
                return problem(
                    request, 413, error.message, field="message", value=error.value
                )
            chunks.append(chunk)
        result = await receive_message(b"".join(chunks), settings, transport="http")
        status = 201 if result.outcome == "created" else 200
        return Response(result.as_json(), status_code=status)


INBOUND_ROUTER = Router(
    "/api/v1/inbound",
    route_handlers=[InboundEmailController],
    middleware=[InboundAuthMiddleware],
    exception_handlers=EXCEPTION_HANDLERS,
    opt=BYPASS_PAGE_MIDDLEWARE,
    include_in_schema=True,
    security=[{SECURITY_SCHEME: []}],
)


async def reply_form_context(
    ticket: dict[str, Any],
    access: Access,
    body: str = "",
    error: str = "",
    template_id: int | None = None,
    sent: bool = False,
) -> dict[str, Any]:
    """Return the reply form's context; empty for viewers who may not reply."""
    if not comment_permits(access, "create", "ticket", ticket):
        return {"can_reply": False}
    return {
        "can_reply": True,
        "reply_action": f"/tickets/{ticket['id']}/replies",
        "reply_body": body,
        "reply_error": error,
        "reply_templates": await template_choices(),
        "reply_template_id": template_id,
        "reply_sent": sent,
        "reply_to": ticket.get("requester_email") or "",
    }


async def readable_ticket(request: UserRequest, ticket_id: int) -> dict[str, Any]:
    from app.tickets.routes import load_ticket

    return await load_ticket(ticket_id, request.user.access)


def require_reply_right(request: UserRequest, ticket: dict[str, Any]) -> None:
    if not comment_permits(request.user.access, "create", "ticket", ticket):
        logger.info(
            "ticket reply denied user_id=%s ticket_id=%s", request.user.id, ticket["id"]
        )
        raise PermissionDeniedException(
            "Your role does not allow you to reply on this ticket."
        )


class TicketEmailController(Controller):
    path = "/tickets"

    @get("/{ticket_id:int}/replies", opt=permission("comment", "create"))
    async def reply_form(
        self,
        request: UserRequest,
        ticket_id: RecordId,
        template: FromQuery[str | None] = None,
    ) -> Template:
        """Return the reply form, filled in from the chosen template."""
        ticket = await readable_ticket(request, ticket_id)
        require_reply_right(request, ticket)
        template_id = reference("template", template)
        body = ""
        error = ""
        if template_id is not None:
            chosen = await get_template(template_id)
            values = await reply_context(
                ticket_id, request.user.name, request.user.email
            )
            try:
                body = render_template(chosen["body"], values)
            except FieldError as failure:
                error = failure.message
        context = await reply_form_context(
            ticket, request.user.access, body, error, template_id
        )
        return Template("email/_reply_form.html", context=context)

    @post("/{ticket_id:int}/replies", opt=permission("comment", "create"))
    async def send_reply(
        self, request: UserRequest, ticket_id: RecordId, data: FormData
    ) -> Template:
        """Store the reply as a public comment and queue it to the requester."""
        ticket = await readable_ticket(request, ticket_id)
        require_reply_right(request, ticket)
        body = str(data.get("body", ""))
        arq = request.app.state.arq

        async def enqueue(row_id: int) -> None:
            from workers.email import job_id

            try:
                await arq.enqueue_job(
                    "send_ticket_reply", row_id, _job_id=job_id(row_id)
                )
            except Exception:
                logger.exception(
                    "ticket reply not queued message_row_id=%s ticket_id=%s",
                    row_id,
                    ticket_id,
                )

        try:
            await send_reply(
                ticket_id, body, request.user.id, email_settings(request), enqueue
            )
        except FieldError as error:
            logger.info(
                "ticket reply rejected user_id=%s ticket_id=%s: %s",
                request.user.id,
                ticket_id,
                error,
            )
            context = await reply_form_context(
                ticket, request.user.access, body, error.message
            )
            return Template("email/_reply_form.html", context=context, status_code=422)
        context = await reply_form_context(ticket, request.user.access, sent=True)
        return Template("email/_reply_form.html", context=context)

    @get(
        "/{ticket_id:int}/attachments/{attachment_id:int}",
        opt=permission("ticket", "read"),
    )
    async def attachment(
        self, request: UserRequest, ticket_id: RecordId, attachment_id: RecordId
    ) -> File:
        """Send an attachment of a ticket the viewer may read, as a download."""
        await readable_ticket(request, ticket_id)
        row = await get_attachment(attachment_id)
        if row is None or row["ticket"] != ticket_id or not row["stored"]:
            raise NotFound("attachment", attachment_id)
        path: Path = content_path(email_settings(request).attachment_dir, row["sha256"])
        if not await anyio.Path(path).is_file():
            logger.error(
                "attachment file missing attachment_id=%s ticket_id=%s path=%s",
                attachment_id,
                ticket_id,
                path,
            )
            raise NotFound("attachment", attachment_id)
        logger.info(
            "attachment downloaded attachment_id=%s ticket_id=%s user_id=%s",
            attachment_id,
            ticket_id,
            request.user.id,
        )
        return File(
            path=path,
            filename=row["filename"],
            content_disposition_type="attachment",
            # Served as bytes whatever the sender declared, so that no
            # browser renders mail content on this origin.
            media_type="application/octet-stream",
            headers={"X-Content-Type-Options": "nosniff"},
        )


class ReplyTemplateAdminController(Controller):
    path = "/admin/email-templates"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def templates_page(
        self, page: FromQuery[str | None] = None, edit: FromQuery[str | None] = None
    ) -> Template:
        editing = None
        edit_id = reference("edit", edit)
        if edit_id is not None:
            editing = await get_template(edit_id)
        return await templates_page(page, editing)

    @post("/")
    async def save(self, request: UserRequest, data: FormData) -> Template:
        template_id = reference("id", data.get("id"))
        try:
            await save_template(
                template_id, data.get("name"), data.get("body"), request.user.id
            )
        except FieldError as error:
            logger.info(
                "reply template rejected user_id=%s template_id=%s: %s",
                request.user.id,
                template_id,
                error,
            )
            typed = {
                "id": template_id,
                "name": data.get("name", ""),
                "body": data.get("body", ""),
            }
            return await templates_page(None, typed, error.message, 422)
        return await templates_page(None, None, saved=True)

    @post("/delete")
    async def delete(self, request: UserRequest, data: FormData) -> Template:
        template_id = reference("id", data.get("id"))
        if template_id is None:
            raise FieldError("id", data.get("id"), "must name a template")
        await delete_template(template_id, request.user.id)
        return await templates_page(None, None, deleted=True)


async def templates_page(
    page: str | None,
    editing: dict[str, Any] | None,
    error: str = "",
    status_code: int = 200,
    saved: bool = False,
    deleted: bool = False,
) -> Template:
    paging = PageRequest.parse(page, path="/admin/email-templates")
    return Template(
        "email/templates.html",
        context={
            "templates": await list_templates(paging),
            "editing": editing or {"id": None, "name": "", "body": ""},
            "error": error,
            "saved": saved,
            "deleted": deleted,
            "section": "admin",
        },
        status_code=status_code,
    )


async def ticket_email_context(
    ticket: dict[str, Any], access: Access, email_page: str | None = None
) -> dict[str, Any]:
    """Return what the ticket page shows of email: the reply form and a page
    of messages with their attachments, for a viewer who may read the ticket.

    Raises FieldError naming ``email_page`` for an invalid page number.
    """
    paging = PageRequest.parse(
        email_page,
        str(MESSAGES_PAGE),
        path=f"/tickets/{ticket['id']}",
        param="email_page",
        anchor="email-messages",
    )
    return {
        **await reply_form_context(ticket, access),
        "email_messages": await ticket_messages(ticket["id"], paging),
    }
