"""The `costguard` command line (Typer). Parses arguments, calls the library, renders.

`run(argv) -> int` is the whole CLI as a function (tests call it); `main()` only exits with
its code. Library errors become one line on stderr and their exit code here, in one place.
Heavy modules (pydantic models, YAML, the SDKs) are imported inside commands so `--help`
stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.cli import calibrate, estimate, helpfmt, housekeeping
from costguard.cli import runs as run_cli
from costguard.cli.budget import budget_app
from costguard.cli.ledger import ledger_app
from costguard.cli.simulate import simulate_app
from costguard.errors import EXIT_CODES, CostguardError, QueueError

if TYPE_CHECKING:
    pass

EXIT_HELP = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())

app = typer.Typer(
    name="costguard",
    help=(
        "Plan, cap and rehearse the spend of bulk image generation "
        "(Gemini and OpenAI image models, batch against sync)."
    ),
    epilog=f"Exit codes:\n\n\b\n{EXIT_HELP}",  # \b: click keeps the lines as they are
    no_args_is_help=True,
    cls=helpfmt.Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"costguard {version('costguard')}")
        raise typer.Exit


@app.callback()
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Plan, cap and rehearse the spend of bulk image generation."""


for _command in (
    estimate.estimate,
    estimate.prices,
    run_cli.run,
    run_cli.collect,
    run_cli.status,
    run_cli.cancel,
    calibrate.calibrate,
):
    app.command()(_command)
runs_app = typer.Typer(invoke_without_command=True, subcommand_metavar="[rm|prune ARGS...]")
runs_app.callback()(run_cli.runs)
runs_app.command("rm")(housekeeping.rm)
runs_app.command("prune")(housekeeping.prune)
app.add_typer(runs_app, name="runs")
app.add_typer(budget_app, name="budget")
app.add_typer(ledger_app, name="ledger")
app.add_typer(simulate_app, name="simulate")
helpfmt.apply(app)  # QUEUE, USD, DIR in every --help, never <str> (after the last command)


def _report(exc: CostguardError) -> None:
    if isinstance(exc, QueueError):
        for line in exc.errors:
            typer.echo(f"error: {line}", err=True)
        shown = len(exc.errors)
        more = f" ({exc.total - shown} more not shown)" if exc.total > shown else ""
        typer.echo(
            f"{exc.total} bad line{'s' if exc.total != 1 else ''}{more}; nothing was priced",
            err=True,
        )
    else:
        typer.echo(f"error: {exc}", err=True)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    command = typer.main.get_command(app)
    argv = run_cli.normalise_simulate(list(sys.argv[1:] if argv is None else argv))
    try:
        result = command.main(args=argv, prog_name="costguard", standalone_mode=False)
    except CostguardError as exc:
        _report(exc)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
