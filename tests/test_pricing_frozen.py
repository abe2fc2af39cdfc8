"""Published rate cards are frozen: every card already in force keeps its exact bytes.

Estimates and ledger entries record a card id (`gemini/2026-06-30`), so a card must mean the
same thing forever. A change is a new card dated the day it applies from.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from costguard.pricing.loader import card_files, digest
from costguard.resources import data_dir

FIX = "never edit a published card; add pricing/<provider>/<new date>.yaml instead"

FROZEN: dict[str, str] = {
    "gemini/2025-10-02.yaml": "ea4a0242d26ceea7c0fefbf35e9130da6f319b540c0ddd5013722d8e5d205c2b",
    "gemini/2025-11-04.yaml": "223c5ed2ed368eb52f87ceb92a99f0fbaacf50de85b52a18b3b77af8c345050d",
    "gemini/2025-11-14.yaml": "0c20c08f406c23f8c1aeb527a57d406045c504aaaa78c47ff366ec9993169c7b",
    "gemini/2025-11-20.yaml": "4a9ebacf3fcc42ec1e6e91d5724a978e4d366714d1367c50db6159de999a2f4d",
    "gemini/2026-01-15.yaml": "c8227069f0927eb454b7a04e1bd8babab003a8db735fdb9872fe7e66a69175f6",
    "gemini/2026-02-26.yaml": "6e5a156e8d3c891d25844a04dfafabf889c77f9ad9514104d8cb3bffbeb854af",
    "gemini/2026-05-28.yaml": "abbc8385b26220a15e2897ff3918823aa0abbc24889181021aba930ae54d8d94",
    "gemini/2026-06-25.yaml": "2eabac2b7a73be3feaa6f474a553fa9535498837f1fb84ea31dd674e0f26fe11",
    "gemini/2026-06-30.yaml": "26d9de1b8d37c15e1722e9c7f636b2a7a9ad3d38f2a9242fdf57b0ae9c238cac",
    "gemini/2026-08-17.yaml": "fe21328d120fa2b184cc633ee9775bbca404159e947da1a33007db48bee0082f",
    "gemini/2026-10-02.yaml": "21715e0bea0f6a14675615d23f9393e26f5b6823689c2aa0b022a8788da1cc4d",
    "openai/2025-10-06.yaml": "93b8dc4832a8123d4a698dd9f56327802843874548e59183260e0a21b49d4f90",
    "openai/2025-12-16.yaml": "fe1f7ba0ec6b41ea0eb8e9f538f4377881a86cdf8d7410e410f9ce748b4fe992",
    "openai/2026-02-10.yaml": "688221e1814fe8f037a643dd8caac5aef391788ea84be383de879b1832df19eb",
    "openai/2026-04-21.yaml": "66792a3ef24683555496779d57d4e82e2b97408963c0dbd91e2126a87afe0877",
    "openai/2026-05-12.yaml": "5fa00f650ed955b5202bd37c6b0b12ec457b25d4a09debd051fb4390ad47d856",
    "openai/2026-10-23.yaml": "10fd3e0690238a82aff102e96c7de241f33ea5b12d8cc471ff422d0da1f39f95",
    "gemini/2026-11-26.yaml": "0df9d6ad7aa27a8dd31f7345dcad41665f6df569ac7ed04955d1a2ee1961b9e9",
    "openai/2026-11-26.yaml": "918603236719c8d36e8ded78a060ad20952e05c2ea3b4dd44db21dfa91cd79f2",
}
"""sha256 of every card in force when it was pinned (2026-11-24; the 2026-11-26 cards on their
day: an estimate recorded with a card id must mean the same thing forever)."""


def _shipped() -> dict[str, Path]:
    """Shipped card files by `<provider>/<file name>`."""
    return {f"{p.parent.name}/{p.name}": p for p in card_files(data_dir("pricing"))}


def _today() -> dt.date:
    """Today's date in UTC (the CLI's default --as-of)."""
    return dt.datetime.now(tz=dt.UTC).date()


def check_frozen(name: str, path: Path | None, expected: str) -> None:
    """Fail, saying how to fix it, unless `path` exists and hashes to `expected`."""
    assert path is not None, f"pricing/{name} was removed: {FIX} (and keep the old one)"
    actual = digest(path)
    assert actual == expected, f"pricing/{name} changed (sha256 {actual}, pinned {expected}): {FIX}"


@pytest.mark.parametrize(("name", "expected"), sorted(FROZEN.items()), ids=sorted(FROZEN))
def test_published_card_is_unchanged(name: str, expected: str) -> None:
    """A published card's bytes still hash to the pinned digest."""
    check_frozen(name, _shipped().get(name), expected)


def test_edited_card_failure_names_the_fix(tmp_path: Path) -> None:
    """An edited card (even one byte) fails with the rule and where to add a new card."""
    name = "gemini/2025-11-04.yaml"
    edited = tmp_path / name
    edited.parent.mkdir(parents=True)
    edited.write_bytes(_shipped()[name].read_bytes().replace(b"258", b"259", 1))
    with pytest.raises(AssertionError) as info:
        check_frozen(name, edited, FROZEN[name])
    assert f"pricing/{name} changed" in str(info.value)
    assert FIX in str(info.value)
    with pytest.raises(AssertionError, match="was removed: never edit a published card"):
        check_frozen(name, None, FROZEN[name])


def test_every_card_in_force_is_pinned() -> None:
    """Every shipped card in force (its date today or past) has its digest pinned here."""
    today = _today()
    unpinned = sorted(
        name
        for name, path in _shipped().items()
        if dt.date.fromisoformat(path.stem) <= today and name not in FROZEN
    )
    assert not unpinned, (
        f"cards now in force but not frozen: {unpinned}; add their sha256 "
        "(costguard.pricing.loader.digest) to FROZEN in tests/test_pricing_frozen.py"
    )


def test_frozen_cards_are_in_force() -> None:
    """Only cards already in force are pinned (a future card may still be corrected)."""
    today = _today()
    future = sorted(n for n in FROZEN if dt.date.fromisoformat(Path(n).stem) > today)
    assert not future, f"pinned cards dated after today: {future}"
