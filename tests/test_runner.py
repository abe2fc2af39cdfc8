"""The runner as a library: `Runner` against the in-process simulator and a real ledger in tmp.

Every test drives the official SDKs through `costguard.simulate()`; the simulated clock is
stopped (`time_scale=0`) and the runner's `sleep` moves it forward instead, so a 24 h batch
window plays out in a few polls and no test waits on wall time.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from costguard.errors import (
    BudgetExceededError,
    LedgerError,
    OutputError,
    QueueError,
    UsageError,
)
from costguard.execution.files import write_atomic
from costguard.execution.options import QuietReporter, RunOptions, RunPendingError, run_id_for
from costguard.execution.reconcile import Summary, explain
from costguard.execution.rundir import RunDir
from costguard.execution.runner import Runner
from costguard.ledger import Ledger, SqliteLedger, open_ledger
from costguard.money import usd_together
from costguard.pricing.engine import RateBook
from costguard.providers.base import Provider
from costguard.providers.gemini import GeminiProvider
from costguard.providers.openai import OpenAIProvider
from costguard.queue.estimate import price_queue
from costguard.simulator import Simulator, simulate
from runkit import (
    AS_OF,
    GEMINI_LINES,
    LINES,
    OPENAI_LINES,
    SCENARIOS,
    by_key,
    check_images,
    expected_statuses,
    retry_bytes,
    token_price,
    write_queue,
)

POLL_ADVANCE_S = 2 * 3600
"""Simulated seconds each of the runner's sleeps moves the stopped simulator clock."""


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh SQLite ledger in tmp, closed after the test."""
    with open_ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The runner's home (runs/ lives here)."""
    return tmp_path / "home"


def sim_providers(name: str, base: Path) -> Provider:
    """Provider clients with a dummy key (the simulator accepts any key)."""
    if name == "gemini":
        return GeminiProvider("sim-key", base=base)
    return OpenAIProvider("sim-key", base=base)


@pytest.fixture
def make_runner(
    home: Path, ledger: Ledger, shipped_book: RateBook
) -> Callable[..., tuple[Runner, list[str]]]:
    """Factory: a Runner on the shipped cards whose sleeps advance `sim`'s clock."""

    def make(
        sim: Simulator,
        providers: Callable[[str, Path], Provider] = sim_providers,
        *,
        reporter: QuietReporter | None = None,
        on: Ledger | None = None,
    ) -> tuple[Runner, list[str]]:
        messages: list[str] = []
        runner = Runner(
            home=home,
            ledger=on or ledger,
            book=shipped_book,
            providers=providers,
            reporter=reporter or QuietReporter(messages.append),
            sleep=lambda _s: sim.advance(POLL_ADVANCE_S),
        )
        return runner, messages

    return make


def options(queue: Path, out: Path, **kw: Any) -> RunOptions:
    """RunOptions with test defaults (fixed card date, fast polls, generous cap)."""
    kw.setdefault("max_usd", Decimal(5))
    return RunOptions(queue=queue, out=out, as_of=AS_OF, poll_interval=0.01, **kw)


def assert_reconciled(summary: Summary, ledger: Ledger, out: Path, parts: int) -> None:
    """Summary total == manifest sum == ledger spend, recorded once per part, run settled."""
    lines = by_key(out)
    total = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    run = ledger.run(summary.run_id)
    assert run is not None
    assert summary.actual == total == run.spent
    assert run.parts == parts
    assert run.status == "collected"
    assert run.reserved == 0


# --- every scenario, both providers ---------------------------------------------------------


