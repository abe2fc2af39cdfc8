"""Calibration in runs: usage samples recorded at collect (real runs only), calibrated runs.

Real runs here are runs against `costguard.simulate()` without `RunOptions.simulate`: to
costguard the simulator is a provider like any other, so what they collect teaches the next
calibration. Rehearsals (`simulate=...`) never do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.options import QuietReporter, RunOptions
from costguard.execution.reconcile import explain, summary_json
from costguard.execution.rundir import RunDir
from costguard.execution.runner import Runner
from costguard.ledger import Ledger, open_ledger
from costguard.pricing.calibration import Calibration, Observation, calibrate
from costguard.pricing.engine import RateBook
from costguard.providers.base import Provider
from costguard.providers.gemini import GeminiProvider
from costguard.providers.openai import OpenAIProvider
from costguard.queue.estimate import price_queue
from costguard.simulator import Simulator, simulate
from runkit import AS_OF, GEMINI_LINES, OPENAI_LINES, by_key, scenario_file, write_queue

PRO = "gemini-3-pro-image"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh SQLite ledger in tmp."""
    with open_ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


def sim_providers(name: str, base: Path) -> Provider:
    """Provider clients with a dummy key (the simulator accepts any key)."""
    if name == "gemini":
        return GeminiProvider("sim-key", base=base)
    return OpenAIProvider("sim-key", base=base)


@pytest.fixture
def make_runner(
    tmp_path: Path, ledger: Ledger, shipped_book: RateBook
) -> Callable[[Simulator], Runner]:
    """Factory: a Runner on the shipped cards whose sleeps advance the simulator's clock."""

    def make(sim: Simulator) -> Runner:
        return Runner(
            home=tmp_path / "home",
            ledger=ledger,
            book=shipped_book,
            providers=sim_providers,
            reporter=QuietReporter(lambda _text: None),
            sleep=lambda _s: sim.advance(7200),
        )

    return make


def options(queue: Path, out: Path, **kw: Any) -> RunOptions:
    """RunOptions with test defaults (fixed card date, fast polls, generous cap)."""
    kw.setdefault("max_usd", Decimal(5))
    return RunOptions(queue=queue, out=out, as_of=AS_OF, poll_interval=0.01, **kw)


def pro_queue(path: Path, count: int) -> Path:
    """`count` Gemini 3 Pro Image requests (one part)."""
    write_queue(
        path, [{"key": f"p{i}", "prompt": f"cover {i}", "model": PRO} for i in range(count)]
    )
    return path


def test_a_real_run_records_a_sample_per_request(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner], ledger: Ledger
) -> None:
    """Every request that reported usage is a sample: its card model, quantities and tokens."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES)
    with simulate("refusals", time_scale=0) as sim:
        summary = make_runner(sim).start(options(queue, tmp_path / "out"))
    lines = by_key(tmp_path / "out")
    samples = {s.key: s for s in ledger.samples(summary.run_id)}
    assert set(samples) == {k for k, line in lines.items() if line["tokens"]}
    for key, s in samples.items():
        line = lines[key]
        assert (s.model, s.size, s.status) == (line["model"], line["size"], line["status"])
        assert s.output_text_tokens == line["tokens"]["output_text_tokens"]
        assert s.input_text_tokens == line["tokens"]["input_text_tokens"]
        assert s.provider == "gemini"
        assert s.text_tokens_max == 0
    source = {line["key"]: line["prompt"] for line in GEMINI_LINES}
    assert all(s.prompt_bytes == len(source[k].encode()) for k, s in samples.items())
    assert any(s.status == "refused" for s in samples.values())


def test_a_rehearsal_records_no_sample(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner], ledger: Ledger
) -> None:
    """A `simulate=` run is a rehearsal: what it collects never teaches calibration."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES)
    with simulate("succeeded", time_scale=0) as sim:
        summary = make_runner(sim).start(options(queue, tmp_path / "out", simulate="succeeded"))
    assert summary.counts == {"ok": len(GEMINI_LINES)}
    assert ledger.samples(summary.run_id) == []


def test_sync_runs_record_each_sample_with_its_spend(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner], ledger: Ledger
) -> None:
    """In sync mode each answer's sample is written with its `sync:<key>` spend."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    with simulate("succeeded", time_scale=0) as sim:
        summary = make_runner(sim).start(options(queue, tmp_path / "out", mode="sync"))
    samples = ledger.samples(summary.run_id)
    assert sorted(s.key for s in samples) == sorted(line["key"] for line in OPENAI_LINES)
    assert {s.model for s in samples} == {"gpt-image-1.5", "gpt-image-2"}
    assert all(s.output_image_tokens > 0 for s in samples)


class Interrupted(Exception):
    """Stands for a crash between writing a part's manifest lines and its ledger write."""


