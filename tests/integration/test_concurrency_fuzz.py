"""Thirty people edit the same three deals and two tickets at once.

Each simulated agent uses the pages' own requests: the edit form posted with
the base values it last saw, board moves with the stage it last saw, and
ticket status changes from a board card. Every request and response is
logged. The event log shows, field by field and in commit order, what was
applied. The checks compare it with the request log. No change may
overwrite a value its editor had not seen, or be applied without being
accepted. Every change that was not applied must have been rejected with a
conflict, unless the record already contained that value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.deals.service import EDITABLE as DEAL_FIELDS
from app.deals.service import parse_deal_field
from app.deals.tables import Deal
from app.events.tables import Event
from app.tickets.service import EDITABLE as TICKET_FIELDS
from app.tickets.service import parse_ticket_field
from app.tickets.tables import PRIORITIES, STATUSES, Ticket
from tests.browserless import Session
from tests.chaos_client import conflict_fields, form_values, is_card, parse_html
from tests.factories import (
    make_account,
    make_contact,
    make_deal,
    make_pipeline,
    make_product,
    make_ticket,
    make_user,
)
from tests.servers import web_server

pytestmark = pytest.mark.timeout(240)

SEED = 77
AGENTS = 30
OPERATIONS_PER_AGENT = 12
# How often an agent reloads a form before acting. Otherwise it acts on
# what it saw last, which other agents may have changed since.
REFRESH_CHANCE = 0.3
# How often an agent whose edit was rejected saves its own value again.
KEEP_MINE_CHANCE = 0.3
# Slack when placing a transaction's start in a request's time window. Both
# times come from this machine's clock, so it only covers rounding.
CLOCK_SLACK = 0.001  # seconds
PARSERS = {"deal": parse_deal_field, "ticket": parse_ticket_field}
FIELDS = {"deal": DEAL_FIELDS, "ticket": TICKET_FIELDS}


@pytest.fixture(scope="module")
def servers():
    with web_server() as first, web_server() as second:
        yield first, second


def canonical(record_type: str, name: str, value: Any) -> Any:
    """Return a value as the service compares it, from a form, the event log
    (JSON) or a database row."""
    if value is None:
        return None
    return PARSERS[record_type](name, str(value))


@dataclass
class Request:
    """One request an agent sent, what it meant to change, and the response."""

    agent: int
    user_id: int
    kind: str  # "load", "form", "move" or "quick"
    record_type: str
    record_id: int
    path: str
    data: dict[str, str]
    started: float
    ended: float = 0.0
    status: int = 0
    # The fields the agent changed, each with [base, new] as raw form text.
    intended: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    saved: bool = False
    body: str = ""

    @property
    def record(self) -> tuple[str, int]:
        return (self.record_type, self.record_id)

    @property
    def changes(self) -> bool:
        return self.kind != "load"

    @property
    def accepted(self) -> bool:
        return self.status in (200, 204)


@dataclass
class Agent:
    number: int
    user_id: int
    session: Session
    rng: random.Random
    log: list[Request]
    stages: list[int]
    owners: list[int]
    references: dict[str, list[int]]
    # The last form and the last card value (stage or status) seen per record.
    forms: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    cards: dict[tuple[str, int], str] = field(default_factory=dict)

    async def send(self, request: Request) -> Request:
        if request.kind == "load":
            response = await self.session.get(request.path)
        else:
            response = await self.session.post(request.path, request.data)
        request.ended = time.time()
        request.status = response.status_code
        request.body = response.text
        self.log.append(request)
        return request

    def request(
        self, kind: str, record: tuple[str, int], path: str, data: dict[str, str]
    ) -> Request:
        return Request(
            agent=self.number,
            user_id=self.user_id,
            kind=kind,
            record_type=record[0],
            record_id=record[1],
            path=path,
            data=data,
            started=time.time(),
        )

    async def load(self, record: tuple[str, int]) -> None:
        record_type, record_id = record
        path = f"/{record_type}s/{record_id}/form"
        done = await self.send(self.request("load", record, path, {}))
        assert done.status == 200, f"{path} answered {done.status}"
        self.remember_form(record, done.body)

    def remember_form(self, record: tuple[str, int], html: str) -> None:
        values = form_values(html)
        self.forms[record] = values
        column = "stage" if record[0] == "deal" else "status"
        self.cards[record] = values[f"base_{column}"]

    async def act(self, deals: list[int], tickets: list[int], turn: int) -> None:
        kind = self.rng.choices(
            ["deal_form", "deal_move", "ticket_quick", "ticket_form"],
            weights=[40, 25, 20, 15],
        )[0]
        if kind.startswith("deal"):
            record = ("deal", self.rng.choice(deals))
        else:
            record = ("ticket", self.rng.choice(tickets))
        if record not in self.forms or self.rng.random() < REFRESH_CHANCE:
            await self.load(record)

        if kind == "deal_form":
            await self.edit(record, self.deal_values(turn))
        elif kind == "ticket_form":
            await self.edit(record, self.ticket_values(turn))
        elif kind == "deal_move":
            await self.move(record, "stage", [str(stage) for stage in self.stages])
        else:
            await self.move(record, "status", list(STATUSES))

    def deal_values(self, turn: int) -> dict[str, str]:
        choices = {
            "name": f"Deal edited by agent {self.number} turn {turn}",
            "amount": str(self.rng.randrange(1, 2000) * 50),
            "close_date": (
                dt.date(2026, 1, 1) + dt.timedelta(days=self.rng.randrange(365))
            ).isoformat(),
            "engage_date": (
                dt.date(2025, 6, 1) + dt.timedelta(days=self.rng.randrange(365))
            ).isoformat(),
            "owner": str(self.rng.choice(self.owners)),
            "stage": str(self.rng.choice(self.stages)),
        }
        # Account, contact and product come from the records the test made,
        # as a picker offers only stored ones.
        for name, ids in self.references.items():
            choices[name] = str(self.rng.choice(ids))
        names = self.rng.sample(sorted(choices), k=self.rng.choice([1, 1, 2]))
        return {name: choices[name] for name in names}

    def ticket_values(self, turn: int) -> dict[str, str]:
        choices = {
            "subject": f"Ticket edited by agent {self.number} turn {turn}",
            "priority": self.rng.choice(PRIORITIES),
            "status": self.rng.choice(STATUSES),
            "type": self.rng.choice(["question", "incident", "problem", "task"]),
        }
        names = self.rng.sample(sorted(choices), k=self.rng.choice([1, 1, 2]))
        return {name: choices[name] for name in names}

    async def edit(self, record: tuple[str, int], changes: dict[str, str]) -> None:
        """Post the whole form as last seen, with ``changes`` typed into it."""
        data = {**self.forms[record], **changes}
        request = await self.post_form(record, data)
        if request.conflicts and self.rng.random() < KEEP_MINE_CHANCE:
            # "Save again to keep yours": the form came back with the agent's
            # values in the rejected fields and the stored ones as base.
            await self.post_form(record, dict(self.forms[record]))

    async def post_form(self, record: tuple[str, int], data: dict[str, str]) -> Request:
        record_type, record_id = record
        request = self.request("form", record, f"/{record_type}s/{record_id}", data)
        for name in FIELDS[record_type]:
            base, new = data.get(f"base_{name}", ""), data.get(name, "")
            if canonical(record_type, name, base) != canonical(record_type, name, new):
                request.intended[name] = [base, new]
        done = await self.send(request)
        if done.status == 200:
            done.conflicts = conflict_fields(done.body)
            done.saved = 'class="form-ok"' in done.body
            self.remember_form(record, done.body)
        return done

    async def move(
        self, record: tuple[str, int], column: str, values: list[str]
    ) -> None:
        """Move a board card from the column the agent last saw it in."""
        record_type, record_id = record
        seen = self.cards[record]
        target = self.rng.choice([value for value in values if value != seen])
        if record_type == "deal":
            kind, path = "move", f"/deals/{record_id}/stage"
        else:
            kind, path = "quick", f"/tickets/{record_id}/fields/status"
        data = {column: target, f"from_{column}": seen}
        request = self.request(kind, record, path, data)
        request.intended[column] = [seen, target]

        done = await self.send(request)
        if done.status == 204:
            self.cards[record] = target
        elif done.status == 409:
            done.conflicts = [column]
            card = parse_html(done.body).find(
                lambda node: is_card(node) and node.id == f"{record_type}-{record_id}"
            )
            assert card is not None, f"rejected move without its card: {done.body}"
            self.cards[record] = card.attrs[f"data-{column}"]


@dataclass
class Applied:
    """One field changed by one event, with the request it came from."""

    event_id: int
    seq: int
    actor_id: int | None
    record: tuple[str, int]
    name: str
    before: Any
    after: Any
    created: float
    request: Request | None = None


async def record_values(deals: list[int], tickets: list[int]) -> dict[tuple, Any]:
    """Return the stored value of each editable field of the records."""
    values: dict[tuple, Any] = {}
    for row in await Deal.select().where(Deal.id.is_in(deals)):
        for name in DEAL_FIELDS:
            values[("deal", row["id"], name)] = canonical("deal", name, row[name])
    for row in await Ticket.select().where(Ticket.id.is_in(tickets)):
        for name in TICKET_FIELDS:
            values[("ticket", row["id"], name)] = canonical("ticket", name, row[name])
    return values


async def applied_changes(deals: list[int], tickets: list[int]) -> list[Applied]:
    """Read every field change of the records from the event log, in each
    record's commit order."""
    streams = [f"deal:{deal_id}" for deal_id in deals]
    streams += [f"ticket:{ticket_id}" for ticket_id in tickets]
    rows = await Event.raw(
        "SELECT e.id, e.actor_id, e.record_type, e.record_id, e.kind, "
        "e.changes::text AS changes, extract(epoch FROM e.created_at) AS created, "
        "es.stream, es.seq FROM event e JOIN event_stream es ON es.event = e.id "
        "WHERE es.stream = ANY({}) ORDER BY es.stream, es.seq",
        streams,
    )
    changes = []
    for row in rows:
        record_type = row["record_type"]
        for name, (before, after) in msgspec.json.decode(row["changes"]).items():
            changes.append(
                Applied(
                    event_id=row["id"],
                    seq=row["seq"],
                    actor_id=row["actor_id"],
                    record=(record_type, row["record_id"]),
                    name=name,
                    before=canonical(record_type, name, before),
                    after=canonical(record_type, name, after),
                    created=float(row["created"]),
                )
            )
    return changes


