"""A budget's spend over time, replayed from the ledger's activity (pure: no I/O, no clock).

`spend_series` turns an `Activity` (`Ledger.activity`) into the steps of the budget's spent
and reserved in a window, counted moment by moment as `Ledger.status` counts them at the end:

- a run admitted reserves its estimate; while open it holds `max(estimate - its spend, 0)`
  (its spend of all time so far, also before the window);
- spend counts when it is recorded: it moves money from the run's reservation to spent;
- a run closed (settled, released) holds nothing from that moment; its later spend counts.

Only the budget's real runs count. The report's run (`run_id`) is followed on its own too: its
share of the budget, or, for a rehearsal (or a run of another budget), its would-be spend,
reported beside the real figures and never in them. With no budget (a run capped by
`--max-usd` alone) the series is that run's own spend over its lifetime (`run_lifetime`).

Money stays Decimal; moments are passed in (the current window ends "now" as the caller
sees it). Each point is the ledger as it stood at that moment, so with `end` now the last one
is `Ledger.status(budget, at=now)`. For a past window the last point is the budget as it stood
at the window's end; `status` asked today differs only for a run open then whose reservation
changed after it (spend or a close recorded later, which `status` counts at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from costguard.ledger.records import REFUSED, Activity, Run
from costguard.money import ZERO, plain

MAX_POINTS = 1000
"""At most this many steps per series in a chart (`SpendSeries.downsampled`)."""


@dataclass(frozen=True, slots=True)
class SpendPoint:
    """The figures from one moment until the next point (a step)."""

    at: datetime
    spent: Decimal
    """The budget's real spend recorded in the window up to this moment."""
    reserved: Decimal
    """What the budget's open real runs hold: sum of max(estimate - spent, 0)."""
    by_owner: tuple[Decimal, ...]
    """`spent` split by owner, in the order of `SpendSeries.owners`."""
    run_spent: Decimal
    """The report's run: its spend recorded in the window up to this moment."""
    run_reserved: Decimal
    """The report's run: what it holds at this moment."""


@dataclass(frozen=True, slots=True)
class OwnerSpend:
    """One owner's figures at the end of the window."""

    owner: str
    spent: Decimal
    reserved: Decimal

    @property
    def counted(self) -> Decimal:
        """spent + reserved: what the owner's runs use of the budget."""
        return self.spent + self.reserved


@dataclass(frozen=True, slots=True)
class SpendSeries:
    """A budget's spent and reserved over a window, by owner, with the report's run's share."""

    budget: str | None
    """The budget; None: the series is the run's own (capped by `max_usd` alone)."""
    start: datetime
    end: datetime
    """Where the figures end (exclusive): the window's end, or now in the current window."""
    window_end: datetime | None
    """The end of the budget's window when later than `end` (what is left of it)."""
    limit: Decimal | None
    """The budget's limit (or the run's `max_usd` with no budget); None: no limit."""
    run_id: str | None
    run_owner: str | None
    rehearsal: bool
    """The report's run is a rehearsal: its figures are shown, never counted."""
    counted: bool
    """The report's run is one of the runs counted (its figures are part of the totals)."""
    owners: tuple[OwnerSpend, ...]
    """Every owner of a counted run, at the end; most counted first, then by name."""
    points: tuple[SpendPoint, ...]
    """The steps, oldest first: the first at `start`, the last at `end`."""
    steps: int = field(default=0)
    """How many points the full series has (more than `points` once downsampled)."""

    @property
    def last(self) -> SpendPoint:
        """The figures at the end."""
        return self.points[-1]

    @property
    def spent(self) -> Decimal:
        """Real spend recorded in the window."""
        return self.last.spent

    @property
    def reserved(self) -> Decimal:
        """What open real runs hold at the end."""
        return self.last.reserved

    @property
    def remaining(self) -> Decimal | None:
        """limit - spent - reserved at the end (negative past the limit); None: no limit."""
        return None if self.limit is None else self.limit - self.spent - self.reserved

    @property
    def run_spent(self) -> Decimal:
        """The report's run's spend in the window."""
        return self.last.run_spent

    @property
    def run_reserved(self) -> Decimal:
        """What the report's run holds at the end."""
        return self.last.run_reserved

    @property
    def empty(self) -> bool:
        """Nothing spent or reserved at any moment of the window, by anyone shown."""
        return all(
            not (p.spent or p.reserved or p.run_spent or p.run_reserved) for p in self.points
        )

    def downsampled(self, max_points: int = MAX_POINTS) -> SpendSeries:
        """At most `max_points` steps: per equal slice of the window, its last point (so each
        figure kept is exact, the final ones included); first and last points always kept."""
        if max_points < 2:
            msg = f"max_points must be at least 2, got {max_points}"
            raise ValueError(msg)
        if len(self.points) <= max_points:
            return self
        span = (self.end - self.start).total_seconds() or 1.0
        slices = max_points - 2
        kept: dict[int, SpendPoint] = {}
        for point in self.points[1:-1]:
            share = (point.at - self.start).total_seconds() / span
            kept[min(int(share * slices), slices - 1)] = point
        middle = [kept[i] for i in sorted(kept)]
        return replace(self, points=(self.points[0], *middle, self.points[-1]))

    def as_json(self) -> dict[str, Any]:
        """The series for `--output json`: money as exact decimal strings (`*_usd`, as in the
        rest of the report's facts), moments ISO 8601 UTC."""
        names = [o.owner for o in self.owners]
        return {
            "budget": self.budget,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "window_end": None if self.window_end is None else _iso(self.window_end),
            "limit_usd": _opt(self.limit),
            "spent_usd": plain(self.spent),
            "reserved_usd": plain(self.reserved),
            "remaining_usd": _opt(self.remaining),
            "run": {
                "run_id": self.run_id,
                "owner": self.run_owner,
                "rehearsal": self.rehearsal,
                "counted": self.counted,
                "spent_usd": plain(self.run_spent),
                "reserved_usd": plain(self.run_reserved),
            },
            "owners": [
                {"owner": o.owner, "spent_usd": plain(o.spent), "reserved_usd": plain(o.reserved)}
                for o in self.owners
            ],
            "steps": self.steps,
            "points": [
                {
                    "at": _iso(p.at),
                    "spent_usd": plain(p.spent),
                    "reserved_usd": plain(p.reserved),
                    "by_owner_usd": {
                        name: plain(amount)
                        for name, amount in zip(names, p.by_owner, strict=True)
                        if amount
                    },
                    "run_spent_usd": plain(p.run_spent),
                    "run_reserved_usd": plain(p.run_reserved),
                }
                for p in self.points
            ],
        }