@pytest.mark.parametrize("provider", ["gemini", "openai"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_end_to_end_statuses_images_retry_and_cost(
    scenario: str,
    provider: str,
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
    shipped_book: RateBook,
) -> None:
    """Each scenario gives the right status per key, decodable images, the retry lines and costs."""
    lines = LINES[provider]
    queue = tmp_path / "queue.jsonl"
    raw = write_queue(queue, lines)
    out = tmp_path / "out"
    with simulate(scenario, time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out, simulate=scenario))
    expected = expected_statuses(lines, scenario, provider)
    manifest = by_key(out)
    assert {k: v["status"] for k, v in manifest.items()} == expected
    assert summary.counts == {s: list(expected.values()).count(s) for s in set(expected.values())}
    n_of = {line["key"]: line.get("n", 1) for line in lines}
    for key, line in manifest.items():
        if line["status"] == "ok":
            check_images(out, line, n_of[key])
        else:
            assert line["files"] == []
            assert line["reason"]
        assert Decimal(line["cost_usd"]) == token_price(shipped_book, line, "batch")
    retried = {k: s for k, s in expected.items() if s not in ("ok", "refused")}
    retry = out / "retry.jsonl"
    if retried:
        assert retry.read_bytes() == retry_bytes(raw, lines, retried)
        assert (summary.retry_file, summary.retry_count) == (retry, len(retried))
    else:
        assert not retry.exists()
        assert summary.retry_file is None
    assert_reconciled(summary, ledger, out, parts=2)
    assert len(sim.jobs) == 2
    assert {job.provider for job in sim.jobs} == {provider}
    assert summary.sync_equivalent == sum(
        (token_price(shipped_book, line, "standard") for line in manifest.values()), Decimal(0)
    )
    notes = "\n".join(explain(summary))
    if scenario in ("expired", "cancelled", "failed"):
        assert all(part.id in notes for part in summary.parts)
    if scenario == "refusals":
        assert "--retry-refused" in notes


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_retry_refused_puts_refusals_in_the_retry_file(
    provider: str, tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]]
) -> None:
    """With retry_refused the refused requests' original lines go to retry.jsonl too."""
    lines = LINES[provider]
    queue = tmp_path / "queue.jsonl"
    raw = write_queue(queue, lines)
    out = tmp_path / "out"
    with simulate("refusals", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out, retry_refused=True))
    refused = {k: s for k, s in expected_statuses(lines, "refusals", provider).items() if s != "ok"}
    assert refused, "the queue must have a refused request"
    assert (out / "retry.jsonl").read_bytes() == retry_bytes(raw, lines, refused)
    assert summary.refused_not_retried == 0
    assert not any("--retry-refused" in note for note in explain(summary))


def test_retry_file_keeps_the_original_bytes_of_bom_and_unterminated_lines(
    tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]]
) -> None:
    """A BOM on line 1 is dropped and a last line without newline gets one; the rest is verbatim."""
    first = b'{"key":"x1","prompt":"caf\xc3\xa9 [refuse]","model":"gpt-image-2","size":"1024x1024"}'
    last = b'{ "key" : "x2", "prompt" : "[refuse] \\u00e9sc\\taped", "model" : "gpt-image-2" }'
    queue = tmp_path / "queue.jsonl"
    queue.write_bytes(b"\xef\xbb\xbf" + first + b"\n" + last)
    out = tmp_path / "out"
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out, retry_refused=True))
    assert summary.counts == {"refused": 2}
    assert (out / "retry.jsonl").read_bytes() == first + b"\n" + last + b"\n"


# --- provider paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inline_limit", "uploads"), [(None, 0), (1024, 2)], ids=["inline", "file"]
)
def test_gemini_submits_inline_or_through_the_files_api(
    inline_limit: int | None,
    uploads: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
) -> None:
    """Jobs under the inline limit go inline; over it, as an uploaded JSONL file, same results."""
    if inline_limit is not None:
        monkeypatch.setattr("costguard.providers.gemini.INLINE_LIMIT", inline_limit)
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES)
    out = tmp_path / "out"
    with simulate("shuffled", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out))
    assert sim.calls.count("gemini.batches.create") == 2
    assert sim.calls.count("gemini.files.upload") >= uploads
    assert [u.provider for u in sim.uploads] == ["gemini"] * uploads
    assert (sim.calls.count("gemini.files.download") > 0) == bool(uploads)
    journal = RunDir(Path(runner.home) / "runs" / summary.run_id).load()
    assert all((part.input_file_id is not None) == bool(uploads) for part in journal.parts)
    manifest = by_key(out)
    assert {line["status"] for line in manifest.values()} == {"ok"}
    for line in manifest.values():
        check_images(out, line, 1)
    assert_reconciled(summary, ledger, out, parts=2)


