"""Reconciling: once every part is collected, the run's summary, its spend settled, and retries.

The summary counts the manifest's lines per status and part, adds up the actual cost, and
prices the same usage in the other mode (what sync would have cost a batch run, and the other
way round). `retry.jsonl` holds the original queue lines of the requests to run again: every
request that is not ok, except refusals unless `--retry-refused`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from costguard.execution.context import RunContext
from costguard.execution.files import write_atomic
from costguard.execution.journal import Journal, Part
from costguard.execution.outputs import Outputs
from costguard.execution.progress import clock_text
from costguard.models import Usage
from costguard.money import ZERO, plain
from costguard.pricing.engine import RateBook, usage_cost
from costguard.pricing.schema import Mode


@dataclass
class Summary:
    """What a run produced, for the report and the exit code."""

    run_id: str
    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    estimate_expected: Decimal = ZERO
    estimate_max: Decimal = ZERO
    actual: Decimal = ZERO
    sync_equivalent: Decimal | None = None
    """What the same usage would have cost at sync prices (batch runs)."""
    batch_equivalent: Decimal | None = None
    """What the same usage would have cost in batch (sync runs)."""
    parts: list[Part] = field(default_factory=list)
    retry_file: Path | None = None
    retry_count: int = 0
    part_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per part, requests per status."""
    refused_not_retried: int = 0
    admission: str | None = None
    """The ledger's reason for admitting the run: which budget capped it, or that none did."""
    retry_command: str | None = None
    """The command that sends `retry_file` as a new run, when there is anything to retry."""
    calibration: dict[str, Any] | None = None
    """`{requests, since, facts}` when the run was priced with a calibration."""
    over_calibrated_max: int = 0
    """Requests whose actual cost passed their calibrated maximum (they were charged it)."""
    report: Path | None = None
    """The report page written for the run (`report.html`), if one was."""

    @property
    def quota_waits(self) -> int:
        """How many times a part's submission waited for the provider's quota."""
        return sum(p.quota_waits for p in self.parts)

    @property
    def quota_wait_s(self) -> float:
        """Seconds parts spent waiting for quota, summed over parts."""
        return sum(p.quota_wait_s for p in self.parts)

    def quota_line(self) -> str | None:
        """`3 submissions waited for quota, 0:41:10 in all (longest 0:20:05)`; None if none."""
        if not self.quota_waits:
            return None
        longest = max(p.quota_wait_s for p in self.parts)
        return (
            f"{self.quota_waits:,} submission(s) waited for the provider's quota, "
            f"{clock_text(self.quota_wait_s)} in all (longest part {clock_text(longest)})"
        )


def finish(ctx: RunContext, outputs: Outputs) -> Summary:
    """The run's summary; once every part is collected, settle the ledger and write retry.jsonl."""
    journal = ctx.journal
    if not journal.collected_all:
        return _base(journal)
    summary, retry = summarize(journal, outputs.lines(), ctx.book, ctx.as_of)
    summary.retry_file, summary.retry_count = write_retry(journal, outputs, retry)
    if not summary.retry_count:
        summary.retry_command = None
    if journal.status != "collected":
        ctx.ledger.settle(journal.run_id, status="collected", at=ctx.clock())
        journal.complete()
    return summary


def summarize(
    journal: Journal, lines: Iterable[dict[str, Any]], book: RateBook, at: dt.date
) -> tuple[Summary, dict[int, str]]:
    """What the manifest `lines` hold so far, counted and priced, and the requests to retry
    (queue line -> key); reads only (`finish` writes retry.jsonl and settles; the report, which
    reads the manifest once for its own use, passes the same lines)."""
    summary = _base(journal)
    other: Mode = "standard" if journal.mode == "batch" else "batch"
    equivalent: Decimal | None = ZERO
    retry: dict[int, str] = {}
    retry_refused = journal.options["retry_refused"]
    for line in lines:
        summary.counts[line["status"]] = summary.counts.get(line["status"], 0) + 1
        per_part = summary.part_counts.setdefault(line["part"], {})
        per_part[line["status"]] = per_part.get(line["status"], 0) + 1
        if line["status"] == "refused" and not retry_refused:
            summary.refused_not_retried += 1
        summary.actual += Decimal(line["cost_usd"])
        ceiling = line.get("calibrated_max_usd")
        if ceiling is not None and Decimal(line["cost_usd"]) > Decimal(ceiling):
            summary.over_calibrated_max += 1
        if line["status"] != "ok" and (line["status"] != "refused" or retry_refused):
            retry[int(line["line"])] = line["key"]
        tokens = line.get("tokens")
        if equivalent is not None and tokens:
            model = book.resolve(line["model"], at).model
            if other not in model.modes:
                equivalent = None
                continue
            equivalent += usage_cost(
                model, other, Usage(**tokens), size=line["size"], quality=line["quality"]
            )
    if journal.mode == "batch":
        summary.sync_equivalent = equivalent
    else:
        summary.batch_equivalent = equivalent
    summary.retry_count = len(retry)
    if retry:
        summary.retry_file = Path(journal.out) / "retry.jsonl"
        summary.retry_command = (
            f"costguard run --retry {journal.run_id} --max-usd {journal.options['max_usd']}"
        )
    return summary, retry


