"""Reading SLA clocks: the countdown on ticket cards and the SLA report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.access.permissions import SYSTEM, Access
from app.access.scopes import scope_sql
from app.pagination import Page, PageRequest
from app.sla.tables import SlaClock

# Joined into the ticket card and page queries: the running clock due soonest.
CARD_COLUMNS = """
    sla.metric AS sla_metric, sla.due_at AS sla_due_at,
    sla.warn_at AS sla_warn_at, sla.breached_at AS sla_breached_at,
    sla.paused_at AS sla_paused_at
"""
CARD_JOIN = """
    LEFT JOIN LATERAL (
        SELECT sc.metric, sc.due_at, sc.warn_at, sc.breached_at, ts.paused_at
        FROM sla_clock sc JOIN ticket_sla ts ON ts.ticket = sc.ticket
        WHERE sc.ticket = t.id AND sc.stopped_at IS NULL
        ORDER BY sc.due_at, sc.id LIMIT 1
    ) sla ON true
"""

# Takes the range four times (for met, breached and the two WHERE tests),
# then the viewer's scope condition, then LIMIT and OFFSET.
REPORT = """
    SELECT coalesce(tm.name, '') AS team_name, t.team AS team_id,
           s.priority, c.metric,
           count(*) FILTER (
               WHERE c.met AND c.stopped_at >= {} AND c.stopped_at < {}
           ) AS met,
           count(*) FILTER (
               WHERE c.breached_at >= {} AND c.breached_at < {}
           ) AS breached,
           count(*) OVER () AS total_rows
    FROM sla_clock c
    JOIN ticket_sla s ON s.ticket = c.ticket
    JOIN ticket t ON t.id = c.ticket
    LEFT JOIN team tm ON tm.id = t.team
    WHERE ((c.stopped_at >= {} AND c.stopped_at < {})
       OR (c.breached_at >= {} AND c.breached_at < {}))
      AND SCOPE
    GROUP BY tm.name, t.team, s.priority, c.metric
    ORDER BY tm.name NULLS LAST, t.team, s.priority, c.metric
    LIMIT {} OFFSET {}
"""


async def sla_report(
    start: dt.datetime,
    end: dt.datetime,
    paging: PageRequest,
    access: Access = SYSTEM,
) -> Page[dict[str, Any]]:
    """Count targets met and breached from ``start`` until ``end``.

    A target counts as met when its clock stopped in time within the range,
    and as breached when its due time passed unmet within the range, whether
    the cron noticed it then or the clock stopped late. Rows are per team,
    priority and metric, over the tickets ``access`` may read.
    """
    args: list[object] = [start, end] * 4
    scope = scope_sql(access, "ticket", "t", args)
    args.extend([paging.size, paging.offset])
    rows = await SlaClock.raw(REPORT.replace("SCOPE", scope), *args)
    total = rows[0]["total_rows"] if rows else 0
    if not rows and paging.offset:
        # Past the end: the window count is unknown without rows.
        count_args: list[object] = [start, end] * 4
        count_scope = scope_sql(access, "ticket", "t", count_args)
        count_args.extend([1, 0])
        first = await SlaClock.raw(REPORT.replace("SCOPE", count_scope), *count_args)
        total = first[0]["total_rows"] if first else 0
    return Page(rows=rows, total=total, paging=paging)
