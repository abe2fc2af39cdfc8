"""The priced queue as a JSON document: what `estimate --output json` prints and
`costguard.Estimate.to_json()` returns, one builder for both. Money as exact decimal strings."""

from __future__ import annotations

from typing import Any

from costguard.money import plain
from costguard.pricing.engine import Cost, Estimate, Group
from costguard.pricing.schema import MODES, Mode
from costguard.queue.estimate import Advice, QueueEstimate

CLI_MODE: dict[Mode, str] = {"standard": "sync", "batch": "batch"}
"""The name of each card mode where users see it (`--mode sync`, JSON keys): sync for standard."""


def cost_json(cost: Cost | None) -> dict[str, str] | None:
    """`{expected_usd, max_usd}` as exact decimal strings; None for no cost (a mode not sold)."""
    if cost is None:
        return None
    return {"expected_usd": plain(cost.expected), "max_usd": plain(cost.max)}


def estimate_document(
    queue: QueueEstimate,
    *,
    budget: Advice | None = None,
    budget_mode: Mode = "batch",
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The estimate as a JSON document (`estimate --output json`)."""
    est = queue.estimate
    payload: dict[str, Any] = {
        "queue": str(queue.path),
        "format": queue.format,
        "requests": est.requests,
        "images": est.images,
        "as_of": est.as_of.isoformat(),
        "rate_cards": est.rate_cards,
        "totals": {CLI_MODE[m]: cost_json(est.total(m)) for m in MODES},
        "batch_saving": cost_json(est.saving()),
        "groups": [group_json(g) for g in est.groups],
        "warnings": queue.warnings,
        "assumptions": [
            {"model": a.model, "fact": a.fact, "assumed": a.assumed} for a in est.assumptions
        ],
    }
    if queue.calibration is not None:
        payload["calibration"] = queue.calibration_json()
    if comparisons:
        payload["compare"] = [
            {
                "models": sorted({g.model for g in other.groups}),
                "totals": {CLI_MODE[m]: cost_json(other.total(m)) for m in MODES},
            }
            for other in comparisons
        ]
    if budget is not None:
        d = budget.decision
        payload["budget"] = {
            "max_usd": plain(d.limit),
            "mode": CLI_MODE[budget_mode],
            "fits": d.fits,
            "needed_usd": plain(d.needed) if d.needed.is_finite() else None,
            "shortfall_usd": plain(d.shortfall) if d.shortfall.is_finite() else None,
            "first_requests_that_fit": budget.first_requests,
            "cheaper_models": [{"model": m, "max_usd": plain(c)} for m, c in budget.cheaper_models],
            "smaller_sizes": [
                {
                    "model": s.model,
                    "size": s.size,
                    "quality": s.quality,
                    "instead": s.instead,
                    "max_usd": plain(s.max_cost),
                }
                for s in budget.smaller_sizes
            ],
        }
    payload |= extra or {}
    return payload


def group_json(group: Group) -> dict[str, Any]:
    return {
        "provider": group.provider,
        "model": group.model,
        "size": group.size,
        "quality": group.quality,
        "rate_card": group.card_id,
        "requests": group.totals.requests,
        "images": group.totals.images,
        "prompt_tokens": group.totals.prompt_tokens,
        "prompt_tokens_max": group.totals.prompt_tokens_max,
        "input_images": group.totals.input_images,
        "unit_usd": {
            CLI_MODE[m]: (plain(u) if (u := group.unit[m]) is not None else None) for m in MODES
        },
        "batch": cost_json(group.cost["batch"]),
        "sync": cost_json(group.cost["standard"]),
    }
