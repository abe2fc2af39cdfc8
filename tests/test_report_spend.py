"""A budget's spend over time: the ledger's activity query and the pure series replayed from it.

Tests that take `ledger` run on SQLite and on PostgreSQL (`ledger_backends.py`); the series
tests build an `Activity` by hand.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from costguard.errors import LedgerError
from costguard.ledger import Activity, Ledger, Run, SpendEntry, open_ledger
from costguard.money import plain
from costguard.report.spend import MAX_POINTS, SpendSeries, run_lifetime, spend_series

MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
APR_1 = datetime(2026, 4, 1, tzinfo=UTC)
FEB_20 = datetime(2026, 2, 20, tzinfo=UTC)


def day(n: int, hour: int = 0) -> datetime:
    """A moment in March 2026."""
    return datetime(2026, 3, n, hour, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    """A fresh ledger (SQLite file, or PostgreSQL database) with a $100 monthly `default`."""
    with open_ledger(ledger_location) as opened:
        opened.set_budget(usd=Decimal("100"), period="month", at=FEB_20)
        yield opened


def admit(ledger: Ledger, run_id: str, amount: str, at: datetime, **kwargs: Any) -> None:
    """Admit `run_id` for `amount` USD at `at` (owner `ana` unless given); it must fit."""
    kwargs.setdefault("owner", "ana")
    assert ledger.admit(run_id, Decimal(amount), at=at, **kwargs).admitted


def spend(ledger: Ledger, run_id: str, part: str, amount: str, at: datetime) -> None:
    """Record `amount` USD for part `part` of `run_id` at `at`."""
    ledger.record_spend(run_id, part, Decimal(amount), at=at)


# --- the ledger query ----------------------------------------------------------------------


def test_activity_holds_the_budgets_runs_that_reserved_or_spent_in_the_window(
    ledger: Ledger,
) -> None:
    """A run open at some moment of the window or with spend recorded in it is in; runs closed
    before it, admitted after it, refused, rehearsals and other budgets' runs are not."""
    admit(ledger, "closed-in-feb", "5", FEB_20)
    ledger.settle("closed-in-feb", status="completed", at=FEB_20 + timedelta(days=1))
    admit(ledger, "open-since-feb", "20", FEB_20)
    spend(ledger, "open-since-feb", "p1", "3", FEB_20 + timedelta(hours=1))
    admit(ledger, "closed-late-spend", "4", FEB_20)
    ledger.settle("closed-late-spend", status="completed", at=FEB_20 + timedelta(days=2))
    spend(ledger, "closed-late-spend", "p1", "1.5", day(3))
    admit(ledger, "closed-at-start", "4", FEB_20)
    ledger.settle("closed-at-start", status="completed", at=MAR_1)
    admit(ledger, "march", "10", day(2), owner="bob")
    ledger.settle("march", status="completed", at=day(4))
    admit(ledger, "april", "10", APR_1)
    assert not ledger.admit("refused", Decimal("1000"), owner="ana", at=day(5)).admitted
    admit(ledger, "rehearsal", "10", day(5), rehearsal=True)
    admit(ledger, "other", "10", day(5), budget="team")
    admit(ledger, "none", "10", day(5), budget=None)
    found = ledger.activity("default", since=MAR_1, until=APR_1)
    assert [r.run_id for r in found.runs] == ["closed-late-spend", "open-since-feb", "march"]
    assert (found.budget, found.since, found.until) == ("default", MAR_1, APR_1)
    assert found.spent_before == {"open-since-feb": Decimal("3")}
    assert found.spend == (SpendEntry(day(3), "closed-late-spend", "p1", Decimal("1.5")),)


def test_activity_adds_the_run_asked_for_whatever_its_budget_or_rehearsal(ledger: Ledger) -> None:
    """The report's run is in the activity even as a rehearsal or another budget's run, with
    its spend in the window."""
    admit(ledger, "real", "10", day(2))
    admit(ledger, "rehearsal", "10", day(2), rehearsal=True)
    spend(ledger, "rehearsal", "p1", "2", day(3))
    admit(ledger, "elsewhere", "10", day(2), budget="team")
    found = ledger.activity("default", since=MAR_1, until=APR_1, run_id="rehearsal")
    assert [(r.run_id, r.rehearsal) for r in found.runs] == [("real", False), ("rehearsal", True)]
    assert [e.run_id for e in found.spend] == ["rehearsal"]
    other = ledger.activity("default", since=MAR_1, until=APR_1, run_id="elsewhere")
    assert [r.run_id for r in other.runs] == ["elsewhere", "real"]


