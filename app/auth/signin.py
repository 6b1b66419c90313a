"""The steps between a correct password and a signed-in session.

After the password, a user with two-factor sign-in gets a pending session
that only the code page accepts, and a user whose role requires two-factor
but who has not enrolled gets one that only the enrolment page accepts.
Each step starts its session under a new id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException
from litestar.response import Template

from app.auth import two_factor
from app.auth.limits import Limiter, Lockout, account_subject, sign_in_limits
from app.auth.sessions import client_address, start_session
from app.config import Settings

logger = logging.getLogger(__name__)

# Seconds a user has between the password and the code or the enrolment.
PENDING_LIFETIME = 300
TWO_FACTOR_STEP = "two_factor_user_id"
ENROLMENT_STEP = "enrol_user_id"
STEP_PAGES = {
    TWO_FACTOR_STEP: "/login/two-factor",
    ENROLMENT_STEP: "/login/two-factor/enrol",
}


def sign_in_limiter(request: Request[Any, Any, Any]) -> Limiter:
    settings: Settings = request.app.state.settings
    return Limiter(
        request.app.state.redis, settings.redis_prefix, sign_in_limits(settings.sign_in)
    )


def limit_subjects(request: Request[Any, Any, Any], email: str) -> dict[str, str]:
    return {"account": account_subject(email), "address": client_address(request)}


def lockout_message(lockout: Lockout) -> str:
    source = (
        "for this email address"
        if lockout.scope == "account"
        else "from your network address"
    )
    unit = "minute" if lockout.minutes == 1 else "minutes"
    return f"Too many failed sign-ins {source}. Try again in {lockout.minutes} {unit}."


def locked_page(lockout: Lockout, template: str, context: dict[str, Any]) -> Template:
    """Render a sign-in step rejected because of a lock, with Retry-After."""
    return Template(
        template,
        context={**context, "error": lockout_message(lockout)},
        status_code=429,
        headers={"retry-after": str(lockout.seconds)},
    )


async def start_pending_step(
    request: Request[Any, Any, Any], user_id: int, email: str, next_page: str
) -> str | None:
    """Start the step the user needs before a full session, if any.

    Returns the path of that step's page, or None when the password is
    all the user needs.
    """
    if await two_factor.is_enrolled(user_id):
        step = TWO_FACTOR_STEP
    elif await two_factor.required_by_role(user_id):
        step = ENROLMENT_STEP
    else:
        return None
    page = STEP_PAGES[step]

    await start_session(
        request,
        {
            step: user_id,
            "email": email.strip().lower(),
            "pending_until": time.time() + PENDING_LIFETIME,
            "next": next_page,
        },
    )
    logger.info("sign-in step pending user_id=%s step=%s", user_id, step)
    return page


def pending_user(request: Request[Any, Any, Any], step: str) -> int | None:
    """Return the user waiting at ``step``, or None if there is none or it timed out."""
    session = request.session
    user_id = session.get(step)
    pending_until = session.get("pending_until")
    if not isinstance(user_id, int) or not isinstance(pending_until, int | float):
        return None
    if time.time() > pending_until:
        return None
    return user_id


def pending_step_page(session: dict[str, Any]) -> str | None:
    """Return the page of the sign-in step this session waits at, if any."""
    for step, page in STEP_PAGES.items():
        if isinstance(session.get(step), int):
            pending_until = session.get("pending_until")
            if isinstance(pending_until, int | float) and time.time() <= pending_until:
                return page
    return None


def reject_pending_step(session: dict[str, Any]) -> None:
    """Raise NotAuthorizedException for a session waiting at a sign-in step.

    Raising, unlike returning no user, leaves the session in place, so the
    sign-in page can send the user back to the step they have not finished.
    """
    if pending_step_page(session) is not None:
        raise NotAuthorizedException("finish signing in first")
