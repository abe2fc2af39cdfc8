"""The `costguard` command line (Typer). Parses arguments, calls the library, renders.

`run(argv) -> int` is the whole CLI as a function (tests call it); `main()` only exits with
its code. Library errors become one line on stderr and their exit code here, in one place
(with `--output json` also a JSON error document on stdout: `cli/output.py`).
Heavy modules (pydantic models, YAML, the SDKs) are imported inside commands so `--help`
stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.cli import calibrate, estimate, helpfmt, housekeeping, output, report
from costguard.cli import guard as guard_cli
from costguard.cli import runs as run_cli
from costguard.cli.budget import budget_app
from costguard.cli.ledger import ledger_app
from costguard.cli.simulate import simulate_app
from costguard.errors import EXIT_CODES, CostguardError

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
    report.report,
    calibrate.calibrate,
    guard_cli.guard,
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


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code.

    Every failure ends here: one line on stderr and the exit code; with `--output json`, also
    exactly one JSON document on stdout holding an `error` object (`cli/output.py`).
    """
    command = typer.main.get_command(app)
    argv = run_cli.normalise_simulate(list(sys.argv[1:] if argv is None else argv))
    output.begin(argv)
    try:
        result = command.main(args=argv, prog_name="costguard", standalone_mode=False)
    except CostguardError as exc:
        return output.report(exc)
    except typer.Exit as exc:
        return output.exited(exc.exit_code)
    except typer.TyperException as exc:
        return output.usage(exc)
    except (typer.Abort, KeyboardInterrupt):
        return output.fail(130, "interrupted", "interrupted", prefix="").exit_code
    except Exception as exc:
        output.internal(exc)
        raise
    finally:
        output.end()
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