def test_activity_spend_is_the_windows_in_the_order_recorded(ledger: Ledger) -> None:
    """Spend rows are those recorded in [since, until), ordered by moment, run and part; the
    runs carry all their spend as `Ledger.run` gives it."""
    admit(ledger, "b", "50", FEB_20)
    admit(ledger, "a", "50", day(1))
    spend(ledger, "b", "p0", "1", FEB_20)
    spend(ledger, "b", "p2", "2", day(4))
    spend(ledger, "a", "p9", "3", day(4))
    spend(ledger, "b", "p1", "4", day(2))
    spend(ledger, "a", "late", "5", APR_1)
    found = ledger.activity("default", since=MAR_1, until=APR_1)
    assert [(e.recorded, e.run_id, e.part_id, e.amount) for e in found.spend] == [
        (day(2), "b", "p1", Decimal("4")),
        (day(4), "a", "p9", Decimal("3")),
        (day(4), "b", "p2", Decimal("2")),
    ]
    assert found.spent_before == {"b": Decimal("1")}
    assert {r.run_id: r.spent for r in found.runs} == {"a": Decimal("8"), "b": Decimal("7")}
    assert found.runs == tuple(ledger.run(r.run_id) for r in found.runs)


def test_activity_without_a_budget_is_the_run_alone_over_all_time(ledger: Ledger) -> None:
    """With no budget and no window the activity is the run asked for and all its spend."""
    admit(ledger, "capped", "5", day(2), budget=None, max_usd=Decimal("6"))
    admit(ledger, "real", "10", day(2))
    spend(ledger, "capped", "p1", "1", day(2, 5))
    spend(ledger, "capped", "p2", "2", APR_1)
    found = ledger.activity(None, since=None, until=None, run_id="capped")
    assert [r.run_id for r in found.runs] == ["capped"]
    assert [e.amount for e in found.spend] == [Decimal("1"), Decimal("2")]
    assert (found.since, found.until, found.spent_before) == (None, None, {})
    assert ledger.activity(None, since=None, until=None).runs == ()


def test_activity_refuses_a_naive_or_reversed_window(ledger: Ledger) -> None:
    """since/until must be timezone-aware and in order."""
    with pytest.raises(LedgerError, match="since must be a timezone-aware datetime"):
        ledger.activity("default", since=datetime(2026, 3, 1), until=APR_1)  # noqa: DTZ001
    with pytest.raises(LedgerError, match="is before since"):
        ledger.activity("default", since=APR_1, until=MAR_1)


def test_activity_moments_are_utc_whatever_zone_was_asked(ledger: Ledger) -> None:
    """A window given in another zone is the same instants; moments come back in UTC."""
    admit(ledger, "r1", "10", day(2))
    spend(ledger, "r1", "p1", "1", day(2, 1))
    paris = timezone(timedelta(hours=1))
    found = ledger.activity("default", since=MAR_1.astimezone(paris), until=APR_1)
    assert found.since == MAR_1
    assert found.since.tzinfo == UTC
    assert found.spend[0].recorded == day(2, 1)
    assert found.spend[0].recorded.utcoffset() == timedelta(0)


# --- the series at the end equals the ledger's status --------------------------------------


def series_now(ledger: Ledger, now: datetime, run_id: str | None = None) -> SpendSeries:
    """The current window's series up to `now`, as the report asks for it."""
    status = ledger.status("default", at=now)
    assert status.period_start is not None
    found = ledger.activity("default", since=status.period_start, until=now, run_id=run_id)
    return spend_series(
        found,
        start=status.period_start,
        end=now,
        limit=status.limit,
        run_id=run_id,
        window_end=status.period_end,
    )


def assert_matches_status(ledger: Ledger, now: datetime) -> None:
    """The series' figures at `now` are `Ledger.status(at=now)`'s, owner by owner."""
    status = ledger.status("default", at=now)
    series = series_now(ledger, now)
    assert (series.spent, series.reserved, series.remaining) == (
        status.spent,
        status.reserved,
        status.remaining,
    )
    shown = {o.owner: (o.spent, o.reserved) for o in series.owners if o.counted}
    assert shown == {o.owner: (o.spent, o.reserved) for o in status.owners}


