"""Measure what the SQL prefilter saves when a rule reads every ticket.

Run with ``python -m bench.workflows [--rounds N]``. The run creates a
database of its own, imports the support tickets dataset and times
``count_timers``, the read behind the timer counts shown to an admin before
a time-based rule is saved. Each rule is counted with the prefilter and with a filter
that passes every record, as planning read before the prefilter existed.
Both variants run in the same rounds, alternating, so that the ratio holds
on a noisy machine.

Results go to ``bench/results/workflows-<UTC timestamp>.json``. The
database is dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from bench import database
from bench.machine import describe_machine, git_commit, load_average
from bench.progress import say
from bench.run import redis_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TICKETS_FILE = Path("support_tickets") / "customer_support_tickets.csv"


def condition(field: str, op: str, value: str) -> dict[str, str]:
    return {"type": "condition", "field": field, "op": op, "value": value}


def follow_up(name: str, *conditions: dict[str, str]) -> dict[str, Any]:
    """Return a ticket rule that fires a day after creation when all
    ``conditions`` hold."""
    return {
        "name": name,
        "definition": {
            "trigger": {
                "kind": "time_after",
                "after": "created_at",
                "delay_minutes": 1440,
            },
            "conditions": {"type": "group", "match": "all", "items": list(conditions)},
            "actions": [{"kind": "add_tag", "tag": "followed-up"}],
        },
    }


# From narrow to wide. The last rule's condition is one the prefilter cannot
# translate, so it shows what the prefilter costs when it cannot help.
RULES = (
    follow_up(
        "urgent refund requests",
        condition("priority", "equals", "urgent"),
        condition("subject", "contains", "refund"),
    ),
    follow_up("urgent tickets", condition("priority", "equals", "urgent")),
    follow_up("open tickets", condition("status", "not_equals", "solved")),
    follow_up("tagged tickets", condition("tags", "contains", "vip")),
)


def tickets_file() -> Path:
    datasets = Path(os.environ.get("CRM_DATASETS", ROOT.parent / "shared" / "datasets"))
    return datasets / TICKETS_FILE


async def fill(path: Path) -> int:
    from app.tickets.tables import Ticket

    say(f"importing {path.name}")
    await database.import_dataset("tickets", path)
    return await Ticket.count()


async def time_count(definition: Any, prefiltered: bool) -> tuple[float, int]:
    """Return the seconds one count takes and the timers it counted."""
    from app.workflows import planning
    from app.workflows.prefilter import MATCH_ALL, candidate_filter

    planning.candidate_filter = (
        candidate_filter if prefiltered else (lambda *_: MATCH_ALL)  # type: ignore[assignment]
    )
    try:
        started = time.perf_counter()
        counts = await planning.count_timers("ticket", definition)
        return time.perf_counter() - started, counts.matching
    finally:
        planning.candidate_filter = candidate_filter


async def measure(rounds: int) -> list[dict[str, Any]]:
    from app.workflows.prefilter import candidate_filter
    from app.workflows.records import RECORD_TYPES
    from app.workflows.schema import parse_definition

    figures = []
    for rule in RULES:
        definition = parse_definition("ticket", rule["definition"])
        narrowed = not candidate_filter(
            RECORD_TYPES["ticket"], definition.conditions
        ).matches_all
        seconds: dict[bool, list[float]] = {True: [], False: []}
        matching: dict[bool, int] = {}
        for round_number in range(rounds):
            say(f"rule '{rule['name']}', round {round_number + 1} of {rounds}")
            # Alternate which variant goes first, so that caches favour neither.
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for prefiltered in order:
                took, counted = await time_count(definition, prefiltered)
                seconds[prefiltered].append(took)
                matching[prefiltered] = counted
        if matching[True] != matching[False]:
            raise RuntimeError(
                f"rule '{rule['name']}' counted {matching[True]} timers with the "
                f"prefilter and {matching[False]} without it"
            )
        with_filter = statistics.median(seconds[True])
        without_filter = statistics.median(seconds[False])
        figures.append(
            {
                "rule": rule["name"],
                "conditions": rule["definition"]["conditions"]["items"],
                "prefilter_narrows": narrowed,
                "matching": matching[True],
                "median_seconds_prefiltered": round(with_filter, 4),
                "median_seconds_full_read": round(without_filter, 4),
                "speedup": round(without_filter / with_filter, 2),
                "seconds_prefiltered": [round(s, 4) for s in seconds[True]],
                "seconds_full_read": [round(s, 4) for s in seconds[False]],
            }
        )
    return figures


async def run(rounds: int) -> Path:
    path = tickets_file()
    if not path.is_file():
        raise SystemExit(
            f"The tickets dataset {path} was not found. Set CRM_DATASETS to the "
            f"folder that contains {TICKETS_FILE}."
        )
    name = f"bench_workflows_{secrets.token_hex(4)}"
    admin_url = database.server_url()
    # Describing the machine reaches both servers, so a server that is down
    # stops the run before it creates anything.
    machine = await describe_machine(admin_url, redis_url())
    started = dt.datetime.now(dt.UTC)
    await database.create_database(name, admin_url)
    # The engine reads DATABASE_URL when app.piccolo_conf is first imported,
    # which the imports inside the functions below do.
    os.environ["DATABASE_URL"] = database.database_url(name, admin_url)
    try:
        say(f"migrating database {name}")
        await database.migrate()

        from app.db import close_pool, start_pool
        from app.piccolo_conf import DB

        # Without a pool, Piccolo opens a connection for every query.
        await start_pool(DB, min_size=1, max_size=4)
        try:
            tickets = await fill(path)
            say(f"{tickets} tickets loaded; timing {len(RULES)} rules")
            figures = await measure(rounds)
        finally:
            await close_pool(DB)
    finally:
        await database.drop_database(name, admin_url)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"workflows-{started:%Y%m%dT%H%M%SZ}.json"
    results = {
        "benchmark": "workflow-prefilter",
        "started_at": started.isoformat(),
        "commit": git_commit(ROOT),
        "machine": machine,
        "load_average_after": load_average(),
        "tickets": tickets,
        "rounds": rounds,
        "rules": figures,
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    for figure in figures:
        print(
            f"{figure['rule']:<24} {figure['matching']:>6} timers  "
            f"prefiltered {figure['median_seconds_prefiltered']:.3f}s  "
            f"full read {figure['median_seconds_full_read']:.3f}s  "
            f"x{figure['speedup']}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workflows",
        description="Time rule counts with and without the SQL prefilter.",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed counts per rule and variant"
    )
    arguments = parser.parse_args()
    if arguments.rounds < 1:
        sys.exit(f"--rounds must be at least 1, not {arguments.rounds}")

    async def guarded() -> Path:
        # SIGTERM cancels the run as Ctrl-C does, so the database is dropped.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(arguments.rounds)

    try:
        out = asyncio.run(guarded())
    except KeyboardInterrupt:
        say("the run was interrupted; its database was dropped")
        raise SystemExit(130) from None
    except asyncio.CancelledError:
        say("the run was stopped by SIGTERM; its database was dropped")
        raise SystemExit(143) from None
    except (OSError, asyncpg.PostgresError, RedisError) as error:
        raise SystemExit(f"the run failed: {error}") from None
    print(f"results written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
