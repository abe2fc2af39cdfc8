"""What the command line and the Python API both build from the environment: the rate book, the
ledger, the providers with their keys, the runner, the in-process simulator for a rehearsal,
and a run's report. One place, so `costguard run` and `costguard.run()` can never differ in
which cards price a queue, which ledger caps it or which key is sent.

Everything heavy is imported inside the functions: the CLI's `--help` and `import costguard`
stay cheap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from costguard.errors import CostguardError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from decimal import Decimal

    from costguard.execution.journal import Journal
    from costguard.execution.options import RunMode, RunOptions
    from costguard.execution.progress import Reporter
    from costguard.execution.runner import Runner
    from costguard.ledger import Ledger
    from costguard.pricing.engine import RateBook
    from costguard.providers.base import Provider
    from costguard.queue.reader import Defaults, Format

SIMULATED_KEY = "costguard-simulated"
"""The API key sent to the in-process simulator (not a secret)."""
MANY_THUMBNAILS = 500
"""From this many images on, writing the report says first that it is making thumbnails."""


_BOOK: dict[bytes, RateBook] = {}
"""The last rate book loaded, by the digest of its folders' card files (names and bytes)."""


def load_rate_book(pricing: list[Path] | None) -> RateBook:
    """Shipped cards, then COSTGUARD_PRICING_DIR, then each `pricing` folder (later wins).

    Loaded again only when a card file was added, removed or changed: a pipeline calling
    `costguard.price()` per request reads the cards' bytes, not YAML and validation, each time.
    """
    import hashlib

    from costguard.api.settings import Settings
    from costguard.pricing.loader import card_files, load_book, shipped_dir

    extra = [*Settings().pricing_dirs(), *(pricing or [])]
    digest = hashlib.sha256()
    for folder in (shipped_dir(), *extra):
        digest.update(b"\0dir\0" + str(folder).encode())
        for path in card_files(folder) if folder.is_dir() else ():
            digest.update(b"\0card\0" + str(path).encode() + b"\0" + path.read_bytes())
    key = digest.digest()
    book = _BOOK.get(key)
    if book is None:
        book = load_book(extra)  # a folder that is no folder is refused here, every time
        _BOOK.clear()
        _BOOK[key] = book
    return book


def open_configured_ledger(location: str | Path | None, *, migrate: bool = True) -> Ledger:
    """The ledger asked for: `location`, else `COSTGUARD_LEDGER_URL`, else `COSTGUARD_LEDGER`,
    else `<COSTGUARD_HOME>/ledger.sqlite3`. A location that does not resolve is an error
    (`LedgerError`), never a new empty ledger that caps nothing."""
    from costguard.api.settings import Settings
    from costguard.ledger import default_path, open_ledger

    settings = Settings()
    chosen = settings.ledger_location(None if location is None else str(location))
    where = chosen if chosen is not None else default_path(settings.home)
    return open_ledger(where, migrate=migrate)


def owner_of(given: str | None) -> str:
    """Who spend is recorded under: `given`, else `COSTGUARD_OWNER`, else the user's login."""
    import getpass

    return given or os.environ.get("COSTGUARD_OWNER") or getpass.getuser()


def key_names(provider: str) -> tuple[str, ...]:
    """The environment variables the provider's API key is read from, in order."""
    return ("GEMINI_API_KEY", "GOOGLE_API_KEY") if provider == "gemini" else ("OPENAI_API_KEY",)


def has_key(provider: str) -> bool:
    """Whether the provider's API key is set."""
    return any(os.environ.get(name) for name in key_names(provider))


def api_key(provider: str) -> str:
    """The provider's API key from the environment, never echoed anywhere."""
    names = key_names(provider)
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    msg = (
        f"no {provider} API key: set {' or '.join(names)}, or rehearse with --simulate "
        "(costguard.run: simulate=True)"
    )
    raise UsageError(msg)


def providers(*, simulated: bool) -> Callable[[str, Path], Provider]:
    """Makes a provider client by name: with the simulator's key when `simulated`, else with
    the key from the environment (read when the client is made, so a queue for one provider
    needs only that provider's key)."""

    def make(name: str, base: Path) -> Provider:
        key = SIMULATED_KEY if simulated else api_key(name)
        if name == "gemini":
            from costguard.providers.gemini import GeminiProvider

            return GeminiProvider(key, base=base)
        from costguard.providers.openai import OpenAIProvider

        return OpenAIProvider(key, base=base)

    return make


