"""Planning a run: split the queue into parts (one provider job each) and find a part's requests.

Batch mode makes one part per provider, model and endpoint, split at the providers' limits
(requests and bytes per job), at `--max-requests-per-part`, and so that no part enqueues more
tokens than its model's quota allows (`--max-enqueued-tokens MODEL=N`; each request counted at
its most, `pricing.engine.max_tokens`). Sync mode has one part, `sync`, for the whole queue.
The split is deterministic, so a part's requests are found again by re-reading the queue
(nothing but counts is kept in the journal).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from costguard.errors import UsageError
from costguard.execution.context import queue_reader
from costguard.execution.journal import Journal, Part
from costguard.execution.outputs import safe_name
from costguard.models import INLINE_IMAGE, ImageRequest
from costguard.pricing.engine import RateBook, max_tokens
from costguard.pricing.schema import ModelCard

LIMITS: dict[str, tuple[int, int]] = {
    "openai": (50_000, 200 * 1024 * 1024 - 1024 * 1024),
    "gemini": (1_000_000, 2 * 1024 * 1024 * 1024 - 16 * 1024 * 1024),
}
"""Per provider: most requests and most bytes of input file in one job (with a margin)."""
IMAGE_BYTES_GUESS = 4 * 1024 * 1024
"""Bytes an inline input image adds to a job file when its size is unknown (a URI)."""


def plan(journal: Journal, book: RateBook, requests: int) -> set[str]:
    """Split the queue into parts and check that output names are distinct; may refuse it.

    Returns the file stems the run's images will have (`<stem>.<ext>`).
    """
    if journal.mode == "sync":
        sync = Part(
            "sync", "mixed", "mixed", "sync", requests, tag=f"costguard:{journal.run_id}:sync"
        )
        stems = _check_names(journal, book)
        journal.plan([sync], {})
        return stems
    groups: dict[str, list[int]] = {}
    tokens: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    names: set[str] = set()
    per_part = journal.options.get("max_requests_per_part")
    quota: dict[str, int] = journal.options.get("max_enqueued_tokens") or {}
    at = dt.date.fromisoformat(journal.as_of)
    cards: dict[str, ModelCard] = {}
    for request in queue_reader(journal, book):
        group = group_of(request)
        limit_n, limit_bytes = LIMITS[request.provider]
        if per_part:
            limit_n = min(limit_n, int(per_part))
        if request.model not in cards:
            cards[request.model] = book.resolve(request.model, at).model
        weight, count = _weight(request), max_tokens(cards[request.model], request)
        limit_tokens = quota.get(request.model)
        if limit_tokens is not None and count > limit_tokens:
            msg = (
                f"line {request.line}: this request may count up to {count:,} tokens, more than "
                f"the {limit_tokens:,} enqueued tokens --max-enqueued-tokens allows "
                f"{request.model}; it could never be submitted"
            )
            raise UsageError(msg)
        counts = groups.setdefault(group, [0])
        sums = tokens.setdefault(group, [0])
        if counts[-1] and (
            counts[-1] >= limit_n
            or sizes[group] + weight > limit_bytes
            or (limit_tokens is not None and sums[-1] + count > limit_tokens)
        ):
            counts.append(0)
            sums.append(0)
            sizes[group] = 0
        counts[-1] += 1
        sums[-1] += count
        sizes[group] = sizes.get(group, 0) + weight
        _claim_names(names, request)
    parts = []
    for group, counts in sorted(groups.items()):
        provider, model, endpoint = group.split("|")
        for index, count in enumerate(counts):
            part_id = f"{_slug(model)}{'-edits' if endpoint == 'edits' else ''}-{index + 1}"
            parts.append(
                Part(
                    part_id,
                    provider,
                    model,
                    endpoint,
                    count,
                    tag=f"costguard:{journal.run_id}:{part_id}",
                    tokens=tokens[group][index],
                )
            )
    journal.plan(parts, groups)
    return names


def part_requests(journal: Journal, book: RateBook, part: Part) -> Iterator[ImageRequest]:
    """Re-read the queue and yield the requests of one part (deterministic split)."""
    if part.endpoint == "sync":
        yield from queue_reader(journal, book)
        return
    group = f"{part.provider}|{part.model}|{part.endpoint}"
    counts = journal.groups[group]
    index = int(part.id.rsplit("-", 1)[1]) - 1
    start = sum(counts[:index])
    end = start + counts[index]
    seen = 0
    for request in queue_reader(journal, book):
        if group_of(request) != group:
            continue
        if start <= seen < end:
            yield request
        seen += 1
        if seen >= end:
            return


def group_of(request: ImageRequest) -> str:
    """The (provider|model|endpoint) group a request's part belongs to."""
    endpoint = "edits" if request.images and request.provider == "openai" else "generations"
    return f"{request.provider}|{request.model}|{endpoint}"


def _check_names(journal: Journal, book: RateBook) -> set[str]:
    names: set[str] = set()
    for request in queue_reader(journal, book):
        _claim_names(names, request)
    return names


def _weight(request: ImageRequest) -> int:
    """Bytes a request adds to a job's input file (prompt, envelope, inline input images).

    Fields sent as written (`passthrough`, which holds a Gemini line's own contents and inline
    images) count at their length.
    """
    images = sum(1 for ref in request.images if not ref.startswith(INLINE_IMAGE))
    return request.prompt_bytes + 512 + len(request.passthrough) + IMAGE_BYTES_GUESS * images


def _claim_names(names: set[str], request: ImageRequest) -> None:
    stem = safe_name(request.key)
    wanted = [stem] if request.n == 1 else [f"{stem}-{i}" for i in range(1, request.n + 1)]
    for name in wanted:
        if name in names:
            msg = (
                f"line {request.line}: key {request.key!r} would write {name}.*, which another "
                "request's images also use; rename one of the keys"
            )
            raise UsageError(msg)
        names.add(name)


def _slug(model: str) -> str:
    return safe_name(model.replace("/", "-"))
