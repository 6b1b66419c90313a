"""The web-to-lead form's admin settings: validation, framing headers, the
default owner, the redirect after a submission, and the sources and
questions a submission may name."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
import pytest_asyncio

from app.errors import FieldError
from app.leads.service import create_lead
from app.leads.tables import Lead, WebFormSettings
from app.leads.webform_settings import form_owner, load_settings, save_settings
from app.workflows.jobs import close_queue
from tests.browserless import Session
from tests.factories import make_team, make_user, unique
from tests.servers import WebServer, web_server

EMBEDDING_ORIGIN = "http://127.0.0.1:8999"
REDIRECT_URL = "https://www.example.com/thank-you?form=lead"
# The embed code points at the address users reach the site at.
PUBLIC_URL = "https://crm.example.test"


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    env = {"CRM_WEBFORM_RATE_LIMIT": "20", "PUBLIC_URL": PUBLIC_URL}
    with web_server(env) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def default_settings() -> AsyncIterator[None]:
    """Put the form back to its defaults, which other tests expect."""
    yield
    await WebFormSettings.delete(force=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that new leads open to queue rescoring."""
    yield
    await close_queue()


def settings_form(**changes: str | list[str]) -> dict[str, str | list[str]]:
    return {
        "source": "Partner site",
        "default_owner": "",
        "default_team": "",
        "fields": ["name", "company"],
        "questions": "Budget\nTimeline",
        "redirect_url": REDIRECT_URL,
        "allowed_origins": f"{EMBEDDING_ORIGIN}\nhttps://www.example.com/",
        "sources": "Fair stand\nNewsletter",
        **changes,
    }


def directive(policy: str, name: str) -> str | None:
    for part in policy.split(";"):
        words = part.split()
        if words and words[0] == name:
            return " ".join(words[1:])
    return None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"redirect_url": "javascript:alert(1)"}, "redirect_url"),
        ({"redirect_url": "ftp://files.example.com/thanks"}, "redirect_url"),
        ({"redirect_url": "https://user:secret@example.com/"}, "redirect_url"),
        ({"allowed_origins": "https://www.example.com/page"}, "allowed_origins"),
        ({"allowed_origins": "*"}, "allowed_origins"),
        ({"allowed_origins": "'self'"}, "allowed_origins"),
        ({"fields": ["salary"]}, "fields"),
        ({"source": ""}, "source"),
        ({"default_owner": "999999999"}, "default_owner"),
        ({"questions": "x" * 121}, "questions"),
        ({"sources": "x" * 121}, "sources"),
        ({"sources": "\n".join(f"Source {n}" for n in range(21))}, "sources"),
    ],
)
async def test_settings_reject_invalid_value(changes: dict, field: str) -> None:
    with pytest.raises(FieldError) as raised:
        await save_settings(settings_form(**changes), None)

    assert raised.value.field == field


async def test_settings_normalise_origins() -> None:
    saved = await save_settings(
        settings_form(
            allowed_origins="HTTPS://WWW.Example.com/\nhttp://127.0.0.1:8999"
        ),
        None,
    )

    assert saved.allowed_origins == ("https://www.example.com", EMBEDDING_ORIGIN)
    assert saved.frame_ancestors() == f"https://www.example.com {EMBEDDING_ORIGIN}"
    assert saved.questions == ("Budget", "Timeline")
    assert saved.redirect_url == REDIRECT_URL


async def test_settings_keep_other_sources_once() -> None:
    saved = await save_settings(
        settings_form(sources="Newsletter\n Partner site \nNewsletter\n\nFair"),
        None,
    )

    assert saved.sources == ("Newsletter", "Fair")
    assert saved.accepted_sources == ("Partner site", "Newsletter", "Fair")