def match_requests(changes: list[Applied], log: list[Request]) -> list[str]:
    """Link each applied change to the request whose handling wrote it.

    An agent sends one request at a time, so the transaction of a change
    started inside the time window of exactly one request of its user.
    """
    problems = []
    by_user: defaultdict[int, list[Request]] = defaultdict(list)
    for request in log:
        if request.changes:
            by_user[request.user_id].append(request)
    for change in changes:
        candidates = [
            request
            for request in by_user.get(change.actor_id or 0, [])
            if request.record == change.record
            and request.started - CLOCK_SLACK
            <= change.created
            <= request.ended + CLOCK_SLACK
        ]
        if len(candidates) != 1:
            problems.append(
                f"event {change.event_id} changed {change.record} {change.name} "
                f"and matches {len(candidates)} requests of user {change.actor_id}"
            )
            continue
        change.request = candidates[0]
    return problems


def values_during(chain: list[Applied], initial: Any, request: Request) -> set[Any]:
    """Return the values a field may have held while ``request`` was handled.

    A change committed after its transaction started and before its request
    got a response. So it may have been in place during the request if it
    started before the request ended, and may not yet have been if its
    response came after the request started.
    """
    possible = set()
    value = initial
    for position in range(len(chain) + 1):
        if position > 0:
            previous = chain[position - 1]
            if previous.created > request.ended + CLOCK_SLACK:
                break
            value = previous.after
        if position < len(chain):
            following = chain[position]
            responded = following.request.ended if following.request else math.inf
            if responded < request.started - CLOCK_SLACK:
                continue
        possible.add(value)
    return possible


