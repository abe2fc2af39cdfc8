"""`costguard guard` killed -9 mid-batch and restarted on the same ledger, port and upstream.

A pipeline (the unmodified Python SDK) creates a batch through a gateway running in a process
of its own; once the batch is admitted and forwarded (the ledger run holds the provider's job
id) and long before it finishes (the upstream runs the `slow` scenario, about 10 s of wall
time), the gateway gets SIGKILL, a new one starts on the same port, and so on three times, the
pipeline polling in between. The pipeline's polls through the last gateway see the batch
finish; the reservation was never lost (held while no gateway ran) and is settled once: one
run, one spend part, nothing left reserved, the budget's spend equal to the run's.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from google import genai
from google.genai import types
from openai import OpenAI

from costguard.ledger import Ledger, open_ledger
from costguard.ledger.records import Run
from guardkit import (
    GEMINI_KEY,
    OPENAI_KEY,
    TERMINAL_GEMINI,
    TERMINAL_OPENAI,
    GatewayProcess,
    set_budget,
    upstream_jobs,
)
from sim_cli import serve_process

KILLS = 3


def admitted_run(ledger: Ledger, timeout: float = 10) -> Run:
    """The gateway's one run, once it holds the provider's job id (the create's bookkeeping
    ends just after the answer has gone to the pipeline)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = ledger.runs(limit=10)
        if len(runs) == 1 and runs[0].meta.get("job"):
            return runs[0]
        assert time.monotonic() < deadline, runs
        time.sleep(0.02)


def create_gemini(url: str) -> tuple[str, object]:
    """An inline image batch; (job name, a poll function returning the state or None)."""
    gemini = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))
    job = gemini.batches.create(
        model="gemini-3.1-flash-image",
        src=[
            {"contents": f"a cover {i}", "config": {"response_modalities": ["IMAGE"]}}
            for i in range(3)
        ],  # type: ignore[arg-type]
    )
    assert job.name is not None
    name = job.name

    def poll() -> str | None:
        state = gemini.batches.get(name=name).state
        value = None if state is None else state.value
        return value if value in TERMINAL_GEMINI else None

    return name.removeprefix("batches/"), poll


def create_openai(url: str) -> tuple[str, object]:
    """A file batch (uploaded through the gateway); (job id, a poll function)."""
    client = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    lines = b"".join(
        b'{"custom_id": "c%d", "method": "POST", "url": "/v1/images/generations", '
        b'"body": {"model": "gpt-image-2", "prompt": "a cover %d", "quality": "low"}}\n' % (i, i)
        for i in range(3)
    )
    upload = client.files.create(file=("covers.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
    )

    def poll() -> str | None:
        status = client.batches.retrieve(batch.id).status
        return status if status in TERMINAL_OPENAI else None

    return batch.id, poll


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_gateway_killed_mid_batch_and_restarted_settles_once(tmp_path: Path, provider: str) -> None:
    """kill -9 three times mid-batch: the batch is settled once, at actual, by the last one."""
    location = tmp_path / "ledger.sqlite3"
    set_budget(location, "team", "100")
    ledger = open_ledger(location)
    with serve_process("--scenario", "slow") as (upstream, _):
        gateway = GatewayProcess(location, "team", upstream, 0)
        try:
            url = gateway.start()
            create = create_gemini if provider == "gemini" else create_openai
            job, poll = create(url)
            run = admitted_run(ledger)
            assert run.meta["job"] == job
            assert run.status == "open"
            state = None
            for _ in range(KILLS):
                gateway.kill9()
                held = ledger.status("team", at=run.created)
                assert (held.open_runs, held.reserved, held.spent) == (1, run.estimate, Decimal(0))
                assert gateway.start() == url  # same port: the pipeline's client is unchanged
                state = poll()  # type: ignore[operator]
                assert state is None, "the batch ended before the gateway was killed again"
            for _ in range(600):
                state = poll()  # type: ignore[operator]
                if state is not None:
                    break
                time.sleep(0.05)
            assert state in ("JOB_STATE_SUCCEEDED", "completed")
            jobs = upstream_jobs(upstream, provider)
            lines = list(gateway.lines)
        finally:
            gateway.stop()
    try:
        (run,) = ledger.runs(limit=10)
        status = ledger.status("team", at=run.created)
    finally:
        ledger.close()
    assert len(jobs) == 1
    assert run.status == "completed"
    assert run.meta["reconciled"] is True
    assert run.parts == 1
    assert Decimal(0) < run.spent <= run.estimate
    assert (status.open_runs, status.reserved, status.spent) == (0, Decimal(0), run.spent)
    assert sum("settled batch" in line for line in lines) == 1, lines
