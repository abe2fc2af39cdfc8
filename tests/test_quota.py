"""Provider quotas: parts sized to fit, submitted as room is made, refusals waited out.

Unit tests of the decisions (`run/quota.py`, the plan's split, the journal's wait transitions)
and whole runs against the simulator enforcing each provider's quota as it does: OpenAI fails
a batch at validation with `token_limit_exceeded` (its message names the limit), Gemini answers
429 RESOURCE_EXHAUSTED at create (naming none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.errors import UsageError
from costguard.execution.journal import Journal, Part
from costguard.execution.quota import Quota, cap_key, parse_limits
from costguard.pricing.engine import RateBook, max_tokens
from costguard.queue.reader import QueueReader
from runkit import AS_OF, write_queue

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def part(number: int, tokens: int, *, state: str = "planned", model: str = "gpt-image-2") -> Part:
    return Part(
        f"p-{number}", "openai", model, "generations", 10, tag=f"costguard:run:p-{number}",
        state=state, tokens=tokens,
    )  # fmt: skip


def journal(parts: list[Part], **options: Any) -> Journal:
    made = Journal(
        run_id="run-q", created=T0.isoformat(), queue="q.jsonl", queue_sha256="0" * 64,
        queue_format="costguard", mode="batch", as_of=AS_OF.isoformat(), out="out",
        options=options, estimate={}, rate_cards=[], status="submitted", parts=parts,
    )  # fmt: skip
    saves: list[int] = []
    return made.bind(lambda _j: saves.append(1))


# --- parsing ---------------------------------------------------------------------------------


def test_limits_parse_repeated_and_comma_separated_items() -> None:
    assert parse_limits(["gpt-image-2=2_000_000", "a=1,b=2000"]) == {
        "gpt-image-2": 2_000_000,
        "a": 1,
        "b": 2000,
    }
    assert parse_limits(None) == {}


@pytest.mark.parametrize("bad", ["gpt-image-2", "=5", "m=0", "m=-3", "m=1.5", "m=lots"])
def test_a_limit_that_is_not_model_equals_a_positive_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not MODEL=TOKENS"):
        parse_limits([bad])


def test_the_cli_names_the_setting_or_option_that_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from costguard.api.settings import Settings

    monkeypatch.setenv("COSTGUARD_MAX_ENQUEUED_TOKENS", "gpt-image-2=1000")
    assert Settings().quota_limits(["gpt-image-2=500", "x=7"]) == {"gpt-image-2": 500, "x": 7}
    with pytest.raises(UsageError, match="--max-enqueued-tokens: 'x' is not MODEL=TOKENS"):
        Settings().quota_limits(["x"])
    monkeypatch.setenv("COSTGUARD_MAX_ENQUEUED_TOKENS", "oops")
    with pytest.raises(UsageError, match="COSTGUARD_MAX_ENQUEUED_TOKENS: 'oops'"):
        Settings().quota_limits(None)
    monkeypatch.setenv("COSTGUARD_MAX_REQUESTS_PER_PART", "0")
    with pytest.raises(UsageError, match="COSTGUARD_MAX_REQUESTS_PER_PART='0'"):
        Settings().part_size(None)
    assert Settings().part_size(25) == 25


# --- what fits ---------------------------------------------------------------------------------


def test_parts_fit_while_their_models_tokens_in_flight_leave_room() -> None:
    flying = [part(1, 100, state="submitted"), part(2, 100, state="submitted")]
    waiting = part(3, 100)
    other = part(4, 100, model="gpt-image-1.5")
    made = journal([*flying, waiting, other], max_enqueued_tokens={"gpt-image-2": 300})
    quota = Quota()
    assert quota.fits(waiting, made)  # 200 + 100 <= 300
    assert quota.fits(other, made)  # another model's quota
    assert not Quota({"gpt-image-2": 250}).fits(waiting, made)  # the lowest limit wins
    made.quota_limits["gpt-image-2"] = 299  # learned from the provider
    assert not quota.fits(waiting, made)
    flying[0].job_state = "terminal:succeeded"  # finished: it frees its tokens
    assert quota.fits(waiting, made)


def test_a_cap_learned_from_refusals_limits_parts_in_flight() -> None:
    flying = [part(1, 1, state="submitted"), part(2, 1, state="submitted")]
    waiting = part(3, 1)
    made = journal([*flying, waiting])
    made.quota_caps[cap_key(waiting)] = 2
    assert not Quota().fits(waiting, made)
    made.quota_caps[cap_key(waiting)] = 3
    assert Quota().fits(waiting, made)


def test_with_nothing_in_flight_a_part_always_goes() -> None:
    lone = part(1, 10_000)
    assert Quota({"gpt-image-2": 10}).fits(lone, journal([lone]))


# --- the journal's wait -------------------------------------------------------------------------


def test_a_job_failed_for_quota_sends_its_part_back_under_a_new_tag() -> None:
    from costguard.providers.base import JobStatus

    p = part(1, 100, state="submitted")
    p.job_id = "batch_1"
    made = journal([p])
    status = JobStatus(
        "failed", "failed", error="token_limit_exceeded: ...", quota=True, quota_limit=2_000_000
    )
    made.observe({"p-1": status}, T0)
    assert (p.state, p.job_id, p.job_state, p.attempt) == ("planned", None, None, 2)
    assert p.tag == "costguard:run:p-1#2"
    assert (p.quota_waits, p.waiting_since) == (1, T0.isoformat())
    assert made.quota_limits == {"gpt-image-2": 2_000_000}
    made.submitting(p)
    made.quota_refused(p, T0 + dt.timedelta(seconds=30), cap=("openai|gpt-image-2", 1))
    assert (p.tag, p.quota_waits) == ("costguard:run:p-1#3", 1)  # the same wait goes on
    assert made.quota_caps == {"openai|gpt-image-2": 1}
    made.submitting(p)
    made.submitted(p, "batch_2", "file_2", at=T0 + dt.timedelta(seconds=90))
    assert (p.state, p.waiting_since, p.quota_wait_s) == ("submitted", None, 90.0)


def test_a_held_part_counts_one_wait_however_long() -> None:
    p = part(1, 1)
    made = journal([p])
    made.hold(p, T0)
    made.hold(p, T0 + dt.timedelta(minutes=5))
    assert (p.quota_waits, p.waiting_since) == (1, T0.isoformat())


# --- the plan ----------------------------------------------------------------------------------


def lines(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "key": f"k{i:03}",
            "prompt": "a red fox",
            "model": "gpt-image-2",
            "quality": "low",
            **extra,
        }
        for i in range(count)
    ]


def planned(
    tmp_path: Path, book: RateBook, rows: list[dict[str, Any]], **options: Any
) -> list[Part]:
    from costguard.execution.plan import plan

    queue = tmp_path / "queue.jsonl"
    write_queue(queue, rows)
    base = {"model": None, "size": None, "quality": None, "aspect_ratio": None}
    made = Journal(
        run_id="run-p", created=T0.isoformat(), queue=str(queue), queue_sha256="0" * 64,
        queue_format="costguard", mode="batch", as_of=AS_OF.isoformat(),
        out=str(tmp_path / "out"), options=base | options, estimate={}, rate_cards=[],
    )  # fmt: skip
    plan(made, book, len(rows))
    return made.parts


def test_max_requests_per_part_splits_a_group_into_equal_parts(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    parts = planned(tmp_path, shipped_book, lines(100), max_requests_per_part=10)
    assert [p.requests for p in parts] == [10] * 10
    assert len({p.tokens for p in parts}) == 1


def test_parts_are_sized_to_the_models_enqueued_token_limit(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    rows = lines(50)
    one = max_tokens(
        shipped_book.resolve("gpt-image-2", AS_OF).model,
        next(iter(QueueReader(write_queue_path(tmp_path, rows), shipped_book, AS_OF))),
    )
    parts = planned(tmp_path, shipped_book, rows, max_enqueued_tokens={"gpt-image-2": one * 12})
    assert [p.requests for p in parts] == [12, 12, 12, 12, 2]
    assert all(p.tokens is not None and p.tokens <= one * 12 for p in parts)


def write_queue_path(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "probe.jsonl"
    write_queue(path, rows[:1])
    return path


def test_a_request_larger_than_the_limit_is_refused_at_plan_naming_its_line(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    with pytest.raises(UsageError, match=r"line 1: this request may count up to [\d,]+ tokens"):
        planned(tmp_path, shipped_book, lines(3), max_enqueued_tokens={"gpt-image-2": 10})


def test_without_quota_options_the_plan_is_what_it_was(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    parts = planned(tmp_path, shipped_book, lines(30))
    assert [(p.id, p.requests) for p in parts] == [("gpt-image-2-1", 30)]


# --- whole runs against the simulator enforcing the provider's quota -----------------------------

PARTS = 10
PER_PART = 3
HOLDS = 3
"""The quota holds this many of the run's (equal) parts at once."""