def test_an_interrupted_collection_records_its_samples_from_the_manifest(
    tmp_path: Path,
    make_runner: Callable[[Simulator], Runner],
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests collected before a crash are skipped when collecting again; their samples are
    rebuilt from their manifest lines, so each request still has exactly one."""
    queue = pro_queue(tmp_path / "queue.jsonl", 5)
    out = tmp_path / "out"
    real = ledger.record_spend

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise Interrupted

    with simulate("succeeded", time_scale=0) as sim:
        runner = make_runner(sim)
        monkeypatch.setattr(ledger, "record_spend", crash)
        with pytest.raises(Interrupted):
            runner.start(options(queue, out))
        assert len(by_key(out)) == 5
        monkeypatch.setattr(ledger, "record_spend", real)
        summary = runner.start(options(queue, out))
    samples = ledger.samples(summary.run_id)
    assert [s.key for s in samples] == [f"p{i}" for i in range(5)]
    assert {s.output_text_tokens for s in samples} == {400}  # the simulator's fixed thinking


def low_thinking(count: int = 30, tokens: int = 100) -> Calibration:
    """A calibration that has seen Gemini 3 Pro Image think `tokens` tokens `count` times."""
    observations = [Observation("thinking", PRO, "1K", None, tokens, 1, count)]
    return calibrate(observations, requests=count, since=AS_OF)


def test_a_calibrated_run_reserves_its_calibrated_maximum_and_counts_overruns(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner], ledger: Ledger
) -> None:
    """Priced from a calibration that saw 100 thinking tokens (max 125) while the provider
    thinks 400: the reservation is the calibrated maximum, each line notes it, the actual is
    charged, and the summary says how many requests passed it."""
    queue = pro_queue(tmp_path / "queue.jsonl", 4)
    out = tmp_path / "out"
    calibration = low_thinking()
    with simulate("succeeded", time_scale=0) as sim:
        runner = make_runner(sim)
        card = price_queue(queue, runner.book, AS_OF).estimate.total("batch")
        summary = runner.start(options(queue, out, calibration=calibration))
    assert card is not None
    assert summary.estimate_max < card.max
    run = ledger.run(summary.run_id)
    assert run is not None
    assert run.estimate == summary.estimate_max  # what was reserved
    lines = by_key(out)
    assert all(Decimal(v["cost_usd"]) > Decimal(v["calibrated_max_usd"]) for v in lines.values())
    assert summary.actual == run.spent == sum(Decimal(v["cost_usd"]) for v in lines.values())
    assert summary.over_calibrated_max == 4
    assert (
        "4 requests cost more than their calibrated maximum; the next calibration includes them"
        in explain(summary)
    )
    assert summary.calibration is not None
    assert (summary.calibration["requests"], summary.calibration["since"]) == (30, "2026-11-01")
    assert [f["fact"] for f in summary.calibration["facts"]] == ["thinking"]
    assert '"over_calibrated_max": 4' in summary_json(summary)
    journal = RunDir(tmp_path / "home" / "runs" / summary.run_id).load()
    assert Calibration.from_json(journal.estimate["calibration"]).requests == 30


def test_an_uncalibrated_run_notes_no_maximum(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner]
) -> None:
    """Manifest lines and the summary stay as they were when the run is priced from the card."""
    queue = pro_queue(tmp_path / "queue.jsonl", 2)
    with simulate("succeeded", time_scale=0) as sim:
        summary = make_runner(sim).start(options(queue, tmp_path / "out"))
    assert all("calibrated_max_usd" not in v for v in by_key(tmp_path / "out").values())
    assert (summary.calibration, summary.over_calibrated_max) == (None, 0)


def test_calibration_shrinks_the_estimate_error_when_thinking_varies(
    tmp_path: Path, make_runner: Callable[[Simulator], Runner], ledger: Ledger
) -> None:
    """Against a provider whose Gemini 3 Pro Image thinks a log-normal 700 tokens a request
    (per key, up to 5,000), the card (400 typical / 4,000 max) misses the expected cost and
    overshoots the maximum. One real run of 40 requests later, a calibrated estimate of 40 new
    requests is closer on both, and its maximum still holds the actual cost."""
    scenario = scenario_file(
        tmp_path / "sc", "succeeded", name="thinking", thinking_tokens={"median": 700, "max": 5000}
    )
    learn = pro_queue(tmp_path / "learn.jsonl", 40)
    check = tmp_path / "check.jsonl"
    write_queue(check, [{"key": f"c{i}", "prompt": f"cover {i}", "model": PRO} for i in range(40)])
    with simulate(str(scenario), time_scale=0) as sim:
        runner = make_runner(sim)
        runner.start(options(learn, tmp_path / "out-learn"))
        calibration = ledger.calibration()
        card = price_queue(check, runner.book, AS_OF).estimate.total("batch")
        summary = runner.start(options(check, tmp_path / "out-check", calibration=calibration))
    learned = price_queue(check, runner.book, AS_OF, calibration=calibration).estimate
    after = learned.total("batch")
    assert card is not None
    assert after is not None
    assert (summary.estimate_expected, summary.estimate_max) == (after.expected, after.max)
    actual = summary.actual
    figures = {
        "expected error": (abs(card.expected - actual), abs(after.expected - actual)),
        "max overshoot": (card.max - actual, after.max - actual),
    }
    print(f"\nactual ${actual} for 40 requests; before -> after calibration from 40:")
    for name, (before, now) in figures.items():
        print(f"  {name}: ${before} -> ${now}")
    for before, now in figures.values():
        assert now < before
    assert after.max >= actual
    thinking = calibration.stats[("thinking", PRO, "1K", None)]
    assert thinking.samples == 40
    assert 500 < thinking.median < 1000
    lines = by_key(tmp_path / "out-check")
    over = sum(Decimal(v["cost_usd"]) > Decimal(v["calibrated_max_usd"]) for v in lines.values())
    assert summary.over_calibrated_max == over