@pytest.mark.parametrize(
    ("size", "count", "inline"),
    [("1K", 10, True), ("1K", 11, False), ("4K", 1, True), ("4K", 2, False), ("512", 32, True)],
    ids=["1K-x10-inline", "1K-x11-file", "4K-x1-inline", "4K-x2-file", "512-x32-inline"],
)
def test_gemini_goes_inline_only_when_its_images_are_few(
    size: str,
    count: int,
    inline: bool,
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
) -> None:
    """The inline rule counts the images a job returns (x typical bytes for the size), not
    only its request bytes: 11 images at 1K (16.5 MiB expected) or two at 4K go as a file."""
    queue = tmp_path / "queue.jsonl"
    write_queue(
        queue,
        [
            {"key": f"k{i}", "prompt": "a cube", "model": "gemini-3.1-flash-image", "size": size}
            for i in range(count)
        ],
    )
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, tmp_path / "out"))
    assert summary.counts == {"ok": count}
    assert len(sim.uploads) == (0 if inline else 1)


def test_a_finished_inline_job_is_downloaded_once(
    tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]]
) -> None:
    """The poll that sees an inline job finished is the body its results are read from: its
    images are not downloaded a second time by `results`."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES)
    out = tmp_path / "out"
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        with pytest.raises(RunPendingError):
            runner.start(options(queue, out, detach=True))
        assert sim.calls.count("gemini.files.upload") == 0
        sim.advance(10 * 24 * 3600)  # every job has finished
        before = sim.calls.count("gemini.batches.get")
        summary = runner.collect(run_id_for(options(queue, out)), options(queue, out))
        gets = sim.calls.count("gemini.batches.get") - before
    assert summary.counts == {"ok": len(GEMINI_LINES)}
    assert gets == sim.calls.count("gemini.batches.create")  # one GET per job, no second


def write_png(path: Path, colour: str) -> Path:
    """A small real PNG (an input image for an edit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format="PNG")
    return path


def test_openai_edits_and_generations_go_to_separate_jobs(
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
    shipped_book: RateBook,
) -> None:
    """Lines with input images become one edits job per model, apart from the generations job."""
    write_png(tmp_path / "inputs" / "red.png", "red")
    blue = write_png(tmp_path / "blue.png", "blue")
    gen = {"model": "gpt-image-1.5", "size": "1024x1024", "quality": "low"}
    lines = [
        {"key": "gen-1", "prompt": "A red kettle", **gen},
        {"key": "edit-1", "prompt": "Make it green", "images": ["inputs/red.png"], **gen},
        {"key": "gen-2", "prompt": "A blue kettle", **gen, "n": 2},
        {"key": "edit-2", "prompt": "Both, side by side", "images": ["inputs/red.png", str(blue)]}
        | gen,
        {
            "key": "g-edit",
            "prompt": "Add snow",
            "model": "gemini-3.1-flash-image",
            "images": ["blue.png"],
        },
    ]
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, lines)
    out = tmp_path / "out"
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out, keep_raw=True))  # to read what was sent
        endpoints = sorted(batch.endpoint for batch in sim.openai.batches.values())
    assert endpoints == ["/v1/images/edits", "/v1/images/generations"]
    assert {p.id: p.requests for p in summary.parts} == {
        "gemini-3.1-flash-image-1": 1,
        "gpt-image-1.5-1": 2,
        "gpt-image-1.5-edits-1": 2,
    }
    workdir = Path(runner.home) / "runs" / summary.run_id / "parts"
    sent = [
        json.loads(raw)
        for raw in (workdir / "gpt-image-1.5-edits-1" / "input.jsonl").read_bytes().split(b"\n")
        if raw
    ]
    assert [s["custom_id"] for s in sent] == ["edit-1", "edit-2"]
    assert [len(s["body"]["images"]) for s in sent] == [1, 2]
    assert all(
        i["image_url"].startswith("data:image/png;base64,")
        for s in sent
        for i in s["body"]["images"]
    )
    manifest = by_key(out)
    assert {k: v["status"] for k, v in manifest.items()} == dict.fromkeys(manifest, "ok")
    assert (
        manifest["edit-2"]["tokens"]["input_image_tokens"]
        > manifest["edit-1"]["tokens"]["input_image_tokens"]
        > 0
    )
    assert manifest["g-edit"]["tokens"]["input_image_tokens"] > 0
    check_images(out, manifest["gen-2"], 2)
    for line in manifest.values():
        assert Decimal(line["cost_usd"]) == token_price(shipped_book, line, "batch")
    assert_reconciled(summary, ledger, out, parts=3)