class Watched:
    """A provider client that logs, in order, each job it created (with the request keys it
    sent) and each job it saw end (and whether it ended for quota)."""

    def __init__(self, inner: Any, log: list[tuple[str, str, Any]]) -> None:
        self.inner = inner
        self.log = log

    def submit(self, model: str, requests: Any, tag: str, workdir: Path) -> Any:
        keys: list[str] = []

        def spy() -> Any:
            for request in requests:
                keys.append(request.key)
                yield request

        job = self.inner.submit(model, spy(), tag, workdir)
        self.log.append(("create", job.job_id, tuple(keys)))
        return job

    def status(self, job_id: str) -> Any:
        found = self.inner.status(job_id)
        if found.terminal:
            self.log.append(("end", job_id, found.quota))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def most_in_flight(log: list[tuple[str, str, Any]]) -> tuple[int, dict[str, tuple[str, ...]]]:
    """(the most jobs in flight at once, keys per job), jobs failed for quota left out: they
    never ran. An upper bound: a job counts until the runner saw it end."""
    refused = {job for kind, job, quota in log if kind == "end" and quota}
    flying: set[str] = set()
    most = 0
    keys: dict[str, tuple[str, ...]] = {}
    for kind, job, extra in log:
        if job in refused:
            continue
        if kind == "create":
            flying.add(job)
            keys[job] = extra
            most = max(most, len(flying))
        else:
            flying.discard(job)
    return most, keys