def test_the_series_ends_where_the_ledgers_status_stands(ledger: Ledger) -> None:
    """Runs across the month boundary, late spend, spend past the estimate, releases,
    rehearsals: at each moment the series' end figures are the status at that moment."""
    steps = [
        lambda: admit(ledger, "long", "30", FEB_20, owner="ci"),
        lambda: spend(ledger, "long", "p1", "12", FEB_20 + timedelta(days=2)),
        lambda: admit(ledger, "a", "20", day(2), owner="ana"),
        lambda: spend(ledger, "a", "p1", "7.25", day(2, 3)),
        lambda: spend(ledger, "long", "p2", "5", day(3)),
        lambda: admit(ledger, "rehearsal", "40", day(3, 2), owner="ana", rehearsal=True),
        lambda: spend(ledger, "rehearsal", "p1", "40", day(3, 3)),
        lambda: admit(ledger, "b", "10", day(4), owner="bob"),
        lambda: spend(ledger, "b", "p1", "11.5", day(4, 2)),
        lambda: ledger.settle("a", status="completed", at=day(5)),
        lambda: spend(ledger, "a", "late", "0.001", day(6)),
        lambda: admit(ledger, "c", "3", day(7), owner="bob"),
        lambda: ledger.release("c", at=day(7, 1), reason="declined"),
        lambda: ledger.settle("long", status="completed", at=day(8)),
    ]
    for i, step in enumerate(steps):
        step()
        assert_matches_status(ledger, day(9 + i))


def test_random_histories_end_where_the_status_stands(ledger: Ledger) -> None:
    """Random admissions, spend and closes by three owners: after each, the series' end is
    the status."""
    rng = random.Random(16)
    now = day(1)
    open_runs: list[str] = []
    closed: list[str] = []
    for i in range(30):
        now += timedelta(minutes=rng.randint(1, 300))
        action = rng.random()
        if action < 0.3 or not open_runs:
            run_id = f"r{i}"
            estimate = Decimal(rng.randint(1, 400)) / 100
            if ledger.admit(run_id, estimate, owner=rng.choice("xyz"), at=now).admitted:
                open_runs.append(run_id)
        elif action < 0.8:
            run_id = rng.choice(open_runs + closed)
            spend(ledger, run_id, f"p{i}", str(Decimal(rng.randint(0, 300)) / 100), now)
        else:
            run_id = open_runs.pop(rng.randrange(len(open_runs)))
            ledger.settle(run_id, status="completed", at=now)
            closed.append(run_id)
        assert_matches_status(ledger, now + timedelta(seconds=1))


def test_the_reports_rehearsal_is_shown_beside_the_real_figures(ledger: Ledger) -> None:
    """A rehearsal's own spend and reservation are in the series, never in its totals."""
    admit(ledger, "real", "10", day(2))
    spend(ledger, "real", "p1", "4", day(2, 1))
    admit(ledger, "rehearsal", "30", day(3), rehearsal=True)
    spend(ledger, "rehearsal", "p1", "5", day(3, 1))
    series = series_now(ledger, day(4), run_id="rehearsal")
    status = ledger.status("default", at=day(4))
    assert (series.spent, series.reserved) == (status.spent, status.reserved)
    assert (series.run_spent, series.run_reserved) == (Decimal("5"), Decimal("25"))
    assert (series.rehearsal, series.counted) == (True, False)
    assert [o.owner for o in series.owners] == ["ana"]


# --- the series itself (pure) --------------------------------------------------------------


def run(
    run_id: str,
    estimate: str,
    created: datetime,
    settled: datetime | None = None,
    **kwargs: Any,
) -> Run:
    """A run as the ledger gives it (only what the series reads matters)."""
    values: dict[str, Any] = {
        "run_id": run_id,
        "budget": "default",
        "estimate": Decimal(estimate),
        "max_usd": None,
        "reserved": Decimal(0),
        "spent": Decimal(0),
        "parts": 0,
        "status": "open" if settled is None else "completed",
        "owner": "ana",
        "created": created,
        "settled": settled,
        "reason": "",
        "close_reason": "",
        "meta": {},
        "remaining_at_admission": None,
    }
    values.update(kwargs)
    return Run(**values)


def activity(
    runs: list[Run],
    entries: list[tuple[datetime, str, str]],
    *,
    budget: str | None = "default",
    before: dict[str, str] | None = None,
    since: datetime | None = MAR_1,
    until: datetime | None = APR_1,
) -> Activity:
    """An activity of `runs` with spend `(moment, run id, amount)`."""
    spend_rows = [
        SpendEntry(at, run_id, f"p{i}", Decimal(amount))
        for i, (at, run_id, amount) in enumerate(entries)
    ]
    return Activity(
        budget=budget,
        since=since,
        until=until,
        runs=tuple(runs),
        spend=tuple(sorted(spend_rows, key=lambda e: (e.recorded, e.run_id, e.part_id))),
        spent_before={k: Decimal(v) for k, v in (before or {}).items()},
    )