def _base(journal: Journal) -> Summary:
    """A summary with the journal's facts and nothing counted yet."""
    summary = Summary(journal.run_id, Path(journal.out), parts=journal.parts)
    summary.admission = journal.admission
    summary.estimate_expected = Decimal(journal.estimate["expected_usd"])
    summary.estimate_max = Decimal(journal.estimate["max_usd"])
    calibration = journal.estimate.get("calibration")
    if calibration:
        summary.calibration = {k: calibration[k] for k in ("requests", "since", "facts")}
    return summary


def write_retry(
    journal: Journal, outputs: Outputs, retry: dict[int, str]
) -> tuple[Path | None, int]:
    """`retry.jsonl`: the original queue lines of the requests to run again."""
    target = outputs.out / "retry.jsonl"
    if not retry:
        target.unlink(missing_ok=True)
        return None, 0
    chunks = []
    with Path(journal.queue).open("rb") as queue:
        for number, raw in enumerate(queue, start=1):
            if number in retry:
                line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                chunks.append(line if line.endswith(b"\n") else line + b"\n")
    write_atomic(target, b"".join(chunks))
    return target, len(chunks)


EXPLAIN = {
    "expired": "expired at the provider before finishing (the 24 h window passed); what it "
    "returned was collected, the rest is in retry.jsonl",
    "cancelled": "was cancelled; what finished was collected, the rest is in retry.jsonl",
    "failed": "failed at the provider",
}


def explain(summary: Summary) -> list[str]:
    """One line per job that did not simply succeed, saying what happened and what to do."""
    lines = []
    for part in summary.parts:
        state = (part.job_state or "").removeprefix("terminal:")
        counts = summary.part_counts.get(part.id, {})
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        if state in EXPLAIN:
            why = f": {part.job_error}" if part.job_error and state == "failed" else ""
            lines.append(f"{part.id} ({part.job_id}) {EXPLAIN[state]}{why} [{shown}]")
        elif counts.keys() - {"ok"}:
            lines.append(f"{part.id} ({part.job_id or 'sync'}) finished with {shown}")
    if summary.over_calibrated_max:
        lines.append(
            f"{summary.over_calibrated_max:,} requests cost more than their calibrated maximum; "
            "the next calibration includes them"
        )
    if summary.refused_not_retried:
        lines.append(
            f"{summary.refused_not_retried:,} refused on safety grounds and left out of "
            "retry.jsonl (they would likely refuse again; a run started with --retry-refused "
            "writes them there too)"
        )
    return lines


def summary_json(summary: Summary) -> str:
    """The summary as JSON (money as decimal strings)."""
    return json.dumps(
        {
            "run_id": summary.run_id,
            "out": str(summary.out),
            "counts": summary.counts,
            "estimate": {
                "expected_usd": plain(summary.estimate_expected),
                "max_usd": plain(summary.estimate_max),
            },
            "actual_usd": plain(summary.actual),
            "admission": summary.admission,
            "sync_equivalent_usd": plain(summary.sync_equivalent)
            if summary.sync_equivalent is not None
            else None,
            "batch_equivalent_usd": plain(summary.batch_equivalent)
            if summary.batch_equivalent is not None
            else None,
            "retry_file": str(summary.retry_file) if summary.retry_file else None,
            "retry_count": summary.retry_count,
            "retry_command": summary.retry_command,
            "report": str(summary.report) if summary.report else None,
            "calibration": summary.calibration,
            "over_calibrated_max": summary.over_calibrated_max,
            "quota": {
                "waits": summary.quota_waits,
                "wait_s": round(summary.quota_wait_s, 3),
            },
            "parts": [
                {
                    "id": p.id,
                    "job_id": p.job_id,
                    "state": p.state,
                    "job_state": p.job_state,
                    "provider_state": p.provider_state,
                    "job_counts": p.job_counts,
                    "cost_usd": p.cost_usd,
                    "attempts": p.attempt,
                    "quota_waits": p.quota_waits,
                    "quota_wait_s": round(p.quota_wait_s, 3),
                }
                for p in summary.parts
            ],
        },
        indent=2,
    )
