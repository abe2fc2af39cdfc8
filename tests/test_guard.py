"""`costguard guard`: the budget gateway in front of the real SDKs, a simulator as upstream."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import APIStatusError, OpenAI

from costguard.gateway.app import Guard, GuardOptions, create_guard_app
from costguard.gateway.book import Book
from costguard.ledger import open_ledger
from costguard.ledger.records import Run
from costguard.pricing.loader import load_book
from costguard.simulator import Simulator
from costguard.simulator.server import app_in_thread, serve_in_thread

OPENAI_KEY = "sk-guard-SECRET-0123456789"
GEMINI_KEY = "AIza-guard-SECRET-0123456789abcdef"
SIMS: list[Simulator] = []
"""The simulators `gateway` started (the last is the current one)."""


@contextlib.contextmanager
def gateway(
    ledger_path: Path, *, usd: str = "100", grace_s: float = 600.0
) -> Iterator[tuple[str, Guard, list[str], list[str]]]:
    """A simulator upstream and a gateway in front of it; yields (gateway URL, guard, the
    upstream's request log, the gateway's log)."""
    upstream_log: list[str] = []
    gate_log: list[str] = []
    sim = Simulator()
    SIMS.append(sim)
    with serve_in_thread(sim, log=upstream_log.append) as upstream:
        ledger = open_ledger(ledger_path)
        ledger.set_budget("team", usd=Decimal(usd))
        book = Book(ledger, budget="team")
        options = GuardOptions(
            budget="team", upstreams={"openai": upstream, "gemini": upstream}, grace_s=grace_s
        )
        guard = Guard(book, load_book(), options, log=gate_log.append)
        app = create_guard_app(guard, log=gate_log.append)
        try:
            with app_in_thread(app, lifespan="on") as url:
                yield url, guard, upstream_log, gate_log
        finally:
            guard.close()
            ledger.close()


def settled_runs(guard: Guard, count: int, timeout: float = 10.0) -> list[Run]:
    """The ledger's runs once `count` of them are closed: a sync call is settled just after
    its answer has gone back to the pipeline."""
    deadline = time.monotonic() + timeout
    while True:
        runs = guard.book.ledger.runs(limit=100)
        if sum(run.status != "open" for run in runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.02)


def test_sync_openai_call_that_fits_is_charged_its_actual_cost(tmp_path: Path) -> None:
    """An images.generate call is admitted, forwarded, and settled at its usage's cost."""
    with gateway(tmp_path / "ledger.sqlite3") as (url, guard, upstream, _):
        client = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0)
        with client:
            result = client.images.generate(model="gpt-image-2", prompt="a fox", quality="low")
        assert result.data
        runs = settled_runs(guard, 1)
        assert len(runs) == 1
        run = runs[0]
        assert run.run_id.startswith("guard-")
        assert run.status == "completed"
        assert Decimal(0) < run.spent <= run.estimate
        assert run.meta["route"] == "openai.images.generate"
        assert run.meta["reconciled"] is True
        assert run.owner.startswith("key:")
        assert len(upstream) == 1


def test_sync_call_over_budget_is_refused_after_one_request(tmp_path: Path) -> None:
    """Over budget: the SDK raises at once (one request), the upstream sees nothing."""
    with gateway(tmp_path / "ledger.sqlite3", usd="0.001") as (url, guard, upstream, log):
        client = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY)  # default retries on
        with client, pytest.raises(APIStatusError) as caught:
            client.images.generate(model="gpt-image-2", prompt="a fox", quality="high")
        assert caught.value.status_code == 402
        message = caught.value.message
        assert "'team'" in message
        assert "needs" in message
        assert "left" in message
        assert upstream == []
        assert sum("refused" in line for line in log) == 1
        gemini = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))
        with pytest.raises(genai_errors.ClientError) as refused:
            gemini.models.generate_content(
                model="gemini-3-pro-image",
                contents="an owl",
                config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
            )
        assert refused.value.code == 402
        assert "team" in str(refused.value.message)
        gemini.close()
        assert upstream == []
        assert sum("refused" in line for line in log) == 2
        assert [r.status for r in guard.book.ledger.runs(limit=10)] == ["refused", "refused"]


def test_gemini_sync_call_is_settled_from_usage_metadata(tmp_path: Path) -> None:
    """A generateContent call on an image model is charged from its usageMetadata."""
    with gateway(tmp_path / "ledger.sqlite3") as (url, guard, upstream, _):
        gemini = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))
        response = gemini.models.generate_content(
            model="gemini-3.1-flash-image",
            contents="an owl",
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
        )
        gemini.close()
        assert response.candidates
        (run,) = settled_runs(guard, 1)
        assert run.status == "completed"
        assert Decimal(0) < run.spent <= run.estimate
        assert run.meta["provider"] == "gemini"
        assert len(upstream) == 1


