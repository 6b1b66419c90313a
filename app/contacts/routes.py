"""The contact list and contact pages."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Template

from app.access.guards import permission
from app.access.permissions import Access
from app.access.scopes import permits_record
from app.auth.service import CurrentUser
from app.contacts import queries
from app.contacts.service import (
    EDITABLE,
    MAX_LENGTHS,
    parse_contact_field,
    update_contact,
)
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


class ContactController(Controller):
    path = "/contacts"

    @get("/", opt=permission("contact", "read"), before_request=reject_unknown_query)
    async def contact_list(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        search = parse_search(q)
        paging = PageRequest.parse(page, size, path="/contacts", keep={"q": search})
        contacts = await queries.search_contacts(search, paging, request.user.access)
        return Template(
            "contacts/list.html",
            context={
                "contacts": contacts,
                "search": search,
                "access": request.user.access,
            },
        )

    @get("/{contact_id:int}", opt=permission("contact", "read"))
    async def contact_page(
        self,
        request: UserRequest,
        contact_id: RecordId,
        deals_page: FromQuery[str | None] = None,
        tickets_page: FromQuery[str | None] = None,
    ) -> Template:
        paging = parse_sibling_pages(
            f"/contacts/{contact_id}",
            {"deals_page": deals_page, "tickets_page": tickets_page},
        )
        live = await live_context([f"contact:{contact_id}"])
        loaded = await queries.load_contact_page(
            contact_id,
            deals=paging["deals_page"],
            tickets=paging["tickets_page"],
            access=request.user.access,
        )
        return Template(
            "contacts/detail.html",
            context={
                "contact": loaded.contact,
                "form": await contact_form_context(loaded.contact, request.user.access),
                "access": request.user.access,
                "deals": loaded.deals,
                "tickets": loaded.tickets,
                **await delete_context("contact", loaded.contact, request.user.access),
                "origin": await origin_leads(
                    "contact", contact_id, request.user.access
                ),
                **live,
            },
        )

    @get("/{contact_id:int}/form", opt=permission("contact", "edit"))
    async def contact_form(
        self, request: UserRequest, contact_id: RecordId
    ) -> Template:
        return await CONTACT_FORM.render(contact_id, request.user.access)

    @post("/{contact_id:int}", opt=permission("contact", "edit"))
    async def edit_contact(
        self, request: UserRequest, contact_id: RecordId, data: FormData
    ) -> Template:
        return await CONTACT_FORM.save(
            contact_id, data, request.user.id, request.user.access
        )


async def contact_form_context(
    contact: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build the contact form's context; a viewer who may not edit gets none."""
    if not permits_record(access, "contact", "edit", contact):
        return {"contact": contact, "editable": False}
    fields = form_fields(access, "contact", EDITABLE)
    return {
        "contact": contact,
        "editable": True,
        **fields,
        **edit_form_state(contact, fields["writable"], typed, conflicts, error, saved),
        "fields": fields["writable"],
        "max_lengths": MAX_LENGTHS,
        **await people_choices(),
    }


CONTACT_FORM = EditForm(
    record_type="contact",
    template="contacts/_form.html",
    editable=EDITABLE,
    parse=parse_contact_field,
    update=update_contact,
    load=queries.get_contact,
    context=contact_form_context,
)
