"""Budget periods: the UTC windows (`day`, `week`, `month`, `none`) that spend counts in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

Period = Literal["day", "week", "month", "none"]
PERIODS: tuple[Period, ...] = get_args(Period)


def period_window(period: Period, at: datetime) -> tuple[datetime | None, datetime | None]:
    """The UTC window `[start, end)` of `period` that contains `at`; `(None, None)` for none.

    Raises:
        ValueError: `at` is naive, or `period` is not one of `PERIODS`.
    """
    if at.utcoffset() is None:
        msg = f"at must be timezone-aware, got {at.isoformat()}"
        raise ValueError(msg)
    moment = at.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=moment.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        if start.month == 12:
            return start, start.replace(year=start.year + 1, month=1)
        return start, start.replace(month=start.month + 1)
    if period == "none":
        return None, None
    msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
    raise ValueError(msg)
