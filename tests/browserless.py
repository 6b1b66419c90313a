"""A signed-in HTTP session and live sockets, as a page would open them."""

from __future__ import annotations

from typing import Any

import httpx
import websockets

from tests.factories import PASSWORD


class Session:
    """An httpx client signed in as one user, sending the CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # uvicorn closes a connection after 5 idle seconds. A request sent on
        # it just then fails with "Server disconnected", so the client drops
        # idle connections sooner and opens a new one.
        self.http = httpx.AsyncClient(
            base_url=base_url,
            follow_redirects=False,
            timeout=10,
            limits=httpx.Limits(keepalive_expiry=2),
        )

    async def sign_in(self, email: str, password: str = PASSWORD) -> None:
        await self.http.get("/login")
        response = await self.http.post(
            "/login",
            data={"email": email, "password": password, "_csrf_token": self.csrf_token},
        )
        if response.status_code != 302:
            raise AssertionError(
                f"sign-in as {email} failed with {response.status_code}"
            )

    @property
    def csrf_token(self) -> str:
        return self.http.cookies.get("csrftoken", "")

    async def post(
        self, path: str, data: dict[str, Any], htmx: bool = True
    ) -> httpx.Response:
        headers = {"x-csrftoken": self.csrf_token}
        if htmx:
            headers["hx-request"] = "true"
        return await self.http.post(path, data=data, headers=headers)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def live(self, query: str) -> websockets.ClientConnection:
        url = self.base_url.replace("http://", "ws://") + f"/live?{query}"
        return await websockets.connect(
            url,
            additional_headers={
                "Cookie": self.cookie_header(),
                "Origin": self.base_url,
            },
        )

    async def close(self) -> None:
        await self.http.aclose()
