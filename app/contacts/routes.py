"""The contact list and contact pages."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from app.contacts import queries
from app.pagination import PageRequest, parse_search, parse_sibling_pages


class ContactController(Controller):
    path = "/contacts"

    @get("/")
    async def contact_list(
        self,
        q: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        search = parse_search(q)
        paging = PageRequest.parse(page, size, path="/contacts", keep={"q": search})
        contacts = await queries.search_contacts(search, paging)
        return Template(
            "contacts/list.html", context={"contacts": contacts, "search": search}
        )

    @get("/{contact_id:int}")
    async def contact_page(
        self,
        contact_id: FromPath[int],
        deals_page: FromQuery[str | None] = None,
        tickets_page: FromQuery[str | None] = None,
    ) -> Template:
        paging = parse_sibling_pages(
            f"/contacts/{contact_id}",
            {"deals_page": deals_page, "tickets_page": tickets_page},
        )
        loaded = await queries.load_contact_page(
            contact_id, deals=paging["deals_page"], tickets=paging["tickets_page"]
        )
        return Template(
            "contacts/detail.html",
            context={
                "contact": loaded.contact,
                "deals": loaded.deals,
                "tickets": loaded.tickets,
            },
        )
