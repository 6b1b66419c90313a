"""XSS payloads in every text field, shown in headless Chromium.

Payloads go in through the forms that pages post (and, for the fields that
only imports can fill with arbitrary text, straight into the table). The
admin areas' names and texts go in through their services, inbound mail
through the inbound endpoint, and the public lead form is filled in the
browser. Every page that shows them is then opened twice: once under the site's Content
Security Policy, which must report no violation, and once with the policy
bypassed, so that escaping alone must keep every script from running.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

from app.accounts.tables import Account
from app.contacts.tables import Contact
from tests.browserless import Session
from tests.e2e.conftest import wait_live, wait_until
from tests.factories import (
    PASSWORD,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
)

pytestmark = pytest.mark.e2e

# Every payload that ran would set window.__xss or open a dialog.
PAYLOADS = [
    "<script>window.__xss=1;alert(1)</script>",
    "<img src=x onerror=window.__xss=1;alert(1)>",
    "<svg onload=window.__xss=1;alert(1)>",
    '"><script>window.__xss=1</script>',
    "'><img src=x onerror=alert(1)>",
    "javascript:window.__xss=1;alert(1)",
    '<a href="javascript:alert(1)">click</a>',
    "</textarea><img src=x onerror=alert(1)>",
    "</title><script>alert(1)</script>",
    '<iframe src="javascript:alert(1)">',
    "<details open ontoggle=alert(1)>",
    "{{ 12345*11 }}{% raw %}",
    "<b>unclosed <i>markup",
    "\u202e<script>alert(1)</script>",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",
    "<scr<script>ipt>alert(1)</script>",
    '" autofocus onfocus="alert(1)',
    "<style>*{display:none}</style>",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "\ufeff<script>alert(1)</script>",
]
# Jinja would print this if a template rendered user text as a template.
TEMPLATE_RESULT = "135795"

# Attributes, elements and scripts that no page of this site has, so any of
# them comes from a payload.
DOM_CHECK = """() => {
  const found = [];
  for (const element of document.querySelectorAll("*")) {
    for (const attribute of element.attributes) {
      if (/^on/i.test(attribute.name)) {
        found.push(element.tagName + " " + attribute.name);
      }
      const link = ["href", "src", "action", "formaction", "data"];
      if (link.includes(attribute.name) && /^\\s*javascript:/i.test(attribute.value)) {
        found.push(element.tagName + " " + attribute.name + "=" + attribute.value);
      }
    }
  }
  for (const script of document.scripts) {
    if (!script.src || !new URL(script.src).pathname.startsWith("/static/")) {
      found.push("script " + (script.src || script.textContent.slice(0, 60)));
    }
  }
  // The record pages' own delete step is a details element; an injected one
  // would also need an on* attribute to run script, which the loop above finds.
  const injected = "main iframe, main object, main embed, main img, main svg, "
    + "main math, main style, base, main details:not(.delete-record), "
    + "main input[autofocus]";
  for (const element of document.querySelectorAll(injected)) {
    found.push("element " + element.outerHTML.slice(0, 80));
  }
  return found;
}"""

WATCH_SCRIPT = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def fitting(index: int, max_length: int) -> str:
    """Return payload ``index``, or the first payload that fits the field."""
    payload = PAYLOADS[index]
    if len(payload) <= max_length:
        return payload
    return next(text for text in PAYLOADS if len(text) <= max_length)


def change(fields: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    data = {f"base_{name}": base.get(name, "") for name in fields}
    data.update(fields)
    return data


async def saved(session: Session, path: str, data: dict[str, str]) -> None:
    response = await session.post(path, data)
    assert response.status_code == 200, (path, response.status_code, data)
    assert "Saved." in response.text, (path, response.text[:400])


async def seed(session: Session, tag: str) -> dict[str, Any]:
    """Create one account, contact, deal and ticket per payload, filled in."""
    pipeline = await make_pipeline()
    records: dict[str, list[int]] = {
        "account": [],
        "contact": [],
        "deal": [],
        "ticket": [],
    }

    for index, payload in enumerate(PAYLOADS):
        short = fitting(index, 60)
        account_name = f"{tag} {index}"
        rows = await Account.insert(
            # Imports store website and domain as given, so a page must cope.
            Account(name=account_name, website=payload[:300], domain=short)
        ).returning(Account.id)
        account_id = rows[0]["id"]
        await saved(
            session,
            f"/accounts/{account_id}",
            change(
                {
                    "name": f"{account_name} {fitting(index, 150)}",
                    "industry": fitting(index, 120),
                    "phone": short,
                    "city": fitting(index, 120),
                    "country": fitting(index, 120),
                },
                {"name": account_name},
            ),
        )

        rows = await Contact.insert(
            Contact(
                first_name="X",
                last_name=f"{tag}{index}",
                email=short,
                account=account_id,
            )
        ).returning(Contact.id)
        contact_id = rows[0]["id"]
        await saved(
            session,
            f"/contacts/{contact_id}",
            change(
                {
                    "first_name": fitting(index, 100),
                    "last_name": f"{tag}{index} {fitting(index, 100)}",
                    "phone": short,
                    "title": fitting(index, 200),
                    "lifecycle_stage": short,
                    "personal_notes": payload,
                },
                {"first_name": "X", "last_name": f"{tag}{index}"},
            ),
        )

        deal_name = f"{tag} deal {index}"
        deal_id = await make_deal(
            pipeline, name=deal_name, account=account_id, contact=contact_id
        )
        await saved(
            session,
            f"/deals/{deal_id}",
            change({"name": f"{deal_name} {payload}"}, {"name": deal_name}),
        )

        subject = f"{tag} ticket {index}"
        ticket_id = await make_ticket(
            subject=subject, account=account_id, requester=contact_id
        )
        await saved(
            session,
            f"/tickets/{ticket_id}",
            change(
                {
                    "subject": f"{subject} {payload}",
                    "description": payload,
                    "type": short,
                },
                {"subject": subject},
            ),
        )

        for kind, record_id in (("deal", deal_id), ("ticket", ticket_id)):
            response = await session.post(
                f"/{kind}s/{record_id}/comments", {"body": f"{tag} says {payload}"}
            )
            assert response.status_code == 200, (kind, response.status_code)

        records["account"].append(account_id)
        records["contact"].append(contact_id)
        records["deal"].append(deal_id)
        records["ticket"].append(ticket_id)
    return {"pipeline": pipeline, "records": records}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(server) -> AsyncIterator[dict[str, Any]]:
    user = await make_user(role="admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    tag = "xss" + uuid.uuid4().hex[:6]
    data = await seed(session, tag)
    await session.close()
    yield {**data, "tag": tag, "email": user.email}


def page_paths(seeded: dict[str, Any]) -> list[str]:
    records = seeded["records"]
    tag = seeded["tag"]
    paths = [
        f"/pipelines/{seeded['pipeline']['id']}",
        "/tickets",
        f"/accounts?q={tag}",
        f"/contacts?q={tag}",
        f"/deals/new?pipeline={seeded['pipeline']['id']}",
    ]
    for kind in ("account", "contact", "deal", "ticket"):
        paths += [f"/{kind}s/{record_id}" for record_id in records[kind]]
    return paths


async def open_context(
    browser: Browser, server, email: str, bypass_csp: bool
) -> tuple[BrowserContext, Page, list[str]]:
    """Sign in in a new context that records dialogs and policy violations."""
    context = await browser.new_context(
        base_url=server.url,
        bypass_csp=bypass_csp,
        viewport={"width": 1400, "height": 900},
    )
    context.set_default_timeout(10_000)
    await context.add_init_script(WATCH_SCRIPT)
    page = await context.new_page()
    dialogs: list[str] = []

    async def dismiss(dialog: Any) -> None:
        dialogs.append(f"{page.url}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    return context, page, dialogs


async def check_page(page: Page, path: str) -> dict[str, Any]:
    response = await page.goto(path)
    assert response is not None
    if await page.locator("body[ws-connect]").count():
        await wait_live(page)
    await page.wait_for_timeout(50)
    return {
        "status": response.status,
        "xss": await page.evaluate("window.__xss"),
        "violations": await page.evaluate("window.__violations"),
        "dom": await page.evaluate(DOM_CHECK),
        "text": await page.inner_text("body"),
    }


@pytest.mark.timeout(400)
@pytest.mark.parametrize("bypass_csp", [False, True], ids=["policy", "no-policy"])
async def test_pages_with_payloads_run_no_script(
    browser, server, seeded, bypass_csp: bool
) -> None:
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp
    )

    for path in page_paths(seeded):
        result = await check_page(page, path)

        assert result["status"] == 200, path
        assert result["xss"] is None, path
        assert result["dom"] == [], path
        assert result["violations"] == [], path
        assert TEMPLATE_RESULT not in result["text"], path
    assert dialogs == []
    await context.close()


async def test_search_echo_runs_no_script(browser, server, seeded) -> None:
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp=False
    )

    for payload in PAYLOADS[:8]:
        for list_path in ("/accounts", "/contacts"):
            await page.goto(list_path)
            await page.fill("main input[type=search]", payload)
            await page.press("main input[type=search]", "Enter")
            await page.wait_for_selector("p.count")
            result = await check_page(page, page.url.removeprefix(server.url))

            assert result["status"] == 200, (list_path, payload)
            assert result["xss"] is None, (list_path, payload)
            assert result["dom"] == [], (list_path, payload)
            assert result["violations"] == [], (list_path, payload)
    assert dialogs == []
    await context.close()


async def test_typed_payloads_stay_text(browser, server, seeded) -> None:
    """Type payloads into a contact form and a comment form, as a person would."""
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp=False
    )
    contact_id = seeded["records"]["contact"][0]
    deal_id = seeded["records"]["deal"][1]
    payload = PAYLOADS[1]

    await page.goto(f"/contacts/{contact_id}")
    await wait_live(page)
    form = page.locator(f"#contact-{contact_id}-form")
    await form.locator("textarea[name=personal_notes]").fill(f"typed {payload}")
    await form.locator("input[name=title]").fill(f"typed {PAYLOADS[4]}")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector(".form-ok")
    summary = page.locator(f"#contact-{contact_id}-summary")
    await wait_until(
        page,
        "(id) => document.querySelector(`#contact-${id}-summary`)"
        ".textContent.includes('typed')",
        arg=contact_id,
    )
    notes = await summary.locator("[data-field=personal_notes]").inner_text()

    await page.goto(f"/deals/{deal_id}")
    await wait_live(page)
    await page.fill(".comment-form textarea", f"**typed** {payload} <b>bold</b>")
    await page.click(".comment-form button[type=submit]")
    comment = page.locator(".comment-body", has_text="**typed**")
    await comment.wait_for()
    bold = await comment.locator("b").inner_text()

    assert notes == f"typed {payload}"
    assert bold == "bold"
    assert await comment.locator("img").count() == 0
    assert await page.evaluate("window.__xss") is None
    assert await page.evaluate("window.__violations") == []
    assert await page.evaluate(DOM_CHECK) == []
    assert dialogs == []
    await context.close()


async def test_pushed_fragments_run_no_script(browser, server, seeded) -> None:
    """A payload saved by someone else arrives over the live socket as text."""
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp=False
    )
    deal_id = seeded["records"]["deal"][2]
    pipeline_id = seeded["pipeline"]["id"]
    editor = Session(server.url)
    await editor.sign_in(seeded["email"])
    marker = uuid.uuid4().hex[:8]

    await page.goto(f"/deals/{deal_id}")
    await wait_live(page)
    form = await editor.get(f"/deals/{deal_id}/form")
    base_name = form.text.split('name="base_name" value="', 1)[1].split('"', 1)[0]
    await saved(
        editor,
        f"/deals/{deal_id}",
        change({"name": f"{marker} {PAYLOADS[0]}"}, {"name": html.unescape(base_name)}),
    )
    await editor.post(f"/deals/{deal_id}/comments", {"body": f"{marker} {PAYLOADS[2]}"})
    await wait_until(
        page,
        "(marker) => document.body.textContent.split(marker).length > 2",
        arg=marker,
    )

    await page.goto(f"/pipelines/{pipeline_id}")
    await wait_live(page)
    await saved(
        editor,
        f"/deals/{deal_id}",
        change(
            {"name": f"{marker}b {PAYLOADS[3]}"},
            {"name": f"{marker} {PAYLOADS[0]}"},
        ),
    )
    await wait_until(
        page, "(marker) => document.body.textContent.includes(marker + 'b')", arg=marker
    )

    assert await page.evaluate("window.__xss") is None
    assert await page.evaluate("window.__violations") == []
    assert await page.evaluate(DOM_CHECK) == []
    assert dialogs == []
    await editor.close()
    await context.close()


def payload_at(index: int, max_length: int = 10_000) -> str:
    return fitting(index % len(PAYLOADS), max_length)


def inbound_message(tag: str, index: int) -> bytes:
    """Return a raw mail whose sender name, subject and HTML body carry payloads."""
    message = EmailMessage()
    message["From"] = Address(
        payload_at(index, 60), addr_spec=f"{tag}{index}@mail.test"
    )
    message["To"] = "support@switchboard.test"
    message["Subject"] = f"{tag} inbound {index} {payload_at(index + 1, 150)}"
    message["Message-ID"] = make_msgid(domain="mail.test")
    message.set_content(f"Plain {payload_at(index + 2)}")
    html_body = "".join(f"<p>{text}</p>" for text in PAYLOADS[index : index + 6])
    message.add_alternative(
        f"<html><body>{html_body}{PAYLOADS[index]}</body></html>", subtype="html"
    )
    return message.as_bytes()


async def seed_admin_areas(
    session: Session, server, admin_id: int, tag: str
) -> dict[str, Any]:
    """Put payloads in the names and texts of the other areas: leads,
    campaigns, reply templates, replies, inbound mail, users, teams, roles,
    pipelines and stages, SLA calendars and policies, workflows, webhooks and
    API keys."""
    from app.access.tables import Role
    from app.api.keys import create_key
    from app.auth.service import create_user
    from app.campaigns.service import CampaignInput, create_campaign
    from app.deals.tables import Pipeline, Stage
    from app.email.templates import save_template
    from app.leads.service import create_lead
    from app.sla.calendars import parse_hours_text
    from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
    from app.webhooks.service import EndpointInput, create_endpoint
    from app.workflows.service import save_rule

    ids: dict[str, list[int]] = {}
    count = len(PAYLOADS)

    ids["lead"] = []
    for index in range(count):
        lead_id = await create_lead(
            {
                "name": f"{tag} lead {index} {payload_at(index, 150)}",
                "company": payload_at(index + 1, 150),
                "source": payload_at(index + 2, 60),
            },
            admin_id,
            answers={payload_at(index + 3, 60): payload_at(index + 4, 400)},
        )
        response = await session.post(
            f"/leads/{lead_id}/activities",
            {"kind": "note", "detail": payload_at(index + 5)},
        )
        assert response.status_code == 302, response.text[:300]
        assert response.headers["location"] == f"/leads/{lead_id}"
        ids["lead"].append(lead_id)

    team_ids = [await make_team(f"{tag} team {payload_at(i, 60)}") for i in range(8)]
    ids["team"] = team_ids
    ids["user"] = []
    for index in range(8):
        user = await create_user(
            f"{tag}{index}@people.test",
            f"{tag} {payload_at(index + 8, 80)}",
            "sales_rep",
            PASSWORD,
        )
        ids["user"].append(user.id)
    ids["role"] = []
    for index in range(4):
        rows = await Role.raw(
            "INSERT INTO role (name, label, permissions, field_rules) "
            "VALUES ({}, {}, '{{}}'::jsonb, '{{}}'::jsonb) RETURNING id",
            f"{tag}_{index}",
            f"{tag} {payload_at(index + 12, 80)}",
        )
        ids["role"].append(rows[0]["id"])

    ids["pipeline"] = []
    for index in range(2):
        pipeline = await make_pipeline()
        await Pipeline.update(
            {Pipeline.name: f"{tag} pipeline {payload_at(index + 14, 80)}"}
        ).where(Pipeline.id == pipeline["id"])
        for position, stage_id in enumerate(pipeline["stages"]):
            await Stage.update(
                {Stage.name: payload_at(index * 4 + position + 16, 60)}
            ).where(Stage.id == stage_id)
        await make_deal(pipeline, name=f"{tag} staged deal {index}")
        ids["pipeline"].append(pipeline["id"])

    calendar_ids = []
    policy_ids = []
    for index in range(3):
        calendar_id = await save_calendar(
            None,
            CalendarInput(
                name=f"{tag} calendar {payload_at(index, 60)}",
                time_zone="UTC",
                hours=parse_hours_text("mon 09:00-17:00"),
            ),
            admin_id,
        )
        calendar_ids.append(calendar_id)
        policy_ids.append(
            await save_policy(
                None,
                # A team of its own, so that the policy never applies to
                # the tickets of other tests sharing the database.
                PolicyInput(
                    name=f"{tag} policy {payload_at(index + 3, 60)}",
                    calendar_id=calendar_id,
                    team_id=team_ids[index],
                ),
                admin_id,
            )
        )
    ids["calendar"] = calendar_ids
    ids["policy"] = policy_ids

    ids["rule"] = [
        await save_rule(
            None,
            "ticket",
            f"{tag} rule {payload_at(index + 6, 100)}",
            {
                "trigger": {"kind": "created"},
                "actions": [{"kind": "add_tag", "tag": "xss"}],
            },
            admin_id,
        )
        for index in range(4)
    ]
    ids["endpoint"] = []
    for index in range(4):
        endpoint = await create_endpoint(
            EndpointInput(
                url=f"http://127.0.0.1:9/{tag}/{index}",
                description=f"{tag} {payload_at(index + 10, 200)}",
                event_types=("deal.created",),
                filters={"team": str(team_ids[0])},
            ),
            admin_id,
            allow_private=True,
        )
        ids["endpoint"].append(endpoint.id)
    for index in range(8):
        await create_key(
            admin_id, f"{tag} {payload_at(index + 14, 100)}", {"deal": "read"}, None
        )

    segment = {
        "type": "group",
        "items": [
            {
                "type": "condition",
                "field": "email",
                "op": "equals",
                "value": payload_at(3, 100),
            }
        ],
    }
    ids["campaign"] = [
        await create_campaign(
            CampaignInput(
                name=f"{tag} campaign {payload_at(index, 150)}",
                segment=segment,
                subject=payload_at(index + 1, 150),
                body=f"Hello {payload_at(index + 2)}",
            ),
            admin_id,
        )
        for index in range(8)
    ]
    ids["template"] = [
        await save_template(
            None,
            f"{tag} template {index} {payload_at(index, 80)}",
            f"Body {payload_at(index + 1)}",
            admin_id,
        )
        for index in range(8)
    ]

    key = await create_key(admin_id, f"{tag} inbound", {"ticket": "write"}, None)
    ids["inbound_ticket"] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for index in range(0, count, 6):
            response = await client.post(
                "/api/v1/inbound/email",
                content=inbound_message(tag, index),
                headers={
                    "authorization": f"Bearer {key.token}",
                    "content-type": "message/rfc822",
                },
            )
            assert response.status_code in (200, 201), response.text[:300]
            assert response.json()["outcome"] == "created", response.text[:300]
            ids["inbound_ticket"].append(int(response.json()["ticket_id"]))
    for index, ticket_id in enumerate(ids["inbound_ticket"]):
        response = await session.post(
            f"/tickets/{ticket_id}/replies", {"body": f"Reply {payload_at(index)}"}
        )
        assert response.status_code == 200, response.text[:300]
    return ids


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded_areas(server, seeded) -> AsyncIterator[dict[str, Any]]:
    from app.auth.tables import User

    session = Session(server.url)
    await session.sign_in(seeded["email"])
    admin = await User.select(User.id).where(User.email == seeded["email"]).first()
    tag = "xsa" + uuid.uuid4().hex[:6]
    ids = await seed_admin_areas(session, server, admin["id"], tag)
    await session.close()
    yield {"ids": ids, "tag": tag, "admin_id": admin["id"]}


# Pages that list seeded names in full on their first page.
TAGGED_LISTS = {
    "/admin/email-templates",
    "/admin/teams",
    "/admin/roles",
    "/admin/pipelines",
    "/admin/sla/calendars",
    "/admin/sla/policies",
    "/admin/workflows",
    "/admin/webhooks",
    "/security/api-keys",
    "/admin/audit",
}


def area_paths(seeded: dict[str, Any], areas: dict[str, Any]) -> list[str]:
    ids = areas["ids"]
    records = seeded["records"]
    paths = [
        "/leads",
        "/leads/board",
        f"/leads?q={areas['tag']}",
        "/campaigns",
        "/admin/email-templates",
        "/admin/users",
        f"/admin/users?q={areas['tag']}",
        "/admin/teams",
        "/admin/roles",
        "/admin/pipelines",
        "/pipelines",
        "/admin/sla",
        "/admin/sla/calendars",
        "/admin/sla/policies",
        "/sla/report",
        "/admin/workflows",
        "/admin/webhooks",
        "/security/api-keys",
        f"/admin/users/{areas['admin_id']}/api-keys",
        "/admin/assignment",
        "/admin/audit",
        "/forecast",
        "/availability",
        f"/forms/lead?source={quote(PAYLOADS[0])}",
    ]
    paths += [f"/leads/{lead_id}" for lead_id in ids["lead"]]
    paths += [f"/leads/{lead_id}/form" for lead_id in ids["lead"][:2]]
    for campaign_id in ids["campaign"][:4]:
        paths += [f"/campaigns/{campaign_id}", f"/campaigns/{campaign_id}/form"]
    paths += [f"/admin/users/{user_id}" for user_id in ids["user"][:4]]
    paths += [f"/admin/roles/{role_id}" for role_id in ids["role"]]
    paths += [f"/admin/assignment/teams/{team_id}" for team_id in ids["team"][:2]]
    for pipeline_id in ids["pipeline"]:
        paths += [f"/admin/pipelines/{pipeline_id}", f"/pipelines/{pipeline_id}"]
    paths += [f"/admin/sla/calendars/{item}" for item in ids["calendar"]]
    paths += [f"/admin/sla/policies/{item}" for item in ids["policy"]]
    paths += [f"/admin/workflows/{item}" for item in ids["rule"]]
    paths += [f"/admin/webhooks/{item}" for item in ids["endpoint"]]
    for ticket_id in ids["inbound_ticket"]:
        paths += [f"/tickets/{ticket_id}", f"/tickets/{ticket_id}/history"]
    for kind in ("account", "contact", "deal", "ticket"):
        paths += [f"/{kind}s/{record_id}/history" for record_id in records[kind][:6]]
    return paths


@pytest.mark.timeout(600)
@pytest.mark.parametrize("bypass_csp", [False, True], ids=["policy", "no-policy"])
async def test_area_pages_with_payloads_run_no_script(
    browser, server, seeded, seeded_areas, bypass_csp: bool
) -> None:
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp
    )

    tag = seeded_areas["tag"]
    for path in area_paths(seeded, seeded_areas):
        result = await check_page(page, path)

        # The web form rejects a source it was not set up with, and its
        # message shows the source back.
        expected = 400 if path.startswith("/forms/lead?") else 200
        assert result["status"] == expected, path
        if path in TAGGED_LISTS:
            # The seeded names are on the page, so their payloads were there.
            assert tag in result["text"], path
        assert result["xss"] is None, path
        assert result["dom"] == [], path
        assert result["violations"] == [], path
        assert TEMPLATE_RESULT not in result["text"], path
    assert dialogs == []
    await context.close()


async def test_web_form_payloads_run_no_script(browser, server, seeded) -> None:
    """Submit the public lead form with payloads: once rejected, so the form
    shows them back, and once stored, so the lead's pages show them."""
    context = await browser.new_context(base_url=server.url)
    await context.add_init_script(WATCH_SCRIPT)
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    marker = "web" + uuid.uuid4().hex[:8]

    await page.goto("/forms/lead")
    await page.fill("input[name=name]", f"{marker} {PAYLOADS[0]}")
    await page.fill("input[name=company]", PAYLOADS[1])
    await page.fill("input[name='answer.What matters most to you']", PAYLOADS[3])
    # Not an email address, so the form comes back with the values in it.
    await page.evaluate(
        "(value) => { const input = document.querySelector('input[name=email]');"
        " input.type = 'text'; input.value = value; }",
        PAYLOADS[7],
    )
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    rejected = {
        "xss": await page.evaluate("window.__xss"),
        "dom": await page.evaluate(DOM_CHECK),
        "violations": await page.evaluate("window.__violations"),
    }

    await page.fill("input[name=email]", f"{marker}@lead.test")
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    stored = {
        "xss": await page.evaluate("window.__xss"),
        "dom": await page.evaluate(DOM_CHECK),
    }
    await context.close()

    assert rejected == {"xss": None, "dom": [], "violations": []}
    assert stored == {"xss": None, "dom": []}
    assert dialogs == []
    context, page, dialogs = await open_context(
        browser, server, seeded["email"], bypass_csp=True
    )
    leads = await check_page(page, f"/leads?q={marker}")
    link = page.locator(f"a:has-text('{marker}')").first
    lead_path = await link.get_attribute("href")
    assert lead_path is not None
    lead = await check_page(page, lead_path)
    await context.close()

    for result in (leads, lead):
        assert result["status"] == 200
        assert result["xss"] is None
        assert result["dom"] == []
        assert TEMPLATE_RESULT not in result["text"]
    assert marker in lead["text"]
    assert dialogs == []
