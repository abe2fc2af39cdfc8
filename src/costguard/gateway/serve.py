"""Serving a gateway: the app, its watcher and uvicorn, in the foreground or in a thread.

    with serving(ledger, GuardOptions(budget="team")) as base_url:   # costguard.guard(), tests
        ...                                      # OpenAI: base_url + "/v1"; Gemini: base_url
    serve(ledger, options, port=0, ready=print)  # `costguard guard`: blocks until Ctrl-C/SIGTERM

The budget must be set in the ledger (`LedgerError` otherwise, naming the budgets that are),
checked before anything listens. The caller owns the ledger (opens and closes it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from costguard.gateway.app import DEFAULT_UPSTREAMS, Guard, GuardOptions, create_guard_app
from costguard.gateway.book import Book
from costguard.gateway.watch import Watcher
from costguard.proxy.server import Listening, app_in_thread, serve_app

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from costguard.ledger import Ledger
    from costguard.pricing.engine import RateBook

__all__ = ["guarded", "running", "serve", "serving"]


@contextlib.contextmanager
def running(
    ledger: Ledger,
    options: GuardOptions,
    *,
    rates: RateBook | None = None,
    log: Callable[[str], None] | None = None,
    keys: dict[str, str] | None = None,
) -> Iterator[tuple[Guard, Starlette]]:
    """A gateway's `Guard` and ASGI app, its watcher running for the block.

    Args:
        keys: API keys per provider the watcher may poll with before a call brings one
            (memory only).

    Raises:
        LedgerError: the budget is not set.
    """
    if rates is None:
        from costguard.pricing.loader import load_book

        rates = load_book()
    book = Book(ledger, budget=options.budget, max_usd=options.max_usd)
    book.check_budget()
    guard = Guard(book, rates, options, log=log)
    guard.keys.update(keys or {})
    watcher = Watcher(guard, options.poll_s)
    watcher.start()
    try:
        yield guard, create_guard_app(guard, log=log)
    finally:
        watcher.stop()
        guard.close()


@contextlib.contextmanager
def serving(
    ledger: Ledger,
    options: GuardOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rates: RateBook | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Serve a gateway from a background thread for the block; yields its base URL."""
    with (
        running(ledger, options, rates=rates, log=log) as (_guard, app),
        app_in_thread(app, host=host, port=port, lifespan="on", name="costguard-guard") as url,
    ):
        yield url


def serve(
    ledger: Ledger,
    options: GuardOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[Listening], None] | None = None,
    rates: RateBook | None = None,
    log: Callable[[str], None] | None = None,
    keys: dict[str, str] | None = None,
) -> None:
    """Serve a gateway until interrupted (Ctrl-C / SIGTERM); `ready(listening)` once listening.

    Raises:
        LedgerError: the budget is not set (before listening).
        OSError: the address cannot be bound.
    """
    with running(ledger, options, rates=rates, log=log, keys=keys) as (_guard, app):
        serve_app(app, host=host, port=port, ready=ready, lifespan="on")


BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "GOOGLE_GEMINI_BASE_URL")


@contextlib.contextmanager
def guarded(
    *,
    budget: str,
    max_usd: Decimal | float | str | None = None,
    ledger: str | Path | None = None,
    upstreams: dict[str, str] | None = None,
    owner: str | None = None,
    grace_s: float = 3600.0,
    poll_s: float = 30.0,
) -> Iterator[str]:
    """`costguard.guard()`: a gateway in a thread, the SDKs pointed at it for the block.

    Sets `OPENAI_BASE_URL` (`<url>/v1`) and `GOOGLE_GEMINI_BASE_URL` (`<url>`) for the block and
    restores their earlier values (or their absence) afterwards, even on error. Clients created
    inside the block go through the gateway. Yields the gateway's base URL.
    """
    import os

    from costguard.ledger import open_ledger

    location = (
        ledger or os.environ.get("COSTGUARD_LEDGER_URL") or os.environ.get("COSTGUARD_LEDGER")
    )
    chosen = dict(DEFAULT_UPSTREAMS)
    chosen.update(upstreams or {})
    options = GuardOptions(
        budget=budget,
        max_usd=None if max_usd is None else Decimal(str(max_usd)),
        upstreams=chosen,
        owner=owner,
        grace_s=grace_s,
        poll_s=poll_s,
    )
    opened = open_ledger(location or None)
    earlier = {name: os.environ.get(name) for name in BASE_URL_VARIABLES}
    try:
        with serving(opened, options) as url:
            os.environ["OPENAI_BASE_URL"] = f"{url}/v1"
            os.environ["GOOGLE_GEMINI_BASE_URL"] = url
            try:
                yield url
            finally:
                for name, value in earlier.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
    finally:
        opened.close()
