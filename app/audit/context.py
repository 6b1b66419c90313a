"""The client address of the request being served, for the audit rows it writes.

``ClientAddressMiddleware`` sets it for each HTTP request and websocket, and
the audit service reads it, so no service needs a request parameter. Behind
a reverse proxy, uvicorn's ``proxy_headers`` (on in ``crm serve``) puts the
``X-Forwarded-For`` address into the ASGI scope, but only for proxies listed
in ``FORWARDED_ALLOW_IPS`` (by default only the loopback addresses).
"""

from __future__ import annotations

from contextvars import ContextVar

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

# None outside a request: worker jobs and commands such as `crm import`.
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


def current_client_address() -> str | None:
    return client_address.get()


class ClientAddressMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp
    ) -> None:
        client = scope.get("client")
        token = client_address.set(client[0] if client else None)
        try:
            await next_app(scope, receive, send)
        finally:
            client_address.reset(token)
