"""Sign-in, CSRF, error pages and form errors, through a real web server."""

from __future__ import annotations

from app.deals.tables import Deal
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.factories import PASSWORD, make_deal, make_pipeline, make_ticket, make_user
from tests.live_frames import next_event


async def test_pages_redirect_to_sign_in(server) -> None:
    session = Session(server.url)

    for path in (
        "/pipelines",
        "/tickets",
        "/accounts",
        "/contacts",
        "/import",
        "/deals/1",
    ):
        response = await session.get(path, headers={"accept": "text/html"})
        assert response.status_code == 302, path
        assert response.headers["location"].startswith("/login"), path
    await session.close()


async def test_wrong_password_and_unknown_email_look_alike(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.get("/login")

    wrong = await session.http.post(
        "/login",
        data={
            "email": user.email,
            "password": "nope",
            "_csrf_token": session.csrf_token,
        },
    )
    unknown = await session.http.post(
        "/login",
        data={
            "email": "nobody@test.example",
            "password": PASSWORD,
            "_csrf_token": session.csrf_token,
        },
    )

    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect email or password." in wrong.text
    assert wrong.text.replace(user.email, "") == unknown.text.replace(
        "nobody@test.example", ""
    )
    await session.close()


async def test_post_without_csrf_token_is_rejected(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.http.post(
        f"/deals/{deal_id}/stage",
        data={"stage": pipeline["stages"][1], "from_stage": pipeline["stages"][0]},
    )

    assert response.status_code == 403
    stored = await Deal.select(Deal.stage).where(Deal.id == deal_id).first()
    assert stored["stage"] == pipeline["stages"][0]
    await session.close()


async def test_sign_out_ends_the_session(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    cookie = session.http.cookies.get("session")

    await session.post("/logout", {}, htmx=False)
    session.http.cookies.set("session", cookie)
    response = await session.get("/pipelines", headers={"accept": "text/html"})

    assert response.status_code == 302
    await session.close()


async def test_unknown_route_gets_not_found_page(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    missing = await session.get("/no/such/page", headers={"accept": "text/html"})
    missing_deal = await session.get("/deals/99999999", headers={"accept": "text/html"})

    assert missing.status_code == 404
    assert "Not found" in missing.text
    assert "Traceback" not in missing.text
    assert missing_deal.status_code == 404
    assert "Deal 99999999 was not found." in missing_deal.text
    await session.close()


async def test_invalid_amount_names_field_and_value(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}",
        {
            "amount": "12abc",
            "base_amount": "100.00",
            "name": "Renamed",
            "base_name": "x",
        },
    )

    assert response.status_code == 422
    assert "Amount &#39;12abc&#39; is not an amount such as 1200" in response.text
    stored = (
        await Deal.select(Deal.amount, Deal.name, Deal.version)
        .where(Deal.id == deal_id)
        .first()
    )
    assert str(stored["amount"]) == "100.00"
    assert stored["version"] == 1
    await session.close()


async def test_repeated_form_field_rejected(server) -> None:
    user = await make_user()
    deal_id = await make_deal(await make_pipeline(), amount="100", name="Once")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}",
        {"base_name": "Once", "name": ["Twice", "Thrice"], "base_amount": "100.00"},
    )

    assert response.status_code == 422
    assert "Name must be given at most once" in response.text
    stored = await Deal.select(Deal.name).where(Deal.id == deal_id).first()
    assert stored["name"] == "Once"
    await session.close()


async def test_edits_to_different_fields_merge(server) -> None:
    first_user, second_user = await make_user(), await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100", name="Original")
    first, second = Session(server.url), Session(server.url)
    await first.sign_in(first_user.email)
    await second.sign_in(second_user.email)

    # Both forms were rendered from the same version.
    base = {"base_name": "Original", "base_amount": "100.00"}
    renamed = await first.post(
        f"/deals/{deal_id}", {**base, "name": "Renamed", "amount": "100.00"}
    )
    repriced = await second.post(
        f"/deals/{deal_id}", {**base, "name": "Original", "amount": "250"}
    )

    assert renamed.status_code == repriced.status_code == 200
    stored = (
        await Deal.select(Deal.name, Deal.amount, Deal.version)
        .where(Deal.id == deal_id)
        .first()
    )
    assert stored["name"] == "Renamed"
    assert str(stored["amount"]) == "250.00"
    assert stored["version"] == 3
    await first.close()
    await second.close()


async def test_edit_to_changed_field_shows_conflict(server) -> None:
    first_user = await make_user(name="Dana First")
    second_user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100")
    first, second = Session(server.url), Session(server.url)
    await first.sign_in(first_user.email)
    await second.sign_in(second_user.email)

    await first.post(f"/deals/{deal_id}", {"base_amount": "100.00", "amount": "300"})
    conflicted = await second.post(
        f"/deals/{deal_id}", {"base_amount": "100.00", "amount": "500"}
    )

    assert conflicted.status_code == 200
    assert 'data-conflict="amount"' in conflicted.text
    assert "Dana First set it to" in conflicted.text
    assert 'name="amount" value="500"' in conflicted.text
    # The conflicting field was the only change, so nothing else was saved.
    assert "These changes were not saved:" in conflicted.text
    assert "other changes were saved" not in conflicted.text
    stored = await Deal.select(Deal.amount).where(Deal.id == deal_id).first()
    assert str(stored["amount"]) == "300.00"

    # Saving again from the conflict panel keeps the second user's value.
    kept = await second.post(
        f"/deals/{deal_id}", {"base_amount": "300.00", "amount": "500"}
    )
    assert "data-conflict" not in kept.text
    stored = await Deal.select(Deal.amount).where(Deal.id == deal_id).first()
    assert str(stored["amount"]) == "500.00"
    await first.close()
    await second.close()


async def test_conflict_panel_names_other_saved_changes(server) -> None:
    first_user = await make_user(name="Dana First")
    second_user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100", name="Before")
    first, second = Session(server.url), Session(server.url)
    await first.sign_in(first_user.email)
    await second.sign_in(second_user.email)

    await first.post(f"/deals/{deal_id}", {"base_amount": "100.00", "amount": "300"})
    conflicted = await second.post(
        f"/deals/{deal_id}",
        {
            "base_amount": "100.00",
            "amount": "500",
            "base_name": "Before",
            "name": "After",
        },
    )

    assert conflicted.status_code == 200
    assert 'data-conflict="amount"' in conflicted.text
    assert 'data-conflict="name"' not in conflicted.text
    assert "Your other changes were saved. These were not:" in conflicted.text
    assert "These changes were not saved:" not in conflicted.text
    stored = await Deal.select(Deal.name, Deal.amount).where(Deal.id == deal_id).first()
    assert stored["name"] == "After"
    assert str(stored["amount"]) == "300.00"
    await first.close()
    await second.close()


async def test_ticket_edit_reaches_ticket_page_and_board(server) -> None:
    user = await make_user()
    ticket_id = await make_ticket("open", priority="low")
    session = Session(server.url)
    await session.sign_in(user.email)
    page_socket = await session.live(f"topic=ticket:{ticket_id}")
    board_socket = await session.live("topic=tickets")

    response = await session.post(
        f"/tickets/{ticket_id}",
        {
            "base_priority": "low",
            "priority": "urgent",
            "base_assignee": "",
            "assignee": str(user.id),
        },
    )
    assert response.status_code == 200

    summary = await next_event(page_socket)
    card = await next_event(board_socket)
    assert f'id="ticket-{ticket_id}-summary"' in summary
    assert "Urgent" in summary
    assert user.name in summary
    assert f'id="ticket-{ticket_id}"' in card
    assert "priority-urgent" in card
    stored = (
        await Ticket.select(Ticket.priority, Ticket.assignee)
        .where(Ticket.id == ticket_id)
        .first()
    )
    assert stored == {"priority": "urgent", "assignee": user.id}
    await page_socket.close()
    await board_socket.close()
    await session.close()


async def test_unknown_ticket_status_is_refused(server) -> None:
    user = await make_user()
    ticket_id = await make_ticket("new")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/tickets/{ticket_id}/fields/status", {"status": "lost", "from_status": "new"}
    )

    assert response.status_code == 409
    assert "Status &#39;lost&#39; must be one of" in response.text
    assert "afterbegin:#status-new-cards" in response.text
    await session.close()


async def test_blank_comment_returns_the_form_with_its_reason(server) -> None:
    user = await make_user()
    ticket_id = await make_ticket()
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(f"/tickets/{ticket_id}/comments", {"body": "   "})

    assert response.status_code == 422
    assert '<form class="comment-form"' in response.text
    assert "The comment must not be empty." in response.text
    await session.close()
