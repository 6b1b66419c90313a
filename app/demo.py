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


def credentials_file() -> Path:
    return Path(os.environ.get("CRM_DATA_DIR", ".data")) / "demo-users.txt"


async def load_demo() -> list[str]:
    """Import the demo set and create the demo users once; return sign-in lines.

    The passwords are generated on the first load and kept in the data
    folder, so later starts print the same ones.
    """
    path = credentials_file()
    if not await User.exists().where(User.email == DEMO_USERS[0][0]):
        report = await run_import("hubspot", sorted(DEMO_DIR.glob("*.csv")))
        logger.info("demo data loaded: %s", report.summary())

        lines = []
        for email, name, role in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            await create_user(email, name, role, password)
            lines.append(f"{role:<14} {email:<28} {password}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    if not path.exists():
        return ["Demo users exist, but their passwords are not in this data folder."]
    return ["Demo sign-in (role, email, password):", *path.read_text().splitlines()]
