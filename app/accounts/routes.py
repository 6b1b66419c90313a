"""The account list and account pages."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from app.accounts import queries
from app.pagination import PageRequest, parse_search, parse_sibling_pages


class AccountController(Controller):
    path = "/accounts"

    @get("/")
    async def account_list(
        self,
        q: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        search = parse_search(q)
        paging = PageRequest.parse(page, size, path="/accounts", keep={"q": search})
        accounts = await queries.search_accounts(search, paging)
        return Template(
            "accounts/list.html", context={"accounts": accounts, "search": search}
        )

    @get("/{account_id:int}")
    async def account_page(
        self,
        account_id: FromPath[int],
        subsidiaries_page: FromQuery[str | None] = None,
        contacts_page: FromQuery[str | None] = None,
        deals_page: FromQuery[str | None] = None,
        tickets_page: FromQuery[str | None] = None,
    ) -> Template:
        paging = parse_sibling_pages(
            f"/accounts/{account_id}",
            {
                "subsidiaries_page": subsidiaries_page,
                "contacts_page": contacts_page,
                "deals_page": deals_page,
                "tickets_page": tickets_page,
            },
        )
        loaded = await queries.load_account_page(
            account_id,
            subsidiaries=paging["subsidiaries_page"],
            contacts=paging["contacts_page"],
            deals=paging["deals_page"],
            tickets=paging["tickets_page"],
        )
        return Template(
            "accounts/detail.html",
            context={
                "account": loaded.account,
                "subsidiaries": loaded.subsidiaries,
                "contacts": loaded.contacts,
                "deals": loaded.deals,
                "tickets": loaded.tickets,
            },
        )
