"""`costguard run`, `collect`, `status`, `cancel` and `runs`: the CLI face of the runner.

Builds the runner's dependencies (settings, rate cards, ledger, provider clients, progress
display) and, with `--simulate`, wraps the run in the in-process simulator whose state is kept
beside the run's journal, so a killed simulated run resumes just as a real one would.
"""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from costguard.api import setup
from costguard.api.setup import open_configured_ledger
from costguard.cli.common import (
    AsOfOpt,
    AspectRatioOpt,
    CalibratedOpt,
    FormatOption,
    LedgerOpt,
    PricingOpt,
    QualityOpt,
    RunArg,
    SizeOpt,
    SummaryOutput,
    WideOpt,
    calibration_wanted,
    complete_run,
    load_calibration,
    parse_as_of,
    parse_usd,
    require_ledger,
    resolve_run,
    same_ledger,
    shared_journals,
)
from costguard.cli.output import emit, error_object, fail
from costguard.cli.progress import progress_reporter
from costguard.cli.report import NoReportOpt, write_run_report
from costguard.errors import UsageError
from costguard.resources import home_dir

if TYPE_CHECKING:
    from costguard.execution.journal import Journal, Part
    from costguard.execution.options import RunOptions
    from costguard.execution.reconcile import Summary
    from costguard.execution.rundir import RunDir

EXIT_INCOMPLETE = 7
ASKED = "job states as the provider gave them just now"
"""`status`'s note when it asked the provider."""


class RunModeOpt(StrEnum):
    """--mode for run."""

    batch = "batch"
    sync = "sync"


VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also show each job's state in the provider's own words (`in_progress`, "
        "`JOB_STATE_RUNNING`) beside costguard's (`running`).",
    ),
]

MaxEnqueuedOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--max-enqueued-tokens",
        metavar="LIMIT",
        help="The provider's batch quota, LIMIT = MODEL=N: at most N tokens of MODEL enqueued "
        "at once. Parts are sized to fit and sent as earlier ones finish (repeatable; "
        "COSTGUARD_MAX_ENQUEUED_TOKENS).",
    ),
]
KeepRawOpt = Annotated[
    bool,
    typer.Option(
        "--keep-raw",
        help="Keep each job's raw files (its input, the provider's result files) in the run "
        "folder after collecting it; by default they are deleted once the part is collected.",
    ),
]


