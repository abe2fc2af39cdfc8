"""`costguard simulate ...`: the simulator's commands. Imports the simulator lazily."""

from __future__ import annotations

import typer

simulate_app = typer.Typer(
    help="Offline simulators of the Gemini and OpenAI batch + files APIs.",
    no_args_is_help=True,
)
