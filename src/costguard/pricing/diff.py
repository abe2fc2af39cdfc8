"""What changed between the cards in force on two dates (pure: works on a loaded RateBook)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from costguard.pricing.engine import RateBook
from costguard.pricing.schema import ModelCard

_SKIP = {"notes", "sources", "display_name", "aliases"}


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _SKIP:
                continue
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        out[prefix] = ", ".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = str(value)
    return out


def _models(book: RateBook, at: dt.date, provider: str | None) -> dict[str, ModelCard]:
    out: dict[str, ModelCard] = {}
    for card in book.cards_in_force(at):
        if provider is None or card.provider == provider:
            for model in card.models:
                out[f"{card.provider}:{model.id}"] = model
    return out


def diff_books(
    book: RateBook,
    before: dt.date,
    after: dt.date,
    *,
    provider: str | None = None,
    model: str | None = None,
) -> list[dict[str, str]]:
    """Rows `{model, field, before, after}` for every priced fact that differs."""
    old, new = _models(book, before, provider), _models(book, after, provider)
    rows: list[dict[str, str]] = []
    for name in sorted(set(old) | set(new)):
        if model is not None and name.split(":", 1)[1] != model:
            continue
        a = _flatten(old[name].model_dump(mode="json")) if name in old else {}
        b = _flatten(new[name].model_dump(mode="json")) if name in new else {}
        if not a:
            rows.append({"model": name, "field": "(model)", "before": "-", "after": "added"})
            continue
        if not b:
            rows.append({"model": name, "field": "(model)", "before": "listed", "after": "removed"})
            continue
        rows += [
            {"model": name, "field": key, "before": a.get(key, "-"), "after": b.get(key, "-")}
            for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)
        ]
    return rows
