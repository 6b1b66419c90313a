"""Error pages and messages: a 404 page, field errors, sign-in redirects."""

from __future__ import annotations

import logging
import uuid

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.response import Redirect, Template

from app.errors import EditConflict, FieldError, NotFound, field_error_status

logger = logging.getLogger(__name__)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") or is_htmx(request)


def toast_response(request: Request, message: str, status_code: int) -> Response:
    """Show ``message`` as a toast on htmx requests, or as a page otherwise."""
    if is_htmx(request):
        return Template(
            "_toast.html",
            context={"message": message, "level": "error"},
            status_code=status_code,
        )
    if wants_html(request):
        return Template(
            "error.html",
            context={"message": message, "status_code": status_code},
            status_code=status_code,
        )
    return Response(
        {"detail": message}, status_code=status_code, media_type=MediaType.JSON
    )


# Errors raised before a route under it matched (no such path or method)
# reach the app's handlers, which return them as the API's problem details.
API_PREFIX = "/api/v1/"


def on_not_found(request: Request, error: NotFound | NotFoundException) -> Response:
    if request.url.path.startswith(API_PREFIX):
        from app.api import problems as api_problems

        return api_problems.on_not_found(request, error)
    if isinstance(error, NotFound):
        message = f"{error.record_type.capitalize()} {error.record_id} was not found."
    else:
        message = f"No page at {request.url.path}."
    return toast_response(request, message, 404)


def on_field_error(request: Request, error: FieldError) -> Response:
    """Return 400 for an invalid value in a GET's URL, 422 for a submitted one."""
    logger.info("invalid input path=%s field=%s", request.url.path, error.field)
    return toast_response(request, error.message, field_error_status(request.method))


def on_conflict(request: Request, error: EditConflict) -> Response:
    return toast_response(request, str(error), 409)


def on_not_authorized(request: Request, error: NotAuthorizedException) -> Response:
    if is_htmx(request):
        return Response(b"", status_code=401, headers={"HX-Redirect": "/login"})
    if wants_html(request):
        return Redirect(f"/login?next={request.url.path}")
    return Response({"detail": "sign-in required"}, status_code=401)


def on_http_error(request: Request, error: HTTPException) -> Response:
    if request.url.path.startswith(API_PREFIX):
        from app.api import problems as api_problems

        return api_problems.on_http_error(request, error)
    message = error.detail
    if isinstance(error, ValidationException) and isinstance(error.extra, list):
        problems = [
            f"{item.get('key', 'value')}: {item.get('message', 'invalid')}"
            for item in error.extra
            if isinstance(item, dict)
        ]
        if problems:
            message = "Invalid request: " + "; ".join(problems) + "."
    return toast_response(request, message, error.status_code)


def on_recursion_error(request: Request, error: RecursionError) -> Response:
    from app.api import problems as api_problems

    if request.url.path.startswith(API_PREFIX):
        return api_problems.on_recursion_error(request, error)
    if not api_problems.is_deep_body(error):
        return on_server_error(request, error)
    logger.info("request body nested too deeply path=%s", request.url.path)
    return toast_response(request, api_problems.DEEP_BODY, 400)


def on_server_error(request: Request, error: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    user = request.scope.get("user")
    logger.exception(
        "request failed error_id=%s path=%s user_id=%s",
        error_id,
        request.url.path,
        getattr(user, "id", None),
    )
    return toast_response(
        request, f"Something went wrong on our side (error {error_id}).", 500
    )


EXCEPTION_HANDLERS = {
    NotFound: on_not_found,
    NotFoundException: on_not_found,
    FieldError: on_field_error,
    EditConflict: on_conflict,
    NotAuthorizedException: on_not_authorized,
    HTTPException: on_http_error,
    RecursionError: on_recursion_error,
    500: on_server_error,
}