def part_tokens(book: RateBook, tmp_path: Path, model: str) -> int:
    """What the runner counts for one part (its estimate: at least the simulator's count)."""
    rows = quota_lines(model)[:PER_PART]
    probe = tmp_path / "probe.jsonl"
    write_queue(probe, rows)
    card = book.resolve(model, AS_OF).model
    return sum(max_tokens(card, request) for request in QueueReader(probe, book, AS_OF))


def quota_lines(model: str) -> list[dict[str, Any]]:
    extra = {"quality": "low"} if model.startswith("gpt") else {}
    return [
        {"key": f"q{i:02}", "prompt": "a red fox in snow", "model": model, **extra}
        for i in range(PARTS * PER_PART)
    ]


@pytest.mark.parametrize(
    ("model", "how"),
    [
        ("gpt-image-2", "provider"),  # OpenAI fails the 4th at validation, naming the limit
        ("gpt-image-2", "given"),  # the user gave the limit: nothing is refused
        ("gemini-3.1-flash-image", "provider"),  # Gemini answers 429 past 3 jobs
        ("gemini-3.1-flash-image", "given"),
    ],
)
def test_ten_parts_through_a_quota_that_holds_three(
    model: str, how: str, tmp_path: Path, shipped_book: RateBook
) -> None:
    """All 10 parts finish; at most 3 run at once; no request is sent in two jobs that ran;
    the spend is counted once; waits are reported."""
    from costguard.execution.options import QuietReporter, RunOptions
    from costguard.execution.runner import Runner
    from costguard.ledger import open_ledger
    from costguard.providers.gemini import GeminiProvider
    from costguard.providers.openai import OpenAIProvider
    from costguard.report.build import report_facts, write_report
    from costguard.simulator import simulate
    from costguard.simulator.scenario import Quota as SimQuota
    from costguard.simulator.scenario import load_scenario
    from runkit import by_key

    queue = tmp_path / "queue.jsonl"
    write_queue(queue, quota_lines(model))
    tokens = part_tokens(shipped_book, tmp_path, model)
    limit = tokens * 7 // 2  # 3.5 parts
    if model.startswith("gpt"):
        sim_quota = SimQuota(enqueued_tokens={model: limit})
    else:
        sim_quota = SimQuota(concurrent_jobs=HOLDS)
    scenario = load_scenario("succeeded").model_copy(update={"quota": sim_quota})
    log: list[tuple[str, str, Any]] = []

    def providers(name: str, base: Path) -> Any:
        inner = GeminiProvider("sim-key", base=base) if name == "gemini" else None
        inner = inner or OpenAIProvider("sim-key", base=base)
        return Watched(inner, log)

    given = {model: limit} if how == "given" else {}
    messages: list[str] = []
    with (
        simulate(scenario, time_scale=0) as sim,
        open_ledger(tmp_path / "ledger.sqlite3") as ledger,
    ):
        runner = Runner(
            home=tmp_path / "home", ledger=ledger, book=shipped_book, providers=providers,
            reporter=QuietReporter(messages.append), sleep=lambda _s: sim.advance(1800),
        )  # fmt: skip
        options = RunOptions(
            queue=queue, out=tmp_path / "out", as_of=AS_OF, poll_interval=0.01,
            max_usd=Decimal(50), max_requests_per_part=PER_PART, max_enqueued_tokens=given,
        )  # fmt: skip
        summary = runner.start(options)
        run = ledger.run(summary.run_id)
        done = runner.run_dir(summary.run_id).load()
        learned = done.quota_limits
        page = write_report(
            done, shipped_book, ledger, now=dt.datetime.now(dt.UTC), version="test", workers=1
        )
    facts = report_facts(done, shipped_book, None, now=dt.datetime.now(dt.UTC))
    assert facts["quota"]["waits"] == summary.quota_waits
    assert facts["quota"]["wait_s"] == round(summary.quota_wait_s, 3)
    assert "waited for the provider&#x27;s batch quota" in page.read_text(encoding="utf-8")
    assert summary.counts == {"ok": PARTS * PER_PART}
    assert len(summary.parts) == PARTS
    assert all(p.state == "collected" for p in summary.parts)
    most, keys = most_in_flight(log)
    assert most <= HOLDS, log
    sent = [key for job_keys in keys.values() for key in job_keys]
    assert sorted(sent) == sorted(row["key"] for row in quota_lines(model)), "sent twice"
    assert len(keys) == PARTS
    lines = by_key(tmp_path / "out")
    total = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    assert run is not None
    assert (run.status, run.parts, run.reserved) == ("collected", PARTS, 0)
    assert summary.actual == total == run.spent
    waited = summary.quota_waits
    assert waited >= PARTS - HOLDS  # every part past the third waited at least once
    line = summary.quota_line()
    assert line is not None
    assert f"{waited:,} submission(s) waited for the provider's quota" in line
    refused = [job for kind, job, quota in log if kind == "end" and quota]
    if how == "given" or model.startswith("gemini"):
        assert refused == []  # nothing was created that the quota could not hold
    else:
        assert refused  # OpenAI's failures at validation, none billed ...
        assert learned == {model: limit}  # ... and their message taught the limit


