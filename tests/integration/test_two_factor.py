"""TOTP enrolment, two-factor sign-in, recovery codes and roles that require it."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pyotp

from tests.browserless import Session
from tests.factories import PASSWORD, make_user


def later_code(secret: str, steps_ahead: int = 1) -> str:
    """A code of a coming time step, accepted once the current one was used."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


async def post_form(
    session: Session, path: str, data: dict[str, str]
) -> httpx.Response:
    return await session.post(path, data, htmx=False)


async def enrol_over_http(session: Session, action: str) -> tuple[str, list[str]]:
    """Read the secret from the enrolment page, confirm it, return it and the codes."""
    page = await session.get(action)
    assert page.status_code == 200, page.text
    assert "<svg" in page.text
    match = re.search(r'<code class="secret-key">([A-Z2-7]+)</code>', page.text)
    assert match, "no secret key on the enrolment page"
    secret = match.group(1)

    confirmed = await post_form(session, action, {"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200, confirmed.text
    codes = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", confirmed.text)
    return secret, codes


async def password_step(session: Session, email: str) -> httpx.Response:
    await session.get("/login")
    return await session.http.post(
        "/login",
        data={
            "email": email,
            "password": PASSWORD,
            "next": "/security",
            "_csrf_token": session.csrf_token,
        },
    )


async def is_signed_in(session: Session) -> bool:
    response = await session.get("/security", headers={"accept": "text/html"})
    return response.status_code == 200


async def test_enrolment_stores_secret_encrypted(server) -> None:
    from app.auth.security_tables import RecoveryCode, TwoFactor

    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    secret, codes = await enrol_over_http(session, "/security/two-factor")
    row = await TwoFactor.select().where(TwoFactor.user == user.id).first()
    stored_codes = await RecoveryCode.select(RecoveryCode.code_hash).where(
        RecoveryCode.user == user.id
    )
    page = await session.get("/security")

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert row is not None
    assert secret not in row["secret"]
    assert len(stored_codes) == 10
    assert not {code.replace("-", "") for code in codes} & {
        stored["code_hash"] for stored in stored_codes
    }
    assert "You have 10 unused recovery codes." in page.text
    await session.close()


async def test_enrolment_rejects_wrong_code(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    await session.get("/security/two-factor")

    response = await post_form(session, "/security/two-factor", {"code": "000000"})

    assert response.status_code == 422
    assert "is not the current code of your authenticator app" in response.text
    await session.close()


async def test_sign_in_needs_code_after_password(server) -> None:
    user = await make_user()
    setup = Session(server.url)
    await setup.sign_in(user.email)
    secret, _ = await enrol_over_http(setup, "/security/two-factor")
    await setup.close()

    session = Session(server.url)
    after_password = await password_step(session, user.email)
    before_code = await is_signed_in(session)
    wrong = await post_form(session, "/login/two-factor", {"code": "123456"})
    code = later_code(secret)
    right = await post_form(session, "/login/two-factor", {"code": code})

    assert after_password.status_code == 302
    assert after_password.headers["location"] == "/login/two-factor"
    assert not before_code
    assert wrong.status_code == 401
    assert "Incorrect or already used code." in wrong.text
    assert right.status_code == 302
    assert right.headers["location"] == "/security"
    assert await is_signed_in(session)

    replay = Session(server.url)
    await password_step(replay, user.email)
    replayed = await post_form(replay, "/login/two-factor", {"code": code})
    assert replayed.status_code == 401
    await session.close()
    await replay.close()


async def test_code_step_rotates_session_id(server) -> None:
    user = await make_user()
    setup = Session(server.url)
    await setup.sign_in(user.email)
    secret, _ = await enrol_over_http(setup, "/security/two-factor")
    await setup.close()

    session = Session(server.url)
    await password_step(session, user.email)
    pending_id = session.http.cookies.get("session")
    await post_form(session, "/login/two-factor", {"code": later_code(secret)})

    assert session.http.cookies.get("session") != pending_id
    await session.close()


async def test_recovery_code_signs_in_once(server) -> None:
    user = await make_user()
    setup = Session(server.url)
    await setup.sign_in(user.email)
    _, codes = await enrol_over_http(setup, "/security/two-factor")
    await setup.close()

    first = Session(server.url)
    await password_step(first, user.email)
    accepted = await post_form(first, "/login/two-factor", {"code": codes[0].upper()})
    second = Session(server.url)
    await password_step(second, user.email)
    reused = await post_form(second, "/login/two-factor", {"code": codes[0]})
    page = await first.get("/security")

    assert accepted.status_code == 302
    assert reused.status_code == 401
    assert "You have 9 unused recovery codes." in page.text
    await first.close()
    await second.close()


async def test_disable_needs_fresh_code(server) -> None:
    from app.auth.security_tables import RecoveryCode, TwoFactor

    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    secret, _ = await enrol_over_http(session, "/security/two-factor")

    used = await post_form(
        session, "/security/two-factor/disable", {"code": pyotp.TOTP(secret).now()}
    )
    still_on = await TwoFactor.exists().where(TwoFactor.user == user.id)
    fresh = await post_form(
        session, "/security/two-factor/disable", {"code": later_code(secret)}
    )

    assert used.status_code == 422
    assert still_on
    assert fresh.status_code == 302
    assert not await TwoFactor.exists().where(TwoFactor.user == user.id)
    assert await RecoveryCode.count().where(RecoveryCode.user == user.id) == 0
    await session.close()


async def test_role_requiring_two_factor_sends_to_enrolment(server) -> None:
    from app.access.tables import Role, UserRole

    user = await make_user()
    name = f"secure_{uuid.uuid4().hex[:8]}"
    rows = await Role.insert(
        Role(name=name, label="Needs two-factor", require_two_factor=True)
    ).returning(Role.id)
    await UserRole.insert(UserRole(user_id=user.id, role_id=rows[0]["id"]))

    session = Session(server.url)
    after_password = await password_step(session, user.email)
    blocked = await session.get("/security", headers={"accept": "text/html"})
    secret, codes = await enrol_over_http(session, "/login/two-factor/enrol")
    enrolled = await is_signed_in(session)
    rejected_disable = await post_form(
        session, "/security/two-factor/disable", {"code": later_code(secret)}
    )

    assert after_password.status_code == 302
    assert after_password.headers["location"] == "/login/two-factor/enrol"
    assert blocked.status_code == 302
    assert blocked.headers["location"].startswith("/login")
    assert len(codes) == 10
    assert enrolled
    assert rejected_disable.status_code == 422
    assert "a role you hold requires two-factor" in rejected_disable.text
    await session.close()


async def test_pending_code_step_expires_without_password(server) -> None:
    session = Session(server.url)
    await session.get("/login")

    response = await post_form(session, "/login/two-factor", {"code": "123456"})

    assert response.status_code == 401
    assert "Your sign-in timed out." in response.text
    await session.close()


async def test_role_requiring_two_factor_signs_out_those_without(server) -> None:
    from app.access.service import UserChanges, update_user
    from app.access.tables import Role, UserRole

    admin = await make_user("admin")
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    held = await UserRole.select(UserRole.role_id).where(UserRole.user_id == user.id)
    name = f"secure_{uuid.uuid4().hex[:8]}"
    rows = await Role.insert(
        Role(name=name, label="Needs two-factor", require_two_factor=True)
    ).returning(Role.id)
    signed_in_before = await is_signed_in(session)

    await update_user(
        user.id,
        UserChanges(role_ids=[*(row["role_id"] for row in held), rows[0]["id"]]),
        admin.id,
    )

    assert signed_in_before
    assert not await is_signed_in(session)
    await session.close()