def run(
    max_usd: Annotated[
        str,
        typer.Option(
            "--max-usd", metavar="USD", help="Refuse to send anything whose maximum passes this."
        ),
    ],
    queue: Annotated[
        Path | None,
        typer.Argument(metavar="QUEUE", help="Queue file (JSONL) to run (none with --retry)."),
    ] = None,
    mode: Annotated[
        RunModeOpt | None,
        typer.Option(help="batch (half price, asynchronous; the default) or sync (full price)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(metavar="MODEL", help="Model for lines that name none.")
    ] = None,
    size: SizeOpt = None,
    quality: QualityOpt = None,
    aspect_ratio: AspectRatioOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Output folder (default: costguard-out/<run id>)."),
    ] = None,
    simulate: Annotated[
        str | None,
        typer.Option(
            "--simulate",
            metavar="[SCENARIO]",
            help="Run against the in-process simulator; optional scenario name or YAML file "
            "(default: succeeded). See `costguard simulate scenarios`.",
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Seconds between polls, growing 1.5x per poll (default 30; 0.5 with --simulate).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Stop waiting after this many seconds; jobs keep running at the provider "
            "(exit 6).",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Submit, then return; collect later.")
    ] = False,
    retry_refused: Annotated[
        bool, typer.Option("--retry-refused", help="Also write refused requests to retry.jsonl.")
    ] = False,
    retry: Annotated[
        str | None,
        typer.Option(
            "--retry",
            metavar="RUN",
            autocompletion=complete_run,
            help="Send run RUN's retry.jsonl (what did not come back ok) as a new run, with "
            "RUN's mode, model, size, quality, aspect ratio, budget and scenario unless given. "
            "RUN may be a unique prefix of its id, or `last`.",
        ),
    ] = None,
    new_run: Annotated[
        bool,
        typer.Option(
            "--new-run",
            help="Start a new run (a new run id) even if this queue ran before with these options.",
        ),
    ] = False,
    budget: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Ledger budget to charge (default: COSTGUARD_BUDGET, else 'default'). A budget "
            "named here or in COSTGUARD_BUDGET must be set (exit 5 otherwise); only an unset "
            "'default' leaves --max-usd alone to cap the run.",
        ),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(metavar="WHO", help="Who runs this (default: COSTGUARD_OWNER or the user)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(metavar="N", help="Parallel calls in sync mode.", min=1)
    ] = 4,
    max_requests_per_part: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=1,
            help="Split batch jobs at N requests (default: the providers' limits; "
            "COSTGUARD_MAX_REQUESTS_PER_PART).",
        ),
    ] = None,
    max_enqueued_tokens: MaxEnqueuedOpt = None,
    keep_raw: KeepRawOpt = False,
    as_of: AsOfOpt = None,
    fmt: FormatOption = None,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    pricing: PricingOpt = None,
    ledger: LedgerOpt = None,
    calibrated: CalibratedOpt = None,
    no_report: NoReportOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Send a queue through the Batch API under a budget, poll, and collect every image.

    Example: costguard run examples/catalog.jsonl --max-usd 1 --simulate

    Running the same command again resumes the run (after a crash, Ctrl-C or --detach);
    --new-run starts another. `costguard run --retry RUN --max-usd X` sends what RUN did not
    get back ok (its retry.jsonl) as a new run.
    """

    from costguard.api.settings import Settings
    from costguard.execution.options import run_id_for
    from costguard.queue.reader import Defaults

    date = parse_as_of(as_of) if as_of is not None else None
    chosen_budget = budget if budget is not None else (Settings().budget or None)
    run_mode = mode.value if mode is not None else None
    queue_format = fmt.value if fmt else None
    if retry is not None:
        if queue is not None:
            msg = f"give a queue or --retry {retry}, not both"
            raise UsageError(msg)
        retry = (earlier := _load_journal(retry, ledger)).run_id  # a prefix or `last`: the id
        with open_configured_ledger(ledger) as opened:  # the retry is recorded where the run was
            same_ledger(earlier, opened)
        queue = Path(earlier.out) / "retry.jsonl"
        if not queue.is_file():
            msg = f"run {retry} has nothing to retry ({queue} does not exist)"
            raise UsageError(msg)
        o = earlier.options
        run_mode = run_mode or earlier.mode
        model, size = model or o["model"], size or o["size"]
        quality, aspect_ratio = quality or o["quality"], aspect_ratio or o["aspect_ratio"]
        queue_format = queue_format or earlier.queue_format
        simulate = simulate or earlier.simulate
        if chosen_budget is None and o.get("budget", "default") != "default":
            chosen_budget = o["budget"]
    options = setup.run_options(
        _queue_file(queue),
        max_usd=parse_usd(max_usd, "--max-usd"),
        mode=run_mode or "batch",  # type: ignore[arg-type]  # a RunModeOpt value or a journal's
        defaults=Defaults(model, size, quality, aspect_ratio),
        fmt=queue_format,  # type: ignore[arg-type]  # a FormatOpt value or a journal's
        as_of=date,
        out=out,
        scenario=simulate,
        poll_interval=poll_interval,
        timeout=timeout,
        detach=detach,
        retry_refused=retry_refused,
        budget=chosen_budget,
        owner=owner,
        concurrency=concurrency,
        max_requests_per_part=max_requests_per_part,
        max_enqueued_tokens=Settings().quota_limits(max_enqueued_tokens),
        keep_raw=keep_raw,
        retry_of=retry,
        new_run=new_run,
    )
    from costguard.execution.options import RunPendingError

    run_id = run_id_for(options)
    learned = calibration_wanted(calibrated)
    if learned:
        require_ledger(ledger)
    try:
        summary = _start(
            options, run_id, pricing, ledger, learned=learned, verbose=verbose, page=not no_report
        )
    except RunPendingError as pending:
        if not detach:
            raise
        _detached(run_id, str(pending), output)
        return
    except KeyboardInterrupt:
        msg = (
            f"interrupted: submitted jobs keep running at the provider; resume with the same "
            f"command or `costguard collect {run_id}`"
        )
        raise fail(130, "interrupted", msg, prefix="", run_id=run_id) from None
    _report(summary, output)


def _detached(run_id: str, message: str, output: str) -> None:
    """`--detach` returned after submitting: say how to pick the run up (JSON: `{run_id,
    status: "detached", message}`, exit 0)."""
    typer.echo(message, err=True)
    if output == "json":
        emit({"run_id": run_id, "status": "detached", "message": message})


def _start(
    options: RunOptions,
    run_id: str,
    pricing: list[Path] | None,
    ledger: str | None,
    *,
    learned: bool,
    verbose: bool,
    page: bool,
) -> Summary:
    """Start (or resume) the run under the progress display, taken down on every way out;
    then write its report (`page`)."""
    from dataclasses import replace

    with progress_reporter(verbose=verbose, label=run_id) as reporter:
        runner = setup.make_runner(
            pricing, ledger, reporter, simulated=options.simulate is not None
        )
        if learned:
            options = replace(options, calibration=load_calibration(runner.ledger))
        with setup.simulated(options.simulate, runner.run_dir(run_id).simulator_state):
            summary = runner.start(options, run_id)
    if page:
        summary.report = write_run_report(runner.run_dir(run_id).load(), runner.book, runner.ledger)
    return summary


def collect(
    run_id: RunArg,
    poll_interval: Annotated[
        float | None, typer.Option(metavar="S", help="Seconds between polls.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="S", help="Stop waiting after this many seconds.")
    ] = None,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    queue: Annotated[
        Path | None,
        typer.Option(
            "--queue",
            metavar="QUEUE",
            help="Where the run's queue file is on this machine, when it is not where the run "
            "started (another machine sharing the ledger); it must be the same file.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Write what this machine collects here instead."),
    ] = None,
    keep_raw: KeepRawOpt = False,
    max_enqueued_tokens: MaxEnqueuedOpt = None,
    pricing: PricingOpt = None,
    ledger: LedgerOpt = None,
    no_report: NoReportOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Poll and collect a run started earlier (after --detach, --timeout, Ctrl-C or a crash).

    With a shared ledger (COSTGUARD_LEDGER_URL) the run may have been started on another
    machine: its journal is in the ledger; give --queue (and --out) for this machine's paths.

    Example: costguard collect run-3f2a9c0d1e7b
    """
    from costguard.api.settings import Settings
    from costguard.execution.context import Clients
    from costguard.execution.options import RunOptions

    limits = Settings().quota_limits(max_enqueued_tokens)
    with progress_reporter(verbose=verbose, label=run_id) as reporter:
        runner = setup.make_runner(pricing, ledger, reporter, simulated=False)
        run_id = resolve_run(run_id, runner.ledger.journals)
        journal = runner.run_dir(run_id).load() if runner.run_dir(run_id).exists else None
        simulated = journal.simulate if journal else None
        if simulated:
            runner.clients = Clients(setup.providers(simulated=True))
        options = RunOptions(
            queue=Path(journal.queue) if journal else Path(),
            max_usd=Decimal(0),
            poll_interval=poll_interval
            if poll_interval is not None
            else (0.5 if simulated else 30.0),
            timeout=timeout,
            keep_raw=keep_raw,
            max_enqueued_tokens=limits,
        )
        with setup.simulated(simulated, runner.run_dir(run_id).simulator_state):
            summary = runner.collect(run_id, options, queue=queue, out=out)
    if not no_report:
        summary.report = write_run_report(runner.run_dir(run_id).load(), runner.book, runner.ledger)
    _report(summary, output)