def spend_series(
    activity: Activity,
    *,
    start: datetime | None,
    end: datetime,
    limit: Decimal | None,
    run_id: str | None = None,
    window_end: datetime | None = None,
) -> SpendSeries:
    """Replay `activity` into the steps of `[start, end)`.

    Args:
        activity: `Ledger.activity(budget, since=start, until=end, run_id=run_id)` (its
            window must cover `[start, end)`).
        start: the window's start; None (a budget of period `none`): the first moment of
            the activity (`end` if there is none).
        end: the window's end, or now for the current window; figures after it are left out.
        limit: the budget's limit, or the run's `max_usd` when `activity.budget` is None.
        run_id: the report's run, followed on its own (and, with no budget, the only one).
        window_end: the end of the budget's window when `end` is now (the chart shows the
            rest of the window empty).

    Raises:
        ValueError: a moment is naive, `end` is before `start`, the activity does not cover
            the window, or `run_id` is not in it.
    """
    end = _utc(end, "end")
    run = _find(activity.runs, run_id)
    if activity.budget is None:  # the run alone, against its --max-usd (a rehearsal: apart)
        counted_ids = {run.run_id} if run is not None and not run.rehearsal else set()
    else:
        counted_ids = {
            r.run_id for r in activity.runs if not r.rehearsal and r.budget == activity.budget
        }
    tracked = [r for r in activity.runs if r.run_id in counted_ids or r is run]
    begin = _utc(start, "start") if start is not None else _first_moment(activity, tracked, end)
    if end < begin:
        msg = f"end ({end.isoformat()}) is before start ({begin.isoformat()})"
        raise ValueError(msg)
    if (activity.since is not None and activity.since > begin) or (
        activity.until is not None and activity.until < end
    ):
        msg = "the activity does not cover the window; ask the ledger for [start, end)"
        raise ValueError(msg)
    replay = _Replay(tracked, counted_ids, run, activity.spent_before)
    points = replay.points(activity, begin, end)
    owners = tuple(
        sorted(
            (
                OwnerSpend(name, points[-1].by_owner[i], replay.owner_reserved(name))
                for i, name in enumerate(replay.owners)
            ),
            key=lambda o: (-o.counted, -o.spent, o.owner),
        )
    )
    order = [replay.owners.index(o.owner) for o in owners]
    points = [replace(p, by_owner=tuple(p.by_owner[i] for i in order)) for p in points]
    return SpendSeries(
        budget=activity.budget,
        start=begin,
        end=end,
        window_end=_later(window_end, end),
        limit=limit,
        run_id=None if run is None else run.run_id,
        run_owner=None if run is None else run.owner,
        rehearsal=run is not None and run.rehearsal,
        counted=run is not None and run.run_id in counted_ids,
        owners=owners,
        points=tuple(points),
        steps=len(points),
    )


