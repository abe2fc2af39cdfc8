"""A run's facts, as the report shows them: read from its journal, manifest, queue and ledger.

`gather` reads; it writes nothing. What it returns is plain JSON (money as decimal strings,
moments in ISO 8601 UTC): `costguard report RUN --output json` prints it, and the HTML page is
made from it, so the two never disagree.

- `run`: the journal's facts (mode, status, queue, output folder, budget, rehearsal or not)
  and its parts.
- `images`: one entry per manifest line (one request): key, status, files, the provider's
  reason, and the prompt read back from the queue (when the queue is still the one the run
  sent: its sha256 is checked).
- `cost`: the estimate (expected and maximum) against the actual, per model, size and quality
  and in total; the same usage priced in the other mode (the batch saving); the spread of
  cost per image where it varies.
- `retry`: what `retry.jsonl` holds and the command that sends it.
- `quota`: how many submissions waited for the provider's quota, for how long, how many parts
  wait now, and the limits the provider named.
- `spend` is added by the caller from the ledger (`report/spend.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from costguard.errors import CostguardError
from costguard.execution.journal import Journal, Part
from costguard.execution.options import file_sha256
from costguard.execution.outputs import Outputs
from costguard.execution.progress import part_state
from costguard.execution.reconcile import Summary, summarize
from costguard.money import ZERO, plain
from costguard.pricing.engine import RateBook
from costguard.queue.reader import Defaults, QueueReader

FORMAT = 1
"""The facts' format; a change that drops or renames a field bumps it."""

STATUSES = ("ok", "refused", "failed", "expired", "cancelled")
"""Request statuses in the order the report shows them."""

HISTOGRAM_BINS = 12
SPREAD_MIN = Decimal("0.01")
"""A group's cost per image is shown as a spread only when its largest is more than this
share above its smallest (prompts of different lengths differ by far less)."""


@dataclass(slots=True)
class _Group:
    """One model/size/quality group's actual cost, as the manifest gives it."""

    requests: int = 0
    ok: int = 0
    actual: Decimal = ZERO
    costs: list[Decimal] = field(default_factory=list)
    """Cost per image of its ok requests (for the spread: a request for two images costs
    twice as much, and that is not a spread)."""


def gather(journal: Journal, book: RateBook, *, now: dt.datetime) -> dict[str, Any]:
    """The facts of the run `journal` describes, as they stand at `now` (see the module)."""
    at = dt.date.fromisoformat(journal.as_of)
    lines = list(Outputs(Path(journal.out)).lines())  # read once: counted, then shown
    summary, _ = summarize(journal, lines, book, at)
    prompts, prompt_note = _prompts(journal, book, at)
    images: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str | None], _Group] = {}
    for line in lines:
        model = book.resolve(line["model"], at).model.id
        group = groups.setdefault((model, line["size"], line["quality"]), _Group())
        cost = Decimal(line["cost_usd"])
        group.requests += 1
        group.actual += cost
        if line["status"] == "ok":
            group.ok += 1
            group.costs.append(cost / max(len(line["files"]), 1))
        images.append(
            {
                "key": line["key"],
                "status": line["status"],
                "files": line["files"],
                "reason": line.get("reason"),
                "prompt": prompts.get(int(line["line"])),
                "model": model,
                "size": line["size"],
                "quality": line["quality"],
                "part": line["part"],
                "line": line["line"],
                "cost_usd": line["cost_usd"],
            }
        )
    images.sort(key=lambda image: int(image["line"]))  # queue order, not collection order
    requests = int(journal.estimate["requests"])
    collected = len(images)
    rehearsal = journal.simulate is not None
    return {
        "format": FORMAT,
        "generated": now.astimezone(dt.UTC).isoformat(),
        "run": {
            "id": journal.run_id,
            "status": journal.status,
            "complete": journal.collected_all,
            "mode": journal.mode,
            "created": journal.created,
            "as_of": journal.as_of,
            "queue": journal.queue,
            "out": journal.out,
            "rehearsal": rehearsal,
            "scenario": journal.simulate,
            "rate_cards": journal.rate_cards,
            "budget": journal.options.get("budget"),
            "owner": journal.options.get("owner"),
            "max_usd": journal.options.get("max_usd"),
            "admission": journal.admission,
            "requests": requests,
            "images": int(journal.estimate["images"]),
            "parts": [_part(part) for part in journal.parts],
        },
        "counts": {s: summary.counts[s] for s in STATUSES if s in summary.counts}
        | {s: n for s, n in summary.counts.items() if s not in STATUSES},
        "collected": collected,
        "not_collected": max(requests - collected, 0),
        "prompts": prompt_note,
        "images": images,
        "cost": _cost(journal, summary.actual, summary, groups),
        "retry": {
            "count": summary.retry_count,
            "file": str(summary.retry_file) if summary.retry_file else None,
            "written": summary.retry_file is not None and summary.retry_file.is_file(),
            "command": summary.retry_command,
            "refused_left_out": summary.refused_not_retried,
        },
        "quota": {
            "waits": sum(p.quota_waits for p in journal.parts),
            "wait_s": round(sum(p.quota_wait_s for p in journal.parts), 3),
            "longest_s": round(max((p.quota_wait_s for p in journal.parts), default=0.0), 3),
            "waiting": sum(1 for p in journal.parts if p.waiting_for_quota),
            "limits": journal.quota_limits,
        },
    }


