"""The examples must not expire: every model they use prices without a warning, today and later.

The quick start's queue (`examples/catalog.jsonl`), the offline guide's pipelines (Python and
Node) and the requests its recording holds are priced through the real CLI at today's date and
at the latest date any shipped rate card names (an effective date, an availability or a
shutdown). A model shutting down within 30 days warns and a shut-down one is refused, so a
model with an announced shutdown fails here before it breaks the README or the demo.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from costguard.pricing.engine import RateBook

MakeQueue = Callable[..., Path]
Cli = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("memo_cards")

MODEL_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SKIPPED_DIRS = {"node_modules", "__pycache__", ".pytest_cache"}


def latest_card_date(book: RateBook) -> dt.date:
    """The latest date any shipped card names: effective dates, availabilities, shutdowns."""
    dates = [card.effective_from for card in book.cards]
    for card in book.cards:
        for model in card.models:
            life = model.lifecycle
            dates += [d for d in (life.available_from, life.shutdown_on) if d is not None]
    return max(dates)


def today() -> dt.date:
    """Today as the CLI takes it when --as-of is not given (UTC)."""
    return dt.datetime.now(tz=dt.UTC).date()


@pytest.fixture(params=["today", "latest"])
def as_of(request: pytest.FixtureRequest, shipped_book: RateBook) -> str:
    """Each date the examples must price at without a warning."""
    day = today() if request.param == "today" else latest_card_date(shipped_book)
    return day.isoformat()


def estimate_cleanly(cli: Cli, queue: Path, as_of: str, *args: str) -> dict[str, Any]:
    """`estimate --output json` must exit 0 with no warning, in the JSON or on stderr."""
    result = cli("estimate", queue, "--as-of", as_of, "--output", "json", *args)
    assert result.code == 0, f"{queue.name} at {as_of}: {result.err}"
    payload = json.loads(result.out)
    assert payload["warnings"] == [], f"{queue.name} at {as_of}"
    assert not [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert payload["as_of"] == as_of
    return payload


# Where the examples name models -----------------------------------------------------------------


def example_files(examples: Path) -> Iterator[Path]:
    """Every text file under examples/ (what a user's `npm install` adds is left out)."""
    for path in sorted(examples.rglob("*")):
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(examples).parts):
            yield path


def known_model_ids(book: RateBook) -> set[str]:
    """Every id and alias any shipped card lists, shut down or not."""
    return {model_id for card in book.cards for model in card.models for model_id in model.ids}


def models_named_in(examples: Path, book: RateBook) -> dict[str, list[str]]:
    """Each model id an example file names (as a whole word), with the files naming it."""
    known = known_model_ids(book)
    found: dict[str, list[str]] = {}
    for path in example_files(examples):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for token in set(MODEL_TOKEN.findall(text)) & known:
            found.setdefault(token, []).append(str(path.relative_to(examples)))
    return found


