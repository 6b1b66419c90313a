"""Sign-in and sign-out pages."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from app.auth.service import authenticate
from app.web.live import SESSION_COOKIE, end_session_sockets

SIGN_IN_FAILED = "Incorrect email or password."


def safe_next(target: str | None) -> str:
    """Allow only local paths as the page to return to after sign-in."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


class AuthController(Controller):
    @get("/login", exclude_from_auth=True, sync_to_thread=False)
    def login_page(self, next: FromQuery[str | None] = None) -> Template:
        return Template(
            "auth/login.html", context={"next": safe_next(next), "error": None}
        )

    @post("/login", exclude_from_auth=True)
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)
        ],
    ) -> Template | Redirect:
        user = await authenticate(data.get("email", ""), data.get("password", ""))
        if user is None:
            return Template(
                "auth/login.html",
                context={
                    "next": safe_next(data.get("next")),
                    "error": SIGN_IN_FAILED,
                    "email": data.get("email", ""),
                },
                status_code=401,
            )

        # A fresh session at sign-in, so an id planted before it is worthless.
        request.clear_session()
        request.set_session({"user_id": user.id})
        return Redirect(safe_next(data.get("next")))

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        await end_session_sockets(request.cookies.get(SESSION_COOKIE))
        request.clear_session()
        return Redirect("/login")
