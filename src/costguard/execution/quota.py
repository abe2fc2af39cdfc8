"""What the provider's batch quota lets a run keep in flight.

Providers limit the tokens enqueued per model (batches created and not yet finished) and, for
Gemini, the batch jobs in flight. A part fits when the tokens of its model's parts in flight
plus its own stay within the known limit, and fewer parts of its model are in flight than the
cap the run learned from refusals. Limits come from the user (`--max-enqueued-tokens
MODEL=N`, kept in the journal's options) and from the provider's refusals (OpenAI's message
names the limit: `Journal.quota_limits`); the lowest known is used. A part's tokens are the
most its requests can count (`pricing.engine.max_tokens`), so what fits by this count fits
at the provider when the limit is right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from costguard.execution.journal import Journal, Part

__all__ = ["Quota", "cap_key", "parse_limits"]


def cap_key(part: Part) -> str:
    """The key of a part's provider and model in `Journal.quota_caps`."""
    return f"{part.provider}|{part.model}"


def parse_limits(values: list[str] | None) -> dict[str, int]:
    """`MODEL=N` items (`--max-enqueued-tokens`, repeatable; also comma-separated) as a dict.

    Raises:
        ValueError: an item is not `MODEL=N` with N a positive whole number.
    """
    limits: dict[str, int] = {}
    for value in values or []:
        for item in value.split(","):
            model, sep, number = item.strip().partition("=")
            digits = number.strip().replace("_", "")
            if not sep or not model.strip() or not digits.isdigit() or int(digits) <= 0:
                msg = f"{item.strip()!r} is not MODEL=TOKENS (e.g. gpt-image-2=2000000)"
                raise ValueError(msg)
            limits[model.strip()] = int(digits)
    return limits


@dataclass
class Quota:
    """Decides which waiting parts fit now."""

    given: Mapping[str, int] = field(default_factory=dict)
    """Enqueued-token limits per model given by the user for this command."""

    def limit(self, model: str, journal: Journal) -> int | None:
        """The lowest known enqueued-token limit of `model`, or None."""
        sources = (
            self.given,
            journal.options.get("max_enqueued_tokens") or {},
            journal.quota_limits,
        )
        known = [limits[model] for limits in sources if model in limits]
        return min(known) if known else None

    @staticmethod
    def in_flight(part: Part, journal: Journal) -> list[Part]:
        """The other parts of `part`'s provider and model whose jobs count at the provider."""
        return [
            p
            for p in journal.parts
            if p is not part
            and (p.provider, p.model) == (part.provider, part.model)
            and (p.state == "submitting" or p.awaiting_job)
        ]

    def fits(self, part: Part, journal: Journal) -> bool:
        """Whether `part` may be submitted now. With nothing of its model in flight it always
        may (a part larger than a limit learned later is sent and refused, and waits)."""
        flying = self.in_flight(part, journal)
        if not flying:
            return True
        cap = journal.quota_caps.get(cap_key(part))
        if cap is not None and len(flying) >= cap:
            return False
        limit = self.limit(part.model, journal)
        if limit is None or part.tokens is None:
            return True
        return sum(p.tokens or 0 for p in flying) + part.tokens <= limit
