"""Bearer-key authentication, key scopes and rate limits of the API routes.

The API router skips the session and CSRF middleware (its ``opt``), so a
request is authenticated by its ``Authorization: Bearer <key>`` header
alone. The key's user is loaded on every request, so a deactivated user's
keys stop working at once, and their roles apply within the key's scopes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.api.common import KEY_SCOPE
from app.api.keys import KeyHolder, check_key, mark_used
from app.api.limits import RateLimit, count_request
from app.auth.service import load_user
from app.pagination import check_query, query_names

logger = logging.getLogger(__name__)

BEARER = "bearer "


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text.lower().startswith(BEARER):
                return text[len(BEARER) :].strip()
            return None
    return None


def check_route_query(scope: Scope) -> None:
    """Raise FieldError for a query parameter that the route does not take,
    that is empty, or that is given more than once.

    Every API parameter takes one value. Reading only one of several, or
    ignoring a misspelt one, would act on a request other than the one sent.
    """
    check_query(
        scope.get("query_string", b"").decode("latin-1"),
        query_names(scope["route_handler"]),
        place="route",
        allow_empty=False,
    )


def check_key_scope(
    holder: KeyHolder, opt: Mapping[str, Any], headers: dict[str, str]
) -> None:
    """Raise 403 unless the key's scopes cover the route's ``key_scope``, or
    else its declared permission.

    An empty ``key_scope`` lets any valid key through. ``headers`` go on the
    403 response.
    """
    needed = opt.get(KEY_SCOPE, opt.get("permission"))
    if needed == "":
        return
    object_type, _, action = (needed or "").partition(":")
    if holder.allows(object_type, action):
        return
    granted = holder.scopes.get(object_type)
    logger.info(
        "api key scope denied key_id=%s user_id=%s permission=%s",
        holder.id,
        holder.user_id,
        needed,
    )
    if granted == "read":
        detail = f"This API key may only read {object_type} records."
    else:
        detail = f"This API key has no scope for {object_type} records."
    raise PermissionDeniedException(detail, headers=headers)


class ApiKeyMiddleware:
    """Authenticate a bearer key, check its scope and count it against its limit.

    Sets ``scope["user"]`` to the key's user and ``scope["auth"]`` to the
    ``KeyHolder``, and adds the RateLimit headers to every HTTP response. A
    websocket handshake is authenticated and counted the same way; a
    rejected one is refused before the socket is accepted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limit = RateLimit.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            raise NotAuthorizedException(
                "Send an API key in the header Authorization: Bearer <key>."
            )
        holder = await check_key(token)
        if holder is None:
            raise NotAuthorizedException("The API key is invalid, expired or revoked.")
        user = await load_user(holder.user_id)
        if user is None:
            logger.info(
                "api key rejected: user inactive key_id=%s user_id=%s",
                holder.id,
                holder.user_id,
            )
            raise NotAuthorizedException("The API key belongs to a deactivated user.")

        app = scope["litestar_app"]
        redis = app.state.redis
        prefix = app.state.settings.redis_prefix
        usage = await count_request(redis, prefix, holder.id, self.limit, time.time())
        headers = usage.headers()
        if usage.exceeded:
            logger.info(
                "api rate limit reached key_id=%s user_id=%s", holder.id, user.id
            )
            raise TooManyRequestsException(
                f"This API key made more than {usage.limit} requests in "
                f"{self.limit.window} seconds. Retry in {usage.reset} seconds.",
                headers=headers,
            )
        await mark_used(redis, prefix, holder.id)

        scope["user"] = user
        scope["auth"] = holder
        if scope["type"] == "http":
            check_route_query(scope)
        check_key_scope(holder, scope["route_handler"].opt, headers)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, with_headers(send, headers))


def with_headers(send: Send, headers: dict[str, str]) -> Send:
    encoded = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message_headers: Any = message.get("headers", [])
            message["headers"] = [*message_headers, *encoded]
        await send(message)

    return send_with_headers