def run_lifetime(activity: Activity, run_id: str, *, now: datetime) -> tuple[datetime, datetime]:
    """The window of a run's own series (no budget): from its admission to `now` while it is
    open, else to a little after its close or its last spend (whichever is later).

    Raises:
        ValueError: `run_id` is not in the activity, or `now` is naive.
    """
    now = _utc(now, "now")
    run = _find(activity.runs, run_id)
    assert run is not None
    moments = [e.recorded for e in activity.spend if e.run_id == run_id]
    if run.settled is not None:
        moments.append(run.settled)
    latest = max(moments, default=run.created)
    if run.settled is None and now > latest:
        return run.created, now
    margin = max((latest - run.created) / 20, timedelta(seconds=1))
    return run.created, latest + margin


# --- the replay ----------------------------------------------------------------------------


class _Replay:
    """The ledger's counting rules applied event by event (admission, spend, close)."""

    def __init__(
        self,
        tracked: list[Run],
        counted: set[str],
        run: Run | None,
        spent_before: dict[str, Decimal],
    ) -> None:
        self.runs = {r.run_id: r for r in tracked}
        self.counted = counted
        self.run_id = None if run is None else run.run_id
        self.owners: list[str] = sorted({r.owner for r in tracked if r.run_id in counted})
        self.owner_index = {name: i for i, name in enumerate(self.owners)}
        self.total_spent: dict[str, Decimal] = {
            r.run_id: spent_before.get(r.run_id, ZERO) for r in tracked
        }
        self.open: set[str] = set()
        self.holds: dict[str, Decimal] = {}
        self.spent = ZERO
        self.reserved = ZERO
        self.by_owner = [ZERO] * len(self.owners)
        self.run_spent = ZERO

    def points(self, activity: Activity, start: datetime, end: datetime) -> list[SpendPoint]:
        events: list[tuple[datetime, int, str, Decimal]] = []
        for run in self.runs.values():
            if run.status == REFUSED:
                continue
            events.append((run.created, 0, run.run_id, ZERO))
            if run.settled is not None:
                events.append((run.settled, 2, run.run_id, ZERO))
        events.extend(
            (e.recorded, 1, e.run_id, e.amount) for e in activity.spend if e.run_id in self.runs
        )
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        points: list[SpendPoint] = []
        index = 0
        while index < len(events) and events[index][0] <= start:
            self._apply(*events[index], in_window=events[index][0] >= start)
            index += 1
        points.append(self._point(start))
        while index < len(events) and events[index][0] < end:
            moment = events[index][0]
            while index < len(events) and events[index][0] == moment:
                self._apply(*events[index], in_window=True)
                index += 1
            points.append(self._point(moment))
        if end > points[-1].at:
            points.append(replace(points[-1], at=end))
        return points

    def owner_reserved(self, owner: str) -> Decimal:
        return sum(
            (held for run_id, held in self.holds.items() if self.runs[run_id].owner == owner),
            ZERO,
        )

    def _apply(
        self, _at: datetime, kind: int, run_id: str, amount: Decimal, *, in_window: bool
    ) -> None:
        run = self.runs[run_id]
        if kind == 0:
            self.open.add(run_id)
        elif kind == 2:
            self.open.discard(run_id)
        else:
            self.total_spent[run_id] += amount
            if in_window:
                if run_id in self.counted:
                    self.spent += amount
                    self.by_owner[self.owner_index[run.owner]] += amount
                if run_id == self.run_id:
                    self.run_spent += amount
        held = max(run.estimate - self.total_spent[run_id], ZERO) if run_id in self.open else ZERO
        before = self.holds.pop(run_id, ZERO)
        if held:
            self.holds[run_id] = held
        if run_id in self.counted:
            self.reserved += held - before

    def _point(self, at: datetime) -> SpendPoint:
        run_reserved = ZERO if self.run_id is None else self.holds.get(self.run_id, ZERO)
        return SpendPoint(
            at=at,
            spent=self.spent,
            reserved=self.reserved,
            by_owner=tuple(self.by_owner),
            run_spent=self.run_spent,
            run_reserved=run_reserved,
        )


# --- helpers -------------------------------------------------------------------------------


def _find(runs: Iterable[Run], run_id: str | None) -> Run | None:
    if run_id is None:
        return None
    for run in runs:
        if run.run_id == run_id:
            return run
    msg = f"run {run_id!r} is not in the activity; pass it as run_id to Ledger.activity"
    raise ValueError(msg)


def _first_moment(activity: Activity, tracked: list[Run], end: datetime) -> datetime:
    ids = {r.run_id for r in tracked}
    moments = [r.created for r in tracked if r.status != REFUSED]
    moments += [e.recorded for e in activity.spend if e.run_id in ids]
    return min([*moments, end])


def _later(window_end: datetime | None, end: datetime) -> datetime | None:
    if window_end is None:
        return None
    window_end = _utc(window_end, "window_end")
    return window_end if window_end > end else None


def _utc(at: datetime, what: str) -> datetime:
    if at.utcoffset() is None:
        msg = f"{what} must be timezone-aware, got {at.isoformat()}"
        raise ValueError(msg)
    return at.astimezone(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _opt(amount: Decimal | None) -> str | None:
    return None if amount is None else plain(amount)
