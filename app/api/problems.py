"""API errors as RFC 9457 problem details (``application/problem+json``).

Every problem has ``type``, ``title``, ``status``, ``detail`` and
``instance`` (the request path). A problem about one input value adds the
extension members ``field`` and ``value``.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)

from app.api.records import InvalidSort
from app.deletion import HasDependents
from app.errors import (
    EditConflict,
    FieldError,
    NotFound,
    VersionMismatch,
    field_error_status,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class PreconditionRequired(HTTPException):
    """A write that must name the version it is based on did not (428)."""

    status_code = 428


class NoCurrentVersion(Exception):
    """``If-Match: *`` named a record that does not exist (412)."""

    def __init__(self, record_type: str, record_id: int) -> None:
        self.record_type = record_type
        self.record_id = record_id
        super().__init__(f"{record_type} {record_id} has no current version")


class WeakEntityTag(Exception):
    """If-Match sent a weak entity tag, which never matches (412).

    If-Match uses the strong comparison (RFC 9110, section 13.1.1), and the
    API's ETags are strong, so a weak tag fails whatever the record's version.
    """

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"If-Match {value!r} is a weak entity tag")


def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def problem(
    request: Request[Any, Any, Any] | None,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[dict[str, Any]]:
    """Build a problem details response; ``extensions`` become extra members."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update({name: json_safe(value) for name, value in extensions.items()})
    return Response(
        body, status_code=status, media_type=PROBLEM_JSON, headers=headers or {}
    )


def caller(request: Request[Any, Any, Any]) -> tuple[Any, Any]:
    """Return the user id and the API key id of a request, for logs."""
    user = request.scope.get("user")
    holder = request.scope.get("auth")
    return getattr(user, "id", None), getattr(holder, "id", None)


def on_field_error(request: Request[Any, Any, Any], error: FieldError) -> Response:
    user_id, key_id = caller(request)
    logger.info(
        "api input rejected path=%s user_id=%s key_id=%s field=%s",
        request.url.path,
        user_id,
        key_id,
        error.field,
    )
    response = problem(
        request,
        field_error_status(request.method),
        error.message,
        field=error.field,
        value=error.value,
    )
    # A stage's required fields that a move would leave empty (MissingFields).
    missing = getattr(error, "missing", None)
    if missing:
        response.content["missing_fields"] = list(missing)
    return response


def on_invalid_sort(request: Request[Any, Any, Any], error: InvalidSort) -> Response:
    user_id, key_id = caller(request)
    logger.info(
        "api sort rejected path=%s user_id=%s key_id=%s value=%r",
        request.url.path,
        user_id,
        key_id,
        error.value,
    )
    return problem(request, 400, error.message, field=error.field, value=error.value)


def on_not_found(
    request: Request[Any, Any, Any], error: NotFound | NotFoundException
) -> Response:
    if isinstance(error, NotFound):
        detail = f"{error.record_type.capitalize()} {error.record_id} was not found."
        return problem(request, 404, detail, field="id", value=error.record_id)
    return problem(request, 404, f"No API route at {request.url.path}.")


def on_version_mismatch(
    request: Request[Any, Any, Any], error: VersionMismatch
) -> Response:
    user_id, key_id = caller(request)
    logger.info(
        "api write rejected: stale version %s_id=%s user_id=%s key_id=%s "
        "expected=%s current=%s",
        error.record_type,
        error.record_id,
        user_id,
        key_id,
        error.expected,
        error.current,
    )
    detail = (
        f"{error.record_type.capitalize()} {error.record_id} is at version "
        f"{error.current}, not {error.expected}. Read it again and resend the "
        "change with If-Match set to the new version."
    )
    return problem(
        request,
        412,
        detail,
        field="If-Match",
        value=error.expected,
        current_version=error.current,
    )


def on_no_current_version(
    request: Request[Any, Any, Any], error: NoCurrentVersion
) -> Response:
    detail = (
        f"{error.record_type.capitalize()} {error.record_id} was not found, so "
        "If-Match: * does not match it."
    )
    return problem(request, 412, detail, field="If-Match", value="*")


def on_weak_entity_tag(
    request: Request[Any, Any, Any], error: WeakEntityTag
) -> Response:
    detail = (
        f"If-Match {error.value} is a weak entity tag, which never matches "
        "because If-Match uses the strong comparison. Send the ETag as a GET "
        "returns it (the record's version in quotes, without W/), or *."
    )
    return problem(request, 412, detail, field="If-Match", value=error.value)


def on_conflict(request: Request[Any, Any, Any], error: EditConflict) -> Response:
    field = error.conflicts[0].field if error.conflicts else None
    return problem(request, 409, str(error), field=field)


def on_has_dependents(
    request: Request[Any, Any, Any], error: HasDependents
) -> Response:
    response = problem(request, 409, str(error), field="id", value=error.record_id)
    response.content["dependents"] = dict(error.dependents)
    return response


def on_not_authorized(
    request: Request[Any, Any, Any], error: NotAuthorizedException
) -> Response:
    return problem(
        request,
        401,
        error.detail,
        headers={"www-authenticate": 'Bearer realm="api"'},
        field="Authorization",
    )


def on_http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response:
    if isinstance(error, ValidationException) and isinstance(error.extra, list):
        for item in error.extra:
            if isinstance(item, dict):
                key = item.get("key") or "body"
                message = item.get("message") or "is invalid"
                return problem(
                    request,
                    400,
                    f"{key}: {message}.",
                    field=key,
                    value=item.get("value"),
                )
    if isinstance(error, PermissionDeniedException):
        user_id, key_id = caller(request)
        logger.info(
            "api request denied path=%s user_id=%s key_id=%s",
            request.url.path,
            user_id,
            key_id,
        )
    return problem(
        request, error.status_code, error.detail, headers=dict(error.headers or {})
    )


def on_recursion_error(
    request: Request[Any, Any, Any], error: RecursionError
) -> Response:
    """Return a 400 problem for a JSON body nested too deeply to decode.

    msgspec raises RecursionError, not DecodeError, for such a body, and the
    framework passes it through. Any other RecursionError is a server error.
    """
    if not is_deep_body(error):
        return on_server_error(request, error)
    user_id, key_id = caller(request)
    logger.info(
        "api body rejected: nested too deeply path=%s user_id=%s key_id=%s",
        request.url.path,
        user_id,
        key_id,
    )
    return problem(request, 400, DEEP_BODY, field="body")


def is_deep_body(error: RecursionError) -> bool:
    return "deserializ" in str(error)


DEEP_BODY = "The request body is nested too deeply to read."


def on_server_error(request: Request[Any, Any, Any], error: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    user_id, key_id = caller(request)
    logger.exception(
        "api request failed error_id=%s path=%s user_id=%s key_id=%s",
        error_id,
        request.url.path,
        user_id,
        key_id,
    )
    return problem(
        request, 500, f"Something went wrong on our side (error {error_id})."
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    FieldError: on_field_error,
    InvalidSort: on_invalid_sort,
    NotFound: on_not_found,
    NotFoundException: on_not_found,
    VersionMismatch: on_version_mismatch,
    NoCurrentVersion: on_no_current_version,
    WeakEntityTag: on_weak_entity_tag,
    EditConflict: on_conflict,
    HasDependents: on_has_dependents,
    NotAuthorizedException: on_not_authorized,
    HTTPException: on_http_error,
    RecursionError: on_recursion_error,
    500: on_server_error,
}