def _queue_file(queue: Path | None) -> Path:
    """The queue file `run` was given: it must be one (not missing, not a folder)."""
    if queue is None:
        msg = "give the queue file to run (or --retry RUN)"
        raise UsageError(msg)
    if str(queue) == "-":
        msg = (
            "run reads a queue file, not stdin ('-'): a run re-reads its queue to resume, "
            "collect and retry; save it first (... > queue.jsonl) and run that file"
        )
        raise UsageError(msg)
    if not queue.is_file():
        what = "is a folder, not a queue file" if queue.is_dir() else "queue file not found"
        msg = f"{queue}: {what}"
        raise UsageError(msg)
    return queue


def _load_journal(run_id: str, ledger: str | None) -> Journal:
    """Run `run_id`'s journal, from this machine's runs or the shared ledger's."""
    from costguard.execution.rundir import RunDir

    with shared_journals(ledger) as store:
        rundir = RunDir(home_dir() / "runs" / resolve_run(run_id, store), store=store)
        rundir.require()
        return rundir.load()


def status(
    run_id: RunArg,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    ledger: LedgerOpt = None,
    wide: WideOpt = False,
    refresh: Annotated[
        bool | None,
        typer.Option(
            "--refresh/--no-refresh",
            help="Ask the provider how the run's unfinished jobs are doing, and record it in "
            "the journal. Default: ask when the run has unfinished jobs and their API keys are "
            "set (a rehearsal: when its simulator's state is on this machine); otherwise, or "
            "with --no-refresh, show what the journal last recorded.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show a run's parts, jobs and what has been collected.

    Example: costguard status run-3f2a9c0d1e7b --refresh
    """
    from costguard.execution.outputs import Outputs
    from costguard.execution.progress import part_state

    journal = _load_journal(run_id, ledger)
    journal, note = _refreshed(journal, ledger, refresh)
    counts: dict[str, int] = {}
    tallies: dict[str, tuple[int, int]] = {}
    for line in Outputs(Path(journal.out)).lines():
        counts[line["status"]] = counts.get(line["status"], 0) + 1
        lines, ok = tallies.get(line["part"], (0, 0))
        tallies[line["part"]] = (lines + 1, ok + (line["status"] == "ok"))

    def done_failed(part: Part) -> tuple[int | None, int | None]:
        if part.endpoint == "sync":
            lines, ok = tallies.get(part.id, (0, 0))
            return ok, lines - ok
        known = part.job_counts or {}
        return known.get("done"), known.get("failed")

    if output == "json":
        from dataclasses import asdict

        shown = asdict(journal)
        for part, entry in zip(journal.parts, shown["parts"], strict=True):
            entry["progress_state"] = part_state(part)
        emit({**shown, "collected": counts, "refreshed": note == ASKED})
        return
    from costguard.money import usd_together

    typer.echo(
        f"run {journal.run_id}: {journal.status} ({journal.mode}"
        f"{', simulated ' + journal.simulate if journal.simulate else ''})"
    )
    typer.echo(f"queue {journal.queue}; out {journal.out}")
    expected, maximum = usd_together(
        Decimal(journal.estimate["expected_usd"]), Decimal(journal.estimate["max_usd"])
    )
    typer.echo(f"estimate: expected {expected}, max {maximum}")
    if journal.admission:
        typer.echo(f"budget: {journal.admission}")
    calibration = journal.estimate.get("calibration")
    if calibration:
        since = f" (since {calibration['since']})" if calibration["since"] else ""
        typer.echo(f"calibrated from {calibration['requests']:,} requests{since}")
    done = {p.id: done_failed(p) for p in journal.parts}
    typer.echo(_parts_table(journal, done, wide=wide, verbose=verbose))
    typer.echo(
        "collected: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing yet")
    )
    if note is not None:
        typer.echo(note)


def _refreshed(
    journal: Journal, ledger: str | None, wanted: bool | None
) -> tuple[Journal, str | None]:
    """The journal, with its unfinished jobs' states asked of the provider when `wanted` (None:
    when their keys, or a rehearsal's simulator state, are here); and where the states shown
    come from: `ASKED`, a note saying why the provider was not asked, or None (no job is
    unfinished)."""
    from costguard.errors import ProviderError
    from costguard.execution.context import Clients
    from costguard.execution.poll import refresh
    from costguard.execution.rundir import RunBusyError, RunDir

    running = [p for p in journal.parts if p.awaiting_job]
    if not running:
        return journal, None
    recorded = "job states as the journal last recorded them"
    with shared_journals(ledger) as store:
        rundir = RunDir(home_dir() / "runs" / journal.run_id, store=store)
        why_not = _cannot_ask(journal, running, rundir, wanted=wanted)
        if why_not is not None:
            return journal, f"{recorded} ({why_not})"
        try:
            rundir.lock()
        except RunBusyError as busy:
            return journal, f"{recorded}: {busy} (it records them as it polls)"
        try:
            fresh = rundir.load()
            clients = Clients(setup.providers(simulated=fresh.simulate is not None))
            base = Path(fresh.queue).parent
            with setup.simulated(fresh.simulate, rundir.simulator_state):
                refresh(fresh, lambda provider: clients.get(provider, base))
        except ProviderError as exc:
            if wanted:
                raise
            return journal, f"{recorded} (asking the provider failed: {exc})"
        finally:
            rundir.unlock()
    return fresh, ASKED


def _cannot_ask(
    journal: Journal, running: list[Part], rundir: RunDir, *, wanted: bool | None
) -> str | None:
    """Why `status` does not ask the provider (None: it does); with `--refresh`, an error."""
    if wanted is False:
        return "--refresh asks the provider"
    why = None
    if journal.simulate is not None:
        if not rundir.simulator_state.is_file():
            why = "its rehearsal's simulator state is on the machine that ran it"
    else:
        keyless = sorted({p.provider for p in running if not setup.has_key(p.provider)})
        if keyless:
            names = "; ".join(" or ".join(setup.key_names(p)) for p in keyless)
            why = f"no {' or '.join(keyless)} API key set to ask the provider ({names})"
    if why is not None and wanted:
        msg = f"cannot ask about run {journal.run_id}: {why}"
        raise UsageError(msg)
    return why


def _parts_table(
    journal: Journal,
    done: dict[str, tuple[int | None, int | None]],
    *,
    wide: bool,
    verbose: bool,
) -> str:
    """A run's parts: requests, job, where it stands (`--verbose`: in the provider's words
    too), requests done and failed (`done`, per part; None: the provider did not say), and
    what it cost. To fit 100 columns the job id goes first (a Gemini job's is 44 wide), then
    the counts; `--wide` shows them all."""
    from costguard.cli import table
    from costguard.cli.table import Column
    from costguard.execution.progress import count_text, part_state
    from costguard.money import usd

    columns = [
        Column("part"),
        Column("requests", right=True),
        Column("job", drop=2),
        Column("state"),
        *([Column("provider state")] if verbose else []),
        Column("done", right=True, drop=1),
        Column("failed", right=True, drop=1),
        Column("cost", right=True),
    ]
    rows = [
        [
            p.id,
            f"{p.requests:,}",
            p.job_id or "-",
            part_state(p),
            *([p.provider_state or "-"] if verbose else []),
            count_text(done[p.id][0]),
            count_text(done[p.id][1]),
            usd(Decimal(p.cost_usd)) if p.cost_usd is not None else "-",
        ]
        for p in journal.parts
    ]
    return table.render(columns, rows, wide=wide)


def cancel(
    run_id: RunArg,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    pricing: PricingOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    """Ask the provider to cancel a run's unfinished jobs, and withdraw its parts not yet
    submitted (waiting for quota); then `collect` keeps what finished.

    Example: costguard cancel run-3f2a9c0d1e7b
    """
    from costguard.execution.context import Clients
    from costguard.execution.options import QuietReporter

    quiet = QuietReporter(lambda text: typer.echo(text, err=True))
    runner = setup.make_runner(pricing, ledger, quiet, simulated=False)
    run_id = resolve_run(run_id, runner.ledger.journals)
    runner.run_dir(run_id).require()
    journal = runner.run_dir(run_id).load()
    if journal.simulate:
        runner.clients = Clients(setup.providers(simulated=True))
    with setup.simulated(journal.simulate, runner.run_dir(run_id).simulator_state):
        jobs, withdrawn = runner.cancel(run_id)
    if output == "json":
        emit({"run_id": run_id, "cancelled": jobs, "withdrawn": withdrawn})
        return
    if not jobs and not withdrawn:
        typer.echo(f"run {run_id}: no unfinished job to cancel")
        return
    if jobs:
        typer.echo(f"run {run_id}: asked the provider to cancel {', '.join(jobs)}")
    if withdrawn:
        typer.echo(
            f"run {run_id}: withdrew {len(withdrawn)} part(s) not yet submitted (waiting for "
            f"quota): they will never be sent ({', '.join(withdrawn)})"
        )
    typer.echo(f"collect what finished with `costguard collect {run_id}`")


def runs(
    ctx: typer.Context,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    ledger: LedgerOpt = None,
    wide: WideOpt = False,
) -> None:
    """List runs on this machine (with a shared ledger: every machine's), newest first: how
    many requests came back ok and not ok, what they cost, and the maximum reserved.

    Example: costguard runs

    `costguard runs rm RUN...` and `costguard runs prune OLDER_THAN` remove finished runs'
    journals and folders (never their images, never the ledger's records).
    """
    if ctx.invoked_subcommand is not None:
        return
    from costguard.execution.catalog import journals as all_journals

    with shared_journals(ledger) as store:
        journals = all_journals(home_dir(), store)
    journals = sorted(journals, key=lambda j: j.created[:19], reverse=True)
    rows = [_run_row(journal) for journal in journals]
    if output == "json":
        emit([_run_json(j, row) for j, row in zip(journals, rows, strict=True)])
        return
    if not rows:
        typer.echo("no runs yet")
        return
    typer.echo(_runs_table(rows, wide=wide))


def _run_row(journal: Journal) -> dict[str, Any]:
    """One run for `costguard runs`: how many requests came back ok and not ok (from its
    manifest, when it is on this machine) and what its collected parts cost (its journal, as
    recorded in the ledger)."""
    from costguard.execution.journal import JournalError
    from costguard.execution.outputs import Outputs
    from costguard.money import ZERO, plain

    collected = [p for p in journal.parts if p.state == "collected" and p.cost_usd is not None]
    ok: int | None = 0
    not_ok: int | None = 0
    manifest = Outputs(Path(journal.out))
    if manifest.manifest_path.is_file():
        try:
            statuses = [line["status"] for line in manifest.lines()]
        except (OSError, ValueError, KeyError, TypeError, JournalError):  # `status RUN` says why
            ok = not_ok = None
        else:
            ok = statuses.count("ok")
            not_ok = len(statuses) - ok
    elif collected:  # collected on another machine: its manifest is there
        ok = not_ok = None
    actual = sum((Decimal(p.cost_usd or 0) for p in collected), ZERO)
    return {
        "run": journal.run_id,
        "created": journal.created[:19],
        "status": journal.status,
        "mode": journal.mode + (" (sim)" if journal.simulate else ""),
        "requests": journal.estimate["requests"],
        "ok": ok,
        "not_ok": not_ok,
        "actual_usd": plain(actual) if collected else None,
        "max_usd": journal.estimate["max_usd"],
        "queue": journal.queue,
    }


def _runs_table(rows: list[dict[str, Any]], *, wide: bool) -> str:
    from costguard.cli import table
    from costguard.cli.table import Column
    from costguard.money import usd_together

    columns = [
        Column("run"),
        Column("created (UTC)", drop=1),
        Column("status"),
        Column("mode"),
        Column("requests", right=True),
        Column("ok", right=True),
        Column("not ok", right=True),
        Column("actual", right=True),
        Column("max", right=True),
        Column("queue", shrink=True),
    ]
    cells = []
    for r in rows:
        amounts = [Decimal(r["max_usd"])]
        if r["actual_usd"] is not None:
            amounts.insert(0, Decimal(r["actual_usd"]))
        shown = usd_together(*amounts)
        cells.append(
            [
                r["run"],
                r["created"].replace("T", " ")[:16],
                r["status"],
                r["mode"],
                f"{r['requests']:,}",
                "-" if r["ok"] is None else f"{r['ok']:,}",
                "-" if r["not_ok"] is None else f"{r['not_ok']:,}",
                shown[0] if r["actual_usd"] is not None else "-",
                shown[-1],
                _near(r["queue"]),
            ]
        )
    return table.render(columns, cells, wide=wide)


def _near(path: str) -> str:
    """`path` relative to the working folder when it is inside it (shorter to read)."""
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def _run_json(journal: Journal, row: dict[str, Any]) -> dict[str, Any]:
    """One run of `costguard runs --output json`: its table row, with the full `created` time,
    and a rehearsal `simulated` (its scenario in `scenario`) rather than a mode `batch (sim)`."""
    return {
        "run": row["run"],
        "created": journal.created,
        "status": row["status"],
        "mode": journal.mode,
        "simulated": journal.simulate is not None,
        "scenario": journal.simulate,
        **{k: row[k] for k in ("requests", "ok", "not_ok", "actual_usd", "max_usd", "queue")},
    }


def _report(summary: Summary, output: str) -> None:
    from costguard.execution.reconcile import explain, summary_json

    not_ok = {status: n for status, n in summary.counts.items() if status != "ok"}
    if output == "json":
        document = json.loads(summary_json(summary))
        if not_ok:  # exit 7: the summary, and what was not ok
            counts = ", ".join(f"{k} {v:,}" for k, v in sorted(not_ok.items()))
            total = sum(summary.counts.values())
            message = (
                f"{sum(not_ok.values()):,} of {total:,} requests not ok ({counts}); see "
                f"manifest.jsonl and retry.jsonl in {summary.out}"
            )
            document["error"] = error_object(EXIT_INCOMPLETE, "incomplete", message)
        emit(document)
    else:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.counts.items()))
        typer.echo(f"run {summary.run_id}: {counts or 'nothing collected'}")
        typer.echo(f"images and manifest.jsonl in {summary.out}")
        if summary.report is not None:
            typer.echo(f"report: {summary.report}")
        typer.echo(_cost_line(summary))
        if summary.admission:
            typer.echo(f"budget: {summary.admission}")
        if summary.calibration is not None:
            since = summary.calibration["since"]
            typer.echo(
                f"calibrated from {summary.calibration['requests']:,} requests"
                + (f" (since {since})" if since else "")
            )
        for line in explain(summary):
            typer.echo(line)
        if (waited := summary.quota_line()) is not None:
            typer.echo(waited)
        saving = _saving_line(summary)
        if saving:
            typer.echo(saving)
        if summary.retry_file is not None:
            typer.echo(f"{summary.retry_count:,} requests to retry: {summary.retry_file}")
        if summary.retry_command is not None:
            typer.echo(f"to retry them as a new run: {summary.retry_command}")
    if not_ok:
        raise typer.Exit(EXIT_INCOMPLETE)


def _cost_line(summary: Summary) -> str:
    """`cost: actual $0.54 against an estimate of $0.54 expected, $0.58 max`."""
    from costguard.money import usd_together

    actual, expected, maximum = usd_together(
        summary.actual, summary.estimate_expected, summary.estimate_max
    )
    return f"cost: actual {actual} against an estimate of {expected} expected, {maximum} max"


def _saving_line(summary: Summary) -> str | None:
    """What the other mode would have cost the same requests, said plainly."""
    from costguard.money import usd_together

    if summary.sync_equivalent:  # a batch run
        saved, sync = usd_together(
            summary.sync_equivalent - summary.actual, summary.sync_equivalent
        )
        return f"batch saved {saved}: sync would have cost {sync} for the same requests"
    if summary.batch_equivalent is not None and summary.actual:  # a sync run
        batch, paid, saved = usd_together(
            summary.batch_equivalent, summary.actual, summary.actual - summary.batch_equivalent
        )
        if summary.batch_equivalent * 2 == summary.actual:
            return f"batch would have cost {batch} (half of the {paid} paid)"
        return f"batch would have cost {batch} ({saved} less than the {paid} paid)"
    return None


def normalise_simulate(argv: list[str]) -> list[str]:
    """Let `--simulate` stand alone: give it `succeeded` unless a scenario follows.

    What follows counts as a scenario unless it is an option (`-...`), an existing file that
    is not YAML (the queue), or a path that looks like a queue (`.jsonl`, `.json`, `.ndjson`:
    a missing queue is reported as one). So a built-in name, a .yaml/.yml path, a recording
    folder, and a misspelt or unknown name (`realistc`, `bogus`: refused by the scenario loader
    naming the built-in ones) are scenarios, even when the queue follows them.
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg != "--simulate":
            continue
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if nxt is None or not _is_scenario(nxt):
            out.append("succeeded")
    return out


_QUEUE_SUFFIXES = (".jsonl", ".json", ".ndjson")


def _is_scenario(token: str) -> bool:
    if token.startswith("-"):
        return False
    if token.endswith((".yaml", ".yml")):
        return True
    return not (Path(token).is_file() or token.lower().endswith(_QUEUE_SUFFIXES))
