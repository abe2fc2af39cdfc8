"""`costguard guard` for a team: many pipelines, one PostgreSQL budget, one or many gateways.

Eight pipelines start at once, each the unmodified Python `google-genai` SDK creating an inline
image batch of the same priced size, against one budget on a real PostgreSQL ledger that fits
exactly three of them. Through one gateway, and through eight gateways (each its own ledger
connection) sharing the ledger: exactly three are admitted and forwarded, the upstream
(`costguard simulate serve`) holds exactly those three jobs, the five others get the
gateway's 402 in Gemini's error shape; the three then finish and are settled at actual, and
the budget's spend is the sum of their spend with nothing left reserved.

Skipped with the reason where PostgreSQL cannot be started (a failure under CI).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from guardkit import GEMINI_KEY, TERMINAL_GEMINI, gateway_in_thread, set_budget, upstream_jobs
from sim_cli import serve_process

PIPELINES = 8
FITS = 3
MODEL = "gemini-3.1-flash-image"


def covers(pipeline: int) -> list[dict[str, Any]]:
    """One pipeline's inline batch: the same priced size for every pipeline."""
    return [
        {"contents": f"cover {pipeline}-{i}", "config": {"response_modalities": ["IMAGE"]}}
        for i in range(4)
    ]


def client(url: str) -> genai.Client:
    """The Python SDK pointed at a gateway (as GOOGLE_GEMINI_BASE_URL would)."""
    return genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))


def batch_maximum(location: str, upstream: str) -> Decimal:
    """What the gateway reserves for one pipeline's batch, asked of a gateway of its own under a
    budget of its own on the same ledger (the exact reservation, not the rounded estimate)."""
    set_budget(location, "probe", "1000")
    with gateway_in_thread(location, upstream, budget="probe") as (url, guard):
        gemini = client(url)
        gemini.batches.create(model=MODEL, src=covers(99))  # type: ignore[arg-type]
        gemini.close()
        held = guard.book.ledger.status("probe", at=guard.book.clock())
    assert held.open_runs == 1
    return held.reserved


@contextlib.contextmanager
def gateways(location: str, upstream: str, count: int) -> Iterator[list[str]]:
    """`count` gateways on the same ledger; yields their URLs."""
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(gateway_in_thread(location, upstream))[0] for _ in range(count)]
        yield urls


def race(urls: list[str]) -> list[tuple[str, Any]]:
    """Start the pipelines together (pipeline i on gateway i mod len(urls)); each pipeline's
    ("admitted", job name) or ("refused", the SDK's error)."""
    start = threading.Barrier(PIPELINES)
    outcomes: list[tuple[str, Any]] = [("none", None)] * PIPELINES

    def pipeline(i: int) -> None:
        gemini = client(urls[i % len(urls)])
        start.wait(timeout=30)
        try:
            job = gemini.batches.create(model=MODEL, src=covers(i))  # type: ignore[arg-type]
            outcomes[i] = ("admitted", job.name)
        except genai_errors.APIError as exc:
            outcomes[i] = ("refused", exc)
        finally:
            gemini.close()

    threads = [threading.Thread(target=pipeline, args=(i,)) for i in range(PIPELINES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def finish(url: str, name: str) -> str:
    """Poll one job through a gateway until it is over; its final state."""
    gemini = client(url)
    try:
        for _ in range(600):
            job = gemini.batches.get(name=name)
            if job.state is not None and job.state.value in TERMINAL_GEMINI:
                return job.state.value
            threading.Event().wait(0.05)
    finally:
        gemini.close()
    msg = f"{name} never finished"
    raise AssertionError(msg)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, PIPELINES], ids=["one-gateway", "eight-gateways"])
def test_eight_pipelines_one_postgresql_budget_that_fits_three(pg_url: str, count: int) -> None:
    """Exactly 3 of 8 racing batch creates are forwarded; 5 refused in Gemini's shape."""
    with serve_process() as (upstream, _):
        maximum = batch_maximum(pg_url, upstream)
        set_budget(pg_url, "team", maximum * FITS)
        before = {str(job["name"]) for job in upstream_jobs(upstream, "gemini")}
        with gateways(pg_url, upstream, count) as urls:
            outcomes = race(urls)
            admitted = [name for kind, name in outcomes if kind == "admitted"]
            through = {name: urls[i % len(urls)] for i, (kind, name) in enumerate(outcomes)}
            refused = [exc for kind, exc in outcomes if kind == "refused"]
            assert len(admitted) == FITS, outcomes
            assert len(refused) == PIPELINES - FITS, outcomes
            jobs = {str(job["name"]) for job in upstream_jobs(upstream, "gemini")} - before
            assert jobs == set(admitted)

            from costguard.ledger import open_ledger

            ledger = open_ledger(pg_url)
            try:
                at = ledger.runs(limit=1)[0].created
                held = ledger.status("team", at=at)
                assert abs(held.reserved - maximum * FITS) < Decimal("0.0001")  # cents/100
                assert held.reserved <= held.limit
                assert Decimal(0) <= held.remaining < maximum
                for name in admitted:  # each pipeline polls through its own gateway
                    assert finish(through[name], name) == "JOB_STATE_SUCCEEDED"
                runs = ledger.runs(limit=100)
                after = ledger.status("team", at=at)
            finally:
                ledger.close()
    for exc in refused:
        assert exc.code == 402
        assert exc.status == "FAILED_PRECONDITION"
        assert "budget 'team' refused" in str(exc.message)
    runs = [r for r in runs if r.budget == "team"]
    assert sorted(r.status for r in runs) == ["completed"] * FITS + ["refused"] * (PIPELINES - FITS)
    done = [r for r in runs if r.status == "completed"]
    assert {r.meta["job"] for r in done} == {name.removeprefix("batches/") for name in admitted}
    assert all(r.parts == 1 and Decimal(0) < r.spent <= r.estimate for r in done)
    assert all(r.spent == 0 for r in runs if r.status == "refused")
    assert after.reserved == 0
    assert after.spent == sum((r.spent for r in done), Decimal(0))
    assert after.spent <= maximum * FITS
    assert after.open_runs == 0
