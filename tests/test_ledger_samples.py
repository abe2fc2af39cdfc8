"""Usage samples in the ledger: written with spend, once per request, read as a calibration.

Every test runs on a SQLite file and on a real PostgreSQL database (`ledger_location`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costguard.errors import LedgerError
from costguard.ledger import Ledger, open_ledger
from costguard.pricing.calibration import Sample, calibrate_samples

MAR = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    """A fresh ledger (SQLite file, or PostgreSQL database), closed after the test."""
    with open_ledger(ledger_location) as opened:
        yield opened


def admitted(ledger: Ledger, run_id: str, *, rehearsal: bool = False) -> str:
    """Admit `run_id` for $10 in March; return its id."""
    ledger.admit(run_id, Decimal(10), owner="t", at=MAR, rehearsal=rehearsal)
    return run_id


def sample(key: str, **kw: Any) -> Sample:
    """A Gemini 3 Pro Image 1K request that came back ok."""
    fields: dict[str, Any] = {
        "key": key,
        "provider": "gemini",
        "model": "gemini-3-pro-image",
        "size": "1K",
        "quality": None,
        "status": "ok",
        "prompt_bytes": 120,
        "input_images": 0,
        "text_tokens_max": 0,
        "input_text_tokens": 30,
        "input_image_tokens": 0,
        "output_text_tokens": 400,
        "output_image_tokens": 1120,
    }
    fields.update(kw)
    return Sample(**fields)


def mixed(count: int, seed: int = 7) -> list[Sample]:
    """Samples of two models, sizes, statuses, text and input images, values drawn at random."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append(
            sample(
                f"k{i:04d}",
                model=rng.choice(["gemini-3-pro-image", "gpt-image-1.5"]),
                size=rng.choice(["1K", "2K"]),
                quality=rng.choice([None, "low"]),
                status=rng.choice(["ok"] * 8 + ["refused", "failed"]),
                prompt_bytes=rng.randrange(0, 400),
                input_images=rng.choice([0, 0, 1, 3]),
                text_tokens_max=rng.choice([0, 0, 0, 256]),
                input_text_tokens=rng.randrange(0, 120),
                input_image_tokens=rng.randrange(0, 4000),
                output_text_tokens=rng.randrange(0, 3000),
            )
        )
    return out


def test_samples_are_written_with_the_spend_once_per_request(ledger: Ledger) -> None:
    """Recording a part again (a resumed collection) writes no sample twice."""
    run = admitted(ledger, "r1")
    first = [sample("a"), sample("b", output_text_tokens=900)]
    assert ledger.record_spend(run, "p1", Decimal("0.5"), at=MAR, samples=first)
    assert not ledger.record_spend(run, "p1", Decimal("0.5"), at=MAR, samples=first)
    ledger.record_spend(run, "p2", Decimal("0.1"), at=MAR, samples=[sample("a"), sample("c")])
    assert ledger.samples(run) == [*first, sample("c")]
    assert ledger.samples("nobody") == []


def test_a_refused_spend_writes_no_sample(ledger: Ledger) -> None:
    """Spend and samples are one transaction: a part recorded with another amount adds neither."""
    run = admitted(ledger, "r1")
    ledger.record_spend(run, "p1", Decimal("0.5"), at=MAR, samples=[sample("a")])
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.record_spend(run, "p1", Decimal("0.6"), at=MAR, samples=[sample("b")])
    assert [s.key for s in ledger.samples(run)] == ["a"]


def test_many_samples_go_in_one_write(ledger: Ledger) -> None:
    """A part of 130 requests (several statements) is written whole."""
    run = admitted(ledger, "r1")
    many = [sample(f"k{i:03d}", output_text_tokens=i) for i in range(130)]
    ledger.record_spend(run, "p1", Decimal(1), at=MAR, samples=many)
    assert ledger.samples(run) == many


def test_the_ledger_calibrates_as_the_pure_function_does(ledger: Ledger) -> None:
    """Grouped in SQL or counted in memory, the same samples give the same distributions."""
    samples = mixed(400)
    run = admitted(ledger, "r1")
    ledger.record_spend(run, "p1", Decimal(1), at=MAR, samples=samples)
    from_ledger = ledger.calibration()
    expected = calibrate_samples(samples, since=MAR.date())
    assert from_ledger.stats == expected.stats
    assert (from_ledger.requests, from_ledger.since) == (expected.requests, MAR.date())
    assert from_ledger.requests == sum(1 for s in samples if s.status == "ok")


def test_rehearsals_never_count_and_since_starts_the_window(ledger: Ledger) -> None:
    """A rehearsal's samples are left out; `since` leaves out what was recorded before it."""
    real, sim = admitted(ledger, "real"), admitted(ledger, "sim", rehearsal=True)
    ledger.record_spend(sim, "p1", Decimal(1), at=MAR, samples=[sample("s", output_text_tokens=9)])
    ledger.record_spend(real, "p1", Decimal(1), at=MAR, samples=[sample("old")])
    later = MAR + timedelta(days=10)
    ledger.record_spend(real, "p2", Decimal(1), at=later, samples=[sample("new")])
    everything = ledger.calibration()
    assert (everything.requests, everything.since) == (2, MAR.date())
    assert everything.stats[("thinking", "gemini-3-pro-image", None, None)].samples == 2
    recent = ledger.calibration(since=MAR + timedelta(days=1))
    assert (recent.requests, recent.since) == (1, (MAR + timedelta(days=1)).date())
    empty = ledger.calibration(since=later + timedelta(days=1))
    assert (empty.requests, empty.stats) == (0, {})