def figures(series: SpendSeries) -> list[tuple[datetime, str, str, str, str]]:
    """Each point as (moment, spent, reserved, run spent, run reserved), amounts as text."""
    return [
        (p.at, plain(p.spent), plain(p.reserved), plain(p.run_spent), plain(p.run_reserved))
        for p in series.points
    ]


def test_admission_reserves_spend_moves_to_spent_and_closing_releases_the_rest() -> None:
    """Each change is a step: the estimate reserved, spend taken from it, the rest freed."""
    found = activity(
        [run("r1", "10", day(2), settled=day(5))],
        [(day(3), "r1", "4"), (day(4), "r1", "1.5")],
    )
    series = spend_series(found, start=MAR_1, end=APR_1, limit=Decimal(100), run_id="r1")
    assert figures(series) == [
        (MAR_1, "0", "0", "0", "0"),
        (day(2), "0", "10", "0", "10"),
        (day(3), "4", "6", "4", "6"),
        (day(4), "5.5", "4.5", "5.5", "4.5"),
        (day(5), "5.5", "0", "5.5", "0"),
        (APR_1, "5.5", "0", "5.5", "0"),
    ]
    assert (series.spent, series.reserved, series.remaining) == (
        Decimal("5.5"),
        Decimal(0),
        Decimal("94.5"),
    )
    assert (series.counted, series.rehearsal, series.run_owner) == (True, False, "ana")


def test_a_run_open_before_the_window_holds_what_it_has_not_spent_from_the_start() -> None:
    """A run admitted last month holds its estimate less all its spend so far; its earlier
    spend is not this window's."""
    found = activity([run("long", "30", FEB_20)], [(day(3), "long", "5")], before={"long": "12"})
    series = spend_series(found, start=MAR_1, end=APR_1, limit=Decimal(100))
    assert figures(series)[:2] == [
        (MAR_1, "0", "18", "0", "0"),
        (day(3), "5", "13", "0", "0"),
    ]


def test_spend_past_the_estimate_holds_nothing_and_late_spend_still_counts() -> None:
    """Reserved never goes below zero; spend recorded after the close counts as spent."""
    found = activity(
        [run("r1", "5", day(2), settled=day(4))],
        [(day(3), "r1", "7"), (day(6), "r1", "1")],
    )
    series = spend_series(found, start=MAR_1, end=APR_1, limit=Decimal(6))
    assert figures(series)[1:5] == [
        (day(2), "0", "5", "0", "0"),
        (day(3), "7", "0", "0", "0"),
        (day(4), "7", "0", "0", "0"),
        (day(6), "8", "0", "0", "0"),
    ]
    assert series.remaining == Decimal(-2)


def test_events_at_one_moment_make_one_point() -> None:
    """Two runs admitted and a spend recorded at the same moment are one step."""
    found = activity(
        [run("a", "10", day(2)), run("b", "5", day(2), owner="bob")],
        [(day(2), "a", "1")],
    )
    series = spend_series(found, start=MAR_1, end=day(3), limit=None)
    assert figures(series) == [
        (MAR_1, "0", "0", "0", "0"),
        (day(2), "1", "14", "0", "0"),
        (day(3), "1", "14", "0", "0"),
    ]


def test_events_at_the_start_are_in_the_first_point_and_at_the_end_left_out() -> None:
    """The window is half-open: what happens at its start is in it, at its end is not."""
    found = activity([run("r1", "10", MAR_1)], [(MAR_1, "r1", "2"), (APR_1, "r1", "3")])
    series = spend_series(found, start=MAR_1, end=APR_1, limit=None)
    assert figures(series) == [(MAR_1, "2", "8", "0", "0"), (APR_1, "2", "8", "0", "0")]


def test_refused_runs_hold_nothing() -> None:
    """A refused run (closed when admitted) never reserves."""
    found = activity([run("no", "500", day(2), settled=day(2), status="refused")], [])
    series = spend_series(found, start=MAR_1, end=APR_1, limit=Decimal(100), run_id="no")
    assert series.empty
    assert len(series.points) == 2