def check_history(
    log: list[Request],
    changes: list[Applied],
    initial: dict[tuple, Any],
    final: dict[tuple, Any],
) -> tuple[Counter[str], list[str]]:
    """Compare the request log with the event log, and count outcomes and problems."""
    counts: Counter[str] = Counter()
    problems = match_requests(changes, log)
    counts["unmatched_events"] = len(problems)

    chains: defaultdict[tuple, list[Applied]] = defaultdict(list)
    for change in changes:
        chains[(*change.record, change.name)].append(change)
    applied_by_request: defaultdict[int, dict[str, Applied]] = defaultdict(dict)

    for key, chain in chains.items():
        ids = [change.event_id for change in chain]
        if ids != sorted(ids):
            counts["commit_order_breaks"] += 1
            problems.append(f"{key} events out of id order: {ids}")
        value = initial[key]
        for position, change in enumerate(chain):
            if change.before != value:
                counts["broken_chains"] += 1
                problems.append(
                    f"{key} event {change.event_id} changed {change.before!r}, "
                    f"but the field held {value!r}"
                )
            value = change.after
            if position + 1 < len(chain):
                counts["superseded"] += 1
            elif final[key] == change.after:
                counts["in_final_state"] += 1
            else:
                counts["final_mismatches"] += 1
                problems.append(
                    f"{key} ends as {final[key]!r}, but its last change set "
                    f"{change.after!r}"
                )

            request = change.request
            if request is None:
                continue
            applied_by_request[id(request)][change.name] = change
            record_type = request.record_type
            base, new = request.intended.get(change.name, (None, None))
            if (
                not request.accepted
                or change.name in request.conflicts
                or change.name not in request.intended
                or canonical(record_type, change.name, new) != change.after
            ):
                counts["applied_not_accepted"] += 1
                problems.append(
                    f"{key} event {change.event_id} applied {change.after!r} for "
                    f"a request answered {request.status} with conflicts "
                    f"{request.conflicts} that meant {request.intended}"
                )
            elif canonical(record_type, change.name, base) != change.before:
                counts["silent_overwrites"] += 1
                problems.append(
                    f"{key} event {change.event_id} overwrote {change.before!r}, "
                    f"but the editor had seen {base!r}"
                )
            else:
                counts["accepted"] += 1

    for request in log:
        if not request.changes:
            continue
        counts["requests"] += 1
        if request.status not in (200, 204, 409):
            counts["errors"] += 1
            problems.append(
                f"{request.kind} {request.path} answered {request.status}: "
                f"{request.body[:200]}"
            )
            continue
        applied = applied_by_request.get(id(request), {})
        # A form with conflicts shows them instead of "Saved.", and states
        # that the other changes were saved.
        expected_saved = bool(applied) and not request.conflicts
        if request.kind == "form" and request.saved != expected_saved:
            counts["saved_mismatches"] += 1
            problems.append(
                f"{request.path} said saved={request.saved} but applied "
                f"{sorted(applied)}"
            )
        for name, (base, new) in request.intended.items():
            if name in applied:
                continue
            key = (request.record_type, request.record_id, name)
            possible = values_during(chains.get(key, []), initial[key], request)
            expected_value = canonical(request.record_type, name, new)
            seen = canonical(request.record_type, name, base)
            if name in request.conflicts:
                counts["conflicts"] += 1
                if not possible - {expected_value, seen}:
                    counts["needless_conflicts"] += 1
                    problems.append(
                        f"{request.path} rejected {name}={new!r} from {base!r}, "
                        f"but the field could only hold {possible}"
                    )
            elif expected_value in possible:
                counts["already_held"] += 1
            else:
                counts["dropped"] += 1
                problems.append(
                    f"{request.path} answered {request.status} without a "
                    f"conflict, but {name}={new!r} was never applied; the field "
                    f"held {possible}"
                )
    return counts, problems


