"""Admin forms answer 422 naming the field for text with a NUL character."""

from __future__ import annotations

import pytest

from tests.browserless import Session
from tests.factories import PASSWORD, make_team, make_user, unique

pytestmark = pytest.mark.asyncio(loop_scope="session")

NUL = "a\x00b"
HOOK = "http://127.0.0.1:9/hook"


async def admin_session(url: str) -> Session:
    admin = await make_user("admin")
    session = Session(url)
    await session.sign_in(admin.email)
    return session


async def forms() -> list[tuple[str, dict[str, str]]]:
    team = await make_team()
    user = await make_user("sales_rep")
    return [
        ("/admin/teams", {"name": NUL}),
        (f"/admin/teams/{team}", {"name": NUL}),
        (f"/admin/teams/{team}", {"name": unique("Team"), "region": NUL}),
        (
            "/admin/users",
            {
                "name": NUL,
                "email": f"{unique('u').replace(' ', '')}@test.example",
                "password": PASSWORD,
            },
        ),
        (f"/admin/users/{user.id}", {"name": NUL}),
        ("/admin/roles", {"name": "nul_role", "label": NUL}),
        ("/admin/sla/calendars", {"name": NUL, "time_zone": "UTC", "hours": ""}),
        ("/admin/sla/policies", {"name": NUL}),
        ("/admin/workflows/", {"name": NUL, "object_type": "deal"}),
        (
            "/admin/webhooks/",
            {"description": NUL, "url": HOOK, "event_types": "deal.created"},
        ),
        (
            "/admin/webhooks/",
            {
                "url": HOOK,
                "event_types": "deal.created",
                "filter_field": "name",
                "filter_value": NUL,
            },
        ),
        ("/admin/email-templates/", {"name": NUL, "body": "Hello"}),
        ("/admin/email-templates/", {"name": "Greeting", "body": NUL}),
        ("/security/api-keys/", {"name": NUL, "scope.deal": "read"}),
        ("/campaigns/", {"name": NUL, "subject": "Hi", "body": "Hello"}),
        ("/admin/web-form/", {"source": NUL}),
        ("/admin/web-form/", {"source": "Website", "questions": f"Budget?\n{NUL}"}),
    ]


async def test_admin_forms_reject_nul_naming_the_field(server) -> None:
    session = await admin_session(server.url)

    failures = []
    for path, form in await forms():
        response = await session.post(path, form, htmx=False)
        if response.status_code != 422 or "contains a NUL character" not in (
            response.text
        ):
            failures.append((path, sorted(form), response.status_code))

    assert failures == []
    await session.close()


async def test_password_with_nul_rejected(server) -> None:
    user = await make_user("sales_rep")
    session = Session(server.url)
    await session.sign_in(user.email)
    form = {
        "current_password": PASSWORD,
        "password": f"{PASSWORD}\x00x",
        "confirmation": f"{PASSWORD}\x00x",
    }

    response = await session.post("/security/password", form, htmx=False)

    assert response.status_code == 422
    assert "contains a NUL character" in response.text
    await session.close()