def test_spent_is_split_by_owner_most_counted_first() -> None:
    """Per point, spent by owner; owners ordered by what they use at the end, then name."""
    found = activity(
        [
            run("a", "10", day(2)),
            run("b", "30", day(2), owner="bob", settled=day(6)),
            run("c", "4", day(3), owner="cy"),
        ],
        [(day(3), "a", "3"), (day(4), "b", "8"), (day(5), "c", "4")],
    )
    series = spend_series(found, start=MAR_1, end=day(7), limit=None)
    assert [(o.owner, plain(o.spent), plain(o.reserved)) for o in series.owners] == [
        ("ana", "3", "7"),
        ("bob", "8", "0"),
        ("cy", "4", "0"),
    ]
    assert [tuple(map(plain, p.by_owner)) for p in series.points] == [
        ("0", "0", "0"),
        ("0", "0", "0"),
        ("3", "0", "0"),
        ("3", "8", "0"),
        ("3", "8", "4"),
        ("3", "8", "4"),
        ("3", "8", "4"),
    ]
    assert all(sum(p.by_owner) == p.spent for p in series.points)


def test_a_rehearsal_is_followed_but_never_counted() -> None:
    """The report's rehearsal has its own figures; the totals and owners are the real runs'."""
    found = activity(
        [run("real", "10", day(2)), run("sim", "20", day(2), owner="zed", rehearsal=True)],
        [(day(3), "sim", "6"), (day(3), "real", "1")],
    )
    series = spend_series(found, start=MAR_1, end=day(4), limit=Decimal(25), run_id="sim")
    assert figures(series)[-1] == (day(4), "1", "9", "6", "14")
    assert [o.owner for o in series.owners] == ["ana"]
    assert (series.rehearsal, series.counted, series.remaining) == (True, False, Decimal(15))


def test_without_a_budget_the_series_is_the_runs_own_lifetime() -> None:
    """With no budget the run alone is counted, from its admission to after its last spend,
    against its max_usd."""
    capped = run("capped", "5", day(2), settled=day(2, 6), budget=None, max_usd=Decimal(6))
    found = activity(
        [capped],
        [(day(2, 2), "capped", "1"), (day(2, 8), "capped", "2")],
        budget=None,
        since=None,
        until=None,
    )
    start, end = run_lifetime(found, "capped", now=APR_1)
    assert (start, end) == (day(2), day(2, 8) + timedelta(minutes=24))
    series = spend_series(found, start=start, end=end, limit=capped.max_usd, run_id="capped")
    assert figures(series) == [
        (day(2), "0", "5", "0", "5"),
        (day(2, 2), "1", "4", "1", "4"),
        (day(2, 6), "1", "0", "1", "0"),
        (day(2, 8), "3", "0", "3", "0"),
        (end, "3", "0", "3", "0"),
    ]
    assert (series.budget, series.counted, series.remaining) == (None, True, Decimal(3))


def test_an_open_runs_lifetime_ends_now() -> None:
    """A run still open is shown up to `now`."""
    found = activity([run("r", "5", day(2), budget=None)], [], budget=None, since=None, until=None)
    assert run_lifetime(found, "r", now=day(9)) == (day(2), day(9))


def test_without_a_start_the_series_begins_at_the_first_activity() -> None:
    """A budget of period `none` has no window start: the series starts at its first run."""
    found = activity([run("r", "5", day(4))], [(day(5), "r", "1")], since=None, until=None)
    series = spend_series(found, start=None, end=day(6), limit=Decimal(10))
    assert series.start == day(4)
    assert figures(series)[0] == (day(4), "0", "5", "0", "0")
    nothing = spend_series(activity([], []), start=None, end=day(6), limit=None)
    assert (nothing.start, len(nothing.points), nothing.empty) == (day(6), 1, True)


