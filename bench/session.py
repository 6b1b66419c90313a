"""A signed-in HTTP session, sending the CSRF token as the pages do."""

from __future__ import annotations

import httpx

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"


class Session:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(
            base_url=base_url, follow_redirects=False, timeout=30
        )

    async def sign_in(self, email: str, password: str) -> None:
        await self.http.get("/login")
        response = await self.http.post(
            "/login",
            data={"email": email, "password": password, "_csrf_token": self.csrf},
        )
        if response.status_code != 302:
            raise RuntimeError(
                f"sign-in as {email} at {self.base_url} failed with status "
                f"{response.status_code}"
            )

    @property
    def csrf(self) -> str:
        return self.http.cookies.get(CSRF_COOKIE) or ""

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def post_htmx(self, path: str, data: dict[str, str]) -> httpx.Response:
        """POST a form as htmx sends it, with the CSRF header."""
        headers = {CSRF_HEADER: self.csrf, "hx-request": "true"}
        return await self.http.post(path, data=data, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()
