"""`costguard estimate` and `costguard prices`: price a queue, and show or diff the rate cards.

Nothing here sends anything: both commands read the queue and the rate cards only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from costguard.api.setup import load_rate_book
from costguard.cli.common import (
    AsOfOpt,
    AspectRatioOpt,
    CalibratedOpt,
    FormatOption,
    LedgerOpt,
    OutputOpt,
    PricingOpt,
    QualityOpt,
    SizeOpt,
    WideOpt,
    calibration_for,
    parse_as_of,
    parse_usd,
)
from costguard.cli.output import emit, error_object, fail
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.pricing.engine import RateBook
    from costguard.pricing.schema import Mode, ModelCard
    from costguard.queue.estimate import Advice, QueueEstimate
    from costguard.queue.reader import Format


class ModeOpt(StrEnum):
    """--mode for estimate."""

    batch = "batch"
    sync = "sync"
    both = "both"


class EstimateOutput(StrEnum):
    """--output for estimate: also Markdown, for a pull-request comment."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class BudgetModeOpt(StrEnum):
    """Which mode's maximum --max-usd checks."""

    batch = "batch"
    sync = "sync"


def estimate(
    queue: Annotated[
        Path,
        typer.Argument(metavar="QUEUE", help="Queue file (JSONL) to price; - reads it from stdin."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Model for lines that name none (required for Gemini batch "
            "format). Also COSTGUARD_DEFAULT_MODEL.",
        ),
    ] = None,
    size: SizeOpt = None,
    quality: QualityOpt = None,
    aspect_ratio: AspectRatioOpt = None,
    mode: Annotated[ModeOpt, typer.Option(help="Which prices to show.")] = ModeOpt.both,
    as_of: AsOfOpt = None,
    max_usd: Annotated[
        str | None,
        typer.Option(
            "--max-usd", metavar="USD", help="Budget: exit 3 unless the maximum cost fits it."
        ),
    ] = None,
    budget_mode: Annotated[
        BudgetModeOpt,
        typer.Option(help="Which mode's maximum --max-usd checks (what `run` would send)."),
    ] = BudgetModeOpt.batch,
    compare: Annotated[
        str | None,
        typer.Option(
            metavar="M1,M2", help="Also price the queue on these models, comma-separated."
        ),
    ] = None,
    output: Annotated[
        EstimateOutput,
        typer.Option(help="table, json, csv or markdown (a pull-request comment)."),
    ] = EstimateOutput.table,
    wide: WideOpt = False,
    diff_base: Annotated[
        Path | None,
        typer.Option(
            "--diff-base",
            metavar="OLD_QUEUE",
            help="Show what QUEUE adds or saves against OLD_QUEUE (the queue before a change), "
            "per model, size and quality and in total; an empty OLD_QUEUE is a new queue.",
        ),
    ] = None,
    base_as_of: Annotated[
        str | None,
        typer.Option(
            "--base-as-of",
            metavar="DATE",
            help="With --diff-base: price OLD_QUEUE with the cards in force on this date "
            "(default: --as-of), to show what a rate-card change does.",
        ),
    ] = None,
    fmt: FormatOption = None,
    pricing: PricingOpt = None,
    calibrated: CalibratedOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    """Price a queue before anything is sent: per model, size and quality, batch against sync.

    Examples: costguard estimate examples/catalog.jsonl --max-usd 5;
    costguard estimate new.jsonl --diff-base old.jsonl --max-usd 50 --output markdown

    A queue on stdin: make-queue | costguard estimate - (relative image paths are relative to
    the current directory; errors name <stdin>:LINE).
    """
    from costguard.api.settings import Settings
    from costguard.cli import diffs, render
    from costguard.queue.estimate import advise, price_base, price_queue
    from costguard.queue.estimate import compare as compare_models
    from costguard.queue.estimate import diff as diff_queues
    from costguard.queue.reader import STDIN, Defaults

    _check_diff_options(diff_base, base_as_of, output, compare)
    at = parse_as_of(as_of)
    base_at = parse_as_of(base_as_of) if base_as_of is not None else at
    limit = parse_usd(max_usd, "--max-usd") if max_usd is not None else None
    book = load_rate_book(pricing)
    defaults = Defaults(
        model=model or Settings().default_model,
        size=size,
        quality=quality,
        aspect_ratio=aspect_ratio,
    )
    budget_card_mode: Mode = "batch" if budget_mode is BudgetModeOpt.batch else "standard"
    calibration = calibration_for(calibrated, ledger)
    queue_format: Format | None = fmt.value if fmt else None
    from_stdin = str(queue) == "-"
    priced = price_queue(
        STDIN if from_stdin else queue,
        book,
        at,
        defaults=defaults,
        fmt=queue_format,
        calibration=calibration,
        stream=sys.stdin.buffer if from_stdin else None,
        budget=(budget_card_mode, limit) if limit is not None else None,
    )
    change = None
    if diff_base is not None:
        base = price_base(
            diff_base, book, base_at, defaults=defaults, fmt=queue_format, calibration=calibration
        )
        change = diff_queues(base, priced)
    others = [m.strip() for m in (compare or "").split(",") if m.strip()]
    comparisons = compare_models(priced, book, at, others)
    advice = (
        advise(priced, book, at, budget_card_mode, limit, defaults=defaults)
        if limit is not None
        else None
    )
    modes = render.modes_for(mode.value)
    shown_mode = modes[0] if len(modes) == 1 else budget_card_mode  # a change shows one mode
    if change is not None:
        text = diffs.show(change, book, output.value, shown_mode, advice, budget_card_mode, wide)
    elif output is EstimateOutput.json:
        text = render.estimate_json(
            priced, budget=advice, budget_mode=budget_card_mode, comparisons=comparisons
        )
    elif output is EstimateOutput.csv:
        text = render.estimate_csv(priced, modes)
    elif output is EstimateOutput.markdown:
        text = render.estimate_markdown(
            priced, modes, comparisons=comparisons, budget=advice, budget_mode=budget_card_mode
        )
    else:
        text = render.estimate_table(priced, book, modes, comparisons=comparisons, wide=wide)
    _show(text, output, advice, budget_card_mode)
    _notes_on_stderr(priced, output)
    if advice is not None:
        if advice.decision.fits:
            if output is EstimateOutput.table:
                typer.echo(render.budget_line(advice, budget_card_mode))
        else:
            for line in render.advice_lines(advice, budget_card_mode):
                typer.echo(line, err=True)
            raise typer.Exit(3)


def _show(text: str, output: EstimateOutput, advice: Advice | None, mode: Mode) -> None:
    """Print the estimate; in JSON, over --max-usd (exit 3 follows) it has an `error` key."""
    from costguard.cli import render

    if output is not EstimateOutput.json:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    document = json.loads(text)
    if advice is not None and not advice.decision.fits:
        head = render.advice_lines(advice, mode)[0]
        document["error"] = error_object(3, "over_budget", head)
    emit(document)


def _check_diff_options(
    diff_base: Path | None, base_as_of: str | None, output: EstimateOutput, compare: str | None
) -> None:
    """--base-as-of goes with --diff-base; a change is no CSV, and --compare prices one queue."""
    if diff_base is None:
        if base_as_of is not None:
            raise UsageError("--base-as-of needs --diff-base OLD_QUEUE")
        return
    if output is EstimateOutput.csv:
        raise UsageError("--diff-base shows a change as a table, json or markdown, not csv")
    if compare:
        raise UsageError("--compare prices one queue: leave out --diff-base, or --compare")


def _notes_on_stderr(priced: QueueEstimate, output: EstimateOutput) -> None:
    """JSON and CSV carry no prose: warnings and the assumed figures go to stderr, and for CSV
    (which has no room for it) `calibrated from N requests ...` too. The table and Markdown
    show them."""
    from costguard.cli import render

    if output in (EstimateOutput.table, EstimateOutput.markdown):
        return
    if output is EstimateOutput.csv:
        for line in render.calibration_lines(priced):
            typer.echo(line, err=True)
    for warning in priced.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if priced.estimate.assumption_line:
        typer.echo(priced.estimate.assumption_line, err=True)


def prices(
    provider: Annotated[
        str | None, typer.Option(metavar="PROVIDER", help="gemini or openai.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(metavar="MODEL", help="One model (id or alias).")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="With --model: one size, any WxH the model accepts (e.g. 1536x864).",
        ),
    ] = None,
    quality: Annotated[
        str | None, typer.Option(metavar="QUALITY", help="With --model: one quality.")
    ] = None,
    as_of: AsOfOpt = None,
    diff: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="DATE1 DATE2", help="Show what changed between two dates (YYYY-MM-DD)."
        ),
    ] = None,
    output: Annotated[OutputOpt, typer.Option(help="table, json or csv.")] = OutputOpt.table,
    wide: WideOpt = False,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the rate-card JSON schema.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="With --schema: fail if pricing/schema.json is stale."),
    ] = False,
    pricing: PricingOpt = None,
) -> None:
    """Per-image prices for every size and quality, standard (sync) and batch.

    Examples: costguard prices --provider gemini --as-of 2026-06-01;
    costguard prices --model gpt-image-2 --size 3840x2160 --quality high
    """
    from costguard.cli import render
    from costguard.pricing.loader import json_schema, shipped_dir

    if schema:
        text = json_schema()
        if check:
            current = shipped_dir() / "schema.json"
            if not current.is_file() or current.read_text(encoding="utf-8") != text:
                msg = f"{current} is stale: run `costguard prices --schema > pricing/schema.json`"
                raise fail(1, "stale_schema", msg, prefix="")
            return
        typer.echo(text, nl=False)
        return
    book = load_rate_book(pricing)
    if diff is not None:
        _prices_diff(
            book, parse_as_of(diff[0]), parse_as_of(diff[1]), provider, model, output, wide
        )
        return
    at = parse_as_of(as_of)
    rows: list[dict[str, Any]] = []
    if model is None and (size is not None or quality is not None):
        raise UsageError("--size and --quality need --model")
    if model is not None:
        resolved = book.resolve(model, at)
        rows = render.price_rows(
            resolved.card,
            resolved.model,
            sizes=[_size_for(resolved.model, size)] if size is not None else None,
            qualities=[_quality_for(resolved.model, quality)] if quality is not None else None,
        )
        if resolved.warning:
            typer.echo(f"warning: {resolved.warning}", err=True)
    else:
        for resolved in book.models_at(at):
            if provider is None or resolved.provider == provider:
                rows += render.price_rows(resolved.card, resolved.model)
    if not rows:
        msg = f"no models priced on {at}" + (f" for provider {provider!r}" if provider else "")
        raise UsageError(msg)
    _rows(rows, output, wide)