def write_log(path: Path, log: list[Request], changes: list[Applied]) -> None:
    with path.open("w") as output:
        for request in sorted(log, key=lambda item: item.started):
            output.write(json.dumps(asdict(request)) + "\n")
        for change in changes:
            entry = asdict(change) | {"request": None}
            if change.request is not None:
                entry["request"] = [change.request.agent, change.request.started]
            output.write(json.dumps(entry, default=str) + "\n")


async def reference_choices() -> dict[str, list[int]]:
    """Make two accounts, contacts and products for the agents to pick from."""
    return {
        "account": [await make_account(), await make_account()],
        "contact": [await make_contact(), await make_contact()],
        "product": [await make_product(), await make_product()],
    }


async def run_agent(
    agent: Agent, deals: list[int], tickets: list[int], start: asyncio.Event
) -> None:
    await start.wait()
    for turn in range(OPERATIONS_PER_AGENT):
        await agent.act(deals, tickets, turn)
        # A short think time spreads the agents' requests.
        await asyncio.sleep(agent.rng.uniform(0, 0.05))


async def test_concurrent_edits_lose_nothing(servers, tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    pipeline = await make_pipeline()
    deals = [
        await make_deal(pipeline, stage_index=number, amount=str(1000 * (number + 1)))
        for number in range(3)
    ]
    tickets = [await make_ticket("new"), await make_ticket("open")]
    users = [await make_user() for _ in range(AGENTS)]
    owners = [user.id for user in users[:4]]
    references = await reference_choices()

    log: list[Request] = []
    agents = []
    for number, user in enumerate(users):
        session = Session(servers[number % 2].url)
        await session.sign_in(user.email)
        agents.append(
            Agent(
                number=number,
                user_id=user.id,
                session=session,
                rng=random.Random(rng.random()),
                log=log,
                stages=pipeline["stages"],
                owners=owners,
                references=references,
            )
        )

    initial = await record_values(deals, tickets)
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(run_agent(agent, deals, tickets, start)) for agent in agents
    ]
    started = time.monotonic()
    start.set()
    try:
        await asyncio.gather(*tasks)
    finally:
        for agent in agents:
            await agent.session.close()
    edited = time.monotonic() - started

    final = await record_values(deals, tickets)
    changes = await applied_changes(deals, tickets)
    counts, problems = check_history(log, changes, initial, final)
    log_path = tmp_path / "requests.jsonl"
    write_log(log_path, log, changes)

    print()
    print(
        f"fuzz: agents={AGENTS} requests={len(log)} changing={counts['requests']} "
        f"accepted={counts['accepted']} conflicts={counts['conflicts']} "
        f"superseded={counts['superseded']} in_final_state={counts['in_final_state']} "
        f"already_held={counts['already_held']}"
    )
    print(
        f"fuzz: silent_overwrites={counts['silent_overwrites']} "
        f"dropped={counts['dropped']} "
        f"applied_not_accepted={counts['applied_not_accepted']} "
        f"unmatched_events={counts['unmatched_events']} "
        f"needless_conflicts={counts['needless_conflicts']} "
        f"broken_chains={counts['broken_chains']} "
        f"final_mismatches={counts['final_mismatches']} "
        f"saved_mismatches={counts['saved_mismatches']} errors={counts['errors']}"
    )
    print(
        f"fuzz: edited {edited:.1f}s, total {time.monotonic() - began:.1f}s, "
        f"log {log_path}"
    )
    for problem in problems[:20]:
        print(f"fuzz: {problem}")

    assert counts["silent_overwrites"] == 0
    assert counts["dropped"] == 0
    assert counts["applied_not_accepted"] == 0
    assert counts["unmatched_events"] == 0
    assert counts["needless_conflicts"] == 0
    assert counts["broken_chains"] == 0
    assert counts["final_mismatches"] == 0
    assert counts["commit_order_breaks"] == 0
    assert counts["saved_mismatches"] == 0
    assert counts["errors"] == 0
    assert counts["accepted"] > 0
    assert counts["conflicts"] > 0, "the agents never edited the same field at once"