def batch_input(count: int = 3) -> bytes:
    """An OpenAI images batch input file."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-2", "prompt": f"a fox {i}", "quality": "low"},
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


@pytest.mark.slow
def test_openai_file_batch_is_admitted_and_settled_at_actual(tmp_path: Path) -> None:
    """Upload, create, poll, download through the gateway: settled from the batch's usage."""
    with gateway(tmp_path / "ledger.sqlite3") as (url, guard, _, log):
        client = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0)
        with client:
            upload = client.files.create(file=("in.jsonl", batch_input()), purpose="batch")
            batch = client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/images/generations",
                completion_window="24h",
            )
            (run,) = guard.book.ledger.runs(limit=10)
            assert run.status == "open"
            assert run.meta["job"] == batch.id
            assert run.meta["requests"] == 3
            for _ in range(100):
                batch = client.batches.retrieve(batch.id)
                if batch.status in ("completed", "failed", "expired", "cancelled"):
                    break
                SIMS[-1].clock.advance(900)
            assert batch.status == "completed"
            assert batch.output_file_id
            client.files.content(batch.output_file_id).read()
        (run,) = guard.book.ledger.runs(limit=10)
        assert run.status == "completed"
        assert Decimal(0) < run.spent <= run.estimate
        assert run.meta["reconciled"] is True
        text = "\n".join(log) + json.dumps(run.meta)
        assert OPENAI_KEY not in text


def test_batch_from_a_file_not_seen_is_refused(tmp_path: Path) -> None:
    """A batch whose input was uploaded elsewhere cannot be priced: refused, not forwarded."""
    with gateway(tmp_path / "ledger.sqlite3") as (url, guard, upstream, _):
        client = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY)
        with client, pytest.raises(APIStatusError) as caught:
            client.batches.create(
                input_file_id="file-elsewhere",
                endpoint="/v1/images/generations",
                completion_window="24h",
            )
        assert caught.value.status_code == 400
        assert "through this gateway" in caught.value.message
        assert upstream == []
        assert guard.book.ledger.runs(limit=10) == []


def test_gemini_inline_batch_is_settled_from_its_responses(tmp_path: Path) -> None:
    """An inline batch is priced from its requests and settled from the responses' usage."""
    with gateway(tmp_path / "ledger.sqlite3") as (url, guard, _, _log):
        gemini = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))
        job = gemini.batches.create(
            model="gemini-3.1-flash-image",
            src=[
                {"contents": f"an owl {i}", "config": {"response_modalities": ["IMAGE"]}}
                for i in range(3)
            ],
        )
        (run,) = guard.book.ledger.runs(limit=10)
        assert run.status == "open"
        assert run.meta["requests"] == 3
        assert job.name is not None
        for _ in range(100):
            job = gemini.batches.get(name=job.name)
            if job.done:
                break
            SIMS[-1].clock.advance(900)
        gemini.close()
        (run,) = guard.book.ledger.runs(limit=10)
        assert run.status == "completed"
        assert Decimal(0) < run.spent <= run.estimate


def test_budget_show_splits_gateway_spend_by_owner_never_showing_a_key(tmp_path: Path) -> None:
    """`X-Costguard-Owner` names the owner; without it, a fingerprint of the key does."""
    from typer.testing import CliRunner

    from costguard.cli.app import app
    from costguard.gateway.routes import owner_of

    ledger = tmp_path / "ledger.sqlite3"
    with gateway(ledger) as (url, guard, _, _):
        named = OpenAI(
            base_url=url + "/v1",
            api_key=OPENAI_KEY,
            max_retries=0,
            default_headers={"X-Costguard-Owner": "covers"},
        )
        keyed = OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0)
        with named, keyed:
            named.images.generate(model="gpt-image-2", prompt="a fox", quality="low")
            named.images.generate(model="gpt-image-2", prompt="an owl", quality="low")
            keyed.images.generate(model="gpt-image-2", prompt="a hare", quality="medium")
        runs = settled_runs(guard, 3)
    shown = CliRunner().invoke(app, ["budget", "show", "--ledger", str(ledger), "--output", "json"])
    assert shown.exit_code == 0, shown.output
    assert OPENAI_KEY not in shown.output
    (budget,) = json.loads(shown.output)["budgets"]
    owners = {o["owner"]: o for o in budget["owners"]}
    fingerprint = owner_of({"authorization": f"Bearer {OPENAI_KEY}"}, {})[0]
    assert set(owners) == {"covers", fingerprint}
    assert owners["covers"]["runs"] == 2
    assert owners[fingerprint]["runs"] == 1
    spent = {run.owner: Decimal(0) for run in runs}
    for run in runs:
        spent[run.owner] += run.spent
    assert {name: Decimal(o["spent"]) for name, o in owners.items()} == spent
    assert Decimal(budget["spent"]) == sum(spent.values())


def test_max_usd_caps_what_one_gateway_admits_counting_settled_spend(tmp_path: Path) -> None:
    """`--max-usd`: maxima held plus spend settled, by this gateway process."""
    from costguard.gateway.price import Priced

    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    ledger.set_budget("team", usd=Decimal(100))
    book = Book(ledger, budget="team", max_usd=Decimal("1.00"))
    call = Priced(Decimal("0.40"), Decimal("0.30"), 1, 1, ("gpt-image-2",), "standard")
    first = book.admit(call, owner="a", meta={})
    second = book.admit(call, owner="a", meta={})
    assert first.admitted
    assert second.admitted
    third = book.admit(call, owner="a", meta={})
    assert not third.admitted  # 0.80 held: 0.20 left
    assert (
        third.reason
        == "needs $0.40, more than the $0.20 left of this gateway's --max-usd $1.00; short by $0.20"
    )
    book.settle(first.run_id, Decimal("0.10"), status="completed", how="test")
    book.release(second.run_id, "the provider answered 500")
    assert book.admit(call, owner="a", meta={}).admitted  # 0.10 spent: 0.90 left
    assert book.admit(call, owner="a", meta={}).admitted  # 0.50 left
    assert not book.admit(call, owner="a", meta={}).admitted  # 0.10 left
    ledger.close()