def python_pipeline_model(path: Path) -> str:
    """The default `model` of the pipeline's `render` (read from the source, not imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "render":
            for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
                if arg.arg == "model" and isinstance(default, ast.Constant):
                    return str(default.value)
    msg = f"{path}: no render(..., model=...) default"
    raise AssertionError(msg)


def node_pipeline_models(path: Path) -> dict[str, str]:
    """The default `model` of each render function of the Node pipeline."""
    text = path.read_text(encoding="utf-8")
    found = re.findall(r"export async function (render\w+)\([^)]*\{ model = '([^']+)'", text)
    return dict(found)


def recorded_requests(recording: Path) -> dict[str, list[tuple[str | None, dict[str, Any]]]]:
    """The batch requests a recording holds, as queue lines: OpenAI batch lines (from the
    uploaded input files) and Gemini inline requests (with the model from the call's path)."""
    exchanges = recording / "exchanges"
    found: dict[str, list[tuple[str | None, dict[str, Any]]]] = {"openai": [], "gemini": []}
    for path in sorted(exchanges.glob("*.json")):
        exchange = json.loads(path.read_text(encoding="utf-8"))
        body = exchange["request"]["body"] or {}
        if exchange["route"] == "openai.files.create" and "file" in body:
            for line in (exchanges / body["file"]).read_text(encoding="utf-8").splitlines():
                if line.startswith("{"):
                    found["openai"].append((None, json.loads(line)))
        elif exchange["route"] == "gemini.batches.create" and "json" in body:
            model = exchange["request"]["path"].rsplit("/", 1)[-1].split(":")[0]
            inline = body["json"]["batch"]["inputConfig"]["requests"]["requests"]
            for item in inline:
                line = {"key": item["metadata"]["key"], "request": item["request"]}
                found["gemini"].append((model, line))
    return found


# The tests ----------------------------------------------------------------------------------------


def test_quick_start_queue_prices_without_a_warning(
    cli: Cli, examples_dir: Path, as_of: str
) -> None:
    """`costguard estimate examples/catalog.jsonl` (the README and `dev.py demo`) stays clean."""
    catalog = examples_dir / "catalog.jsonl"
    payload = estimate_cleanly(cli, catalog, as_of)
    lines = [line for line in catalog.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert payload["requests"] == len(lines)
    assert {group["provider"] for group in payload["groups"]} == {"gemini", "openai"}


def test_every_model_an_example_names_prices_without_a_warning(
    cli: Cli, make_queue: MakeQueue, examples_dir: Path, shipped_book: RateBook, as_of: str
) -> None:
    """Any model id in any example file (queues, pipelines, recordings) prices cleanly."""
    named = models_named_in(examples_dir, shipped_book)
    assert named, "no model id found under examples/"
    problems = []
    for model, files in sorted(named.items()):
        line = {"key": "k", "prompt": "a red fox", "model": model}
        result = cli("estimate", make_queue(line, name=f"{model}.jsonl"), "--as-of", as_of)
        said = [e for e in result.err.splitlines() if e.startswith(("error:", "warning:"))]
        said += [e for e in result.out.splitlines() if e.startswith("warning:")]
        if result.code != 0 or said:
            problems.append(f"{model} (in {', '.join(files)}): exit {result.code}; {said}")
    assert not problems, f"at {as_of}:\n" + "\n".join(problems)


def test_the_guide_pipelines_use_models_the_scan_finds(
    examples_dir: Path, shipped_book: RateBook
) -> None:
    """The pipelines' default models (Python and Node) are real ids, so the scan above covers
    them; the recording was made with the same models (re-record when they change)."""
    offline = examples_dir / "offline"
    python = {
        "openai": python_pipeline_model(offline / "pipeline_openai.py"),
        "gemini": python_pipeline_model(offline / "pipeline_gemini.py"),
    }
    node = node_pipeline_models(offline / "node" / "pipeline.mjs")
    assert node == {"renderOpenAI": python["openai"], "renderGemini": python["gemini"]}
    assert set(python.values()) <= set(models_named_in(examples_dir, shipped_book))
    manifest = yaml.safe_load(
        (offline / "recordings" / "nightly" / "recording.yaml").read_text(encoding="utf-8")
    )
    assert {job["provider"]: job["model"] for job in manifest["jobs"]} == python


def test_recorded_requests_price_without_a_warning(
    cli: Cli, make_queue: MakeQueue, examples_dir: Path, as_of: str
) -> None:
    """What the recorded pipelines sent (OpenAI batch lines, Gemini inline requests) is priced
    as sent, cleanly: a replayed recording shows requests a user can still make."""
    recorded = recorded_requests(examples_dir / "offline" / "recordings" / "nightly")
    assert recorded["openai"], "no OpenAI batch input in the recording"
    assert recorded["gemini"], "no Gemini inline batch in the recording"
    openai = make_queue(*(line for _, line in recorded["openai"]), name="recorded-openai.jsonl")
    payload = estimate_cleanly(cli, openai, as_of)
    assert payload["format"] == "openai"
    assert payload["requests"] == len(recorded["openai"])
    for model in sorted({model for model, _ in recorded["gemini"] if model}):
        lines = [line for m, line in recorded["gemini"] if m == model]
        gemini = make_queue(*lines, name=f"recorded-{model}.jsonl")
        payload = estimate_cleanly(cli, gemini, as_of, "--model", model)
        assert payload["format"] == "gemini"
        assert payload["requests"] == len(lines)