def test_a_window_the_activity_does_not_cover_is_refused() -> None:
    """The activity must have been read for at least the series' window."""
    found = activity([], [], since=day(2), until=day(9))
    with pytest.raises(ValueError, match="does not cover the window"):
        spend_series(found, start=MAR_1, end=day(9), limit=None)
    with pytest.raises(ValueError, match="does not cover the window"):
        spend_series(found, start=day(2), end=APR_1, limit=None)
    with pytest.raises(ValueError, match="is before start"):
        spend_series(found, start=day(5), end=day(4), limit=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        spend_series(found, start=day(2), end=datetime(2026, 3, 4), limit=None)  # noqa: DTZ001
    with pytest.raises(ValueError, match="not in the activity"):
        spend_series(found, start=day(2), end=day(4), limit=None, run_id="ghost")


def test_the_window_end_is_kept_only_past_the_end() -> None:
    """The rest of the current window is noted when it ends after the series' end."""
    found = activity([], [])
    current = spend_series(found, start=MAR_1, end=day(9), limit=None, window_end=APR_1)
    past = spend_series(found, start=MAR_1, end=APR_1, limit=None, window_end=APR_1)
    assert (current.window_end, past.window_end) == (APR_1, None)


def test_as_json_has_exact_money_and_utc_moments() -> None:
    """The JSON form: `*_usd` decimal strings (never floats), ISO 8601 UTC moments, owners and
    points."""
    found = activity(
        [run("r1", "10", day(2), owner="ana"), run("r2", "1", day(2), owner="bob")],
        [(day(3), "r1", "0.10"), (day(3, 1), "r1", "0.0005")],
    )
    series = spend_series(
        found, start=MAR_1, end=day(4), limit=Decimal("12.50"), run_id="r1", window_end=APR_1
    )
    shown = series.as_json()
    assert json.loads(json.dumps(shown)) == shown
    assert shown == {
        "budget": "default",
        "start": "2026-03-01T00:00:00+00:00",
        "end": "2026-03-04T00:00:00+00:00",
        "window_end": "2026-04-01T00:00:00+00:00",
        "limit_usd": "12.5",
        "spent_usd": "0.1005",
        "reserved_usd": "10.8995",
        "remaining_usd": "1.5",
        "run": {
            "run_id": "r1",
            "owner": "ana",
            "rehearsal": False,
            "counted": True,
            "spent_usd": "0.1005",
            "reserved_usd": "9.8995",
        },
        "owners": [
            {"owner": "ana", "spent_usd": "0.1005", "reserved_usd": "9.8995"},
            {"owner": "bob", "spent_usd": "0", "reserved_usd": "1"},
        ],
        "steps": 5,
        "points": [
            {
                "at": "2026-03-01T00:00:00+00:00",
                "spent_usd": "0",
                "reserved_usd": "0",
                "by_owner_usd": {},
                "run_spent_usd": "0",
                "run_reserved_usd": "0",
            },
            {
                "at": "2026-03-02T00:00:00+00:00",
                "spent_usd": "0",
                "reserved_usd": "11",
                "by_owner_usd": {},
                "run_spent_usd": "0",
                "run_reserved_usd": "10",
            },
            {
                "at": "2026-03-03T00:00:00+00:00",
                "spent_usd": "0.1",
                "reserved_usd": "10.9",
                "by_owner_usd": {"ana": "0.1"},
                "run_spent_usd": "0.1",
                "run_reserved_usd": "9.9",
            },
            {
                "at": "2026-03-03T01:00:00+00:00",
                "spent_usd": "0.1005",
                "reserved_usd": "10.8995",
                "by_owner_usd": {"ana": "0.1005"},
                "run_spent_usd": "0.1005",
                "run_reserved_usd": "9.8995",
            },
            {
                "at": "2026-03-04T00:00:00+00:00",
                "spent_usd": "0.1005",
                "reserved_usd": "10.8995",
                "by_owner_usd": {"ana": "0.1005"},
                "run_spent_usd": "0.1005",
                "run_reserved_usd": "9.8995",
            },
        ],
    }


def many_parts(count: int) -> SpendSeries:
    """One run spending a cent a minute, `count` times, in March."""
    start = day(1)
    entries = [(start + timedelta(minutes=i + 1), "r1", "0.01") for i in range(count)]
    found = activity([run("r1", "500", start)], entries)
    return spend_series(found, start=MAR_1, end=APR_1, limit=Decimal(100), run_id="r1")


def test_downsampling_keeps_at_most_the_bound_with_exact_final_figures() -> None:
    """10,000 steps become at most MAX_POINTS, first and last kept, every kept figure exact."""
    series = many_parts(10_000)
    assert (len(series.points), series.steps) == (10_002, 10_002)
    small = series.downsampled()
    assert len(small.points) <= MAX_POINTS
    assert small.points[0] == series.points[0]
    assert small.points[-1] == series.points[-1]
    assert (small.spent, small.reserved, small.steps) == (Decimal(100), Decimal(400), 10_002)
    assert set(small.points) <= set(series.points)
    assert [p.at for p in small.points] == sorted(p.at for p in small.points)
    assert series.downsampled(20_000) is series
    with pytest.raises(ValueError, match="at least 2"):
        series.downsampled(1)
