"""The report page in a real browser: headless Chromium (Debian's) driven by Playwright.

A simulated run with images at their real pixel sizes and some refusals; the page is opened
from disk as a user opens it. CI (`CI=true`) installs Chromium and must run this test; elsewhere
it skips, saying what is missing. Marked slow: it runs once per CI, not again on the wheel.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runkit import AS_OF, by_key, scenario_file, write_queue

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no network here: no update or sync lookups
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium through Playwright; skipped (never in CI) when either is missing."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [
        what
        for what, ok in (
            ("Playwright's Python package (pip install playwright)", sync_playwright is not None),
            ("Chromium (apt-get install chromium)", executable is not None),
        )
        if not ok
    ]
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must install them (dev.py test does)")
        pytest.skip(reason)
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def test_the_report_works_in_a_real_browser(
    tmp_path: Path, cli: Callable[..., Any], browser: Any
) -> None:
    """No console errors; a tile per request, thumbnails loaded, refusals with their reason,
    the chart drawn, a click opens the full image, and the search box filters tiles."""
    lines = [
        {
            "key": f"shot-{i:02d}",
            "prompt": f"Studio product shot {i}, soft window light",
            "model": "gemini-3.1-flash-image" if i % 3 else "gpt-image-2",
            **({"size": "1024x1024", "quality": "low"} if i % 3 == 0 else {"size": "1K"}),
        }
        for i in range(18)
    ]
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, lines)
    sc = scenario_file(
        tmp_path / "sc", "refusals", image_pixels="requested", refusals={"every": 5, "offset": 1}
    )
    out = tmp_path / "out"
    result = cli(
        "run", queue, "--max-usd", "5", "--simulate", sc, "--out", out,
        "--poll-interval", "0.05", "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert result.code == 7, result.err
    manifest = by_key(out)
    refused = {k: v for k, v in manifest.items() if v["status"] == "refused"}
    assert refused

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}"))
    page.goto((out / "report.html").as_uri())
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => { const i = document.querySelector('#sheet img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )

    tiles = page.locator("#sheet .tile")
    images = sum(len(line["files"]) for line in manifest.values())
    assert tiles.count() == images + len(refused), "a tile per image, one per refusal"
    bad = page.locator("#sheet .tile.bad")
    assert bad.count() == len(refused)
    for i in range(bad.count()):
        text = bad.nth(i).inner_text()
        key = next(k for k in refused if k in text)
        assert refused[key]["reason"] in text
    first = page.locator("#sheet .tile:not(.bad) img").first
    assert first.evaluate("i => i.naturalWidth") > 0

    chart = page.locator("#spend svg")
    assert chart.count() == 1
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 300
    assert box["height"] > 100
    assert page.locator("#spend svg path").count() > 0

    with page.context.expect_page() as opened:
        page.locator("#sheet .tile:not(.bad) a.img").first.click()
    full = opened.value
    full.wait_for_load_state("load")
    assert full.url.startswith(out.as_uri() + "/")
    assert full.evaluate("document.images[0].naturalWidth") >= 1024
    full.close()

    page.fill("#find", "shot-07")
    page.wait_for_function("document.getElementById('found').textContent.length > 0")
    assert page.locator("#sheet .tile:not([hidden])").count() == 1
    assert "1 of 18" in page.locator("#found").inner_text()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        assert len(image.getcolors(1 << 20) or []) > 50, "a real rendering, not a blank page"
    assert not problems, problems
    page.close()