def test_sync_mode_pays_full_price_and_creates_no_batch_job(
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
    shipped_book: RateBook,
) -> None:
    """Sync mode calls the image endpoints at standard prices and says what batch would save."""
    lines = GEMINI_LINES[:3] + OPENAI_LINES[:2]
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, lines)
    out = tmp_path / "out"
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        summary = runner.start(options(queue, out, mode="sync", concurrency=3))
    assert sim.calls.count("openai.batches.create") == 0
    assert sim.calls.count("gemini.batches.create") == 0
    assert sim.jobs == []
    assert sim.uploads == []
    assert sim.calls.count("openai.images.generate") == 2
    assert sim.calls.count("gemini.models.generateContent") == 3
    manifest = by_key(out)
    assert {line["status"] for line in manifest.values()} == {"ok"}
    check_images(out, manifest["o-pair"], 2)
    standard = sum(
        (token_price(shipped_book, line, "standard") for line in manifest.values()), Decimal(0)
    )
    batch = sum(
        (token_price(shipped_book, line, "batch") for line in manifest.values()), Decimal(0)
    )
    assert summary.actual == standard
    assert summary.batch_equivalent == batch
    assert summary.sync_equivalent is None
    assert batch < standard
    run = ledger.run(summary.run_id)
    assert run is not None
    assert (run.spent, run.parts, run.status) == (standard, len(lines), "collected")


# --- the budget guard ---------------------------------------------------------------------


def maximum(queue: Path, book: RateBook) -> Decimal:
    """The batch maximum `costguard estimate` gives for a queue."""
    total = price_queue(queue, book, AS_OF).estimate.total("batch")
    assert total is not None
    return total.max


def test_over_max_usd_sends_nothing_and_reserves_nothing(
    tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]], ledger: Ledger
) -> None:
    """A maximum over --max-usd is refused before any call, job, upload or ledger row."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES + OPENAI_LINES)
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        opts = options(queue, tmp_path / "out", max_usd=Decimal("0.01"))
        with pytest.raises(BudgetExceededError, match=r"passes --max-usd \$0\.01 by \$0\.\d+"):
            runner.start(opts)
    assert sim.calls.count() == 0
    assert (sim.jobs, sim.uploads) == ([], [])
    assert ledger.runs() == []
    assert not (runner.home / "runs" / run_id_for(opts)).exists()
    assert not (tmp_path / "out").exists()


def test_ledger_budget_refuses_with_the_shortfall(
    tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]], ledger: Ledger
) -> None:
    """A ledger budget with less left than the run's maximum refuses it and names the shortfall."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        opts = options(queue, tmp_path / "out")
        ledger.set_budget(usd=maximum(queue, runner.book) - Decimal("0.01"), period="none")
        with pytest.raises(BudgetExceededError, match=r"short by \$0\.0100") as refused:
            runner.start(opts)
    assert "nothing was sent" in str(refused.value)
    assert sim.calls.count() == 0
    runs = ledger.runs()
    assert [(r.status, r.reserved, r.spent) for r in runs] == [("refused", 0, 0)]
    assert ledger.status(at=dt.datetime.now(tz=dt.UTC)).reserved == 0
    assert not (runner.home / "runs" / run_id_for(opts)).exists()


