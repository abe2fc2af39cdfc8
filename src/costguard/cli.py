"""The `costguard` command line (Typer). Parses arguments, calls the library, renders."""

from __future__ import annotations

import typer

from costguard.simulate_cli import simulate_app

app = typer.Typer(
    name="costguard",
    help="Plan, cap and rehearse the spend of bulk image generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(simulate_app, name="simulate")


@app.callback()
def _root() -> None:
    """Plan, cap and rehearse the spend of bulk image generation."""


def main() -> None:
    """Console-script entry point."""
    app()
