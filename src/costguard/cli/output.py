"""What a command prints for scripts: JSON documents on stdout, and errors they can read.

With `--output json` every command prints exactly one JSON document on stdout (the long-running
`simulate serve` and `simulate record`: one JSON object per line, per event). When the command
fails (any non-zero exit) that document has an `error` object::

    {"error": {"code": 2, "kind": "queue", "message": "...", ...details}}

`code` is the exit code, `kind` the cause (stable: `CostguardError.kind`, or `usage`,
`incomplete`, `interrupted`, `internal` for what the CLI decides itself) and `message` the line
a person reads on stderr, which stays. A command that still has its result to show when it
fails (`estimate` over `--max-usd`, a `run` with requests not ok) prints that result with the
`error` key added, so scripts check one key either way. Imports stay light: `app` imports this.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import typer

from costguard.errors import EXIT_CODES, CostguardError, QueueError

EXIT_KINDS: dict[int, str] = {
    1: "internal",
    2: "usage",
    3: "over_budget",
    4: "rate_card",
    5: "ledger",
    6: "pending",
    7: "incomplete",
    8: "provider",
    9: "output",
    130: "interrupted",
}
"""The `kind` of an exit code when nothing more specific is known (a bare `typer.Exit(n)`)."""


@dataclass(slots=True)
class _State:
    json: bool = False
    """`--output json` is on the command line: results and errors go to stdout as JSON."""
    emitted: bool = False
    """A JSON document was printed (a failure must not print a second one)."""


_STATE: ContextVar[_State | None] = ContextVar("costguard_output", default=None)


def _state() -> _State:
    state = _STATE.get()
    if state is None:  # outside `costguard.cli.app.run` (Typer's own runner): no JSON asked
        state = _State()
        _STATE.set(state)
    return state


def json_requested(argv: list[str]) -> bool:
    """True when `argv` asks for `--output json` (the last `--output` before any `--` wins, as
    it does for the parser)."""
    chosen: str | None = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--output="):
            chosen = arg.removeprefix("--output=")
        elif arg == "--output" and i + 1 < len(argv):
            chosen = argv[i + 1]
    return chosen == "json"


def begin(argv: list[str]) -> None:
    """Start one command line: whether it wants JSON, and nothing printed yet."""
    _STATE.set(_State(json=json_requested(argv)))


def end() -> None:
    """The command line is done: what it asked for does not carry over to the next."""
    _STATE.set(None)


def wants_json() -> bool:
    """Whether this command line asked for `--output json`."""
    return _state().json


def emit(document: object, *, indent: int | None = 2) -> None:
    """Print one JSON document on stdout (`indent=None`: one line, for JSON Lines)."""
    typer.echo(json.dumps(document, indent=indent))
    _state().emitted = True


def error_object(code: int, kind: str, message: str, **details: object) -> dict[str, Any]:
    """`{"code", "kind", "message", ...details}`: the value of a document's `error` key."""
    return {"code": code, "kind": kind, "message": message, **details}


def costguard_error(exc: CostguardError) -> dict[str, Any]:
    """The error object of a `CostguardError`: its class's kind, its details, and for a queue
    error where it is (`file`, `line`, `field` of the first error) and the distinct errors."""
    details: dict[str, object] = dict(exc.details)
    if isinstance(exc, QueueError):
        first = exc.groups[0] if exc.groups else None
        details |= {
            "file": exc.file,
            "line": first.lines[0] if first and first.lines else None,
            "field": exc.field,
            "total": exc.total,
            "unlisted": exc.unlisted,
            "errors": [
                {
                    "file": g.file,
                    "field": g.field,
                    "message": g.message,
                    "count": g.count,
                    "lines": g.lines,
                }
                for g in exc.groups
            ],
        }
    return error_object(exc.exit_code, exc.kind, str(exc), **details)


def queue_error_lines(exc: QueueError) -> list[str]:
    """What a person reads: one line per distinct error, then how many lines were bad."""
    lines = [f"error: {where}" for where in exc.errors]
    more = f" ({exc.unlisted:,} more not shown)" if exc.unlisted else ""
    lines.append(f"{exc.total:,} bad line{'s' if exc.total != 1 else ''}{more}; nothing was priced")
    return lines


def report(exc: CostguardError) -> int:
    """Show `exc` (stderr; with `--output json` also its error document on stdout); its code."""
    if isinstance(exc, QueueError):
        for line in queue_error_lines(exc):
            typer.echo(line, err=True)
    else:
        typer.echo(f"error: {exc}", err=True)
    if wants_json():
        emit({"error": costguard_error(exc)})
    return exc.exit_code


def fail(
    code: int, kind: str, message: str, *, prefix: str = "error: ", **details: object
) -> typer.Exit:
    """Show a failure the CLI decides itself (`prefix` + `message` on stderr; with `--output
    json` its error document on stdout); return the `typer.Exit` to raise."""
    typer.echo(f"{prefix}{message}", err=True)
    if wants_json() and not _state().emitted:
        emit({"error": error_object(code, kind, message, **details)})
    return typer.Exit(code)


def exited(code: int) -> int:
    """A bare `typer.Exit(code)`: with `--output json`, a non-zero code that printed no
    document yet gets a generic one (its kind and meaning from the exit code)."""
    if code and wants_json() and not _state().emitted:
        meaning = EXIT_CODES.get(code, f"exit {code}")
        emit({"error": error_object(code, EXIT_KINDS.get(code, "internal"), meaning)})
    return code


def usage(exc: typer.TyperException) -> int:
    """A usage error from the command-line parser (unknown option, bad or missing value):
    shown as the parser shows it, and with `--output json` as an error document (kind
    `usage`, the option concerned and the command's usage line when known)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        typer.echo(f"error: {exc.format_message()}", err=True)
    if wants_json():
        details: dict[str, object] = {}
        option = getattr(exc, "option_name", None)
        param = getattr(exc, "param", None)
        if option is None and param is not None:
            opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
            option = opts[0] if opts else getattr(param, "name", None)
        if option is not None:
            details["option"] = option
        possibilities = getattr(exc, "possibilities", None)
        if possibilities:
            details["did_you_mean"] = sorted(possibilities)
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            details["command"] = ctx.command_path
            details["usage"] = ctx.get_usage()
        emit({"error": error_object(exc.exit_code, "usage", exc.format_message(), **details)})
    return exc.exit_code


def internal(exc: BaseException) -> None:
    """An unexpected exception (a bug): with `--output json`, its error document (exit 1);
    the traceback still goes to stderr."""
    if wants_json() and not _state().emitted:
        message = f"internal error ({type(exc).__name__}: {exc}); please report it"
        emit({"error": error_object(1, "internal", message)})
        sys.stdout.flush()
