"""Changing one's own password on the Security page."""

from __future__ import annotations

import pytest

from app.auth.passwords import verify_password
from app.auth.tables import User
from app.events.tables import Event
from tests.browserless import Session
from tests.factories import PASSWORD, make_user
from tests.servers import web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW_PASSWORD = "a much longer new phrase"
MAX_FAILURES = 3


@pytest.fixture(scope="module")
def server():
    with web_server({"SIGNIN_MAX_FAILURES": str(MAX_FAILURES)}) as running:
        yield running


def change(current: str, password: str, confirmation: str) -> dict[str, str]:
    return {
        "current_password": current,
        "password": password,
        "confirmation": confirmation,
    }


async def test_password_change_checks_and_ends_other_sessions(server) -> None:
    user = await make_user("sales_rep")
    here, elsewhere = Session(server.url), Session(server.url)
    await here.sign_in(user.email)
    await elsewhere.sign_in(user.email)

    page = await here.get("/security")
    short = await here.post(
        "/security/password", change(PASSWORD, "short", "short"), htmx=False
    )
    unmatched = await here.post(
        "/security/password",
        change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x"),
        htmx=False,
    )
    changed = await here.post(
        "/security/password", change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD), htmx=False
    )
    here_after = await here.get(changed.headers["location"])
    elsewhere_after = await elsewhere.get("/security")

    assert 'name="current_password"' in page.text
    assert short.status_code == 422
    assert "Password must be at least 8 characters." in short.text
    assert unmatched.status_code == 422
    assert "Confirmation does not match the new password." in unmatched.text
    assert changed.status_code == 302
    assert here_after.status_code == 200
    assert "other sessions were signed out" in here_after.text
    # Signed out: a page request without a session is refused.
    assert elsewhere_after.status_code in (302, 401)
    row = await User.select(User.password_hash).where(User.id == user.id).first()
    assert row["password_hash"].startswith("$argon2id$")
    assert await Event.exists().where(
        (Event.kind == "user.password_changed") & (Event.record_id == user.id)
    )
    fresh = Session(server.url)
    await fresh.sign_in(user.email, NEW_PASSWORD)
    for session in (here, elsewhere, fresh):
        await session.close()


async def test_wrong_current_password_is_limited_like_sign_in(server) -> None:
    user = await make_user("sales_rep")
    session = Session(server.url)
    await session.sign_in(user.email)
    wrong = change("not my password", NEW_PASSWORD, NEW_PASSWORD)

    answers = [
        await session.post("/security/password", wrong, htmx=False)
        for _ in range(MAX_FAILURES)
    ]
    locked = await session.post(
        "/security/password", change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD), htmx=False
    )

    assert [answer.status_code for answer in answers] == [422] * MAX_FAILURES
    assert "Current password is not your current password." in answers[0].text
    assert locked.status_code == 429
    assert "retry-after" in locked.headers
    row = await User.select(User.password_hash).where(User.id == user.id).first()
    assert verify_password(row["password_hash"], PASSWORD)
    await session.close()