def _part(part: Part) -> dict[str, Any]:
    return {
        "id": part.id,
        "provider": part.provider,
        "model": part.model,
        "endpoint": part.endpoint,
        "requests": part.requests,
        "state": part_state(part),
        "provider_state": part.provider_state,
        "job_id": part.job_id,
        "job_counts": part.job_counts,
        "error": part.job_error,
        "cost_usd": part.cost_usd,
        "attempts": part.attempt,
        "quota_waits": part.quota_waits,
        "quota_wait_s": round(part.quota_wait_s, 3),
    }


def _cost(
    journal: Journal,
    actual: Decimal,
    summary: Summary,
    groups: dict[tuple[str, str, str | None], _Group],
) -> dict[str, Any]:
    """The estimate against the actual, per group and in total, and the other mode's price."""
    estimated = {
        (g["model"], g["size"], g["quality"]): g for g in journal.estimate.get("groups", [])
    }
    rows = []
    for key in [*estimated, *(k for k in groups if k not in estimated)]:
        entry = estimated.get(key, {})
        got = groups.get(key, _Group())
        rows.append(
            {
                "model": key[0],
                "size": key[1],
                "quality": key[2],
                "requests": entry.get("requests", got.requests),
                "collected": got.requests,
                "ok": got.ok,
                "expected_usd": entry.get("expected_usd"),
                "max_usd": entry.get("max_usd"),
                "actual_usd": plain(got.actual),
            }
        )
    if journal.mode == "batch":
        other_mode, other = "sync", summary.sync_equivalent
    else:
        other_mode, other = "batch", summary.batch_equivalent
    return {
        "estimate": {
            "expected_usd": journal.estimate["expected_usd"],
            "max_usd": journal.estimate["max_usd"],
        },
        "actual_usd": plain(actual),
        "by_group": rows,
        "by_group_estimated": bool(estimated),
        "other_mode": {
            "mode": other_mode,
            "usd": None if other is None else plain(other),
            "saving_usd": None if other is None else plain(other - actual),
        },
        "spread": [s for k, g in groups.items() if (s := _spread(k, g.costs)) is not None],
        "calibration": summary.calibration,
        "over_calibrated_max": summary.over_calibrated_max,
    }


def _spread(key: tuple[str, str, str | None], costs: list[Decimal]) -> dict[str, Any] | None:
    """Cost per image of one group's ok requests, where it varies (thinking, input images)."""
    if len(costs) < 2 or max(costs) <= min(costs) * (1 + SPREAD_MIN):
        return None
    ordered = sorted(costs)
    low, high = ordered[0], ordered[-1]
    width = (high - low) / HISTOGRAM_BINS
    bins = [0] * HISTOGRAM_BINS
    for cost in ordered:
        bins[min(int((cost - low) / width), HISTOGRAM_BINS - 1)] += 1
    return {
        "model": key[0],
        "size": key[1],
        "quality": key[2],
        "requests": len(ordered),
        "min_usd": plain(low),
        "median_usd": plain(_quantile(ordered, Decimal("0.5"))),
        "p90_usd": plain(_quantile(ordered, Decimal("0.9"))),
        "max_usd": plain(high),
        "histogram": bins,
    }


def _quantile(ordered: list[Decimal], q: Decimal) -> Decimal:
    """The nearest-rank quantile of sorted amounts (an amount some request really cost)."""
    rank = max(int((q * len(ordered)).to_integral_value(rounding="ROUND_CEILING")), 1)
    return ordered[rank - 1]


def _prompts(journal: Journal, book: RateBook, at: dt.date) -> tuple[dict[int, str], str | None]:
    """Each queue line's prompt (by line number), and a note when they cannot be shown.

    Read back from the run's queue only when it is still the file the run sent (same sha256):
    a prompt from an edited queue could be shown beside the wrong image.
    """
    queue = Path(journal.queue)
    if not queue.is_file():
        return {}, f"prompts not shown: the queue {queue} is no longer there"
    if file_sha256(queue) != journal.queue_sha256:
        return {}, f"prompts not shown: the queue {queue} changed since the run sent it"
    options = journal.options
    defaults = Defaults(*(options.get(k) for k in ("model", "size", "quality", "aspect_ratio")))
    reader = QueueReader(
        queue,
        book,
        at,
        defaults=defaults,
        fmt=journal.queue_format,  # type: ignore[arg-type]  # a format the journal recorded
        check_images=False,
    )
    try:
        return {request.line: request.prompt for request in _all(reader)}, None
    except CostguardError as exc:  # the cards changed under it: still no reason to fail
        return {}, f"prompts not shown: {exc}"


def _all(reader: QueueReader) -> Iterator[Any]:
    yield from reader
    reader.check()
