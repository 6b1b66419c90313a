"""CSV exports of the boards and lists, with their filters and the viewer's rights.

Each export is recorded in the audit log with its filters and row count
before the first row is sent, so an export that the audit log cannot record
sends nothing. The count is of the rows that matched at that moment; rows
changed while the file streams may make the file differ from it slightly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromQuery
from litestar.response import Stream

from app.access.guards import permission
from app.audit.service import record_export
from app.auth.service import CurrentUser
from app.boards import BoardFilter
from app.deals.listing import DealListFilter
from app.exports.csvtext import BYTE_ORDER_MARK, content_disposition, encode_rows
from app.exports.queries import (
    CHUNK_ROWS,
    KINDS,
    ExportFilter,
    count_rows,
    export_chunks,
    visible_columns,
)
from app.leads.queries import LeadFilter
from app.pagination import parse_search, reject_unknown_query

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
FILE_NAMES = {
    "deal": "deals",
    "ticket": "tickets",
    "account": "accounts",
    "contact": "contacts",
    "lead": "leads",
    "lead_board": "lead-board",
    "campaign": "campaigns",
}


class ExportController(Controller):
    path = "/exports"
    before_request = staticmethod(reject_unknown_query)

    @get("/deals.csv", opt=permission("deal", "read"))
    async def deals(
        self,
        request: UserRequest,
        pipeline: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        stage: FromQuery[str | None] = None,
        close_from: FromQuery[str | None] = None,
        close_to: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> Stream:
        """Export the deals of a pipeline board or of the deal list's filters."""
        deal_filter = DealListFilter.parse(
            parse_search(q),
            pipeline,
            stage,
            person,
            team,
            close_from,
            close_to,
            status,
        )
        deal_filter.check_visible(request.user.access)
        return await export_response(request, "deal", ExportFilter(deals=deal_filter))

    @get("/tickets.csv", opt=permission("ticket", "read"))
    async def tickets(
        self,
        request: UserRequest,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Stream:
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(request.user.access, "ticket", "assignee")
        export_filter = ExportFilter(board=board_filter)
        return await export_response(request, "ticket", export_filter)

    @get("/accounts.csv", opt=permission("account", "read"))
    async def accounts(
        self, request: UserRequest, q: FromQuery[str | None] = None
    ) -> Stream:
        export_filter = ExportFilter(search=parse_search(q))
        return await export_response(request, "account", export_filter)

    @get("/contacts.csv", opt=permission("contact", "read"))
    async def contacts(
        self, request: UserRequest, q: FromQuery[str | None] = None
    ) -> Stream:
        export_filter = ExportFilter(search=parse_search(q))
        return await export_response(request, "contact", export_filter)

    @get("/leads.csv", opt=permission("lead", "read"))
    async def leads(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
        owner: FromQuery[str | None] = None,
    ) -> Stream:
        lead_filter = LeadFilter.parse(parse_search(q), status, source, owner, None)
        return await export_response(request, "lead", ExportFilter(leads=lead_filter))

    @get("/lead-board.csv", opt=permission("lead", "read"))
    async def lead_board(self, request: UserRequest) -> Stream:
        return await export_response(request, "lead_board", ExportFilter())

    @get("/campaigns.csv", opt=permission("campaign", "read"))
    async def campaigns(self, request: UserRequest) -> Stream:
        return await export_response(request, "campaign", ExportFilter())


async def export_response(
    request: UserRequest, export: str, export_filter: ExportFilter
) -> Stream:
    """Audit the export named ``export`` (a key of KINDS) and stream its CSV."""
    user = request.user
    access = user.access
    total = await count_rows(export, export_filter, access)
    details = export_filter.as_details()
    if export == "lead_board":
        details["view"] = "board"
    audit_id = await record_export(
        user.id,
        KINDS[export].object_type,
        total,
        file_format="csv",
        filters=details,
    )
    logger.info(
        "export started user_id=%s export=%s rows=%d filters=%s audit_id=%s",
        user.id,
        export,
        total,
        details,
        audit_id,
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Stream(
        stream_csv(export, export_filter, request),
        media_type="text/csv",  # Litestar adds "; charset=utf-8"
        headers={
            "Content-Disposition": content_disposition(
                f"{FILE_NAMES[export]}-{stamp}.csv"
            )
        },
    )


async def stream_csv(
    export: str,
    export_filter: ExportFilter,
    request: UserRequest,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncIterator[bytes]:
    """Yield the header line, then one encoded chunk of rows at a time."""
    access = request.user.access
    columns = visible_columns(export, access)
    yield BYTE_ORDER_MARK.encode() + encode_rows([[item.name for item in columns]])
    sent = 0
    try:
        async for chunk in export_chunks(export, export_filter, access, chunk_rows):
            sent += len(chunk)
            yield encode_rows(chunk)
    except Exception:
        logger.exception(
            "export failed user_id=%s export=%s rows_sent=%d",
            request.user.id,
            export,
            sent,
        )
        raise
    logger.info(
        "export finished user_id=%s export=%s rows_sent=%d",
        request.user.id,
        export,
        sent,
    )