def test_a_finished_runs_actual_cost_counts_for_the_next_run(
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
    shipped_book: RateBook,
) -> None:
    """After a run settles, the budget counts its actual spend (not its maximum) for the next."""
    first, second, third = (tmp_path / f"q{i}.jsonl" for i in range(3))
    write_queue(first, OPENAI_LINES)
    write_queue(second, [dict(OPENAI_LINES[0], key="second")])
    write_queue(third, [dict(line, key=f"third-{i}") for i, line in enumerate(OPENAI_LINES[:3])])
    maxima = [maximum(queue, shipped_book) for queue in (first, second, third)]
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        one = runner.start(options(first, tmp_path / "o1"))
        assert 0 < one.actual < maxima[0]
        # Room for the second run only because the first now counts what it actually cost.
        ledger.set_budget(usd=one.actual + maxima[1], period="none")
        two = runner.start(options(second, tmp_path / "o2"))
        left = maxima[1] - two.actual
        assert ledger.status(at=dt.datetime.now(tz=dt.UTC)).remaining == left
        assert maxima[2] > left
        with pytest.raises(
            BudgetExceededError,
            match=re.escape(
                "short by "
                + usd_together(
                    maxima[2],
                    one.actual + maxima[1],
                    left,
                    maxima[2] - left,
                    given=[one.actual + maxima[1]],
                )[3]
            ),
        ):
            runner.start(options(third, tmp_path / "o3"))
    assert len(sim.jobs) == 3
    spent = {r.run_id: (r.status, r.spent) for r in ledger.runs()}
    assert spent[one.run_id] == ("collected", one.actual)
    assert spent[two.run_id] == ("collected", two.actual)
    assert spent[run_id_for(options(third, tmp_path))] == ("refused", 0)


class DeletesTheLedger(QuietReporter):
    """Reports nothing, but deletes the ledger file the first time the run polls."""

    def __init__(self, path: Path) -> None:
        super().__init__(lambda _text: None)
        self.path = path

    def progress(self, snapshot: Any) -> None:
        for leftover in self.path.parent.glob(self.path.name + "*"):
            leftover.unlink()


def test_a_ledger_deleted_while_a_run_is_in_flight_stops_it_and_another_ledger_is_refused(
    tmp_path: Path, make_runner: Callable[..., tuple[Runner, list[str]]], ledger: Ledger
) -> None:
    """The ledger file vanishes after admission: collecting fails with LedgerError (exit 5)
    rather than recording the spend nowhere; a new ledger at the same path is not the one the
    run was admitted in, so `collect` against it is refused too."""
    assert isinstance(ledger, SqliteLedger)
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim, reporter=DeletesTheLedger(ledger.path))
        with pytest.raises(LedgerError, match="was deleted while this process had it open"):
            runner.start(options(queue, tmp_path / "out"))
        with open_ledger(ledger.path) as fresh:
            again, _ = make_runner(sim, on=fresh)
            rid = run_id_for(options(queue, tmp_path / "out"))
            with pytest.raises(LedgerError, match=f"is not the ledger run {rid} was admitted in"):
                again.collect(rid, options(queue, tmp_path / "out"))
            assert fresh.runs() == []
    assert LedgerError.exit_code == 5