async def test_only_form_route_may_be_framed(server: WebServer) -> None:
    await save_settings(settings_form(), None)

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        form = await client.get("/forms/lead")
        login = await client.get("/login")

    form_policy = form.headers["content-security-policy"]
    login_policy = login.headers["content-security-policy"]
    assert form.status_code == 200
    assert directive(form_policy, "frame-ancestors") == (
        f"{EMBEDDING_ORIGIN} https://www.example.com"
    )
    assert directive(form_policy, "form-action") == "'self' https://www.example.com"
    assert "x-frame-options" not in form.headers
    assert 'name="answer.Budget"' in form.text
    assert 'name="answer.Timeline"' in form.text
    assert 'value="Partner site"' in form.text
    assert login.status_code == 200
    assert directive(login_policy, "frame-ancestors") == "'none'"
    assert directive(login_policy, "form-action") == "'self'"
    assert login.headers["x-frame-options"] == "DENY"


async def test_form_without_origins_refuses_framing(server: WebServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        form = await client.get("/forms/lead")

    policy = form.headers["content-security-policy"]
    assert directive(policy, "frame-ancestors") == "'none'"
    assert form.headers["x-frame-options"] == "DENY"


async def test_submission_redirects_with_owner(server: WebServer) -> None:
    owner = await make_user("sales_rep")
    await save_settings(settings_form(default_owner=str(owner.id)), None)
    email = f"{uuid.uuid4().hex[:10]}@visitor.example"

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        created = await client.post(
            "/forms/lead",
            data={"email": email, "name": "Vi Sitor", "answer.Budget": "10k"},
        )
        honeypot = await client.post(
            "/forms/lead", data={"email": f"bot-{email}", "website": "spam"}
        )
        invalid = await client.post("/forms/lead", data={"email": "not an email"})

    lead = await Lead.select().where(Lead.email == email).first()
    bots = await Lead.count().where(Lead.email == f"bot-{email}")
    assert created.status_code == 303
    assert created.headers["location"] == REDIRECT_URL
    assert lead is not None
    assert lead["owner"] == owner.id
    assert lead["source"] == "Partner site"
    assert msgspec.json.decode(lead["answers"]) == {"Budget": "10k"}
    assert honeypot.status_code == 303
    assert honeypot.headers["location"] == REDIRECT_URL
    assert bots == 0
    assert invalid.status_code == 422
    assert 'data-field="email"' in invalid.text


async def test_default_team_member_with_fewest_leads() -> None:
    team = await make_team()
    busy = await make_user("sales_rep", team=team)
    free = await make_user("sales_rep", team=team)
    await create_lead({"name": unique("Open lead")}, busy.id)
    await save_settings(settings_form(default_team=str(team)), None)

    owner = await form_owner(await load_settings())

    assert owner == free.id


async def test_admin_page_shows_embed_code(server: WebServer) -> None:
    await save_settings(settings_form(), None)
    admin = await make_user("admin")
    manager = await make_user("sales_manager")
    admin_session = Session(server.url)
    manager_session = Session(server.url)
    try:
        await admin_session.sign_in(admin.email)
        await manager_session.sign_in(manager.email)
        page = await admin_session.get("/admin/web-form")
        rejected = await admin_session.post(
            "/admin/web-form",
            settings_form(redirect_url="javascript:alert(1)"),
            htmx=False,
        )
        saved = await admin_session.post(
            "/admin/web-form", settings_form(source="Fair stand"), htmx=False
        )
        manager_page = await manager_session.get("/admin/web-form")
        manager_post = await manager_session.post(
            "/admin/web-form", settings_form(), htmx=False
        )
    finally:
        await admin_session.close()
        await manager_session.close()

    form_url = f"{PUBLIC_URL}/forms/lead"
    assert page.status_code == 200
    assert f'&lt;iframe src="{form_url}"' in page.text
    assert f"&lt;form method=&#34;post&#34; action=&#34;{form_url}&#34;&gt;" in (
        page.text
    )
    assert "answer.Budget" in page.text
    assert 'name="website"' not in page.text
    assert rejected.status_code == 422
    assert 'data-field="redirect_url"' in rejected.text
    assert saved.status_code in (302, 303)
    assert (await load_settings()).source == "Fair stand"
    assert manager_page.status_code == 403
    assert manager_post.status_code == 403
    assert (await load_settings()).source == "Fair stand"


def visitor() -> dict[str, str]:
    """Return headers from a new client address, clear of the rate limit.

    The addresses come from 198.18.0.0/15, which other tests do not use.
    """
    number = uuid.uuid4().int
    second, third, fourth = 18 + number % 2, number // 2 % 256, number // 512 % 254 + 1
    return {"x-forwarded-for": f"198.{second}.{third}.{fourth}"}


# A submission's changes from a valid one, the rejected field and a part of
# the message that names it and its value.
NOT_THIS_FORM = [
    pytest.param(
        {"source": "Elsewhere"},
        "source",
        "Source &#39;Elsewhere&#39; is not a source of this form",
        id="unknown-source",
    ),
    pytest.param(
        {"answer.Salary": "High"},
        "answer.Salary",
        "Question &#39;Salary&#39; is not one of this form&#39;s questions.",
        id="unknown-question",
    ),
    pytest.param(
        {"answer.Budget ": "10k"},
        "answer.Budget ",
        "Question &#39;Budget &#39; is not one of this form&#39;s questions.",
        id="question-with-space",
    ),
    pytest.param(
        {"name": ["Vi", "Sitor"]},
        "name",
        "Name is sent more than once, but takes one value.",
        id="repeated-field",
    ),
]


@pytest.mark.parametrize(("changes", "field", "message"), NOT_THIS_FORM)
async def test_submission_outside_form_stores_nothing(
    server: WebServer, changes: dict[str, str | list[str]], field: str, message: str
) -> None:
    await save_settings(settings_form(redirect_url=""), None)
    email = f"{uuid.uuid4().hex[:10]}@outside.example"
    submitted = {
        "email": email,
        "name": "Vi Sitor",
        "source": "Partner site",
        "answer.Budget": "10k",
        **changes,
    }

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/forms/lead", data=submitted, headers=visitor())

    assert response.status_code == 400
    assert f'data-field="{field}"' in response.text
    assert message in response.text
    # The form shown again is this form, keeping what the visitor typed.
    assert 'name="source" value="Partner site"' in response.text
    assert f'value="{email}"' in response.text
    assert not await Lead.exists().where(Lead.email == email)


async def test_submission_may_name_other_source(server: WebServer) -> None:
    await save_settings(settings_form(redirect_url=""), None)
    email = f"{uuid.uuid4().hex[:10]}@newsletter.example"

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        form = await client.get("/forms/lead", params={"source": "Newsletter"})
        sent = await client.post(
            "/forms/lead",
            data={"email": email, "source": "Newsletter", "answer.Timeline": "Q3"},
            headers=visitor(),
        )
        unnamed = await client.post(
            "/forms/lead", data={"email": f"plain-{email}"}, headers=visitor()
        )

    lead = await Lead.select().where(Lead.email == email).first()
    plain = await Lead.select().where(Lead.email == f"plain-{email}").first()
    assert form.status_code == 200
    assert 'name="source" value="Newsletter"' in form.text
    assert sent.status_code == 200
    assert lead is not None
    assert lead["source"] == "Newsletter"
    assert msgspec.json.decode(lead["answers"]) == {"Timeline": "Q3"}
    assert unnamed.status_code == 200
    assert plain is not None
    assert plain["source"] == "Partner site"


async def test_form_page_rejects_unknown_source(server: WebServer) -> None:
    await save_settings(settings_form(), None)

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        form = await client.get("/forms/lead", params={"source": "Elsewhere"})

    assert form.status_code == 400
    assert 'data-field="source"' in form.text
    assert "Source &#39;Elsewhere&#39; is not a source of this form" in form.text
    assert 'name="source" value="Partner site"' in form.text
