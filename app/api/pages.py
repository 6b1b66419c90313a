"""Pages for API keys: one's own keys next to the Security page, and an
admin's view of any user's keys."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, SIGNED_IN, admin_only
from app.access.service import get_user
from app.api.keys import (
    KEY_SCOPES,
    SCOPED_TYPES,
    create_key,
    list_keys,
    parse_expiry,
    parse_scopes,
    revoke_key,
)
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.pagination import PageRequest, reject_unknown_query
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
FormData = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
KEYS_PER_PAGE = 20
SCOPE_FIELD = "scope."
NOTICES = {"revoked": "The key was revoked. Requests with it now get 401."}


def scopes_from_form(data: dict[str, str]) -> dict[str, str]:
    return {
        name.removeprefix(SCOPE_FIELD): value
        for name, value in data.items()
        if name.startswith(SCOPE_FIELD)
    }


async def keys_page(
    request: UserRequest,
    page: str | None = None,
    *,
    token: str | None = None,
    error: FieldError | None = None,
    typed: dict[str, str] | None = None,
    notice: str | None = None,
) -> Template:
    paging = PageRequest.parse(page, str(KEYS_PER_PAGE), path="/security/api-keys")
    status_code = 200
    if error is not None:
        status_code = 422
    elif token is not None:
        status_code = 201
    return Template(
        "api/keys.html",
        context={
            "keys": await list_keys(request.user.id, paging),
            "object_types": SCOPED_TYPES,
            "key_scopes": KEY_SCOPES,
            "token": token,
            "error": error,
            "typed": typed or {},
            "notice": notice,
        },
        status_code=status_code,
        # A page with a new key's secret must not be kept in any cache.
        headers={"cache-control": "no-store"},
    )


class ApiKeyController(Controller):
    path = "/security/api-keys"

    @get("/", opt={"permission": SIGNED_IN}, before_request=reject_unknown_query)
    async def list_page(
        self,
        request: UserRequest,
        page: FromQuery[str | None] = None,
        done: FromQuery[str | None] = None,
    ) -> Template:
        """List one's API keys and offer to create one."""
        return await keys_page(request, page, notice=NOTICES.get(done or ""))

    @post("/", opt={"permission": SIGNED_IN})
    async def create(self, request: UserRequest, data: FormData) -> Template:
        """Create a key and show its text, this once."""
        try:
            issued = await create_key(
                request.user.id,
                data.get("name", ""),
                parse_scopes(scopes_from_form(data)),
                parse_expiry(data.get("expires"), dt.datetime.now(dt.UTC).date()),
            )
        except FieldError as error:
            logger.info(
                "api key not created user_id=%s field=%s", request.user.id, error.field
            )
            return await keys_page(request, error=error, typed=data)
        return await keys_page(request, token=issued.token)

    @post("/{key_id:int}/revoke", opt={"permission": SIGNED_IN})
    async def revoke(self, request: UserRequest, key_id: RecordId) -> Redirect:
        await revoke_key(key_id, request.user.id, request.user.id)
        return Redirect("/security/api-keys?done=revoked")


class AdminApiKeyController(Controller):
    path = "/admin/users/{user_id:int}/api-keys"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def user_keys(
        self, user_id: RecordId, page: FromQuery[str | None] = None
    ) -> Template:
        """List a user's API keys, for revoking any of them."""
        return await admin_keys_page(user_id, page)

    @post("/{key_id:int}/revoke")
    async def revoke(
        self, request: UserRequest, user_id: RecordId, key_id: RecordId
    ) -> Template:
        revoked = await revoke_key(key_id, user_id, request.user.id)
        notice = NOTICES["revoked"] if revoked else "The key was revoked already."
        return await admin_keys_page(user_id, None, notice)


async def admin_keys_page(
    user_id: int, page: str | None, notice: str | None = None
) -> Template:
    path = f"/admin/users/{user_id}/api-keys"
    paging = PageRequest.parse(page, str(KEYS_PER_PAGE), path=path)
    return Template(
        "api/admin_keys.html",
        context={
            "user": await get_user(user_id),
            "keys": await list_keys(user_id, paging),
            "notice": notice,
            "section": "admin",
        },
    )
