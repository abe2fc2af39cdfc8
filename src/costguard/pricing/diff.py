"""What changed between the cards in force on two dates (pure: works on a loaded RateBook)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from costguard.pricing.engine import RateBook
from costguard.pricing.schema import ModelCard

_SKIP = {"notes", "sources", "display_name"}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted field -> JSON value (numbers stay numbers, lists stay lists; None left out)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _SKIP:
                continue
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif value is not None:
        out[prefix] = value
    return out


def _models(book: RateBook, at: dt.date, provider: str | None) -> dict[str, ModelCard]:
    out: dict[str, ModelCard] = {}
    for card in book.cards_in_force(at):
        if provider is None or card.provider == provider:
            for model in card.models:
                out[f"{card.provider}:{model.id}"] = model
    return out


def status(model: ModelCard, at: dt.date) -> str:
    """Whether the model can be called on `at`, by its own card's lifecycle."""
    life = model.lifecycle
    if life.shutdown_on is not None and life.shutdown_on <= at:
        return f"shut down (on {life.shutdown_on})"
    if life.available_from is not None and life.available_from > at:
        return f"not yet available (from {life.available_from})"
    if life.shutdown_on is not None:
        return f"available (shuts down {life.shutdown_on})"
    return "available"


def diff_books(
    book: RateBook,
    before: dt.date,
    after: dt.date,
    *,
    provider: str | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Rows `{model, field, before, after}` for every priced fact that differs, each model's
    lifecycle transition between the two dates first (field `(status)`: e.g. available ->
    shut down, whether or not a card changed). `before`/`after` are the card's JSON values
    (None: the field or model is absent on that side)."""
    old, new = _models(book, before, provider), _models(book, after, provider)
    rows: list[dict[str, Any]] = []
    for name in sorted(set(old) | set(new)):
        if model is not None and name.split(":", 1)[1] != model:
            continue
        a = _flatten(old[name].model_dump(mode="json")) if name in old else {}
        b = _flatten(new[name].model_dump(mode="json")) if name in new else {}
        if not a:
            now = status(new[name], after)
            rows.append(
                {"model": name, "field": "(model)", "before": None, "after": f"added: {now}"}
            )
            continue
        if not b:
            rows.append({"model": name, "field": "(model)", "before": "listed", "after": "removed"})
            continue
        was, now = status(old[name], before), status(new[name], after)
        if was != now:
            rows.append({"model": name, "field": "(status)", "before": was, "after": now})
        rows += [
            {"model": name, "field": key, "before": a.get(key), "after": b.get(key)}
            for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)
        ]
    return rows