def test_cancel_withdraws_the_parts_waiting_for_quota_so_collect_never_sends_them(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    """`cancel` on a detached run: its jobs are cancelled and its waiting parts withdrawn;
    `collect` records their requests as cancelled, at no cost, and creates no job."""
    from costguard.execution.options import QuietReporter, RunOptions, RunPendingError
    from costguard.execution.runner import Runner
    from costguard.ledger import open_ledger
    from costguard.providers.openai import OpenAIProvider
    from costguard.simulator import simulate
    from costguard.simulator.scenario import load_scenario
    from runkit import by_key

    model = "gpt-image-2"
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, quota_lines(model))
    limit = part_tokens(shipped_book, tmp_path, model) * 7 // 2
    log: list[tuple[str, str, Any]] = []
    with (
        simulate(load_scenario("slow"), time_scale=0) as sim,
        open_ledger(tmp_path / "ledger.sqlite3") as ledger,
    ):
        runner = Runner(
            home=tmp_path / "home", ledger=ledger, book=shipped_book,
            providers=lambda _n, base: Watched(OpenAIProvider("sim-key", base=base), log),
            reporter=QuietReporter(lambda _m: None), sleep=lambda _s: sim.advance(60),
        )  # fmt: skip
        options = RunOptions(
            queue=queue, out=tmp_path / "out", as_of=AS_OF, poll_interval=0.01,
            max_usd=Decimal(50), max_requests_per_part=PER_PART,
            max_enqueued_tokens={model: limit}, detach=True,
        )  # fmt: skip
        with pytest.raises(RunPendingError, match="7 part\\(s\\) wait for the provider's quota"):
            runner.start(options)
        (folder,) = (tmp_path / "home" / "runs").iterdir()
        jobs, withdrawn = runner.cancel(folder.name)
        assert len(jobs) == HOLDS
        assert len(withdrawn) == PARTS - HOLDS
        summary = runner.collect(folder.name, dataclasses.replace(options, detach=False))
        run = ledger.run(summary.run_id)
    assert sum(1 for kind, _job, _x in log if kind == "create") == HOLDS  # nothing more sent
    lines = by_key(tmp_path / "out")
    assert len(lines) == PARTS * PER_PART
    held_back = [line for line in lines.values() if line["part"] in withdrawn]
    assert len(held_back) == (PARTS - HOLDS) * PER_PART
    assert {line["status"] for line in held_back} == {"cancelled"}
    assert all(Decimal(line["cost_usd"]) == 0 for line in held_back)
    assert all("before it was submitted" in line["reason"] for line in held_back)
    assert run is not None
    assert (run.status, run.parts, run.reserved) == ("collected", PARTS, 0)
    assert summary.counts.get("cancelled", 0) >= (PARTS - HOLDS) * PER_PART
    assert summary.retry_count >= (PARTS - HOLDS) * PER_PART


