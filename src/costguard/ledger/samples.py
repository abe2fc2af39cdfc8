"""Usage samples: what each collected request reported, and the calibration they give.

Written with a part's spend (`Ledger.record_spend(..., samples=...)`, one transaction, a row
per `(run_id, request_key)` written once); read back grouped in SQL, so calibrating from a
ledger with millions of requests moves one row per distinct observed value, not per request.
Only real runs count: a rehearsal's samples (none are written) are excluded on read too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import datetime

from costguard.ledger.base import LedgerBase
from costguard.ledger.sql import MIN_MOMENT, Row, Tx, _moment
from costguard.pricing.calibration import Calibration, Kind, Observation, Sample, calibrate

_COLUMNS = (
    "run_id, request_key, provider, model, size, quality, status, prompt_bytes, input_images, "
    "text_tokens_max, input_text_tokens, input_image_tokens, output_text_tokens, "
    "output_image_tokens, recorded_at"
)
_PER_STATEMENT = 60
"""Rows per INSERT: 60 x 15 values stays under SQLite's oldest limit of 999 parameters."""

_REAL_OK = (
    "FROM usage_samples AS s JOIN runs AS r ON r.run_id = s.run_id "
    "WHERE r.rehearsal = 0 AND s.status = 'ok' AND s.recorded_at >= ?"
)
# What each sample teaches (`Sample.observations`), grouped by the value observed.
_OBSERVED: dict[Kind, str] = {
    "thinking": "s.output_text_tokens AS tokens, 1 AS per",
    "input_image": "s.input_image_tokens AS tokens, s.input_images AS per",
    "prompt": "s.input_text_tokens AS tokens, s.prompt_bytes AS per",
}
_WHEN: dict[Kind, str] = {
    "thinking": "s.text_tokens_max = 0",
    "input_image": "s.input_images > 0",
    "prompt": "s.prompt_bytes > 0",
}


class LedgerSamples(LedgerBase):
    """Usage samples: recorded with spend (`Ledger.record_spend`), read as a calibration."""

    def calibration(self, *, since: datetime | None = None) -> Calibration:
        """The calibration learned from every real request that came back ok since `since`.

        Its `since` is the day asked for, else the day of the earliest sample counted.
        """
        start = MIN_MOMENT if since is None else self._utc(since, "since")

        def work(db: Tx) -> Calibration:
            head = db.one(
                f"SELECT COUNT(*) AS requests, MIN(s.recorded_at) AS first {_REAL_OK}",
                (db.moment(start),),
            )
            observations: list[Observation] = []
            for kind, observed in _OBSERVED.items():
                sql = (
                    f"SELECT s.model, s.size, s.quality, {observed}, COUNT(*) AS n "
                    f"{_REAL_OK} AND {_WHEN[kind]} "
                    "GROUP BY s.model, s.size, s.quality, tokens, per"
                )
                observations += (
                    Observation(
                        kind, r["model"], r["size"], r["quality"], r["tokens"], r["per"], r["n"]
                    )
                    for r in db.rows(sql, (db.moment(start),))
                )
            requests = int(head["requests"]) if head else 0
            first = head["first"] if head else None
            day: dt.date | None = start.date() if since is not None else None
            if day is None and first is not None:
                day = _moment(first).date()
            return calibrate(observations, requests=requests, since=day)

        return self._read(work)

    def samples(self, run_id: str) -> list[Sample]:
        """The samples recorded for one run (real or not), by request key."""
        rows = self._read(
            lambda db: db.rows(
                f"SELECT {_COLUMNS} FROM usage_samples WHERE run_id = ? "  # noqa: S608
                "ORDER BY request_key",
                (run_id,),
            )
        )
        return [_sample(row) for row in rows]


def insert_samples(db: Tx, run_id: str, samples: Sequence[Sample], at: datetime) -> None:
    """Write samples not yet recorded (a resumed collection writes nothing twice)."""
    when = db.moment(at)
    for start in range(0, len(samples), _PER_STATEMENT):
        chunk = samples[start : start + _PER_STATEMENT]
        values = ", ".join(["(" + ", ".join(["?"] * 15) + ")"] * len(chunk))
        params: list[object] = []
        for s in chunk:
            params += (run_id, *s, when)
        db.run(
            f"INSERT INTO usage_samples ({_COLUMNS}) VALUES {values} "  # noqa: S608
            "ON CONFLICT (run_id, request_key) DO NOTHING",
            params,
        )


def _sample(row: Row) -> Sample:
    return Sample(
        key=row["request_key"],
        provider=row["provider"],
        model=row["model"],
        size=row["size"],
        quality=row["quality"],
        status=row["status"],
        prompt_bytes=int(row["prompt_bytes"]),
        input_images=int(row["input_images"]),
        text_tokens_max=int(row["text_tokens_max"]),
        input_text_tokens=int(row["input_text_tokens"]),
        input_image_tokens=int(row["input_image_tokens"]),
        output_text_tokens=int(row["output_text_tokens"]),
        output_image_tokens=int(row["output_image_tokens"]),
    )
