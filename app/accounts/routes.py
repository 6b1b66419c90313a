"""The account list and account pages."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Template

from app.access.guards import permission
from app.access.permissions import Access
from app.access.scopes import permits_record
from app.accounts import queries
from app.accounts.service import (
    EDITABLE,
    MAX_LENGTHS,
    TIERS,
    parse_account_field,
    update_account,
)
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.leads.conversion import origin_leads
from app.merge import Conflict
from app.pagination import (
    PageRequest,
    parse_search,
    parse_sibling_pages,
    reject_unknown_query,
)
from app.people import people_choices
from app.web.deletion import delete_context
from app.web.forms import EditForm, FormData, RecordId, edit_form_state, form_fields
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]


class AccountController(Controller):
    path = "/accounts"

    @get("/", opt=permission("account", "read"), before_request=reject_unknown_query)
    async def account_list(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        search = parse_search(q)
        paging = PageRequest.parse(page, size, path="/accounts", keep={"q": search})
        accounts = await queries.search_accounts(search, paging, request.user.access)
        return Template(
            "accounts/list.html",
            context={
                "accounts": accounts,
                "search": search,
                "access": request.user.access,
            },
        )

    @get("/{account_id:int}", opt=permission("account", "read"))
    async def account_page(
        self,
        request: UserRequest,
        account_id: RecordId,
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
        live = await live_context([f"account:{account_id}"])
        loaded = await queries.load_account_page(
            account_id,
            subsidiaries=paging["subsidiaries_page"],
            contacts=paging["contacts_page"],
            deals=paging["deals_page"],
            tickets=paging["tickets_page"],
            access=request.user.access,
        )
        return Template(
            "accounts/detail.html",
            context={
                "account": loaded.account,
                "form": await account_form_context(loaded.account, request.user.access),
                "access": request.user.access,
                "subsidiaries": loaded.subsidiaries,
                "contacts": loaded.contacts,
                "deals": loaded.deals,
                "tickets": loaded.tickets,
                **await delete_context("account", loaded.account, request.user.access),
                "origin": await origin_leads(
                    "account", account_id, request.user.access
                ),
                **live,
            },
        )

    @get("/{account_id:int}/form", opt=permission("account", "edit"))
    async def account_form(
        self, request: UserRequest, account_id: RecordId
    ) -> Template:
        return await ACCOUNT_FORM.render(account_id, request.user.access)

    @post("/{account_id:int}", opt=permission("account", "edit"))
    async def edit_account(
        self, request: UserRequest, account_id: RecordId, data: FormData
    ) -> Template:
        return await ACCOUNT_FORM.save(
            account_id, data, request.user.id, request.user.access
        )


async def account_form_context(
    account: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build the account form's context; a viewer who may not edit gets none."""
    if not permits_record(access, "account", "edit", account):
        return {"account": account, "editable": False}
    fields = form_fields(access, "account", EDITABLE)
    return {
        "account": account,
        "editable": True,
        **fields,
        **edit_form_state(account, fields["writable"], typed, conflicts, error, saved),
        "fields": fields["writable"],
        "max_lengths": MAX_LENGTHS,
        "tiers": TIERS,
        **await people_choices(),
    }


ACCOUNT_FORM = EditForm(
    record_type="account",
    template="accounts/_form.html",
    editable=EDITABLE,
    parse=parse_account_field,
    update=update_account,
    load=queries.get_account,
    context=account_form_context,
)