def _size_for(model: ModelCard, size: str) -> str:
    """`size` if the model accepts it; a usage error (exit 2) naming the rule otherwise."""
    from costguard.pricing.sizes import size_problem

    problem = size_problem(model, size)
    if problem is not None:
        raise UsageError(f"--size: {problem}")
    return size


def _quality_for(model: ModelCard, quality: str) -> str:
    if quality not in model.qualities:
        allowed = ", ".join(model.qualities) or "none (the model has no quality setting)"
        raise UsageError(f"--quality: {model.id} does not support {quality!r}; allowed: {allowed}")
    return quality


def _rows(rows: list[dict[str, Any]], output: OutputOpt, wide: bool) -> None:
    """Print price or diff rows: a JSON list, or a table or CSV (ending in one newline)."""
    from costguard.cli import render

    if output is OutputOpt.json:
        emit(rows)
        return
    text = render.prices_table(rows, "csv" if output is OutputOpt.csv else "table", wide=wide)
    typer.echo(text, nl=not text.endswith("\n"))


def _prices_diff(
    book: RateBook,
    before: dt.date,
    after: dt.date,
    provider: str | None,
    model: str | None,
    output: OutputOpt,
    wide: bool,
) -> None:
    from costguard.pricing.diff import diff_books

    rows = diff_books(book, before, after, provider=provider, model=model)
    if not rows and output is not OutputOpt.json:
        typer.echo(f"no price or lifecycle changes between {before} and {after}")
        return
    _rows(rows, output, wide)
