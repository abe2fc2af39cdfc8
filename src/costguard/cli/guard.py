"""`costguard guard`: serve the budget gateway (`costguard.gateway`) until Ctrl-C or SIGTERM.

Imports the gateway (uvicorn, httpx, starlette) only when the command runs, so `--help` stays
fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.api.setup import load_rate_book, open_configured_ledger
from costguard.cli import serving
from costguard.cli.common import LedgerOpt, PricingOpt, SummaryOutput, parse_usd
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.proxy.server import Listening

__all__ = ["guard"]

MAX_PORT = 65535
PROVIDERS = ("openai", "gemini")
KEY_VARIABLES = {"openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
"""Keys the watcher may poll with before a call brings one (read from this process's
environment, held in memory only)."""


def parse_upstreams(values: list[str] | None) -> dict[str, str]:
    """`--upstream openai=URL` (repeatable) over the public endpoints; exit 2 when malformed."""
    from costguard.gateway.app import DEFAULT_UPSTREAMS

    upstreams = dict(DEFAULT_UPSTREAMS)
    for value in values or []:
        provider, sep, url = value.partition("=")
        provider = provider.strip().lower()
        url = url.strip().rstrip("/")
        if not sep or provider not in PROVIDERS or not url.startswith(("http://", "https://")):
            msg = (
                f"--upstream {value!r}: give PROVIDER=URL with PROVIDER openai or gemini and an "
                "http(s) URL, like openai=https://api.openai.com"
            )
            raise UsageError(msg)
        upstreams[provider] = url
    return upstreams


def guard(
    *,
    budget: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="The ledger budget every paid call is charged to (must be set: "
            "costguard budget set NAME --usd X).",
        ),
    ],
    max_usd: Annotated[
        str | None,
        typer.Option(
            "--max-usd",
            metavar="USD",
            help="Cap on what this gateway admits in all, besides the budget.",
        ),
    ] = None,
    ledger: LedgerOpt = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Where calls go, per provider (repeatable): openai=URL, gemini=URL. Default: "
            "https://api.openai.com and https://generativelanguage.googleapis.com.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to bind (default: loopback only).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="Port to bind; 0 picks a free one.")
    ] = 8787,
    allow_unpriced: Annotated[
        bool,
        typer.Option(
            "--allow-unpriced",
            help="Forward batches whose input file was not uploaded through the gateway "
            "(unpriced, logged) instead of refusing them.",
        ),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="How long after a batch is seen finished its results may still pass through "
            "before it is settled from the batch object alone (unreconciled without usage).",
        ),
    ] = 3600.0,
    poll: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="How often the gateway polls the open batch jobs it admitted."
        ),
    ] = 30.0,
    pricing: PricingOpt = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            metavar="FILE",
            help='Once listening, write {"url", "pid", ...} as JSON to FILE (atomically); '
            "removed when the gateway stops.",
        ),
    ] = None,
    output: Annotated[
        SummaryOutput,
        typer.Option(
            help='table: a banner and one log line per call; json: one line {"event": '
            '"listening", "url", ...} on stdout, log lines on stderr.'
        ),
    ] = SummaryOutput.table,
) -> None:
    """Serve a budget gateway: the OpenAI and Gemini APIs on a local port, every paid call
    priced and reserved in the ledger before it is forwarded; what does not fit is refused.

    Example: costguard guard --budget team --port 0

    Point a pipeline at it: OPENAI_BASE_URL=http://127.0.0.1:PORT/v1,
    GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:PORT (Node: baseURL / httpOptions.baseUrl).
    Stop with Ctrl-C (or SIGTERM). Keys pass through and are never stored or logged.
    """
    from costguard.gateway.app import GuardOptions
    from costguard.gateway.serve import serve

    if not 0 <= port <= MAX_PORT:
        msg = f"--port {port}: use a port in 0..{MAX_PORT} (0 picks a free one)"
        raise UsageError(msg)
    if grace < 0 or poll <= 0:
        msg = "--grace must be 0 or more and --poll more than 0 seconds"
        raise UsageError(msg)
    options = GuardOptions(
        budget=budget,
        max_usd=None if max_usd is None else parse_usd(max_usd, "--max-usd"),
        upstreams=parse_upstreams(upstream),
        allow_unpriced=allow_unpriced,
        grace_s=grace,
        poll_s=poll,
    )
    rates = load_rate_book(pricing)
    serving.clear_ready_file(ready_file)
    keys = {
        provider: os.environ[name]
        for provider, names in KEY_VARIABLES.items()
        for name in reversed(names)
        if os.environ.get(name)
    }
    log = (lambda line: typer.echo(line, err=True)) if output is SummaryOutput.json else typer.echo

    def ready(listening: Listening) -> None:
        serving.warn_if_public(
            listening, "any client that reaches it spends the budget with its own key"
        )
        where = serving.where(listening) | {"budget": budget}
        if serving.announce(where, ready_file, output):
            return
        base = listening.base_url
        upstreams = ", ".join(f"{p}={u}" for p, u in options.upstreams.items())
        typer.echo(
            "\n".join(
                [
                    (
                        f"costguard guard: listening on {listening.describe()} "
                        f"(budget {budget!r}; upstream {upstreams})"
                    ),
                    "Point the pipelines at it:",
                    f"  export OPENAI_BASE_URL={base}/v1",
                    f"  export GOOGLE_GEMINI_BASE_URL={base}",
                    "Stop with Ctrl-C.",
                ]
            )
        )

    opened = open_configured_ledger(ledger)
    try:
        with serving.removed_at_exit(ready_file):
            serve(
                opened,
                options,
                host=host,
                port=port,
                ready=ready,
                rates=rates,
                log=log,
                keys=keys,
            )
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise UsageError(message) from None
    finally:
        opened.close()
