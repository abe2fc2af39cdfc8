"""Load rate cards from YAML into a validated `RateBook`.

Cards come from the shipped `pricing/` folder and, with precedence, from user folders
(`--pricing DIR` or `COSTGUARD_PRICING_DIR`): a user card for the same provider and date
replaces the shipped one. YAML numbers load as `Decimal`, never through float.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from costguard.errors import RateCardError
from costguard.pricing.engine import RateBook
from costguard.pricing.schema import RateCard
from costguard.resources import data_dir

_CARD_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.ya?ml")


_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DecimalLoader(_Base):  # type: ignore[valid-type,misc]
    """Safe loader (libyaml when present) that turns YAML floats into exact Decimals."""


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> decimal.Decimal:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        value = decimal.Decimal(text.replace("_", ""))
    except decimal.InvalidOperation:
        value = decimal.Decimal("NaN")  # .inf, .nan and other YAML-only spellings
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite number", node.start_mark
        )
    return value


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping that refuses duplicate keys (plain YAML keeps the last one, silently)."""
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(ident)
    return loader.construct_mapping(node)


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> dt.date | dt.datetime:
    """A YAML date or time; an impossible one (2026-13-40) is a YAML error at its line."""
    try:
        return loader.construct_yaml_timestamp(node)  # type: ignore[arg-type]
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid date ({exc})", node.start_mark
        ) from exc


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_DecimalLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_DecimalLoader.add_constructor("tag:yaml.org,2002:map", _mapping)


def shipped_dir() -> Path:
    """The rate cards that ship with costguard."""
    return data_dir("pricing")


def card_files(directory: Path) -> list[Path]:
    """The card files in a pricing folder, `<provider>/<YYYY-MM-DD>.yaml`."""
    return sorted(p for p in directory.glob("*/*.y*ml") if p.is_file())


def load_card(path: Path) -> RateCard:
    """Load and validate one card; errors name the file, the model and the field."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read rate card: {exc}"
        raise RateCardError(msg) from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        msg = f"{path}{line}: invalid YAML: {problem}"
        raise RateCardError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"{path}: a rate card must be a YAML mapping"
        raise RateCardError(msg)
    try:
        card = RateCard.model_validate(raw)
    except ValidationError as exc:
        raise RateCardError(_describe(path, raw, exc)) from exc
    match = _CARD_NAME.fullmatch(path.name)
    if match is None or match.group(1) != card.effective_from.isoformat():
        msg = (
            f"{path}: effective_from {card.effective_from.isoformat()} must match the file "
            f"name (rename the file to {card.effective_from.isoformat()}.yaml)"
        )
        raise RateCardError(msg)
    if path.parent.name != card.provider:
        msg = f"{path}: provider {card.provider!r} must match the folder {path.parent.name!r}"
        raise RateCardError(msg)
    return card


def _describe(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    """One line: file, model id (when inside `models`), dotted field, message."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        models = raw.get("models")
        model_id = None
        if isinstance(models, list) and loc[1] < len(models) and isinstance(models[loc[1]], dict):
            model_id = models[loc[1]].get("id")
        where = f"model {model_id or '#' + str(loc[1] + 1)}: "
        loc = loc[2:]
    field = ".".join(str(part) for part in loc) or ("(model)" if where else "(card)")
    message = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {where}{field}: {message}{more}"


def load_book(extra_dirs: Sequence[Path] = (), *, include_shipped: bool = True) -> RateBook:
    """Every card: shipped ones first, then each extra folder overriding by (provider, date)."""
    dirs: list[Path] = [shipped_dir()] if include_shipped else []
    for directory in extra_dirs:
        if not directory.is_dir():
            msg = f"{directory}: pricing folder does not exist"
            raise RateCardError(msg)
        dirs.append(directory)
    cards: dict[tuple[str, dt.date], RateCard] = {}
    origins: dict[str, Path] = {}
    for directory in dirs:
        for path in card_files(directory):
            card = load_card(path)
            cards[(card.provider, card.effective_from)] = card
            origins[card.card_id] = path
    if not cards:
        msg = f"no rate cards found in {', '.join(str(d) for d in dirs)}"
        raise RateCardError(msg)
    return RateBook(list(cards.values()), origins={k: str(v) for k, v in origins.items()})


def digest(path: Path) -> str:
    """sha256 of a card file (past cards are frozen by these digests)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def json_schema() -> str:
    """The JSON schema of a rate card, as written to `pricing/schema.json`."""
    schema = RateCard.model_json_schema(mode="validation")
    schema["$id"] = "https://costguard.dev/schema/rate-card.json"
    schema["title"] = "costguard rate card"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def iter_cards(book: RateBook, provider: str | None = None) -> Iterable[RateCard]:
    """Cards of a book, oldest first, optionally one provider's."""
    return (c for c in book.cards if provider is None or c.provider == provider)
