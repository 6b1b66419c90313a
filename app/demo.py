"""Demo data for a first start: the bundled HubSpot-shaped set and three users."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from app.auth.service import create_user
from app.auth.tables import User
from app.imports.service import run_import

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent / "demo" / "hubspot"
DEMO_USERS = (
    ("admin@switchboard.example", "Ada Admin", "admin"),
    ("rep@switchboard.example", "Sam Sales", "sales_rep"),
    ("agent@switchboard.example", "Alex Agent", "support_agent"),
)


# Team "Sales" owns every demo deal and "Support" every demo ticket. The
# imported owners join the team of their records, and the demo rep and
# agent get every fourth deal and ticket, so each role has work to see.
FORM_TEAMS = """
WITH sales AS (
    INSERT INTO team (name, region) VALUES ('Sales', '')
    ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id
), support AS (
    INSERT INTO team (name, region) VALUES ('Support', '')
    ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id
), deals AS (
    UPDATE deal SET team = (SELECT id FROM sales),
        owner = CASE WHEN deal.id % 4 = 0 THEN {} ELSE deal.owner END
    RETURNING owner
), tickets AS (
    UPDATE ticket SET team = (SELECT id FROM support),
        assignee = CASE WHEN ticket.id % 4 = 0 THEN {} ELSE ticket.assignee END
    RETURNING assignee
), members AS (
    SELECT (SELECT id FROM sales) AS team, owner AS member FROM deals
    UNION SELECT (SELECT id FROM sales), {}
    UNION SELECT (SELECT id FROM support), assignee FROM tickets
    UNION SELECT (SELECT id FROM support), {}
), joined AS (
    INSERT INTO team_member (team, "user")
    SELECT DISTINCT team, member FROM members WHERE member IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING team, "user"
)
UPDATE app_user SET team = joined.team
FROM joined WHERE app_user.id = joined."user" AND app_user.team IS NULL
"""


async def form_teams(rep_id: int, agent_id: int) -> None:
    await User.raw(FORM_TEAMS, rep_id, agent_id, rep_id, agent_id)
    logger.info("demo teams formed rep_id=%s agent_id=%s", rep_id, agent_id)


def demo_files() -> list[Path]:
    return sorted(DEMO_DIR.glob("*.csv"))


def credentials_file() -> Path:
    return Path(os.environ.get("CRM_DATA_DIR", ".data")) / "demo-users.txt"


async def load_demo() -> list[str]:
    """Import the demo set and create the demo users once; return sign-in lines.

    The passwords are generated on the first load and kept in the data
    folder, so later starts print the same ones.
    """
    path = credentials_file()
    if not await User.exists().where(User.email == DEMO_USERS[0][0]):
        report = await run_import("hubspot", demo_files())
        logger.info("demo data loaded: %s", report.summary())

        lines = []
        users = {}
        for email, name, role in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            users[email] = (await create_user(email, name, role, password)).id
            lines.append(f"{role:<14} {email:<28} {password}")
        await form_teams(users[DEMO_USERS[1][0]], users[DEMO_USERS[2][0]])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    if not path.exists():
        return ["Demo users exist, but their passwords are not in this data folder."]
    return ["Demo sign-in (role, email, password):", *path.read_text().splitlines()]