def test_a_full_disk_while_saving_images_is_one_error_and_collect_finishes_later(
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC while writing an image: OutputError (exit 9) naming the folder and the fix, the
    run still open with what it reserved (the images are paid for); once there is room,
    `collect` finishes it with every image."""
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:3])
    out = tmp_path / "out"

    real = write_atomic

    def full(path: Path, data: bytes) -> None:
        if path.suffix in (".png", ".jpg", ".webp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        monkeypatch.setattr("costguard.execution.outputs.write_atomic", full)
        with pytest.raises(OutputError) as caught:
            runner.start(options(queue, out))
        assert OutputError.exit_code == 9
        message = str(caught.value)
        assert message.startswith(f"{out}: cannot write ")
        assert ": No space left on device; what was paid for stays at the provider" in message
        rid = run_id_for(options(queue, out))
        assert f"`costguard collect {rid}`" in message
        run = ledger.run(rid)
        assert run is not None
        assert run.open
        monkeypatch.undo()
        summary = runner.collect(rid, options(queue, out))
    assert summary.counts == {"ok": 3}
    lines = [json.loads(raw) for raw in (out / "manifest.jsonl").read_text().splitlines()]
    assert all((out / name).is_file() for line in lines for name in line["files"])


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        pytest.param(
            [b'{"key":"a","prompt":"x","model":"gpt-image-2"}', b'{"key": "b", "prompt": '],
            QueueError,
            id="invalid-json",
        ),
        pytest.param(
            [{"key": "a", "prompt": "x", "model": "gpt-image-9000"}], QueueError, id="unknown-model"
        ),
        pytest.param(
            [
                {"key": "a", "prompt": "x", "model": "gpt-image-2"},
                {"key": "a", "prompt": "y", "model": "gemini-3.1-flash-image"},
            ],
            QueueError,
            id="duplicate-key",
        ),
        pytest.param(
            [
                {"key": "a", "prompt": "x", "model": "gpt-image-2", "n": 2},
                {"key": "a-2", "prompt": "y", "model": "gpt-image-2"},
            ],
            UsageError,
            id="file-name-clash",
        ),
    ],
)
def test_bad_input_sends_nothing_reserves_nothing_and_leaves_no_run(
    lines: list[Any],
    error: type[Exception],
    tmp_path: Path,
    make_runner: Callable[..., tuple[Runner, list[str]]],
    ledger: Ledger,
) -> None:
    """A bad queue is refused before any provider call, reservation or run folder."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, lines)
    with simulate("succeeded", time_scale=0) as sim:
        runner, _ = make_runner(sim)
        with pytest.raises(error):
            runner.start(options(queue, tmp_path / "out"))
    assert sim.calls.count() == 0
    assert ledger.runs() == []
    assert list((runner.home / "runs").glob("*")) == []
    assert not (tmp_path / "out").exists()


# --- secrets --------------------------------------------------------------------------------

SECRETS = {"OPENAI_API_KEY": "sk-test-SECRET-123", "GEMINI_API_KEY": "AIza-SECRET-456"}


def test_no_api_key_in_any_file_the_runner_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_runner: Callable[..., tuple[Runner, list[str]]],
) -> None:
    """Real-key clients (answered by the simulator) leave neither key in any file, batch or sync."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    def real_keys(name: str, base: Path) -> Provider:
        if name == "gemini":
            return GeminiProvider(os.environ["GEMINI_API_KEY"], base=base)
        return OpenAIProvider(os.environ["OPENAI_API_KEY"], base=base)

    batch_queue, sync_queue = tmp_path / "batch.jsonl", tmp_path / "sync.jsonl"
    write_queue(batch_queue, GEMINI_LINES + OPENAI_LINES)
    sync_lines = [dict(line, key=f"s-{i}") for i, line in enumerate(OPENAI_LINES[:3])]
    sync_lines[1]["prompt"] += " [refuse]"  # an error response too
    write_queue(sync_queue, sync_lines)
    state = tmp_path / "home" / "simulator-state.json"
    state.parent.mkdir(parents=True)
    with simulate("refusals", api_keys=SECRETS.values(), time_scale=0, state=state) as sim:
        runner, messages = make_runner(sim, providers=real_keys)
        batch = runner.start(options(batch_queue, tmp_path / "out-batch", keep_raw=True))
        sync = runner.start(options(sync_queue, tmp_path / "out-sync", mode="sync"))
    assert batch.counts == {"ok": 10, "refused": 2}
    assert sync.counts == {"ok": 2, "refused": 1}
    assert len(sim.jobs) == 4
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"journal.json", "manifest.jsonl", "simulator-state.json", "ledger.sqlite3"} <= names
    assert any(p.suffix == ".jsonl" and "parts" in p.parts for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in SECRETS.values():
            assert secret.encode() not in data, path
            assert secret.encode("utf-16-le") not in data, path
    assert not any(secret in "\n".join(messages) for secret in SECRETS.values())
