"""The SLA check: warn about and breach due SLA clocks."""

from __future__ import annotations

import logging
from typing import Any

from app.sla.breaches import detect_breaches

logger = logging.getLogger(__name__)


async def check_sla_clocks(ctx: dict[str, Any]) -> dict[str, int]:
    """Send "sla.warning" and "sla.breached" for the clocks that became due."""
    counts = await detect_breaches()
    if any(counts.values()):
        logger.info(
            "sla clocks checked job_id=%s warnings=%d breaches=%d failed=%d",
            ctx.get("job_id"),
            counts["sla.warning"],
            counts["sla.breached"],
            counts["failed"],
        )
    return counts
