from app.assignment.service import Candidate, least_busy, round_robin


def agents(*open_counts: int) -> list[Candidate]:
    return [
        Candidate(user_id=10 * (index + 1), away=False, capacity=0, open_count=count)
        for index, count in enumerate(open_counts)
    ]


def test_round_robin_takes_next_after_pointer() -> None:
    assert round_robin(agents(0, 0, 0), 20).user_id == 30


def test_round_robin_wraps_around() -> None:
    assert round_robin(agents(0, 0, 0), 30).user_id == 10


def test_round_robin_starts_with_lowest_id() -> None:
    assert round_robin(agents(0, 0, 0), None).user_id == 10


def test_round_robin_skips_missing_pointer_user() -> None:
    # The last agent picked (25) has since left the candidates.
    assert round_robin(agents(0, 0, 0), 25).user_id == 30


def test_least_busy_takes_fewest_open() -> None:
    assert least_busy(agents(3, 1, 2), None).user_id == 20


def test_least_busy_ties_go_round_robin() -> None:
    assert least_busy(agents(1, 0, 0), 20).user_id == 30
    assert least_busy(agents(1, 0, 0), 30).user_id == 20


def test_capacity_zero_has_no_limit() -> None:
    unlimited = Candidate(user_id=1, away=False, capacity=0, open_count=500)
    full = Candidate(user_id=2, away=False, capacity=3, open_count=3)

    assert unlimited.has_room
    assert not full.has_room
