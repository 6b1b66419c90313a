"""Engage date, account, contact and product through the API and the deal
edit form: every field a stage may require can be set where deals are
edited, checked like the other fields, and a move that fills them passes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.api.keys import create_key
from app.deals.tables import Stage
from app.events.tables import Event
from tests.browserless import Session
from tests.factories import (
    make_account,
    make_contact,
    make_deal,
    make_pipeline,
    make_product,
    make_role,
    make_user,
    unique,
)
from tests.integration.test_stage_rules import deal_events, stored

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]

STAGES = ("Prospecting", "Decision", "Won", "Lost")


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def product_pipeline() -> dict[str, Any]:
    """A pipeline whose Decision stage needs a product and an engage date."""
    pipeline = await make_pipeline(STAGES)
    await Stage.update({Stage.required_fields: ["engage_date", "product"]}).where(
        Stage.id == pipeline["stages"][1]
    )
    return pipeline


async def key_for(user_id: int) -> dict[str, str]:
    issued = await create_key(user_id, unique("Key"), {"deal": "write"}, None)
    return {"authorization": f"Bearer {issued.token}"}


# The API.


async def test_api_create_sets_new_fields(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline(STAGES)
    account, contact, product = (
        await make_account(),
        await make_contact(),
        await make_product(),
    )

    created = await api.post(
        "/api/v1/deals",
        json={
            "name": "With references",
            "pipeline": pipeline["id"],
            "stage": pipeline["stages"][0],
            "engage_date": "2026-03-04",
            "account": account,
            "contact": str(contact),
            "product": product,
        },
        headers=await key_for(user.id),
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["engage_date"] == "2026-03-04"
    assert body["account"] == account
    assert body["contact"] == contact
    assert body["product"] == product
    row = await stored(body["id"])
    assert row["engage_date"] == dt.date(2026, 3, 4)
    assert row["product"] == product


async def test_api_patch_sets_and_clears_new_fields(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline(STAGES)
    deal_id = await make_deal(pipeline)
    product = await make_product()
    headers = await key_for(user.id)

    set_response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"product": product, "engage_date": "2026-05-06"},
        headers={**headers, "if-match": '"1"'},
    )
    cleared = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"product": None},
        headers={**headers, "if-match": set_response.headers["etag"]},
    )
    stale = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"product": product},
        headers={**headers, "if-match": '"1"'},
    )

    assert set_response.status_code == 200, set_response.text
    assert set_response.json()["product"] == product
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["product"] is None
    assert cleared.json()["engage_date"] == "2026-05-06"
    assert stale.status_code == 412
    assert (await stored(deal_id))["product"] is None


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("product", 2_000_000_000, "Product 2000000000 is not a product."),
        ("account", 2_000_000_000, "Account 2000000000 is not an account."),
        ("contact", 2_000_000_000, "Contact 2000000000 is not a contact."),
        ("product", "Widget", "Product 'Widget'"),
        ("engage_date", "2026-13-01", "Engage date '2026-13-01'"),
    ],
)
async def test_api_rejects_invalid_reference(api, field, value, detail) -> None:
    user = await make_user()
    pipeline = await make_pipeline(STAGES)
    deal_id = await make_deal(pipeline)

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={field: value},
        headers={**await key_for(user.id), "if-match": '"1"'},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == field
    assert body["value"] == value
    assert body["detail"].startswith(detail)
    assert (await stored(deal_id))["version"] == 1


async def test_api_rejects_unreadable_account(api) -> None:
    # The user edits every deal but reads only their own accounts.
    role = await make_role(
        {
            "deal": {"read": "all", "create": "all", "edit": "all"},
            "account": {"read": "own"},
        }
    )
    user = await make_user(role)
    theirs = await make_account()
    own = await make_account(owner=user.id)
    pipeline = await make_pipeline(STAGES)
    deal_id = await make_deal(pipeline, owner=user.id)
    headers = await key_for(user.id)

    rejected = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"account": theirs},
        headers={**headers, "if-match": '"1"'},
    )
    created = await api.post(
        "/api/v1/deals",
        json={
            "name": "Other account",
            "pipeline": pipeline["id"],
            "stage": pipeline["stages"][0],
            "account": theirs,
        },
        headers=headers,
    )
    accepted = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"account": own},
        headers={**headers, "if-match": '"1"'},
    )

    assert rejected.status_code == 422
    # The words of a missing account, so the account is not revealed to exist.
    assert rejected.json()["detail"] == f"Account {theirs} is not an account."
    assert created.status_code == 422
    assert created.json()["field"] == "account"
    assert accepted.status_code == 200, accepted.text
    assert (await stored(deal_id))["account"] == own


async def test_api_hidden_product_by_role(api) -> None:
    role = await make_role(
        {"deal": {"read": "all", "create": "all", "edit": "all"}},
        {"deal": {"product": "hidden", "engage_date": "read_only"}},
    )
    user = await make_user(role)
    pipeline = await make_pipeline(STAGES)
    product = await make_product()
    deal_id = await make_deal(pipeline, owner=user.id, product=product)
    headers = await key_for(user.id)

    read = await api.get(f"/api/v1/deals/{deal_id}", headers=headers)
    hidden = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"product": None},
        headers={**headers, "if-match": '"1"'},
    )
    read_only = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"engage_date": "2026-01-01"},
        headers={**headers, "if-match": '"1"'},
    )

    assert read.status_code == 200
    assert "product" not in read.json()
    assert "engage_date" in read.json()
    assert hidden.status_code == 422
    assert hidden.json()["field"] == "product"
    assert "read-only for your role" in hidden.json()["detail"]
    assert read_only.status_code == 422
    assert read_only.json()["field"] == "engage_date"
    assert (await stored(deal_id))["product"] == product


async def test_api_move_with_required_fields(api) -> None:
    user = await make_user()
    pipeline = await product_pipeline()
    deal_id = await make_deal(pipeline)
    product = await make_product()
    headers = await key_for(user.id)
    decision = pipeline["stages"][1]

    missing = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"stage": decision, "product": product},
        headers={**headers, "if-match": '"1"'},
    )
    moved = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"stage": decision, "product": product, "engage_date": "2026-02-03"},
        headers={**headers, "if-match": '"1"'},
    )

    assert missing.status_code == 422
    assert missing.json()["missing_fields"] == ["engage_date"]
    assert "needs engage date" in missing.json()["detail"]
    assert moved.status_code == 200, moved.text
    row = await stored(deal_id)
    assert row["stage"] == decision
    assert row["product"] == product
    assert row["version"] == 2
    events = await deal_events(deal_id)
    assert [event["kind"] for event in events] == ["deal.updated"]
    assert set(events[0]["changes"]) >= {"stage", "product", "engage_date"}


# The stage API.


async def test_stage_patch_sets_required_fields(api) -> None:
    admin = await make_user()
    pipeline = await make_pipeline(STAGES)
    stage_id = pipeline["stages"][1]
    headers = await key_for(admin.id)

    saved = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"required_fields": ["product", "amount", "product"]},
        headers={**headers, "if-match": '"1"'},
    )
    unknown = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"required_fields": ["amount", "widget"]},
        headers={**headers, "if-match": '"2"'},
    )
    not_list = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"required_fields": "amount"},
        headers={**headers, "if-match": '"2"'},
    )
    cleared = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"required_fields": []},
        headers={**headers, "if-match": '"2"'},
    )

    assert saved.status_code == 200, saved.text
    assert saved.json()["required_fields"] == ["amount", "product"]
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "required_fields"
    assert unknown.json()["value"] == "widget"
    assert unknown.json()["detail"].startswith("Required field 'widget' is not one of")
    assert not_list.status_code == 422
    assert not_list.json()["value"] == "amount"
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["required_fields"] == []
    audited = (
        await Event.select(Event.changes)
        .where((Event.record_type == "stage") & (Event.record_id == stage_id))
        .order_by(Event.id)
        .first()
    )
    assert audited is not None
    assert json.loads(audited["changes"])["required_fields"] == [
        [],
        ["amount", "product"],
    ]


# The edit form.


async def test_edit_form_offers_new_fields(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline(STAGES)
    product = await make_product()
    deal_id = await make_deal(pipeline, product=product)
    session = Session(server.url)
    await session.sign_in(user.email)
    try:
        page = await session.get(f"/deals/{deal_id}")
        searched = await session.get(
            f"/deals/{deal_id}/entry-choices/product",
            params={"search": "no such product name", "product": str(product)},
            headers={"hx-request": "true"},
        )
    finally:
        await session.close()

    assert page.status_code == 200
    assert 'type="date" name="engage_date"' in page.text
    for name in ("account", "contact", "product"):
        assert f'hx-get="/deals/{deal_id}/entry-choices/{name}"' in page.text
        assert f'id="editing-deal-{deal_id}-{name}"' in page.text
    assert f'<option value="{product}" selected>' in page.text
    assert 'data-field="product"' in page.text
    # A search keeps the chosen product although it does not match.
    assert f'<option value="{product}" selected>' in searched.text


async def test_edit_form_move_with_fields(server) -> None:
    user = await make_user()
    pipeline = await product_pipeline()
    deal_id = await make_deal(pipeline)
    product = await make_product()
    first, decision = pipeline["stages"][:2]
    session = Session(server.url)
    await session.sign_in(user.email)
    base = {
        "base_stage": str(first),
        "base_product": "",
        "base_engage_date": "",
    }
    try:
        refused = await session.post(
            f"/deals/{deal_id}",
            {**base, "stage": str(decision), "product": "", "engage_date": ""},
        )
        saved = await session.post(
            f"/deals/{deal_id}",
            {
                **base,
                "stage": str(decision),
                "product": str(product),
                "engage_date": "2026-07-08",
            },
        )
    finally:
        await session.close()

    assert refused.status_code == 422
    assert (
        "Stage &#39;Decision&#39; needs engage date and product before a deal "
        "can enter it." in refused.text
    )
    assert saved.status_code == 200
    assert 'class="form-ok"' in saved.text
    row = await stored(deal_id)
    assert row["stage"] == decision
    assert row["product"] == product
    assert row["engage_date"] == dt.date(2026, 7, 8)


async def test_edit_form_rejects_unreadable_contact(server) -> None:
    role = await make_role(
        {
            "deal": {"read": "all", "edit": "all"},
            "contact": {"read": "own"},
        }
    )
    user = await make_user(role)
    theirs = await make_contact()
    pipeline = await make_pipeline(STAGES)
    deal_id = await make_deal(pipeline, owner=user.id)
    session = Session(server.url)
    await session.sign_in(user.email)
    try:
        response = await session.post(
            f"/deals/{deal_id}", {"contact": str(theirs), "base_contact": ""}
        )
    finally:
        await session.close()

    assert response.status_code == 422
    assert f"Contact {theirs} is not a contact." in response.text
    assert (await stored(deal_id))["contact"] is None