def test_a_part_larger_than_the_limit_the_provider_names_stops_the_run_clearly(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    """OpenAI names a limit smaller than a whole part: the run stops (exit 8) saying how to
    plan parts that fit; `cancel` then `collect` settles it at $0, nothing more sent."""
    from costguard.errors import ProviderError
    from costguard.execution.options import QuietReporter, RunOptions
    from costguard.execution.runner import Runner
    from costguard.ledger import open_ledger
    from costguard.providers.openai import OpenAIProvider
    from costguard.simulator import simulate
    from costguard.simulator.scenario import Quota as SimQuota
    from costguard.simulator.scenario import load_scenario

    model = "gpt-image-2"
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, quota_lines(model)[:6])
    small = SimQuota(enqueued_tokens={model: 1000})  # a part of 3 counts ~830: 6 do not fit
    log: list[tuple[str, str, Any]] = []
    with (
        simulate(
            load_scenario("succeeded").model_copy(update={"quota": small}), time_scale=0
        ) as sim,
        open_ledger(tmp_path / "ledger.sqlite3") as ledger,
    ):
        runner = Runner(
            home=tmp_path / "home", ledger=ledger, book=shipped_book,
            providers=lambda _n, base: Watched(OpenAIProvider("sim-key", base=base), log),
            reporter=QuietReporter(lambda _m: None), sleep=lambda _s: sim.advance(600),
        )  # fmt: skip
        options = RunOptions(
            queue=queue, out=tmp_path / "out", as_of=AS_OF, poll_interval=0.01,
            max_usd=Decimal(5),
        )  # fmt: skip
        with pytest.raises(ProviderError) as raised:
            runner.start(options)
        message = str(raised.value)
        assert "can never be submitted; nothing of it was sent" in message
        assert f"--max-enqueued-tokens {model}=1000" in message
        assert "OpenAI allows" in message
        assert "resumes" not in message  # no contradictory advice appended
        (folder,) = (tmp_path / "home" / "runs").iterdir()
        jobs, withdrawn = runner.cancel(folder.name)
        assert (jobs, withdrawn) == ([], ["gpt-image-2-1"])
        summary = runner.collect(folder.name, options)
        run = ledger.run(summary.run_id)
    assert summary.counts == {"cancelled": 6}
    assert run is not None
    assert (run.status, run.spent, run.reserved) == ("collected", 0, 0)
    assert sum(1 for kind, _job, _x in log if kind == "create") == 1  # the one OpenAI failed