def run_options(
    queue: Path,
    *,
    max_usd: Decimal,
    mode: RunMode,
    defaults: Defaults,
    fmt: Format | None,
    as_of: dt.date | None,
    out: Path | None,
    scenario: str | None,
    poll_interval: float | None,
    timeout: float | None,
    retry_refused: bool,
    budget: str | None,
    owner: str | None,
    concurrency: int,
    max_requests_per_part: int | None,
    max_enqueued_tokens: Mapping[str, int],
    keep_raw: bool,
    detach: bool = False,
    retry_of: str | None = None,
    new_run: bool = False,
) -> RunOptions:
    """`RunOptions` with the settings' defaults filled in, the one way for `costguard run` and
    `costguard.run()`: the same queue and options give the same run id from either.

    The budget is `budget`, else `COSTGUARD_BUDGET` (either one must then be set in the ledger),
    else `default`; quota limits are `COSTGUARD_MAX_ENQUEUED_TOKENS` overridden per model by
    `max_enqueued_tokens`; polls start every 0.5 s on the simulator, 30 s otherwise.
    """
    from costguard.api.settings import Settings
    from costguard.execution.options import RunOptions

    settings = Settings()
    chosen = budget if budget is not None else (settings.budget or None)
    return RunOptions(
        queue=queue,
        max_usd=max_usd,
        mode=mode,
        defaults=defaults,
        fmt=fmt,
        as_of=as_of,
        out=out,
        poll_interval=poll_interval if poll_interval is not None else (0.5 if scenario else 30.0),
        timeout=timeout,
        detach=detach,
        retry_refused=retry_refused,
        budget=chosen or "default",
        budget_required=chosen is not None,
        owner=owner_of(owner),
        concurrency=concurrency,
        max_requests_per_part=settings.part_size(max_requests_per_part),
        max_enqueued_tokens=settings.quota_limits(None) | dict(max_enqueued_tokens),
        keep_raw=keep_raw,
        simulate=scenario,
        retry_of=retry_of,
        nonce=dt.datetime.now(tz=dt.UTC).isoformat() if new_run else None,
    )


def make_runner(
    pricing: list[Path] | None,
    ledger: str | Path | None,
    reporter: Reporter,
    *,
    simulated: bool,
    home: Path | None = None,
) -> Runner:
    """A runner over the configured rate book and ledger (the caller closes `runner.ledger`)."""
    from costguard.execution.runner import Runner
    from costguard.resources import home_dir

    book = load_rate_book(pricing)
    return Runner(
        home=home if home is not None else home_dir(),
        ledger=open_configured_ledger(ledger),
        book=book,
        providers=providers(simulated=simulated),
        reporter=reporter,
    )


@contextlib.contextmanager
def simulated(scenario: str | None, state: Path) -> Iterator[None]:
    """Run inside the in-process simulator (its state saved after every call) when `scenario`
    is given; otherwise do nothing."""
    if scenario is None:
        yield
        return
    from costguard.simulator import simulate

    state.parent.mkdir(parents=True, exist_ok=True)
    with simulate(scenario, state=state, strict=False):
        yield


def simulator_active() -> bool:
    """Whether a `costguard.simulate()` block is answering this process's SDK calls now (only
    ever true once the simulator has been imported)."""
    import sys

    host = sys.modules.get("costguard.simulator.host")
    return bool(host is not None and host.active())


def report_page(
    journal: Journal, book: RateBook, ledger: Ledger, *, note: Callable[[str], None]
) -> Path:
    """Write the run's report page and return its path (`report.html`, or a name beside it
    when a `report.html` there is not costguard's, which is kept and said in a `note`).

    Raises:
        CostguardError, OSError: the page could not be written.
    """
    from importlib.metadata import version

    from costguard.report.build import write_report as build

    images = int(journal.estimate["requests"])
    if images >= MANY_THUMBNAILS:
        note(f"report: making thumbnails of up to {images:,} images")
    now = dt.datetime.now(dt.UTC)
    page = build(journal, book, ledger, now=now, version=version("costguard"))
    if page.name != "report.html":
        note(
            f"note: {page.with_name('report.html')} was not written by costguard for this run: "
            f"left as it is; the report is {page.name} beside it"
        )
    return page


def write_report(
    journal: Journal, book: RateBook, ledger: Ledger, *, note: Callable[[str], None]
) -> Path | None:
    """`report_page` at the end of a run: None (with a `note`) when the page could not be
    written, since the run's results are not affected."""
    try:
        return report_page(journal, book, ledger, note=note)
    except (CostguardError, OSError) as exc:
        note(f"warning: report not written: {exc}")
        return None
