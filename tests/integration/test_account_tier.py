"""The account form edits the service tier: checked, audited and pushed live."""

from __future__ import annotations

import json
import uuid

import pytest

from app.accounts.service import TIERS
from app.accounts.tables import Account
from app.audit.tables import AuditLog
from app.errors import FieldError
from app.sla.policies import PolicyInput, save_policy
from tests.browserless import Session
from tests.factories import make_user
from tests.live_frames import next_event

HTML = {"accept": "text/html"}
BLANK = {
    "domain": "",
    "industry": "",
    "employees": "",
    "annual_revenue": "",
    "phone": "",
    "website": "",
    "city": "",
    "country": "",
    "tier": "",
    "owner": "",
}


async def make_account(**values: str) -> tuple[int, str]:
    name = f"Tiered {uuid.uuid4().hex[:8]}"
    rows = await Account.insert(Account(name=name, **values)).returning(Account.id)
    return rows[0]["id"], name


def form(name: str, **changes: str) -> dict[str, str]:
    base = {"name": name, **BLANK}
    data = {f"base_{field}": value for field, value in base.items()}
    data.update(base)
    data.update(changes)
    return data


async def test_form_offers_each_tier(server) -> None:
    account_id, _ = await make_account(tier="silver")
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    page = await session.get(f"/accounts/{account_id}", headers=HTML)

    assert page.status_code == 200
    assert 'name="tier"' in page.text
    assert 'name="base_tier" value="silver"' in page.text
    for tier in TIERS:
        assert f'<option value="{tier}"' in page.text
    assert '<option value="silver" selected>' in page.text
    assert f'id="editing-account-{account_id}-tier"' in page.text
    assert '<dd data-field="tier">Silver</dd>' in page.text
    await session.close()


async def test_tier_edit_stored_audited_pushed(server) -> None:
    account_id, name = await make_account()
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await session.live(f"topic=account:{account_id}")

    response = await session.post(f"/accounts/{account_id}", form(name, tier="Gold"))
    frame = await next_event(socket)

    assert response.status_code == 200
    assert "Saved." in response.text
    assert f'id="account-{account_id}-summary"' in frame
    assert '<dd data-field="tier">Gold</dd>' in frame
    stored = await Account.select(Account.tier).where(Account.id == account_id).first()
    assert stored["tier"] == "gold"
    audited = await AuditLog.select(AuditLog.actor_id, AuditLog.changes).where(
        (AuditLog.record_type == "account") & (AuditLog.record_id == account_id)
    )
    assert len(audited) == 1
    assert audited[0]["actor_id"] == user.id
    changes = audited[0]["changes"]
    if isinstance(changes, str):
        changes = json.loads(changes)
    assert changes["tier"] == ["", "gold"]
    await socket.close()
    await session.close()


async def test_unknown_tier_rejected_naming_value(server) -> None:
    account_id, name = await make_account(tier="bronze")
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/accounts/{account_id}", form(name, base_tier="bronze", tier="diamond")
    )

    assert response.status_code == 422
    assert 'data-field="tier"' in response.text
    assert "diamond" in response.text
    assert "gold" in response.text
    stored = await Account.select(Account.tier).where(Account.id == account_id).first()
    assert stored["tier"] == "bronze"
    await session.close()


async def test_tier_cleared_with_empty_choice(server) -> None:
    account_id, name = await make_account(tier="platinum")
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/accounts/{account_id}", form(name, base_tier="platinum", tier="")
    )

    assert response.status_code == 200
    stored = await Account.select(Account.tier).where(Account.id == account_id).first()
    assert stored["tier"] == ""
    await session.close()


async def test_policy_rejects_unknown_tier() -> None:
    with pytest.raises(FieldError) as raised:
        await save_policy(
            None,
            PolicyInput(
                name=f"Tier {uuid.uuid4().hex[:8]}",
                calendar_id=None,
                account_tier="diamond",
            ),
            None,
        )

    assert raised.value.field == "account_tier"
    assert "diamond" in raised.value.message
